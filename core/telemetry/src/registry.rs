//! The process-wide registry: every counter, sample and pushed gauge by name and labels, kept
//! as Consul's in-memory sink keeps them (per 10 s interval) and as its Prometheus sink does
//! (totals since start, and a quantile sketch of the last interval or two).
//!
//! Intervals turn lazily: a series remembers the interval its `current` aggregate belongs to
//! and moves it to `previous` when the next observation comes in a later one, so recording
//! never walks the whole registry.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sketches_ddsketch::{Config as SketchConfig, DDSketch};

/// Length of one aggregation interval (go-metrics' inmem sink in Consul: 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// A series' labels; a value known at compile time (a route, a method) is not copied per record.
pub type Labels = Vec<(&'static str, std::borrow::Cow<'static, str>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Sample,
    Gauge,
}

/// Running statistics of one counter or sample over some span.
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

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Sample standard deviation, as go-metrics' AggregateSample.
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let var = (self.sum_sq - self.sum * self.sum / n) / (n - 1.0);
        var.max(0.0).sqrt()
    }
}

/// One name with one set of labels.
pub struct Series {
    /// The interval `current` belongs to.
    epoch: u64,
    current: Agg,
    /// The interval before `epoch` (empty when nothing was recorded in it).
    previous: Agg,
    /// Since the series was created (Prometheus counters and summaries are cumulative).
    pub total: Agg,
    /// Samples only: the observations of `epoch` and of the interval before, for quantiles.
    sketches: Option<Box<[DDSketch; 2]>>,
    /// Gauges only: the last value set.
    pub value: f64,
    pub updated: Instant,
}

fn sketch() -> DDSketch {
    // 1 % relative accuracy; at most 512 bins (a few KiB) whatever the spread.
    DDSketch::new(SketchConfig::new(0.01, 512, 1.0e-9))
}

impl Series {
    fn new(kind: Kind, epoch: u64) -> Series {
        Series {
            epoch,
            current: Agg::default(),
            previous: Agg::default(),
            total: Agg::default(),
            sketches: (kind == Kind::Sample).then(|| Box::new([sketch(), sketch()])),
            value: f64::NAN,
            updated: Instant::now(),
        }
    }

    fn roll(&mut self, epoch: u64) {
        if epoch == self.epoch {
            return;
        }
        let adjacent = epoch == self.epoch + 1;
        self.previous = if adjacent { self.current } else { Agg::default() };
        self.current = Agg::default();
        if let Some(s) = self.sketches.as_deref_mut() {
            s[1] = if adjacent { std::mem::replace(&mut s[0], sketch()) } else { sketch() };
            if !adjacent {
                s[0] = sketch();
            }
        }
        self.epoch = epoch;
    }

    fn record(&mut self, epoch: u64, v: f64) {
        self.roll(epoch);
        self.current.add(v);
        self.total.add(v);
        if let Some(s) = self.sketches.as_deref_mut() {
            s[0].add(v);
        }
        self.updated = Instant::now();
    }

    /// The aggregate of interval `epoch`, if this series saw anything in it.
    pub fn interval(&self, epoch: u64) -> Option<&Agg> {
        let agg = if self.epoch == epoch {
            &self.current
        } else if self.epoch == epoch + 1 {
            &self.previous
        } else {
            return None;
        };
        (agg.count > 0).then_some(agg)
    }

    /// Quantiles `qs` over the observations of interval `now` and the one before (about the
    /// last 10 to 20 s, like a Prometheus summary's max age); NaN without any.
    pub fn quantiles(&self, now: u64, qs: &[f64]) -> Vec<f64> {
        let nan = || vec![f64::NAN; qs.len()];
        let Some(s) = self.sketches.as_deref() else { return nan() };
        let window = if self.epoch == now {
            let mut w = s[0].clone();
            let _ = w.merge(&s[1]);
            w
        } else if self.epoch + 1 == now {
            s[0].clone()
        } else {
            return nan();
        };
        if window.count() == 0 {
            return nan();
        }
        qs.iter().map(|q| window.quantile(*q).ok().flatten().unwrap_or(f64::NAN)).collect()
    }
}

/// Maps keyed by metric names and labels, hashed with rustc-hash's Fx: every recording hashes
/// them under the registry's lock (SipHash showed in the profile of a GET load).
type Map<K, V> = rustc_hash::FxHashMap<K, V>;
type ByLabels = Map<Labels, Series>;

#[derive(Default)]
pub struct Tables {
    pub counters: Map<String, ByLabels>,
    pub samples: Map<String, ByLabels>,
    pub gauges: Map<String, ByLabels>,
}

impl Tables {
    fn table(&mut self, kind: Kind) -> &mut Map<String, ByLabels> {
        match kind {
            Kind::Counter => &mut self.counters,
            Kind::Sample => &mut self.samples,
            Kind::Gauge => &mut self.gauges,
        }
    }

    /// Drops series not updated for `retention` (`telemetry.prometheus_retention_time`).
    fn expire(&mut self, retention: Duration) {
        for t in [&mut self.counters, &mut self.samples, &mut self.gauges] {
            t.retain(|_, by| {
                by.retain(|_, s| s.updated.elapsed() <= retention);
                !by.is_empty()
            });
        }
    }
}

pub struct Metrics {
    started: Instant,
    started_wall: SystemTime,
    tables: Mutex<Tables>,
}

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        started: Instant::now(),
        started_wall: SystemTime::now(),
        tables: Mutex::new(Tables::default()),
    })
}

impl Metrics {
    /// The interval now running (0 from the start, one more every 10 s).
    pub fn epoch(&self) -> u64 {
        (self.started.elapsed().as_millis() / INTERVAL.as_millis()) as u64
    }

    /// When interval `epoch` began, and how long it has run (10 s once it is over).
    pub fn interval_span(&self, epoch: u64) -> (SystemTime, Duration) {
        let begin = INTERVAL * epoch as u32;
        let ran = self.started.elapsed().saturating_sub(begin).min(INTERVAL);
        (self.started_wall + begin, ran)
    }

    pub(crate) fn record(&self, kind: Kind, name: &str, labels: Labels, v: f64) {
        let epoch = self.epoch();
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        let table = t.table(kind);
        let by = match table.get_mut(name) {
            Some(by) => by,
            None => table.entry(name.to_string()).or_default(),
        };
        let series = match by.get_mut(&labels) {
            Some(s) => s,
            None => by.entry(labels).or_insert_with(|| Series::new(kind, epoch)),
        };
        if kind == Kind::Gauge {
            series.roll(epoch);
            series.value = v;
            series.updated = Instant::now();
        } else {
            series.record(epoch, v);
        }
    }

    /// Runs `f` over the tables, after dropping what is older than `retention` (if set).
    pub fn with_tables<R>(&self, retention: Option<Duration>, f: impl FnOnce(&Tables) -> R) -> R {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = retention {
            t.expire(r);
        }
        f(&t)
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
    fn intervals_roll_lazily() {
        let mut s = Series::new(Kind::Sample, 0);
        s.record(0, 1.0);
        s.record(0, 3.0);
        s.record(1, 10.0);
        assert_eq!(s.interval(0).map(|a| (a.count, a.sum)), Some((2, 4.0)));
        assert_eq!(s.interval(1).map(|a| a.count), Some(1));
        assert_eq!(s.total.count, 3);
        // Two intervals later, with nothing recorded in between: interval 2 is empty.
        s.record(3, 5.0);
        assert!(s.interval(2).is_none());
        assert_eq!(s.interval(3).map(|a| a.sum), Some(5.0));
        assert_eq!(s.total.sum, 19.0);
    }

    #[test]
    fn quantiles_cover_the_last_two_intervals() {
        let mut s = Series::new(Kind::Sample, 0);
        for v in 1..=100 {
            s.record(0, v as f64);
        }
        let q = s.quantiles(0, &[0.5, 0.99]);
        assert!((q[0] - 50.0).abs() <= 1.0, "{q:?}");
        assert!((q[1] - 99.0).abs() <= 1.5, "{q:?}");
        // Next interval: still seen; two later: gone.
        assert!(!s.quantiles(1, &[0.5])[0].is_nan());
        assert!(s.quantiles(2, &[0.5])[0].is_nan());
        s.record(2, 1000.0);
        assert!((s.quantiles(2, &[0.5])[0] - 1000.0).abs() < 15.0);
    }
}
