//! This server's answers to the typed calls of the RPC port that need the agent's layers
//! (`legate_raft::endpoints`): forwarded HTTP calls run through this server's handlers; a
//! client agent's catalog writes, and the KV writes made through it, are checked against their
//! token before they are applied; its view of the plugin registry and the chunks it fetches
//! are filtered by its token's `plugin:read`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{forward, Ctx};
use legate_acl::{Access, Authz, Denied, Resource};
use legate_agent::acl::ResolveError;
use legate_raft::command::{Command, CommandResponse};
use legate_raft::endpoints::{EndpointError, Endpoints};
use legate_raft::rpc::{HttpCall, HttpReply};
use legate_state::kv::{KvOp, KvVerb};

/// Weak: the server must not keep the agent (and its stores) alive after shutdown.
pub struct ServerEndpoints(pub Weak<Ctx>);

impl ServerEndpoints {
    fn ctx(&self) -> Result<Arc<Ctx>, EndpointError> {
        self.0.upgrade().ok_or_else(|| EndpointError::Unavailable("agent is shutting down".into()))
    }

    /// The caller's authorizer. A call without a token is anonymous: the client agent puts its
    /// own default token in when the request had none, so this server's must not stand in.
    async fn authorize(&self, ctx: &Ctx, token: Option<&str>) -> Result<Arc<Authz>, EndpointError> {
        let secret = token.unwrap_or(legate_acl::ANONYMOUS_SECRET);
        ctx.agent.acl.authorize(&ctx.agent, Some(secret)).await.map_err(|e| match e {
            ResolveError::NotFound => EndpointError::AclNotFound,
            ResolveError::Unavailable(why) => EndpointError::Unavailable(why),
        })
    }
}

#[async_trait::async_trait]
impl Endpoints for ServerEndpoints {
    async fn http(&self, call: HttpCall) -> HttpReply {
        match self.ctx() {
            Ok(ctx) => forward::serve_call(&ctx, call).await,
            Err(e) => HttpReply { status: 500, headers: Vec::new(), body: e.to_string().into_bytes() },
        }
    }

    async fn catalog_write(&self, token: Option<String>, cmd: Command) -> Result<CommandResponse, EndpointError> {
        let ctx = self.ctx()?;
        let authz = self.authorize(&ctx, token.as_deref()).await?;
        may_write(&authz, &cmd).map_err(|d| EndpointError::PermissionDenied(d.0))?;
        ctx.agent.catalog_apply(cmd).await.map_err(|e| EndpointError::Unavailable(e.to_string()))
    }

    async fn kv_write(&self, token: Option<String>, op: KvOp) -> Result<CommandResponse, EndpointError> {
        let ctx = self.ctx()?;
        let authz = self.authorize(&ctx, token.as_deref()).await?;
        let allowed = if op.verb == KvVerb::DeleteTree {
            authz.key_prefix_allows(&op.key, Access::Write)
        } else {
            authz.allowed(Resource::Key, &op.key, Access::Write)
        };
        if !allowed {
            return Err(EndpointError::PermissionDenied(authz.denied(Resource::Key, &op.key, Access::Write).0));
        }
        let server = ctx.agent.server().ok_or_else(|| EndpointError::Unavailable("not a server".into()))?;
        super::kv::apply_on_server(server, op).await.map_err(|e| EndpointError::Unavailable(e.to_string()))
    }

    async fn plugin_list(
        &self,
        token: Option<String>,
        index: u64,
        wait: Duration,
    ) -> Result<(u64, String), EndpointError> {
        let ctx = self.ctx()?;
        let authz = self.authorize(&ctx, token.as_deref()).await?;
        let store = ctx.agent.server().ok_or_else(|| EndpointError::Unavailable("not a server".into()))?.store.clone();
        super::plugin::view_for(&ctx, &store, &authz, index, wait.min(ctx.agent.config().max_query_time.0)).await
    }

    async fn plugin_chunk(&self, token: Option<String>, sha256: String, chunk: u32) -> Result<Vec<u8>, EndpointError> {
        let ctx = self.ctx()?;
        let authz = self.authorize(&ctx, token.as_deref()).await?;
        let store = ctx.agent.server().ok_or_else(|| EndpointError::Unavailable("not a server".into()))?.store.clone();
        tokio::task::spawn_blocking(move || super::plugin::chunk_for(&store, &authz, &sha256, chunk))
            .await
            .map_err(|e| EndpointError::Unavailable(e.to_string()))?
    }
}

/// What an agent's token may write to the catalog: registrations (node:write on the node,
/// unless only the node's service checks change; service:write on the service) and
/// deregistrations and network coordinates (node:write on the node); nothing else.
fn may_write(authz: &Authz, cmd: &Command) -> Result<(), Denied> {
    match cmd {
        Command::Register(r) => {
            if !(r.skip_node_update && r.checks.iter().all(|c| !c.service_id.is_empty())) {
                authz.require(Resource::Node, &r.node.node, Access::Write)?;
            }
            match &r.service {
                Some(s) => authz.require(Resource::Service, &s.service, Access::Write),
                None => Ok(()),
            }
        }
        Command::Deregister(d) => authz.require(Resource::Node, &d.node, Access::Write),
        // Consul's Coordinate.Update: node:write on every node updated.
        Command::Coordinates(updates) => {
            updates.iter().try_for_each(|u| authz.require(Resource::Node, &u.node, Access::Write))
        }
        _ => Err(Denied("Permission denied: agents may only write their catalog entries".into())),
    }
}
