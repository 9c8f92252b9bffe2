//! Versions: Legate's own, and the Consul version it presents to clients (clients such as
//! consul-template and Spring Cloud Consul parse `Config.Version` as a semver and gate features
//! on it).

/// Legate's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Consul release whose API Legate implements.
pub const CONSUL_VERSION: &str = "1.21.0";
/// Short git revision of the build, or `unknown` outside a git checkout.
pub const GIT_SHA: &str = env!("LEGATE_GIT_SHA");
/// Build date (UTC, RFC 3339), from the build script.
pub const BUILD_DATE: &str = env!("LEGATE_BUILD_DATE");
/// rustc that built this binary.
pub const RUSTC: &str = env!("LEGATE_RUSTC_VERSION");
/// Serf/memberlist protocol versions spoken (Consul: 2, understands 2..3).
pub const PROTOCOL: u8 = 2;
pub const PROTOCOL_MIN: u8 = 2;
pub const PROTOCOL_MAX: u8 = 3;

/// `Config.Revision` of `/v1/agent/self`: where Consul puts its git SHA, Legate puts its own
/// version and SHA so operators can tell which Legate build answers.
pub fn revision() -> String {
    format!("legate-{VERSION}-{GIT_SHA}")
}
