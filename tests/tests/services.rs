//! Services and health end to end: registration by API and by config file, check runners
//! against real servers, TTLs, the reaper, blocking health queries, filters, maintenance.

use std::time::Duration;

use legate_core::config::{CheckDefinition, GoDuration, ServiceDefinition};
use legate_tests::{retry_until, test_config, InProcessAgent};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A tiny HTTP server answering every request with `status`; stops with the token.
async fn http_server(listener: TcpListener, status: u16, stop: CancellationToken) {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let body = "healthy";
            let resp =
                format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

async fn leader(a: &InProcessAgent) {
    legate_tests::wait_leader(&a.base).await;
}

async fn get_json(url: String) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = Client::new().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

async fn check_status(a: &InProcessAgent, service: &str) -> Option<String> {
    let (_, v, _) = get_json(a.url(&format!("/v1/health/service/{service}"))).await;
    let checks = v.get(0)?["Checks"].as_array()?.clone();
    checks.iter().find(|c| c["ServiceID"] != "").map(|c| c["Status"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_registration_by_api_with_http_check_follows_the_server() {
    let a = InProcessAgent::start(test_config()).await;
    leader(&a).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let server = tokio::spawn(http_server(listener, 200, stop.clone()));

    // The seed's body, with the check pointed at our test server.
    let body = json!({"id": "jetty", "name": "test1111", "address": "localhost", "port": 8500, "tags": ["dev"],
        "checks": [{"http": format!("http://127.0.0.1:{port}/"), "interval": "1s"}]});
    let r = Client::new().put(a.url("/v1/agent/service/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let svc = retry_until(Duration::from_secs(10), "service in catalog", || async {
        let (_, v, _) = get_json(a.url("/v1/catalog/service/test1111")).await;
        v.as_array().filter(|l| !l.is_empty()).map(|l| l[0].clone())
    })
    .await;
    assert_eq!(svc["ServiceID"], "jetty");
    assert_eq!(svc["ServiceAddress"], "localhost");
    assert_eq!(svc["ServicePort"], 8500);
    assert_eq!(svc["ServiceTags"], json!(["dev"]));
    assert_eq!(svc["Node"], "test-node");
    assert_eq!(svc["ServiceWeights"], json!({"Passing": 1, "Warning": 1}));

    retry_until(Duration::from_secs(10), "check passing", || async {
        (check_status(&a, "test1111").await.as_deref() == Some("passing")).then_some(())
    })
    .await;
    let (status, v, headers) = get_json(a.url("/v1/health/service/test1111?passing")).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-consul-index"));
    let entry = &v[0];
    assert_eq!(entry["Node"]["Node"], "test-node");
    assert_eq!(entry["Node"]["Meta"]["consul-network-segment"], "");
    assert_eq!(entry["Service"]["ID"], "jetty");
    assert_eq!(entry["Service"]["Service"], "test1111");
    let checks = entry["Checks"].as_array().unwrap();
    let serf = checks.iter().find(|c| c["CheckID"] == "serfHealth").expect("serfHealth");
    assert_eq!(
        (serf["Status"].as_str(), serf["Output"].as_str()),
        (Some("passing"), Some("Agent alive and reachable"))
    );
    let http = checks.iter().find(|c| c["CheckID"] == "service:jetty").expect("service check");
    assert_eq!(http["Name"], "Service 'test1111' check");
    assert_eq!(http["Type"], "http");
    assert!(http["Output"].as_str().unwrap().contains("200"), "{http}");

    // The server stops: critical, and gone from ?passing.
    stop.cancel();
    server.await.unwrap();
    retry_until(Duration::from_secs(10), "check critical", || async {
        (check_status(&a, "test1111").await.as_deref() == Some("critical")).then_some(())
    })
    .await;
    let (_, v, _) = get_json(a.url("/v1/health/service/test1111?passing")).await;
    assert_eq!(v, json!([]));
    let (_, v, _) = get_json(a.url("/v1/health/service/test1111?passing=false")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);

    // And back.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(http_server(listener, 200, stop.clone()));
    retry_until(Duration::from_secs(10), "check passing again", || async {
        (check_status(&a, "test1111").await.as_deref() == Some("passing")).then_some(())
    })
    .await;
    stop.cancel();

    // Deregistration removes it from the catalog; an unknown ID is a 404 with Consul's text.
    let r = Client::new().put(a.url("/v1/agent/service/deregister/jetty")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    retry_until(Duration::from_secs(10), "service gone", || async {
        let (_, v, _) = get_json(a.url("/v1/catalog/service/test1111")).await;
        (v == json!([])).then_some(())
    })
    .await;
    let r = Client::new().put(a.url("/v1/agent/service/deregister/jetty")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        "Unknown service ID \"jetty\". Ensure that the service ID is passed, not the service name."
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_services_reach_catalog_and_agent_endpoints() {
    let mut config = test_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    config.services.push(ServiceDefinition {
        id: Some("jetty".into()),
        name: "test1111".into(),
        address: Some("localhost".into()),
        port: Some(8500),
        tags: vec!["dev".into()],
        checks: vec![CheckDefinition {
            tcp: Some(format!("127.0.0.1:{tcp_port}")),
            interval: Some(GoDuration::from_secs(1)),
            ..Default::default()
        }],
        ..Default::default()
    });
    config.services.push(ServiceDefinition { name: "redis".into(), port: Some(6379), ..Default::default() });
    let a = InProcessAgent::start(config).await;
    leader(&a).await;
    retry_until(Duration::from_secs(10), "tcp check passing", || async {
        (check_status(&a, "test1111").await.as_deref() == Some("passing")).then_some(())
    })
    .await;
    let (_, services, _) = get_json(a.url("/v1/catalog/services")).await;
    assert_eq!(services, json!({"consul": [], "redis": [], "test1111": ["dev"]}));
    let (_, agent_services, _) = get_json(a.url("/v1/agent/services")).await;
    assert_eq!(agent_services["jetty"]["Service"], "test1111");
    assert_eq!(agent_services["redis"]["Port"], 6379);
    assert_eq!(agent_services["redis"]["Datacenter"], "dc1");
    let (_, checks, _) = get_json(a.url("/v1/agent/checks")).await;
    assert_eq!(checks["service:jetty"]["ServiceName"], "test1111");
    assert_eq!(checks["service:jetty"]["Type"], "tcp");
    // Aggregated health: passing 200, by id a single object; unknown 404.
    let (status, v, _) = get_json(a.url("/v1/agent/health/service/id/jetty")).await;
    assert_eq!((status, v["AggregatedStatus"].as_str()), (200, Some("passing")));
    let (status, v, _) = get_json(a.url("/v1/agent/health/service/name/test1111?format=text")).await;
    assert_eq!((status, v), (200, json!("passing")));
    let (status, _, _) = get_json(a.url("/v1/agent/health/service/name/nope")).await;
    assert_eq!(status, 404);
    // The consul service is on the server node.
    let (_, v, _) = get_json(a.url("/v1/catalog/service/consul")).await;
    assert_eq!(v[0]["ServiceID"], "consul");
    drop(listener);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_checks_expire_and_critical_services_are_reaped() {
    let a = InProcessAgent::start(test_config()).await;
    leader(&a).await;
    let c = Client::new();
    let r = c
        .put(a.url("/v1/agent/service/register"))
        .json(&json!({"Name": "worker", "Check": {"TTL": "1s", "DeregisterCriticalServiceAfter": "2s"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.put(a.url("/v1/agent/check/pass/service:worker?note=alive")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, checks, _) = get_json(a.url("/v1/agent/checks")).await;
    assert_eq!(
        (checks["service:worker"]["Status"].as_str(), checks["service:worker"]["Output"].as_str()),
        (Some("passing"), Some("alive"))
    );
    // Not refreshed: critical "TTL expired", then the service is removed.
    retry_until(Duration::from_secs(5), "TTL expiry", || async {
        let (_, checks, _) = get_json(a.url("/v1/agent/checks")).await;
        (checks["service:worker"]["Output"] == "TTL expired" && checks["service:worker"]["Status"] == "critical")
            .then_some(())
    })
    .await;
    retry_until(Duration::from_secs(10), "service reaped", || async {
        let (_, services, _) = get_json(a.url("/v1/agent/services")).await;
        services.get("worker").is_none().then_some(())
    })
    .await;
    // Update with a body; unknown and non-TTL checks are refused.
    let r = c.put(a.url("/v1/agent/check/register")).json(&json!({"Name": "mem", "TTL": "30s"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(a.url("/v1/agent/check/update/mem"))
        .json(&json!({"Status": "warning", "Output": "80%"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, checks, _) = get_json(a.url("/v1/agent/checks")).await;
    assert_eq!((checks["mem"]["Status"].as_str(), checks["mem"]["Output"].as_str()), (Some("warning"), Some("80%")));
    let r = c.put(a.url("/v1/agent/check/pass/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().await.unwrap(),
        "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
    );
    let r = c
        .put(a.url("/v1/agent/check/register"))
        .json(&json!({"Name": "bad", "HTTP": "http://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks");
    let r = c
        .put(a.url("/v1/agent/check/register"))
        .json(&json!({"Name": "s", "Args": ["true"], "Interval": "1s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "scripts are off by default");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_health_query_wakes_on_change_and_filters_select() {
    let a = InProcessAgent::start(test_config()).await;
    leader(&a).await;
    let c = Client::new();
    for (id, env, port) in [("web1", "prod", 80), ("web2", "dev", 81)] {
        let body = json!({"ID": id, "Name": "web", "Port": port, "Tags": [env], "Meta": {"env": env},
            "Check": {"TTL": "60s", "Status": "passing"}});
        assert_eq!(c.put(a.url("/v1/agent/service/register")).json(&body).send().await.unwrap().status(), 200);
    }
    let idx = retry_until(Duration::from_secs(10), "both instances", || async {
        let (_, v, h) = get_json(a.url("/v1/health/service/web?passing")).await;
        (v.as_array()?.len() == 2).then(|| h["x-consul-index"].to_str().unwrap().parse::<u64>().unwrap())
    })
    .await;
    // A blocked query returns when web2 fails.
    let url = a.url(&format!("/v1/health/service/web?passing&index={idx}&wait=20s"));
    let before = a.blocked_queries();
    let blocked = tokio::spawn(async move { get_json(url).await });
    a.until_blocked(before, 1).await;
    assert!(!blocked.is_finished(), "blocked until a change");
    c.put(a.url("/v1/agent/check/fail/service:web2")).send().await.unwrap();
    let (_, v, h) = tokio::time::timeout(Duration::from_secs(10), blocked).await.unwrap().unwrap();
    assert!(h["x-consul-index"].to_str().unwrap().parse::<u64>().unwrap() > idx);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Service"]["ID"], "web1");
    // Timeout with no change returns the same index.
    let (_, _, h2) =
        get_json(a.url(&format!("/v1/health/service/web?index={}&wait=300ms", h["x-consul-index"].to_str().unwrap())))
            .await;
    assert_eq!(h2["x-consul-index"], h["x-consul-index"]);

    // Filters and tags.
    let (_, v, _) = get_json(a.url("/v1/catalog/service/web?filter=ServiceMeta.env%20%3D%3D%20%22dev%22")).await;
    assert_eq!(v.as_array().unwrap().iter().map(|s| s["ServiceID"].clone()).collect::<Vec<_>>(), [json!("web2")]);
    let (_, v, _) = get_json(a.url("/v1/catalog/service/web?tag=prod")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["ServiceID"], "web1");
    let (_, v, _) = get_json(a.url("/v1/health/service/web?filter=%22prod%22%20in%20Service.Tags")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v, _) = get_json(a.url("/v1/agent/services?filter=Port%20%3D%3D%2081")).await;
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["web2"]);
    let (status, v, _) = get_json(a.url("/v1/catalog/service/web?filter=ServiceMeta.env%20%3D%3D")).await;
    assert_eq!(status, 400);
    assert!(v.as_str().unwrap().starts_with("Failed to create boolean expression evaluator"), "{v}");
    let (status, _, _) = get_json(a.url("/v1/health/state/bogus")).await;
    assert_eq!(status, 400);
    let (_, v, _) = get_json(a.url("/v1/health/state/critical")).await;
    assert!(v.as_array().unwrap().iter().any(|c| c["ServiceID"] == "web2"));

    // Maintenance: a critical _service_maintenance:<id> check; disabling removes it.
    let r = c.put(a.url("/v1/agent/service/maintenance/web1?enable=true&reason=upgrade")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, checks, _) = get_json(a.url("/v1/agent/checks")).await;
    let m = &checks["_service_maintenance:web1"];
    assert_eq!((m["Status"].as_str(), m["Notes"].as_str()), (Some("critical"), Some("upgrade")));
    let r = c.put(a.url("/v1/agent/service/maintenance/web1?enable=false")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, checks, _) = get_json(a.url("/v1/agent/checks")).await;
    assert!(checks.get("_service_maintenance:web1").is_none());
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_register_and_deregister_external_nodes() {
    let a = InProcessAgent::start(test_config()).await;
    leader(&a).await;
    let c = Client::new();
    let body = json!({"Datacenter": "dc1", "Node": "ext", "Address": "192.168.10.10", "NodeMeta": {"rack": "r1"},
        "Service": {"ID": "redis1", "Service": "redis", "Tags": ["primary"], "Port": 8000},
        "Check": {"Node": "ext", "CheckID": "service:redis1", "Name": "Redis health check", "Status": "passing", "ServiceID": "redis1"}});
    let r = c.put(a.url("/v1/catalog/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!(true));
    let (_, v, _) = get_json(a.url("/v1/catalog/node/ext")).await;
    assert_eq!(v["Node"]["Meta"]["rack"], "r1");
    assert_eq!(v["Services"]["redis1"]["Port"], 8000);
    let (_, v, _) = get_json(a.url("/v1/catalog/nodes?node-meta=rack:r1")).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (_, v, _) = get_json(a.url("/v1/health/checks/redis")).await;
    assert_eq!(v[0]["Status"], "passing");
    let (_, v, _) = get_json(a.url("/v1/catalog/node/missing")).await;
    assert_eq!(v, Value::Null);
    let r = c.put(a.url("/v1/catalog/register")).json(&json!({"Node": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.put(a.url("/v1/catalog/deregister")).json(&json!({"Node": "ext"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, v, _) = get_json(a.url("/v1/catalog/service/redis")).await;
    assert_eq!(v, json!([]));
    let (_, v, _) = get_json(a.url("/v1/catalog/datacenters")).await;
    assert_eq!(v, json!(["dc1"]));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_registrations_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.data_dir = Some(dir.path().to_path_buf());
    let a = InProcessAgent::start(config.clone()).await;
    let body = json!({"Name": "db", "Port": 5432, "Check": {"TTL": "30s"}});
    let r = Client::new().put(a.url("/v1/agent/service/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    a.stop().await;
    let b = InProcessAgent::start(config).await;
    let (_, services, _) = get_json(b.url("/v1/agent/services")).await;
    assert_eq!(services["db"]["Port"], 5432);
    let (_, checks, _) = get_json(b.url("/v1/agent/checks")).await;
    assert_eq!(checks["service:db"]["Type"], "ttl");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_node_service_and_check_verbs() {
    let a = InProcessAgent::start(test_config()).await;
    leader(&a).await;
    let c = Client::new();
    let ops = json!([
        {"Node": {"Verb": "set", "Node": {"Node": "db1", "Address": "10.0.0.9", "Meta": {"rack": "r1"}}}},
        {"Service": {"Verb": "set", "Node": "db1", "Service": {"ID": "pg1", "Service": "postgres", "Port": 5432, "Tags": ["primary"]}}},
        {"Check": {"Verb": "set", "Check": {"Node": "db1", "CheckID": "pg-alive", "Name": "pg", "Status": "passing", "ServiceID": "pg1"}}},
        {"KV": {"Verb": "set", "Key": "db/leader", "Value": "ZGIx"}}
    ]);
    let r = c.put(a.url("/v1/txn")).json(&ops).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let results = v["Results"].as_array().unwrap();
    assert_eq!(results[0]["Node"]["Node"], "db1");
    assert_eq!(results[1]["Service"]["Port"], 5432);
    assert_eq!(results[2]["Check"]["ServiceName"], "postgres");
    assert_eq!(results[3]["KV"]["Key"], "db/leader");
    let (_, h, _) = get_json(a.url("/v1/health/service/postgres?passing")).await;
    assert_eq!(h[0]["Node"]["Meta"]["rack"], "r1");
    let node_index = results[0]["Node"]["ModifyIndex"].as_u64().unwrap();

    // A stale cas and a get of something missing roll everything back (409 with Errors).
    let ops = json!([
        {"Node": {"Verb": "cas", "Node": {"Node": "db1", "Address": "10.0.0.10", "ModifyIndex": node_index - 1}}},
        {"Service": {"Verb": "get", "Node": "db1", "Service": {"ID": "nope"}}},
        {"KV": {"Verb": "delete", "Key": "db/leader"}}
    ]);
    let r = c.put(a.url("/v1/txn")).json(&ops).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    let errors = v["Errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!((errors[0]["OpIndex"].as_u64(), errors[1]["OpIndex"].as_u64()), (Some(0), Some(1)));
    let (status, _, _) = get_json(a.url("/v1/kv/db/leader")).await;
    assert_eq!(status, 200, "the KV delete rolled back");
    let (_, n, _) = get_json(a.url("/v1/catalog/node/db1")).await;
    assert_eq!(n["Node"]["Address"], "10.0.0.9");

    // With the current index the cas applies.
    let r = c
        .put(a.url("/v1/txn"))
        .json(&json!([{"Node": {"Verb": "cas", "Node": {"Node": "db1", "Address": "10.0.0.10", "ModifyIndex": node_index}}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, n, _) = get_json(a.url("/v1/catalog/node/db1")).await;
    assert_eq!(n["Node"]["Address"], "10.0.0.10");

    // A read-only transaction (gets) and a delete.
    let r = c
        .put(a.url("/v1/txn"))
        .json(&json!([{"Check": {"Verb": "get", "Check": {"Node": "db1", "CheckID": "pg-alive"}}}]))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Results"][0]["Check"]["Status"], "passing");
    let r = c
        .put(a.url("/v1/txn"))
        .json(&json!([{"Node": {"Verb": "delete", "Node": {"Node": "db1"}}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v, _) = get_json(a.url("/v1/catalog/service/postgres")).await;
    assert_eq!(v, json!([]));
    let r = c
        .put(a.url("/v1/txn"))
        .json(&json!([{"Node": {"Verb": "bogus", "Node": {"Node": "x"}}}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    a.stop().await;
}
