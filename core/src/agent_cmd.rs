//! `legate agent`: the process around a node: config load, logging, the runtime, signals
//! (SIGINT/SIGTERM leave or stop, SIGHUP reloads), the banner, systemd's notifications.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::{load, LoadOptions};
use crate::Agent;
use crate::{logging, version};

/// Runs `legate agent` with the options its flags gave (`legate_cli::agent::load_options`):
/// loads the config, sets up logging, starts the node and serves signals until it stops.
pub fn run(opts: LoadOptions) -> i32 {
    let loaded = match load(&opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    let _log_guard = match logging::init(&loaded.config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("==> Failed to start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(run_agent(loaded.config, opts))
}

async fn run_agent(config: crate::config::Config, opts: LoadOptions) -> i32 {
    // Install handlers before anything can be signalled.
    let (mut sigint, mut sigterm, mut sighup) =
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => {
                eprintln!("==> Failed to install signal handlers");
                return 1;
            }
        };
    println!("==> Starting Legate agent...");
    let shutdown = CancellationToken::new();
    let agent = match Agent::start_loaded(config, opts, shutdown.clone()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    print_banner(&agent);
    println!();
    println!("==> Log data will now stream in as it occurs:");
    println!();
    // Readiness may wait for a lone server's election: signals are served meanwhile.
    let ready = crate::systemd::ready(agent.shared().clone());
    tokio::pin!(ready);
    let mut notified = false;

    enum Stop {
        Interrupt,
        Terminate,
        Requested,
    }
    let stop = loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => break Stop::Interrupt,
            _ = sigterm.recv() => break Stop::Terminate,
            _ = shutdown.cancelled() => break Stop::Requested,
            _ = &mut ready, if !notified => notified = true,
            _ = sighup.recv() => {
                tracing::info!("Caught signal: hangup; reloading configuration");
                crate::systemd::reloading();
                let shared = agent.shared().clone();
                let reloaded = tokio::task::spawn_blocking(move || shared.reload()).await;
                crate::systemd::reloaded();
                match reloaded {
                    Ok(Ok(outcome)) => tracing::info!(
                        applied = ?outcome.applied,
                        requires_restart = ?outcome.requires_restart,
                        "Reload complete"
                    ),
                    Ok(Err(e)) => tracing::error!("Failed to reload configs: {e}"),
                    Err(e) => tracing::error!("reload task failed: {e}"),
                }
            }
        }
    };
    crate::systemd::stopping();
    let config = agent.shared().config();
    let agent_fatal = agent.shared().fatal_error();
    let graceful = match stop {
        Stop::Interrupt => {
            println!("==> Caught signal: interrupt");
            !config.skip_leave_on_interrupt()
        }
        Stop::Terminate => {
            println!("==> Caught signal: terminated");
            config.leave_on_terminate()
        }
        Stop::Requested => true,
    };
    if let Some(why) = agent.shared().fatal_error() {
        eprintln!("==> {why}");
    }
    if graceful {
        println!("==> Gracefully shutting down agent...");
        agent.shared().leave().await;
    } else {
        println!("==> Graceful shutdown disabled. Exiting");
    }
    // A second signal while draining aborts the wait, as Consul.
    let clean = tokio::select! {
        clean = agent.shutdown(Duration::from_secs(15)) => clean,
        _ = sigint.recv() => false,
        _ = sigterm.recv() => false,
    };
    if graceful && clean && agent_fatal.is_none() {
        0
    } else {
        1
    }
}

fn print_banner(agent: &Agent) {
    let shared = agent.shared();
    let c = shared.config();
    let line = |k: &str, v: String| println!("{k:>22}: {v}");
    line("Version", format!("'{}' (Consul API '{}')", version::VERSION, version::CONSUL_VERSION));
    line("Build Date", format!("'{}'", version::BUILD_DATE));
    line("Node ID", format!("'{}'", shared.node_id()));
    line("Node name", format!("'{}'", shared.node_name()));
    line("Datacenter", format!("'{}' (Segment: '{}')", c.datacenter, if c.server { "<all>" } else { "" }));
    line("Server", format!("{} (Bootstrap: {})", c.server, c.bootstrap || c.bootstrap_expect > 0));
    let http: Vec<String> = agent.http_addrs().iter().map(|a| a.to_string()).collect();
    line(
        "Client Addr",
        format!(
            "[{}] (HTTP: {}, HTTPS: {}, gRPC: {}, DNS: {})",
            c.client_addr, c.ports.http, c.ports.https, c.ports.grpc, c.ports.dns
        ),
    );
    line("HTTP listeners", format!("[{}]", http.join(", ")));
    let https: Vec<String> = agent.https_addrs().iter().map(|a| a.to_string()).collect();
    line("HTTPS listeners", format!("[{}]", https.join(", ")));
    let dns: Vec<String> = agent.dns_addrs().iter().map(|a| a.to_string()).collect();
    line("DNS listeners", format!("[{}]", dns.join(", ")));
    line("Cluster Addr", format!("{} (LAN: {}, WAN: {})", shared.advertise_addr(), c.ports.serf_lan, c.ports.serf_wan));
    line("Gossip Encryption", c.encrypt.is_some().to_string());
    line("Auto-Encrypt-TLS", "false".into());
    line("Reporting Enabled", "false".into());
    use legate_config::tls::Listener;
    let (https, rpc) = (c.tls.settings(Listener::Https), c.tls.settings(Listener::InternalRpc));
    let min = |s: &legate_tls::Settings| s.min_version.clone().unwrap_or_else(|| "TLSv1_2".into());
    line(
        "HTTPS TLS",
        format!(
            "Verify Incoming: {}, Verify Outgoing: {}, Min Version: {}",
            https.verify_incoming,
            https.verify_outgoing,
            min(&https)
        ),
    );
    line(
        "Internal RPC TLS",
        format!(
            "Verify Incoming: {}, Verify Outgoing: {} (Verify Hostname: {}), Min Version: {}",
            rpc.verify_incoming,
            rpc.verify_outgoing,
            rpc.verify_server_hostname,
            min(&rpc)
        ),
    );
}
