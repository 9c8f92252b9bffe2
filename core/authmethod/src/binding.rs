//! Binding rules: which rules a verified identity matches (selectors in the filter language over
//! `value.<name>` and `list.<name>`), and what each one binds: a service or node identity, a
//! role or policy by name, or a templated policy, with `${value.<name>}` interpolated
//! (lower-cased) into the bind name and variables.

use std::collections::BTreeMap;

use legate_acl::templated;
use legate_filter::Filter;
use legate_state::acl_ext::BindingRule;
use serde_json::{json, Value as Json};

use crate::jwt::Verified;

pub const BIND_TYPES: &[&str] = &["service", "node", "role", "policy", "templated-policy"];

/// What a login's matching rules bind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bindings {
    pub service_identities: Vec<String>,
    pub node_identities: Vec<String>,
    /// Role and policy names (the caller skips those that do not exist).
    pub roles: Vec<String>,
    pub policies: Vec<String>,
    /// (template, name variable).
    pub templated: Vec<(String, Option<String>)>,
}

/// `${value.<name>}` in `text` replaced from `vars` (values lower-cased); text outside `${...}`
/// stays as it is. Errors are HIL's texts.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("error interpreting template: unterminated interpolation in {text:?}"))?;
        let name = after[..end].trim();
        if name.is_empty() {
            return Err(format!("error interpreting template: empty interpolation in {text:?}"));
        }
        let v =
            vars.get(name).ok_or_else(|| format!("error interpreting template: unknown variable accessed: {name}"))?;
        out.push_str(&v.to_lowercase());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_role_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Consul's policy names: `name` or `ns/name`, not starting with `/` or `builtin/`.
fn valid_policy_name(s: &str) -> bool {
    let ok = |p: &str| p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    let mut parts = s.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    !s.is_empty() && s.len() <= 128 && !first.is_empty() && ok(first) && ok(second) && !s.starts_with("builtin/")
}

/// The projected variables (`value.<name>`, "" for absent claims).
fn vars_of(names: &[String], v: &Verified) -> BTreeMap<String, String> {
    names.iter().map(|n| (format!("value.{n}"), v.values.get(n).cloned().unwrap_or_default())).collect()
}

/// One rule's binding for these variables; `at_login` applies Consul's login-time name checks.
fn bind_one(
    rule: &BindingRule,
    vars: &BTreeMap<String, String>,
    at_login: bool,
    out: &mut Bindings,
) -> Result<(), String> {
    let name = interpolate(&rule.bind_name, vars)?;
    let invalid = || format!("invalid bind name: {name:?}");
    match rule.bind_type.as_str() {
        "service" | "node" => {
            if !templated::valid_identity_name(&name) {
                return Err(invalid());
            }
            let list = if rule.bind_type == "service" { &mut out.service_identities } else { &mut out.node_identities };
            if !list.contains(&name) {
                list.push(name);
            }
        }
        "role" => {
            if !valid_role_name(&name) {
                return Err(invalid());
            }
            out.roles.push(name);
        }
        "policy" => {
            // Consul checks policy bind names with the role rule at login.
            let ok = if at_login { valid_role_name(&name) } else { valid_policy_name(&name) };
            if !ok {
                return Err(invalid());
            }
            out.policies.push(name);
        }
        "templated-policy" => {
            let t = templated::find(&name).ok_or_else(|| {
                format!("Bind name for templated-policy bind type does not match existing template name: {name}")
            })?;
            let var = rule.bind_vars_name.as_deref().map(|n| interpolate(n, vars)).transpose()?;
            let var = if t.takes_name { Some(var.unwrap_or_default()) } else { None };
            t.validate(var.as_deref()).map_err(|e| format!("templated policy failed validation: {e}"))?;
            out.templated.push((t.name.to_string(), var));
        }
        other => return Err(format!("unknown BindType {other:?}")),
    }
    Ok(())
}

/// Checks a rule when it is written, for a method mapping `values` and `lists`: what Consul
/// reports as `Invalid Binding Rule: ...` (without the prefix where Consul has none).
pub fn validate_rule(rule: &BindingRule, values: &[String], lists: &[String]) -> Result<(), String> {
    if !rule.selector.is_empty() {
        Filter::parse(&rule.selector).map_err(|e| format!("invalid Binding Rule: Selector is invalid: {e}"))?;
        // Every field the selector names must be one the method maps.
        let blank = blank_identity(values, lists);
        for field in selector_fields(&rule.selector) {
            if json_path(&blank, &field).is_none() {
                return Err(format!("invalid Binding Rule: Selector is invalid: Selector {field:?} is not valid"));
            }
        }
    }
    if rule.bind_type.is_empty() {
        return Err("Invalid Binding Rule: no BindType is set".into());
    }
    if rule.bind_name.is_empty() {
        return Err("Invalid Binding Rule: no BindName is set".into());
    }
    if !BIND_TYPES.contains(&rule.bind_type.as_str()) {
        return Err(format!("Invalid Binding Rule: unknown BindType {:?}", rule.bind_type));
    }
    if rule.bind_type != "templated-policy" && rule.bind_vars_name.is_some() {
        return Err("invalid Binding Rule: BindVars cannot be set when bind type is not templated-policy.".into());
    }
    let fake: BTreeMap<String, String> = values.iter().map(|n| (format!("value.{n}"), "fake".to_string())).collect();
    bind_one(rule, &fake, false, &mut Bindings::default()).map_err(|e| {
        format!(
            "Invalid Binding Rule: invalid BindName or BindVars: failed to validate bindType {:?}: {e}",
            rule.bind_type
        )
    })
}

/// The data selectors run against: `{"value": {...}, "list": {...}}`.
fn selectable(v: &Verified) -> Json {
    json!({"value": v.values, "list": v.lists})
}

fn blank_identity(values: &[String], lists: &[String]) -> Json {
    let values: BTreeMap<&String, &str> = values.iter().map(|n| (n, "")).collect();
    let lists: BTreeMap<&String, Vec<String>> = lists.iter().map(|n| (n, Vec::new())).collect();
    json!({"value": values, "list": lists})
}

/// The dotted field paths a selector names (`value.team`, `list.groups`).
fn selector_fields(selector: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_string = false;
    let mut quote = '"';
    let mut word = String::new();
    for ch in selector.chars().chain(std::iter::once(' ')) {
        if in_string {
            if ch == quote {
                in_string = false;
            }
            continue;
        }
        if ch == '"' || ch == '`' {
            in_string = true;
            quote = ch;
            continue;
        }
        if ch.is_alphanumeric() || ch == '_' || ch == '.' || ch == '-' {
            word.push(ch);
        } else {
            if word.contains('.') {
                out.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    out
}

fn json_path<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(v, |v, seg| v.get(seg))
}

/// The bindings of every rule whose selector matches, in order; the first bad bind name fails
/// the login.
pub fn bind(rules: &[BindingRule], values: &[String], v: &Verified) -> Result<Bindings, String> {
    let data = selectable(v);
    let vars = vars_of(values, v);
    let mut out = Bindings::default();
    for rule in rules {
        let matches = rule.selector.is_empty() || Filter::parse(&rule.selector).is_ok_and(|f| f.matches(&data));
        if matches {
            bind_one(rule, &vars, true, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(selector: &str, bind_type: &str, bind_name: &str) -> BindingRule {
        BindingRule {
            selector: selector.into(),
            bind_type: bind_type.into(),
            bind_name: bind_name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn interpolation_lowercases_values_only() {
        let vars: BTreeMap<String, String> = [("value.name".to_string(), "Web".to_string())].into();
        assert_eq!(interpolate("Svc-${value.name}", &vars).unwrap(), "Svc-web");
        assert_eq!(interpolate("plain", &vars).unwrap(), "plain");
        assert!(interpolate("${value.nope}", &vars).unwrap_err().contains("unknown variable accessed: value.nope"));
        assert!(interpolate("${value.name", &vars).is_err());
    }

    #[test]
    fn rules_are_validated_against_the_mappings() {
        let values = vec!["team".to_string()];
        let lists = vec!["groups".to_string()];
        assert!(validate_rule(&rule("value.team == \"ops\"", "service", "${value.team}"), &values, &lists).is_ok());
        assert!(validate_rule(&rule("\"a\" in list.groups", "role", "r-${value.team}"), &values, &lists).is_ok());
        let e = validate_rule(&rule("value.other == \"x\"", "service", "s"), &values, &lists).unwrap_err();
        assert!(e.starts_with("invalid Binding Rule: Selector is invalid"), "{e}");
        let e = validate_rule(&rule("", "service", "${value.nope}"), &values, &lists).unwrap_err();
        assert!(e.contains("unknown variable accessed: value.nope"), "{e}");
        let e = validate_rule(&rule("", "service", "Bad Name"), &values, &lists).unwrap_err();
        assert!(e.ends_with("invalid bind name: \"Bad Name\""), "{e}");
        assert_eq!(
            validate_rule(&rule("", "bogus", "x"), &values, &lists).unwrap_err(),
            "Invalid Binding Rule: unknown BindType \"bogus\""
        );
        let e = validate_rule(&rule("", "templated-policy", "builtin/nope"), &values, &lists).unwrap_err();
        assert!(e.contains("does not match existing template name: builtin/nope"), "{e}");
        let mut t = rule("", "templated-policy", "builtin/service");
        t.bind_vars_name = Some("${value.team}".into());
        assert!(validate_rule(&t, &values, &lists).is_ok());
        assert!(validate_rule(&rule("", "policy", "ns/p"), &values, &lists).is_ok());
    }

    #[test]
    fn matching_rules_bind_in_order() {
        let values = vec!["team".to_string()];
        let v = Verified {
            values: [("team".to_string(), "Ops".to_string())].into(),
            lists: [("groups".to_string(), vec!["admins".to_string()])].into(),
        };
        let mut tp = rule("value.team == \"Ops\"", "templated-policy", "builtin/node");
        tp.bind_vars_name = Some("n-${value.team}".into());
        let rules = vec![
            rule("value.team == \"Ops\"", "service", "svc-${value.team}"),
            rule("value.team == \"dev\"", "service", "never"),
            rule("\"admins\" in list.groups", "role", "admin-role"),
            rule("", "policy", "everyone"),
            tp,
        ];
        let b = bind(&rules, &values, &v).unwrap();
        assert_eq!(b.service_identities, ["svc-ops"]);
        assert_eq!(b.roles, ["admin-role"]);
        assert_eq!(b.policies, ["everyone"]);
        assert_eq!(b.templated, [("builtin/node".to_string(), Some("n-ops".to_string()))]);
        // At login, a policy name with a slash fails (Consul's quirk).
        assert!(bind(&[rule("", "policy", "ns/p")], &values, &v).is_err());
    }
}
