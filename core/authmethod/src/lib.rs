//! legate-authmethod: ACL auth methods. An auth method of type `jwt` verifies a bearer token
//! (`jwt.rs`) and maps its claims; binding rules turn the verified identity into what a login
//! token holds (`binding.rs`). The HTTP layer stores methods and rules and makes the tokens.

pub mod binding;
pub mod jwt;

use std::time::Duration;

use legate_state::acl_ext::AuthMethod;

/// The auth method types Legate implements.
pub const TYPES: &[&str] = &["jwt"];

/// Bounds of `MaxTokenTTL` (Consul's `acl.token_min_expiration_ttl` / `token_max_expiration_ttl`).
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

fn go(d: Duration) -> String {
    legate_types::GoDuration(d).to_string()
}

/// Checks a method when it is written (`primary`: this is the primary datacenter) and returns
/// its parsed config; errors are Consul's texts.
pub async fn validate_method(m: &AuthMethod, primary: bool) -> Result<jwt::JwtConfig, String> {
    if m.name.is_empty() {
        return Err("Invalid Auth Method: no Name is set".into());
    }
    if m.name.len() > 128 || !m.name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return Err("Invalid Auth Method: invalid Name. Only alphanumeric characters, '-' and '_' are allowed".into());
    }
    if !TYPES.contains(&m.method_type.as_str()) {
        return Err(format!("Invalid Auth Method: Type should be one of: [{}]", TYPES.join(" ")));
    }
    if m.max_token_ttl_ns != 0 {
        let ttl = Duration::from_nanos(m.max_token_ttl_ns);
        if ttl > MAX_TOKEN_TTL {
            return Err(format!("MaxTokenTTL {} cannot be more than {}", go(ttl), go(MAX_TOKEN_TTL)));
        }
        if ttl < MIN_TOKEN_TTL {
            return Err(format!("MaxTokenTTL {} cannot be less than {}", go(ttl), go(MIN_TOKEN_TTL)));
        }
    }
    match m.token_locality.as_str() {
        "" | "local" => {}
        "global" if primary => {}
        "global" => {
            return Err("Invalid Auth Method: TokenLocality 'global' can only be used in the primary datacenter".into())
        }
        _ => return Err("Invalid Auth Method: TokenLocality should be one of 'local' or 'global'".into()),
    }
    let config = jwt::JwtConfig::parse(&m.config).map_err(|e| format!("Invalid Auth Method: {e}"))?;
    config.check_remote().await.map_err(|e| format!("Invalid Auth Method: {e}"))?;
    Ok(config)
}

/// A login token's description: Consul's text, with the login's meta as Go marshals a map
/// (sorted keys, compact, `<`, `>` and `&` escaped).
pub fn login_description(meta: &std::collections::BTreeMap<String, String>) -> String {
    if meta.is_empty() {
        return "token created via login".into();
    }
    let json = serde_json::to_string(meta)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("token created via login: {json}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn methods_are_checked_as_consul_does() {
        let ok = AuthMethod {
            name: "m1".into(),
            method_type: "jwt".into(),
            config: serde_json::json!({"JWTValidationPubKeys": ["x"]}),
            ..Default::default()
        };
        let err = |m: AuthMethod| async move { validate_method(&m, true).await.unwrap_err() };
        assert_eq!(err(AuthMethod { name: String::new(), ..ok.clone() }).await, "Invalid Auth Method: no Name is set");
        assert!(err(AuthMethod { name: "a b".into(), ..ok.clone() }).await.contains("invalid Name"));
        assert_eq!(
            err(AuthMethod { method_type: "kubernetes".into(), ..ok.clone() }).await,
            "Invalid Auth Method: Type should be one of: [jwt]"
        );
        assert_eq!(
            err(AuthMethod { max_token_ttl_ns: 25 * 3600 * 1_000_000_000, ..ok.clone() }).await,
            "MaxTokenTTL 25h0m0s cannot be more than 24h0m0s"
        );
        assert!(err(AuthMethod { token_locality: "planet".into(), ..ok.clone() }).await.contains("should be one of"));
        assert!(err(ok.clone()).await.starts_with("Invalid Auth Method: error parsing public key"));
    }

    #[test]
    fn description_as_go_marshals_the_meta() {
        assert_eq!(login_description(&Default::default()), "token created via login");
        let meta = [("b".to_string(), "<x>".to_string()), ("a".to_string(), "1".to_string())].into();
        assert_eq!(login_description(&meta), r#"token created via login: {"a":"1","b":"\u003cx\u003e"}"#);
    }
}
