//! Consul's deprecated config keys, still accepted: each is moved to the key that replaced it
//! (the new key wins when a file sets both) with Consul's deprecation warning, so a config
//! written for an older Consul loads unchanged. The TLS keys are in `tls.rs`.

use serde_json::{Map as JsonMap, Value as Json};

/// Top-level keys and where they went.
const TOP_LEVEL: &[(&str, &[&str])] = &[
    ("acl_datacenter", &["primary_datacenter"]),
    ("acl_default_policy", &["acl", "default_policy"]),
    ("acl_down_policy", &["acl", "down_policy"]),
    ("acl_ttl", &["acl", "token_ttl"]),
    ("acl_enable_key_list_policy", &["acl", "enable_key_list_policy"]),
    ("acl_master_token", &["acl", "tokens", "initial_management"]),
    ("acl_agent_master_token", &["acl", "tokens", "agent_recovery"]),
    ("acl_agent_token", &["acl", "tokens", "agent"]),
    ("acl_token", &["acl", "tokens", "default"]),
    ("acl_replication_token", &["acl", "tokens", "replication"]),
    ("enable_acl_replication", &["acl", "enable_token_replication"]),
];

/// Keys inside `acl.tokens` and their new names.
const ACL_TOKENS: &[(&str, &str)] = &[("master", "initial_management"), ("agent_master", "agent_recovery")];

pub(crate) fn fold(name: &str, data: &mut JsonMap<String, Json>, warnings: &mut Vec<String>) {
    for (old, path) in TOP_LEVEL {
        let Some(value) = data.remove(*old) else { continue };
        let new = path.join(".");
        warnings.push(format!("{name}: The '{old}' field is deprecated. Use the '{new}' field instead."));
        match *old {
            // Consul: naming an ACL datacenter turned ACLs on.
            "acl_datacenter" => set_default(data, &["acl", "enabled"], Json::Bool(true)),
            // A replication token turned token replication on.
            "acl_replication_token" => set_default(data, &["acl", "enable_token_replication"], Json::Bool(true)),
            _ => {}
        }
        set_default(data, path, value);
    }
    let Some(Json::Object(acl)) = data.get_mut("acl") else { return };
    let Some(Json::Object(tokens)) = acl.get_mut("tokens") else { return };
    for (old, new) in ACL_TOKENS {
        let Some(value) = tokens.remove(*old) else { continue };
        warnings.push(format!(
            "{name}: The 'acl.tokens.{old}' field is deprecated. Use the 'acl.tokens.{new}' field instead."
        ));
        tokens.entry(new.to_string()).or_insert(value);
    }
}

/// Sets `path` to `value` unless the layer already sets it.
fn set_default(data: &mut JsonMap<String, Json>, path: &[&str], value: Json) {
    let (last, parents) = path.split_last().expect("a path has a key");
    let mut cursor = data;
    for p in parents {
        let entry = cursor.entry(p.to_string()).or_insert_with(|| Json::Object(JsonMap::new()));
        let Json::Object(next) = entry else { return };
        cursor = next;
    }
    cursor.entry(last.to_string()).or_insert(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn old_acl_keys_move_with_warnings_and_new_keys_win() {
        let mut data = json!({
            "acl_datacenter": "dc0",
            "acl_master_token": "m",
            "acl_default_policy": "deny",
            "acl_replication_token": "r",
            "acl": {"down_policy": "allow", "tokens": {"agent_master": "am", "default": "d"}},
            "acl_down_policy": "deny",
        })
        .as_object()
        .cloned()
        .unwrap();
        let mut warnings = Vec::new();
        fold("f.hcl", &mut data, &mut warnings);
        assert_eq!(
            Json::Object(data),
            json!({
                "primary_datacenter": "dc0",
                "acl": {
                    "enabled": true,
                    "default_policy": "deny",
                    "down_policy": "allow",
                    "enable_token_replication": true,
                    "tokens": {"initial_management": "m", "replication": "r", "agent_recovery": "am", "default": "d"},
                },
            })
        );
        assert_eq!(warnings.len(), 6, "{warnings:?}");
        assert!(warnings.contains(
            &"f.hcl: The 'acl_datacenter' field is deprecated. Use the 'primary_datacenter' field instead.".to_string()
        ));
    }
}
