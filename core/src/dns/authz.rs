//! The one place where DNS decides whether an answer may include a service or a node.
//!
//! Consul answers DNS with the agent's DNS token (`acl.tokens.dns`, else `acl.tokens.default`,
//! else anonymous) and needs `service:read` on the service and `node:read` on the node. Every
//! record the DNS server builds from the catalog (A/AAAA/SRV/TXT answers, NS, PTR) goes through
//! [`dns_allows`], which asks the agent's ACL resolver (`acl::resolve::Resolver::dns_authz`).

use crate::agent::AgentShared;

/// A catalog object a DNS answer would reveal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    Service(&'a str),
    Node(&'a str),
}

/// Whether the agent's DNS token may read `what` (service:read / node:read).
pub fn dns_allows(agent: &AgentShared, what: Resource<'_>) -> bool {
    let authz = agent.acl.dns_authz(agent);
    if authz.is_disabled() {
        return true;
    }
    match what {
        Resource::Service(name) => authz.allowed(crate::acl::Resource::Service, name, crate::acl::Access::Read),
        Resource::Node(name) => authz.allowed(crate::acl::Resource::Node, name, crate::acl::Access::Read),
    }
}
