//! `/v1/operator/*` shapes.

/// The settable fields of `/v1/operator/autopilot/configuration`, in Consul's order (what
/// `operator autopilot get-config` prints).
pub const AUTOPILOT_FIELDS: &[&str] = &[
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
];
