//! Prepared queries (`/v1/query`): definitions stored as JSON (new fields can be added without
//! breaking stored records or Raft entries), unique names (case-insensitively), one catch-all
//! template at most, and queries bound to a session deleted with it. Execution is the HTTP
//! layer's: it reads the catalog.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::schema::{IDX_QUERIES, QUERIES, SESSIONS};
use super::{bump_index_txn, StoreError};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PreparedQuery {
    pub id: String,
    pub name: String,
    pub session: String,
    pub token: String,
    pub template: QueryTemplate,
    pub service: QueryService,
    pub dns_ttl: String,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueryTemplate {
    /// "" (not a template) or "name_prefix_match".
    pub kind: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueryService {
    pub service: String,
    pub nearest_n: i64,
    pub datacenters: Option<Vec<String>>,
    pub only_passing: bool,
    pub ignore_check_ids: Option<Vec<String>>,
    pub near: String,
    pub tags: Option<Vec<String>>,
    pub node_meta: Option<std::collections::BTreeMap<String, String>>,
    pub service_meta: Option<std::collections::BTreeMap<String, String>>,
    pub connect: bool,
    pub peer: String,
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }
}

/// A write of `/v1/query`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum QueryOp {
    /// Create or replace (JSON of a [`PreparedQuery`]).
    Set(String),
    Delete(String),
}

fn decode(b: &[u8]) -> Result<PreparedQuery, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Decode(Box::new(bincode::ErrorKind::Custom(e.to_string()))))
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Applies a write at `index`; Err(text) refuses it (Consul's texts).
pub fn apply_txn(txn: &WriteTransaction, op: &QueryOp, index: u64) -> Result<Result<(), String>, StoreError> {
    match op {
        QueryOp::Delete(id) => {
            txn.open_table(QUERIES)?.remove(id.as_str())?;
            bump_index_txn(txn, IDX_QUERIES, index)?;
        }
        QueryOp::Set(json) => {
            let mut q: PreparedQuery = decode(json.as_bytes())?;
            if q.id.is_empty() {
                return Ok(Err("Missing Query ID".into()));
            }
            let existing = all_w(txn)?;
            for other in existing.iter().filter(|o| o.id != q.id) {
                if !q.name.is_empty() && other.name.eq_ignore_ascii_case(&q.name) {
                    return Ok(Err(format!("name '{}' aliases an existing query name", q.name)));
                }
                if q.name.is_empty() && q.is_template() && other.name.is_empty() && other.is_template() {
                    return Ok(Err("a query template with an empty name already exists".into()));
                }
            }
            if looks_like_uuid(&q.name) && existing.iter().any(|o| o.id.eq_ignore_ascii_case(&q.name)) {
                return Ok(Err(format!("name '{}' aliases an existing query ID", q.name)));
            }
            if !q.session.is_empty() && txn.open_table(SESSIONS)?.get(q.session.as_str())?.is_none() {
                return Ok(Err(format!("invalid session {:?}", q.session)));
            }
            let prev = existing.iter().find(|o| o.id == q.id);
            q.create_index = prev.map_or(index, |p| p.create_index);
            q.modify_index = index;
            let bytes = serde_json::to_vec(&q).unwrap_or_default();
            txn.open_table(QUERIES)?.insert(q.id.as_str(), bytes.as_slice())?;
            bump_index_txn(txn, IDX_QUERIES, index)?;
        }
    }
    Ok(Ok(()))
}

fn all_w(txn: &WriteTransaction) -> Result<Vec<PreparedQuery>, StoreError> {
    let t = txn.open_table(QUERIES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Deletes the queries bound to a session that is going away.
pub(crate) fn delete_for_session_txn(txn: &WriteTransaction, session: &str, index: u64) -> Result<(), StoreError> {
    let doomed: Vec<String> = all_w(txn)?.into_iter().filter(|q| q.session == session).map(|q| q.id).collect();
    if doomed.is_empty() {
        return Ok(());
    }
    let mut t = txn.open_table(QUERIES)?;
    for id in &doomed {
        t.remove(id.as_str())?;
    }
    drop(t);
    bump_index_txn(txn, IDX_QUERIES, index)
}

/// Every query, by ID.
pub fn list(txn: &ReadTransaction) -> Result<Vec<PreparedQuery>, StoreError> {
    let t = txn.open_table(QUERIES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

pub fn get(txn: &ReadTransaction, id: &str) -> Result<Option<PreparedQuery>, StoreError> {
    let t = txn.open_table(QUERIES)?;
    let v = t.get(id)?;
    v.map(|v| decode(v.value())).transpose()
}

/// How a name or ID resolves (Consul's order): an ID, an exact name (case-insensitive), the
/// template with the longest name that prefixes it (the empty-name template matches all).
pub enum Resolved {
    Found(Box<PreparedQuery>),
    /// A template named by its ID (Consul refuses to execute it).
    TemplateById,
    NotFound,
}

pub fn resolve(txn: &ReadTransaction, id_or_name: &str) -> Result<Resolved, StoreError> {
    let all = list(txn)?;
    if let Some(q) = all.iter().find(|q| q.id.eq_ignore_ascii_case(id_or_name)) {
        return Ok(if q.is_template() { Resolved::TemplateById } else { Resolved::Found(Box::new(q.clone())) });
    }
    if let Some(q) = all.iter().find(|q| !q.name.is_empty() && q.name.eq_ignore_ascii_case(id_or_name)) {
        return Ok(Resolved::Found(Box::new(q.clone())));
    }
    let lower = id_or_name.to_ascii_lowercase();
    let best = all
        .iter()
        .filter(|q| q.is_template() && lower.starts_with(&q.name.to_ascii_lowercase()))
        .max_by_key(|q| q.name.len());
    Ok(best.map_or(Resolved::NotFound, |q| Resolved::Found(Box::new(q.clone()))))
}
