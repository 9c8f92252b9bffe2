//! `legate lock [-n 1] [-name] [-timeout] [-try] [-shell] [-child-exit-code] <prefix> <command...>`:
//! runs the command while holding the lock `<prefix>/.lock` (Consul's leader-election recipe):
//! a session renewed in the background, a blocking acquire, the child killed if the lock is
//! lost, the lock released and the session destroyed when the child ends.

use std::time::Duration;

use legate_client::{Lock, Semaphore};

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Args, Debug)]
pub struct LockArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// How many holders at once (1: a lock; more: a semaphore)
    #[arg(short = 'n', long = "n", default_value_t = 1)]
    limit: u32,
    /// Name of the session
    #[arg(long, default_value = "Legate lock")]
    name: String,
    /// Give up acquiring after this long (Go duration; default: wait forever)
    #[arg(long)]
    timeout: Option<String>,
    /// Try once (or for -timeout) and exit 1 if the lock is not free
    #[arg(long = "try")]
    try_: Option<String>,
    /// Run the command through `sh -c` (default true)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    shell: bool,
    /// Exit 2 if the child exits with an error
    #[arg(long)]
    child_exit_code: bool,
    /// Print what is happening
    #[arg(long)]
    verbose: bool,
    /// Errors tolerated while watching the lock before giving it up
    #[arg(long, default_value_t = 3)]
    monitor_retry: u32,
    prefix: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(a: LockArgs) -> i32 {
    block_on(async move {
        if a.limit == 0 {
            return Err("Error! -n must be at least 1".into());
        }
        if a.command.is_empty() {
            return Err("Error! Missing command to run".into());
        }
        let parse = |s: &Option<String>| -> Result<Option<Duration>, String> {
            s.as_deref()
                .map(|t| {
                    legate_config::duration::parse_go_duration(t).map_err(|e| format!("Error parsing timeout: {e}"))
                })
                .transpose()
        };
        let timeout = parse(&a.try_)?.or(parse(&a.timeout)?);
        let client = a.http.client()?;
        let ttl = Duration::from_secs(15);
        let session = client
            .session_create(&a.name, ttl, Duration::from_secs(15))
            .await
            .map_err(|e| format!("Error creating session: {e}"))?;
        // When the session was last confirmed (created or renewed). Stricter than Consul's `lock`:
        // a holder that cannot renew for a whole TTL (its server cut off from the others, an old
        // leader that still answers reads) gives the lock up then, before the servers can have
        // expired the session (2 x TTL after the last renewal) and let another holder in (after
        // the lock-delay as well).
        let confirmed = std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        let renew = {
            let (client, session, confirmed) = (client.clone(), session.clone(), confirmed.clone());
            tokio::spawn(async move {
                let mut wait = ttl / 2;
                loop {
                    tokio::time::sleep(wait).await;
                    let asked = std::time::Instant::now();
                    match tokio::time::timeout(ttl / 2, client.session_renew(&session)).await {
                        Ok(Ok(true)) => {
                            *confirmed.lock().unwrap_or_else(|p| p.into_inner()) = asked;
                            wait = ttl / 2;
                        }
                        Ok(Ok(false)) => return,
                        Ok(Err(e)) => {
                            eprintln!("Error renewing session: {e}");
                            wait = Duration::from_secs(1);
                        }
                        Err(_) => {
                            eprintln!("Error renewing session: no answer within {:?}", ttl / 2);
                            wait = Duration::from_secs(1);
                        }
                    }
                }
            })
        };
        let key = format!("{}/.lock", a.prefix.trim_end_matches('/'));
        let holder = if a.limit == 1 {
            Holder::Lock(Lock::new(client.clone(), key.clone(), session.clone()))
        } else {
            Holder::Semaphore(Semaphore::new(client.clone(), a.prefix.clone(), session.clone(), a.limit))
        };
        if a.verbose {
            eprintln!("Attempting lock acquisition on {key}");
        }
        let held = match &holder {
            Holder::Lock(l) => l.acquire(b"", timeout).await,
            Holder::Semaphore(s) => s.acquire(timeout).await,
        }
        .map_err(|e| format!("Lock acquisition failed: {e}"))?;
        if !held {
            renew.abort();
            if let Holder::Semaphore(s) = &holder {
                let _ = s.release().await;
            }
            let _ = client.session_destroy(&session).await;
            return Err("Shutdown triggered or timeout during lock acquisition".into());
        }
        if a.verbose {
            eprintln!("Lock acquisition successful");
        }
        let mut cmd = if a.shell {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(a.command.join(" "));
            c
        } else {
            let mut c = tokio::process::Command::new(&a.command[0]);
            c.args(&a.command[1..]);
            c
        };
        // Its own process group, so losing the lock kills the whole command, not just the shell.
        cmd.env("CONSUL_LOCK_HELD", "true").env("LEGATE_LOCK_HELD", "true").kill_on_drop(true).process_group(0);
        let mut child = cmd.spawn().map_err(|e| format!("Error starting handler: {e}"))?;
        let outcome = tokio::select! {
            status = child.wait() => Ok(status.map_err(|e| e.to_string())?),
            _ = async {
                // Transient errors while watching (an agent restarting) are retried.
                let mut errors = 0;
                while let Err(e) = holder.wait_lost().await {
                    errors += 1;
                    if errors > a.monitor_retry {
                        eprintln!("Error monitoring lock: {e}");
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            } => {
                lost(&mut child).await
            }
            _ = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let since = confirmed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                    if since >= ttl {
                        eprintln!("Session not renewed for {since:?} (TTL {ttl:?}): giving the lock up");
                        return;
                    }
                }
            } => {
                lost(&mut child).await
            }
        };
        // Bounded: after a lost lock the server may be the one cut off.
        let _ = tokio::time::timeout(Duration::from_secs(3), holder.release()).await;
        renew.abort();
        let _ = tokio::time::timeout(Duration::from_secs(3), client.session_destroy(&session)).await;
        let status = outcome?;
        if a.verbose {
            eprintln!("Child exited with {status}");
        }
        Ok(if a.child_exit_code && !status.success() { 2 } else { 0 })
    })
}

enum Holder {
    Lock(Lock),
    Semaphore(Semaphore),
}

impl Holder {
    async fn wait_lost(&self) -> Result<(), legate_client::Error> {
        match self {
            Holder::Lock(l) => l.wait_lost().await,
            Holder::Semaphore(s) => s.wait_lost().await,
        }
    }

    async fn release(&self) {
        let _ = match self {
            Holder::Lock(l) => l.release().await.map(|_| ()),
            Holder::Semaphore(s) => s.release().await,
        };
    }
}

/// The lock is lost: the child's whole process group is killed.
async fn lost(child: &mut tokio::process::Child) -> Result<std::process::ExitStatus, String> {
    eprintln!("Lock lost, killing child");
    if let Some(pid) = child.id() {
        // SAFETY: signalling the child's process group, which we created.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
    let _ = child.kill().await;
    Err("Lock lost".to_string())
}
