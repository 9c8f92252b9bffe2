//! HTTP JSON probe: GETs (or POSTs) a URL through the host and checks
//! - the status code (`expect_status`, default: any 2xx),
//! - optionally a JSON field (`json_path`, dotted, array indexes allowed: `checks.0.status`)
//!   against `json_equals` (compared as text; strings without quotes),
//! - the latency: above `warn_ms` the check is `warning`, above `critical_ms` `critical`.
//!
//! Args: url (required), method (GET|POST|PUT|HEAD|DELETE), body, header_<name>,
//! expect_status, json_path, json_equals, warn_ms, critical_ms, timeout_ms, tls_skip_verify.

use legate_plugin::http::{self, Method};
use legate_plugin::{export_check, Check, CheckContext, CheckResult, Config};

struct HttpJson;

const KNOWN: &[&str] = &[
    "url",
    "method",
    "body",
    "expect_status",
    "json_path",
    "json_equals",
    "warn_ms",
    "critical_ms",
    "timeout_ms",
    "tls_skip_verify",
];

fn method(config: &Config) -> Result<Method, String> {
    Ok(match config.get("method").unwrap_or("GET").to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "HEAD" => Method::Head,
        "DELETE" => Method::Delete,
        other => return Err(format!("arg \"method\": unsupported method {other:?}")),
    })
}

/// Follows a dotted path through objects and arrays.
fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').filter(|s| !s.is_empty()).try_fold(v, |v, part| match v {
        serde_json::Value::Object(m) => m.get(part),
        serde_json::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Check for HttpJson {
    fn validate(config: &Config) -> Result<(), String> {
        for (k, _) in &config.0 {
            if !KNOWN.contains(&k.as_str()) && !k.starts_with("header_") {
                return Err(format!("unknown arg {k:?} (known: {}, header_<name>)", KNOWN.join(", ")));
            }
        }
        let url = config.require("url")?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("arg \"url\": {url:?} is not an http:// or https:// URL"));
        }
        method(config)?;
        config.parse::<u16>("expect_status")?;
        config.parse::<u64>("warn_ms")?;
        config.parse::<u64>("critical_ms")?;
        config.parse::<u32>("timeout_ms")?;
        config.parse::<bool>("tls_skip_verify")?;
        if config.get("json_equals").is_some() && config.get("json_path").is_none() {
            return Err("arg \"json_equals\" needs \"json_path\"".into());
        }
        Ok(())
    }

    fn check(_ctx: &CheckContext, config: &Config) -> Result<CheckResult, String> {
        let url = config.require("url")?;
        let mut req = http::request(method(config)?, url, config.parse_or("timeout_ms", 0)?);
        req.tls_skip_verify = config.parse_or("tls_skip_verify", false)?;
        req.body = config.get("body").map(|b| b.as_bytes().to_vec());
        for (k, v) in &config.0 {
            if let Some(name) = k.strip_prefix("header_") {
                req.headers.push((name.to_string(), v.clone()));
            }
        }
        let resp = http::send(&req).map_err(|e| format!("{url}: {}", http::describe(&e)))?;
        let ms = resp.elapsed_us / 1000;
        let status_ok = match config.parse::<u16>("expect_status")? {
            Some(want) => resp.status == want,
            None => (200..300).contains(&resp.status),
        };
        if !status_ok {
            return Ok(CheckResult::critical(format!("{url}: HTTP {} in {ms} ms", resp.status)));
        }
        let mut detail = String::new();
        if let Some(path) = config.get("json_path") {
            let doc: serde_json::Value = serde_json::from_slice(&resp.body)
                .map_err(|e| format!("{url}: HTTP {}, body is not JSON: {e}", resp.status))?;
            let Some(found) = lookup(&doc, path) else {
                return Ok(CheckResult::critical(format!("{url}: JSON field {path:?} is missing")));
            };
            let found = text(found);
            if let Some(want) = config.get("json_equals") {
                let want = want.trim_matches('"');
                if found != want {
                    return Ok(CheckResult::critical(format!("{url}: {path} is {found:?}, expected {want:?}")));
                }
            }
            detail = format!(", {path} = {found:?}");
        }
        let out = format!("{url}: HTTP {} in {ms} ms{detail}", resp.status);
        if let Some(c) = config.parse::<u64>("critical_ms")? {
            if ms > c {
                return Ok(CheckResult::critical(format!("{out} (slower than {c} ms)")));
            }
        }
        if let Some(w) = config.parse::<u64>("warn_ms")? {
            if ms > w {
                return Ok(CheckResult::warning(format!("{out} (slower than {w} ms)")));
            }
        }
        Ok(CheckResult::passing(out))
    }
}

export_check!(HttpJson);
