//! `legate kv get|put|delete|export|import`, with Consul's flags, output and exit codes.

use std::io::Read;

use base64::Engine;
use legate_client::{decode_value, DirEntry, KvPair, WriteOptions};

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Subcommand, Debug)]
pub enum KvCommand {
    /// Reads a key, or the keys/entries under a prefix
    Get(GetArgs),
    /// Writes a key
    Put(PutArgs),
    /// Deletes a key, or every key under a prefix
    Delete(DeleteArgs),
    /// Prints every entry under a prefix as JSON (for `kv import`)
    Export(ExportArgs),
    /// Writes entries from `kv export` JSON
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Print every entry under the prefix as key:value
    #[arg(long)]
    recurse: bool,
    /// Print the keys under the prefix
    #[arg(long)]
    keys: bool,
    /// Fold keys at this separator (with -keys)
    #[arg(long, default_value = "/")]
    separator: String,
    /// Print every field of the entry
    #[arg(long)]
    detailed: bool,
    /// Print values base64-encoded
    #[arg(long)]
    base64: bool,
    key: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Flags to store with the value
    #[arg(long, default_value_t = 0)]
    flags: u64,
    /// Check-and-set against -modify-index
    #[arg(long)]
    cas: bool,
    /// The ModifyIndex the key must have (with -cas; 0: only if absent)
    #[arg(long)]
    modify_index: Option<u64>,
    /// Acquire the lock with -session
    #[arg(long)]
    acquire: bool,
    /// Release the lock held by -session
    #[arg(long)]
    release: bool,
    #[arg(long)]
    session: Option<String>,
    /// The data is base64-encoded
    #[arg(long)]
    base64: bool,
    key: String,
    /// The value, @file to read a file, or - for stdin
    data: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[arg(long)]
    recurse: bool,
    #[arg(long)]
    cas: bool,
    #[arg(long)]
    modify_index: Option<u64>,
    key: String,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    http: HttpFlags,
    #[arg(default_value = "")]
    prefix: String,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Prefix to add to every imported key
    #[arg(long, default_value = "")]
    prefix: String,
    /// JSON, @file, or - for stdin
    data: Option<String>,
}

pub fn run(cmd: KvCommand) -> i32 {
    block_on(async move {
        match cmd {
            KvCommand::Get(a) => get(a).await,
            KvCommand::Put(a) => put(a).await,
            KvCommand::Delete(a) => delete(a).await,
            KvCommand::Export(a) => export(a).await,
            KvCommand::Import(a) => import(a).await,
        }
    })
}

fn value_text(e: &DirEntry, b64: bool) -> Result<String, String> {
    if b64 {
        return Ok(e.value.clone().unwrap_or_default());
    }
    let v = decode_value(e).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&v).into_owned())
}

fn detailed(e: &DirEntry, b64: bool) -> Result<String, String> {
    let rows = [
        ("CreateIndex", e.create_index.to_string()),
        ("Flags", e.flags.to_string()),
        ("Key", e.key.clone()),
        ("LockIndex", e.lock_index.to_string()),
        ("ModifyIndex", e.modify_index.to_string()),
        ("Session", e.session.clone().unwrap_or_else(|| "-".into())),
        ("Value", value_text(e, b64)?),
    ];
    Ok(rows.iter().map(|(k, v)| format!("{k:<17}{v}")).collect::<Vec<_>>().join("\n"))
}

async fn get(a: GetArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    let key = a.key.clone().unwrap_or_default();
    if key.is_empty() && !a.recurse && !a.keys {
        return Err("Error! Missing KEY argument".into());
    }
    let q = a.http.query();
    if a.keys {
        let sep = (!a.separator.is_empty()).then_some(a.separator.as_str());
        let (keys, _) = client.kv_keys(&key, sep, &q).await.map_err(|e| format!("Error querying Consul agent: {e}"))?;
        for k in keys {
            println!("{k}");
        }
        return Ok(0);
    }
    if a.recurse {
        let (entries, _) = client.kv_list(&key, &q).await.map_err(|e| format!("Error querying Consul agent: {e}"))?;
        let mut blocks = Vec::new();
        for e in &entries {
            if a.detailed {
                blocks.push(detailed(e, a.base64)?);
            } else {
                println!("{}:{}", e.key, value_text(e, a.base64)?);
            }
        }
        if a.detailed {
            println!("{}", blocks.join("\n\n"));
        }
        return Ok(0);
    }
    match client.kv_get(&key, &q).await.map_err(|e| format!("Error querying Consul agent: {e}"))? {
        (Some(e), _) if a.detailed => println!("{}", detailed(&e, a.base64)?),
        (Some(e), _) => println!("{}", value_text(&e, a.base64)?),
        (None, _) => return Err(format!("Error! No key exists at: {key}")),
    }
    Ok(0)
}

/// A value argument: literal, `@file`, or `-` (stdin).
fn read_data(data: Option<&str>) -> Result<Vec<u8>, String> {
    match data {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("Error! Failed to read stdin: {e}"))?;
            Ok(buf)
        }
        Some(s) if s.starts_with('@') => {
            std::fs::read(&s[1..]).map_err(|e| format!("Error! Failed to read file {}: {e}", &s[1..]))
        }
        Some(s) => Ok(s.as_bytes().to_vec()),
    }
}

async fn put(a: PutArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    let mut value = read_data(a.data.as_deref())?;
    if a.base64 {
        value = base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(&value).trim())
            .map_err(|e| format!("Error! Cannot base 64 decode data: {e}"))?;
    }
    if a.cas && a.modify_index.is_none() {
        return Err("Must specify -modify-index with -cas!".into());
    }
    if (a.acquire || a.release) && a.session.is_none() {
        return Err("Error! Missing -session (required with -acquire and -release)".into());
    }
    let opts = WriteOptions {
        flags: a.flags,
        cas: a.cas.then_some(a.modify_index.unwrap_or(0)),
        acquire: a.acquire.then(|| a.session.clone().unwrap_or_default()),
        release: a.release.then(|| a.session.clone().unwrap_or_default()),
    };
    let ok = client.kv_put(&a.key, &value, &opts).await.map_err(|e| format!("Error! Failed writing data: {e}"))?;
    if !ok {
        if a.cas {
            return Err(format!("Error! Did not write to {}: CAS failed", a.key));
        }
        return Err(format!("Error! Did not write to {}", a.key));
    }
    if a.acquire {
        println!("Success! Lock acquired on: {}", a.key);
    } else if a.release {
        println!("Success! Lock released on: {}", a.key);
    } else {
        println!("Success! Data written to: {}", a.key);
    }
    Ok(0)
}

async fn delete(a: DeleteArgs) -> Result<i32, String> {
    if a.cas && a.recurse {
        return Err("Cannot specify both -cas and -recurse!".into());
    }
    if a.cas && a.modify_index.is_none() {
        return Err("Must specify -modify-index with -cas!".into());
    }
    let client = a.http.client()?;
    let ok = client
        .kv_delete(&a.key, a.recurse, a.cas.then_some(a.modify_index.unwrap_or(0)))
        .await
        .map_err(|e| format!("Error! Did not delete key {}: {e}", a.key))?;
    if !ok {
        return Err(format!("Error! Did not delete key {}: CAS failed", a.key));
    }
    if a.recurse {
        println!("Success! Deleted keys with prefix: {}", a.key);
    } else {
        println!("Success! Deleted key: {}", a.key);
    }
    Ok(0)
}

async fn export(a: ExportArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    let (entries, _) =
        client.kv_list(&a.prefix, &a.http.query()).await.map_err(|e| format!("Error querying Consul agent: {e}"))?;
    let pairs: Vec<KvPair> = entries
        .into_iter()
        .map(|e| KvPair { key: e.key, flags: e.flags, value: e.value.unwrap_or_default() })
        .collect();
    println!("{}", serde_json::to_string_pretty(&pairs).map_err(|e| e.to_string())?);
    Ok(0)
}

async fn import(a: ImportArgs) -> Result<i32, String> {
    let client = a.http.client()?;
    let data = read_data(Some(a.data.as_deref().unwrap_or("-")))?;
    let pairs: Vec<KvPair> = serde_json::from_slice(&data).map_err(|e| format!("Cannot unmarshal data: {e}"))?;
    for p in pairs {
        let value = base64::engine::general_purpose::STANDARD
            .decode(&p.value)
            .map_err(|e| format!("Error base 64 decoding value for key {}: {e}", p.key))?;
        let key = format!("{}{}", a.prefix, p.key);
        let opts = WriteOptions { flags: p.flags, ..Default::default() };
        client
            .kv_put(&key, &value, &opts)
            .await
            .map_err(|e| format!("Error! Failed writing data for key {key}: {e}"))?;
        println!("Imported: {key}");
    }
    Ok(0)
}
