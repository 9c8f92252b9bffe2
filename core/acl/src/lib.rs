//! legate-acl: the ACL rules language (HCL or JSON) and the authorizer a token's policies
//! compile into. Resolving a request's secret to an authorizer happens in the agent, against
//! the replicated ACL tables.
//!
//! Precedence, as Consul's: an exact rule (`key "a"`) beats every prefix rule; among prefix
//! rules the longest prefix wins; several policies naming the same segment merge with
//! deny > write > list > read; nothing matching falls back to the agent's `default_policy`.
//! A token linked to `global-management` may do everything.

pub mod builtin;
pub mod resolved;
pub mod templated;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

/// The anonymous token (used when a request carries none and no default is set).
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_SECRET: &str = "anonymous";
/// The built-in management policy.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";

/// An access level a rule grants, or a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Access {
    Read,
    List,
    Write,
    Deny,
}

impl Access {
    pub fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "read" => Access::Read,
            "list" => Access::List,
            "write" => Access::Write,
            "deny" => Access::Deny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
            Access::Deny => "deny",
        }
    }

    /// Whether a granted level allows a needed one: write implies list and read, list implies
    /// read, deny allows nothing.
    pub fn allows(self, need: Access) -> bool {
        match self {
            Access::Deny => false,
            Access::Write => true,
            Access::List => need != Access::Write,
            Access::Read => need == Access::Read,
        }
    }

    /// Merge of two grants on the same segment (deny > write > list > read).
    fn merge(self, other: Access) -> Access {
        self.max(other)
    }
}

/// The resources rules name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Key,
    Service,
    Node,
    Session,
    Event,
    Query,
    Agent,
    /// Plugin registry names (`/v1/plugin`).
    Plugin,
    /// Scalar resources (no segment): the segment is ignored.
    Operator,
    Keyring,
    Acl,
    Mesh,
    Peering,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Service => "service",
            Resource::Node => "node",
            Resource::Session => "session",
            Resource::Event => "event",
            Resource::Query => "query",
            Resource::Agent => "agent",
            Resource::Plugin => "plugin",
            Resource::Operator => "operator",
            Resource::Keyring => "keyring",
            Resource::Acl => "acl",
            Resource::Mesh => "mesh",
            Resource::Peering => "peering",
        }
    }

    const SEGMENTED: [Resource; 8] = [
        Resource::Key,
        Resource::Service,
        Resource::Node,
        Resource::Session,
        Resource::Event,
        Resource::Query,
        Resource::Agent,
        Resource::Plugin,
    ];
    const SCALAR: [Resource; 5] =
        [Resource::Operator, Resource::Keyring, Resource::Acl, Resource::Mesh, Resource::Peering];

    fn is_scalar(self) -> bool {
        Self::SCALAR.contains(&self)
    }
}

/// The rules of one policy, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// (resource, exact?) -> segment -> access.
    pub segments: BTreeMap<(Resource, bool), BTreeMap<String, Access>>,
    pub scalars: BTreeMap<Resource, Access>,
}

/// A rules text that does not parse, or names an unknown resource or policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesError(pub String);

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Failed to parse ACL rules: {}", self.0)
    }
}

impl Rules {
    /// Parses rules written in HCL or JSON. `legacy` rules (tokens of the legacy API) treat
    /// every segment rule as a prefix rule, as Consul's pre-1.4 rules did.
    pub fn parse(text: &str, legacy: bool) -> Result<Rules, RulesError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Rules::default());
        }
        let value: Json = if trimmed.starts_with('{') {
            serde_json::from_str(trimmed).map_err(|e| RulesError(format!("invalid JSON: {e}")))?
        } else {
            legate_hcl::from_str(trimmed).map_err(|e| RulesError(e.to_string()))?
        };
        let Json::Object(top) = value else {
            return Err(RulesError("rules must be an object".into()));
        };
        let mut rules = Rules::default();
        for (name, body) in top {
            let (base, prefix) = match name.strip_suffix("_prefix") {
                Some(b) => (b, true),
                None => (name.as_str(), false),
            };
            let resource = Resource::SEGMENTED
                .iter()
                .chain(Resource::SCALAR.iter())
                .copied()
                .find(|r| r.as_str() == base)
                .ok_or_else(|| RulesError(format!("unknown resource {name:?}")))?;
            if resource.is_scalar() {
                if prefix {
                    return Err(RulesError(format!("unknown resource {name:?}")));
                }
                let s = scalar_policy(&name, &body)?;
                rules.scalars.insert(resource, s);
                continue;
            }
            let exact = !prefix && !legacy;
            for (segment, access) in segment_rules(&name, &body)? {
                if access == Access::List && resource != Resource::Key {
                    return Err(RulesError(format!(
                        "invalid {name} policy for {segment:?}: \"list\" is only valid for keys"
                    )));
                }
                let map = rules.segments.entry((resource, exact)).or_default();
                let merged = map.get(&segment).map_or(access, |a| a.merge(access));
                map.insert(segment, merged);
            }
        }
        Ok(rules)
    }
}

fn scalar_policy(name: &str, body: &Json) -> Result<Access, RulesError> {
    let s = match body {
        Json::String(s) => s.as_str(),
        Json::Object(m) => m.get("policy").and_then(Json::as_str).unwrap_or_default(),
        _ => "",
    };
    match Access::parse(s) {
        Some(Access::List) | None => Err(RulesError(format!("invalid {name} policy: {s:?}"))),
        Some(a) => Ok(a),
    }
}

/// `key "a" { policy = "read" }` (HCL, one object per label) or JSON objects/arrays of them.
fn segment_rules(name: &str, body: &Json) -> Result<Vec<(String, Access)>, RulesError> {
    let mut out = Vec::new();
    let mut add = |segment: &str, rule: &Json| -> Result<(), RulesError> {
        let policy = match rule {
            Json::Object(m) => m.get("policy").and_then(Json::as_str).unwrap_or_default(),
            Json::String(s) => s.as_str(),
            _ => "",
        };
        let access = Access::parse(policy)
            .ok_or_else(|| RulesError(format!("invalid {name} policy for {segment:?}: {policy:?}")))?;
        out.push((segment.to_string(), access));
        Ok(())
    };
    match body {
        Json::Object(m) => {
            for (segment, rule) in m {
                add(segment, rule)?;
            }
        }
        Json::Array(items) => {
            for item in items {
                let Json::Object(m) = item else {
                    return Err(RulesError(format!("invalid {name} block")));
                };
                for (segment, rule) in m {
                    add(segment, rule)?;
                }
            }
        }
        _ => return Err(RulesError(format!("invalid {name} block"))),
    }
    Ok(out)
}

/// Rules for a service identity (`ServiceIdentities`): write on the service and its sidecar,
/// read on every service and node (for discovery).
pub fn service_identity_rules(name: &str) -> Rules {
    let mut r = Rules::default();
    let exact = r.segments.entry((Resource::Service, true)).or_default();
    exact.insert(name.to_string(), Access::Write);
    exact.insert(format!("{name}-sidecar-proxy"), Access::Write);
    r.segments.entry((Resource::Service, false)).or_default().insert(String::new(), Access::Read);
    r.segments.entry((Resource::Node, false)).or_default().insert(String::new(), Access::Read);
    r
}

/// Rules for a node identity (`NodeIdentities`): write on the node, read on every service,
/// and (Legate's addition to Consul's rules) read on every registry plugin, which agents fetch
/// with their agent token.
pub fn node_identity_rules(name: &str) -> Rules {
    let mut r = Rules::default();
    r.segments.entry((Resource::Node, true)).or_default().insert(name.to_string(), Access::Write);
    r.segments.entry((Resource::Service, false)).or_default().insert(String::new(), Access::Read);
    r.segments.entry((Resource::Plugin, false)).or_default().insert(String::new(), Access::Read);
    r
}

/// What a token may do: its policies merged, over the agent's default policy.
#[derive(Clone, Debug)]
pub struct Authz {
    /// AccessorID for error messages; empty when ACLs are off.
    pub accessor: String,
    management: bool,
    /// ACLs off: everything allowed, nothing filtered.
    disabled: bool,
    default_allow: bool,
    exact: HashMap<Resource, HashMap<String, Access>>,
    /// Per resource, (prefix, access) sorted by prefix length, longest first.
    prefix: HashMap<Resource, Vec<(String, Access)>>,
    scalars: HashMap<Resource, Access>,
}

impl Authz {
    /// ACLs disabled.
    pub fn disabled() -> Authz {
        Authz {
            accessor: String::new(),
            management: true,
            disabled: true,
            default_allow: true,
            exact: HashMap::new(),
            prefix: HashMap::new(),
            scalars: HashMap::new(),
        }
    }

    /// A management token (global-management).
    pub fn management(accessor: &str) -> Authz {
        Authz { accessor: accessor.to_string(), disabled: false, ..Authz::disabled() }
    }

    /// Compiles merged rules over the default policy.
    pub fn compile<'a>(accessor: &str, rules: impl IntoIterator<Item = &'a Rules>, default_allow: bool) -> Authz {
        let mut exact: HashMap<Resource, HashMap<String, Access>> = HashMap::new();
        let mut prefix_map: HashMap<Resource, HashMap<String, Access>> = HashMap::new();
        let mut scalars: HashMap<Resource, Access> = HashMap::new();
        for r in rules {
            for ((res, is_exact), segs) in &r.segments {
                let target =
                    if *is_exact { exact.entry(*res).or_default() } else { prefix_map.entry(*res).or_default() };
                for (seg, a) in segs {
                    let merged = target.get(seg).map_or(*a, |cur| cur.merge(*a));
                    target.insert(seg.clone(), merged);
                }
            }
            for (res, a) in &r.scalars {
                let merged = scalars.get(res).map_or(*a, |cur| cur.merge(*a));
                scalars.insert(*res, merged);
            }
        }
        let prefix = prefix_map
            .into_iter()
            .map(|(res, m)| {
                let mut v: Vec<(String, Access)> = m.into_iter().collect();
                v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
                (res, v)
            })
            .collect();
        Authz {
            accessor: accessor.to_string(),
            management: false,
            disabled: false,
            default_allow,
            exact,
            prefix,
            scalars,
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    pub fn is_management(&self) -> bool {
        self.management
    }

    /// The level granted on a resource segment, None when no rule matches.
    fn granted(&self, res: Resource, segment: &str) -> Option<Access> {
        if res.is_scalar() {
            return self.scalars.get(&res).copied();
        }
        if let Some(a) = self.exact.get(&res).and_then(|m| m.get(segment)) {
            return Some(*a);
        }
        self.prefix.get(&res)?.iter().find(|(p, _)| segment.starts_with(p.as_str())).map(|(_, a)| *a)
    }

    /// Whether `need` is allowed on `segment` of `res`.
    pub fn allowed(&self, res: Resource, segment: &str, need: Access) -> bool {
        if self.management {
            return true;
        }
        match self.granted(res, segment) {
            Some(a) => a.allows(need),
            // `acl` (and the snapshot, which needs `acl:write`) never follows the default
            // policy: as Consul's allow-all authorizer, `default_policy = "allow"` grants
            // everything except managing ACLs, which needs management or an explicit rule.
            None if res == Resource::Acl => false,
            // `list` on keys is only asked for when `enable_key_list_policy` is set; with a
            // rule-less key it follows the default like read.
            None => self.default_allow,
        }
    }

    /// Like [`allowed`](Self::allowed), as the 403 Consul answers.
    pub fn require(&self, res: Resource, segment: &str, need: Access) -> Result<(), Denied> {
        if self.allowed(res, segment, need) {
            Ok(())
        } else {
            Err(self.denied(res, segment, need))
        }
    }

    pub fn denied(&self, res: Resource, segment: &str, need: Access) -> Denied {
        let what = format!("{}:{}", res.as_str(), need.as_str());
        Denied(if res.is_scalar() {
            format!("Permission denied: token with AccessorID '{}' lacks permission '{what}'", self.accessor)
        } else {
            format!(
                "Permission denied: token with AccessorID '{}' lacks permission '{what}' on {segment:?}",
                self.accessor
            )
        })
    }

    /// Whether `need` is allowed on every key under `prefix` (recursive deletes and tree
    /// reads): the prefix itself allows it and no rule under the prefix takes it away.
    pub fn key_prefix_allows(&self, prefix: &str, need: Access) -> bool {
        if self.management {
            return true;
        }
        if !self.allowed(Resource::Key, prefix, need) {
            return false;
        }
        let exact = self.exact.get(&Resource::Key).into_iter().flat_map(|m| m.iter());
        let pre = self.prefix.get(&Resource::Key).into_iter().flat_map(|v| v.iter().map(|(k, a)| (k, a)));
        exact.chain(pre).all(|(seg, a)| !seg.starts_with(prefix) || a.allows(need))
    }

    /// Whether the token's results are filtered silently (anonymous results are not flagged).
    pub fn flags_filtering(&self) -> bool {
        !self.disabled && self.accessor != ANONYMOUS_ACCESSOR
    }
}

/// A 403.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied(pub String);

/// Constant-time comparison of two secrets.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(text: &str, default_allow: bool) -> Authz {
        let r = Rules::parse(text, false).unwrap();
        Authz::compile("acc", [&r], default_allow)
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let a = authz(
            r#"
            key_prefix "" { policy = "read" }
            key_prefix "app/" { policy = "write" }
            key_prefix "app/secret/" { policy = "deny" }
            key "app/secret/open" { policy = "read" }
            key "app" { policy = "deny" }
            "#,
            false,
        );
        assert!(a.allowed(Resource::Key, "other", Access::Read));
        assert!(!a.allowed(Resource::Key, "other", Access::Write));
        assert!(a.allowed(Resource::Key, "app/x", Access::Write));
        assert!(!a.allowed(Resource::Key, "app/secret/x", Access::Read));
        assert!(a.allowed(Resource::Key, "app/secret/open", Access::Read));
        assert!(!a.allowed(Resource::Key, "app/secret/open", Access::Write));
        // exact "app" denies although the "" prefix reads; "app/" prefix does not match "app"
        assert!(!a.allowed(Resource::Key, "app", Access::Read));
        assert!(a.allowed(Resource::Key, "apple", Access::Read));
    }

    #[test]
    fn plugin_rules_name_the_registry() {
        let a = authz(
            r#"
            plugin_prefix "" { policy = "read" }
            plugin "http_json" { policy = "write" }
            "#,
            false,
        );
        assert!(a.allowed(Resource::Plugin, "any", Access::Read));
        assert!(!a.allowed(Resource::Plugin, "any", Access::Write));
        assert!(a.allowed(Resource::Plugin, "http_json", Access::Write));
        let list = Rules::parse(r#"plugin_prefix "" { policy = "list" }"#, false).unwrap_err();
        assert!(list.0.contains("only valid for keys"), "{}", list.0);
        let node = Authz::compile("n", [&node_identity_rules("n1")], false);
        assert!(node.allowed(Resource::Plugin, "http_json", Access::Read));
        assert!(!node.allowed(Resource::Plugin, "http_json", Access::Write));
    }

    #[test]
    fn deny_beats_allow_at_equal_specificity_across_policies() {
        let p1 = Rules::parse(r#"service "web" { policy = "write" }"#, false).unwrap();
        let p2 = Rules::parse(r#"service "web" { policy = "deny" }"#, false).unwrap();
        let p3 = Rules::parse(r#"service_prefix "" { policy = "write" }"#, false).unwrap();
        let a = Authz::compile("x", [&p1, &p2, &p3], true);
        assert!(!a.allowed(Resource::Service, "web", Access::Read));
        assert!(a.allowed(Resource::Service, "api", Access::Write));
        // write beats read at equal specificity
        let r1 = Rules::parse(r#"node_prefix "n" { policy = "read" }"#, false).unwrap();
        let r2 = Rules::parse(r#"node_prefix "n" { policy = "write" }"#, false).unwrap();
        let b = Authz::compile("x", [&r1, &r2], false);
        assert!(b.allowed(Resource::Node, "n1", Access::Write));
    }

    #[test]
    fn default_policy_applies_when_nothing_matches() {
        let deny = authz(r#"key "a" { policy = "read" }"#, false);
        assert!(!deny.allowed(Resource::Service, "web", Access::Read));
        assert!(!deny.allowed(Resource::Operator, "", Access::Read));
        let allow = authz(r#"key "a" { policy = "read" }"#, true);
        assert!(allow.allowed(Resource::Service, "web", Access::Write));
        assert!(!allow.allowed(Resource::Key, "a", Access::Write));
    }

    #[test]
    fn acl_rights_never_come_from_the_default_policy() {
        let allow = authz(r#"key "a" { policy = "read" }"#, true);
        assert!(!allow.allowed(Resource::Acl, "", Access::Read));
        assert!(!allow.allowed(Resource::Acl, "", Access::Write));
        // operator and keyring do follow it
        assert!(allow.allowed(Resource::Operator, "", Access::Write));
        assert!(allow.allowed(Resource::Keyring, "", Access::Write));
        let reader = authz(r#"acl = "read""#, true);
        assert!(reader.allowed(Resource::Acl, "", Access::Read));
        assert!(!reader.allowed(Resource::Acl, "", Access::Write));
        let writer = authz(r#"acl = "write""#, false);
        assert!(writer.allowed(Resource::Acl, "", Access::Write));
        assert!(Authz::management("m").allowed(Resource::Acl, "", Access::Write));
    }

    #[test]
    fn scalar_rules_and_json_syntax() {
        let a = authz(
            r#"{"operator": "read", "keyring": "write", "acl": "deny", "session_prefix": {"": {"policy": "write"}},
                "event": [{"deploy": {"policy": "write"}}]}"#,
            false,
        );
        assert!(a.allowed(Resource::Operator, "", Access::Read));
        assert!(!a.allowed(Resource::Operator, "", Access::Write));
        assert!(a.allowed(Resource::Keyring, "", Access::Write));
        assert!(!a.allowed(Resource::Acl, "", Access::Read));
        assert!(a.allowed(Resource::Session, "node1", Access::Write));
        assert!(a.allowed(Resource::Event, "deploy", Access::Write));
        assert!(!a.allowed(Resource::Event, "deploy2", Access::Read));
    }

    #[test]
    fn list_is_between_read_and_write() {
        let a = authz(r#"key_prefix "l/" { policy = "list" }"#, false);
        assert!(a.allowed(Resource::Key, "l/x", Access::List));
        assert!(a.allowed(Resource::Key, "l/x", Access::Read));
        assert!(!a.allowed(Resource::Key, "l/x", Access::Write));
    }

    #[test]
    fn bad_rules_are_rejected_with_the_reason() {
        for (text, want) in [
            (r#"key "a" { policy = "sometimes" }"#, "invalid key policy"),
            (r#"keys "a" { policy = "read" }"#, "unknown resource"),
            (r#"operator = "list""#, "invalid operator policy"),
            (r#"service "a" { policy = "list" }"#, "only valid for keys"),
            ("key \"a\" { policy = ", "At 1:"),
            ("{\"key\": ", "invalid JSON"),
        ] {
            let err = Rules::parse(text, false).unwrap_err().to_string();
            assert!(err.starts_with("Failed to parse ACL rules: "), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn legacy_rules_are_prefix_rules() {
        let r = Rules::parse(r#"key "foo" { policy = "write" }"#, true).unwrap();
        let a = Authz::compile("x", [&r], false);
        assert!(a.allowed(Resource::Key, "foo/bar", Access::Write));
        let modern = Authz::compile("x", [&Rules::parse(r#"key "foo" { policy = "write" }"#, false).unwrap()], false);
        assert!(!modern.allowed(Resource::Key, "foo/bar", Access::Write));
    }

    #[test]
    fn identities_and_recursive_key_writes() {
        let a = Authz::compile("x", [&service_identity_rules("web")], false);
        assert!(a.allowed(Resource::Service, "web", Access::Write));
        assert!(!a.allowed(Resource::Service, "db", Access::Write));
        assert!(a.allowed(Resource::Node, "any", Access::Read));
        let k = authz("key_prefix \"a/\" { policy = \"write\" }\nkey \"a/locked\" { policy = \"read\" }", false);
        assert!(!k.key_prefix_allows("a/", Access::Write));
        assert!(k.key_prefix_allows("a/", Access::Read));
        assert!(k.key_prefix_allows("a/b/", Access::Write));
    }

    #[test]
    fn secrets_compare_in_full() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "ab"));
        assert!(!secret_eq("", "a"));
        assert!(secret_eq("", ""));
    }

    #[test]
    fn messages_name_accessor_permission_and_segment() {
        let a = authz("", false);
        let Denied(msg) = a.require(Resource::Key, "foo", Access::Write).unwrap_err();
        assert_eq!(msg, "Permission denied: token with AccessorID 'acc' lacks permission 'key:write' on \"foo\"");
    }
}
