//! Templated policies (Consul 1.17+): builtin rule templates a token or role names with its
//! variables (`builtin/service` with `name = "web"`), turned into a synthetic policy when the
//! token is resolved. The templates and their texts are Consul 1.21's (the API returns them
//! verbatim, so clients compare them): `templates/*.hcl`, and one JSON schema for the three
//! that take a `name`.

use serde_json::{json, Value as Json};

/// The schema of the templates that take a `name` (Consul's `Schema`, verbatim).
pub const NAME_SCHEMA: &str = include_str!("templates/name.schema.json");

/// A builtin template.
#[derive(Debug, PartialEq)]
pub struct Template {
    pub name: &'static str,
    /// Consul's internal ID (shown as `TemplateID` on tokens and roles).
    pub id: &'static str,
    pub description: &'static str,
    /// The rules, with `{{.Name}}` where the name goes.
    pub template: &'static str,
    /// Whether the template takes a `name` (its schema is [`NAME_SCHEMA`]; others have none).
    pub takes_name: bool,
    /// What the name checks: service or node identity names (lowercase), or anything.
    name_kind: NameKind,
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum NameKind {
    None,
    Service,
    Node,
    Any,
}

/// Consul 1.21's builtin templates, by name.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "builtin/api-gateway",
        id: "00000000-0000-0000-0000-000000000008",
        description: "Gives the token or role permissions for a Consul api gateway",
        template: include_str!("templates/api-gateway.hcl"),
        takes_name: true,
        name_kind: NameKind::Any,
    },
    Template {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        template: include_str!("templates/dns.hcl"),
        takes_name: false,
        name_kind: NameKind::None,
    },
    Template {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        template: include_str!("templates/node.hcl"),
        takes_name: true,
        name_kind: NameKind::Node,
    },
    Template {
        name: "builtin/nomad-client",
        id: "00000000-0000-0000-0000-000000000009",
        description: "Gives the token or role permissions required for integration with a nomad client.",
        template: include_str!("templates/nomad-client.hcl"),
        takes_name: false,
        name_kind: NameKind::None,
    },
    Template {
        name: "builtin/nomad-server",
        id: "00000000-0000-0000-0000-000000000006",
        description: "Gives the token or role permissions required for integration with a nomad server.",
        template: include_str!("templates/nomad-server.hcl"),
        takes_name: false,
        name_kind: NameKind::None,
    },
    Template {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        template: include_str!("templates/service.hcl"),
        takes_name: true,
        name_kind: NameKind::Service,
    },
];

/// The template called `name`.
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Service and node identity names: lowercase letters, digits, '-' and '_', not starting or
/// ending with '-' or '_', 1 to 256 characters (Consul's rule).
pub fn valid_identity_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 256 && b.iter().all(inner) && edge(&b[0]) && edge(&b[b.len() - 1])
}

impl Template {
    /// The schema as the API shows it ("" for templates without variables).
    pub fn schema(&self) -> &'static str {
        if self.takes_name {
            NAME_SCHEMA
        } else {
            ""
        }
    }

    /// `{TemplateName, Schema, Template, Description}`, as the templated-policy endpoints answer.
    pub fn to_json(&self) -> Json {
        json!({
            "TemplateName": self.name,
            "Schema": self.schema(),
            "Template": self.template,
            "Description": self.description,
        })
    }

    /// Checks the variables (`vars`: None when none were given at all) in Consul's order: the
    /// identity-name rule first, then the schema (a missing `name`).
    pub fn validate(&self, vars: Option<&str>) -> Result<(), String> {
        if !self.takes_name {
            return Ok(());
        }
        if let Some(name) = vars {
            match self.name_kind {
                NameKind::Service if !valid_identity_name(name) => {
                    return Err(format!(
                        "service identity {name:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
                    ))
                }
                NameKind::Node if !valid_identity_name(name) => {
                    return Err(format!(
                        "node identity {name:?}  has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
                    ))
                }
                _ => {}
            }
        }
        match vars {
            None => Err("1 error occurred:\n\t* Invalid type. Expected: object, given: null\n\n".into()),
            Some("") => Err("1 error occurred:\n\t* name is required\n\n".into()),
            Some(_) => Ok(()),
        }
    }

    /// The rules for these variables.
    pub fn render(&self, name: Option<&str>) -> String {
        self.template.replace("{{.Name}}", name.unwrap_or_default())
    }
}

/// The synthetic policy a templated policy stands for, as Consul names it: the ID is the hex
/// of the rules followed by the hex of the empty FNV-128a hash (Consul appends the hash of
/// nothing to the rules with Go's `Sum(b)`), the name `synthetic-policy-<ID>`, and a
/// BLAKE2b-256 hash of name, description and rules.
pub fn synthetic_policy(template: &Template, name: Option<&str>, datacenters: &[String]) -> Json {
    use base64::Engine;
    use blake2::Digest;
    let rules = template.render(name);
    let id = format!("{}6c62272e07bb014262b821756295c58d", hex::encode(rules.as_bytes()));
    let policy_name = format!("synthetic-policy-{id}");
    let description = format!("synthetic policy generated from templated policy: {}", template.name);
    let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    h.update(policy_name.as_bytes());
    h.update(description.as_bytes());
    h.update(rules.as_bytes());
    for dc in datacenters {
        h.update(dc.as_bytes());
    }
    let mut v = json!({
        "ID": id,
        "Name": policy_name,
        "Description": description,
        "Rules": rules,
        "Hash": base64::engine::general_purpose::STANDARD.encode(h.finalize()),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    });
    if !datacenters.is_empty() {
        v["Datacenters"] = json!(datacenters);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rules;

    #[test]
    fn every_template_renders_rules_that_parse() {
        for t in TEMPLATES {
            let rules = t.render(Some("web"));
            assert!(Rules::parse(&rules, false).is_ok(), "{}: {rules}", t.name);
            assert_eq!(t.schema().is_empty(), !t.takes_name);
        }
        assert_eq!(find("builtin/service").unwrap().template.len(), 173);
        assert!(find("builtin/workload-identity").is_none(), "removed before Consul 1.21");
    }

    #[test]
    fn validation_as_consul_orders_it() {
        let svc = find("builtin/service").unwrap();
        assert!(svc.validate(Some("web")).is_ok());
        assert_eq!(
            svc.validate(Some("")).unwrap_err(),
            "service identity \"\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
        );
        assert!(svc.validate(Some("Web")).is_err());
        assert!(svc.validate(None).unwrap_err().contains("Expected: object, given: null"));
        let node = find("builtin/node").unwrap();
        assert!(node.validate(Some("-n")).unwrap_err().starts_with("node identity \"-n\"  has"));
        let gw = find("builtin/api-gateway").unwrap();
        assert_eq!(gw.validate(Some("")).unwrap_err(), "1 error occurred:\n\t* name is required\n\n");
        assert!(gw.validate(Some("Any Name")).is_ok());
        assert!(find("builtin/dns").unwrap().validate(None).is_ok());
    }

    /// The docs' sample preview of builtin/service with name "web".
    #[test]
    fn synthetic_policy_matches_consuls_sample() {
        let p = synthetic_policy(find("builtin/service").unwrap(), Some("web"), &[]);
        assert_eq!(p["Hash"], "b04MnvCVtBXZAmGe4uDpGLABJoGo2nNhEJkqaN5E5x4=");
        let id = p["ID"].as_str().unwrap();
        assert!(id.starts_with("0a73657276696365202277656222207b"), "{id}");
        assert!(id.ends_with("6c62272e07bb014262b821756295c58d"));
        assert_eq!(p["Name"], format!("synthetic-policy-{id}"));
        assert!(p.get("Datacenters").is_none());
    }
}
