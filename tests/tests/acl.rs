//! ACLs: every route of the route table with no token, a token without rights and a token with
//! rights under `default_policy = deny`; the modern and legacy token APIs; persistence across a
//! restart.

use std::collections::HashMap;
use std::time::Duration;

use legate_core::acl::Access;
use legate_core::http::routes::{Need, ROUTES};
use legate_tests::{retry_until, test_config, InProcessAgent};
use reqwest::{Client, Method};
use serde_json::{json, Value};

const GOSSIP_KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const SECOND_KEY: &str = "HS5lJ+XuTlYKWaeGYyG+/A==";
pub(crate) const MGMT: &str = "5a1b5b7e-0a3f-4e47-9a43-2c4e1c0a9f01";

/// A network coordinate at the origin, as `PUT /v1/coordinate/update` takes it.
fn origin() -> Value {
    json!({"Vec": vec![0.0; 8], "Error": 1.5, "Adjustment": 0.0, "Height": 1.0e-5})
}

pub(crate) fn acl_config() -> legate_core::Config {
    let mut c = test_config();
    c.acl.enabled = true;
    c.acl.default_policy = "deny".into();
    c.acl.tokens.initial_management = Some(MGMT.into());
    c.ports.serf_lan = 0;
    c
}

pub(crate) struct Api {
    pub(crate) c: Client,
    pub(crate) base: String,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.c.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        if status == 200 && path.starts_with("/v1/agent/monitor") {
            // A monitor streams until the client leaves: its status is the answer.
            return (status, String::new());
        }
        (status, resp.text().await.unwrap())
    }

    /// A call with raw bytes as the body (a plugin push).
    pub(crate) async fn call_raw(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.c.request(m, format!("{}{path}", self.base)).body(body.to_vec());
        if let Some(t) = token {
            r = r.header("X-Consul-Token", t);
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub(crate) async fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (s, text) = self.call(method, path, Some(MGMT), body).await;
        assert!(s < 300, "{method} {path}: {s} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

pub(crate) async fn start(config: legate_core::Config) -> (InProcessAgent, Api) {
    let a = InProcessAgent::start(config).await;
    ready(a).await
}

/// An ACL agent started from a config file (so `/v1/agent/reload` has something to reload).
async fn start_from_file(dir: &std::path::Path, default_policy: &str) -> (InProcessAgent, Api) {
    let file = dir.join("agent.json");
    let body = json!({
        "server": true, "bootstrap": true, "bind_addr": "127.0.0.1", "client_addr": "127.0.0.1",
        "node_name": "test-node", "ports": {"http": 0, "dns": -1, "server": 0, "serf_lan": 0, "serf_wan": -1},
        "acl": {"enabled": true, "default_policy": default_policy, "tokens": {"initial_management": MGMT}},
        "encrypt": GOSSIP_KEY,
    });
    std::fs::write(&file, body.to_string()).unwrap();
    let opts = legate_core::config::load::LoadOptions { sources: vec![file], dev: true, ..Default::default() };
    let agent = legate_core::Agent::start_with_sources(opts, tokio_util::sync::CancellationToken::new()).await.unwrap();
    let base = format!("http://{}", agent.http_addrs()[0]);
    ready(InProcessAgent { agent, base }).await
}

async fn ready(a: InProcessAgent) -> (InProcessAgent, Api) {
    let api = Api { c: Client::new(), base: a.base.clone() };
    // The leader writes the management token; the node's serfHealth must be in the catalog.
    retry_until(Duration::from_secs(20), "node registered and readable with the management token", || async {
        let (s, body) = api.call("GET", "/v1/health/node/test-node", Some(MGMT), None).await;
        (s == 200 && body.contains("serfHealth")).then_some(())
    })
    .await;
    (a, api)
}

const FULL_RULES: &str = r#"
key_prefix "" { policy = "write" }
service_prefix "" { policy = "write" }
node_prefix "" { policy = "write" }
session_prefix "" { policy = "write" }
event_prefix "" { policy = "write" }
agent_prefix "" { policy = "write" }
query_prefix "" { policy = "write" }
plugin_prefix "" { policy = "write" }
operator = "write"
keyring = "write"
acl = "write"
"#;

/// One request per route: the path with its wildcards filled and a body.
struct Case {
    path: String,
    body: Option<Value>,
    /// For filtered lists: text the list shows with rights and hides without.
    marker: Option<&'static str>,
}

fn case(path: impl Into<String>, body: Option<Value>) -> Case {
    Case { path: path.into(), body, marker: None }
}

/// What every route's case needs, written with the management token: the cases by (method,
/// pattern), a token with every right and one with none, a snapshot to restore, a client
/// agent to join and force-leave, and a plugin component to push.
struct RouteFixtures {
    cases: HashMap<(&'static str, &'static str), Case>,
    rights: String,
    none: String,
    snapshot: Vec<u8>,
    peer: InProcessAgent,
    plugin: Vec<u8>,
}

/// Whether a route's case sends the fixture's plugin component as its body.
fn pushes_plugin(method: &str, pattern: &str) -> bool {
    method == "PUT" && pattern == "plugin/+"
}

async fn route_fixtures(api: &Api) -> RouteFixtures {
    api.ok("PUT", "/v1/kv/app/config", Some(&json!("v"))).await;
    api.ok(
        "PUT",
        "/v1/catalog/register",
        Some(&json!({"Node": "ext1", "Address": "10.0.0.9", "Service": {"Service": "websvc", "Port": 80},
            "Check": {"Name": "websvc-alive", "Status": "passing", "ServiceID": "websvc"}})),
    )
    .await;
    api.ok("PUT", "/v1/coordinate/update", Some(&json!({"Node": "ext1", "Coord": origin()}))).await;
    api.ok("PUT", "/v1/agent/service/register", Some(&json!({"Name": "localsvc", "Port": 81}))).await;
    api.ok("PUT", "/v1/agent/service/register", Some(&json!({"Name": "gone", "Port": 82}))).await;
    api.ok("PUT", "/v1/agent/check/register", Some(&json!({"Name": "ttl1", "TTL": "60s"}))).await;
    api.ok("PUT", "/v1/agent/check/register", Some(&json!({"Name": "ttl-gone", "TTL": "60s"}))).await;
    let sess =
        api.ok("PUT", "/v1/session/create", Some(&json!({"Name": "s1"}))).await["ID"].as_str().unwrap().to_string();
    let sess2 =
        api.ok("PUT", "/v1/session/create", Some(&json!({"Name": "s2"}))).await["ID"].as_str().unwrap().to_string();
    api.ok("PUT", "/v1/event/fire/deploy", Some(&json!("x"))).await;
    let full = api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "full", "Rules": FULL_RULES}))).await;
    let full_id = full["ID"].as_str().unwrap().to_string();
    let rights = api
        .ok("PUT", "/v1/acl/token", Some(&json!({"Description": "rights", "Policies": [{"Name": "full"}]})))
        .await["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    let none = api.ok("PUT", "/v1/acl/token", Some(&json!({"Description": "no rights"}))).await["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = api.ok("PUT", "/v1/acl/token", Some(&json!({"Description": "victim"}))).await;
    let victim_id = victim["AccessorID"].as_str().unwrap().to_string();
    let other = api.ok("PUT", "/v1/acl/token", Some(&json!({"Description": "other"}))).await;
    let other_id = other["AccessorID"].as_str().unwrap().to_string();
    let pol2 = api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "p2", "Rules": ""}))).await["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let pol3 = api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "p3", "Rules": ""}))).await["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let role = api.ok("PUT", "/v1/acl/role", Some(&json!({"Name": "r1", "Policies": [{"ID": full_id}]}))).await["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let role2 = api.ok("PUT", "/v1/acl/role", Some(&json!({"Name": "r2"}))).await["ID"].as_str().unwrap().to_string();
    let legacy = api.ok("PUT", "/v1/acl/create", Some(&json!({"Name": "legacy", "Type": "client", "Rules": ""}))).await
        ["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let legacy2 =
        api.ok("PUT", "/v1/acl/create", Some(&json!({"Name": "legacy2"}))).await["ID"].as_str().unwrap().to_string();
    // Prepared queries (before the snapshot too).
    let fixq = api.ok("POST", "/v1/query", Some(&json!({"Name": "fixq", "Service": {"Service": "websvc"}}))).await
        ["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let doomedq =
        api.ok("POST", "/v1/query", Some(&json!({"Name": "doomedq", "Service": {"Service": "websvc"}}))).await["ID"]
            .as_str()
            .unwrap()
            .to_string();
    // Auth methods and binding rules (before the snapshot, which the restore case puts back).
    let signer = crate::acl_login::Signer::new("fixture");
    api.ok("PUT", "/v1/acl/auth-method", Some(&crate::acl_login::static_method("fixture-jwt", &signer))).await;
    api.ok("PUT", "/v1/acl/auth-method", Some(&crate::acl_login::static_method("doomed", &signer))).await;
    let rule_body = json!({"AuthMethod": "fixture-jwt", "BindType": "service", "BindName": "svc-${value.user}"});
    let rule = api.ok("PUT", "/v1/acl/binding-rule", Some(&rule_body)).await["ID"].as_str().unwrap().to_string();
    let rule2 = api.ok("PUT", "/v1/acl/binding-rule", Some(&rule_body)).await["ID"].as_str().unwrap().to_string();
    let jwt = signer.sign(&crate::acl_login::claims("fx", "ops", &[]));
    // Registry plugins (before the snapshot, which the restore case puts back).
    let plugin = crate::plugins::ok_fixture("fx");
    for name in ["fx_plugin", "doomed_plugin"] {
        let (s, text) = api.call_raw("PUT", &format!("/v1/plugin/{name}?version=1"), Some(MGMT), &plugin).await;
        assert_eq!(s, 200, "push {name}: {text}");
    }
    let (_, snapshot) = {
        let r = api.c.get(format!("{}/v1/snapshot", api.base)).header("X-Consul-Token", MGMT).send().await.unwrap();
        assert_eq!(r.status(), 200);
        ((), r.bytes().await.unwrap().to_vec())
    };
    // A client agent to join and force-leave.
    let mut pc = test_config();
    pc.server = false;
    pc.bootstrap = false;
    pc.ports.server = -1;
    pc.ports.serf_lan = 0;
    pc.node_name = Some("peer".into());
    pc.encrypt = Some(GOSSIP_KEY.into());
    let peer = InProcessAgent::start(pc).await;
    let serf_addr = peer.agent.shared().gossip.get().expect("peer gossip").local_addr().to_string();
    let keyring = api.ok("GET", "/v1/operator/keyring", None).await;
    let _ = keyring;

    let mut cases: HashMap<(&str, &str), Case> = HashMap::new();
    let mut add = |m: &'static str, p: &'static str, c: Case| {
        cases.insert((m, p), c);
    };
    add("GET", "agent/self", case("/v1/agent/self", None));
    add("GET", "agent/version", case("/v1/agent/version", None));
    add("GET", "agent/members", Case { path: "/v1/agent/members".into(), body: None, marker: Some("test-node") });
    add("PUT", "agent/leave", case("/v1/agent/leave", None));
    add("PUT", "agent/join/+", case(format!("/v1/agent/join/{serf_addr}"), None));
    add("PUT", "agent/force-leave/+", case("/v1/agent/force-leave/peer", None));
    add("GET", "agent/metrics", case("/v1/agent/metrics", None));
    add("GET", "agent/monitor", case("/v1/agent/monitor?loglevel=warn", None));
    add("GET", "agent/host", case("/v1/agent/host", None));
    add("GET", "agent/plugins", case("/v1/agent/plugins", None));
    add("PUT", "agent/reload", case("/v1/agent/reload", None));
    add("PUT", "agent/maintenance", case("/v1/agent/maintenance?enable=false", None));
    add("PUT", "agent/token/+", case("/v1/agent/token/dns", Some(json!({"Token": "x"}))));
    add("GET", "agent/services", Case { path: "/v1/agent/services".into(), body: None, marker: Some("localsvc") });
    add("PUT", "agent/service/register", case("/v1/agent/service/register", Some(json!({"Name": "newsvc"}))));
    add("PUT", "agent/service/deregister/+", case("/v1/agent/service/deregister/gone", None));
    add("PUT", "agent/service/maintenance/+", case("/v1/agent/service/maintenance/localsvc?enable=false", None));
    add("GET", "agent/service/+", case("/v1/agent/service/localsvc", None));
    add("GET", "agent/checks", Case { path: "/v1/agent/checks".into(), body: None, marker: Some("ttl1") });
    add(
        "PUT",
        "agent/check/register",
        case("/v1/agent/check/register", Some(json!({"Name": "c2", "TTL": "30s", "Status": "passing"}))),
    );
    add("PUT", "agent/check/deregister/+", case("/v1/agent/check/deregister/ttl-gone", None));
    add("PUT", "agent/check/pass/+", case("/v1/agent/check/pass/ttl1", None));
    add("PUT", "agent/check/warn/+", case("/v1/agent/check/warn/ttl1", None));
    add("PUT", "agent/check/fail/+", case("/v1/agent/check/fail/ttl1", None));
    add("PUT", "agent/check/update/+", case("/v1/agent/check/update/ttl1", Some(json!({"Status": "passing"}))));
    add("GET", "agent/health/service/name/+", case("/v1/agent/health/service/name/localsvc", None));
    add("GET", "agent/health/service/id/+", case("/v1/agent/health/service/id/localsvc", None));
    add(
        "PUT",
        "catalog/register",
        case(
            "/v1/catalog/register",
            Some(json!({"Node": "ext2", "Address": "10.0.0.8", "Service": {"Service": "s2"}})),
        ),
    );
    add("PUT", "catalog/deregister", case("/v1/catalog/deregister", Some(json!({"Node": "ext2"}))));
    add("GET", "catalog/datacenters", case("/v1/catalog/datacenters", None));
    add("GET", "catalog/nodes", Case { path: "/v1/catalog/nodes".into(), body: None, marker: Some("ext1") });
    add("GET", "catalog/services", Case { path: "/v1/catalog/services".into(), body: None, marker: Some("websvc") });
    add(
        "GET",
        "catalog/service/+",
        Case { path: "/v1/catalog/service/websvc".into(), body: None, marker: Some("websvc") },
    );
    add("GET", "catalog/node/+", case("/v1/catalog/node/ext1", None));
    add("GET", "coordinate/datacenters", case("/v1/coordinate/datacenters", None));
    add("GET", "coordinate/nodes", Case { path: "/v1/coordinate/nodes".into(), body: None, marker: Some("ext1") });
    add("GET", "coordinate/node/+", case("/v1/coordinate/node/ext1", None));
    add(
        "GET",
        "internal/ui/services",
        Case { path: "/v1/internal/ui/services".into(), body: None, marker: Some("websvc") },
    );
    add("GET", "internal/ui/nodes", Case { path: "/v1/internal/ui/nodes".into(), body: None, marker: Some("ext1") });
    add("GET", "internal/ui/node/+", case("/v1/internal/ui/node/ext1", None));
    add("PUT", "coordinate/update", case("/v1/coordinate/update", Some(json!({"Node": "ext1", "Coord": origin()}))));
    add("GET", "catalog/node-services/+", case("/v1/catalog/node-services/ext1", None));
    add("GET", "health/node/+", case("/v1/health/node/test-node", None));
    add("GET", "health/checks/+", Case { path: "/v1/health/checks/websvc".into(), body: None, marker: Some("websvc") });
    add(
        "GET",
        "health/service/+",
        Case { path: "/v1/health/service/websvc".into(), body: None, marker: Some("websvc") },
    );
    add("GET", "health/state/+", Case { path: "/v1/health/state/any".into(), body: None, marker: Some("serfHealth") });
    add("GET", "kv/*", case("/v1/kv/app/config", None));
    add("PUT", "kv/*", case("/v1/kv/app/other", Some(json!("x"))));
    add("DELETE", "kv/*", case("/v1/kv/app/other", None));
    add("PUT", "txn", case("/v1/txn", Some(json!([{"KV": {"Verb": "get", "Key": "app/config"}}]))));
    add("PUT", "session/create", case("/v1/session/create", Some(json!({"Name": "s3"}))));
    add("PUT", "session/destroy/+", case(format!("/v1/session/destroy/{sess2}"), None));
    add("PUT", "session/renew/+", case(format!("/v1/session/renew/{sess}"), None));
    add("GET", "session/info/+", Case { path: format!("/v1/session/info/{sess}"), body: None, marker: Some("s1") });
    add("GET", "session/node/+", case("/v1/session/node/test-node", None));
    add("GET", "session/list", Case { path: "/v1/session/list".into(), body: None, marker: Some("s1") });
    add("PUT", "event/fire/+", case("/v1/event/fire/deploy", None));
    add("GET", "event/list", Case { path: "/v1/event/list".into(), body: None, marker: Some("deploy") });
    add("GET", "status/leader", case("/v1/status/leader", None));
    add("GET", "status/peers", case("/v1/status/peers", None));
    add("GET", "operator/raft/configuration", case("/v1/operator/raft/configuration", None));
    add("DELETE", "operator/raft/peer", case("/v1/operator/raft/peer?address=10.9.9.9:8300", None));
    add("POST", "operator/raft/transfer-leader", case("/v1/operator/raft/transfer-leader", None));
    add("GET", "operator/autopilot/configuration", case("/v1/operator/autopilot/configuration", None));
    add(
        "PUT",
        "operator/autopilot/configuration",
        case("/v1/operator/autopilot/configuration", Some(json!({"CleanupDeadServers": true, "MaxTrailingLogs": 250}))),
    );
    add("GET", "operator/autopilot/health", case("/v1/operator/autopilot/health", None));
    add("GET", "operator/autopilot/state", case("/v1/operator/autopilot/state", None));
    add("GET", "operator/usage", case("/v1/operator/usage", None));
    add("GET", "operator/keyring", case("/v1/operator/keyring", None));
    add("POST", "operator/keyring", case("/v1/operator/keyring", Some(json!({ "Key": SECOND_KEY }))));
    add("PUT", "operator/keyring", case("/v1/operator/keyring", Some(json!({ "Key": GOSSIP_KEY }))));
    add("DELETE", "operator/keyring", case("/v1/operator/keyring", Some(json!({ "Key": SECOND_KEY }))));
    add("GET", "snapshot", case("/v1/snapshot", None));
    add("PUT", "snapshot", case("/v1/snapshot", None));
    add("PUT", "acl/bootstrap", case("/v1/acl/bootstrap", None));
    add("GET", "acl/replication", case("/v1/acl/replication", None));
    add("GET", "acl/token/self", case("/v1/acl/token/self", None));
    add("PUT", "acl/token", case("/v1/acl/token", Some(json!({"Description": "new"}))));
    add("PUT", "acl/token/+", case(format!("/v1/acl/token/{other_id}"), Some(json!({"Description": "renamed"}))));
    add("GET", "acl/token/+", case(format!("/v1/acl/token/{other_id}"), None));
    add("DELETE", "acl/token/+", case(format!("/v1/acl/token/{victim_id}"), None));
    add("GET", "acl/tokens", case("/v1/acl/tokens", None));
    add("PUT", "acl/policy", case("/v1/acl/policy", Some(json!({"Name": "p9", "Rules": ""}))));
    add("GET", "acl/policy/+", case(format!("/v1/acl/policy/{pol2}"), None));
    add("PUT", "acl/policy/+", case(format!("/v1/acl/policy/{pol2}"), Some(json!({"Name": "p2", "Description": "d"}))));
    add("DELETE", "acl/policy/+", case(format!("/v1/acl/policy/{pol3}"), None));
    add("GET", "acl/policies", case("/v1/acl/policies", None));
    add("PUT", "acl/role", case("/v1/acl/role", Some(json!({"Name": "r9"}))));
    add("GET", "acl/role/+", case(format!("/v1/acl/role/{role}"), None));
    add("PUT", "acl/role/+", case(format!("/v1/acl/role/{role}"), Some(json!({"Name": "r1", "Description": "d"}))));
    add("DELETE", "acl/role/+", case(format!("/v1/acl/role/{role2}"), None));
    add("GET", "acl/roles", case("/v1/acl/roles", None));
    add("PUT", "acl/create", case("/v1/acl/create", Some(json!({"Name": "l3"}))));
    add("POST", "acl/create", case("/v1/acl/create", Some(json!({"Name": "l4"}))));
    add("POST", "acl/update", case("/v1/acl/update", Some(json!({"ID": legacy, "Name": "legacy-posted"}))));
    add("PUT", "acl/update", case("/v1/acl/update", Some(json!({"ID": legacy, "Name": "legacy-renamed"}))));
    add("PUT", "acl/destroy/+", case(format!("/v1/acl/destroy/{legacy2}"), None));
    add("GET", "acl/info/+", case(format!("/v1/acl/info/{legacy}"), None));
    add("PUT", "acl/clone/+", case(format!("/v1/acl/clone/{legacy}"), None));
    add("GET", "acl/list", case("/v1/acl/list", None));
    add("GET", "catalog/service/?", case("/v1/catalog/service/", None));
    add("GET", "catalog/node/?", case("/v1/catalog/node", None));
    add("GET", "catalog/node-services/?", case("/v1/catalog/node-services/", None));
    add("GET", "health/node/?", case("/v1/health/node/", None));
    add("GET", "health/checks/?", case("/v1/health/checks", None));
    add("GET", "health/service/?", case("/v1/health/service/", None));
    add("GET", "health/state/?", case("/v1/health/state/", None));
    add("PUT", "event/fire/?", case("/v1/event/fire/", None));
    add("PUT", "session/destroy/?", case("/v1/session/destroy/", None));
    add("PUT", "session/renew/?", case("/v1/session/renew/", None));
    add("GET", "session/info/?", case("/v1/session/info", None));
    add("GET", "session/node/?", case("/v1/session/node/", None));
    add("PUT", "agent/service/deregister/?", case("/v1/agent/service/deregister/", None));
    add("PUT", "agent/service/maintenance/?", case("/v1/agent/service/maintenance", None));
    add("GET", "agent/health/service/name/?", case("/v1/agent/health/service/name/", None));
    add("GET", "agent/health/service/id/?", case("/v1/agent/health/service/id", None));
    add("PUT", "acl/token/+/clone", case(format!("/v1/acl/token/{other_id}/clone"), Some(json!({"Description": "c"}))));
    add("GET", "acl/policy/name/+", case("/v1/acl/policy/name/p2", None));
    add("GET", "acl/role/name/+", case("/v1/acl/role/name/r1", None));
    // Templated policies, auth methods, binding rules, login and logout.
    add("GET", "acl/templated-policies", case("/v1/acl/templated-policies", None));
    add("GET", "acl/templated-policy/name/+", case("/v1/acl/templated-policy/name/builtin/dns", None));
    add(
        "POST",
        "acl/templated-policy/preview/+",
        case("/v1/acl/templated-policy/preview/builtin/service", Some(json!({"Name": "web"}))),
    );
    add("PUT", "acl/auth-method", case("/v1/acl/auth-method", Some(crate::acl_login::static_method("m-new", &signer))));
    add("GET", "acl/auth-method/+", case("/v1/acl/auth-method/fixture-jwt", None));
    add(
        "PUT",
        "acl/auth-method/+",
        case("/v1/acl/auth-method/fixture-jwt", Some(crate::acl_login::static_method("fixture-jwt", &signer))),
    );
    add("DELETE", "acl/auth-method/+", case("/v1/acl/auth-method/doomed", None));
    add("GET", "acl/auth-methods", case("/v1/acl/auth-methods", None));
    add("PUT", "acl/binding-rule", case("/v1/acl/binding-rule", Some(rule_body.clone())));
    add("GET", "acl/binding-rule/+", case(format!("/v1/acl/binding-rule/{rule}"), None));
    add("PUT", "acl/binding-rule/+", case(format!("/v1/acl/binding-rule/{rule}"), Some(rule_body.clone())));
    add("DELETE", "acl/binding-rule/+", case(format!("/v1/acl/binding-rule/{rule2}"), None));
    add("GET", "acl/binding-rules", case("/v1/acl/binding-rules", None));
    add("POST", "acl/login", case("/v1/acl/login", Some(json!({"AuthMethod": "fixture-jwt", "BearerToken": jwt}))));
    add("GET", "query", Case { path: "/v1/query".into(), body: None, marker: Some("fixq") });
    add("POST", "query", case("/v1/query", Some(json!({"Name": "newq", "Service": {"Service": "websvc"}}))));
    add("GET", "query/+/execute", Case { path: "/v1/query/fixq/execute".into(), body: None, marker: Some("ext1") });
    add("GET", "query/+/explain", case("/v1/query/fixq/explain", None));
    add("GET", "query/+", case(format!("/v1/query/{fixq}"), None));
    add(
        "PUT",
        "query/+",
        case(format!("/v1/query/{fixq}"), Some(json!({"Name": "fixq", "Service": {"Service": "websvc"}}))),
    );
    add("DELETE", "query/+", case(format!("/v1/query/{doomedq}"), None));
    add("POST", "acl/logout", case("/v1/acl/logout", None));
    add("PUT", "plugin/+", case("/v1/plugin/fx_new?version=1", None));
    add("GET", "plugin/+", case("/v1/plugin/fx_plugin?version=1", None));
    add("DELETE", "plugin/+", case("/v1/plugin/doomed_plugin?version=1", None));
    add("GET", "plugins", Case { path: "/v1/plugins".into(), body: None, marker: Some("fx_plugin") });
    RouteFixtures { cases, rights, none, snapshot, peer, plugin }
}

/// Every (method, pattern) of the table, the agent's leave last (it stops the agent).
fn route_order() -> Vec<(&'static str, &'static str, Need)> {
    let mut order: Vec<(&'static str, &'static str, Need)> = Vec::new();
    for r in ROUTES {
        for m in r.methods {
            order.push((m.as_str(), r.pattern, r.need));
        }
    }
    order.sort_by_key(|(_, p, _)| *p == "agent/leave");
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_denied_without_rights_and_allowed_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, api) = start_from_file(dir.path(), "deny").await;
    let RouteFixtures { cases, rights, none, snapshot, peer, plugin } = route_fixtures(&api).await;

    // Every route has a case (a route added to the table without one fails here), and the
    // agent's leave runs last: it stops the agent.
    let order = route_order();
    let mut missing = Vec::new();
    for (m, p, need) in &order {
        let key = (*m, *p);
        let Some(c) = cases.get(&key) else {
            missing.push(format!("{m} {p}"));
            continue;
        };
        if *p == "acl/logout" {
            // The token itself is the permission: none is 401, one no login made is refused,
            // and a login's token logs out.
            let (s, text) = api.call(m, &c.path, None, None).await;
            assert_eq!((s, text.as_str()), (401, "Supplied token does not exist"));
            let (s, text) = api.call(m, &c.path, Some(&rights), None).await;
            assert_eq!((s, text.as_str()), (403, "Permission denied: token wasn't created via login"));
            let login = cases.get(&("POST", "acl/login")).expect("login case");
            let (s, text) = api.call("POST", &login.path, None, login.body.as_ref()).await;
            assert_eq!(s, 200, "{text}");
            let secret = serde_json::from_str::<Value>(&text).unwrap()["SecretID"].as_str().unwrap().to_string();
            assert_eq!(api.call(m, &c.path, Some(&secret), None).await.0, 200);
            continue;
        }
        let body = if *p == "snapshot" && *m == "PUT" { None } else { c.body.clone() };
        let results =
            [api.call(m, &c.path, None, body.as_ref()).await, api.call(m, &c.path, Some(&none), body.as_ref()).await];
        let with_rights = if *p == "snapshot" && *m == "PUT" {
            let r = api
                .c
                .put(format!("{}/v1/snapshot", api.base))
                .header("X-Consul-Token", &rights)
                .body(snapshot.clone())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        } else if pushes_plugin(m, p) {
            api.call_raw(m, &c.path, Some(&rights), &plugin).await
        } else {
            api.call(m, &c.path, Some(&rights), body.as_ref()).await
        };
        match need {
            Need::Invalid(why) => {
                for r in results.iter().chain([&with_rights]) {
                    assert_eq!((r.0, r.1.as_str()), (400, *why), "{m} {p}");
                }
            }
            Need::Open | Need::AnyToken => {
                if *p == "acl/bootstrap" {
                    // Open, but this agent has an initial management token: as Consul, that
                    // bootstrapped the ACL system, so every call is refused.
                    for r in results.iter().chain([&with_rights]) {
                        assert_eq!(r.0, 403, "{m} {p}: {r:?}");
                        assert!(r.1.contains("ACL bootstrap no longer allowed"), "{r:?}");
                    }
                    continue;
                }
                for r in results.iter().chain([&with_rights]) {
                    assert!(r.0 < 300, "{m} {p} is open: {r:?}");
                }
            }
            Need::Filtered(_) => {
                let marker = c.marker.unwrap_or_else(|| panic!("{m} {p}: filtered case needs a marker"));
                for r in &results {
                    assert!(r.0 == 200 && !r.1.contains(marker), "{m} {p} without rights shows {marker}: {r:?}");
                }
                assert!(with_rights.0 == 200 && with_rights.1.contains(marker), "{m} {p} with rights: {with_rights:?}");
            }
            _ => {
                for (who, r) in ["no token", "token without rights"].iter().zip(&results) {
                    assert_eq!(r.0, 403, "{m} {p} with {who}: {r:?}");
                    assert!(r.1.starts_with("Permission denied") || r.1 == "ACL not found", "{m} {p}: {r:?}");
                }
                if *p == "operator/raft/peer" {
                    // Authorized and carried out: a single server has no other peer to remove.
                    assert!(with_rights.1.contains("was not found in the Raft configuration"), "{with_rights:?}");
                    continue;
                }
                if *p == "operator/raft/transfer-leader" {
                    // Authorized and tried: a single server has no one to hand leadership to.
                    assert!(with_rights.1.contains("cannot find peer"), "{with_rights:?}");
                    continue;
                }
                assert!(with_rights.0 < 300, "{m} {p} with rights: {with_rights:?}");
            }
        }
    }
    assert!(missing.is_empty(), "routes without a test case: {missing:?}");
    let _ = a.agent.shutdown(Duration::from_secs(5)).await;
    peer.stop().await;
}

/// The routes that manage ACLs: under `default_policy = "allow"` these, and only these, still
/// need management or an explicit `acl` rule (Consul's allow-all authorizer).
fn manages_acls(pattern: &str) -> bool {
    pattern == "snapshot"
        || (pattern.starts_with("acl/")
            && !matches!(pattern, "acl/bootstrap" | "acl/token/self" | "acl/login" | "acl/logout" | "acl/replication"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_allow_lets_anonymous_do_everything_but_manage_acls() {
    let dir = tempfile::tempdir().unwrap();
    let (a, api) = start_from_file(dir.path(), "allow").await;
    let RouteFixtures { cases, snapshot, peer, plugin, .. } = route_fixtures(&api).await;

    // A token with `acl = "read"` reads tokens with their secrets hidden.
    api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "acl-read", "Rules": "acl = \"read\""}))).await;
    let reader = api.ok("PUT", "/v1/acl/token", Some(&json!({"Policies": [{"Name": "acl-read"}]}))).await;
    let reader_secret = reader["SecretID"].as_str().unwrap().to_string();
    let (s, body) = api.call("GET", "/v1/acl/tokens", Some(&reader_secret), None).await;
    assert_eq!(s, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).unwrap();
    assert!(tokens.as_array().unwrap().len() > 2, "{body}");
    assert!(!body.contains(MGMT) && !body.contains(&reader_secret), "acl:read shows secrets: {body}");
    let (s, body) = api
        .call("GET", &format!("/v1/acl/token/{}", reader["AccessorID"].as_str().unwrap()), Some(&reader_secret), None)
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["SecretID"], "<hidden>");
    let (s, _) = api.call("PUT", "/v1/acl/token", Some(&reader_secret), Some(&json!({"Description": "x"}))).await;
    assert_eq!(s, 403, "acl:read cannot create tokens");
    // Nor clone one by using another method on the clone path: that path is PUT only.
    let clone = format!("/v1/acl/token/{}/clone", reader["AccessorID"].as_str().unwrap());
    for m in ["GET", "DELETE"] {
        let (s, body) = api.call(m, &clone, Some(&reader_secret), None).await;
        assert_eq!(s, 405, "{m} {clone}: {body}");
    }
    // A write path asked with GET is refused, not carried out.
    let (s, _) = api.call("GET", "/v1/agent/service/deregister/localsvc", None, None).await;
    assert_eq!(s, 405);
    assert_eq!(api.call("GET", "/v1/agent/service/localsvc", None, None).await.0, 200, "still registered");

    let mut missing = Vec::new();
    for (m, p, need) in route_order() {
        let Some(c) = cases.get(&(m, p)) else {
            missing.push(format!("{m} {p}"));
            continue;
        };
        let (s, body) = if p == "snapshot" && m == "PUT" {
            let r = api.c.put(format!("{}/v1/snapshot", api.base)).body(snapshot.clone()).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        } else if pushes_plugin(m, p) {
            api.call_raw(m, &c.path, None, &plugin).await
        } else {
            api.call(m, &c.path, None, c.body.as_ref()).await
        };
        if let Need::Invalid(why) = need {
            assert_eq!((s, body.as_str()), (400, why), "{m} {p}");
        } else if manages_acls(p) {
            assert_eq!(s, 403, "anonymous {m} {p} under default allow: {body}");
            assert!(body.starts_with("Permission denied") && body.contains("acl:"), "{m} {p}: {body}");
        } else if p == "acl/bootstrap" {
            // Open, but the initial management token already bootstrapped the ACL system.
            assert_eq!(s, 403, "{m} {p}: {body}");
            assert!(body.contains("ACL bootstrap no longer allowed"), "{m} {p}: {body}");
        } else if p == "operator/raft/peer" {
            // Authorized and carried out: a single server has no other peer to remove.
            assert!(body.contains("was not found in the Raft configuration"), "{m} {p}: {s} {body}");
        } else if p == "operator/raft/transfer-leader" {
            assert!(body.contains("cannot find peer"), "{m} {p}: {s} {body}");
        } else if p == "acl/logout" {
            // No token to log out.
            assert_eq!((s, body.as_str()), (401, "Supplied token does not exist"), "{m} {p}");
        } else {
            assert!(s < 300, "anonymous {m} {p} under default allow: {s} {body}");
            if let Some(marker) = c.marker {
                assert!(body.contains(marker), "{m} {p} hides {marker} from anonymous under allow: {body}");
            }
        }
    }
    assert!(missing.is_empty(), "routes without a test case: {missing:?}");
    let _ = a.agent.shutdown(Duration::from_secs(5)).await;
    peer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_endpoints_answer_401_when_disabled_and_unknown_routes_404_when_enabled() {
    let a = InProcessAgent::start(test_config()).await;
    let api = Api { c: Client::new(), base: a.base.clone() };
    for (m, p) in [("PUT", "/v1/acl/bootstrap"), ("GET", "/v1/acl/tokens"), ("PUT", "/v1/agent/token/default")] {
        let (s, body) = api.call(m, p, None, Some(&json!({"Token": "x"}))).await;
        assert_eq!((s, body.as_str()), (401, "ACL support disabled"), "{m} {p}");
    }
    a.stop().await;
    let (a, api) = start(acl_config()).await;
    let (s, _) = api.call("GET", "/v1/agent/nonexistent-route", Some(MGMT), None).await;
    assert_eq!(s, 404);
    // The default policy shows in a header on every response.
    let r = api.c.get(format!("{}/v1/status/leader", api.base)).send().await.unwrap();
    assert_eq!(r.headers()["X-Consul-Default-Acl-Policy"], "deny");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_decide_per_key_and_lists_are_filtered_with_the_header() {
    let (a, api) = start(acl_config()).await;
    for k in ["app/a", "app/secret/b", "app/secret/open", "other/c"] {
        api.ok("PUT", &format!("/v1/kv/{k}"), Some(&json!("v"))).await;
    }
    let rules = r#"
        key_prefix "app/" { policy = "write" }
        key_prefix "app/secret/" { policy = "deny" }
        key "app/secret/open" { policy = "read" }
    "#;
    api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "app", "Rules": rules}))).await;
    let tok = api.ok("PUT", "/v1/acl/token", Some(&json!({"Policies": [{"Name": "app"}]}))).await;
    let (secret, accessor) = (tok["SecretID"].as_str().unwrap(), tok["AccessorID"].as_str().unwrap());
    let t = Some(secret);
    assert_eq!(api.call("GET", "/v1/kv/app/a", t, None).await.0, 200);
    assert_eq!(api.call("PUT", "/v1/kv/app/new", t, Some(&json!("x"))).await.0, 200);
    let (s, body) = api.call("GET", "/v1/kv/app/secret/b", t, None).await;
    assert_eq!(s, 403);
    assert_eq!(
        body,
        format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'key:read' on \"app/secret/b\""
        )
    );
    assert_eq!(api.call("GET", "/v1/kv/app/secret/open", t, None).await.0, 200, "exact beats prefix");
    assert_eq!(api.call("PUT", "/v1/kv/app/secret/open", t, Some(&json!("x"))).await.0, 403);
    assert_eq!(api.call("GET", "/v1/kv/other/c", t, None).await.0, 403, "default deny");
    // A recursive delete under a prefix holding denied keys is refused as a whole.
    assert_eq!(api.call("DELETE", "/v1/kv/app/?recurse", t, None).await.0, 403);
    // Recursive reads drop what the token can't read and say so.
    let r = api.c.get(format!("{}/v1/kv/?recurse", api.base)).header("X-Consul-Token", secret).send().await.unwrap();
    assert_eq!(r.headers().get("X-Consul-Results-Filtered-By-Acls").map(|v| v.to_str().unwrap()), Some("true"));
    let keys: Vec<String> = r
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["app/a", "app/new", "app/secret/open"]);
    // Tokens are taken from Authorization: Bearer and ?token= too.
    let r = api.c.get(format!("{}/v1/kv/app/a", api.base)).bearer_auth(secret).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = api.call("GET", &format!("/v1/kv/app/a?token={secret}"), None, None).await;
    assert_eq!(s, 200);
    // An unknown token is not the anonymous one.
    let (s, body) = api.call("GET", "/v1/kv/app/a", Some("00000000-1111-2222-3333-444444444444"), None).await;
    assert_eq!((s, body.as_str()), (403, "ACL not found"));
    // A policy change applies at once.
    let p = api.ok("GET", "/v1/acl/policy/name/app", None).await;
    let id = p["ID"].as_str().unwrap();
    api.ok(
        "PUT",
        &format!("/v1/acl/policy/{id}"),
        Some(&json!({"Name": "app", "Rules": "key_prefix \"\" { policy = \"read\" }"})),
    )
    .await;
    assert_eq!(api.call("GET", "/v1/kv/other/c", t, None).await.0, 200);
    assert_eq!(api.call("PUT", "/v1/kv/app/a", t, Some(&json!("x"))).await.0, 403);
    // Bad rules are a 400 with the parser's reason, and nothing is stored.
    let (s, body) = api
        .call(
            "PUT",
            "/v1/acl/policy",
            Some(MGMT),
            Some(&json!({"Name": "bad", "Rules": "key \"a\" { policy = \"maybe\" }"})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(body.contains("Failed to parse ACL rules") && body.contains("invalid key policy"), "{body}");
    assert_eq!(
        api.call("GET", "/v1/acl/policy/name/bad", Some(MGMT), None).await,
        (404, "Requested policy does not exist: ACL not found".to_string())
    );
    a.stop().await;
}

/// Blocked queries woken by the same write share one read and one serialized answer per token
/// and parameters: each waiter still gets its own token's answer, marked filtered as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_woken_by_one_write_each_get_their_own_tokens_answer() {
    // Not -dev, whose answers are all indented.
    let mut config = acl_config();
    (config.dev, config.bootstrap) = (false, true);
    let (a, api) = start(config).await;
    for k in ["app/a", "app/secret/b"] {
        api.ok("PUT", &format!("/v1/kv/{k}"), Some(&json!("v"))).await;
    }
    let rules = r#"key_prefix "app/" { policy = "read" }
        key_prefix "app/secret/" { policy = "deny" }"#;
    api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "app", "Rules": rules}))).await;
    let tok = api.ok("PUT", "/v1/acl/token", Some(&json!({"Policies": [{"Name": "app"}]}))).await;
    let limited = tok["SecretID"].as_str().unwrap().to_string();
    let get = |path: String, token: String| {
        let c = api.c.clone();
        let url = format!("{}{path}", api.base);
        async move {
            let r = c.get(url).header("X-Consul-Token", token).send().await.unwrap();
            let filtered = r.headers().get("X-Consul-Results-Filtered-By-Acls").is_some();
            let index: u64 = r.headers()["X-Consul-Index"].to_str().unwrap().parse().unwrap();
            (index, filtered, r.text().await.unwrap())
        }
    };
    let keys = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        v.as_array().unwrap().iter().map(|e| e["Key"].as_str().unwrap().to_string()).collect()
    };
    let (mut index, _, _) = get("/v1/kv/app/?recurse".into(), MGMT.into()).await;
    for (round, key) in ["app/c", "app/secret/d"].into_iter().enumerate() {
        let before = a.blocked_queries();
        // Three waiters per token, and one asking for ?pretty with each.
        let mut waiters = Vec::new();
        for (token, pretty) in [(MGMT, false), (&limited, false), (MGMT, true), (&limited, true)] {
            for _ in 0..if pretty { 1 } else { 3 } {
                let path = format!("/v1/kv/app/?recurse&index={index}&wait=20s{}", if pretty { "&pretty" } else { "" });
                waiters.push((token == MGMT, pretty, tokio::spawn(get(path, token.to_string()))));
            }
        }
        a.until_blocked(before, waiters.len()).await;
        api.ok("PUT", &format!("/v1/kv/{key}"), Some(&json!("v"))).await;
        let mut answered = None;
        for (mgmt, pretty, w) in waiters {
            let (i, filtered, body) = tokio::time::timeout(Duration::from_secs(10), w).await.unwrap().unwrap();
            assert!(i > index, "round {round}: woken by the write");
            assert_eq!(*answered.get_or_insert(i), i, "round {round}: one index for every waiter");
            let want: &[&str] = match (round, mgmt) {
                (0, true) => &["app/a", "app/c", "app/secret/b"],
                (0, false) => &["app/a", "app/c"],
                (_, true) => &["app/a", "app/c", "app/secret/b", "app/secret/d"],
                (_, false) => &["app/a", "app/c"],
            };
            assert_eq!(keys(&body), want, "round {round}, management {mgmt}, pretty {pretty}");
            assert_eq!(filtered, !mgmt, "round {round}, management {mgmt}: the filtered header is the token's own");
            assert_eq!(body.contains("\n    "), pretty, "round {round}: ?pretty as each asked");
        }
        index = answered.unwrap();
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tokens_round_trip_and_grant_their_rules() {
    let (a, api) = start(acl_config()).await;
    let rules = r#"key "pub" { policy = "write" }"#;
    let id = api
        .ok("PUT", "/v1/acl/create", Some(&json!({"Name": "app token", "Type": "client", "Rules": rules})))
        .await["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let info = api.ok("GET", &format!("/v1/acl/info/{id}"), None).await;
    assert_eq!(
        (&info[0]["ID"], &info[0]["Name"], &info[0]["Type"], &info[0]["Rules"]),
        (&json!(id), &json!("app token"), &json!("client"), &json!(rules))
    );
    // Legacy rules are prefix rules.
    assert_eq!(api.call("PUT", "/v1/kv/pub/x", Some(&id), Some(&json!("v"))).await.0, 200);
    assert_eq!(api.call("PUT", "/v1/kv/private", Some(&id), Some(&json!("v"))).await.0, 403);
    // Update to management, clone, list, destroy.
    api.ok("PUT", "/v1/acl/update", Some(&json!({"ID": id, "Name": "now mgmt", "Type": "management"}))).await;
    assert_eq!(api.call("PUT", "/v1/kv/private", Some(&id), Some(&json!("v"))).await.0, 200);
    let info = api.ok("GET", &format!("/v1/acl/info/{id}"), None).await;
    assert_eq!((&info[0]["Type"], &info[0]["Name"]), (&json!("management"), &json!("now mgmt")));
    let clone = api.ok("PUT", &format!("/v1/acl/clone/{id}"), None).await["ID"].as_str().unwrap().to_string();
    assert_ne!(clone, id);
    let list = api.ok("GET", "/v1/acl/list", None).await;
    assert!(list.as_array().unwrap().iter().any(|t| t["ID"] == json!(clone) && t["Type"] == "management"));
    // The same token seen through the modern API.
    let modern = api.ok("GET", "/v1/acl/tokens", None).await;
    assert!(modern.as_array().unwrap().iter().any(|t| t["Description"] == "now mgmt"));
    assert_eq!(api.ok("PUT", &format!("/v1/acl/destroy/{id}"), None).await, json!(true));
    assert_eq!(api.ok("GET", &format!("/v1/acl/info/{id}"), None).await, json!([]));
    assert_eq!(
        api.call("PUT", "/v1/kv/private", Some(&id), Some(&json!("v"))).await,
        (403, "ACL not found".to_string())
    );
    // A management legacy token can be created with a chosen ID.
    let chosen = "a3d2c1b0-0000-4000-8000-000000000abc";
    api.ok("PUT", "/v1/acl/create", Some(&json!({"ID": chosen, "Name": "ops", "Type": "management"}))).await;
    assert_eq!(api.call("GET", "/v1/acl/tokens", Some(chosen), None).await.0, 200);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_policies_and_roles_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = acl_config();
    config.data_dir = Some(dir.path().to_path_buf());
    config.dev = false;
    // The Raft configuration keeps the server's address: it must stay the same across the
    // restart (an address of this test's own, so no other test can take the port meanwhile).
    config.bind_addr = "127.0.9.1".into();
    config.ports.server = 8300;
    let (a, api) = start(config.clone()).await;
    api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "ro", "Rules": "key_prefix \"\" { policy = \"read\" }"})))
        .await;
    api.ok("PUT", "/v1/acl/role", Some(&json!({"Name": "readers", "Policies": [{"Name": "ro"}]}))).await;
    let t =
        api.ok("PUT", "/v1/acl/token", Some(&json!({"Description": "via role", "Roles": [{"Name": "readers"}]}))).await;
    let secret = t["SecretID"].as_str().unwrap().to_string();
    api.ok("PUT", "/v1/kv/k", Some(&json!("v"))).await;
    assert_eq!(api.call("GET", "/v1/kv/k", Some(&secret), None).await.0, 200);
    assert_eq!(api.call("PUT", "/v1/kv/k", Some(&secret), Some(&json!("w"))).await.0, 403);
    // The initial management token bootstrapped the ACL system (as Consul): refused.
    let (s, first) = retry_until(Duration::from_secs(10), "a leader answers bootstrap", || async {
        let r = api.call("PUT", "/v1/acl/bootstrap", None, None).await;
        (r.0 != 500).then_some(r)
    })
    .await;
    assert_eq!(s, 403, "{first}");
    assert!(first.contains("ACL bootstrap no longer allowed"), "{first}");
    a.stop().await;

    let (a, api) = start(config).await;
    assert_eq!(api.call("GET", "/v1/kv/k", Some(&secret), None).await.0, 200, "token, role and policy restored");
    assert_eq!(api.call("PUT", "/v1/kv/k", Some(&secret), Some(&json!("w"))).await.0, 403);
    let (s, body) = retry_until(Duration::from_secs(10), "a leader answers bootstrap", || async {
        let r = api.call("PUT", "/v1/acl/bootstrap", None, None).await;
        (r.0 != 500).then_some(r)
    })
    .await;
    assert_eq!((s, &body), (403, &first), "still refused after the restart");
    let reset: u64 = body.rsplit("reset index: ").next().unwrap().trim_end_matches(')').parse().unwrap();
    // The operator's reset file allows one more bootstrap.
    std::fs::write(dir.path().join("acl-bootstrap-reset"), reset.to_string()).unwrap();
    let (s, body) = api.call("PUT", "/v1/acl/bootstrap", None, None).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Policies"][0]["Name"], "global-management");
    assert_eq!(v["ID"], v["SecretID"]);
    a.stop().await;
}

#[test]
fn the_route_table_covers_every_permission_kind() {
    // Guards the table's shape: writes never need only read. (The templated-policy preview
    // is a POST that writes nothing: Consul asks acl:read of it.)
    for r in ROUTES.iter().filter(|r| r.pattern != "acl/templated-policy/preview/+") {
        if let Need::OnPath(_, Access::Read) | Need::Scalar(_, Access::Read) | Need::OnNode(_, Access::Read) = r.need {
            assert!(
                r.methods.iter().all(|m| m.as_str() == "GET"),
                "{} needs read but allows {:?}",
                r.pattern,
                r.methods
            );
        }
    }
}

fn cluster_agent(
    ip: &str,
    name: &str,
    dir: &tempfile::TempDir,
    server: bool,
    config: &str,
) -> legate_tests::AgentProcess {
    let file = dir.path().join("acl.hcl");
    std::fs::write(&file, config).unwrap();
    let data = dir.path().join("data");
    let mut args = legate_tests::cluster_agent_args(ip, name, data.to_str().unwrap(), server, "127.0.6.1");
    args.extend(["-config-file".to_string(), file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    legate_tests::AgentProcess::start(&args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_leader_change_and_client_agents_enforce_them() {
    let server_config = format!(
        r#"acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    initial_management = "{MGMT}"
    agent = "{MGMT}"
  }}
}}"#
    );
    // The client registers a service from its config; anti-entropy writes it with the agent token.
    let client_config = format!(
        r#"acl {{
  enabled = true
  default_policy = "deny"
  tokens {{ agent = "{MGMT}" }}
}}
service {{
  name = "clientsvc"
  port = 9000
}}"#
    );
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips = ["127.0.6.1", "127.0.6.2", "127.0.6.3", "127.0.6.4"];
    let mut agents: Vec<legate_tests::AgentProcess> =
        (0..3).map(|i| cluster_agent(ips[i], &format!("s{}", i + 1), &dirs[i], true, &server_config)).collect();
    let client = cluster_agent(ips[3], "c1", &dirs[3], false, &client_config);
    let api = |i: usize| Api { c: Client::new(), base: agents[i].url("").trim_end_matches('/').to_string() };
    let capi = Api { c: Client::new(), base: client.url("").trim_end_matches('/').to_string() };
    let leader = retry_until(Duration::from_secs(40), "a leader", || async {
        let (s, body) = api(0).call("GET", "/v1/status/leader", None, None).await;
        (s == 200 && body.len() > 4).then(|| body.trim_matches('"').to_string())
    })
    .await;
    let leader_idx = (0..3).find(|&i| leader.starts_with(&format!("{}:", ips[i]))).unwrap();
    let other = (0..3).find(|&i| i != leader_idx).unwrap();
    // The leader writes the initial management token; then a policy and a token through a follower.
    retry_until(Duration::from_secs(20), "management token", || async {
        (api(other).call("GET", "/v1/acl/token/self", Some(MGMT), None).await.0 == 200).then_some(())
    })
    .await;
    api(other)
        .ok(
            "PUT",
            "/v1/acl/policy",
            Some(&json!({"Name": "kv-read", "Rules": "key_prefix \"\" { policy = \"read\" }"})),
        )
        .await;
    let tok = api(other).ok("PUT", "/v1/acl/token", Some(&json!({"Policies": [{"Name": "kv-read"}]}))).await;
    let secret = tok["SecretID"].as_str().unwrap().to_string();
    api(other).ok("PUT", "/v1/kv/shared", Some(&json!("v"))).await;

    // The client resolves tokens through a server: its own endpoints and forwarded ones.
    retry_until(Duration::from_secs(20), "client reads with the token", || async {
        (capi.call("GET", "/v1/kv/shared", Some(&secret), None).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(capi.call("PUT", "/v1/kv/shared", Some(&secret), Some(&json!("w"))).await.0, 403);
    // A write with rights, through the client agent (a typed KvWrite to a server).
    let (s, body) = capi.call("PUT", "/v1/kv/from-client", Some(MGMT), Some(&json!("c"))).await;
    assert_eq!((s, body.as_str()), (200, "true"));
    let v = api(other).ok("GET", "/v1/kv/from-client?consistent", None).await;
    assert_eq!(v[0]["Value"], "ImMi");
    let (s, body) = capi.call("GET", "/v1/agent/self", Some(&secret), None).await;
    assert_eq!(s, 403, "agent:read is not granted: {body}");
    assert!(body.contains("agent:read"), "{body}");
    assert_eq!(capi.call("GET", "/v1/agent/self", Some(MGMT), None).await.0, 200);
    // The client's config service reached the catalog through the token-checked write path.
    retry_until(Duration::from_secs(30), "client service in the catalog", || async {
        let (s, body) = api(other).call("GET", "/v1/catalog/service/clientsvc", Some(MGMT), None).await;
        (s == 200 && body.contains("\"c1\"")).then_some(())
    })
    .await;

    // The leader goes away; the token and its policy are on the others.
    agents[leader_idx].signal(libc::SIGKILL);
    retry_until(Duration::from_secs(30), "a new leader", || async {
        let (s, body) = api(other).call("GET", "/v1/status/leader", None, None).await;
        (s == 200 && body.len() > 4 && !body.contains(ips[leader_idx])).then_some(())
    })
    .await;
    assert_eq!(api(other).call("GET", "/v1/kv/shared", Some(&secret), None).await.0, 200);
    assert_eq!(api(other).call("PUT", "/v1/kv/shared", Some(&secret), Some(&json!("w"))).await.0, 403);
    let again = retry_until(Duration::from_secs(20), "a token created after the failover", || async {
        let (s, body) =
            api(other).call("PUT", "/v1/acl/token", Some(MGMT), Some(&json!({"Description": "after"}))).await;
        (s == 200).then_some(body)
    })
    .await;
    assert!(again.contains("\"after\""), "{again}");
    drop(client);
    agents.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_cli_bootstraps_and_manages_policies_tokens_and_roles() {
    let mut config = acl_config();
    config.acl.tokens.initial_management = None;
    let a = InProcessAgent::start(config).await;
    let addr = format!("-http-addr={}", a.base.trim_start_matches("http://"));
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push(&addr);
        legate_tests::run_legate(&all)
    };
    let (code, out, err) = retry_until_ok(|| run(&["acl", "bootstrap"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Description:      Bootstrap Token (Global Management)"), "{out}");
    assert!(out.contains("00000000-0000-0000-0000-000000000001 - global-management"), "{out}");
    let secret = out.lines().find_map(|l| l.strip_prefix("SecretID:")).unwrap().trim().to_string();
    let tok = format!("-token={secret}");
    let (code, _, err) = run(&["acl", "bootstrap"]);
    assert_eq!(code, 1);
    assert!(err.contains("ACL bootstrap no longer allowed"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.hcl");
    std::fs::write(&rules, "key_prefix \"team/\" { policy = \"write\" }\n").unwrap();
    let at = format!("@{}", rules.display());
    let (code, out, err) = run(&["acl", "policy", "create", &tok, "-name", "team", "-rules", &at]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Name:         team") && out.contains("key_prefix \"team/\""), "{out}");
    let (code, _, err) = run(&["acl", "policy", "create", &tok, "-name", "broken", "-rules", "key {"]);
    assert_eq!(code, 1);
    assert!(err.contains("Failed to parse ACL rules"), "{err}");
    let (code, out, err) = run(&["acl", "role", "create", &tok, "-name", "team-role", "-policy-name", "team"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("- team"), "{out}");
    let (code, out, err) =
        run(&["acl", "token", "create", &tok, "-description", "ci", "-role-name", "team-role", "-format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let (ci_secret, ci_accessor) = (v["SecretID"].as_str().unwrap(), v["AccessorID"].as_str().unwrap());
    let client = Client::new();
    let put = |k: &'static str, t: &str| {
        client.put(a.url(&format!("/v1/kv/{k}"))).header("X-Consul-Token", t.to_string()).body("v").send()
    };
    assert_eq!(put("team/x", ci_secret).await.unwrap().status(), 200);
    assert_eq!(put("other", ci_secret).await.unwrap().status(), 403);
    let (code, out, _) = run(&["acl", "token", "list", &tok]);
    assert_eq!(code, 0);
    assert!(out.contains(ci_accessor) && out.contains("Anonymous Token"), "{out}");
    let (code, out, _) = run(&["acl", "token", "read", &tok, "-id", ci_accessor]);
    assert_eq!(code, 0);
    assert!(out.contains("Description:      ci") && out.contains("team-role"), "{out}");
    let (code, _, err) = run(&["acl", "token", "delete", &tok, "-id", ci_accessor]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(put("team/x", ci_secret).await.unwrap().status(), 403);
    let (code, _, err) = run(&["acl", "policy", "delete", &tok, "-name", "team"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&["acl", "policy", "list", &tok]);
    assert!(code == 0 && !out.contains("Name:         team\n") && out.contains("global-management"), "{out}");
    a.stop().await;
}

/// Retries a CLI call until it succeeds (the leader writes the built-in ACL records first).
fn retry_until_ok(mut f: impl FnMut() -> (i32, String, String)) -> (i32, String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = f();
        if r.0 == 0 || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_set_at_run_time_persist_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = acl_config();
    config.data_dir = Some(dir.path().to_path_buf());
    config.dev = false;
    config.acl.enable_token_persistence = true;
    config.bind_addr = "127.0.9.2".into();
    config.ports.server = 8300;
    let (a, api) = start(config.clone()).await;
    api.ok("PUT", "/v1/kv/k", Some(&json!("v"))).await;
    api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "k", "Rules": "key \"k\" { policy = \"read\" }"}))).await;
    let t = api.ok("PUT", "/v1/acl/token", Some(&json!({"Policies": [{"Name": "k"}]}))).await;
    assert_eq!(api.call("GET", "/v1/kv/k", None, None).await.0, 403, "anonymous reads nothing");
    let (s, body) = api.call("PUT", "/v1/agent/token/nonsense", Some(MGMT), Some(&json!({"Token": "x"}))).await;
    assert_eq!((s, body.as_str()), (404, "Token \"nonsense\" is unknown"));
    // The old name of the default token.
    api.ok("PUT", "/v1/agent/token/acl_token", Some(&json!({ "Token": t["SecretID"] }))).await;
    assert_eq!(api.call("GET", "/v1/kv/k", None, None).await.0, 200, "requests without a token use it");
    a.stop().await;

    let (a, api) = start(config).await;
    assert_eq!(api.call("GET", "/v1/kv/k", None, None).await.0, 200, "the token set at run time was persisted");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_writes_over_rpc_are_refused_from_non_servers() {
    use legate_core::server::command::Command;
    use legate_core::server::rpc::{Pool, Request, Response};
    let mut config = acl_config();
    // The server on an address of its own: this test connects from 127.0.0.1.
    config.bind_addr = "127.0.9.3".into();
    let (a, api) = start(config).await;
    let rpc = a.agent.shared().server().unwrap().rpc_addr.clone();
    let pool = Pool::new(std::sync::Arc::new(legate_core::tls::Live::new(legate_core::tls::RpcTls::plain())));
    let peer = pool.get(&rpc).await;
    let mut op = legate_core::state::kv::KvOp::new(legate_core::state::kv::KvVerb::Set, "forged");
    op.value = b"x".to_vec();
    let r = peer.call(Request::Apply(Command::Kv(op)), Duration::from_secs(5)).await.unwrap();
    let Response::Apply(Err(e)) = r else { panic!("raw write accepted: {r:?}") };
    assert!(e.to_string().contains("is not a server of this cluster"), "{e}");
    assert_eq!(api.call("GET", "/v1/kv/forged", Some(MGMT), None).await.0, 404);

    // The typed KV write a client agent sends is checked by the server against its token,
    // whatever the client agent checked.
    use legate_core::server::endpoints::EndpointError;
    api.ok("PUT", "/v1/acl/policy", Some(&json!({"Name": "ro", "Rules": "key_prefix \"\" { policy = \"read\" }"})))
        .await;
    let ro = api.ok("PUT", "/v1/acl/token", Some(&json!({"Policies": [{"Name": "ro"}]}))).await["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    let mut op = legate_core::state::kv::KvOp::new(legate_core::state::kv::KvVerb::Set, "typed");
    op.value = b"x".to_vec();
    for (token, want) in [
        (None, "anonymous"),
        (Some("no-such-token".to_string()), "ACL not found"),
        (Some(ro.clone()), "lacks permission 'key:write'"),
    ] {
        let r = peer.call(Request::KvWrite { token, op: op.clone() }, Duration::from_secs(5)).await.unwrap();
        let Response::KvWrite(Err(e)) = r else { panic!("{want}: write accepted: {r:?}") };
        assert!(matches!(e, EndpointError::PermissionDenied(_) | EndpointError::AclNotFound), "{e:?}");
        assert!(e.to_string().contains(want) || want == "anonymous", "{want}: {e}");
    }
    let r = peer.call(Request::KvWrite { token: Some(MGMT.into()), op }, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(r, Response::KvWrite(Ok(_))), "{r:?}");
    let v = api.ok("GET", "/v1/kv/typed", None).await;
    assert_eq!(v[0]["Value"], "eA==");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_bodies_decode_case_insensitively_and_misses_answer_as_consul() {
    let (a, api) = start(acl_config()).await;
    let rules = "key_prefix \"\" { policy = \"read\" }";
    let p = api.ok("PUT", "/v1/acl/policy", Some(&json!({"name": "lower", "rules": rules, "description": "d"}))).await;
    assert_eq!(
        (p["Name"].as_str(), p["Description"].as_str(), p["Rules"].as_str()),
        (Some("lower"), Some("d"), Some(rules))
    );
    let r = api.ok("PUT", "/v1/acl/role", Some(&json!({"name": "r", "policies": [{"name": "lower"}]}))).await;
    assert_eq!(r["Policies"][0]["Name"], "lower");
    let t = api.ok("PUT", "/v1/acl/token", Some(&json!({"description": "t", "roles": [{"NAME": "r"}]}))).await;
    assert_eq!((t["Description"].as_str(), t["Roles"][0]["Name"].as_str()), (Some("t"), Some("r")));
    let missing = "00000000-0000-4000-8000-00000000beef";
    for (m, path, want) in [
        ("GET", format!("/v1/acl/policy/{missing}"), (404, "Requested policy does not exist: ACL not found")),
        ("GET", "/v1/acl/policy/name/nope".to_string(), (404, "Requested policy does not exist: ACL not found")),
        ("GET", format!("/v1/acl/role/{missing}"), (404, "Requested role does not exist: ACL not found")),
        ("DELETE", format!("/v1/acl/policy/{missing}"), (404, "Cannot find policy to delete")),
        ("DELETE", format!("/v1/acl/role/{missing}"), (404, "Cannot find role to delete")),
        ("GET", "/v1/acl/policy/not-a-uuid".to_string(), (500, "UUID must be 36 characters")),
        ("DELETE", "/v1/acl/role/not-a-uuid".to_string(), (500, "UUID must be 36 characters")),
    ] {
        let (s, body) = api.call(m, &path, Some(MGMT), None).await;
        assert_eq!((s, body.as_str()), want, "{m} {path}");
    }
    a.stop().await;
}
