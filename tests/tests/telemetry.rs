//! Metrics as operators consume them: Debian's Prometheus scrapes a dev agent and a 3-server
//! cluster, every metric Legate declares is exposed with its type, the counters move when what
//! they count happens, dashboard queries return data, and statsd / DogStatsD listeners receive
//! the same metrics.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use legate_core::telemetry::catalog::DEFINITIONS;
use legate_core::telemetry::prometheus::prom_name;
use legate_core::telemetry::Kind;
use legate_tests::{config_dir, retry_until, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};

/// A Prometheus server scraping `targets` every second, on its own port and data dir.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: legate\n    \
             metrics_path: /v1/agent/metrics\n    params:\n      format: ['prometheus']\n    static_configs:\n      \
             - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package `prometheus`) on PATH");
        let p = Prometheus { child, base: format!("http://127.0.0.1:{port}"), _dir: dir };
        let c = Client::new();
        retry_until(Duration::from_secs(30), "prometheus ready", || async {
            c.get(format!("{}/-/ready", p.base)).send().await.ok()?.status().is_success().then_some(())
        })
        .await;
        p
    }

    /// An instant query's result vector.
    async fn query(&self, q: &str) -> Option<Vec<Value>> {
        let v: Value = Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned()
    }

    /// Waits until `q` returns at least one series whose value passes `ok`.
    async fn until(&self, q: &str, ok: impl Fn(f64) -> bool) -> Vec<Value> {
        retry_until(Duration::from_secs(60), q, || async {
            let r = self.query(q).await?;
            let good = r.iter().any(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(&ok));
            good.then_some(r)
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a series in Prometheus text: `name{labels} value`, labels as written.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(c: &Client, a: &AgentProcess) -> String {
    c.get(a.url("/v1/agent/metrics?format=prometheus")).send().await.unwrap().text().await.unwrap()
}

/// Waits until `series` in the agent's exposition passes `ok`; returns the text.
async fn until_series(c: &Client, a: &AgentProcess, series: &str, ok: impl Fn(f64) -> bool) -> String {
    retry_until(Duration::from_secs(60), series, || async {
        let text = c.get(a.url("/v1/agent/metrics?format=prometheus")).send().await.ok()?.text().await.ok()?;
        value(&text, series).filter(|v| ok(*v)).map(|_| text)
    })
    .await
}

/// Every declared metric has its `# TYPE` line with the right type.
fn assert_declared(text: &str) {
    for d in DEFINITIONS {
        let prom =
            prom_name(&if d.name.starts_with("legate.") { d.name.to_string() } else { format!("consul.{}", d.name) });
        let kind = match d.kind {
            Kind::Counter => "counter",
            Kind::Sample => "summary",
            Kind::Gauge => "gauge",
        };
        assert!(text.contains(&format!("# TYPE {prom} {kind}\n")), "{prom} is not a {kind}:\n{text}");
    }
}

const TELEMETRY: &str = r#"telemetry {
  prometheus_retention_time = "60s"
  disable_hostname = true
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_agent_exposes_consul_metrics_that_move_and_prometheus_scrapes_them() {
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dogstatsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&statsd, &dogstatsd] {
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    }
    let conf = config_dir(&[(
        "telemetry.hcl",
        &format!(
            "{}  statsd_address = \"{}\"\n  dogstatsd_addr = \"{}\"\n  dogstatsd_tags = [\"env:test\"]\n}}\n",
            TELEMETRY.trim_end().trim_end_matches('}'),
            statsd.local_addr().unwrap(),
            dogstatsd.local_addr().unwrap()
        ),
    )]);
    let a = AgentProcess::start(
        &["agent", "-dev", "-http-port", "0", "-dns-port", "0", "-config-dir", conf.path().to_str().unwrap()],
        &[],
    );
    let mut a = a;
    let dns = a.listener("DNS listeners");
    legate_tests::wait_leader(&a.url("")).await;
    let c = Client::new();
    let node: Value = c.get(a.url("/v1/agent/self")).send().await.unwrap().json().await.unwrap();
    let serf = format!("127.0.0.1:{}", node["Member"]["Port"]);
    let node = node["Config"]["NodeName"].as_str().unwrap().to_string();

    let text = scrape(&c, &a).await;
    assert_declared(&text);
    assert!(text.contains("# HELP consul_kvs_apply Time of a KV write through Raft, in ms."), "{text}");
    let before = |series: &str| value(&text, series).unwrap_or(0.0);
    let kvs = before("consul_kvs_apply_count");
    let txn_read = before("consul_txn_read_count");
    let queries = before("consul_rpc_query");

    // A KV write, a read-only transaction, service queries, a DNS query, a blocking query,
    // a reload, a check: each moves its metric.
    assert_eq!(c.put(a.url("/v1/kv/metrics/k")).body("v").send().await.unwrap().status(), 200);
    let txn = json!([{"KV": {"Verb": "get", "Key": "metrics/k"}}]);
    assert_eq!(c.put(a.url("/v1/txn")).json(&txn).send().await.unwrap().status(), 200);
    c.get(a.url("/v1/catalog/service/consul")).send().await.unwrap();
    c.get(a.url("/v1/health/service/nothing-here?tag=x")).send().await.unwrap();
    let idx = c.get(a.url("/v1/kv/metrics/k")).send().await.unwrap().headers()["x-consul-index"]
        .to_str()
        .unwrap()
        .to_string();
    c.get(a.url(&format!("/v1/kv/metrics/k?index={idx}&wait=100ms"))).send().await.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = hickory_proto::op::Message::query();
    q.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("consul.service.consul.").unwrap(),
        hickory_proto::rr::RecordType::A,
    ));
    sock.send_to(&q.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await.expect("DNS reply").unwrap();
    assert_eq!(c.put(a.url("/v1/agent/reload")).send().await.unwrap().status(), 200);
    let check = json!({"ID": "tcp-self", "Name": "tcp", "TCP": a.http.unwrap().to_string(), "Interval": "1s"});
    assert_eq!(c.put(a.url("/v1/agent/check/register")).json(&check).send().await.unwrap().status(), 200);
    // A session with the shortest TTL: the leader destroys it after twice that.
    let s: Value =
        c.put(a.url("/v1/session/create")).json(&json!({"TTL": "10s"})).send().await.unwrap().json().await.unwrap();
    assert!(s["ID"].is_string());

    let text = until_series(&c, &a, "consul_kvs_apply_count", |v| v >= kvs + 1.0).await;
    assert!(value(&text, "consul_txn_read_count").unwrap() >= txn_read + 1.0, "{text}");
    assert!(value(&text, "consul_rpc_query").unwrap() >= queries + 1.0, "{text}");
    assert!(value(&text, "consul_raft_apply").unwrap() >= 1.0, "{text}");
    assert_eq!(value(&text, "consul_catalog_service_query{service=\"consul\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "consul_health_service_query_tag{service=\"nothing-here\",tag=\"x\"}"), Some(1.0));
    assert_eq!(value(&text, "consul_health_service_not_found{service=\"nothing-here\"}"), Some(1.0));
    assert_eq!(value(&text, &format!("consul_dns_domain_query_count{{node=\"{node}\"}}")), Some(1.0), "{text}");
    assert_eq!(value(&text, "legate_config_reload_count"), Some(1.0), "{text}");
    assert!(value(&text, "consul_runtime_alloc_bytes").unwrap() > 1e6, "{text}");
    assert!(value(&text, "consul_runtime_num_goroutines").unwrap() >= 1.0, "{text}");
    let p99 = value(&text, "consul_kvs_apply{quantile=\"0.99\"}").unwrap();
    assert!(p99 > 0.0 && p99.is_finite(), "{text}");
    assert!(value(&text, "consul_raft_state_leader").unwrap() >= 1.0, "{text}");
    until_series(&c, &a, "legate_check_runs{type=\"tcp\"}", |v| v >= 2.0).await;
    until_series(&c, &a, "legate_check_status_changes{type=\"tcp\",status=\"passing\"}", |v| v >= 1.0).await;
    // The leader's usage gauges (every 10 s).
    until_series(&c, &a, "consul_state_kv_entries", |v| v >= 1.0).await;
    until_series(&c, &a, "consul_members_servers", |v| v == 1.0).await;

    // The same metrics reach statsd and DogStatsD.
    let lines = |s: &std::net::UdpSocket, want: &str| {
        let mut seen = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline && !seen.contains(want) {
            let mut buf = [0u8; 2048];
            if let Ok(n) = s.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        seen
    };
    let got = lines(&statsd, "consul.kvs.apply:");
    assert!(got.lines().any(|l| l.starts_with("consul.kvs.apply:") && l.ends_with("|ms")), "{got}");
    let got = lines(&dogstatsd, "consul.api.http:");
    assert!(
        got.lines()
            .any(|l| l.starts_with("consul.api.http:") && l.contains("|ms|#method:") && l.ends_with(",env:test")),
        "{got}"
    );

    // Prometheus answers a dashboard's queries from its scrapes.
    let prom = Prometheus::start(&[a.http.unwrap()]).await;
    prom.until("rate(consul_kvs_apply_count[1m])", |v| v >= 0.0).await;
    prom.until("consul_runtime_alloc_bytes", |v| v > 0.0).await;

    // A member joins, then dies: the pool counts both.
    let m2_dir = tempfile::tempdir().unwrap();
    let m2 = AgentProcess::start(
        &[
            "agent",
            "-node",
            "m2",
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
            "-data-dir",
            m2_dir.path().to_str().unwrap(),
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-join",
            &serf,
        ],
        &[],
    );
    until_series(&c, &a, "consul_serf_member_join", |v| v >= 1.0).await;
    until_series(&c, &a, "consul_members_clients", |v| v == 1.0).await;
    let serf_lan = || async {
        let s: Value = c.get(a.url("/v1/agent/self")).send().await.unwrap().json().await.unwrap();
        s["Stats"]["serf_lan"].clone()
    };
    assert_eq!((serf_lan().await["members"].as_str(), serf_lan().await["failed"].as_str()), (Some("2"), Some("0")));
    drop(m2);
    until_series(&c, &a, "consul_serf_member_failed", |v| v >= 1.0).await;
    let lan = serf_lan().await;
    assert_eq!((lan["members"].as_str(), lan["failed"].as_str()), (Some("1"), Some("1")), "{lan}");

    // The session's TTL runs out: the leader invalidates it.
    until_series(&c, &a, "consul_session_ttl_invalidate_count", |v| v >= 1.0).await;
    until_series(&c, &a, "consul_session_ttl_active", |v| v == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_cluster_reports_raft_and_autopilot_to_prometheus() {
    let conf = config_dir(&[("telemetry.hcl", TELEMETRY)]);
    let ips = ["127.0.10.1", "127.0.10.2", "127.0.10.3"];
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let mut args = legate_tests::cluster_agent_args(
            ip,
            &format!("s{}", i + 1),
            dirs[i].path().to_str().unwrap(),
            true,
            ips[0],
        );
        args.extend(["-config-dir".to_string(), conf.path().to_str().unwrap().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        servers.push(AgentProcess::start(&args, &[]));
    }
    let c = Client::new();
    for s in &servers {
        legate_tests::wait_leader(&s.url("")).await;
    }
    for i in 0..5 {
        assert_eq!(c.put(servers[i % 3].url(&format!("/v1/kv/k{i}"))).body("v").send().await.unwrap().status(), 200);
    }
    // The leader: replication per peer, autopilot's view, the pool's servers.
    let leader = retry_until(Duration::from_secs(30), "leader reports autopilot healthy", || async {
        for s in &servers {
            let text = c.get(s.url("/v1/agent/metrics?format=prometheus")).send().await.ok()?.text().await.ok()?;
            if value(&text, "consul_autopilot_healthy") == Some(1.0) {
                return Some((s, text));
            }
        }
        None
    })
    .await;
    let (leader, text) = leader;
    assert_declared(&text);
    assert_eq!(value(&text, "consul_autopilot_failure_tolerance"), Some(1.0), "{text}");
    assert_eq!(value(&text, "consul_members_servers"), Some(3.0), "{text}");
    let peers =
        text.lines().filter(|l| l.starts_with("consul_raft_replication_appendEntries_rpc_count{peer_id=")).count();
    assert_eq!(peers, 2, "{text}");
    assert!(value(&text, "consul_raft_leader_dispatchLog_count").unwrap() >= 1.0, "{text}");
    // Followers stored what the leader sent, and each knows it is not the leader.
    for s in servers.iter().filter(|s| s.http != leader.http) {
        let t = scrape(&c, s).await;
        assert!(value(&t, "consul_raft_rpc_appendEntries_storeLogs_count").unwrap() >= 1.0, "{t}");
        assert_eq!(value(&t, "consul_server_isLeader"), Some(0.0), "{t}");
        // (A server that led for a moment while the cluster formed keeps its last autopilot
        // gauges, as Consul's sinks do.)
        if value(&t, "consul_raft_state_leader").unwrap_or(0.0) == 0.0 {
            assert!(
                value(&t, "consul_autopilot_healthy").unwrap().is_nan(),
                "a follower does not report autopilot: {t}"
            );
        }
    }

    let prom = Prometheus::start(&servers.iter().map(|s| s.http.unwrap()).collect::<Vec<_>>()).await;
    let r = prom.until("consul_raft_leader_lastContact{quantile=\"0.99\"}", |v| v.is_finite() && v >= 0.0).await;
    let measured = r.iter().filter(|s| s["value"][1].as_str() != Some("NaN")).count();
    assert_eq!(measured, 1, "only the leader samples its followers' contact: {r:?}");
    prom.until("sum(consul_raft_state_leader)", |v| v >= 1.0).await;
    prom.until("rate(consul_raft_replication_appendEntries_rpc_count[1m])", |v| v > 0.0).await;
}

#[tokio::test]
async fn prefix_filter_hostname_and_consul_1_9_route_timers() {
    let mut config = legate_tests::test_config();
    config.telemetry.prometheus_retention_time = legate_core::config::GoDuration::from_secs(60);
    config.telemetry.prefix_filter = vec!["-consul.raft".into(), "+consul.raft.apply".into()];
    config.telemetry.disable_compat_1_9 = Some(false);
    let a = legate_tests::InProcessAgent::start(config).await;
    let c = Client::new();
    legate_tests::wait_leader(&a.url("")).await;
    assert_eq!(c.put(a.url("/v1/kv/x")).body("1").send().await.unwrap().status(), 200);
    assert_eq!(c.get(a.url("/v1/kv/x")).send().await.unwrap().status(), 200);
    let text = c.get(a.url("/v1/agent/metrics?format=prometheus")).send().await.unwrap().text().await.unwrap();
    // Consul 1.9's per-route timers, kept on request.
    assert!(value(&text, "consul_http_GET_v1_kv___count").unwrap() >= 1.0, "{text}");
    assert!(value(&text, "consul_http_PUT_v1_kv___count").unwrap() >= 1.0, "{text}");
    // The filter: raft metrics dropped but raft.apply, which a longer rule lets through.
    assert!(value(&text, "consul_raft_apply").unwrap() >= 1.0, "{text}");
    assert!(!text.contains("consul_raft_commitTime"), "{text}");
    // Gauges carry the host name unless disable_hostname.
    let host = legate_core::telemetry::naming::hostname();
    let gauge = prom_name(&format!("consul.{host}.runtime.alloc_bytes"));
    assert!(value(&text, &gauge).unwrap() > 0.0, "{gauge}:\n{text}");
    let json: Value = c.get(a.url("/v1/agent/metrics")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = json["Gauges"].as_array().unwrap().iter().filter_map(|g| g["Name"].as_str()).collect();
    assert!(names.contains(&format!("consul.{host}.runtime.alloc_bytes").as_str()), "{names:?}");
    a.stop().await;
}

#[test]
fn an_unusable_sink_address_fails_the_start() {
    let conf = config_dir(&[("t.hcl", "telemetry {\n  statsd_address = \"no-such-host.invalid:8125\"\n}\n")]);
    let (code, out, err) = legate_tests::run_legate(&[
        "agent",
        "-dev",
        "-http-port",
        "0",
        "-dns-port",
        "-1",
        "-config-dir",
        conf.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}").contains(
            "Error initializing telemetry: telemetry.statsd_address: cannot use \"no-such-host.invalid:8125\""
        ),
        "{out}{err}"
    );
}
