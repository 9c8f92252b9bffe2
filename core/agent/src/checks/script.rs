//! Script probe: runs `args` (or the legacy `script` through `/bin/sh -c`). Exit 0 is passing,
//! 1 warning, anything else critical. The output is stdout and stderr interleaved as written
//! (both go to one pipe); when longer than the limit its tail is kept, after a
//! `Captured N of M bytes` line. A run past the timeout is killed with its whole process group
//! and reported critical `Timed out (<timeout>) running check`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::time::Instant;

use super::Outcome;
use legate_config::{CheckDefinition, GoDuration};

/// How long output is still read after the script exits, for writers it left behind.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

pub(super) async fn probe(def: &CheckDefinition, timeout: Duration, max_output: usize) -> Outcome {
    let (program, args): (String, Vec<String>) = match def.args.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => ("/bin/sh".into(), vec!["-c".into(), def.script.clone().unwrap_or_default()]),
    };
    match run(&program, &args, timeout, max_output).await {
        Ok(o) => o,
        Err(e) => Outcome::critical(e),
    }
}

async fn run(program: &str, args: &[String], timeout: Duration, max_output: usize) -> Result<Outcome, String> {
    let deadline = Instant::now() + timeout;
    let (read_end, write_end) = pipe().map_err(|e| format!("Failed to create output pipe: {e}"))?;
    let write_err = write_end.try_clone().map_err(|e| format!("Failed to create output pipe: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_err))
        .process_group(0)
        .kill_on_drop(true);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: drop them so EOF can arrive.
    drop(cmd);
    let mut child = spawned.map_err(|e| spawn_error(program, &e))?;
    let pgid = child.id();
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)
        .map_err(|e| format!("Failed to read check output: {e}"))?;

    let mut tail = Tail::new(max_output);
    let mut chunk = vec![0u8; 8192];
    let mut eof = false;
    let mut exit = None;
    let mut stop_at = deadline;
    while !(eof && exit.is_some()) {
        tokio::select! {
            r = reader.read(&mut chunk), if !eof => match r {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => tail.push(&chunk[..n]),
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status);
                stop_at = deadline.min(Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = tokio::time::sleep_until(stop_at) => break,
        }
    }

    let Some(status) = exit else {
        // Timed out: kill the script and everything it started.
        if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = child.kill().await;
        return Ok(Outcome::critical(format!("Timed out ({}) running check", GoDuration(timeout))));
    };
    let status = status.map_err(|e| format!("Failed to wait for check: {e}"))?;
    let output = tail.finish();
    Ok(match status.code() {
        Some(0) => Outcome::passing(output),
        Some(1) => Outcome::warning(output),
        _ => Outcome::critical(output),
    })
}

/// A pipe whose ends are closed on exec (the child gets its own copies as stdout/stderr).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own exclusively.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Why a script could not start, worded as Go's `os/exec` does.
fn spawn_error(program: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("fork/exec {program}: {}", super::net::io_error(e))
    }
}

/// The last `cap` bytes written, and how many were written in all.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Tail { buf: Vec::new(), cap, total: 0 }
    }

    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        // Trim lazily so that a chatty script does not cost a copy per read.
        if self.buf.len() > self.cap.saturating_mul(2).max(8192) {
            let excess = self.buf.len() - self.cap;
            self.buf.drain(..excess);
        }
    }

    fn finish(self) -> String {
        if self.total <= self.cap as u64 {
            return String::from_utf8_lossy(&self.buf).into_owned();
        }
        let header = |kept: usize| format!("Captured {kept} of {} bytes\n...\n", self.total);
        let kept = self.cap.saturating_sub(header(self.cap).len()).min(self.buf.len());
        let mut start = self.buf.len() - kept;
        // Start on a character, not in the middle of one.
        while start < self.buf.len() && (self.buf[start] & 0xC0) == 0x80 {
            start += 1;
        }
        let body = String::from_utf8_lossy(&self.buf[start..]);
        format!("{}{body}", header(self.buf.len() - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckStatus;

    fn sh(script: &str) -> CheckDefinition {
        CheckDefinition { args: vec!["sh".into(), "-c".into(), script.into()], ..Default::default() }
    }

    #[tokio::test]
    async fn exit_codes_map_to_statuses() {
        let t = Duration::from_secs(10);
        assert_eq!(probe(&sh("echo hi; exit 1"), t, 4096).await, Outcome::warning("hi\n"));
        assert_eq!(probe(&sh("echo ok"), t, 4096).await, Outcome::passing("ok\n"));
        assert_eq!(probe(&sh("echo bad; exit 2"), t, 4096).await, Outcome::critical("bad\n"));
        assert_eq!(probe(&sh("kill -9 $$"), t, 4096).await.status, CheckStatus::Critical);
    }

    #[tokio::test]
    async fn legacy_script_runs_through_sh() {
        let d = CheckDefinition { script: Some("echo legacy >&2; exit 1".into()), ..Default::default() };
        assert_eq!(probe(&d, Duration::from_secs(10), 4096).await, Outcome::warning("legacy\n"));
    }

    #[tokio::test]
    async fn stdout_and_stderr_interleave() {
        let o = probe(&sh("echo one; echo two >&2; echo three"), Duration::from_secs(10), 4096).await;
        assert_eq!(o, Outcome::passing("one\ntwo\nthree\n"));
    }

    #[tokio::test]
    async fn long_output_keeps_the_tail() {
        let o = probe(&sh("seq 1 2000; echo END"), Duration::from_secs(10), 100).await;
        assert_eq!(o.status, CheckStatus::Passing);
        assert!(o.output.len() <= 100, "{}", o.output.len());
        assert!(o.output.starts_with("Captured "), "{}", o.output);
        assert!(o.output.contains(" of 8897 bytes\n...\n"), "{}", o.output);
        assert!(o.output.ends_with("1999\n2000\nEND\n"), "{}", o.output);
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The background child would create the marker if it outlived the kill.
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let o = probe(&sh(&script), Duration::from_millis(300), 4096).await;
        assert_eq!(o, Outcome::critical("Timed out (300ms) running check"));
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a process of the timed-out check survived");
    }

    #[tokio::test]
    async fn background_writer_does_not_hold_the_result() {
        let started = std::time::Instant::now();
        let o = probe(&sh("sleep 5 & echo done"), Duration::from_secs(10), 4096).await;
        assert_eq!(o, Outcome::passing("done\n"));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn missing_program_is_critical() {
        let d = CheckDefinition { args: vec!["legate-no-such-program".into()], ..Default::default() };
        let o = probe(&d, Duration::from_secs(5), 4096).await;
        assert_eq!(o, Outcome::critical("exec: \"legate-no-such-program\": executable file not found in $PATH"));
    }

    #[test]
    fn tail_cuts_on_char_boundaries() {
        let mut t = Tail::new(40);
        t.push("é".repeat(50).as_bytes());
        let s = t.finish();
        assert!(s.len() <= 40, "{s}");
        assert!(s.starts_with("Captured "), "{s}");
        assert!(s.ends_with('é') && !s.contains('\u{FFFD}'), "{s}");
    }
}
