//! Two datacenters federated over the WAN gossip pool: three servers and a client agent in
//! each, the servers joining the other datacenter's on the WAN (`-retry-join-wan`). `?dc=` calls
//! are answered by the other datacenter's servers (blocking queries included), DNS and prepared
//! queries cross over, and a secondary replicates the primary's ACLs.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, run_legate_with, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};

fn start(ip: &str, name: &str, dir: &tempfile::TempDir, extra: &[&str]) -> AgentProcess {
    start_with_env(ip, name, dir, extra, &[])
}

fn start_with_env(ip: &str, name: &str, dir: &tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> AgentProcess {
    let mut args = legate_tests::loopback_agent_args(ip, name, dir.path().to_str().unwrap());
    args.extend(["-serf-wan-port", "8302"].map(String::from));
    let mut extra = extra.iter();
    while let Some(flag) = extra.next() {
        match args.iter().position(|a| a == flag) {
            // A flag loopback_agent_args sets already (-dns-port) takes the new value.
            Some(at) if *flag == "-dns-port" => args[at + 1] = extra.next().expect("a value").to_string(),
            _ => args.push(flag.to_string()),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(&args, env)
}

async fn get(c: &Client, url: String) -> Option<Value> {
    let r = c.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Gossip WAN timing for the test: failures are found in seconds, not the WAN default's ~40 s
/// (measured by scripts/bench-dc.py).
const FAST_WAN: &[(&str, &str)] =
    &[("LEGATE_GOSSIP_WAN__PROBE_INTERVAL", "500ms"), ("LEGATE_GOSSIP_WAN__PROBE_TIMEOUT", "300ms")];

/// The gossip key of every agent of the two-datacenter test (LAN and WAN pools).
const KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

/// A server of a three-server datacenter: `-bootstrap-expect 3`, joining `lan` and `wan`.
fn server(ip: &str, name: &str, dc: &str, dir: &tempfile::TempDir, lan: &str, wan: &str) -> AgentProcess {
    let mut extra =
        vec!["-server", "-bootstrap-expect", "3", "-datacenter", dc, "-retry-interval", "1s", "-encrypt", KEY];
    extra.extend(["-retry-join-wan", wan, "-retry-interval-wan", "1s"]);
    if lan != ip {
        extra.extend(["-retry-join", lan]);
    }
    start_with_env(ip, name, dir, &extra, FAST_WAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_datacenters_answer_each_others_calls() {
    let c = Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    // dc1: servers s1, s3, s4 and the client c1; dc2: servers s2, s5, s6 and the client c2.
    let mut s1 = server("127.0.12.1", "s1", "dc1", &dirs[0], "127.0.12.1", "127.0.12.3");
    let _s3 = server("127.0.12.4", "s3", "dc1", &dirs[3], "127.0.12.1", "127.0.12.3");
    let _s4 = server("127.0.12.5", "s4", "dc1", &dirs[4], "127.0.12.1", "127.0.12.3");
    let s2 = server("127.0.12.3", "s2", "dc2", &dirs[2], "127.0.12.3", "127.0.12.1");
    let _s5 = server("127.0.12.6", "s5", "dc2", &dirs[5], "127.0.12.3", "127.0.12.1");
    let _s6 = server("127.0.12.7", "s6", "dc2", &dirs[6], "127.0.12.3", "127.0.12.1");
    let dns_port = std::net::UdpSocket::bind("127.0.12.2:0").unwrap().local_addr().unwrap().port();
    let mut client = start_with_env(
        "127.0.12.2",
        "c1",
        &dirs[1],
        &["-datacenter", "dc1", "-retry-join", "127.0.12.1", "-dns-port", &dns_port.to_string(), "-encrypt", KEY],
        &[("LEGATE_TRANSLATE_WAN_ADDRS", "true")],
    );
    let c2 = start("127.0.12.8", "c2", &dirs[7], &["-datacenter", "dc2", "-retry-join", "127.0.12.3", "-encrypt", KEY]);
    for a in [&s1, &s2, &c2] {
        retry_until(Duration::from_secs(60), "a leader", || async {
            let l = get(&c, a.url("/v1/status/leader")).await?;
            (!l.as_str()?.is_empty()).then_some(())
        })
        .await;
    }

    // The WAN pool: all six servers, named <node>.<dc>, seen from either side.
    let six = ["s1.dc1", "s2.dc2", "s3.dc1", "s4.dc1", "s5.dc2", "s6.dc2"];
    for a in [&s1, &s2] {
        retry_until(Duration::from_secs(30), "six servers in the WAN pool", || async {
            let m = get(&c, a.url("/v1/agent/members?wan=1")).await?;
            let mut names: Vec<&str> =
                m.as_array()?.iter().filter(|m| m["Status"] == 1).filter_map(|m| m["Name"].as_str()).collect();
            names.sort();
            (names == six).then_some(())
        })
        .await;
    }
    let (code, out, err) =
        run_legate_with(&["members", "-wan", &format!("-http-addr={}", s1.http.unwrap())], &[], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("s2.dc2 ") && l.contains("alive")), "{out}");
    retry_until(Duration::from_secs(20), "the client sees both datacenters", || async {
        (get(&c, client.url("/v1/catalog/datacenters")).await? == json!(["dc1", "dc2"])).then_some(())
    })
    .await;
    assert_eq!(get(&c, s2.url("/v1/catalog/datacenters")).await.unwrap(), json!(["dc2", "dc1"]));

    // A KV write with ?dc=dc2 from dc1's client lands in dc2 only.
    let r = c.put(client.url("/v1/kv/fed/key?dc=dc2")).body("in-dc2").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let r = c.get(s2.url("/v1/kv/fed/key?raw")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "in-dc2");
    assert_eq!(c.get(s1.url("/v1/kv/fed/key")).send().await.unwrap().status(), 404);
    let r = c.get(client.url("/v1/kv/fed/key?dc=dc2&raw")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "in-dc2");

    // A blocking query across datacenters wakes on the remote write.
    let r = c.get(client.url("/v1/kv/fed/key?dc=dc2")).send().await.unwrap();
    let index: u64 = r.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    let url = client.url(&format!("/v1/kv/fed/key?dc=dc2&index={index}&wait=20s"));
    let waiting = tokio::spawn({
        let c = c.clone();
        async move {
            let asked = Instant::now();
            let r = c.get(url).send().await.unwrap();
            let new: u64 = r.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
            (asked.elapsed(), new, r.json::<Value>().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c.put(s2.url("/v1/kv/fed/key")).body("changed").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let (took, new_index, v) = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("woken").unwrap();
    assert!(new_index > index && took < Duration::from_secs(15), "{took:?} {new_index} {index}");
    assert_eq!(v[0]["Value"], "Y2hhbmdlZA==");

    // A catalog registration naming dc2 in its body goes there.
    let reg = json!({"Datacenter": "dc2", "Node": "ext-dc2", "Address": "10.2.0.1", "Service": {"Service": "db"}});
    let r = c.put(s1.url("/v1/catalog/register")).json(&reg).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(get(&c, s2.url("/v1/catalog/service/db")).await.unwrap()[0]["Node"], "ext-dc2");
    assert_eq!(get(&c, s1.url("/v1/catalog/service/db")).await.unwrap(), json!([]));
    let health = get(&c, client.url("/v1/health/service/db?dc=dc2")).await.unwrap();
    assert_eq!(health[0]["Node"]["Datacenter"], "dc2");

    // DNS across datacenters, asked of dc1's client agent.
    let dns: std::net::SocketAddr = format!("127.0.12.2:{dns_port}").parse().unwrap();
    let m = crate::dns::udp(dns, "db.service.dc2.consul.", hickory_proto::rr::RecordType::A).await;
    assert_eq!(m.metadata.response_code, hickory_proto::op::ResponseCode::NoError, "{m:?}");
    let ips: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(ips, ["10.2.0.1"], "{m:?}");
    let m = crate::dns::udp(dns, "ext-dc2.node.dc2.consul.", hickory_proto::rr::RecordType::A).await;
    assert_eq!(m.answers.len(), 1, "{m:?}");
    let m = crate::dns::udp(dns, "db.service.dc1.consul.", hickory_proto::rr::RecordType::A).await;
    assert!(m.answers.is_empty(), "db is in dc2 only: {m:?}");
    let m = crate::dns::udp(dns, "db.service.dc9.consul.", hickory_proto::rr::RecordType::A).await;
    assert_eq!(m.metadata.response_code, hickory_proto::op::ResponseCode::NXDomain, "{m:?}");

    // A prepared query fails over to dc2 while dc1 has no healthy instance.
    let r = c
        .post(s1.url("/v1/query"))
        .json(&json!({"Name": "db-q", "Service": {"Service": "db", "Failover": {"NearestN": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let run = |c: Client, url: String| async move { get(&c, url).await.unwrap() };
    let v = run(c.clone(), client.url("/v1/query/db-q/execute")).await;
    assert_eq!((v["Datacenter"].as_str(), v["Failovers"].as_u64()), (Some("dc2"), Some(1)), "{v}");
    assert_eq!(v["Nodes"][0]["Node"]["Node"], "ext-dc2");
    let m = crate::dns::udp(dns, "db-q.query.consul.", hickory_proto::rr::RecordType::A).await;
    let ips: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(ips, ["10.2.0.1"], "{m:?}");
    // A healthy local instance is answered at home; a critical one fails over again.
    let local = json!({"Node": "ext-dc1", "Address": "10.1.0.1", "Service": {"Service": "db"},
        "Check": {"Name": "db-alive", "Status": "passing", "ServiceID": "db"}});
    assert_eq!(c.put(s1.url("/v1/catalog/register")).json(&local).send().await.unwrap().status(), 200);
    let v = run(c.clone(), client.url("/v1/query/db-q/execute")).await;
    assert_eq!((v["Datacenter"].as_str(), v["Failovers"].as_u64()), (Some("dc1"), Some(0)), "{v}");
    let mut down = local.clone();
    down["Check"]["Status"] = json!("critical");
    assert_eq!(c.put(s1.url("/v1/catalog/register")).json(&down).send().await.unwrap().status(), 200);
    let v = run(c.clone(), client.url("/v1/query/db-q/execute")).await;
    assert_eq!(
        (v["Datacenter"].as_str(), v["Nodes"][0]["Node"]["Node"].as_str()),
        (Some("dc2"), Some("ext-dc2")),
        "{v}"
    );

    // translate_wan_addrs (on the client): another datacenter's nodes and services come with
    // their WAN addresses, and the answer says so; the datacenter's own view is untranslated.
    let edge = json!({"Node": "edge-dc2", "Address": "10.2.0.5", "TaggedAddresses": {"wan": "192.0.2.5"},
        "Service": {"Service": "edge", "Address": "10.2.0.6", "TaggedAddresses": {"wan": {"Address": "192.0.2.6", "Port": 80}}}});
    assert_eq!(c.put(s2.url("/v1/catalog/register")).json(&edge).send().await.unwrap().status(), 200);
    let r = c.get(client.url("/v1/catalog/service/edge?dc=dc2")).send().await.unwrap();
    assert_eq!(r.headers().get("x-consul-translate-addresses").map(|v| v.to_str().unwrap()), Some("true"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v[0]["Address"].as_str(), v[0]["ServiceAddress"].as_str()),
        (Some("192.0.2.5"), Some("192.0.2.6")),
        "{v}"
    );
    let v = get(&c, client.url("/v1/health/service/edge?dc=dc2")).await.unwrap();
    assert_eq!(
        (v[0]["Node"]["Address"].as_str(), v[0]["Service"]["Address"].as_str()),
        (Some("192.0.2.5"), Some("192.0.2.6"))
    );
    let v = get(&c, s2.url("/v1/catalog/service/edge")).await.unwrap();
    assert_eq!(v[0]["Address"], "10.2.0.5");

    // WAN coordinates: legate rtt -wan between servers of the two datacenters.
    let http = format!("-http-addr={}", s1.http.unwrap());
    let out = retry_until(Duration::from_secs(30), "a WAN round-trip estimate", || async {
        let (code, out, _) = run_legate_with(&["rtt", "-wan", &http, "s2.dc2", "s1.dc1"], &[], None);
        (code == 0).then_some(out)
    })
    .await;
    assert!(out.starts_with("Estimated s2.dc2 <-> s1.dc1 rtt: ") && out.contains("(using WAN coordinates)"), "{out}");
    let dcs = get(&c, s2.url("/v1/coordinate/datacenters")).await.unwrap();
    assert_eq!(dcs.as_array().unwrap().len(), 2, "{dcs}");

    // The keyring of both datacenters and the WAN pool, asked of one server; a new key
    // installed there reaches every pool, dc2's client agent included.
    let pools = get(&c, s1.url("/v1/operator/keyring")).await.unwrap();
    let summary: Vec<(bool, String, u64)> = pools
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["WAN"].as_bool().unwrap(),
                p["Datacenter"].as_str().unwrap().to_string(),
                p["NumNodes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(true, String::new(), 6), (false, "dc1".into(), 4), (false, "dc2".into(), 4)], "{pools}");
    let (_, k2, _) = run_legate_with(&["keygen"], &[], None);
    let k2 = k2.trim().to_string();
    let r = c.post(s1.url("/v1/operator/keyring")).json(&json!({"Key": k2})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    retry_until(Duration::from_secs(20), "k2 everywhere", || async {
        let pools = get(&c, s1.url("/v1/operator/keyring")).await?;
        pools.as_array()?.iter().all(|p| p["Keys"][&k2] == p["NumNodes"]).then_some(())
    })
    .await;
    let lan2 = get(&c, c2.url("/v1/operator/keyring")).await.unwrap();
    assert_eq!(lan2[0]["Keys"][&k2], 4, "{lan2}");

    // dc2's client reads dc1 the same way.
    let r = c.get(c2.url("/v1/kv/fed/key?dc=dc1")).send().await.unwrap();
    assert_eq!(r.status(), 404, "the key is in dc2 only");
    let r = c.get(c2.url("/v1/kv/fed/key?raw")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "changed");

    // The node of dc1's instance goes away (its agent is killed: serfHealth turns critical):
    // the query fails over to dc2 again, through DNS too.
    let r = c
        .put(client.url("/v1/agent/service/register"))
        .json(&json!({"Name": "db", "Port": 5432}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    retry_until(Duration::from_secs(20), "c1's db answers at home", || async {
        let v = get(&c, s1.url("/v1/query/db-q/execute")).await?;
        (v["Datacenter"] == "dc1" && v["Nodes"].as_array()?.iter().any(|n| n["Node"]["Node"] == "c1")).then_some(())
    })
    .await;
    client.signal(libc::SIGKILL);
    let _ = client.wait_exit(Duration::from_secs(5));
    retry_until(Duration::from_secs(30), "failover once c1 is gone", || async {
        let v = get(&c, s1.url("/v1/query/db-q/execute")).await?;
        (v["Datacenter"] == "dc2" && v["Failovers"] == 1).then_some(())
    })
    .await;

    // An unknown datacenter is Consul's 500.
    let r = c.get(c2.url("/v1/kv/fed/key?dc=dc9")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.text().await.unwrap().as_str()), (500, "No path to datacenter"));

    // dc2 sees dc1's server fail on the WAN.
    s1.signal(libc::SIGKILL);
    let killed = Instant::now();
    retry_until(Duration::from_secs(60), "s1.dc1 failed in dc2's WAN view", || async {
        let m = get(&c, s2.url("/v1/agent/members?wan=1")).await?;
        m.as_array()?.iter().any(|m| m["Name"] == "s1.dc1" && m["Status"] == 4).then_some(())
    })
    .await;
    eprintln!("dc2 saw s1.dc1 fail {:?} after SIGKILL", killed.elapsed());
    let _ = s1.wait_exit(Duration::from_secs(5));
    drop((client, s2, c2));
}

const MGMT: &str = "0f6e3a2c-5a3f-4d7e-9c41-7b2f1d0e8a11";

/// `path` with `config` written into the agent's directory as its config file.
fn acl_config(dir: &tempfile::TempDir, config: &str) -> String {
    let file = dir.path().join("acl.hcl");
    std::fs::write(&file, config).unwrap();
    file.display().to_string()
}

async fn call(c: &Client, method: &str, url: String, token: Option<&str>, body: Option<Value>) -> (u16, String) {
    let mut r = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(t) = token {
        r = r.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A primary (dc1) and a secondary (dc2) with ACLs on, one server each on `ips`, the secondary
/// joining the primary on the WAN and replicating with the management token (tokens too with
/// `token_replication`). The directories live as long as the agents.
/// Makes the `kv-read` policy and a global token with it in the primary; its secret.
async fn kv_reader(c: &Client, primary: &AgentProcess) -> String {
    let rules = json!({"Name": "kv-read", "Rules": "key_prefix \"\" { policy = \"read\" }"});
    let (s, body) = call(c, "PUT", primary.url("/v1/acl/policy"), Some(MGMT), Some(rules)).await;
    assert_eq!(s, 200, "{body}");
    let token = json!({"Policies": [{"Name": "kv-read"}]});
    let (s, body) = call(c, "PUT", primary.url("/v1/acl/token"), Some(MGMT), Some(token)).await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["SecretID"].as_str().unwrap().to_string()
}

async fn acl_datacenters(
    ips: [&str; 2],
    token_replication: bool,
) -> (AgentProcess, AgentProcess, Vec<tempfile::TempDir>) {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let primary_cfg = acl_config(
        &dirs[0],
        &format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n  tokens {{ initial_management = \"{MGMT}\" }}\n}}\n"),
    );
    let secondary_cfg = acl_config(
        &dirs[1],
        &format!(
            "primary_datacenter = \"dc1\"\nacl {{\n  enabled = true\n  default_policy = \"deny\"\n  enable_token_replication = {token_replication}\n  tokens {{ replication = \"{MGMT}\" }}\n}}\n"
        ),
    );
    let s1 =
        start(ips[0], "p1", &dirs[0], &["-server", "-bootstrap", "-datacenter", "dc1", "-config-file", &primary_cfg]);
    let wan = ["-retry-join-wan", ips[0], "-retry-interval-wan", "1s"];
    let mut extra = vec!["-server", "-bootstrap", "-datacenter", "dc2", "-config-file", &secondary_cfg];
    extra.extend(wan);
    let s2 = start(ips[1], "q1", &dirs[1], &extra);
    for a in [&s1, &s2] {
        legate_tests::wait_leader(&a.url("")).await;
    }
    (s1, s2, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_replicate_to_the_secondary_and_keep_working_without_the_primary() {
    let c = Client::new();
    let (mut s1, s2, _dirs) = acl_datacenters(["127.0.13.1", "127.0.13.2"], true).await;

    // The management token reaches the secondary by replication (it was never configured there).
    retry_until(Duration::from_secs(30), "management token replicated", || async {
        let (s, _) = call(&c, "GET", s2.url("/v1/acl/token/self"), Some(MGMT), None).await;
        (s == 200).then_some(())
    })
    .await;
    let status: Value =
        serde_json::from_str(&call(&c, "GET", s2.url("/v1/acl/replication"), None, None).await.1).unwrap();
    assert_eq!((status["Enabled"].as_bool(), status["Running"].as_bool()), (Some(true), Some(true)), "{status}");
    assert_eq!(
        (status["SourceDatacenter"].as_str(), status["ReplicationType"].as_str()),
        (Some("dc1"), Some("tokens"))
    );
    assert!(status["ReplicatedTokenIndex"].as_u64().unwrap() > 0, "{status}");
    let primary_status: Value =
        serde_json::from_str(&call(&c, "GET", s1.url("/v1/acl/replication"), None, None).await.1).unwrap();
    assert_eq!(primary_status["Enabled"], false);

    // A policy and a token made in the primary work in the secondary.
    let reader_secret = kv_reader(&c, &s1).await;
    retry_until(Duration::from_secs(30), "the token works in dc2", || async {
        let (s, _) = call(&c, "GET", s2.url("/v1/kv/anything"), Some(&reader_secret), None).await;
        (s == 404).then_some(())
    })
    .await;
    assert_eq!(call(&c, "GET", s2.url("/v1/kv/anything"), None, None).await.0, 403, "anonymous is still denied");

    // A policy written in the secondary is the primary's; a local token stays in the secondary.
    let (s, body) =
        call(&c, "PUT", s2.url("/v1/acl/policy"), Some(MGMT), Some(json!({"Name": "from-dc2", "Rules": ""}))).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = call(&c, "GET", s1.url("/v1/acl/policy/name/from-dc2"), Some(MGMT), None).await;
    assert_eq!(s, 200, "written in the primary");
    let (s, body) = call(
        &c,
        "PUT",
        s2.url("/v1/acl/token"),
        Some(MGMT),
        Some(json!({"Local": true, "Description": "dc2 only", "Policies": [{"Name": "kv-read"}]})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let local: Value = serde_json::from_str(&body).unwrap();
    let local_id = local["AccessorID"].as_str().unwrap();
    assert_eq!(call(&c, "GET", s1.url(&format!("/v1/acl/token/{local_id}")), Some(MGMT), None).await.0, 403);
    // A replication round later it is still there.
    let (s, _) =
        call(&c, "PUT", s1.url("/v1/acl/policy"), Some(MGMT), Some(json!({"Name": "tick", "Rules": ""}))).await;
    assert_eq!(s, 200);
    retry_until(Duration::from_secs(30), "the next round", || async {
        let (s, _) = call(&c, "GET", s2.url("/v1/acl/policy/name/tick"), Some(MGMT), None).await;
        (s == 200).then_some(())
    })
    .await;
    assert_eq!(call(&c, "GET", s2.url(&format!("/v1/acl/token/{local_id}")), Some(MGMT), None).await.0, 200);

    // The primary goes away: what was replicated keeps working, and the status says why not.
    s1.signal(libc::SIGKILL);
    let _ = s1.wait_exit(Duration::from_secs(5));
    assert_eq!(call(&c, "GET", s2.url("/v1/kv/anything"), Some(&reader_secret), None).await.0, 404);
    retry_until(Duration::from_secs(90), "replication reports the failure", || async {
        let status: Value =
            serde_json::from_str(&call(&c, "GET", s2.url("/v1/acl/replication"), None, None).await.1).ok()?;
        (!status["LastErrorMessage"].as_str()?.is_empty()).then_some(())
    })
    .await;
    assert_eq!(call(&c, "GET", s2.url("/v1/kv/anything"), Some(&reader_secret), None).await.0, 404);
}

/// A secondary that replicates policies but not tokens resolves global tokens in the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_replication_the_secondary_asks_the_primary() {
    let c = Client::new();
    let (s1, s2, _dirs) = acl_datacenters(["127.0.15.1", "127.0.15.2"], false).await;
    let secret = kv_reader(&c, &s1).await;
    retry_until(Duration::from_secs(30), "the token resolves in dc2 through dc1", || async {
        let (s, _) = call(&c, "GET", s2.url("/v1/kv/anything"), Some(&secret), None).await;
        (s == 404).then_some(())
    })
    .await;
    let status: Value =
        serde_json::from_str(&call(&c, "GET", s2.url("/v1/acl/replication"), None, None).await.1).unwrap();
    assert_eq!(status["ReplicationType"], "policies");
    // Tokens are not copied: dc2's store does not have it, dc1 answered.
    let (s, _) = call(&c, "GET", s2.url("/v1/kv/anything"), None, None).await;
    assert_eq!(s, 403, "anonymous is denied");
    let (s, text) =
        call(&c, "GET", s2.url("/v1/kv/anything"), Some("6c0a5c48-0000-4000-8000-000000000000"), None).await;
    assert_eq!((s, text.as_str()), (403, "ACL not found"));
}
