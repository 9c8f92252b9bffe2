//! The ACL records added after the first ACL tables: a token's and a role's templated
//! policies and a token's auth method (beside the token and role records, keyed alike), auth
//! methods (by name) and binding rules (by ID). They are stored as JSON with defaults for
//! missing fields, so fields can be added later without breaking stored records, snapshots or
//! Raft log entries written before them (the older records are bincode, which cannot).

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value as Json;

use super::schema::{
    ACL_AUTH_METHODS, ACL_BINDING_RULES, ACL_ROLE_EXT, ACL_TOKEN_EXT, IDX_ACL_AUTH_METHODS, IDX_ACL_BINDING_RULES,
    IDX_ACL_ROLES, IDX_ACL_TOKENS,
};
use super::{bump_index_txn, StoreError};

/// Which table an [`ExtOp`](super::acl::AclOp) writes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ExtTable {
    TokenExt,
    RoleExt,
    AuthMethod,
    BindingRule,
}

impl ExtTable {
    pub(crate) fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            ExtTable::TokenExt => ACL_TOKEN_EXT,
            ExtTable::RoleExt => ACL_ROLE_EXT,
            ExtTable::AuthMethod => ACL_AUTH_METHODS,
            ExtTable::BindingRule => ACL_BINDING_RULES,
        }
    }

    fn index(self) -> &'static str {
        match self {
            ExtTable::TokenExt => IDX_ACL_TOKENS,
            ExtTable::RoleExt => IDX_ACL_ROLES,
            ExtTable::AuthMethod => IDX_ACL_AUTH_METHODS,
            ExtTable::BindingRule => IDX_ACL_BINDING_RULES,
        }
    }
}

/// A templated policy on a token or role: a builtin template and its variables.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TemplatedPolicy {
    pub template_name: String,
    /// The `name` variable (the only one Consul's templates take); None: no variables given.
    pub name: Option<String>,
    pub datacenters: Vec<String>,
}

/// What a token has beyond its record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TokenExt {
    pub templated_policies: Vec<TemplatedPolicy>,
    /// The auth method whose login created the token ("" for others).
    pub auth_method: String,
}

/// What a role has beyond its record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RoleExt {
    pub templated_policies: Vec<TemplatedPolicy>,
}

/// An auth method (`/v1/acl/auth-method`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuthMethod {
    pub name: String,
    pub method_type: String,
    pub display_name: String,
    pub description: String,
    /// Nanoseconds; 0: the tokens do not expire.
    pub max_token_ttl_ns: u64,
    /// "" or "local": local tokens; "global".
    pub token_locality: String,
    pub config: Json,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A binding rule (`/v1/acl/binding-rule`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BindingRule {
    pub id: String,
    pub description: String,
    pub auth_method: String,
    pub selector: String,
    pub bind_type: String,
    pub bind_name: String,
    /// `BindVars.Name` (templated-policy rules).
    pub bind_vars_name: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Encodes a record for an [`ExtTable`] write.
pub fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode(Box::new(bincode::ErrorKind::Custom(e.to_string()))))
}

/// Stores `json` under `key`, with CreateIndex kept from the record it replaces and
/// ModifyIndex `index` (for records that carry them).
pub(crate) fn set_txn(
    txn: &WriteTransaction,
    table: ExtTable,
    key: &str,
    json: &str,
    index: u64,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(table.table())?;
    let mut v: Json = serde_json::from_str(json).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut v {
        if m.contains_key("modify_index") {
            let prev: Option<Json> = t.get(key)?.and_then(|p| serde_json::from_slice(p.value()).ok());
            let create = prev.as_ref().and_then(|p| p["create_index"].as_u64()).unwrap_or(index);
            m.insert("create_index".into(), create.into());
            m.insert("modify_index".into(), index.into());
        }
    }
    t.insert(key, serde_json::to_vec(&v).unwrap_or_default().as_slice())?;
    drop(t);
    bump_index_txn(txn, table.index(), index)
}

pub(crate) fn delete_txn(txn: &WriteTransaction, table: ExtTable, key: &str, index: u64) -> Result<(), StoreError> {
    txn.open_table(table.table())?.remove(key)?;
    bump_index_txn(txn, table.index(), index)
}

fn get<T: DeserializeOwned>(txn: &ReadTransaction, table: ExtTable, key: &str) -> Result<Option<T>, StoreError> {
    let t = txn.open_table(table.table())?;
    let v = t.get(key)?;
    v.map(|v| decode(v.value())).transpose()
}

fn all<T: DeserializeOwned>(txn: &ReadTransaction, table: ExtTable) -> Result<Vec<T>, StoreError> {
    let t = txn.open_table(table.table())?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

pub fn token_ext(txn: &ReadTransaction, accessor: &str) -> Result<TokenExt, StoreError> {
    Ok(get(txn, ExtTable::TokenExt, accessor)?.unwrap_or_default())
}

pub fn role_ext(txn: &ReadTransaction, id: &str) -> Result<RoleExt, StoreError> {
    Ok(get(txn, ExtTable::RoleExt, id)?.unwrap_or_default())
}

pub fn auth_method(txn: &ReadTransaction, name: &str) -> Result<Option<AuthMethod>, StoreError> {
    get(txn, ExtTable::AuthMethod, name)
}

/// Every auth method, by name.
pub fn auth_methods(txn: &ReadTransaction) -> Result<Vec<AuthMethod>, StoreError> {
    all(txn, ExtTable::AuthMethod)
}

pub fn binding_rule(txn: &ReadTransaction, id: &str) -> Result<Option<BindingRule>, StoreError> {
    get(txn, ExtTable::BindingRule, id)
}

/// Every binding rule, by ID.
pub fn binding_rules(txn: &ReadTransaction) -> Result<Vec<BindingRule>, StoreError> {
    all(txn, ExtTable::BindingRule)
}

/// Accessor IDs of the tokens an auth method's logins created.
pub fn tokens_of_method(txn: &ReadTransaction, method: &str) -> Result<Vec<String>, StoreError> {
    let t = txn.open_table(ACL_TOKEN_EXT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let ext: TokenExt = decode(v.value())?;
        if ext.auth_method == method {
            out.push(k.value().to_string());
        }
    }
    Ok(out)
}
