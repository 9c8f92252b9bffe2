//! Every HTTP route, in one table that drives dispatch: its methods, path pattern, the ACL
//! permission it needs, where it runs, and its handler. `dispatch` (lib.rs) looks a request up
//! here (the first pattern that matches claims the path) -> 405 with `Allow` (or the `OPTIONS`
//! answer) for a known path with another method -> forwarding (client agents send server routes
//! to a server, which checks them) -> the ACL check -> `?consistent` reads to the leader -> the
//! handler. A path no route has is a 404, so a route
//! added without a table entry is unreachable rather than unprotected; the security test walks
//! this table, so an entry without a test case fails it.
//!
//! Body-dependent permissions (a registration's service name, each `/v1/txn` verb) and
//! filtered lists are checked by their handlers with the request's authorizer
//! ([`Request::authz`](super::Request)).

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use http::Method;
use legate_acl::{Access, Resource};

use super::{ApiError, ApiResponse, Ctx, Request};

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
    /// A path that lacks its argument: answered 400 with this text (Consul's), whoever asks.
    Invalid(&'static str),
}

/// Where a route runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Forward {
    /// On this agent (its own services, checks, members, events, keyring; KV writes, which a
    /// client agent sends to a server as a typed `KvWrite`).
    Local,
    /// On a server: a client agent forwards it (the server resolves the token and enforces);
    /// a follower answers `?consistent` reads through the leader.
    Servers,
}

/// What a handler returns.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<ApiResponse, ApiError>> + Send + 'a>>;

/// A route's handler: the request and the path below the endpoint family (`kv/a/b` -> `a/b`).
pub type HandlerFn = for<'a> fn(&'a Ctx, &'a Request, &'a str) -> Reply<'a>;

pub struct Route {
    pub methods: &'static [Method],
    /// Below `/v1/`. A trailing `*` matches any rest (also empty); `+` a non-empty rest; `/?`
    /// the path with or without its trailing slash.
    pub pattern: &'static str,
    pub need: Need,
    pub forward: Forward,
    pub handler: HandlerFn,
}

impl Route {
    /// Whether `?dc=` names the datacenter the route answers for (every route but the agent's
    /// own endpoints and `status/*`).
    pub fn datacenter_scoped(&self) -> bool {
        !self.pattern.starts_with("agent/") && !self.pattern.starts_with("status/")
    }

    /// The `path` label of `api.http`: the route, not the data in it, as Consul names its
    /// handlers (`kv/*` -> `v1_kv_`, `agent/self` -> `v1_agent_self`); made once per pattern of
    /// the table, not per request.
    pub fn metric(&self) -> &'static str {
        static LABELS: LazyLock<rustc_hash::FxHashMap<&'static str, &'static str>> = LazyLock::new(|| {
            let label = |pattern: &str| {
                let literal = pattern.trim_end_matches(['*', '+', '?']);
                &*Box::leak(format!("v1_{}", literal.replace('/', "_")).into_boxed_str())
            };
            ROUTES.iter().map(|r| (r.pattern, label(r.pattern))).collect()
        });
        LABELS.get(self.pattern).copied().unwrap_or("unknown")
    }

    /// The path part of Consul 1.9's `http.<METHOD>.<path>` timers: the route's words joined by
    /// dots, its variable part as `_` (`kv/*` -> `v1.kv._`).
    pub fn compat_metric(&self) -> String {
        let literal = self.pattern.trim_end_matches(['*', '+', '?']);
        let mut out = format!("v1.{}", literal.trim_end_matches('/').replace('/', "."));
        if literal.len() != self.pattern.len() {
            out.push_str("._");
        }
        out
    }
}

use Access::{Read, Write};
use Forward::{Local as LOCAL, Servers as SERVERS};
use Need::*;
use Resource::*;

const GET: &[Method] = &[Method::GET];
const PUT: &[Method] = &[Method::PUT];
const DELETE: &[Method] = &[Method::DELETE];
const PUT_POST: &[Method] = &[Method::PUT, Method::POST];
const POST: &[Method] = &[Method::POST];
const WRITE_KEYRING: &[Method] = &[Method::POST, Method::PUT, Method::DELETE];

/// A route's handler: `h!(module::function)` for an `async fn(&Ctx, &Request, &str)`.
macro_rules! h {
    ($($f:ident)::+) => {{
        fn run<'a>(ctx: &'a Ctx, req: &'a Request, arg: &'a str) -> Reply<'a> {
            Box::pin(super::$($f)::+(ctx, req, arg))
        }
        run as HandlerFn
    }};
}

/// An ACL route's handler: `acl::guard` first (401 with ACLs off; writes to the leader).
macro_rules! acl {
    ($f:ident) => {
        acl!(acl::$f)
    };
    ($m:ident :: $f:ident) => {{
        fn run<'a>(ctx: &'a Ctx, req: &'a Request, arg: &'a str) -> Reply<'a> {
            Box::pin(async move {
                match super::acl::guard(ctx, req).await? {
                    Some(answer) => Ok(answer),
                    None => super::$m::$f(ctx, req, arg).await,
                }
            })
        }
        run as HandlerFn
    }};
}

/// Paths that lack their argument (answered 400 by `dispatch`; the handler never runs).
const INVALID: HandlerFn = {
    fn run<'a>(_: &'a Ctx, _: &'a Request, _: &'a str) -> Reply<'a> {
        Box::pin(async { Err(ApiError::NotFound(String::new())) })
    }
    run
};

/// Every route. Order matters where patterns overlap: the first match wins.
pub const ROUTES: &[Route] = &[
    // agent
    Route { methods: GET, pattern: "agent/self", need: OnNode(Agent, Read), forward: LOCAL, handler: h!(agent::self_) },
    Route {
        methods: GET,
        pattern: "agent/version",
        need: OnNode(Agent, Read),
        forward: LOCAL,
        handler: h!(agent::version),
    },
    Route {
        methods: GET,
        pattern: "agent/members",
        need: Filtered("node:read per member"),
        forward: LOCAL,
        handler: h!(agent::members),
    },
    Route {
        methods: PUT,
        pattern: "agent/leave",
        need: OnNode(Agent, Write),
        forward: LOCAL,
        handler: h!(agent::leave),
    },
    Route {
        methods: PUT,
        pattern: "agent/join/+",
        need: OnNode(Agent, Write),
        forward: LOCAL,
        handler: h!(agent::join),
    },
    Route {
        methods: PUT,
        pattern: "agent/force-leave/+",
        need: Scalar(Operator, Write),
        forward: LOCAL,
        handler: h!(agent::force_leave),
    },
    Route {
        methods: GET,
        pattern: "agent/metrics",
        need: OnNode(Agent, Read),
        forward: LOCAL,
        handler: h!(agent::metrics),
    },
    Route {
        methods: GET,
        pattern: "agent/monitor",
        need: OnNode(Agent, Read),
        forward: LOCAL,
        handler: h!(agent::monitor),
    },
    Route {
        methods: GET,
        pattern: "agent/host",
        need: Scalar(Operator, Read),
        forward: LOCAL,
        handler: h!(agent::host),
    },
    Route {
        methods: GET,
        pattern: "agent/plugins",
        need: Scalar(Operator, Read),
        forward: LOCAL,
        handler: h!(agent::plugins),
    },
    Route {
        methods: PUT,
        pattern: "agent/reload",
        need: OnNode(Agent, Write),
        forward: LOCAL,
        handler: h!(agent::reload),
    },
    Route {
        methods: PUT,
        pattern: "agent/maintenance",
        need: OnNode(Node, Write),
        forward: LOCAL,
        handler: h!(agent_local::node_maintenance),
    },
    Route {
        methods: PUT,
        pattern: "agent/token/+",
        need: OnNode(Agent, Write),
        forward: LOCAL,
        handler: h!(agent::set_token),
    },
    Route {
        methods: GET,
        pattern: "agent/services",
        need: Filtered("service:read per service"),
        forward: LOCAL,
        handler: h!(agent_local::list_services),
    },
    Route {
        methods: PUT,
        pattern: "agent/service/register",
        need: Handler("service:write on the service"),
        forward: LOCAL,
        handler: h!(agent_local::register_service),
    },
    Route {
        methods: PUT,
        pattern: "agent/service/deregister/+",
        need: Handler("service:write on the service"),
        forward: LOCAL,
        handler: h!(agent_local::deregister_service),
    },
    Route {
        methods: PUT,
        pattern: "agent/service/maintenance/+",
        need: Handler("service:write on the service"),
        forward: LOCAL,
        handler: h!(agent_local::service_maintenance),
    },
    Route {
        methods: PUT,
        pattern: "agent/service/deregister/?",
        need: Invalid("Missing service ID"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: PUT,
        pattern: "agent/service/maintenance/?",
        need: Invalid("Missing service ID"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "agent/service/+",
        need: Handler("service:read on the service"),
        forward: LOCAL,
        handler: h!(agent_local::get_service),
    },
    Route {
        methods: GET,
        pattern: "agent/checks",
        need: Filtered("service:read / node:read per check"),
        forward: LOCAL,
        handler: h!(agent_local::list_checks),
    },
    Route {
        methods: PUT,
        pattern: "agent/check/register",
        need: Handler("service:write or node:write"),
        forward: LOCAL,
        handler: h!(agent_local::register_check),
    },
    Route {
        methods: PUT,
        pattern: "agent/check/deregister/+",
        need: Handler("service:write or node:write"),
        forward: LOCAL,
        handler: h!(agent_local::deregister_check),
    },
    Route {
        methods: PUT,
        pattern: "agent/check/pass/+",
        need: Handler("service:write or node:write"),
        forward: LOCAL,
        handler: h!(agent_local::check_pass),
    },
    Route {
        methods: PUT,
        pattern: "agent/check/warn/+",
        need: Handler("service:write or node:write"),
        forward: LOCAL,
        handler: h!(agent_local::check_warn),
    },
    Route {
        methods: PUT,
        pattern: "agent/check/fail/+",
        need: Handler("service:write or node:write"),
        forward: LOCAL,
        handler: h!(agent_local::check_fail),
    },
    Route {
        methods: PUT,
        pattern: "agent/check/update/+",
        need: Handler("service:write or node:write"),
        forward: LOCAL,
        handler: h!(agent_local::check_update),
    },
    Route {
        methods: GET,
        pattern: "agent/health/service/name/+",
        need: OnPath(Service, Read),
        forward: LOCAL,
        handler: h!(agent_local::health_by_name),
    },
    Route {
        methods: GET,
        pattern: "agent/health/service/id/+",
        need: Handler("service:read on the service"),
        forward: LOCAL,
        handler: h!(agent_local::health_by_id),
    },
    Route {
        methods: GET,
        pattern: "agent/health/service/name/?",
        need: Invalid("Missing service Name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "agent/health/service/id/?",
        need: Invalid("Missing service ID"),
        forward: LOCAL,
        handler: INVALID,
    },
    // catalog
    Route {
        methods: PUT,
        pattern: "catalog/register",
        need: Handler("node:write, service:write"),
        forward: SERVERS,
        handler: h!(catalog::register),
    },
    Route {
        methods: PUT,
        pattern: "catalog/deregister",
        need: Handler("node:write or service:write"),
        forward: SERVERS,
        handler: h!(catalog::deregister),
    },
    Route {
        methods: GET,
        pattern: "catalog/datacenters",
        need: Open,
        forward: SERVERS,
        handler: h!(catalog::datacenters),
    },
    Route {
        methods: GET,
        pattern: "catalog/nodes",
        need: Filtered("node:read per node"),
        forward: SERVERS,
        handler: h!(catalog::nodes),
    },
    Route {
        methods: GET,
        pattern: "catalog/services",
        need: Filtered("service:read per service"),
        forward: SERVERS,
        handler: h!(catalog::services),
    },
    Route {
        methods: GET,
        pattern: "catalog/service/+",
        need: Filtered("service:read on the service, node:read per node"),
        forward: SERVERS,
        handler: h!(catalog::service),
    },
    Route {
        methods: GET,
        pattern: "catalog/node/+",
        need: OnPath(Node, Read),
        forward: SERVERS,
        handler: h!(catalog::node),
    },
    Route {
        methods: GET,
        pattern: "catalog/node-services/+",
        need: OnPath(Node, Read),
        forward: SERVERS,
        handler: h!(catalog::node_services),
    },
    // health
    Route {
        methods: GET,
        pattern: "health/node/+",
        need: OnPath(Node, Read),
        forward: SERVERS,
        handler: h!(health::node_checks),
    },
    Route {
        methods: GET,
        pattern: "health/checks/+",
        need: Filtered("service:read on the service, node:read per node"),
        forward: SERVERS,
        handler: h!(health::service_checks),
    },
    Route {
        methods: GET,
        pattern: "health/service/+",
        need: Filtered("service:read on the service, node:read per node"),
        forward: SERVERS,
        handler: h!(health::service),
    },
    Route {
        methods: GET,
        pattern: "health/state/+",
        need: Filtered("node:read / service:read per check"),
        forward: SERVERS,
        handler: h!(health::state),
    },
    // kv, txn
    Route {
        methods: GET,
        pattern: "kv/*",
        need: Handler("key:read, lists filtered"),
        forward: SERVERS,
        handler: h!(kv::get),
    },
    Route { methods: PUT, pattern: "kv/*", need: OnPath(Key, Write), forward: LOCAL, handler: h!(kv::put) },
    Route {
        methods: DELETE,
        pattern: "kv/*",
        need: Handler("key:write (recursive: on every key under the prefix)"),
        forward: LOCAL,
        handler: h!(kv::delete),
    },
    Route { methods: PUT, pattern: "txn", need: Handler("per verb"), forward: SERVERS, handler: h!(txn::handle) },
    // sessions
    Route {
        methods: PUT,
        pattern: "session/create",
        need: Handler("session:write on the node"),
        forward: SERVERS,
        handler: h!(session::create),
    },
    Route {
        methods: PUT,
        pattern: "session/destroy/+",
        need: Handler("session:write on the session's node"),
        forward: SERVERS,
        handler: h!(session::destroy),
    },
    Route {
        methods: PUT,
        pattern: "session/renew/+",
        need: Handler("session:write on the session's node"),
        forward: SERVERS,
        handler: h!(session::renew),
    },
    Route {
        methods: GET,
        pattern: "session/info/+",
        need: Filtered("session:read on the session's node"),
        forward: SERVERS,
        handler: h!(session::info),
    },
    Route {
        methods: GET,
        pattern: "session/node/+",
        need: OnPath(Session, Read),
        forward: SERVERS,
        handler: h!(session::node),
    },
    Route {
        methods: GET,
        pattern: "session/list",
        need: Filtered("session:read per node"),
        forward: SERVERS,
        handler: h!(session::list),
    },
    Route {
        methods: PUT,
        pattern: "session/renew/?",
        need: Invalid("Missing session"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "session/info/?",
        need: Invalid("Missing session"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "session/node/?",
        need: Invalid("Missing node name"),
        forward: LOCAL,
        handler: INVALID,
    },
    // events
    Route {
        methods: PUT,
        pattern: "event/fire/+",
        need: OnPath(Event, Write),
        forward: LOCAL,
        handler: h!(event::fire),
    },
    Route {
        methods: GET,
        pattern: "event/list",
        need: Filtered("event:read per event"),
        forward: LOCAL,
        handler: h!(event::list),
    },
    // status, operator, snapshot
    Route { methods: GET, pattern: "status/leader", need: Open, forward: SERVERS, handler: h!(status::leader) },
    Route { methods: GET, pattern: "status/peers", need: Open, forward: SERVERS, handler: h!(status::peers) },
    Route {
        methods: GET,
        pattern: "operator/raft/configuration",
        need: Scalar(Operator, Read),
        forward: SERVERS,
        handler: h!(operator::raft_configuration),
    },
    Route {
        methods: DELETE,
        pattern: "operator/raft/peer",
        need: Scalar(Operator, Write),
        forward: SERVERS,
        handler: h!(operator::remove_peer),
    },
    Route {
        methods: POST,
        pattern: "operator/raft/transfer-leader",
        need: Scalar(Operator, Write),
        forward: SERVERS,
        handler: h!(operator::transfer_leader),
    },
    Route {
        methods: GET,
        pattern: "operator/autopilot/configuration",
        need: Scalar(Operator, Read),
        forward: SERVERS,
        handler: h!(autopilot::get_config),
    },
    Route {
        methods: PUT,
        pattern: "operator/autopilot/configuration",
        need: Scalar(Operator, Write),
        forward: SERVERS,
        handler: h!(autopilot::set_config),
    },
    Route {
        methods: GET,
        pattern: "operator/autopilot/health",
        need: Scalar(Operator, Read),
        forward: SERVERS,
        handler: h!(autopilot::health),
    },
    Route {
        methods: GET,
        pattern: "operator/autopilot/state",
        need: Scalar(Operator, Read),
        forward: SERVERS,
        handler: h!(autopilot::state),
    },
    // prepared queries
    Route {
        methods: GET,
        pattern: "query",
        need: Filtered("query:read per named query; unnamed ones to management only"),
        forward: SERVERS,
        handler: h!(query::list),
    },
    Route {
        methods: POST,
        pattern: "query",
        need: Handler("query:write on the query's name"),
        forward: SERVERS,
        handler: h!(query::create),
    },
    Route {
        methods: GET,
        pattern: "query/+/execute",
        need: Filtered("node:read and service:read per instance, with the query's token or the caller's"),
        forward: SERVERS,
        handler: h!(query::execute),
    },
    Route {
        methods: GET,
        pattern: "query/+/explain",
        need: Handler("query:read on the query's name"),
        forward: SERVERS,
        handler: h!(query::explain),
    },
    Route {
        methods: GET,
        pattern: "query/+",
        need: Handler("query:read on the query's name"),
        forward: SERVERS,
        handler: h!(query::get),
    },
    Route {
        methods: PUT,
        pattern: "query/+",
        need: Handler("query:write on the query's name"),
        forward: SERVERS,
        handler: h!(query::update),
    },
    Route {
        methods: DELETE,
        pattern: "query/+",
        need: Handler("query:write on the query's name"),
        forward: SERVERS,
        handler: h!(query::delete),
    },
    // coordinate
    Route {
        methods: GET,
        pattern: "coordinate/datacenters",
        need: Open,
        forward: SERVERS,
        handler: h!(coordinate::datacenters),
    },
    Route {
        methods: GET,
        pattern: "coordinate/nodes",
        need: Filtered("node:read per node"),
        forward: SERVERS,
        handler: h!(coordinate::nodes),
    },
    Route {
        methods: GET,
        pattern: "coordinate/node/+",
        need: OnPath(Node, Read),
        forward: SERVERS,
        handler: h!(coordinate::node),
    },
    Route {
        methods: PUT,
        pattern: "coordinate/update",
        need: Handler("node:write on the body's node"),
        forward: SERVERS,
        handler: h!(coordinate::update),
    },
    // Consul's UI endpoints (Legate's UI reads them too)
    Route {
        methods: GET,
        pattern: "internal/ui/services",
        need: Filtered("service:read and node:read per instance"),
        forward: SERVERS,
        handler: h!(ui_internal::services),
    },
    Route {
        methods: GET,
        pattern: "internal/ui/nodes",
        need: Filtered("node:read per node, service:read per service"),
        forward: SERVERS,
        handler: h!(ui_internal::nodes),
    },
    Route {
        methods: GET,
        pattern: "internal/ui/node/+",
        need: OnPath(Node, Read),
        forward: SERVERS,
        handler: h!(ui_internal::node),
    },
    Route {
        methods: GET,
        pattern: "operator/usage",
        need: Scalar(Operator, Read),
        forward: SERVERS,
        handler: h!(autopilot::usage),
    },
    Route {
        methods: GET,
        pattern: "operator/keyring",
        need: Scalar(Keyring, Read),
        forward: LOCAL,
        handler: h!(operator::keyring),
    },
    Route {
        methods: WRITE_KEYRING,
        pattern: "operator/keyring",
        need: Scalar(Keyring, Write),
        forward: LOCAL,
        handler: h!(operator::keyring),
    },
    Route {
        methods: GET,
        pattern: "snapshot",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: h!(snapshot::save),
    },
    Route {
        methods: PUT,
        pattern: "snapshot",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: h!(snapshot::restore),
    },
    // plugins (the registry; Legate's own)
    Route {
        methods: PUT,
        pattern: "plugin/+",
        need: OnPath(Plugin, Write),
        forward: SERVERS,
        handler: h!(plugin::put),
    },
    Route { methods: GET, pattern: "plugin/+", need: OnPath(Plugin, Read), forward: SERVERS, handler: h!(plugin::get) },
    Route {
        methods: DELETE,
        pattern: "plugin/+",
        need: OnPath(Plugin, Write),
        forward: SERVERS,
        handler: h!(plugin::delete),
    },
    Route {
        methods: GET,
        pattern: "plugins",
        need: Filtered("plugin:read per name"),
        forward: SERVERS,
        handler: h!(plugin::list),
    },
    // acl
    Route { methods: PUT, pattern: "acl/bootstrap", need: Open, forward: SERVERS, handler: acl!(bootstrap) },
    Route { methods: GET, pattern: "acl/replication", need: Open, forward: SERVERS, handler: acl!(replication) },
    Route { methods: GET, pattern: "acl/token/self", need: AnyToken, forward: SERVERS, handler: acl!(token_self) },
    Route {
        methods: PUT,
        pattern: "acl/token",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(token_create),
    },
    Route {
        methods: PUT,
        pattern: "acl/token/+/clone",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(token_clone),
    },
    Route {
        methods: PUT,
        pattern: "acl/token/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(token_update),
    },
    Route {
        methods: GET,
        pattern: "acl/token/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(token_read),
    },
    Route {
        methods: DELETE,
        pattern: "acl/token/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(token_delete),
    },
    Route { methods: GET, pattern: "acl/tokens", need: Scalar(Acl, Read), forward: SERVERS, handler: acl!(token_list) },
    Route {
        methods: PUT,
        pattern: "acl/policy",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(policy_create),
    },
    Route {
        methods: GET,
        pattern: "acl/policy/name/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(policy_by_name),
    },
    Route {
        methods: GET,
        pattern: "acl/policy/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(policy_get),
    },
    Route {
        methods: PUT,
        pattern: "acl/policy/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(policy_update),
    },
    Route {
        methods: DELETE,
        pattern: "acl/policy/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(policy_delete),
    },
    Route {
        methods: GET,
        pattern: "acl/policies",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(policy_list),
    },
    Route { methods: PUT, pattern: "acl/role", need: Scalar(Acl, Write), forward: SERVERS, handler: acl!(role_create) },
    Route {
        methods: GET,
        pattern: "acl/role/name/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(role_by_name),
    },
    Route { methods: GET, pattern: "acl/role/+", need: Scalar(Acl, Read), forward: SERVERS, handler: acl!(role_get) },
    Route {
        methods: PUT,
        pattern: "acl/role/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(role_update),
    },
    Route {
        methods: DELETE,
        pattern: "acl/role/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(role_delete),
    },
    Route { methods: GET, pattern: "acl/roles", need: Scalar(Acl, Read), forward: SERVERS, handler: acl!(role_list) },
    Route {
        methods: GET,
        pattern: "acl/templated-policies",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_templated::list),
    },
    Route {
        methods: GET,
        pattern: "acl/templated-policy/name/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_templated::read),
    },
    Route {
        methods: POST,
        pattern: "acl/templated-policy/preview/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_templated::preview),
    },
    Route {
        methods: PUT,
        pattern: "acl/auth-method",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(acl_auth::method_create),
    },
    Route {
        methods: GET,
        pattern: "acl/auth-method/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_auth::method_read),
    },
    Route {
        methods: PUT,
        pattern: "acl/auth-method/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(acl_auth::method_update),
    },
    Route {
        methods: DELETE,
        pattern: "acl/auth-method/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(acl_auth::method_delete),
    },
    Route {
        methods: GET,
        pattern: "acl/auth-methods",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_auth::method_list),
    },
    Route {
        methods: PUT,
        pattern: "acl/binding-rule",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(acl_auth::rule_create),
    },
    Route {
        methods: GET,
        pattern: "acl/binding-rule/+",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_auth::rule_read),
    },
    Route {
        methods: PUT,
        pattern: "acl/binding-rule/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(acl_auth::rule_update),
    },
    Route {
        methods: DELETE,
        pattern: "acl/binding-rule/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(acl_auth::rule_delete),
    },
    Route {
        methods: GET,
        pattern: "acl/binding-rules",
        need: Scalar(Acl, Read),
        forward: SERVERS,
        handler: acl!(acl_auth::rule_list),
    },
    Route { methods: POST, pattern: "acl/login", need: Open, forward: SERVERS, handler: acl!(acl_auth::login) },
    Route {
        methods: POST,
        pattern: "acl/logout",
        need: Handler("the token itself, created by a login"),
        forward: SERVERS,
        handler: acl!(acl_auth::logout),
    },
    Route {
        methods: PUT_POST,
        pattern: "acl/create",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(legacy_create),
    },
    Route {
        methods: PUT_POST,
        pattern: "acl/update",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(legacy_update),
    },
    Route {
        methods: PUT,
        pattern: "acl/destroy/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(legacy_destroy),
    },
    Route { methods: GET, pattern: "acl/info/+", need: Scalar(Acl, Read), forward: SERVERS, handler: acl!(legacy_get) },
    Route {
        methods: PUT,
        pattern: "acl/clone/+",
        need: Scalar(Acl, Write),
        forward: SERVERS,
        handler: acl!(legacy_clone),
    },
    Route { methods: GET, pattern: "acl/list", need: Scalar(Acl, Read), forward: SERVERS, handler: acl!(legacy_list) },
    // paths without their argument
    Route {
        methods: GET,
        pattern: "catalog/service/?",
        need: Invalid("Missing service name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "catalog/node/?",
        need: Invalid("Missing node name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "catalog/node-services/?",
        need: Invalid("Missing node name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "health/node/?",
        need: Invalid("Missing node name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "health/checks/?",
        need: Invalid("Missing service name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "health/service/?",
        need: Invalid("Missing service name"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route {
        methods: GET,
        pattern: "health/state/?",
        need: Invalid("Missing check state"),
        forward: LOCAL,
        handler: INVALID,
    },
    Route { methods: PUT, pattern: "event/fire/?", need: Invalid("Missing name"), forward: LOCAL, handler: INVALID },
    Route {
        methods: PUT,
        pattern: "session/destroy/?",
        need: Invalid("Missing session"),
        forward: LOCAL,
        handler: INVALID,
    },
];

/// The wildcard part of `path` if it matches `pattern` (the first `+` segment's, or the rest a
/// trailing `*`/`+` takes).
fn matches<'a>(pattern: &str, path: &'a str) -> Option<&'a str> {
    if let Some(lit) = pattern.strip_suffix("/?") {
        return (path == lit || path.strip_prefix(lit) == Some("/")).then_some("");
    }
    let mut rest = path;
    let mut wild: Option<&'a str> = None;
    let mut segments = pattern.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match (seg, last) {
            ("*", true) => return Some(wild.unwrap_or(rest)),
            ("+", true) => return (!rest.is_empty()).then(|| wild.unwrap_or(rest)),
            ("+", false) => {
                let (one, more) = rest.split_once('/')?;
                if one.is_empty() {
                    return None;
                }
                wild.get_or_insert(one);
                rest = more;
            }
            (lit, true) => return (rest == lit).then(|| wild.unwrap_or("")),
            (lit, false) => rest = rest.strip_prefix(lit)?.strip_prefix('/')?,
        }
    }
    None
}

/// The table's routes by their pattern's first segment (indexes into `ROUTES`, in order).
fn by_first_segment() -> &'static std::collections::HashMap<&'static str, Vec<usize>> {
    static INDEX: std::sync::OnceLock<std::collections::HashMap<&'static str, Vec<usize>>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index: std::collections::HashMap<&'static str, Vec<usize>> = std::collections::HashMap::new();
        for (i, r) in ROUTES.iter().enumerate() {
            let first = r.pattern.split_once('/').map_or(r.pattern, |(f, _)| f).trim_end_matches('?');
            index.entry(first).or_default().push(i);
        }
        index
    })
}

/// What the table says about a request.
pub enum Lookup<'a> {
    /// The route, and the path's wildcard part.
    Found(&'static Route, &'a str),
    /// The path is known, with other methods than the request's.
    Method(Vec<Method>),
    /// No route has this path.
    Unknown,
}

/// The route of a request (path below `/v1/`): the first route whose pattern matches claims the
/// path; the entries with that pattern say which methods it takes.
pub fn lookup<'a>(method: &Method, path: &'a str) -> Lookup<'a> {
    // Only the routes whose pattern starts with the path's first segment (every pattern's
    // first segment is a literal), in table order: a KV request tried some 60 patterns first.
    let first = path.split_once('/').map_or(path, |(f, _)| f);
    let Some(candidates) = by_first_segment().get(first) else { return Lookup::Unknown };
    let candidates = candidates.iter().map(|&i| &ROUTES[i]);
    let Some(claimed) = candidates.clone().find(|r| matches(r.pattern, path).is_some()) else {
        return Lookup::Unknown;
    };
    let mut allowed: Vec<Method> = Vec::new();
    for r in candidates.filter(|r| r.pattern == claimed.pattern) {
        if r.methods.contains(method) {
            return Lookup::Found(r, matches(r.pattern, path).unwrap_or_default());
        }
        for m in r.methods {
            if !allowed.contains(m) {
                allowed.push(m.clone());
            }
        }
    }
    Lookup::Method(allowed)
}

/// The table's check for a request whose authorizer is set; handler-checked needs pass here.
pub fn enforce(req: &Request, node: &str, route: &Route, rest: &str) -> Result<(), ApiError> {
    let a = &req.authz;
    let denied = |e: legate_acl::Denied| ApiError::Forbidden(e.0);
    match route.need {
        Open | AnyToken | Handler(_) | Filtered(_) | Invalid(_) => Ok(()),
        OnNode(res, need) => a.require(res, node, need).map_err(denied),
        OnPath(res, need) => a.require(res, rest, need).map_err(denied),
        Scalar(res, need) => a.require(res, "", need).map_err(denied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_first_segment_finds_what_a_scan_of_the_whole_table_finds() {
        fn scan<'a>(method: &Method, path: &'a str) -> Option<(&'static str, Option<&'a str>)> {
            let claimed = ROUTES.iter().find(|r| matches(r.pattern, path).is_some())?;
            ROUTES
                .iter()
                .filter(|r| r.pattern == claimed.pattern)
                .find(|r| r.methods.contains(method))
                .map(|r| (r.pattern, matches(r.pattern, path)))
        }
        let mut paths: Vec<String> = Vec::new();
        for r in ROUTES {
            let base = r.pattern.trim_end_matches("/?");
            paths.push(base.replace("/*", "/a/b").replace('+', "x"));
            paths.push(base.replace("/*", "").replace('+', "x"));
            paths.push(format!("{base}/extra"));
        }
        paths.extend(["", "kv", "kvx/a", "unknown/x"].map(String::from));
        for path in &paths {
            for method in [Method::GET, Method::PUT, Method::POST, Method::DELETE] {
                let got = match lookup(&method, path) {
                    Lookup::Found(r, rest) => Some((r.pattern, Some(rest))),
                    _ => None,
                };
                assert_eq!(got, scan(&method, path), "{method} {path}");
            }
        }
    }

    #[test]
    fn lookup_finds_the_route_its_methods_or_nothing() {
        assert!(matches!(lookup(&Method::PUT, "kv/a/b"), Lookup::Found(r, "a/b") if r.pattern == "kv/*"));
        assert!(matches!(lookup(&Method::GET, "kv/"), Lookup::Found(r, "") if r.pattern == "kv/*"));
        let Lookup::Method(allow) = lookup(&Method::POST, "agent/self") else { panic!("known path") };
        assert_eq!(allow, vec![Method::GET]);
        let Lookup::Method(allow) = lookup(&Method::PATCH, "operator/keyring") else { panic!("known path") };
        assert_eq!(allow, vec![Method::GET, Method::POST, Method::PUT, Method::DELETE]);
        assert!(matches!(lookup(&Method::GET, "agent/nonexistent"), Lookup::Unknown));
        assert!(
            matches!(lookup(&Method::GET, "catalog/service/"), Lookup::Found(r, "") if r.need == Invalid("Missing service name"))
        );
        assert!(matches!(lookup(&Method::GET, "catalog/service"), Lookup::Found(r, _) if matches!(r.need, Invalid(_))));
        assert!(
            matches!(lookup(&Method::GET, "catalog/service/web"), Lookup::Found(r, "web") if r.pattern == "catalog/service/+")
        );
    }

    #[test]
    fn metric_labels_name_the_route() {
        let label = |m: &Method, p: &str| match lookup(m, p) {
            Lookup::Found(r, _) => r.metric(),
            _ => panic!("{p}"),
        };
        assert_eq!(label(&Method::GET, "kv/a/b"), "v1_kv_");
        assert_eq!(label(&Method::GET, "agent/self"), "v1_agent_self");
        assert_eq!(label(&Method::GET, "health/service/web"), "v1_health_service_");
        assert_eq!(label(&Method::PUT, "agent/service/register"), "v1_agent_service_register");
        let compat = |m: &Method, p: &str| match lookup(m, p) {
            Lookup::Found(r, _) => r.compat_metric(),
            _ => panic!("{p}"),
        };
        assert_eq!(compat(&Method::GET, "kv/a/b"), "v1.kv._");
        assert_eq!(compat(&Method::GET, "agent/self"), "v1.agent.self");
        assert_eq!(compat(&Method::GET, "health/service/web"), "v1.health.service._");
    }
}
