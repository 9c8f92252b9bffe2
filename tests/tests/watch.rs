//! Watches end to end: `legate watch` as a process (each type printed as JSON, handlers run on
//! changes, handler failure), config watches in real agents with exec, shell and HTTP handlers
//! (stdin JSON and `CONSUL_INDEX`), change-only delivery, user events over gossip reaching an
//! event watch, reload adding and removing watches, and a hanging handler killed at shutdown.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use legate_core::config::WatchDefinition;
use legate_tests::{legate_bin, retry_until, run_legate_with, test_config, AgentProcess, InProcessAgent};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

/// A handler script appending `INDEX=$CONSUL_INDEX`, its stdin and a `---` line to a log.
fn handler_script(dir: &Path, name: &str) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join(format!("{name}.log"));
    let script = dir.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{{ echo \"INDEX=$CONSUL_INDEX\"; cat; echo; echo ---; }} >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script.display().to_string(), log)
}

/// The complete deliveries logged by [`handler_script`]: (CONSUL_INDEX, result).
fn deliveries(log: &Path) -> Vec<(u64, Value)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(end) = rest.find("\n---\n") {
        let entry = &rest[..end];
        rest = &rest[end + 5..];
        let (first, json) = entry.split_once('\n').unwrap_or((entry, ""));
        let index = first.trim().strip_prefix("INDEX=").and_then(|i| i.parse().ok()).expect("INDEX line");
        out.push((index, serde_json::from_str(json.trim()).expect("handler stdin is JSON")));
    }
    out
}

async fn wait_deliveries(log: &Path, n: usize, what: &str) -> Vec<(u64, Value)> {
    retry_until(WAIT, what, || async {
        let d = deliveries(log);
        (d.len() >= n).then_some(d)
    })
    .await
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn put(c: &Client, url: String, body: impl Into<reqwest::Body>) {
    let r = c.put(url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn watch(kind: &str, f: impl FnOnce(&mut WatchDefinition)) -> WatchDefinition {
    let mut w = WatchDefinition { kind: kind.into(), ..Default::default() };
    f(&mut w);
    w
}

/// `legate watch -http-addr <addr> <args...>` to completion, off the runtime's threads.
async fn cli_watch(addr: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["watch".to_string(), "-http-addr".into(), addr.to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = all.iter().map(String::as_str).collect();
        run_legate_with(&a, &[], None)
    })
    .await
    .unwrap()
}

async fn cli_json(addr: &str, args: &[&str]) -> Value {
    let (code, out, err) = cli_watch(addr, args).await;
    assert_eq!(code, 0, "legate watch {args:?}: {err}");
    assert!(out.lines().count() == 1 || out.contains("\n    "), "indented with four spaces: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_prints_the_json_of_each_type_once() {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_serf_health(&a.base, "test-node").await;
    let addr = a.base.trim_start_matches("http://").to_string();
    let c = Client::new();
    put(&c, a.url("/v1/kv/app/a"), "1").await;
    put(&c, a.url("/v1/kv/app/b"), "2").await;
    put(&c, a.url("/v1/kv/foo"), "bar").await;
    let svc = json!({"Name": "web", "Tags": ["v1"], "Port": 80,
        "Check": {"CheckID": "web-ttl", "Name": "web ttl", "TTL": "60s", "Status": "passing"}});
    put(&c, a.url("/v1/agent/service/register"), svc.to_string()).await;
    put(&c, a.url("/v1/event/fire/deploy"), "v2").await;
    retry_until(WAIT, "web in health", || async {
        let v: Value = c.get(a.url("/v1/health/service/web?passing")).send().await.ok()?.json().await.ok()?;
        (v.as_array()?.len() == 1).then_some(())
    })
    .await;

    let v = cli_json(&addr, &["-type", "key", "-key", "foo"]).await;
    assert_eq!(v["Key"], "foo");
    assert_eq!(v["Value"], b64("bar"));
    assert_eq!(cli_json(&addr, &["-type", "key", "-key", "missing"]).await, Value::Null);

    let v = cli_json(&addr, &["-type", "keyprefix", "-prefix", "app/"]).await;
    let keys: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["Key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["app/a", "app/b"]);

    let v = cli_json(&addr, &["-type", "services"]).await;
    assert_eq!(v["web"], json!(["v1"]), "{v}");
    assert!(v.get("consul").is_some(), "{v}");

    let v = cli_json(&addr, &["-type", "nodes"]).await;
    assert_eq!(v[0]["Node"], "test-node");

    let v = cli_json(&addr, &["-type", "service", "-service", "web", "-tag", "v1", "-passingonly"]).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["Service"]["Service"], "web");
    let v = cli_json(&addr, &["-type", "service", "-service", "web", "-tag", "nope"]).await;
    assert_eq!(v, json!([]));

    let v = cli_json(&addr, &["-type", "checks", "-service", "web"]).await;
    assert_eq!(v[0]["CheckID"], "web-ttl");
    let v = cli_json(&addr, &["-type", "checks", "-state", "critical"]).await;
    assert_eq!(v, json!([]));
    let v = cli_json(&addr, &["-type", "checks", "-filter", "CheckID == \"web-ttl\""]).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");

    let v = cli_json(&addr, &["-type", "event", "-name", "deploy"]).await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["Name"], "deploy");
    assert_eq!(v[0]["Payload"], b64("v2"));
    assert_eq!(cli_json(&addr, &["-type", "event", "-name", "other"]).await, json!([]));

    // Bad input.
    let (code, _, err) = cli_watch(&addr, &[]).await;
    assert_eq!((code, err.trim()), (1, "Must specify watch type"));
    let (code, _, err) = cli_watch(&addr, &["-type", "bogus"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Error parsing watch plan") && err.contains("unsupported watch type"), "{err}");
    let (code, _, err) = cli_watch(&addr, &["-type", "key"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("requires key"), "{err}");
    let (code, _, err) = cli_watch(&addr, &["-type", "checks", "-service", "web", "-state", "any"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Cannot specify service and state"), "{err}");
    let (code, _, err) = cli_watch("127.0.0.1:1", &["-type", "nodes"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Error querying Consul agent"), "{err}");
    a.stop().await;
}

/// A `legate watch` child process, killed when dropped.
struct WatchProcess(Child);

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_watch(args: &[&str]) -> WatchProcess {
    let child = Command::new(legate_bin())
        .arg("watch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    WatchProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_runs_its_handler_on_each_change_and_stops_when_it_fails() {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let addr = a.base.trim_start_matches("http://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = handler_script(dir.path(), "cli");
    let c = Client::new();

    // Through the shell (the default).
    let _w = spawn_watch(&["-http-addr", &addr, "-type", "key", "-key", "cfg", &script]);
    let d = wait_deliveries(&log, 1, "first result").await;
    assert_eq!(d[0].1, Value::Null);
    put(&c, a.url("/v1/kv/cfg"), "one").await;
    let d = wait_deliveries(&log, 2, "the change").await;
    assert_eq!(d[1].1["Value"], b64("one"));
    assert!(d[1].0 >= d[1].1["ModifyIndex"].as_u64().unwrap(), "CONSUL_INDEX {} of {}", d[1].0, d[1].1);

    // Without a shell, arguments are passed as they are.
    let (script2, log2) = handler_script(dir.path(), "noshell");
    let _w2 = spawn_watch(&["-http-addr", &addr, "-shell=false", "-type", "keyprefix", "-prefix", "cf", &script2]);
    let d = wait_deliveries(&log2, 1, "first keyprefix result").await;
    assert_eq!(d[0].1[0]["Key"], "cfg");

    // A failing handler stops the watch: exit 1.
    let (code, _, err) =
        cli_watch(&addr, &["-type", "nodes", "-shell=false", "/bin/sh", "-c", "echo handler-ran >&2; exit 3"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("handler-ran") && err.contains("Error executing handler: exit status 3"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watches_run_exec_and_shell_handlers_on_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let (key_script, key_log) = handler_script(dir.path(), "key");
    let (prefix_script, prefix_log) = handler_script(dir.path(), "prefix");
    let (svc_script, svc_log) = handler_script(dir.path(), "service");
    let (checks_script, checks_log) = handler_script(dir.path(), "checks");
    let (nodes_script, nodes_log) = handler_script(dir.path(), "nodes");
    let mut config = test_config();
    config.watches = vec![
        watch("key", |w| {
            w.key = Some("foo".into());
            w.args = vec![key_script.clone()];
        }),
        // The deprecated shell-string form.
        watch("keyprefix", |w| {
            w.prefix = Some("app/".into());
            w.handler = Some(format!("{prefix_script} ignored-arg"));
        }),
        watch("service", |w| {
            w.service = Some("web".into());
            w.passingonly = Some(true);
            w.args = vec![svc_script.clone()];
        }),
        watch("checks", |w| {
            w.state = Some("critical".into());
            w.args = vec![checks_script.clone()];
        }),
        watch("nodes", |w| w.args = vec![nodes_script.clone()]),
    ];
    config.telemetry.prometheus_retention_time = legate_core::config::GoDuration::from_secs(300);
    let a = InProcessAgent::start(config).await;
    let c = Client::new();

    // Every watch delivers its first result once.
    let d = wait_deliveries(&key_log, 1, "first key result").await;
    assert_eq!(d[0].1, Value::Null, "a missing key is null");
    assert_eq!(wait_deliveries(&prefix_log, 1, "first prefix result").await[0].1, Value::Null);
    assert_eq!(wait_deliveries(&svc_log, 1, "first service result").await[0].1, json!([]));
    wait_deliveries(&checks_log, 1, "first checks result").await;
    retry_until(WAIT, "nodes watch sees the node", || async {
        deliveries(&nodes_log).iter().any(|(_, v)| v[0]["Node"] == "test-node").then_some(())
    })
    .await;

    // Key: a write delivers the entry with its index.
    put(&c, a.url("/v1/kv/foo"), "1").await;
    let d = wait_deliveries(&key_log, 2, "foo=1").await;
    assert_eq!(d[1].1["Value"], b64("1"));
    assert!(d[1].0 > d[0].0);
    // Another key's write moves the index but not the result: nothing is delivered. Writing
    // foo again with the same value is a change (its ModifyIndex moves), as in Consul.
    put(&c, a.url("/v1/kv/bar"), "x").await;
    put(&c, a.url("/v1/kv/foo"), "1").await;
    let d = wait_deliveries(&key_log, 3, "foo rewritten").await;
    assert_eq!(d[2].1["Value"], b64("1"));
    assert!(d[2].1["ModifyIndex"].as_u64() > d[1].1["ModifyIndex"].as_u64(), "{d:?}");
    put(&c, a.url("/v1/kv/foo"), "2").await;
    let d = wait_deliveries(&key_log, 4, "foo=2").await;
    assert_eq!(d.len(), 4, "the write of bar delivered nothing: {d:?}");
    assert_eq!(d[3].1["Value"], b64("2"));

    // Keyprefix through the shell handler.
    put(&c, a.url("/v1/kv/app/a"), "A").await;
    let d = wait_deliveries(&prefix_log, 2, "app/a").await;
    assert_eq!(d[1].1[0]["Key"], "app/a");

    // Checks in state critical: a new TTL check starts critical.
    let r = c
        .put(a.url("/v1/agent/check/register"))
        .json(&json!({"Name": "mem", "CheckID": "mem", "TTL": "60s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    retry_until(WAIT, "critical check delivered", || async {
        deliveries(&checks_log)
            .iter()
            .any(|(_, v)| v.as_array().is_some_and(|a| a.iter().any(|c| c["CheckID"] == "mem")))
            .then_some(())
    })
    .await;

    // A critical node check fails every service of the node: drop it before the service part.
    put(&c, a.url("/v1/agent/check/deregister/mem"), "").await;

    // Service, passing only: registered with a critical check it is not delivered; passing, it is.
    let svc = json!({"Name": "web", "Port": 80, "Check": {"CheckID": "web-ttl", "TTL": "60s"}});
    put(&c, a.url("/v1/agent/service/register"), svc.to_string()).await;
    put(&c, a.url("/v1/agent/check/pass/web-ttl"), "").await;
    let d = retry_until(WAIT, "passing web delivered", || async {
        let d = deliveries(&svc_log);
        d.iter().any(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty())).then_some(d)
    })
    .await;
    let last = &d.last().unwrap().1;
    assert_eq!(last[0]["Service"]["Service"], "web");
    assert!(d.iter().all(|(_, v)| v.as_array().unwrap().iter().all(|e| e["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["Status"] == "passing"))));

    // Each run was counted and timed under its watch type and handler kind.
    let text = c.get(a.url("/v1/agent/metrics?format=prometheus")).send().await.unwrap().text().await.unwrap();
    let value =
        |series: &str| text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok());
    let key_runs = deliveries(&key_log).len() as f64;
    assert_eq!(value("legate_watch_fires{type=\"key\",handler=\"exec\"}"), Some(key_runs), "{text}");
    assert!(value("legate_watch_fires{type=\"keyprefix\",handler=\"shell\"}").unwrap() >= 1.0, "{text}");
    assert!(value("legate_watch_handler_duration_count{type=\"service\",handler=\"exec\"}").unwrap() >= 2.0, "{text}");
    assert_eq!(value("legate_watch_failures{type=\"key\",handler=\"exec\"}"), None, "{text}");
    a.stop().await;
}

/// One request seen by [`hook_server`].
#[derive(Debug)]
struct Hook {
    head: String,
    body: Value,
}

/// A small HTTP/1.1 server recording each request and answering 200.
async fn hook_server(listener: TcpListener, tx: tokio::sync::mpsc::UnboundedSender<Hook>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, len) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    buf.drain(..end + 4);
                    break (head, len);
                }
            };
            while buf.len() < len {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
            let body = serde_json::from_slice(&buf).unwrap_or(Value::Null);
            let _ = tx.send(Hook { head, body });
        });
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_handler_receives_the_result_as_a_post() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(hook_server(listener, tx));
    let mut config = test_config();
    config.watches = vec![watch("services", |w| {
        w.handler_type = Some("http".into());
        w.http_handler_config = Some(json!({
            "path": format!("http://127.0.0.1:{port}/hook"),
            "method": "POST",
            "header": {"x-auth": ["s3cret"]},
            "timeout": "5s",
            "tls_skip_verify": false,
        }));
    })];
    let a = InProcessAgent::start(config).await;
    let first = tokio::time::timeout(WAIT, rx.recv()).await.expect("first POST").unwrap();
    assert!(first.head.starts_with("POST /hook HTTP/1.1"), "{}", first.head);
    assert_eq!(header(&first.head, "x-auth"), Some("s3cret"));
    assert_eq!(header(&first.head, "content-type"), Some("application/json"));
    assert!(first.body.is_object(), "{:?}", first.body);

    let c = Client::new();
    put(&c, a.url("/v1/agent/service/register"), json!({"Name": "api", "Tags": ["t1"]}).to_string()).await;
    let hook = tokio::time::timeout(WAIT, async {
        loop {
            let h = rx.recv().await.expect("hook server runs");
            if h.body.get("api").is_some() {
                return h;
            }
        }
    })
    .await
    .expect("POST with api");
    assert_eq!(hook.body["api"], json!(["t1"]));
    let index: u64 = header(&hook.head, "x-consul-index").expect("X-Consul-Index").parse().unwrap();
    assert!(index > 0);
    a.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_handler_does_not_stop_shutdown_and_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut config = test_config();
    config.watches = vec![watch("nodes", |w| {
        w.handler = Some(format!("echo $$ > {}; sleep 600", pidfile.display()));
    })];
    let a = InProcessAgent::start(config).await;
    let pid: i32 =
        retry_until(WAIT, "handler started", || async { std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok() })
            .await;
    // The agent drains every task (asserted by stop) although the handler never returns.
    a.stop().await;
    retry_until(WAIT, "handler killed", || async {
        // SAFETY: signal 0 only probes whether the pid exists.
        let exists = unsafe { libc::kill(pid, 0) } == 0;
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"));
        (!exists || zombie).then_some(())
    })
    .await;
}

fn write_watches(dir: &Path, watches: Value) {
    std::fs::write(dir.join("watches.json"), json!({ "watches": watches }).to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_starts_new_watches_stops_removed_ones_and_keeps_the_rest() {
    let handlers = tempfile::tempdir().unwrap();
    let (a_script, a_log) = handler_script(handlers.path(), "a");
    let (b_script, b_log) = handler_script(handlers.path(), "b");
    let (c_script, c_log) = handler_script(handlers.path(), "c");
    let conf = tempfile::tempdir().unwrap();
    let kw = |key: &str, script: &str| json!({"type": "key", "key": key, "args": [script]});
    write_watches(conf.path(), json!([kw("a", &a_script), kw("c", &c_script)]));
    let d = conf.path().to_str().unwrap().to_string();
    let p = AgentProcess::start(
        &["agent", "-dev", "-http-port", "0", "-dns-port", "-1", "-server-port", "0", "-config-dir", &d],
        &[],
    );
    wait_deliveries(&a_log, 1, "watch a running").await;
    wait_deliveries(&c_log, 1, "watch c running").await;

    write_watches(conf.path(), json!([kw("c", &c_script), kw("b", &b_script)]));
    let r = Client::new().put(p.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // b starts (its first result), and in the same pass a was stopped.
    wait_deliveries(&b_log, 1, "watch b started").await;
    let c = Client::new();
    put(&c, p.url("/v1/kv/a"), "A").await;
    put(&c, p.url("/v1/kv/c"), "C").await;
    put(&c, p.url("/v1/kv/b"), "B").await;
    let b = wait_deliveries(&b_log, 2, "b sees its write").await;
    assert_eq!(b[1].1["Value"], b64("B"));
    let cd = wait_deliveries(&c_log, 2, "c sees its write").await;
    // c kept running: no second "first result" after the reload.
    assert_eq!(cd.len(), 2, "{cd:?}");
    assert_eq!(cd[1].1["Value"], b64("C"));
    assert_eq!(deliveries(&a_log).len(), 1, "the removed watch ran again: {:?}", deliveries(&a_log));
    assert!(p.output().contains("watch stopped"), "{}", p.output());

    // A bad watch in a reload is refused with the file and key, and the running ones stay.
    write_watches(conf.path(), json!([{"type": "key", "args": ["x"]}]));
    let r = Client::new().put(p.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(text.contains("watches[0].key") && text.contains("requires key"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_over_gossip_reach_an_event_watch() {
    let (ip1, ip2) = ("127.0.47.1", "127.0.47.2");
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let handlers = tempfile::tempdir().unwrap();
    let (script, log) = handler_script(handlers.path(), "event");
    let conf = tempfile::tempdir().unwrap();
    write_watches(conf.path(), json!([{"type": "event", "name": "deploy", "args": [script]}]));
    let common = |ip: &str, name: &str, dir: &Path| -> Vec<String> {
        let mut v = legate_tests::loopback_agent_args(ip, name, dir.to_str().unwrap());
        v.extend(["-server-port", "8300"].map(String::from));
        v
    };
    let mut a1 = common(ip1, "s1", d1.path());
    a1.extend(["-server", "-bootstrap"].map(String::from));
    let mut a2 = common(ip2, "c1", d2.path());
    a2.extend(
        ["-retry-join", ip1, "-retry-interval", "1s", "-config-dir", conf.path().to_str().unwrap()].map(String::from),
    );
    let s = AgentProcess::start(&a1.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let cl = AgentProcess::start(&a2.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let c = Client::new();
    retry_until(WAIT, "client joined", || async {
        let m: Value = c.get(s.url("/v1/agent/members")).send().await.ok()?.json().await.ok()?;
        (m.as_array()?.iter().filter(|m| m["Status"] == 1).count() == 2).then_some(())
    })
    .await;
    // The first result (no events yet) is delivered once, as Consul's event watches do.
    let d = wait_deliveries(&log, 1, "first event result").await;
    assert_eq!(d[0].1, json!([]));

    // Fired on the server, carried by gossip to the client, seen by its watch.
    put(&c, s.url("/v1/event/fire/deploy"), "v1").await;
    let d = wait_deliveries(&log, 2, "deploy v1").await;
    assert_eq!(d[1].1.as_array().unwrap().len(), 1, "{d:?}");
    assert_eq!(d[1].1[0]["Payload"], b64("v1"));
    // Events of other names wake the list but are not delivered; the next deploy is delivered
    // alone (pruned to the new events).
    put(&c, s.url("/v1/event/fire/other"), "x").await;
    put(&c, s.url("/v1/event/fire/deploy"), "v2").await;
    let d = wait_deliveries(&log, 3, "deploy v2").await;
    assert_eq!(d.len(), 3, "{d:?}");
    assert_eq!(d[2].1.as_array().unwrap().len(), 1, "{d:?}");
    assert_eq!(d[2].1[0]["Payload"], b64("v2"));
    assert_eq!(d[2].1[0]["Name"], "deploy");
    drop(cl);
    drop(s);
}
