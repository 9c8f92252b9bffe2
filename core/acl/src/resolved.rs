//! A token as an authorizer needs it, read from the replicated ACL tables: servers compile it
//! themselves; client agents receive it from a server over the RPC port and compile it.

use legate_state::{acl as store, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::{node_identity_rules, service_identity_rules, Authz, Rules, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET};

/// A token as an authorizer needs it: what a server sends a client agent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Resolved {
    pub accessor_id: String,
    pub management: bool,
    /// (rules text, legacy syntax).
    pub policies: Vec<(String, bool)>,
    pub service_identities: Vec<String>,
    pub node_identities: Vec<String>,
    /// Unix seconds the token expires at, 0 for never (cached authorizers expire with it).
    #[serde(default)]
    pub expires_unix: u64,
}

impl Resolved {
    pub fn compile(&self, default_allow: bool) -> Authz {
        if self.management {
            return Authz::management(&self.accessor_id);
        }
        let mut rules: Vec<Rules> = self
            .policies
            .iter()
            // Stored rules were validated when written.
            .filter_map(|(text, legacy)| Rules::parse(text, *legacy).ok())
            .collect();
        rules.extend(self.service_identities.iter().map(|s| service_identity_rules(s)));
        rules.extend(self.node_identities.iter().map(|n| node_identity_rules(n)));
        Authz::compile(&self.accessor_id, rules.iter(), default_allow)
    }
}

/// Reads a token by secret from a state store, with its roles and policies flattened.
pub fn resolve_in_store(store: &Store, secret: &str) -> Result<Option<Resolved>, StoreError> {
    let txn = store.read()?;
    let Some(token) = store::token_by_secret(&txn, secret)? else {
        // Before the leader has written the anonymous token, anonymous still resolves.
        return Ok((secret == ANONYMOUS_SECRET)
            .then(|| Resolved { accessor_id: ANONYMOUS_ACCESSOR.into(), ..Default::default() }));
    };
    if token.expires_unix != 0 && token.expires_unix <= now_unix() {
        return Ok(None);
    }
    let mut out = Resolved {
        accessor_id: token.accessor_id.clone(),
        management: token.legacy_type == "management",
        expires_unix: token.expires_unix,
        ..Default::default()
    };
    let mut policy_ids: Vec<String> = token.policies.iter().map(|l| l.id.clone()).collect();
    out.service_identities.extend(token.service_identities.iter().map(|s| s.service_name.clone()));
    out.node_identities.extend(token.node_identities.iter().map(|n| n.node_name.clone()));
    let mut templated = legate_state::acl_ext::token_ext(&txn, &token.accessor_id)?.templated_policies;
    for link in &token.roles {
        if let Some(role) = store::role(&txn, &link.id)? {
            policy_ids.extend(role.policies.iter().map(|l| l.id.clone()));
            out.service_identities.extend(role.service_identities.iter().map(|s| s.service_name.clone()));
            out.node_identities.extend(role.node_identities.iter().map(|n| n.node_name.clone()));
            templated.extend(legate_state::acl_ext::role_ext(&txn, &role.id)?.templated_policies);
        }
    }
    // Each templated policy is the synthetic policy its template renders to.
    let mut seen = std::collections::HashSet::new();
    for tp in templated {
        if let Some(t) = crate::templated::find(&tp.template_name) {
            let rules = t.render(tp.name.as_deref());
            if seen.insert(rules.clone()) {
                out.policies.push((rules, false));
            }
        }
    }
    policy_ids.sort();
    policy_ids.dedup();
    for id in policy_ids {
        if id == crate::GLOBAL_MANAGEMENT_ID {
            out.management = true;
        }
        if let Some(p) = store::policy(&txn, &id)? {
            out.policies.push((p.rules, p.legacy));
        }
    }
    Ok(Some(out))
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
