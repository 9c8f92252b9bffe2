//! The KV workload of the fault scenarios: clients doing random reads (consistent and default),
//! writes and check-and-sets on a few keys through the servers' HTTP APIs, recording every
//! operation's invocation and completion; and the check of the history: per key, the strong
//! operations must be linearizable (`crate::linearizability`), default reads must return a value
//! that was written.
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

use rand::Rng;
use reqwest::Client;

use crate::linearizability::{check, Event, Op, Verdict};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub key: String,
    pub event: Event,
    /// A default-consistency read (checked for its weaker promise).
    pub default_read: bool,
}

pub type History = Arc<Mutex<Vec<Recorded>>>;

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
pub enum Outcome {
    /// Acknowledged: `true` or `false` (a CAS that did not apply).
    Acked(bool),
    /// Never reached the server (connection refused): it did not happen.
    NotSent,
    /// Timed out, or an error after sending: it may or may not have applied.
    Unknown,
}

/// PUT (with `?cas=` when given).
pub async fn put(c: &Client, base_url: &str, key: &str, value: &str, cas: Option<u64>) -> Outcome {
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

/// One client: random operations on random keys through one server until `until`, recorded
/// in `history` with times since `base`.
pub async fn client(id: usize, server: String, keys: Vec<String>, base: Instant, until: Instant, history: History) {
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

/// Runs `clients` clients (client `i` through `servers[i % len]`) on `keys` until `until`.
pub async fn run(servers: &[String], keys: &[String], clients: usize, base: Instant, until: Instant) -> Vec<Recorded> {
    let history: History = Arc::default();
    let mut tasks = Vec::new();
    for id in 0..clients {
        let server = servers[id % servers.len()].clone();
        tasks.push(tokio::spawn(client(id, server, keys.to_vec(), base, until, history.clone())));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let h = history.lock().unwrap().clone();
    h
}

/// Writes the initial value of every key (retrying until a leader takes it).
pub async fn init_keys(server: &str, keys: &[String]) {
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    for k in keys {
        crate::retry_until(Duration::from_secs(20), "initial value", || async {
            (put(&c, server, k, "init", None).await == Outcome::Acked(true)).then_some(())
        })
        .await;
    }
}

/// What a checked history held.
#[derive(Debug, Default)]
pub struct Summary {
    /// Strong operations checked linearizable.
    pub checked: usize,
    /// Of those, writes whose outcome the client never learnt.
    pub unknown_outcomes: usize,
    pub default_reads: usize,
}

/// Checks `history` per key; panics with the key's operations on a violation (`faults` says
/// what was injected).
pub fn check_history(history: Vec<Recorded>, faults: &str) -> Summary {
    let mut by_key: HashMap<String, Vec<Recorded>> = HashMap::new();
    for r in history {
        by_key.entry(r.key.clone()).or_default().push(r);
    }
    let mut summary = Summary::default();
    for (key, recs) in &by_key {
        let strong: Vec<Event> = recs.iter().filter(|r| !r.default_read).map(|r| r.event.clone()).collect();
        summary.checked += strong.len();
        summary.unknown_outcomes += strong.iter().filter(|e| e.ret.is_none()).count();
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
            summary.default_reads += 1;
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
        "{} operations checked linearizable ({} of unknown outcome), {} default reads checked; faults: {faults}",
        summary.checked, summary.unknown_outcomes, summary.default_reads
    );
    summary
}
