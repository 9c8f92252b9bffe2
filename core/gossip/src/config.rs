//! The pool's timing options (Consul's `gossip_lan` / `gossip_wan` blocks), with memberlist's
//! LAN and WAN defaults.

use legate_types::GoDuration;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    pub gossip_nodes: u32,
    pub gossip_interval: GoDuration,
    pub probe_interval: GoDuration,
    pub probe_timeout: GoDuration,
    pub retransmit_mult: u32,
    pub suspicion_mult: u32,
}

impl GossipConfig {
    pub fn lan() -> Self {
        GossipConfig {
            gossip_nodes: 3,
            gossip_interval: GoDuration::from_millis(200),
            probe_interval: GoDuration::from_secs(1),
            probe_timeout: GoDuration::from_millis(500),
            retransmit_mult: 4,
            suspicion_mult: 4,
        }
    }
    pub fn wan() -> Self {
        GossipConfig {
            gossip_nodes: 4,
            gossip_interval: GoDuration::from_millis(500),
            probe_interval: GoDuration::from_secs(5),
            probe_timeout: GoDuration::from_secs(3),
            retransmit_mult: 4,
            suspicion_mult: 6,
        }
    }
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig::lan()
    }
}
