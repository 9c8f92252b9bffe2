//! Logging: tracing to stderr (text or JSON), optionally to `-log-file` (rotated) and to the
//! system log (`-syslog`), at the agent's level (reloadable); and to every open
//! `/v1/agent/monitor`, each at its own level (`legate_telemetry::monitor`), in hclog's format
//! as Consul's monitor writes it (`hclog.rs`).
//!
//! Writing never stalls the agent: stderr is written by a background thread through a bounded
//! queue; when nobody reads the output (a full pipe), lines are dropped, counted
//! (`agent.log.dropped_lines`) and reported once the output moves again.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use legate_telemetry::monitor;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::Config;

/// The levels, least detailed first: the agent's level is kept as an index into them.
const LEVELS: [LevelFilter; 6] = [
    LevelFilter::OFF,
    LevelFilter::ERROR,
    LevelFilter::WARN,
    LevelFilter::INFO,
    LevelFilter::DEBUG,
    LevelFilter::TRACE,
];

/// The agent's level (reloadable), an index into `LEVELS`.
static LEVEL: AtomicU8 = AtomicU8::new(3);

fn level_number(f: LevelFilter) -> u8 {
    LEVELS.iter().position(|l| *l == f).unwrap_or(LEVELS.len() - 1) as u8
}

fn agent_level() -> LevelFilter {
    LEVELS[usize::from(LEVEL.load(Ordering::Relaxed)).min(LEVELS.len() - 1)]
}

fn at_agent_level(meta: &Metadata<'_>) -> bool {
    *meta.level() <= agent_level()
}

/// The agent's level (reloadable) as a layer's filter. Its hint, with the monitors', sets
/// tracing's global max level: an event more detailed than every level in use (the HTTP
/// stack's trace lines at the default level) then stops at one comparison instead of asking
/// every layer's filter. A change of level rebuilds tracing's interest cache.
struct AgentLevel;

impl<S> tracing_subscriber::layer::Filter<S> for AgentLevel {
    fn enabled(&self, meta: &Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        at_agent_level(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(agent_level())
    }
}

/// What the open monitors of one format want, as a layer's filter (see [`AgentLevel`]).
struct MonitorLevel {
    json: bool,
}

impl<S> tracing_subscriber::layer::Filter<S> for MonitorLevel {
    fn enabled(&self, meta: &Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        monitor::hub().wants(meta.level(), self.json)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(monitor::hub().max_level(self.json))
    }
}

/// Lines stderr may have queued before new ones are dropped.
const STDERR_QUEUE: usize = 8192;

/// Keeps the background log writers alive; drop it last.
pub struct LogGuard {
    _stderr: tracing_appender::non_blocking::WorkerGuard,
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Consul's level names (`err`, `warn`, `trace`...).
pub fn parse_level(level: &str) -> Result<LevelFilter, String> {
    monitor::parse_level(level).ok_or_else(|| format!("invalid log level {:?}", level.to_ascii_lowercase()))
}

/// Installs the global subscriber. Call once, from the binary.
pub fn init(config: &Config) -> Result<LogGuard, String> {
    let level = parse_level(&config.log_level)?;
    LEVEL.store(level_number(level), Ordering::Relaxed);

    // The HTTP stack's per-connection debug lines drown the agent's own at -log-level=debug
    // (the -dev default); they show at trace.
    let quiet_deps = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("hyper", if level == LevelFilter::TRACE { LevelFilter::TRACE } else { LevelFilter::INFO })
        // hickory-server logs every DNS response at info.
        .with_target(
            "hickory_server",
            if level == LevelFilter::TRACE { LevelFilter::TRACE } else { LevelFilter::WARN },
        );
    // Every layer filters by the agent's level or a monitor's, and then by `quiet_deps`.
    let agent = || AgentLevel.and(quiet_deps.clone());
    let monitors = |json| MonitorLevel { json }.and(quiet_deps.clone());

    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (stderr_writer, stderr_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(STDERR_QUEUE)
        .thread_name("log-stderr")
        .finish(std::io::stderr());
    report_drops(stderr_writer.error_counter());
    let stderr = if config.log_json {
        fmt::layer().json().with_writer(stderr_writer).with_filter(agent()).boxed()
    } else {
        fmt::layer().with_writer(stderr_writer).with_ansi(ansi).with_target(false).with_filter(agent()).boxed()
    };
    let monitor_text = fmt::layer()
        .event_format(crate::hclog::Hclog { json: false })
        .with_writer(MonitorWriter { json: false })
        .with_filter(monitors(false))
        .boxed();
    let monitor_json = fmt::layer()
        .event_format(crate::hclog::Hclog { json: true })
        .with_writer(MonitorWriter { json: true })
        .with_filter(monitors(true))
        .boxed();

    let mut file_guard = None;
    let file_layer = match &config.log_file {
        Some(path) => {
            let (dir, prefix) = if path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir() {
                (path.clone(), "legate".to_string())
            } else {
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).map(|p| p.to_path_buf());
                let stem =
                    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "legate".into());
                (dir.unwrap_or_else(|| ".".into()), stem)
            };
            std::fs::create_dir_all(&dir).map_err(|e| format!("log_file: cannot create {}: {e}", dir.display()))?;
            let secs = config.log_rotate_duration.0.as_secs();
            let rotation = match secs {
                0 => tracing_appender::rolling::Rotation::NEVER,
                s if s < 3600 => tracing_appender::rolling::Rotation::MINUTELY,
                s if s < 86400 => tracing_appender::rolling::Rotation::HOURLY,
                _ => tracing_appender::rolling::Rotation::DAILY,
            };
            let mut builder = tracing_appender::rolling::Builder::new()
                .rotation(rotation)
                .filename_prefix(prefix)
                .filename_suffix("log");
            if config.log_rotate_max_files > 0 {
                builder = builder.max_log_files(config.log_rotate_max_files as usize);
            }
            let appender =
                builder.build(&dir).map_err(|e| format!("log_file: cannot open log file in {}: {e}", dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            file_guard = Some(guard);
            Some(if config.log_json {
                fmt::layer().json().with_writer(writer).with_filter(agent()).boxed()
            } else {
                fmt::layer().with_ansi(false).with_writer(writer).with_filter(agent()).boxed()
            })
        }
        None => None,
    };

    let syslog_layer = if config.enable_syslog {
        let facility = syslog_facility(&config.syslog_facility)?;
        // SAFETY: openlog with a 'static ident; LOG_PID adds the pid to each line.
        unsafe { libc::openlog(c"legate".as_ptr(), libc::LOG_PID, facility) };
        Some(fmt::layer().with_ansi(false).without_time().with_writer(SyslogMakeWriter).with_filter(agent()).boxed())
    } else {
        None
    };

    let layers: Vec<_> = [Some(stderr), file_layer, syslog_layer, Some(monitor_text), Some(monitor_json)]
        .into_iter()
        .flatten()
        .collect();
    tracing_subscriber::registry().with(layers).try_init().map_err(|e| e.to_string())?;
    monitor::on_levels_changed(tracing::callsite::rebuild_interest_cache);
    Ok(LogGuard { _stderr: stderr_guard, _file: file_guard })
}

/// Changes the agent's level (monitors keep theirs).
pub fn set_level(level: &str) -> Result<(), String> {
    LEVEL.store(level_number(parse_level(level)?), Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// Reports lines stderr dropped because its reader did not keep up, once it moves again.
fn report_drops(counter: tracing_appender::non_blocking::ErrorCounter) {
    let spawned = std::thread::Builder::new().name("log-drops".into()).spawn(move || {
        let mut reported = 0;
        loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            let dropped = counter.dropped_lines();
            if dropped > reported {
                legate_telemetry::counter("agent.log.dropped_lines", Vec::new(), (dropped - reported) as f64);
                tracing::warn!(
                    lines = dropped - reported,
                    "log lines were dropped: the log output is not read fast enough"
                );
                reported = dropped;
            }
        }
    });
    if let Err(e) = spawned {
        eprintln!("cannot start the log drop reporter: {e}");
    }
}

/// Writes each formatted line to the monitors that want it.
struct MonitorWriter {
    json: bool,
}

struct MonitorLine {
    json: bool,
    level: Level,
    buf: Vec<u8>,
}

impl Write for MonitorLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MonitorLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            monitor::hub().publish(&self.level, self.json, &self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for MonitorWriter {
    type Writer = MonitorLine;

    fn make_writer(&'a self) -> MonitorLine {
        MonitorLine { json: self.json, level: Level::INFO, buf: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> MonitorLine {
        MonitorLine { json: self.json, level: *meta.level(), buf: Vec::new() }
    }
}

fn syslog_facility(name: &str) -> Result<libc::c_int, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "LOCAL0" => libc::LOG_LOCAL0,
        "LOCAL1" => libc::LOG_LOCAL1,
        "LOCAL2" => libc::LOG_LOCAL2,
        "LOCAL3" => libc::LOG_LOCAL3,
        "LOCAL4" => libc::LOG_LOCAL4,
        "LOCAL5" => libc::LOG_LOCAL5,
        "LOCAL6" => libc::LOG_LOCAL6,
        "LOCAL7" => libc::LOG_LOCAL7,
        "USER" => libc::LOG_USER,
        "DAEMON" => libc::LOG_DAEMON,
        other => return Err(format!("syslog_facility: unknown facility {other:?}")),
    })
}

struct SyslogMakeWriter;

/// Buffers one formatted event and hands it to syslog(3) when dropped.
struct SyslogWriter {
    priority: libc::c_int,
    buf: Vec<u8>,
}

impl<'a> fmt::MakeWriter<'a> for SyslogMakeWriter {
    type Writer = SyslogWriter;
    fn make_writer(&'a self) -> SyslogWriter {
        SyslogWriter { priority: libc::LOG_INFO, buf: Vec::new() }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SyslogWriter {
        let priority = match *meta.level() {
            tracing::Level::ERROR => libc::LOG_ERR,
            tracing::Level::WARN => libc::LOG_WARNING,
            tracing::Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogWriter { priority, buf: Vec::new() }
    }
}

impl Write for SyslogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogWriter {
    fn drop(&mut self) {
        while self.buf.last().is_some_and(|b| *b == b'\n') {
            self.buf.pop();
        }
        self.buf.retain(|b| *b != 0);
        self.buf.push(0);
        // SAFETY: "%s" with a NUL-terminated buffer we own.
        unsafe { libc::syslog(self.priority, c"%s".as_ptr(), self.buf.as_ptr() as *const libc::c_char) };
    }
}
