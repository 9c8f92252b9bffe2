//! Real clusters of agent processes on loopback addresses with Consul's default ports: three
//! servers with `-bootstrap-expect 3` and a client agent joined by `-retry-join`.

use std::time::{Duration, Instant};

use legate_tests::{retry_until, run_legate, run_legate_with, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};

fn start(ip: &str, name: &str, dir: &tempfile::TempDir, server: bool, join: &str) -> AgentProcess {
    let args = legate_tests::cluster_agent_args(ip, name, dir.path().to_str().unwrap(), server, join);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A short hold: a blocking query a follower passes to the leader must still wait its whole
    // wait, however short the RPC hold timeout.
    AgentProcess::start(&args, &[("LEGATE_PERFORMANCE__RPC_HOLD_TIMEOUT", "1s")])
}

fn http_of(a: &AgentProcess) -> String {
    format!("-http-addr={}", a.http.unwrap())
}

async fn get(c: &Client, url: String) -> Option<Value> {
    c.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_a_client_form_one_cluster() {
    let c = Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips = ["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.1.5"];
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(start(ips[i], &format!("s{}", i + 1), &dirs[i], true, ips[0]));
    }
    agents.push(start(ips[3], "c1", &dirs[3], false, ips[0]));
    let mut c2 = start(ips[4], "c2", &dirs[4], false, ips[1]);

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
    let members = retry_until(Duration::from_secs(15), "five alive members", || async {
        let m = get(&c, agents[3].url("/v1/agent/members")).await?;
        (m.as_array()?.iter().filter(|m| m["Status"] == 1).count() == 5).then_some(m)
    })
    .await;

    // A graceful leave: `legate leave` stops c2, the others list it as left and the leader
    // deregisters its node.
    retry_until(Duration::from_secs(15), "c2 in the catalog", || async {
        let v = get(&c, agents[0].url("/v1/catalog/node/c2")).await?;
        (!v.is_null()).then_some(())
    })
    .await;
    let (code, out, err) = run_legate_with(&["leave", &format!("-http-addr={}", c2.http.unwrap())], &[], None);
    assert_eq!((code, out.trim()), (0, "Graceful leave complete"), "{err}");
    assert_eq!(c2.wait_exit(Duration::from_secs(20)), Some(0), "{}", c2.output());
    retry_until(Duration::from_secs(15), "c2 left", || async {
        let m = get(&c, agents[0].url("/v1/agent/members")).await?;
        m.as_array()?.iter().any(|m| m["Name"] == "c2" && m["Status"] == 3).then_some(())
    })
    .await;
    retry_until(Duration::from_secs(15), "c2 deregistered", || async {
        let v = get(&c, agents[0].url("/v1/catalog/node/c2")).await?;
        v.is_null().then_some(())
    })
    .await;
    let client = members.as_array().unwrap().iter().find(|m| m["Name"] == "c1").unwrap();
    assert_eq!(client["Tags"]["role"], "node");
    assert_eq!(client["Addr"], "127.0.1.4");

    // A blocking query on a follower is answered by the leader, for its whole wait (longer
    // than the 1 s hold timeout) and woken by a write.
    let follower_idx = (0..3).find(|&i| !leader.starts_with(&format!("{}:", ips[i]))).unwrap();
    let r = c.put(agents[0].url("/v1/kv/cluster/blocking")).body("v1").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let r = c.get(agents[follower_idx].url("/v1/kv/cluster/blocking")).send().await.unwrap();
    let index: u64 = r.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    let url = agents[follower_idx].url(&format!("/v1/kv/cluster/blocking?index={index}&wait=6s"));
    let waiting = tokio::spawn({
        let c = c.clone();
        async move {
            let asked = Instant::now();
            let r = c.get(url).send().await.unwrap();
            (
                asked.elapsed(),
                r.status().as_u16(),
                r.headers()["x-consul-index"].to_str().unwrap().parse::<u64>().unwrap(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = c.put(agents[0].url("/v1/kv/cluster/blocking")).body("v2").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let (took, status, new_index) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(new_index > index && took >= Duration::from_millis(2400) && took < Duration::from_secs(6), "{took:?}");

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

    // ?consistent reads on every agent are answered by the leader.
    for a in &agents[..4] {
        let r = c.get(a.url("/v1/kv/cluster/k?raw&consistent")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-consul-effective-consistency"], "consistent");
        assert_eq!(r.text().await.unwrap(), "through-client");
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

    // The CLI sees the same cluster.
    let http = format!("-http-addr={}", agents[3].http.unwrap());
    let (code, out, err) = run_legate_with(&["members", &http], &[], None);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Node") && lines[0].contains("Segment"), "{out}");
    assert_eq!(lines.len(), 6, "{out}");
    assert!(out.lines().any(|l| l.starts_with("c1 ") && l.contains("alive") && l.contains("client")), "{out}");
    let (code, out, err) = run_legate_with(&["operator", "raft", "list-peers", &http], &[], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.contains("leader")).count(), 1, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("follower")).count(), 2, "{out}");
    assert!(out.lines().any(|l| l.starts_with("s1 ")), "{out}");
    let (code, out, _) = run_legate_with(&["info", &http], &[], None);
    assert_eq!(code, 0);
    assert!(out.contains("serf_lan:") && out.contains("agent:"), "{out}");

    // Autopilot's health, asked of the client agent (answered by the leader): three healthy
    // voters, one may fail.
    let health = retry_until(Duration::from_secs(20), "autopilot healthy", || async {
        let r = c.get(agents[3].url("/v1/operator/autopilot/health")).send().await.ok()?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.ok()?;
        (status == 200 && v["Healthy"] == true).then_some(v)
    })
    .await;
    assert_eq!(health["FailureTolerance"], 1, "{health}");
    let servers = health["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{health}");
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1, "{health}");
    assert!(servers.iter().all(|s| s["Voter"] == true && s["SerfStatus"] == "alive"), "{health}");
    let state = get(&c, agents[1].url("/v1/operator/autopilot/state")).await.unwrap();
    assert_eq!(state["Voters"].as_array().unwrap().len(), 3, "{state}");
    assert_eq!(state["Servers"][state["Leader"].as_str().unwrap()]["Status"], "leader", "{state}");

    // Leadership handed over on request, asked of the client agent: to a named follower, then
    // (the CLI) to the most up-to-date other server. Writes go on.
    let index_of = |addr: &str| (0..3).find(|&i| addr.starts_with(&format!("{}:", ips[i]))).expect("a server");
    let current = |c: Client, url: String| async move { get(&c, url).await?.as_str().map(str::to_string) };
    let before = index_of(&current(c.clone(), agents[3].url("/v1/status/leader")).await.unwrap());
    let target = (0..3).find(|&i| i != before).unwrap();
    let target_id =
        get(&c, agents[target].url("/v1/agent/self")).await.unwrap()["Config"]["NodeID"].as_str().unwrap().to_string();
    let r = c.post(agents[3].url(&format!("/v1/operator/raft/transfer-leader?id={target_id}"))).send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, r#"{"Success":true}"#));
    for a in &agents[..4] {
        retry_until(Duration::from_secs(10), "the target leads everywhere", || async {
            (index_of(&current(c.clone(), a.url("/v1/status/leader")).await?) == target).then_some(())
        })
        .await;
    }
    let (code, out, err) = run_legate_with(&["operator", "raft", "transfer-leader", &http_of(&agents[3])], &[], None);
    assert_eq!((code, out.trim()), (0, "Success"), "{err}");
    let after = retry_until(Duration::from_secs(10), "leadership moved again", || async {
        let l = index_of(&current(c.clone(), agents[3].url("/v1/status/leader")).await?);
        (l != target).then_some(l)
    })
    .await;
    let r = c.put(agents[3].url("/v1/kv/cluster/after-transfer")).body("x").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let leader = get(&c, agents[after].url("/v1/status/leader")).await.unwrap().as_str().unwrap().to_string();

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

    // A lock held by a session on the client...
    let r = c.put(agents[3].url("/v1/session/create")).json(&json!({"LockDelay": "2s"})).send().await.unwrap();
    let client_session = r.json::<Value>().await.unwrap()["ID"].as_str().unwrap().to_string();
    let r = c.put(agents[3].url(&format!("/v1/kv/cluster/lock?acquire={client_session}"))).send().await.unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "true");
    let r = c.put(agents[0].url("/v1/session/create")).json(&json!({})).send().await.unwrap();
    let server_session = r.json::<Value>().await.unwrap()["ID"].as_str().unwrap().to_string();

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

    // ...is released by the invalidation (serfHealth critical), and another session gets it
    // once the lock-delay has passed.
    retry_until(Duration::from_secs(15), "lock released", || async {
        let v = get(&c, agents[0].url("/v1/kv/cluster/lock")).await?;
        v[0].get("Session").is_none().then_some(())
    })
    .await;
    let released = Instant::now();
    retry_until(Duration::from_secs(15), "acquired after the lock-delay", || async {
        let r = c.put(agents[0].url(&format!("/v1/kv/cluster/lock?acquire={server_session}"))).send().await.ok()?;
        (r.text().await.ok()?.trim() == "true").then_some(())
    })
    .await;
    assert!(released.elapsed() >= Duration::from_millis(1500), "lock-delay honoured: {:?}", released.elapsed());

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

    // Autopilot removes the dead server from Raft once it has been failed for
    // server_stabilization_time (10 s).
    retry_until(Duration::from_secs(45), "dead server removed from the peers", || async {
        let p = get(&c, agents[survivor].url("/v1/status/peers")).await?;
        (p.as_array()?.len() == 2).then_some(())
    })
    .await;
    eprintln!("dead server removed from Raft {:?} after its SIGKILL", killed.elapsed());

    // The old leader restarts with its data dir, rejoins as a follower, is a voter again and
    // catches up.
    agents[leader_idx].wait_exit(Duration::from_secs(5));
    let name = format!("s{}", leader_idx + 1);
    let restarted = start(ips[leader_idx], &name, &dirs[leader_idx], true, ips[survivor]);
    retry_until(Duration::from_secs(30), "restarted server caught up", || async {
        let v = c.get(restarted.url("/v1/kv/cluster/after?raw&stale")).send().await.ok()?.text().await.ok()?;
        (v == "x").then_some(())
    })
    .await;
    let old = c.get(restarted.url("/v1/kv/cluster/k?raw&stale")).send().await.unwrap().text().await.unwrap();
    assert_eq!(old, "through-client");
    retry_until(Duration::from_secs(30), "three peers again", || async {
        let p = get(&c, agents[survivor].url("/v1/status/peers")).await?;
        (p.as_array()?.len() == 3).then_some(())
    })
    .await;
    let leader_now = get(&c, restarted.url("/v1/status/leader")).await.unwrap();
    assert!(!leader_now.as_str().unwrap().starts_with(&format!("{}:", ips[leader_idx])), "rejoined as follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_gossip_key_cannot_join_and_retry_max_exits() {
    let (code, k1, _) = run_legate(&["keygen"]);
    assert_eq!(code, 0);
    let (_, k2, _) = run_legate(&["keygen"]);
    let (k1, k2) = (k1.trim().to_string(), k2.trim().to_string());
    assert_eq!(k1.len(), 44);
    assert_ne!(k1, k2);
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    // The first agent: a server of its own, with key 1.
    let mut args1 = legate_tests::loopback_agent_args("127.0.2.1", "k1", d1.path().to_str().unwrap());
    args1.extend(["-server", "-bootstrap", "-encrypt", &k1].map(String::from));
    let args1: Vec<&str> = args1.iter().map(String::as_str).collect();
    let first = AgentProcess::start(&args1, &[]);
    // The second has key 2: its joins are refused, and after -retry-max it exits 1.
    let mut args2 = legate_tests::loopback_agent_args("127.0.2.2", "k2", d2.path().to_str().unwrap());
    args2.extend(
        ["-retry-join", "127.0.2.1", "-retry-interval", "200ms", "-retry-max", "3", "-encrypt", &k2].map(String::from),
    );
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    let mut second = AgentProcess::spawn(&args2, &[]);
    assert_eq!(second.wait_exit(Duration::from_secs(60)), Some(1), "{}", second.output());
    assert!(second.output().contains("max join retry exhausted"), "{}", second.output());
    let c = Client::new();
    let m = get(&c, first.url("/v1/agent/members")).await.unwrap();
    assert_eq!(m.as_array().unwrap().len(), 1, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_changes_reach_every_member_and_counts_come_from_their_answers() {
    let (_, k1, _) = run_legate(&["keygen"]);
    let (_, k2, _) = run_legate(&["keygen"]);
    let (k1, k2) = (k1.trim().to_string(), k2.trim().to_string());
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents = Vec::new();
    for (i, ip) in ["127.0.3.1", "127.0.3.2"].iter().enumerate() {
        let args: Vec<String> = [
            "agent",
            "-node",
            &format!("r{i}"),
            "-bind",
            ip,
            "-client",
            ip,
            "-data-dir",
            dirs[i].path().to_str().unwrap(),
            "-retry-join",
            "127.0.3.1",
            "-retry-interval",
            "500ms",
            "-dns-port",
            "-1",
            "-serf-lan-port",
            "8301",
            "-http-port",
            "0",
            "-encrypt",
            &k1,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agents.push(AgentProcess::start(&args, &[]));
    }
    let c = Client::new();
    retry_until(Duration::from_secs(20), "two members", || async {
        let m = get(&c, agents[1].url("/v1/agent/members")).await?;
        (m.as_array()?.iter().filter(|m| m["Status"] == 1).count() == 2).then_some(())
    })
    .await;
    let keys_of = |i: usize| {
        let url = agents[i].url("/v1/operator/keyring");
        let c = c.clone();
        async move {
            let v = get(&c, url).await?;
            let mut keys: Vec<String> = v[0]["Keys"].as_object()?.keys().cloned().collect();
            keys.sort();
            Some(keys)
        }
    };
    // Install, use, remove on agent 0: agent 1 follows.
    let r = c.post(agents[0].url("/v1/operator/keyring")).json(&json!({"Key": k2})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut both = vec![k1.clone(), k2.clone()];
    both.sort();
    retry_until(Duration::from_secs(10), "k2 installed everywhere", || async {
        (keys_of(1).await? == both).then_some(())
    })
    .await;
    // The counts come from each member's answer: a key installed on one member only
    // (?local-only) counts once, the others twice.
    let (_, k3, _) = run_legate(&["keygen"]);
    let k3 = k3.trim().to_string();
    let r = c.post(agents[1].url("/v1/operator/keyring?local-only=1")).json(&json!({"Key": k3})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v = get(&c, agents[0].url("/v1/operator/keyring")).await.unwrap();
    assert_eq!(v[0]["NumNodes"], 2, "{v}");
    assert_eq!(
        (v[0]["Keys"][&k1].as_u64(), v[0]["Keys"][&k2].as_u64(), v[0]["Keys"][&k3].as_u64()),
        (Some(2), Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v[0]["PrimaryKeys"][&k1], 2, "{v}");
    let r =
        c.delete(agents[1].url("/v1/operator/keyring?local-only=1")).json(&json!({"Key": k3})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.put(agents[0].url("/v1/operator/keyring")).json(&json!({"Key": k2})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c.delete(agents[0].url("/v1/operator/keyring")).json(&json!({"Key": k1})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    retry_until(Duration::from_secs(10), "k1 removed everywhere", || async {
        (keys_of(1).await? == vec![k2.clone()]).then_some(())
    })
    .await;
    // Still one cluster on the new key.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = get(&c, agents[0].url("/v1/agent/members")).await.unwrap();
    assert_eq!(m.as_array().unwrap().iter().filter(|m| m["Status"] == 1).count(), 2, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_leader_change_and_expire_on_time() {
    let c = Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips = ["127.0.5.1", "127.0.5.2", "127.0.5.3"];
    let mut agents: Vec<AgentProcess> =
        (0..3).map(|i| start(ips[i], &format!("t{}", i + 1), &dirs[i], true, ips[0])).collect();
    let leader = retry_until(Duration::from_secs(30), "leader", || async {
        let l = get(&c, agents[0].url("/v1/status/leader")).await?;
        l.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    })
    .await;
    let leader_idx = (0..3).find(|&i| leader.starts_with(&format!("{}:", ips[i]))).unwrap();
    let follower = (0..3).find(|&i| i != leader_idx).unwrap();

    // `legate lock` through three different agents: one child at a time.
    for a in &agents {
        let name = a.url("/v1/health/node/").split("//").nth(1).unwrap().split(':').next().unwrap().to_string();
        let node = format!("t{}", ips.iter().position(|ip| *ip == name).unwrap() + 1);
        retry_until(Duration::from_secs(20), "serfHealth of every node", || async {
            let v = get(&c, agents[0].url(&format!("/v1/health/node/{node}"))).await?;
            v.as_array()?.iter().any(|k| k["CheckID"] == "serfHealth" && k["Status"] == "passing").then_some(())
        })
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("work").display().to_string();
    let script =
        format!("if [ -e {f}.busy ]; then echo overlap >> {f}.err; fi; touch {f}.busy; echo x >> {f}.log; sleep 0.5; rm {f}.busy");
    let threads: Vec<_> = agents
        .iter()
        .map(|a| {
            let http = format!("-http-addr={}", a.http.unwrap());
            let script = script.clone();
            std::thread::spawn(move || run_legate_with(&["lock", &http, "cluster/leader", &script], &[], None))
        })
        .collect();
    for t in threads {
        let (code, _, err) = t.join().unwrap();
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(std::fs::read_to_string(format!("{f}.log")).unwrap().lines().count(), 3);
    assert!(!std::path::Path::new(&format!("{f}.err")).exists(), "two children at once across agents");

    // Sessions on a follower's node: one with a TTL, one without.
    let create = |body: Value| {
        let c = c.clone();
        let url = agents[follower].url("/v1/session/create");
        async move {
            let r = c.put(url).json(&body).send().await.ok()?;
            if r.status() != 200 {
                return None;
            }
            Some(r.json::<Value>().await.ok()?["ID"].as_str()?.to_string())
        }
    };
    let ttl = retry_until(Duration::from_secs(20), "ttl session", || create(json!({"TTL": "10s"}))).await;
    let plain = create(json!({"Name": "plain"})).await.expect("plain session");
    let created = Instant::now();

    agents[leader_idx].signal(libc::SIGKILL);
    let info = |id: String| {
        let c = c.clone();
        let url = agents[follower].url(&format!("/v1/session/info/{id}?stale"));
        async move { get(&c, url).await.and_then(|v| v.as_array().map(|a| !a.is_empty())) }
    };
    retry_until(Duration::from_secs(30), "new leader", || async {
        let l = get(&c, agents[follower].url("/v1/status/leader")).await?;
        let l = l.as_str()?.to_string();
        (!l.is_empty() && l != leader).then_some(())
    })
    .await;
    // Not early: still there 15 s after creation (2 x TTL is 20 s, and the new leader restarts
    // the timers).
    while created.elapsed() < Duration::from_secs(15) {
        assert_eq!(info(ttl.clone()).await, Some(true), "TTL session expired early at {:?}", created.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Expires once the new leader's 2 x TTL has run out.
    retry_until(Duration::from_secs(40), "ttl session expired", || async {
        (info(ttl.clone()).await == Some(false)).then_some(())
    })
    .await;
    eprintln!("TTL session expired {:?} after creation (leader killed right after)", created.elapsed());
    assert_eq!(info(plain).await, Some(true), "the session without TTL is not lost");
    drop(agents.remove(leader_idx));
}
