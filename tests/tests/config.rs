//! Flags (both dash styles), layering (defaults < files < env < flags), Consul's merge rules,
//! and the error messages of bad config. Parsed with the agent's own argument parser.

use std::ffi::OsString;

use legate_core::config::{load, ConfigError, Loaded};
use legate_tests::config_dir;

fn load_args(args: &[&str], env: &[(&str, &str)]) -> Result<Loaded, String> {
    let mut argv: Vec<OsString> = vec!["legate".into(), "agent".into()];
    argv.extend(args.iter().map(OsString::from));
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let opts = legate_core::cli::agent_load_options(argv, env)?;
    load(&opts).map_err(|e| e.to_string())
}

fn err_of(args: &[&str], env: &[(&str, &str)]) -> String {
    match load_args(args, env) {
        Ok(_) => panic!("expected {args:?} to fail"),
        Err(e) => e,
    }
}

#[test]
fn single_and_double_dash_flags_are_the_same() {
    let single = load_args(
        &[
            "-server",
            "-bootstrap-expect",
            "3",
            "-data-dir=/var/lib/legate",
            "-datacenter",
            "R102",
            "-client",
            "0.0.0.0",
            "-ui",
            "-node=n1",
            "-bind",
            "127.0.0.1",
        ],
        &[],
    )
    .unwrap()
    .config;
    let double = load_args(
        &[
            "--server",
            "--bootstrap-expect=3",
            "--data-dir",
            "/var/lib/legate",
            "--datacenter=R102",
            "--client=0.0.0.0",
            "--ui",
            "--node",
            "n1",
            "--bind=127.0.0.1",
        ],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(single, double);
    assert!(single.server);
    assert_eq!(single.bootstrap_expect, 3);
    assert_eq!(single.datacenter, "r102", "datacenter is lower-cased as Consul does");
    assert_eq!(single.client_addr, "0.0.0.0");
    assert!(single.ui_config.enabled);
    assert_eq!(single.node_name.as_deref(), Some("n1"));
    assert_eq!(single.data_dir.as_deref(), Some(std::path::Path::new("/var/lib/legate")));
}

#[test]
fn every_issue_flag_parses_into_config() {
    // `-ui-dir` must hold a built UI.
    let ui = tempfile::tempdir().unwrap();
    std::fs::write(ui.path().join("index.html"), "<html></html>").unwrap();
    let ui_dir = ui.path().to_str().unwrap();
    let c = load_args(
        &[
            "-server",
            "-bootstrap",
            "-bind",
            "127.0.0.2",
            "-advertise",
            "10.0.0.9",
            "-client",
            "127.0.0.1 127.0.0.2",
            "-dc",
            "east",
            "-data-dir",
            "/tmp/x",
            "-node",
            "n9",
            "-node-id",
            "3c628240-3493-346f-565b-f46aec06618b",
            "-node-meta",
            "rack:r1",
            "-node-meta",
            "zone:z",
            "-join",
            "10.1.1.1",
            "-retry-join",
            "10.1.1.2",
            "-retry-interval",
            "5s",
            "-retry-max",
            "4",
            "-rejoin",
            "-encrypt",
            "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
            "-log-level",
            "warn",
            "-log-json",
            "-log-file",
            "/tmp/legate-log/",
            "-syslog=false",
            "-pid-file",
            "/tmp/p.pid",
            "-ui",
            "-ui-dir",
            ui_dir,
            "-config-format",
            "json",
            "-http-port",
            "8511",
            "-dns-port",
            "-1",
            "-server-port",
            "8310",
            "-serf-lan-port",
            "8311",
            "-serf-wan-port",
            "8312",
            "-enable-script-checks",
            "-enable-local-script-checks",
            "-recursor",
            "8.8.8.8",
            "-recursor",
            "1.1.1.1",
            "-recursor",
            "8.8.8.8",
            "-domain",
            "legate",
            "-alt-domain",
            "alt.",
            "-protocol",
            "3",
            "-raft-protocol",
            "3",
        ],
        &[],
    )
    .unwrap()
    .config;
    assert!(c.server && c.bootstrap);
    assert_eq!(c.bind_addr, "127.0.0.2");
    assert_eq!(c.advertise_addr.as_deref(), Some("10.0.0.9"));
    assert_eq!(c.client_addrs().len(), 2);
    assert_eq!(c.datacenter, "east");
    assert_eq!(c.node_id.as_deref(), Some("3c628240-3493-346f-565b-f46aec06618b"));
    assert_eq!(c.node_meta.get("rack").map(String::as_str), Some("r1"));
    assert_eq!(c.node_meta.len(), 2);
    assert_eq!(c.start_join, ["10.1.1.1"]);
    assert_eq!(c.retry_join, ["10.1.1.2"]);
    assert_eq!(c.retry_interval.0, std::time::Duration::from_secs(5));
    assert_eq!(c.retry_max, 4);
    assert!(c.rejoin_after_leave);
    assert!(c.encrypt.is_some());
    assert_eq!(c.log_level, "warn");
    assert!(c.log_json && !c.enable_syslog);
    assert!(c.ui_config.enabled);
    assert_eq!(c.ui_config.dir.as_deref(), Some(ui.path()));
    assert_eq!(
        (c.ports.http, c.ports.dns, c.ports.server, c.ports.serf_lan, c.ports.serf_wan),
        (8511, -1, 8310, 8311, 8312)
    );
    assert!(c.enable_script_checks && c.enable_local_script_checks);
    assert_eq!(c.recursors, ["8.8.8.8", "1.1.1.1"], "duplicate recursors are dropped");
    assert_eq!(c.domain, "legate.");
    assert_eq!(c.alt_domain.as_deref(), Some("alt."));
    assert_eq!((c.protocol, c.raft_protocol), (3, 3));
}

#[test]
fn bool_flags_take_explicit_values() {
    let c = load_args(&["-dev", "-ui=false", "-server=true"], &[]).unwrap().config;
    assert!(!c.ui_config.enabled, "-ui=false overrides dev's UI default");
    assert!(c.server);
}

#[test]
fn dev_mode_defaults() {
    let c = load_args(&["-dev"], &[]).unwrap().config;
    assert!(c.dev && c.server && c.bootstrap && c.ui_config.enabled);
    assert_eq!(c.bind_addr, "127.0.0.1");
    assert_eq!(c.client_addr, "127.0.0.1");
    assert_eq!(c.log_level, "debug");
    assert!(c.data_dir.is_none());
}

#[test]
fn layering_file_then_env_then_flag() {
    let dir = config_dir(&[("a.json", r#"{"datacenter": "from-file", "data_dir": "/tmp/d", "log_level": "warn"}"#)]);
    let path = dir.path().to_str().unwrap();
    let c = load_args(&["-config-dir", path], &[]).unwrap().config;
    assert_eq!(c.datacenter, "from-file");
    let c = load_args(&["-config-dir", path], &[("LEGATE_DATACENTER", "from-env")]).unwrap().config;
    assert_eq!(c.datacenter, "from-env");
    assert_eq!(c.log_level, "warn", "env does not touch other keys");
    let c = load_args(&["-config-dir", path, "-datacenter", "from-flag"], &[("LEGATE_DATACENTER", "from-env")])
        .unwrap()
        .config;
    assert_eq!(c.datacenter, "from-flag");
}

#[test]
fn env_nested_keys_and_json_values() {
    let c = load_args(
        &["-dev"],
        &[
            ("LEGATE_PORTS__HTTP", "8555"),
            ("LEGATE_RETRY_JOIN", r#"["10.0.0.1","10.0.0.2"]"#),
            ("LEGATE_DNS_CONFIG__ONLY_PASSING", "true"),
            ("LEGATE_HTTP_ADDR", "127.0.0.1:9999"),
        ],
    )
    .unwrap()
    .config;
    assert_eq!(c.ports.http, 8555);
    assert_eq!(c.retry_join, ["10.0.0.1", "10.0.0.2"]);
    assert!(c.dns_config.only_passing);
}

#[test]
fn config_dir_loads_in_lexical_order() {
    // "10-a" sorts before "2-b": the later file's scalar wins.
    let dir = config_dir(&[
        ("2-b.json", r#"{"log_level": "warn"}"#),
        ("10-a.json", r#"{"log_level": "trace", "data_dir": "/tmp/d"}"#),
        ("ignored.txt", "not config"),
    ]);
    let loaded = load_args(&["-config-dir", dir.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(loaded.config.log_level, "warn");
    let names: Vec<_> = loaded.files.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(names, ["10-a.json", "2-b.json"]);
}

#[test]
fn config_file_and_dir_keep_command_line_order() {
    let dir = config_dir(&[("d.json", r#"{"log_level": "warn", "data_dir": "/tmp/d"}"#)]);
    let file = config_dir(&[("f.hcl", r#"log_level = "error""#)]);
    let f = file.path().join("f.hcl");
    let c = load_args(&["-config-dir", dir.path().to_str().unwrap(), "-config-file", f.to_str().unwrap()], &[])
        .unwrap()
        .config;
    assert_eq!(c.log_level, "error");
    let c = load_args(&["-config-file", f.to_str().unwrap(), "-config-dir", dir.path().to_str().unwrap()], &[])
        .unwrap()
        .config;
    assert_eq!(c.log_level, "warn");
}

#[test]
fn json_hcl_toml_merge_with_consul_rules() {
    let dir = config_dir(&[
        (
            "a.json",
            r#"{"datacenter": "dca", "data_dir": "/tmp/d", "node_meta": {"rack": "r1", "zone": "z1"},
                "retry_join": ["10.0.0.1"], "dns_config": {"only_passing": true},
                "service": {"id": "jetty", "name": "jetty", "address": "192.168.1.200", "port": 8080, "tags": ["dev"],
                            "checks": [{"http": "http://192.168.1.200:8080/health", "interval": "5s"}]}}"#,
        ),
        (
            "b.hcl",
            r#"
node_meta { zone = "z2" }
retry_join = ["10.0.0.2"]
dns_config { udp_answer_limit = 5 }
service {
  name = "web"
  port = 80
  check { ttl = "30s" }
}
service {
  name = "db"
  port = 5432
}
check {
  name = "disk"
  args = ["/bin/true"]
  interval = "10s"
}
"#,
        ),
        ("c.toml", "log_level = \"debug\"\n[[services]]\nname = \"cache\"\nport = 6379\n"),
    ]);
    let c = load_args(&["-config-dir", dir.path().to_str().unwrap(), "-node", "n1"], &[("LEGATE_DATACENTER", "dcenv")])
        .unwrap()
        .config;
    assert_eq!(c.datacenter, "dcenv");
    assert_eq!(c.node_name.as_deref(), Some("n1"));
    assert_eq!(c.log_level, "debug");
    // Maps are replaced wholesale by a later file: rack from a.json is gone.
    assert_eq!(c.node_meta.len(), 1);
    assert_eq!(c.node_meta.get("zone").map(String::as_str), Some("z2"));
    // Lists append.
    assert_eq!(c.retry_join, ["10.0.0.1", "10.0.0.2"]);
    // Nested objects merge key by key.
    assert!(c.dns_config.only_passing);
    assert_eq!(c.dns_config.udp_answer_limit, 5);
    // Services and checks accumulate across files, singletons included.
    let names: Vec<_> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["jetty", "web", "db", "cache"]);
    assert_eq!(c.services[0].checks[0].http.as_deref(), Some("http://192.168.1.200:8080/health"));
    assert_eq!(c.services[0].checks[0].interval.unwrap().0, std::time::Duration::from_secs(5));
    assert!(c.services[1].check.as_ref().unwrap().ttl.is_some());
    assert_eq!(c.checks.len(), 1);
    assert_eq!(c.checks[0].name.as_deref(), Some("disk"));
}

#[test]
fn flag_node_meta_replaces_file_node_meta() {
    let dir = config_dir(&[("a.json", r#"{"data_dir": "/tmp/d", "node_meta": {"rack": "r1"}}"#)]);
    let c = load_args(&["-config-dir", dir.path().to_str().unwrap(), "-node-meta", "zone:z9"], &[]).unwrap().config;
    assert_eq!(c.node_meta.len(), 1);
    assert_eq!(c.node_meta.get("zone").map(String::as_str), Some("z9"));
}

fn dir_error(name: &str, text: &str) -> (String, String) {
    let dir = config_dir(&[(name, text)]);
    let path = dir.path().join(name).display().to_string();
    let err = err_of(&["-config-dir", dir.path().to_str().unwrap(), "-data-dir", "/tmp/d"], &[]);
    (err, path)
}

#[test]
fn bad_duration_names_file_line_and_key() {
    let (err, path) = dir_error("a.json", "{\n  \"retry_interval\": \"5 seconds\"\n}\n");
    assert!(err.starts_with(&format!("{path}:2: retry_interval: ")), "{err}");
    assert!(err.contains("5 seconds"), "{err}");
}

#[test]
fn port_out_of_range_names_file_and_key() {
    let (err, path) = dir_error("p.hcl", "ports {\n  http = 70000\n}\n");
    assert_eq!(err, format!("{path}:2: ports.http: invalid port 70000 (must be -1 to disable, or 0-65535)"));
}

#[test]
fn bootstrap_with_bootstrap_expect_is_refused() {
    let (err, path) = dir_error("b.json", "{\"server\": true,\n \"bootstrap\": true,\n \"bootstrap_expect\": 3}\n");
    assert_eq!(
        err,
        format!("{path}:3: bootstrap_expect: 'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive")
    );
    let err = err_of(&["-server", "-bootstrap", "-bootstrap-expect", "2", "-data-dir", "/tmp/d"], &[]);
    assert!(err.starts_with("command-line flags: bootstrap_expect: "), "{err}");
}

#[test]
fn missing_data_dir_outside_dev_is_refused() {
    let err = err_of(&["-server"], &[]);
    assert_eq!(err, "config: data_dir: data_dir cannot be empty (set -data-dir, or run with -dev)");
    assert!(load_args(&["-dev"], &[]).is_ok());
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let (err, path) = dir_error("u.json", "{\n  \"datacenter\": \"x\",\n  \"ports\": {\"htp\": 1}\n}\n");
    assert_eq!(err, format!("{path}:3: ports.htp: invalid config key"));
    let (err, path) = dir_error("u.hcl", "datacenter = \"x\"\nfoo_bar = 1\n");
    assert_eq!(err, format!("{path}:2: foo_bar: invalid config key"));
    let err = err_of(&["-dev"], &[("LEGATE_NOPE", "1")]);
    assert_eq!(err, "environment: LEGATE_NOPE: invalid config key");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let (err, path) = dir_error("s.json", "{\n  \"datacenter\": \"x\",\n  oops\n}\n");
    assert!(err.starts_with(&format!("Error parsing {path}:3: ")), "{err}");
    let (err, path) = dir_error("s.hcl", "datacenter = \"x\"\nports {\n  http = \n");
    assert!(err.starts_with(&format!("Error parsing {path}:")), "{err}");
    let (err, path) = dir_error("s.toml", "datacenter = \"x\"\nlog_level = = 1\n");
    assert!(err.starts_with(&format!("Error parsing {path}:2: ")), "{err}");
}

#[test]
fn bad_service_and_check_definitions_are_refused() {
    let (err, path) = dir_error("svc.json", r#"{"service": {"port": 80}}"#);
    assert_eq!(err, format!("{path}: services[0].name: missing service name"));
    let (err, _) = dir_error("svc.json", r#"{"service": {"name": "w", "check": {"http": "http://x/"}}}"#);
    assert!(err.ends_with("services[0].checks[0].interval: interval is required for this check type"), "{err}");
    let (err, _) = dir_error("chk.json", r#"{"check": {"name": "c", "notes": "no type"}}"#);
    assert!(err.contains("checks[0]: check type is not valid"), "{err}");
}

#[test]
fn other_invalid_values_are_refused() {
    for (args, needle) in [
        (vec!["-dev", "-log-level", "loud"], "log_level: invalid log level"),
        (vec!["-dev", "-node-id", "not-a-uuid"], "node_id: \"not-a-uuid\" is not a valid UUID"),
        (vec!["-dev", "-encrypt", "c2hvcnQ="], "encrypt: encryption key must be 16, 24 or 32 bytes, got 5"),
        (vec!["-dev", "-client", "0.0.0.0 nope"], "client_addr: \"nope\" is not an IP address"),
        (vec!["-dev", "-node-meta", "consul-x:1"], "node_meta: metadata key \"consul-x\" uses the reserved prefix"),
        (vec!["-dev", "-raft-protocol", "2"], "raft_protocol 2 is not supported"),
        (vec!["-data-dir", "/tmp/d", "-bootstrap-expect", "3"], "'bootstrap_expect > 0' is not allowed in client mode"),
        (vec!["-dev", "-recursor", "dns.example"], "recursors: Invalid recursor address \"dns.example\""),
    ] {
        let err = err_of(&args, &[]);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = err_of(&["-dev", "-node-meta", "novalue"], &[]);
    assert!(err.contains("is not in key:value form"), "{err}");
    // The coordinate sync knobs, from a file: the error names file and key.
    for (text, needle) in [
        ("sync_coordinate_interval_min = \"0s\"\n", "sync_coordinate_interval_min: must be a positive duration"),
        ("sync_coordinate_rate_target = 0\n", "sync_coordinate_rate_target: must be a positive number"),
    ] {
        let dir = config_dir(&[("coord.hcl", text)]);
        let err = err_of(&["-dev", "-config-dir", dir.path().to_str().unwrap()], &[]);
        assert!(err.contains(needle) && err.contains("coord.hcl"), "{text}: {err}");
    }
    let dir = config_dir(&[("coord.hcl", "sync_coordinate_interval_min = \"2s\"\nsync_coordinate_rate_target = 8\n")]);
    let loaded = load_args(&["-dev", "-config-dir", dir.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(loaded.config.sync_coordinate_interval_min.0, std::time::Duration::from_secs(2));
    assert_eq!(loaded.config.sync_coordinate_rate_target, 8.0);
}

#[test]
fn plugin_registry_keys_are_checked() {
    let loaded = load_args(&["-dev"], &[]).unwrap();
    assert_eq!(loaded.config.plugins.max_size, 32 << 20);
    assert!(loaded.config.plugins.trusted_keys.is_empty());
    let (_, public) = legate_core::plugin::signing::keygen().unwrap();
    for (text, needle) in [
        ("plugins {\n  max_size = 0\n}\n", "plugins.max_size: max_size 0 must be from 1 to"),
        ("plugins {\n  max_size = 67108865\n}\n", "plugins.max_size: max_size 67108865 must be from 1 to"),
        ("plugins {\n  trusted_keys = [\"ed25519:AAAA\"]\n}\n", "trusted_keys[0]: public key \"ed25519:AAAA\""),
        ("plugins {\n  trusted = []\n}\n", "plugins.trusted: invalid config key"),
        (
            "check {\n  name = \"c\"\n  interval = \"1s\"\n  wasm {\n    plugin = \"registry:a b\"\n  }\n}\n",
            "checks[0].wasm.plugin: plugin \"registry:a b\"",
        ),
    ] {
        let dir = config_dir(&[("plugins.hcl", text)]);
        let err = err_of(&["-dev", "-config-dir", dir.path().to_str().unwrap()], &[]);
        assert!(err.contains(needle) && err.contains("plugins.hcl"), "{text}: {err}");
    }
    let text = format!("plugins {{\n  max_size = 1048576\n  trusted_keys = [\"{public}\"]\n}}\n");
    let dir = config_dir(&[("plugins.hcl", &text)]);
    let loaded = load_args(&["-dev", "-config-dir", dir.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(loaded.config.plugins.max_size, 1 << 20);
    assert_eq!(loaded.config.plugins.trusted_key_bytes().len(), 1);
}

#[test]
fn consul_compat_keys_load_with_warnings() {
    let dir = config_dir(&[(
        "c.hcl",
        "data_dir = \"/tmp/d\"\nconnect { enabled = true }\nui = true\nacl {\n  tokens {\n    master = \"m\"\n    agent_master = \"a\"\n  }\n}\n",
    )]);
    let loaded = load_args(&["-config-dir", dir.path().to_str().unwrap()], &[]).unwrap();
    assert!(loaded.config.ui_config.enabled, "deprecated ui = true maps to ui_config.enabled");
    assert_eq!(loaded.config.acl.tokens.initial_management.as_deref(), Some("m"));
    assert_eq!(loaded.config.acl.tokens.agent_recovery.as_deref(), Some("a"));
    assert!(loaded.warnings.iter().any(|w| w.contains("\"connect\"")), "{:?}", loaded.warnings);
    assert!(loaded.warnings.iter().any(|w| w.contains("\"ui\" is deprecated")), "{:?}", loaded.warnings);
}

#[test]
fn limits_that_are_not_enforced_say_so() {
    let dir = config_dir(&[(
        "l.hcl",
        "limits {\n  http_max_conns_per_client = 50\n  rpc_client_timeout = \"30s\"\n  rpc_rate = 10\n  rpc_max_conns_per_client = 5\n}\n",
    )]);
    let loaded = load_args(&["-dev", "-config-dir", dir.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(loaded.config.limits.http_max_conns_per_client, 50);
    let limits: Vec<&String> = loaded.warnings.iter().filter(|w| w.contains("\"limits.")).collect();
    assert_eq!(limits.len(), 1, "{:?}", loaded.warnings);
    assert!(limits.iter().any(|w| w.contains("\"limits.rpc_client_timeout\"") && w.contains("l.hcl")), "{limits:?}");
    assert_eq!(loaded.config.limits.rpc_max_conns_per_client, 5, "enforced: no warning");
    assert_eq!(loaded.config.rpc_rate(), Some(10.0), "enforced: no warning");
}

#[test]
fn config_errors_are_typed() {
    let dir = config_dir(&[("x.json", "{\"ports\": {\"dns\": -2}}")]);
    let opts =
        legate_core::config::LoadOptions { sources: vec![dir.path().to_path_buf()], dev: true, ..Default::default() };
    match load(&opts) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "ports.dns"),
        other => panic!("unexpected {other:?}"),
    }
}

/// A config dir written for Consul (HCL 1: one-line blocks with several attributes, commas,
/// repeated blocks, `${...}` as plain text; keys Consul deprecated) loads unchanged.
#[test]
fn a_consul_hcl_config_dir_loads_as_consul_reads_it() {
    let dir = config_dir(&[
        (
            "consul.hcl",
            r#"
datacenter = "r102"  data_dir = "/tmp/legate-consul-hcl"
ports { http = 8500, dns = 8600 }
addresses = { http = "0.0.0.0" }
acl_datacenter = "r102"
acl_default_policy = "deny"
acl_master_token = "b1gs33cr3t"
acl { tokens { agent_master = "recovery" } }
"#,
        ),
        (
            "services.hcl",
            r#"
service { name = "web" port = 80 tags = ["v1", "prod"] }
service {
  name = "api", port = 9090,
  check { args = ["/bin/sh", "-c", "echo ${HOME}"], interval = "10s" }
}
"#,
        ),
    ]);
    let loaded = load_args(&["-config-dir", dir.path().to_str().unwrap()], &[]).unwrap();
    let c = &loaded.config;
    assert_eq!(c.datacenter, "r102");
    assert_eq!((c.ports.http, c.ports.dns), (8500, 8600));
    assert_eq!(c.primary_datacenter.as_deref(), Some("r102"));
    assert!(c.acl.enabled, "acl_datacenter turns ACLs on, as in Consul");
    assert_eq!(c.acl.default_policy, "deny");
    assert_eq!(c.acl.tokens.initial_management.as_deref(), Some("b1gs33cr3t"));
    assert_eq!(c.acl.tokens.agent_recovery.as_deref(), Some("recovery"));
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "api"]);
    assert_eq!(c.services[0].tags, ["v1", "prod"]);
    let check = c.services[1].check.as_ref().expect("api's check");
    assert_eq!(check.args, ["/bin/sh", "-c", "echo ${HOME}"]);
    for old in ["acl_datacenter", "acl_default_policy", "acl_master_token", "acl.tokens.agent_master"] {
        assert!(
            loaded.warnings.iter().any(|w| w.contains(&format!("The '{old}' field is deprecated"))),
            "{old}: {:?}",
            loaded.warnings
        );
    }
    // A syntax error names the file and the line.
    let bad = config_dir(&[("bad.hcl", "service {\n  name = \"web\"\n  port = \n}\n")]);
    let err = load_args(&["-config-dir", bad.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(err.contains("bad.hcl") && err.contains(":4"), "{err}");
}
