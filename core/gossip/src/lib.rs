//! legate-gossip: LAN gossip: membership, failure detection, member tags, user events and encryption, on
//! foca (SWIM with suspicion and incarnation refutation).
//!
//! # Layout
//!
//! ```text
//! lib.rs        public API (Gossip, options, member/event types) and the runtime loop: the only
//!               place that does IO (transport, clock, task)
//! core.rs       the sans-IO state machine: foca + member table (status derivation, events,
//!               reaping) + user events; time is an input, datagrams and timers are outputs
//! wire.rs       foca identity, member metadata, custom broadcasts, direct messages, the
//!               broadcast handler
//! keyring.rs    AES-GCM sealing of every datagram, keyring rules, the local.keyring file
//! transport.rs  UDP and an in-memory network (tests run the same scenarios on both)
//! config.rs     the pool's timing options (GossipConfig)
//! ```
//!
//! # Flows
//!
//! Join: `join("10.0.0.2")` -> direct `Hello` to 10.0.0.2:8301 -> it answers `Welcome` with its
//! foca identity -> foca `Announce` to that identity -> `Feed` with active members -> for every
//! member that comes up, push our metadata (tags) and pull theirs -> once a member's metadata is
//! known it is listed and a `MemberEvent::Join` fires.
//!
//! Tags: `set_tags` bumps our metadata version and hands it to foca as a custom broadcast
//! (piggybacked on probes and periodic gossip); a periodic digest exchange repairs what
//! dissemination missed.
//!
//! Leave: broadcast and push "leaving" metadata (others show LEAVING), then foca declares our
//! identity down (others show LEFT, because they saw the intent), then the loop stops.
//!
//! Failure: foca's probe fails -> suspect -> not refuted within the suspicion timeout -> down
//! (FAILED) -> reaped after `reconnect_timeout`. A node restarted under the same name comes back
//! with a newer identity epoch and replaces the old one (Join again).

mod config;
mod core;
mod error;
pub mod fuzz;
mod keyring;
#[cfg(test)]
mod tests;
mod transport;
pub mod vivaldi;
mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::config::GossipConfig;
use self::core::{Core, Params};
pub use self::error::GossipError;
use self::keyring::Keyring;
pub use self::transport::MemNetwork;
use self::transport::{TransportRx, TransportTx, MAX_DATAGRAM};
use self::wire::NodeId;

/// What the members answered a keyring query ([`Gossip::query_keyrings`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyringAnswers {
    /// Members asked, this agent included.
    pub asked: usize,
    /// Each answering member's keys (base64), primary first.
    pub answers: Vec<Vec<String>>,
}

/// Counts serf reports about its pool.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Members alive or leaving (this agent included), failed, and left.
    pub members: usize,
    pub failed: usize,
    pub left: usize,
    /// memberlist's local health awareness (0 is healthy).
    pub health_score: u32,
    /// Updates (joins, leaves, metadata) and user events waiting to be gossiped.
    pub intent_queue: usize,
    pub event_queue: usize,
    /// The user events' Lamport clock.
    pub event_time: u64,
}

pub const STATUS_NONE: u8 = 0;
pub const STATUS_ALIVE: u8 = 1;
pub const STATUS_LEAVING: u8 = 2;
pub const STATUS_LEFT: u8 = 3;
pub const STATUS_FAILED: u8 = 4;

/// Default serf LAN port, used when a join address has none.
pub const DEFAULT_LAN_PORT: u16 = 8301;
/// Default serf WAN port.
pub const DEFAULT_WAN_PORT: u16 = 8302;

/// Capacity of the member-event channel: a subscriber that falls this far behind gets
/// `RecvError::Lagged` and should re-read `members()`.
const MEMBER_EVENT_CAPACITY: usize = 1024;
/// Capacity of the user-event channel (Consul keeps the last 256 events per agent).
const USER_EVENT_CAPACITY: usize = 256;

/// The string form of a status code, as the CLI prints it.
pub fn status_name(status: u8) -> &'static str {
    match status {
        STATUS_ALIVE => "alive",
        STATUS_LEAVING => "leaving",
        STATUS_LEFT => "left",
        STATUS_FAILED => "failed",
        _ => "none",
    }
}

/// One member of the pool as this agent sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: u8,
}

/// Membership changes of other members (and `Update` for our own tag changes).
#[derive(Clone, Debug)]
pub enum MemberEvent {
    /// First seen, or back after failing / leaving (a rejoin).
    Join(MemberInfo),
    /// Tags, address, or alive <-> leaving changed.
    Update(MemberInfo),
    /// Gracefully left (or was force-left).
    Leave(MemberInfo),
    /// Stopped answering probes and did not refute the suspicion.
    Failed(MemberInfo),
    /// Forgotten: failed longer than `reconnect_timeout`, left longer than `tombstone_timeout`,
    /// or pruned by `force_leave`.
    Reap(MemberInfo),
}

/// A user event (`consul event`). `ltime` is the gossip Lamport time, set when fired.
#[derive(Clone, Debug, PartialEq)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    pub payload: Vec<u8>,
    pub ltime: u64,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub origin: String,
}

#[derive(Clone)]
pub struct GossipOptions {
    pub node_name: String,
    /// UDP bind address (serf LAN port); port 0 lets the OS choose.
    pub bind: SocketAddr,
    /// Address others reach us at (the port is the bound one). Unspecified = the bind IP.
    pub advertise: IpAddr,
    pub tags: BTreeMap<String, String>,
    /// Encryption keys (16, 24 or 32 bytes), primary first; empty = plaintext (unless the
    /// keyring file exists).
    pub keys: Vec<Vec<u8>>,
    pub config: GossipConfig,
    /// Failed members are reaped after this.
    pub reconnect_timeout: Duration,
    /// Left members are listed as left this long.
    pub tombstone_timeout: Duration,
    /// `data_dir/serf/local.keyring`: installed keys are persisted here; if it exists at start
    /// its keys are used and `keys` is ignored (like Consul's `encrypt`, used on first start).
    pub keyring_path: Option<PathBuf>,
    /// Keep a Vivaldi network coordinate, measured by pinging a random member every probe
    /// interval (Consul's `disable_coordinates = false`).
    pub coordinates: bool,
}

impl GossipOptions {
    /// LAN defaults: no tags, no encryption, reconnect 72h, tombstone 24h, no keyring file.
    pub fn new(node_name: impl Into<String>, bind: SocketAddr) -> GossipOptions {
        GossipOptions {
            node_name: node_name.into(),
            bind,
            advertise: bind.ip(),
            tags: BTreeMap::new(),
            keys: Vec::new(),
            config: GossipConfig::lan(),
            reconnect_timeout: Duration::from_secs(72 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            keyring_path: None,
            coordinates: true,
        }
    }
}

/// A running gossip member. Every method is safe to call from any task.
pub struct Gossip {
    core: Mutex<Core>,
    tx: TransportTx,
    local_addr: SocketAddr,
    /// Wakes the loop when an API call scheduled an earlier timer.
    wake: Notify,
    /// Cancelled by shutdown or by the end of `leave`.
    stop: CancellationToken,
    /// The loop has exited.
    stopped: AtomicBool,
    member_tx: broadcast::Sender<MemberEvent>,
    event_tx: broadcast::Sender<UserEvent>,
    keyring_path: Option<PathBuf>,
    gossip_interval: Duration,
    probe_interval: Duration,
    next_token: AtomicU64,
}

impl Gossip {
    /// Binds UDP on `opts.bind` and spawns the runtime loop on `tracker`; the loop exits when
    /// `shutdown` is cancelled (without leaving: others will see us fail) or after `leave`.
    pub async fn start(
        opts: GossipOptions,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Gossip>, GossipError> {
        let (tx, rx) =
            transport::bind_udp(opts.bind).await.map_err(|source| GossipError::Bind { addr: opts.bind, source })?;
        Self::start_on(opts, tx, rx, shutdown, tracker)
    }

    /// Like [`Gossip::start`] on an in-memory network (tests; `opts.bind` is a name there).
    pub async fn start_in_memory(
        opts: GossipOptions,
        net: &MemNetwork,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Gossip>, GossipError> {
        let (tx, rx) = net.bind(opts.bind).map_err(|source| GossipError::Bind { addr: opts.bind, source })?;
        Self::start_on(opts, tx, rx, shutdown, tracker)
    }

    fn start_on(
        opts: GossipOptions,
        tx: TransportTx,
        rx: TransportRx,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Gossip>, GossipError> {
        if opts.node_name.is_empty() {
            return Err(GossipError::EmptyName);
        }
        let keys = match opts.keyring_path.as_deref().map(keyring::load_file).transpose()?.flatten() {
            Some(from_file) => {
                if !opts.keys.is_empty() && opts.keys.first() != from_file.first() {
                    tracing::warn!("gossip: keyring file exists; ignoring the configured encrypt key");
                }
                from_file
            }
            None => {
                if let (Some(path), false) = (&opts.keyring_path, opts.keys.is_empty()) {
                    keyring::save_file(path, &opts.keys)?;
                }
                opts.keys.clone()
            }
        };
        let keyring = Keyring::new(&keys)?;
        let local_addr = tx.local_addr().map_err(GossipError::LocalAddr)?;
        let advertise = if !opts.advertise.is_unspecified() { opts.advertise } else { local_addr.ip() };
        let own_addr = SocketAddr::new(advertise, local_addr.port());
        let params = Params {
            gossip: opts.config.clone(),
            reconnect_timeout: opts.reconnect_timeout,
            tombstone_timeout: opts.tombstone_timeout,
        };
        let (member_tx, _) = broadcast::channel(MEMBER_EVENT_CAPACITY);
        let (event_tx, _) = broadcast::channel(USER_EVENT_CAPACITY);
        let gossip_interval = params.gossip_interval();
        let probe_interval = params.probe_interval();
        let core = Core::new(
            opts.node_name.clone(),
            own_addr,
            opts.tags.clone(),
            keyring,
            params,
            member_tx.clone(),
            event_tx.clone(),
            opts.coordinates,
            Instant::now(),
        );
        let gossip = Arc::new(Gossip {
            core: Mutex::new(core),
            tx,
            local_addr,
            wake: Notify::new(),
            stop: shutdown.child_token(),
            stopped: AtomicBool::new(false),
            member_tx,
            event_tx,
            keyring_path: opts.keyring_path,
            gossip_interval,
            probe_interval,
            next_token: AtomicU64::new(rand::random::<u32>() as u64),
        });
        tracing::info!(node = %opts.node_name, bind = %local_addr, advertise = %own_addr,
            encrypted = !keys.is_empty(), "gossip: started");
        legate_types::tasks::spawn(tracker, "gossip-lan", gossip.clone().run(rx));
        Ok(gossip)
    }

    /// The bound address (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Joins the cluster(s) of `addrs` ("ip", "ip:port", "[v6]:port", "host", "host:port";
    /// default port 8301). Returns how many addresses answered within a few seconds; Err if
    /// none did. Returns once the answering members are listed in `members()`.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, GossipError> {
        if self.is_stopped() {
            return Err(GossipError::NotRunning);
        }
        let mut errors = Vec::new();
        let mut targets: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            match resolve(a, self.local_addr).await {
                Ok(list) => {
                    for sa in list {
                        if self.lock().is_own_addr(sa) || sa == self.local_addr {
                            errors.push(format!("{a}: this is our own address"));
                        } else if !targets.contains(&sa) {
                            targets.push(sa);
                        }
                    }
                }
                Err(e) => errors.push(format!("{a}: {e}")),
            }
        }
        let describe_errors = |errors: &[String]| {
            if errors.is_empty() {
                String::new()
            } else {
                format!("; {}", errors.join("; "))
            }
        };
        if targets.is_empty() {
            return Err(GossipError::Join(format!(": no members contacted{}", describe_errors(&errors))));
        }
        let tokens: Vec<(u64, SocketAddr)> =
            targets.iter().map(|t| (self.next_token.fetch_add(1, Ordering::Relaxed), *t)).collect();
        let start = Instant::now();
        let deadline = start + self.join_timeout();
        let mut next_hello = start;
        let mut answered: Vec<(SocketAddr, String)> = Vec::new();
        let mut refused = false;
        loop {
            let now = Instant::now();
            let answers: Vec<(SocketAddr, Result<NodeId, String>)> = {
                let core = self.lock();
                tokens.iter().filter_map(|(tok, addr)| core.join_answer(*tok).map(|a| (*addr, a))).collect()
            };
            if answers.len() == tokens.len() || now >= deadline {
                for (addr, answer) in answers {
                    match answer {
                        Ok(id) => answered.push((addr, id.name)),
                        Err(e) => {
                            refused = true;
                            errors.push(format!("{addr}: {e}"));
                        }
                    }
                }
                break;
            }
            if now >= next_hello {
                // Datagrams get lost: repeat the handshake until answered.
                self.with_core(|c, _| {
                    for (tok, addr) in &tokens {
                        if c.join_answer(*tok).is_none() {
                            c.hello(*addr, *tok);
                        }
                    }
                });
                next_hello = now + Duration::from_millis(500);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the handshake's Feed and metadata exchange land, so members() shows them.
        while Instant::now() < deadline && !answered.iter().all(|(_, name)| self.lock().is_listed(name)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        {
            let mut core = self.lock();
            for (tok, _) in &tokens {
                core.forget_join(*tok);
            }
        }
        for (tok_addr, name) in &answered {
            tracing::info!(addr = %tok_addr, member = %name, "gossip: join answered");
        }
        if answered.is_empty() && refused {
            return Err(GossipError::Join(describe_errors(&errors)));
        }
        if answered.is_empty() {
            let tried: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
            return Err(GossipError::Join(format!(
                ": no members contacted (tried {}; no answer within {:?}: unreachable, or a different gossip encryption key){}",
                tried.join(", "),
                self.join_timeout(),
                describe_errors(&errors)
            )));
        }
        Ok(answered.len())
    }

    /// Leaves gracefully: others see LEAVING then LEFT (not FAILED). Waits at most `timeout`
    /// for the news to spread; afterwards the loop stops gossiping.
    pub async fn leave(&self, timeout: Duration) -> Result<(), GossipError> {
        if self.lock().has_left() {
            return Ok(());
        }
        if self.is_stopped() {
            return Err(GossipError::StoppedWithoutLeave);
        }
        let deadline = Instant::now() + timeout;
        self.with_core(|c, now| c.begin_leave(now));
        // The intent must land before our "down" does, or others would show FAILED first.
        let intent_wait = (self.gossip_interval * 2).max(Duration::from_millis(50)).min(timeout / 2);
        tokio::time::sleep(intent_wait).await;
        self.with_core(|c, now| c.finish_leave(now));
        // Foca stops its periodic gossip once we are down: spread our "down" ourselves.
        loop {
            if Instant::now() + self.gossip_interval > deadline {
                break;
            }
            tokio::time::sleep(self.gossip_interval).await;
            if self.with_core(|c, now| c.regossip(now)) == 0 {
                break;
            }
        }
        self.stop.cancel();
        tracing::info!("gossip: left the cluster");
        Ok(())
    }

    /// Every member we know, ourselves included (ALIVE), and left/failed ones until reaped.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.lock().members()
    }

    /// This member's network coordinate (None when coordinates are disabled).
    pub fn coordinate(&self) -> Option<legate_api::coordinate::Coord> {
        self.lock().coordinate()
    }

    /// Other members' network coordinates, as their answers to our pings carried them.
    pub fn peer_coordinates(&self) -> Vec<(String, legate_api::coordinate::Coord)> {
        self.lock().peer_coordinates()
    }

    /// The pool as serf's stats show it (`/v1/agent/self` `Stats.serf_lan`).
    pub fn stats(&self) -> PoolStats {
        self.lock().stats()
    }

    /// Membership changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.member_tx.subscribe()
    }

    /// Replaces our tags and disseminates them.
    pub fn set_tags(&self, tags: BTreeMap<String, String>) {
        self.with_core(|c, now| c.set_tags(tags, now));
    }

    /// Moves a failed member to left (prune: forgets it entirely), here and on every member.
    /// Err if the member is unknown; Ok without effect if it is alive.
    pub fn force_leave(&self, node: &str, prune: bool) -> Result<(), GossipError> {
        self.with_core(|c, now| c.force_leave(node, prune, now))
    }

    /// Broadcasts a user event; `ltime` is set here (Lamport clock), so are `id` (uuid) and
    /// `origin` (our node name) when empty. Subscribers here get it too.
    pub async fn fire_event(&self, ev: UserEvent) -> Result<(), GossipError> {
        if self.is_stopped() {
            return Err(GossipError::NotRunning);
        }
        self.with_core(|c, now| c.fire_event(ev, now)).map(|_| ())
    }

    /// User events from now on, each once (de-duplicated by id), ours included.
    pub fn subscribe_events(&self) -> broadcast::Receiver<UserEvent> {
        self.event_tx.subscribe()
    }

    /// Asks every member for its installed keys, as serf's keyring query does: this agent's
    /// answer and those that arrive within `timeout` (asked again every 500 ms). A member with
    /// none of our keys cannot read the question, so it does not answer.
    pub async fn query_keyrings(&self, timeout: Duration) -> KeyringAnswers {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let mut asked = 0;
        let mut next_ask = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_ask {
                asked = self.with_core(|c, _| c.ask_keys(token));
                next_ask = now + Duration::from_millis(500);
            }
            if self.lock().key_answers(token) >= asked || now >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut answers = self.lock().finish_key_query(token);
        answers.push(self.keyring_list());
        KeyringAnswers { asked: asked + 1, answers }
    }

    /// Installed keys (base64), primary first; empty when encryption is off.
    pub fn keyring_list(&self) -> Vec<String> {
        self.lock().keyring.list()
    }

    /// Installs a key as a secondary key (this agent only).
    pub fn keyring_install(&self, b64: &str) -> Result<(), GossipError> {
        let raw = keyring::decode_key(b64)?;
        self.keyring_change(|ring| ring.plan_install(&raw))
    }

    /// Makes an installed key the primary (encrypting) key (this agent only).
    pub fn keyring_use(&self, b64: &str) -> Result<(), GossipError> {
        let raw = keyring::decode_key(b64)?;
        self.keyring_change(|ring| ring.plan_use(&raw))
    }

    /// Removes a secondary key (this agent only); removing the primary key is refused.
    pub fn keyring_remove(&self, b64: &str) -> Result<(), GossipError> {
        let raw = keyring::decode_key(b64)?;
        self.keyring_change(|ring| ring.plan_remove(&raw))
    }

    fn keyring_change(
        &self,
        plan: impl FnOnce(&Keyring) -> Result<Vec<Vec<u8>>, GossipError>,
    ) -> Result<(), GossipError> {
        let mut core = self.lock();
        let keys = plan(&core.keyring)?;
        // Persist first: a change that cannot be saved is not made.
        if let Some(path) = &self.keyring_path {
            keyring::save_file(path, &keys)?;
        }
        core.keyring = Keyring::new(&keys)?;
        Ok(())
    }

    // ----- runtime -----

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire) || self.stop.is_cancelled()
    }

    fn join_timeout(&self) -> Duration {
        (self.probe_interval * 10).clamp(Duration::from_secs(2), Duration::from_secs(5))
    }

    /// Runs `f` on the core, sends what it produced, and wakes the loop (timers may have moved).
    fn with_core<R>(&self, f: impl FnOnce(&mut Core, Instant) -> R) -> R {
        let (r, out) = {
            let mut core = self.lock();
            let r = f(&mut core, Instant::now());
            (r, core.take_outbox())
        };
        self.send_all(out);
        self.wake.notify_one();
        r
    }

    fn send_all(&self, out: Vec<(SocketAddr, Vec<u8>)>) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        for (to, data) in out {
            self.tx.send(to, &data);
        }
    }

    async fn run(self: Arc<Self>, mut rx: TransportRx) {
        enum Branch {
            Stop,
            Packet(std::io::Result<(usize, SocketAddr)>),
            Timers,
            Tick,
            Woken,
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tick = tokio::time::interval(self.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.lock().next_deadline().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let branch = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Branch::Stop,
                // Timers before packets: a flood of datagrams must not starve probes.
                _ = tokio::time::sleep_until(deadline) => Branch::Timers,
                _ = tick.tick() => Branch::Tick,
                r = rx.recv(&mut buf) => Branch::Packet(r),
                _ = self.wake.notified() => Branch::Woken,
            };
            let out = match branch {
                Branch::Stop => break,
                Branch::Packet(Ok((n, from))) => {
                    let mut core = self.lock();
                    core.handle_datagram(from, &buf[..n], Instant::now());
                    core.take_outbox()
                }
                Branch::Packet(Err(e)) => {
                    // E.g. ICMP errors surfacing on some platforms; never fatal for UDP.
                    tracing::debug!(error = %e, "gossip: receive");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Branch::Timers => {
                    let mut core = self.lock();
                    core.fire_timers(Instant::now());
                    core.take_outbox()
                }
                Branch::Tick => {
                    let mut core = self.lock();
                    core.tick(Instant::now());
                    core.take_outbox()
                }
                Branch::Woken => continue,
            };
            self.send_all(out);
        }
        self.stopped.store(true, Ordering::Release);
        tracing::debug!("gossip: loop stopped");
    }
}

/// Resolves a join address; IPv4/IPv6 answers are filtered to the family we can send to.
async fn resolve(addr: &str, local: SocketAddr) -> Result<Vec<SocketAddr>, GossipError> {
    let s = addr.trim();
    if s.is_empty() {
        return Err(GossipError::Address("empty address".into()));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_LAN_PORT)]);
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            (h, p.parse::<u16>().map_err(|_| GossipError::Address(format!("invalid port {p:?}")))?)
        }
        _ => (s, DEFAULT_LAN_PORT),
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| GossipError::Address(format!("cannot resolve {host}: {e}")))?
        .collect();
    let same_family: Vec<SocketAddr> = found.iter().copied().filter(|a| a.is_ipv4() == local.is_ipv4()).collect();
    let list = if same_family.is_empty() { found } else { same_family };
    if list.is_empty() {
        return Err(GossipError::Address(format!("cannot resolve {host}: no addresses")));
    }
    Ok(list)
}
