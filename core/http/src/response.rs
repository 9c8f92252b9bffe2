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

    /// Serializes the body: Go's `json.Marshal`, or with `pretty` `MarshalIndent(_, "", "    ")`
    /// plus a trailing newline, as Consul does for `?pretty` and in `-dev`.
    pub fn into_http(self, pretty: bool) -> http::Response<warp::hyper::Body> {
        if let Body::Stream(stream) = self.body {
            let mut builder =
                http::Response::builder().status(self.status).header("Content-Type", "text/plain; charset=utf-8");
            for (name, value) in self.headers {
                builder = builder.header(name, value);
            }
            return builder.body(stream).expect("valid response");
        }
        let (content_type, body): (Option<&str>, Bytes) = match self.body {
            Body::Stream(_) => unreachable!("answered above"),
            Body::Empty => (None, Bytes::new()),
            Body::Json(v) => {
                let mut out = Vec::with_capacity(128);
                if pretty {
                    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
                    v.serialize(&mut ser).expect("json serializes");
                    out.push(b'\n');
                } else {
                    serde_json::to_writer(&mut out, &v).expect("json serializes");
                }
                (Some("application/json"), Bytes::from(out))
            }
            Body::Text(t) => (Some("text/plain; charset=utf-8"), Bytes::from(t)),
            Body::Raw { content_type, data } => (Some(content_type), data),
        };
        let mut builder = http::Response::builder().status(self.status);
        if let Some(ct) = content_type {
            builder = builder.header("Content-Type", ct);
        }
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder.body(warp::hyper::Body::from(body)).expect("valid response")
    }
}
