//! `legate kv` and `legate snapshot` against a running agent, as a user types them.

use std::time::Duration;

use legate_tests::{retry_until, run_legate_with, test_config, InProcessAgent};

async fn agent() -> (InProcessAgent, String) {
    let a = InProcessAgent::start(test_config()).await;
    legate_tests::wait_leader(&a.base).await;
    let addr = a.base.trim_start_matches("http://").to_string();
    (a, addr)
}

/// Runs the CLI off the runtime's threads so the in-process agent keeps serving.
async fn legate(args: Vec<String>, env: Vec<(String, String)>, stdin: Option<Vec<u8>>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_legate_with(&args, &env, stdin.as_deref())
    })
    .await
    .unwrap()
}

fn argv(addr: &str, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = rest.iter().take(2).map(|s| s.to_string()).collect();
    v.push(format!("-http-addr={addr}"));
    v.extend(rest.iter().skip(2).map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_delete_with_flags_and_cas() {
    let (a, addr) = agent().await;
    let run = |rest: &[&str]| legate(argv(&addr, rest), vec![], None);

    let (code, out, err) = run(&["kv", "put", "-flags=42", "redis/config/maxconns", "25"]).await;
    assert_eq!((code, out.trim()), (0, "Success! Data written to: redis/config/maxconns"), "{err}");
    let (code, out, _) = run(&["kv", "get", "redis/config/maxconns"]).await;
    assert_eq!((code, out.as_str()), (0, "25\n"));

    let (code, out, _) = run(&["kv", "get", "-detailed", "redis/config/maxconns"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Flags            42"), "{out}");
    assert!(out.contains("Session          -"), "{out}");
    let modify: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("ModifyIndex"))
        .map(|v| v.trim().parse().unwrap())
        .expect("ModifyIndex line");

    // -cas with a stale index fails with exit 1, with the current one succeeds.
    let stale = format!("-modify-index={}", modify - 1);
    let (code, _, err) = run(&["kv", "put", "-cas", &stale, "redis/config/maxconns", "26"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("CAS failed"), "{err}");
    let cur = format!("-modify-index={modify}");
    let (code, _, err) = run(&["kv", "put", "-cas", &cur, "redis/config/maxconns", "26"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["kv", "put", "-cas", "redis/config/maxconns", "27"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Must specify -modify-index with -cas!"), "{err}");

    // Missing key: exit 1 and Consul's message.
    let (code, _, err) = run(&["kv", "get", "redis/nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Error! No key exists at: redis/nope"), "{err}");

    // Recurse, keys with separator.
    run(&["kv", "put", "redis/config/users/admin", "abcd1234"]).await;
    let (_, out, _) = run(&["kv", "get", "-recurse", "redis/config"]).await;
    assert_eq!(out, "redis/config/maxconns:26\nredis/config/users/admin:abcd1234\n");
    let (_, out, _) = run(&["kv", "get", "-keys", "redis/config/"]).await;
    assert_eq!(out, "redis/config/maxconns\nredis/config/users/\n");
    let (_, out, _) = run(&["kv", "get", "-keys", "-separator=", "redis/"]).await;
    assert_eq!(out, "redis/config/maxconns\nredis/config/users/admin\n");

    // Delete: -cas and -recurse are exclusive; recurse removes the subtree.
    let (code, _, err) = run(&["kv", "delete", "-cas", "-recurse", "-modify-index=1", "redis"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Cannot specify both -cas and -recurse!"), "{err}");
    let (code, out, _) = run(&["kv", "delete", "-recurse", "redis/"]).await;
    assert_eq!((code, out.trim()), (0, "Success! Deleted keys with prefix: redis/"));
    let (code, out, _) = run(&["kv", "get", "-recurse", "redis/"]).await;
    assert_eq!((code, out.as_str()), (0, ""));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_from_stdin_and_file_and_env_address() {
    let (a, addr) = agent().await;
    // Address from CONSUL_HTTP_ADDR; LEGATE_HTTP_ADDR wins over it.
    let env = vec![("CONSUL_HTTP_ADDR".to_string(), addr.clone())];
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (code, _, err) =
        legate(args(&["kv", "put", "bin/stdin", "-"]), env.clone(), Some(b"\x00\x01binary".to_vec())).await;
    assert_eq!(code, 0, "{err}");
    let both = vec![
        ("CONSUL_HTTP_ADDR".to_string(), "127.0.0.1:1".to_string()),
        ("LEGATE_HTTP_ADDR".to_string(), addr.clone()),
    ];
    let (code, out, err) = legate(args(&["kv", "get", "-base64", "bin/stdin"]), both, None).await;
    assert_eq!((code, out.trim()), (0, "AAFiaW5hcnk="), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value.txt");
    std::fs::write(&file, "from a file\n").unwrap();
    let at = format!("@{}", file.display());
    let (code, _, err) = legate(args(&["kv", "put", "f/file", &at]), env.clone(), None).await;
    assert_eq!(code, 0, "{err}");
    let r = reqwest::get(a.url("/v1/kv/f/file?raw")).await.unwrap().text().await.unwrap();
    assert_eq!(r, "from a file\n");

    // No agent at the address: exit 1 with an error, not a panic.
    let nothing = vec![("CONSUL_HTTP_ADDR".to_string(), "127.0.0.1:1".to_string())];
    let (code, _, err) = legate(args(&["kv", "get", "f/file"]), nothing, None).await;
    assert_eq!(code, 1);
    assert!(err.contains("Error querying Consul agent"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_export_import_round_trip() {
    let (a, addr) = agent().await;
    let run = |rest: &[&str], stdin: Option<Vec<u8>>| legate(argv(&addr, rest), vec![], stdin);
    run(&["kv", "put", "-flags=7", "app/one", "1"], None).await;
    run(&["kv", "put", "app/two/deep", "two"], None).await;
    run(&["kv", "put", "other", "x"], None).await;
    let (code, exported, _) = run(&["kv", "export", "app/"], None).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"key": "app/one", "flags": 7, "value": "MQ=="}, {"key": "app/two/deep", "flags": 0, "value": "dHdv"}])
    );

    let (code, out, err) = run(&["kv", "import", "-prefix=copy/", "-"], Some(exported.into_bytes())).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Imported: copy/app/one\nImported: copy/app/two/deep\n");
    let e: serde_json::Value = reqwest::get(a.url("/v1/kv/copy/app/one")).await.unwrap().json().await.unwrap();
    assert_eq!((e[0]["Flags"].as_u64(), e[0]["Value"].as_str()), (Some(7), Some("MQ==")));

    let (code, _, err) = run(&["kv", "import", "-"], Some(b"not json".to_vec())).await;
    assert_eq!(code, 1);
    assert!(err.contains("Cannot unmarshal data"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_inspect_restore() {
    let (a, addr) = agent().await;
    let c = reqwest::Client::new();
    c.put(a.url("/v1/kv/snap/a")).body("before").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap").display().to_string();
    let http = format!("-http-addr={addr}");

    let (code, out, err) =
        legate(vec!["snapshot".into(), "save".into(), http.clone(), file.clone()], vec![], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Saved and verified snapshot to index "), "{out}");

    let (code, out, _) = legate(vec!["snapshot".into(), "inspect".into(), file.clone()], vec![], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("KV entries"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("Index")), "{out}");

    c.put(a.url("/v1/kv/snap/a")).body("after").send().await.unwrap();
    let (code, out, err) =
        legate(vec!["snapshot".into(), "restore".into(), http.clone(), file.clone()], vec![], None).await;
    assert_eq!((code, out.trim()), (0, "Restored snapshot"), "{err}");
    let v = c.get(a.url("/v1/kv/snap/a?raw")).send().await.unwrap().text().await.unwrap();
    assert_eq!(v, "before");

    // A corrupt file is refused by inspect and by restore.
    std::fs::write(&file, b"garbage").unwrap();
    let (code, _, _) = legate(vec!["snapshot".into(), "inspect".into(), file.clone()], vec![], None).await;
    assert_eq!(code, 1);
    let (code, _, _) = legate(vec!["snapshot".into(), "restore".into(), http, file], vec![], None).await;
    assert_eq!(code, 1);
    let v = c.get(a.url("/v1/kv/snap/a?raw")).send().await.unwrap().text().await.unwrap();
    assert_eq!(v, "before");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_services_and_maint_commands() {
    let (a, addr) = agent().await;
    let http = format!("-http-addr={addr}");
    let run = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.insert(if args.len() > 1 && !args[1].starts_with('-') { 2 } else { 1 }, http.clone());
        legate(v, vec![], None)
    };
    // The example config dir registers by file, through the CLI.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/services");
    let (code, out, err) =
        run(&["services", "register", &format!("{examples}/web.json"), &format!("{examples}/cache.hcl")]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Registered service: jetty\nRegistered service: cache1\n");
    let (code, out, err) = run(&["services", "register", "-name=api", "-port=9000", "-tag=v1"]).await;
    assert_eq!((code, out.as_str()), (0, "Registered service: api\n"), "{err}");

    retry_until(Duration::from_secs(10), "catalog has the services", || async {
        let (_, out, _) = run(&["catalog", "services"]).await;
        (out == "api\ncache\nconsul\nweb\n").then_some(())
    })
    .await;
    let (_, out, _) = run(&["catalog", "services", "-tags"]).await;
    assert!(out.lines().any(|l| l.starts_with("web") && l.ends_with("dev,http")), "{out}");
    let (_, out, _) = run(&["catalog", "datacenters"]).await;
    assert_eq!(out, "dc1\n");
    let (_, out, _) = run(&["catalog", "nodes"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Node") && lines[0].contains("Address") && lines[0].ends_with("DC"), "{out}");
    assert!(lines[1].starts_with("test-node") && lines[1].ends_with("dc1"), "{out}");
    let (_, out, err) = run(&["catalog", "nodes", "-service=nothing"]).await;
    assert!(out.is_empty() && err.contains("No nodes match"), "{out}{err}");

    // Maintenance on and off, listed in between.
    let (code, out, _) = run(&["maint", "-enable", "-service=jetty", "-reason=upgrade"]).await;
    assert_eq!((code, out.trim()), (0, "Service maintenance is now enabled for \"jetty\""));
    let (_, out, _) = run(&["maint"]).await;
    assert!(out.contains("ID:     jetty") && out.contains("Reason: upgrade"), "{out}");
    let (code, out, _) = run(&["maint", "-disable", "-service=jetty"]).await;
    assert_eq!((code, out.trim()), (0, "Service maintenance is now disabled for \"jetty\""));
    let (code, _, err) = run(&["maint", "-enable", "-disable"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Only one of -enable or -disable"), "{err}");

    let (code, out, _) = run(&["services", "deregister", "-id=api"]).await;
    assert_eq!((code, out.as_str()), (0, "Deregistered service: api\n"));
    let (code, _, err) = run(&["services", "deregister", "-id=api"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Unknown service ID"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_one_child_at_a_time() {
    let (a, addr) = agent().await;
    // Sessions need the node (and its serfHealth) in the catalog.
    let c = reqwest::Client::new();
    legate_tests::wait_serf_health(&a.base, "test-node").await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("work").display().to_string();
    let script = format!(
        "if [ -e {f}.busy ]; then echo overlap >> {f}.err; fi; touch {f}.busy; echo $LEGATE_LOCK_HELD >> {f}.log; sleep 0.4; rm {f}.busy"
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        let args = vec!["lock".to_string(), format!("-http-addr={addr}"), "svc/leader".to_string(), script.clone()];
        runs.push(tokio::spawn(legate(args, vec![], None)));
    }
    let mut results = Vec::new();
    for r in runs {
        results.push(r.await.unwrap());
    }
    for (code, _, err) in &results {
        assert_eq!(*code, 0, "{err}");
    }
    let log = std::fs::read_to_string(format!("{f}.log")).unwrap();
    assert_eq!(log, "true\ntrue\ntrue\n");
    assert!(!std::path::Path::new(&format!("{f}.err")).exists(), "two children ran at once");
    // Sessions are destroyed and the lock is free afterwards.
    let sessions: serde_json::Value = c.get(a.url("/v1/session/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions, serde_json::json!([]));
    let e: serde_json::Value = c.get(a.url("/v1/kv/svc/leader/.lock")).send().await.unwrap().json().await.unwrap();
    assert!(e[0].get("Session").is_none(), "{e}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_with_n_is_a_semaphore() {
    let (a, addr) = agent().await;
    legate_tests::wait_serf_health(&a.base, "test-node").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir(format!("{d}/slots")).unwrap();
    // Each child records how many others were running when it started.
    let script = format!("ls {d}/slots | wc -l >> {d}/seen; touch {d}/slots/$$; sleep 0.8; rm {d}/slots/$$");
    let mut runs = Vec::new();
    for _ in 0..4 {
        let args =
            vec!["lock".to_string(), format!("-http-addr={addr}"), "-n=2".into(), "svc/pool".into(), script.clone()];
        runs.push(tokio::spawn(legate(args, vec![], None)));
    }
    for r in runs {
        let (code, _, err) = r.await.unwrap();
        assert_eq!(code, 0, "{err}");
    }
    let seen: Vec<u32> =
        std::fs::read_to_string(format!("{d}/seen")).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|n| *n <= 1), "never more than 2 at once: {seen:?}");
    assert!(seen.contains(&1), "two ran together: {seen:?}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_lost_kills_the_child() {
    let (a, addr) = agent().await;
    let c = reqwest::Client::new();
    legate_tests::wait_serf_health(&a.base, "test-node").await;
    let child = std::process::Command::new(legate_tests::legate_bin())
        .args(["lock", &format!("-http-addr={addr}"), "svc/lost", "sleep 60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let session = retry_until(Duration::from_secs(10), "lock held", || async {
        let v: serde_json::Value = c.get(a.url("/v1/kv/svc/lost/.lock")).send().await.ok()?.json().await.ok()?;
        v[0]["Session"].as_str().map(str::to_string)
    })
    .await;
    let started = std::time::Instant::now();
    c.put(a.url(&format!("/v1/session/destroy/{session}"))).send().await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap();
    assert_eq!(status.0, Some(1), "{}", status.1);
    assert!(status.1.contains("Lock lost, killing child"), "{}", status.1);
    assert!(started.elapsed() < Duration::from_secs(30), "the child (sleep 60) was killed");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_autopilot_get_set_and_state() {
    let (a, addr) = agent().await;
    let http = format!("-http-addr={addr}");
    let run = |rest: &[&str]| {
        let mut v: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        v.push(http.clone());
        legate(v, vec![], None)
    };
    let (code, out, err) = run(&["operator", "autopilot", "get-config"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CleanupDeadServers = true\n") && out.contains("LastContactThreshold = 200ms\n"), "{out}");
    assert!(out.contains("RedundancyZoneTag = \"\"\n"), "{out}");
    let (code, out, err) =
        run(&["operator", "autopilot", "set-config", "-cleanup-dead-servers=false", "-max-trailing-logs=99"]).await;
    assert_eq!((code, out.trim()), (0, "Configuration updated!"), "{err}");
    let (_, out, _) = run(&["operator", "autopilot", "get-config"]).await;
    assert!(out.contains("CleanupDeadServers = false\n") && out.contains("MaxTrailingLogs = 99\n"), "{out}");
    assert!(out.contains("ServerStabilizationTime = 10s\n"), "settings not given are kept: {out}");
    let (code, _, err) = run(&["operator", "autopilot", "set-config", "-last-contact-threshold=soon"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Error parsing duration"), "{err}");
    let (code, out, err) = run(&["operator", "autopilot", "state"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Healthy:                      true") && out.contains("Status:       leader"), "{out}");
    a.stop().await;
}
