//! `/v1/agent/metrics?format=prometheus`: the text exposition format (0.0.4) as Consul's
//! Prometheus sink writes it: counters as counters (cumulative, no `_total`), samples as
//! summaries with the 0.5, 0.9 and 0.99 quantiles of the last 10-20 s plus `_sum` and `_count`,
//! gauges as gauges; `# HELP` and `# TYPE` for every metric Legate defines, observed or not;
//! series not updated within `prometheus_retention_time` dropped.

use std::collections::BTreeMap;

use crate::catalog::{self, DEFINITIONS};
use crate::naming::Naming;
use crate::registry::{Kind, Labels, Metrics};
use crate::{Gauge, Telemetry};

pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

pub fn prom_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect()
}

fn prom_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn label_set(labels: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> =
        labels.iter().map(|(k, v)| format!("{}=\"{}\"", prom_name(k), prom_escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// One metric family: its type, help and sample lines.
struct Family {
    kind: Kind,
    help: String,
    lines: Vec<String>,
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Sample => "summary",
        Kind::Gauge => "gauge",
    }
}

impl Metrics {
    pub fn prometheus(&self, t: &Telemetry, pulled: &[Gauge]) -> String {
        let naming = Naming::new(t);
        let now = self.epoch();
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut family = |name: &str, kind: Kind, full: &str| -> Option<String> {
            if !naming.allows(full) {
                return None;
            }
            let prom = prom_name(full);
            families.entry(prom.clone()).or_insert_with(|| Family {
                kind,
                help: catalog::find(name).map_or_else(|| full.to_string(), |d| d.help.to_string()),
                lines: Vec::new(),
            });
            Some(prom)
        };
        let mut rows: Vec<(String, String)> = Vec::new();
        for g in pulled {
            if let Some(prom) = family(&g.name, Kind::Gauge, &naming.full(Kind::Gauge, &g.name)) {
                rows.push((prom.clone(), format!("{prom}{} {}", label_set(&g.labels, None), prom_value(g.value))));
            }
        }
        let retention = Some(t.prometheus_retention_time.0).filter(|r| !r.is_zero());
        self.with_tables(retention, |tables| {
            for (kind, table) in
                [(Kind::Counter, &tables.counters), (Kind::Sample, &tables.samples), (Kind::Gauge, &tables.gauges)]
            {
                for (name, by) in table {
                    let Some(prom) = family(name, kind, &naming.full(kind, name)) else { continue };
                    let mut by: Vec<_> = by.iter().collect();
                    by.sort_by(|a, b| a.0.cmp(b.0));
                    for (labels, s) in by {
                        match kind {
                            Kind::Counter => rows.push((
                                prom.clone(),
                                format!("{prom}{} {}", label_set(labels, None), prom_value(s.total.sum)),
                            )),
                            Kind::Gauge => rows.push((
                                prom.clone(),
                                format!("{prom}{} {}", label_set(labels, None), prom_value(s.value)),
                            )),
                            Kind::Sample => {
                                for (q, v) in QUANTILES.iter().zip(s.quantiles(now, &QUANTILES)) {
                                    let ls = label_set(labels, Some(("quantile", q.to_string())));
                                    rows.push((prom.clone(), format!("{prom}{ls} {}", prom_value(v))));
                                }
                                let ls = label_set(labels, None);
                                rows.push((prom.clone(), format!("{prom}_sum{ls} {}", prom_value(s.total.sum))));
                                rows.push((prom.clone(), format!("{prom}_count{ls} {}", s.total.count)));
                            }
                        }
                    }
                }
            }
        });
        // Declared but not observed yet: shown as Consul's sink shows its definitions.
        for d in DEFINITIONS {
            let Some(prom) = family(d.name, d.kind, &naming.full(d.kind, d.name)) else { continue };
            if rows.iter().any(|(p, _)| *p == prom) {
                continue;
            }
            match d.kind {
                Kind::Counter => rows.push((prom.clone(), format!("{prom} 0"))),
                Kind::Gauge => rows.push((prom.clone(), format!("{prom} NaN"))),
                Kind::Sample => {
                    for q in QUANTILES {
                        rows.push((prom.clone(), format!("{prom}{{quantile=\"{q}\"}} NaN")));
                    }
                    rows.push((prom.clone(), format!("{prom}_sum 0")));
                    rows.push((prom.clone(), format!("{prom}_count 0")));
                }
            }
        }
        for (prom, line) in rows {
            if let Some(f) = families.get_mut(&prom) {
                f.lines.push(line);
            }
        }
        let mut out = String::new();
        for (prom, f) in families {
            if f.lines.is_empty() {
                continue;
            }
            out.push_str(&format!("# HELP {prom} {}\n# TYPE {prom} {}\n", f.help, type_name(f.kind)));
            for l in f.lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_values() {
        assert_eq!(prom_name("consul.api.http"), "consul_api_http");
        assert_eq!(prom_escape("a\"b"), "a\\\"b");
        assert_eq!(prom_value(f64::NAN), "NaN");
        assert_eq!(
            label_set(&vec![("peer_id", "a".into())], Some(("quantile", "0.5".into()))),
            "{peer_id=\"a\",quantile=\"0.5\"}"
        );
    }
}
