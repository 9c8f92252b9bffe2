//! legate-types: the small vocabulary every part of Legate shares, with no dependency on any of
//! them: versions, Go-syntax durations, a check's status, named long-lived tasks.
//!
//! # Layout
//!
//! ```text
//! version.rs   Legate's version, the Consul version it presents, build stamp (build.rs)
//! duration.rs  Go's time.Duration text form (10s, 1.5s, 72h), as Consul writes it
//! check.rs     CheckStatus, a probe's Outcome, output truncation
//! fs.rs        files that hold secrets: 0600, atomic; private directories
//! event.rs     an event ID's index (Consul's uuidToUint64)
//! net.rs       binding listeners (retrying an address a dying process still holds)
//! proc_status.rs  a process's counters from /proc/<pid>/status (VmRSS, RssFile, Threads)
//! tasks.rs     long-lived tasks spawned by name, so a stuck shutdown can name them
//! ```

pub mod check;
pub mod duration;
pub mod event;
pub mod fs;
pub mod net;
pub mod per_client;
pub mod proc_status;
pub mod tasks;
pub mod version;

pub use duration::GoDuration;
