//! The plugin registry's wire types (Legate's own; Consul has no such API): what
//! `GET /v1/plugins` lists, what `PUT /v1/plugin/<name>` answers, and the view client agents
//! keep of the registry (the `PluginList` RPC carries it as JSON).

use serde::{Deserialize, Serialize};

/// A check that runs a registry plugin.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginUse {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
}

/// One version of `GET /v1/plugins`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    /// Whether this is the version `registry:<name>` runs (the one pushed last).
    pub latest: bool,
    #[serde(rename = "SHA256")]
    pub sha256: String,
    pub size: u64,
    pub world: String,
    pub imports: Vec<String>,
    /// Whether the blob carries at least one signature.
    pub signed: bool,
    /// Key ids (first 16 hex digits of the sha256 of the public key) of its signers.
    pub signed_by: Vec<String>,
    pub pushed_at: String,
    pub create_index: u64,
    /// The catalog checks that hold this version (by name and version, by name while it is
    /// the latest, or by digest).
    pub runs_on: Vec<PluginUse>,
}

/// The answer of `PUT /v1/plugin/<name>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PushResult {
    pub name: String,
    pub version: String,
    #[serde(rename = "SHA256")]
    pub sha256: String,
    pub size: u64,
    pub world: String,
    pub imports: Vec<String>,
    /// Key ids of the blob's signers (those sent now and earlier).
    pub signatures: Vec<String>,
}

/// A signature as the registry keeps it (base64 of the raw bytes).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SignatureInfo {
    pub public_key: String,
    pub signature: String,
}

/// A version in a client agent's view of the registry.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ViewVersion {
    pub name: String,
    pub version: String,
    #[serde(rename = "SHA256")]
    pub sha256: String,
    pub size: u64,
    pub latest: bool,
    pub create_index: u64,
    pub signatures: Vec<SignatureInfo>,
    /// How many chunks the blob is stored in (what the agent fetches).
    pub chunks: u32,
}
