//! A three-server Raft group in one process, over real TCP on three loopback addresses:
//! replication, forwarding from followers, and failover when the leader stops.

use std::sync::Arc;
use std::time::Duration;

use legate_core::server::command::{Command, CommandResponse};
use legate_core::server::{Server, ServerOptions};
use legate_core::state::kv::{self, KvOp, KvVerb};
use legate_tests::retry_until;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Node {
    server: Arc<Server>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

async fn start(i: u8, bootstrap: bool) -> Node {
    start_with_ttl(i, bootstrap, Duration::from_secs(900)).await
}

async fn start_with_ttl(i: u8, bootstrap: bool, tombstone_ttl: Duration) -> Node {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let ip: std::net::IpAddr = format!("127.0.0.{i}").parse().unwrap();
    let opts = ServerOptions {
        node_id: uuid_for(i),
        bind: std::net::SocketAddr::new(ip, 0),
        advertise_ip: ip,
        data_dir: None,
        bootstrap,
        raft_multiplier: 1,
        snapshot_threshold: 100,
        trailing_logs: 10,
        hold_timeout: Duration::from_secs(7),
        tombstone_ttl,
        tls: std::sync::Arc::new(legate_core::tls::Live::new(legate_core::tls::RpcTls::plain())),
        handshake_timeout: Duration::from_secs(5),
        max_conns_per_client: 100,
        data_dir_min_free: 0,
    };
    let server = Server::start(opts, stop.clone(), &tracker).await.unwrap();
    // The built-in leader duties (session TTLs, tombstone GC), as the agent starts them.
    server.run_leadership(Vec::new(), &tracker, stop.child_token());
    Node { server, stop, tracker }
}

fn uuid_for(i: u8) -> String {
    format!("{i:08x}-0000-4000-8000-000000000000")
}

fn set(key: &str, value: &str) -> Command {
    let mut op = KvOp::new(KvVerb::Set, key);
    op.value = value.as_bytes().to_vec();
    Command::Kv(op)
}

fn read(server: &Server, key: &str) -> Option<Vec<u8>> {
    let txn = server.store.read().unwrap();
    kv::get(&txn, key).unwrap().map(|e| e.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_replicate_forward_and_fail_over() {
    let nodes = vec![start(1, true).await, start(2, false).await, start(3, false).await];
    let leader = &nodes[0].server;
    retry_until(Duration::from_secs(10), "first leader", || async { leader.is_leader().then_some(()) }).await;
    for n in &nodes[1..] {
        leader.add_voter(n.server.id, n.server.rpc_addr.clone()).await.unwrap();
    }
    let mut peers = leader.peers();
    peers.sort();
    let mut want: Vec<String> = nodes.iter().map(|n| n.server.rpc_addr.clone()).collect();
    want.sort();
    assert_eq!(peers, want);

    // A write on the leader reaches every state store.
    assert!(matches!(leader.apply(set("k1", "v1")).await.unwrap(), CommandResponse::Kv(Ok(_))));
    for n in &nodes {
        let s = n.server.clone();
        retry_until(Duration::from_secs(5), "replication", || {
            let s = s.clone();
            async move { (read(&s, "k1").as_deref() == Some(b"v1".as_slice())).then_some(()) }
        })
        .await;
    }

    // A write on a follower is forwarded to the leader.
    let follower = &nodes[2].server;
    assert!(!follower.is_leader());
    assert_eq!(follower.leader(), Some(leader.rpc_addr.clone()));
    assert!(matches!(follower.apply(set("k2", "v2")).await.unwrap(), CommandResponse::Kv(Ok(_))));
    retry_until(Duration::from_secs(5), "forwarded write applied", || async {
        (read(leader, "k2").is_some()).then_some(())
    })
    .await;

    // Enough writes for a snapshot and log compaction.
    for i in 0..150 {
        leader.apply(set(&format!("bulk/{i}"), "x")).await.unwrap();
    }

    // The leader stops: the other two elect a new one and keep accepting writes.
    let old = nodes.into_iter().collect::<Vec<_>>();
    let (first, rest) = old.split_first().unwrap();
    first.stop.cancel();
    first.tracker.close();
    first.tracker.wait().await;
    let new_leader = retry_until(Duration::from_secs(15), "new leader", || async {
        rest.iter().find(|n| n.server.is_leader()).map(|n| n.server.clone())
    })
    .await;
    assert_ne!(new_leader.rpc_addr, first.server.rpc_addr);
    let other = rest.iter().find(|n| n.server.id != new_leader.id).unwrap().server.clone();
    assert!(matches!(other.apply(set("k3", "v3")).await.unwrap(), CommandResponse::Kv(Ok(_))));
    retry_until(Duration::from_secs(5), "write after failover", || async {
        (read(&new_leader, "k3").is_some() && read(&other, "k3").is_some()).then_some(())
    })
    .await;
    assert_eq!(read(&other, "bulk/149").as_deref(), Some(b"x".as_slice()));
    for n in rest {
        n.stop.cancel();
        n.tracker.close();
        n.tracker.wait().await;
    }
}

fn oldest_tombstone(server: &Server) -> Option<u64> {
    kv::oldest_tombstone(&server.store.read().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_reaps_tombstones_after_their_ttl() {
    let node = start_with_ttl(4, true, Duration::from_millis(600)).await;
    let s = node.server.clone();
    retry_until(Duration::from_secs(10), "leader", || async { s.is_leader().then_some(()) }).await;
    s.apply(set("gc/a", "1")).await.unwrap();
    s.apply(Command::Kv(KvOp::new(KvVerb::Delete, "gc/a"))).await.unwrap();
    let first = oldest_tombstone(&s).expect("delete leaves a tombstone");
    // Still there well inside the TTL.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(oldest_tombstone(&s), Some(first));
    // A later tombstone outlives the first one's reaping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.apply(set("gc/b", "1")).await.unwrap();
    s.apply(Command::Kv(KvOp::new(KvVerb::Delete, "gc/b"))).await.unwrap();
    let second = retry_until(Duration::from_secs(5), "first tombstone reaped", || async {
        oldest_tombstone(&s).filter(|&o| o != first)
    })
    .await;
    assert!(second > first);
    retry_until(Duration::from_secs(5), "second tombstone reaped", || async {
        oldest_tombstone(&s).is_none().then_some(())
    })
    .await;
    node.stop.cancel();
    node.tracker.close();
    node.tracker.wait().await;
}
