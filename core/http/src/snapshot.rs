//! `GET /v1/snapshot` (save) and `PUT /v1/snapshot` (restore, replicated through Raft; wakes
//! every blocked query).

use bytes::Bytes;
use http::StatusCode;

use super::blocking::{self, Consistency};
use super::response::Body;
use super::{ApiError, ApiResponse, Ctx, Request};
use legate_raft::command::{Command, CommandResponse};
use legate_state::snapshot;

/// `GET /v1/snapshot`: the state as a gzipped archive.
pub async fn save(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?.clone();
    let opts = blocking::query_options(ctx, req)?;
    if opts.consistency != Consistency::Stale {
        server.ensure_consistent().await.map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let store = server.store.clone();
    let term = server.raft.metrics().borrow().current_term;
    let (archive, index) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let internal = |e: &dyn std::fmt::Display| ApiError::Internal(e.to_string());
        let txn = store.read().map_err(|e| internal(&e))?;
        let index = legate_state::kv::table_index(&txn).map_err(|e| internal(&e))?;
        let data = snapshot::export(&txn).map_err(|e| internal(&e))?;
        Ok((snapshot::archive(&data, index, term).map_err(|e| internal(&e))?, index))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(ApiResponse {
        status: StatusCode::OK,
        headers: vec![("X-Consul-Index", index.max(1).to_string().into())],
        body: Body::Raw { content_type: "application/x-gzip", data: Bytes::from(archive) },
    })
}

/// `PUT /v1/snapshot`: replaces the state with the archive in the body.
pub async fn restore(ctx: &Ctx, req: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let server = blocking::server(ctx)?.clone();
    let (_, data) =
        snapshot::unarchive(&req.body).map_err(|e| ApiError::Internal(format!("failed to restore snapshot: {e}")))?;
    match server.apply(Command::Restore(data)).await {
        Ok(CommandResponse::Restored) => Ok(ApiResponse::empty(StatusCode::OK)),
        Ok(other) => Err(ApiError::Internal(format!("unexpected state machine response {other:?}"))),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}
