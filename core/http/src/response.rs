//! `ApiResponse`: status, extra headers and a body that is JSON (pretty or compact, decided
//! once per request), plain text or raw bytes.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

#[derive(Debug)]
pub enum Body {
    Empty,
    Json(serde_json::Value),
    Text(String),
    Raw {
        content_type: &'static str,
        data: Bytes,
    },
    /// Plain text written as it comes (`/v1/agent/monitor`), until the sender ends it.
    Stream(warp::hyper::Body),
}

#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl ApiResponse {
    pub fn json<T: Serialize>(value: &T) -> Self {
        let value = serde_json::to_value(value).expect("response types serialize");
        ApiResponse { status: StatusCode::OK, headers: Vec::new(), body: Body::Json(value) }
    }

    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        ApiResponse { status, headers: Vec::new(), body: Body::Text(text.into()) }
    }

    pub fn empty(status: StatusCode) -> Self {
        ApiResponse { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The response with a JSON body serialized (as [`Self::into_http`] would), ready to be
    /// sent as it is more than once.
    pub fn serialized(mut self, pretty: bool) -> Self {
        if let Body::Json(v) = &self.body {
            self.body = Body::Raw { content_type: "application/json", data: json_bytes(v, pretty) };
        }
        self
    }

    /// A copy, unless the body is a stream; a body of bytes is shared, not copied.
    pub fn try_clone(&self) -> Option<Self> {
        let body = match &self.body {
            Body::Empty => Body::Empty,
            Body::Json(v) => Body::Json(v.clone()),
            Body::Text(t) => Body::Text(t.clone()),
            Body::Raw { content_type, data } => Body::Raw { content_type, data: data.clone() },
            Body::Stream(_) => return None,
        };
        Some(ApiResponse { status: self.status, headers: self.headers.clone(), body })
    }

    /// Serializes the body (JSON by [`json_bytes`]).
    pub fn into_http(self, pretty: bool) -> http::Response<warp::hyper::Body> {
        if let Body::Stream(stream) = self.body {
            let mut resp = http::Response::new(stream);
            *resp.status_mut() = self.status;
            *resp.headers_mut() = header_map(Some("text/plain; charset=utf-8"), self.headers);
            return resp;
        }
        let (content_type, body): (Option<&str>, Bytes) = match self.body {
            Body::Stream(_) => unreachable!("answered above"),
            Body::Empty => (None, Bytes::new()),
            Body::Json(v) => (Some("application/json"), json_bytes(&v, pretty)),
            Body::Text(t) => (Some("text/plain; charset=utf-8"), Bytes::from(t)),
            Body::Raw { content_type, data } => (Some(content_type), data),
        };
        let mut resp = http::Response::new(warp::hyper::Body::from(body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = header_map(content_type, self.headers);
        resp
    }
}

/// Go's `json.Marshal`, or with `pretty` `MarshalIndent(_, "", "    ")` plus a trailing newline,
/// as Consul does for `?pretty` and in `-dev`.
fn json_bytes(v: &serde_json::Value, pretty: bool) -> Bytes {
    let mut out = Vec::with_capacity(128);
    if pretty {
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        v.serialize(&mut ser).expect("json serializes");
        out.push(b'\n');
    } else {
        serde_json::to_writer(&mut out, v).expect("json serializes");
    }
    Bytes::from(out)
}

/// The response's header map, sized once (growing it reallocates, a per-request cost that
/// showed in the read path's profile), with the names every response carries made once.
fn header_map(content_type: Option<&'static str>, headers: Vec<(&'static str, String)>) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(headers.len() + 1);
    if let Some(ct) = content_type {
        map.append(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    }
    for (name, value) in headers {
        let Ok(value) = http::HeaderValue::try_from(value) else {
            tracing::warn!(header = name, "dropped a response header whose value is not valid in HTTP");
            continue;
        };
        match header_name(name) {
            Some(name) => map.append(name, value),
            None => {
                tracing::warn!(header = name, "dropped a response header whose name is not valid in HTTP");
                continue;
            }
        };
    }
    map
}

/// A header name: the common ones are made once (a name outside `http`'s standard set is
/// otherwise lowercased into a new allocation per response).
fn header_name(name: &'static str) -> Option<http::HeaderName> {
    use std::sync::LazyLock;
    static COMMON: LazyLock<Vec<(&'static str, http::HeaderName)>> = LazyLock::new(|| {
        [
            "X-Consul-Index",
            "X-Consul-Knownleader",
            "X-Consul-Lastcontact",
            "X-Consul-Effective-Consistency",
            "X-Consul-Default-Acl-Policy",
            "X-Consul-Results-Filtered-By-ACLs",
            "X-Consul-Contenthash",
            "X-Consul-Translate-Addresses",
            "X-Content-Type-Options",
            "X-Cache",
        ]
        .into_iter()
        .map(|n| (n, http::HeaderName::from_bytes(n.as_bytes()).expect("a valid header name")))
        .collect()
    });
    if let Some((_, h)) = COMMON.iter().find(|(n, _)| std::ptr::eq(*n, name) || *n == name) {
        return Some(h.clone());
    }
    http::HeaderName::from_bytes(name.as_bytes()).ok()
}
