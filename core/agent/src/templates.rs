//! The agent config's `template` blocks (Legate's own; consul-template's fields), rendered by the
//! agent from its own HTTP API with its default token. A reload that changes them restarts the
//! renderer; unchanged templates render the same output again, which writes nothing and runs no
//! command.

use std::sync::Arc;

use legate_template::{Options, Runner, TemplateSpec};
use tokio_util::sync::CancellationToken;

use super::AgentShared;

pub async fn supervise(agent: Arc<AgentShared>, api_addr: Option<String>, shutdown: CancellationToken) {
    let mut rx = agent.watch_config();
    let mut current: Vec<TemplateSpec> = Vec::new();
    let mut running: Option<CancellationToken> = None;
    loop {
        let config = rx.borrow_and_update().clone();
        if config.templates != current {
            if let Some(stop) = running.take() {
                stop.cancel();
                tracing::info!("templates changed: restarting the renderer");
            }
            current = config.templates.clone();
            if !current.is_empty() {
                match &api_addr {
                    Some(addr) => running = start(&config, addr, current.clone(), &shutdown),
                    None => tracing::error!("templates need the HTTP or HTTPS API, and both are disabled"),
                }
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = rx.changed() => if r.is_err() { break },
        }
    }
    if let Some(stop) = running {
        stop.cancel();
    }
}

fn start(
    config: &legate_config::Config,
    addr: &str,
    specs: Vec<TemplateSpec>,
    shutdown: &CancellationToken,
) -> Option<CancellationToken> {
    let tls = super::watches::local_api_tls(addr, config);
    let client = match legate_template::Client::with_tls(addr, config.acl.tokens.default.clone(), &tls) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("templates: cannot query the local agent: {e}");
            return None;
        }
    };
    let runner = match Runner::new(client, specs, Options::default()) {
        Ok(r) => r,
        Err(e) => {
            // Validated at load; a source file removed since then lands here.
            tracing::error!("templates: {e}");
            return None;
        }
    };
    let stop = shutdown.child_token();
    let token = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = runner.run(token, None).await {
            tracing::error!("templates: {e}");
        }
    });
    Some(stop)
}
