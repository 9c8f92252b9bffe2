//! Every HTTP route with the ACL permission it needs: one table, checked before any handler
//! runs. With ACLs enabled a path that matches no route is refused (404) before it reaches a
//! handler, so a route added without a table entry is unreachable rather than unprotected;
//! the security test walks this table, so an entry without a test case fails it.
//!
//! Body-dependent permissions (a registration's service name, each `/v1/txn` verb) and
//! filtered lists are checked by their handlers with the request's authorizer
//! ([`Request::authz`](super::Request)).

use http::Method;

use super::{ApiError, Request};
use legate_acl::{Access, Resource};

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Need {
    /// Nothing (status, datacenters, bootstrap).
    Open,
    /// A token that exists (`ACL not found` otherwise).
    AnyToken,
    /// A permission on this agent's node name (agent and node rules).
    OnNode(Resource, Access),
    /// A permission on the path's wildcard part (`kv/<key>` -> the key).
    OnPath(Resource, Access),
    /// A scalar permission (operator, keyring, acl).
    Scalar(Resource, Access),
    /// The handler checks it (body-dependent); the text says what.
    Handler(&'static str),
    /// A list the handler filters to what the token may read (no 403).
    Filtered(&'static str),
}

pub struct Route {
    pub methods: &'static [Method],
    /// Below `/v1/`. A trailing `*` matches any rest (also empty); `+` a non-empty rest.
    pub pattern: &'static str,
    pub need: Need,
}

use Access::{Read, Write};
use Need::*;
use Resource::*;

const GET: &[Method] = &[Method::GET];
const PUT: &[Method] = &[Method::PUT];
const DELETE: &[Method] = &[Method::DELETE];
const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
const PUT_POST: &[Method] = &[Method::PUT, Method::POST];
const WRITE_KEYRING: &[Method] = &[Method::POST, Method::PUT, Method::DELETE];

/// Every route. Order matters where patterns overlap: the first match wins.
pub const ROUTES: &[Route] = &[
    // agent
    Route { methods: GET, pattern: "agent/self", need: OnNode(Agent, Read) },
    Route { methods: GET, pattern: "agent/version", need: OnNode(Agent, Read) },
    Route { methods: GET, pattern: "agent/members", need: Filtered("node:read per member") },
    Route { methods: PUT, pattern: "agent/leave", need: OnNode(Agent, Write) },
    Route { methods: PUT, pattern: "agent/join/+", need: OnNode(Agent, Write) },
    Route { methods: PUT, pattern: "agent/force-leave/+", need: Scalar(Operator, Write) },
    Route { methods: GET, pattern: "agent/metrics", need: OnNode(Agent, Read) },
    Route { methods: PUT, pattern: "agent/reload", need: OnNode(Agent, Write) },
    Route { methods: PUT, pattern: "agent/maintenance", need: OnNode(Node, Write) },
    Route { methods: PUT, pattern: "agent/token/+", need: OnNode(Agent, Write) },
    Route { methods: GET, pattern: "agent/services", need: Filtered("service:read per service") },
    Route { methods: PUT, pattern: "agent/service/register", need: Handler("service:write on the service") },
    Route { methods: PUT, pattern: "agent/service/deregister/+", need: Handler("service:write on the service") },
    Route { methods: PUT, pattern: "agent/service/maintenance/+", need: Handler("service:write on the service") },
    Route { methods: GET, pattern: "agent/service/+", need: Handler("service:read on the service") },
    Route { methods: GET, pattern: "agent/checks", need: Filtered("service:read / node:read per check") },
    Route { methods: PUT, pattern: "agent/check/register", need: Handler("service:write or node:write") },
    Route { methods: PUT, pattern: "agent/check/deregister/+", need: Handler("service:write or node:write") },
    Route { methods: PUT, pattern: "agent/check/pass/+", need: Handler("service:write or node:write") },
    Route { methods: PUT, pattern: "agent/check/warn/+", need: Handler("service:write or node:write") },
    Route { methods: PUT, pattern: "agent/check/fail/+", need: Handler("service:write or node:write") },
    Route { methods: PUT, pattern: "agent/check/update/+", need: Handler("service:write or node:write") },
    Route { methods: GET, pattern: "agent/health/service/name/+", need: OnPath(Service, Read) },
    Route { methods: GET, pattern: "agent/health/service/id/+", need: Handler("service:read on the service") },
    // catalog
    Route { methods: PUT, pattern: "catalog/register", need: Handler("node:write, service:write") },
    Route { methods: PUT, pattern: "catalog/deregister", need: Handler("node:write or service:write") },
    Route { methods: GET, pattern: "catalog/datacenters", need: Open },
    Route { methods: GET, pattern: "catalog/nodes", need: Filtered("node:read per node") },
    Route { methods: GET, pattern: "catalog/services", need: Filtered("service:read per service") },
    Route { methods: GET, pattern: "catalog/service/+", need: OnPath(Service, Read) },
    Route { methods: GET, pattern: "catalog/node/+", need: OnPath(Node, Read) },
    Route { methods: GET, pattern: "catalog/node-services/+", need: OnPath(Node, Read) },
    // health
    Route { methods: GET, pattern: "health/node/+", need: OnPath(Node, Read) },
    Route { methods: GET, pattern: "health/checks/+", need: OnPath(Service, Read) },
    Route { methods: GET, pattern: "health/service/+", need: OnPath(Service, Read) },
    Route { methods: GET, pattern: "health/state/+", need: Filtered("node:read / service:read per check") },
    // kv, txn
    Route { methods: GET, pattern: "kv/*", need: Handler("key:read, lists filtered") },
    Route { methods: PUT, pattern: "kv/*", need: OnPath(Key, Write) },
    Route { methods: DELETE, pattern: "kv/*", need: Handler("key:write (recursive: on every key under the prefix)") },
    Route { methods: PUT, pattern: "txn", need: Handler("per verb") },
    // sessions
    Route { methods: PUT, pattern: "session/create", need: Handler("session:write on the node") },
    Route { methods: PUT, pattern: "session/destroy/+", need: Handler("session:write on the session's node") },
    Route { methods: PUT, pattern: "session/renew/+", need: Handler("session:write on the session's node") },
    Route { methods: GET, pattern: "session/info/+", need: Filtered("session:read on the session's node") },
    Route { methods: GET, pattern: "session/node/+", need: OnPath(Session, Read) },
    Route { methods: GET, pattern: "session/list", need: Filtered("session:read per node") },
    // events
    Route { methods: PUT, pattern: "event/fire/+", need: OnPath(Event, Write) },
    Route { methods: GET, pattern: "event/list", need: Filtered("event:read per event") },
    // status, operator, snapshot
    Route { methods: GET, pattern: "status/leader", need: Open },
    Route { methods: GET, pattern: "status/peers", need: Open },
    Route { methods: GET, pattern: "operator/raft/configuration", need: Scalar(Operator, Read) },
    Route { methods: DELETE, pattern: "operator/raft/peer", need: Scalar(Operator, Write) },
    Route { methods: GET, pattern: "operator/keyring", need: Scalar(Keyring, Read) },
    Route { methods: WRITE_KEYRING, pattern: "operator/keyring", need: Scalar(Keyring, Write) },
    Route { methods: GET_PUT, pattern: "snapshot", need: Scalar(Acl, Write) },
    // acl
    Route { methods: PUT, pattern: "acl/bootstrap", need: Open },
    Route { methods: GET, pattern: "acl/token/self", need: AnyToken },
    Route { methods: PUT, pattern: "acl/token", need: Scalar(Acl, Write) },
    Route { methods: PUT, pattern: "acl/token/+", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/token/+", need: Scalar(Acl, Read) },
    Route { methods: DELETE, pattern: "acl/token/+", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/tokens", need: Scalar(Acl, Read) },
    Route { methods: PUT, pattern: "acl/policy", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/policy/+", need: Scalar(Acl, Read) },
    Route { methods: PUT, pattern: "acl/policy/+", need: Scalar(Acl, Write) },
    Route { methods: DELETE, pattern: "acl/policy/+", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/policies", need: Scalar(Acl, Read) },
    Route { methods: PUT, pattern: "acl/role", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/role/+", need: Scalar(Acl, Read) },
    Route { methods: PUT, pattern: "acl/role/+", need: Scalar(Acl, Write) },
    Route { methods: DELETE, pattern: "acl/role/+", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/roles", need: Scalar(Acl, Read) },
    Route { methods: PUT_POST, pattern: "acl/create", need: Scalar(Acl, Write) },
    Route { methods: PUT_POST, pattern: "acl/update", need: Scalar(Acl, Write) },
    Route { methods: PUT, pattern: "acl/destroy/+", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/info/+", need: Scalar(Acl, Read) },
    Route { methods: PUT, pattern: "acl/clone/+", need: Scalar(Acl, Write) },
    Route { methods: GET, pattern: "acl/list", need: Scalar(Acl, Read) },
];

/// The wildcard part of `path` if it matches `pattern`.
fn matches<'a>(pattern: &str, path: &'a str) -> Option<&'a str> {
    if let Some(lit) = pattern.strip_suffix('*') {
        return path.strip_prefix(lit);
    }
    if let Some(lit) = pattern.strip_suffix('+') {
        return path.strip_prefix(lit).filter(|rest| !rest.is_empty());
    }
    (pattern == path).then_some("")
}

/// A path no route has.
#[derive(Debug, PartialEq)]
pub struct UnknownRoute;

/// The route of a request (path below `/v1/`), with its wildcard part. A path some route has
/// but not for this method gives `Ok(None)` (the handler answers 405 / OPTIONS); a path no
/// route has gives `Err`.
pub fn lookup<'a>(method: &Method, path: &'a str) -> Result<Option<(&'static Route, &'a str)>, UnknownRoute> {
    let mut known = false;
    for r in ROUTES {
        if let Some(rest) = matches(r.pattern, path) {
            known = true;
            if r.methods.contains(method) {
                return Ok(Some((r, rest)));
            }
        }
    }
    if known {
        Ok(None)
    } else {
        Err(UnknownRoute)
    }
}

/// The table's check for a request whose authorizer is set; handler-checked needs pass here.
pub fn enforce(req: &Request, node: &str, path: &str) -> Result<(), ApiError> {
    let Ok(found) = lookup(&req.method, path) else {
        return Err(ApiError::NotFound(String::new()));
    };
    let Some((route, rest)) = found else { return Ok(()) };
    let a = &req.authz;
    let denied = |e: legate_acl::Denied| ApiError::Forbidden(e.0);
    match route.need {
        Open | AnyToken | Handler(_) | Filtered(_) => Ok(()),
        OnNode(res, need) => a.require(res, node, need).map_err(denied),
        OnPath(res, need) => a.require(res, rest, need).map_err(denied),
        Scalar(res, need) => a.require(res, "", need).map_err(denied),
    }
}
