//! `ApiError`: every failure an endpoint can answer with, mapped to a status code and Consul's
//! plain-text body in exactly one place ([`ApiError::into_response`]).

use http::{Method, StatusCode};

use legate_agent::AgentError;
use legate_gossip::GossipError;
use legate_raft::endpoints::EndpointError;
use legate_raft::link::LinkError;

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
    /// 409: a write that conflicts with what is stored (a plugin version that exists with
    /// other content).
    #[error("{0}")]
    Conflict(String),
    /// 413 (`Request body(N bytes) too large, max size: M bytes...`).
    #[error("{0}")]
    TooLarge(String),
    /// 429 (`RPC rate limit exceeded`: a client agent over `limits.rpc_rate`).
    #[error("{0}")]
    TooManyRequests(String),
    /// 500 (`No cluster leader`, `rpc error ...`).
    #[error("{0}")]
    Internal(String),
}

/// A failure of a call to the servers: 429 when the agent's RPC rate is spent, 403 when the
/// server refused the token, else 500.
impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> ApiError {
        match e {
            LinkError::RateLimited => ApiError::TooManyRequests(e.to_string()),
            LinkError::Endpoint(EndpointError::AclNotFound) => ApiError::Forbidden(e.to_string()),
            LinkError::Endpoint(EndpointError::PermissionDenied(why)) => ApiError::Forbidden(why),
            other => ApiError::Internal(other.to_string()),
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
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
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

/// An agent operation's failure: a refused call to the servers as above, else 500.
impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        match e {
            AgentError::Link(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A gossip operation's failure (join, force-leave, events, keyring): 500, as Consul answers.
impl From<GossipError> for ApiError {
    fn from(e: GossipError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

fn join_methods(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
}
