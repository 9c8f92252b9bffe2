//! The ACL objects Legate creates itself: the global-management policy, the anonymous token,
//! management tokens (bootstrap, `initial_management`), and what a new leader must write when
//! they are missing; with the hash and timestamp forms Consul gives them.

use legate_state::acl::{self as store, AclOp, Link, Policy, Token};
use legate_state::StoreError;

use crate::{ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME};

/// The built-in policy that grants everything.
pub fn global_management() -> Policy {
    let mut p = Policy {
        id: GLOBAL_MANAGEMENT_ID.into(),
        name: GLOBAL_MANAGEMENT_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: "acl = \"write\"\nagent_prefix \"\" {\n  policy = \"write\"\n}\nevent_prefix \"\" {\n  policy = \"write\"\n}\nkey_prefix \"\" {\n  policy = \"write\"\n}\nkeyring = \"write\"\nnode_prefix \"\" {\n  policy = \"write\"\n}\noperator = \"write\"\nmesh = \"write\"\npeering = \"write\"\nquery_prefix \"\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"write\"\n}\nsession_prefix \"\" {\n  policy = \"write\"\n}".into(),
        ..Default::default()
    };
    p.hash = hash_of(&(&p.name, &p.rules));
    p
}

/// A management token with a given secret (bootstrap, `initial_management`).
pub fn management_token(secret: String, description: &str) -> Token {
    let mut t = Token {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: secret,
        description: description.into(),
        policies: vec![Link { id: GLOBAL_MANAGEMENT_ID.into(), name: GLOBAL_MANAGEMENT_NAME.into() }],
        create_time: now_rfc3339(),
        ..Default::default()
    };
    t.hash = hash_of(&(&t.policies, &t.description));
    t
}

/// The anonymous token.
pub fn anonymous_token() -> Token {
    Token {
        accessor_id: ANONYMOUS_ACCESSOR.into(),
        secret_id: ANONYMOUS_SECRET.into(),
        description: "Anonymous Token".into(),
        create_time: now_rfc3339(),
        ..Default::default()
    }
}

/// What a leader writes when ACLs are on: the global-management policy, the anonymous token,
/// and the `initial_management` token of its config, each if missing.
pub fn missing(txn: &redb::ReadTransaction, initial_management: Option<&str>) -> Result<Vec<AclOp>, StoreError> {
    let mut ops = Vec::new();
    if store::policy(txn, GLOBAL_MANAGEMENT_ID)?.is_none() {
        ops.push(AclOp::PolicySet(global_management()));
    }
    if store::token(txn, ANONYMOUS_ACCESSOR)?.is_none() {
        ops.push(AclOp::TokenSet(anonymous_token()));
    }
    if let Some(secret) = initial_management.filter(|s| !s.is_empty()) {
        if store::token_by_secret(txn, secret)?.is_none() {
            let token = management_token(secret.to_string(), "Initial Management Token");
            // As Consul: creating the initial management token bootstraps the ACL system, so
            // `PUT /v1/acl/bootstrap` is refused afterwards (unless it already was).
            ops.push(match store::bootstrap_index(txn)? {
                None => AclOp::Bootstrap { token, reset_index: None },
                Some(_) => AclOp::TokenSet(token),
            });
        }
    }
    Ok(ops)
}

/// A token's hash, over the fields its permissions and identity come from.
pub fn token_hash(t: &legate_state::acl::Token) -> String {
    hash_of(&(&t.policies, &t.roles, &t.description, t.local))
}

/// Consul's object hash: 16 bytes of SHA-256 over the object's fields, base64.
pub fn hash_of(v: &impl serde::Serialize) -> String {
    use base64::Engine;
    use sha2::Digest;
    let bytes = bincode::serialize(v).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(&sha2::Sha256::digest(&bytes)[..16])
}

/// Now, as Go marshals a `time.Time`.
pub fn now_rfc3339() -> String {
    httpdate_like(std::time::SystemTime::now())
}

/// RFC 3339 in UTC with nanoseconds, as Go's time.Time marshals.
pub fn httpdate_like(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, dd) = civil(days);
    format!("{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_nanos())
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}
