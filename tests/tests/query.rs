//! Prepared queries through HTTP and DNS on one agent: definitions and Consul's validation,
//! execution filters, templates, session binding, `<name>.query.consul`. (Failover across
//! datacenters is in `federation.rs`.)

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use reqwest::Client;
use serde_json::{json, Value};

use crate::dns::{dns_config, fill_catalog, ip_set, ips, start, udp};

async fn call(c: &Client, method: &str, url: String, body: Option<Value>) -> (u16, String) {
    let mut r = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn nodes(v: &Value) -> Vec<String> {
    let mut n: Vec<String> =
        v["Nodes"].as_array().unwrap().iter().map(|e| e["Node"]["Node"].as_str().unwrap().to_string()).collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_queries_define_execute_and_answer_dns() {
    let c = Client::new();
    let (a, dns) = start(dns_config()).await;
    fill_catalog(&a).await;

    // Create, with Consul's answers to bad definitions.
    let (s, body) = call(
        &c,
        "POST",
        a.url("/v1/query"),
        Some(json!({"Name": "web", "Service": {"Service": "web"}, "DNS": {"TTL": "7s"}})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["ID"].as_str().unwrap().to_string();
    for (body, status, want) in [
        (json!({"Name": "x"}), 500, "Invalid prepared query: Must provide a Service name to query"),
        (json!({"Service": {"Service": "web"}}), 500, "Invalid prepared query: Must be bound to a session"),
        (
            json!({"Name": "WEB", "Service": {"Service": "db"}}),
            500,
            "raft apply failed: name 'WEB' aliases an existing query name",
        ),
        (
            json!({"Name": "s", "Session": "0b7f6e0a-1111-2222-3333-444455556666", "Service": {"Service": "db"}}),
            500,
            "raft apply failed: invalid session \"0b7f6e0a-1111-2222-3333-444455556666\"",
        ),
        (
            json!({"Name": "t", "Service": {"Service": "db"}, "DNS": {"TTL": "x"}}),
            500,
            "Invalid prepared query: Bad DNS TTL 'x': ",
        ),
        (
            json!({"Name": "u", "Service": {"Service": "db", "Bogus": 1}}),
            400,
            "Request decode failed: json: unknown field \"Bogus\"",
        ),
        (
            json!({"ID": "x", "Name": "v", "Service": {"Service": "db"}}),
            500,
            "ID must be empty when creating a new prepared query",
        ),
    ] {
        let (s, text) = call(&c, "POST", a.url("/v1/query"), Some(body)).await;
        assert_eq!(s, status, "{text}");
        assert!(text.starts_with(want), "{text} vs {want}");
    }

    // Read and list: Consul's shape, the ID's query only.
    let (s, body) = call(&c, "GET", a.url(&format!("/v1/query/{id}")), None).await;
    assert_eq!(s, 200);
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got[0]["Name"], "web");
    assert_eq!(got[0]["Service"]["Failover"]["NearestN"], 0);
    assert_eq!(got[0]["DNS"]["TTL"], "7s");
    let list: Value = serde_json::from_str(&call(&c, "GET", a.url("/v1/query"), None).await.1).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, text) = call(&c, "GET", a.url("/v1/query/0b7f6e0a-aaaa-bbbb-cccc-444455556666"), None).await;
    assert_eq!((s, text.as_str()), (404, "Query not found"));

    // Execute by name (any case) and by ID: critical instances are dropped, warning kept.
    for key in ["web", "WEB", id.as_str()] {
        let (s, body) = call(&c, "GET", a.url(&format!("/v1/query/{key}/execute")), None).await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(nodes(&v), ["n1", "n2", "n4"], "{key}");
        assert_eq!(
            (v["Service"].as_str(), v["Datacenter"].as_str(), v["Failovers"].as_u64()),
            (Some("web"), Some("dc1"), Some(0))
        );
    }
    let v: Value =
        serde_json::from_str(&call(&c, "GET", a.url("/v1/query/web/execute?limit=1"), None).await.1).unwrap();
    assert_eq!(v["Nodes"].as_array().unwrap().len(), 1);
    let (s, _) = call(&c, "GET", a.url("/v1/query/nope/execute"), None).await;
    assert_eq!(s, 404);
    assert_eq!(call(&c, "PUT", a.url(&format!("/v1/query/{id}/execute")), None).await.0, 405);

    // Update: only passing, without the v1 tag.
    let (s, body) = call(&c, "PUT", a.url(&format!("/v1/query/{id}")),
        Some(json!({"Name": "web", "Service": {"Service": "web", "OnlyPassing": true, "Tags": ["!v1"]}, "DNS": {"TTL": "7s"}}))).await;
    assert_eq!((s, body.as_str()), (200, ""));
    let v: Value = serde_json::from_str(&call(&c, "GET", a.url("/v1/query/web/execute"), None).await.1).unwrap();
    assert_eq!(nodes(&v), ["n4"]);

    // A template: `geo-<service>` runs the query for <service>.
    let (s, body) = call(
        &c,
        "POST",
        a.url("/v1/query"),
        Some(json!({"Name": "geo-",
        "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.*)$"},
        "Service": {"Service": "${match(1)}", "Tags": ["${name.suffix}"]}})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let tid = serde_json::from_str::<Value>(&body).unwrap()["ID"].as_str().unwrap().to_string();
    let explained: Value =
        serde_json::from_str(&call(&c, "GET", a.url("/v1/query/geo-web/explain"), None).await.1).unwrap();
    assert_eq!(explained["Query"]["Service"]["Service"], "web", "{explained}");
    assert_eq!(explained["Query"]["Service"]["Tags"], json!(["web"]));
    let (s, body) = call(
        &c,
        "POST",
        a.url("/v1/query"),
        Some(json!({"Name": "bad-",
        "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "${nope}"}})),
    )
    .await;
    assert_eq!(s, 500);
    assert!(body.contains("unknown variable accessed: nope"), "{body}");
    let (s, text) = call(&c, "GET", a.url(&format!("/v1/query/{tid}/execute")), None).await;
    assert_eq!((s, text.as_str()), (500, "prepared query templates can only be resolved up by name, not by ID"));
    let (s, body) = call(
        &c,
        "POST",
        a.url("/v1/query"),
        Some(json!({"Name": "all",
        "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "${name.full}"}})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&call(&c, "GET", a.url("/v1/query/alldb/execute"), None).await.1).unwrap();
    assert_eq!(v["Service"], "alldb", "the longest matching template name wins");

    // DNS: <name>.query.consul, with the query's TTL.
    let m = udp(dns, "web.query.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(ips(&m.answers), ip_set(&["10.1.1.1"]));
    assert!(m.answers.iter().all(|r| r.ttl == 7), "{m:?}");
    let m = udp(dns, "geo-db.query.consul.", RecordType::A).await;
    assert!(m.answers.is_empty(), "db has no instance tagged db: {m:?}");
    let m = udp(dns, "nope.query.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // A query bound to a session goes with it.
    let session = serde_json::from_str::<Value>(
        &call(&c, "PUT", a.url("/v1/session/create"), Some(json!({"Node": "n1", "NodeChecks": []}))).await.1,
    )
    .unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) =
        call(&c, "POST", a.url("/v1/query"), Some(json!({"Session": session, "Service": {"Service": "db"}}))).await;
    assert_eq!(s, 200, "{body}");
    let bound = serde_json::from_str::<Value>(&body).unwrap()["ID"].as_str().unwrap().to_string();
    assert_eq!(call(&c, "GET", a.url(&format!("/v1/query/{bound}/execute")), None).await.0, 200);
    assert_eq!(call(&c, "PUT", a.url(&format!("/v1/session/destroy/{session}")), None).await.0, 200);
    assert_eq!(call(&c, "GET", a.url(&format!("/v1/query/{bound}")), None).await.0, 404);

    // Delete.
    assert_eq!(call(&c, "DELETE", a.url(&format!("/v1/query/{id}")), None).await.0, 200);
    assert_eq!(call(&c, "GET", a.url("/v1/query/web/execute"), None).await.0, 404);
    a.stop().await;
}
