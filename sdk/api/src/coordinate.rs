//! Network coordinates: the types of `/v1/coordinate/*` and the distance estimate between two
//! coordinates that `?near=` sorting and `legate rtt` use.
//!
//! The model is Vivaldi as hashicorp/serf's `coordinate` package defines it (the one Consul
//! uses): a point in an 8-dimensional Euclidean space plus a non-negative height (the access
//! link's latency), an error estimate, and an adjustment term that absorbs what the Euclidean
//! model cannot. Units are seconds. The update rules live with the gossip pool, which measures
//! the round trips (`legate-gossip`'s `vivaldi.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Dimensions of the Euclidean part (serf's default; agents must agree to compare).
pub const DIMENSIONALITY: usize = 8;
/// Initial (and largest) error estimate.
pub const ERROR_MAX: f64 = 1.5;
/// Smallest height, in seconds.
pub const HEIGHT_MIN: f64 = 10.0e-6;
/// Below this a magnitude or an RTT counts as zero.
pub const ZERO_THRESHOLD: f64 = 1.0e-6;

/// A Vivaldi network coordinate, as Consul's JSON shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Coord {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Coord {
    /// The coordinate of a node that has no RTT samples yet: the origin, with the largest
    /// error and the smallest height.
    pub fn origin() -> Self {
        Coord { vec: vec![0.0; DIMENSIONALITY], error: ERROR_MAX, adjustment: 0.0, height: HEIGHT_MIN }
    }

    /// Every component is a finite number.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Both coordinates have the same number of dimensions (they can be compared).
    pub fn is_compatible_with(&self, other: &Coord) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// The Euclidean distance plus both heights, in seconds, without the adjustments.
    pub fn raw_distance_to(&self, other: &Coord) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// The estimated round-trip time to `other`: the raw distance plus both adjustment terms,
    /// unless that would make it non-positive (then the raw distance).
    pub fn distance_to(&self, other: &Coord) -> Duration {
        let raw = self.raw_distance_to(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { raw };
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }
}

/// `a - b`, component-wise (the shorter length if they differ).
pub fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// The Euclidean length of `v`.
pub fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// One node's coordinate (`/v1/coordinate/nodes`, `/v1/coordinate/node/<node>`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateEntry {
    pub node: String,
    /// The network segment (always "" here: Legate has no segments).
    pub segment: String,
    pub coord: Coord,
}

/// The body of `PUT /v1/coordinate/update`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateUpdate {
    pub node: String,
    #[serde(default)]
    pub segment: String,
    pub coord: Coord,
}

/// One datacenter's servers (`/v1/coordinate/datacenters`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DatacenterCoordinates {
    pub datacenter: String,
    #[serde(rename = "AreaID")]
    pub area_id: String,
    pub coordinates: Vec<CoordinateEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(vec: [f64; 2], height: f64, adjustment: f64) -> Coord {
        let mut v = vec![0.0; DIMENSIONALITY];
        v[..2].copy_from_slice(&vec);
        Coord { vec: v, error: ERROR_MAX, adjustment, height }
    }

    #[test]
    fn distance_is_euclidean_plus_heights_plus_adjustments() {
        let a = at([0.0, 0.0], 0.001, 0.0);
        let b = at([0.003, 0.004], 0.002, 0.0);
        assert!((a.raw_distance_to(&b) - 0.008).abs() < 1e-12);
        assert_eq!(a.distance_to(&b), Duration::from_secs_f64(0.008));
        // Adjustments add to the estimate...
        let c = at([0.003, 0.004], 0.002, 0.001);
        assert!((c.distance_to(&a).as_secs_f64() - 0.009).abs() < 1e-9);
        // ...unless they would make it non-positive.
        let d = at([0.003, 0.004], 0.002, -1.0);
        assert!((d.distance_to(&a).as_secs_f64() - 0.008).abs() < 1e-9);
    }

    #[test]
    fn validity_and_compatibility() {
        let mut c = Coord::origin();
        assert!(c.is_valid());
        c.vec[3] = f64::NAN;
        assert!(!c.is_valid());
        let short = Coord { vec: vec![0.0; 3], ..Coord::origin() };
        assert!(!short.is_compatible_with(&Coord::origin()));
        assert!(Coord::origin().is_compatible_with(&Coord::origin()));
    }

    #[test]
    fn json_has_consuls_field_names() {
        let e = CoordinateEntry { node: "n1".into(), segment: String::new(), coord: Coord::origin() };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["Node"], "n1");
        assert_eq!(v["Coord"]["Vec"].as_array().unwrap().len(), 8);
        assert_eq!(v["Coord"]["Height"], 1.0e-5);
        let dc = DatacenterCoordinates { datacenter: "dc1".into(), area_id: "wan".into(), coordinates: vec![e] };
        assert_eq!(serde_json::to_value(&dc).unwrap()["AreaID"], "wan");
    }
}
