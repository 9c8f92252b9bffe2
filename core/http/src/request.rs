//! `Request`: what every endpoint receives, already decoded (path, query pairs, headers, body),
//! with Consul's parsing rules for flags by presence and method restrictions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::error::ApiError;
use legate_acl::{Access, Authz, Resource};

pub struct Request {
    pub method: Method,
    /// Decoded path below `/v1/`, e.g. `agent/self` or `kv/a/b c`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub remote: Option<SocketAddr>,
    /// What the request's token may do (everything when ACLs are off); set by the dispatcher.
    pub authz: Arc<Authz>,
    /// Set by a handler that dropped list entries the token may not read
    /// (`X-Consul-Results-Filtered-By-ACLs`).
    pub filtered: AtomicBool,
    /// The route the dispatcher found (None: no route takes the path).
    pub route: Option<&'static super::routes::Route>,
    /// Whether its JSON answer is indented (`?pretty`, or `-dev` for a call to this port).
    pub pretty: bool,
}

impl Request {
    pub fn new(
        method: Method,
        path: String,
        query: Vec<(String, String)>,
        headers: HeaderMap,
        body: Bytes,
        remote: Option<SocketAddr>,
    ) -> Request {
        Request {
            method,
            path,
            query,
            headers,
            body,
            remote,
            authz: Arc::new(Authz::disabled()),
            filtered: AtomicBool::new(false),
            route: None,
            pretty: false,
        }
    }

    /// Fails with Consul's 403 unless the token has `need` on `segment` of `res`.
    pub fn require(&self, res: Resource, segment: &str, need: Access) -> Result<(), ApiError> {
        self.authz.require(res, segment, need).map_err(|d| ApiError::Forbidden(d.0))
    }

    /// Whether a list entry stays; a dropped one marks the response as filtered.
    pub fn keep(&self, res: Resource, segment: &str, need: Access) -> bool {
        let ok = self.authz.allowed(res, segment, need);
        if !ok && self.authz.flags_filtering() {
            self.filtered.store(true, Ordering::Relaxed);
        }
        ok
    }

    /// Whether the token may read `segment` of `res` (a filter shorthand).
    pub fn can_read(&self, res: Resource, segment: &str) -> bool {
        self.keep(res, segment, Access::Read)
    }

    /// Fails with 405 (or answers `OPTIONS`) unless the method is one of `allowed`.
    pub fn allow(&self, allowed: &[Method]) -> Result<(), ApiError> {
        if allowed.contains(&self.method) {
            return Ok(());
        }
        Err(self.not_allowed(allowed))
    }

    /// The answer to a method the path does not take: `OPTIONS` lists the allowed ones, anything
    /// else is a 405 with `Allow`.
    pub fn not_allowed(&self, allowed: &[Method]) -> ApiError {
        if self.method == Method::OPTIONS {
            let mut allow = allowed.to_vec();
            allow.push(Method::OPTIONS);
            return ApiError::Options { allow };
        }
        ApiError::MethodNotAllowed { method: self.method.clone(), allow: allowed.to_vec() }
    }

    /// The last value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A flag by presence, as Consul reads them: `?recurse`, `?recurse=`, `?recurse=true` are
    /// set; `?recurse=false` is not.
    pub fn flag(&self, name: &str) -> bool {
        match self.param(name) {
            None => false,
            Some(v) => !v.eq_ignore_ascii_case("false") && v != "0",
        }
    }
}

/// Splits and decodes a query string (`+` is a space, `%xx` escapes).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).into_owned().collect()
}

/// Decodes a percent-encoded path as Go's `URL.Path` does.
pub fn decode_path(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned()
}
