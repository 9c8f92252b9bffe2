//! Running Legate as a service: systemd's readiness protocol (tested without systemd, through
//! a `NOTIFY_SOCKET` the test listens on), shell completions and man pages from the CLI's own
//! definitions.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use legate_tests::{run_legate, AgentProcess};

/// The next notification, within `timeout`.
fn next(sock: &UnixDatagram, timeout: Duration) -> String {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification from the agent");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_after_the_api_and_a_leader_and_reloading_around_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut a =
        AgentProcess::spawn(&["agent", "-dev", "-http-port", "0"], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let ready = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(30)));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // Ready means serving, with the dev server its own leader already.
    a.http = Some(a.listener("HTTP listeners"));
    let leader: String = reqwest::get(a.url("/v1/status/leader")).await.unwrap().json().await.unwrap();
    assert!(!leader.is_empty(), "ready before a leader");

    a.signal(libc::SIGHUP);
    let reloading = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(10)));
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    let usec = reloading.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).expect("MONOTONIC_USEC");
    assert!(usec.parse::<u64>().unwrap() > 0);
    let again = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(10)));
    assert!(again.lines().any(|l| l == "READY=1"), "{again}");

    a.signal(libc::SIGINT);
    let stopping = tokio::task::block_in_place(|| next(&sock, Duration::from_secs(10)));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    // A dev server skips the leave on interrupt and exits 1, as Consul's does.
    assert_eq!(a.wait_exit(Duration::from_secs(20)), Some(1), "{}", a.output());
    assert!(a.output().contains("Graceful shutdown disabled. Exiting"), "{}", a.output());
}

#[test]
fn without_notify_socket_nothing_is_sent_and_the_agent_runs() {
    // The unit's absence must not matter: no NOTIFY_SOCKET, the agent starts and serves.
    let a = AgentProcess::start(&["agent", "-dev", "-http-port", "0"], &[]);
    assert!(!a.output().contains("cannot notify systemd"), "{}", a.output());
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let (code, bash, err) = run_legate(&["completion", "bash"]);
    assert_eq!(code, 0, "{err}");
    for word in ["_legate()", "complete -F _legate", "agent", "kv", "snapshot", "--bootstrap-expect"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(script.path()).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let (code, zsh, _) = run_legate(&["completion", "zsh"]);
    assert!(code == 0 && zsh.starts_with("#compdef legate"), "{zsh}");
    let (code, fish, _) = run_legate(&["completion", "fish"]);
    assert!(code == 0 && fish.contains("complete -c legate"), "{fish}");
    let (code, _, err) = run_legate(&["completion", "tcsh"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_legate(&["man", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let pages: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(out.contains(&format!("Wrote {} man pages", pages.len())), "{out}");
    for page in ["legate.1", "legate-agent.1", "legate-kv-get.1", "legate-operator-raft-list-peers.1"] {
        assert!(pages.iter().any(|p| p == page), "{page} missing from {pages:?}");
    }
    let agent = std::fs::read_to_string(dir.path().join("legate-agent.1")).unwrap();
    assert!(agent.starts_with(".ie") || agent.contains(".TH legate-agent 1"), "{agent}");
    assert!(agent.contains("bootstrap\\-expect"), "the agent page documents its flags");
}
