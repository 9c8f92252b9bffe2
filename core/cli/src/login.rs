//! `legate login` and `legate logout`: trade a bearer token (a JWT) for an ACL token through an
//! auth method, and delete such a token again, as `consul login` / `consul logout` do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value as Json};

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Name of the auth method to log in to
    #[arg(long)]
    method: Option<String>,
    /// Type of the auth method (only jwt methods take a bearer token file)
    #[arg(long = "type")]
    method_type: Option<String>,
    /// File holding the bearer token (the JWT) to present to the auth method
    #[arg(long)]
    bearer_token_file: Option<PathBuf>,
    /// File to write the ACL token's secret to (mode 0600)
    #[arg(long)]
    token_sink_file: Option<PathBuf>,
    /// Metadata for the token, key=value (repeatable)
    #[arg(long)]
    meta: Vec<String>,
    #[arg(hide = true)]
    rest: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    #[command(flatten)]
    http: HttpFlags,
}

pub fn login(a: LoginArgs) -> i32 {
    block_on(async move {
        if !a.rest.is_empty() {
            return Err("Should have no non-flag arguments.".into());
        }
        let method = a.method.ok_or("Missing required '-method' flag")?;
        if a.method_type.as_deref().is_some_and(|t| t == "oidc") {
            return Err("The oidc auth method type is not supported by this agent".into());
        }
        let sink = a.token_sink_file.ok_or("Missing required '-token-sink-file' flag")?;
        let file = a.bearer_token_file.ok_or("Missing required '-bearer-token-file' flag")?;
        let bearer = std::fs::read_to_string(&file).map_err(|e| format!("Error reading bearer token file: {e}"))?;
        let bearer = bearer.trim();
        if bearer.is_empty() {
            return Err(format!("No bearer token found in {}", file.display()));
        }
        let mut meta = BTreeMap::new();
        for kv in &a.meta {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            meta.insert(k.to_string(), v.to_string());
        }
        let body = json!({"AuthMethod": method, "BearerToken": bearer, "Meta": meta});
        let client = a.http.client()?.without_token();
        let bytes =
            client.request_json("POST", "/v1/acl/login", &body).await.map_err(|e| format!("Error logging in: {e}"))?;
        let token: Json = serde_json::from_slice(&bytes).map_err(|e| format!("Error logging in: {e}"))?;
        let secret = token["SecretID"].as_str().unwrap_or_default();
        legate_types::fs::write_private(&sink, secret.as_bytes())
            .map_err(|e| format!("Error writing token to file sink: {e}"))?;
        Ok(0)
    })
}

pub fn logout(a: LogoutArgs) -> i32 {
    block_on(async move {
        let client = a.http.client()?;
        client
            .request_json("POST", "/v1/acl/logout", &Json::Null)
            .await
            .map_err(|e| format!("Error destroying token: {e}"))?;
        Ok(0)
    })
}
