//! Network coordinates measured for real: a server and three client agents on loopback
//! addresses, one of them behind a UDP relay that delays every datagram sent to it by 40 ms
//! (this kernel has no netem qdisc, so the delay is a userspace relay on the path into the slow
//! agent, which advertises the relay's address). The agents' Vivaldi coordinates must estimate
//! the round trips within 25 %, `?near=` must sort the nearer node first, and `legate rtt` must
//! print the estimate. The fourth agent runs with `disable_coordinates`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use legate_api::coordinate::{Coord, CoordinateEntry};
use legate_tests::{retry_until, run_legate_with, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::net::UdpSocket;

const DELAY: Duration = Duration::from_millis(40);

/// A UDP relay in front of `target`: a datagram sent to `listen` reaches `target` `delay`
/// later, from a socket of its own per sender, and what `target` answers to that socket goes
/// straight back to the sender from `listen` (a one-way delay on the path into `target`).
async fn delaying_relay(listen: SocketAddr, target: SocketAddr, delay: Duration) {
    let front = Arc::new(UdpSocket::bind(listen).await.expect("bind the relay"));
    tokio::spawn(async move {
        let mut uplinks: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = front.recv_from(&mut buf).await else { return };
            let up = match uplinks.get(&from) {
                Some(up) => up.clone(),
                None => {
                    let up = Arc::new(UdpSocket::bind((listen.ip(), 0)).await.expect("bind an uplink"));
                    let (back, front) = (up.clone(), front.clone());
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 65536];
                        while let Ok((n, _)) = back.recv_from(&mut b).await {
                            let _ = front.send_to(&b[..n], from).await;
                        }
                    });
                    uplinks.insert(from, up.clone());
                    up
                }
            };
            let data = buf[..n].to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = up.send_to(&data, target).await;
            });
        }
    });
}

fn start(ip: &str, name: &str, dir: &tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> AgentProcess {
    let mut args = legate_tests::loopback_agent_args(ip, name, dir.path().to_str().unwrap());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Coordinates sent every 300-600 ms and a ping every 200 ms, so the test takes seconds.
    let mut all = vec![
        ("LEGATE_SYNC_COORDINATE_INTERVAL_MIN", "300ms"),
        ("LEGATE_GOSSIP_LAN__PROBE_INTERVAL", "200ms"),
        ("LEGATE_GOSSIP_LAN__PROBE_TIMEOUT", "150ms"),
    ];
    all.extend_from_slice(env);
    AgentProcess::start(&args, &all)
}

async fn get(c: &Client, url: String) -> Option<Value> {
    let r = c.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn names(list: &Value, node_of: impl Fn(&Value) -> Option<&str>) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(|e| node_of(e).map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinates_estimate_round_trips_and_sort_by_distance() {
    let c = Client::new();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let slow_bind: SocketAddr = "127.0.11.3:8301".parse().unwrap();
    delaying_relay("127.0.11.4:8301".parse().unwrap(), slow_bind, DELAY).await;

    let server = start("127.0.11.1", "srv", &dirs[0], &["-server", "-bootstrap"], &[]);
    let fast = start("127.0.11.2", "fast", &dirs[1], &["-retry-join", "127.0.11.1", "-retry-interval", "1s"], &[]);
    let slow = start(
        "127.0.11.3",
        "slow",
        &dirs[2],
        &["-advertise", "127.0.11.4", "-retry-join", "127.0.11.1", "-retry-interval", "1s"],
        &[],
    );
    let nocoord = start(
        "127.0.11.5",
        "nocoord",
        &dirs[3],
        &["-retry-join", "127.0.11.1", "-retry-interval", "1s"],
        &[("LEGATE_DISABLE_COORDINATES", "true")],
    );
    legate_tests::wait_leader(&server.url("")).await;

    // Every node's coordinate reaches the servers, and the estimates settle within 25 % of the
    // true round trips: ~40 ms to the slow node from both others, well under that between srv
    // and fast.
    let coords = retry_until(Duration::from_secs(60), "coordinates within 25% of the round trips", || async {
        let list: Vec<CoordinateEntry> =
            serde_json::from_value(get(&c, server.url("/v1/coordinate/nodes")).await?).ok()?;
        let by: HashMap<String, Coord> = list.into_iter().map(|e| (e.node, e.coord)).collect();
        let rtt = |a: &str, b: &str| Some(by.get(a)?.distance_to(by.get(b)?).as_secs_f64());
        let want = DELAY.as_secs_f64();
        let close = |x: f64| (x - want).abs() / want <= 0.25;
        let (s_slow, f_slow, s_fast) = (rtt("srv", "slow")?, rtt("fast", "slow")?, rtt("srv", "fast")?);
        let nodes = get(&c, server.url("/v1/catalog/nodes")).await?;
        let in_catalog = nodes.as_array()?.len() == 4;
        (in_catalog && close(s_slow) && close(f_slow) && s_fast < want / 2.0).then_some(by)
    })
    .await;
    assert_eq!(coords.len(), 3, "every node but the one with coordinates disabled: {coords:?}");
    for coord in coords.values() {
        assert_eq!(coord.vec.len(), 8);
        assert_ne!(coord, &Coord::origin(), "moved by measured round trips");
    }

    // ?near= sorts by the estimate: from srv (or fast) the slow node comes after the other
    // two, and the node that keeps no coordinate comes last. (A node's distance to itself is
    // twice its height, so it need not be first: Consul sorts the same way.)
    let order = |v: &Value| names(v, |e| e["Node"].as_str());
    let slow_then_nocoord = |o: Vec<String>| {
        assert_eq!(o.len(), 4, "{o:?}");
        assert_eq!(&o[2..], ["slow", "nocoord"], "{o:?}");
    };
    slow_then_nocoord(order(&get(&c, server.url("/v1/catalog/nodes?near=srv")).await.unwrap()));
    slow_then_nocoord(order(&get(&c, server.url("/v1/catalog/nodes?near=fast")).await.unwrap()));
    // `_agent` is the node of the agent asked, also when a client agent forwards the read: on
    // the agent without a coordinate nothing is sorted (a server would sort from its own).
    slow_then_nocoord(order(&get(&c, fast.url("/v1/catalog/nodes?near=_agent")).await.unwrap()));
    let unsorted = ["fast", "nocoord", "slow", "srv"];
    assert_eq!(order(&get(&c, nocoord.url("/v1/catalog/nodes?near=_agent")).await.unwrap()), unsorted);
    // Without ?near= the catalog's own order (by name) stays.
    assert_eq!(order(&get(&c, server.url("/v1/catalog/nodes")).await.unwrap()), unsorted);

    // A service on three nodes and one registered without an agent: catalog/service,
    // health/service and health/checks sort the same way; a node without a coordinate goes
    // last, and a `near` node without one leaves the order as it is.
    for a in [&server, &fast, &slow] {
        let r =
            c.put(a.url("/v1/agent/service/register")).json(&json!({"Name": "web", "Port": 80})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c
        .put(server.url("/v1/catalog/register"))
        .json(&json!({"Node": "ext", "Address": "10.1.1.1", "Service": {"Service": "web"},
            "Check": {"Name": "web-ext", "ServiceID": "web", "Status": "passing"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let svc = order(&get(&c, fast.url("/v1/catalog/service/web?near=srv")).await.unwrap());
    assert_eq!(&svc[2..], ["slow", "ext"], "{svc:?}");
    let health = get(&c, server.url("/v1/health/service/web?near=fast")).await.unwrap();
    let health = names(&health, |e| e["Node"]["Node"].as_str());
    assert_eq!(&health[2..], ["slow", "ext"], "{health:?}");
    let checks = order(&get(&c, server.url("/v1/health/checks/web?near=srv")).await.unwrap());
    assert_eq!(checks.last().map(String::as_str), Some("ext"), "{checks:?}");
    let svc = order(&get(&c, server.url("/v1/catalog/service/web?near=ext")).await.unwrap());
    assert_eq!(svc, ["ext", "fast", "slow", "srv"]);

    // One node's coordinate; 404 for a node that has none.
    let one = get(&c, server.url("/v1/coordinate/node/slow")).await.unwrap();
    assert_eq!(one[0]["Node"], "slow");
    assert_eq!(one[0]["Segment"], "");
    let r = c.get(server.url("/v1/coordinate/node/ext")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // PUT /v1/coordinate/update stores one (for a node in the catalog); bad ones are refused.
    let ext =
        json!({"Vec": [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 0.2, "Adjustment": 0.0, "Height": 0.001});
    let r =
        c.put(server.url("/v1/coordinate/update")).json(&json!({"Node": "ext", "Coord": ext})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let one = get(&c, fast.url("/v1/coordinate/node/ext")).await.unwrap();
    assert_eq!(one[0]["Coord"]["Vec"][0], 0.5);
    let svc = order(&get(&c, server.url("/v1/catalog/service/web?near=srv")).await.unwrap());
    assert_eq!(svc.last().map(String::as_str), Some("ext"), "500 ms away: {svc:?}");
    let svc = order(&get(&c, server.url("/v1/catalog/service/web?near=ext")).await.unwrap());
    assert_eq!(svc[0], "ext", "{svc:?}");
    let short = json!({"Node": "ext", "Coord": {"Vec": [0.1], "Error": 0.2, "Adjustment": 0.0, "Height": 0.001}});
    let r = c.put(server.url("/v1/coordinate/update")).json(&short).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "incompatible coordinate");
    // Deregistering the node drops its coordinate.
    let r = c.put(server.url("/v1/catalog/deregister")).json(&json!({"Node": "ext"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(server.url("/v1/coordinate/node/ext")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The datacenter's servers, named as in Consul's WAN pool.
    let dcs = get(&c, slow.url("/v1/coordinate/datacenters")).await.unwrap();
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    assert_eq!(dcs[0]["AreaID"], "wan");
    assert_eq!(dcs[0]["Coordinates"][0]["Node"], "srv.dc1");
    // /v1/agent/self shows the agent's own coordinate, which is no longer the origin.
    let me = get(&c, slow.url("/v1/agent/self")).await.unwrap();
    let own: Coord = serde_json::from_value(me["Coord"].clone()).unwrap();
    assert_ne!(own, Coord::origin());

    // legate rtt, with the second node defaulting to the agent's own.
    let addr = format!("http://{}", slow.http.unwrap());
    let (code, out, err) = run_legate_with(&["rtt", "-http-addr", &addr, "srv"], &[], None);
    assert_eq!(code, 0, "{err}");
    let ms: f64 = out
        .strip_prefix("Estimated srv <-> slow rtt: ")
        .and_then(|r| r.strip_suffix(" ms (using LAN coordinates)\n"))
        .unwrap_or_else(|| panic!("unexpected output {out:?}"))
        .parse()
        .unwrap();
    assert!((ms - 40.0).abs() <= 10.0 + 5.0, "estimate {ms} ms drifted far from 40 ms");
    let (code, out, _) = run_legate_with(&["rtt", "-http-addr", &addr, "-wan", "srv.dc1", "srv.dc1"], &[], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("Estimated srv.dc1 <-> srv.dc1 rtt: "), "{out}");
    assert!(out.ends_with(" ms (using WAN coordinates)\n"), "{out}");
    // The WAN pool holds servers only: the client agent's own name is not in it.
    let (code, _, err) = run_legate_with(&["rtt", "-http-addr", &addr, "-wan", "srv.dc1"], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("Could not find a coordinate for node \"slow.dc1\""), "{err}");
    let (code, _, err) = run_legate_with(&["rtt", "-http-addr", &addr, "nosuch"], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("Could not find a coordinate for node \"nosuch\""), "{err}");
    let (code, _, err) = run_legate_with(&["rtt", "-http-addr", &addr], &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("One or two node names must be specified"), "{err}");
    // `disable_coordinates`: the agent shows none and sends none.
    let me = get(&c, nocoord.url("/v1/agent/self")).await.unwrap();
    assert!(me["Coord"].is_null(), "{me}");
    let r = c.get(server.url("/v1/coordinate/node/nocoord")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    drop((server, fast, slow, nocoord));
}
