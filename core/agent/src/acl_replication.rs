//! ACL replication, as Consul's secondary datacenters do it: the leader of a datacenter that is
//! not `primary_datacenter` copies the primary's policies, roles and (with
//! `acl.enable_token_replication`) global tokens into its own Raft, with `acl.tokens.replication`
//! as the token, waiting on the primary's ACL index between rounds. Local tokens (`Local: true`)
//! stay where they were made, on both sides. What was replicated keeps resolving here when the
//! primary is out of reach.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value as Json};
use tokio_util::sync::CancellationToken;

use legate_raft::command::Command;
use legate_raft::rpc::HttpCall;
use legate_raft::Server;
use legate_state::acl::{self as store, AclOp, Link, NodeIdentity, Policy, Role, ServiceIdentity, Token};
use legate_state::acl_ext::{self as ext, ExtTable, TemplatedPolicy, TokenExt};

use crate::AgentShared;

/// How long a round waits on the primary's index before it looks again.
const WAIT: &str = "60s";
/// The pause after a failed round.
const RETRY: Duration = Duration::from_secs(2);

/// What `/v1/acl/replication` reports.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub running: bool,
    pub replicated_index: u64,
    pub replicated_role_index: u64,
    pub replicated_token_index: u64,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<SystemTime>,
    pub last_error_message: String,
}

/// The replication state of this server.
#[derive(Default)]
pub struct Replication {
    status: Mutex<Status>,
}

impl Replication {
    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Whether this agent's datacenter replicates its ACLs from another one.
pub fn is_secondary(agent: &AgentShared) -> bool {
    let c = agent.config();
    c.acl.enabled && c.primary_datacenter() != c.datacenter
}

/// `/v1/acl/replication`'s body.
pub fn status_json(agent: &AgentShared) -> Json {
    let c = agent.config();
    let s = agent.acl_replication.status();
    let time = |t: Option<SystemTime>| legate_acl::builtin::httpdate_like(t.unwrap_or(SystemTime::UNIX_EPOCH));
    json!({
        "Enabled": is_secondary(agent),
        "Running": s.running,
        "SourceDatacenter": c.primary_datacenter(),
        "ReplicationType": if c.acl.enable_token_replication { "tokens" } else { "policies" },
        "ReplicatedIndex": s.replicated_index,
        "ReplicatedRoleIndex": s.replicated_role_index,
        "ReplicatedTokenIndex": s.replicated_token_index,
        "LastSuccess": time(s.last_success),
        "LastError": time(s.last_error),
        "LastErrorMessage": s.last_error_message,
    })
}

/// The leader duty (a no-op outside secondaries).
pub async fn run(agent: Arc<AgentShared>, server: Arc<Server>, stop: CancellationToken) {
    if !is_secondary(&agent) {
        return;
    }
    agent.acl_replication.update(|s| s.running = true);
    let mut index = 0u64;
    loop {
        let round = tokio::select! {
            _ = stop.cancelled() => break,
            r = round(&agent, &server, index) => r,
        };
        match round {
            Ok(i) => {
                index = i;
                agent.acl_replication.update(|s| {
                    s.replicated_index = i;
                    s.replicated_role_index = i;
                    if agent.config().acl.enable_token_replication {
                        s.replicated_token_index = i;
                    }
                    s.last_success = Some(SystemTime::now());
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "ACL replication from the primary datacenter failed");
                agent.acl_replication.update(|s| {
                    s.last_error = Some(SystemTime::now());
                    s.last_error_message = e.clone();
                });
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
    agent.acl_replication.update(|s| s.running = false);
}

/// A GET on the primary; the body and its `X-Consul-Index`.
async fn fetch(agent: &AgentShared, path: &str, query: Vec<(String, String)>) -> Result<(Json, u64), String> {
    let c = agent.config();
    let primary = c.primary_datacenter().to_string();
    let call = HttpCall {
        method: "GET".into(),
        path: path.to_string(),
        query,
        token: c.acl.tokens.replication.clone(),
        body: Vec::new(),
    };
    let reply = agent
        .forward_http_dc(&primary, call)
        .await
        .ok_or_else(|| format!("No path to the primary datacenter {primary:?}"))?
        .map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("{path}: {} {}", reply.status, String::from_utf8_lossy(&reply.body).trim()));
    }
    let index = reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Consul-Index"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_slice(&reply.body).map_err(|e| format!("{path}: {e}"))?;
    Ok((body, index))
}

/// One round: waits for the primary's ACL index to pass `index`, then copies what differs.
async fn round(agent: &AgentShared, server: &Server, index: u64) -> Result<u64, String> {
    let blocking = vec![("index".to_string(), index.to_string()), ("wait".to_string(), WAIT.to_string())];
    let (policies, new_index) = fetch(agent, "/v1/acl/policies", blocking).await?;
    let (roles, _) = fetch(agent, "/v1/acl/roles", Vec::new()).await?;
    let tokens = if agent.config().acl.enable_token_replication {
        Some(fetch(agent, "/v1/acl/tokens", Vec::new()).await?.0)
    } else {
        None
    };
    let mut ops = Vec::new();
    let txn = server.store.read().map_err(|e| e.to_string())?;

    // Policies: the list has no rules, so a new or changed one is read whole.
    let theirs: BTreeMap<String, &Json> =
        policies.as_array().into_iter().flatten().filter_map(|p| Some((p["ID"].as_str()?.to_string(), p))).collect();
    for (id, p) in &theirs {
        let mine = store::policy(&txn, id).map_err(|e| e.to_string())?;
        if mine.is_some_and(|m| m.hash == p["Hash"].as_str().unwrap_or_default()) {
            continue;
        }
        let (full, _) = fetch(agent, &format!("/v1/acl/policy/{id}"), Vec::new()).await?;
        ops.push(AclOp::PolicySet(policy_of(&full)));
    }
    for p in store::policies(&txn).map_err(|e| e.to_string())? {
        if !theirs.contains_key(&p.id) {
            ops.push(AclOp::PolicyDelete(p.id));
        }
    }

    // Roles, whole in the list.
    let theirs: BTreeMap<String, &Json> =
        roles.as_array().into_iter().flatten().filter_map(|r| Some((r["ID"].as_str()?.to_string(), r))).collect();
    for (id, r) in &theirs {
        let role = role_of(r);
        let mine = store::role(&txn, id).map_err(|e| e.to_string())?;
        let mine_ext = ext::role_ext(&txn, id).map_err(|e| e.to_string())?;
        let templated = templated_of(&r["TemplatedPolicies"]);
        if mine.as_ref().is_some_and(|m| same_role(m, &role)) && mine_ext.templated_policies == templated {
            continue;
        }
        ops.push(AclOp::RoleSet(role));
        let x = ext::RoleExt { templated_policies: templated };
        ops.push(AclOp::ExtSet { table: ExtTable::RoleExt, key: id.clone(), json: ext::encode(&x) });
    }
    for r in store::roles(&txn).map_err(|e| e.to_string())? {
        if !theirs.contains_key(&r.id) {
            ops.push(AclOp::RoleDelete(r.id));
        }
    }

    // Global tokens (the primary's local ones stay there; ours stay here).
    if let Some(tokens) = tokens {
        let theirs: BTreeMap<String, &Json> = tokens
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["Local"] != true)
            .filter_map(|t| Some((t["AccessorID"].as_str()?.to_string(), t)))
            .collect();
        for (id, t) in &theirs {
            if t["SecretID"].as_str().is_none_or(|s| s == "<hidden>") {
                return Err("the replication token may not read token secrets (it needs acl = \"write\")".into());
            }
            let token = token_of(t);
            let x = TokenExt {
                templated_policies: templated_of(&t["TemplatedPolicies"]),
                auth_method: t["AuthMethod"].as_str().unwrap_or_default().to_string(),
            };
            let mine = store::token(&txn, id).map_err(|e| e.to_string())?;
            let mine_ext = ext::token_ext(&txn, id).map_err(|e| e.to_string())?;
            if mine.as_ref().is_some_and(|m| same_token(m, &token)) && mine_ext == x {
                continue;
            }
            ops.push(AclOp::TokenSet(token));
            ops.push(AclOp::ExtSet { table: ExtTable::TokenExt, key: id.clone(), json: ext::encode(&x) });
        }
        for t in store::tokens(&txn).map_err(|e| e.to_string())? {
            if !t.local && !theirs.contains_key(&t.accessor_id) {
                ops.push(AclOp::TokenDelete(t.accessor_id));
            }
        }
    }
    drop(txn);
    if !ops.is_empty() {
        tracing::info!(changes = ops.len(), "ACL replication: applying the primary's changes");
        server.apply(Command::Acl(ops)).await.map_err(|e| e.to_string())?;
    }
    Ok(new_index.max(1))
}

fn text(v: &Json, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn links(v: &Json) -> Vec<Link> {
    v.as_array().into_iter().flatten().map(|l| Link { id: text(l, "ID"), name: text(l, "Name") }).collect()
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

fn service_identities(v: &Json) -> Vec<ServiceIdentity> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| ServiceIdentity { service_name: text(s, "ServiceName"), datacenters: strings(&s["Datacenters"]) })
        .collect()
}

fn node_identities(v: &Json) -> Vec<NodeIdentity> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|n| NodeIdentity { node_name: text(n, "NodeName"), datacenter: text(n, "Datacenter") })
        .collect()
}

fn templated_of(v: &Json) -> Vec<TemplatedPolicy> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|t| TemplatedPolicy {
            template_name: text(t, "TemplateName"),
            name: t["TemplateVariables"]["name"].as_str().map(str::to_string),
            datacenters: strings(&t["Datacenters"]),
        })
        .collect()
}

fn policy_of(p: &Json) -> Policy {
    Policy {
        id: text(p, "ID"),
        name: text(p, "Name"),
        description: text(p, "Description"),
        rules: text(p, "Rules"),
        datacenters: strings(&p["Datacenters"]),
        hash: text(p, "Hash"),
        legacy: false,
        create_index: 0,
        modify_index: 0,
    }
}

fn role_of(r: &Json) -> Role {
    Role {
        id: text(r, "ID"),
        name: text(r, "Name"),
        description: text(r, "Description"),
        policies: links(&r["Policies"]),
        service_identities: service_identities(&r["ServiceIdentities"]),
        node_identities: node_identities(&r["NodeIdentities"]),
        hash: text(r, "Hash"),
        create_index: 0,
        modify_index: 0,
    }
}

fn token_of(t: &Json) -> Token {
    let expiration_time = text(t, "ExpirationTime");
    Token {
        accessor_id: text(t, "AccessorID"),
        secret_id: text(t, "SecretID"),
        description: text(t, "Description"),
        policies: links(&t["Policies"]),
        roles: links(&t["Roles"]),
        service_identities: service_identities(&t["ServiceIdentities"]),
        node_identities: node_identities(&t["NodeIdentities"]),
        local: false,
        expires_unix: unix_of_rfc3339(&expiration_time).unwrap_or(0),
        expiration_time,
        create_time: text(t, "CreateTime"),
        hash: text(t, "Hash"),
        legacy_type: String::new(),
        create_index: 0,
        modify_index: 0,
    }
}

/// Whether a stored role already holds what the primary has (indexes aside).
fn same_role(a: &Role, b: &Role) -> bool {
    (&a.name, &a.description, &a.policies, &a.service_identities, &a.node_identities, &a.hash)
        == (&b.name, &b.description, &b.policies, &b.service_identities, &b.node_identities, &b.hash)
}

fn same_token(a: &Token, b: &Token) -> bool {
    let key = |t: &Token| {
        (
            t.secret_id.clone(),
            t.description.clone(),
            t.policies.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
            t.roles.iter().map(|l| l.id.clone()).collect::<Vec<_>>(),
            t.service_identities.clone(),
            t.node_identities.clone(),
            t.expiration_time.clone(),
            t.hash.clone(),
        )
    };
    key(a) == key(b)
}

/// Unix seconds of an RFC 3339 time (a token's `ExpirationTime`).
fn unix_of_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_their_text() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_400_123);
        let text = legate_acl::builtin::httpdate_like(t);
        assert_eq!(unix_of_rfc3339(&text), Some(1_796_400_123), "{text}");
        assert_eq!(unix_of_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_of_rfc3339("2000-03-01T00:00:00.5Z"), Some(951_868_800));
        assert_eq!(unix_of_rfc3339("nonsense"), None);
    }

    #[test]
    fn tokens_from_their_json() {
        let t = token_of(&json!({"AccessorID": "a", "SecretID": "s", "Policies": [{"ID": "p", "Name": "n"}],
            "ServiceIdentities": [{"ServiceName": "web"}], "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
            "Local": false, "ExpirationTime": "1970-01-01T00:01:00Z"}));
        assert_eq!((t.accessor_id.as_str(), t.secret_id.as_str(), t.expires_unix), ("a", "s", 60));
        assert_eq!(t.policies, [Link { id: "p".into(), name: "n".into() }]);
        assert_eq!(t.service_identities[0].service_name, "web");
        assert_eq!(t.node_identities[0].datacenter, "dc1");
    }
}
