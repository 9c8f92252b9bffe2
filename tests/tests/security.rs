//! TLS everywhere, as Consul's production guide deploys it: certificates made by `legate tls`,
//! HTTPS-only APIs, `verify_incoming`, `verify_outgoing` and `verify_server_hostname` on the
//! RPC port between every agent; a leader killed under it; agents with a wrong CA or a client
//! certificate posing as a server refused; the CLI over HTTPS; certificates re-read on reload;
//! and the connection limits (slow request heads, writes only from allowed networks, RPC
//! connections per client).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use legate_tests::{legate_bin, retry_until, run_legate_with, AgentProcess, InProcessAgent};
use serde_json::{json, Value};

/// A directory with a CA made by `legate tls ca create` and certificates it signs.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki { dir: tempfile::tempdir().unwrap() };
        let out = pki.legate(&["tls", "ca", "create", "-days", "2"]);
        assert!(out.contains("==> Saved consul-agent-ca.pem"), "{out}");
        pki
    }

    fn legate(&self, args: &[&str]) -> String {
        let out = Command::new(legate_bin()).args(args).current_dir(self.dir.path()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "legate {args:?}: {text}");
        text
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("consul-agent-ca.pem")
    }

    /// A new certificate of `kind` (server, client, cli) that also names `ip`: (cert, key).
    fn cert(&self, kind: &str, ip: &str) -> (PathBuf, PathBuf) {
        self.cert_in(kind, ip, "dc1")
    }

    /// [`Pki::cert`] for datacenter `dc` (a server's names `server.<dc>.consul`).
    fn cert_in(&self, kind: &str, ip: &str, dc: &str) -> (PathBuf, PathBuf) {
        let kind_flag = format!("-{kind}");
        let args = ["tls", "cert", "create", &kind_flag, "-dc", dc, "-days", "2", "-additional-ipaddress", ip];
        let out = self.legate(&args);
        let saved: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("==> Saved ")).collect();
        assert_eq!(saved.len(), 2, "{out}");
        (self.dir.path().join(saved[0]), self.dir.path().join(saved[1]))
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// An HTTPS client trusting only `ca`, presenting `id` when given.
fn https_client(ca: &Path, id: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&read(ca)).unwrap());
    if let Some((cert, key)) = id {
        b = b.identity(reqwest::Identity::from_pem(&[read(cert), read(key)].concat()).unwrap());
    }
    b.build().unwrap()
}

/// An agent config file with TLS on every listener: the RPC port verifying both ways and the
/// servers' names, HTTPS only, client certificates required on HTTPS when `https_verify`.
fn tls_config(dir: &Path, ca: &Path, (cert, key): &(PathBuf, PathBuf), https_verify: bool) -> PathBuf {
    let file = dir.join("tls.json");
    let config = json!({
        "tls": {
            "defaults": {"ca_file": ca, "cert_file": cert, "key_file": key,
                         "verify_incoming": true, "verify_outgoing": true},
            "internal_rpc": {"verify_server_hostname": true},
            "https": {"verify_incoming": https_verify}
        },
        "ports": {"http": -1, "https": 0}
    });
    std::fs::write(&file, config.to_string()).unwrap();
    file
}

struct Node {
    proc: AgentProcess,
    https: SocketAddr,
    ip: &'static str,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(
        name: &str,
        ip: &'static str,
        id: &(PathBuf, PathBuf),
        ca: &Path,
        server: bool,
        https_verify: bool,
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = tls_config(dir.path(), ca, id, https_verify);
        let data = dir.path().join("data");
        let mut args: Vec<String> = ["agent", "-node", name, "-bind", ip, "-client", ip, "-serf-lan-port", "8301"]
            .into_iter()
            .chain(["-dns-port", "-1", "-retry-join", "127.0.3.1", "-retry-interval", "1s"])
            .map(String::from)
            .collect();
        args.extend([
            "-data-dir".into(),
            data.display().to_string(),
            "-config-file".into(),
            config.display().to_string(),
        ]);
        if server {
            args.extend(["-server", "-bootstrap-expect", "3"].map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = AgentProcess::spawn(&args, &[]);
        let https = proc.listener("HTTPS listeners");
        Node { proc, https, ip, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }
}

async fn get(c: &reqwest::Client, url: String) -> Option<Value> {
    c.get(url).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_with_tls_everywhere_and_refuses_who_does_not_belong() {
    let pki = Pki::new();
    let ca = pki.ca();
    let cli = pki.cert("cli", "127.0.0.1");
    let ips = ["127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4", "127.0.3.5"];
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let server = i < 3;
        let id = pki.cert(if server { "server" } else { "client" }, ip);
        let name = if server { format!("s{}", i + 1) } else { format!("c{}", i - 2) };
        // Servers' HTTPS takes any client (curl below); client agents' requires a certificate.
        nodes.push(Node::start(&name, ip, &id, &ca, server, !server));
    }
    let https = https_client(&ca, Some(&cli));

    // Plain HTTP is off.
    assert!(nodes[0].proc.output().contains("HTTP listeners: []"), "{}", nodes[0].proc.output());

    // A leader over TLS Raft, known to a client agent over TLS RPC.
    let leader = retry_until(Duration::from_secs(40), "a leader known to c1", || async {
        let l = get(&https, nodes[3].url("/v1/status/leader")).await?;
        l.as_str().filter(|s| !s.is_empty()).map(str::to_string)
    })
    .await;
    let r = https.put(nodes[3].url("/v1/kv/tls/k")).body("v1").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let r = https.get(nodes[4].url("/v1/kv/tls/k?raw&consistent")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v1");

    // Without a client certificate a client agent's HTTPS API refuses the handshake.
    let anonymous = https_client(&ca, None);
    assert!(anonymous.get(nodes[3].url("/v1/status/leader")).send().await.is_err());

    // The CLI over HTTPS: flags, then the environment.
    let addr = format!("-http-addr=https://{}", nodes[3].https);
    let (ca_s, cert_s, key_s) = (ca.to_str().unwrap(), cli.0.to_str().unwrap(), cli.1.to_str().unwrap());
    let members = retry_until(Duration::from_secs(20), "five members through the CLI", || async {
        let (code, out, _) = run_legate_with(
            &["members", &addr, "-ca-file", ca_s, "-client-cert", cert_s, "-client-key", key_s],
            &[],
            None,
        );
        (code == 0 && out.lines().filter(|l| l.contains("alive")).count() == 5).then_some(out)
    })
    .await;
    assert!(members.lines().any(|l| l.starts_with("c2 ") && l.contains("client")), "{members}");
    let (code, _, err) = run_legate_with(&["members", &addr, "-ca-file", ca_s], &[], None);
    assert_eq!(code, 1, "no client certificate: refused ({err})");
    let env = [
        ("CONSUL_HTTP_ADDR", nodes[4].https.to_string()),
        ("CONSUL_HTTP_SSL", "true".into()),
        ("CONSUL_CACERT", ca_s.into()),
        ("CONSUL_CLIENT_CERT", cert_s.into()),
        ("CONSUL_CLIENT_KEY", key_s.into()),
        ("CONSUL_TLS_SERVER_NAME", "client.dc1.consul".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, out, err) = run_legate_with(&["kv", "get", "tls/k"], &env, None);
    assert_eq!((code, out.trim()), (0, "v1"), "{err}");

    // curl with the CA, as an operator would; plain HTTP on the HTTPS port gets no answer.
    let url = format!("https://{}/v1/kv/tls/k?raw", nodes[0].https);
    let out = Command::new("curl").args(["-sS", "--cacert", ca_s, &url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1", "{}", String::from_utf8_lossy(&out.stderr));
    let plain = reqwest::Client::new().get(format!("http://{}/v1/kv/tls/k?raw", nodes[0].https)).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true), "plain HTTP to the HTTPS port is not served");

    // A plaintext connection to the RPC port is refused, and the server says who tried.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect("127.0.3.1:8300").await.unwrap();
        s.write_all(&[0, 0, 0, 4, 1, 2, 3, 4]).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "the connection is closed unanswered");
        retry_until(Duration::from_secs(10), "the refusal logged", || async {
            let out = nodes[0].proc.output();
            out.lines().any(|l| l.contains("refused a plaintext connection") && l.contains("127.0.0.1")).then_some(())
        })
        .await;
    }

    // An agent whose certificates come from another CA joins gossip but cannot use the
    // servers: every RPC handshake fails, and the servers log it with the peer's address (a
    // client agent's connections leave from the address the OS picks: 127.0.0.1 here).
    let other = Pki::new();
    let stranger = Node::start("c3", "127.0.3.6", &other.cert("client", "127.0.3.6"), &other.ca(), false, false);
    let stranger_https = https_client(&other.ca(), None);
    retry_until(Duration::from_secs(30), "the wrong-CA agent refused", || async {
        let r = stranger_https.put(stranger.url("/v1/kv/tls/stranger")).body("x").send().await.ok()?;
        let refused = r.status() == 500;
        let logged = nodes[..3]
            .iter()
            .any(|n| n.proc.output().lines().any(|l| l.contains("rpc: TLS handshake failed") && l.contains("peer=")));
        (refused && logged).then_some(())
    })
    .await;
    let r = https.get(nodes[0].url("/v1/kv/tls/stranger")).send().await.unwrap();
    assert_eq!(r.status(), 404, "nothing the stranger sent was written");

    // A server holding a client certificate cannot pass for a server: the leader cannot
    // verify it as server.dc1.consul and says so; it never becomes a Raft peer.
    let poser = Node::start("s4", "127.0.3.7", &pki.cert("client", "127.0.3.7"), &ca, true, false);
    retry_until(Duration::from_secs(30), "the poser refused by the leader", || async {
        let out: String = nodes[..3].iter().map(|n| n.proc.output()).collect();
        out.lines().any(|l| l.contains("127.0.3.7:8300") && l.contains("TLS handshake")).then_some(())
    })
    .await;
    let peers = get(&https, nodes[3].url("/v1/status/peers")).await.unwrap();
    assert_eq!(peers.as_array().unwrap().len(), 3, "{peers}");
    assert!(!peers.to_string().contains("127.0.3.7"), "{peers}");
    drop(poser);
    drop(stranger);

    // The leader is killed: the other two elect a new one over TLS and writes go on.
    let idx = (0..3).find(|&i| leader.starts_with(&format!("{}:", nodes[i].ip))).unwrap();
    nodes[idx].proc.signal(libc::SIGKILL);
    let new_leader = retry_until(Duration::from_secs(40), "a new leader", || async {
        let l = get(&https, nodes[4].url("/v1/status/leader")).await?;
        l.as_str().filter(|s| !s.is_empty() && *s != leader).map(str::to_string)
    })
    .await;
    assert_ne!(new_leader, leader);
    retry_until(Duration::from_secs(20), "a write after the failover", || async {
        let r = https.put(nodes[4].url("/v1/kv/tls/k")).body("v2").send().await.ok()?;
        (r.text().await.ok()? == "true").then_some(())
    })
    .await;
    let r = https.get(nodes[3].url("/v1/kv/tls/k?raw&consistent")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_certificates_are_reread_when_they_change_and_a_broken_one_keeps_the_running_one() {
    let (a, b) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("agent.pem"), dir.path().join("agent-key.pem"));
    let install = |pki: &Pki| {
        let (c, k) = pki.cert("server", "127.0.0.1");
        std::fs::copy(c, &cert).unwrap();
        std::fs::copy(k, &key).unwrap();
    };
    install(&a);
    let config = dir.path().join("tls.hcl");
    std::fs::write(
        &config,
        format!(
            "tls {{\n  https {{\n    cert_file = \"{}\"\n    key_file = \"{}\"\n  }}\n}}\nports {{\n  https = 0\n}}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut p =
        AgentProcess::spawn(&["agent", "-dev", "-http-port", "0", "-config-file", config.to_str().unwrap()], &[]);
    let https = p.listener("HTTPS listeners");
    let url = format!("https://{https}/v1/status/leader");
    let (trusts_a, trusts_b) = (https_client(&a.ca(), None), https_client(&b.ca(), None));
    retry_until(Duration::from_secs(10), "HTTPS with the first certificate", || async {
        trusts_a.get(&url).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(trusts_b.get(&url).send().await.is_err());

    // A certificate from the second CA: the agent watches its certificate files (as Consul's
    // auto_reload_config does) and new connections get it, no signal needed.
    install(&b);
    retry_until(Duration::from_secs(10), "HTTPS with the new certificate", || async {
        https_client(&b.ca(), None).get(&url).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;

    // A broken key: the reload fails, names the file, and the running certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    p.signal(libc::SIGHUP);
    retry_until(Duration::from_secs(10), "the broken reload reported", || async {
        p.output().lines().any(|l| l.contains("agent-key.pem") && l.contains("key_file")).then_some(())
    })
    .await;
    let r = https_client(&b.ca(), None).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn tls_config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"ports": {"https": 8501}}"#, "ports.https"),
        (
            r#"{"tls": {"https": {"cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/k.pem"}}}"#,
            "/nonexistent/c.pem",
        ),
        (r#"{"tls": {"defaults": {"verify_incoming": true}}}"#, "verify_incoming"),
        (r#"{"tls": {"https": {"verify_server_hostname": true}}}"#, "tls.https.verify_server_hostname"),
        (r#"{"verify_outgoing": true}"#, "VerifyOutgoing set but no CA certificates"),
        (r#"{"tls": {"defaults": {"tls_min_version": "TLSv1_9"}}}"#, "no matching TLS version found for TLSv1_9"),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("c{i}.json"));
        std::fs::write(&f, text).unwrap();
        let (code, out, err) = run_legate_with(&["validate", f.to_str().unwrap()], &[], None);
        assert_eq!(code, 1, "{text}: {out}{err}");
        assert!(err.contains(expect) || out.contains(expect), "{text}: want {expect:?} in {out}{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off_and_writes_come_only_from_allowed_networks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = legate_tests::test_config();
    config.limits.http_handshake_timeout = legate_core::config::GoDuration::from_millis(500);
    config.http_config.allow_write_http_from = vec!["10.0.0.0/8".into()];
    let a = InProcessAgent::start(config).await;
    let addr = a.agent.http_addrs()[0];

    // Half a request head, then nothing: the connection is closed after the timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("closed in time");
    assert!(n.map(|n| n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408")).unwrap_or(true));

    // Reads from anywhere; writes from 127.0.0.1 (not in 10.0.0.0/8) are refused.
    let c = reqwest::Client::new();
    assert_eq!(c.get(a.url("/v1/kv/x")).send().await.unwrap().status(), 404);
    let r = c.put(a.url("/v1/kv/x")).body("v").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "Access is restricted");
    a.stop().await;

    let mut config = legate_tests::test_config();
    config.http_config.allow_write_http_from = vec!["127.0.0.0/8".into()];
    let a = InProcessAgent::start(config).await;
    let r = c.put(a.url("/v1/kv/x")).body("v").send().await.unwrap();
    assert_eq!(r.text().await.unwrap().trim(), "true", "127.0.0.1 is in 127.0.0.0/8");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_connections_beyond_the_per_client_limit_are_closed_while_other_clients_are_served() {
    use legate_core::server::rpc::{Pool, Request, Response};
    use tokio::io::AsyncReadExt;
    let mut config = legate_tests::test_config();
    config.limits.rpc_max_conns_per_client = 2;
    let a = InProcessAgent::start(config).await;
    let rpc = a.agent.shared().server().unwrap().rpc_addr.clone();
    // Two connections from 127.0.0.1 take its places (they sit silent, within the handshake
    // timeout); the third is closed as soon as it is accepted.
    let _held =
        [tokio::net::TcpStream::connect(&rpc).await.unwrap(), tokio::net::TcpStream::connect(&rpc).await.unwrap()];
    let mut third = tokio::net::TcpStream::connect(&rpc).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf)).await.expect("closed at once");
    assert_eq!(n.unwrap_or(0), 0);
    // Another client address is served.
    let plain = std::sync::Arc::new(legate_core::tls::Live::new(legate_core::tls::RpcTls::plain()));
    let pool = Pool::from_source("127.0.0.2".parse().unwrap(), plain);
    let r = pool.get(&rpc).await.call(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(r, Response::Ping(true)), "{r:?}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enable_agent_tls_for_checks_checks_trust_the_agents_ca_and_present_its_certificate() {
    let pki = Pki::new();
    let (cert, key) = pki.cert("server", "127.0.0.1");
    let c = reqwest::Client::new();
    for enabled in [true, false] {
        let mut config = legate_tests::test_config();
        config.ports.https = 0;
        let path = |p: &Path| Some(p.display().to_string());
        config.tls.defaults = legate_core::config::tls::TlsStanza {
            ca_file: path(&pki.ca()),
            cert_file: path(&cert),
            key_file: path(&key),
            ..Default::default()
        };
        // The agent's own HTTPS API wants a client certificate from the CA: the target.
        config.tls.https.verify_incoming = Some(true);
        config.enable_agent_tls_for_checks = enabled;
        let a = InProcessAgent::start(config).await;
        let target = format!("https://{}/v1/status/leader", a.agent.https_addrs()[0]);
        // With tls_skip_verify the server's certificate is not the question: the client's is.
        for (id, skip) in [("verified", false), ("skip-verify", true)] {
            let body = json!({"ID": id, "Name": id, "HTTP": target, "Interval": "1s", "TLSSkipVerify": skip});
            let r = c.put(a.url("/v1/agent/check/register")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        retry_until(Duration::from_secs(15), "both checks probed", || async {
            let checks = get(&c, a.url("/v1/agent/checks")).await?;
            let (v, s) = (&checks["verified"], &checks["skip-verify"]);
            if enabled {
                // The agent's CA verifies the target and its certificate is presented.
                (v["Status"] == "passing" && s["Status"] == "passing").then_some(())
            } else {
                // System roots do not know the CA; with skip-verify the server still wants a
                // client certificate the check does not have.
                let failed =
                    |k: &Value| k["Status"] == "critical" && k["Output"].as_str().is_some_and(|o| o.contains("tls"));
                (failed(v) && failed(s)).then_some(())
            }
        })
        .await;
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_agent_over_its_rpc_rate_gets_429_while_another_is_served() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |ip: &str, name: &str, dir: &tempfile::TempDir, extra: &[&str]| {
        let mut args = legate_tests::cluster_agent_args(ip, name, dir.path().to_str().unwrap(), false, "127.0.4.1");
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        AgentProcess::start(&args, &[])
    };
    let _server = start("127.0.4.1", "s1", &dirs[0], &["-server", "-bootstrap-expect", "1"]);
    let limited = start("127.0.4.2", "c1", &dirs[1], &["-hcl", "limits {\n  rpc_rate = 2\n  rpc_max_burst = 5\n}\n"]);
    let free = start("127.0.4.3", "c2", &dirs[2], &[]);
    let c = reqwest::Client::new();
    // Both reach the server (the limited one within its budget, waiting for it to refill).
    for a in [&limited, &free] {
        retry_until(Duration::from_secs(30), "a leader through the client", || async {
            let l = get(&c, a.url("/v1/status/leader")).await?;
            l.as_str().filter(|s| !s.is_empty()).map(drop)
        })
        .await;
    }
    // A burst of reads through each: the limited agent answers 429 once its bucket is empty.
    let mut limited_codes = Vec::new();
    let mut free_codes = Vec::new();
    for _ in 0..30 {
        limited_codes.push(c.get(limited.url("/v1/kv/x")).send().await.unwrap().status().as_u16());
        free_codes.push(c.get(free.url("/v1/kv/x")).send().await.unwrap().status().as_u16());
    }
    assert!(limited_codes.contains(&429), "{limited_codes:?}");
    // The budget is still spent (2/s): the next answers are 429 with Consul's text.
    let bodies: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..10 {
            let r = c.get(limited.url("/v1/kv/x")).send().await.unwrap();
            if r.status() == 429 {
                v.push(r.text().await.unwrap());
            }
        }
        v
    };
    assert!(!bodies.is_empty() && bodies.iter().all(|b| b == "RPC rate limit exceeded"), "{bodies:?}");
    assert!(free_codes.iter().all(|s| *s == 404), "the other agent is served: {free_codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_make_server_calls_on_the_rpc_port() {
    use legate_core::server::rpc::{Pool, Request, Response};
    let pki = Pki::new();
    let server_id = pki.cert("server", "127.0.0.1");
    let client_id = pki.cert("client", "127.0.0.1");
    let mut config = legate_tests::test_config();
    let path = |p: &Path| Some(p.display().to_string());
    config.tls.defaults = legate_core::config::tls::TlsStanza {
        ca_file: path(&pki.ca()),
        cert_file: path(&server_id.0),
        key_file: path(&server_id.1),
        verify_incoming: Some(true),
        ..Default::default()
    };
    config.tls.internal_rpc.verify_server_hostname = Some(true);
    let a = InProcessAgent::start(config).await;
    let rpc = a.agent.shared().server().unwrap().rpc_addr.clone();
    // A peer with verify_outgoing and the given certificate.
    let pool_with = |(cert, key): &(PathBuf, PathBuf)| {
        let settings = legate_core::tls::Settings {
            ca_file: Some(pki.ca()),
            cert_file: Some(cert.clone()),
            key_file: Some(key.clone()),
            verify_outgoing: true,
            verify_server_hostname: true,
            ..Default::default()
        };
        let tls = legate_core::tls::RpcTls::new(&settings, "dc1", "consul").unwrap();
        Pool::new(std::sync::Arc::new(legate_core::tls::Live::new(tls)))
    };
    let as_client = pool_with(&client_id).get(&rpc).await;
    let r = as_client.call(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(r, Response::Ping(false)), "a client certificate is no server's: {r:?}");
    let secret = legate_core::server::rpc::Request::AclResolve { secret: "x".into() };
    let r = as_client.call(secret, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(r, Response::AclResolve(_)), "client calls are served: {r:?}");
    let as_server = pool_with(&server_id).get(&rpc).await;
    let r = as_server.call(Request::Ping, Duration::from_secs(5)).await.unwrap();
    assert!(matches!(r, Response::Ping(true)), "{r:?}");
    a.stop().await;
}

/// Two datacenters federated with TLS on the RPC port (verify_incoming, verify_outgoing,
/// verify_server_hostname): a call for the other datacenter verifies that its server's
/// certificate names `server.<that dc>.consul`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenters_federate_over_tls_with_verified_server_names() {
    let pki = Pki::new();
    let ca = pki.ca();
    let cli = pki.cert("cli", "127.0.0.1");
    let https = https_client(&ca, Some(&cli));
    let mut nodes = Vec::new();
    for (ip, name, dc, wan) in [("127.0.14.1", "f1", "dc1", None), ("127.0.14.2", "f2", "dc2", Some("127.0.14.1"))] {
        let dir = tempfile::tempdir().unwrap();
        let id = pki.cert_in("server", ip, dc);
        let config = tls_config(dir.path(), &ca, &id, false);
        let data = dir.path().join("data");
        let mut args: Vec<String> = ["agent", "-server", "-bootstrap", "-node", name, "-datacenter", dc, "-bind", ip]
            .into_iter()
            .chain(["-client", ip, "-serf-lan-port", "8301", "-serf-wan-port", "8302", "-dns-port", "-1"])
            .map(String::from)
            .collect();
        args.extend([
            "-data-dir".into(),
            data.display().to_string(),
            "-config-file".into(),
            config.display().to_string(),
        ]);
        if let Some(wan) = wan {
            args.extend(["-retry-join-wan", wan, "-retry-interval-wan", "1s"].map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = AgentProcess::spawn(&args, &[]);
        let addr = proc.listener("HTTPS listeners");
        nodes.push((proc, addr, dir));
    }
    let url = |i: usize, path: &str| format!("https://{}{path}", nodes[i].1);
    for i in 0..2 {
        retry_until(Duration::from_secs(30), "a leader", || async {
            let l = get(&https, url(i, "/v1/status/leader")).await?;
            (!l.as_str()?.is_empty()).then_some(())
        })
        .await;
    }
    retry_until(Duration::from_secs(30), "dc2 known to dc1", || async {
        (get(&https, url(0, "/v1/catalog/datacenters")).await? == json!(["dc1", "dc2"])).then_some(())
    })
    .await;
    let r = https.put(url(0, "/v1/kv/fed/tls?dc=dc2")).body("over-tls").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "true");
    let r = https.get(url(1, "/v1/kv/fed/tls?raw")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "over-tls");
    let r = https.get(url(1, "/v1/kv/fed/tls?dc=dc1")).send().await.unwrap();
    assert_eq!(r.status(), 404, "dc1 does not have it");
    drop(nodes);
}
