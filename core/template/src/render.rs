//! One template, compiled once and rendered against the data at hand. Its data functions
//! (`key`, `service`, ...) look their dependency up in the [`Brain`]; one without data yet
//! renders empty and is reported missing, so the output is not written until every dependency
//! has answered (consul-template's model).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use gotmpl::{MissingKey, Template, TemplateError, Value};

use crate::deps::{kv_query, list, s, service_query, Dep};
use crate::funcs::{self, text};

/// What the dependencies returned so far.
#[derive(Clone, Default)]
pub struct Brain {
    pub data: HashMap<Dep, Value>,
}

#[derive(Default)]
struct State {
    brain: Arc<Brain>,
    used: BTreeSet<Dep>,
    missing: BTreeSet<Dep>,
}

/// One render's result.
#[derive(Debug)]
pub struct Rendered {
    pub output: String,
    /// Every dependency the template read.
    pub used: BTreeSet<Dep>,
    /// Those without data yet (or that block: a `key` that does not exist, an empty `safeLs`):
    /// the output is incomplete.
    pub missing: BTreeSet<Dep>,
}

impl Rendered {
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// A parsed template and the state its functions share.
pub struct Compiled {
    template: Template,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Looks a dependency up: its data, or None (recorded missing).
fn recall(state: &Mutex<State>, dep: Dep) -> Option<Value> {
    let mut st = lock(state);
    st.used.insert(dep.clone());
    let found = st.brain.data.get(&dep).cloned();
    if found.is_none() {
        st.missing.insert(dep);
    }
    found
}

fn block(state: &Mutex<State>, dep: Dep) {
    lock(state).missing.insert(dep);
}

fn err(name: &str, why: impl std::fmt::Display) -> TemplateError {
    TemplateError::Exec(format!("{name}: {why}"))
}

fn one_string(name: &str, args: &[Value]) -> Result<String, TemplateError> {
    match args {
        [v] => Ok(text(v)),
        _ => Err(err(name, format!("wrong number of args: want 1 got {}", args.len()))),
    }
}

/// Pairs under `prefix` with `Key` relative to it (`ls`: only the top level; `tree`: all but
/// folders).
fn listing(all: &Value, prefix: &str, top_only: bool) -> Value {
    let prefix = prefix.trim_start_matches('/');
    let mut out = Vec::new();
    if let Value::List(pairs) = all {
        for p in pairs.iter() {
            let path = p.field("Path").map(text).unwrap_or_default();
            let rel = path.strip_prefix(prefix).unwrap_or(&path).trim_start_matches('/').to_string();
            let keep =
                if top_only { !rel.is_empty() && !rel.contains('/') } else { !rel.is_empty() && !rel.ends_with('/') };
            if !keep {
                continue;
            }
            if let Value::Map(m) = p {
                let mut m = (**m).clone();
                m.insert(Arc::from("Key"), s(&rel));
                out.push(Value::Map(Arc::new(m)));
            }
        }
    }
    list(out)
}

impl Compiled {
    /// Parses `text` (named `name` in errors: `template: <name>:<line>:<col>: ...`).
    pub fn new(
        name: &str,
        text_src: &str,
        delims: (&str, &str),
        error_on_missing_key: bool,
    ) -> Result<Compiled, String> {
        let state = Arc::new(Mutex::new(State::default()));
        let mut t = Template::new(name).delims(delims.0, delims.1).missing_key(if error_on_missing_key {
            MissingKey::Error
        } else {
            MissingKey::ZeroValue
        });
        t = funcs::register(t);
        t = register_data(t, &state);
        let template = t.parse(text_src).map_err(|e| match e {
            TemplateError::Parse { line, col, message, .. } | TemplateError::Lex { line, col, message, .. } => {
                format!("{name}:{line}:{col}: {message}")
            }
            other => format!("{name}: {other}"),
        })?;
        Ok(Compiled { template, state })
    }

    /// Renders with the data in `brain`. An error with dependencies still missing is not an
    /// error yet (functions saw empty data): the render is just incomplete.
    pub fn render(&self, brain: Arc<Brain>) -> Result<Rendered, String> {
        {
            let mut st = lock(&self.state);
            st.brain = brain;
            st.used.clear();
            st.missing.clear();
        }
        let result = self.template.execute_to_string(&Value::Nil);
        let mut st = lock(&self.state);
        let used = std::mem::take(&mut st.used);
        let missing = std::mem::take(&mut st.missing);
        st.brain = Arc::new(Brain::default());
        match result {
            Ok(output) => Ok(Rendered { output, used, missing }),
            Err(_) if !missing.is_empty() => Ok(Rendered { output: String::new(), used, missing }),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn register_data(t: Template, state: &Arc<Mutex<State>>) -> Template {
    let mut t = t;
    macro_rules! data {
        ($name:literal, |$st:ident, $args:ident| $body:expr) => {{
            let $st = state.clone();
            t = t.func($name, move |$args: &[Value]| -> Result<Value, TemplateError> { $body });
        }};
    }
    data!("key", |st, a| {
        let (key, dc) = kv_query(&one_string("key", a)?);
        let dep = Dep::Key { key, dc };
        Ok(match recall(&st, dep.clone()) {
            Some(Value::Nil) => {
                // consul-template blocks until the key exists.
                block(&st, dep);
                s("")
            }
            Some(v) => v,
            None => s(""),
        })
    });
    data!("keyOrDefault", |st, a| {
        let [k, default] = a else { return Err(err("keyOrDefault", "want a key and a default")) };
        let (key, dc) = kv_query(&text(k));
        Ok(match recall(&st, Dep::Key { key, dc }) {
            Some(Value::String(v)) if !v.is_empty() => Value::String(v),
            _ => default.clone(),
        })
    });
    data!("keyExists", |st, a| {
        let (key, dc) = kv_query(&one_string("keyExists", a)?);
        Ok(Value::Bool(matches!(recall(&st, Dep::Key { key, dc }), Some(v) if !matches!(v, Value::Nil))))
    });
    for (name, top_only, safe) in
        [("ls", true, false), ("tree", false, false), ("safeLs", true, true), ("safeTree", false, true)]
    {
        let st = state.clone();
        t = t.func(name, move |a: &[Value]| {
            let (prefix, dc) = kv_query(&one_string(name, a)?);
            let dep = Dep::List { prefix: prefix.clone(), dc };
            let Some(all) = recall(&st, dep.clone()) else { return Ok(list(Vec::new())) };
            let out = listing(&all, &prefix, top_only);
            if safe && out.is_empty() == Some(true) {
                // Refuse to render with an empty listing (safeLs, safeTree).
                block(&st, dep);
            }
            Ok(out)
        });
    }
    data!("service", |st, a| {
        let q = service_query(&a.iter().map(text).collect::<Vec<_>>()).map_err(|e| err("service", e))?;
        Ok(recall(&st, Dep::Service(q)).unwrap_or_else(|| list(Vec::new())))
    });
    data!("services", |st, a| {
        let dc = match a {
            [] => None,
            [q] => text(q).split_once('@').map(|(_, dc)| dc.to_string()),
            _ => return Err(err("services", "takes at most one argument")),
        };
        Ok(recall(&st, Dep::Services { dc }).unwrap_or_else(|| list(Vec::new())))
    });
    data!("node", |st, a| {
        let (name, dc) = match a {
            [] => (None, None),
            [q] => {
                let q = text(q);
                let (name, dc) = match q.split_once('@') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (q, None),
                };
                (Some(name).filter(|n| !n.is_empty()), dc)
            }
            _ => return Err(err("node", "takes at most one argument")),
        };
        Ok(recall(&st, Dep::Node { name, dc }).unwrap_or(Value::Nil))
    });
    data!("nodes", |st, a| {
        let (dc, near) = match a {
            [] => (None, None),
            [q] => {
                let q = text(q);
                let (rest, near) = match q.split_once('~') {
                    Some((r, n)) => (r.to_string(), Some(n.to_string())),
                    None => (q, None),
                };
                (rest.split_once('@').map(|(_, d)| d.to_string()), near)
            }
            _ => return Err(err("nodes", "takes at most one argument")),
        };
        Ok(recall(&st, Dep::Nodes { dc, near }).unwrap_or_else(|| list(Vec::new())))
    });
    data!("datacenters", |st, a| {
        let reachable_only = match a {
            [] => false,
            [Value::Bool(b)] => *b,
            _ => return Err(err("datacenters", "takes at most one boolean")),
        };
        Ok(recall(&st, Dep::Datacenters { reachable_only }).unwrap_or_else(|| list(Vec::new())))
    });
    data!("file", |st, a| {
        let path = one_string("file", a)?;
        if path.is_empty() {
            return Ok(s(""));
        }
        Ok(recall(&st, Dep::File(path.into())).unwrap_or_else(|| s("")))
    });
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dependency_makes_the_render_incomplete_until_it_answers() {
        let t = Compiled::new(
            "t.tpl",
            "a={{ key \"app/a\" }} b={{ keyOrDefault \"app/b\" \"dflt\" }}",
            ("{{", "}}"),
            false,
        )
        .unwrap();
        let first = t.render(Arc::new(Brain::default())).unwrap();
        assert!(!first.complete());
        assert_eq!(first.missing.len(), 2);
        let mut brain = Brain::default();
        brain.data.insert(Dep::Key { key: "app/a".into(), dc: None }, s("1"));
        brain.data.insert(Dep::Key { key: "app/b".into(), dc: None }, Value::Nil);
        let done = t.render(Arc::new(brain.clone())).unwrap();
        assert!(done.complete(), "{:?}", done.missing);
        assert_eq!(done.output, "a=1 b=dflt");
        // `key` on a key that does not exist blocks.
        brain.data.insert(Dep::Key { key: "app/a".into(), dc: None }, Value::Nil);
        assert!(!t.render(Arc::new(brain)).unwrap().complete());
    }

    #[test]
    fn parse_errors_name_file_line_and_column() {
        let e = Compiled::new("nginx.ctmpl", "ok\n{{ if }}", ("{{", "}}"), false).err().unwrap();
        assert!(e.starts_with("nginx.ctmpl:2:"), "{e}");
    }
}
