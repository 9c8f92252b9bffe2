//! The host side of the plugin interfaces (`log`, `http`, `net`, `kv`, `host`) and the per-call
//! store data. Every call checks its grant (`allow_hosts`, `kv_read_prefixes`) and clamps its
//! own time to what is left of the call's deadline, so a plugin blocked in a host call comes
//! back when its budget is spent (the wall-clock timeout around the call is the backstop).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::v0_1::{host, http, kv, log, net, types};

/// Largest HTTP body or TCP read handed to a plugin.
pub const MAX_BODY: usize = 1 << 20;
/// Most TCP connections one call may hold open.
const MAX_CONNS: usize = 16;

/// Reads the agent's KV store for plugins (the local state store on servers).
pub trait KvSource: Send + Sync {
    /// The ACL check of a read (or a listing's prefix) with the definition's token; Err is the
    /// 403 text.
    fn read_allowed(&self, token: Option<&str>, key: &str) -> Result<(), String>;
    fn get(&self, key: &str) -> Result<Option<kv::Entry>, String>;
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, String>;
}

/// What one plugin use may reach, from its definition.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    pub allow_hosts: Vec<String>,
    pub kv_read_prefixes: Vec<String>,
    /// The ACL token of the check or handler definition.
    pub token: Option<String>,
}

impl Grants {
    /// Whether `host` (and `port`) is in `allow_hosts`: entries are `host`, `host:port`,
    /// `*.domain` or `*`. Host names compare case-insensitively; IPv6 entries may be bracketed.
    pub fn host_allowed(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.allow_hosts.iter().any(|entry| {
            let entry = entry.trim().to_ascii_lowercase();
            if entry == "*" {
                return true;
            }
            let (h, p) = split_host_port(&entry);
            if let Some(p) = p {
                if p != port {
                    return false;
                }
            }
            match h.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => h == host,
            }
        })
    }

    /// Whether `key` (or, for listings, the prefix) lies under a granted prefix.
    pub fn kv_allowed(&self, key: &str) -> bool {
        self.kv_read_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

fn split_host_port(entry: &str) -> (String, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (h.to_string(), tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h.to_string(), Some(p)),
            Err(_) => (entry.to_string(), None),
        },
        _ => (entry.to_string(), None),
    }
}

/// Facts about the agent every call can read.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub node_name: String,
    pub datacenter: String,
}

/// A memory cap per store that remembers whether it refused a grow.
pub struct MemLimits {
    pub max_bytes: usize,
    pub denied: bool,
    pub peak: usize,
}

impl wasmtime::ResourceLimiter for MemLimits {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one call's store.
pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: MemLimits,
    pub deadline: Instant,
    pub grants: Arc<Grants>,
    pub facts: Arc<Facts>,
    pub kv: Option<Arc<dyn KvSource>>,
    pub http: reqwest::Client,
    pub http_insecure: reqwest::Client,
    /// For log lines: the plugin and the check or handler.
    pub plugin: String,
    pub caller: String,
    conns: HashMap<u32, TcpStream>,
    next_conn: u32,
}

impl HostState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        wasi: WasiCtx,
        max_bytes: usize,
        deadline: Instant,
        grants: Arc<Grants>,
        facts: Arc<Facts>,
        kv: Option<Arc<dyn KvSource>>,
        clients: &(reqwest::Client, reqwest::Client),
        plugin: String,
        caller: String,
    ) -> HostState {
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: MemLimits { max_bytes, denied: false, peak: 0 },
            deadline,
            grants,
            facts,
            kv,
            http: clients.0.clone(),
            http_insecure: clients.1.clone(),
            plugin,
            caller,
            conns: HashMap::new(),
            next_conn: 1,
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The time a host call may take: what the plugin asked (0 = no preference), clamped to
    /// the remaining budget.
    fn budget(&self, asked_ms: u32) -> Duration {
        let left = self.remaining();
        if asked_ms == 0 {
            left
        } else {
            left.min(Duration::from_millis(asked_ms as u64))
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) {
        crate::metrics::host_call(&self.plugin, "log");
        let mut message = message;
        legate_types::check::truncate(&mut message, 4096);
        let (p, c) = (&self.plugin, &self.caller);
        match level {
            log::Level::Trace => tracing::trace!(plugin = %p, caller = %c, "{message}"),
            log::Level::Debug => tracing::debug!(plugin = %p, caller = %c, "{message}"),
            log::Level::Info => tracing::info!(plugin = %p, caller = %c, "{message}"),
            log::Level::Warn => tracing::warn!(plugin = %p, caller = %c, "{message}"),
            log::Level::Error => tracing::error!(plugin = %p, caller = %c, "{message}"),
        }
    }
}

impl host::Host for HostState {
    async fn node_name(&mut self) -> String {
        self.facts.node_name.clone()
    }
    async fn datacenter(&mut self) -> String {
        self.facts.datacenter.clone()
    }
    async fn agent_version(&mut self) -> String {
        legate_types::version::VERSION.to_string()
    }
    async fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
    async fn remaining_ms(&mut self) -> u64 {
        self.remaining().as_millis() as u64
    }
}

fn io_net_error(e: &std::io::Error) -> net::NetError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => net::NetError::Refused,
        std::io::ErrorKind::TimedOut => net::NetError::Timeout,
        _ => net::NetError::Other(e.to_string()),
    }
}

/// Connects to an allowed host:port within `budget`.
async fn connect(grants: Arc<Grants>, host: &str, port: u16, budget: Duration) -> Result<TcpStream, net::NetError> {
    if !grants.host_allowed(host, port) {
        return Err(net::NetError::Denied(format!("{host}:{port} is not in allow_hosts")));
    }
    let target = format!("{}:{port}", bracket(host));
    let addrs = match tokio::time::timeout(budget, tokio::net::lookup_host(target)).await {
        Err(_) => return Err(net::NetError::Timeout),
        Ok(Err(e)) => return Err(net::NetError::Resolve(e.to_string())),
        Ok(Ok(a)) => a.collect::<Vec<_>>(),
    };
    let Some(addr) = addrs.first().copied() else {
        return Err(net::NetError::Resolve(format!("{host}: no addresses")));
    };
    match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
        Err(_) => Err(net::NetError::Timeout),
        Ok(Err(e)) => Err(io_net_error(&e)),
        Ok(Ok(s)) => Ok(s),
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl net::Host for HostState {
    async fn tcp_connect(&mut self, host: String, port: u16, timeout_ms: u32) -> Result<u32, net::NetError> {
        crate::metrics::host_call(&self.plugin, "net");
        if self.conns.len() >= MAX_CONNS {
            return Err(net::NetError::Other(format!("too many open connections (at most {MAX_CONNS})")));
        }
        let stream = connect(self.grants.clone(), &host, port, self.budget(timeout_ms)).await?;
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, stream);
        Ok(id)
    }

    async fn tcp_send(&mut self, conn: u32, data: Vec<u8>) -> Result<(), net::NetError> {
        crate::metrics::host_call(&self.plugin, "net");
        let budget = self.budget(0);
        let stream = self.conns.get_mut(&conn).ok_or(net::NetError::UnknownConnection)?;
        match tokio::time::timeout(budget, stream.write_all(&data)).await {
            Err(_) => Err(net::NetError::Timeout),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(net::NetError::Closed),
            Ok(Err(e)) => Err(io_net_error(&e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn tcp_recv(&mut self, conn: u32, max: u32, timeout_ms: u32) -> Result<Vec<u8>, net::NetError> {
        crate::metrics::host_call(&self.plugin, "net");
        let budget = self.budget(timeout_ms);
        let stream = self.conns.get_mut(&conn).ok_or(net::NetError::UnknownConnection)?;
        let mut buf = vec![0u8; (max as usize).clamp(1, MAX_BODY)];
        match tokio::time::timeout(budget, stream.read(&mut buf)).await {
            Err(_) => Err(net::NetError::Timeout),
            Ok(Err(e)) => Err(io_net_error(&e)),
            Ok(Ok(n)) => {
                buf.truncate(n);
                Ok(buf)
            }
        }
    }

    async fn tcp_close(&mut self, conn: u32) {
        self.conns.remove(&conn);
    }

    async fn tls_certificates(
        &mut self,
        host: String,
        port: u16,
        server_name: String,
        timeout_ms: u32,
    ) -> Result<Vec<Vec<u8>>, net::NetError> {
        crate::metrics::host_call(&self.plugin, "net");
        let budget = self.budget(timeout_ms);
        let started = Instant::now();
        let tcp = connect(self.grants.clone(), &host, port, budget).await?;
        let name = if server_name.is_empty() { None } else { Some(server_name.as_str()) };
        let left = budget.saturating_sub(started.elapsed());
        let tls = tokio::time::timeout(left, legate_tls::handshake_insecure(tcp, &host, name))
            .await
            .map_err(|_| net::NetError::Timeout)?
            .map_err(|e| net::NetError::Other(e.to_string()))?;
        let (_, session) = tls.get_ref();
        let chain = session.peer_certificates().unwrap_or_default();
        Ok(chain.iter().map(|c| c.as_ref().to_vec()).collect())
    }
}

impl http::Host for HostState {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::HttpError> {
        crate::metrics::host_call(&self.plugin, "http");
        let url =
            reqwest::Url::parse(&req.url).map_err(|e| http::HttpError::InvalidUrl(format!("{}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(http::HttpError::Denied(format!("scheme {:?} is not allowed (http or https)", url.scheme())));
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        if !self.grants.host_allowed(&host, port) {
            return Err(http::HttpError::Denied(format!("{host}:{port} is not in allow_hosts")));
        }
        let budget = self.budget(req.timeout_ms);
        if budget.is_zero() {
            return Err(http::HttpError::Timeout);
        }
        let client = if req.tls_skip_verify { &self.http_insecure } else { &self.http };
        let method = match req.method {
            http::Method::Get => reqwest::Method::GET,
            http::Method::Head => reqwest::Method::HEAD,
            http::Method::Post => reqwest::Method::POST,
            http::Method::Put => reqwest::Method::PUT,
            http::Method::Delete => reqwest::Method::DELETE,
        };
        let mut rb = client.request(method, url).timeout(budget);
        for (k, v) in &req.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = req.body {
            rb = rb.body(body);
        }
        let started = Instant::now();
        let mut resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                http::HttpError::Timeout
            } else if e.is_connect() {
                http::HttpError::Connect(error_chain(&e))
            } else {
                http::HttpError::Other(error_chain(&e))
            }
        })?;
        let elapsed_us = started.elapsed().as_micros() as u64;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            let left = self.remaining();
            match tokio::time::timeout(left, resp.chunk()).await {
                Err(_) => return Err(http::HttpError::Timeout),
                Ok(Err(e)) => return Err(http::HttpError::Other(error_chain(&e))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    let room = MAX_BODY - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        Ok(http::Response { status, headers, body, truncated, elapsed_us })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<kv::Entry>, kv::KvError> {
        crate::metrics::host_call(&self.plugin, "kv");
        if !self.grants.kv_allowed(&key) {
            return Err(kv::KvError::Denied(format!("{key:?} is not under kv_read_prefixes")));
        }
        let src = self.kv.as_ref().ok_or_else(|| kv::KvError::Unavailable(no_store()))?;
        src.read_allowed(self.grants.token.as_deref(), &key).map_err(kv::KvError::Denied)?;
        src.get(&key).map_err(kv::KvError::Unavailable)
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, kv::KvError> {
        crate::metrics::host_call(&self.plugin, "kv");
        if !self.grants.kv_allowed(&prefix) {
            return Err(kv::KvError::Denied(format!("{prefix:?} is not under kv_read_prefixes")));
        }
        let src = self.kv.as_ref().ok_or_else(|| kv::KvError::Unavailable(no_store()))?;
        let token = self.grants.token.as_deref();
        src.read_allowed(token, &prefix).map_err(kv::KvError::Denied)?;
        let mut keys = src.list_keys(&prefix).map_err(kv::KvError::Unavailable)?;
        // Keys the token may not read are left out (as Consul filters listings).
        keys.retain(|k| src.read_allowed(token, k).is_ok());
        Ok(keys)
    }
}

fn no_store() -> String {
    "this agent has no local state store (plugins read KV on server agents)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matching() {
        let g = Grants {
            allow_hosts: vec!["127.0.0.1".into(), "db.local:5432".into(), "*.example.com".into(), "[::1]:80".into()],
            ..Default::default()
        };
        assert!(g.host_allowed("127.0.0.1", 8080));
        assert!(g.host_allowed("db.local", 5432));
        assert!(!g.host_allowed("db.local", 5433));
        assert!(g.host_allowed("API.example.com", 443));
        assert!(!g.host_allowed("example.com", 443));
        assert!(!g.host_allowed("evil-example.com", 443));
        assert!(g.host_allowed("::1", 80));
        assert!(!g.host_allowed("::1", 81));
        assert!(!g.host_allowed("10.0.0.1", 80));
        assert!(Grants { allow_hosts: vec!["*".into()], ..Default::default() }.host_allowed("anything", 1));
        assert!(!Grants::default().host_allowed("127.0.0.1", 80));
    }

    #[test]
    fn kv_prefixes() {
        let g = Grants { kv_read_prefixes: vec!["config/web/".into()], ..Default::default() };
        assert!(g.kv_allowed("config/web/x"));
        assert!(!g.kv_allowed("config/db/x"));
        assert!(!Grants::default().kv_allowed("a"));
    }
}
