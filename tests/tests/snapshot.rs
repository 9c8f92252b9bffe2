//! Operator snapshots: save, restore (replicated), blocked queries woken by a restore, bad
//! archives refused without touching the state.

use std::time::Duration;

use legate_tests::{retry_until, test_config, InProcessAgent};
use reqwest::Client;
use serde_json::Value;

#[tokio::test]
async fn save_restore_and_wake_blocked_queries() {
    let a = InProcessAgent::start(test_config()).await;
    let c = Client::new();
    retry_until(Duration::from_secs(10), "leader", || async {
        let l: String = c.get(a.url("/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.is_empty()).then_some(())
    })
    .await;
    for (k, v) in [("s/a", "1"), ("s/b", "2")] {
        c.put(a.url(&format!("/v1/kv/{k}"))).body(v).send().await.unwrap();
    }
    let r = c.get(a.url("/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-gzip");
    assert!(r.headers().contains_key("x-consul-index"));
    let archive = r.bytes().await.unwrap();
    assert_eq!(&archive[..2], &[0x1f, 0x8b], "gzip");

    // Change things after the snapshot.
    c.put(a.url("/v1/kv/s/a")).body("changed").send().await.unwrap();
    c.delete(a.url("/v1/kv/s/b")).send().await.unwrap();
    c.put(a.url("/v1/kv/s/c")).body("new").send().await.unwrap();
    let r = c.get(a.url("/v1/kv/s/?recurse")).send().await.unwrap();
    let idx: u64 = r.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();

    // A query blocked on the prefix returns when the restore lands.
    let url = a.url(&format!("/v1/kv/s/?recurse&index={idx}&wait=30s"));
    let c2 = c.clone();
    let before = a.blocked_queries();
    let blocked = tokio::spawn(async move { c2.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    a.until_blocked(before, 1).await;
    assert!(!blocked.is_finished());

    let r = c.put(a.url("/v1/snapshot")).body(archive.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let woken = tokio::time::timeout(Duration::from_secs(5), blocked).await.expect("woken by restore").unwrap();
    let keys: Vec<&str> = woken.as_array().unwrap().iter().map(|e| e["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["s/a", "s/b"]);
    let v: Value = c.get(a.url("/v1/kv/s/a")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v[0]["Value"], "MQ==");
    let r = c.get(a.url("/v1/kv/s/?recurse")).send().await.unwrap();
    let after: u64 = r.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    assert!(after > idx, "the index does not go backwards across a restore ({after} <= {idx})");

    // A corrupt archive is refused and changes nothing.
    let mut bad = archive.to_vec();
    let n = bad.len();
    bad[n / 2] ^= 0x55;
    let r = c.put(a.url("/v1/snapshot")).body(bad).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().starts_with("failed to restore snapshot: "));
    let r = c.put(a.url("/v1/snapshot")).body("not an archive").send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = c.get(a.url("/v1/kv/s/?recurse")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    a.stop().await;
}
