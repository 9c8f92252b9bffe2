//! The one place where DNS decides whether an answer may include a service or a node.
//!
//! Consul answers DNS with the agent's DNS token (`acl.tokens.dns`, else `acl.tokens.default`,
//! else anonymous) and needs `service:read` on the service and `node:read` on the node. Every
//! record the DNS server builds from the catalog (A/AAAA/SRV/TXT answers, NS, PTR) goes through
//! [`DnsAuthz::allows`], resolved once per query from the agent's ACL resolver
//! (`acl::resolve::Resolver::dns_authz`).

use legate_agent::AgentShared;

/// A catalog object a DNS answer would reveal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    Service(&'a str),
    Node(&'a str),
}

/// What the agent's DNS token may read, resolved once per query.
pub struct DnsAuthz(std::sync::Arc<legate_acl::Authz>);

impl DnsAuthz {
    pub fn of(agent: &AgentShared) -> DnsAuthz {
        DnsAuthz(agent.acl.dns_authz(agent))
    }

    /// Whether an answer may reveal `what` (service:read / node:read).
    pub fn allows(&self, what: Resource<'_>) -> bool {
        use legate_acl::{Access, Resource as R};
        match what {
            Resource::Service(name) => self.0.allowed(R::Service, name, Access::Read),
            Resource::Node(name) => self.0.allowed(R::Node, name, Access::Read),
        }
    }
}
