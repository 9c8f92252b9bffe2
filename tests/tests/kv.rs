//! The KV API through a real single-server agent (Raft + redb), every parameter and status.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, test_config, InProcessAgent};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

async fn agent() -> (InProcessAgent, Client) {
    let a = InProcessAgent::start(test_config()).await;
    let c = Client::new();
    retry_until(Duration::from_secs(10), "leader", || async {
        let l: String = c.get(a.url("/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.is_empty()).then_some(())
    })
    .await;
    (a, c)
}

async fn put(c: &Client, a: &InProcessAgent, path: &str, body: &str) -> (StatusCode, String) {
    let r = c.put(a.url(path)).body(body.to_string()).send().await.unwrap();
    // -dev (the test config) pretty-prints, with a trailing newline, as Consul does.
    (r.status(), r.text().await.unwrap().trim_end().to_string())
}

fn index(r: &reqwest::Response) -> u64 {
    r.headers()["x-consul-index"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn put_get_roundtrip_with_exact_dir_entry() {
    let (a, c) = agent().await;
    assert_eq!(put(&c, &a, "/v1/kv/web/config?flags=42", "hello").await, (StatusCode::OK, "true".into()));
    let r = c.get(a.url("/v1/kv/web/config")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let idx = index(&r);
    assert_eq!(r.headers()["x-consul-knownleader"], "true");
    assert!(r.headers().contains_key("x-consul-lastcontact"));
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let e = &v[0];
    assert_eq!(e["Key"], "web/config");
    assert_eq!(e["Value"], "aGVsbG8=");
    assert_eq!(e["Flags"], 42);
    assert_eq!(e["LockIndex"], 0);
    assert_eq!(e["CreateIndex"], e["ModifyIndex"]);
    assert_eq!(e["ModifyIndex"], idx, "X-Consul-Index of a single key is its ModifyIndex");
    assert!(e.get("Session").is_none(), "Session only while held: {text}");
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]);

    // An update keeps CreateIndex and moves ModifyIndex.
    put(&c, &a, "/v1/kv/web/config", "").await;
    let v: Value = c.get(a.url("/v1/kv/web/config")).send().await.unwrap().json().await.unwrap();
    assert!(v[0]["Value"].is_null(), "empty value is null");
    assert_eq!(v[0]["Flags"], 0);
    assert_eq!(v[0]["CreateIndex"], e["CreateIndex"]);
    assert!(v[0]["ModifyIndex"].as_u64() > e["ModifyIndex"].as_u64());
    a.stop().await;
}

#[tokio::test]
async fn missing_key_is_404_empty_with_index() {
    let (a, c) = agent().await;
    let r = c.get(a.url("/v1/kv/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(index(&r) >= 1, "never 0");
    assert_eq!(r.text().await.unwrap(), "");
    put(&c, &a, "/v1/kv/other", "x").await;
    let r = c.get(a.url("/v1/kv/nope")).send().await.unwrap();
    let other: Value = c.get(a.url("/v1/kv/other")).send().await.unwrap().json().await.unwrap();
    assert_eq!(index(&r), other[0]["ModifyIndex"].as_u64().unwrap(), "missing key: table index");
    a.stop().await;
}

#[tokio::test]
async fn recurse_keys_separator_and_raw() {
    let (a, c) = agent().await;
    for k in ["app/a", "app/b/c", "app/b/d", "apple", "zoo"] {
        put(&c, &a, &format!("/v1/kv/{k}"), k).await;
    }
    let v: Value = c.get(a.url("/v1/kv/app?recurse")).send().await.unwrap().json().await.unwrap();
    let keys: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["app/a", "app/b/c", "app/b/d", "apple"]);
    for q in ["recurse=", "recurse=true"] {
        let v: Value = c.get(a.url(&format!("/v1/kv/app/?{q}"))).send().await.unwrap().json().await.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3, "{q}");
    }
    let r = c.get(a.url("/v1/kv/app/?recurse=false")).send().await.unwrap();
    assert_eq!(r.status(), 404, "recurse=false reads the single key app/");
    let all: Value = c.get(a.url("/v1/kv/?recurse")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 5);

    let k: Vec<String> = c.get(a.url("/v1/kv/app/?keys")).send().await.unwrap().json().await.unwrap();
    assert_eq!(k, ["app/a", "app/b/c", "app/b/d"]);
    let k: Vec<String> = c.get(a.url("/v1/kv/app/?keys&separator=/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(k, ["app/a", "app/b/"]);
    let k: Vec<String> = c.get(a.url("/v1/kv/?keys&separator=/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(k, ["app/", "apple", "zoo"]);
    let r = c.get(a.url("/v1/kv/none/?keys")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let r = c.get(a.url("/v1/kv/app/b/c?raw")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.text().await.unwrap(), "app/b/c");

    let r = c.get(a.url("/v1/kv/")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Missing key name");
    a.stop().await;
}

#[tokio::test]
async fn recurse_index_counts_tombstones() {
    let (a, c) = agent().await;
    put(&c, &a, "/v1/kv/p/a", "1").await;
    put(&c, &a, "/v1/kv/p/b", "2").await;
    let r = c.get(a.url("/v1/kv/p/?recurse")).send().await.unwrap();
    let before = index(&r);
    let r = c.delete(a.url("/v1/kv/p/b")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap().trim_end(), "true");
    let r = c.get(a.url("/v1/kv/p/?recurse")).send().await.unwrap();
    assert!(index(&r) > before, "a delete under the prefix moves its index forward");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    a.stop().await;
}

#[tokio::test]
async fn cas_semantics() {
    let (a, c) = agent().await;
    assert_eq!(put(&c, &a, "/v1/kv/c?cas=0", "first").await.1, "true", "cas=0 creates");
    assert_eq!(put(&c, &a, "/v1/kv/c?cas=0", "again").await.1, "false", "cas=0 only if absent");
    let v: Value = c.get(a.url("/v1/kv/c")).send().await.unwrap().json().await.unwrap();
    let mi = v[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(put(&c, &a, &format!("/v1/kv/c?cas={}", mi + 100), "x").await.1, "false");
    assert_eq!(put(&c, &a, &format!("/v1/kv/c?cas={mi}"), "second").await.1, "true");
    let r = c.get(a.url("/v1/kv/c?raw")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "second");
    assert_eq!(put(&c, &a, "/v1/kv/c?cas=abc", "x").await.0, 400);
    assert_eq!(put(&c, &a, "/v1/kv/c?flags=-1", "x").await.0, 400);
    a.stop().await;
}

#[tokio::test]
async fn delete_variants() {
    let (a, c) = agent().await;
    for k in ["d/1", "d/2", "d/3/x", "e"] {
        put(&c, &a, &format!("/v1/kv/{k}"), "v").await;
    }
    let del = |p: &str| c.delete(a.url(p)).send();
    let text = |r: reqwest::Response| async move { r.text().await.unwrap().trim_end().to_string() };
    let r = del("/v1/kv/e?cas=0").await.unwrap();
    assert_eq!(text(r).await, "false", "delete cas=0 is a no-op false");
    let v: Value = c.get(a.url("/v1/kv/e")).send().await.unwrap().json().await.unwrap();
    let mi = v[0]["ModifyIndex"].as_u64().unwrap();
    assert_eq!(text(del(&format!("/v1/kv/e?cas={}", mi + 1)).await.unwrap()).await, "false");
    assert_eq!(text(del(&format!("/v1/kv/e?cas={mi}")).await.unwrap()).await, "true");
    assert_eq!(c.get(a.url("/v1/kv/e")).send().await.unwrap().status(), 404);
    assert_eq!(text(del("/v1/kv/nothing-here").await.unwrap()).await, "true");
    let r = del("/v1/kv/d?recurse&cas=3").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().starts_with("Conflicting flags: "));
    assert_eq!(text(del("/v1/kv/d/?recurse").await.unwrap()).await, "true");
    assert_eq!(c.get(a.url("/v1/kv/d/?recurse")).send().await.unwrap().status(), 404);
    a.stop().await;
}

#[tokio::test]
async fn conflicting_flags_sessions_and_size_limit() {
    let (a, c) = agent().await;
    let (s, t) = put(&c, &a, "/v1/kv/k?cas=1&acquire=abc", "v").await;
    assert_eq!((s, t.as_str()), (StatusCode::BAD_REQUEST, "Conflicting flags: cas=1&acquire=abc"));
    let (s, t) = put(&c, &a, "/v1/kv/k?acquire=4d1e8f4c-2c4e-4a6a-8e0e-9b1f2c3d4e5f", "v").await;
    assert_eq!(
        (s, t.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "invalid session \"4d1e8f4c-2c4e-4a6a-8e0e-9b1f2c3d4e5f\"")
    );
    // A release never validates its session (Consul's kvsUnlock): an unknown one holds nothing.
    let (s, t) = put(&c, &a, "/v1/kv/k?release=x", "v").await;
    assert_eq!((s, t.trim()), (StatusCode::OK, "false"));

    let big = "x".repeat(512 * 1024 + 1);
    let (s, t) = put(&c, &a, "/v1/kv/big", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(t.starts_with("Request body(524289 bytes) too large, max size: 524288 bytes."), "{t}");
    let ok = "x".repeat(512 * 1024);
    assert_eq!(put(&c, &a, "/v1/kv/big", &ok).await.1, "true");
    a.stop().await;
}

#[tokio::test]
async fn keys_with_special_characters() {
    let (a, c) = agent().await;
    for (path, key) in
        [("/v1/kv/a%23b", "a#b"), ("/v1/kv/c:d/e", "c:d/e"), ("/v1/kv/dir/", "dir/"), ("/v1/kv/sp%20ace", "sp ace")]
    {
        assert_eq!(put(&c, &a, path, key).await.1, "true", "{path}");
        let v: Value = c.get(a.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(v[0]["Key"], key, "{path}");
    }
    a.stop().await;
}

#[tokio::test]
async fn other_datacenter_and_methods() {
    let (a, c) = agent().await;
    let r = c.get(a.url("/v1/kv/k?dc=elsewhere")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "No path to datacenter");
    let r = c.get(a.url("/v1/kv/k?dc=dc1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.post(a.url("/v1/kv/k")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET,PUT,DELETE");
    a.stop().await;
}

#[tokio::test]
async fn blocking_query_woken_by_write_and_timing_out() {
    let (a, c) = agent().await;
    put(&c, &a, "/v1/kv/b", "1").await;
    let r = c.get(a.url("/v1/kv/b")).send().await.unwrap();
    let idx = index(&r);

    // Times out with the same index.
    let start = Instant::now();
    let r = c.get(a.url(&format!("/v1/kv/b?index={idx}&wait=300ms"))).send().await.unwrap();
    let took = start.elapsed();
    assert_eq!(index(&r), idx);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(300 + 300 / 16 + 500), "{took:?}");

    // Woken by a write.
    let url = a.url(&format!("/v1/kv/b?index={idx}&wait=30s"));
    let c2 = c.clone();
    let before = a.blocked_queries();
    let waiter = tokio::spawn(async move {
        let r = c2.get(url).send().await.unwrap();
        (index(&r), r.json::<Value>().await.unwrap())
    });
    a.until_blocked(before, 1).await;
    assert!(!waiter.is_finished(), "blocks until a change");
    put(&c, &a, "/v1/kv/b", "2").await;
    let (new_idx, v) = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert!(new_idx > idx);
    assert_eq!(v[0]["Value"], "Mg==");

    // A write to another key wakes the watch but the answer waits for this key's change.
    let url = a.url(&format!("/v1/kv/b?index={new_idx}&wait=400ms"));
    let c2 = c.clone();
    let before = a.blocked_queries();
    let waiter = tokio::spawn(async move { index(&c2.get(url).send().await.unwrap()) });
    a.until_blocked(before, 1).await;
    put(&c, &a, "/v1/kv/unrelated", "x").await;
    assert_eq!(waiter.await.unwrap(), new_idx);
    a.stop().await;
}

#[tokio::test]
async fn query_parameter_errors_and_consistency_modes() {
    let (a, c) = agent().await;
    put(&c, &a, "/v1/kv/q", "1").await;
    for (q, text) in [
        ("wait=abc&index=1", "Invalid wait time"),
        ("index=abc", "Invalid index"),
        ("stale&consistent", "Cannot specify ?stale with ?consistent, conflicting semantics."),
    ] {
        let r = c.get(a.url(&format!("/v1/kv/q?{q}"))).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert_eq!(r.text().await.unwrap(), text, "{q}");
    }
    for (q, mode) in [("", "leader"), ("?stale", "stale"), ("?consistent", "consistent")] {
        let r = c.get(a.url(&format!("/v1/kv/q{q}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{q}");
        assert_eq!(r.headers()["x-consul-effective-consistency"], mode, "{q}");
    }
    // Fractional Go durations are accepted.
    let r = c.get(a.url("/v1/kv/q?index=999999&wait=0.1873s")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    a.stop().await;
}

#[tokio::test]
async fn txn_commits_atomically_or_rolls_back() {
    let (a, c) = agent().await;
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": "YQ==", "Flags": 7}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": "Yg=="}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
        {"kv": {"verb": "get-tree", "key": "t/"}},
    ]);
    let r = c.put(a.url("/v1/txn")).json(&ops).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["Errors"].is_null());
    let results = v["Results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results[0]["KV"]["Value"].is_null(), "set results carry no value");
    assert_eq!(results[0]["KV"]["Flags"], 7);
    assert_eq!(results[2]["KV"]["Value"], "YQ==");
    assert_eq!(results[3]["KV"]["Key"], "t/a");
    assert_eq!(results[4]["KV"]["Key"], "t/b");
    let mi = results[0]["KV"]["ModifyIndex"].as_u64().unwrap();

    // A failing check rolls back every write of the transaction.
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/c", "Value": "Yw=="}},
        {"KV": {"Verb": "delete", "Key": "t/a"}},
        {"KV": {"Verb": "check-index", "Key": "t/b", "Index": mi + 50}},
        {"KV": {"Verb": "cas", "Key": "t/b", "Value": "Yw==", "Index": 1}},
    ]);
    let r = c.put(a.url("/v1/txn")).json(&ops).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert!(v["Results"].is_null());
    assert_eq!(v["Errors"][0]["OpIndex"], 2);
    assert_eq!(v["Errors"][0]["What"], format!("current modify index {mi} != {}", mi + 50));
    assert_eq!(v["Errors"][1]["OpIndex"], 3);
    assert_eq!(v["Errors"][1]["What"], "failed to set key \"t/b\", index is stale");
    assert_eq!(c.get(a.url("/v1/kv/t/c")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(a.url("/v1/kv/t/a")).send().await.unwrap().status(), 200);

    // Deletes and check-not-exists.
    let ops = json!([
        {"KV": {"Verb": "check-not-exists", "Key": "t/zzz"}},
        {"KV": {"Verb": "delete-cas", "Key": "t/a", "Index": mi}},
        {"KV": {"Verb": "delete-tree", "Key": "t/"}},
    ]);
    let r = c.put(a.url("/v1/txn")).json(&ops).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Results"], json!([]));
    assert_eq!(c.get(a.url("/v1/kv/t/?recurse")).send().await.unwrap().status(), 404);
    a.stop().await;
}

#[tokio::test]
async fn txn_read_only_limits_and_bad_input() {
    let (a, c) = agent().await;
    put(&c, &a, "/v1/kv/r", "v").await;
    let r = c
        .put(a.url("/v1/txn"))
        .json(&json!([{"KV": {"Verb": "get", "Key": "r"}}, {"KV": {"Verb": "get-or-empty", "Key": "none"}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Results"].as_array().unwrap().len(), 1);
    let r = c.put(a.url("/v1/txn")).json(&json!([{"KV": {"Verb": "get", "Key": "none"}}])).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Errors"][0]["What"], "key \"none\" doesn't exist");

    let many: Vec<Value> = (0..129).map(|i| json!({"KV": {"Verb": "set", "Key": format!("m{i}")}})).collect();
    let r = c.put(a.url("/v1/txn")).json(&many).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.unwrap(), "Transaction contains too many operations (129 > 128)");
    let exactly: Vec<Value> = (0..128).map(|i| json!({"KV": {"Verb": "set", "Key": format!("m{i}")}})).collect();
    assert_eq!(c.put(a.url("/v1/txn")).json(&exactly).send().await.unwrap().status(), 200);

    for body in [
        "not json",
        r#"{"KV": {}}"#,
        r#"[{"KV": {"Verb": "explode", "Key": "k"}}]"#,
        r#"[{"KV": {"Verb": "set", "Key": "k", "Value": "%%%"}}]"#,
    ] {
        let r = c.put(a.url("/v1/txn")).body(body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(c.get(a.url("/v1/txn")).send().await.unwrap().status(), 405);
    a.stop().await;
}
