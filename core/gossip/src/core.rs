//! The gossip state machine, sans IO: foca (SWIM with suspicion) plus Legate's member table
//! (tags, leave intent, failed/left/reap) and user events. Time comes in as `now`; datagrams to
//! send go out through [`Core::take_outbox`]; foca's timers wait in [`Core::next_deadline`].
//! The runtime loop in `mod.rs` is the only thing that does IO.
//!
//! Member status is derived, never stored by hand: a record holds foca's view (identity,
//! active or down), the member's metadata sits in the [`Ledger`], and [`Core::refresh`]
//! recomputes the visible [`MemberInfo`] and emits the event for the transition:
//!
//! | foca | metadata of this identity | visible status |
//! |---|---|---|
//! | active | known, not leaving | ALIVE |
//! | active | known, leaving | LEAVING |
//! | active | not yet known | unchanged (not listed before its first metadata) |
//! | down | leaving, or force-left | LEFT |
//! | down | otherwise | FAILED |
//!
//! Failed members are reaped after `reconnect_timeout`, left ones after `tombstone_timeout`.

use crate::GossipError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foca::{Config, Foca, Notification, OwnedNotification, PeriodicParams, PostcardCodec, Runtime, State, Timer};
use rand::seq::IteratorRandom;
use rand_foca::rngs::StdRng;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::keyring::{Keyring, OpenError, SEAL_OVERHEAD};
use super::vivaldi;
use super::wire::{self, Bcast, Direct, Handler, Inbound, Ledger, Meta, NodeId, WireEvent, KIND_DIRECT, KIND_FOCA};
use super::{MemberEvent, MemberInfo, UserEvent, STATUS_ALIVE, STATUS_FAILED, STATUS_LEAVING, STATUS_LEFT};
use crate::GossipConfig;
use legate_api::coordinate::Coord;

/// Datagram budget (what fits a typical 1500-byte MTU with IP/UDP headers).
pub(crate) const MAX_DATAGRAM_OUT: usize = 1400;
/// Largest foca packet, so that kind byte + sealing still fit [`MAX_DATAGRAM_OUT`].
pub(crate) const FOCA_MAX_PACKET: usize = MAX_DATAGRAM_OUT - SEAL_OVERHEAD - 1;
/// Largest custom broadcast: room is left for foca's header (two or three identities) and the
/// length prefixes, else the item would never fit beside them.
pub(crate) const MAX_BROADCAST: usize = 1000;
/// Budget for one direct message body (meta push, digest).
/// Serf's flap timeout: a member back within this long of failing flapped.
const FLAP_TIMEOUT: Duration = Duration::from_secs(60);
/// `memberlist.health.score`'s ceiling (memberlist's awareness_max_multiplier) and what one
/// declaration of this agent as down adds; it falls by one every probe interval.
const MAX_HEALTH_SCORE: u32 = 8;
const HEALTH_PENALTY: u32 = 4;

const DIRECT_BUDGET: usize = 1200;
/// How many senders we remember having warned about (bad key, plaintext, ...).
const WARNED_CAP: usize = 1024;

type Fc = Foca<NodeId, PostcardCodec, StdRng, Handler>;

pub(crate) struct Params {
    pub gossip: GossipConfig,
    pub reconnect_timeout: Duration,
    pub tombstone_timeout: Duration,
}

impl Params {
    pub(crate) fn probe_interval(&self) -> Duration {
        self.gossip.probe_interval.as_duration().max(Duration::from_millis(10))
    }
    pub(crate) fn gossip_interval(&self) -> Duration {
        self.gossip.gossip_interval.as_duration().max(Duration::from_millis(1))
    }
    /// Anti-entropy period (metadata digests) and foca's periodic announce: memberlist's
    /// push-pull runs every 30 s with a 1 s probe interval; scale with it.
    pub(crate) fn sync_interval(&self) -> Duration {
        self.probe_interval() * 30
    }
}

/// Foca's configuration for a cluster of `n` members, from Consul's knobs: probe period and
/// timeout, suspicion timeout `suspicion_mult * max(1, log10 n) * probe_interval`, retransmits
/// `retransmit_mult * ceil(log10(n + 1))`, periodic gossip to `gossip_nodes` every
/// `gossip_interval`, periodic announce (push-pull of the member list) and reconnect attempts to
/// down members every `sync_interval`.
pub(crate) fn foca_config(p: &Params, n: usize) -> Config {
    let g = &p.gossip;
    let probe = p.probe_interval();
    let mut rtt = g.probe_timeout.as_duration();
    if rtt.is_zero() || rtt >= probe {
        rtt = probe / 2;
    }
    let n = n.max(1) as f64;
    let scale = n.log10().max(1.0);
    let suspect = probe.mul_f64(f64::from(g.suspicion_mult.max(1)) * scale);
    let max_tx = (f64::from(g.retransmit_mult.max(1)) * (n + 1.0).log10().ceil()).clamp(1.0, 255.0) as u8;
    let periodic = |frequency: Duration, k: usize| {
        Some(PeriodicParams { frequency, num_members: NonZeroUsize::new(k.max(1)).unwrap_or(NonZeroUsize::MIN) })
    };
    Config {
        probe_period: probe,
        probe_rtt: rtt,
        num_indirect_probes: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        max_transmissions: NonZeroU8::new(max_tx).unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: suspect,
        remove_down_after: Some(p.reconnect_timeout.max(probe)),
        max_packet_size: NonZeroUsize::new(FOCA_MAX_PACKET).unwrap_or(NonZeroUsize::MIN),
        notify_down_members: true,
        periodic_announce: periodic(p.sync_interval(), 1),
        periodic_announce_to_down_members: periodic(p.sync_interval(), 2),
        periodic_gossip: periodic(p.gossip_interval(), g.gossip_nodes as usize),
    }
}

/// Process-unique, increasing identity epochs (milliseconds since the Unix epoch).
fn next_epoch() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// What foca asked for during one call.
#[derive(Default)]
struct Effects {
    sends: Vec<(SocketAddr, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    notes: Vec<OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Effects {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notes.push(notification.to_owned());
    }
    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((to.addr, data.to_vec()));
    }
    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// One other member, by name.
struct Record {
    /// The newest identity seen under this name.
    id: NodeId,
    /// Foca's view of `id`: alive or suspect (true), down (false).
    active: bool,
    /// An operator force-left this identity.
    forced: bool,
    /// What `members()` shows and the last event was about; None until first metadata.
    view: Option<MemberInfo>,
    /// When `view`'s status last changed (reaping counts from here).
    since: Instant,
    /// A force-leave hit this member while it was alive: shown as leaving until then (serf
    /// marks it leaving until the member refutes by being alive).
    leave_intent_until: Option<Instant>,
}

fn is_up(status: u8) -> bool {
    status == STATUS_ALIVE || status == STATUS_LEAVING
}

pub(crate) struct Core {
    foca: Fc,
    fx: Effects,
    ledger: Arc<Mutex<Ledger>>,
    params: Params,
    own: Meta,
    own_addr: SocketAddr,
    left: bool,
    records: BTreeMap<String, Record>,
    timers: BTreeMap<(Instant, u64), Timer<NodeId>>,
    timer_seq: u64,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    pub(crate) keyring: Keyring,
    /// Join handshakes in flight: token -> the answer (once there is one): the identity we
    /// announced to, or why we refused to join it.
    joins: HashMap<u64, Option<Result<NodeId, String>>>,
    warned: HashSet<(SocketAddr, OpenError)>,
    event_clock: u64,
    /// memberlist's local health awareness, as far as foca lets us see it: raised when the
    /// cluster declares this agent down (it had to rejoin), falling back each probe interval.
    health_score: u32,
    member_tx: broadcast::Sender<MemberEvent>,
    event_tx: broadcast::Sender<UserEvent>,
    cluster_size: usize,
    next_sync: Instant,
    /// This member's network coordinate (None: `disable_coordinates`).
    vivaldi: Option<Vivaldi>,
    /// Keyring queries in flight: token -> the keys each answering address has.
    key_queries: HashMap<u64, BTreeMap<SocketAddr, Vec<String>>>,
}

/// Round-trip measurements for the network coordinate: one ping to a random member per probe
/// interval, answered with that member's coordinate.
pub(crate) struct Vivaldi {
    client: vivaldi::Client,
    /// The members' coordinates as their last answers carried them (serf's cache).
    peers: HashMap<String, Coord>,
    /// Pings in flight: sequence -> (member, sent at).
    pending: HashMap<u32, (String, Instant)>,
    seq: u32,
}

/// Pings not answered within this long are forgotten (serf refuses longer round trips anyway).
const PING_EXPIRY: Duration = Duration::from_secs(10);

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        own_addr: SocketAddr,
        tags: BTreeMap<String, String>,
        keyring: Keyring,
        params: Params,
        member_tx: broadcast::Sender<MemberEvent>,
        event_tx: broadcast::Sender<UserEvent>,
        coordinates: bool,
        now: Instant,
    ) -> Core {
        let epoch = next_epoch();
        let id = NodeId { name: name.clone(), addr: own_addr, epoch, renew: 0 };
        let ledger = Arc::new(Mutex::new(Ledger::new(name.clone(), now)));
        let foca = Foca::with_custom_broadcast(
            id,
            foca_config(&params, 1),
            rand_foca::make_rng::<StdRng>(),
            PostcardCodec,
            Handler { ledger: ledger.clone() },
        );
        let next_sync = now + params.sync_interval();
        Core {
            foca,
            fx: Effects::default(),
            ledger,
            params,
            own: Meta { name, epoch, version: 1, tags, leaving: false },
            own_addr,
            left: false,
            records: BTreeMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            outbox: Vec::new(),
            keyring,
            joins: HashMap::new(),
            warned: HashSet::new(),
            event_clock: 1,
            health_score: 0,
            member_tx,
            event_tx,
            cluster_size: 1,
            next_sync,
            vivaldi: coordinates.then(|| Vivaldi {
                client: vivaldi::Client::new(),
                peers: HashMap::new(),
                pending: HashMap::new(),
                seq: rand::random(),
            }),
            key_queries: HashMap::new(),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn has_left(&self) -> bool {
        self.left
    }

    pub(crate) fn take_outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|k| k.0)
    }

    // ----- inputs -----

    /// A datagram arrived from `from`.
    pub(crate) fn handle_datagram(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        if self.left {
            return;
        }
        let inner = match self.keyring.open(data) {
            Ok(inner) => inner,
            Err(e) => {
                if self.warned.len() >= WARNED_CAP {
                    self.warned.clear();
                }
                // Logged once per sender and reason, not once per packet.
                if self.warned.insert((from, e)) {
                    tracing::warn!(%from, "gossip: {}", e.describe());
                }
                return;
            }
        };
        let Some((&kind, body)) = inner.split_first() else { return };
        self.ledger().now = now;
        match kind {
            KIND_FOCA => {
                if let Err(e) = self.foca.handle_data(body, &mut self.fx) {
                    tracing::trace!(%from, error = %e, "gossip: foca rejected packet");
                }
            }
            KIND_DIRECT => match wire::decode::<Direct>(body) {
                Ok(d) => self.handle_direct(from, d, now),
                Err(e) => tracing::debug!(%from, error = %e, "gossip: bad direct message"),
            },
            other => tracing::debug!(%from, kind = other, "gossip: unknown message kind"),
        }
        self.settle(now);
    }

    /// Runs foca's timers that are due.
    pub(crate) fn fire_timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        if due.is_empty() {
            return;
        }
        // Foca's order for timers delivered together (late): indirect probes before the next
        // probe round. The sort is stable, so otherwise deadline order holds.
        due.sort();
        self.ledger().now = now;
        for t in due {
            let round = matches!(t, Timer::PeriodicGossip(_)).then(std::time::Instant::now);
            if let Err(e) = self.foca.handle_timer(t, &mut self.fx) {
                tracing::trace!(error = %e, "gossip: timer");
            }
            if let Some(started) = round {
                legate_telemetry::measure_since("memberlist.gossip", Vec::new(), started);
            }
        }
        self.settle(now);
    }

    /// Periodic housekeeping (every probe interval): reap, pull missing metadata, anti-entropy.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.left {
            return;
        }
        legate_telemetry::sample("serf.queue.Intent", Vec::new(), self.foca.updates_backlog() as f64);
        legate_telemetry::sample("serf.queue.Event", Vec::new(), self.foca.custom_broadcast_backlog() as f64);
        self.health_score = self.health_score.saturating_sub(1);
        legate_telemetry::gauge("memberlist.health.score", Vec::new(), f64::from(self.health_score));
        self.reap(now);
        self.ping_for_coordinate(now);
        let lapsed: Vec<String> = self
            .records
            .iter_mut()
            .filter(|(_, r)| r.leave_intent_until.is_some_and(|t| t <= now))
            .map(|(name, r)| {
                r.leave_intent_until = None;
                name.clone()
            })
            .collect();
        for name in lapsed {
            self.refresh(&name, now);
        }
        let missing: Vec<(String, SocketAddr)> = {
            let l = self.ledger();
            self.records
                .iter()
                .filter(|(name, r)| r.active && l.metas.get(*name).is_none_or(|e| e.meta.epoch != r.id.epoch))
                .map(|(name, r)| (name.clone(), r.id.addr))
                .collect()
        };
        for (name, addr) in missing {
            self.send_direct(addr, &Direct::MetaPull(vec![name]));
        }
        if now >= self.next_sync {
            self.next_sync = now + self.params.sync_interval();
            let peer = self.records.values().filter(|r| r.active).map(|r| r.id.addr).choose(&mut rand::thread_rng());
            if let Some(peer) = peer {
                self.send_digest(peer);
            }
            if self.foca.num_members() == 0 {
                // Alone (everyone else failed, e.g. we were partitioned off): foca only
                // reconnects while it has active members, so knock on a failed member's door.
                // If it thinks we are down it tells us, and foca renews our identity.
                let failed = self
                    .records
                    .values()
                    .filter(|r| !r.active && r.view.as_ref().is_some_and(|v| v.status == STATUS_FAILED))
                    .map(|r| r.id.clone())
                    .choose(&mut rand::thread_rng());
                if let Some(id) = failed {
                    self.ledger().now = now;
                    if let Err(e) = self.foca.announce(id, &mut self.fx) {
                        tracing::debug!(error = %e, "gossip: reconnect");
                    }
                    self.settle(now);
                }
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        let reconnect = self.params.reconnect_timeout;
        let tombstone = self.params.tombstone_timeout;
        let gone: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| {
                !r.active
                    && match &r.view {
                        Some(v) if v.status == STATUS_LEFT => now >= r.since + tombstone,
                        _ => now >= r.since + reconnect,
                    }
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.remove_record(&name);
        }
        // Metadata of members foca never reported (or that were reaped) expires too.
        let orphan_ttl = reconnect.max(self.params.sync_interval() * 10);
        let records = &self.records;
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .metas
            .retain(|name, e| records.get(name).is_some_and(|r| r.id.epoch == e.meta.epoch) || now < e.at + orphan_ttl);
    }

    /// Sends one round-trip measurement to a random active member.
    fn ping_for_coordinate(&mut self, now: Instant) {
        let Some(v) = self.vivaldi.as_mut() else { return };
        v.pending.retain(|_, (_, sent)| now.duration_since(*sent) < PING_EXPIRY);
        let Some(peer) = self.records.values().filter(|r| r.active).choose(&mut rand::thread_rng()) else { return };
        let (name, addr) = (peer.id.name.clone(), peer.id.addr);
        v.seq = v.seq.wrapping_add(1);
        let seq = v.seq;
        v.pending.insert(seq, (name, now));
        let ping = Direct::Ping { seq, from: self.own.name.clone() };
        self.send_direct(addr, &ping);
    }

    /// The network coordinate this member keeps (None: disabled).
    pub(crate) fn coordinate(&self) -> Option<Coord> {
        self.vivaldi.as_ref().map(|v| v.client.coordinate())
    }

    /// The other members' coordinates this member has seen, by name.
    pub(crate) fn peer_coordinates(&self) -> Vec<(String, Coord)> {
        self.vivaldi.as_ref().map(|v| v.peers.iter().map(|(k, c)| (k.clone(), c.clone())).collect()).unwrap_or_default()
    }

    /// An answer to one of our pings: the round trip moves our coordinate.
    fn on_ack(&mut self, seq: u32, coord: Option<Coord>, now: Instant) {
        let Some(v) = self.vivaldi.as_mut() else { return };
        let Some((name, sent)) = v.pending.remove(&seq) else { return };
        let Some(other) = coord else { return };
        if other.is_valid() {
            v.peers.insert(name.clone(), other.clone());
        }
        match v.client.update(&name, &other, now.duration_since(sent)) {
            Ok(c) => legate_telemetry::sample("serf.coordinate.adjustment-ms", Vec::new(), c.adjustment * 1000.0),
            Err(e) => {
                legate_telemetry::incr("serf.coordinate.rejected");
                tracing::debug!(member = %name, error = %e, "gossip: coordinate sample rejected");
            }
        }
    }

    fn remove_record(&mut self, name: &str) {
        if let Some(v) = self.vivaldi.as_mut() {
            v.client.forget(name);
            v.peers.remove(name);
        }
        if let Some(rec) = self.records.remove(name) {
            {
                let mut l = self.ledger();
                if l.metas.get(name).is_some_and(|e| e.meta.epoch <= rec.id.epoch) {
                    l.metas.remove(name);
                }
            }
            if let Some(view) = rec.view {
                tracing::info!(member = %name, "gossip: member reaped");
                let _ = self.member_tx.send(MemberEvent::Reap(view));
            }
        }
    }

    // ----- operations -----

    /// Starts a join handshake with `to` (see [`Direct::Hello`]).
    pub(crate) fn hello(&mut self, to: SocketAddr, token: u64) {
        self.joins.entry(token).or_insert(None);
        self.send_direct(to, &Direct::Hello { token });
    }

    /// The answer to join handshake `token`, if there is one yet.
    pub(crate) fn join_answer(&self, token: u64) -> Option<Result<NodeId, String>> {
        self.joins.get(&token).cloned().flatten()
    }

    pub(crate) fn forget_join(&mut self, token: u64) {
        self.joins.remove(&token);
    }

    /// Whether `name` is listed (its metadata arrived).
    pub(crate) fn is_listed(&self, name: &str) -> bool {
        name == self.own.name || self.records.get(name).is_some_and(|r| r.view.is_some())
    }

    pub(crate) fn is_own_addr(&self, addr: SocketAddr) -> bool {
        addr == self.own_addr || addr == self.foca.identity().addr
    }

    pub(crate) fn set_tags(&mut self, tags: BTreeMap<String, String>, now: Instant) {
        if self.left || tags == self.own.tags {
            return;
        }
        self.own.tags = tags;
        self.own.version += 1;
        self.broadcast_own_meta();
        self.broadcast_now();
        let _ = self.member_tx.send(MemberEvent::Update(self.self_view()));
        self.settle(now);
    }

    /// First half of a graceful leave: tell everyone we are leaving (broadcast and a direct push
    /// to every active member), so that our going down reads as LEFT, not FAILED.
    pub(crate) fn begin_leave(&mut self, now: Instant) {
        if self.left || self.own.leaving {
            return;
        }
        self.own.leaving = true;
        self.own.version += 1;
        self.broadcast_own_meta();
        let peers: Vec<SocketAddr> = self.records.values().filter(|r| r.active).map(|r| r.id.addr).collect();
        for peer in peers {
            self.push_metas(peer, vec![self.own.clone()]);
        }
        if let Err(e) = self.foca.gossip(&mut self.fx) {
            tracing::debug!(error = %e, "gossip: leave intent");
        }
        self.settle(now);
    }

    /// Second half: foca declares our identity down and stops probing.
    pub(crate) fn finish_leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        if let Err(e) = self.foca.leave_cluster(&mut self.fx) {
            tracing::debug!(error = %e, "gossip: leave");
        }
        self.left = true;
        self.settle(now);
    }

    /// Gossips pending updates to a few members; returns how many updates are still pending.
    pub(crate) fn regossip(&mut self, now: Instant) -> usize {
        if let Err(e) = self.foca.gossip(&mut self.fx) {
            tracing::debug!(error = %e, "gossip: regossip");
        }
        self.settle(now);
        self.foca.updates_backlog()
    }

    pub(crate) fn force_leave(&mut self, node: &str, prune: bool, now: Instant) -> Result<(), GossipError> {
        if node == self.own.name {
            return Err(GossipError::ForceLeaveSelf);
        }
        let rec = self
            .records
            .get(node)
            .filter(|r| r.view.is_some())
            .ok_or_else(|| GossipError::NoSuchNode(node.to_string()))?;
        if rec.active {
            // Serf marks an alive member leaving on a force-leave, until it refutes by being
            // alive; here the local view shows it leaving for a few probe rounds.
            let until = now + self.params.probe_interval() * 3;
            if let Some(r) = self.records.get_mut(node) {
                r.leave_intent_until = Some(until);
            }
            self.refresh(node, now);
            return Ok(());
        }
        let epoch = rec.id.epoch;
        self.ledger().see_force(node, epoch, prune);
        self.apply_force_leave(node, epoch, prune, now);
        let data = wire::encode(&Bcast::ForceLeave { name: node.to_string(), epoch, prune });
        if let Err(e) = self.foca.add_broadcast(&data) {
            tracing::warn!(error = %e, "gossip: force-leave broadcast");
        }
        self.settle(now);
        Ok(())
    }

    fn apply_force_leave(&mut self, name: &str, epoch: u64, prune: bool, now: Instant) {
        let Some(rec) = self.records.get_mut(name) else { return };
        if rec.id.epoch != epoch || rec.active {
            return;
        }
        rec.forced = true;
        self.refresh(name, now);
        if prune {
            self.remove_record(name);
        }
    }

    /// Fires a user event: stamps the Lamport time (and id/origin if empty), delivers it
    /// locally and broadcasts it.
    pub(crate) fn fire_event(&mut self, ev: UserEvent, now: Instant) -> Result<UserEvent, GossipError> {
        if self.left {
            return Err(GossipError::Left);
        }
        let mut ev = ev;
        if ev.id.is_empty() {
            ev.id = uuid::Uuid::new_v4().to_string();
        }
        if ev.origin.is_empty() {
            ev.origin = self.own.name.clone();
        }
        ev.ltime = self.event_clock;
        let data = wire::encode(&Bcast::Event(WireEvent::from(ev.clone())));
        if data.len() > MAX_BROADCAST {
            return Err(GossipError::EventTooLarge(MAX_BROADCAST));
        }
        if !self.ledger().see_event(&ev.id) {
            return Err(GossipError::DuplicateEvent(ev.id));
        }
        self.event_clock += 1;
        if let Err(e) = self.foca.add_broadcast(&data) {
            return Err(GossipError::Broadcast(e.to_string()));
        }
        self.broadcast_now();
        let _ = self.event_tx.send(ev.clone());
        self.settle(now);
        Ok(ev)
    }

    pub(crate) fn stats(&self) -> super::PoolStats {
        let mut s = super::PoolStats {
            health_score: self.health_score,
            intent_queue: self.foca.updates_backlog(),
            event_queue: self.foca.custom_broadcast_backlog(),
            event_time: self.event_clock,
            ..Default::default()
        };
        for m in self.members() {
            match m.status {
                STATUS_FAILED => s.failed += 1,
                STATUS_LEFT => s.left += 1,
                _ => s.members += 1,
            }
        }
        s
    }

    pub(crate) fn members(&self) -> Vec<MemberInfo> {
        let mut out = vec![self.self_view()];
        out.extend(self.records.values().filter_map(|r| r.view.clone()));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn self_view(&self) -> MemberInfo {
        let status = if self.left {
            STATUS_LEFT
        } else if self.own.leaving {
            STATUS_LEAVING
        } else {
            STATUS_ALIVE
        };
        MemberInfo {
            name: self.own.name.clone(),
            addr: self.own_addr.ip(),
            port: self.own_addr.port(),
            tags: self.own.tags.clone(),
            status,
        }
    }

    // ----- internals -----

    /// Turns what foca produced into effects, then applies what broadcasts brought in.
    fn settle(&mut self, now: Instant) {
        for note in std::mem::take(&mut self.fx.notes) {
            self.on_note(note, now);
        }
        for (after, t) in std::mem::take(&mut self.fx.timers) {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), t);
        }
        for (to, data) in std::mem::take(&mut self.fx.sends) {
            self.emit(to, KIND_FOCA, &data);
        }
        let inbox = std::mem::take(&mut self.ledger().inbox);
        for item in inbox {
            match item {
                Inbound::Meta(name) => self.refresh(&name, now),
                Inbound::Event(e) => {
                    legate_telemetry::incr("serf.events");
                    self.event_clock = self.event_clock.max(e.ltime + 1);
                    let _ = self.event_tx.send(UserEvent::from(e));
                }
                Inbound::ForceLeave { name, epoch, prune } => self.apply_force_leave(&name, epoch, prune, now),
            }
        }
        let n = self.foca.num_members() + 1;
        if n != self.cluster_size {
            self.cluster_size = n;
            if let Err(e) = self.foca.set_config(foca_config(&self.params, n)) {
                tracing::debug!(error = %e, "gossip: resize config");
            }
        }
    }

    /// Foca's current opinion about `id`: Some(active) if it knows it.
    fn foca_active(&self, id: &NodeId) -> Option<bool> {
        self.foca.iter_membership_state().find(|m| m.id() == id).map(|m| m.state() != State::Down)
    }

    fn on_note(&mut self, note: OwnedNotification<NodeId>, now: Instant) {
        match note {
            OwnedNotification::MemberUp(id) => {
                let active = self.foca_active(&id).unwrap_or(true);
                self.observe(id, active, now);
            }
            OwnedNotification::MemberDown(id) => {
                let active = self.foca_active(&id).unwrap_or(false);
                self.observe(id, active, now);
            }
            OwnedNotification::Rename(old, new) => {
                if old.name != new.name {
                    if let Some(r) = self.records.get_mut(&old.name).filter(|r| r.id == old) {
                        r.active = false;
                        self.refresh(&old.name, now);
                    }
                }
                let active = self.foca_active(&new).unwrap_or(false);
                self.observe(new, active, now);
            }
            OwnedNotification::Active => tracing::debug!("gossip: joined the cluster"),
            OwnedNotification::Idle => tracing::debug!("gossip: no other active members"),
            OwnedNotification::Defunct => {
                if !self.left {
                    tracing::warn!("gossip: declared down by the cluster and cannot rejoin");
                }
            }
            OwnedNotification::Rejoin(id) => {
                self.health_score = (self.health_score + HEALTH_PENALTY).min(MAX_HEALTH_SCORE);
                tracing::info!(
                    renew = id.renew,
                    "gossip: the cluster declared us down; rejoined with a renewed identity"
                )
            }
        }
    }

    /// Foca says identity `id` is active (or down).
    fn observe(&mut self, id: NodeId, active: bool, now: Instant) {
        if id.name == self.own.name {
            if id.epoch > self.own.epoch {
                tracing::warn!(addr = %id.addr, "gossip: another member uses our node name");
            }
            return;
        }
        let came_up = match self.records.get_mut(&id.name) {
            None => {
                if !active {
                    return;
                }
                self.records.insert(
                    id.name.clone(),
                    Record { id: id.clone(), active, forced: false, view: None, since: now, leave_intent_until: None },
                );
                true
            }
            Some(r) if r.id == id => {
                let came_up = active && !r.active;
                r.active = active;
                came_up
            }
            Some(r) if id.newer_than(&r.id) => {
                r.id = id.clone();
                r.active = active;
                r.forced = false;
                active
            }
            // An older identity of a member we know by a newer one: stale news.
            Some(_) => return,
        };
        if came_up {
            // A member we (re)discover may not know our metadata, and we may lack its.
            self.push_metas(id.addr, vec![self.own.clone()]);
            let has_meta = self.ledger().metas.get(&id.name).is_some_and(|e| e.meta.epoch == id.epoch);
            if !has_meta {
                self.send_direct(id.addr, &Direct::MetaPull(Vec::new()));
            }
        }
        self.refresh(&id.name, now);
    }

    /// Recomputes the visible state of `name` and emits the transition's event.
    fn refresh(&mut self, name: &str, now: Instant) {
        let meta = self.ledger().metas.get(name).map(|e| e.meta.clone());
        let Some(rec) = self.records.get_mut(name) else { return };
        let current = meta.as_ref().filter(|m| m.epoch == rec.id.epoch);
        let new = if rec.active {
            match current {
                Some(m) => Some(MemberInfo {
                    name: name.to_string(),
                    addr: rec.id.addr.ip(),
                    port: rec.id.addr.port(),
                    tags: m.tags.clone(),
                    status: if m.leaving || rec.leave_intent_until.is_some_and(|t| t > now) {
                        STATUS_LEAVING
                    } else {
                        STATUS_ALIVE
                    },
                }),
                // Wait for this identity's metadata before changing what we show.
                None => rec.view.clone(),
            }
        } else {
            rec.view.as_ref().map(|old| {
                let left = rec.forced || old.status == STATUS_LEFT || current.is_some_and(|m| m.leaving);
                MemberInfo { status: if left { STATUS_LEFT } else { STATUS_FAILED }, ..old.clone() }
            })
        };
        if new == rec.view {
            return;
        }
        let old = std::mem::replace(&mut rec.view, new.clone());
        let Some(new) = new else { return };
        let status_since = rec.since;
        if old.as_ref().map(|o| o.status) != Some(new.status) {
            rec.since = now;
        }
        let old_status = old.as_ref().map(|o| o.status);
        let event = match old {
            None => Some(MemberEvent::Join(new.clone())),
            Some(o) if is_up(new.status) => {
                Some(if is_up(o.status) { MemberEvent::Update(new.clone()) } else { MemberEvent::Join(new.clone()) })
            }
            Some(o) if new.status == STATUS_FAILED && o.status != STATUS_FAILED => {
                Some(MemberEvent::Failed(new.clone()))
            }
            Some(o) if new.status == STATUS_LEFT && o.status != STATUS_LEFT => Some(MemberEvent::Leave(new.clone())),
            Some(_) => None,
        };
        if let Some(event) = event {
            match &event {
                MemberEvent::Join(m) => {
                    tracing::info!(member = %m.name, addr = %m.addr, "gossip: member joined");
                    legate_telemetry::incr("serf.member.join");
                    // Serf's flap: back within its flap timeout of failing.
                    if old_status == Some(STATUS_FAILED) && now.duration_since(status_since) < FLAP_TIMEOUT {
                        legate_telemetry::incr("serf.member.flap");
                    }
                }
                MemberEvent::Failed(m) => {
                    tracing::info!(member = %m.name, "gossip: member failed");
                    legate_telemetry::incr("serf.member.failed");
                }
                MemberEvent::Leave(m) => {
                    tracing::info!(member = %m.name, "gossip: member left");
                    legate_telemetry::incr("serf.member.left");
                }
                _ => {
                    tracing::debug!(member = %new.name, status = new.status, "gossip: member updated");
                    legate_telemetry::incr("serf.member.update");
                }
            }
            let _ = self.member_tx.send(event);
        }
    }

    fn handle_direct(&mut self, from: SocketAddr, d: Direct, now: Instant) {
        match d {
            Direct::Hello { token } => {
                let id = self.foca.identity().clone();
                self.send_direct(from, &Direct::Welcome { token, id });
            }
            Direct::Welcome { token, id } => {
                // Only answers to our own handshakes make us announce.
                if let Some(slot) = self.joins.get_mut(&token) {
                    if id.name == self.own.name {
                        // Two agents with one name would keep declaring each other down.
                        *slot =
                            Some(Err(format!("node name {:?} is already used by the member at {}", id.name, id.addr)));
                        return;
                    }
                    *slot = Some(Ok(id.clone()));
                    if let Err(e) = self.foca.announce(id, &mut self.fx) {
                        tracing::debug!(error = %e, "gossip: announce");
                    }
                    self.send_direct(from, &Direct::StatePull);
                }
            }
            Direct::StatePull => {
                let members: Vec<foca::Member<NodeId>> =
                    self.foca.iter_members().filter(|m| m.id().addr != from).cloned().collect();
                self.send_chunked(from, members, |m| wire::encode(m).len(), Direct::State);
            }
            Direct::State(members) => {
                // Not re-broadcast: the sender's cluster knows these already.
                if let Err(e) = self.foca.apply_many(members.into_iter(), false, &mut self.fx) {
                    tracing::debug!(error = %e, "gossip: apply member list");
                }
            }
            Direct::MetaPush(metas) => {
                for m in metas {
                    if m.name == self.own.name {
                        if m.epoch > self.own.epoch {
                            tracing::warn!(%from, "gossip: another member uses our node name");
                        }
                        continue;
                    }
                    let fresh = self.ledger().accept_meta(&m);
                    if fresh {
                        self.refresh(&m.name, now);
                    }
                }
            }
            Direct::MetaPull(names) => {
                let metas = if names.is_empty() {
                    vec![self.own.clone()]
                } else {
                    let l = self.ledger();
                    names
                        .iter()
                        .filter_map(|n| {
                            if *n == self.own.name {
                                Some(self.own.clone())
                            } else {
                                l.metas.get(n).map(|e| e.meta.clone())
                            }
                        })
                        .collect()
                };
                self.push_metas(from, metas);
            }
            Direct::Digest(entries) => {
                let mut give = Vec::new();
                let mut want = Vec::new();
                {
                    let l = self.ledger();
                    for (name, epoch, version) in entries {
                        let theirs = (epoch, version);
                        let ours =
                            if name == self.own.name { Some(&self.own) } else { l.metas.get(&name).map(|e| &e.meta) };
                        match ours {
                            Some(m) if m.order() > theirs => give.push(m.clone()),
                            Some(m) if m.order() == theirs => {}
                            _ if name != self.own.name => want.push(name),
                            _ => {}
                        }
                    }
                }
                self.push_metas(from, give);
                if !want.is_empty() {
                    self.send_direct(from, &Direct::MetaPull(want));
                }
            }
            Direct::Ping { seq, from: name } => {
                // Answered at the address the pinger advertises, so the round trip crosses the
                // same path both ways as the pinger's other traffic with us.
                let to = self.records.get(&name).map_or(from, |r| r.id.addr);
                let coord = self.coordinate();
                self.send_direct(to, &Direct::Ack { seq, coord });
            }
            Direct::Ack { seq, coord } => self.on_ack(seq, coord, now),
            Direct::KeyListRequest { token } => {
                let keys = self.keyring.list();
                self.send_direct(from, &Direct::KeyListResponse { token, keys });
            }
            Direct::KeyListResponse { token, keys } => {
                if let Some(answers) = self.key_queries.get_mut(&token) {
                    answers.insert(from, keys);
                }
            }
        }
    }

    /// Asks every active member for its keys (again, for those that have not answered);
    /// returns how many members were asked in all.
    pub(crate) fn ask_keys(&mut self, token: u64) -> usize {
        let answered: Vec<SocketAddr> = self.key_queries.entry(token).or_default().keys().copied().collect();
        let targets: Vec<SocketAddr> = self.records.values().filter(|r| r.active).map(|r| r.id.addr).collect();
        for addr in &targets {
            if !answered.contains(addr) {
                self.send_direct(*addr, &Direct::KeyListRequest { token });
            }
        }
        targets.len()
    }

    /// The answers a keyring query has so far.
    pub(crate) fn key_answers(&self, token: u64) -> usize {
        self.key_queries.get(&token).map_or(0, BTreeMap::len)
    }

    /// Ends a keyring query: every answer's keys.
    pub(crate) fn finish_key_query(&mut self, token: u64) -> Vec<Vec<String>> {
        self.key_queries.remove(&token).map(|a| a.into_values().collect()).unwrap_or_default()
    }

    fn send_digest(&mut self, to: SocketAddr) {
        let mut all = vec![(self.own.name.clone(), self.own.epoch, self.own.version)];
        all.extend(self.ledger().metas.values().map(|e| (e.meta.name.clone(), e.meta.epoch, e.meta.version)));
        self.send_chunked(to, all, |e| e.0.len() + 24, Direct::Digest);
    }

    /// Sends `items` in as many direct messages as it takes to keep each within a datagram
    /// (`size` estimates one item's encoded size).
    fn send_chunked<T>(
        &mut self,
        to: SocketAddr,
        items: Vec<T>,
        size: impl Fn(&T) -> usize,
        wrap: fn(Vec<T>) -> Direct,
    ) {
        let mut chunk = Vec::new();
        let mut used = 0;
        for item in items {
            let est = size(&item);
            if used + est > DIRECT_BUDGET && !chunk.is_empty() {
                self.send_direct(to, &wrap(std::mem::take(&mut chunk)));
                used = 0;
            }
            used += est;
            chunk.push(item);
        }
        if !chunk.is_empty() {
            self.send_direct(to, &wrap(chunk));
        }
    }

    /// Sends metadata records, a datagram's worth at a time.
    fn push_metas(&mut self, to: SocketAddr, metas: Vec<Meta>) {
        self.send_chunked(to, metas, |m| wire::encode(m).len(), Direct::MetaPush);
    }

    fn broadcast_own_meta(&mut self) {
        let data = wire::encode(&Bcast::Meta(self.own.clone()));
        if data.len() > MAX_BROADCAST {
            // Too big to piggyback: members still get it through direct pushes and digests.
            tracing::warn!(bytes = data.len(), "gossip: member tags too large to broadcast; relying on sync");
            return;
        }
        if let Err(e) = self.foca.add_broadcast(&data) {
            tracing::warn!(error = %e, "gossip: cannot broadcast member tags");
        }
    }

    /// Sends pending custom broadcasts to a few members right away instead of at the next
    /// periodic gossip.
    fn broadcast_now(&mut self) {
        if let Err(e) = self.foca.broadcast(&mut self.fx) {
            tracing::debug!(error = %e, "gossip: broadcast");
        }
    }

    fn send_direct(&mut self, to: SocketAddr, d: &Direct) {
        let body = wire::encode(d);
        self.emit(to, KIND_DIRECT, &body);
    }

    fn emit(&mut self, to: SocketAddr, kind: u8, body: &[u8]) {
        let mut inner = Vec::with_capacity(1 + body.len());
        inner.push(kind);
        inner.extend_from_slice(body);
        let datagram = self.keyring.seal(&inner);
        self.outbox.push((to, datagram));
    }
}

impl From<UserEvent> for WireEvent {
    fn from(e: UserEvent) -> WireEvent {
        WireEvent {
            id: e.id,
            name: e.name,
            payload: e.payload,
            ltime: e.ltime,
            node_filter: e.node_filter,
            service_filter: e.service_filter,
            tag_filter: e.tag_filter,
            origin: e.origin,
        }
    }
}

impl From<WireEvent> for UserEvent {
    fn from(e: WireEvent) -> UserEvent {
        UserEvent {
            id: e.id,
            name: e.name,
            payload: e.payload,
            ltime: e.ltime,
            node_filter: e.node_filter,
            service_filter: e.service_filter,
            tag_filter: e.tag_filter,
            origin: e.origin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use legate_types::GoDuration;

    #[test]
    fn config_follows_consul_knobs() {
        let p = Params {
            gossip: GossipConfig::lan(),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
        };
        let c = foca_config(&p, 3);
        assert_eq!(c.probe_period, Duration::from_secs(1));
        assert_eq!(c.probe_rtt, Duration::from_millis(500));
        assert_eq!(c.suspect_to_down_after, Duration::from_secs(4));
        assert_eq!(c.max_transmissions.get(), 4);
        let g = c.periodic_gossip.unwrap();
        assert_eq!((g.frequency, g.num_members.get()), (Duration::from_millis(200), 3));
        let big = foca_config(&p, 1000);
        assert_eq!(big.suspect_to_down_after, Duration::from_secs(12));
        assert_eq!(big.max_transmissions.get(), 16);
        // A timeout not below the interval is clamped so foca accepts it.
        let mut odd = GossipConfig::lan();
        odd.probe_timeout = GoDuration::from_secs(2);
        let c = foca_config(&Params { gossip: odd, ..p }, 1);
        assert!(c.probe_rtt < c.probe_period);
    }

    #[test]
    fn epochs_increase() {
        let a = next_epoch();
        let b = next_epoch();
        assert!(b > a);
    }
}
