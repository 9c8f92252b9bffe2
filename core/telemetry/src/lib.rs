//! legate-telemetry: the metrics every part records and the ways they leave the agent.
//!
//! One process-wide registry (`registry.rs`), like go-metrics' global: any part records with
//! [`counter`], [`sample`], [`gauge`] or a [`Timer`] without threading a handle through every
//! layer; gauges that are cheaper to read than to keep (Raft state, the runtime) are read when
//! shown ([`Gauge`]). The registry shows them as Consul's in-memory sink (`display.rs`,
//! `/v1/agent/metrics`) and Prometheus sink (`prometheus.rs`) do, and pushes them to statsd,
//! statsite and DogStatsD (`sinks.rs`); `runtime.rs` reads the process's own gauges. `catalog.rs` declares every metric with its kind and help;
//! `naming.rs` applies `metrics_prefix`, the host name and `prefix_filter`; `config.rs` is the
//! `telemetry` block. `monitor.rs` is the log hub behind `/v1/agent/monitor`.

pub mod catalog;
mod config;
mod display;
pub mod monitor;
pub mod naming;
pub mod prometheus;
mod registry;
pub mod runtime;
pub mod sinks;

use std::time::Instant;

pub use config::Telemetry;
pub use registry::{global, Kind, Labels, Metrics, INTERVAL};

/// Adds `v` to a counter.
pub fn counter(name: &str, labels: Labels, v: f64) {
    record(Kind::Counter, name, labels, v);
}

/// Adds one to a counter without labels.
pub fn incr(name: &str) {
    record(Kind::Counter, name, Vec::new(), 1.0);
}

/// Records one observation (a duration in ms, a size) of a sample.
pub fn sample(name: &str, labels: Labels, v: f64) {
    record(Kind::Sample, name, labels, v);
}

/// Sets a gauge that parts push as things change (the gossip health score, active sessions).
pub fn gauge(name: &str, labels: Labels, v: f64) {
    record(Kind::Gauge, name, labels, v);
}

fn record(kind: Kind, name: &str, labels: Labels, v: f64) {
    sinks::emit(kind, name, &labels, v);
    global().record(kind, name, labels, v);
}

/// Measures from creation to drop, recorded as a sample in milliseconds.
pub struct Timer {
    name: &'static str,
    labels: Option<Labels>,
    start: Instant,
}

impl Timer {
    pub fn start(name: &'static str, labels: Labels) -> Timer {
        Timer { name, labels: Some(labels), start: Instant::now() }
    }

    /// Adds a label known only once the timed work has run (the route a request took).
    pub fn label(&mut self, key: &'static str, value: impl Into<std::borrow::Cow<'static, str>>) {
        self.labels.get_or_insert_with(Vec::new).push((key, value.into()));
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// Drops the measurement (the work did not happen after all).
    pub fn cancel(mut self) {
        self.labels = None;
        self.name = "";
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let ms = self.elapsed_ms();
        sample(self.name, self.labels.take().unwrap_or_default(), ms);
    }
}

/// Records a duration in milliseconds since `start`.
pub fn measure_since(name: &str, labels: Labels, start: Instant) {
    sample(name, labels, start.elapsed().as_secs_f64() * 1000.0);
}

/// A gauge read when shown (Raft and runtime state).
pub struct Gauge {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Gauge {
    pub fn new(name: &str, value: f64) -> Gauge {
        Gauge { name: name.to_string(), labels: Vec::new(), value }
    }
}
