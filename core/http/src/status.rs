//! `/v1/status/leader` and `/v1/status/peers`.

use super::{ApiError, ApiResponse, Ctx, Request};

pub async fn handle(ctx: &Ctx, _req: &Request, rest: &str) -> Result<ApiResponse, ApiError> {
    let view = ctx.agent.cluster_view();
    match rest {
        "leader" => {
            let view = view.map_err(ApiError::Internal)?;
            Ok(ApiResponse::json(&view.leader.unwrap_or_default()))
        }
        "peers" => {
            let view = view.map_err(ApiError::Internal)?;
            Ok(ApiResponse::json(&view.peers))
        }
        _ => Err(ApiError::NotFound(String::new())),
    }
}
