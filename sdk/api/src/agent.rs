//! Types of the `/v1/agent/*` endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A gossip pool member as `/v1/agent/members` and `/v1/agent/self` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    /// 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: u8,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

/// Member status codes (serf).
pub mod member_status {
    pub const NONE: u8 = 0;
    pub const ALIVE: u8 = 1;
    pub const LEAVING: u8 = 2;
    pub const LEFT: u8 = 3;
    pub const FAILED: u8 = 4;
}

pub use crate::coordinate::Coord;

/// `Config` of `/v1/agent/self`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct SelfConfig {
    pub datacenter: String,
    pub primary_datacenter: String,
    pub node_name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub revision: String,
    pub server: bool,
    pub version: String,
    pub build_date: String,
}

/// `/v1/agent/version`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AgentVersion {
    pub build_date: String,
    pub human_version: String,
    pub version: String,
    pub revision: String,
    #[serde(rename = "FIPS")]
    pub fips: String,
}
