//! The agent's own endpoints as Consul clients rely on them: changes are in the catalog when
//! the call answers (on a server and through a client agent), durations given as JSON numbers
//! are nanoseconds, checks name services that exist.

use std::time::Duration;

use legate_tests::{retry_until, test_config, InProcessAgent};
use reqwest::Client;
use serde_json::{json, Value};

async fn call(c: &Client, method: &str, url: String, body: Option<Value>) -> (u16, String) {
    let mut r = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn json_of(c: &Client, url: String) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// The catalog's instances of `service` and their checks' statuses, read from `server`.
async fn catalog_view(c: &Client, server: &InProcessAgent, service: &str) -> (usize, Vec<String>) {
    let v = json_of(c, server.url(&format!("/v1/health/service/{service}"))).await;
    let list = v.as_array().cloned().unwrap_or_default();
    let statuses = list
        .iter()
        .flat_map(|e| e["Checks"].as_array().cloned().unwrap_or_default())
        .filter(|ch| ch["ServiceName"] == service)
        .map(|ch| ch["Status"].as_str().unwrap_or_default().to_string())
        .collect();
    (list.len(), statuses)
}

/// Registers, updates and removes through `agent`; after each 200, `server`'s catalog already
/// shows the change (no waiting: the call pushed it).
async fn changes_are_in_the_catalog_when_the_call_answers(c: &Client, agent: &InProcessAgent, server: &InProcessAgent) {
    let svc =
        json!({"Name": "syncweb", "ID": "syncweb-1", "Port": 80, "Check": {"TTL": "60s", "CheckID": "syncweb-ttl"}});
    assert_eq!(call(c, "PUT", agent.url("/v1/agent/service/register"), Some(svc)).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await, (1, vec!["critical".to_string()]));

    assert_eq!(call(c, "PUT", agent.url("/v1/agent/check/pass/syncweb-ttl"), None).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await, (1, vec!["passing".to_string()]));
    assert_eq!(call(c, "PUT", agent.url("/v1/agent/check/warn/syncweb-ttl?note=slow"), None).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await, (1, vec!["warning".to_string()]));
    let update = json!({"Status": "critical", "Output": "down"});
    assert_eq!(call(c, "PUT", agent.url("/v1/agent/check/update/syncweb-ttl"), Some(update)).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await, (1, vec!["critical".to_string()]));

    let extra = json!({"Name": "extra", "CheckID": "syncweb-extra", "ServiceID": "syncweb-1", "TTL": "60s", "Status": "passing"});
    assert_eq!(call(c, "PUT", agent.url("/v1/agent/check/register"), Some(extra)).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await.1.len(), 2);
    assert_eq!(call(c, "PUT", agent.url("/v1/agent/check/deregister/syncweb-extra"), None).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await.1.len(), 1);

    assert_eq!(call(c, "PUT", agent.url("/v1/agent/service/maintenance/syncweb-1?enable=true"), None).await.0, 200);
    let v = json_of(c, server.url("/v1/health/checks/syncweb")).await;
    assert!(v.to_string().contains("_service_maintenance:syncweb-1"), "{v}");

    assert_eq!(call(c, "PUT", agent.url("/v1/agent/service/deregister/syncweb-1"), None).await.0, 200);
    assert_eq!(catalog_view(c, server, "syncweb").await, (0, vec![]));
    let v = json_of(c, server.url("/v1/catalog/service/syncweb")).await;
    assert_eq!(v, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_writes_reach_the_catalog_before_they_answer() {
    let c = Client::new();
    let mut sc = test_config();
    sc.ports.serf_lan = 0;
    let server = InProcessAgent::start(sc).await;
    legate_tests::wait_leader(&server.base).await;
    changes_are_in_the_catalog_when_the_call_answers(&c, &server, &server).await;

    // Through a client agent: its writes reach the catalog through a server before the 200.
    let mut cc = test_config();
    cc.server = false;
    cc.bootstrap = false;
    cc.ports.server = -1;
    cc.ports.serf_lan = 0;
    cc.node_name = Some("client-node".into());
    let client = InProcessAgent::start(cc).await;
    let serf = server.agent.shared().gossip.get().expect("server gossip").local_addr().to_string();
    assert_eq!(call(&c, "PUT", client.url(&format!("/v1/agent/join/{serf}")), None).await.0, 200);
    retry_until(Duration::from_secs(20), "the client knows the server", || async {
        let (s, _) = call(&c, "GET", client.url("/v1/status/leader"), None).await;
        (s == 200 && !client.agent.shared().known_servers().is_empty()).then_some(())
    })
    .await;
    changes_are_in_the_catalog_when_the_call_answers(&c, &client, &server).await;
    client.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_durations_are_nanoseconds_and_checks_need_their_service() {
    let c = Client::new();
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    // 10 (ns) is a valid interval, raised to the 1 s minimum when it runs; 2e9 ns is 2 s.
    let body =
        json!({"Name": "numdur", "Port": 1, "Check": {"TCP": "127.0.0.1:1", "Interval": 10, "Timeout": 2000000000u64}});
    let (s, text) = call(&c, "PUT", a.url("/v1/agent/service/register"), Some(body)).await;
    assert_eq!(s, 200, "{text}");
    let checks = json_of(&c, a.url("/v1/agent/checks")).await;
    let check = checks.as_object().unwrap().values().find(|ch| ch["ServiceName"] == "numdur").expect("check").clone();
    assert_eq!(check["Type"], "tcp", "{check}");
    // The probe runs (every second at least): the closed port makes it critical with its output.
    retry_until(Duration::from_secs(10), "the tcp check ran", || async {
        let checks = json_of(&c, a.url("/v1/agent/checks")).await;
        let out =
            checks.as_object()?.values().find(|ch| ch["ServiceName"] == "numdur")?["Output"].as_str()?.to_string();
        (!out.is_empty()).then_some(())
    })
    .await;
    // A string duration without a unit stays an error, as Go's parser says.
    let bad = json!({"Name": "baddur", "Check": {"TCP": "127.0.0.1:1", "Interval": "10"}});
    let (s, text) = call(&c, "PUT", a.url("/v1/agent/service/register"), Some(bad)).await;
    assert_eq!(s, 400, "{text}");

    // A check naming a service this agent does not have.
    let orphan = json!({"Name": "orphan", "ServiceID": "nope", "TTL": "10s"});
    let (s, text) = call(&c, "PUT", a.url("/v1/agent/check/register"), Some(orphan)).await;
    assert_eq!((s, text.as_str()), (404, "ServiceID \"nope\" does not exist"));
    a.stop().await;
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

const NODE: &[&str] = &["ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex", "ModifyIndex"];
const AGENT_SERVICE: &[&str] =
    &["ID", "Service", "Tags", "Meta", "Port", "Address", "Weights", "EnableTagOverride", "Datacenter"];
const NODE_SERVICE: &[&str] = &[
    "ID",
    "Service",
    "Tags",
    "Address",
    "Meta",
    "Port",
    "Weights",
    "EnableTagOverride",
    "Proxy",
    "Connect",
    "PeerName",
    "CreateIndex",
    "ModifyIndex",
];
const SERVICE_NODE: &[&str] = &[
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "ServiceKind",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "ServiceAddress",
    "ServiceWeights",
    "ServiceMeta",
    "ServicePort",
    "ServiceSocketPath",
    "ServiceEnableTagOverride",
    "ServiceProxy",
    "ServiceConnect",
    "ServiceLocality",
    "CreateIndex",
    "ModifyIndex",
];
const HEALTH_CHECK: &[&str] = &[
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "ExposedPort",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
];
const MEMBER: &[&str] = &[
    "Name",
    "Addr",
    "Port",
    "Tags",
    "Status",
    "ProtocolMin",
    "ProtocolMax",
    "ProtocolCur",
    "DelegateMin",
    "DelegateMax",
    "DelegateCur",
];

/// Every agent, catalog and health endpoint answers with exactly Consul's keys (§2.11 of the
/// reference): nothing missing, nothing extra (no empty Proxy/Connect/PeerName on the agent's
/// services, no empty fields in a check's Definition).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_shapes_have_exactly_consuls_keys() {
    let c = Client::new();
    let mut config = test_config();
    config.ports.serf_lan = 0;
    let a = InProcessAgent::start(config).await;
    legate_tests::wait_leader(&a.base).await;
    let svc = json!({"Name": "shape", "Port": 80, "Check": {"HTTP": "http://127.0.0.1:1/", "Interval": "10s"}});
    assert_eq!(call(&c, "PUT", a.url("/v1/agent/service/register"), Some(svc)).await.0, 200);
    let node = "test-node";

    let services = json_of(&c, a.url("/v1/agent/services")).await;
    assert_eq!(keys(&services["shape"]), sorted(AGENT_SERVICE));
    let one = json_of(&c, a.url("/v1/agent/service/shape")).await;
    assert_eq!(keys(&one), sorted(&[AGENT_SERVICE, &["ContentHash"]].concat()));
    let checks = json_of(&c, a.url("/v1/agent/checks")).await;
    let check = &checks["service:shape"];
    assert_eq!(keys(check), sorted(HEALTH_CHECK));
    assert_eq!(check["Definition"], json!({"HTTP": "http://127.0.0.1:1/", "Interval": "10s"}));
    let members = json_of(&c, a.url("/v1/agent/members")).await;
    assert_eq!(keys(&members[0]), sorted(MEMBER));

    let nodes = json_of(&c, a.url("/v1/catalog/nodes")).await;
    assert_eq!(keys(&nodes[0]), sorted(NODE));
    let instances = json_of(&c, a.url("/v1/catalog/service/shape")).await;
    assert_eq!(keys(&instances[0]), sorted(SERVICE_NODE));
    let n = json_of(&c, a.url(&format!("/v1/catalog/node/{node}"))).await;
    assert_eq!(keys(&n), sorted(&["Node", "Services"]));
    assert_eq!(keys(&n["Node"]), sorted(NODE));
    assert_eq!(keys(&n["Services"]["shape"]), sorted(NODE_SERVICE));
    let ns = json_of(&c, a.url(&format!("/v1/catalog/node-services/{node}"))).await;
    assert_eq!(keys(&ns), sorted(&["Node", "Services"]));
    let shape = ns["Services"].as_array().unwrap().iter().find(|s| s["ID"] == "shape").unwrap().clone();
    assert_eq!(keys(&shape), sorted(NODE_SERVICE));

    let entries = json_of(&c, a.url("/v1/health/service/shape")).await;
    assert_eq!(keys(&entries[0]), sorted(&["Node", "Service", "Checks"]));
    assert_eq!(keys(&entries[0]["Node"]), sorted(NODE));
    assert_eq!(keys(&entries[0]["Service"]), sorted(NODE_SERVICE));
    for ch in entries[0]["Checks"].as_array().unwrap() {
        assert_eq!(keys(ch), sorted(HEALTH_CHECK), "{ch}");
    }
    for path in [format!("/v1/health/node/{node}"), "/v1/health/checks/shape".into(), "/v1/health/state/any".into()] {
        let list = json_of(&c, a.url(&path)).await;
        assert!(!list.as_array().unwrap().is_empty(), "{path}");
        for ch in list.as_array().unwrap() {
            assert_eq!(keys(ch), sorted(HEALTH_CHECK), "{path}: {ch}");
        }
    }
    // serfHealth has no definition at all.
    let serf = json_of(&c, a.url(&format!("/v1/health/node/{node}"))).await;
    let serf = serf.as_array().unwrap().iter().find(|ch| ch["CheckID"] == "serfHealth").unwrap().clone();
    assert_eq!(serf["Definition"], json!({}));

    // A Locality given at registration is kept and shown (lower-case keys decode too).
    let svc = json!({"Name": "placed", "Port": 81, "locality": {"region": "eu-west-1", "Zone": "eu-west-1a"}});
    assert_eq!(call(&c, "PUT", a.url("/v1/agent/service/register"), Some(svc)).await.0, 200);
    let placed = json_of(&c, a.url("/v1/agent/service/placed")).await;
    assert_eq!(placed["Locality"], json!({"Region": "eu-west-1", "Zone": "eu-west-1a"}));
    assert_eq!(keys(&placed), sorted(&[AGENT_SERVICE, &["ContentHash", "Locality"]].concat()));
    let services = json_of(&c, a.url("/v1/agent/services")).await;
    assert_eq!(services["placed"]["Locality"]["Region"], "eu-west-1");
    assert!(services["shape"].get("Locality").is_none());
    a.stop().await;
}

/// `?hash=` makes `/v1/agent/service/<id>` a blocking query on the service's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_hash_blocks_until_the_service_changes() {
    let c = Client::new();
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let reg = |tags: Value| json!({"Name": "hashed", "Port": 80, "Tags": tags});
    assert_eq!(call(&c, "PUT", a.url("/v1/agent/service/register"), Some(reg(json!(["v1"])))).await.0, 200);
    let first = json_of(&c, a.url("/v1/agent/service/hashed")).await;
    let hash = first["ContentHash"].as_str().unwrap().to_string();

    // Unchanged: the query waits its whole wait, then the same content comes back.
    let asked = std::time::Instant::now();
    let same = json_of(&c, a.url(&format!("/v1/agent/service/hashed?hash={hash}&wait=1s"))).await;
    assert!(asked.elapsed() >= Duration::from_secs(1), "answered before its wait: the hash was ignored");
    assert_eq!(same["ContentHash"], hash.as_str());

    // A change wakes the waiting query with the new content.
    let url = a.url(&format!("/v1/agent/service/hashed?hash={hash}&wait=30s"));
    let waiting = tokio::spawn({
        let c = c.clone();
        async move { json_of(&c, url).await }
    });
    assert_eq!(call(&c, "PUT", a.url("/v1/agent/service/register"), Some(reg(json!(["v2"])))).await.0, 200);
    let changed = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("woken").unwrap();
    assert_eq!(changed["Tags"], json!(["v2"]));
    assert_ne!(changed["ContentHash"], hash.as_str());
    a.stop().await;
}

/// `?enable=` is parsed as Go's strconv.ParseBool (python-consul sends `True`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_enable_takes_go_booleans() {
    let c = Client::new();
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    for (value, on) in [("True", true), ("False", false), ("1", true), ("f", false), ("TRUE", true), ("false", false)] {
        let (s, text) = call(&c, "PUT", a.url(&format!("/v1/agent/maintenance?enable={value}")), None).await;
        assert_eq!(s, 200, "{value}: {text}");
        let checks = json_of(&c, a.url("/v1/agent/checks")).await;
        assert_eq!(checks.get("_node_maintenance").is_some(), on, "{value}");
    }
    let (s, text) = call(&c, "PUT", a.url("/v1/agent/maintenance?enable=yes"), None).await;
    assert_eq!((s, text.as_str()), (400, "Invalid value for enable: \"yes\""));
    a.stop().await;
}
