//! Secrets at rest and in logs: a data dir that holds tokens and keys is the agent user's only,
//! and a debug-level log of an ACL run with gossip encryption and TLS never shows a secret.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use legate_tests::{retry_until, AgentProcess};
use serde_json::{json, Value};

const MGMT: &str = "7f3e1c52-9b0d-4c1e-8a55-3c1f0e6d2b91";
const GOSSIP_KEY: &str = "QZ1lJ+XuTlYKWaeGYyG+/B9r4XkvDwy7Cu5sT0mVbcQ=";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_in_owner_only_files_and_out_of_debug_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.json");
    // A CA and a server certificate for HTTPS and the RPC port.
    for args in [&["tls", "ca", "create"][..], &["tls", "cert", "create", "-server"]] {
        let out = std::process::Command::new(legate_tests::legate_bin()).args(args).current_dir(dir.path()).output();
        assert!(out.unwrap().status.success());
    }
    let pem = |f: &str| dir.path().join(f);
    let body = json!({
        "server": true, "bootstrap": true, "node_name": "vault", "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1", "data_dir": data, "log_level": "debug", "encrypt": GOSSIP_KEY,
        "ports": {"http": 0, "https": 0, "dns": -1, "server": 0, "serf_lan": 0, "serf_wan": -1},
        "tls": {"defaults": {"ca_file": pem("consul-agent-ca.pem"), "cert_file": pem("dc1-server-consul-0.pem"),
                             "key_file": pem("dc1-server-consul-0-key.pem"), "verify_outgoing": true}},
        "acl": {"enabled": true, "default_policy": "deny", "enable_token_persistence": true,
                "tokens": {"initial_management": MGMT}},
    });
    std::fs::write(&config, body.to_string()).unwrap();
    let mut agent = AgentProcess::start(&["agent", "-config-file", config.to_str().unwrap()], &[]);
    let base = agent.url("");
    let c = reqwest::Client::new();
    let call = |m: reqwest::Method, path: &str| c.request(m, format!("{}{path}", base.trim_end_matches('/')));
    retry_until(Duration::from_secs(20), "management token usable", || async {
        let r = call(reqwest::Method::GET, "/v1/acl/token/self").header("X-Consul-Token", MGMT).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // A token made by the API (its secret generated), used as the agent's default token
    // (persisted), in a service registration (persisted locally) and in a query string.
    let t: Value = call(reqwest::Method::PUT, "/v1/acl/token")
        .header("X-Consul-Token", MGMT)
        .body(json!({"Description": "app", "Policies": [{"Name": "global-management"}]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = t["SecretID"].as_str().unwrap().to_string();
    for (path, body) in [
        ("/v1/agent/token/default".to_string(), json!({"Token": secret})),
        ("/v1/agent/service/register".to_string(), json!({"Name": "web", "Port": 80, "Token": secret})),
        (format!("/v1/kv/app/config?token={secret}"), json!("v")),
    ] {
        let r = call(reqwest::Method::PUT, &path).header("X-Consul-Token", MGMT).body(body.to_string()).send().await;
        assert_eq!(r.unwrap().status(), 200, "{path}");
    }
    // The same over HTTPS.
    let https = agent.listener("HTTPS listeners");
    let tls_client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(pem("consul-agent-ca.pem")).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let r = tls_client.get(format!("https://{https}/v1/kv/app/config")).header("X-Consul-Token", &secret).send().await;
    assert_eq!(r.unwrap().status(), 200);
    // A refused token is not echoed either.
    let r = call(reqwest::Method::GET, "/v1/kv/app/config")
        .header("X-Consul-Token", "0badc0de-0000-4000-8000-000000000000");
    assert_eq!(r.send().await.unwrap().status(), 403);
    // The request log hides a token given as a query parameter and the legacy API's secret
    // in the path.
    let r = call(reqwest::Method::GET, &format!("/v1/kv/app/config?token={secret}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = call(reqwest::Method::GET, &format!("/v1/acl/info/{secret}")).header("X-Consul-Token", MGMT);
    assert_eq!(r.send().await.unwrap().status(), 200);

    // At rest: the data dir and what holds secrets are the owner's only.
    for d in [data.clone(), data.join("raft"), data.join("serf")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let segments = std::fs::read_dir(data.join("raft/log")).unwrap().map(|e| e.unwrap().path());
    let files = ["acl-tokens.json", "local-state.json", "serf/local.keyring", "raft/state.db", "raft/log/meta"];
    let files: Vec<PathBuf> = files.iter().map(|f| data.join(f)).chain(segments).collect();
    assert!(files.iter().any(|f| f.extension().is_some_and(|x| x == "seg")), "{files:?}");
    for p in files {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert_eq!(mode(&data.join("raft/log")), 0o700);
    let persisted = std::fs::read_to_string(data.join("acl-tokens.json")).unwrap();
    assert!(persisted.contains(&secret), "the persisted default token is the one set");

    agent.signal(libc::SIGINT);
    // A server does not leave on SIGINT (Consul's skip_leave_on_interrupt): it just exits.
    assert!(agent.wait_exit(Duration::from_secs(20)).is_some(), "{}", agent.output());
    let log = agent.output();
    assert!(log.contains("DEBUG") || log.contains("debug"), "a debug-level log:\n{log}");
    for (what, s) in [("management token", MGMT), ("API token", secret.as_str()), ("gossip key", GOSSIP_KEY)] {
        assert!(!log.contains(s), "the log shows the {what}:\n{log}");
    }
    let key = std::fs::read_to_string(pem("dc1-server-consul-0-key.pem")).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "the log shows the TLS private key:\n{log}");
    }
}
