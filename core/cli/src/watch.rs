//! `legate watch -type <type> [-key|-prefix|-service|-tag|-passingonly|-state|-name|-filter]
//! [-shell=false] [handler...]`: with no handler, prints the first result as indented JSON and
//! exits (Consul's behaviour); with a handler, runs it on the first result and on each change
//! (result JSON on stdin, `CONSUL_INDEX` in the environment) until interrupted. A failing
//! handler stops the watch with exit status 1.

use std::ops::ControlFlow;

use serde::Serialize;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::http_flags::{block_on, HttpFlags};
use legate_config::WatchDefinition;
use legate_watch::handler::{self, Output};
use legate_watch::WatchSpec;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Watch type: key, keyprefix, services, nodes, service, checks or event
    #[arg(long = "type")]
    kind: Option<String>,
    /// Key to watch (type key)
    #[arg(long)]
    key: Option<String>,
    /// Key prefix to watch (type keyprefix)
    #[arg(long)]
    prefix: Option<String>,
    /// Service to watch (type service, or checks of one service)
    #[arg(long)]
    service: Option<String>,
    /// Service tag to filter on (type service; repeatable)
    #[arg(long)]
    tag: Vec<String>,
    /// Only passing instances (type service)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    passingonly: Option<bool>,
    /// Check state to watch (type checks): any, passing, warning, critical
    #[arg(long)]
    state: Option<String>,
    /// Event name to watch (type event)
    #[arg(long)]
    name: Option<String>,
    /// Filter expression (types services, nodes, service, checks)
    #[arg(long)]
    filter: Option<String>,
    /// Run the handler through the shell ($SHELL -c, default true)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    shell: bool,
    /// Handler to run on each change
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    handler: Vec<String>,
}

/// Go's `json.MarshalIndent(v, "", "    ")`.
fn pretty(v: &Json) -> String {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&out).into_owned()
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn run(a: WatchArgs) -> i32 {
    // Query errors (the agent went away...) are retried with backoff and reported on stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    block_on(async move {
        let Some(kind) = a.kind.clone().filter(|k| !k.is_empty()) else {
            return Err("Must specify watch type".into());
        };
        let def = WatchDefinition {
            kind,
            datacenter: a.http.datacenter.clone(),
            token: a.http.token.clone(),
            stale: a.http.stale.then_some(true),
            key: a.key.clone(),
            prefix: a.prefix.clone(),
            service: a.service.clone(),
            tag: (!a.tag.is_empty()).then(|| Json::from(a.tag.clone())),
            passingonly: a.passingonly,
            state: a.state.clone(),
            name: a.name.clone(),
            filter: a.filter.clone(),
            ..Default::default()
        };
        let spec = WatchSpec::from_definition(&def).map_err(|(_, e)| format!("Error parsing watch plan: {e}"))?;
        let client = a.http.client()?;
        client
            .get_json::<Json>("/v1/agent/self", &Default::default(), &[])
            .await
            .map_err(|e| format!("Error querying Consul agent: {e}"))?;

        let argv: Option<Vec<String>> = match (a.handler.is_empty(), a.shell) {
            (true, _) => None,
            (false, true) => Some(handler::shell_argv(&a.handler.join(" "))),
            (false, false) => Some(a.handler.clone()),
        };
        let stop = CancellationToken::new();
        let code = std::cell::Cell::new(0);
        let (code_ref, argv_ref) = (&code, argv.as_ref());
        let watch = spec.run(&client, &stop, |index, result| async move {
            let Some(argv) = argv_ref else {
                println!("{}", pretty(&result));
                return ControlFlow::Break(());
            };
            let input = serde_json::to_vec(&result).unwrap_or_default();
            match handler::exec(argv, &input, index, None, Output::Inherit).await {
                Ok(_) => ControlFlow::Continue(()),
                Err(e) => {
                    eprintln!("Error executing handler: {e}");
                    code_ref.set(1);
                    ControlFlow::Break(())
                }
            }
        });
        tokio::select! {
            _ = watch => {}
            _ = interrupted() => {}
        }
        Ok(code.get())
    })
}
