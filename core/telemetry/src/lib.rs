//! legate-telemetry: metrics as Consul's in-memory sink keeps them: counters and samples aggregated per 10 s
//! interval, gauges set when read, all shown by `/v1/agent/metrics` (JSON, or Prometheus text
//! when `telemetry.prometheus_retention_time` > 0). Names are recorded without the prefix
//! (`raft.apply`); `telemetry.metrics_prefix` and `prefix_filter` apply when displayed.
//!
//! One process-wide registry, like go-metrics' global: any part records with `counter`,
//! `sample` or `Timer`, without threading a handle through every layer.

pub mod monitor;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value as Json};

use legate_types::GoDuration;
use serde::{Deserialize, Serialize};

/// Length of one aggregation interval (go-metrics' inmem sink in Consul: 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);

pub type Labels = Vec<(&'static str, String)>;
type Key = (String, Labels);

/// Running statistics of one counter or sample.
#[derive(Clone, Copy, Debug)]
pub struct Agg {
    pub count: u64,
    pub sum: f64,
    sum_sq: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Agg {
    fn default() -> Self {
        Agg { count: 0, sum: 0.0, sum_sq: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY }
    }
}

impl Agg {
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Sample standard deviation, as go-metrics' AggregateSample.
    fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let var = (self.sum_sq - self.sum * self.sum / n) / (n - 1.0);
        var.max(0.0).sqrt()
    }
}

struct Interval {
    wall: SystemTime,
    started: Instant,
    counters: BTreeMap<Key, Agg>,
    samples: BTreeMap<Key, Agg>,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            wall: SystemTime::now(),
            started: Instant::now(),
            counters: BTreeMap::new(),
            samples: BTreeMap::new(),
        }
    }
}

struct Inner {
    current: Interval,
    previous: Option<Interval>,
    /// Since start, for Prometheus (which wants cumulative counters and summaries).
    total_counters: BTreeMap<Key, Agg>,
    total_samples: BTreeMap<Key, Agg>,
}

impl Inner {
    fn rotate(&mut self) {
        if self.current.started.elapsed() >= INTERVAL {
            let done = std::mem::replace(&mut self.current, Interval::new());
            self.previous = Some(done);
        }
    }
}

pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        inner: Mutex::new(Inner {
            current: Interval::new(),
            previous: None,
            total_counters: BTreeMap::new(),
            total_samples: BTreeMap::new(),
        }),
    })
}

/// Adds `v` to a counter.
pub fn counter(name: &str, labels: Labels, v: f64) {
    global().record(name, labels, v, true);
}

/// Records one observation (a duration in ms, a size) of a sample.
pub fn sample(name: &str, labels: Labels, v: f64) {
    global().record(name, labels, v, false);
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
    pub fn label(&mut self, key: &'static str, value: String) {
        self.labels.get_or_insert_with(Vec::new).push((key, value));
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        sample(self.name, self.labels.take().unwrap_or_default(), ms);
    }
}

/// A gauge computed at read time (Raft and runtime state).
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

/// `telemetry.prefix_filter` with `filter_default`: the longest matching rule decides.
pub struct Filter<'a> {
    rules: Vec<(bool, &'a str)>,
    default: bool,
}

impl<'a> Filter<'a> {
    pub fn new(t: &'a Telemetry) -> Filter<'a> {
        let rules = t
            .prefix_filter
            .iter()
            .filter_map(|r| match r.split_at_checked(1) {
                Some(("+", p)) => Some((true, p)),
                Some(("-", p)) => Some((false, p)),
                _ => None,
            })
            .collect();
        Filter { rules, default: t.filter_default }
    }

    pub fn allows(&self, full_name: &str) -> bool {
        self.rules
            .iter()
            .filter(|(_, p)| full_name.starts_with(p))
            .max_by_key(|(_, p)| p.len())
            .map_or(self.default, |(allow, _)| *allow)
    }
}

fn full_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn labels_json(labels: &Labels) -> Json {
    labels.iter().map(|(k, v)| (k.to_string(), Json::String(v.clone()))).collect::<serde_json::Map<_, _>>().into()
}

/// Go's `time.Time.String()` in UTC: `2017-08-08 02:55:10 +0000 UTC`.
fn go_time(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000 UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl Metrics {
    fn record(&self, name: &str, labels: Labels, v: f64, is_counter: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.rotate();
        let key = (name.to_string(), labels);
        let inner = &mut *g;
        let (interval, total) = if is_counter {
            (&mut inner.current.counters, &mut inner.total_counters)
        } else {
            (&mut inner.current.samples, &mut inner.total_samples)
        };
        interval.entry(key.clone()).or_default().add(v);
        total.entry(key).or_default().add(v);
    }

    /// Consul's JSON: the last complete interval (the current one if none has completed yet),
    /// as go-metrics' `DisplayMetrics`.
    pub fn display(&self, t: &Telemetry, gauges: &[Gauge]) -> Json {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.rotate();
        let interval = g.previous.as_ref().unwrap_or(&g.current);
        let secs = if g.previous.is_some() { INTERVAL.as_secs_f64() } else { interval.started.elapsed().as_secs_f64() };
        let filter = Filter::new(t);
        let prefix = t.metrics_prefix.as_str();
        let aggs = |m: &BTreeMap<Key, Agg>| -> Vec<Json> {
            m.iter()
                .map(|((name, labels), a)| (full_name(prefix, name), labels, a))
                .filter(|(n, _, _)| filter.allows(n))
                .map(|(n, labels, a)| {
                    json!({
                        "Name": n,
                        "Count": a.count,
                        "Rate": if secs > 0.0 { a.sum / secs } else { 0.0 },
                        "Sum": a.sum,
                        "Min": a.min,
                        "Max": a.max,
                        "Mean": a.mean(),
                        "Stddev": a.stddev(),
                        "Labels": labels_json(labels),
                    })
                })
                .collect()
        };
        let gauges: Vec<Json> = gauges
            .iter()
            .map(|gg| (full_name(prefix, &gg.name), gg))
            .filter(|(n, _)| filter.allows(n))
            .map(|(n, gg)| json!({"Name": n, "Value": gg.value, "Labels": labels_json(&gg.labels)}))
            .collect();
        json!({
            "Timestamp": go_time(interval.wall),
            "Gauges": gauges,
            "Points": [],
            "Counters": aggs(&interval.counters),
            "Samples": aggs(&interval.samples),
        })
    }

    /// Prometheus text exposition (0.0.4): gauges, counters as `_total`-less counters the way
    /// Consul's prometheus sink names them, samples as summaries (sum and count).
    pub fn prometheus(&self, t: &Telemetry, gauges: &[Gauge]) -> String {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let filter = Filter::new(t);
        let prefix = t.metrics_prefix.as_str();
        let mut out = String::new();
        let mut typed = std::collections::HashSet::new();
        let mut line = |name: &str, kind: &str, suffix: &str, labels: &Labels, v: f64| {
            let prom = prom_name(name);
            if typed.insert(prom.clone()) {
                out.push_str(&format!("# HELP {prom} {name}\n# TYPE {prom} {kind}\n"));
            }
            out.push_str(&prom);
            out.push_str(suffix);
            if !labels.is_empty() {
                let ls: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{}=\"{}\"", prom_name(k), prom_escape(v))).collect();
                out.push_str(&format!("{{{}}}", ls.join(",")));
            }
            out.push_str(&format!(" {}\n", prom_value(v)));
        };
        for gg in gauges {
            let n = full_name(prefix, &gg.name);
            if filter.allows(&n) {
                line(&n, "gauge", "", &gg.labels, gg.value);
            }
        }
        for ((name, labels), a) in &g.total_counters {
            let n = full_name(prefix, name);
            if filter.allows(&n) {
                line(&n, "counter", "", labels, a.sum);
            }
        }
        for ((name, labels), a) in &g.total_samples {
            let n = full_name(prefix, name);
            if filter.allows(&n) {
                line(&n, "summary", "_sum", labels, a.sum);
                line(&n, "summary", "_count", labels, a.count as f64);
            }
        }
        out
    }
}

fn prom_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect()
}

fn prom_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prom_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// The agent's `telemetry` block (Consul's keys).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Telemetry {
    pub metrics_prefix: String,
    pub disable_hostname: bool,
    pub filter_default: bool,
    pub prefix_filter: Vec<String>,
    pub prometheus_retention_time: GoDuration,
    pub statsd_address: Option<String>,
    pub statsite_address: Option<String>,
    pub dogstatsd_addr: Option<String>,
    pub dogstatsd_tags: Vec<String>,
    pub disable_compat_1_9: Option<bool>,
    pub retry_failed_connection: Option<bool>,
    pub enable_host_metrics: Option<bool>,
    pub circonus_api_token: Option<String>,
    pub circonus_api_app: Option<String>,
    pub circonus_api_url: Option<String>,
    pub circonus_submission_interval: Option<String>,
    pub circonus_submission_url: Option<String>,
    pub circonus_check_id: Option<String>,
    pub circonus_check_force_metric_activation: Option<String>,
    pub circonus_check_instance_id: Option<String>,
    pub circonus_check_search_tag: Option<String>,
    pub circonus_check_display_name: Option<String>,
    pub circonus_check_tags: Option<String>,
    pub circonus_broker_id: Option<String>,
    pub circonus_broker_select_tag: Option<String>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            metrics_prefix: "consul".into(),
            disable_hostname: false,
            filter_default: true,
            prefix_filter: Vec::new(),
            prometheus_retention_time: GoDuration::default(),
            statsd_address: None,
            statsite_address: None,
            dogstatsd_addr: None,
            dogstatsd_tags: Vec::new(),
            disable_compat_1_9: None,
            retry_failed_connection: None,
            enable_host_metrics: None,
            circonus_api_token: None,
            circonus_api_app: None,
            circonus_api_url: None,
            circonus_submission_interval: None,
            circonus_submission_url: None,
            circonus_check_id: None,
            circonus_check_force_metric_activation: None,
            circonus_check_instance_id: None,
            circonus_check_search_tag: None,
            circonus_check_display_name: None,
            circonus_check_tags: None,
            circonus_broker_id: None,
            circonus_broker_select_tag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_and_stddev() {
        let mut a = Agg::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            a.add(v);
        }
        assert_eq!((a.count, a.sum, a.min, a.max, a.mean()), (8, 40.0, 2.0, 9.0, 5.0));
        assert!((a.stddev() - 2.138).abs() < 0.001, "{}", a.stddev());
    }

    #[test]
    fn prefix_filter_longest_rule_wins() {
        let t = Telemetry {
            prefix_filter: vec!["-consul.raft".into(), "+consul.raft.apply".into()],
            filter_default: true,
            ..Telemetry::default()
        };
        let f = Filter::new(&t);
        assert!(f.allows("consul.kvs.apply"));
        assert!(!f.allows("consul.raft.log.appends"));
        assert!(f.allows("consul.raft.apply"));
        let t = Telemetry { filter_default: false, ..Telemetry::default() };
        assert!(!Filter::new(&t).allows("consul.kvs.apply"));
    }

    #[test]
    fn go_time_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_502_160_910);
        assert_eq!(go_time(t), "2017-08-08 02:55:10 +0000 UTC");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(go_time(leap), "2000-02-29 00:00:00 +0000 UTC");
    }

    #[test]
    fn prometheus_names_and_labels() {
        assert_eq!(prom_name("consul.api.http"), "consul_api_http");
        assert_eq!(prom_escape("a\"b"), "a\\\"b");
    }
}
