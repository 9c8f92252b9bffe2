//! Locks under faults: `legate lock` holders on different servers while servers pause, die and
//! are cut off, checked from the holders' own logs: never two in the critical section at once.
//! Each critical section is a shell script appending `start <id> <ns>`, ticks and `end <id> <ns>`
//! lines to one log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use legate_tests::netns::Lab;
use legate_tests::{chaos_seconds, leader_index_of, wait_three_peers, AgentProcess};
use reqwest::Client;

/// The critical section: `sh hold.sh <id> <log> [ticks]` logs its start, a tick every 50 ms
/// (`ticks` of them, default 6) and its end, with the time in nanoseconds.
fn hold_script(dir: &Path) -> PathBuf {
    let hold = dir.join("hold.sh");
    std::fs::write(
        &hold,
        "id=$1; log=$2; n=${3:-6}\necho \"start $id $(date +%s%N)\" >> \"$log\"\ni=0\nwhile [ $i -lt $n ]; do echo \"tick $id $(date +%s%N)\" >> \"$log\"; sleep 0.05; i=$((i+1)); done\necho \"end $id $(date +%s%N)\" >> \"$log\"\n",
    )
    .unwrap();
    hold
}

/// `legate lock <key>` through the agent at `addr`, running the critical section as `id` (with
/// `ticks` ticks, or the script's default).
fn lock_command(addr: &str, key: &str, hold: &Path, id: &str, log: &Path, ticks: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(legate_tests::legate_bin());
    cmd.args(["lock", &format!("-http-addr={addr}"), key])
        .arg(format!("sh {} {id} {} {ticks}", hold.display(), log.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// A holder taking the lock run after run until `until` (a pause after a failed run); the
/// number of runs that completed.
fn hold_until(
    addr: String,
    key: &'static str,
    hold: PathBuf,
    id: String,
    log: PathBuf,
    until: Instant,
) -> tokio::task::JoinHandle<usize> {
    tokio::task::spawn_blocking(move || {
        let mut runs = 0;
        while Instant::now() < until {
            if lock_command(&addr, key, &hold, &id, &log, "").status().is_ok_and(|s| s.success()) {
                runs += 1;
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        runs
    })
}

/// The critical sections in `log`, [start, last line] per run, sorted; panics if two overlap.
fn sections_without_overlap(log: &Path) -> Vec<(u128, u128, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open: HashMap<String, (u128, u128)> = HashMap::new();
    let mut sections: Vec<(u128, u128, String)> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind, id, ts] = parts[..] else { continue };
        let ts: u128 = ts.parse().unwrap();
        match kind {
            "start" => {
                if let Some((s, e)) = open.insert(id.to_string(), (ts, ts)) {
                    sections.push((s, e, id.to_string()));
                }
            }
            _ => {
                if let Some(section) = open.get_mut(id) {
                    section.1 = ts;
                }
            }
        }
    }
    sections.extend(open.into_iter().map(|(id, (s, e))| (s, e, id)));
    sections.sort();
    for w in sections.windows(2) {
        assert!(
            w[1].0 > w[0].1,
            "holders {} and {} overlapped by {} µs (sections {:?} and {:?})",
            w[0].2,
            w[1].2,
            (w[0].1 - w[1].0) / 1000,
            (w[0].0, w[0].1),
            (w[1].0, w[1].1)
        );
    }
    sections
}

/// `legate lock` holders on three servers' APIs while the leader is paused, a holder's server is
/// paused (its holder loses sight of the lock) and a server is killed and restarted: the holders'
/// own logs never show two of them in the critical section at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holders_never_overlap_while_servers_pause_and_die() {
    const LOCK_IPS: [&str; 3] = ["127.0.10.1", "127.0.10.2", "127.0.10.3"];
    let start_lock_server = |i: usize, dir: &tempfile::TempDir| {
        let args = legate_tests::cluster_agent_args(
            LOCK_IPS[i],
            &format!("l{}", i + 1),
            dir.path().to_str().unwrap(),
            true,
            LOCK_IPS[0],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        AgentProcess::start(&args, &[])
    };
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<Option<AgentProcess>> = (0..3).map(|i| Some(start_lock_server(i, &dirs[i]))).collect();
    wait_three_peers(&c, || Some(servers[0].as_ref()?.url("/v1/status/peers"))).await;

    // Each holder: a loop of `legate lock` runs; the critical section logs its start, a tick
    // every 50 ms and its end, with the time in nanoseconds.
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log");
    let hold = hold_script(work.path());
    let until = Instant::now() + Duration::from_secs(chaos_seconds(18));
    let holders: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(id, server)| {
            let addr = server.as_ref().unwrap().http.unwrap().to_string();
            hold_until(addr, "locks/critical", hold.clone(), id.to_string(), log.clone(), until)
        })
        .collect();
    // Faults: the leader paused 3 s; holder 0's server paused 4 s (a follower, or the leader);
    // a server killed and restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = leader_index_of(&c, &servers, &LOCK_IPS).await.unwrap_or(0);
    servers[leader].as_ref().unwrap().signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    servers[leader].as_ref().unwrap().signal(libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(1)).await;
    servers[0].as_ref().unwrap().signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(4)).await;
    servers[0].as_ref().unwrap().signal(libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim_idx = leader_index_of(&c, &servers, &LOCK_IPS).await.unwrap_or(2);
    let mut victim = servers[victim_idx].take().unwrap();
    victim.signal(libc::SIGKILL);
    victim.wait_exit(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    servers[victim_idx] = Some(start_lock_server(victim_idx, &dirs[victim_idx]));
    let mut runs = 0;
    for h in holders {
        runs += h.await.unwrap();
    }

    let sections = sections_without_overlap(&log);
    eprintln!(
        "{} critical sections ({runs} completed runs), no overlap; faults: l{} (the leader) paused 3 s, l1 paused 4 s, l{} killed and restarted",
        sections.len(),
        leader + 1,
        victim_idx + 1
    );
    assert!(sections.len() >= 5, "the holders made progress: {} sections", sections.len());
}

/// The hard case: the holder's server is the leader and is cut off from the other servers. It
/// still answers the holder's reads (its view: the lock is held), but can commit nothing, so
/// the session's renewals fail; the majority elects a new leader, which expires the session
/// (2 x TTL after taking over) and, after the lock-delay, lets another holder in. `legate lock`
/// gives the lock up once it has not renewed for a TTL (15 s), so the two never overlap. The
/// suite checks that the cut-off holder stops within the TTL; the long run (`CHAOS_SECONDS`)
/// keeps the partition until the other holder gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holder_behind_a_cut_off_leader_gives_the_lock_up_within_its_ttl() {
    let Some(lab) = Lab::new("lk", 22, 3) else { return };
    let c = Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ips: Vec<String> = (0..3).map(|i| lab.ip(i)).collect();
    let servers = lab.start_servers("k", &dirs);
    wait_three_peers(&c, || Some(servers[0].as_ref()?.url("/v1/status/peers"))).await;
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let leader =
        legate_tests::retry_until(Duration::from_secs(10), "a leader", || leader_index_of(&c, &servers, &ip_refs))
            .await;
    let follower = (leader + 1) % 3;
    for (i, s) in servers.iter().enumerate() {
        legate_tests::wait_serf_health(&s.as_ref().unwrap().url(""), &format!("k{}", i + 1)).await;
    }

    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("log");
    let hold = hold_script(work.path());
    let addr_of = |server: usize| servers[server].as_ref().unwrap().http.unwrap().to_string();
    // A holds the lock through the leader (its section would last 100 s).
    let mut a = lock_command(&addr_of(leader), "locks/cut", &hold, "A", &log, "2000")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    legate_tests::retry_until(Duration::from_secs(15), "A in its critical section", || async {
        std::fs::read_to_string(&log).unwrap_or_default().contains("start A").then_some(())
    })
    .await;
    // B waits for it through a follower, run after run.
    let until = Instant::now() + Duration::from_secs(chaos_seconds(25));
    let b_runs = hold_until(addr_of(follower), "locks/cut", hold.clone(), "B".into(), log.clone(), until);

    let now_ns = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let cut_at = now_ns();
    lab.partition(&[&[leader], &[follower, (leader + 2) % 3]]);
    // A's `legate lock` gives up within the TTL of its last renewal (before the cut): its
    // section is killed, then it exits (its release and session destroy bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        match a.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = a.kill();
                let _ = a.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let a_err = {
        use std::io::Read;
        let mut s = String::new();
        a.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let a_lines = std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains(" A ")).count();
    let exited =
        exited.unwrap_or_else(|| panic!("A did not give the lock up within 30 s ({a_lines} lines logged): {a_err}"));
    assert!(!exited.success(), "A lost its lock: {a_err}");
    assert!(a_err.contains("giving the lock up") || a_err.contains("Lock lost"), "{a_err}");
    let a_last = sections_without_overlap(&log).iter().filter(|s| s.2 == "A").map(|s| s.1).max().unwrap();
    let after_cut = Duration::from_nanos((a_last.saturating_sub(cut_at)) as u64);
    assert!(after_cut <= Duration::from_millis(15_500), "A's section went on {after_cut:?} after the cut");
    // The long run: the partition stays until B holds the lock (the session expired on the
    // majority's side and the lock-delay passed).
    if std::env::var("CHAOS_SECONDS").is_ok() {
        legate_tests::retry_until(Duration::from_secs(90), "B gets the lock", || async {
            std::fs::read_to_string(&log).unwrap_or_default().contains("start B").then_some(())
        })
        .await;
    }
    lab.heal();
    let b_runs = b_runs.await.unwrap();
    let sections = sections_without_overlap(&log);
    let b_first = sections.iter().filter(|s| s.2 == "B").map(|s| s.0).min();
    eprintln!(
        "A's last line {after_cut:?} after its leader was cut off; B: {b_runs} runs, first start {:?} after the cut; {} sections, no overlap",
        b_first.map(|t| Duration::from_nanos(t.saturating_sub(cut_at) as u64)),
        sections.len()
    );
}
