//! `legate rtt [-wan] node1 [node2]`: the round trip between two nodes as the network
//! coordinates estimate it, in Consul's words.

use legate_api::coordinate::{Coord, CoordinateEntry, DatacenterCoordinates};
use serde_json::Value as Json;

use super::http_flags::{block_on, HttpFlags};

#[derive(clap::Args, Debug)]
pub struct RttArgs {
    #[command(flatten)]
    http: HttpFlags,
    /// Use the servers' WAN coordinates (nodes named <node>.<datacenter>)
    #[arg(long)]
    wan: bool,
    /// One or two node names; the second defaults to the agent's own node
    nodes: Vec<String>,
}

pub fn run(a: RttArgs) -> i32 {
    block_on(async move {
        if a.nodes.is_empty() || a.nodes.len() > 2 {
            return Err("One or two node names must be specified".to_string());
        }
        let client = a.http.client()?;
        let opts = a.http.query();
        let (this, _): (Json, _) = client
            .get_json("/v1/agent/self", &opts, &[])
            .await
            .map_err(|e| format!("Unable to look up agent info: {e}"))?;
        let own = this["Config"]["NodeName"].as_str().unwrap_or_default().to_string();
        let dc = this["Config"]["Datacenter"].as_str().unwrap_or_default().to_string();
        let entries: Vec<CoordinateEntry> = if a.wan {
            let (dcs, _): (Vec<DatacenterCoordinates>, _) = client
                .get_json("/v1/coordinate/datacenters", &opts, &[])
                .await
                .map_err(|e| format!("Error getting coordinates: {e}"))?;
            dcs.into_iter().flat_map(|d| d.coordinates).collect()
        } else {
            let (nodes, _): (Vec<CoordinateEntry>, _) = client
                .get_json("/v1/coordinate/nodes", &opts, &[])
                .await
                .map_err(|e| format!("Error getting coordinates: {e}"))?;
            nodes
        };
        let first = a.nodes[0].clone();
        let second = a.nodes.get(1).cloned().unwrap_or_else(|| if a.wan { format!("{own}.{dc}") } else { own });
        let find = |name: &str| -> Result<Coord, String> {
            entries
                .iter()
                .find(|e| e.node == name)
                .map(|e| e.coord.clone())
                .ok_or_else(|| format!("Could not find a coordinate for node {name:?}"))
        };
        let (c1, c2) = (find(&first)?, find(&second)?);
        let ms = c1.distance_to(&c2).as_secs_f64() * 1000.0;
        let source = if a.wan { "WAN" } else { "LAN" };
        println!("Estimated {first} <-> {second} rtt: {ms:.3} ms (using {source} coordinates)");
        Ok(0)
    })
}
