//! `legate template`: consul-template built in. Renders Go templates with consul-template's
//! functions from the agent's data, re-rendering through blocking queries; `-once`, `-dry`,
//! `-wait`, `-exec` as consul-template.

use std::path::PathBuf;
use std::time::Duration;

use legate_template::config::{self, CommandSpec, ExecSpec, FileConfig, Wait};
use legate_template::exec::{signal, Supervised};
use legate_template::{Event, Options, Runner};
use tokio_util::sync::CancellationToken;

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// consul-template's name for -http-addr
    #[arg(long = "consul-addr")]
    consul_addr: Option<String>,
    /// consul-template's name for -token
    #[arg(long = "consul-token")]
    consul_token: Option<String>,
    /// "source:destination[:command]" (repeatable)
    #[arg(long = "template")]
    templates: Vec<String>,
    /// consul-template config file or directory (repeatable): template, wait, consul, exec blocks
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    /// Render once (waiting for the data) and exit
    #[arg(long)]
    once: bool,
    /// Print the outputs to stdout (`> destination` first) instead of writing files; no commands run
    #[arg(long)]
    dry: bool,
    /// Quiescence "min[:max]": render min after the last change, at most max after the first
    #[arg(long)]
    wait: Option<String>,
    /// A child process to run and keep running; on a change it gets -exec-reload-signal or is restarted
    #[arg(long)]
    exec: Option<String>,
    /// Signal sent to the child when an output changes (default: restart it)
    #[arg(long = "exec-reload-signal")]
    exec_reload_signal: Option<String>,
    /// Signal that stops the child (default SIGTERM)
    #[arg(long = "exec-kill-signal")]
    exec_kill_signal: Option<String>,
    /// How long the child may take to stop before SIGKILL (default 30s)
    #[arg(long = "exec-kill-timeout")]
    exec_kill_timeout: Option<String>,
    /// Signal that makes legate template exit (besides SIGINT and SIGTERM)
    #[arg(long = "kill-signal")]
    kill_signal: Option<String>,
    /// Log level: trace, debug, info, warn, err
    #[arg(long = "log-level", default_value = "warn")]
    log_level: String,
}

fn level(name: &str) -> Result<tracing::level_filters::LevelFilter, String> {
    legate_telemetry::monitor::parse_level(name).ok_or_else(|| format!("unknown -log-level {name:?}"))
}

fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<legate_types::duration::GoDuration>().map(|d| d.0).map_err(|e| format!("{flag}: {e}"))
}

pub fn run(mut a: TemplateArgs) -> i32 {
    // The config files first: their log_level applies unless the flag says otherwise.
    let mut file = FileConfig::default();
    for path in &a.config {
        match config::load(path) {
            Ok(c) => file.merge(c),
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        }
    }
    let log = file.log_level.clone().filter(|_| a.log_level == "warn").unwrap_or_else(|| a.log_level.clone());
    let level = match level(&log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .try_init();
    if a.http.http_addr.is_none() {
        a.http.http_addr = a.consul_addr.clone().or(file.consul.address.clone());
    }
    if a.http.token.is_none() {
        a.http.token = a.consul_token.clone().or(file.consul.token.clone());
    }
    block_on(async move { template(a, file).await })
}

async fn template(a: TemplateArgs, file: FileConfig) -> Result<i32, String> {
    let mut specs = file.template.clone();
    for t in &a.templates {
        specs.push(config::parse_template_flag(t)?);
    }
    let wait = match &a.wait {
        Some(w) => Some(Wait::parse(w)?),
        None => file.wait,
    };
    let once = a.once || file.once.unwrap_or(false);
    let opts = Options { once, dry: a.dry, wait, ..Options::default() };
    let client = a.http.client()?;
    let runner = Runner::new(client, specs, opts)?;

    // -exec (or the config's exec block): the child to supervise.
    let exec = match (&a.exec, &file.exec) {
        (Some(cmd), _) => Some(ExecSpec {
            command: Some(CommandSpec::Shell(cmd.clone())),
            reload_signal: a.exec_reload_signal.clone(),
            kill_signal: a.exec_kill_signal.clone(),
            kill_timeout: None,
        }),
        (None, Some(e)) => Some(e.clone()),
        (None, None) => None,
    };
    let mut child = match &exec {
        Some(e) => {
            let command = e.command.clone().filter(|c| !c.is_empty()).ok_or("exec: no command")?;
            let reload = a.exec_reload_signal.as_deref().or(e.reload_signal.as_deref()).map(signal).transpose()?;
            let kill = a.exec_kill_signal.as_deref().or(e.kill_signal.as_deref()).map(signal).transpose()?;
            let timeout = match &a.exec_kill_timeout {
                Some(t) => duration("-exec-kill-timeout", t)?,
                None => e.kill_timeout.map(|t| t.0).unwrap_or(Duration::from_secs(30)),
            };
            Some(Supervised::new(&command, reload, kill.unwrap_or(libc::SIGTERM), timeout))
        }
        None => None,
    };
    let kill_signal = a.kill_signal.as_deref().or(file.kill_signal.as_deref()).map(signal).transpose()?;

    let stop = CancellationToken::new();
    let (tx, mut events) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(runner.run(stop.clone(), Some(tx)));
    let mut task = std::pin::pin!(task);
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut extra = match kill_signal {
        Some(sig) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(sig)).map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let code = loop {
        let child_exit = async {
            match child.as_mut() {
                Some(c) if c.running() => c.exited().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            done = &mut task => {
                // -once finished, or a fatal error.
                match done {
                    Ok(Ok(())) => break 0,
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(e.to_string()),
                }
            }
            ev = events.recv() => match (ev, child.as_mut()) {
                (Some(Event::AllRendered), Some(c)) if !c.running() => c.start()?,
                (Some(Event::Changed), Some(c)) => c.changed().await?,
                _ => {}
            },
            status = child_exit => {
                tracing::info!(%status, "exec: the child exited; stopping");
                stop.cancel();
                break status.code().unwrap_or(1);
            }
            _ = tokio::signal::ctrl_c() => { stop.cancel(); break 0; }
            _ = term.recv() => { stop.cancel(); break 0; }
            _ = async { match extra.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } } => {
                stop.cancel();
                break 0;
            }
        }
    };
    if let Some(c) = child.as_mut() {
        c.stop().await;
    }
    Ok(code)
}
