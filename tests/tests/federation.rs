//! Two datacenters federated over the WAN gossip pool: a server and a client agent in dc1, a
//! server in dc2 joining dc1's server on the WAN (`-retry-join-wan`). `?dc=` calls from dc1
//! are answered by dc2's server, blocking queries included; `members -wan` lists both servers.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, run_legate_with, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};

fn start(ip: &str, name: &str, dir: &tempfile::TempDir, extra: &[&str]) -> AgentProcess {
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
    AgentProcess::start(&args, &[])
}

async fn get(c: &Client, url: String) -> Option<Value> {
    let r = c.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_datacenters_answer_each_others_calls() {
    let c = Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut s1 = start("127.0.12.1", "s1", &dirs[0], &["-server", "-bootstrap", "-datacenter", "dc1"]);
    let dns_port = std::net::UdpSocket::bind("127.0.12.2:0").unwrap().local_addr().unwrap().port();
    let client = start(
        "127.0.12.2",
        "c1",
        &dirs[1],
        &["-datacenter", "dc1", "-retry-join", "127.0.12.1", "-dns-port", &dns_port.to_string()],
    );
    let s2 = start(
        "127.0.12.3",
        "s2",
        &dirs[2],
        &["-server", "-bootstrap", "-datacenter", "dc2", "-retry-join-wan", "127.0.12.1", "-retry-interval-wan", "1s"],
    );
    for a in [&s1, &s2] {
        legate_tests::wait_leader(&a.url("")).await;
    }

    // The WAN pool: both servers, named <node>.<dc>, seen from either side.
    for a in [&s1, &s2] {
        retry_until(Duration::from_secs(20), "both servers in the WAN pool", || async {
            let m = get(&c, a.url("/v1/agent/members?wan=1")).await?;
            let names: Vec<&str> =
                m.as_array()?.iter().filter(|m| m["Status"] == 1).filter_map(|m| m["Name"].as_str()).collect();
            (names.contains(&"s1.dc1") && names.contains(&"s2.dc2")).then_some(())
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

    // An unknown datacenter is Consul's 500.
    let r = c.get(client.url("/v1/kv/fed/key?dc=dc9")).send().await.unwrap();
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
    drop((client, s2));
}
