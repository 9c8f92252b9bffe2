//! `/v1/agent/metrics` in Consul's JSON: the last complete interval (the current one while the
//! first is running), as go-metrics' `DisplayMetrics` shows its in-memory sink.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use crate::naming::Naming;
use crate::registry::{Kind, Labels, Metrics};
use crate::{Gauge, Telemetry};

fn labels_json(labels: &Labels) -> Json {
    labels.iter().map(|(k, v)| (k.to_string(), Json::String(v.to_string()))).collect::<serde_json::Map<_, _>>().into()
}

/// Go's `time.Time.String()` in UTC: `2017-08-08 02:55:10 +0000 UTC`.
fn go_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
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
    /// Consul's JSON for `/v1/agent/metrics`, with the gauges read now (`pulled`) beside the
    /// ones parts set as things happen.
    pub fn display(&self, t: &Telemetry, pulled: &[Gauge]) -> Json {
        let naming = Naming::new(t);
        let now = self.epoch();
        let shown = now.saturating_sub(1);
        let (wall, ran) = self.interval_span(shown);
        let secs = ran.as_secs_f64();
        self.with_tables(None, |tables| {
            let aggs = |kind: Kind| -> Vec<Json> {
                let table = if kind == Kind::Counter { &tables.counters } else { &tables.samples };
                let mut rows: Vec<(String, &Labels, Json)> = Vec::new();
                for (name, by) in table {
                    let full = naming.full(kind, name);
                    if !naming.allows(&full) {
                        continue;
                    }
                    for (labels, series) in by {
                        let Some(a) = series.interval(shown) else { continue };
                        let row = json!({
                            "Name": full,
                            "Count": a.count,
                            "Rate": if secs > 0.0 { a.sum / secs } else { 0.0 },
                            "Sum": a.sum,
                            "Min": a.min,
                            "Max": a.max,
                            "Mean": a.mean(),
                            "Stddev": a.stddev(),
                            "Labels": labels_json(labels),
                        });
                        rows.push((full.clone(), labels, row));
                    }
                }
                rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                rows.into_iter().map(|r| r.2).collect()
            };
            let mut gauges: Vec<(String, Json)> = pulled
                .iter()
                .map(|g| (naming.full(Kind::Gauge, &g.name), &g.labels, g.value))
                .chain(tables.gauges.iter().flat_map(|(name, by)| {
                    let full = naming.full(Kind::Gauge, name);
                    by.iter().map(move |(labels, s)| (full.clone(), labels, s.value))
                }))
                .filter(|(n, _, _)| naming.allows(n))
                .map(|(n, labels, v)| (n.clone(), json!({"Name": n, "Value": v, "Labels": labels_json(labels)})))
                .collect();
            gauges.sort_by(|a, b| a.0.cmp(&b.0));
            json!({
                "Timestamp": go_time(wall),
                "Gauges": gauges.into_iter().map(|g| g.1).collect::<Vec<_>>(),
                "Points": [],
                "Counters": aggs(Kind::Counter),
                "Samples": aggs(Kind::Sample),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_time_format() {
        let t = UNIX_EPOCH + Duration::from_secs(1_502_160_910);
        assert_eq!(go_time(t), "2017-08-08 02:55:10 +0000 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(go_time(leap), "2000-02-29 00:00:00 +0000 UTC");
    }
}
