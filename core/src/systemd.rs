//! `legate agent` under systemd (`Type=notify`): `READY=1` once the agent serves, `RELOADING=1`
//! and `READY=1` around a reload, `STOPPING=1` when it starts to leave. Without `NOTIFY_SOCKET`
//! (not started by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

use std::sync::Arc;

use crate::agent::AgentShared;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// How long a server that elects itself (dev mode, `bootstrap`, `bootstrap_expect = 1`) may take
/// to become leader before readiness is reported anyway.
const SELF_ELECTION: Duration = Duration::from_secs(30);

/// Reports readiness: the listeners serve, and a server that is its own cluster has a leader
/// (a server waiting for peers is ready once it serves: it may wait for them indefinitely).
pub async fn ready(shared: Arc<AgentShared>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let c = shared.config();
    let alone = c.server && (c.dev || c.bootstrap || c.bootstrap_expect == 1);
    if let Some(server) = shared.server().filter(|_| alone) {
        let wait = server.raft.wait(Some(SELF_ELECTION));
        if wait.metrics(|m| m.current_leader.is_some(), "leader").await.is_err() {
            tracing::warn!("no leader after {SELF_ELECTION:?}; reporting ready anyway");
        }
    }
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// A reload begins: systemd waits for [`reloaded`].
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::MonotonicUsec(monotonic_usec())]);
}

pub fn reloaded() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// CLOCK_MONOTONIC in microseconds, which systemd wants with RELOADING=1.
fn monotonic_usec() -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000 + i128::from(ts.tv_nsec) / 1_000
}
