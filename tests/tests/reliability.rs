//! Consistency under faults, checked: concurrent reads, writes and check-and-sets on a few keys
//! through every server of a 3-server cluster while the leader is paused (SIGSTOP/SIGCONT) and
//! a server is killed (SIGKILL) and restarted; the history is checked for linearizability
//! (`legate_tests::linearizability`, Wing & Gong with memoization).
//!
//! What is guaranteed, and checked:
//! - writes, check-and-sets and `?consistent` reads are linearizable (an acknowledged write is
//!   seen by every later consistent read; no two CAS from one value both succeed);
//! - default-consistency reads (Consul's default mode: answered by the server that believes it
//!   leads, without a quorum round trip) may be stale while an old leader has not yet learnt it
//!   was replaced, so they are checked for what they do promise: the value returned was written
//!   (or was the initial one) by a write invoked before the read returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legate_tests::linearizability::{check, Event, Op, Verdict};
use legate_tests::{retry_until, AgentProcess};
use rand::Rng;
use reqwest::Client;

const IPS: [&str; 3] = ["127.0.9.1", "127.0.9.2", "127.0.9.3"];

fn start(i: usize, dir: &tempfile::TempDir) -> AgentProcess {
    let args =
        legate_tests::cluster_agent_args(IPS[i], &format!("r{}", i + 1), dir.path().to_str().unwrap(), true, IPS[0]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(&args, &[])
}

#[derive(Clone, Debug)]
struct Recorded {
    key: String,
    event: Event,
    /// A default-consistency read (checked for its weaker promise).
    default_read: bool,
}

type History = Arc<Mutex<Vec<Recorded>>>;

fn since(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

async fn read(c: &Client, base_url: &str, key: &str, consistent: bool) -> Result<Option<(String, u64)>, ()> {
    let q = if consistent { "?consistent" } else { "" };
    let r = c.get(format!("{base_url}/v1/kv/{key}{q}")).send().await.map_err(|_| ())?;
    match r.status().as_u16() {
        404 => Ok(None),
        200 => {
            let v: serde_json::Value = r.json().await.map_err(|_| ())?;
            let e = &v[0];
            let value = e["Value"].as_str().map(|b| {
                use base64::Engine;
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default())
                    .unwrap_or_default()
            });
            Ok(Some((value.unwrap_or_default(), e["ModifyIndex"].as_u64().unwrap_or(0))))
        }
        _ => Err(()),
    }
}

/// What a write's client learnt.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Acknowledged: `true` or `false` (a CAS that did not apply).
    Acked(bool),
    /// Never reached the server (connection refused): it did not happen.
    NotSent,
    /// Timed out, or an error after sending: it may or may not have applied.
    Unknown,
}

/// PUT (with `?cas=` when given).
async fn put(c: &Client, base_url: &str, key: &str, value: &str, cas: Option<u64>) -> Outcome {
    let q = cas.map(|i| format!("?cas={i}")).unwrap_or_default();
    let r = match c.put(format!("{base_url}/v1/kv/{key}{q}")).body(value.to_string()).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::NotSent,
        Err(_) => return Outcome::Unknown,
    };
    if r.status() != 200 {
        // A 500 (no leader, timeout while forwarding) does not say whether it applied.
        return Outcome::Unknown;
    }
    match r.text().await.as_deref().map(str::trim) {
        Ok("true") => Outcome::Acked(true),
        Ok("false") => Outcome::Acked(false),
        _ => Outcome::Unknown,
    }
}

/// One client: random operations on random keys through one server until `until`.
async fn client(id: usize, server: String, keys: Vec<String>, base: Instant, until: Instant, history: History) {
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let mut n = 0u64;
    while Instant::now() < until {
        // About 50 operations a second per client: histories the checker searches in seconds.
        let pause = rand::thread_rng().gen_range(5..35);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let key = keys[rand::thread_rng().gen_range(0..keys.len())].clone();
        let choice = rand::thread_rng().gen_range(0..10);
        let record = |op: Op, call: u64, ret: Option<u64>, default_read: bool| {
            history.lock().unwrap().push(Recorded {
                key: key.clone(),
                event: Event { client: id, op, call, ret },
                default_read,
            });
        };
        n += 1;
        match choice {
            0..=2 => {
                let value = format!("c{id}-{n}");
                let call = since(base);
                match put(&c, &server, &key, &value, None).await {
                    Outcome::Acked(_) => record(Op::Write(value), call, Some(since(base)), false),
                    Outcome::Unknown => record(Op::Write(value), call, None, false),
                    Outcome::NotSent => {}
                }
            }
            3..=6 => {
                let consistent = choice <= 4;
                let call = since(base);
                if let Ok(v) = read(&c, &server, &key, consistent).await {
                    record(Op::Read(v.map(|(v, _)| v)), call, Some(since(base)), !consistent);
                }
            }
            _ => {
                // Check-and-set on the index a consistent read saw: values are unique, so the
                // index stands for the value.
                let call = since(base);
                let Ok(Some((current, index))) = read(&c, &server, &key, true).await else { continue };
                record(Op::Read(Some(current.clone())), call, Some(since(base)), false);
                let value = format!("c{id}-{n}-cas");
                let call = since(base);
                match put(&c, &server, &key, &value, Some(index)).await {
                    Outcome::Acked(ok) => {
                        record(Op::Cas { expected: current, new: value, ok }, call, Some(since(base)), false)
                    }
                    Outcome::Unknown => record(Op::Cas { expected: current, new: value, ok: true }, call, None, false),
                    Outcome::NotSent => {}
                }
            }
        }
    }
}

async fn leader_index(c: &Client, agents: &[Option<AgentProcess>]) -> Option<usize> {
    leader_index_of(c, agents, &IPS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_is_linearizable_while_the_leader_pauses_and_a_server_is_killed() {
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents: Vec<Option<AgentProcess>> = (0..3).map(|i| Some(start(i, &dirs[i]))).collect();
    retry_until(Duration::from_secs(30), "a leader with three peers", || async {
        let a = agents[0].as_ref()?;
        let p: serde_json::Value = c.get(a.url("/v1/status/peers")).send().await.ok()?.json().await.ok()?;
        (p.as_array()?.len() == 3).then_some(())
    })
    .await;
    let keys: Vec<String> = (0..5).map(|k| format!("lin/k{k}")).collect();
    for k in &keys {
        retry_until(Duration::from_secs(10), "initial value", || async {
            (put(&c, &agents[0].as_ref()?.url(""), k, "init", None).await == Outcome::Acked(true)).then_some(())
        })
        .await;
    }

    // The short run in the suite: one round of faults in 16 s. `scripts/chaos.sh` sets
    // CHAOS_SECONDS for the long run: as many rounds as fit.
    let seconds: u64 = std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let base = Instant::now();
    let until = base + Duration::from_secs(seconds);
    let history: History = Arc::default();
    let mut tasks = Vec::new();
    for id in 0..6 {
        let server = agents[id % 3].as_ref().unwrap().url("");
        tasks.push(tokio::spawn(client(id, server, keys.clone(), base, until, history.clone())));
    }
    // Each round: the leader paused for 3 s; then a server (the leader if known) killed and
    // restarted on its data dir.
    let mut rounds = Vec::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    while Instant::now() + Duration::from_secs(10) < until {
        let paused = leader_index(&c, &agents).await.unwrap_or(0);
        agents[paused].as_ref().unwrap().signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(3)).await;
        agents[paused].as_ref().unwrap().signal(libc::SIGCONT);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = leader_index(&c, &agents).await.unwrap_or((paused + 1) % 3);
        let mut victim = agents[killed].take().unwrap();
        victim.signal(libc::SIGKILL);
        victim.wait_exit(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(2)).await;
        agents[killed] = Some(start(killed, &dirs[killed]));
        rounds.push(format!("paused r{} for 3 s, killed and restarted r{}", paused + 1, killed + 1));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!rounds.is_empty(), "at least one round of faults");
    let faults = format!("{} rounds: {}", rounds.len(), rounds.join("; "));
    eprintln!("workload done: {faults}");

    let history = history.lock().unwrap().clone();
    let mut by_key: HashMap<String, Vec<Recorded>> = HashMap::new();
    for r in history {
        by_key.entry(r.key.clone()).or_default().push(r);
    }
    let (mut checked, mut unknown_outcomes, mut default_reads) = (0, 0, 0);
    for (key, recs) in &by_key {
        let strong: Vec<Event> = recs.iter().filter(|r| !r.default_read).map(|r| r.event.clone()).collect();
        checked += strong.len();
        unknown_outcomes += strong.iter().filter(|e| e.ret.is_none()).count();
        let started = Instant::now();
        let verdict = check(&strong, Some("init".into()), 5_000_000);
        eprintln!("{key}: {} operations checked in {:?}: {verdict:?}", strong.len(), started.elapsed());
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Unknown => panic!("{key}: the search ran out of budget ({} operations)", strong.len()),
            Verdict::Violation { longest } => {
                let mut ops: Vec<&Event> = strong.iter().collect();
                ops.sort_by_key(|e| e.call);
                panic!(
                    "{key}: not linearizable ({faults}); longest linearizable prefix {} of {}:\n{ops:#?}",
                    longest.len(),
                    strong.len()
                );
            }
        }
        // Default reads: a value written (or the initial one), by a write invoked before the read
        // returned.
        for r in recs.iter().filter(|r| r.default_read) {
            default_reads += 1;
            let Op::Read(Some(v)) = &r.event.op else { continue };
            let ret = r.event.ret.unwrap();
            let written = v == "init"
                || recs.iter().any(|w| match &w.event.op {
                    Op::Write(x) | Op::Cas { new: x, .. } => x == v && w.event.call < ret,
                    Op::Read(_) => false,
                });
            assert!(written, "{key}: a default read returned {v:?}, which no write had written");
        }
    }
    eprintln!(
        "{checked} operations checked linearizable ({unknown_outcomes} of unknown outcome), {default_reads} default reads checked; faults: {faults}"
    );
    assert!(checked > 200, "the workload ran: {checked} operations");
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
    retry_until(Duration::from_secs(30), "a leader with three peers", || async {
        let p: serde_json::Value =
            c.get(servers[0].as_ref()?.url("/v1/status/peers")).send().await.ok()?.json().await.ok()?;
        (p.as_array()?.len() == 3).then_some(())
    })
    .await;

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
    let seconds: u64 = std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(18);
    let until = Instant::now() + Duration::from_secs(seconds);
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
