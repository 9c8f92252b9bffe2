//! `legate acl bootstrap|token|policy|role|set-agent-token`: thin wrappers over `/v1/acl/*`
//! with Consul's flags and its `Key: value` output (or `-format json`).

use serde_json::{json, Value as Json};

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Bootstraps the ACL system: creates the initial management token
    Bootstrap {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long, default_value = "")]
        format: String,
    },
    /// Creates, lists, reads, updates, clones and deletes tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Creates, lists, reads, updates and deletes policies
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Creates, lists, reads, updates and deletes roles
    #[command(subcommand)]
    Role(RoleCommand),
    /// Sets one of the agent's tokens (default, agent, agent_recovery, replication, dns, ...)
    SetAgentToken {
        #[command(flatten)]
        http: HttpFlags,
        kind: String,
        /// The token's SecretID (the positional argument; `-token` is the one the call uses)
        #[arg(id = "secret", value_name = "TOKEN")]
        secret: String,
    },
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct Links {
    /// Policy by ID (repeatable)
    #[arg(long = "policy-id")]
    policy_id: Vec<String>,
    /// Policy by name (repeatable)
    #[arg(long = "policy-name")]
    policy_name: Vec<String>,
    /// Service identity: name[:dc1,dc2] (repeatable)
    #[arg(long = "service-identity")]
    service_identity: Vec<String>,
    /// Node identity: node:dc (repeatable)
    #[arg(long = "node-identity")]
    node_identity: Vec<String>,
}

impl Links {
    fn is_empty(&self) -> bool {
        self.policy_id.is_empty()
            && self.policy_name.is_empty()
            && self.service_identity.is_empty()
            && self.node_identity.is_empty()
    }

    fn policies(&self) -> Vec<Json> {
        let by_id = self.policy_id.iter().map(|id| json!({ "ID": id }));
        by_id.chain(self.policy_name.iter().map(|n| json!({ "Name": n }))).collect()
    }

    fn service_identities(&self) -> Vec<Json> {
        self.service_identity
            .iter()
            .map(|s| match s.split_once(':') {
                Some((name, dcs)) => json!({"ServiceName": name, "Datacenters": dcs.split(',').collect::<Vec<_>>()}),
                None => json!({ "ServiceName": s }),
            })
            .collect()
    }

    fn node_identities(&self) -> Result<Vec<Json>, String> {
        self.node_identity
            .iter()
            .map(|s| match s.split_once(':') {
                Some((node, dc)) => Ok(json!({"NodeName": node, "Datacenter": dc})),
                None => Err(format!("Malformed -node-identity argument: {s:?}")),
            })
            .collect()
    }

    fn write_into(&self, body: &mut Json) -> Result<(), String> {
        body["Policies"] = json!(self.policies());
        body["ServiceIdentities"] = json!(self.service_identities());
        body["NodeIdentities"] = json!(self.node_identities()?);
        Ok(())
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    Create {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        links: Links,
        /// Role by name (repeatable)
        #[arg(long = "role-name")]
        role_name: Vec<String>,
        #[arg(long = "role-id")]
        role_id: Vec<String>,
        #[arg(long)]
        accessor: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        local: bool,
        #[arg(long = "expires-ttl")]
        expires_ttl: Option<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    List {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long, default_value = "")]
        format: String,
    },
    Read {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long = "accessor-id", alias = "id")]
        id: Option<String>,
        #[arg(long = "self")]
        this: bool,
        #[arg(long, default_value = "")]
        format: String,
    },
    Update {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long = "accessor-id", alias = "id")]
        id: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        links: Links,
        /// Add the given policies to the token's instead of replacing them
        #[arg(long = "append-policy-name")]
        append_policy_name: Vec<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    Clone {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long = "accessor-id", alias = "id")]
        id: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    Delete {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long = "accessor-id", alias = "id")]
        id: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    Create {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Rules text, `@file`, or `-` for stdin
        #[arg(long, default_value = "")]
        rules: String,
        #[arg(long = "valid-datacenter")]
        datacenters: Vec<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    List {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long, default_value = "")]
        format: String,
    },
    Read {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    Update {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        rules: Option<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    Delete {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum RoleCommand {
    Create {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        links: Links,
        #[arg(long, default_value = "")]
        format: String,
    },
    List {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long, default_value = "")]
        format: String,
    },
    Read {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        format: String,
    },
    Update {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        links: Links,
        #[arg(long, default_value = "")]
        format: String,
    },
    Delete {
        #[command(flatten)]
        http: HttpFlags,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
}

/// `-rules @file` reads a file, `-` reads stdin, anything else is the rules text.
fn rules_arg(v: &str) -> Result<String, String> {
    if let Some(path) = v.strip_prefix('@') {
        return std::fs::read_to_string(path).map_err(|e| format!("Failed to read rules from {path}: {e}"));
    }
    if v == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| e.to_string())?;
        return Ok(s);
    }
    Ok(v.to_string())
}

async fn call(http: &HttpFlags, method: &str, path: &str, body: &Json) -> Result<Json, String> {
    let client = http.client()?;
    let bytes = match (method, body) {
        ("GET", _) => client.get_json::<Json>(path, &http.query(), &[]).await.map(|(v, _)| v.to_string().into()),
        ("DELETE", _) => client.delete_path(path, &[]).await,
        ("PUT", Json::Null) => client.put_json(path, &[], None).await,
        _ => client.request_json(method, path, body).await,
    }
    .map_err(|e| e.to_string())?;
    if bytes.is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("bad response: {e}"))
}

fn links_text(v: &Json) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|l| format!("\n   {} - {}", l["ID"].as_str().unwrap_or_default(), l["Name"].as_str().unwrap_or_default()))
        .collect()
}

fn identities_text(v: &Json) -> String {
    let mut out = String::new();
    for s in v["ServiceIdentities"].as_array().into_iter().flatten() {
        let dcs: Vec<&str> = s["Datacenters"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
        let dcs = if dcs.is_empty() { "all".to_string() } else { dcs.join(", ") };
        out += &format!("\n   {} (Datacenters: {dcs})", s["ServiceName"].as_str().unwrap_or_default());
    }
    let mut nodes = String::new();
    for n in v["NodeIdentities"].as_array().into_iter().flatten() {
        nodes += &format!(
            "\n   {} (Datacenter: {})",
            n["NodeName"].as_str().unwrap_or_default(),
            n["Datacenter"].as_str().unwrap_or_default()
        );
    }
    let mut text = String::new();
    if !out.is_empty() {
        text += &format!("\nService Identities:{out}");
    }
    if !nodes.is_empty() {
        text += &format!("\nNode Identities:{nodes}");
    }
    text
}

pub fn token_text(t: &Json) -> String {
    let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
    let mut out = format!(
        "AccessorID:       {}\nSecretID:         {}\nDescription:      {}\nLocal:            {}\nCreate Time:      {}",
        s("AccessorID"),
        s("SecretID"),
        s("Description"),
        t["Local"].as_bool().unwrap_or(false),
        s("CreateTime")
    );
    if !s("ExpirationTime").is_empty() {
        out += &format!("\nExpiration Time:  {}", s("ExpirationTime"));
    }
    if t["Policies"].as_array().is_some_and(|a| !a.is_empty()) {
        out += &format!("\nPolicies:{}", links_text(&t["Policies"]));
    }
    if t["Roles"].as_array().is_some_and(|a| !a.is_empty()) {
        out += &format!("\nRoles:{}", links_text(&t["Roles"]));
    }
    out + &identities_text(t)
}

fn policy_text(p: &Json, with_rules: bool) -> String {
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
    let dcs: Vec<&str> = p["Datacenters"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
    let mut out = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\nDatacenters:  {}",
        s("ID"),
        s("Name"),
        s("Description"),
        dcs.join(", ")
    );
    if with_rules {
        out += &format!("\nRules:\n{}", s("Rules"));
    }
    out
}

fn role_text(r: &Json) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    let mut out = format!("ID:           {}\nName:         {}\nDescription:  {}", s("ID"), s("Name"), s("Description"));
    if r["Policies"].as_array().is_some_and(|a| !a.is_empty()) {
        out += &format!("\nPolicies:{}", links_text(&r["Policies"]));
    }
    out + &identities_text(r)
}

fn print(format: &str, v: &Json, text: impl Fn(&Json) -> String) -> Result<i32, String> {
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else if let Some(items) = v.as_array() {
        let blocks: Vec<String> = items.iter().map(&text).collect();
        println!("{}", blocks.join("\n\n"));
    } else {
        println!("{}", text(v));
    }
    Ok(0)
}

/// A policy or role ID from `-id` or, by looking it up, `-name`.
async fn id_of(http: &HttpFlags, kind: &str, id: Option<String>, name: Option<String>) -> Result<String, String> {
    match (id, name) {
        (Some(id), _) => Ok(id),
        (None, Some(name)) => {
            let v = call(http, "GET", &format!("/v1/acl/{kind}/name/{name}"), &Json::Null)
                .await
                .map_err(|e| format!("Error finding {kind} {name:?}: {e}"))?;
            Ok(v["ID"].as_str().unwrap_or_default().to_string())
        }
        (None, None) => Err(format!("Must specify either the {kind} -id or -name")),
    }
}

pub fn run(cmd: AclCommand) -> i32 {
    block_on(async move {
        match cmd {
            AclCommand::Bootstrap { http, format } => {
                let v = call(&http, "PUT", "/v1/acl/bootstrap", &Json::Null)
                    .await
                    .map_err(|e| format!("Failed ACL bootstrapping: {e}"))?;
                print(&format, &v, token_text)
            }
            AclCommand::SetAgentToken { http, kind, secret } => {
                call(&http, "PUT", &format!("/v1/agent/token/{kind}"), &json!({ "Token": secret }))
                    .await
                    .map_err(|e| format!("Failed setting token: {e}"))?;
                println!("ACL token {kind:?} set successfully");
                Ok(0)
            }
            AclCommand::Token(t) => run_token(t).await,
            AclCommand::Policy(p) => run_policy(p).await,
            AclCommand::Role(r) => run_role(r).await,
        }
    })
}

async fn run_token(cmd: TokenCommand) -> Result<i32, String> {
    match cmd {
        TokenCommand::Create {
            http,
            description,
            links,
            role_name,
            role_id,
            accessor,
            secret,
            local,
            expires_ttl,
            format,
        } => {
            let mut body = json!({"Description": description, "Local": local});
            links.write_into(&mut body)?;
            let roles: Vec<Json> = role_id
                .iter()
                .map(|id| json!({ "ID": id }))
                .chain(role_name.iter().map(|n| json!({ "Name": n })))
                .collect();
            body["Roles"] = json!(roles);
            if let Some(a) = accessor {
                body["AccessorID"] = json!(a);
            }
            if let Some(s) = secret {
                body["SecretID"] = json!(s);
            }
            if let Some(ttl) = expires_ttl {
                body["ExpirationTTL"] = json!(ttl);
            }
            let v = call(&http, "PUT", "/v1/acl/token", &body)
                .await
                .map_err(|e| format!("Failed to create new token: {e}"))?;
            print(&format, &v, token_text)
        }
        TokenCommand::List { http, format } => {
            let v = call(&http, "GET", "/v1/acl/tokens", &Json::Null)
                .await
                .map_err(|e| format!("Failed to retrieve the token list: {e}"))?;
            print(&format, &v, token_text)
        }
        TokenCommand::Read { http, id, this, format } => {
            let path = match (this, id) {
                (true, _) => "/v1/acl/token/self".to_string(),
                (false, Some(id)) => format!("/v1/acl/token/{id}"),
                (false, None) => return Err("Must specify the -accessor-id parameter".into()),
            };
            let v = call(&http, "GET", &path, &Json::Null).await.map_err(|e| format!("Error reading token: {e}"))?;
            print(&format, &v, token_text)
        }
        TokenCommand::Update { http, id, description, links, append_policy_name, format } => {
            let mut cur = call(&http, "GET", &format!("/v1/acl/token/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error when retrieving current token: {e}"))?;
            if let Some(d) = description {
                cur["Description"] = json!(d);
            }
            if !links.is_empty() {
                links.write_into(&mut cur)?;
            }
            if !append_policy_name.is_empty() {
                let mut p: Vec<Json> = cur["Policies"].as_array().cloned().unwrap_or_default();
                p.extend(append_policy_name.iter().map(|n| json!({ "Name": n })));
                cur["Policies"] = json!(p);
            }
            if let Some(m) = cur.as_object_mut() {
                m.remove("SecretID");
            }
            let v = call(&http, "PUT", &format!("/v1/acl/token/{id}"), &cur)
                .await
                .map_err(|e| format!("Failed to update token {id}: {e}"))?;
            print(&format, &v, token_text)
        }
        TokenCommand::Clone { http, id, description, format } => {
            let body = match description {
                Some(d) => json!({ "Description": d }),
                None => json!({}),
            };
            let v = call(&http, "PUT", &format!("/v1/acl/token/{id}/clone"), &body)
                .await
                .map_err(|e| format!("Failed to clone token: {e}"))?;
            print(&format, &v, token_text)
        }
        TokenCommand::Delete { http, id } => {
            call(&http, "DELETE", &format!("/v1/acl/token/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error deleting token {id:?}: {e}"))?;
            println!("Token {id:?} deleted successfully");
            Ok(0)
        }
    }
}

async fn run_policy(cmd: PolicyCommand) -> Result<i32, String> {
    match cmd {
        PolicyCommand::Create { http, name, description, rules, datacenters, format } => {
            let body = json!({"Name": name, "Description": description, "Rules": rules_arg(&rules)?, "Datacenters": datacenters});
            let v = call(&http, "PUT", "/v1/acl/policy", &body)
                .await
                .map_err(|e| format!("Failed to create new policy: {e}"))?;
            print(&format, &v, |p| policy_text(p, true))
        }
        PolicyCommand::List { http, format } => {
            let v = call(&http, "GET", "/v1/acl/policies", &Json::Null)
                .await
                .map_err(|e| format!("Failed to retrieve the policy list: {e}"))?;
            print(&format, &v, |p| policy_text(p, false))
        }
        PolicyCommand::Read { http, id, name, format } => {
            let id = id_of(&http, "policy", id, name).await?;
            let v = call(&http, "GET", &format!("/v1/acl/policy/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error reading policy {id:?}: {e}"))?;
            print(&format, &v, |p| policy_text(p, true))
        }
        PolicyCommand::Update { http, id, name, description, rules, format } => {
            let id = id_of(&http, "policy", id, name.clone()).await?;
            let mut cur = call(&http, "GET", &format!("/v1/acl/policy/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error reading policy {id:?}: {e}"))?;
            if let Some(n) = name {
                cur["Name"] = json!(n);
            }
            if let Some(d) = description {
                cur["Description"] = json!(d);
            }
            if let Some(r) = rules {
                cur["Rules"] = json!(rules_arg(&r)?);
            }
            let v = call(&http, "PUT", &format!("/v1/acl/policy/{id}"), &cur)
                .await
                .map_err(|e| format!("Error updating policy {id:?}: {e}"))?;
            print(&format, &v, |p| policy_text(p, true))
        }
        PolicyCommand::Delete { http, id, name } => {
            let id = id_of(&http, "policy", id, name).await?;
            call(&http, "DELETE", &format!("/v1/acl/policy/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error deleting policy {id:?}: {e}"))?;
            println!("Policy {id:?} deleted successfully");
            Ok(0)
        }
    }
}

async fn run_role(cmd: RoleCommand) -> Result<i32, String> {
    match cmd {
        RoleCommand::Create { http, name, description, links, format } => {
            let mut body = json!({"Name": name, "Description": description});
            links.write_into(&mut body)?;
            let v = call(&http, "PUT", "/v1/acl/role", &body)
                .await
                .map_err(|e| format!("Failed to create new role: {e}"))?;
            print(&format, &v, role_text)
        }
        RoleCommand::List { http, format } => {
            let v = call(&http, "GET", "/v1/acl/roles", &Json::Null)
                .await
                .map_err(|e| format!("Failed to retrieve the role list: {e}"))?;
            print(&format, &v, role_text)
        }
        RoleCommand::Read { http, id, name, format } => {
            let id = id_of(&http, "role", id, name).await?;
            let v = call(&http, "GET", &format!("/v1/acl/role/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error reading role {id:?}: {e}"))?;
            print(&format, &v, role_text)
        }
        RoleCommand::Update { http, id, name, description, links, format } => {
            let mut cur = call(&http, "GET", &format!("/v1/acl/role/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error reading role {id:?}: {e}"))?;
            if let Some(n) = name {
                cur["Name"] = json!(n);
            }
            if let Some(d) = description {
                cur["Description"] = json!(d);
            }
            if !links.is_empty() {
                links.write_into(&mut cur)?;
            }
            let v = call(&http, "PUT", &format!("/v1/acl/role/{id}"), &cur)
                .await
                .map_err(|e| format!("Error updating role {id:?}: {e}"))?;
            print(&format, &v, role_text)
        }
        RoleCommand::Delete { http, id, name } => {
            let id = id_of(&http, "role", id, name).await?;
            call(&http, "DELETE", &format!("/v1/acl/role/{id}"), &Json::Null)
                .await
                .map_err(|e| format!("Error deleting role {id:?}: {e}"))?;
            println!("Role {id:?} deleted successfully");
            Ok(0)
        }
    }
}
