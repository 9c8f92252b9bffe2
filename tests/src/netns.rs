//! A lab of hosts for fault scenarios: each host a network namespace with one address on a
//! bridge in this (the test's) namespace, so the test reaches every host's API directly while
//! faults between the hosts are injected inside each host: partitions (every packet from the
//! other side dropped on input by nftables, silently, as a cut cable), packet loss (nftables'
//! `numgen random` drops) and delay with jitter (`lab-delay` behind an iptables NFQUEUE rule).
//! Packets from the test's own address are never touched: the clients see the cluster as it is,
//! the cluster's members do not see each other.
//!
//! Needs root (`ip netns`, `nft`, `iptables`); [`Lab::new`] returns `None` otherwise. Everything
//! is removed on drop (namespaces take their veth ends with them).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::AgentProcess;

pub struct Lab {
    bridge: String,
    hosts: Vec<String>,
    subnet: String,
    /// `lab-delay` processes of [`Lab::delay`], one per host.
    delayers: std::sync::Mutex<Vec<std::process::Child>>,
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn must(cmd: &str, args: &[&str]) {
    run(cmd, args, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether this process may create namespaces (root); the scenarios skip otherwise.
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Removes what a run of the same scenario left behind when it was killed before its drop (its
/// bridge would route the same subnet): namespaces `l<tag><i>-<pid>` and bridge `lb<tag><pid>`
/// of processes that are gone.
fn remove_leftovers(tag: &str) {
    let gone = |pid: &str| pid.parse::<u32>().is_ok_and(|p| !Path::new(&format!("/proc/{p}")).exists());
    let listing = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    for line in String::from_utf8_lossy(&listing).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(&format!("l{tag}")) else { continue };
        if rest.split_once('-').is_some_and(|(i, pid)| i.parse::<u32>().is_ok() && gone(pid)) {
            let _ = run("ip", &["netns", "del", name], None);
        }
    }
    let links = Command::new("ip").args(["-br", "link"]).output().map(|o| o.stdout).unwrap_or_default();
    for line in String::from_utf8_lossy(&links).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.strip_prefix(&format!("lb{tag}")).is_some_and(gone) {
            let _ = run("ip", &["link", "del", name], None);
        }
    }
}

impl Lab {
    /// `n` hosts `10.213.<net>.1..=n` on a bridge; the test's side is `10.213.<net>.254`.
    /// `tag`: two letters unique among the scenarios (interface names are short).
    pub fn new(tag: &str, net: u8, n: usize) -> Option<Lab> {
        if !available() {
            eprintln!("skipped: network namespaces and nftables need root and the nftables package (CI has both)");
            return None;
        }
        let id = std::process::id() % 100_000;
        let bridge = format!("lb{tag}{id}");
        let subnet = format!("10.213.{net}");
        remove_leftovers(tag);
        must("ip", &["link", "add", &bridge, "type", "bridge"]);
        let mut lab =
            Lab { bridge: bridge.clone(), hosts: Vec::new(), subnet: subnet.clone(), delayers: Default::default() };
        must("ip", &["addr", "add", &format!("{subnet}.254/24"), "dev", &bridge]);
        must("ip", &["link", "set", &bridge, "up"]);
        for i in 1..=n {
            let ns = format!("l{tag}{i}-{id}");
            let veth = format!("l{tag}{i}h{id}");
            must("ip", &["netns", "add", &ns]);
            lab.hosts.push(ns.clone());
            must("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            must("ip", &["link", "set", &veth, "master", &bridge, "up"]);
            must("ip", &["-n", &ns, "addr", "add", &format!("{subnet}.{i}/24"), "dev", "eth0"]);
            must("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            lab.nft(i - 1, "table inet lab {\n chain input { type filter hook input priority 0; }\n}\n");
        }
        Some(lab)
    }

    /// Host `i`'s address (0-based).
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Starts `legate <args>` inside host `i` (same pid: `ip netns exec` execs) and waits for its
    /// HTTP listener.
    pub fn start(&self, i: usize, args: &[&str], env: &[(&str, &str)]) -> AgentProcess {
        let bin = crate::legate_bin();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i]]).arg(bin).args(args);
        AgentProcess::start_command(cmd, env)
    }

    /// Runs a command inside host `i`.
    pub fn exec(&self, i: usize, args: &[&str]) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", &self.hosts[i]]).args(args).output().expect("ip netns exec runs")
    }

    /// A server on every host, node names `<prefix>1..`, each on its data dir, joining host 1
    /// (`-bootstrap-expect` the number of hosts: 3).
    pub fn start_servers(&self, prefix: &str, dirs: &[tempfile::TempDir]) -> Vec<Option<AgentProcess>> {
        (0..self.len())
            .map(|i| {
                let dir = dirs[i].path().to_str().unwrap();
                let args =
                    crate::cluster_agent_args(&self.ip(i), &format!("{prefix}{}", i + 1), dir, true, &self.ip(0));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Some(self.start(i, &args, &[]))
            })
            .collect()
    }

    fn nft(&self, i: usize, script: &str) {
        run("ip", &["netns", "exec", &self.hosts[i], "nft", "-f", "-"], Some(script))
            .unwrap_or_else(|e| panic!("nft in host {}: {e}", i + 1))
    }

    /// Cuts every pair (a, b) with a in one group and b in another: both drop what the other
    /// sends. Hosts in no group keep seeing everyone.
    pub fn partition(&self, groups: &[&[usize]]) {
        let mut drops: Vec<Vec<usize>> = vec![Vec::new(); self.len()];
        for (g, group) in groups.iter().enumerate() {
            for other in groups.iter().skip(g + 1) {
                for &a in group.iter() {
                    for &b in other.iter() {
                        drops[a].push(b);
                        drops[b].push(a);
                    }
                }
            }
        }
        for (host, from) in drops.iter().enumerate().filter(|(_, f)| !f.is_empty()) {
            let set: Vec<String> = from.iter().map(|&f| self.ip(f)).collect();
            self.nft(host, &format!("add rule inet lab input ip saddr {{ {} }} drop\n", set.join(", ")));
        }
    }

    /// Cuts host `a` from host `b` (both ways).
    pub fn cut(&self, a: usize, b: usize) {
        self.partition(&[&[a], &[b]]);
    }

    /// Every host drops `percent` % of what the other hosts send it (not the test's packets).
    pub fn loss(&self, percent: u32) {
        for host in 0..self.len() {
            self.nft(
                host,
                &format!(
                    "add rule inet lab input ip saddr {}.0/24 ip saddr != {}.254 numgen random mod 100 < {percent} drop\n",
                    self.subnet, self.subnet
                ),
            );
        }
    }

    /// Every host holds what the other hosts send it for `delay_ms` ± `jitter_ms` (uniform, so
    /// packets reorder): an iptables NFQUEUE rule hands them to a `lab-delay` process in the
    /// host (this kernel has no `sch_netem`). Bypassed if that process dies.
    pub fn delay(&self, delay_ms: u64, jitter_ms: u64) {
        use std::io::BufRead;
        let bin = crate::legate_bin().with_file_name("lab-delay");
        assert!(bin.exists(), "{} not found: cargo build --workspace --bins", bin.display());
        let mut delayers = self.delayers.lock().unwrap();
        for (i, ns) in self.hosts.iter().enumerate() {
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(&bin)
                .args(["0", &delay_ms.to_string(), &jitter_ms.to_string()])
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn lab-delay");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready", "lab-delay in host {} did not start", i + 1);
            delayers.push(child);
            let (from, me) = (format!("{}.0/24", self.subnet), format!("{}.254", self.subnet));
            let iptables = |rule: &[&str]| {
                let args: Vec<&str> =
                    ["netns", "exec", ns, "iptables", "-A", "INPUT"].iter().chain(rule).copied().collect();
                run("ip", &args, None)
            };
            iptables(&["-s", &me, "-j", "RETURN"])
                .and_then(|_| iptables(&["-s", &from, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]))
                .unwrap_or_else(|e| panic!("iptables in host {}: {e}", i + 1));
        }
    }

    /// Removes every fault.
    pub fn heal(&self) {
        for host in 0..self.len() {
            self.nft(host, "flush chain inet lab input\n");
        }
        let mut delayers = self.delayers.lock().unwrap();
        if !delayers.is_empty() {
            for ns in &self.hosts {
                let _ = run("ip", &["netns", "exec", ns, "iptables", "-F", "INPUT"], None);
            }
            for mut d in delayers.drain(..) {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut d in self.delayers.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in &self.hosts {
            let _ = run("ip", &["netns", "del", ns], None);
        }
        let _ = run("ip", &["link", "del", &self.bridge], None);
    }
}
