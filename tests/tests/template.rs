//! `legate template` (consul-template built in) and the agent config's `template` blocks:
//! every function against a golden output, nginx following a rendered upstream, quiescence,
//! `-exec`, errors, and templates reconciled on reload.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use legate_tests::{legate_bin, retry_until, retry_until_blocking, AgentProcess};
use serde_json::{json, Value};

use crate::plugins::repo_root;

fn dev_agent(node: &str, extra: &[&str]) -> AgentProcess {
    let mut args = vec!["agent", "-dev", "-log-level", "warn", "-node", node, "-http-port", "0", "-server-port", "0"];
    args.extend_from_slice(extra);
    AgentProcess::start(&args, &[])
}

struct Api {
    base: String,
    c: reqwest::Client,
}

impl Api {
    fn new(a: &AgentProcess) -> Api {
        Api { base: format!("http://{}", a.http.unwrap()), c: reqwest::Client::new() }
    }

    async fn put(&self, path: &str, body: impl Into<reqwest::Body>) {
        let r = self.c.put(format!("{}{path}", self.base)).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200, "PUT {path}: {}", r.text().await.unwrap());
    }

    async fn register(&self, svc: Value) {
        self.put("/v1/agent/service/register", svc.to_string()).await;
    }

    async fn get(&self, path: &str) -> Value {
        self.c.get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }
}

/// `legate template <args>` against the agent, in `dir`.
fn template(a: &AgentProcess, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(legate_bin());
    cmd.arg("template")
        .args(args)
        .current_dir(dir)
        .env("CONSUL_HTTP_ADDR", a.http.unwrap().to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// Kills the process on drop (a failed assertion leaves nothing running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_dry_renders_every_function_to_the_golden_output() {
    let a = dev_agent("golden", &[]);
    let api = Api::new(&a);
    for (k, v) in [
        ("app/name", "demo"),
        ("app/port", "8080"),
        ("app/empty", ""),
        ("app/folder/", ""),
        ("app/nested/a", "1"),
        ("app/nested/b", "2"),
        ("config/json", r#"{"x":1,"list":["p","q"]}"#),
    ] {
        api.put(&format!("/v1/kv/{k}"), v.to_string()).await;
    }
    api.register(json!({"Name": "web", "ID": "web-1", "Port": 9001, "Tags": ["prod", "v1"],
        "Meta": {"version": "1", "zone": "a"}, "Check": {"CheckID": "web-1-ttl", "TTL": "1h", "Status": "passing"}}))
        .await;
    api.register(json!({"Name": "web", "ID": "web-2", "Port": 9002, "Address": "10.0.0.2", "Tags": ["canary", "v2"],
        "Meta": {"version": "2"}, "Check": {"CheckID": "web-2-ttl", "TTL": "1h", "Status": "critical"}}))
        .await;
    api.register(json!({"Name": "db", "ID": "db-1", "Port": 5432, "Tags": ["primary"]})).await;
    retry_until(Duration::from_secs(10), "both web instances in the catalog", || async {
        let v = api.get("/v1/health/service/web").await;
        (v.as_array()?.len() == 2).then_some(())
    })
    .await;

    let fixtures = repo_root().join("tests/fixtures/template");
    let dir = tempfile::tempdir().unwrap();
    let text = read(&fixtures.join("all.tpl")).replace("FIXTURE_DIR", fixtures.to_str().unwrap());
    std::fs::write(dir.path().join("all.tpl"), text).unwrap();
    let out = template(
        &a,
        dir.path(),
        &["-template", "all.tpl:out", "-once", "-dry"],
        &[("LEGATE_TPL_GOLDEN", "golden-env")],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let golden = read(&fixtures.join("all.golden"));
    for (i, (got, want)) in stdout.lines().zip(golden.lines()).enumerate() {
        assert_eq!(got, want, "line {} of tests/fixtures/template/all.golden", i + 1);
    }
    assert_eq!(stdout.lines().count(), golden.lines().count(), "{stdout}");
    assert!(!dir.path().join("out").exists(), "-dry writes no file");
}

/// An HTTP server answering every request with its name.
async fn backend(name: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}", name.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Which backends answer through nginx, over enough requests to see each (round robin).
async fn answering(port: u16) -> Vec<String> {
    let c = reqwest::Client::new();
    let mut seen = Vec::new();
    for _ in 0..12 {
        if let Ok(r) = c.get(format!("http://127.0.0.1:{port}/")).send().await {
            if let Ok(t) = r.text().await {
                if !seen.contains(&t) {
                    seen.push(t);
                }
            }
        }
    }
    seen.sort();
    seen
}

/// The issue's scenario: an nginx upstream rendered from `service "web|passing"` and a KV
/// setting, nginx (Debian's) reloaded by the template's command; a third instance joins and one
/// goes critical, and traffic follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_follows_the_rendered_upstream() {
    assert!(Path::new("/usr/sbin/nginx").exists(), "needs Debian's nginx (scripts/test.sh installs it)");
    let a = dev_agent("tpl-nginx", &[]);
    let api = Api::new(&a);
    let ports = [backend("b1").await, backend("b2").await, backend("b3").await];
    for (i, port) in ports.iter().enumerate().take(2) {
        let id = format!("web-{}", i + 1);
        api.register(json!({"Name": "web", "ID": id, "Port": port,
            "Check": {"CheckID": format!("{id}-ttl"), "TTL": "1h", "Status": "passing"}}))
            .await;
    }
    api.put("/v1/kv/nginx/max_fails", "3").await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listen = free_port();
    std::fs::create_dir_all(d.join("logs")).unwrap();
    let tpl = format!(
        r#"pid {pid};
error_log {log} warn;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  upstream web {{
{{{{- range service "web|passing" }}}}
    server {{{{ .Address }}}}:{{{{ .Port }}}} max_fails={{{{ keyOrDefault "nginx/max_fails" "1" }}}}; # {{{{ .ID }}}}
{{{{- end }}}}
  }}
  server {{
    listen 127.0.0.1:{listen};
    location / {{ proxy_pass http://web; }}
  }}
}}
"#,
        pid = d.join("nginx.pid").display(),
        log = d.join("logs/error.log").display(),
        tmp = d.join("logs").display(),
    );
    std::fs::write(d.join("nginx.ctmpl"), tpl).unwrap();
    let conf = d.join("nginx.conf");
    let nginx = |args: &[&str]| {
        Command::new("/usr/sbin/nginx")
            .args(["-p", d.to_str().unwrap(), "-c", conf.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let reload = format!("nginx.ctmpl:nginx.conf:/usr/sbin/nginx -p {} -c {} -s reload", d.display(), conf.display());
    let _renderer = Reaped(
        template(&a, d, &["-template", &reload, "-wait", "200ms:1s", "-log-level", "info"], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    retry_until_blocking(Duration::from_secs(20), "the first render", || read(&conf).contains("# web-2").then_some(()));
    assert!(read(&conf).contains("max_fails=3"), "{}", read(&conf));
    // nginx starts from the rendered config (the reload command of the first render found none).
    let started = nginx(&[]);
    assert!(started.status.success(), "nginx: {}", String::from_utf8_lossy(&started.stderr));
    struct Quit<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Quit<'_> {
        fn drop(&mut self) {
            (self.0)(&["-s", "stop"]);
        }
    }
    let _quit = Quit(&nginx);
    retry_until(Duration::from_secs(10), "b1 and b2 through nginx", || async {
        (answering(listen).await == ["b1", "b2"]).then_some(())
    })
    .await;

    // A third instance joins: re-rendered, reloaded, served.
    api.register(json!({"Name": "web", "ID": "web-3", "Port": ports[2],
        "Check": {"CheckID": "web-3-ttl", "TTL": "1h", "Status": "passing"}}))
        .await;
    retry_until(Duration::from_secs(20), "b3 through nginx", || async {
        (answering(listen).await == ["b1", "b2", "b3"]).then_some(())
    })
    .await;
    // One goes critical: it leaves the upstream and the traffic.
    api.put("/v1/agent/check/fail/web-1-ttl", "").await;
    retry_until(Duration::from_secs(20), "b1 out of nginx", || async {
        (answering(listen).await == ["b2", "b3"]).then_some(())
    })
    .await;
    let rendered = read(&conf);
    assert!(!rendered.contains("# web-1") && rendered.contains("# web-3"), "{rendered}");
    // The KV setting follows too.
    api.put("/v1/kv/nginx/max_fails", "5").await;
    retry_until_blocking(Duration::from_secs(20), "max_fails=5", || read(&conf).contains("max_fails=5").then_some(()));
}

/// `-wait min:max`: a burst of 1,000 KV writes, each within `min` of the last, renders once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_within_wait_min_renders_once() {
    let a = dev_agent("tpl-burst", &[]);
    let api = Api::new(&a);
    api.put("/v1/kv/burst/n", "0").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.tpl"), "n={{ key \"burst/n\" }}\n").unwrap();
    let _renderer = Reaped(
        template(&a, dir.path(), &["-template", "t.tpl:out:echo rendered >> renders", "-wait", "3s:120s"], &[])
            .spawn()
            .unwrap(),
    );
    let renders = dir.path().join("renders");
    retry_until_blocking(Duration::from_secs(20), "the first render", || {
        (read(&renders).lines().count() == 1).then_some(())
    });
    // 1,000 writes, 16 at a time: each lands well within 3 s of the one before.
    let writes = futures_util::stream::iter(1..=1000).map(|i| {
        let api = &api;
        async move { api.put("/v1/kv/burst/n", i.to_string()).await }
    });
    use futures_util::StreamExt;
    writes.buffered(16).collect::<Vec<()>>().await;
    // Concurrent writes land in any order: the last one applied is the value.
    let last = api.get("/v1/kv/burst/n").await[0]["Value"].as_str().map(|b| {
        use base64::Engine;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
    });
    let want = format!("n={}\n", last.unwrap());
    retry_until_blocking(Duration::from_secs(30), "the burst rendered", || {
        (read(&dir.path().join("out")) == want).then_some(())
    });
    // Settled: one render for the whole burst.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(&renders).lines().count(), 2, "one render for the initial data, one for the burst");
}

/// `-exec`: the child starts after the first render and gets the reload signal on a change; its
/// exit ends `legate template` with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_signals_the_child_on_change_and_exits_with_it() {
    let a = dev_agent("tpl-exec", &[]);
    let api = Api::new(&a);
    api.put("/v1/kv/exec/v", "1").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.tpl"), "v={{ key \"exec/v\" }}\n").unwrap();
    // The child notes the HUP and exits 7 (through the shell `-exec` runs it with).
    let child =
        r#"sh -c 'trap "echo hup >> signals; exit 7" HUP; echo started >> signals; while :; do sleep 0.1; done'"#;
    let mut renderer = Reaped(
        template(&a, dir.path(), &["-template", "t.tpl:out", "-exec", child, "-exec-reload-signal", "SIGHUP"], &[])
            .spawn()
            .unwrap(),
    );
    let signals = dir.path().join("signals");
    retry_until_blocking(Duration::from_secs(20), "the child started", || {
        (read(&signals) == "started\n").then_some(())
    });
    api.put("/v1/kv/exec/v", "2").await;
    retry_until_blocking(Duration::from_secs(20), "the child got SIGHUP", || {
        (read(&signals) == "started\nhup\n" && read(&dir.path().join("out")) == "v=2\n").then_some(())
    });
    // The child exited 7 on it: so does legate template.
    let status =
        retry_until_blocking(Duration::from_secs(20), "legate template exits", || renderer.0.try_wait().unwrap());
    assert_eq!(status.code(), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_template_and_where() {
    let a = dev_agent("tpl-errors", &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A syntax error: file, line and column; nothing rendered.
    std::fs::write(d.join("bad.tpl"), "ok\n{{ range service \"web\" }}{{ if }}{{ end }}\n").unwrap();
    let out = template(&a, d, &["-template", "bad.tpl:out", "-once"], &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("bad.tpl:2:"), "{err}");
    // A missing source.
    let out = template(&a, d, &["-template", "nope.tpl:out", "-once"], &[]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.tpl"), "{out:?}");
    // error_on_missing_key fails the render; without it the key renders as the zero value.
    std::fs::write(d.join("keys.tpl"), "{{ with parseJSON `{\"a\":1}` }}{{ .a }}{{ .b }}{{ end }}\n").unwrap();
    let hcl = "template {\n  source = \"keys.tpl\"\n  destination = \"strict\"\n  error_on_missing_key = true\n}\n";
    std::fs::write(d.join("strict.hcl"), hcl).unwrap();
    let out = template(&a, d, &["-config", "strict.hcl", "-once"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("map has no entry for key: b"), "{out:?}");
    assert!(!d.join("strict").exists());
    let out = template(&a, d, &["-template", "keys.tpl:lenient", "-once"], &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(read(&d.join("lenient")).starts_with('1'), "{}", read(&d.join("lenient")));
    // Unknown config keys are refused, naming the file.
    std::fs::write(d.join("vault.hcl"), "vault { address = \"https://vault\" }\n").unwrap();
    let out = template(&a, d, &["-config", "vault.hcl", "-once"], &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vault.hcl") && err.contains("vault"), "{err}");
}

/// The agent's own `template` blocks: rendered with perms and backup, re-rendered on data
/// changes, and reconciled on reload (changed, added, removed); a broken one fails the reload
/// and keeps the running ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_config_templates_render_and_follow_reloads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let conf_dir = d.join("conf");
    std::fs::create_dir(&conf_dir).unwrap();
    let out_a: PathBuf = d.join("out/a.conf");
    let block = |name: &str, contents: &str, extra: &str| {
        format!(
            "template {{\n  contents = {contents:?}\n  destination = {:?}\n  perms = 0600\n  backup = true\n{extra}}}\n",
            d.join(format!("out/{name}.conf")).display()
        )
    };
    std::fs::write(conf_dir.join("t.hcl"), block("a", "v={{ keyOrDefault \"agent/v\" \"none\" }}\n", "")).unwrap();
    let a = dev_agent("tpl-agent", &["-config-dir", conf_dir.to_str().unwrap(), "-hcl", "auto_reload_config = false"]);
    let api = Api::new(&a);
    retry_until_blocking(Duration::from_secs(20), "a rendered", || (read(&out_a) == "v=none\n").then_some(()));
    assert_eq!(std::fs::metadata(&out_a).unwrap().permissions().mode() & 0o777, 0o600);
    api.put("/v1/kv/agent/v", "1").await;
    retry_until_blocking(Duration::from_secs(20), "a follows KV", || (read(&out_a) == "v=1\n").then_some(()));
    assert_eq!(read(&d.join("out/a.conf.bak")), "v=none\n", "backup keeps the previous output");

    // Reload: a changed and b added.
    let two = block("a", "changed v={{ key \"agent/v\" }}\n", "") + &block("b", "b={{ key \"agent/v\" }}\n", "");
    std::fs::write(conf_dir.join("t.hcl"), two).unwrap();
    api.put("/v1/agent/reload", "").await;
    retry_until_blocking(Duration::from_secs(20), "a changed, b added", || {
        (read(&out_a) == "changed v=1\n" && read(&d.join("out/b.conf")) == "b=1\n").then_some(())
    });
    // A template that does not parse fails the reload (naming it) and keeps the running ones.
    std::fs::write(conf_dir.join("t.hcl"), block("a", "{{ if }}", "")).unwrap();
    let r = reqwest::Client::new().put(format!("http://{}/v1/agent/reload", a.http.unwrap())).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let why = r.text().await.unwrap();
    assert!(why.contains("template[0]") && why.contains(":1:"), "{why}");
    api.put("/v1/kv/agent/v", "2").await;
    retry_until_blocking(Duration::from_secs(20), "still rendering", || {
        (read(&out_a) == "changed v=2\n" && read(&d.join("out/b.conf")) == "b=2\n").then_some(())
    });
    // b removed: it is no longer rendered.
    std::fs::write(conf_dir.join("t.hcl"), block("a", "changed v={{ key \"agent/v\" }}\n", "")).unwrap();
    api.put("/v1/agent/reload", "").await;
    api.put("/v1/kv/agent/v", "3").await;
    retry_until_blocking(Duration::from_secs(20), "a follows", || (read(&out_a) == "changed v=3\n").then_some(()));
    assert_eq!(read(&d.join("out/b.conf")), "b=2\n", "b stopped with its block");
}
