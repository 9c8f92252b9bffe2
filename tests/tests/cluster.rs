//! Real clusters of agent processes on loopback addresses with Consul's default ports: three
//! servers with `-bootstrap-expect 3` and a client agent joined by `-retry-join`.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};

fn agent_args(ip: &str, name: &str, dir: &str, server: bool, join: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "agent",
        "-node",
        name,
        "-bind",
        ip,
        "-client",
        ip,
        "-data-dir",
        dir,
        "-retry-join",
        join,
        "-retry-interval",
        "1s",
        "-dns-port",
        "-1",
        "-serf-lan-port",
        "8301",
        "-http-port",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if server {
        v.extend(["-server", "-bootstrap-expect", "3"].iter().map(|s| s.to_string()));
    }
    v
}

fn start(ip: &str, name: &str, dir: &tempfile::TempDir, server: bool, join: &str) -> AgentProcess {
    let args = agent_args(ip, name, dir.path().to_str().unwrap(), server, join);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(&args, &[])
}

async fn get(c: &Client, url: String) -> Option<Value> {
    c.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_a_client_form_one_cluster() {
    let c = Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips = ["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"];
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(start(ips[i], &format!("s{}", i + 1), &dirs[i], true, ips[0]));
    }
    agents.push(start(ips[3], "c1", &dirs[3], false, ips[0]));

    // A leader is elected once all three servers see each other, and every agent knows it.
    let leader = retry_until(Duration::from_secs(30), "leader known to the client", || async {
        let l = get(&c, agents[3].url("/v1/status/leader")).await?;
        l.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    })
    .await;
    for a in &agents[..3] {
        let peers = retry_until(Duration::from_secs(15), "three peers", || async {
            let p = get(&c, a.url("/v1/status/peers")).await?;
            (p.as_array()?.len() == 3).then_some(p)
        })
        .await;
        assert!(peers.as_array().unwrap().iter().any(|p| p == &json!(leader)));
    }
    let members = retry_until(Duration::from_secs(15), "four alive members", || async {
        let m = get(&c, agents[3].url("/v1/agent/members")).await?;
        (m.as_array()?.iter().filter(|m| m["Status"] == 1).count() == 4).then_some(m)
    })
    .await;
    let client = members.as_array().unwrap().iter().find(|m| m["Name"] == "c1").unwrap();
    assert_eq!(client["Tags"]["role"], "node");
    assert_eq!(client["Addr"], "127.0.1.4");

    // A write through the client is readable on every server.
    let r = c.put(agents[3].url("/v1/kv/cluster/k")).body("through-client").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    for a in &agents[..3] {
        retry_until(Duration::from_secs(10), "replicated", || async {
            let v = c.get(a.url("/v1/kv/cluster/k?raw&stale")).send().await.ok()?.text().await.ok()?;
            (v == "through-client").then_some(())
        })
        .await;
    }

    // A service registered on the client is in the server's catalog, with serfHealth.
    let r = c
        .put(agents[3].url("/v1/agent/service/register"))
        .json(&json!({"Name": "web", "Port": 80, "Check": {"TTL": "60s", "Status": "passing"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    retry_until(Duration::from_secs(15), "client's service passing on a server", || async {
        let v = get(&c, agents[0].url("/v1/health/service/web?passing")).await?;
        let e = v.as_array()?.first()?.clone();
        (e["Node"]["Node"] == "c1" && e["Checks"].as_array()?.iter().any(|k| k["CheckID"] == "serfHealth"))
            .then_some(())
    })
    .await;

    // An event fired on one server is listed on every agent, once.
    let r = c.put(agents[0].url("/v1/event/fire/deploy")).body("v2").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let fired: Value = r.json().await.unwrap();
    assert_eq!(fired["Name"], "deploy");
    for a in &agents {
        retry_until(Duration::from_secs(15), "event everywhere", || async {
            let l = get(&c, a.url("/v1/event/list?name=deploy")).await?;
            let l = l.as_array()?.clone();
            (l.len() == 1 && l[0]["ID"] == fired["ID"] && l[0]["Payload"] == "djI=").then_some(())
        })
        .await;
    }

    // The client dies: it is seen as failed and its serfHealth goes critical.
    agents[3].signal(libc::SIGKILL);
    let killed = Instant::now();
    retry_until(Duration::from_secs(30), "client failed", || async {
        let m = get(&c, agents[0].url("/v1/agent/members")).await?;
        m.as_array()?.iter().any(|m| m["Name"] == "c1" && m["Status"] == 4).then_some(())
    })
    .await;
    eprintln!("client seen failed {:?} after SIGKILL", killed.elapsed());
    retry_until(Duration::from_secs(15), "serfHealth critical", || async {
        let v = get(&c, agents[0].url("/v1/health/node/c1")).await?;
        v.as_array()?.iter().any(|k| k["CheckID"] == "serfHealth" && k["Status"] == "critical").then_some(())
    })
    .await;

    // The leader dies: the other two elect a new one that serves writes.
    let leader_idx = (0..3).find(|&i| leader.starts_with(&format!("{}:", ips[i]))).expect("leader is a server");
    agents[leader_idx].signal(libc::SIGKILL);
    let killed = Instant::now();
    let survivor = (0..3).find(|&i| i != leader_idx).unwrap();
    retry_until(Duration::from_secs(30), "write after leader loss", || async {
        let r = c.put(agents[survivor].url("/v1/kv/cluster/after")).body("x").send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    eprintln!("new leader served a write {:?} after the leader's SIGKILL", killed.elapsed());
}
