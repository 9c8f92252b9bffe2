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
    for a in agents.iter().flatten() {
        if let Ok(r) = c.get(a.url("/v1/status/leader")).send().await {
            if let Ok(l) = r.json::<String>().await {
                if let Some(i) = IPS.iter().position(|ip| l.starts_with(&format!("{ip}:"))) {
                    return Some(i);
                }
            }
        }
    }
    None
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
    // LEGATE_CHAOS_SECONDS for the long run: as many rounds as fit.
    let seconds: u64 = std::env::var("LEGATE_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
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
