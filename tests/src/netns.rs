//! A lab of hosts for fault scenarios: each host a network namespace with one address on a
//! bridge in this (the test's) namespace, so the test reaches every host's API directly while
//! faults between the hosts are injected with nftables inside each host: partitions (every
//! packet from the other side dropped on input, silently, as a cut cable) and packet loss
//! (`numgen random` drops). Packets from the test's own address are never dropped: the clients
//! see the cluster as it is, the cluster's members do not see each other.
//!
//! Needs root (`ip netns`, `nft`); [`Lab::new`] returns `None` otherwise. Everything is removed
//! on drop (namespaces take their veth ends with them).

use std::process::{Command, Stdio};

use crate::AgentProcess;

pub struct Lab {
    bridge: String,
    hosts: Vec<String>,
    subnet: String,
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
        // A previous run killed before its drop may have left these behind.
        let _ = run("ip", &["link", "del", &bridge], None);
        must("ip", &["link", "add", &bridge, "type", "bridge"]);
        let mut lab = Lab { bridge: bridge.clone(), hosts: Vec::new(), subnet: subnet.clone() };
        must("ip", &["addr", "add", &format!("{subnet}.254/24"), "dev", &bridge]);
        must("ip", &["link", "set", &bridge, "up"]);
        for i in 1..=n {
            let ns = format!("l{tag}{i}-{id}");
            let veth = format!("l{tag}{i}h{id}");
            let _ = run("ip", &["netns", "del", &ns], None);
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

    /// Removes every fault.
    pub fn heal(&self) {
        for host in 0..self.len() {
            self.nft(host, "flush chain inet lab input\n");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.hosts {
            let _ = run("ip", &["netns", "del", ns], None);
        }
        let _ = run("ip", &["link", "del", &self.bridge], None);
    }
}
