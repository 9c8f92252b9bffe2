//! What travels between gossip members, besides foca's own SWIM messages:
//!
//! - [`NodeId`], foca's identity: node name, gossip address, and an `(epoch, renew)` pair that
//!   makes a restarted or re-joining node win over its previous identity.
//! - [`Meta`], a member's tags and leave intent, versioned by `(epoch, version)`.
//! - [`Bcast`], the custom broadcasts foca piggybacks on its messages (meta changes, user
//!   events, force-leave), and the [`Handler`] that decides which ones are new.
//! - [`Direct`], point-to-point messages outside foca (join handshake, meta push/pull, digest).
//!
//! Inner message layout (before sealing, see `keyring.rs`): one kind byte ([`KIND_FOCA`] or
//! [`KIND_DIRECT`]) then the body. Direct messages and broadcasts are bincode with a size limit.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bincode::Options as _;
use foca::{BroadcastHandler, Identity, Invalidates};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::time::Instant;

pub(crate) const KIND_FOCA: u8 = 0;
pub(crate) const KIND_DIRECT: u8 = 1;

/// Decoding limit for our own messages (a datagram cannot be larger anyway).
const DECODE_LIMIT: u64 = 64 * 1024;
/// How many user-event ids are remembered for de-duplication.
const SEEN_EVENTS: usize = 4096;

fn opts() -> impl bincode::Options {
    bincode::DefaultOptions::new().with_limit(DECODE_LIMIT)
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain structs into a Vec cannot fail.
    opts().serialize(v).unwrap_or_default()
}

pub(crate) fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, bincode::Error> {
    opts().deserialize(data)
}

/// Foca identity of a member. Foca keys members by [`NodeId::addr`] (the gossip address); among
/// identities sharing an address the greater `(epoch, renew)` wins: `epoch` is the process start
/// time in milliseconds (a restart wins), `renew` is bumped when the cluster declared us down and
/// we rejoin (foca calls [`Identity::renew`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub epoch: u64,
    pub renew: u32,
}

impl NodeId {
    /// Whether `self` is a later identity than `other` (of the same node).
    pub(crate) fn newer_than(&self, other: &NodeId) -> bool {
        (self.epoch, self.renew) > (other.epoch, other.renew)
    }
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeId { renew: self.renew.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.newer_than(adversary)
    }
}

/// A member's metadata. `(epoch, version)` orders updates: `epoch` is the owner's identity epoch
/// (so a restarted node's metadata replaces the old one), `version` grows with every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub name: String,
    pub epoch: u64,
    pub version: u64,
    pub tags: BTreeMap<String, String>,
    /// Set by a graceful leave: the member's coming down means LEFT, not FAILED.
    pub leaving: bool,
}

impl Meta {
    pub(crate) fn order(&self) -> (u64, u64) {
        (self.epoch, self.version)
    }
}

/// A user event as it travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub id: String,
    pub name: String,
    pub payload: Vec<u8>,
    pub ltime: u64,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub origin: String,
}

/// Custom broadcasts, disseminated by foca `max_transmissions` times each.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Bcast {
    Meta(Meta),
    Event(WireEvent),
    /// An operator forced a failed member out (`prune`: forget it right away).
    ForceLeave {
        name: String,
        epoch: u64,
        prune: bool,
    },
}

/// What makes two broadcasts "the same thing" for foca's backlog: a newer one replaces an
/// older one with the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BKey {
    Meta(String),
    Event(String),
    ForceLeave(String),
}

impl Invalidates for BKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

impl Bcast {
    fn key(&self) -> BKey {
        match self {
            Bcast::Meta(m) => BKey::Meta(m.name.clone()),
            Bcast::Event(e) => BKey::Event(e.id.clone()),
            Bcast::ForceLeave { name, .. } => BKey::ForceLeave(name.clone()),
        }
    }
}

/// Point-to-point messages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Direct {
    /// Join handshake: "who are you?" The reply tells the joiner the real identity to announce
    /// to, whatever address it used to reach us.
    Hello {
        token: u64,
    },
    Welcome {
        token: u64,
        id: NodeId,
    },
    /// "Send me your member list" (sent once a join handshake is answered): a joiner learns
    /// the whole cluster at once instead of a Feed's worth (~30 members) per announce.
    StatePull,
    /// Active members, a datagram's worth at a time.
    State(Vec<foca::Member<NodeId>>),
    /// Metadata records (the sender's own or relayed ones).
    MetaPush(Vec<Meta>),
    /// "Send me the metadata of these members" (empty: yours).
    MetaPull(Vec<String>),
    /// Anti-entropy: `(name, epoch, version)` of every record the sender has.
    Digest(Vec<(String, u64, u64)>),
    /// A round-trip measurement for network coordinates, from the member named `from` (the
    /// answer goes to its advertised address).
    Ping {
        seq: u32,
        from: String,
    },
    /// The answer to a [`Direct::Ping`], with the answering member's coordinate (None when it
    /// keeps none: `disable_coordinates`).
    Ack {
        seq: u32,
        coord: Option<legate_api::coordinate::Coord>,
    },
    /// "Which gossip keys do you have?" (`GET /v1/operator/keyring` counts the answers).
    KeyListRequest {
        token: u64,
    },
    /// The answer: the member's installed keys (base64), primary first.
    KeyListResponse {
        token: u64,
        keys: Vec<String>,
    },
}

/// Something a broadcast brought in, for the core to act on.
#[derive(Debug)]
pub(crate) enum Inbound {
    Meta(String),
    Event(WireEvent),
    ForceLeave { name: String, epoch: u64, prune: bool },
}

pub(crate) struct MetaEntry {
    pub meta: Meta,
    pub at: Instant,
}

/// Knowledge shared between the core and the broadcast handler that foca owns: the newest
/// metadata of every other member, which events and force-leaves were seen, and an inbox of
/// what broadcasts brought in. Lock order: the core's lock, then this one; never call into foca
/// while holding it.
pub(crate) struct Ledger {
    pub own_name: String,
    /// Current time, set by the core before it hands data to foca.
    pub now: Instant,
    pub metas: HashMap<String, MetaEntry>,
    seen_events: HashSet<String>,
    seen_order: VecDeque<String>,
    forced: HashSet<(String, u64, bool)>,
    pub inbox: Vec<Inbound>,
}

impl Ledger {
    pub(crate) fn new(own_name: String, now: Instant) -> Ledger {
        Ledger {
            own_name,
            now,
            metas: HashMap::new(),
            seen_events: HashSet::new(),
            seen_order: VecDeque::new(),
            forced: HashSet::new(),
            inbox: Vec::new(),
        }
    }

    /// Stores `m` if it is newer than what we have. Never stores our own name.
    pub(crate) fn accept_meta(&mut self, m: &Meta) -> bool {
        if m.name == self.own_name {
            return false;
        }
        let newer = self.metas.get(&m.name).is_none_or(|e| m.order() > e.meta.order());
        if newer {
            self.metas.insert(m.name.clone(), MetaEntry { meta: m.clone(), at: self.now });
        }
        newer
    }

    /// Marks an event id seen; false if it already was.
    pub(crate) fn see_event(&mut self, id: &str) -> bool {
        if self.seen_events.contains(id) {
            return false;
        }
        self.seen_events.insert(id.to_string());
        self.seen_order.push_back(id.to_string());
        while self.seen_order.len() > SEEN_EVENTS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen_events.remove(&old);
            }
        }
        true
    }

    /// Marks a force-leave seen; false if it already was.
    pub(crate) fn see_force(&mut self, name: &str, epoch: u64, prune: bool) -> bool {
        if self.forced.len() > SEEN_EVENTS {
            self.forced.clear();
        }
        self.forced.insert((name.to_string(), epoch, prune))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad gossip broadcast: {0}")]
pub(crate) struct BcastError(#[source] bincode::Error);

/// Foca's broadcast handler: decodes a broadcast, keeps it (and asks foca to pass it on) only
/// if it is new to us.
pub(crate) struct Handler {
    pub ledger: Arc<Mutex<Ledger>>,
}

impl BroadcastHandler<NodeId> for Handler {
    type Key = BKey;
    type Error = BcastError;

    fn receive_item(&mut self, data: &[u8], sender: Option<&NodeId>) -> Result<Option<BKey>, BcastError> {
        let item: Bcast = decode(data).map_err(BcastError)?;
        let key = item.key();
        if sender.is_none() {
            // Added locally through `Foca::add_broadcast`: the core already applied it.
            return Ok(Some(key));
        }
        let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = match item {
            Bcast::Meta(m) => {
                let fresh = l.accept_meta(&m);
                if fresh {
                    l.inbox.push(Inbound::Meta(m.name));
                }
                fresh
            }
            Bcast::Event(e) => {
                let fresh = l.see_event(&e.id);
                if fresh {
                    l.inbox.push(Inbound::Event(e));
                }
                fresh
            }
            Bcast::ForceLeave { name, epoch, prune } => {
                let fresh = l.see_force(&name, epoch, prune);
                if fresh {
                    l.inbox.push(Inbound::ForceLeave { name, epoch, prune });
                }
                fresh
            }
        };
        Ok(fresh.then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(epoch: u64, renew: u32) -> NodeId {
        NodeId { name: "a".into(), addr: "127.0.0.1:1".parse().unwrap(), epoch, renew }
    }

    #[test]
    fn identity_ordering() {
        assert!(id(2, 0).newer_than(&id(1, 9)));
        assert!(id(1, 1).newer_than(&id(1, 0)));
        assert!(!id(1, 0).newer_than(&id(1, 0)));
        let r = id(5, 0).renew().unwrap();
        assert_eq!((r.epoch, r.renew), (5, 1));
        assert!(r.win_addr_conflict(&id(5, 0)));
    }

    #[test]
    fn handler_keeps_only_new_items() {
        let ledger = Arc::new(Mutex::new(Ledger::new("me".into(), Instant::now())));
        let mut h = Handler { ledger: ledger.clone() };
        let from = id(1, 0);
        let meta = |v| Meta { name: "b".into(), epoch: 1, version: v, tags: BTreeMap::new(), leaving: false };
        let data = encode(&Bcast::Meta(meta(2)));
        assert_eq!(h.receive_item(&data, Some(&from)).unwrap(), Some(BKey::Meta("b".into())));
        assert_eq!(h.receive_item(&data, Some(&from)).unwrap(), None);
        assert_eq!(h.receive_item(&encode(&Bcast::Meta(meta(1))), Some(&from)).unwrap(), None);
        let mine = Meta { name: "me".into(), ..meta(9) };
        assert_eq!(h.receive_item(&encode(&Bcast::Meta(mine)), Some(&from)).unwrap(), None);
        let ev = WireEvent {
            id: "e1".into(),
            name: "deploy".into(),
            payload: vec![1],
            ltime: 3,
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            origin: "b".into(),
        };
        let data = encode(&Bcast::Event(ev));
        assert!(h.receive_item(&data, Some(&from)).unwrap().is_some());
        assert!(h.receive_item(&data, Some(&from)).unwrap().is_none());
        assert!(h.receive_item(b"\xff\xff\xff", Some(&from)).is_err());
        assert_eq!(ledger.lock().unwrap().inbox.len(), 2);
    }
}
