//! Metrics pushed to a collector as Consul's go-metrics sinks push them: `statsd_address`
//! (statsd over UDP), `statsite_address` (the same lines over TCP) and `dogstatsd_addr`
//! (DogStatsD over UDP, labels and `dogstatsd_tags` as tags).
//!
//! Counters and samples go out as they are recorded, gauges on every [`emit_gauges`] (the agent
//! calls it each interval). The transport is cadence's: a bounded queue drained by its own
//! thread, so recording never waits on the network; a full queue drops the line and counts it.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cadence::{BufferedUdpMetricSink, MetricSink, QueuingMetricSink};

use crate::naming::Naming;
use crate::registry::{Kind, Labels};
use crate::{Gauge, Telemetry};

/// Lines waiting for the network before new ones are dropped.
const QUEUE: usize = 16 * 1024;
/// go-metrics' statsd packet size: fits a typical MTU.
const PACKET: usize = 1432;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("telemetry.{key}: cannot use {addr:?}: {source}")]
    Address { key: &'static str, addr: String, source: io::Error },
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    /// statsd and statsite: label values join the name.
    Statsd,
    /// DogStatsD: labels become tags.
    Dog,
}

struct Out {
    flavor: Flavor,
    sink: QueuingMetricSink,
}

struct Sinks {
    telemetry: Telemetry,
    outs: Vec<Out>,
    dropped: AtomicU64,
}

static SINKS: OnceLock<Sinks> = OnceLock::new();

/// Statsite's transport: lines over one TCP connection, opened again after an error.
struct TcpSink {
    addr: String,
    conn: Mutex<Option<TcpStream>>,
}

impl MetricSink for TcpSink {
    fn emit(&self, metric: &str) -> io::Result<usize> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if conn.is_none() {
            let addr = self.addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::other("no address"))?;
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            *conn = Some(s);
        }
        let line = format!("{metric}\n");
        let result = conn.as_mut().map_or(Ok(()), |c| c.write_all(line.as_bytes()));
        if result.is_err() {
            *conn = None;
        }
        result.map(|()| line.len())
    }
}

fn udp(key: &'static str, addr: &str) -> Result<QueuingMetricSink, SinkError> {
    let bad = |source| SinkError::Address { key, addr: addr.to_string(), source };
    let socket = UdpSocket::bind(if addr.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" }).map_err(bad)?;
    socket.set_nonblocking(true).map_err(bad)?;
    let sink =
        BufferedUdpMetricSink::with_capacity(addr, socket, PACKET).map_err(|e| bad(io::Error::other(e.to_string())))?;
    Ok(QueuingMetricSink::with_capacity(sink, QUEUE))
}

/// Starts the sinks `t` names (once per process: later calls keep the first set). Returns
/// whether any is configured.
pub fn install(t: &Telemetry) -> Result<bool, SinkError> {
    let mut outs = Vec::new();
    if let Some(a) = t.statsd_address.as_deref().filter(|a| !a.is_empty()) {
        outs.push(Out { flavor: Flavor::Statsd, sink: udp("statsd_address", a)? });
    }
    if let Some(a) = t.statsite_address.as_deref().filter(|a| !a.is_empty()) {
        a.to_socket_addrs().map_err(|source| SinkError::Address { key: "statsite_address", addr: a.into(), source })?;
        let tcp = TcpSink { addr: a.to_string(), conn: Mutex::new(None) };
        outs.push(Out { flavor: Flavor::Statsd, sink: QueuingMetricSink::with_capacity(tcp, QUEUE) });
    }
    if let Some(a) = t.dogstatsd_addr.as_deref().filter(|a| !a.is_empty()) {
        outs.push(Out { flavor: Flavor::Dog, sink: udp("dogstatsd_addr", a)? });
    }
    if outs.is_empty() {
        return Ok(false);
    }
    let _ = SINKS.set(Sinks { telemetry: t.clone(), outs, dropped: AtomicU64::new(0) });
    Ok(true)
}

/// Lines the sinks dropped because their queue was full.
pub fn dropped() -> u64 {
    SINKS.get().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// Sends what the buffers hold (called on a short period, so a quiet agent's lines still go).
pub fn flush() {
    if let Some(s) = SINKS.get() {
        for o in &s.outs {
            let _ = o.sink.flush();
        }
    }
}

/// Sends the gauges read now.
pub fn emit_gauges(gauges: &[Gauge]) {
    for g in gauges {
        emit(Kind::Gauge, &g.name, &g.labels, g.value);
    }
}

/// Go's `%f`: six decimals.
fn line(flavor: Flavor, name: &str, kind: Kind, labels: &Labels, v: f64, global_tags: &[String]) -> String {
    let suffix = match kind {
        Kind::Counter => "c",
        Kind::Gauge => "g",
        Kind::Sample => "ms",
    };
    let clean = |s: &str| s.replace([':', ' ', '|'], "_");
    match flavor {
        Flavor::Statsd => {
            let mut key = clean(name);
            for (_, value) in labels {
                key.push('.');
                key.push_str(&clean(value));
            }
            format!("{key}:{v:.6}|{suffix}")
        }
        Flavor::Dog => {
            let tags: Vec<String> = labels
                .iter()
                .map(|(k, value)| format!("{k}:{}", value.replace([',', '|', '#'], "_")))
                .chain(global_tags.iter().cloned())
                .collect();
            let mut out = format!("{}:{v:.6}|{suffix}", clean(name));
            if !tags.is_empty() {
                out.push_str("|#");
                out.push_str(&tags.join(","));
            }
            out
        }
    }
}

/// Sends one observation to every sink (a no-op without sinks).
pub(crate) fn emit(kind: Kind, name: &str, labels: &Labels, v: f64) {
    let Some(s) = SINKS.get() else { return };
    let naming = Naming::new(&s.telemetry);
    let full = naming.full(kind, name);
    if !naming.allows(&full) {
        return;
    }
    for o in &s.outs {
        if o.sink.emit(&line(o.flavor, &full, kind, labels, v, &s.telemetry.dogstatsd_tags)).is_err() {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statsd_and_dogstatsd_lines() {
        let labels: Labels = vec![("method", "GET".into()), ("path", "v1_kv_".into())];
        assert_eq!(
            line(Flavor::Statsd, "consul.api.http", Kind::Sample, &labels, 1.5, &[]),
            "consul.api.http.GET.v1_kv_:1.500000|ms"
        );
        assert_eq!(
            line(Flavor::Statsd, "consul.raft.apply", Kind::Counter, &vec![], 1.0, &[]),
            "consul.raft.apply:1.000000|c"
        );
        assert_eq!(
            line(Flavor::Dog, "consul.api.http", Kind::Sample, &labels, 2.0, &["env:prod".into()]),
            "consul.api.http:2.000000|ms|#method:GET,path:v1_kv_,env:prod"
        );
        assert_eq!(line(Flavor::Dog, "consul.x", Kind::Gauge, &vec![], 3.0, &[]), "consul.x:3.000000|g");
    }
}
