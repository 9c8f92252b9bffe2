//! The plugin registry across a real cluster of agent processes: a Rust check plugin pushed
//! once through one server runs on client agents that reference it (`registry:<name>` follows
//! the latest version, `registry:<name>@<version>` stays pinned); a client restarted without
//! its compile cache fetches it again; with `plugins.trusted_keys`, an unsigned plugin runs
//! nowhere and a signed one everywhere.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use legate_tests::{retry_until, run_legate_with, AgentProcess};
use reqwest::Client;
use serde_json::{json, Value};

fn start(args: &[String], config: &Path) -> AgentProcess {
    let mut args = args.to_vec();
    args.extend(["-config-file".to_string(), config.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(&args, &[])
}

fn args_of(ip: &str, name: &str, dir: &tempfile::TempDir, server: bool, join: &str) -> Vec<String> {
    legate_tests::cluster_agent_args(ip, name, dir.path().to_str().unwrap(), server, join)
}

fn http_of(a: &AgentProcess) -> String {
    format!("-http-addr={}", a.http.unwrap())
}

async fn get(c: &Client, url: String) -> Option<Value> {
    c.get(url).send().await.ok()?.json().await.ok()
}

/// A client agent's config: the given checks, all running `http_json` against `url`.
fn client_config(checks: &[(&str, &str)], url: &str, extra: Value) -> String {
    let checks: Vec<Value> = checks
        .iter()
        .map(|(id, plugin)| {
            json!({
                "id": id, "name": id, "interval": "1s", "timeout": "5s",
                "wasm": {
                    "plugin": plugin,
                    "args": {"url": url, "json_path": "checks.0.up", "json_equals": "true"},
                    "allow_hosts": ["127.0.0.1"],
                },
            })
        })
        .collect();
    let mut config = json!({"checks": checks});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config.to_string()
}

fn reload(a: &AgentProcess) {
    let (code, out, err) = run_legate_with(&["reload", &http_of(a)], &[], None);
    assert_eq!((code, out.trim()), (0, "Configuration reload triggered"), "{err}");
}

/// The plugin a check's last run used, as `/v1/agent/plugins` shows it: (status, version).
async fn check_run(c: &Client, a: &AgentProcess, id: &str) -> Option<(String, String, Value)> {
    let v = get(c, a.url("/v1/agent/plugins")).await?;
    let check = v["Checks"].as_array()?.iter().find(|ch| ch["CheckID"] == id)?.clone();
    let version = check["Resolved"]["Version"].as_str().unwrap_or_default().to_string();
    Some((check["Status"].as_str()?.to_string(), version, check))
}

/// Waits until check `id` on `a` is `status` on `version` ("" for any).
async fn wait_check(c: &Client, a: &AgentProcess, id: &str, status: &str, version: &str) -> Value {
    let what = format!("check {id} {status} on version {version:?}");
    retry_until(Duration::from_secs(30), &what, || async {
        let (s, v, check) = check_run(c, a, id).await?;
        (s == status && (version.is_empty() || v == version)).then_some(check)
    })
    .await
}

/// `bytes` with a top-level "version" custom section appended (a new component: another
/// digest, and a version the registry reads from the section).
fn with_version_section(bytes: &[u8], version: &str) -> Vec<u8> {
    let mut payload = vec![7u8];
    payload.extend_from_slice(b"version");
    payload.extend_from_slice(version.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 size");
    let mut out = bytes.to_vec();
    out.push(0x00);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

async fn wait_leader_known(c: &Client, a: &AgentProcess) {
    retry_until(Duration::from_secs(30), "leader known", || async {
        let l = get(c, a.url("/v1/status/leader")).await?;
        l.as_str().filter(|s| !s.is_empty()).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_pushed_once_runs_on_every_client_and_follows_new_versions() {
    let c = Client::new();
    let http_json = crate::plugins::rust_plugin("http_json");
    let port = crate::plugins::json_server(Arc::new(std::sync::Mutex::new(Vec::new()))).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let conf = tempfile::tempdir().unwrap();
    let ips = ["127.0.16.1", "127.0.16.2", "127.0.16.3", "127.0.16.4", "127.0.16.5"];
    let mut servers = Vec::new();
    for i in 0..3 {
        let file = conf.path().join(format!("s{i}.json"));
        std::fs::write(&file, "{}").unwrap();
        servers.push(start(&args_of(ips[i], &format!("s{}", i + 1), &dirs[i], true, ips[0]), &file));
    }
    let client_files = [conf.path().join("c1.json"), conf.path().join("c2.json")];
    let client_args = [args_of(ips[3], "c1", &dirs[3], false, ips[0]), args_of(ips[4], "c2", &dirs[4], false, ips[1])];
    let mut clients = Vec::new();
    for (file, args) in client_files.iter().zip(&client_args) {
        std::fs::write(file, "{}").unwrap();
        clients.push(start(args, file));
    }
    for a in &clients {
        wait_leader_known(&c, a).await;
    }

    // Pushed once, through one server; the version comes from the SDK's "version" section.
    let (code, out, err) =
        run_legate_with(&["plugin", "push", http_json.to_str().unwrap(), &http_of(&servers[0])], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Pushed http_json@0.1.0"), "{out}");

    // Both clients get a check following the latest version and one pinned to 0.1.0, by a
    // config reload; both run them.
    let checks = [("latest", "registry:http_json"), ("pinned", "registry:http_json@0.1.0")];
    for (file, a) in client_files.iter().zip(&clients) {
        std::fs::write(file, client_config(&checks, &url, json!({}))).unwrap();
        reload(a);
    }
    for a in &clients {
        let check = wait_check(&c, a, "latest", "passing", "0.1.0").await;
        assert_eq!(check["Source"], "registry", "{check}");
        wait_check(&c, a, "pinned", "passing", "0.1.0").await;
    }
    // The registry lists where each version runs (once anti-entropy put the checks in the
    // catalog).
    let http = http_of(&servers[1]);
    retry_until(Duration::from_secs(30), "plugin list shows every check", || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, out, _) = run_legate_with(&["plugin", "list", &http], &[], None);
        let all = ["c1/latest", "c2/latest", "c1/pinned", "c2/pinned"].iter().all(|c| out.contains(c));
        (code == 0 && out.contains("http_json") && all).then_some(())
    })
    .await;

    // v2: the latest checks switch once it is compiled; the pinned ones stay on 0.1.0.
    let v2 = with_version_section(&std::fs::read(&http_json).unwrap(), "2.0.0");
    let v2_file = conf.path().join("http_json.wasm");
    std::fs::write(&v2_file, &v2).unwrap();
    let (code, out, err) =
        run_legate_with(&["plugin", "push", v2_file.to_str().unwrap(), &http_of(&servers[2])], &[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Pushed http_json@2.0.0"), "{out}");
    for a in &clients {
        // A new version is fetched and compiled first: 5-6 s in a debug build with both
        // clients compiling on two cores.
        retry_until(Duration::from_secs(30), "the latest check on 2.0.0", || async {
            let (s, v, _) = check_run(&c, a, "latest").await?;
            (s == "passing" && v == "2.0.0").then_some(())
        })
        .await;
        let (status, version, _) = check_run(&c, a, "pinned").await.unwrap();
        assert_eq!((status.as_str(), version.as_str()), ("passing", "0.1.0"));
    }

    // A version checks use cannot go.
    let (code, _, err) =
        run_legate_with(&["plugin", "rm", "http_json", "-version", "0.1.0", &http_of(&servers[0])], &[], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("c1/pinned") && err.contains("c2/pinned"), "{err}");

    // c2 restarted without its compile cache fetches, verifies and compiles both versions.
    let mut c2 = clients.pop().unwrap();
    c2.signal(libc::SIGTERM);
    assert_eq!(c2.wait_exit(Duration::from_secs(20)), Some(0), "{}", c2.output());
    drop(c2);
    std::fs::remove_dir_all(dirs[4].path().join("plugin-cache")).unwrap();
    let c2 = start(&client_args[1], &client_files[1]);
    wait_check(&c, &c2, "latest", "passing", "2.0.0").await;
    wait_check(&c, &c2, "pinned", "passing", "0.1.0").await;
    let state = get(&c, c2.url("/v1/agent/plugins")).await.unwrap();
    let loaded = state["Host"]["loaded"].as_array().unwrap();
    assert!(
        loaded.iter().filter(|l| l["source"] == "registry").all(|l| l["fetched"] == true),
        "fetched again: {state}"
    );
    assert!(loaded.iter().any(|l| l["version"] == "2.0.0"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trusted_keys_only_signed_plugins_run() {
    let c = Client::new();
    let http_json = crate::plugins::rust_plugin("http_json");
    let port = crate::plugins::json_server(Arc::new(std::sync::Mutex::new(Vec::new()))).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let conf = tempfile::tempdir().unwrap();
    let key_prefix = conf.path().join("signing");
    let (code, public, err) = run_legate_with(&["plugin", "keygen", "-o", key_prefix.to_str().unwrap()], &[], None);
    assert_eq!(code, 0, "{err}");
    let public = public.trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");

    // One server and two clients that trust the key.
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips = ["127.0.17.1", "127.0.17.2", "127.0.17.3"];
    let mut server_args = legate_tests::loopback_agent_args(ips[0], "s1", dirs[0].path().to_str().unwrap());
    server_args.extend(["-server", "-bootstrap"].map(String::from));
    let server_file = conf.path().join("s1.json");
    std::fs::write(&server_file, "{}").unwrap();
    let server = start(&server_args, &server_file);
    let trust = json!({"plugins": {"trusted_keys": [public]}});
    let checks = [("probe", "registry:probe")];
    let mut clients = Vec::new();
    for (i, name) in [(1, "c1"), (2, "c2")] {
        let file = conf.path().join(format!("{name}.json"));
        std::fs::write(&file, client_config(&checks, &url, trust.clone())).unwrap();
        clients.push(start(&args_of(ips[i], name, &dirs[i], false, ips[0]), &file));
    }
    for a in &clients {
        wait_leader_known(&c, a).await;
    }

    // Unsigned: critical everywhere, with the reason.
    let http = http_of(&server);
    let push = |extra: &[&str]| {
        let mut args = vec!["plugin", "push", http_json.to_str().unwrap(), "-name", "probe", "-version", "1"];
        args.extend_from_slice(extra);
        args.push(http.as_str());
        let (code, out, err) = run_legate_with(&args, &[], None);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    push(&[]);
    for a in &clients {
        // Critical before the push too ("not in the registry"): wait for the reason.
        retry_until(Duration::from_secs(30), "probe refused as unsigned", || async {
            let (status, _, check) = check_run(&c, a, "probe").await?;
            let output = check["Output"].as_str().unwrap_or_default();
            (status == "critical" && output.contains("is not signed by a trusted key")).then_some(())
        })
        .await;
    }

    // The same component pushed again with a signature: the next runs pass everywhere.
    let key_file = format!("{}.key", key_prefix.display());
    let out = push(&["-sign-key", key_file.as_str()]);
    assert!(out.contains("Signed:"), "{out}");
    for a in &clients {
        let check = wait_check(&c, a, "probe", "passing", "1").await;
        assert_eq!(check["Signed"], true, "{check}");
    }
}
