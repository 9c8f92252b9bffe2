//! Sessions and KV locks: create/info/list/renew/destroy, acquire/release, lock-delay,
//! behaviours, invalidation by a critical check, TTL expiry.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, test_config, InProcessAgent};
use reqwest::Client;
use serde_json::{json, Value};

async fn agent() -> InProcessAgent {
    let a = InProcessAgent::start(test_config()).await;
    // The node and its serfHealth must be in the catalog before sessions can be created on it.
    legate_tests::wait_serf_health(&a.base, "test-node").await;
    a
}

async fn create(c: &Client, a: &InProcessAgent, body: Value) -> String {
    let r = c.put(a.url("/v1/session/create")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["ID"].as_str().unwrap().to_string()
}

async fn put(c: &Client, a: &InProcessAgent, path: &str) -> (u16, String) {
    let r = c.put(a.url(path)).body("v").send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap().trim_end().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_exclusive_and_released_with_lock_delay() {
    let a = agent().await;
    let c = Client::new();
    let s1 = create(&c, &a, json!({"Name": "one", "LockDelay": "1s"})).await;
    let s2 = create(&c, &a, json!({"name": "two"})).await;
    let info: Value = c.get(a.url(&format!("/v1/session/info/{s1}"))).send().await.unwrap().json().await.unwrap();
    let s = &info[0];
    assert_eq!(
        (s["Name"].as_str(), s["Node"].as_str(), s["Behavior"].as_str()),
        (Some("one"), Some("test-node"), Some("release"))
    );
    assert_eq!(s["LockDelay"], 1_000_000_000u64);
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(s["TTL"], "");

    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?acquire={s1}")).await, (200, "true".into()));
    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?acquire={s2}")).await, (200, "false".into()));
    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?acquire={s1}")).await, (200, "true".into()));
    let e: Value = c.get(a.url("/v1/kv/lock/leader")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (e[0]["Session"].as_str(), e[0]["LockIndex"].as_u64()),
        (Some(s1.as_str()), Some(1)),
        "re-acquire keeps LockIndex"
    );
    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?release={s2}")).await, (200, "false".into()));
    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?release={s1}")).await, (200, "true".into()));
    let e: Value = c.get(a.url("/v1/kv/lock/leader")).send().await.unwrap().json().await.unwrap();
    assert!(e[0].get("Session").is_none(), "{e}");
    assert_eq!(
        put(&c, &a, "/v1/kv/lock/leader?acquire=00000000-0000-0000-0000-000000000000").await,
        (500, "invalid session \"00000000-0000-0000-0000-000000000000\"".into())
    );

    // s1 holds the lock and is destroyed: released at once, but s2 must wait the lock-delay.
    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?acquire={s1}")).await.1, "true");
    let r = c.put(a.url(&format!("/v1/session/destroy/{s1}"))).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!(true));
    let destroyed = Instant::now();
    let e: Value = c.get(a.url("/v1/kv/lock/leader")).send().await.unwrap().json().await.unwrap();
    assert!(e[0].get("Session").is_none());
    assert_eq!(e[0]["LockIndex"], 2);
    assert_eq!(put(&c, &a, &format!("/v1/kv/lock/leader?acquire={s2}")).await.1, "false", "inside the lock-delay");
    retry_until(Duration::from_secs(5), "acquire after the lock-delay", || async {
        (put(&c, &a, &format!("/v1/kv/lock/leader?acquire={s2}")).await.1 == "true").then_some(())
    })
    .await;
    assert!(destroyed.elapsed() >= Duration::from_millis(900), "lock-delay honoured");
    let info: Value = c.get(a.url(&format!("/v1/session/info/{s1}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(info, json!([]));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_behaviour_check_invalidation_and_errors() {
    let a = agent().await;
    let c = Client::new();
    let s = create(&c, &a, json!({"Behavior": "delete", "LockDelay": 0})).await;
    assert_eq!(put(&c, &a, &format!("/v1/kv/eph/key?acquire={s}")).await.1, "true");
    c.put(a.url(&format!("/v1/session/destroy/{s}"))).send().await.unwrap();
    let r = c.get(a.url("/v1/kv/eph/key")).send().await.unwrap();
    assert_eq!(r.status(), 404, "behaviour delete removes the key");

    // A session tied to a check dies when the check goes critical.
    let r = c
        .put(a.url("/v1/agent/check/register"))
        .json(&json!({"Name": "mem", "TTL": "60s", "Status": "passing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tied = retry_until(Duration::from_secs(10), "session on the check", || async {
        let r = c.put(a.url("/v1/session/create")).json(&json!({"Checks": ["serfHealth", "mem"]})).send().await.ok()?;
        if r.status() != 200 {
            return None;
        }
        Some(r.json::<Value>().await.ok()?["ID"].as_str()?.to_string())
    })
    .await;
    assert_eq!(put(&c, &a, &format!("/v1/kv/tied?acquire={tied}")).await.1, "true");
    c.put(a.url("/v1/agent/check/fail/mem")).send().await.unwrap();
    retry_until(Duration::from_secs(10), "session invalidated", || async {
        let v: Value = c.get(a.url(&format!("/v1/session/info/{tied}"))).send().await.ok()?.json().await.ok()?;
        (v == json!([])).then_some(())
    })
    .await;
    let e: Value = c.get(a.url("/v1/kv/tied")).send().await.unwrap().json().await.unwrap();
    assert!(e[0].get("Session").is_none());
    // Creating against a critical check fails; bad TTLs and unknown renewals are errors.
    let r = c.put(a.url("/v1/session/create")).json(&json!({"Checks": ["mem"]})).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("critical"));
    let r = c.put(a.url("/v1/session/create")).json(&json!({"TTL": "5s"})).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().starts_with("Invalid Session TTL"));
    let r = c.put(a.url("/v1/session/renew/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "Session id 'nope' not found");
    let r = c.put(a.url("/v1/session/create")).json(&json!({"Behavior": "explode"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_sessions_expire_unless_renewed_and_lists_block() {
    let a = agent().await;
    let c = Client::new();
    let r = c.get(a.url("/v1/session/list")).send().await.unwrap();
    let idx = r.headers()["x-consul-index"].to_str().unwrap().to_string();
    let url = a.url(&format!("/v1/session/list?index={idx}&wait=10s"));
    let c2 = c.clone();
    let before = a.blocked_queries();
    let blocked = tokio::spawn(async move { c2.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    a.until_blocked(before, 1).await;
    assert!(!blocked.is_finished(), "blocks until a session is created");
    let kept = create(&c, &a, json!({"Name": "kept", "TTL": "10s"})).await;
    let dropped = create(&c, &a, json!({"Name": "dropped", "TTL": "10s"})).await;
    let listed = tokio::time::timeout(Duration::from_secs(5), blocked).await.unwrap().unwrap();
    assert!(!listed.as_array().unwrap().is_empty(), "blocked list woke on create");
    let started = Instant::now();
    // Renew one every 5 s; the other expires after 2 x TTL (20 s), not before.
    while started.elapsed() < Duration::from_secs(26) {
        let r = c.put(a.url(&format!("/v1/session/renew/{kept}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v[0]["TTL"], "10s");
        let gone =
            c.get(a.url(&format!("/v1/session/info/{dropped}"))).send().await.unwrap().json::<Value>().await.unwrap()
                == json!([]);
        if started.elapsed() < Duration::from_secs(19) {
            assert!(!gone, "expired early at {:?}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(5).min(Duration::from_secs(26).saturating_sub(started.elapsed()))).await;
    }
    let v: Value = c.get(a.url(&format!("/v1/session/info/{dropped}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!([]), "unrenewed session expired after 2 x TTL");
    let v: Value = c.get(a.url(&format!("/v1/session/info/{kept}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(v[0]["ID"], kept.as_str());
    a.stop().await;
}
