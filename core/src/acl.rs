//! ACLs: the rules language and authorizer (`legate-acl`) and, as `resolve`, the agent's
//! resolution of a request's secret to an authorizer (`legate_agent::acl`).

pub use legate_acl::*;
pub use legate_agent::acl as resolve;
