//! A crash never loses an acknowledged write: SIGKILL during a stream of PUTs, restart on the
//! same data dir, every acknowledged key is there with its value.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, AgentProcess};
use reqwest::Client;

fn server_args(dir: &str) -> Vec<String> {
    [
        "agent",
        "-server",
        "-bootstrap",
        "-data-dir",
        dir,
        "-bind",
        "127.0.0.1",
        "-http-port",
        "0",
        "-dns-port",
        "-1",
        "-server-port",
        "0",
        "-node",
        "durable",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn wait_leader(c: &Client, p: &AgentProcess) {
    retry_until(Duration::from_secs(15), "leader", || async {
        let l: String = c.get(p.url("/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.is_empty()).then_some(())
    })
    .await;
}

async fn crash_and_check(extra: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    let mut args = server_args(data.path().to_str().unwrap());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Client::new();
    let mut p = AgentProcess::start(&args, &[]);
    wait_leader(&c, &p).await;

    // Four concurrent writers; the process is killed while they run.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = c.clone();
        let url = p.url("");
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("crash/{w}/{i}");
                let Ok(r) = c.put(format!("{url}/v1/kv/{key}")).body(format!("value-{w}-{i}")).send().await else {
                    break;
                };
                let ok = r.status() == 200;
                match r.text().await {
                    Ok(t) if ok && t.trim() == "true" => acked.lock().unwrap().push(key),
                    _ => break,
                }
            }
        }));
    }
    let start = Instant::now();
    retry_until(Duration::from_secs(20), "some acknowledged writes", || async {
        (acked.lock().unwrap().len() >= 200 || start.elapsed() > Duration::from_secs(3)).then_some(())
    })
    .await;
    p.signal(libc::SIGKILL);
    for w in writers {
        let _ = w.await;
    }
    p.wait_exit(Duration::from_secs(5));
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "only {} writes acknowledged before the kill", acked.len());
    eprintln!("{} writes acknowledged before SIGKILL", acked.len());

    let p = AgentProcess::start(&args, &[]);
    wait_leader(&c, &p).await;
    let all: Vec<serde_json::Value> = c.get(p.url("/v1/kv/crash/?recurse")).send().await.unwrap().json().await.unwrap();
    let stored: std::collections::HashMap<String, String> = all
        .iter()
        .map(|e| {
            use base64::Engine;
            let v = base64::engine::general_purpose::STANDARD.decode(e["Value"].as_str().unwrap()).unwrap();
            (e["Key"].as_str().unwrap().to_string(), String::from_utf8(v).unwrap())
        })
        .collect();
    for key in &acked {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(
            stored.get(key).map(String::as_str),
            Some(format!("value-{}-{}", parts[1], parts[2]).as_str()),
            "acknowledged {key} lost ({} acknowledged, {} stored)",
            acked.len(),
            stored.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    crash_and_check(&[]).await;
}

/// With frequent snapshots the log behind them is purged while the state store's commits are
/// not fsynced: a restart must load the snapshot, then replay the rest of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_across_snapshots() {
    crash_and_check(&["-hcl", "raft_snapshot_threshold = 25", "-hcl", "raft_trailing_logs = 5"]).await;
}
