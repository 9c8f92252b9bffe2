//! Config dirs that reload themselves: add, edit and delete a service file; broken files keep
//! the running config; bursts of writes are debounced; `legate reload` works.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, run_legate_with, AgentProcess};
use reqwest::Client;
use serde_json::Value;

async fn get(c: &Client, url: String) -> Option<Value> {
    c.get(url).send().await.ok()?.json().await.ok()
}

fn reloads(p: &AgentProcess) -> usize {
    p.output().matches("config files changed").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_files_in_a_watched_dir_apply_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    std::fs::write(dir.path().join("base.json"), r#"{"node_meta": {"rack": "r1"}}"#).unwrap();
    let p = AgentProcess::start(
        &["agent", "-dev", "-http-port", "0", "-dns-port", "-1", "-server-port", "0", "-config-dir", &d],
        &[],
    );
    let c = Client::new();
    retry_until(Duration::from_secs(10), "leader", || async {
        let l = get(&c, p.url("/v1/status/leader")).await?;
        (!l.as_str()?.is_empty()).then_some(())
    })
    .await;

    // Add: a new file registers its service.
    let web = |port: u16, ttl: &str| {
        format!(
            r#"{{"service": {{"name": "web", "port": {port}, "check": {{"id": "web-ttl", "name": "web", "ttl": "{ttl}", "status": "passing"}}}}}}"#
        )
    };
    let written = Instant::now();
    std::fs::write(dir.path().join("web.json"), web(80, "60s")).unwrap();
    retry_until(Duration::from_secs(10), "web in the catalog", || async {
        let v = get(&c, p.url("/v1/catalog/service/web")).await?;
        (v.as_array()?.len() == 1).then_some(())
    })
    .await;
    let added = written.elapsed();
    eprintln!("file write -> service in /v1/catalog/service/web: {added:?}");
    assert!(added < Duration::from_secs(3), "{added:?}");

    // Edit the service but not its check: the check keeps its status and output.
    let r = c
        .put(p.url("/v1/agent/check/update/web-ttl"))
        .json(&serde_json::json!({"Status": "warning", "Output": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    std::fs::write(dir.path().join("web.json"), web(81, "60s")).unwrap();
    retry_until(Duration::from_secs(10), "port 81", || async {
        let v = get(&c, p.url("/v1/catalog/service/web")).await?;
        (v[0]["ServicePort"] == 81).then_some(())
    })
    .await;
    let checks = get(&c, p.url("/v1/agent/checks")).await.unwrap();
    assert_eq!(
        (checks["web-ttl"]["Status"].as_str(), checks["web-ttl"]["Output"].as_str()),
        (Some("warning"), Some("kept"))
    );

    // A broken file and an invalid one: the running config stays, the reload endpoint says why.
    std::fs::write(dir.path().join("bad.json"), "{ nope").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = c.put(p.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("bad.json"));
    std::fs::write(dir.path().join("bad.json"), r#"{"ports": {"https": 99999}}"#).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = c.put(p.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("ports.https"));
    let v = get(&c, p.url("/v1/catalog/service/web")).await.unwrap();
    assert_eq!(v[0]["ServicePort"], 81, "running config kept");
    std::fs::remove_file(dir.path().join("bad.json")).unwrap();

    // A burst of 100 writes is a handful of reloads.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = reloads(&p);
    for i in 0..100 {
        std::fs::write(dir.path().join("burst.json"), format!(r#"{{"node_meta": {{"burst": "{i}"}}}}"#)).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burst = reloads(&p) - before;
    assert!((1..=10).contains(&burst), "{burst} reloads for 100 writes");
    let me = get(&c, p.url("/v1/agent/self")).await.unwrap();
    assert_eq!(me["Meta"]["burst"], "99");
    // node_meta reaches the catalog's node entry.
    retry_until(Duration::from_secs(5), "node meta in the catalog", || async {
        let n = get(&c, p.url("/v1/catalog/nodes")).await?;
        (n[0]["Meta"]["burst"] == "99").then_some(())
    })
    .await;

    // `legate reload` takes the same path.
    let (code, out, err) = run_legate_with(&["reload", &format!("-http-addr={}", p.http.unwrap())], &[], None);
    assert_eq!((code, out.trim()), (0, "Configuration reload triggered"), "{err}");

    // Delete: the file's service is deregistered; one registered by the API is untouched.
    let r =
        c.put(p.url("/v1/agent/service/register")).json(&serde_json::json!({"Name": "api-svc"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    std::fs::remove_file(dir.path().join("web.json")).unwrap();
    retry_until(Duration::from_secs(10), "web gone", || async {
        let v = get(&c, p.url("/v1/catalog/service/web")).await?;
        v.as_array()?.is_empty().then_some(())
    })
    .await;
    let services = get(&c, p.url("/v1/agent/services")).await.unwrap();
    assert!(services.get("api-svc").is_some() && services.get("web").is_none(), "{services}");
}
