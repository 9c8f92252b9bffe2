//! `WatchError`: why a watch's query or its handler failed (logged; the watch retries).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("no handler command")]
    NoCommand,
    #[error("Failed to invoke watch handler {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("watch handler timed out after {0:?} and was killed")]
    Timeout(Duration),
    #[error("waiting for watch handler: {0}")]
    Wait(#[source] std::io::Error),
    /// The handler exited non-zero or was killed: why, and its output.
    #[error("{0}")]
    Exit(String),
    #[error("cannot build the HTTP handler's client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("invalid HTTP method {0:?}")]
    Method(String),
    #[error("Failed to invoke http watch handler {path}: {source}")]
    Http {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("http watch handler {path} answered {status}: {body}")]
    HttpStatus { path: String, status: reqwest::StatusCode, body: String },
    /// The watch's query could not be made.
    #[error(transparent)]
    Client(#[from] legate_client::Error),
    #[error("invalid response from {path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("Unexpected response code: {status} ({body})")]
    Status { status: u16, body: String },
}
