//! `ApiResponse`: status, extra headers and a body that is JSON (serialized compact from the
//! handler's types, made pretty as it is sent when the request asks), plain text or raw bytes.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

#[derive(Debug)]
pub enum Body {
    Empty,
    /// Compact JSON, written straight from the handler's types (a `serde_json::Value` built
    /// first cost an allocation per field and string, and showed in the read path's profile).
    Json(Bytes),
    Text(String),
    Raw {
        content_type: &'static str,
        data: Bytes,
    },
    /// Plain text written as it comes (`/v1/agent/monitor`), until the sender ends it.
    Stream(hyper::Body),
}

/// Extra response headers by name; a value known at compile time is not copied.
pub type Headers = Vec<(&'static str, Cow<'static, str>)>;

#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Headers,
    pub body: Body,
}

impl ApiResponse {
    pub fn json<T: Serialize>(value: &T) -> Self {
        let mut out = Vec::with_capacity(128);
        serde_json::to_writer(&mut out, value).expect("response types serialize");
        ApiResponse { status: StatusCode::OK, headers: Vec::new(), body: Body::Json(Bytes::from(out)) }
    }

    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        ApiResponse { status, headers: Vec::new(), body: Body::Text(text.into()) }
    }

    pub fn empty(status: StatusCode) -> Self {
        ApiResponse { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
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
    pub fn into_http(self, pretty: bool) -> http::Response<hyper::Body> {
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
        let mut resp = http::Response::new(hyper::Body::from(body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = header_map(content_type, self.headers);
        resp
    }
}

/// Go's `json.Marshal` (the compact body as it is), or with `pretty` `MarshalIndent(_, "",
/// "    ")` plus a trailing newline, as Consul does for `?pretty` and in `-dev`: read back in
/// order (`preserve_order`) and written indented. A body too deeply nested to read back
/// (serde_json's reader stops at 128 levels) goes compact.
fn json_bytes(compact: &Bytes, pretty: bool) -> Bytes {
    let read = || serde_json::from_slice::<serde_json::Value>(compact);
    let Some(v) = pretty.then(read).and_then(Result::ok) else {
        return compact.clone();
    };
    let mut out = Vec::with_capacity(compact.len() * 2);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("json serializes");
    out.push(b'\n');
    Bytes::from(out)
}

/// The response's header map, sized once (growing it reallocates, a per-request cost that
/// showed in the read path's profile), with the names every response carries made once.
fn header_map(content_type: Option<&'static str>, headers: Headers) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(headers.len() + 1);
    if let Some(ct) = content_type {
        map.append(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    }
    for (name, value) in headers {
        let value = match value {
            // Shared, not copied (`from_static` takes only what `from_str` would accept).
            Cow::Borrowed(v) if v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) => {
                Ok(http::HeaderValue::from_static(v))
            }
            Cow::Borrowed(v) => http::HeaderValue::from_str(v),
            Cow::Owned(v) => http::HeaderValue::try_from(v),
        };
        let Ok(value) = value else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        key: &'static str,
        flags: u64,
        value: Option<&'static str>,
        weight: f64,
        tags: Vec<&'static str>,
    }

    #[test]
    fn json_is_compact_and_pretty_keeps_the_order_and_values_of_the_fields() {
        let entry = Entry { key: "z/a\"b", flags: u64::MAX, value: None, weight: 0.5, tags: vec!["b", "a"] };
        let Body::Json(compact) = ApiResponse::json(&[&entry]).body else { panic!("a JSON body") };
        let want = r#"[{"Key":"z/a\"b","Flags":18446744073709551615,"Value":null,"Weight":0.5,"Tags":["b","a"]}]"#;
        assert_eq!(std::str::from_utf8(&compact).unwrap(), want);
        assert_eq!(json_bytes(&compact, false), compact);
        let pretty = json_bytes(&compact, true);
        let want = "[\n    {\n        \"Key\": \"z/a\\\"b\",\n        \"Flags\": 18446744073709551615,\n        \"Value\": null,\n        \"Weight\": 0.5,\n        \"Tags\": [\n            \"b\",\n            \"a\"\n        ]\n    }\n]\n";
        assert_eq!(std::str::from_utf8(&pretty).unwrap(), want);
    }

    #[test]
    fn a_body_too_deep_to_read_back_goes_compact() {
        let deep = Bytes::from(format!("{}{}", "[".repeat(200), "]".repeat(200)));
        assert_eq!(json_bytes(&deep, true), deep);
        let shallow = Bytes::from_static(b"[[]]");
        assert_eq!(json_bytes(&shallow, true), Bytes::from_static(b"[\n    []\n]\n"));
    }

    #[test]
    fn a_literal_header_value_is_shared_and_a_bad_one_is_dropped() {
        let map = header_map(
            None,
            vec![
                ("X-Consul-Knownleader", "true".into()),
                ("X-Bad", "a\nb".into()),
                ("X-Owned", "7".to_string().into()),
            ],
        );
        assert_eq!(map.get("x-consul-knownleader").unwrap(), "true");
        assert_eq!(map.get("x-owned").unwrap(), "7");
        assert!(map.get("x-bad").is_none());
    }
}
