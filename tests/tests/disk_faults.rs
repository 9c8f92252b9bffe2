//! Disk faults on a server's data dir: a filesystem that fills up (a small tmpfs), an fsync that
//! starts failing (an LD_PRELOAD shim), and store files damaged on disk. Writes fail with a
//! clear error, no acknowledged write is ever lost, the server takes writes again when space
//! returns, and a damaged file is named at start.
//!
//! The tmpfs mounts need root (CI runs as root); those scenarios skip otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use legate_tests::{retry_until, AgentProcess};
use reqwest::Client;

/// A tmpfs of `mib` MiB on a new temporary dir; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs");
        Some(Tmpfs { dir })
    }

    fn resize(&self, mib: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount the tmpfs");
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

fn start(dir: &str, rpc_port: u16, extra: &[&str], env: &[(&str, &str)]) -> AgentProcess {
    let mut args = legate_tests::single_server_args(dir, rpc_port, "disk");
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(&args, env)
}

async fn wait_leader(c: &Client, p: &AgentProcess) {
    retry_until(Duration::from_secs(20), "leader", || async {
        let l: String = c.get(p.url("/v1/status/leader")).send().await.ok()?.json().await.ok()?;
        (!l.is_empty()).then_some(())
    })
    .await;
}

/// A 100 KB value that names its key (so a read proves it is whole and the right one).
fn value_of(key: &str) -> Vec<u8> {
    key.as_bytes().iter().copied().cycle().take(100_000).collect()
}

/// What the writes got: keys acknowledged and the error texts of the refused ones.
#[derive(Default, Debug)]
struct Outcome {
    acked: Vec<String>,
    errors: Vec<(u16, String)>,
}

/// PUTs `prefix/<i>` one after another until `stop` says so, or `n` are done.
async fn write_until(c: &Client, p: &AgentProcess, prefix: &str, n: usize, stop: impl Fn(&Outcome) -> bool) -> Outcome {
    let mut out = Outcome::default();
    for i in 0..n {
        let key = format!("{prefix}/{i}");
        match c.put(p.url(&format!("/v1/kv/{key}"))).body(value_of(&key)).send().await {
            Ok(r) if r.status() == 200 => out.acked.push(key),
            Ok(r) => {
                let status = r.status().as_u16();
                out.errors.push((status, r.text().await.unwrap_or_default()));
            }
            Err(e) => out.errors.push((0, e.to_string())),
        }
        if stop(&out) {
            break;
        }
    }
    out
}

/// Every key in `acked` reads back whole.
async fn all_there(c: &Client, p: &AgentProcess, acked: &[String]) {
    for key in acked {
        let r = c.get(p.url(&format!("/v1/kv/{key}?raw&consistent"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged {key} is missing");
        assert!(r.bytes().await.unwrap() == value_of(key), "acknowledged {key} is not whole");
    }
}

/// Below `limits.data_dir_min_free` (64 MiB by default) the server refuses writes with Consul's
/// 500 and a text naming the dir, logs it once, keeps every acknowledged write, and takes writes
/// again once the filesystem grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_clearly_and_takes_them_again_when_space_returns() {
    let Some(fs) = Tmpfs::mount(80) else { return };
    let c = Client::new();
    let p = start(fs.path(), legate_tests::free_port(), &[], &[]);
    wait_leader(&c, &p).await;
    let out = write_until(&c, &p, "fill", 2000, |o| o.errors.len() >= 3).await;
    assert!(!out.acked.is_empty(), "writes were taken while there was space: {out:?}");
    let (status, text) = &out.errors[0];
    assert_eq!(*status, 500, "{text}");
    assert!(
        text.starts_with(&format!("disk full: {}/raft has ", fs.path())) && text.contains("limits.data_dir_min_free"),
        "{text}"
    );
    retry_until(Duration::from_secs(5), "the refusal logged", || async {
        p.output().lines().any(|l| l.contains("ERROR") && l.contains("disk full:")).then_some(())
    })
    .await;
    all_there(&c, &p, &out.acked).await;

    fs.resize(200);
    retry_until(Duration::from_secs(10), "a write taken again", || async {
        let r = c.put(p.url("/v1/kv/after")).body("ok").send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(p.output().contains("taking writes again"), "the recovery logged");
    all_there(&c, &p, &out.acked).await;
}

/// With no reserve (`limits.data_dir_min_free = 0`) the disk runs full under the Raft log: the
/// server stops (exit 1, the cause logged) instead of hanging, and restarted with space again it
/// has every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_past_the_reserve_stops_the_server_without_losing_an_acknowledged_write() {
    let Some(fs) = Tmpfs::mount(40) else { return };
    let c = Client::new();
    let port = legate_tests::free_port();
    let mut p = start(fs.path(), port, &["-hcl", "limits { data_dir_min_free = 0 }"], &[]);
    wait_leader(&c, &p).await;
    let out = write_until(&c, &p, "fill", 2000, |o| !o.errors.is_empty()).await;
    assert!(!out.acked.is_empty() && !out.errors.is_empty(), "{out:?}");
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(1), "{}", p.output());
    let log = p.output();
    assert!(
        log.contains("the Raft core stopped") && log.contains("No space left on device"),
        "the cause is logged:\n{log}"
    );

    fs.resize(200);
    let p = start(fs.path(), port, &[], &[]);
    wait_leader(&c, &p).await;
    all_there(&c, &p, &out.acked).await;
    eprintln!("{} writes acknowledged before the disk filled; all there after the restart", out.acked.len());
}

/// A shared library that makes fsync and fdatasync fail with EIO while `FAULT_FSYNC_FILE`
/// exists, built with the machine's C compiler.
fn fsync_shim(dir: &Path) -> PathBuf {
    let src = dir.join("failfsync.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
static int failing(void) { const char *f = getenv("FAULT_FSYNC_FILE"); return f && access(f, F_OK) == 0; }
int fsync(int fd) { if (failing()) { errno = EIO; return -1; } int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync"); return real(fd); }
int fdatasync(int fd) { if (failing()) { errno = EIO; return -1; } int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync"); return real(fd); }
"#,
    )
    .unwrap();
    let lib = dir.join("libfailfsync.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("cc runs");
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    lib
}

/// fsync starts failing (EIO) under concurrent writes: no write is acknowledged that was not
/// made durable, the server stops (exit 1) naming the error, and restarted on a healthy disk it
/// has every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_fsync_stops_the_server_without_losing_an_acknowledged_write() {
    let work = tempfile::tempdir().unwrap();
    let lib = fsync_shim(work.path());
    let trigger = work.path().join("fail-now");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let port = legate_tests::free_port();
    let env = [("LD_PRELOAD", lib.to_str().unwrap()), ("FAULT_FSYNC_FILE", trigger.to_str().unwrap())];
    let mut p = start(dir, port, &[], &env);
    let c = Client::new();
    wait_leader(&c, &p).await;
    // Four writers; fsync fails from the 20th acknowledged write on.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, url, acked, trigger) = (c.clone(), p.url(""), acked.clone(), trigger.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let key = format!("w{w}/{i}");
                let r = c.put(format!("{url}/v1/kv/{key}")).body(value_of(&key)).send().await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let mut a = acked.lock().unwrap();
                        a.push(key);
                        if a.len() == 20 {
                            std::fs::write(&trigger, "").unwrap();
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(1), "{}", p.output());
    let log = p.output();
    assert!(log.contains("the Raft core stopped") && log.contains("Input/output error"), "{log}");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "{} acknowledged", acked.len());

    let p = start(dir, port, &[], &[]);
    wait_leader(&c, &p).await;
    all_there(&c, &p, &acked).await;
    eprintln!("{} writes acknowledged before fsync failed; all there after the restart", acked.len());
}

/// Overwrites 64 bytes in every 4 KiB page after the first two (redb's header and commit
/// slots; in a log segment, records well before its end): checksums no longer match.
fn damage(file: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(file).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    let mut offset = 8192 + 100;
    while offset + 64 < len {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&[0xA5; 64]).unwrap();
        offset += 4096;
    }
}

/// Writes 60 keys (with a low snapshot threshold, so the log is compacted behind a snapshot)
/// and stops the server.
async fn server_with_keys(dir: &str, port: u16) -> Vec<String> {
    let c = Client::new();
    let p = start(dir, port, &["-hcl", "raft_snapshot_threshold = 25", "-hcl", "raft_trailing_logs = 5"], &[]);
    wait_leader(&c, &p).await;
    let out = write_until(&c, &p, "kept", 60, |_| false).await;
    assert_eq!(out.acked.len(), 60, "{out:?}");
    retry_until(Duration::from_secs(10), "a snapshot taken", || async {
        Path::new(dir).join("raft/snapshot.bin").exists().then_some(())
    })
    .await;
    out.acked
}

/// A damaged Raft log is refused at start with a message naming the file and the ways out; the
/// agent does not panic somewhere later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_raft_log_is_refused_at_start_naming_the_file() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let port = legate_tests::free_port();
    server_with_keys(dir, port).await;
    // The log's first segment file (the keys written fill one and start another).
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.path().join("raft/log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let raft_db = &segments[0];
    damage(raft_db);
    let mut args = legate_tests::single_server_args(dir, port, "disk");
    args.extend(["-log-level", "info"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = AgentProcess::spawn(&args, &[]);
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(1));
    let out = p.output();
    assert!(out.contains(&format!("{}: the Raft log is damaged", raft_db.display())), "{out}");
    assert!(out.contains("legate snapshot restore"), "the way out is named: {out}");
}

/// A damaged state store is moved aside (named in the log) and rebuilt from the snapshot and
/// the log: every key is back, the damaged file kept for inspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_state_store_is_rebuilt_from_the_snapshot_and_the_log() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let port = legate_tests::free_port();
    let keys = server_with_keys(dir, port).await;
    let state_db = data.path().join("raft/state.db");
    damage(&state_db);
    let c = Client::new();
    let p = start(dir, port, &[], &[]);
    wait_leader(&c, &p).await;
    all_there(&c, &p, &keys).await;
    let log = p.output();
    assert!(
        log.contains("the state store is damaged") && log.contains(&format!("file={}", state_db.display())),
        "{log}"
    );
    let aside: Vec<_> = std::fs::read_dir(data.path().join("raft"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("state.db.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept: {aside:?}");
}
