//! Runs the local checks: one task per interval check (probe every `interval`, first run after
//! a random stagger), TTL expiry, alias checks, and the reaper of
//! `deregister_critical_service_after`. A supervisor reconciles the running tasks with the local
//! state whenever it changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::checks::{self, CheckStatus, Outcome};
use super::local::LocalCheck;
use super::AgentShared;

/// Consul's `StatusHandler`: consecutive-result thresholds before a status change is reported.
#[derive(Debug, Default)]
pub struct Thresholds {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    pub fn new(def: &legate_config::CheckDefinition) -> Thresholds {
        let critical = def.failures_before_critical;
        let warning = if def.failures_before_warning == 0 { critical } else { def.failures_before_warning };
        Thresholds {
            success_before_passing: def.success_before_passing,
            failures_before_warning: warning,
            failures_before_critical: critical,
            successes: 0,
            failures: 0,
        }
    }

    /// The status to report for a probe result, or None to keep the current one.
    pub fn filter(&mut self, result: CheckStatus) -> Option<CheckStatus> {
        match result {
            CheckStatus::Passing => {
                self.successes += 1;
                self.failures = 0;
                (self.successes > self.success_before_passing).then_some(CheckStatus::Passing)
            }
            CheckStatus::Warning | CheckStatus::Critical => {
                self.failures += 1;
                self.successes = 0;
                if result == CheckStatus::Critical && self.failures > self.failures_before_critical {
                    Some(CheckStatus::Critical)
                } else if self.failures > self.failures_before_warning {
                    Some(CheckStatus::Warning)
                } else {
                    None
                }
            }
        }
    }
}

/// The supervisor: keeps one task per runnable check, expires TTLs, reaps services.
pub async fn supervise(agent: Arc<AgentShared>, tracker: TaskTracker, shutdown: CancellationToken) {
    let local = agent.local.clone();
    let mut rx = local.checks_changed.subscribe();
    let mut running: HashMap<String, (u64, CancellationToken)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let checks = local.checks();
        // Stop tasks of removed or re-registered checks; start missing ones.
        running.retain(|id, (generation, token)| {
            let keep = checks.iter().any(|c| &c.check.check_id == id && c.generation == *generation);
            if !keep {
                token.cancel();
            }
            keep
        });
        for c in &checks {
            let kind = c.check.kind.as_str();
            if matches!(kind, "ttl" | "maintenance" | "") || running.contains_key(&c.check.check_id) {
                continue;
            }
            let token = shutdown.child_token();
            running.insert(c.check.check_id.clone(), (c.generation, token.clone()));
            if kind == "alias" {
                legate_types::tasks::spawn(&tracker, "alias-check", run_alias(agent.clone(), c.clone(), token));
            } else {
                legate_types::tasks::spawn(&tracker, "check", run_probe(agent.clone(), c.clone(), token));
            }
        }
        let next_ttl = expire_ttls(&agent, &checks);
        reap_critical(&agent, &checks);
        let sleep = next_ttl.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = rx.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(sleep) => {}
            _ = tick.tick() => {}
        }
    }
    for (_, (_, t)) in running {
        t.cancel();
    }
}

/// Marks expired TTL checks critical; returns the next deadline.
fn expire_ttls(agent: &AgentShared, checks: &[LocalCheck]) -> Option<Instant> {
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    for c in checks.iter().filter(|c| c.check.kind == "ttl") {
        let Some(deadline) = c.ttl_deadline else { continue };
        if deadline <= now {
            if c.check.status != "critical" || c.check.output != "TTL expired" {
                tracing::warn!(check = %c.check.check_id, "Check missed TTL, is now critical");
                agent.local.update_check(&c.check.check_id, CheckStatus::Critical, "TTL expired", Duration::ZERO);
            }
        } else {
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
    }
    next
}

/// Removes services whose check has been critical longer than its
/// `deregister_critical_service_after`.
fn reap_critical(agent: &AgentShared, checks: &[LocalCheck]) {
    for c in checks {
        let (Some(after), Some(since)) = (&c.definition.deregister_critical_service_after, c.critical_since) else {
            continue;
        };
        if c.check.status == "critical" && !c.check.service_id.is_empty() && since.elapsed() >= after.0 {
            tracing::info!(service = %c.check.service_id, check = %c.check.check_id, "Check critical for too long, deregistering service");
            agent.local.remove_service(&c.check.service_id);
        }
    }
}

fn defer(agent: &AgentShared) -> Duration {
    agent.config().check_update_interval.0
}

fn output_limit(agent: &AgentShared, c: &LocalCheck) -> usize {
    let agent_max = agent.config().check_output_max_size as usize;
    c.definition.output_max_size.map(|m| (m as usize).min(agent_max)).unwrap_or(agent_max).max(1)
}

fn record(agent: &AgentShared, id: &str, status: CheckStatus, output: &str) {
    let output = if agent.config().discard_check_output { "" } else { output };
    agent.local.update_check(id, status, output, defer(agent));
}

async fn run_probe(agent: Arc<AgentShared>, c: LocalCheck, token: CancellationToken) {
    let interval =
        c.definition.interval.as_ref().map(|i| i.0).unwrap_or(Duration::from_secs(10)).max(Duration::from_secs(1));
    let timeout =
        c.definition.timeout.as_ref().map(|t| t.0).filter(|t| !t.is_zero()).unwrap_or(if c.check.kind == "script" {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(10)
        });
    let max = output_limit(&agent, &c);
    let mut thresholds = Thresholds::new(&c.definition);
    let mut plugin_state = legate_plugin_host::CheckState::default();
    let plugin_call = legate_plugin_host::CheckCall {
        check_id: c.check.check_id.clone(),
        check_name: c.check.name.clone(),
        service_id: c.check.service_id.clone(),
        interval,
        timeout,
        token: c.token.clone(),
    };
    let stagger = rand::thread_rng().gen_range(Duration::ZERO..interval);
    tokio::select! {
        _ = token.cancelled() => return,
        _ = tokio::time::sleep(stagger) => {}
    }
    let kind: legate_telemetry::Labels = vec![("type", c.check.kind.clone().into())];
    loop {
        let started = Instant::now();
        let Outcome { status, mut output } = match &c.definition.wasm {
            Some(spec) if c.check.kind == "wasm" => {
                let wall = std::time::SystemTime::now();
                let o = tokio::select! {
                    _ = token.cancelled() => return,
                    o = agent.plugins().run_check(spec, &plugin_call, &mut plugin_state) => o,
                };
                let running = plugin_state.running.clone();
                agent.plugin_runs.record(&c.check.check_id, wall, started.elapsed(), None, running);
                o
            }
            _ => {
                let tls = agent.check_tls();
                tokio::select! {
                    _ = token.cancelled() => return,
                    o = checks::probe(&c.definition, timeout, max, tls.as_ref().as_ref()) => o,
                }
            }
        };
        legate_telemetry::counter("legate.check.runs", kind.clone(), 1.0);
        legate_telemetry::measure_since("legate.check.duration", kind.clone(), started);
        checks::truncate(&mut output, max);
        if let Some(s) = thresholds.filter(status) {
            record(&agent, &c.check.check_id, s, &output);
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Alias: the worst status of the aliased service's checks (and its node's), on this agent or
/// in the catalog.
async fn run_alias(agent: Arc<AgentShared>, c: LocalCheck, token: CancellationToken) {
    let target_node = c.definition.alias_node.clone().filter(|n| !n.is_empty());
    let target_service = c.definition.alias_service.clone().filter(|s| !s.is_empty());
    let mut local_rx = agent.local.checks_changed.subscribe();
    let mut catalog_rx = agent.server().map(|s| s.store.watch.subscribe(legate_state::watch::Table::Catalog));
    loop {
        let local_node = target_node.as_deref().is_none_or(|n| n == agent.node_name());
        let statuses: Option<Vec<String>> = if local_node {
            let checks = agent.local.checks();
            let exists = target_service.as_deref().is_none_or(|s| agent.local.service(s).is_some());
            exists.then(|| {
                checks
                    .iter()
                    .filter(|x| x.check.check_id != c.check.check_id)
                    .filter(|x| x.check.service_id.is_empty() || Some(&x.check.service_id) == target_service.as_ref())
                    .map(|x| x.check.status.clone())
                    .collect()
            })
        } else {
            agent.server().and_then(|s| {
                let txn = s.store.read().ok()?;
                let node = target_node.as_deref().unwrap_or_default();
                legate_state::catalog::node(&txn, node).ok()??;
                let checks = legate_state::catalog::node_checks(&txn, node).ok()?;
                Some(
                    checks
                        .into_iter()
                        .filter(|x| x.service_id.is_empty() || Some(&x.service_id) == target_service.as_ref())
                        .map(|x| x.status)
                        .collect(),
                )
            })
        };
        let (status, output) = match statuses {
            None => (CheckStatus::Critical, "Aliased service or node not found".to_string()),
            Some(s) if s.iter().any(|x| x == "critical" || x == "maintenance") => {
                (CheckStatus::Critical, "At least one check is critical".into())
            }
            Some(s) if s.iter().any(|x| x == "warning") => {
                (CheckStatus::Warning, "At least one check is warning".into())
            }
            Some(_) => (CheckStatus::Passing, "All checks passing.".into()),
        };
        record(&agent, &c.check.check_id, status, &output);
        let catalog_changed = async {
            match catalog_rx.as_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = local_rx.changed() => {}
            _ = catalog_changed => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use legate_config::CheckDefinition;

    #[test]
    fn thresholds_follow_consul() {
        let def = CheckDefinition { success_before_passing: 2, failures_before_critical: 2, ..Default::default() };
        let mut t = Thresholds::new(&def);
        assert_eq!(t.filter(CheckStatus::Passing), None);
        assert_eq!(t.filter(CheckStatus::Passing), None);
        assert_eq!(t.filter(CheckStatus::Passing), Some(CheckStatus::Passing));
        assert_eq!(t.filter(CheckStatus::Critical), None);
        assert_eq!(t.filter(CheckStatus::Critical), None);
        assert_eq!(t.filter(CheckStatus::Critical), Some(CheckStatus::Critical));
        let def = CheckDefinition { failures_before_warning: 1, failures_before_critical: 3, ..Default::default() };
        let mut t = Thresholds::new(&def);
        assert_eq!(t.filter(CheckStatus::Critical), None);
        assert_eq!(t.filter(CheckStatus::Critical), Some(CheckStatus::Warning));
        let mut plain = Thresholds::new(&CheckDefinition::default());
        assert_eq!(plain.filter(CheckStatus::Warning), Some(CheckStatus::Warning));
        assert_eq!(plain.filter(CheckStatus::Passing), Some(CheckStatus::Passing));
    }
}
