//! Request bodies decoded as Consul does: field names case-insensitively, CamelCase or
//! snake_case (`ServiceID`, `service_id`, `serviceid`), unknown fields ignored. Map-valued
//! fields (`Meta`, `NodeMeta`, `Header`, the keys of `TaggedAddresses`) keep their keys.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::ApiError;

/// Field names of the definitions the API decodes into (snake_case, as the config types).
const FIELDS: &[&str] = &[
    // operator
    "key",
    // transactions
    "modify_index",
    "create_index",
    // sessions
    "node_checks",
    "service_checks",
    "lock_delay",
    "behavior",
    // services
    "id",
    "name",
    "kind",
    "tags",
    "address",
    "port",
    "socket_path",
    "meta",
    "tagged_addresses",
    "enable_tag_override",
    "weights",
    "passing",
    "warning",
    "check",
    "checks",
    "token",
    "namespace",
    "partition",
    "proxy",
    "connect",
    "locality",
    "region",
    "zone",
    // checks
    "check_id",
    "notes",
    "status",
    "service_id",
    "interval",
    "timeout",
    "ttl",
    "args",
    "script",
    "http",
    "method",
    "header",
    "body",
    "tls_server_name",
    "tls_skip_verify",
    "disable_redirects",
    "tcp",
    "tcp_use_tls",
    "udp",
    "grpc",
    "grpc_use_tls",
    "h2ping",
    "h2ping_use_tls",
    "docker_container_id",
    "shell",
    "os_service",
    "alias_service",
    "alias_node",
    "deregister_critical_service_after",
    "success_before_passing",
    "failures_before_warning",
    "failures_before_critical",
    "output_max_size",
    "wasm",
    "output",
    // catalog register / deregister
    "node",
    "datacenter",
    "node_meta",
    "service",
    "skip_node_update",
    "service_name",
    "service_tags",
];

/// Fields that are Go `time.Duration`s in Consul's structs: a JSON number there is nanoseconds.
const DURATIONS: &[&str] = &["interval", "timeout", "ttl", "deregister_critical_service_after"];

/// Fields whose value is a map of user keys.
const OPAQUE: &[&str] = &["meta", "node_meta", "header", "proxy", "connect", "wasm"];

fn squash(k: &str) -> String {
    k.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

fn canonical(k: &str) -> Option<&'static str> {
    let s = squash(k);
    match s.as_str() {
        // Old and alternative spellings.
        "scriptargs" => return Some("args"),
        "enabletagoverride" => return Some("enable_tag_override"),
        "deregistercriticalserviceafter" => return Some("deregister_critical_service_after"),
        "servicemeta" => return Some("meta"),
        "checkid" => return Some("check_id"),
        _ => {}
    }
    FIELDS.iter().copied().find(|f| squash(f) == s)
}

/// Rewrites object keys to their snake_case field names, recursively, except inside opaque
/// maps; drops fields nothing knows.
pub fn normalize(v: Json) -> Json {
    match v {
        Json::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Some(name) = canonical(&k) else { continue };
                let v = if OPAQUE.contains(&name) {
                    v
                } else if name == "tagged_addresses" {
                    match v {
                        Json::Object(inner) => {
                            Json::Object(inner.into_iter().map(|(tag, addr)| (tag, normalize(addr))).collect())
                        }
                        other => other,
                    }
                } else if DURATIONS.contains(&name) {
                    nanoseconds(v)
                } else {
                    normalize(v)
                };
                // CheckID and ID mean the same; the first wins, as in Consul's decoder.
                out.entry(name.to_string()).or_insert(v);
            }
            Json::Object(out)
        }
        Json::Array(a) => Json::Array(a.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// A duration given as a JSON number is nanoseconds, as Go decodes a `time.Duration` (`10` is
/// 10ns; a check interval that short is then raised to the 1 s minimum, as Consul does).
pub(crate) fn nanoseconds(v: Json) -> Json {
    match &v {
        Json::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(ns), _) => Json::String(format!("{ns}ns")),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 => Json::String(format!("{f:.0}ns")),
            _ => v,
        },
        _ => v,
    }
}

/// Decodes a JSON body into `T` after normalizing it; errors as Consul's 400
/// `Request decode failed: ...`.
pub fn body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let v: Json = if raw.iter().all(u8::is_ascii_whitespace) {
        Json::Object(Map::new())
    } else {
        serde_json::from_slice(raw).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?
    };
    let mut v = normalize(v);
    // `check_id` and `id` are one field of the check definition.
    if let Json::Object(m) = &mut v {
        if let Some(cid) = m.remove("check_id") {
            m.entry("id".to_string()).or_insert(cid);
        }
        // Consul's API accepts `Script` only as the old single-string form; `Args` wins.
        if m.get("args").is_some_and(Json::is_null) {
            m.remove("args");
        }
    }
    strip_nulls(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

/// An object's own keys (not nested ones) renamed to the one of `names` they spell
/// case-insensitively, as Go's decoder with unknown fields disallowed reads a body: an unknown
/// key is `json: unknown field "x"`. JSON `null` values are dropped; `null` itself is empty.
pub fn strict_object(v: Json, names: &[&str]) -> Result<Map<String, Json>, String> {
    let m = match v {
        Json::Object(m) => m,
        Json::Null => return Ok(Map::new()),
        _ => return Err("json: cannot unmarshal non-object".into()),
    };
    let mut out = Map::new();
    for (k, v) in m {
        let Some(name) = names.iter().find(|n| n.eq_ignore_ascii_case(&k)) else {
            return Err(format!("json: unknown field {k:?}"));
        };
        if !v.is_null() {
            out.insert(name.to_string(), v);
        }
    }
    Ok(out)
}

/// Rewrites object keys, recursively, to the one of `names` they spell case-insensitively
/// (`name`, `NAME`, `Name` -> `Name`), as Go's JSON decoder matches struct fields; other keys
/// stay as they are.
pub fn keys_as(v: Json, names: &[&str]) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let name = names.iter().find(|n| n.eq_ignore_ascii_case(&k)).map_or(k, |n| n.to_string());
                    (name, keys_as(v, names))
                })
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.into_iter().map(|v| keys_as(v, names)).collect()),
        other => other,
    }
}

/// JSON `null` means "not given" (clients send `"Tags": null`).
fn strip_nulls(v: &mut Json) {
    match v {
        Json::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Json::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use legate_config::ServiceDefinition;

    #[test]
    fn camel_snake_and_lower_case_bodies_decode_alike() {
        let camel = br#"{"ID":"jetty","Name":"test1111","Address":"localhost","Port":8500,"Tags":["dev"],
            "Meta":{"Env":"x"},"EnableTagOverride":true,"Unknown":1,
            "Checks":[{"HTTP":"http://localhost:8500/","Interval":"5s","TLSSkipVerify":true,"Header":{"X-A":["b"]}}]}"#;
        let lower = br#"{"id":"jetty","name":"test1111","address":"localhost","port":8500,"tags":["dev"],
            "meta":{"Env":"x"},"enable_tag_override":true,
            "checks":[{"http":"http://localhost:8500/","interval":"5s","tls_skip_verify":true,"header":{"X-A":["b"]}}]}"#;
        let a: ServiceDefinition = body(camel).unwrap();
        let b: ServiceDefinition = body(lower).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.meta.get("Env").map(String::as_str), Some("x"), "meta keys kept");
        assert_eq!(a.checks[0].header.get("X-A").map(|v| v[0].as_str()), Some("b"));
        assert!(a.checks[0].tls_skip_verify && a.enable_tag_override);
    }

    #[test]
    fn numeric_durations_are_nanoseconds() {
        let def: ServiceDefinition = body(
            br#"{"Name":"web","Check":{"TCP":"localhost:1","Interval":10,"Timeout":2000000000,
            "DeregisterCriticalServiceAfter":60000000000}}"#,
        )
        .unwrap();
        let check = def.check.unwrap();
        assert_eq!(check.interval.unwrap().0, std::time::Duration::from_nanos(10));
        assert_eq!(check.timeout.unwrap().0, std::time::Duration::from_secs(2));
        assert_eq!(check.deregister_critical_service_after.unwrap().0, std::time::Duration::from_secs(60));
        // Strings keep Go's duration syntax.
        let def: ServiceDefinition = body(br#"{"Name":"web","Check":{"TTL":"15s"}}"#).unwrap();
        assert_eq!(def.check.unwrap().ttl.unwrap().0, std::time::Duration::from_secs(15));
    }

    #[test]
    fn bad_json_is_a_decode_error() {
        let err = body::<ServiceDefinition>(b"{not json").unwrap_err();
        assert!(err.to_string().starts_with("Request decode failed: "), "{err}");
        let err = body::<ServiceDefinition>(br#"{"Port":"eighty"}"#).unwrap_err();
        assert!(err.to_string().starts_with("Request decode failed: "), "{err}");
    }
}
