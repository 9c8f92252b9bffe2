//! User events (`consul event`): fired through gossip, filtered on each agent against its own
//! node name and services, kept in a 256-slot ring, listed by `/v1/event/list` with an opaque
//! blocking index derived from the newest event's ID.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::AgentShared;
use legate_gossip::UserEvent;

/// Events kept per agent (Consul's ring buffer).
pub const RING: usize = 256;
/// Largest payload accepted (serf's user-event limit keeps Consul's below ~512 bytes).
pub const MAX_PAYLOAD: usize = 512;

pub struct EventBuffer {
    ring: Mutex<VecDeque<UserEvent>>,
    /// The opaque index of the newest event; blocked lists wait on it.
    pub index: watch::Sender<u64>,
}

impl Default for EventBuffer {
    fn default() -> Self {
        EventBuffer { ring: Mutex::new(VecDeque::with_capacity(RING)), index: watch::channel(0).0 }
    }
}

pub use legate_types::event::event_index;

impl EventBuffer {
    pub fn push(&self, ev: UserEvent) {
        let idx = event_index(&ev.id);
        {
            let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            if r.iter().any(|e| e.id == ev.id) {
                return;
            }
            if r.len() == RING {
                r.pop_front();
            }
            r.push_back(ev);
        }
        self.index.send_replace(idx);
    }

    pub fn list(&self) -> Vec<UserEvent> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

fn matches(re: &str, s: &str) -> bool {
    re.is_empty() || regex::Regex::new(re).map(|r| r.is_match(s)).unwrap_or(false)
}

/// Whether this agent handles the event: node filter vs its name, service filter vs its
/// services (and tag filter vs those services' tags).
pub fn accepts(agent: &AgentShared, ev: &UserEvent) -> bool {
    if !matches(&ev.node_filter, agent.node_name()) {
        return false;
    }
    if ev.service_filter.is_empty() {
        return true;
    }
    agent.local.services().iter().any(|s| {
        matches(&ev.service_filter, &s.service.service)
            && (ev.tag_filter.is_empty() || s.service.tags.iter().any(|t| matches(&ev.tag_filter, t)))
    })
}

/// Internal events that relay keyring changes to every member (Consul uses serf queries).
pub const KEYRING_EVENT_PREFIX: &str = "_legate-keyring-";

fn apply_keyring_event(gossip: &legate_gossip::Gossip, ev: &UserEvent) {
    let key = String::from_utf8_lossy(&ev.payload).to_string();
    let op = &ev.name[KEYRING_EVENT_PREFIX.len()..];
    let r = match op {
        "install" => gossip.keyring_install(&key),
        "use" => gossip.keyring_use(&key),
        "remove" => gossip.keyring_remove(&key),
        other => {
            tracing::warn!(op = other, "unknown keyring operation from the cluster");
            return;
        }
    };
    match r {
        Ok(()) => tracing::info!(op, "gossip keyring changed by the cluster"),
        Err(e) => tracing::warn!(op, error = %e, "gossip keyring change from the cluster failed"),
    }
}

/// Feeds events arriving by gossip into the buffer.
pub async fn receive_loop(agent: Arc<AgentShared>, gossip: Arc<legate_gossip::Gossip>, shutdown: CancellationToken) {
    let mut rx = gossip.subscribe_events();
    loop {
        let ev = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            e = rx.recv() => e,
        };
        match ev {
            Ok(ev) if ev.name.starts_with(KEYRING_EVENT_PREFIX) => {
                // Servers keep their WAN keyring in lockstep with the LAN one.
                apply_keyring_event(&gossip, &ev);
                if let Some(wan) = agent.gossip_wan.get() {
                    apply_keyring_event(wan, &ev);
                }
            }
            Ok(ev) => {
                if accepts(&agent, &ev) {
                    tracing::debug!(name = %ev.name, id = %ev.id, "user event received");
                    agent.events.push(ev);
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "user events dropped: receiver lagged");
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_xor_of_halves_and_ring_is_bounded() {
        assert_eq!(event_index("00000000-0000-0001-0000-000000000003"), 2);
        let b = EventBuffer::default();
        for i in 0..300u32 {
            b.push(UserEvent {
                id: format!("00000000-0000-0000-0000-{i:012}"),
                name: "deploy".into(),
                payload: Vec::new(),
                ltime: u64::from(i),
                node_filter: String::new(),
                service_filter: String::new(),
                tag_filter: String::new(),
                origin: String::new(),
            });
        }
        let l = b.list();
        assert_eq!(l.len(), RING);
        assert_eq!(l[0].ltime, 44);
        assert_eq!(*b.index.borrow(), event_index("00000000-0000-0000-0000-000000000299"));
    }
}
