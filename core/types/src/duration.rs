//! Go-syntax durations (`10s`, `1.5s`, `1h30m`, `250ms`, `72h`), as Consul writes them in
//! config files, flags and query parameters.

use std::fmt;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration that reads and writes Go's `time.Duration` text form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub const fn from_secs(s: u64) -> Self {
        GoDuration(Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        GoDuration(Duration::from_millis(ms))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

/// Parses Go's duration syntax: an optional sign, then one or more decimal numbers each with a
/// unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). `"0"` alone is allowed. Negative durations are
/// rejected: nothing in Consul's surface accepts them.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let invalid = || format!("time: invalid duration \"{text}\"");
    if s == "0" || s == "+0" || s == "-0" {
        return Ok(Duration::ZERO);
    }
    let s = match s.strip_prefix('+') {
        Some(rest) => rest,
        None => s,
    };
    if s.starts_with('-') {
        return Err(format!("negative duration \"{text}\" is not allowed"));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{text}\""));
        }
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => return Err(format!("time: unknown unit \"{unit}\" in duration \"{text}\"")),
        };
        rest = &rest[unit_len..];
        total_ns += number * scale;
    }
    if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
        return Err(format!("time: invalid duration \"{text}\" (overflow)"));
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// Formats like Go's `Duration.String()`: `1h30m0s`, `1.5s`, `250ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim_frac(ns as f64 / 1e3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim_frac(ns as f64 / 1e6));
    }
    let total_secs = ns / 1_000_000_000;
    let frac_ns = ns % 1_000_000_000;
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s = total_secs % 60;
    let mut secs = s.to_string();
    if frac_ns != 0 {
        let frac = format!("{frac_ns:09}");
        secs.push('.');
        secs.push_str(frac.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_frac(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"10s\", \"1.5m\" or \"72h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                // Go's parser rejects a bare number; only zero is unambiguous.
                if v == 0 {
                    Ok(GoDuration::default())
                } else {
                    Err(E::custom(format!("time: missing unit in duration \"{v}\" (write e.g. \"{v}s\")")))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                if v < 0 {
                    return Err(E::custom(format!("negative duration \"{v}\" is not allowed")));
                }
                self.visit_u64(v as u64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_go_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_go_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go_duration("72h").unwrap(), Duration::from_secs(72 * 3600));
        assert_eq!(parse_go_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_go_duration("1.9873s").unwrap(), Duration::from_nanos(1_987_300_000));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("3us").unwrap(), Duration::from_micros(3));
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in ["", "10", "s", "10x", "1.2.3s", "-5s", "ten seconds"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_go_duration(Duration::from_secs(72 * 3600)), "72h0m0s");
    }
}
