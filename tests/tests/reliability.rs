//! Consistency under faults, checked: the KV workload of `legate_tests::kv_workload`
//! (concurrent reads, writes and check-and-sets through every server of a 3-server cluster,
//! checked for linearizability per key) while the leader is paused (SIGSTOP/SIGCONT), a server
//! is killed (SIGKILL) and restarted, and, with the servers in network namespaces
//! (`legate_tests::netns`), while the network partitions and loses packets; and `legate lock`
//! holders that must never overlap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use legate_tests::kv_workload::{self, check_history};
use legate_tests::netns::Lab;
use legate_tests::{retry_until, AgentProcess};
use reqwest::Client;

const IPS: [&str; 3] = ["127.0.9.1", "127.0.9.2", "127.0.9.3"];

fn start(i: usize, dir: &tempfile::TempDir) -> AgentProcess {
    let args =
        legate_tests::cluster_agent_args(IPS[i], &format!("r{}", i + 1), dir.path().to_str().unwrap(), true, IPS[0]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(&args, &[])
}

/// The run's length: the suite's short default, or `CHAOS_SECONDS` (`scripts/chaos.sh`).
fn chaos_seconds(default: u64) -> u64 {
    std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

async fn wait_three_peers(c: &Client, url: impl Fn() -> Option<String>) {
    retry_until(Duration::from_secs(30), "a leader with three peers", || async {
        let p: serde_json::Value = c.get(url()?).send().await.ok()?.json().await.ok()?;
        (p.as_array()?.len() == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_is_linearizable_while_the_leader_pauses_and_a_server_is_killed() {
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents: Vec<Option<AgentProcess>> = (0..3).map(|i| Some(start(i, &dirs[i]))).collect();
    wait_three_peers(&c, || Some(agents[0].as_ref()?.url("/v1/status/peers"))).await;
    let keys: Vec<String> = (0..5).map(|k| format!("lin/k{k}")).collect();
    kv_workload::init_keys(&agents[0].as_ref().unwrap().url(""), &keys).await;

    // The short run in the suite: one round of faults in 16 s; the long run as many as fit.
    let base = Instant::now();
    let until = base + Duration::from_secs(chaos_seconds(16));
    let servers: Vec<String> = agents.iter().map(|a| a.as_ref().unwrap().url("")).collect();
    let workload = tokio::spawn({
        let keys = keys.clone();
        async move { kv_workload::run(&servers, &keys, 6, base, until).await }
    });
    // Each round: the leader paused for 3 s; then a server (the leader if known) killed and
    // restarted on its data dir.
    let mut rounds = Vec::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    while Instant::now() + Duration::from_secs(10) < until {
        let paused = leader_index_of(&c, &agents, &IPS).await.unwrap_or(0);
        agents[paused].as_ref().unwrap().signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(3)).await;
        agents[paused].as_ref().unwrap().signal(libc::SIGCONT);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = leader_index_of(&c, &agents, &IPS).await.unwrap_or((paused + 1) % 3);
        let mut victim = agents[killed].take().unwrap();
        victim.signal(libc::SIGKILL);
        victim.wait_exit(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(2)).await;
        agents[killed] = Some(start(killed, &dirs[killed]));
        rounds.push(format!("paused r{} for 3 s, killed and restarted r{}", paused + 1, killed + 1));
    }
    let history = workload.await.unwrap();
    assert!(!rounds.is_empty(), "at least one round of faults");
    let faults = format!("{} rounds: {}", rounds.len(), rounds.join("; "));
    let summary = check_history(history, &faults);
    assert!(summary.checked > 200, "the workload ran: {} operations", summary.checked);
}

/// Three servers in network namespaces, the workload's clients on the test's side of the
/// bridge talking to all three, and rounds of network faults, 4 s each with 2 s healed between:
/// the leader isolated from both followers (its clients keep talking to it), a bridge (the
/// leader cut from one follower only: the other sees both), 20 % packet loss between all
/// servers, a follower isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_is_linearizable_while_the_network_partitions_and_loses_packets() {
    let Some(lab) = Lab::new("kv", 21, 3) else { return };
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips: Vec<String> = (0..3).map(|i| lab.ip(i)).collect();
    let agents: Vec<Option<AgentProcess>> = (0..3)
        .map(|i| {
            let args = legate_tests::cluster_agent_args(
                &ips[i],
                &format!("p{}", i + 1),
                dirs[i].path().to_str().unwrap(),
                true,
                &ips[0],
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(lab.start(i, &args, &[]))
        })
        .collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    wait_three_peers(&c, || Some(agents[0].as_ref()?.url("/v1/status/peers"))).await;
    let keys: Vec<String> = (0..5).map(|k| format!("part/k{k}")).collect();
    kv_workload::init_keys(&agents[0].as_ref().unwrap().url(""), &keys).await;

    let base = Instant::now();
    let until = base + Duration::from_secs(chaos_seconds(32));
    let servers: Vec<String> = agents.iter().map(|a| a.as_ref().unwrap().url("")).collect();
    let workload = tokio::spawn({
        let keys = keys.clone();
        async move { kv_workload::run(&servers, &keys, 6, base, until).await }
    });
    let mut rounds = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut kind = 0;
    while Instant::now() + Duration::from_secs(6) < until {
        let leader = leader_index_of(&c, &agents, &ip_refs).await.unwrap_or(0);
        let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
        let cut_at = Instant::now();
        let what = match kind % 4 {
            0 => {
                lab.partition(&[&[leader], &[f1, f2]]);
                // The majority elects another leader while the old one is cut off.
                let old = format!("{}:", ips[leader]);
                let f1_url = agents[f1].as_ref().unwrap().url("/v1/status/leader");
                retry_until(Duration::from_secs(8), "the majority elects a new leader", || async {
                    let l: String = c.get(&f1_url).send().await.ok()?.json().await.ok()?;
                    (!l.is_empty() && !l.starts_with(&old)).then_some(())
                })
                .await;
                format!("leader p{} isolated (p{} saw a new leader after {:?})", leader + 1, f1 + 1, cut_at.elapsed())
            }
            1 => {
                lab.cut(leader, f1);
                format!("bridge: leader p{} cut from p{}, p{} sees both", leader + 1, f1 + 1, f2 + 1)
            }
            2 => {
                lab.loss(20);
                "20 % loss between all servers".to_string()
            }
            _ => {
                lab.partition(&[&[f1], &[leader, f2]]);
                format!("follower p{} isolated", f1 + 1)
            }
        };
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(cut_at.elapsed())).await;
        lab.heal();
        tokio::time::sleep(Duration::from_secs(2)).await;
        rounds.push(what);
        kind += 1;
    }
    let history = workload.await.unwrap();
    assert!(rounds.len() >= 4, "every kind of fault: {rounds:?}");
    let faults = format!("{} rounds: {}", rounds.len(), rounds.join("; "));
    let summary = check_history(history, &faults);
    assert!(summary.checked > 200, "the workload ran: {} operations", summary.checked);
    // After the last heal the cluster serves again: a consistent write through every server.
    for a in agents.iter().flatten() {
        retry_until(Duration::from_secs(20), "a write after the partitions healed", || async {
            let r = c.put(a.url("/v1/kv/part/after")).body("ok").send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }
}

/// `legate lock` holders on three servers' APIs while the leader is paused, a holder's server is
/// paused (its holder loses sight of the lock) and a server is killed and restarted: the holders'
/// own logs never show two of them in the critical section at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holders_never_overlap_while_servers_pause_and_die() {
    const LOCK_IPS: [&str; 3] = ["127.0.10.1", "127.0.10.2", "127.0.10.3"];
    let start_lock_server = |i: usize, dir: &tempfile::TempDir| {
        let args = legate_tests::cluster_agent_args(
            LOCK_IPS[i],
            &format!("l{}", i + 1),
            dir.path().to_str().unwrap(),
            true,
            LOCK_IPS[0],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        AgentProcess::start(&args, &[])
    };
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<Option<AgentProcess>> = (0..3).map(|i| Some(start_lock_server(i, &dirs[i]))).collect();
    wait_three_peers(&c, || Some(servers[0].as_ref()?.url("/v1/status/peers"))).await;

    // Each holder: a loop of `legate lock` runs; the critical section logs its start, a tick
    // every 50 ms and its end, with the time in nanoseconds.
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log");
    let hold = work.path().join("hold.sh");
    std::fs::write(
        &hold,
        "id=$1; log=$2\necho \"start $id $(date +%s%N)\" >> \"$log\"\nfor i in 1 2 3 4 5 6; do echo \"tick $id $(date +%s%N)\" >> \"$log\"; sleep 0.05; done\necho \"end $id $(date +%s%N)\" >> \"$log\"\n",
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(chaos_seconds(18));
    let bin = legate_tests::legate_bin();
    let mut holders = Vec::new();
    for (id, server) in servers.iter().enumerate() {
        let addr = server.as_ref().unwrap().http.unwrap().to_string();
        let (bin, hold, log) = (bin.clone(), hold.clone(), log.clone());
        holders.push(tokio::task::spawn_blocking(move || {
            let mut runs = 0;
            while Instant::now() < until {
                let status = std::process::Command::new(&bin)
                    .args(["lock", &format!("-http-addr={addr}"), "locks/critical"])
                    .arg(format!("sh {} {id} {}", hold.display(), log.display()))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                if status.is_ok_and(|s| s.success()) {
                    runs += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            runs
        }));
    }
    // Faults: the leader paused 3 s; holder 0's server paused 4 s (a follower, or the leader);
    // a server killed and restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = leader_index_of(&c, &servers, &LOCK_IPS).await.unwrap_or(0);
    servers[leader].as_ref().unwrap().signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    servers[leader].as_ref().unwrap().signal(libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(1)).await;
    servers[0].as_ref().unwrap().signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(4)).await;
    servers[0].as_ref().unwrap().signal(libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim_idx = leader_index_of(&c, &servers, &LOCK_IPS).await.unwrap_or(2);
    let mut victim = servers[victim_idx].take().unwrap();
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers[victim_idx] = Some(start_lock_server(victim_idx, &dirs[victim_idx]));
    let mut runs = 0;
    for h in holders {
        runs += h.await.unwrap();
    }

    // The critical sections, from the holders' own lines: [start, last line] per run.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut open: HashMap<String, (u128, u128)> = HashMap::new();
    let mut sections: Vec<(u128, u128, String)> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind, id, ts] = parts[..] else { continue };
        let ts: u128 = ts.parse().unwrap();
        match kind {
            "start" => {
                if let Some((s, e)) = open.insert(id.to_string(), (ts, ts)) {
                    sections.push((s, e, id.to_string()));
                }
            }
            _ => {
                if let Some(section) = open.get_mut(id) {
                    section.1 = ts;
                }
            }
        }
    }
    sections.extend(open.into_iter().map(|(id, (s, e))| (s, e, id)));
    sections.sort();
    for w in sections.windows(2) {
        assert!(
            w[1].0 > w[0].1,
            "holders {} and {} overlapped by {} µs (sections {:?} and {:?})",
            w[0].2,
            w[1].2,
            (w[0].1 - w[1].0) / 1000,
            (w[0].0, w[0].1),
            (w[1].0, w[1].1)
        );
    }
    eprintln!(
        "{} critical sections ({runs} completed runs), no overlap; faults: l{} (the leader) paused 3 s, l1 paused 4 s, l{} killed and restarted",
        sections.len(),
        leader + 1,
        victim_idx + 1
    );
    assert!(sections.len() >= 5, "the holders made progress: {} sections", sections.len());
}

async fn leader_index_of(c: &Client, agents: &[Option<AgentProcess>], ips: &[&str]) -> Option<usize> {
    for a in agents.iter().flatten() {
        if let Ok(r) = c.get(a.url("/v1/status/leader")).send().await {
            if let Ok(l) = r.json::<String>().await {
                if let Some(i) = ips.iter().position(|ip| l.starts_with(&format!("{ip}:"))) {
                    return Some(i);
                }
            }
        }
    }
    None
}
