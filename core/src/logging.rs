//! Logging: tracing to stderr (text or JSON), optionally to `-log-file` (rotated) and to the
//! system log (`-syslog`). The level is reloadable.

use std::io::Write;
use std::sync::OnceLock;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, reload, Registry};

use crate::config::Config;

static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

/// Keeps the background log-file writer alive; drop it last.
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Consul's level names (`err`, `warn`, `trace`...).
pub fn parse_level(level: &str) -> Result<LevelFilter, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "err" | "error" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        other => return Err(format!("invalid log level {other:?}")),
    })
}

/// Installs the global subscriber. Call once, from the binary.
pub fn init(config: &Config) -> Result<LogGuard, String> {
    let level = parse_level(&config.log_level)?;
    let (level_layer, handle) = reload::Layer::new(level);
    let _ = LEVEL.set(handle);

    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = if config.log_json {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_target(false).boxed()
    };
    // The HTTP stack's per-connection debug lines drown the agent's own at -log-level=debug
    // (the -dev default); they show at trace.
    let quiet_deps = tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("hyper", if level == LevelFilter::TRACE { LevelFilter::TRACE } else { LevelFilter::INFO })
        .with_target("warp", if level == LevelFilter::TRACE { LevelFilter::TRACE } else { LevelFilter::INFO })
        // hickory-server logs every DNS response at info.
        .with_target(
            "hickory_server",
            if level == LevelFilter::TRACE { LevelFilter::TRACE } else { LevelFilter::WARN },
        );

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
                fmt::layer().json().with_writer(writer).boxed()
            } else {
                fmt::layer().with_ansi(false).with_writer(writer).boxed()
            })
        }
        None => None,
    };

    let syslog_layer = if config.enable_syslog {
        let facility = syslog_facility(&config.syslog_facility)?;
        // SAFETY: openlog with a 'static ident; LOG_PID adds the pid to each line.
        unsafe { libc::openlog(c"legate".as_ptr(), libc::LOG_PID, facility) };
        Some(fmt::layer().with_ansi(false).without_time().with_writer(SyslogMakeWriter).boxed())
    } else {
        None
    };

    tracing_subscriber::registry()
        .with(level_layer)
        .with(quiet_deps)
        .with(stderr)
        .with(file_layer)
        .with(syslog_layer)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LogGuard { _file: file_guard })
}

/// Changes the level of the installed subscriber (a no-op when none is installed, as in
/// in-process tests).
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = parse_level(level)?;
    match LEVEL.get() {
        Some(h) => h.modify(|f| *f = filter).map_err(|e| e.to_string()),
        None => Ok(()),
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
