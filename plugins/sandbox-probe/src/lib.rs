//! Sandbox probe: tries each access it is configured for and reports what happened, to check
//! what a definition grants. Critical, listing the refusals, when any access was refused;
//! passing when every one worked.
//!
//! Args (each optional): `read_file` (a path, through WASI files: needs a `files` grant),
//! `connect` (host:port, through raw WASI sockets: always refused), `http_url` (through the
//! host `http`: needs `allow_hosts`), `kv_key` (through the host `kv`: needs
//! `kv_read_prefixes`).

use legate_plugin::{export_check, http, kv, Check, CheckContext, CheckResult, Config};

struct SandboxProbe;

impl Check for SandboxProbe {
    fn validate(config: &Config) -> Result<(), String> {
        config.only(&["read_file", "connect", "http_url", "kv_key"])
    }

    fn check(_ctx: &CheckContext, config: &Config) -> Result<CheckResult, String> {
        let mut worked = Vec::new();
        let mut refused = Vec::new();
        if let Some(p) = config.get("read_file") {
            match std::fs::read(p) {
                Ok(b) => worked.push(format!("read {p}: {} bytes", b.len())),
                Err(e) => refused.push(format!("read {p}: denied ({e})")),
            }
        }
        if let Some(a) = config.get("connect") {
            match std::net::TcpStream::connect(a) {
                Ok(_) => worked.push(format!("connect {a}: connected")),
                Err(e) => refused.push(format!("connect {a}: denied ({e})")),
            }
        }
        if let Some(u) = config.get("http_url") {
            match http::get(u, 0) {
                Ok(r) => worked.push(format!("http {u}: HTTP {}", r.status)),
                Err(e) => refused.push(format!("http {u}: {e}")),
            }
        }
        if let Some(k) = config.get("kv_key") {
            match kv::get(k) {
                Ok(Some(e)) => worked.push(format!("kv {k}: {} bytes", e.value.len())),
                Ok(None) => worked.push(format!("kv {k}: no such key")),
                Err(kv::KvError::Denied(why)) => refused.push(format!("kv {k}: denied ({why})")),
                Err(kv::KvError::Unavailable(why)) => refused.push(format!("kv {k}: unavailable ({why})")),
            }
        }
        Ok(if refused.is_empty() {
            CheckResult::passing(worked.join("; "))
        } else {
            CheckResult::critical(refused.into_iter().chain(worked).collect::<Vec<_>>().join("; "))
        })
    }
}

export_check!(SandboxProbe);
