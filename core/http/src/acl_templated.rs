//! Templated policies: `/v1/acl/templated-policies`, `/v1/acl/templated-policy/name/<name>`,
//! `/v1/acl/templated-policy/preview/<name>`, and the `TemplatedPolicies` of tokens and roles
//! (decoded, validated and shown here; `legate_acl::templated` holds the templates).

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{ApiError, ApiResponse, Ctx, Request};
use legate_acl::templated::{self, TEMPLATES};
use legate_state::acl_ext::TemplatedPolicy;

/// A templated policy as a token or role body gives it.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct TemplatedBody {
    #[serde(rename = "TemplateName")]
    template_name: String,
    #[serde(rename = "TemplateVariables")]
    template_variables: Option<VariablesBody>,
    #[serde(rename = "Datacenters")]
    datacenters: Vec<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct VariablesBody {
    #[serde(rename = "Name")]
    name: String,
}

/// Whose templated policies are checked: the texts differ, as in Consul.
#[derive(Clone, Copy, PartialEq)]
pub enum Owner {
    Token,
    Role,
}

/// Validates and de-duplicates a body's templated policies (Consul: templates without
/// variables once per name, others once per name and variables; datacenters do not count).
/// Errors are Consul's 500s.
pub fn parse(bodies: Vec<TemplatedBody>, owner: Owner) -> Result<Vec<TemplatedPolicy>, ApiError> {
    let mut out: Vec<TemplatedPolicy> = Vec::new();
    for b in bodies {
        if b.template_name.is_empty() {
            let whose = if owner == Owner::Token { "token" } else { "role" };
            return Err(ApiError::Internal(format!(
                "templated policy is missing the template name field on this {whose}"
            )));
        }
        let Some(t) = templated::find(&b.template_name) else {
            return Err(ApiError::Internal(match owner {
                Owner::Token => format!("no such ACL templated policy with Name {:?}", b.template_name),
                Owner::Role => {
                    format!("templated policy with an invalid templated name: {} for this role", b.template_name)
                }
            }));
        };
        let name = b.template_variables.map(|v| v.name);
        if let Err(e) = t.validate(name.as_deref()) {
            return Err(ApiError::Internal(match owner {
                Owner::Token => format!("validation error for templated policy {:?}: {e}", t.name),
                Owner::Role => format!("encountered role with invalid templated policy: {e}"),
            }));
        }
        let name = if t.takes_name { name } else { None };
        let dup = out.iter().any(|o| o.template_name == t.name && (!t.takes_name || o.name == name));
        if !dup {
            out.push(TemplatedPolicy { template_name: t.name.to_string(), name, datacenters: b.datacenters });
        }
    }
    Ok(out)
}

/// `TemplatedPolicies` as Consul shows them on tokens and roles.
pub fn to_json(list: &[TemplatedPolicy]) -> Json {
    json!(list
        .iter()
        .map(|tp| {
            let mut v = json!({"TemplateName": tp.template_name});
            if let Some(t) = templated::find(&tp.template_name) {
                v["TemplateID"] = json!(t.id);
            }
            if let Some(n) = tp.name.as_deref().filter(|n| !n.is_empty()) {
                v["TemplateVariables"] = json!({"name": n});
            }
            if !tp.datacenters.is_empty() {
                v["Datacenters"] = json!(tp.datacenters);
            }
            v
        })
        .collect::<Vec<_>>())
}

/// `GET /v1/acl/templated-policies`: every template, keyed by name.
pub async fn list(_: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let all: serde_json::Map<String, Json> = TEMPLATES.iter().map(|t| (t.name.to_string(), t.to_json())).collect();
    Ok(ApiResponse::json(&all))
}

/// `GET /v1/acl/templated-policy/name/<name>`.
pub async fn read(_: &Ctx, _: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    let t =
        templated::find(name).ok_or_else(|| ApiError::BadRequest(format!("Invalid templated policy Name: {name}")))?;
    Ok(ApiResponse::json(&t.to_json()))
}

/// `POST /v1/acl/templated-policy/preview/<name>` with `{"Name": ...}`: the synthetic policy.
pub async fn preview(_: &Ctx, req: &Request, name: &str) -> Result<ApiResponse, ApiError> {
    let t = templated::find(name)
        .ok_or_else(|| ApiError::BadRequest(format!("templated policy {name:?} does not exist")))?;
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Failed to decode request body: EOF".into()));
    }
    let raw: Json = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::BadRequest(format!("Failed to decode request body: {e}")))?;
    let vars = match raw {
        Json::Null => None,
        Json::Object(m) => {
            let mut name = None;
            for (k, v) in m {
                if !k.eq_ignore_ascii_case("name") {
                    return Err(ApiError::BadRequest(format!(
                        "Failed to decode request body: json: unknown field {k:?}"
                    )));
                }
                name = Some(v.as_str().unwrap_or_default().to_string());
            }
            name
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "Failed to decode request body: json: cannot unmarshal {} into Go value",
                if other.is_array() { "array" } else { "value" }
            )))
        }
    };
    // The variables are always an object here (Consul decodes into one).
    let vars = Some(vars.unwrap_or_default());
    t.validate(vars.as_deref())
        .map_err(|e| ApiError::BadRequest(format!("validation error for templated policy: {name:?}: {e}")))?;
    Ok(ApiResponse::json(&templated::synthetic_policy(t, vars.as_deref(), &[])))
}
