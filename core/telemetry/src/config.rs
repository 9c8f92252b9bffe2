//! The agent's `telemetry` block, with Consul's keys and defaults.

use legate_types::GoDuration;
use serde::{Deserialize, Serialize};

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

impl Telemetry {
    /// Whether Consul 1.9's per-route `http.<METHOD>.<path>` timers are kept (off unless
    /// `disable_compat_1_9 = false`, as since Consul 1.12).
    pub fn compat_http_metrics(&self) -> bool {
        self.disable_compat_1_9 == Some(false)
    }

    /// Whether `/v1/agent/metrics?format=prometheus` answers (a positive retention time).
    pub fn prometheus_enabled(&self) -> bool {
        !self.prometheus_retention_time.0.is_zero()
    }
}
