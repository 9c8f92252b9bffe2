//! Sends this agent's network coordinate to the servers, as Consul's `sendCoordinate`: every
//! `sync_coordinate_interval_min`, scaled up so the whole datacenter sends at most
//! `sync_coordinate_rate_target` updates per second, plus a random stagger of up to one
//! interval. The coordinate itself is kept by the gossip pool, which measures the round trips.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use legate_api::coordinate::CoordinateUpdate;
use legate_raft::command::Command;

use legate_raft::endpoints::EndpointError;
use legate_raft::link::LinkError;

use super::{AgentError, AgentShared};

/// `min`, or longer when `nodes` agents each sending once per interval would exceed `rate`
/// updates per second (Consul's `RateScaledInterval`).
pub fn rate_scaled_interval(rate: f64, min: Duration, nodes: usize) -> Duration {
    if rate <= 0.0 {
        return min;
    }
    let scaled = Duration::try_from_secs_f64(nodes as f64 / rate).unwrap_or(min);
    scaled.max(min)
}

pub async fn run(agent: Arc<AgentShared>, shutdown: CancellationToken) {
    loop {
        let c = agent.config();
        let interval = rate_scaled_interval(
            c.sync_coordinate_rate_target,
            c.sync_coordinate_interval_min.0,
            agent.members(false).len(),
        );
        let stagger = rand::thread_rng().gen_range(Duration::ZERO..=interval);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval + stagger) => {}
        }
        if agent.config().disable_coordinates {
            continue;
        }
        let Some(coord) = agent.gossip.get().and_then(|g| g.coordinate()) else { continue };
        if !coord.is_valid() {
            tracing::warn!("agent: not sending an invalid network coordinate");
            continue;
        }
        let update = CoordinateUpdate { node: agent.node_name().to_string(), segment: String::new(), coord };
        match agent.catalog_apply(Command::Coordinates(vec![update])).await {
            Ok(_) => {}
            Err(
                e @ AgentError::Link(LinkError::Endpoint(
                    EndpointError::PermissionDenied(_) | EndpointError::AclNotFound,
                )),
            ) => {
                tracing::warn!(error = %e, "agent: coordinate update blocked by ACLs")
            }
            Err(e) => tracing::error!(error = %e, "agent: coordinate update error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_scales_with_the_datacenter() {
        let min = Duration::from_secs(15);
        assert_eq!(rate_scaled_interval(64.0, min, 10), min);
        assert_eq!(rate_scaled_interval(64.0, min, 64 * 30), Duration::from_secs(30));
        assert_eq!(rate_scaled_interval(0.0, min, 100_000), min);
    }
}
