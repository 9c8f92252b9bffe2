//! Every redb table of the state store, in one place.

use redb::{TableDefinition, WriteTransaction};

use super::StoreError;

/// KV entries: key -> bincode(`kv::StoredEntry`).
pub const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// KV tombstones (the graveyard): deleted key -> index of the delete. Reaped by the leader.
pub const TOMBSTONES: TableDefinition<&str, u64> = TableDefinition::new("kv_tombstones");
/// Max index per logical table ("kvs", "tombstones", ...).
pub const INDEXES: TableDefinition<&str, u64> = TableDefinition::new("indexes");
/// State-machine bookkeeping: last applied log id, membership (bincode).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Catalog nodes: node name -> bincode(`catalog::Node`).
pub const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Catalog services: "node\0service-id" -> bincode(`catalog::Service`).
pub const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");
/// Services by name: "name\0node\0service-id" -> (). Derived from SERVICES in the same
/// transactions (and rebuilt on snapshot import and when missing at open), so a service's
/// instances are one range read, not a scan of every service.
pub const SERVICE_NAMES: TableDefinition<&str, ()> = TableDefinition::new("service_names");
/// Catalog checks: "node\0check-id" -> bincode(`catalog::Check`).
pub const CHECKS: TableDefinition<&str, &[u8]> = TableDefinition::new("checks");

/// Sessions: id -> bincode(`session::Session`).
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// ACL tokens: AccessorID -> bincode(`acl::Token`).
pub const ACL_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_tokens");
/// SecretID -> AccessorID.
pub const ACL_SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_secrets");
/// ACL policies: ID -> bincode(`acl::Policy`).
pub const ACL_POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_policies");
/// ACL bookkeeping (the bootstrap index): key -> bytes.
pub const ACL_META: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_meta");
/// ACL roles: ID -> bincode(`acl::Role`).
pub const ACL_ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_roles");

/// JSON records of `acl_ext.rs`: a token's templated policies and auth method (by
/// AccessorID), a role's templated policies (by ID), auth methods (by name), binding rules (by
/// ID).
pub const ACL_TOKEN_EXT: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_token_ext");
pub const ACL_ROLE_EXT: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_role_ext");
pub const ACL_AUTH_METHODS: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_auth_methods");
pub const ACL_BINDING_RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("acl_binding_rules");

/// Prepared queries: ID -> JSON(`query::PreparedQuery`).
pub const QUERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("prepared_queries");

/// Plugin registry versions: "name\0version" -> JSON(`plugin::PluginVersion`).
pub const PLUGIN_VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_versions");
/// Plugin registry blobs: sha256 hex -> JSON(`plugin::Blob`).
pub const PLUGIN_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_blobs");
/// Plugin registry chunks: "sha256\0{index:08}" -> the chunk's bytes.
pub const PLUGIN_CHUNKS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_chunks");

/// Operator settings replicated through Raft (the autopilot configuration): key -> JSON.
pub const OPERATOR: TableDefinition<&str, &[u8]> = TableDefinition::new("operator");

/// Network coordinates: "node\0segment" -> bincode(`coordinate::Stored`).
pub const COORDINATES: TableDefinition<&str, &[u8]> = TableDefinition::new("coordinates");

/// The byte-valued tables a snapshot carries as they are (besides KV and tombstones).
pub const RECORD_TABLES: [TableDefinition<&str, &[u8]>; 19] = [
    NODES,
    SERVICES,
    CHECKS,
    SESSIONS,
    ACL_TOKENS,
    ACL_SECRETS,
    ACL_POLICIES,
    ACL_ROLES,
    ACL_META,
    OPERATOR,
    COORDINATES,
    ACL_TOKEN_EXT,
    ACL_ROLE_EXT,
    ACL_AUTH_METHODS,
    ACL_BINDING_RULES,
    QUERIES,
    PLUGIN_VERSIONS,
    PLUGIN_BLOBS,
    PLUGIN_CHUNKS,
];

pub const IDX_NODES: &str = "nodes";
pub const IDX_SERVICES: &str = "services";
pub const IDX_CHECKS: &str = "checks";
pub const IDX_SESSIONS: &str = "sessions";
pub const IDX_KVS: &str = "kvs";
pub const IDX_ACL_TOKENS: &str = "acl-tokens";
pub const IDX_ACL_POLICIES: &str = "acl-policies";
pub const IDX_ACL_ROLES: &str = "acl-roles";
pub const IDX_ACL_AUTH_METHODS: &str = "acl-auth-methods";
pub const IDX_ACL_BINDING_RULES: &str = "acl-binding-rules";
pub const IDX_TOMBSTONES: &str = "tombstones";
pub const IDX_COORDINATES: &str = "coordinates";
pub const IDX_QUERIES: &str = "prepared-queries";
pub const IDX_PLUGINS: &str = "plugins";
/// Raft index of the last snapshot restore: a floor under every reported index, so indexes
/// never go backwards although restored entries keep their own ModifyIndex.
pub const IDX_RESTORE: &str = "restore";

pub fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(KV)?;
    txn.open_table(TOMBSTONES)?;
    txn.open_table(INDEXES)?;
    txn.open_table(META)?;
    txn.open_table(SERVICE_NAMES)?;
    for t in RECORD_TABLES {
        txn.open_table(t)?;
    }
    Ok(())
}
