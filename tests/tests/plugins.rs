//! WASM plugins end to end: hostile fixtures (tiny WAT modules made into components) fail only
//! their own check, the Rust plugins of plugins/ run as real checks against real local
//! servers, registration runs the plugin's `validate`, event handlers get events, plugins
//! hot-swap when their file changes, compiled code is cached on disk, and `legate plugin`.

use legate_core::plugin::PluginError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use legate_core::config::{CheckDefinition, FileGrant, GoDuration, WasmSpec};
use legate_core::plugin::{HandlerEvent, HostOptions, PluginHost};
use legate_tests::{retry_until, run_legate, test_config, InProcessAgent};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// A hostile fixture as a component: `tests/fixtures/plugins/<name>.wat` with the shared
/// definitions and placeholders substituted, embedded with its world and wrapped by
/// wit-component.
fn fixture(name: &str, subs: &[(&str, String)]) -> Vec<u8> {
    let dir = repo_root().join("tests/fixtures/plugins");
    let common = std::fs::read_to_string(dir.join("common.wat")).unwrap();
    let mut src = std::fs::read_to_string(dir.join(format!("{name}.wat"))).unwrap().replace(";;COMMON", &common);
    for (k, v) in subs {
        src = src.replace(k, v);
    }
    let mut module = wat::parse_str(&src).unwrap_or_else(|e| panic!("{name}.wat: {e}"));
    let mut resolve = wit_parser::Resolve::default();
    let legate = resolve.push_file(repo_root().join("sdk/wit/plugin.wit")).unwrap();
    resolve.push_file(dir.join("wasi-io.wit")).unwrap();
    resolve.push_file(dir.join("wasi-clocks.wit")).unwrap();
    let fixtures = resolve.push_file(dir.join("fixture.wit")).unwrap();
    let world = if name == "sleep" {
        resolve.select_world(&[fixtures], Some("sleeper")).unwrap()
    } else {
        resolve.select_world(&[legate], Some("check")).unwrap()
    };
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

pub(crate) fn ok_fixture(out: &str) -> Vec<u8> {
    fixture("ok", &[("__OUT__", out.to_string()), ("__OUT_LEN__", out.len().to_string())])
}

/// Builds plugins/ for wasm32-wasip2 (a no-op when up to date; scripts/test.sh builds it
/// first) and returns the component of `name`.
pub(crate) fn rust_plugin(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let dir = repo_root().join("plugins");
    BUILD.call_once(|| {
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&dir)
            // Its own target dir, also when CARGO_TARGET_DIR points elsewhere (CI).
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building plugins/ failed (rustup target add wasm32-wasip2?)");
    });
    let p = dir.join("target/wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} missing", p.display());
    p
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

async fn put(a: &InProcessAgent, path: &str, body: Value) -> (u16, String) {
    let r = Client::new().put(a.url(path)).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn checks(a: &InProcessAgent) -> Value {
    Client::new().get(a.url("/v1/agent/checks")).send().await.unwrap().json().await.unwrap()
}

/// Waits until check `id` has `status` and an output containing `needle`; returns the output.
async fn wait_check(a: &InProcessAgent, id: &str, status: &str, needle: &str) -> String {
    retry_until(Duration::from_secs(20), &format!("check {id} {status} with {needle:?}"), || async {
        let c = checks(a).await;
        let c = &c[id];
        let out = c["Output"].as_str().unwrap_or_default().to_string();
        (c["Status"] == status && out.contains(needle)).then_some(out)
    })
    .await
}

fn wasm_check(id: &str, plugin: &str, timeout: &str, extra: Value) -> Value {
    let mut wasm = json!({"plugin": plugin});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            wasm[k] = v;
        }
    }
    json!({"ID": id, "Name": id, "Interval": "1s", "Timeout": timeout, "Wasm": wasm})
}

/// A TCP server that accepts and never says anything.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_only_their_own_check() {
    let mut config = test_config();
    config.telemetry.prometheus_retention_time = GoDuration::from_secs(300);
    let a = InProcessAgent::start(config).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, _server) = silent_server().await;
    let url = format!("http://127.0.0.1:{port}/");

    let good = write(dir.path(), "ok.wasm", &ok_fixture("all good"));
    let cases: Vec<(&str, String, &str, Value, &str)> = vec![
        (
            "loop",
            write(dir.path(), "loop.wasm", &fixture("loop", &[])),
            "500ms",
            json!({}),
            "plugin timed out after 500ms",
        ),
        (
            "trap",
            write(dir.path(), "trap.wasm", &fixture("trap", &[])),
            "2s",
            json!({}),
            "plugin trapped: wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "membomb",
            write(dir.path(), "membomb.wasm", &fixture("membomb", &[])),
            "5s",
            json!({"memory_mb": 8}),
            "plugin exceeded its memory limit of 8 MiB",
        ),
        (
            "sleep",
            write(dir.path(), "sleep.wasm", &fixture("sleep", &[])),
            "500ms",
            json!({}),
            "plugin timed out after 500ms (blocked in a host call)",
        ),
        (
            "recv",
            write(dir.path(), "recv.wasm", &fixture("recv", &[("__PORT__", port.to_string())])),
            "500ms",
            json!({"allow_hosts": ["127.0.0.1"]}),
            "plugin timed out after 500ms",
        ),
        (
            "http",
            write(
                dir.path(),
                "http.wasm",
                &fixture("http", &[("__URL_LEN__", url.len().to_string()), ("__URL__", url.clone())]),
            ),
            "2s",
            json!({"allow_hosts": ["example.com"]}),
            "is not in allow_hosts",
        ),
    ];
    assert_eq!(put(&a, "/v1/agent/check/register", wasm_check("good", &good, "2s", json!({}))).await.0, 200);
    for (id, path, timeout, extra, _) in &cases {
        let (code, body) = put(&a, "/v1/agent/check/register", wasm_check(id, path, timeout, extra.clone())).await;
        assert_eq!(code, 200, "{id}: {body}");
    }
    for (id, _, _, _, reason) in &cases {
        let out = wait_check(&a, id, "critical", reason).await;
        eprintln!("{id}: {out}");
    }
    // The neighbour kept passing, and the agent still serves.
    wait_check(&a, "good", "passing", "all good").await;
    // Repeated failures back off, still critical with the reason.
    wait_check(&a, "trap", "critical", "times in a row").await;
    let c = checks(&a).await;
    assert_eq!(c["good"]["Status"], "passing", "{c}");
    assert_eq!(Client::new().get(a.url("/v1/agent/self")).send().await.unwrap().status(), 200);

    // Each kind of failure is counted for its own plugin.
    let text =
        Client::new().get(a.url("/v1/agent/metrics?format=prometheus")).send().await.unwrap().text().await.unwrap();
    let value = |series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    for series in [
        "legate_plugin_timeouts{plugin=\"loop\"}",
        "legate_plugin_timeouts{plugin=\"sleep\"}",
        "legate_plugin_traps{plugin=\"trap\"}",
        "legate_plugin_memory_limit{plugin=\"membomb\"}",
        "legate_plugin_backoffs{plugin=\"trap\"}",
        "legate_plugin_outcome{plugin=\"ok\",outcome=\"passing\"}",
        "legate_plugin_outcome{plugin=\"trap\",outcome=\"error\"}",
        "legate_plugin_calls{plugin=\"ok\",kind=\"check\"}",
        "legate_plugin_host_calls{plugin=\"recv\",interface=\"net\"}",
        "legate_plugin_host_calls{plugin=\"http\",interface=\"http\"}",
        "legate_plugin_cache_miss",
    ] {
        assert!(value(series) >= 1.0, "{series}:\n{text}");
    }
    assert_eq!(value("legate_plugin_traps{plugin=\"ok\"}"), 0.0);
    assert!(value("legate_plugin_duration_count{plugin=\"ok\",kind=\"check\"}") >= 1.0, "{text}");
    a.stop().await;
}

/// An HTTP server answering JSON; POST bodies are recorded.
pub(crate) async fn json_server(seen: Arc<std::sync::Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            seen.lock().unwrap().push(text[end + 4..].to_string());
                            break;
                        }
                    }
                }
                // `?slow` answers after 20 ms: a latency the checks can always see (a local
                // answer may take under the millisecond the plugin counts in).
                if buf.starts_with(b"GET /health?slow ") {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                let body = r#"{"status":"ok","checks":[{"name":"db","up":true}]}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

/// A server speaking enough RESP for PING (and AUTH with password "sesame").
async fn redis_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    let cmd = String::from_utf8_lossy(&buf[..n]).to_uppercase();
                    let reply: &[u8] = if cmd.contains("PING") {
                        b"+PONG\r\n"
                    } else if cmd.contains("SESAME") {
                        b"+OK\r\n"
                    } else {
                        b"-ERR unknown command\r\n"
                    };
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A server speaking the start of the PostgreSQL protocol: declines SSL ('N'), then answers
/// the StartupMessage with an AuthenticationCleartextPassword request, or, when `starting`,
/// with the ErrorResponse a server gives while it starts up (SQLSTATE 57P03).
async fn postgres_server(starting: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8];
                if s.read_exact(&mut buf).await.is_err() || buf[4..] != [0x04, 0xd2, 0x16, 0x2f] {
                    return;
                }
                let _ = s.write_all(b"N").await;
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                let _ = s.read_exact(&mut rest).await;
                let msg: Vec<u8> = if starting {
                    let body = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0";
                    let mut m = vec![b'E'];
                    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
                    m.extend_from_slice(body);
                    m
                } else {
                    vec![b'R', 0, 0, 0, 8, 0, 0, 0, 3]
                };
                let _ = s.write_all(&msg).await;
            });
        }
    });
    port
}

/// A TLS server presenting tests/fixtures/plugins/cert.pem (valid until 2126).
async fn tls_server() -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = repo_root().join("tests/fixtures/plugins");
    let cert = CertificateDer::from_pem_file(dir.join("cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("cert-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut b = [0u8; 16];
                    let _ = tls.read(&mut b).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_and_certificate_plugins_against_real_servers() {
    let tcp = rust_plugin("tcp_protocol").display().to_string();
    let cert = rust_plugin("cert_expiry").display().to_string();
    let pg_up = postgres_server(false).await;
    let pg_starting = postgres_server(true).await;
    let tls = tls_server().await;
    let a = InProcessAgent::start(test_config()).await;
    let allow = json!({"allow_hosts": ["127.0.0.1"]});
    let register = |id: &str, plugin: &str, args: Value| {
        let mut d = wasm_check(id, plugin, "3s", allow.clone());
        d["Wasm"]["args"] = args;
        d
    };
    for (id, plugin, args) in [
        ("pg-up", &tcp, json!({"protocol": "postgres", "host": "127.0.0.1", "port": pg_up, "user": "app"})),
        ("pg-starting", &tcp, json!({"protocol": "postgres", "host": "127.0.0.1", "port": pg_starting})),
        ("cert-ok", &cert, json!({"host": "127.0.0.1", "port": tls, "server_name": "long-lived.test"})),
        ("cert-warn", &cert, json!({"host": "127.0.0.1", "port": tls, "warn_days": 50000, "critical_days": 7})),
        ("cert-crit", &cert, json!({"host": "127.0.0.1", "port": tls, "warn_days": 60000, "critical_days": 50000})),
    ] {
        let (code, body) = put(&a, "/v1/agent/check/register", register(id, plugin, args)).await;
        assert_eq!(code, 200, "{id}: {body}");
    }
    wait_check(&a, "pg-up", "passing", "postgres: accepting connections").await;
    wait_check(&a, "pg-starting", "critical", "the database system is starting up").await;
    wait_check(&a, "cert-ok", "passing", "(CN=long-lived.test): certificate valid for").await;
    wait_check(&a, "cert-warn", "warning", "certificate expires in").await;
    wait_check(&a, "cert-crit", "critical", "certificate expires in").await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_plugins_run_as_real_checks() {
    let http_json = rust_plugin("http_json").display().to_string();
    let tcp = rust_plugin("tcp_protocol").display().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let http_port = json_server(seen).await;
    let redis_port = redis_server().await;
    let url = format!("http://127.0.0.1:{http_port}/health");

    // A wasm check from the config file, and more through the API and a service definition.
    let mut config = test_config();
    config.checks.push(CheckDefinition {
        id: Some("from-config".into()),
        name: Some("from config".into()),
        interval: Some(GoDuration::from_secs(1)),
        timeout: Some(GoDuration::from_secs(2)),
        wasm: Some(WasmSpec {
            plugin: http_json.clone(),
            args: json!({"url": url, "json_path": "checks.0.up", "json_equals": true}).as_object().unwrap().clone(),
            allow_hosts: vec!["127.0.0.1".into()],
            ..WasmSpec::default()
        }),
        ..CheckDefinition::default()
    });
    let a = InProcessAgent::start(config).await;

    let allow = json!({"allow_hosts": ["127.0.0.1"]});
    let mut wrong = wasm_check("wrong-field", &http_json, "2s", allow.clone());
    wrong["Wasm"]["args"] = json!({"url": url, "json_path": "status", "json_equals": "degraded"});
    assert_eq!(put(&a, "/v1/agent/check/register", wrong).await.0, 200);
    let mut slow = wasm_check("latency", &http_json, "2s", allow.clone());
    slow["Wasm"]["args"] = json!({"url": format!("{url}?slow"), "warn_ms": 5, "critical_ms": 100000});
    assert_eq!(put(&a, "/v1/agent/check/register", slow).await.0, 200);
    let mut redis = wasm_check("redis", &tcp, "2s", allow.clone());
    redis["Wasm"]["args"] = json!({"protocol": "redis", "host": "127.0.0.1", "port": redis_port, "password": "sesame"});
    let svc = json!({"Name": "cache", "ID": "cache-1", "Port": redis_port, "Check": {
        "CheckID": "redis", "Name": "redis", "Interval": "1s", "Timeout": "2s", "Wasm": redis["Wasm"]}});
    let (code, body) = put(&a, "/v1/agent/service/register", svc).await;
    assert_eq!(code, 200, "{body}");

    wait_check(&a, "from-config", "passing", "checks.0.up = \"true\"").await;
    wait_check(&a, "wrong-field", "critical", "status is \"ok\", expected \"degraded\"").await;
    wait_check(&a, "latency", "warning", "slower than 5 ms").await;
    wait_check(&a, "redis", "passing", "redis: PONG").await;
    assert_eq!(checks(&a).await["redis"]["ServiceID"], "cache-1");

    // /v1/agent/plugins: both plugins loaded (with their imports), every check's grants, and
    // never the args (the redis password).
    let state: Value = reqwest::get(a.url("/v1/agent/plugins")).await.unwrap().json().await.unwrap();
    let loaded = state["Host"]["loaded"].as_array().unwrap();
    let paths: Vec<&str> = loaded.iter().filter_map(|l| l["path"].as_str()).collect();
    assert!(paths.contains(&http_json.as_str()) && paths.contains(&tcp.as_str()), "{state}");
    let http = loaded.iter().find(|l| l["path"] == http_json.as_str()).unwrap();
    assert!(http["world"].as_str().unwrap().contains("check"), "{http}");
    assert!(
        http["imports"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().starts_with("legate:plugin/http")),
        "{http}"
    );
    let redis_check = state["Checks"].as_array().unwrap().iter().find(|c| c["CheckID"] == "redis").unwrap();
    assert_eq!(redis_check["AllowHosts"], json!(["127.0.0.1"]));
    assert!(!state.to_string().contains("sesame"), "args are not shown: {state}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_runs_the_plugins_validate() {
    let http_json = rust_plugin("http_json").display().to_string();
    let webhook = rust_plugin("webhook").display().to_string();
    let a = InProcessAgent::start(test_config()).await;

    let mut bad = wasm_check("bad", &http_json, "2s", json!({}));
    bad["Wasm"]["args"] = json!({"url": "ftp://x", "json_path": "a"});
    let (code, body) = put(&a, "/v1/agent/check/register", bad).await;
    assert_eq!(code, 400);
    assert!(
        body.contains("rejected its configuration: arg \"url\": \"ftp://x\" is not an http:// or https:// URL"),
        "{body}"
    );

    let mut typo = wasm_check("typo", &http_json, "2s", json!({}));
    typo["Wasm"]["args"] = json!({"url": "http://x", "jsonpath": "a"});
    let (code, body) = put(&a, "/v1/agent/check/register", typo).await;
    assert_eq!(code, 400);
    assert!(body.contains("unknown arg \"jsonpath\""), "{body}");

    let (code, body) =
        put(&a, "/v1/agent/check/register", wasm_check("missing", "/nonexistent/p.wasm", "2s", json!({}))).await;
    assert_eq!(code, 400);
    assert!(body.contains("not found at /nonexistent/p.wasm"), "{body}");

    let (code, body) = put(&a, "/v1/agent/check/register", wasm_check("handler", &webhook, "2s", json!({}))).await;
    assert_eq!(code, 400);
    assert!(body.contains("not a legate:plugin/check@0.1.0"), "{body}");

    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "junk.wasm", b"\0asm not really");
    let (code, body) = put(&a, "/v1/agent/check/register", wasm_check("junk", &junk, "2s", json!({}))).await;
    assert_eq!(code, 400);
    assert!(body.contains("not a valid WASM component"), "{body}");

    let mut svc_bad = json!({"Name": "web", "Check": wasm_check("svc-bad", &http_json, "2s", json!({}))});
    svc_bad["Check"]["Wasm"]["args"] = json!({});
    let (code, body) = put(&a, "/v1/agent/service/register", svc_bad).await;
    assert_eq!(code, 400);
    assert!(body.contains("missing required arg \"url\""), "{body}");
    // Nothing was registered.
    assert_eq!(checks(&a).await, json!({}));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_handler_plugins_receive_events() {
    let writer = rust_plugin("file_writer").display().to_string();
    let webhook = rust_plugin("webhook").display().to_string();
    let a = InProcessAgent::start(test_config()).await;
    let host = a.agent.shared().plugins().clone();
    let out = tempfile::tempdir().unwrap();

    let user = HandlerEvent::User {
        id: "e1".into(),
        name: "deploy".into(),
        payload: b"v42".to_vec(),
        ltime: 7,
        node_filter: String::new(),
        service_filter: "web".into(),
        tag_filter: String::new(),
    };
    let watch =
        HandlerEvent::Watch { watch_type: "key".into(), index: 99, payload_json: r#"{"Key":"a","Value":null}"#.into() };

    // File writer with a writable grant: one JSON line per event.
    let spec = WasmSpec {
        plugin: writer.clone(),
        args: json!({"path": "/events/log.jsonl"}).as_object().unwrap().clone(),
        files: vec![FileGrant {
            host_dir: out.path().to_path_buf(),
            guest_dir: Some("/events".into()),
            writable: true,
        }],
        ..WasmSpec::default()
    };
    let r = legate_core::plugin::run_handler(&host, &spec, user.clone()).await.unwrap();
    assert!(r.output.contains("appended"), "{r:?}");
    legate_core::plugin::run_handler(&host, &spec, watch.clone()).await.unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(out.path().join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["Name"], "deploy");
    assert_eq!(lines[0]["Payload"], "v42");
    assert_eq!(lines[0]["ServiceFilter"], "web");
    assert_eq!(lines[1]["WatchType"], "key");
    assert_eq!(lines[1]["Index"], 99);
    assert_eq!(lines[1]["Data"]["Key"], "a");

    // Without the grant there is no file system.
    let denied = WasmSpec { files: Vec::new(), ..spec.clone() };
    let e = legate_core::plugin::run_handler(&host, &denied, user.clone()).await.unwrap_err();
    assert!(e.to_string().contains("/events/log.jsonl"), "{e}");
    // A read-only grant refuses writes.
    let ro = WasmSpec {
        files: vec![FileGrant {
            host_dir: out.path().to_path_buf(),
            guest_dir: Some("/events".into()),
            writable: false,
        }],
        ..spec.clone()
    };
    assert!(legate_core::plugin::run_handler(&host, &ro, user.clone()).await.is_err());
    assert_eq!(std::fs::read_to_string(out.path().join("log.jsonl")).unwrap().lines().count(), 2);

    // Webhook: posts the event to a local server, only when allowed.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let port = json_server(seen.clone()).await;
    let hook = WasmSpec {
        plugin: webhook.clone(),
        args:
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "template": "{\"text\":\"{{name}}: {{payload}}\"}"})
                .as_object()
                .unwrap()
                .clone(),
        allow_hosts: vec![format!("127.0.0.1:{port}")],
        ..WasmSpec::default()
    };
    let r = legate_core::plugin::run_handler(&host, &hook, user.clone()).await.unwrap();
    assert!(r.output.contains("HTTP 200"), "{r:?}");
    assert_eq!(seen.lock().unwrap().as_slice(), [r#"{"text":"deploy: v42"}"#.to_string()]);
    let e = legate_core::plugin::run_handler(&host, &WasmSpec { allow_hosts: Vec::new(), ..hook.clone() }, user)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is not in allow_hosts"), "{e}");
    // A check plugin is not a handler.
    let e = legate_core::plugin::run_handler(
        &host,
        &WasmSpec { plugin: rust_plugin("http_json").display().to_string(), ..hook },
        watch,
    )
    .await
    .unwrap_err();
    assert!(matches!(&e, PluginError::WrongWorld { want, .. } if want == "an event handler"), "{e}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_hot_swap_when_their_file_changes() {
    let a = InProcessAgent::start(test_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "swap.wasm", &ok_fixture("version one"));
    let mut def = wasm_check("swap", &path, "2s", json!({}));
    def["SuccessBeforePassing"] = json!(1);
    assert_eq!(put(&a, "/v1/agent/check/register", def).await.0, 200);
    wait_check(&a, "swap", "passing", "version one").await;
    // Replace the file (write to a temp name and rename, as deploy tools do).
    let tmp = write(dir.path(), "swap.tmp", &ok_fixture("version two"));
    std::fs::rename(&tmp, &path).unwrap();
    wait_check(&a, "swap", "passing", "version two").await;
    // A broken build swapped in fails the check, a good one brings it back.
    std::fs::write(&path, fixture("trap", &[])).unwrap();
    wait_check(&a, "swap", "critical", "plugin trapped").await;
    std::fs::write(&path, ok_fixture("version three")).unwrap();
    wait_check(&a, "swap", "passing", "version three").await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_plugins_are_cached_on_disk_and_found_by_name() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("plugins")).unwrap();
    std::fs::copy(rust_plugin("tcp_protocol"), data.path().join("plugins/tcp-check.wasm")).unwrap();
    let redis_port = redis_server().await;

    let mut config = test_config();
    config.data_dir = Some(data.path().to_path_buf());
    let a = InProcessAgent::start(config).await;
    let mut def = wasm_check("by-name", "tcp-check", "2s", json!({"allow_hosts": ["127.0.0.1"]}));
    def["Wasm"]["args"] = json!({"protocol": "redis", "host": "127.0.0.1", "port": redis_port});
    let (code, body) = put(&a, "/v1/agent/check/register", def).await;
    assert_eq!(code, 200, "{body}");
    wait_check(&a, "by-name", "passing", "PONG").await;
    a.stop().await;

    let cached: Vec<_> = std::fs::read_dir(data.path().join("plugin-cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    // A new host (a restart) loads the compiled code from the cache instead of compiling.
    let host = PluginHost::new(HostOptions {
        plugin_dir: Some(data.path().join("plugins")),
        cache_dir: Some(data.path().join("plugin-cache")),
        ..HostOptions::default()
    })
    .unwrap();
    let l = host.load(&host.resolve("tcp-check").unwrap()).await.unwrap();
    assert!(l.from_cache);
    let e = host.resolve("nope").unwrap_err();
    assert!(matches!(&e, PluginError::NotFound { name, .. } if name == "nope"), "{e}");
}

#[test]
fn plugin_cli_runs_inspects_and_compiles() {
    let http_json = rust_plugin("http_json").display().to_string();
    let writer = rust_plugin("file_writer").display().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = rt.block_on(json_server(Arc::new(std::sync::Mutex::new(Vec::new()))));
    let url = format!("url=http://127.0.0.1:{port}/");

    let (code, out, err) = run_legate(&[
        "plugin",
        "run",
        &http_json,
        "--args",
        &url,
        "--args",
        "json_path=status",
        "--allow-host",
        "127.0.0.1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("passing: "), "{out}");
    assert!(out.contains("status = \"ok\""), "{out}");
    let (code, out, _) = run_legate(&["plugin", "run", &http_json, "--args", &url]);
    assert_eq!(code, 2);
    assert!(out.contains("critical: ") && out.contains("not in allow_hosts"), "{out}");
    let (code, _, err) = run_legate(&["plugin", "run", &http_json, "--args", "url=gopher://x"]);
    assert_eq!(code, 1);
    assert!(err.contains("rejected its configuration"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_legate(&[
        "plugin",
        "run",
        &writer,
        "--args",
        "path=/o/e.jsonl",
        "--file",
        &format!("{}:/o:rw", dir.path().display()),
        "--event-name",
        "hello",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(std::fs::read_to_string(dir.path().join("e.jsonl")).unwrap().contains("\"Name\":\"hello\""));

    let (code, out, _) = run_legate(&["plugin", "inspect", &http_json]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("World:   legate:plugin/check@0.1.0"), "{out}");
    assert!(out.contains("legate:plugin/http@0.1.0: outbound HTTP to allow_hosts"), "{out}");
    assert!(!out.contains("legate:plugin/kv"), "{out}");

    let data = tempfile::tempdir().unwrap();
    let d = data.path().display().to_string();
    let (code, out, err) = run_legate(&["plugin", "compile", "-data-dir", &d, &http_json]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("compiled"), "{out}");
    let (code, out, _) = run_legate(&["plugin", "compile", "-data-dir", &d, &http_json]);
    assert_eq!(code, 0);
    assert!(out.contains("already cached"), "{out}");
}

/// Runs an example's build.sh (componentize-py / componentize-js from PyPI / npm).
fn build_example(dir: &str) -> String {
    let dir = repo_root().join("examples/plugins").join(dir);
    let out = std::process::Command::new("bash").arg(dir.join("build.sh")).output().expect("bash runs");
    assert!(
        out.status.success(),
        "{}/build.sh failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("http_check.wasm").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_examples_run_as_checks() {
    let python = build_example("python-http-check");
    let js = build_example("js-http-check");
    let port = json_server(Arc::new(std::sync::Mutex::new(Vec::new()))).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.data_dir = Some(data.path().to_path_buf());
    let a = InProcessAgent::start(config).await;
    for (id, plugin) in [("python", &python), ("js", &js)] {
        let mut def = wasm_check(id, plugin, "5s", json!({"allow_hosts": ["127.0.0.1"], "memory_mb": 64}));
        def["Wasm"]["args"] = json!({"url": url, "json_path": "checks.0.name", "json_equals": "db"});
        let (code, body) = put(&a, "/v1/agent/check/register", def).await;
        assert_eq!(code, 200, "{id}: {body}");
        let mut bad = wasm_check(&format!("{id}-bad"), plugin, "5s", json!({}));
        bad["Wasm"]["args"] = json!({"url": "ftp://nope"});
        let (code, body) = put(&a, "/v1/agent/check/register", bad).await;
        assert_eq!(code, 400, "{id}: {body}");
        assert!(body.contains("is not an http:// or https:// URL"), "{id}: {body}");
    }
    let out = wait_check(&a, "python", "passing", "(python)").await;
    assert!(out.contains("checks.0.name = 'db'"), "{out}");
    let out = wait_check(&a, "js", "passing", "(javascript)").await;
    assert!(out.contains("checks.0.name = \"db\""), "{out}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_reach_only_what_is_granted() {
    let probe = rust_plugin("sandbox_probe").display().to_string();
    let (port, _server) = silent_server().await;
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("f.txt"), "twelve bytes").unwrap();
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let r = Client::new().put(a.url("/v1/kv/config/web/x")).body("hello").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Nothing granted: a file, a raw socket, HTTP, KV are all refused.
    let mut denied = wasm_check("denied", &probe, "2s", json!({}));
    denied["Wasm"]["args"] = json!({
        "read_file": "/data/f.txt",
        "connect": format!("127.0.0.1:{port}"),
        "http_url": format!("http://127.0.0.1:{port}/"),
        "kv_key": "config/web/x",
    });
    assert_eq!(put(&a, "/v1/agent/check/register", denied).await.0, 200);
    // Granted: the directory (read-only), the KV prefix. Raw sockets stay refused even with
    // allow_hosts (plugins use the host's net interface).
    let mut granted = wasm_check(
        "granted",
        &probe,
        "2s",
        json!({"kv_read_prefixes": ["config/web/"],
               "files": [{"host_dir": files.path(), "guest_dir": "/data"}]}),
    );
    granted["Wasm"]["args"] = json!({"read_file": "/data/f.txt", "kv_key": "config/web/x"});
    assert_eq!(put(&a, "/v1/agent/check/register", granted).await.0, 200);
    let mut outside = wasm_check("outside", &probe, "2s", json!({"kv_read_prefixes": ["config/web/"]}));
    outside["Wasm"]["args"] = json!({"kv_key": "config/db/password"});
    assert_eq!(put(&a, "/v1/agent/check/register", outside).await.0, 200);

    let out = wait_check(&a, "denied", "critical", "read /data/f.txt: denied").await;
    assert!(out.contains(&format!("connect 127.0.0.1:{port}: denied")), "{out}");
    assert!(out.contains(&format!("127.0.0.1:{port} is not in allow_hosts")), "{out}");
    assert!(out.contains("kv config/web/x: denied"), "{out}");
    let out = wait_check(&a, "granted", "passing", "read /data/f.txt: 12 bytes").await;
    assert!(out.contains("kv config/web/x: 5 bytes"), "{out}");
    wait_check(&a, "outside", "critical", "kv config/db/password: denied").await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_kv_reads_are_limited_by_the_check_token() {
    const MGMT: &str = "7c0e1c2d-0a3f-4e47-9a43-2c4e1c0a9f03";
    let probe = rust_plugin("sandbox_probe").display().to_string();
    let mut c = test_config();
    c.acl.enabled = true;
    c.acl.default_policy = "deny".into();
    c.acl.tokens.initial_management = Some(MGMT.into());
    // Requests without a token (this test's helpers) act with the management token.
    c.acl.tokens.default = Some(MGMT.into());
    let a = InProcessAgent::start(c).await;
    legate_tests::wait_leader(&a.base).await;
    retry_until(Duration::from_secs(15), "management token written", || async {
        let r = Client::new().put(a.url("/v1/kv/config/web/x")).body("hello").send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert_eq!(put(&a, "/v1/kv/config/db/password", json!("s3cret")).await.0, 200);
    let rules = "key_prefix \"config/web/\" { policy = \"read\" }";
    assert_eq!(put(&a, "/v1/acl/policy", json!({"Name": "web-config", "Rules": rules})).await.0, 200);
    let (_, t) = put(&a, "/v1/acl/token", json!({"Policies": [{"Name": "web-config"}]})).await;
    let token = serde_json::from_str::<Value>(&t).unwrap()["SecretID"].as_str().unwrap().to_string();

    // Both checks are granted all of config/; the token decides.
    for (id, key) in [("web", "config/web/x"), ("db", "config/db/password")] {
        let mut check = wasm_check(id, &probe, "2s", json!({"kv_read_prefixes": ["config/"]}));
        check["Wasm"]["args"] = json!({ "kv_key": key });
        check["Token"] = json!(token);
        assert_eq!(put(&a, "/v1/agent/check/register", check).await.0, 200);
    }
    let out = wait_check(&a, "web", "passing", "kv config/web/x: 5 bytes").await;
    assert!(!out.contains("denied"), "{out}");
    wait_check(&a, "db", "critical", "kv config/db/password: denied").await;
    a.stop().await;
}

/// What a server records of a pushed plugin, read without compiling it: the SDK's "version"
/// section (the plugin crate's version), the world and the imports.
#[test]
fn the_sdk_writes_a_version_section_the_registry_reads() {
    let bytes = std::fs::read(rust_plugin("http_json")).unwrap();
    let meta = legate_core::plugin::describe(&bytes).unwrap();
    assert_eq!(meta.version.as_deref(), Some("0.1.0"));
    assert_eq!(meta.world, legate_core::plugin::World::Check);
    assert!(meta.imports.iter().any(|i| i.starts_with("legate:plugin/http")), "{:?}", meta.imports);
    let handler = std::fs::read(rust_plugin("webhook")).unwrap();
    assert_eq!(legate_core::plugin::describe(&handler).unwrap().world, legate_core::plugin::World::EventHandler);
}
