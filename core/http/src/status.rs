//! `/v1/status/leader` and `/v1/status/peers`.

use super::{ApiError, ApiResponse, Ctx, Request};

pub async fn leader(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let view = ctx.agent.cluster_view()?;
    Ok(ApiResponse::json(&view.leader.unwrap_or_default()))
}

pub async fn peers(ctx: &Ctx, _: &Request, _: &str) -> Result<ApiResponse, ApiError> {
    let view = ctx.agent.cluster_view()?;
    Ok(ApiResponse::json(&view.peers))
}
