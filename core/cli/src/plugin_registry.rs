//! `legate plugin push|list|pull|rm|sign|keygen`: the plugin registry through an agent's HTTP
//! API, and the ed25519 keys that sign registry plugins.
//!
//! - `push <f.wasm> [-name N] [-version V] [-sign-key F] [-signature S]...` stores a component
//!   (name: the file stem, `-` as `_`; version: `-version`, else the component's "version"
//!   section); `-sign-key` signs it here, `-signature` adds signatures made elsewhere.
//! - `list [-name N] [-format json]` prints every version: name, version, digest, size,
//!   signers and the checks that run it.
//! - `pull <name> [-version V] [-o F]` writes a component, checked against its digest.
//! - `rm <name> -version V` deletes a version; a version checks still use is refused (exit 1,
//!   with the checks).
//! - `sign <f.wasm> -key F` prints a signature for `push -signature` (`<key>.<signature>`).
//! - `keygen [-o PREFIX]` writes `PREFIX.key` (0600) and `PREFIX.pub`, and prints the public
//!   key for `plugins.trusted_keys`.

use std::path::{Path, PathBuf};

use legate_api::plugin::{PluginInfo, PushResult};
use legate_client::QueryOptions;
use legate_plugin_host::signing;

use super::http_flags::HttpFlags;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// The registry name (default: the file name without .wasm, '-' as '_')
    #[arg(long)]
    name: Option<String>,
    /// The version (default: the component's "version" section, which the SDKs write)
    #[arg(long)]
    version: Option<String>,
    /// Sign with this key file (from `legate plugin keygen`)
    #[arg(long)]
    sign_key: Option<PathBuf>,
    /// A signature made with `legate plugin sign` (repeatable)
    #[arg(long = "signature")]
    signatures: Vec<String>,
    /// The component (.wasm)
    file: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Only this plugin's versions
    #[arg(long)]
    name: Option<String>,
    /// Output format: text or json
    #[arg(long, default_value = "text")]
    format: String,
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// The version (default: the latest pushed)
    #[arg(long)]
    version: Option<String>,
    /// Where to write it (default: <name>.wasm)
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// The version to delete
    #[arg(long)]
    version: String,
    name: String,
}

#[derive(clap::Args, Debug)]
pub struct SignArgs {
    /// The key file (from `legate plugin keygen`)
    #[arg(long)]
    key: PathBuf,
    /// The component (.wasm)
    file: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Write PREFIX.key and PREFIX.pub (default: plugin-signing)
    #[arg(short = 'o', long = "output", default_value = "plugin-signing")]
    output: String,
}

/// The registry name of a file: its stem, `-` as `_`.
fn default_name(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().replace('-', "_")).unwrap_or_default()
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("Error reading {}: {e}", path.display()))
}

fn read_key(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("Error reading key {}: {e}", path.display()))
}

pub async fn push(a: PushArgs) -> Result<i32, String> {
    let bytes = read_file(&a.file)?;
    let name = a.name.clone().unwrap_or_else(|| default_name(&a.file));
    let mut signatures = a.signatures.clone();
    if let Some(key) = &a.sign_key {
        let sha = legate_plugin_host::sha256_hex(&bytes);
        signatures.push(signing::sign_text(&read_key(key)?, &sha)?);
    }
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(v) = &a.version {
        query.push(("version", v.as_str()));
    }
    for s in &signatures {
        query.push(("signature", s.as_str()));
    }
    let client = a.http.client()?;
    let body = client
        .put_raw(&format!("/v1/plugin/{name}"), &query, bytes)
        .await
        .map_err(|e| format!("Error pushing plugin {name}: {e}"))?;
    let r: PushResult = serde_json::from_slice(&body).map_err(|e| format!("Error decoding the answer: {e}"))?;
    println!("Pushed {}@{}", r.name, r.version);
    println!("SHA256:  {}", r.sha256);
    println!("Size:    {}", r.size);
    println!("World:   {}", r.world);
    if !r.signatures.is_empty() {
        println!("Signed:  {}", r.signatures.join(", "));
    }
    Ok(0)
}

pub async fn list(a: ListArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if let Some(n) = &a.name {
        extra.push(("name", n.as_str()));
    }
    let opts: QueryOptions = a.http.query();
    let (list, _): (Vec<PluginInfo>, _) =
        client.get_json("/v1/plugins", &opts, &extra).await.map_err(|e| format!("Error listing plugins: {e}"))?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
        return Ok(0);
    }
    let mut rows = vec![["Name", "Version", "SHA256", "Size", "Signed", "RunsOn"].map(str::to_string).to_vec()];
    for p in &list {
        let version = if p.latest { format!("{} (latest)", p.version) } else { p.version.clone() };
        let runs_on: Vec<String> = p.runs_on.iter().map(|u| format!("{}/{}", u.node, u.check_id)).collect();
        rows.push(vec![
            p.name.clone(),
            version,
            p.sha256.chars().take(12).collect(),
            p.size.to_string(),
            if p.signed { p.signed_by.join(",") } else { "no".into() },
            if runs_on.is_empty() { "-".into() } else { runs_on.join(",") },
        ]);
    }
    print!("{}", super::table(&rows));
    Ok(0)
}

pub async fn pull(a: PullArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(v) = &a.version {
        query.push(("version", v.as_str()));
    }
    let (headers, body) = client
        .get_bytes(&format!("/v1/plugin/{}", a.name), &query)
        .await
        .map_err(|e| format!("Error pulling plugin {}: {e}", a.name))?;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (want, version) = (header("X-Legate-Plugin-SHA256"), header("X-Legate-Plugin-Version"));
    let got = legate_plugin_host::sha256_hex(&body);
    if !want.is_empty() && want != got {
        return Err(format!("Error: plugin {}@{version}: digest mismatch (expected {want}, got {got})", a.name));
    }
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from(format!("{}.wasm", a.name)));
    std::fs::write(&out, &body).map_err(|e| format!("Error writing {}: {e}", out.display()))?;
    println!("Pulled {}@{version} ({got}) to {}", a.name, out.display());
    Ok(0)
}

pub async fn rm(a: RmArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    match client.delete_path(&format!("/v1/plugin/{}", a.name), &[("version", a.version.as_str())]).await {
        Ok(_) => {
            println!("Deleted {}@{}", a.name, a.version);
            Ok(0)
        }
        Err(legate_client::Error::Status { status: 409, body }) => {
            let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            eprintln!("Error: {}", parsed["Error"].as_str().unwrap_or(body.as_str()));
            for c in parsed["Checks"].as_array().into_iter().flatten() {
                eprintln!("  {}", c.as_str().unwrap_or_default());
            }
            Ok(1)
        }
        Err(e) => Err(format!("Error deleting {}@{}: {e}", a.name, a.version)),
    }
}

pub fn sign(a: SignArgs) -> Result<i32, String> {
    let bytes = read_file(&a.file)?;
    let sha = legate_plugin_host::sha256_hex(&bytes);
    println!("{}", signing::sign_text(&read_key(&a.key)?, &sha)?);
    Ok(0)
}

pub fn keygen(a: KeygenArgs) -> Result<i32, String> {
    let (secret, public) = signing::keygen()?;
    let (key, publ) = (PathBuf::from(format!("{}.key", a.output)), PathBuf::from(format!("{}.pub", a.output)));
    if key.exists() {
        return Err(format!("Error: {} exists; not overwriting a signing key", key.display()));
    }
    legate_types::fs::write_private(&key, format!("{secret}\n").as_bytes())
        .map_err(|e| format!("Error writing {}: {e}", key.display()))?;
    std::fs::write(&publ, format!("{public}\n")).map_err(|e| format!("Error writing {}: {e}", publ.display()))?;
    println!("{public}");
    eprintln!(
        "Wrote {} (secret, 0600) and {}; put the public key in plugins.trusted_keys",
        key.display(),
        publ.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::default_name;
    use std::path::Path;

    #[test]
    fn names_default_to_the_file_stem() {
        assert_eq!(default_name(Path::new("target/release/http-json.wasm")), "http_json");
        assert_eq!(default_name(Path::new("tcp_protocol.wasm")), "tcp_protocol");
    }
}
