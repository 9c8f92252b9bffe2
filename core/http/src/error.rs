//! `ApiError`: every failure an endpoint can answer with, mapped to a status code and Consul's
//! plain-text body in exactly one place ([`ApiError::into_response`]).

use http::{Method, StatusCode};

use super::response::ApiResponse;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with Consul's text (`Invalid wait time`, `Request decode failed: ...`).
    #[error("{0}")]
    BadRequest(String),
    /// 401 (`ACL support disabled`).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 (`Permission denied...`, `Endpoint is blocked by agent configuration`).
    #[error("{0}")]
    Forbidden(String),
    /// 404; Consul answers unknown URLs and missing keys with an empty body.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method X not allowed`, with the `Allow` header.
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: Method, allow: Vec<Method> },
    /// `OPTIONS` on an endpoint: 200 with the `Allow` header (not an error for the client, but
    /// it short-circuits the handler the same way).
    #[error("options")]
    Options { allow: Vec<Method> },
    /// 413 (`Request body(N bytes) too large, max size: M bytes...`).
    #[error("{0}")]
    TooLarge(String),
    /// 415 (Prometheus metrics asked for while they are off).
    #[error("{0}")]
    Unsupported(String),
    /// 429 (`RPC rate limit exceeded`: a client agent over `limits.rpc_rate`).
    #[error("{0}")]
    TooManyRequests(String),
    /// 500 (`No cluster leader`, `rpc error ...`).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A failure of a call to the servers (`ServerLink`): 429 when the agent's RPC rate is
    /// spent, else 500.
    pub fn from_link(why: String) -> ApiError {
        if why == legate_raft::link::RATE_LIMITED {
            ApiError::TooManyRequests(why)
        } else {
            ApiError::Internal(why)
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Options { .. } => StatusCode::OK,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        match self {
            ApiError::MethodNotAllowed { ref allow, .. } => {
                let allow = join_methods(allow);
                ApiResponse::text(status, self.to_string()).header("Allow", allow)
            }
            ApiError::Options { allow } => ApiResponse::empty(status).header("Allow", join_methods(&allow)),
            other => ApiResponse::text(status, other.to_string()),
        }
    }
}

fn join_methods(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
}
