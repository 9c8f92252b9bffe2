//! The `jwt` auth method: its config (Consul's keys), checked when the method is written, and
//! the validation of a bearer token at login: the signature against static public keys, a JWKS
//! URL or an OIDC discovery document, then Consul's claim checks (issuer, times with leeways,
//! audiences) and the claim mappings.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value as Json;

/// Consul's config keys for `jwt` (mapstructure matches them case-insensitively).
const KEYS: &[&str] = &[
    "JWTValidationPubKeys",
    "JWKSURL",
    "JWKSCACert",
    "OIDCDiscoveryURL",
    "OIDCDiscoveryCACert",
    "BoundIssuer",
    "BoundAudiences",
    "ClaimMappings",
    "ListClaimMappings",
    "JWTSupportedAlgs",
    "ExpirationLeeway",
    "NotBeforeLeeway",
    "ClockSkewLeeway",
];

const SUPPORTED_ALGS: &[&str] =
    &["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"];

/// How long fetched key sets are reused before they are fetched again (an unknown `kid`
/// fetches at once).
const JWKS_TTL: Duration = Duration::from_secs(300);

/// A `jwt` auth method's config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JwtConfig {
    pub pub_keys: Vec<String>,
    pub jwks_url: String,
    pub jwks_ca_cert: String,
    pub oidc_discovery_url: String,
    pub oidc_discovery_ca_cert: String,
    pub bound_issuer: String,
    pub bound_audiences: Vec<String>,
    /// Claim locator -> name (`value.<name>`).
    pub claim_mappings: BTreeMap<String, String>,
    /// Claim locator -> name (`list.<name>`).
    pub list_claim_mappings: BTreeMap<String, String>,
    pub supported_algs: Vec<String>,
    pub expiration_leeway: Option<Duration>,
    pub not_before_leeway: Option<Duration>,
    pub clock_skew_leeway: Option<Duration>,
}

/// A leeway: nanoseconds (as Consul decodes it) or a Go duration string; negative means none.
fn leeway(v: &Json, key: &str) -> Result<Option<Duration>, String> {
    match v {
        Json::Null => Ok(None),
        Json::Number(n) => match n.as_i64() {
            Some(ns) if ns < 0 => Ok(Some(Duration::ZERO)),
            Some(0) => Ok(None),
            Some(ns) => Ok(Some(Duration::from_nanos(ns as u64))),
            None => Err(format!("error decoding config: '{key}' expected type 'time.Duration', got {n}")),
        },
        Json::String(s) if s.starts_with('-') => Ok(Some(Duration::ZERO)),
        Json::String(s) => legate_types::duration::parse_go_duration(s)
            .map(|d| (!d.is_zero()).then_some(d))
            .map_err(|e| format!("error decoding config: '{key}' {e}")),
        other => Err(format!("error decoding config: '{key}' expected type 'time.Duration', got {other}")),
    }
}

fn strings(v: &Json, key: &str) -> Result<Vec<String>, String> {
    match v {
        Json::Null => Ok(Vec::new()),
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("error decoding config: '{key}' expected a list of strings"))
            })
            .collect(),
        _ => Err(format!("error decoding config: '{key}' expected a list of strings")),
    }
}

fn string(v: &Json, key: &str) -> Result<String, String> {
    match v {
        Json::Null => Ok(String::new()),
        Json::String(s) => Ok(s.clone()),
        _ => Err(format!("error decoding config: '{key}' expected type 'string'")),
    }
}

fn mapping(v: &Json, key: &str) -> Result<BTreeMap<String, String>, String> {
    match v {
        Json::Null => Ok(BTreeMap::new()),
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| format!("error decoding config: '{key}[{k}]' expected type 'string'"))
            })
            .collect(),
        _ => Err(format!("error decoding config: '{key}' expected a map")),
    }
}

impl JwtConfig {
    /// Decodes and checks a method's `Config` (what Consul reports as `Invalid Auth Method: ...`,
    /// without the prefix). Fetching the key set is [`JwtConfig::check_remote`].
    pub fn parse(config: &Json) -> Result<JwtConfig, String> {
        let empty = serde_json::Map::new();
        let m = match config {
            Json::Object(m) => m,
            Json::Null => &empty,
            _ => return Err("error decoding config: expected a map".into()),
        };
        let mut canonical: BTreeMap<&str, &Json> = BTreeMap::new();
        let mut unknown = Vec::new();
        for (k, v) in m {
            match KEYS.iter().find(|key| key.eq_ignore_ascii_case(k)) {
                Some(key) => {
                    canonical.insert(key, v);
                }
                None => unknown.push(k.clone()),
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            return Err(format!(
                "error decoding config: 1 error(s) decoding:\n\n* '' has invalid keys: {}",
                unknown.join(", ")
            ));
        }
        let get = |k: &str| canonical.get(k).copied().unwrap_or(&Json::Null);
        let c = JwtConfig {
            pub_keys: strings(get("JWTValidationPubKeys"), "JWTValidationPubKeys")?,
            jwks_url: string(get("JWKSURL"), "JWKSURL")?,
            jwks_ca_cert: string(get("JWKSCACert"), "JWKSCACert")?,
            oidc_discovery_url: string(get("OIDCDiscoveryURL"), "OIDCDiscoveryURL")?,
            oidc_discovery_ca_cert: string(get("OIDCDiscoveryCACert"), "OIDCDiscoveryCACert")?,
            bound_issuer: string(get("BoundIssuer"), "BoundIssuer")?,
            bound_audiences: strings(get("BoundAudiences"), "BoundAudiences")?,
            claim_mappings: mapping(get("ClaimMappings"), "ClaimMappings")?,
            list_claim_mappings: mapping(get("ListClaimMappings"), "ListClaimMappings")?,
            supported_algs: strings(get("JWTSupportedAlgs"), "JWTSupportedAlgs")?,
            expiration_leeway: leeway(get("ExpirationLeeway"), "ExpirationLeeway")?,
            not_before_leeway: leeway(get("NotBeforeLeeway"), "NotBeforeLeeway")?,
            clock_skew_leeway: leeway(get("ClockSkewLeeway"), "ClockSkewLeeway")?,
        };
        let modes = [!c.pub_keys.is_empty(), !c.jwks_url.is_empty(), !c.oidc_discovery_url.is_empty()];
        if modes.iter().filter(|m| **m).count() != 1 {
            return Err(
                "exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set for type \"jwt\""
                    .into(),
            );
        }
        if !c.jwks_ca_cert.is_empty() && c.jwks_url.is_empty() {
            return Err("'JWKSCACert' should not be set unless 'JWKSURL' is set".into());
        }
        if !c.oidc_discovery_ca_cert.is_empty() && c.oidc_discovery_url.is_empty() {
            return Err("'OIDCDiscoveryCACert' should not be set unless 'OIDCDiscoveryURL' is set".into());
        }
        for (i, pem) in c.pub_keys.iter().enumerate() {
            decoding_key(pem).map_err(|e| format!("error parsing public key JWTValidationPubKeys[{i}]: {e}"))?;
        }
        for a in &c.supported_algs {
            if !SUPPORTED_ALGS.contains(&a.as_str()) {
                return Err(format!("Invalid supported algorithm: {a}"));
            }
        }
        for (what, map) in [("ClaimMappings", &c.claim_mappings), ("ListClaimMappings", &c.list_claim_mappings)] {
            let mut seen = std::collections::HashSet::new();
            for name in map.values() {
                if !seen.insert(name) {
                    return Err(format!("{what} contains multiple mappings for key {name:?}"));
                }
            }
        }
        if !c.jwks_ca_cert.is_empty() {
            reqwest::Certificate::from_pem(c.jwks_ca_cert.as_bytes())
                .map_err(|_| "error checking JWKSCACert: could not parse CA PEM value successfully".to_string())?;
        }
        if !c.oidc_discovery_ca_cert.is_empty() {
            reqwest::Certificate::from_pem(c.oidc_discovery_ca_cert.as_bytes()).map_err(|_| {
                "error checking OIDCDiscoveryCACert: could not parse CA PEM value successfully".to_string()
            })?;
        }
        Ok(c)
    }

    /// Fetches the JWKS or the discovery document once, as Consul does when the method is
    /// written, so a wrong URL is refused then rather than at every login.
    pub async fn check_remote(&self) -> Result<(), String> {
        if !self.jwks_url.is_empty() {
            fetch_jwks(&self.jwks_url, &self.jwks_ca_cert).await.map_err(|e| format!("error checking JWKSURL: {e}"))?;
        }
        if !self.oidc_discovery_url.is_empty() {
            discover(self).await.map_err(|e| format!("error checking OIDCDiscoveryURL: {e}"))?;
        }
        Ok(())
    }

    /// The names a binding rule may use: `value.<n>` and `list.<n>`.
    pub fn mapped_names(&self) -> (Vec<String>, Vec<String>) {
        (self.claim_mappings.values().cloned().collect(), self.list_claim_mappings.values().cloned().collect())
    }
}

/// A PEM public key (PKIX: RSA, ECDSA or Ed25519).
fn decoding_key(pem: &str) -> Result<(DecodingKey, &'static [Algorithm]), String> {
    use Algorithm::*;
    const RSA: &[Algorithm] = &[RS256, RS384, RS512, PS256, PS384, PS512];
    const EC: &[Algorithm] = &[ES256, ES384];
    const ED: &[Algorithm] = &[EdDSA];
    if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((k, RSA));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((k, EC));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem.as_bytes()) {
        return Ok((k, ED));
    }
    Err("data does not contain any valid RSA, ECDSA, or ED25519 public keys".into())
}

fn http_client(ca_pem: &str) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if !ca_pem.is_empty() {
        let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
    }
    b.build().map_err(|e| e.to_string())
}

async fn fetch_json(url: &str, ca_pem: &str) -> Result<Json, String> {
    let resp = http_client(ca_pem)?.get(url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    resp.json().await.map_err(|e| format!("{url}: {e}"))
}

async fn fetch_jwks(url: &str, ca_pem: &str) -> Result<JwkSet, String> {
    serde_json::from_value(fetch_json(url, ca_pem).await?).map_err(|e| format!("invalid key set: {e}"))
}

/// The provider's issuer and key set, from its discovery document.
async fn discover(c: &JwtConfig) -> Result<(String, JwkSet), String> {
    let url = format!("{}/.well-known/openid-configuration", c.oidc_discovery_url.trim_end_matches('/'));
    let doc = fetch_json(&url, &c.oidc_discovery_ca_cert).await?;
    let issuer = doc["issuer"].as_str().unwrap_or_default().to_string();
    if issuer.trim_end_matches('/') != c.oidc_discovery_url.trim_end_matches('/') {
        return Err(format!(
            "oidc: issuer did not match the issuer returned by provider, expected {:?} got {issuer:?}",
            c.oidc_discovery_url
        ));
    }
    let jwks_uri = doc["jwks_uri"].as_str().ok_or("discovery document has no jwks_uri")?;
    Ok((issuer, fetch_jwks(jwks_uri, &c.oidc_discovery_ca_cert).await?))
}

/// A fetched key set: when, and the issuer the discovery document named ("" for a JWKS URL).
type FetchedKeys = (Instant, String, JwkSet);

/// Key sets fetched at logins, by method (name, ModifyIndex).
static JWKS_CACHE: LazyLock<Mutex<BTreeMap<(String, u64), FetchedKeys>>> = LazyLock::new(Mutex::default);

/// What a verified bearer token says, through the method's claim mappings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verified {
    /// `value.<name>` (absent claims are absent).
    pub values: BTreeMap<String, String>,
    /// `list.<name>`.
    pub lists: BTreeMap<String, Vec<String>>,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Validates `bearer` for the method called `method` (at `modify_index`, for the key cache)
/// and maps its claims. Errors are Consul's texts.
pub async fn verify(c: &JwtConfig, method: &str, modify_index: u64, bearer: &str) -> Result<Verified, String> {
    if bearer.is_empty() {
        return Err("missing jwt".into());
    }
    if bearer.split('.').count() != 3 {
        return Err("error parsing token: go-jose/go-jose: compact JWS format must have three parts".into());
    }
    let header = jsonwebtoken::decode_header(bearer).map_err(|e| format!("error parsing token: {e}"))?;
    let claims = if !c.pub_keys.is_empty() {
        let mut found = None;
        for pem in &c.pub_keys {
            let (key, algs) = decoding_key(pem)?;
            if !algs.contains(&header.alg) {
                continue;
            }
            if let Ok(claims) = signed_claims(bearer, &key, header.alg) {
                found = Some(claims);
                break;
            }
        }
        found.ok_or("no known key successfully validated the token signature")?
    } else {
        let key = (method.to_string(), modify_index);
        let cached = JWKS_CACHE.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let known_kid = |set: &JwkSet| header.kid.as_deref().is_none_or(|kid| set.find(kid).is_some());
        let (issuer, set) = match cached {
            Some((at, issuer, set)) if at.elapsed() < JWKS_TTL && known_kid(&set) => (issuer, set),
            _ => {
                let (issuer, set) = if c.jwks_url.is_empty() {
                    discover(c).await.map_err(|e| format!("error validating signature: {e}"))?
                } else {
                    (
                        String::new(),
                        fetch_jwks(&c.jwks_url, &c.jwks_ca_cert)
                            .await
                            .map_err(|e| format!("error verifying token: {e}"))?,
                    )
                };
                JWKS_CACHE
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (Instant::now(), issuer.clone(), set.clone()));
                (issuer, set)
            }
        };
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match header.kid.as_deref() {
            Some(kid) => set.find(kid).into_iter().collect(),
            None => set.keys.iter().collect(),
        };
        let claims = candidates
            .iter()
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
            .find_map(|k| signed_claims(bearer, &k, header.alg).ok());
        let prefix = if c.jwks_url.is_empty() { "error validating signature" } else { "error verifying token" };
        let claims = claims.ok_or_else(|| format!("{prefix}: failed to verify id token signature"))?;
        if !c.oidc_discovery_url.is_empty() {
            if !c.supported_algs.is_empty() && !c.supported_algs.iter().any(|a| a == &format!("{:?}", header.alg)) {
                return Err(format!("error validating signature: oidc: id token signed with unsupported algorithm, expected {:?} got {:?}", c.supported_algs, header.alg));
            }
            if claims["iss"].as_str() != Some(issuer.as_str()) {
                return Err(format!("error validating signature: oidc: id token issued by a different provider, expected {issuer:?} got {:?}", claims["iss"].as_str().unwrap_or_default()));
            }
            if claims["exp"].as_i64().is_some_and(|exp| exp < now_secs()) {
                return Err("error validating signature: oidc: token is expired".into());
            }
            check_audience(c, &claims, false)?;
            return map_claims(c, &claims);
        }
        claims
    };
    check_claims(c, &claims, now_secs())?;
    check_audience(c, &claims, true)?;
    map_claims(c, &claims)
}

/// The claims of a token whose signature `key` verifies (no claim checks here).
fn signed_claims(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Json, jsonwebtoken::errors::Error> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Json>(token, key, &v).map(|d| d.claims)
}

/// Consul's time and issuer checks: a missing `exp` is `max(iat, nbf)` plus the expiration
/// leeway (150 s), a missing `nbf` is `iat` or `exp` minus the not-before leeway (150 s), and
/// the checks allow the clock-skew leeway (60 s).
fn check_claims(c: &JwtConfig, claims: &Json, now: i64) -> Result<(), String> {
    let num = |k: &str| claims[k].as_f64().map(|f| f as i64).unwrap_or(0);
    let (iat, mut nbf, mut exp) = (num("iat"), num("nbf"), num("exp"));
    if iat == 0 && nbf == 0 && exp == 0 {
        return Err("no issue time, notbefore, or expiration time encoded in token".into());
    }
    let secs = |d: Option<Duration>, default: i64| d.map_or(default, |d| d.as_secs() as i64);
    if exp == 0 {
        exp = iat.max(nbf) + secs(c.expiration_leeway, 150);
    }
    if nbf == 0 {
        nbf = if iat != 0 { iat } else { exp - secs(c.not_before_leeway, 150) };
    }
    let skew = secs(c.clock_skew_leeway, 60);
    let fail = |why: &str| Err(format!("error validating claims: go-jose/go-jose/jwt: validation failed, {why}"));
    if !c.bound_issuer.is_empty() && claims["iss"].as_str() != Some(c.bound_issuer.as_str()) {
        return fail("invalid issuer claim (iss)");
    }
    if now + skew < nbf {
        return fail("token not valid yet (nbf)");
    }
    if now - skew > exp {
        return fail("token is expired (exp)");
    }
    if iat != 0 && now + skew < iat {
        return Err(
            "error validating claims: go-jose/go-jose/jwt: validation field, token issued in the future (iat)".into()
        );
    }
    Ok(())
}

/// `aud` against `BoundAudiences`: any one match; in strict mode a token with an audience
/// needs bound audiences.
fn check_audience(c: &JwtConfig, claims: &Json, strict: bool) -> Result<(), String> {
    let aud: Vec<&str> = match &claims["aud"] {
        Json::String(s) => vec![s.as_str()],
        Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    if c.bound_audiences.is_empty() {
        if strict && !aud.is_empty() {
            return Err("error validating claims: audience claim found in JWT but no audiences are bound".into());
        }
        return Ok(());
    }
    if c.bound_audiences.iter().any(|b| aud.contains(&b.as_str())) {
        Ok(())
    } else {
        Err("error validating claims: aud claim does not match any bound audience".into())
    }
}

/// A claim by locator: `/a/b` is a JSON pointer, anything else a top-level claim name.
fn claim<'a>(claims: &'a Json, locator: &str) -> Option<&'a Json> {
    if locator.starts_with('/') { claims.pointer(locator) } else { claims.get(locator) }.filter(|v| !v.is_null())
}

fn stringify(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(n) => {
            Some(n.as_i64().map_or_else(|| (n.as_f64().unwrap_or(0.0) as i64).to_string(), |i| i.to_string()))
        }
        _ => None,
    }
}

fn map_claims(c: &JwtConfig, claims: &Json) -> Result<Verified, String> {
    let mut out = Verified::default();
    for (locator, name) in &c.claim_mappings {
        if let Some(v) = claim(claims, locator) {
            let s = stringify(v)
                .ok_or_else(|| format!("error converting claim '{locator}' to string from unknown type {}", kind(v)))?;
            out.values.insert(name.clone(), s);
        }
    }
    for (locator, name) in &c.list_claim_mappings {
        if let Some(v) = claim(claims, locator) {
            let items: Vec<&Json> = match v {
                Json::Array(a) => a.iter().collect(),
                Json::Object(_) => return Err(format!("{locator:?} list claim could not be converted to string list")),
                scalar => vec![scalar],
            };
            let mut list = Vec::new();
            for item in items {
                let s = stringify(item)
                    .ok_or_else(|| format!("value {item} in {locator:?} list claim could not be parsed as string"))?;
                if !s.is_empty() {
                    list.push(s);
                }
            }
            out.lists.insert(name.clone(), list);
        }
    }
    Ok(out)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Array(_) => "[]interface {}",
        Json::Object(_) => "map[string]interface {}",
        _ => "interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_is_checked_as_consul_does() {
        let err = |v: Json| JwtConfig::parse(&v).unwrap_err();
        assert!(err(json!({})).starts_with("exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL'"));
        assert!(err(json!({"JWKSURL": "http://x", "OIDCDiscoveryURL": "http://y"})).starts_with("exactly one of"));
        assert!(err(json!({"JWKSURL": "http://x", "Foo": 1})).ends_with("has invalid keys: Foo"));
        assert!(err(json!({"JWTValidationPubKeys": ["not a key"]}))
            .starts_with("error parsing public key JWTValidationPubKeys[0]: data does not contain"));
        assert_eq!(
            err(json!({"JWKSURL": "http://x", "JWTSupportedAlgs": ["HS256"]})),
            "Invalid supported algorithm: HS256"
        );
        assert_eq!(
            err(json!({"JWKSURL": "http://x", "ClaimMappings": {"a": "n", "b": "n"}})),
            "ClaimMappings contains multiple mappings for key \"n\""
        );
        assert_eq!(
            err(json!({"OIDCDiscoveryURL": "http://x", "JWKSCACert": "x"})),
            "'JWKSCACert' should not be set unless 'JWKSURL' is set"
        );
        let c = JwtConfig::parse(
            &json!({"jwksurl": "http://x", "ClockSkewLeeway": 5_000_000_000u64, "NotBeforeLeeway": "2m"}),
        )
        .unwrap();
        assert_eq!(c.clock_skew_leeway, Some(Duration::from_secs(5)));
        assert_eq!(c.not_before_leeway, Some(Duration::from_secs(120)));
    }

    #[test]
    fn time_claims_with_leeways() {
        let c = JwtConfig::default();
        let now = 1_000_000;
        assert!(check_claims(&c, &json!({"iat": now, "exp": now + 60}), now).is_ok());
        assert_eq!(
            check_claims(&c, &json!({"sub": "x"}), now).unwrap_err(),
            "no issue time, notbefore, or expiration time encoded in token"
        );
        // Expired beyond the 60 s skew; within it passes.
        assert!(check_claims(&c, &json!({"exp": now - 61}), now).unwrap_err().ends_with("token is expired (exp)"));
        assert!(check_claims(&c, &json!({"exp": now - 59}), now).is_ok());
        // No exp: iat + 150 s.
        assert!(check_claims(&c, &json!({"iat": now - 149}), now).is_ok());
        assert!(check_claims(&c, &json!({"iat": now - 300}), now).is_err());
        assert!(check_claims(&c, &json!({"nbf": now + 120, "exp": now + 500}), now).unwrap_err().ends_with("(nbf)"));
        let bound = JwtConfig { bound_issuer: "me".into(), ..Default::default() };
        assert!(check_claims(&bound, &json!({"iss": "you", "exp": now + 5}), now).unwrap_err().ends_with("(iss)"));
    }

    #[test]
    fn audiences_and_mappings() {
        let c = JwtConfig { bound_audiences: vec!["a".into(), "b".into()], ..Default::default() };
        assert!(check_audience(&c, &json!({"aud": ["x", "b"]}), true).is_ok());
        assert!(check_audience(&c, &json!({"aud": "x"}), true).is_err());
        let none = JwtConfig::default();
        assert!(check_audience(&none, &json!({"aud": "x"}), true).unwrap_err().contains("no audiences are bound"));
        assert!(check_audience(&none, &json!({"aud": "x"}), false).is_ok());
        let c = JwtConfig {
            claim_mappings: [("/org/team".to_string(), "team".to_string()), ("admin".into(), "admin".into())].into(),
            list_claim_mappings: [("groups".to_string(), "groups".to_string())].into(),
            ..Default::default()
        };
        let v = map_claims(&c, &json!({"org": {"team": "Ops"}, "admin": true, "groups": ["a", "", 3]})).unwrap();
        assert_eq!(v.values["team"], "Ops");
        assert_eq!(v.values["admin"], "true");
        assert_eq!(v.lists["groups"], ["a", "3"]);
        assert!(map_claims(&c, &json!({"admin": {"x": 1}})).is_err());
    }
}
