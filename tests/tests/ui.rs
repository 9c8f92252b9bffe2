//! The web UI: how the agent serves it (redirects, content path, custom dir, caching, gzip),
//! Consul's `internal/ui` endpoints it reads, and end-to-end scenarios in headless Chromium
//! (Debian's `chromium`, driven by playwright-core from `ui/e2e/`; `scripts/test.sh` installs
//! both).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use legate_tests::{retry_until, AgentProcess};
use serde_json::{json, Value};

use crate::plugins::{repo_root, rust_plugin};

fn dev_agent(extra: &[&str]) -> AgentProcess {
    let mut args =
        vec!["agent", "-dev", "-log-level", "info", "-node", "ui-test", "-http-port", "0", "-server-port", "0"];
    args.extend_from_slice(extra);
    AgentProcess::start(&args, &[])
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Runs `node ui/e2e/run.mjs <scenario>` against the agent; panics with its output on failure.
/// Returns the `MEASURE name=value` lines it printed.
fn scenario(name: &str, agent: &AgentProcess, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let ui = repo_root().join("ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "ui/node_modules is missing: building legate-ui runs `npm ci` there (cargo build), or run it yourself"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "the UI tests drive Debian's chromium: apt-get install chromium (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .args(["e2e/run.mjs", name])
        .current_dir(&ui)
        .env("LEGATE_URL", format!("http://{}", agent.http.unwrap()))
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("PASS {name}")),
        "UI scenario {name} failed ({}):\n{stdout}\n{stderr}\n--- agent ---\n{}",
        out.status,
        agent.output()
    );
    println!("{stdout}");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("MEASURE "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_the_ui_and_consuls_redirects() {
    let a = dev_agent(&[]);
    let c = client();
    // `/` -> 301 to the UI; HTTP checks on the agent's root follow it to a 200.
    let root = c.get(a.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 301);
    assert_eq!(root.headers()["location"], "/ui/");
    let followed = reqwest::get(a.url("/")).await.unwrap();
    assert_eq!(followed.status(), 200);
    let page = followed.text().await.unwrap();
    assert!(page.contains(r#"<base href="/ui/">"#), "{page}");
    assert!(page.contains(r#""datacenter":"dc1""#) && page.contains(r#""aclEnabled":false"#), "{page}");

    // Any page address answers the page (the browser routes); assets are gzip'd, cached for good.
    let deep = c.get(a.url("/ui/dc1/nodes/ip-10-0-0-1.ec2.internal")).send().await.unwrap();
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.headers()["cache-control"], "no-cache");
    let script = page.split("src=\"./").nth(1).and_then(|s| s.split('"').next()).expect("a script in the page");
    let js = c.get(a.url(&format!("/ui/{script}"))).header("Accept-Encoding", "gzip").send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(js.headers()["content-encoding"], "gzip");
    assert_eq!(js.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let etag = js.headers()["etag"].clone();
    let gz_len = js.bytes().await.unwrap().len();
    // A client that does not take gzip gets the plain file, larger.
    let plain = c.get(a.url(&format!("/ui/{script}"))).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.bytes().await.unwrap().len() > gz_len);
    // Revalidation: 304 with the ETag.
    let again = c.get(a.url(&format!("/ui/{script}"))).header("If-None-Match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    // A missing asset is a 404, not the page; writes are refused.
    assert_eq!(c.get(a.url("/ui/assets/nope.js")).send().await.unwrap().status(), 404);
    assert_eq!(c.post(a.url("/ui/dc1/services")).send().await.unwrap().status(), 405);
    // Paths that are neither the UI nor the API: Consul's texts.
    let other = c.get(a.url("/metrics")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    assert!(other.text().await.unwrap().contains("ensure the path starts with '/v1/'"));
    let unknown = c.get(a.url("/v1/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("not a recognized HTTP API endpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_path_custom_dir_and_ui_off() {
    // `ui_config.content_path` moves it.
    let a = dev_agent(&["-ui-content-path", "/console"]);
    let c = client();
    let root = c.get(a.url("/")).send().await.unwrap();
    assert_eq!(root.headers()["location"], "/console/");
    let page = c.get(a.url("/console/dc1/services")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<base href="/console/">"#) && page.contains(r#""base":"/console/""#), "{page}");
    assert_eq!(c.get(a.url("/console")).send().await.unwrap().headers()["location"], "/console/");
    assert_eq!(c.get(a.url("/ui/")).send().await.unwrap().status(), 404);
    drop(a);

    // `-ui-dir`: a UI built elsewhere, its own files, the settings filled in.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<html><head><!--legate-config--></head>custom</html>").unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/app.css"), "body{}").unwrap();
    let a = dev_agent(&["-ui-dir", dir.path().to_str().unwrap()]);
    let page = c.get(a.url("/ui/dc1/kv/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("custom") && page.contains(r#"id="legate-config""#), "{page}");
    let css = c.get(a.url("/ui/assets/app.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(css.text().await.unwrap(), "body{}");
    // `..` (sent encoded, as a client's normalizer would not) never leaves the dir: the page.
    let escape = c.get(a.url("/ui/..%2F..%2Fetc%2Fpasswd")).send().await.unwrap().text().await.unwrap();
    assert!(escape.contains("custom") && !escape.contains("root:"), "{escape}");
    drop(a);

    // A `-ui-dir` without a built UI fails the start, naming the key.
    let empty = tempfile::tempdir().unwrap();
    let mut bad = AgentProcess::spawn(
        &["agent", "-dev", "-http-port", "0", "-server-port", "0", "-ui-dir", empty.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(bad.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(bad.output().contains("ui_config.dir") && bad.output().contains("no index.html"), "{}", bad.output());

    // UI off: Consul's text at `/`, nothing under /ui/.
    let a = dev_agent(&["-ui=false"]);
    let root = c.get(a.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 200);
    assert!(root.text().await.unwrap().starts_with("Consul Agent: UI disabled."));
    assert_eq!(c.get(a.url("/ui/")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ui_endpoints_summarize_the_catalog() {
    let a = dev_agent(&[]);
    let c = client();
    let put = |path: &str, body: Value| c.put(a.url(path)).json(&body).send();
    for (id, tags, status) in [("web-1", vec!["v1"], "passing"), ("web-2", vec!["v2"], "critical")] {
        let check = json!({"CheckID": format!("{id}-ttl"), "Name": "ttl", "TTL": "60s", "Status": status});
        let body = json!({"Name": "web", "ID": id, "Port": 80, "Tags": tags, "Check": check});
        assert_eq!(put("/v1/agent/service/register", body).await.unwrap().status(), 200);
    }
    let services: Value = retry_until(Duration::from_secs(10), "web in the summary", || async {
        let v: Value = c.get(a.url("/v1/internal/ui/services")).send().await.ok()?.json().await.ok()?;
        let web = v.as_array()?.iter().find(|s| s["Name"] == "web")?.clone();
        (web["InstanceCount"] == 2).then_some(web)
    })
    .await;
    assert_eq!(services["Tags"], json!(["v1", "v2"]));
    assert_eq!(services["Nodes"], json!(["ui-test"]));
    // Each instance's own check and the node's serfHealth, once per instance.
    assert_eq!(services["ChecksPassing"], 3, "{services}");
    assert_eq!(services["ChecksCritical"], 1, "{services}");

    let nodes = c.get(a.url("/v1/internal/ui/nodes")).send().await.unwrap();
    let index: u64 = nodes.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    let nodes: Value = nodes.json().await.unwrap();
    let node = &nodes[0];
    assert_eq!(node["Node"], "ui-test");
    assert_eq!(node["Datacenter"], "dc1");
    let ids: Vec<&str> = node["Services"].as_array().unwrap().iter().map(|s| s["ID"].as_str().unwrap()).collect();
    assert!(ids.contains(&"web-1") && ids.contains(&"web-2"), "{node}");
    assert!(node["Checks"].as_array().unwrap().iter().any(|c| c["CheckID"] == "serfHealth"), "{node}");

    // A blocking query on it wakes when a check changes.
    let waiter = {
        let url = a.url(&format!("/v1/internal/ui/node/ui-test?index={index}&wait=20s"));
        let c = c.clone();
        tokio::spawn(async move { c.get(url).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    assert_eq!(c.put(a.url("/v1/agent/check/pass/web-2-ttl")).send().await.unwrap().status(), 200);
    let woke = tokio::time::timeout(Duration::from_secs(15), waiter).await.expect("woke").unwrap();
    let check = woke["Checks"].as_array().unwrap().iter().find(|c| c["CheckID"] == "web-2-ttl").unwrap().clone();
    assert_eq!(check["Status"], "passing");
    assert_eq!(c.get(a.url("/v1/internal/ui/node/nope")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_services_page_follows_a_check_going_critical() {
    let a = dev_agent(&[]);
    scenario("services", &a, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_kv_create_edit_conflict_delete() {
    let a = dev_agent(&[]);
    scenario("kv", &a, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_plugins_page_shows_a_wasm_checks_last_result() {
    let http_json = rust_plugin("http_json").display().to_string();
    let a = dev_agent(&[]);
    // The plugin checks the agent's own API: the leader is known.
    let url = a.url("/v1/agent/self");
    let check = json!({
        "ID": "agent-self", "Name": "agent self", "Interval": "1s", "Timeout": "3s",
        "Wasm": {"plugin": http_json, "args": {"url": url, "json_path": "Config.Datacenter", "json_equals": "dc1"},
                 "allow_hosts": ["127.0.0.1"]},
    });
    let r = client().put(a.url("/v1/agent/check/register")).json(&check).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    scenario("plugins", &a, &[("LEGATE_WASM_CHECK", "agent-self"), ("LEGATE_WASM_PLUGIN", "http_json")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_acl_login_and_a_403_shown_as_such() {
    const MGMT: &str = "6a1d7b3e-5c2f-4e8a-9b0d-1f2e3d4c5b6a";
    let hcl = format!(r#"acl {{ enabled = true default_policy = "deny" tokens {{ initial_management = "{MGMT}" }} }}"#);
    let a = dev_agent(&["-hcl", &hcl]);
    scenario("acl", &a, &[("LEGATE_TOKEN", MGMT)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_cluster_reload_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.hcl");
    std::fs::write(&file, "node_meta { rack = \"r1\" }\n").unwrap();
    // Reloads come from the UI's button here, not the file watcher.
    let a = dev_agent(&["-config-file", file.to_str().unwrap(), "-hcl", "auto_reload_config = false"]);
    scenario("cluster", &a, &[("LEGATE_CONFIG_FILE", file.to_str().unwrap())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_first_load_size_and_idle_requests() {
    let a = dev_agent(&[]);
    let m = scenario("load", &a, &[("IDLE_SECONDS", "20")]);
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| v.parse::<u64>().unwrap()).expect(k);
    assert!(get("first_load_bytes") < 300 * 1024);
    assert!(get("idle_api_requests") <= 2);
}

/// A network namespace joined to this one by a veth pair; removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// `host_ip`/30 on this side, `ns_ip`/30 inside.
    fn new(tag: &str, host_ip: &str, ns_ip: &str) -> Netns {
        let id = std::process::id() % 100_000;
        let (name, host_if, ns_if) = (format!("lg{tag}{id}"), format!("lgh{tag}{id}"), format!("lgn{tag}{id}"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        };
        ip(&["netns", "add", &name]);
        let ns = Netns { name: name.clone() };
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("ip netns exec runs")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The field notes' FAQ: an agent started with `-client 0.0.0.0 -ui` serves the UI to another
/// host. Here the other host is a network namespace reaching this one over a veth pair.
/// Needs root (CI runs as root) for the namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_answers_another_host_with_client_0_0_0_0() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: creating a network namespace needs root (CI runs as root)");
        return;
    }
    let ns = Netns::new("ui", "10.213.7.1", "10.213.7.2");
    let data = tempfile::tempdir().unwrap();
    let a = AgentProcess::start(
        &[
            "agent",
            "-server",
            "-bootstrap",
            "-ui",
            "-client",
            "0.0.0.0",
            "-bind",
            "127.0.0.1",
            "-node",
            "faq",
            "-data-dir",
            data.path().to_str().unwrap(),
            "-http-port",
            "0",
            "-server-port",
            "0",
            "-log-level",
            "info",
        ],
        &[],
    );
    let port = a.http.unwrap().port();
    assert!(a.http.unwrap().ip().is_unspecified(), "bound to every address: {:?}", a.http);
    // From the other host: `/` redirects to the UI, which answers its page.
    let url = format!("http://10.213.7.1:{port}/");
    let out = ns.exec(&["curl", "-sS", "-L", "--max-time", "10", "-w", "\n%{http_code} %{url_effective}", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl from the namespace: {}", String::from_utf8_lossy(&out.stderr));
    let (body, last) = text.rsplit_once('\n').unwrap();
    assert_eq!(last, format!("200 http://10.213.7.1:{port}/ui/"));
    assert!(body.contains(r#"id="legate-config""#) && body.contains(r#""base":"/ui/""#), "{body}");
    // The address really is another host's view: loopback inside the namespace is not the agent.
    let local = ns.exec(&["curl", "-sS", "--max-time", "3", &format!("http://127.0.0.1:{port}/")]);
    assert!(!local.status.success(), "the namespace's own loopback has no agent");
}
