//! The HTTP skeleton through a real in-process agent: /v1/agent/self, version, status, 405,
//! OPTIONS, ?pretty, headers, blocked endpoints.

use std::time::Duration;

use legate_tests::{retry_until, test_config, InProcessAgent};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn agent_self_has_consul_shape_and_real_values() {
    let mut config = test_config();
    config.datacenter = "r102".into();
    config.node_meta.insert("rack".into(), "r7".into());
    let a = InProcessAgent::start(config).await;
    let resp = client().get(a.url("/v1/agent/self")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["x-consul-default-acl-policy"], "allow");
    let v: Value = resp.json().await.unwrap();
    for key in ["Config", "DebugConfig", "Coord", "Member", "Stats", "Meta", "xDS"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    let cfg = &v["Config"];
    assert_eq!(cfg["Datacenter"], "r102");
    assert_eq!(cfg["NodeName"], "test-node");
    assert_eq!(cfg["Server"], true);
    assert_eq!(cfg["NodeID"], a.agent.shared().node_id());
    // Clients parse Version as semver.
    let version = cfg["Version"].as_str().unwrap();
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{version}");
    assert!(parts[0] >= 1);
    assert!(cfg["Revision"].as_str().unwrap().starts_with("legate-"));
    assert_eq!(v["Member"]["Name"], "test-node");
    assert_eq!(v["Member"]["Addr"], "127.0.0.1");
    assert_eq!(v["Member"]["Status"], 1);
    assert_eq!(v["Member"]["Tags"]["role"], "consul");
    assert_eq!(v["Member"]["Tags"]["dc"], "r102");
    assert_eq!(v["Member"]["Tags"]["bootstrap"], "1");
    assert_eq!(v["Meta"]["rack"], "r7");
    assert_eq!(v["Meta"]["consul-network-segment"], "");
    assert_eq!(v["Coord"]["Vec"].as_array().unwrap().len(), 8);
    assert_eq!(v["Stats"]["consul"]["server"], "true");
    assert_eq!(v["Stats"]["build"]["version"], version);
    assert_eq!(v["DebugConfig"]["Datacenter"], "r102");
    a.stop().await;
}

#[tokio::test]
async fn client_agent_self_and_status() {
    let mut config = test_config();
    config.server = false;
    config.bootstrap = false;
    let a = InProcessAgent::start(config).await;
    let v: Value = client().get(a.url("/v1/agent/self")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["Config"]["Server"], false);
    assert_eq!(v["Member"]["Tags"]["role"], "node");
    assert!(v["Member"]["Tags"].get("port").is_none());
    let resp = client().get(a.url("/v1/status/leader")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "No known Consul servers");
    a.stop().await;
}

#[tokio::test]
async fn bootstrapped_server_is_its_own_leader() {
    let a = InProcessAgent::start(test_config()).await;
    let rpc = a.agent.shared().server().unwrap().rpc_addr.clone();
    let leader: String = legate_tests::retry_until(std::time::Duration::from_secs(10), "leader", || async {
        let l: String = client().get(a.url("/v1/status/leader")).send().await.unwrap().json().await.unwrap();
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(leader, rpc);
    assert!(rpc.starts_with("127.0.0.1:"), "{rpc}");
    let peers: Vec<String> = client().get(a.url("/v1/status/peers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(peers, [rpc]);
    a.stop().await;
}

#[tokio::test]
async fn version_endpoint() {
    let a = InProcessAgent::start(test_config()).await;
    let v: Value = client().get(a.url("/v1/agent/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["Version"], v["HumanVersion"]);
    assert!(v["Revision"].as_str().unwrap().starts_with("legate-"));
    a.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let a = InProcessAgent::start(test_config()).await;
    let resp = client().put(a.url("/v1/agent/self")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    assert_eq!(resp.text().await.unwrap(), "method PUT not allowed");
    let resp = client().get(a.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "PUT");
    let resp = client().request(reqwest::Method::OPTIONS, a.url("/v1/status/leader")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["allow"], "GET,OPTIONS");
    a.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_with_consuls_texts() {
    let a = InProcessAgent::start(test_config()).await;
    for (path, text) in [
        ("/v1/nope", "Invalid URL path: not a recognized HTTP API endpoint"),
        ("/v1/agent/nope", "Invalid URL path: not a recognized HTTP API endpoint"),
        ("/v2/agent/self", "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'"),
    ] {
        let resp = client().get(a.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.text().await.unwrap(), text, "{path}");
    }
    a.stop().await;
}

#[tokio::test]
async fn pretty_is_by_presence_or_dev() {
    let mut config = test_config();
    config.dev = false;
    let a = InProcessAgent::start(config).await;
    let compact = client().get(a.url("/v1/agent/version")).send().await.unwrap().text().await.unwrap();
    assert!(!compact.contains('\n'), "{compact}");
    let pretty = client().get(a.url("/v1/agent/version?pretty")).send().await.unwrap().text().await.unwrap();
    assert!(pretty.starts_with("{\n    \""), "4-space indent: {pretty}");
    assert!(pretty.ends_with("}\n"), "trailing newline: {pretty:?}");
    a.stop().await;
    // -dev pretty-prints everything.
    let a = InProcessAgent::start(test_config()).await;
    let dev = client().get(a.url("/v1/agent/version")).send().await.unwrap().text().await.unwrap();
    assert!(dev.starts_with("{\n    \""), "{dev}");
    a.stop().await;
}

#[tokio::test]
async fn response_headers_and_blocked_endpoints() {
    let mut config = test_config();
    config.http_config.response_headers.insert("Access-Control-Allow-Origin".into(), "*".into());
    config.http_config.block_endpoints.push("/v1/agent/self".into());
    let a = InProcessAgent::start(config).await;
    let resp = client().get(a.url("/v1/agent/self")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.text().await.unwrap(), "Endpoint is blocked by agent configuration");
    let resp = client().get(a.url("/v1/agent/version")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    a.stop().await;
}

#[tokio::test]
async fn root_redirects_to_ui_when_enabled() {
    let mut config = test_config();
    config.ui_config.enabled = true;
    let a = InProcessAgent::start(config).await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirect.get(a.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], "/ui/");
    a.stop().await;
    let mut config = test_config();
    config.ui_config.enabled = false;
    let a = InProcessAgent::start(config).await;
    let resp = no_redirect.get(a.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Consul's text, so the operator knows what answered.
    assert_eq!(
        resp.text().await.unwrap(),
        "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart."
    );
    a.stop().await;
}

#[tokio::test]
async fn agent_members_shows_this_agent() {
    let mut config = test_config();
    config.ports.serf_lan = 0;
    let a = InProcessAgent::start(config).await;
    let gossip_port = a.agent.shared().gossip.get().expect("gossip runs").local_addr().port();
    let v: Value = client().get(a.url("/v1/agent/members?segment=_all")).send().await.unwrap().json().await.unwrap();
    let members = v.as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["Name"], "test-node");
    assert_eq!(members[0]["Port"], gossip_port);
    assert_eq!(members[0]["Status"], 1);
    let wan: Value = client().get(a.url("/v1/agent/members?wan")).send().await.unwrap().json().await.unwrap();
    assert_eq!(wan[0]["Name"], "test-node.dc1");
    a.stop().await;
}

#[tokio::test]
async fn reload_without_sources_is_a_500() {
    let a = InProcessAgent::start(test_config()).await;
    let resp = client().put(a.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.text().await.unwrap().contains("no sources to reload"));
    a.stop().await;
}

fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|m| m["Name"] == name)
}

#[tokio::test]
async fn metrics_show_durable_raft_writes_and_request_timings() {
    let mut config = test_config();
    config.telemetry.prometheus_retention_time = legate_core::config::GoDuration::from_secs(60);
    config.telemetry.disable_hostname = true;
    let dir = tempfile::tempdir().unwrap();
    config.data_dir = Some(dir.path().to_path_buf());
    let a = InProcessAgent::start(config).await;
    let c = client();
    legate_tests::retry_until(std::time::Duration::from_secs(10), "leader", || async {
        let l: String = c.get(a.url("/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.is_empty()).then_some(())
    })
    .await;
    for i in 0..3 {
        let r = c.put(a.url(&format!("/v1/kv/m/{i}"))).body("v").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let m: Value = c.get(a.url("/v1/agent/metrics")).send().await.unwrap().json().await.unwrap();
    assert!(m["Timestamp"].as_str().unwrap().ends_with("+0000 UTC"), "{m}");
    let g = &m["Gauges"];
    let fsyncs = find(g, "consul.raft.log.fsyncs").expect("fsync gauge")["Value"].as_f64().unwrap();
    let entries = find(g, "consul.raft.log.entries").expect("entries gauge")["Value"].as_f64().unwrap();
    assert!(fsyncs >= 3.0 && entries >= 3.0, "{g}");
    assert_eq!(find(g, "consul.server.isLeader").unwrap()["Value"], 1.0);
    let kvs = find(&m["Samples"], "consul.kvs.apply").expect("kvs.apply sample");
    // At least ours (the registry is per process: under `cargo test` other tests add to it).
    assert!(kvs["Count"].as_u64().unwrap() >= 3, "{kvs}");
    assert!(kvs["Min"].as_f64().unwrap() > 0.0 && kvs["Max"].as_f64().unwrap() >= kvs["Mean"].as_f64().unwrap());
    let http = m["Samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "consul.api.http" && s["Labels"]["method"] == "PUT")
        .expect("api.http sample for PUT");
    assert_eq!(http["Labels"]["path"].as_str(), Some("v1_kv_"));
    assert!(http["Count"].as_u64().unwrap() >= 3, "{http}");
    assert!(find(&m["Counters"], "consul.raft.apply").unwrap()["Count"].as_u64().unwrap() >= 3);

    let r = c.get(a.url("/v1/agent/metrics?format=prometheus")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE consul_raft_log_fsyncs gauge"), "{text}");
    let put_count: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("consul_api_http_count{method=\"PUT\",path=\"v1_kv_\"} "))
        .expect("PUT count line")
        .parse()
        .unwrap();
    assert!(put_count >= 3.0, "{text}");
    a.stop().await;
}

#[tokio::test]
async fn prometheus_metrics_empty_when_retention_is_off() {
    let a = InProcessAgent::start(test_config()).await;
    let r = client().get(a.url("/v1/agent/metrics?format=prometheus")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-consul-reason"], "Prometheus is not enabled since its retention time is not positive");
    assert_eq!(r.text().await.unwrap(), "");
    let r = client().get(a.url("/v1/agent/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    a.stop().await;
}

#[tokio::test]
async fn user_events_fire_list_filters_and_blocking() {
    let a = InProcessAgent::start(test_config()).await;
    let c = client();
    let r = c.put(a.url("/v1/event/fire/_reserved")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.put(a.url("/v1/event/fire/x?tag=a")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Cannot provide tag filter without service filter.");
    let (_, h) = {
        let r = c.get(a.url("/v1/event/list")).send().await.unwrap();
        let h = r.headers()["x-consul-index"].to_str().unwrap().to_string();
        (r.json::<Value>().await.unwrap(), h)
    };
    // A blocked list returns when an event arrives.
    let url = a.url(&format!("/v1/event/list?index={h}&wait=10s"));
    let c2 = c.clone();
    let before = a.blocked_queries();
    let blocked = tokio::spawn(async move { c2.get(url).send().await.unwrap().json::<Value>().await.unwrap() });
    a.until_blocked(before, 1).await;
    assert!(!blocked.is_finished(), "blocks until an event arrives");
    let fired: Value =
        c.put(a.url("/v1/event/fire/deploy")).body("payload").send().await.unwrap().json().await.unwrap();
    assert_eq!((fired["Version"].as_u64(), fired["LTime"].as_u64()), (Some(1), Some(0)));
    let listed = tokio::time::timeout(std::time::Duration::from_secs(5), blocked).await.unwrap().unwrap();
    assert_eq!(listed[0]["ID"], fired["ID"]);
    assert_eq!(listed[0]["Payload"], "cGF5bG9hZA==");
    // A node filter that does not match this agent: fired, but not listed here.
    c.put(a.url("/v1/event/fire/other?node=^nomatch$")).send().await.unwrap();
    let all: Value = c.get(a.url("/v1/event/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1);
    let none: Value = c.get(a.url("/v1/event/list?name=other")).send().await.unwrap().json().await.unwrap();
    assert_eq!(none, serde_json::json!([]));
    a.stop().await;
}

/// `limits.http_max_conns_per_client` (Consul's default 200): the next connection from that IP
/// is closed as soon as it is accepted, while another client IP is served; a closed connection
/// gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_ip_are_limited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = InProcessAgent::start(test_config()).await;
    let addr: std::net::SocketAddr = a.base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(a.agent.shared().config().limits.http_max_conns_per_client, 200);
    let from = |ip: &str| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        s
    };
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(from("127.0.0.1").connect(addr).await.unwrap());
    }
    // Each is served (the last one proves the 200 were all accepted before the 201st).
    let get = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
    let last = held.last_mut().unwrap();
    last.write_all(get).await.unwrap();
    let mut buf = [0u8; 12];
    last.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut extra = from("127.0.0.1").connect(addr).await.unwrap();
    let _ = extra.write_all(get).await;
    let mut out = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut out)).await.expect("closed, not hung");
    assert!(read.is_err() || out.is_empty(), "the 201st connection was served: {:?}", String::from_utf8_lossy(&out));
    // Another client IP is served meanwhile.
    let mut other = from("127.0.0.2").connect(addr).await.unwrap();
    other.write_all(get).await.unwrap();
    other.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    // Closing one gives its place back.
    drop(held.pop());
    retry_until(Duration::from_secs(5), "a new connection served after one closed", || async {
        let mut c = from("127.0.0.1").connect(addr).await.ok()?;
        c.write_all(get).await.ok()?;
        let mut buf = [0u8; 12];
        c.read_exact(&mut buf).await.ok()?;
        (&buf == b"HTTP/1.1 200").then_some(())
    })
    .await;
    drop(held);
    a.stop().await;
}

#[tokio::test]
async fn release_raft_configuration_and_keyring_answer_as_consul() {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let c = client();
    let put = |path: &str| c.put(a.url(path)).body("v").send();
    // ?release= never validates the session: a missing key or a lock not held is `false`.
    let r = put("/v1/kv/rel/missing?release=00000000-0000-0000-0000-000000000000").await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap().trim().to_string()), (200, "false".to_string()));
    let session: Value = c.put(a.url("/v1/session/create")).send().await.unwrap().json().await.unwrap();
    let id = session["ID"].as_str().unwrap();
    let r = put(&format!("/v1/kv/rel/held?acquire={id}")).await.unwrap();
    assert_eq!(r.text().await.unwrap().trim().to_string(), "true".to_string());
    let r = put("/v1/kv/rel/held?release=11111111-1111-1111-1111-111111111111").await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap().trim().to_string()), (200, "false".to_string()));
    let r = put(&format!("/v1/kv/rel/held?release={id}")).await.unwrap();
    assert_eq!(r.text().await.unwrap().trim().to_string(), "true".to_string());

    let v: Value = c.get(a.url("/v1/operator/raft/configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["Index"], 0);
    assert_eq!(v["Servers"].as_array().unwrap().len(), 1);
    a.stop().await;
}

#[tokio::test]
async fn keyring_without_gossip_encryption_is_an_error() {
    let mut config = test_config();
    config.ports.serf_lan = 0;
    let a = InProcessAgent::start(config).await;
    let r = client().get(a.url("/v1/operator/keyring")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(text.contains("Keyring is empty (encryption not enabled)"), "{text}");
    a.stop().await;
}

#[tokio::test]
async fn transfer_leader_needs_another_voter() {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let r = client().post(a.url("/v1/operator/raft/transfer-leader")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "cannot find peer to transfer leadership to");
    let r = client().post(a.url("/v1/operator/raft/transfer-leader?id=nosuch")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap().as_str()), (500, "cannot find peer nosuch"));
    let r = client().get(a.url("/v1/operator/raft/transfer-leader")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    a.stop().await;
}

#[tokio::test]
async fn catalog_writes_for_another_datacenter_never_apply_here_and_peers_are_empty() {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let c = client();
    let reg = serde_json::json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "dcweb"}});
    let r = c.put(a.url("/v1/catalog/register")).json(&reg).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A deregistration addressed to another datacenter does not delete the local node.
    let dereg = serde_json::json!({"Node": "n1", "Datacenter": "elsewhere"});
    let r = c.put(a.url("/v1/catalog/deregister")).json(&dereg).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (500, "No path to datacenter".to_string()));
    let mut other = reg.clone();
    other["Datacenter"] = "elsewhere".into();
    other["Node"] = "n2".into();
    let r = c.put(a.url("/v1/catalog/register")).json(&other).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let nodes: Value = c.get(a.url("/v1/catalog/nodes")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = nodes.as_array().unwrap().iter().filter_map(|n| n["Node"].as_str()).collect();
    assert!(names.contains(&"n1") && !names.contains(&"n2"), "{names:?}");
    // Naming this datacenter is fine.
    let mut here = reg.clone();
    here["Datacenter"] = "dc1".into();
    assert_eq!(c.put(a.url("/v1/catalog/register")).json(&here).send().await.unwrap().status(), 200);

    // ?peer=: no peerings, no instances, but an index to block on.
    for path in ["/v1/catalog/service/dcweb", "/v1/health/service/dcweb", "/v1/health/checks/dcweb"] {
        let r = c.get(a.url(&format!("{path}?peer=other"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().contains_key("x-consul-index"), "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v, serde_json::json!([]), "{path}");
    }
    let v: Value = c.get(a.url("/v1/catalog/service/dcweb")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    a.stop().await;
}

#[tokio::test]
async fn autopilot_configuration_health_and_usage() {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let c = client();
    let url = a.url("/v1/operator/autopilot/configuration");
    // Until an operator sets it, the config file's block (Consul's defaults).
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["CleanupDeadServers"], true);
    assert_eq!(v["LastContactThreshold"], "200ms");
    assert_eq!(v["MaxTrailingLogs"], 250);
    assert_eq!(v["ServerStabilizationTime"], "10s");
    assert_eq!(v["ModifyIndex"], 0);

    let set = |body: Value, cas: Option<u64>| {
        let u = match cas {
            Some(i) => format!("{url}?cas={i}"),
            None => url.clone(),
        };
        c.put(u).json(&body).send()
    };
    let body = serde_json::json!({"CleanupDeadServers": false, "LastContactThreshold": "1s", "MaxTrailingLogs": 100,
        "MinQuorum": 3, "ServerStabilizationTime": "30s"});
    let r = set(body.clone(), Some(0)).await.unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "true");
    let r = set(body.clone(), Some(0)).await.unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "false", "a stale cas does not write");
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["CleanupDeadServers"], false);
    assert_eq!(v["LastContactThreshold"], "1s");
    assert_eq!((v["MaxTrailingLogs"].clone(), v["MinQuorum"].clone()), (100.into(), 3.into()));
    let index = v["ModifyIndex"].as_u64().unwrap();
    assert!(index > 0);
    let r = set(serde_json::json!({"CleanupDeadServers": true}), Some(index)).await.unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "true");
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!((v["CleanupDeadServers"].clone(), v["MaxTrailingLogs"].clone()), (true.into(), 0.into()));
    let r = c.put(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.put(format!("{url}?cas=soon")).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (400, "Error parsing cas value: \"soon\"".to_string()));
    let r = c.put(&url).json(&serde_json::json!({"LastContactThreshold": "soon"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Durations as numbers are nanoseconds, as Consul reads them.
    let r = set(serde_json::json!({"LastContactThreshold": 300_000_000u64, "ServerStabilizationTime": 0}), None)
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "true");
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (v["LastContactThreshold"].clone(), v["ServerStabilizationTime"].clone()),
        ("300ms".into(), "0s".into())
    );

    let r = c.get(a.url("/v1/operator/autopilot/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!((h["Healthy"].clone(), h["FailureTolerance"].clone()), (true.into(), 0.into()));
    assert_eq!(h["Servers"][0]["Leader"], true);
    assert_eq!(h["Servers"][0]["LastContact"], "0s");

    c.put(a.url("/v1/agent/service/register")).json(&serde_json::json!({"Name": "u1"})).send().await.unwrap();
    let u: Value = c.get(a.url("/v1/operator/usage")).send().await.unwrap().json().await.unwrap();
    let dc = &u["Usage"]["dc1"];
    assert_eq!((dc["Nodes"].clone(), dc["Services"].clone()), (1.into(), 2.into()), "{u}");
    assert_eq!(dc["BillableServiceInstances"], 1, "{u}");
    a.stop().await;
}

/// `/v1/agent/monitor` streams log lines at the asked level, whatever the agent's own.
#[tokio::test]
async fn monitor_streams_log_lines_at_its_level() {
    let a = legate_tests::AgentProcess::start(
        &["agent", "-dev", "-log-level=warn", "-http-port=0", "-dns-port=-1", "-serf-lan-port=0", "-server-port=0"],
        &[],
    );
    let base = a.url("");
    let base = base.trim_end_matches('/').to_string();
    legate_tests::wait_leader(&base).await;
    let c = client();
    let r = c.get(format!("{base}/v1/agent/monitor?loglevel=nonsense")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap()), (400, "Unknown log level: nonsense".to_string()));
    let r = c.get(format!("{base}/v1/agent/monitor?loglevel=off")).send().await.unwrap();
    assert_eq!(r.status(), 400, "a monitor of nothing is refused");

    let mut r = c.get(format!("{base}/v1/agent/monitor?loglevel=debug")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A reload logs at info (below the agent's warn level): the monitor sees it.
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let _ = c.put(format!("{base}/v1/agent/reload")).send().await;
            match tokio::time::timeout(Duration::from_millis(500), r.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                    if seen.contains("INFO") || seen.contains("DEBUG") {
                        return true;
                    }
                }
                Ok(_) => return false,
                Err(_) => {}
            }
        }
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    assert!(!a.output().contains(" INFO "), "the agent's own log stays at warn: {}", a.output());
    // ?logjson: hclog's JSON lines.
    let mut r = c.get(format!("{base}/v1/agent/monitor?loglevel=debug&logjson")).send().await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let _ = c.get(format!("{base}/v1/agent/self")).send().await;
            if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(500), r.chunk()).await {
                let text = String::from_utf8_lossy(&chunk).into_owned();
                if let Some(l) = text.lines().find(|l| l.contains("Request finished")) {
                    return l.to_string();
                }
            }
        }
    })
    .await
    .expect("a JSON line");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((v["@level"].as_str(), v["@module"].as_str()), (Some("debug"), Some("agent.http")), "{line}");
    assert_eq!(v["@message"], "Request finished");
    assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
}

#[tokio::test]
async fn agent_host_reports_memory_cpu_host_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.data_dir = Some(dir.path().to_path_buf());
    let a = InProcessAgent::start(config).await;
    let v: Value = client().get(a.url("/v1/agent/host")).send().await.unwrap().json().await.unwrap();
    assert!(v["Errors"].is_null(), "{v}");
    assert!(v["Memory"]["total"].as_u64().unwrap() > 0, "{v}");
    assert!(v["CPU"][0]["modelName"].is_string(), "{v}");
    assert_eq!(v["Host"]["os"], "linux");
    assert!(v["Host"]["uptime"].as_u64().unwrap() > 0);
    assert_eq!(v["Disk"]["path"], dir.path().display().to_string());
    assert!(v["Disk"]["total"].as_u64().unwrap() > 0);
    assert!(v["CollectionTime"].as_u64().unwrap() > 0);
    a.stop().await;
}
