//! legate-client: an async client for the `/v1` HTTP API of Legate (and Consul), used by the
//! `legate` CLI and by Rust programs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), legate_client::Error> {
//! let client = legate_client::Client::from_env()?;
//! client.kv_put("app/config", b"v1", &Default::default()).await?;
//! // Wait for the next change of the key (a blocking query).
//! let (entry, meta) = client.kv_get("app/config", &Default::default()).await?;
//! let (_next, _) = client
//!     .kv_get("app/config", &legate_client::QueryOptions { index: meta.index, ..Default::default() })
//!     .await?;
//! # let _ = entry; Ok(()) }
//! ```
//!
//! # Layout
//! - `Client`: address and token resolution (flags > `LEGATE_HTTP_*` > `CONSUL_HTTP_*`),
//!   request plumbing, `QueryMeta` from the response headers.
//! - KV, transactions, snapshots and status calls as methods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
pub use legate_api::kv::{DirEntry, KvPair, TxnResponse};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent answered with an error status; `body` is its plain-text reason.
    #[error("Unexpected response code: {status} ({body})")]
    Status { status: u16, body: String },
    #[error("error connecting to {addr}: {source}")]
    Transport { addr: String, source: reqwest::Error },
    #[error("invalid response: {0}")]
    Decode(String),
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("{0}")]
    Tls(String),
}

/// How to speak HTTPS to the agent: Consul's `-ca-file`, `-ca-path`, `-client-cert`,
/// `-client-key`, `-tls-server-name` and the `CONSUL_HTTP_SSL*` / `CONSUL_CACERT` ... variables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsOptions {
    /// Use https:// for an address given without a scheme (`CONSUL_HTTP_SSL=true`).
    pub https: bool,
    /// Do not verify the agent's certificate (`CONSUL_HTTP_SSL_VERIFY=false`).
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name to send as SNI and to verify the agent's certificate against, instead of the
    /// address's host.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// From `LEGATE_*` or `CONSUL_*` variables (the first set wins).
    pub fn from_env() -> TlsOptions {
        Self::from_vars(|n| std::env::var(n).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> TlsOptions {
        let get = |name: &str| {
            [format!("LEGATE_{name}"), format!("CONSUL_{name}")].iter().find_map(|n| var(n).filter(|v| !v.is_empty()))
        };
        let truthy = |v: Option<String>| v.and_then(|v| parse_bool(&v));
        TlsOptions {
            https: truthy(get("HTTP_SSL")).unwrap_or(false),
            insecure: truthy(get("HTTP_SSL_VERIFY")).map(|v| !v).unwrap_or(false),
            ca_file: get("CACERT").map(Into::into),
            ca_path: get("CAPATH").map(Into::into),
            client_cert: get("CLIENT_CERT").map(Into::into),
            client_key: get("CLIENT_KEY").map(Into::into),
            // A `host:port` form is accepted; the port is not part of the name.
            server_name: get("TLS_SERVER_NAME").map(|n| strip_port(&n)),
        }
    }

    /// Sets the name to verify the agent's certificate against; a `host:port` form is
    /// accepted, the port is not part of the name.
    pub fn set_server_name(&mut self, name: &str) {
        self.server_name = Some(strip_port(name)).filter(|n| !n.is_empty());
    }

    /// Whether anything here needs a client of its own.
    fn is_set(&self) -> bool {
        self.insecure
            || self.ca_file.is_some()
            || self.ca_path.is_some()
            || self.client_cert.is_some()
            || self.client_key.is_some()
            || self.server_name.is_some()
    }

    fn pem(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
        std::fs::read(path).map_err(|e| Error::Tls(format!("Error loading {what} {}: {e}", path.display())))
    }

    fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, Error> {
        if self.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let mut cas = Vec::new();
        if let Some(f) = &self.ca_file {
            cas.push(f.clone());
        }
        if let Some(dir) = &self.ca_path {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| Error::Tls(format!("Error loading CA path {}: {e}", dir.display())))?;
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
            files.sort();
            cas.extend(files);
        }
        if !cas.is_empty() {
            // As Go's client: a given CA replaces the system's roots.
            b = b.tls_built_in_root_certs(false);
        }
        for f in &cas {
            let pem = Self::pem(f, "CA file")?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Tls(format!("Error loading CA file {}: {e}", f.display())))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => {
                let mut pem = Self::pem(c, "client certificate")?;
                pem.push(b'\n');
                pem.extend(Self::pem(k, "client key")?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| Error::Tls(format!("Error loading client certificate {}: {e}", c.display())))?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => return Err(Error::Tls("both client cert and client key must be provided".into())),
        }
        Ok(b)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn strip_port(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.contains(':') => host.to_string(),
        _ => name.to_string(),
    }
}

/// Blocking-query and consistency options of a read.
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    /// Wait for a result with an index greater than this (0: do not block).
    pub index: u64,
    /// How long to wait (the agent's default, 5 minutes, when None).
    pub wait: Option<Duration>,
    pub stale: bool,
    pub consistent: bool,
    pub datacenter: Option<String>,
}

/// What the response headers say about a read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryMeta {
    pub index: u64,
    pub known_leader: bool,
    pub last_contact_ms: u64,
}

/// Options of a KV write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub flags: u64,
    /// Check-and-set: write only if the key's ModifyIndex is this (0: only if absent).
    pub cas: Option<u64>,
    pub acquire: Option<String>,
    pub release: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// `addr` is `host:port`, `http://host:port` or `https://...`.
    pub fn new(addr: &str, token: Option<String>) -> Result<Client, Error> {
        Self::with_tls(addr, token, &TlsOptions::default())
    }

    /// A client speaking HTTPS as `tls` says (with `tls.https`, an address without a scheme is
    /// https://).
    pub fn with_tls(addr: &str, token: Option<String>, tls: &TlsOptions) -> Result<Client, Error> {
        let scheme = if tls.https { "https" } else { "http" };
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else if let Some((s, _)) = addr.split_once("://") {
            return Err(Error::Address(format!("Unknown protocol scheme: {s}")));
        } else if addr.contains(':') {
            format!("{scheme}://{addr}")
        } else {
            return Err(Error::Address(addr.to_string()));
        };
        let mut builder = reqwest::Client::builder();
        let mut base = base;
        if tls.is_set() && base.starts_with("https://") {
            builder = tls.apply(builder)?;
            if let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) {
                // Dial the address given, but speak to it as `name`: the URL carries the name
                // (SNI and verification use it) and the resolver maps it to the address.
                let url = reqwest::Url::parse(&base).map_err(|_| Error::Address(addr.to_string()))?;
                let host = url.host_str().ok_or_else(|| Error::Address(addr.to_string()))?;
                let port = url.port_or_known_default().unwrap_or(443);
                let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.trim_matches(['[', ']']), port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| Error::Address(addr.to_string()))?;
                builder = builder.resolve(name, target);
                base = format!("https://{name}:{port}{}", url.path().trim_end_matches('/'));
            }
        }
        let http = builder.build().map_err(|e| Error::Transport { addr: base.clone(), source: e })?;
        Ok(Client { base, token, http })
    }

    /// Address from `LEGATE_HTTP_ADDR` or `CONSUL_HTTP_ADDR` (default `127.0.0.1:8500`), token
    /// from `LEGATE_HTTP_TOKEN` or `CONSUL_HTTP_TOKEN`.
    pub fn from_env() -> Result<Client, Error> {
        Self::with_overrides(None, None)
    }

    /// Flags first, then the environment, then the default; TLS from the environment.
    pub fn with_overrides(addr: Option<&str>, token: Option<&str>) -> Result<Client, Error> {
        Self::with_overrides_tls(addr, token, &TlsOptions::from_env())
    }

    /// As [`Client::with_overrides`], with TLS options already resolved.
    pub fn with_overrides_tls(addr: Option<&str>, token: Option<&str>, tls: &TlsOptions) -> Result<Client, Error> {
        let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        let addr = addr
            .map(str::to_string)
            .or_else(|| env(&["LEGATE_HTTP_ADDR", "CONSUL_HTTP_ADDR"]))
            .unwrap_or_else(|| "127.0.0.1:8500".into());
        let token = token.map(str::to_string).or_else(|| env(&["LEGATE_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"]));
        Self::with_tls(&addr, token, tls)
    }

    /// The same client sending no ACL token (`legate login`: the bearer token is the credential).
    pub fn without_token(mut self) -> Client {
        self.token = None;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<Bytes>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes), Error> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path)).query(query);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let transport = |e| Error::Transport { addr: self.base.clone(), source: e };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(transport)?;
        Ok((status, headers, bytes))
    }

    /// A GET whose body is read as it comes (`/v1/agent/monitor`): the response, once its
    /// status is a success.
    pub async fn get_stream(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Response, Error> {
        let mut req = self.http.get(format!("{}{}", self.base, path)).query(query);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let transport = |e| Error::Transport { addr: self.base.clone(), source: e };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.map_err(transport)?;
        Err(Error::Status { status: status.as_u16(), body: String::from_utf8_lossy(&body).trim().to_string() })
    }

    fn check(status: StatusCode, body: &Bytes) -> Result<(), Error> {
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::Status { status: status.as_u16(), body: String::from_utf8_lossy(body).trim().to_string() })
        }
    }

    fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
        serde_json::from_slice(body).map_err(|e| Error::Decode(e.to_string()))
    }

    fn meta(headers: &reqwest::header::HeaderMap) -> QueryMeta {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        QueryMeta {
            index: get("X-Consul-Index").and_then(|v| v.parse().ok()).unwrap_or(0),
            known_leader: get("X-Consul-KnownLeader").as_deref() == Some("true"),
            last_contact_ms: get("X-Consul-LastContact").and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }

    fn query(opts: &QueryOptions) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if opts.index > 0 {
            q.push(("index".into(), opts.index.to_string()));
        }
        if let Some(w) = opts.wait {
            q.push(("wait".into(), format!("{}ms", w.as_millis())));
        }
        if opts.stale {
            q.push(("stale".into(), String::new()));
        }
        if opts.consistent {
            q.push(("consistent".into(), String::new()));
        }
        if let Some(dc) = &opts.datacenter {
            q.push(("dc".into(), dc.clone()));
        }
        q
    }

    fn kv_path(key: &str) -> String {
        let encoded: String = key
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        format!("/v1/kv/{encoded}")
    }

    /// GET a JSON endpoint (`/v1/catalog/nodes`, ...) with extra query pairs.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
        extra: &[(&str, &str)],
    ) -> Result<(T, QueryMeta), Error> {
        let mut q = Self::query(opts);
        q.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (status, headers, body) = self.send(Method::GET, path, &q, None).await?;
        Self::check(status, &body)?;
        Ok((Self::json(&body)?, Self::meta(&headers)))
    }

    /// GET any endpoint without interpreting the status: (status, meta, body). Watches use it to
    /// tell a missing key (404) from an error.
    pub async fn get_raw(
        &self,
        path: &str,
        opts: &QueryOptions,
        extra: &[(&str, &str)],
    ) -> Result<(u16, QueryMeta, Bytes), Error> {
        let mut q = Self::query(opts);
        q.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (status, headers, body) = self.send(Method::GET, path, &q, None).await?;
        Ok((status.as_u16(), Self::meta(&headers), body))
    }

    /// GET raw bytes with the response's headers (`legate plugin pull`).
    pub async fn get_bytes(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(reqwest::header::HeaderMap, Bytes), Error> {
        let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (status, headers, bytes) = self.send(Method::GET, path, &q, None).await?;
        Self::check(status, &bytes)?;
        Ok((headers, bytes))
    }

    /// PUT to an endpoint with an optional JSON body; returns the raw response body.
    pub async fn put_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Bytes, Error> {
        let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, _, bytes) = self.send(Method::PUT, path, &q, body).await?;
        Self::check(status, &bytes)?;
        Ok(bytes)
    }

    /// DELETE with query pairs.
    pub async fn delete_path(&self, path: &str, query: &[(&str, &str)]) -> Result<Bytes, Error> {
        let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (status, _, bytes) = self.send(Method::DELETE, path, &q, None).await?;
        Self::check(status, &bytes)?;
        Ok(bytes)
    }

    /// Any method with a JSON body.
    pub async fn request_json(&self, method: &str, path: &str, body: &serde_json::Value) -> Result<Bytes, Error> {
        let m = Method::from_bytes(method.as_bytes()).map_err(|e| Error::Decode(e.to_string()))?;
        let (status, _, bytes) = self.send(m, path, &[], Some(Bytes::from(body.to_string()))).await?;
        Self::check(status, &bytes)?;
        Ok(bytes)
    }

    /// PUT a raw body (event payloads).
    pub async fn put_raw(&self, path: &str, query: &[(&str, &str)], body: Vec<u8>) -> Result<Bytes, Error> {
        let q: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (status, _, bytes) = self.send(Method::PUT, path, &q, Some(Bytes::from(body))).await?;
        Self::check(status, &bytes)?;
        Ok(bytes)
    }

    /// One key; `None` when it does not exist.
    pub async fn kv_get(&self, key: &str, opts: &QueryOptions) -> Result<(Option<DirEntry>, QueryMeta), Error> {
        let (status, headers, body) = self.send(Method::GET, &Self::kv_path(key), &Self::query(opts), None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok((None, Self::meta(&headers)));
        }
        Self::check(status, &body)?;
        let mut entries: Vec<DirEntry> = Self::json(&body)?;
        Ok((entries.pop(), Self::meta(&headers)))
    }

    /// Every entry under a prefix (empty when none).
    pub async fn kv_list(&self, prefix: &str, opts: &QueryOptions) -> Result<(Vec<DirEntry>, QueryMeta), Error> {
        let mut q = Self::query(opts);
        q.push(("recurse".into(), String::new()));
        let (status, headers, body) = self.send(Method::GET, &Self::kv_path(prefix), &q, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok((Vec::new(), Self::meta(&headers)));
        }
        Self::check(status, &body)?;
        Ok((Self::json(&body)?, Self::meta(&headers)))
    }

    /// Keys under a prefix, folded at `separator` when given.
    pub async fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<String>, QueryMeta), Error> {
        let mut q = Self::query(opts);
        q.push(("keys".into(), String::new()));
        if let Some(s) = separator {
            q.push(("separator".into(), s.to_string()));
        }
        let (status, headers, body) = self.send(Method::GET, &Self::kv_path(prefix), &q, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok((Vec::new(), Self::meta(&headers)));
        }
        Self::check(status, &body)?;
        Ok((Self::json(&body)?, Self::meta(&headers)))
    }

    /// Writes a value; `false` when a CAS or lock condition refused it.
    pub async fn kv_put(&self, key: &str, value: &[u8], opts: &WriteOptions) -> Result<bool, Error> {
        let mut q = Vec::new();
        if opts.flags != 0 {
            q.push(("flags".into(), opts.flags.to_string()));
        }
        if let Some(c) = opts.cas {
            q.push(("cas".into(), c.to_string()));
        }
        if let Some(s) = &opts.acquire {
            q.push(("acquire".into(), s.clone()));
        }
        if let Some(s) = &opts.release {
            q.push(("release".into(), s.clone()));
        }
        let (status, _, body) =
            self.send(Method::PUT, &Self::kv_path(key), &q, Some(Bytes::copy_from_slice(value))).await?;
        Self::check(status, &body)?;
        Self::json(&body)
    }

    /// Deletes a key (or a whole prefix with `recurse`); `false` when a CAS refused it.
    pub async fn kv_delete(&self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool, Error> {
        let mut q = Vec::new();
        if recurse {
            q.push(("recurse".into(), String::new()));
        }
        if let Some(c) = cas {
            q.push(("cas".into(), c.to_string()));
        }
        let (status, _, body) = self.send(Method::DELETE, &Self::kv_path(key), &q, None).await?;
        Self::check(status, &body)?;
        Self::json(&body)
    }

    /// Runs a transaction (a JSON array of operations); a rollback (409) is returned as a
    /// response with `Errors`, not as an error.
    pub async fn txn(&self, ops: &serde_json::Value) -> Result<TxnResponse, Error> {
        let body = Bytes::from(serde_json::to_vec(ops).map_err(|e| Error::Decode(e.to_string()))?);
        let (status, _, body) = self.send(Method::PUT, "/v1/txn", &[], Some(body)).await?;
        if status != StatusCode::CONFLICT {
            Self::check(status, &body)?;
        }
        Self::json(&body)
    }

    /// A snapshot archive of the whole state, and the index it was taken at.
    pub async fn snapshot_save(&self, stale: bool) -> Result<(Bytes, u64), Error> {
        let q = if stale { vec![("stale".to_string(), String::new())] } else { Vec::new() };
        let (status, headers, body) = self.send(Method::GET, "/v1/snapshot", &q, None).await?;
        Self::check(status, &body)?;
        Ok((body, Self::meta(&headers).index))
    }

    /// Restores a snapshot archive.
    pub async fn snapshot_restore(&self, archive: Bytes) -> Result<(), Error> {
        let (status, _, body) = self.send(Method::PUT, "/v1/snapshot", &[], Some(archive)).await?;
        Self::check(status, &body)
    }

    pub async fn status_leader(&self) -> Result<String, Error> {
        let (status, _, body) = self.send(Method::GET, "/v1/status/leader", &[], None).await?;
        Self::check(status, &body)?;
        Self::json(&body)
    }

    /// Calls `f` with each new result of a blocking KV read of `key` until `f` returns false;
    /// resets the index if it goes backwards, as Consul's clients must.
    pub async fn watch_key<F>(&self, key: &str, wait: Duration, mut f: F) -> Result<(), Error>
    where
        F: FnMut(Option<&DirEntry>, &QueryMeta) -> bool,
    {
        let mut index = 0;
        loop {
            let opts = QueryOptions { index, wait: Some(wait), ..Default::default() };
            let (entry, meta) = self.kv_get(key, &opts).await?;
            if meta.index != index && !f(entry.as_ref(), &meta) {
                return Ok(());
            }
            index = if meta.index < index { 0 } else { meta.index.max(1) };
        }
    }
}

/// Decodes a DirEntry's base64 value.
pub fn decode_value(entry: &DirEntry) -> Result<Vec<u8>, Error> {
    match &entry.value {
        None => Ok(Vec::new()),
        Some(v) => base64::engine::general_purpose::STANDARD.decode(v).map_err(|e| Error::Decode(e.to_string())),
    }
}

/// Sessions and locks: the building blocks of leader election (`legate lock`).
impl Client {
    /// Creates a session on the agent's node; returns its ID.
    pub async fn session_create(&self, name: &str, ttl: Duration, lock_delay: Duration) -> Result<String, Error> {
        let body = serde_json::json!({
            "Name": name,
            "TTL": format!("{}s", ttl.as_secs().max(10)),
            "LockDelay": format!("{}ms", lock_delay.as_millis()),
            "Behavior": "release",
        });
        let bytes = self.request_json("PUT", "/v1/session/create", &body).await?;
        let v: serde_json::Value = Self::json(&bytes)?;
        v["ID"].as_str().map(str::to_string).ok_or_else(|| Error::Decode("session create: no ID".into()))
    }

    /// Renews a session; false if it no longer exists.
    pub async fn session_renew(&self, id: &str) -> Result<bool, Error> {
        let (status, _, body) = self.send(Method::PUT, &format!("/v1/session/renew/{id}"), &[], None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::check(status, &body)?;
        Ok(true)
    }

    pub async fn session_destroy(&self, id: &str) -> Result<(), Error> {
        let (status, _, body) = self.send(Method::PUT, &format!("/v1/session/destroy/{id}"), &[], None).await?;
        Self::check(status, &body)
    }
}

/// How long the next blocking wait of an acquire may be: up to 15 s, less near `deadline`;
/// None once it has passed.
fn next_wait(deadline: Option<std::time::Instant>) -> Option<Duration> {
    match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(std::time::Instant::now());
            (!left.is_zero()).then(|| left.min(Duration::from_secs(15)))
        }
        None => Some(Duration::from_secs(15)),
    }
}

/// A mutual-exclusion lock on one key, held by a session (Consul's lock recipe): acquire with
/// `?acquire`, wait on the key with blocking queries while someone else holds it, and watch it
/// after acquiring to notice a loss (session invalidated, key released by someone else).
pub struct Lock {
    client: Client,
    key: String,
    session: String,
}

impl Lock {
    pub fn new(client: Client, key: impl Into<String>, session: impl Into<String>) -> Lock {
        Lock { client, key: key.into(), session: session.into() }
    }

    /// Tries once; true when this session holds the lock.
    pub async fn try_acquire(&self, value: &[u8]) -> Result<bool, Error> {
        let opts = WriteOptions { acquire: Some(self.session.clone()), ..Default::default() };
        self.client.kv_put(&self.key, value, &opts).await
    }

    /// Blocks until the lock is held (or `timeout` passes: false).
    pub async fn acquire(&self, value: &[u8], timeout: Option<Duration>) -> Result<bool, Error> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut index = 0;
        loop {
            if self.try_acquire(value).await? {
                return Ok(true);
            }
            let Some(wait) = next_wait(deadline) else { return Ok(false) };
            // Wait for the holder to change (or the lock-delay to pass: retry at least every 1 s
            // while the key is free but refused).
            let (entry, meta) =
                self.client.kv_get(&self.key, &QueryOptions { index, wait: Some(wait), ..Default::default() }).await?;
            let free = entry.as_ref().is_none_or(|e| e.session.is_none());
            if free && meta.index == index {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            index = meta.index;
        }
    }

    /// Waits until this session no longer holds the lock. The first read is a consistent one
    /// (answered by the leader), so a server that has not yet applied the acquire does not
    /// report the lock lost.
    pub async fn wait_lost(&self) -> Result<(), Error> {
        let mut index = 0;
        let mut consistent = true;
        loop {
            let opts = QueryOptions { index, wait: Some(Duration::from_secs(30)), consistent, ..Default::default() };
            let (entry, meta) = self.client.kv_get(&self.key, &opts).await?;
            if entry.as_ref().and_then(|e| e.session.as_deref()) != Some(self.session.as_str()) {
                return Ok(());
            }
            consistent = false;
            index = meta.index;
        }
    }

    /// Releases the lock (if held).
    pub async fn release(&self) -> Result<bool, Error> {
        let opts = WriteOptions { release: Some(self.session.clone()), ..Default::default() };
        self.client.kv_put(&self.key, &[], &opts).await
    }
}

/// A semaphore of `limit` holders under a prefix (Consul's semaphore recipe): each contender
/// holds `<prefix>/<session>` with its session; `<prefix>/.lock` holds `{"Limit":N,"Holders":{..}}`
/// updated by check-and-set. Holders whose contender key is gone are pruned.
pub struct Semaphore {
    client: Client,
    prefix: String,
    session: String,
    limit: u32,
}

impl Semaphore {
    pub fn new(client: Client, prefix: impl Into<String>, session: impl Into<String>, limit: u32) -> Semaphore {
        Semaphore { client, prefix: prefix.into().trim_end_matches('/').to_string(), session: session.into(), limit }
    }

    fn lock_key(&self) -> String {
        format!("{}/.lock", self.prefix)
    }

    fn contender_key(&self) -> String {
        format!("{}/{}", self.prefix, self.session)
    }

    /// Live contenders: keys under the prefix still held by their session.
    async fn live(&self) -> Result<std::collections::BTreeSet<String>, Error> {
        let (entries, _) = self.client.kv_list(&format!("{}/", self.prefix), &QueryOptions::default()).await?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.key.ends_with("/.lock"))
            .filter_map(|e| e.session.clone().filter(|s| e.key.ends_with(s.as_str())))
            .collect())
    }

    /// Blocks until this session is one of the holders (or `timeout` passes: false).
    pub async fn acquire(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let opts = WriteOptions { acquire: Some(self.session.clone()), ..Default::default() };
        if !self.client.kv_put(&self.contender_key(), &[], &opts).await? {
            return Err(Error::Decode("could not create the contender key".into()));
        }
        let mut index = 0;
        loop {
            let (entry, meta) = self.client.kv_get(&self.lock_key(), &QueryOptions::default()).await?;
            let mut state: serde_json::Value = match &entry {
                Some(e) => serde_json::from_slice(&decode_value(e)?).unwrap_or_else(|_| serde_json::json!({})),
                None => serde_json::json!({}),
            };
            if let Some(l) = state.get("Limit").and_then(serde_json::Value::as_u64) {
                if l != u64::from(self.limit) {
                    return Err(Error::Decode(format!("semaphore limit conflict (lock: {l}, local: {})", self.limit)));
                }
            }
            let live = self.live().await?;
            let mut holders: std::collections::BTreeSet<String> = state
                .get("Holders")
                .and_then(serde_json::Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            holders.retain(|h| live.contains(h));
            if holders.contains(&self.session) {
                return Ok(true);
            }
            if holders.len() < self.limit as usize {
                holders.insert(self.session.clone());
                state = serde_json::json!({
                    "Limit": self.limit,
                    "Holders": holders.iter().map(|h| (h.clone(), serde_json::Value::Bool(true))).collect::<serde_json::Map<_, _>>(),
                });
                let cas = entry.as_ref().map_or(0, |e| e.modify_index);
                let w = WriteOptions { cas: Some(cas), ..Default::default() };
                if self.client.kv_put(&self.lock_key(), state.to_string().as_bytes(), &w).await? {
                    return Ok(true);
                }
                continue;
            }
            let Some(wait) = next_wait(deadline) else { return Ok(false) };
            // Wait for a change anywhere under the prefix (a holder leaving, a contender dying).
            let (_, m) = self
                .client
                .kv_list(
                    &format!("{}/", self.prefix),
                    &QueryOptions { index: index.max(meta.index), wait: Some(wait), ..Default::default() },
                )
                .await?;
            index = m.index;
        }
    }

    /// Waits until this session is no longer a holder (or its contender key is gone).
    pub async fn wait_lost(&self) -> Result<(), Error> {
        let mut index = 0;
        let mut consistent = true;
        loop {
            let opts = QueryOptions { index, wait: Some(Duration::from_secs(30)), consistent, ..Default::default() };
            let (entries, meta) = self.client.kv_list(&format!("{}/", self.prefix), &opts).await?;
            consistent = false;
            let mine = entries
                .iter()
                .any(|e| e.key == self.contender_key() && e.session.as_deref() == Some(self.session.as_str()));
            let listed = entries.iter().find(|e| e.key == self.lock_key()).and_then(|e| {
                let v: serde_json::Value = serde_json::from_slice(&decode_value(e).ok()?).ok()?;
                Some(v.get("Holders")?.get(&self.session).is_some())
            });
            if !mine || listed == Some(false) {
                return Ok(());
            }
            index = meta.index;
        }
    }

    /// Leaves the holders and deletes the contender key.
    pub async fn release(&self) -> Result<(), Error> {
        for _ in 0..10 {
            let (entry, _) = self.client.kv_get(&self.lock_key(), &QueryOptions::default()).await?;
            let Some(e) = entry else { break };
            let mut state: serde_json::Value =
                serde_json::from_slice(&decode_value(&e)?).unwrap_or_else(|_| serde_json::json!({}));
            if let Some(h) = state.get_mut("Holders").and_then(serde_json::Value::as_object_mut) {
                if h.remove(&self.session).is_none() {
                    break;
                }
            } else {
                break;
            }
            let w = WriteOptions { cas: Some(e.modify_index), ..Default::default() };
            if self.client.kv_put(&self.lock_key(), state.to_string().as_bytes(), &w).await? {
                break;
            }
        }
        self.client.kv_delete(&self.contender_key(), false, None).await?;
        Ok(())
    }
}
