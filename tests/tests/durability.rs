//! A crash never loses an acknowledged write: rounds of SIGKILL at a random moment during
//! concurrent PUTs and transactions, restart on the same data dir, every acknowledged key of
//! every round there with its value, nothing half-done.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, AgentProcess};
use reqwest::Client;

fn server_args(dir: &str, rpc_port: u16) -> Vec<String> {
    legate_tests::single_server_args(dir, rpc_port, "durable")
}

async fn wait_leader(c: &Client, p: &AgentProcess) {
    retry_until(Duration::from_secs(15), "leader", || async {
        let l: String = c.get(p.url("/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.is_empty()).then_some(())
    })
    .await;
}

/// What the writers did: the keys they sent (acknowledged or not) and those acknowledged; the
/// transactions they sent (pairs of keys written together).
#[derive(Default)]
struct Writes {
    sent: std::collections::HashSet<String>,
    acked: Vec<String>,
    txns: Vec<(String, String)>,
}

fn decode(e: &serde_json::Value) -> String {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD.decode(e["Value"].as_str().unwrap_or_default()).unwrap();
    String::from_utf8(v).unwrap()
}

/// `iterations` rounds on one data dir: four writers of single keys and one of two-key
/// transactions run, the process is SIGKILLed at a random moment, restarted, and checked:
/// every acknowledged write of every round is there with its value, nothing appears that was
/// not sent, every value is whole, and each transaction's two keys are both there or neither.
async fn crash_and_check(extra: &[&str], iterations: usize) {
    use rand::Rng;
    let data = tempfile::tempdir().unwrap();
    let rpc_port = legate_tests::free_port();
    let mut args = server_args(data.path().to_str().unwrap(), rpc_port);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Client::new();
    let writes = std::sync::Arc::new(std::sync::Mutex::new(Writes::default()));
    for round in 0..iterations {
        let mut p = AgentProcess::start(&args, &[]);
        wait_leader(&c, &p).await;
        let mut writers = Vec::new();
        for w in 0..5 {
            let (c, url, writes) = (c.clone(), p.url(""), writes.clone());
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    if w == 4 {
                        // Two keys in one transaction.
                        let (a, b) = (format!("crash/{round}/txn/{i}/a"), format!("crash/{round}/txn/{i}/b"));
                        writes.lock().unwrap().txns.push((a.clone(), b.clone()));
                        let ops = serde_json::json!([
                            {"KV": {"Verb": "set", "Key": a, "Value": "dHhu"}},
                            {"KV": {"Verb": "set", "Key": b, "Value": "dHhu"}},
                        ]);
                        if c.put(format!("{url}/v1/txn")).json(&ops).send().await.is_err() {
                            break;
                        }
                        continue;
                    }
                    let key = format!("crash/{round}/{w}/{i}");
                    writes.lock().unwrap().sent.insert(key.clone());
                    let Ok(r) = c.put(format!("{url}/v1/kv/{key}")).body(format!("value-{round}-{w}-{i}")).send().await
                    else {
                        break;
                    };
                    let ok = r.status() == 200;
                    match r.text().await {
                        Ok(t) if ok && t.trim() == "true" => writes.lock().unwrap().acked.push(key),
                        other => {
                            eprintln!("round {round}: writer {w} stopped: {other:?}");
                            break;
                        }
                    }
                }
            }));
        }
        // A random moment: a few hundred writes in, give or take.
        let wait = Duration::from_millis(rand::thread_rng().gen_range(300..1500));
        let before = writes.lock().unwrap().acked.len();
        let start = Instant::now();
        retry_until(Duration::from_secs(20), "some acknowledged writes", || async {
            (start.elapsed() >= wait && writes.lock().unwrap().acked.len() > before).then_some(())
        })
        .await;
        p.signal(libc::SIGKILL);
        for w in writers {
            let _ = w.await;
        }
        p.wait_exit(Duration::from_secs(5));

        let p = AgentProcess::start(&args, &[]);
        wait_leader(&c, &p).await;
        let all: Vec<serde_json::Value> =
            c.get(p.url("/v1/kv/crash/?recurse")).send().await.unwrap().json().await.unwrap();
        let stored: std::collections::HashMap<String, String> =
            all.iter().map(|e| (e["Key"].as_str().unwrap().to_string(), decode(e))).collect();
        let w = writes.lock().unwrap();
        for key in &w.acked {
            let parts: Vec<&str> = key.split('/').collect();
            let want = format!("value-{}-{}-{}", parts[1], parts[2], parts[3]);
            assert_eq!(
                stored.get(key).map(String::as_str),
                Some(want.as_str()),
                "round {round}: acknowledged {key} lost ({} acknowledged, {} stored)",
                w.acked.len(),
                stored.len()
            );
        }
        for (key, value) in &stored {
            if key.contains("/txn/") {
                assert_eq!(value, "txn", "round {round}: {key} holds {value:?}");
                continue;
            }
            assert!(w.sent.contains(key), "round {round}: {key} was never sent");
            let parts: Vec<&str> = key.split('/').collect();
            assert_eq!(
                value,
                &format!("value-{}-{}-{}", parts[1], parts[2], parts[3]),
                "round {round}: {key} is not whole"
            );
        }
        for (a, b) in &w.txns {
            assert_eq!(stored.contains_key(a), stored.contains_key(b), "round {round}: half a transaction ({a}, {b})");
        }
        eprintln!(
            "round {round}: {} acknowledged writes so far all present, {} keys stored, {} transactions whole",
            w.acked.len(),
            stored.len(),
            w.txns.iter().filter(|(a, _)| stored.contains_key(a)).count()
        );
        drop(w);
        drop(p);
    }
}

/// Rounds in the suite; `scripts/chaos.sh` asks for more (CHAOS_CRASH_ROUNDS).
fn rounds() -> usize {
    std::env::var("CHAOS_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    crash_and_check(&[], rounds()).await;
}

/// With frequent snapshots the log behind them is purged while the state store's commits are
/// not fsynced: a restart must load the snapshot, then replay the rest of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_across_snapshots() {
    crash_and_check(&["-hcl", "raft_snapshot_threshold = 25", "-hcl", "raft_trailing_logs = 5"], rounds()).await;
}
