//! `-exec`: a child process supervised beside the templates, started once they have all
//! rendered, signalled (`reload_signal`) or restarted when an output changes, and stopped with
//! `kill_signal` (then SIGKILL after `kill_timeout`).

use std::time::Duration;

use tokio::process::{Child, Command};

use crate::config::CommandSpec;

/// A signal by name: `SIGHUP`, `HUP`, `hup`.
pub fn signal(name: &str) -> Result<i32, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Ok(match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "WINCH" => libc::SIGWINCH,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        _ => return Err(format!("unknown signal {name:?}")),
    })
}

pub struct Supervised {
    argv: Vec<String>,
    reload_signal: Option<i32>,
    kill_signal: i32,
    kill_timeout: Duration,
    child: Option<Child>,
}

impl Supervised {
    /// A command line runs as `sh -c "exec <command>"`: the shell becomes the program, so the
    /// child's exit status is the program's and no shell stands between it and its signals.
    pub fn new(command: &CommandSpec, reload_signal: Option<i32>, kill_signal: i32, kill_timeout: Duration) -> Self {
        let argv = match command {
            CommandSpec::Shell(line) => vec!["/bin/sh".into(), "-c".into(), format!("exec {line}")],
            CommandSpec::Argv(argv) => argv.clone(),
        };
        Supervised { argv, reload_signal, kill_signal, kill_timeout, child: None }
    }

    /// Starts the child, its output going where ours goes, in a process group of its own: signals
    /// go to the whole group, so a command run through a shell gets them too.
    pub fn start(&mut self) -> Result<(), String> {
        let (prog, args) = self.argv.split_first().ok_or("exec: empty command")?;
        let child = Command::new(prog).args(args).process_group(0).spawn().map_err(|e| format!("exec {prog}: {e}"))?;
        tracing::info!(pid = child.id(), command = ?self.argv, "exec: child started");
        self.child = Some(child);
        Ok(())
    }

    fn send(&self, sig: i32) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            // SAFETY: kill(2) on our child's process group.
            unsafe { libc::kill(-(pid as i32), sig) };
        }
    }

    /// An output changed: the reload signal, else a restart.
    pub async fn changed(&mut self) -> Result<(), String> {
        match self.reload_signal {
            Some(sig) => {
                tracing::info!(signal = sig, "exec: signalling the child");
                self.send(sig);
                Ok(())
            }
            None => {
                tracing::info!("exec: restarting the child");
                self.stop().await;
                self.start()
            }
        }
    }

    /// Stops the child: `kill_signal`, then SIGKILL after `kill_timeout`.
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.send(self.kill_signal);
        let mut child = self.child.take()?;
        match tokio::time::timeout(self.kill_timeout, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(timeout = ?self.kill_timeout, "exec: the child did not stop; killing it");
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) on our child's process group.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                child.wait().await.ok()
            }
        }
    }

    /// Waits until the child exits on its own (forever when there is none).
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        match self.child.as_mut() {
            Some(c) => match c.wait().await {
                Ok(status) => status,
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}
