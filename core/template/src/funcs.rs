//! consul-template's helper functions that need no data from the agent (strings, lists,
//! parsing, encoding, math, time). As consul-template, a piped value is the last argument.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use gotmpl::{Template, TemplateError, Value};
use sha2::Digest;

use crate::deps::{from_json, list, map, s, to_json};

type R = Result<Value, TemplateError>;

fn err(name: &str, why: impl std::fmt::Display) -> TemplateError {
    TemplateError::Exec(format!("{name}: {why}"))
}

fn want(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(err(name, format!("wrong number of args: want {n} got {}", args.len())))
    }
}

/// A value as text, Go's way (`fmt.Sprint`).
pub fn text(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::String(t) => t.to_string(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::List(l) => l.to_vec(),
        Value::Nil => Vec::new(),
        other => vec![other.clone()],
    }
}

fn int(name: &str, v: &Value) -> Result<i64, TemplateError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Uint(u) => i64::try_from(*u).map_err(|_| err(name, "value out of range")),
        Value::Float(f) => Ok(*f as i64),
        Value::String(t) => t.trim().parse().map_err(|_| err(name, format!("{t:?} is not an integer"))),
        other => Err(err(name, format!("expected an integer, got {}", other.type_name()))),
    }
}

enum Num {
    I(i64),
    F(f64),
}

fn num(name: &str, v: &Value) -> Result<Num, TemplateError> {
    match v {
        Value::Int(i) => Ok(Num::I(*i)),
        Value::Uint(u) => Ok(i64::try_from(*u).map(Num::I).unwrap_or(Num::F(*u as f64))),
        Value::Float(f) => Ok(Num::F(*f)),
        Value::String(t) => t
            .trim()
            .parse::<i64>()
            .map(Num::I)
            .or_else(|_| t.trim().parse::<f64>().map(Num::F))
            .map_err(|_| err(name, format!("{t:?} is not a number"))),
        other => Err(err(name, format!("expected a number, got {}", other.type_name()))),
    }
}

/// `add b a` is `a + b` (the piped value comes last), integers stay integers.
fn math(name: &'static str, args: &[Value]) -> R {
    want(name, args, 2)?;
    let (b, a) = (num(name, &args[0])?, num(name, &args[1])?);
    Ok(match (a, b) {
        (Num::I(a), Num::I(b)) => Value::Int(match name {
            "add" => a.wrapping_add(b),
            "subtract" => a.wrapping_sub(b),
            "multiply" => a.wrapping_mul(b),
            "divide" if b == 0 => return Err(err(name, "division by zero")),
            "divide" => a / b,
            "modulo" if b == 0 => return Err(err(name, "division by zero")),
            "modulo" => a % b,
            "minimum" => a.min(b),
            _ => a.max(b),
        }),
        (a, b) => {
            let f = |n: Num| match n {
                Num::I(i) => i as f64,
                Num::F(f) => f,
            };
            let (a, b) = (f(a), f(b));
            Value::Float(match name {
                "add" => a + b,
                "subtract" => a - b,
                "multiply" => a * b,
                "divide" => a / b,
                "modulo" => return Err(err(name, "modulo of floats is not supported")),
                "minimum" => a.min(b),
                _ => a.max(b),
            })
        }
    })
}

/// consul-template's `in`: an element equal to `v` (same kind), or a substring of a string.
fn contains_value(l: &Value, v: &Value) -> bool {
    match l {
        Value::String(hay) => hay.contains(text(v).as_str()),
        Value::List(items) => items.iter().any(|x| match (x, v) {
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Uint(a), Value::Uint(b)) => a == b,
            _ => false,
        }),
        _ => false,
    }
}

fn string_list(name: &str, v: &Value) -> Result<Vec<String>, TemplateError> {
    match v {
        Value::List(l) => Ok(l.iter().map(text).collect()),
        Value::Nil => Ok(Vec::new()),
        other => Err(err(name, format!("expected a list, got {}", other.type_name()))),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.field(name)
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut start = true;
    for c in t.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// Go's time layout (`2006-01-02 15:04:05`) for `timestamp`.
fn go_layout(t: time::OffsetDateTime, layout: &str) -> String {
    const TOKENS: &[&str] = &[
        "January",
        "Monday",
        "2006",
        "-07:00",
        "Z07:00",
        "-0700",
        "Z0700",
        ".000000000",
        ".000000",
        ".000",
        "Jan",
        "Mon",
        "MST",
        "01",
        "02",
        "_2",
        "03",
        "04",
        "05",
        "15",
        "06",
        "PM",
        "pm",
        "1",
        "2",
        "3",
        "4",
        "5",
    ];
    let month_names = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for tok in TOKENS {
            if let Some(after) = rest.strip_prefix(tok) {
                let month = month_names[t.month() as usize - 1];
                let weekday = t.weekday().to_string();
                let hour12 = match t.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                let off = t.offset();
                let (oh, om) = (off.whole_hours(), off.minutes_past_hour().abs());
                let sign = if off.is_negative() { '-' } else { '+' };
                out.push_str(&match *tok {
                    "January" => month.to_string(),
                    "Jan" => month[..3].to_string(),
                    "Monday" => weekday.clone(),
                    "Mon" => weekday[..3].to_string(),
                    "2006" => format!("{:04}", t.year()),
                    "06" => format!("{:02}", t.year() % 100),
                    "01" => format!("{:02}", t.month() as u8),
                    "1" => format!("{}", t.month() as u8),
                    "02" => format!("{:02}", t.day()),
                    "_2" => format!("{:>2}", t.day()),
                    "2" => format!("{}", t.day()),
                    "15" => format!("{:02}", t.hour()),
                    "03" => format!("{hour12:02}"),
                    "3" => format!("{hour12}"),
                    "04" => format!("{:02}", t.minute()),
                    "4" => format!("{}", t.minute()),
                    "05" => format!("{:02}", t.second()),
                    "5" => format!("{}", t.second()),
                    "PM" => (if t.hour() < 12 { "AM" } else { "PM" }).to_string(),
                    "pm" => (if t.hour() < 12 { "am" } else { "pm" }).to_string(),
                    "MST" if off.is_utc() => "UTC".to_string(),
                    "MST" => format!("{sign}{:02}", oh.abs()),
                    "Z07:00" | "Z0700" if off.is_utc() => "Z".to_string(),
                    "-07:00" | "Z07:00" => format!("{sign}{:02}:{om:02}", oh.abs()),
                    _ if tok.starts_with('.') => {
                        let digits = tok.len() - 1;
                        let nanos = format!("{:09}", t.nanosecond());
                        format!(".{}", &nanos[..digits])
                    }
                    _ => format!("{sign}{:02}{om:02}", oh.abs()),
                });
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn timestamp(args: &[Value]) -> R {
    let now = time::OffsetDateTime::now_utc();
    match args {
        [] => Ok(s(now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())),
        [f] if text(f) == "unix" => Ok(s(now.unix_timestamp().to_string())),
        [f] => Ok(s(go_layout(now, &text(f)))),
        _ => Err(err("timestamp", "takes at most one argument")),
    }
}

/// `explode`: KV pairs into nested maps by `/` (values are the leaves).
fn explode(args: &[Value]) -> R {
    want("explode", args, 1)?;
    #[derive(Default)]
    struct Node(BTreeMap<String, Either>);
    enum Either {
        Leaf(String),
        Tree(Node),
    }
    fn to_value(n: Node) -> Value {
        let m: BTreeMap<Arc<str>, Value> =
            n.0.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Either::Leaf(t) => s(t),
                        Either::Tree(t) => to_value(t),
                    };
                    (Arc::from(k.as_str()), v)
                })
                .collect();
        Value::Map(Arc::new(m))
    }
    let mut root = Node::default();
    for pair in items(&args[0]) {
        let key = field(&pair, "Key").map(text).unwrap_or_default();
        let value = field(&pair, "Value").map(text).unwrap_or_default();
        let parts: Vec<&str> = key.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
        let Some((last, dirs)) = parts.split_last() else { continue };
        let mut node = &mut root;
        for d in dirs {
            let entry = node.0.entry(d.to_string()).or_insert_with(|| Either::Tree(Node::default()));
            node = match entry {
                Either::Tree(t) => t,
                Either::Leaf(_) => return Err(err("explode", format!("not a map: {key}"))),
            };
        }
        if key.ends_with('/') {
            node.0.entry(last.to_string()).or_insert_with(|| Either::Tree(Node::default()));
        } else if matches!(node.0.get(*last), Some(Either::Tree(_))) {
            return Err(err("explode", format!("not a map: {key}")));
        } else {
            node.0.insert(last.to_string(), Either::Leaf(value));
        }
    }
    Ok(to_value(root))
}

/// `byKey`: pairs from `tree` grouped by their first path segment, which is stripped.
fn by_key(args: &[Value]) -> R {
    want("byKey", args, 1)?;
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for pair in items(&args[0]) {
        let key = field(&pair, "Key").map(text).unwrap_or_default();
        let Some((top, rest)) = key.split_once('/') else { continue };
        if rest.is_empty() {
            continue;
        }
        let mut entry: BTreeMap<Arc<str>, Value> = match &pair {
            Value::Map(m) => (**m).clone(),
            _ => BTreeMap::new(),
        };
        entry.insert(Arc::from("Key"), s(rest));
        out.entry(top.to_string()).or_default().insert(rest.to_string(), Value::Map(Arc::new(entry)));
    }
    Ok(Value::Map(Arc::new(
        out.into_iter()
            .map(|(k, v)| {
                let inner: BTreeMap<Arc<str>, Value> = v.into_iter().map(|(k, v)| (Arc::from(k.as_str()), v)).collect();
                (Arc::from(k.as_str()), Value::Map(Arc::new(inner)))
            })
            .collect(),
    )))
}

fn grouped(groups: BTreeMap<String, Vec<Value>>) -> Value {
    Value::Map(Arc::new(groups.into_iter().map(|(k, v)| (Arc::from(k.as_str()), list(v))).collect()))
}

/// `byTag`: services grouped by each of their tags.
fn by_tag(args: &[Value]) -> R {
    want("byTag", args, 1)?;
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for svc in items(&args[0]) {
        for tag in field(&svc, "Tags").map(items).unwrap_or_default() {
            groups.entry(text(&tag)).or_default().push(svc.clone());
        }
    }
    Ok(grouped(groups))
}

/// `byMeta "k1,k2|int" services`: services grouped by their ServiceMeta values.
fn by_meta(args: &[Value]) -> R {
    want("byMeta", args, 2)?;
    let keys: Vec<(String, bool)> = text(&args[0])
        .split(',')
        .map(|k| match k.trim().split_once('|') {
            Some((k, "int")) => (k.to_string(), true),
            _ => (k.trim().to_string(), false),
        })
        .collect();
    let clean = |t: &str| {
        t.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect::<String>()
    };
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for svc in items(&args[1]) {
        let meta = field(&svc, "ServiceMeta").cloned().unwrap_or(Value::Nil);
        let mut parts = Vec::new();
        for (k, as_int) in &keys {
            let v = field(&meta, k).map(text).filter(|v| !v.is_empty());
            parts.push(match (v, as_int) {
                (Some(v), true) => {
                    format!("{:05}", v.parse::<i64>().map_err(|_| err("byMeta", format!("{v:?} is not an integer")))?)
                }
                (Some(v), false) => clean(&v),
                (None, true) => "00000".to_string(),
                (None, false) => format!("_no_{k}_"),
            });
        }
        groups.entry(parts.join("_")).or_default().push(svc);
    }
    Ok(grouped(groups))
}

fn indent(args: &[Value]) -> R {
    want("indent", args, 2)?;
    let n = int("indent", &args[0])?;
    if n < 0 {
        return Err(err("indent", "indent value must be a positive integer"));
    }
    let pad = " ".repeat(n as usize);
    let t = text(&args[1]);
    let mut out = String::with_capacity(t.len());
    for line in t.split_inclusive('\n') {
        if line != "\n" {
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    Ok(s(out))
}

fn regex(name: &str, re: &Value) -> Result<regex::Regex, TemplateError> {
    regex::Regex::new(&text(re)).map_err(|e| err(name, e))
}

fn yaml_to_value(t: &str) -> R {
    if t.trim().is_empty() {
        return Ok(map(Vec::new()));
    }
    let j: serde_json::Value = serde_yaml_ng::from_str(t).map_err(|e| err("parseYAML", e))?;
    Ok(from_json(&j))
}

fn loop_(args: &[Value]) -> R {
    let (start, end) = match args {
        [n] => (0, int("loop", n)?),
        [a, b] => (int("loop", a)?, int("loop", b)?),
        _ => return Err(err("loop", "takes one or two integers")),
    };
    if end.saturating_sub(start) > 1_000_000 {
        return Err(err("loop", "more than 1,000,000 iterations"));
    }
    Ok(list((start..end).map(Value::Int).collect()))
}

/// Registers every helper on a template (before it is parsed).
pub fn register(t: Template) -> Template {
    let mut t = t;
    macro_rules! f {
        ($name:literal, $body:expr) => {
            t = t.func($name, $body);
        };
    }
    f!("contains", |a| {
        want("contains", a, 2)?;
        Ok(Value::Bool(contains_value(&a[1], &a[0])))
    });
    f!("in", |a| {
        want("in", a, 2)?;
        Ok(Value::Bool(contains_value(&a[0], &a[1])))
    });
    f!("containsAll", |a| {
        want("containsAll", a, 2)?;
        Ok(Value::Bool(items(&a[0]).iter().all(|n| contains_value(&a[1], n))))
    });
    f!("containsAny", |a| {
        want("containsAny", a, 2)?;
        Ok(Value::Bool(items(&a[0]).iter().any(|n| contains_value(&a[1], n))))
    });
    f!("containsNone", |a| {
        want("containsNone", a, 2)?;
        Ok(Value::Bool(!items(&a[0]).iter().any(|n| contains_value(&a[1], n))))
    });
    f!("containsNotAll", |a| {
        want("containsNotAll", a, 2)?;
        Ok(Value::Bool(!items(&a[0]).iter().all(|n| contains_value(&a[1], n))))
    });
    f!("byKey", by_key);
    f!("byTag", by_tag);
    f!("byMeta", by_meta);
    f!("explode", explode);
    f!("indent", indent);
    f!("join", |a| {
        want("join", a, 2)?;
        Ok(s(string_list("join", &a[1])?.join(&text(&a[0]))))
    });
    f!("split", |a| {
        want("split", a, 2)?;
        let t = text(&a[1]);
        let t = t.trim();
        if t.is_empty() {
            return Ok(list(Vec::new()));
        }
        Ok(list(t.split(text(&a[0]).as_str()).map(s).collect()))
    });
    f!("trimSpace", |a| {
        want("trimSpace", a, 1)?;
        Ok(s(text(&a[0]).trim()))
    });
    f!("replaceAll", |a| {
        want("replaceAll", a, 3)?;
        Ok(s(text(&a[2]).replace(&text(&a[0]), &text(&a[1]))))
    });
    f!("regexMatch", |a| {
        want("regexMatch", a, 2)?;
        Ok(Value::Bool(regex("regexMatch", &a[0])?.is_match(&text(&a[1]))))
    });
    f!("regexReplaceAll", |a| {
        want("regexReplaceAll", a, 3)?;
        Ok(s(regex("regexReplaceAll", &a[0])?.replace_all(&text(&a[2]), text(&a[1]).as_str())))
    });
    f!("toLower", |a| {
        want("toLower", a, 1)?;
        Ok(s(text(&a[0]).to_lowercase()))
    });
    f!("toUpper", |a| {
        want("toUpper", a, 1)?;
        Ok(s(text(&a[0]).to_uppercase()))
    });
    f!("toTitle", |a| {
        want("toTitle", a, 1)?;
        Ok(s(title(&text(&a[0]))))
    });
    f!("parseBool", |a| {
        want("parseBool", a, 1)?;
        let t = text(&a[0]);
        match t.as_str() {
            "" => Ok(Value::Bool(false)),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(err("parseBool", format!("{t:?} is not a boolean"))),
        }
    });
    f!("parseFloat", |a| {
        want("parseFloat", a, 1)?;
        let t = text(&a[0]);
        if t.is_empty() {
            return Ok(Value::Float(0.0));
        }
        t.trim().parse().map(Value::Float).map_err(|_| err("parseFloat", format!("{t:?} is not a number")))
    });
    f!("parseInt", |a| {
        want("parseInt", a, 1)?;
        let t = text(&a[0]);
        if t.is_empty() {
            return Ok(Value::Int(0));
        }
        t.trim().parse().map(Value::Int).map_err(|_| err("parseInt", format!("{t:?} is not an integer")))
    });
    f!("parseUint", |a| {
        want("parseUint", a, 1)?;
        let t = text(&a[0]);
        if t.is_empty() {
            return Ok(Value::Uint(0));
        }
        t.trim().parse().map(Value::Uint).map_err(|_| err("parseUint", format!("{t:?} is not an unsigned integer")))
    });
    f!("parseJSON", |a| {
        want("parseJSON", a, 1)?;
        let t = text(&a[0]);
        if t.trim().is_empty() {
            return Ok(map(Vec::new()));
        }
        let j: serde_json::Value = serde_json::from_str(&t).map_err(|e| err("parseJSON", e))?;
        Ok(from_json(&j))
    });
    f!("parseYAML", |a| {
        want("parseYAML", a, 1)?;
        yaml_to_value(&text(&a[0]))
    });
    f!("toJSON", |a| {
        want("toJSON", a, 1)?;
        Ok(s(serde_json::to_string(&to_json(&a[0])).map_err(|e| err("toJSON", e))?))
    });
    f!("toJSONPretty", |a| {
        want("toJSONPretty", a, 1)?;
        Ok(s(serde_json::to_string_pretty(&to_json(&a[0])).map_err(|e| err("toJSONPretty", e))?))
    });
    f!("toYAML", |a| {
        want("toYAML", a, 1)?;
        Ok(s(serde_yaml_ng::to_string(&to_json(&a[0])).map_err(|e| err("toYAML", e))?.trim_end()))
    });
    f!("toTOML", |a| {
        want("toTOML", a, 1)?;
        let j = to_json(&a[0]);
        Ok(s(toml::to_string(&j).map_err(|e| err("toTOML", e))?.trim_end()))
    });
    f!("base64Encode", |a| {
        want("base64Encode", a, 1)?;
        Ok(s(base64::engine::general_purpose::STANDARD.encode(text(&a[0]))))
    });
    f!("base64Decode", |a| {
        want("base64Decode", a, 1)?;
        let b =
            base64::engine::general_purpose::STANDARD.decode(text(&a[0]).trim()).map_err(|e| err("base64Decode", e))?;
        Ok(s(String::from_utf8_lossy(&b)))
    });
    f!("base64URLEncode", |a| {
        want("base64URLEncode", a, 1)?;
        Ok(s(base64::engine::general_purpose::URL_SAFE.encode(text(&a[0]))))
    });
    f!("base64URLDecode", |a| {
        want("base64URLDecode", a, 1)?;
        let b = base64::engine::general_purpose::URL_SAFE
            .decode(text(&a[0]).trim())
            .map_err(|e| err("base64URLDecode", e))?;
        Ok(s(String::from_utf8_lossy(&b)))
    });
    f!("sha256Hex", |a| {
        want("sha256Hex", a, 1)?;
        Ok(s(hex::encode(sha2::Sha256::digest(text(&a[0]).as_bytes()))))
    });
    f!("timestamp", timestamp);
    f!("add", |a| math("add", a));
    f!("subtract", |a| math("subtract", a));
    f!("multiply", |a| math("multiply", a));
    f!("divide", |a| math("divide", a));
    f!("modulo", |a| math("modulo", a));
    f!("minimum", |a| math("minimum", a));
    f!("maximum", |a| math("maximum", a));
    f!("loop", loop_);
    f!("env", |a| {
        want("env", a, 1)?;
        Ok(s(std::env::var(text(&a[0])).unwrap_or_default()))
    });
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_layouts_format_like_go() {
        let t = time::macros::datetime!(2026-03-05 07:08:09.123456789 UTC);
        assert_eq!(go_layout(t, "2006-01-02T15:04:05Z07:00"), "2026-03-05T07:08:09Z");
        assert_eq!(go_layout(t, "Jan _2 3:04PM .000"), "Mar  5 7:08AM .123");
        assert_eq!(go_layout(t, "Monday, 02-Jan-06"), "Thursday, 05-Mar-26");
    }

    #[test]
    fn titles_follow_go() {
        assert_eq!(title("hello wide world"), "Hello Wide World");
    }
}
