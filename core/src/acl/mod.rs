//! ACLs in the agent: the rules language and authorizer live in `legate-acl`; this module
//! resolves a request's secret to an authorizer against the replicated tables (`resolve.rs`).

pub use legate_acl::*;

pub mod resolve;
