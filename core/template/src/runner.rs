//! Keeps templates rendered: one watch per dependency (shared by every template that reads it),
//! a render after the template's quiet period (`wait min`, at most `wait max` after the first
//! change), atomic writes of changed output only, and the template's command after a write.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use legate_client::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{validate, TemplateSpec, Wait};
use crate::deps::{fetch, to_json, Dep};
use crate::render::{Brain, Compiled};

/// How the runner runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Render every template once (waiting for its data), then return.
    pub once: bool,
    /// Print to stdout (`> destination` then the output) instead of writing files, and run no
    /// command.
    pub dry: bool,
    /// Quiescence for templates without their own `wait`.
    pub wait: Option<Wait>,
    /// How long each blocking query waits on the agent.
    pub blocking_wait: Duration,
    /// How often files (`file`) and datacenters are re-read.
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            once: false,
            dry: false,
            wait: None,
            blocking_wait: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// What the runner tells its caller (`-exec` supervision, tests).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Every template has been rendered completely for the first time.
    AllRendered,
    /// A later pass changed at least one output.
    Changed,
}

struct Job {
    spec: TemplateSpec,
    compiled: Compiled,
    wait: Option<Wait>,
    /// Rendered completely at least once.
    complete: bool,
    /// The dependencies the last render read.
    used: BTreeSet<Dep>,
    /// A dependency changed: since when, and when last.
    pending: Option<(Instant, Instant)>,
    /// `-dry`: what was printed last.
    last_printed: Option<String>,
}

impl Job {
    /// When it should render next (None: nothing pending).
    fn due(&self) -> Option<Instant> {
        let (first, last) = self.pending?;
        // Until its first complete render, data is rendered as soon as it comes.
        if !self.complete {
            return Some(last);
        }
        Some(match self.wait {
            Some(w) if !w.min.is_zero() => (last + w.min).min(first + w.max.max(w.min)),
            _ => last,
        })
    }
}

/// Reads a template's text (its `source` file or `contents`) and parses it.
pub fn compile(spec: &TemplateSpec) -> Result<Compiled, String> {
    let text = match (&spec.source, &spec.contents) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        (None, Some(c)) => c.clone(),
        (None, None) => return Err("template needs a source or contents".into()),
    };
    let left = spec.left_delimiter.as_deref().unwrap_or("{{");
    let right = spec.right_delimiter.as_deref().unwrap_or("}}");
    Compiled::new(&spec.name(), &text, (left, right), spec.error_on_missing_key)
}

pub struct Runner {
    client: Client,
    opts: Options,
    jobs: Vec<Job>,
}

impl Runner {
    /// Validates and parses every template: an error names the template and, for a syntax
    /// error, its line and column.
    pub fn new(client: Client, specs: Vec<TemplateSpec>, opts: Options) -> Result<Runner, String> {
        let mut jobs = Vec::new();
        for spec in specs {
            validate(&spec, opts.dry)?;
            let compiled = compile(&spec)?;
            let wait = spec.wait.or(opts.wait);
            jobs.push(Job {
                spec,
                compiled,
                wait,
                complete: false,
                used: BTreeSet::new(),
                pending: None,
                last_printed: None,
            });
        }
        if jobs.is_empty() {
            return Err("no templates given".into());
        }
        Ok(Runner { client, opts, jobs })
    }

    /// Runs until `stop` (or, with `once`, until every template rendered). Errors end it only
    /// with `once` (a template that cannot render); otherwise they are logged.
    pub async fn run(mut self, stop: CancellationToken, events: Option<mpsc::Sender<Event>>) -> Result<(), String> {
        let (tx, mut rx) = mpsc::channel::<(Dep, gotmpl::Value)>(1024);
        let mut brain = Brain::default();
        let mut watches: HashMap<Dep, CancellationToken> = HashMap::new();
        let mut announced = false;
        let now = Instant::now();
        for job in &mut self.jobs {
            job.pending = Some((now, now));
        }
        let result = loop {
            let now = Instant::now();
            let snapshot = Arc::new(brain.clone());
            let mut commands: Vec<(String, crate::config::CommandSpec, Duration)> = Vec::new();
            let mut changed = false;
            let mut failure = None;
            for job in &mut self.jobs {
                if job.due().is_none_or(|d| d > now) {
                    continue;
                }
                job.pending = None;
                let rendered = match job.compiled.render(snapshot.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(template = %job.spec.name(), "render failed: {e}");
                        failure = Some(format!("{}: {e}", job.spec.name()));
                        continue;
                    }
                };
                job.used = rendered.used.clone();
                if !rendered.complete() {
                    let waiting: Vec<String> = rendered.missing.iter().map(ToString::to_string).collect();
                    tracing::debug!(template = %job.spec.name(), missing = ?waiting, "waiting for data");
                    continue;
                }
                job.complete = true;
                match output(self.opts.dry, job, &rendered.output) {
                    Ok(true) => {
                        changed = true;
                        if let Some(cmd) = job.spec.command.clone().filter(|c| !c.is_empty() && !self.opts.dry) {
                            let key = format!("{cmd:?}");
                            if !commands.iter().any(|(k, _, _)| *k == key) {
                                commands.push((key, cmd, job.spec.command_timeout()));
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(template = %job.spec.name(), "writing the output failed: {e}");
                        failure = Some(e);
                    }
                }
            }
            if let (Some(e), true) = (failure, self.opts.once) {
                break Err(e);
            }
            // One watch per dependency any template reads; none for those no longer read.
            let wanted: BTreeSet<Dep> = self.jobs.iter().flat_map(|j| j.used.iter().cloned()).collect();
            watches.retain(|dep, token| {
                let keep = wanted.contains(dep);
                if !keep {
                    token.cancel();
                    brain.data.remove(dep);
                }
                keep
            });
            for dep in wanted {
                if !watches.contains_key(&dep) {
                    let token = stop.child_token();
                    watches.insert(dep.clone(), token.clone());
                    let (client, tx, opts) = (self.client.clone(), tx.clone(), self.opts.clone());
                    tokio::spawn(watch(client, dep, tx, token, opts));
                }
            }
            for (_, cmd, timeout) in commands {
                run_command(&cmd, timeout).await;
            }
            let all = self.jobs.iter().all(|j| j.complete);
            if all && self.opts.once {
                break Ok(());
            }
            if let Some(events) = &events {
                if all && !announced {
                    announced = true;
                    let _ = events.send(Event::AllRendered).await;
                } else if changed && announced {
                    let _ = events.send(Event::Changed).await;
                }
            }
            let next = self.jobs.iter().filter_map(Job::due).min();
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                got = rx.recv() => {
                    let Some((dep, value)) = got else { break Ok(()) };
                    brain.data.insert(dep.clone(), value);
                    // Everything queued so far lands in the same pass.
                    let mut deps = vec![dep];
                    while let Ok((dep, value)) = rx.try_recv() {
                        brain.data.insert(dep.clone(), value);
                        deps.push(dep);
                    }
                    let now = Instant::now();
                    for job in &mut self.jobs {
                        if deps.iter().any(|d| job.used.contains(d)) {
                            let first = job.pending.map_or(now, |(f, _)| f);
                            job.pending = Some((first, now));
                        }
                    }
                }
                _ = sleep_until(next) => {}
            }
        };
        for token in watches.values() {
            token.cancel();
        }
        result
    }
}

/// Writes (or with `-dry` prints) a complete render; true when the output changed.
fn output(dry: bool, job: &mut Job, text: &str) -> Result<bool, String> {
    {
        if dry {
            if job.last_printed.as_deref() == Some(text) {
                return Ok(false);
            }
            let dest = job.spec.destination.as_ref().map(|d| d.display().to_string()).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "> {dest}\n{text}");
            let _ = out.flush();
            job.last_printed = Some(text.to_string());
            return Ok(true);
        }
        let dest = job.spec.destination.as_deref().expect("validated: a destination");
        write_atomically(dest, text.as_bytes(), &job.spec)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes `data` to `dest` through a temporary file in the same directory and a rename, with
/// the template's `perms` (else the old file's mode, else 0644) and its `backup`. Identical
/// content writes nothing (false).
pub fn write_atomically(dest: &Path, data: &[u8], spec: &TemplateSpec) -> Result<bool, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = dest.display();
    let existing = std::fs::read(dest).ok();
    if existing.as_deref() == Some(data) {
        return Ok(false);
    }
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if spec.create_dest_dirs.unwrap_or(true) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let old_mode = std::fs::metadata(dest).ok().map(|m| m.permissions().mode() & 0o7777);
    let mode = spec.perms.map(|p| p.0).or(old_mode).unwrap_or(0o644);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.legate-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        if spec.backup && existing.is_some() {
            let bak = dest.with_file_name(format!("{name}.bak"));
            std::fs::copy(dest, &bak)?;
        }
        std::fs::rename(&tmp, dest)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {shown}: {e}"));
    }
    tracing::info!(destination = %shown, bytes = data.len(), "rendered");
    Ok(true)
}

/// Runs a template's command with its timeout; a failure is logged, not fatal.
pub async fn run_command(cmd: &crate::config::CommandSpec, timeout: Duration) {
    let argv = cmd.argv();
    let Some((prog, args)) = argv.split_first() else { return };
    // Dropped at the timeout, the future kills the child (kill_on_drop).
    let child =
        tokio::process::Command::new(prog).args(args).stdin(std::process::Stdio::null()).kill_on_drop(true).output();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(out)) if out.status.success() => {
            tracing::info!(command = ?argv, "command ran");
        }
        Ok(Ok(out)) => tracing::error!(
            command = ?argv,
            status = %out.status,
            stderr = %String::from_utf8_lossy(&out.stderr).trim_end(),
            "command failed"
        ),
        Ok(Err(e)) => tracing::error!(command = ?argv, "command could not start: {e}"),
        Err(_) => tracing::error!(command = ?argv, ?timeout, "command timed out and was killed"),
    }
}

/// One dependency's watch: blocking queries (files and datacenters: a poll), each new value
/// sent to the runner; errors are retried with backoff.
async fn watch(
    client: Client,
    dep: Dep,
    tx: mpsc::Sender<(Dep, gotmpl::Value)>,
    stop: CancellationToken,
    opts: Options,
) {
    let mut index = 0u64;
    let mut last: Option<serde_json::Value> = None;
    let mut backoff = Duration::from_millis(250);
    let poll = match dep {
        Dep::Datacenters { .. } => opts.poll_interval.max(Duration::from_secs(30)),
        _ => opts.poll_interval,
    };
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = fetch(&client, &dep, index, opts.blocking_wait) => r,
        };
        match result {
            Ok((value, new_index)) => {
                backoff = Duration::from_millis(250);
                let json = to_json(&value);
                if last.as_ref() != Some(&json) {
                    last = Some(json);
                    if tx.send((dep.clone(), value)).await.is_err() {
                        return;
                    }
                }
                if new_index == 0 {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
                // An index that went backwards (a restored snapshot) starts over.
                index = if new_index < index { 0 } else { new_index };
            }
            Err(e) => {
                tracing::warn!(dependency = %dep, "{e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
