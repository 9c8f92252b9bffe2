//! Gossip conformance tests: every scenario runs on UDP (127.0.0.1, OS-chosen ports) and on the
//! in-memory network, plus a deterministic simulation of the sans-IO core with a fake clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::GossipConfig;
use legate_types::GoDuration;

const KEY1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const KEY2: &str = "Ahx7Gmh3v8y5L5iIpzMGF5D9TvsxnRyLzEBOYdjzCfA=";
const KEY3: &str = "MDEyMzQ1Njc4OWFiY2RlZg=="; // 16 bytes

/// Fast timings so that failure detection takes well under a second.
fn fast() -> GossipConfig {
    GossipConfig {
        gossip_nodes: 3,
        gossip_interval: GoDuration::from_millis(50),
        probe_interval: GoDuration::from_millis(100),
        probe_timeout: GoDuration::from_millis(50),
        retransmit_mult: 4,
        suspicion_mult: 4,
    }
}

#[derive(Clone)]
enum Net {
    Udp,
    Mem(MemNetwork),
}

impl Net {
    fn label(&self) -> &'static str {
        match self {
            Net::Udp => "udp",
            Net::Mem(_) => "mem",
        }
    }
}

struct Node {
    g: Arc<Gossip>,
    token: CancellationToken,
}

impl Node {
    fn addr(&self) -> String {
        self.g.local_addr().to_string()
    }
}

struct Opts {
    tags: Vec<(&'static str, &'static str)>,
    keys: Vec<&'static str>,
    reconnect: Duration,
    keyring_path: Option<std::path::PathBuf>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { tags: Vec::new(), keys: Vec::new(), reconnect: Duration::from_secs(3600), keyring_path: None }
    }
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn start(net: &Net, tracker: &TaskTracker, name: &str, o: Opts) -> Node {
    let mut opts = GossipOptions::new(name, "127.0.0.1:0".parse().unwrap());
    opts.config = fast();
    opts.tags = tags(&o.tags);
    opts.keys = o.keys.iter().map(|k| keyring::decode_key(k).unwrap()).collect();
    opts.reconnect_timeout = o.reconnect;
    opts.keyring_path = o.keyring_path;
    let token = CancellationToken::new();
    let g = match net {
        Net::Udp => Gossip::start(opts, token.clone(), tracker).await,
        Net::Mem(m) => Gossip::start_in_memory(opts, m, token.clone(), tracker).await,
    }
    .unwrap();
    Node { g, token }
}

async fn node(net: &Net, tracker: &TaskTracker, name: &str, t: &[(&'static str, &'static str)]) -> Node {
    start(net, tracker, name, Opts { tags: t.to_vec(), ..Opts::default() }).await
}

/// Polls `f` until true; returns how long it took.
async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn status(g: &Gossip, name: &str) -> Option<u8> {
    g.members().into_iter().find(|m| m.name == name).map(|m| m.status)
}

fn member(g: &Gossip, name: &str) -> Option<MemberInfo> {
    g.members().into_iter().find(|m| m.name == name)
}

/// Every node lists every expected member alive with the expected tags.
fn converged(nodes: &[&Node], expect: &[(&str, BTreeMap<String, String>)]) -> bool {
    nodes.iter().all(|n| {
        let ms = n.g.members();
        ms.len() == expect.len()
            && expect
                .iter()
                .all(|(name, t)| ms.iter().any(|m| m.name == *name && m.status == STATUS_ALIVE && m.tags == *t))
    })
}

/// Three nodes: b and c both join a (c learns b from a).
async fn three(net: &Net, tracker: &TaskTracker) -> (Node, Node, Node) {
    let a = node(net, tracker, "a", &[("role", "consul"), ("dc", "dc1")]).await;
    let b = node(net, tracker, "b", &[("role", "node")]).await;
    let c = node(net, tracker, "c", &[("role", "node"), ("id", "c-id")]).await;
    let started = Instant::now();
    assert_eq!(b.g.join(&[a.addr()]).await.unwrap(), 1);
    assert_eq!(c.g.join(&[a.addr()]).await.unwrap(), 1);
    let expect = [
        ("a", tags(&[("role", "consul"), ("dc", "dc1")])),
        ("b", tags(&[("role", "node")])),
        ("c", tags(&[("role", "node"), ("id", "c-id")])),
    ];
    wait_until("3 members alive with tags everywhere", Duration::from_secs(10), || converged(&[&a, &b, &c], &expect))
        .await;
    eprintln!("[gossip {}] 3 nodes converged {:?} after the first join", net.label(), started.elapsed());
    (a, b, c)
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<MemberEvent>) -> Vec<MemberEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => return out,
        }
    }
}

// ----- scenarios -----

async fn scenario_converge_and_tags(net: Net) {
    let tracker = TaskTracker::new();
    let (a, b, c) = three(&net, &tracker).await;
    let mut events = b.g.subscribe();

    let new_tags = tags(&[("role", "consul"), ("dc", "dc1"), ("build", "2")]);
    a.g.set_tags(new_tags.clone());
    assert_eq!(member(&a.g, "a").unwrap().tags, new_tags);
    let took = wait_until("tag update everywhere", Duration::from_secs(10), || {
        [&b, &c].iter().all(|n| member(&n.g, "a").is_some_and(|m| m.tags == new_tags && m.status == STATUS_ALIVE))
    })
    .await;
    eprintln!("[gossip {}] tag update propagated in {took:?}", net.label());
    let evs = drain(&mut events);
    assert!(evs.iter().any(|e| matches!(e, MemberEvent::Update(m) if m.name == "a" && m.tags == new_tags)), "{evs:?}");
    for n in [&a, &b, &c] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

async fn scenario_graceful_leave(net: Net) {
    let tracker = TaskTracker::new();
    let (a, b, c) = three(&net, &tracker).await;
    let mut events = a.g.subscribe();
    let started = Instant::now();
    c.g.leave(Duration::from_secs(3)).await.unwrap();
    eprintln!("[gossip {}] leave() returned after {:?}", net.label(), started.elapsed());
    assert_eq!(status(&c.g, "c"), Some(STATUS_LEFT));
    c.g.leave(Duration::from_secs(1)).await.unwrap(); // idempotent
    assert!(c.g.join(&[a.addr()]).await.is_err(), "a left agent does not gossip any more");
    let took = wait_until("c LEFT on a and b", Duration::from_secs(10), || {
        status(&a.g, "c") == Some(STATUS_LEFT) && status(&b.g, "c") == Some(STATUS_LEFT)
    })
    .await;
    eprintln!("[gossip {}] graceful leave seen as LEFT after {:?}", net.label(), started.elapsed().max(took));
    // Stay a few suspicion timeouts: c must not turn FAILED.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status(&a.g, "c"), Some(STATUS_LEFT));
    assert_eq!(status(&b.g, "c"), Some(STATUS_LEFT));
    let evs = drain(&mut events);
    let leaving =
        evs.iter().position(|e| matches!(e, MemberEvent::Update(m) if m.name == "c" && m.status == STATUS_LEAVING));
    let left = evs.iter().position(|e| matches!(e, MemberEvent::Leave(m) if m.name == "c"));
    assert!(leaving.is_some() && left.is_some() && leaving < left, "LEAVING then LEFT: {evs:?}");
    assert!(!evs.iter().any(|e| matches!(e, MemberEvent::Failed(m) if m.name == "c")), "{evs:?}");
    // The rest of the cluster is unaffected.
    wait_until("b alive on a", Duration::from_secs(5), || status(&a.g, "b") == Some(STATUS_ALIVE)).await;
    for n in [&a, &b, &c] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

async fn scenario_failure_and_restart(net: Net) {
    let tracker = TaskTracker::new();
    let (a, b, c) = three(&net, &tracker).await;
    let mut events = a.g.subscribe();
    c.token.cancel(); // stop without leaving
    let took = wait_until("c FAILED on a and b", Duration::from_secs(10), || {
        status(&a.g, "c") == Some(STATUS_FAILED) && status(&b.g, "c") == Some(STATUS_FAILED)
    })
    .await;
    eprintln!("[gossip {}] stopped node detected FAILED everywhere in {took:?}", net.label());
    let evs = drain(&mut events);
    assert!(evs.iter().any(|e| matches!(e, MemberEvent::Failed(m) if m.name == "c")), "{evs:?}");
    wait_until("b alive on a", Duration::from_secs(5), || status(&a.g, "b") == Some(STATUS_ALIVE)).await;

    // The node comes back under the same name (new port, new tags): it replaces the old one.
    let c2 = node(&net, &tracker, "c", &[("role", "node"), ("id", "c-id-2")]).await;
    let started = Instant::now();
    c2.g.join(&[b.addr()]).await.unwrap();
    let want = tags(&[("role", "node"), ("id", "c-id-2")]);
    wait_until("restarted c ALIVE everywhere", Duration::from_secs(10), || {
        [&a, &b].iter().all(|n| {
            member(&n.g, "c")
                .is_some_and(|m| m.status == STATUS_ALIVE && m.tags == want && m.port == c2.g.local_addr().port())
        }) && c2.g.members().iter().filter(|m| m.status == STATUS_ALIVE).count() == 3
    })
    .await;
    eprintln!("[gossip {}] restarted node rejoined in {:?}", net.label(), started.elapsed());
    let evs = drain(&mut events);
    assert!(evs.iter().any(|e| matches!(e, MemberEvent::Join(m) if m.name == "c")), "{evs:?}");
    assert_eq!(a.g.members().len(), 3);
    for n in [&a, &b, &c2] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

async fn scenario_user_events(net: Net) {
    let tracker = TaskTracker::new();
    let (a, b, c) = three(&net, &tracker).await;
    let mut subs: Vec<_> = [&a, &b, &c].iter().map(|n| n.g.subscribe_events()).collect();
    let ev = UserEvent {
        id: String::new(),
        name: "deploy".into(),
        payload: b"v1.2.3".to_vec(),
        ltime: 0,
        node_filter: String::new(),
        service_filter: "web".into(),
        tag_filter: String::new(),
        origin: String::new(),
    };
    let started = Instant::now();
    b.g.fire_event(ev.clone()).await.unwrap();
    let mut got = Vec::new();
    for rx in subs.iter_mut() {
        let e = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("event arrives").unwrap();
        got.push(e);
    }
    eprintln!("[gossip {}] user event reached all 3 in {:?}", net.label(), started.elapsed());
    for e in &got {
        assert_eq!(e.name, "deploy");
        assert_eq!(e.payload, b"v1.2.3");
        assert_eq!(e.service_filter, "web");
        assert_eq!(e.origin, "b");
        assert!(!e.id.is_empty());
        assert_eq!(e, &got[0]);
    }
    // Exactly once: nothing more arrives while the broadcast keeps circulating.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for rx in subs.iter_mut() {
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }
    // Lamport: an event fired after seeing the first one has a larger ltime.
    c.g.fire_event(UserEvent { name: "second".into(), ..ev.clone() }).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), subs[0].recv()).await.unwrap().unwrap();
    assert_eq!(second.name, "second");
    assert!(second.ltime > got[0].ltime, "{} > {}", second.ltime, got[0].ltime);
    // Too large for a datagram: refused.
    let big = UserEvent { payload: vec![0u8; 2000], ..ev };
    assert!(matches!(a.g.fire_event(big).await, Err(crate::GossipError::EventTooLarge(_))));
    for n in [&a, &b, &c] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

async fn scenario_encryption(net: Net) {
    let tracker = TaskTracker::new();
    let enc = |t: &'static str, k: &'static str| Opts { tags: vec![("n", t)], keys: vec![k], ..Opts::default() };
    let a = start(&net, &tracker, "a", enc("a", KEY1)).await;
    let b = start(&net, &tracker, "b", enc("b", KEY1)).await;
    assert_eq!(b.g.join(&[a.addr()]).await.unwrap(), 1);
    wait_until("a and b", Duration::from_secs(5), || a.g.members().len() == 2 && b.g.members().len() == 2).await;

    // A different key cannot join, and is not listed anywhere.
    let c = start(&net, &tracker, "c", enc("c", KEY2)).await;
    let err = c.g.join(&[a.addr()]).await.unwrap_err();
    assert!(err.to_string().contains("no members contacted"), "{err}");
    assert_eq!(c.g.members().len(), 1);
    // A plaintext agent cannot join an encrypted cluster either.
    let d = start(&net, &tracker, "d", Opts::default()).await;
    assert!(d.g.join(&[a.addr()]).await.is_err());
    assert_eq!(d.g.members().len(), 1);
    assert_eq!(a.g.members().len(), 2);
    assert_eq!(b.g.members().len(), 2);

    // Rotation: install the new key everywhere, switch, remove the old one; still talking.
    for n in [&a, &b] {
        n.g.keyring_install(KEY3).unwrap();
    }
    a.g.keyring_use(KEY3).unwrap();
    b.g.keyring_use(KEY3).unwrap();
    a.g.keyring_remove(KEY1).unwrap();
    b.g.keyring_remove(KEY1).unwrap();
    assert_eq!(a.g.keyring_list(), vec![KEY3.to_string()]);
    a.g.set_tags(tags(&[("n", "a2")]));
    wait_until("tags after rotation", Duration::from_secs(5), || {
        member(&b.g, "a").is_some_and(|m| m.tags == tags(&[("n", "a2")]) && m.status == STATUS_ALIVE)
    })
    .await;
    // The old key no longer opens anything.
    let e = start(&net, &tracker, "e", enc("e", KEY1)).await;
    assert!(e.g.join(&[a.addr()]).await.is_err());
    for n in [&a, &b, &c, &d, &e] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

async fn scenario_force_leave_and_reap(net: Net) {
    let tracker = TaskTracker::new();
    let short =
        |name: &'static str| Opts { tags: vec![("n", name)], reconnect: Duration::from_secs(2), ..Opts::default() };
    let a = start(&net, &tracker, "a", short("a")).await;
    let b = start(&net, &tracker, "b", short("b")).await;
    let c = start(&net, &tracker, "c", short("c")).await;
    let d = start(&net, &tracker, "d", short("d")).await;
    for n in [&b, &c, &d] {
        n.g.join(&[a.addr()]).await.unwrap();
    }
    wait_until("4 alive", Duration::from_secs(10), || {
        [&a, &b, &c, &d].iter().all(|n| n.g.members().iter().filter(|m| m.status == STATUS_ALIVE).count() == 4)
    })
    .await;
    let mut events = b.g.subscribe();
    assert!(matches!(a.g.force_leave("nope", false), Err(crate::GossipError::NoSuchNode(n)) if n == "nope"));
    // An alive member shows as leaving (serf's leave intent) until it refutes, then alive again.
    a.g.force_leave("b", false).unwrap();
    assert_eq!(status(&a.g, "b"), Some(crate::STATUS_LEAVING));
    wait_until("b alive again", Duration::from_secs(10), || status(&a.g, "b") == Some(STATUS_ALIVE)).await;

    c.token.cancel();
    d.token.cancel();
    wait_until("c, d FAILED", Duration::from_secs(10), || {
        [&a, &b].iter().all(|n| status(&n.g, "c") == Some(STATUS_FAILED) && status(&n.g, "d") == Some(STATUS_FAILED))
    })
    .await;
    // force-leave on a: LEFT on a and (through the broadcast) on b.
    a.g.force_leave("c", false).unwrap();
    assert_eq!(status(&a.g, "c"), Some(STATUS_LEFT));
    wait_until("c LEFT on b", Duration::from_secs(5), || status(&b.g, "c") == Some(STATUS_LEFT)).await;
    // prune: gone right away, here and on b.
    a.g.force_leave("c", true).unwrap();
    assert_eq!(status(&a.g, "c"), None);
    wait_until("c pruned on b", Duration::from_secs(5), || status(&b.g, "c").is_none()).await;
    // d is reaped after reconnect_timeout (2 s here).
    let took =
        wait_until("d reaped", Duration::from_secs(10), || status(&a.g, "d").is_none() && status(&b.g, "d").is_none())
            .await;
    eprintln!("[gossip {}] failed member reaped {took:?} after force-leave checks", net.label());
    let evs = drain(&mut events);
    assert!(evs.iter().any(|e| matches!(e, MemberEvent::Leave(m) if m.name == "c")), "{evs:?}");
    assert!(evs.iter().any(|e| matches!(e, MemberEvent::Reap(m) if m.name == "c")), "{evs:?}");
    assert!(evs.iter().any(|e| matches!(e, MemberEvent::Reap(m) if m.name == "d")), "{evs:?}");
    for n in [&a, &b] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

async fn scenario_join_errors(net: Net) {
    let tracker = TaskTracker::new();
    let a = node(&net, &tracker, "a", &[]).await;
    // Nobody listens there (bind and drop to get a free port).
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let started = Instant::now();
    let err = a.g.join(&[dead.to_string()]).await.unwrap_err();
    assert!(err.to_string().contains("no members contacted"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(a.g.join(&[String::new()]).await.is_err());
    assert!(a.g.join(&[a.addr()]).await.unwrap_err().to_string().contains("own address"));
    assert!(a.g.join(&["127.0.0.1:notaport".into()]).await.is_err());
    assert_eq!(a.g.members().len(), 1);
    assert_eq!(a.g.members()[0].status, STATUS_ALIVE);
    // Another agent with our node name is refused.
    let twin = node(&net, &tracker, "a", &[]).await;
    let err = twin.g.join(&[a.addr()]).await.unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    assert_eq!(twin.g.members().len(), 1);
    twin.token.cancel();
    a.token.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(a.g.join(&[dead.to_string()]).await.is_err());
}

macro_rules! on_both {
    ($scenario:ident, $udp:ident, $mem:ident) => {
        #[tokio::test]
        async fn $udp() {
            $scenario(Net::Udp).await;
        }
        #[tokio::test]
        async fn $mem() {
            $scenario(Net::Mem(MemNetwork::new())).await;
        }
    };
}

on_both!(scenario_converge_and_tags, udp_converge_and_tags, mem_converge_and_tags);
on_both!(scenario_graceful_leave, udp_graceful_leave, mem_graceful_leave);
on_both!(scenario_failure_and_restart, udp_failure_and_restart, mem_failure_and_restart);
on_both!(scenario_user_events, udp_user_events, mem_user_events);
on_both!(scenario_encryption, udp_encryption, mem_encryption);
on_both!(scenario_force_leave_and_reap, udp_force_leave_and_reap, mem_force_leave_and_reap);
on_both!(scenario_join_errors, udp_join_errors, mem_join_errors);

// ----- single-node behaviour -----

#[tokio::test]
async fn keyring_rules_and_persistence() {
    let tracker = TaskTracker::new();
    let net = Net::Mem(MemNetwork::new());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serf").join("local.keyring");
    let n = start(&net, &tracker, "a", Opts { keys: vec![KEY1], keyring_path: Some(path.clone()), ..Opts::default() })
        .await;
    assert_eq!(n.g.keyring_list(), vec![KEY1.to_string()]);
    assert!(path.exists(), "configured key persisted on first start");

    n.g.keyring_install(KEY2).unwrap();
    n.g.keyring_install(KEY2).unwrap(); // idempotent
    assert_eq!(n.g.keyring_list(), vec![KEY1.to_string(), KEY2.to_string()]);
    assert_eq!(n.g.keyring_remove(KEY1).unwrap_err().to_string(), "Removing the primary key is not allowed");
    assert!(n.g.keyring_use(KEY3).unwrap_err().to_string().contains("not in the keyring"));
    assert!(n.g.keyring_install("not-base64!").is_err());
    assert!(n.g.keyring_install("AAAA").unwrap_err().to_string().contains("16, 24 or 32"));
    n.g.keyring_use(KEY2).unwrap();
    assert_eq!(n.g.keyring_list(), vec![KEY2.to_string(), KEY1.to_string()]);
    n.g.keyring_remove(KEY1).unwrap();
    assert_eq!(n.g.keyring_list(), vec![KEY2.to_string()]);
    n.token.cancel();

    // Restart: the keyring file wins over the configured key.
    let again =
        start(&net, &tracker, "a2", Opts { keys: vec![KEY1], keyring_path: Some(path.clone()), ..Opts::default() })
            .await;
    assert_eq!(again.g.keyring_list(), vec![KEY2.to_string()]);
    again.token.cancel();

    // Without encryption, keyring operations are refused.
    let plain = start(&net, &tracker, "p", Opts::default()).await;
    assert!(plain.g.keyring_list().is_empty());
    assert!(plain.g.keyring_install(KEY1).unwrap_err().to_string().contains("not enabled"));
    plain.token.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let tracker = TaskTracker::new();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let opts = GossipOptions::new("x", addr);
    let err = Gossip::start(opts, CancellationToken::new(), &tracker).await.err().unwrap();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn partition_heals() {
    // In-memory only: cut c off from a and b, watch it fail, heal, watch everyone come back
    // (foca's reconnect attempts to down members plus identity renewal).
    let mem = MemNetwork::new();
    let net = Net::Mem(mem.clone());
    let tracker = TaskTracker::new();
    let (a, b, c) = three(&net, &tracker).await;
    let ca: SocketAddr = c.g.local_addr();
    for other in [&a, &b] {
        mem.partition(ca, other.g.local_addr(), true);
    }
    wait_until("c FAILED on a, a and b FAILED on c", Duration::from_secs(10), || {
        status(&a.g, "c") == Some(STATUS_FAILED)
            && status(&c.g, "a") == Some(STATUS_FAILED)
            && status(&c.g, "b") == Some(STATUS_FAILED)
    })
    .await;
    for other in [&a, &b] {
        mem.partition(ca, other.g.local_addr(), false);
    }
    let took = wait_until("healed", Duration::from_secs(20), || {
        [&a, &b, &c].iter().all(|n| n.g.members().iter().filter(|m| m.status == STATUS_ALIVE).count() == 3)
    })
    .await;
    eprintln!("[gossip mem] partition healed {took:?} after reconnecting");
    for n in [&a, &b, &c] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn partition_heals_two_nodes() {
    // Both sides end up alone (no active member): each must reconnect by itself.
    let mem = MemNetwork::new();
    let net = Net::Mem(mem.clone());
    let tracker = TaskTracker::new();
    let a = node(&net, &tracker, "a", &[("n", "a")]).await;
    let b = node(&net, &tracker, "b", &[("n", "b")]).await;
    b.g.join(&[a.addr()]).await.unwrap();
    wait_until("2 alive", Duration::from_secs(5), || {
        status(&a.g, "b") == Some(STATUS_ALIVE) && status(&b.g, "a") == Some(STATUS_ALIVE)
    })
    .await;
    mem.partition(a.g.local_addr(), b.g.local_addr(), true);
    wait_until("both FAILED", Duration::from_secs(10), || {
        status(&a.g, "b") == Some(STATUS_FAILED) && status(&b.g, "a") == Some(STATUS_FAILED)
    })
    .await;
    mem.partition(a.g.local_addr(), b.g.local_addr(), false);
    let took = wait_until("healed", Duration::from_secs(20), || {
        status(&a.g, "b") == Some(STATUS_ALIVE) && status(&b.g, "a") == Some(STATUS_ALIVE)
    })
    .await;
    eprintln!("[gossip mem] two-node partition healed {took:?} after reconnecting");
    for n in [&a, &b] {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn joiner_learns_a_large_cluster_at_once() {
    // More members than one foca Feed carries: the member-list pull on join must bring them all.
    let net = Net::Mem(MemNetwork::new());
    let tracker = TaskTracker::new();
    let seed = node(&net, &tracker, "n00", &[]).await;
    let mut nodes = vec![];
    for i in 1..60 {
        // Long names: a foca Feed then carries only ~25 of them.
        let n = node(&net, &tracker, &format!("member-with-a-rather-long-node-name-{i:02}"), &[]).await;
        n.g.join(&[seed.addr()]).await.unwrap();
        nodes.push(n);
    }
    wait_until("seed sees 60", Duration::from_secs(10), || {
        seed.g.members().iter().filter(|m| m.status == STATUS_ALIVE).count() == 60
    })
    .await;
    let late = node(&net, &tracker, "late", &[("x", "y")]).await;
    let started = Instant::now();
    late.g.join(&[seed.addr()]).await.unwrap();
    let took = wait_until("late sees 61", Duration::from_secs(3), || {
        late.g.members().iter().filter(|m| m.status == STATUS_ALIVE).count() == 61
    })
    .await;
    eprintln!(
        "[gossip mem] joiner listed all 61 members {:?} after join ({took:?} after join returned)",
        started.elapsed()
    );
    wait_until("everyone sees late", Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|n| member(&n.g, "late").is_some_and(|m| m.status == STATUS_ALIVE && m.tags == tags(&[("x", "y")])))
    })
    .await;
    eprintln!("[gossip mem] all 60 members listed the joiner {:?} after join", started.elapsed());
    seed.token.cancel();
    late.token.cancel();
    for n in &nodes {
        n.token.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn shutdown_drains_the_loop() {
    let tracker = TaskTracker::new();
    let net = Net::Udp;
    let a = node(&net, &tracker, "a", &[]).await;
    a.token.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await.expect("gossip task exits on shutdown");
    assert!(a
        .g
        .fire_event(UserEvent {
            id: String::new(),
            name: "x".into(),
            payload: vec![],
            ltime: 0,
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            origin: String::new(),
        })
        .await
        .is_err());
}

#[tokio::test]
async fn resolve_join_addresses() {
    let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
    assert_eq!(resolve("10.0.0.1", local).await.unwrap(), vec!["10.0.0.1:8301".parse().unwrap()]);
    assert_eq!(resolve("10.0.0.1:9000", local).await.unwrap(), vec!["10.0.0.1:9000".parse().unwrap()]);
    assert_eq!(resolve("[::1]:9000", local).await.unwrap(), vec!["[::1]:9000".parse().unwrap()]);
    assert_eq!(resolve("::1", local).await.unwrap(), vec!["[::1]:8301".parse().unwrap()]);
    assert_eq!(resolve("[::1]", local).await.unwrap(), vec!["[::1]:8301".parse().unwrap()]);
    let lh = resolve("localhost:9001", local).await.unwrap();
    assert!(lh.iter().all(|a| a.port() == 9001 && a.is_ipv4()), "{lh:?}");
    assert!(resolve("", local).await.is_err());
    assert!(resolve("host:99999", local).await.is_err());
}

// ----- deterministic simulation of the sans-IO core -----

mod sim {
    use super::*;
    use crate::core::{Core, Params};
    use crate::keyring::Keyring;
    use tokio::sync::broadcast;

    struct SimNode {
        core: Core,
        addr: SocketAddr,
        up: bool,
        /// Everything it sends is lost (it still receives).
        deaf: bool,
        events: broadcast::Receiver<MemberEvent>,
    }

    fn sim_node(name: &str, port: u16, now: Instant) -> SimNode {
        let addr: SocketAddr = format!("10.0.0.{port}:8301").parse().unwrap();
        let (mtx, events) = broadcast::channel(64);
        let (etx, _) = broadcast::channel(64);
        let params = Params {
            gossip: GossipConfig::lan(),
            reconnect_timeout: Duration::from_secs(3600),
            tombstone_timeout: Duration::from_secs(3600),
        };
        let core = Core::new(name.into(), addr, tags(&[("n", name)]), Keyring::default(), params, mtx, etx, true, now);
        SimNode { core, addr, up: true, deaf: false, events }
    }

    /// Delivers every queued datagram (instantly), until the network is quiet.
    fn pump(nodes: &mut [SimNode], now: Instant) {
        for _ in 0..100 {
            let mut moved = false;
            let mut in_flight = Vec::new();
            for n in nodes.iter_mut() {
                for (to, data) in n.core.take_outbox() {
                    if n.up && !n.deaf {
                        in_flight.push((n.addr, to, data));
                    }
                }
            }
            for (from, to, data) in in_flight {
                if let Some(dst) = nodes.iter_mut().find(|n| n.addr == to && n.up) {
                    dst.core.handle_datagram(from, &data, now);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the fake clock in 10 ms steps, running timers and ticks.
    fn advance(nodes: &mut [SimNode], now: &mut Instant, by: Duration, tick_every: Duration, last_tick: &mut Instant) {
        let end = *now + by;
        while *now < end {
            *now += Duration::from_millis(10);
            let tick = *now - *last_tick >= tick_every;
            if tick {
                *last_tick = *now;
            }
            for n in nodes.iter_mut().filter(|n| n.up) {
                n.core.fire_timers(*now);
                if tick {
                    n.core.tick(*now);
                }
            }
            pump(nodes, *now);
        }
    }

    #[test]
    fn digest_repairs_a_missed_tag_update() {
        let mut now = Instant::now();
        let mut last_tick = now;
        let mut nodes = vec![sim_node("a", 1, now), sim_node("b", 2, now)];
        let a_addr = nodes[0].addr;
        nodes[1].core.hello(a_addr, 1);
        pump(&mut nodes, now);
        advance(&mut nodes, &mut now, Duration::from_secs(1), Duration::from_secs(1), &mut last_tick);
        assert_eq!(nodes[1].core.members().len(), 2);
        // a's tag update is lost: every datagram a sends is dropped until the broadcast has
        // used up its transmissions (shorter than the suspicion timeout, so nobody fails).
        nodes[0].core.set_tags(tags(&[("n", "a2")]), now);
        nodes[0].core.take_outbox();
        nodes[0].deaf = true;
        advance(&mut nodes, &mut now, Duration::from_millis(2500), Duration::from_secs(1), &mut last_tick);
        nodes[0].deaf = false;
        advance(&mut nodes, &mut now, Duration::from_secs(1), Duration::from_secs(1), &mut last_tick);
        let a_on_b = |nodes: &[SimNode]| nodes[1].core.members().into_iter().find(|m| m.name == "a").unwrap();
        assert_eq!(a_on_b(&nodes).tags, tags(&[("n", "a")]), "broadcast should have been lost");
        assert_eq!(a_on_b(&nodes).status, STATUS_ALIVE);
        // The periodic digest exchange (every 30 probe intervals) repairs it.
        advance(&mut nodes, &mut now, Duration::from_secs(31), Duration::from_secs(1), &mut last_tick);
        assert_eq!(a_on_b(&nodes).tags, tags(&[("n", "a2")]));
    }

    #[test]
    fn join_tags_and_failure_with_a_fake_clock() {
        let mut now = Instant::now();
        let mut last_tick = now;
        let mut nodes = vec![sim_node("a", 1, now), sim_node("b", 2, now), sim_node("c", 3, now)];
        let a_addr = nodes[0].addr;
        nodes[1].core.hello(a_addr, 1);
        nodes[2].core.hello(a_addr, 2);
        pump(&mut nodes, now);
        advance(&mut nodes, &mut now, Duration::from_secs(1), Duration::from_secs(1), &mut last_tick);
        for n in &nodes {
            let ms = n.core.members();
            assert_eq!(ms.len(), 3, "{:?}", ms);
            assert!(ms.iter().all(|m| m.status == STATUS_ALIVE && m.tags == tags(&[("n", &m.name)])), "{ms:?}");
        }
        // c crashes; with LAN timings (1 s probes, 4 s suspicion for 3 nodes) a and b must
        // call it failed within probe round(s) + suspicion + dissemination.
        nodes[2].up = false;
        let crashed = now;
        let mut detected = None;
        for _ in 0..1500 {
            advance(&mut nodes, &mut now, Duration::from_millis(10), Duration::from_secs(1), &mut last_tick);
            let failed =
                nodes[..2].iter().all(|n| n.core.members().iter().any(|m| m.name == "c" && m.status == STATUS_FAILED));
            if failed {
                detected = Some(now - crashed);
                break;
            }
        }
        let detected = detected.expect("c detected as failed");
        eprintln!("[gossip sim] LAN timings: crash detected by all in {detected:?} (simulated)");
        assert!(detected >= Duration::from_secs(4) && detected <= Duration::from_secs(9), "{detected:?}");
        let evs: Vec<_> = std::iter::from_fn(|| nodes[0].events.try_recv().ok()).collect();
        assert!(evs.iter().any(|e| matches!(e, MemberEvent::Failed(m) if m.name == "c")));
        assert!(!evs.iter().any(|e| matches!(e, MemberEvent::Failed(m) if m.name == "b")), "{evs:?}");
    }
}
