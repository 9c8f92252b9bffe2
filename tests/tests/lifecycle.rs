//! The agent as a process: start-up, signals, pid file, data-dir lock, node ID, SIGHUP and
//! `PUT /v1/agent/reload`, log outputs.

use std::time::Duration;

use legate_tests::{config_dir, retry_until, AgentProcess};
use serde_json::Value;

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

const DEV: &[&str] = &["agent", "-dev", "-http-port", "0", "-dns-port", "-1", "-server-port", "0"];

fn args<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[tokio::test]
async fn dev_agent_answers_and_interrupt_stops_it_quickly() {
    let pid_dir = tempfile::tempdir().unwrap();
    let pid_file = pid_dir.path().join("legate.pid");
    let mut p = AgentProcess::start(&args(DEV, &["-pid-file", pid_file.to_str().unwrap()]), &[]);
    let v = get_json(&p.url("/v1/agent/self")).await;
    assert_eq!(v["Config"]["Server"], true);
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(pid, p.child.id());

    p.signal(libc::SIGINT);
    let started = std::time::Instant::now();
    let code = p.wait_exit(Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(2));
    // A server skips the graceful leave on interrupt (skip_leave_on_interrupt), and Consul
    // then exits 1 after shutting down.
    assert_eq!(code, Some(1), "{}", p.output());
    let out = p.output();
    assert!(out.contains("Caught signal: interrupt"), "{out}");
    assert!(out.contains("Graceful shutdown disabled"), "{out}");
    assert!(out.contains("agent stopped clean=true"), "{out}");
    assert!(!pid_file.exists(), "pid file removed on shutdown");
}

#[tokio::test]
async fn client_agent_leaves_gracefully_on_interrupt() {
    let data = tempfile::tempdir().unwrap();
    let mut p = AgentProcess::start(
        &[
            "agent",
            "-data-dir",
            data.path().to_str().unwrap(),
            "-bind",
            "127.0.0.1",
            "-http-port",
            "0",
            "-dns-port",
            "-1",
        ],
        &[],
    );
    p.signal(libc::SIGINT);
    assert_eq!(p.wait_exit(Duration::from_secs(5)), Some(0), "{}", p.output());
    assert!(p.output().contains("Gracefully shutting down agent..."));
}

#[tokio::test]
async fn data_dir_is_locked_and_node_id_persists() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let base = [
        "agent",
        "-server",
        "-bootstrap",
        "-data-dir",
        dir,
        "-bind",
        "127.0.0.1",
        "-http-port",
        "0",
        "-dns-port",
        "-1",
    ];
    let mut first = AgentProcess::start(&base, &[]);
    let id = get_json(&first.url("/v1/agent/self")).await["Config"]["NodeID"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(data.path().join("node-id")).unwrap(), id);

    let mut second = AgentProcess::spawn(&base, &[]);
    assert_eq!(second.wait_exit(Duration::from_secs(10)), Some(1));
    let out = second.output();
    assert!(
        out.contains(&format!("data_dir {dir} is already in use by another agent (pid {})", first.child.id())),
        "{out}"
    );

    first.signal(libc::SIGTERM);
    first.wait_exit(Duration::from_secs(5));
    let again = AgentProcess::start(&base, &[]);
    let id2 = get_json(&again.url("/v1/agent/self")).await["Config"]["NodeID"].as_str().unwrap().to_string();
    assert_eq!(id, id2, "node ID survives a restart");
}

#[tokio::test]
async fn http_port_in_use_fails_clearly() {
    let first = AgentProcess::start(DEV, &[]);
    let port = first.http.unwrap().port().to_string();
    let mut second =
        AgentProcess::spawn(&["agent", "-dev", "-http-port", &port, "-dns-port", "-1", "-server-port", "0"], &[]);
    assert_eq!(second.wait_exit(Duration::from_secs(10)), Some(1));
    let out = second.output();
    assert!(out.contains(&format!("Error starting HTTP server: listen tcp 127.0.0.1:{port}: bind:")), "{out}");
}

#[tokio::test]
async fn sighup_and_reload_endpoint_apply_valid_config_and_keep_running_on_errors() {
    let dir = config_dir(&[("a.json", r#"{"log_level": "info", "node_meta": {"rack": "r1"}}"#)]);
    let cfg = dir.path().to_str().unwrap();
    let p = AgentProcess::start(&args(DEV, &["-config-dir", cfg]), &[]);
    let self_url = p.url("/v1/agent/self");
    let first = get_json(&self_url).await;
    assert_eq!(first["DebugConfig"]["LogLevel"], "info");
    let grpc_before = first["DebugConfig"]["Ports"]["grpc"].clone();
    assert!(grpc_before.is_number(), "{first}");
    // A user event is logged at debug when it arrives: not at info.
    let fire = |name: &'static str| {
        let url = p.url(&format!("/v1/event/fire/{name}"));
        async move { assert!(reqwest::Client::new().put(url).send().await.unwrap().status().is_success()) }
    };
    let events = p.url("/v1/event/list");
    fire("at-info").await;
    retry_until(Duration::from_secs(5), "the event at info arrived", || async {
        get_json(&events).await.to_string().contains("at-info").then_some(())
    })
    .await;
    assert!(!p.output().contains("user event received"), "{}", p.output());

    // A valid edit, picked up on SIGHUP: reloadable keys apply, a port change does not.
    std::fs::write(
        dir.path().join("a.json"),
        r#"{"log_level": "debug", "node_meta": {"rack": "r2"}, "ports": {"grpc": 9502}}"#,
    )
    .unwrap();
    p.signal(libc::SIGHUP);
    retry_until(Duration::from_secs(5), "reloaded log level", || async {
        let v = get_json(&self_url).await;
        (v["DebugConfig"]["LogLevel"] == "debug").then_some(())
    })
    .await;
    // The new level reaches the log at once (tracing's cached interest follows it).
    fire("at-debug").await;
    retry_until(Duration::from_secs(5), "the event at debug logged", || async {
        p.output().lines().any(|l| l.contains("user event received") && l.contains("at-debug")).then_some(())
    })
    .await;
    let v = get_json(&self_url).await;
    assert_eq!(v["Meta"]["rack"], "r2");
    assert_eq!(v["DebugConfig"]["Ports"]["grpc"], grpc_before, "restart-only key not half-applied");
    let out = p.output();
    assert!(out.contains("config change requires restart"), "{out}");
    assert!(out.contains("ports.grpc"), "{out}");

    // A broken file: the reload fails with file and line, the running config stays.
    std::fs::write(dir.path().join("b.json"), "{\n  \"log_level\": \"warn\",\n  \"ports\": {\"http\": \"x\"}\n}")
        .unwrap();
    let resp = reqwest::Client::new().put(p.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let text = resp.text().await.unwrap();
    assert!(text.contains("b.json:3: ports.http"), "{text}");
    p.signal(libc::SIGHUP);
    retry_until(Duration::from_secs(5), "reload failure logged", || async {
        p.output().contains("Failed to reload configs").then_some(())
    })
    .await;
    assert_eq!(get_json(&self_url).await["DebugConfig"]["LogLevel"], "debug");

    // Fixed: the endpoint applies it.
    std::fs::write(dir.path().join("b.json"), r#"{"log_level": "warn"}"#).unwrap();
    let resp = reqwest::Client::new().put(p.url("/v1/agent/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(get_json(&self_url).await["DebugConfig"]["LogLevel"], "warn");
}

#[tokio::test]
async fn json_logs_and_log_file() {
    let logs = tempfile::tempdir().unwrap();
    let log_dir = format!("{}/", logs.path().display());
    let mut p = AgentProcess::start(&args(DEV, &["-log-json", "-log-file", &log_dir]), &[]);
    p.signal(libc::SIGTERM);
    p.wait_exit(Duration::from_secs(5));
    let out = p.output();
    let json_line = out.lines().find(|l| l.contains("agent started")).expect("start logged");
    let v: Value = serde_json::from_str(json_line).expect("JSON log line");
    assert_eq!(v["level"], "INFO");
    let files: Vec<_> = std::fs::read_dir(logs.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("agent started"), "{text}");
}

#[tokio::test]
async fn config_errors_at_start_exit_1_with_the_message() {
    let dir = config_dir(&[("x.hcl", "ports {\n  https = 70000\n}\n")]);
    let mut p = AgentProcess::spawn(&args(DEV, &["-config-dir", dir.path().to_str().unwrap()]), &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(p.output().contains("x.hcl:2: ports.https: invalid port 70000"), "{}", p.output());

    let mut p = AgentProcess::spawn(&["agent", "-server"], &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(p.output().contains("data_dir cannot be empty"), "{}", p.output());
}

/// An agent whose log output nobody reads (a full pipe) keeps answering: log lines are
/// dropped, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_log_pipe_never_stalls_the_agent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(legate_tests::legate_bin())
        .args([
            "agent",
            "-dev",
            "-log-level=trace",
            &format!("-http-port={port}"),
            "-dns-port=-1",
            "-serf-lan-port=0",
            "-server-port=0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    legate_tests::wait_leader(&base).await;
    let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // Far more log output than a pipe holds (64 KiB): every request logs at trace.
    for i in 0..1500 {
        let r = c.put(format!("{base}/v1/kv/pipe/{}", i % 10)).body("v").send().await;
        assert!(r.is_ok_and(|r| r.status() == 200), "request {i} stalled or failed");
    }
    let r = c.get(format!("{base}/v1/kv/pipe/1?raw")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v");
    let _ = child.kill();
    let _ = child.wait();
}

/// `legate monitor -log-level debug` shows a KV write's request line live, its token hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legate_monitor_shows_a_kv_write_live() {
    use std::io::Read;
    let a = AgentProcess::start(&args(DEV, &["-log-level=warn"]), &[]);
    let base = a.url("");
    legate_tests::wait_leader(base.trim_end_matches('/')).await;
    let http = format!("-http-addr={}", a.http.unwrap());
    let mut monitor = std::process::Command::new(legate_tests::legate_bin())
        .args(["monitor", "-log-level", "debug", &http])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = monitor.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    let c = reqwest::Client::new();
    let mut seen = String::new();
    retry_until(Duration::from_secs(20), "the KV write in the monitor", || {
        let url = a.url("/v1/kv/monitored?token=very-secret-token");
        let c = c.clone();
        let got: Vec<String> = rx.try_iter().collect();
        seen.push_str(&got.concat());
        let done = seen.contains("url=/v1/kv/monitored");
        async move {
            if done {
                return Some(());
            }
            let _ = c.put(url).body("x").send().await;
            None
        }
    })
    .await;
    // hclog's line, as `consul monitor` prints it.
    assert!(seen.contains("[DEBUG] agent.http: Request finished: method=PUT url=/v1/kv/monitored"), "{seen}");
    assert!(seen.contains("token=<hidden>") && !seen.contains("very-secret-token"), "{seen}");
    assert!(!a.output().contains("very-secret-token"));
    let _ = monitor.kill();
    let _ = monitor.wait();
}

/// `legate debug` writes a bundle of the agent's state, metrics and debug log; no secret is in
/// it (the management token it ran with, a token given as a query parameter, the gossip key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legate_debug_writes_a_bundle_without_secrets() {
    use std::io::Read;
    const MGMT: &str = "3f1b1c9e-5f8d-4c3a-9a77-2d9c1b7e4f10";
    const KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    let dir = config_dir(&[(
        "acl.hcl",
        &format!(
            "acl {{ enabled = true default_policy = \"deny\" tokens {{ initial_management = \"{MGMT}\" }} }}\nencrypt = \"{KEY}\"\n"
        ),
    )]);
    let a = AgentProcess::start(&args(DEV, &["-config-dir", dir.path().to_str().unwrap()]), &[]);
    let base = a.url("");
    let base = base.trim_end_matches('/').to_string();
    let c = reqwest::Client::new();
    retry_until(Duration::from_secs(20), "the management token works", || async {
        let r = c.get(format!("{base}/v1/agent/self")).header("X-Consul-Token", MGMT).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle");
    let http = format!("-http-addr={}", a.http.unwrap());
    let bundle_arg = bundle.to_str().unwrap().to_string();
    let run = tokio::task::spawn_blocking(move || {
        let args = ["debug", &http, "-token", MGMT, "-duration=10s", "-interval=5s", "-output", &bundle_arg];
        legate_tests::run_legate(&args)
    });
    // Traffic through the whole capture, with a token as a query parameter.
    let mut run = run;
    let (code, stdout, stderr) = loop {
        let _ = c.put(format!("{base}/v1/kv/debugged?token={MGMT}")).body("v").send().await;
        if let Ok(done) = tokio::time::timeout(Duration::from_millis(300), &mut run).await {
            break done.unwrap();
        }
    };
    assert_eq!(code, 0, "{stdout}{stderr}");
    let archive = out.path().join("bundle.tar.gz");
    assert!(stdout.contains(&format!("Saved debug archive: {}", archive.display())), "{stdout}");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap()));
    let mut names = Vec::new();
    let mut all = String::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        names.push(e.path().unwrap().display().to_string());
        let mut text = String::new();
        e.read_to_string(&mut text).unwrap();
        all.push_str(&text);
    }
    eprintln!("bundle: {names:?}");
    for want in [
        "bundle/agent.json",
        "bundle/host.json",
        "bundle/members.json",
        "bundle/plugins.json",
        "bundle/metrics/000.json",
        "bundle/agent.log",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert!(all.contains("url=/v1/kv/debugged?token=<hidden>"), "the debug log has the requests");
    assert!(!all.contains(MGMT) && !all.contains(KEY), "a secret in the bundle");
    // Consul's floors.
    let (code, _, err) = legate_tests::run_legate(&["debug", "-duration=1s"]);
    assert_eq!(code, 1);
    assert!(err.contains("-duration must be at least 10s"), "{err}");
    let (code, _, err) = legate_tests::run_legate(&["debug", "-capture", "everything"]);
    assert_eq!(code, 1);
    assert!(err.contains("Invalid capture target \"everything\""), "{err}");
}

/// A client agent pages out its binary's startup-only code once it is in the catalog: its
/// file-backed RSS drops, and it goes on serving (what it runs faults back in). It runs from a
/// copy of the binary of its own, since the kernel leaves pages that another process maps too
/// (the server here, other tests' agents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_agent_pages_out_its_startup_code_once_in_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("legate-client");
    std::fs::copy(legate_tests::legate_bin(), &bin).unwrap();
    let (sdata, cdata) = (dir.path().join("s"), dir.path().join("c"));
    let mut sargs = legate_tests::loopback_agent_args("127.0.23.1", "pages-server", sdata.to_str().unwrap());
    sargs.extend(["-server", "-bootstrap"].map(String::from));
    let server = AgentProcess::start(&sargs.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let mut cargs =
        legate_tests::cluster_agent_args("127.0.23.2", "pages-client", cdata.to_str().unwrap(), false, "127.0.23.1");
    cargs.extend(["-log-level", "debug"].map(String::from));
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(&cargs);
    let client = AgentProcess::start_command(cmd, &[]);

    let line = retry_until(Duration::from_secs(60), "the client's page-out", || async {
        client.output().lines().find(|l| l.contains("paged out the binary's startup pages")).map(str::to_string)
    })
    .await;
    let field = |name: &str| -> u64 {
        let rest = line.split(&format!("{name}=")).nth(1).unwrap_or_else(|| panic!("no {name} in {line}"));
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let (before, after) = (field("before_kib"), field("after_kib"));
    assert!(after * 2 < before, "file-backed RSS {before} KiB -> {after} KiB: {line}");
    let now = legate_types::proc_status::field(&client.child.id().to_string(), "RssFile").unwrap();
    assert!(now < before, "file-backed RSS back to {now} KiB (was {before} KiB before the page-out)");
    // Still serving: the client's own view and the catalog through it.
    let members = get_json(&client.url("/v1/agent/members")).await;
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");
    let nodes = get_json(&client.url("/v1/catalog/nodes")).await;
    assert!(nodes.as_array().unwrap().iter().any(|n| n["Node"] == "pages-client"), "{nodes}");
    drop(server);
}
