//! ACL tokens, policies and roles in the state store, replicated through Raft like everything
//! else. Tokens are keyed by AccessorID with a SecretID -> AccessorID index; policies and roles
//! by ID (names are unique, looked up by scanning: there are few).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::schema::{
    ACL_META, ACL_POLICIES, ACL_ROLES, ACL_ROLE_EXT, ACL_SECRETS, ACL_TOKENS, ACL_TOKEN_EXT, IDX_ACL_POLICIES,
    IDX_ACL_ROLES, IDX_ACL_TOKENS,
};
use super::{bump_index_txn, StoreError};

/// A link to a policy or role (by ID; the name is filled in when read).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceIdentity {
    pub service_name: String,
    pub datacenters: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Token {
    pub accessor_id: String,
    pub secret_id: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub roles: Vec<Link>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub local: bool,
    /// RFC 3339, empty for none.
    pub expiration_time: String,
    /// Unix seconds of expiry, 0 for none.
    pub expires_unix: u64,
    pub create_time: String,
    pub hash: String,
    /// Legacy API: "client" or "management" (empty for modern tokens).
    pub legacy_type: String,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Vec<String>,
    pub hash: String,
    /// Rules written for the legacy API: segment rules are prefix rules.
    pub legacy: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One ACL write; a command carries several, applied atomically.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum AclOp {
    TokenSet(Token),
    TokenDelete(String),
    PolicySet(Policy),
    PolicyDelete(String),
    RoleSet(Role),
    RoleDelete(String),
    /// The one-time bootstrap: refused once done, unless `reset_index` names the index it was
    /// done at (the operator's `acl-bootstrap-reset` file).
    Bootstrap {
        token: Token,
        reset_index: Option<u64>,
    },
    /// A JSON record of `acl_ext.rs` (templated policies, auth methods, binding rules).
    ExtSet {
        table: super::acl_ext::ExtTable,
        key: String,
        json: String,
    },
    ExtDelete {
        table: super::acl_ext::ExtTable,
        key: String,
    },
}

const META_BOOTSTRAP: &str = "acl_bootstrap_index";

fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    Ok(bincode::deserialize(b)?)
}

/// Every record of a table, decoded.
fn all<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    table: redb::TableDefinition<&str, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let t = txn.open_table(table)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(dec(item?.1.value())?);
    }
    Ok(out)
}

pub fn token(txn: &ReadTransaction, accessor: &str) -> Result<Option<Token>, StoreError> {
    let t = txn.open_table(ACL_TOKENS)?;
    let v = t.get(accessor)?;
    v.map(|v| dec(v.value())).transpose()
}

pub fn token_by_secret(txn: &ReadTransaction, secret: &str) -> Result<Option<Token>, StoreError> {
    let accessor = {
        let t = txn.open_table(ACL_SECRETS)?;
        let v = t.get(secret)?;
        match v {
            Some(v) => String::from_utf8_lossy(v.value()).into_owned(),
            None => return Ok(None),
        }
    };
    token(txn, &accessor)
}

pub fn tokens(txn: &ReadTransaction) -> Result<Vec<Token>, StoreError> {
    all(txn, ACL_TOKENS)
}

pub fn policy(txn: &ReadTransaction, id: &str) -> Result<Option<Policy>, StoreError> {
    let t = txn.open_table(ACL_POLICIES)?;
    let v = t.get(id)?;
    v.map(|v| dec(v.value())).transpose()
}

pub fn policies(txn: &ReadTransaction) -> Result<Vec<Policy>, StoreError> {
    all(txn, ACL_POLICIES)
}

pub fn policy_by_name(txn: &ReadTransaction, name: &str) -> Result<Option<Policy>, StoreError> {
    Ok(policies(txn)?.into_iter().find(|p| p.name == name))
}

pub fn role(txn: &ReadTransaction, id: &str) -> Result<Option<Role>, StoreError> {
    let t = txn.open_table(ACL_ROLES)?;
    let v = t.get(id)?;
    v.map(|v| dec(v.value())).transpose()
}

pub fn roles(txn: &ReadTransaction) -> Result<Vec<Role>, StoreError> {
    all(txn, ACL_ROLES)
}

pub fn role_by_name(txn: &ReadTransaction, name: &str) -> Result<Option<Role>, StoreError> {
    Ok(roles(txn)?.into_iter().find(|r| r.name == name))
}

/// The index bootstrap was done at, if it was.
pub fn bootstrap_index(txn: &ReadTransaction) -> Result<Option<u64>, StoreError> {
    let t = txn.open_table(ACL_META)?;
    let v = t.get(META_BOOTSTRAP)?;
    Ok(v.and_then(|v| <[u8; 8]>::try_from(v.value()).ok()).map(u64::from_be_bytes))
}

/// Applies ACL writes at `index`; Err(reason) refuses all of them (only bootstrap refuses).
pub fn apply_txn(txn: &WriteTransaction, ops: &[AclOp], index: u64) -> Result<Result<(), String>, StoreError> {
    for op in ops {
        if let AclOp::Bootstrap { reset_index, .. } = op {
            let done = {
                let t = txn.open_table(ACL_META)?;
                let v = t.get(META_BOOTSTRAP)?;
                v.and_then(|v| <[u8; 8]>::try_from(v.value()).ok()).map(u64::from_be_bytes)
            };
            if let Some(done) = done {
                if *reset_index != Some(done) {
                    return Ok(Err(format!("ACL bootstrap no longer allowed (reset index: {done})")));
                }
            }
        }
    }
    for op in ops {
        match op {
            AclOp::TokenSet(t) | AclOp::Bootstrap { token: t, .. } => {
                let mut stored = t.clone();
                {
                    let mut tokens = txn.open_table(ACL_TOKENS)?;
                    let prev = tokens.get(t.accessor_id.as_str())?.map(|v| dec::<Token>(v.value())).transpose()?;
                    stored.create_index = prev.as_ref().map_or(index, |p| p.create_index);
                    stored.modify_index = index;
                    if let Some(p) = &prev {
                        if p.secret_id != t.secret_id {
                            txn.open_table(ACL_SECRETS)?.remove(p.secret_id.as_str())?;
                        }
                    }
                    tokens.insert(t.accessor_id.as_str(), bincode::serialize(&stored)?.as_slice())?;
                }
                txn.open_table(ACL_SECRETS)?.insert(t.secret_id.as_str(), t.accessor_id.as_bytes())?;
                bump_index_txn(txn, IDX_ACL_TOKENS, index)?;
                if matches!(op, AclOp::Bootstrap { .. }) {
                    txn.open_table(ACL_META)?.insert(META_BOOTSTRAP, index.to_be_bytes().as_slice())?;
                }
            }
            AclOp::TokenDelete(accessor) => {
                let prev = txn.open_table(ACL_TOKENS)?.remove(accessor.as_str())?.map(|v| dec::<Token>(v.value()));
                if let Some(p) = prev.transpose()? {
                    txn.open_table(ACL_SECRETS)?.remove(p.secret_id.as_str())?;
                }
                txn.open_table(ACL_TOKEN_EXT)?.remove(accessor.as_str())?;
                bump_index_txn(txn, IDX_ACL_TOKENS, index)?;
            }
            AclOp::PolicySet(p) => {
                let mut t = txn.open_table(ACL_POLICIES)?;
                let prev = t.get(p.id.as_str())?.map(|v| dec::<Policy>(v.value())).transpose()?;
                let mut stored = p.clone();
                stored.create_index = prev.map_or(index, |p| p.create_index);
                stored.modify_index = index;
                t.insert(p.id.as_str(), bincode::serialize(&stored)?.as_slice())?;
                drop(t);
                bump_index_txn(txn, IDX_ACL_POLICIES, index)?;
            }
            AclOp::PolicyDelete(id) => {
                txn.open_table(ACL_POLICIES)?.remove(id.as_str())?;
                bump_index_txn(txn, IDX_ACL_POLICIES, index)?;
            }
            AclOp::RoleSet(r) => {
                let mut t = txn.open_table(ACL_ROLES)?;
                let prev = t.get(r.id.as_str())?.map(|v| dec::<Role>(v.value())).transpose()?;
                let mut stored = r.clone();
                stored.create_index = prev.map_or(index, |p| p.create_index);
                stored.modify_index = index;
                t.insert(r.id.as_str(), bincode::serialize(&stored)?.as_slice())?;
                drop(t);
                bump_index_txn(txn, IDX_ACL_ROLES, index)?;
            }
            AclOp::RoleDelete(id) => {
                txn.open_table(ACL_ROLES)?.remove(id.as_str())?;
                txn.open_table(ACL_ROLE_EXT)?.remove(id.as_str())?;
                bump_index_txn(txn, IDX_ACL_ROLES, index)?;
            }
            AclOp::ExtSet { table, key, json } => super::acl_ext::set_txn(txn, *table, key, json, index)?,
            AclOp::ExtDelete { table, key } => super::acl_ext::delete_txn(txn, *table, key, index)?,
        }
    }
    Ok(Ok(()))
}
