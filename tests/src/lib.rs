//! Test harness for Legate's black-box tests: start real agents (in-process through
//! `Agent::start`, or as processes of the built `legate` binary) on loopback with OS-chosen
//! ports, wait until they answer, and tear them down; plus a retry-until helper and a
//! linearizability checker for the fault scenarios.

pub mod kv_workload;
pub mod linearizability;
pub mod netns;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legate_core::config::Config;
use legate_core::Agent;
use tokio_util::sync::CancellationToken;

/// Retries `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn retry_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking variant for process tests.
pub fn retry_until_blocking<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A dev-style config for in-process agents: server, loopback, every port OS-chosen or off.
pub fn test_config() -> Config {
    let mut c = Config {
        server: true,
        bootstrap: true,
        bind_addr: "127.0.0.1".into(),
        client_addr: "127.0.0.1".into(),
        node_name: Some("test-node".into()),
        ..Config::default()
    };
    c.ports.http = 0;
    c.ports.dns = -1;
    c.ports.server = 0;
    c.ports.serf_lan = -1;
    c.ports.serf_wan = -1;
    c.dev = true;
    c
}

/// An agent running in this process.
pub struct InProcessAgent {
    pub agent: Agent,
    pub base: String,
}

impl InProcessAgent {
    pub async fn start(config: Config) -> InProcessAgent {
        let agent = Agent::start(config, CancellationToken::new()).await.expect("agent starts");
        let base = format!("http://{}", agent.http_addrs()[0]);
        InProcessAgent { agent, base }
    }

    /// Blocking queries this agent's server has subscribed (state-store watches) plus those
    /// waiting on user events.
    pub fn blocked_queries(&self) -> usize {
        let shared = self.agent.shared();
        let store = shared.server().map_or(0, |s| s.store.watch.blocked_queries());
        store + shared.events.index.receiver_count()
    }

    /// Waits until `n` more blocking queries than `before` are subscribed: a write after this
    /// is one they must wake for (they subscribe before they read).
    pub async fn until_blocked(&self, before: usize, n: usize) {
        retry_until(Duration::from_secs(10), "blocking query subscribed", || async {
            (self.blocked_queries() >= before + n).then_some(())
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(self) {
        assert!(self.agent.shutdown(Duration::from_secs(5)).await, "agent tasks drained");
    }
}

/// The `legate` binary next to the test executable (target/<profile>/legate), or `$LEGATE_BIN`.
pub fn legate_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LEGATE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("legate");
    assert!(bin.exists(), "{} not found: build it first (cargo build --bins), or set LEGATE_BIN", bin.display());
    bin
}

/// A `legate` process. Its stdout and stderr are collected; dropping it kills the process.
pub struct AgentProcess {
    pub child: Child,
    output: Arc<Mutex<String>>,
    pub http: Option<SocketAddr>,
}

impl AgentProcess {
    /// Runs `legate <args>` with extra environment, and waits until it reports its HTTP
    /// listener (started with `-http-port 0`) or exits.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> AgentProcess {
        let mut cmd = Command::new(legate_bin());
        cmd.args(args);
        Self::spawn_command(cmd, env)
    }

    /// [`AgentProcess::start`] for a prepared command (a `legate` run through a wrapper that
    /// execs it, such as `ip netns exec`).
    pub fn start_command(cmd: Command, env: &[(&str, &str)]) -> AgentProcess {
        let mut p = Self::spawn_command(cmd, env);
        p.http = Some(p.listener("HTTP listeners"));
        p
    }

    fn spawn_command(mut cmd: Command, env: &[(&str, &str)]) -> AgentProcess {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        // Parallel tests must not all take the default serf LAN and WAN ports; flags still
        // override.
        cmd.env("LEGATE_PORTS__SERF_LAN", "0");
        cmd.env("LEGATE_PORTS__SERF_WAN", "0");
        // Nor the default DNS port (8600).
        cmd.env("LEGATE_PORTS__DNS", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn legate");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        AgentProcess { child, output, http: None }
    }

    /// Spawns and waits for the HTTP listener line of the banner.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> AgentProcess {
        let mut p = Self::spawn(args, env);
        p.http = Some(p.listener("HTTP listeners"));
        p
    }

    /// Waits for the banner line `label: [addr, ...]` and returns its first address.
    pub fn listener(&mut self, label: &str) -> SocketAddr {
        let prefix = format!("{label}: [");
        retry_until_blocking(Duration::from_secs(20), label, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("agent exited early ({status}):\n{}", self.output());
            }
            self.output()
                .lines()
                .find_map(|l| l.trim().strip_prefix(prefix.as_str()).map(str::to_string))
                .and_then(|rest| rest.split([',', ']']).next().map(str::to_string))
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http.expect("http listener"), path)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit, returning its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let status = retry_until_blocking(timeout, "agent exit", || self.child.try_wait().ok().flatten());
        // Let the reader threads drain the pipes.
        std::thread::sleep(Duration::from_millis(50));
        status.code()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `legate <args>` to completion: (exit code, stdout, stderr).
pub fn run_legate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(legate_bin()).args(args).output().expect("run legate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `files` (name, contents) into a new temporary directory.
pub fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write config file");
    }
    dir
}

/// Runs `legate` with extra environment and optional stdin; returns (exit code, stdout, stderr).
pub fn run_legate_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(legate_bin());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for var in ["CONSUL_HTTP_ADDR", "LEGATE_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "LEGATE_HTTP_TOKEN"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn legate");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        input.write_all(data).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("legate output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the agent at `base` (`http://ip:port`) knows a Raft leader.
pub async fn wait_leader(base: &str) {
    let c = reqwest::Client::new();
    retry_until(Duration::from_secs(15), "a leader", || async {
        let l: serde_json::Value = c.get(format!("{base}/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.as_str()?.is_empty()).then_some(())
    })
    .await;
}

/// Waits until `node` is in the catalog with a passing `serfHealth` (sessions need it).
pub async fn wait_serf_health(base: &str, node: &str) {
    let c = reqwest::Client::new();
    retry_until(Duration::from_secs(15), "serfHealth passing", || async {
        let v: serde_json::Value =
            c.get(format!("{base}/v1/health/node/{node}")).send().await.ok()?.json().await.ok()?;
        v.as_array()?.iter().any(|k| k["CheckID"] == "serfHealth" && k["Status"] == "passing").then_some(())
    })
    .await;
}

/// Arguments of an agent process on its own loopback address: Consul's default serf port,
/// any HTTP port, DNS off.
pub fn loopback_agent_args(ip: &str, name: &str, dir: &str) -> Vec<String> {
    ["agent", "-node", name, "-bind", ip, "-client", ip, "-data-dir", dir]
        .into_iter()
        .chain(["-dns-port", "-1", "-serf-lan-port", "8301", "-http-port", "0"])
        .map(String::from)
        .collect()
}

/// [`loopback_agent_args`] joining `join` every second (`-server -bootstrap-expect 3` for
/// servers): an agent of a loopback cluster test.
pub fn cluster_agent_args(ip: &str, name: &str, dir: &str, server: bool, join: &str) -> Vec<String> {
    let mut v = loopback_agent_args(ip, name, dir);
    v.extend(["-retry-join", join, "-retry-interval", "1s"].map(String::from));
    if server {
        v.extend(["-server", "-bootstrap-expect", "3"].map(String::from));
    }
    v
}

/// A bootstrapped single server on `dir` (127.0.0.1, any HTTP port, DNS off) whose RPC port
/// stays the same across restarts: Raft keeps the address it had, and a restart on another port
/// would leave the node calling its old self.
pub fn single_server_args(dir: &str, rpc_port: u16, node: &str) -> Vec<String> {
    let port = rpc_port.to_string();
    ["agent", "-server", "-bootstrap", "-data-dir", dir, "-bind", "127.0.0.1", "-http-port", "0"]
        .into_iter()
        .chain(["-dns-port", "-1", "-server-port", &port, "-node", node])
        .map(String::from)
        .collect()
}

/// A free TCP port on 127.0.0.1 (for a port that must stay the same across restarts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fault scenario's length: the suite's short `default`, or `CHAOS_SECONDS` (`scripts/chaos.sh`).
pub fn chaos_seconds(default: u64) -> u64 {
    std::env::var("CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Waits until `url()` (a `/v1/status/peers` address) lists three peers.
pub async fn wait_three_peers(c: &reqwest::Client, url: impl Fn() -> Option<String>) {
    retry_until(Duration::from_secs(30), "a leader with three peers", || async {
        let p: serde_json::Value = c.get(url()?).send().await.ok()?.json().await.ok()?;
        (p.as_array()?.len() == 3).then_some(())
    })
    .await;
}

/// Which of `agents` (at `ips`, in order) leads, as the first that answers says.
pub async fn leader_index_of(c: &reqwest::Client, agents: &[Option<AgentProcess>], ips: &[&str]) -> Option<usize> {
    for a in agents.iter().flatten() {
        if let Ok(r) = c.get(a.url("/v1/status/leader")).send().await {
            if let Ok(l) = r.json::<String>().await {
                if let Some(i) = ips.iter().position(|ip| l.starts_with(&format!("{ip}:"))) {
                    return Some(i);
                }
            }
        }
    }
    None
}
