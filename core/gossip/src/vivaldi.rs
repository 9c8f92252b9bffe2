//! The Vivaldi client: this agent's network coordinate, moved by every measured round trip to
//! another member, with the refinements of hashicorp/serf's `coordinate` package that Consul
//! relies on (Ledlie et al., "Network Coordinates in the Wild"): a per-node median filter over
//! the last samples, a height for the access link, an adjustment term averaged over a window
//! of residuals, and a weak gravity towards the origin so the coordinate set does not drift.
//!
//! The coordinate's types and the distance estimate are `legate_api::coordinate`'s.

use std::collections::HashMap;
use std::time::Duration;

use legate_api::coordinate::{diff, magnitude, Coord, DIMENSIONALITY, ERROR_MAX, HEIGHT_MIN, ZERO_THRESHOLD};

/// Weight of a new sample in the error estimate (serf's `VivaldiCE`).
const CE: f64 = 0.25;
/// Largest step towards a sample (serf's `VivaldiCC`).
const CC: f64 = 0.25;
/// Residuals averaged into the adjustment term.
const ADJUSTMENT_WINDOW: usize = 20;
/// Samples per node in the median filter.
const LATENCY_FILTER: usize = 3;
/// Distance from the origin, in seconds, at which gravity pulls as hard as a sample.
const GRAVITY_RHO: f64 = 150.0;
/// Round trips longer than this are refused as bogus (serf's 10 s).
const MAX_RTT: Duration = Duration::from_secs(10);

/// Why a sample was not used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectReason {
    #[error("round trip {0:?} is out of range")]
    RttOutOfRange(Duration),
    #[error("the other coordinate is not usable")]
    BadCoordinate,
}

pub struct Client {
    coord: Coord,
    origin: Coord,
    adjustment_samples: [f64; ADJUSTMENT_WINDOW],
    adjustment_index: usize,
    /// The last samples (seconds) per node, newest last.
    latency: HashMap<String, Vec<f64>>,
    /// Updates made and samples refused, for the agent's stats.
    pub updates: u64,
    pub rejected: u64,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            coord: Coord::origin(),
            origin: Coord::origin(),
            adjustment_samples: [0.0; ADJUSTMENT_WINDOW],
            adjustment_index: 0,
            latency: HashMap::new(),
            updates: 0,
            rejected: 0,
        }
    }

    /// This node's current coordinate.
    pub fn coordinate(&self) -> Coord {
        self.coord.clone()
    }

    /// Forgets a node's samples (it left or was reaped).
    pub fn forget(&mut self, node: &str) {
        self.latency.remove(node);
    }

    /// Moves this coordinate by one measured round trip to `node`, whose coordinate is `other`.
    pub fn update(&mut self, node: &str, other: &Coord, rtt: Duration) -> Result<Coord, RejectReason> {
        if !other.is_valid() || !other.is_compatible_with(&self.coord) || other.vec.len() != DIMENSIONALITY {
            self.rejected += 1;
            return Err(RejectReason::BadCoordinate);
        }
        if rtt.is_zero() || rtt > MAX_RTT {
            self.rejected += 1;
            return Err(RejectReason::RttOutOfRange(rtt));
        }
        let rtt = self.filtered(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coord.is_valid() {
            // Numerical trouble: start over rather than spread NaNs.
            tracing::warn!("gossip: network coordinate became invalid; resetting it");
            *self = Client { updates: self.updates, rejected: self.rejected, ..Client::new() };
        }
        self.updates += 1;
        Ok(self.coord.clone())
    }

    /// The median of the node's last samples, this one included.
    fn filtered(&mut self, node: &str, rtt: f64) -> f64 {
        let samples = self.latency.entry(node.to_string()).or_default();
        samples.push(rtt);
        if samples.len() > LATENCY_FILTER {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coord, rtt: f64) {
        let rtt = rtt.max(ZERO_THRESHOLD);
        let dist = self.coord.distance_to(other).as_secs_f64();
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        self.coord.error = (CE * weight * wrongness + self.coord.error * (1.0 - CE * weight)).min(ERROR_MAX);
        let force = CC * weight * (rtt - dist);
        self.coord = apply_force(&self.coord, force, other);
    }

    fn update_adjustment(&mut self, other: &Coord, rtt: f64) {
        self.adjustment_samples[self.adjustment_index] = rtt - self.coord.raw_distance_to(other);
        self.adjustment_index = (self.adjustment_index + 1) % ADJUSTMENT_WINDOW;
        self.coord.adjustment = self.adjustment_samples.iter().sum::<f64>() / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn update_gravity(&mut self) {
        let dist = self.origin.distance_to(&self.coord).as_secs_f64();
        let force = -(dist / GRAVITY_RHO).powi(2);
        self.coord = apply_force(&self.coord, force, &self.origin);
    }
}

/// `c` pushed by `force` (seconds; positive: away from `other`) along the line from `other`.
fn apply_force(c: &Coord, force: f64, other: &Coord) -> Coord {
    let (unit, mag) = unit_vector_at(&c.vec, &other.vec);
    let mut out = c.clone();
    for (x, u) in out.vec.iter_mut().zip(&unit) {
        *x += u * force;
    }
    if mag > ZERO_THRESHOLD {
        out.height = ((out.height + other.height) * force / mag + out.height).max(HEIGHT_MIN);
    }
    out
}

/// The unit vector from `b` to `a` and the distance between them; a random direction when they
/// coincide (so two nodes at the origin can push apart).
fn unit_vector_at(a: &[f64], b: &[f64]) -> (Vec<f64>, f64) {
    let d = diff(a, b);
    let mag = magnitude(&d);
    if mag > ZERO_THRESHOLD {
        return (d.iter().map(|x| x / mag).collect(), mag);
    }
    loop {
        let r: Vec<f64> = (0..a.len()).map(|_| rand::random::<f64>() - 0.5).collect();
        let m = magnitude(&r);
        if m > ZERO_THRESHOLD {
            return (r.iter().map(|x| x / m).collect(), 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes on a line, 10 ms apart, each measuring random peers: the estimates converge to
    /// the true round trips (serf's own convergence test, in spirit).
    #[test]
    fn converges_on_a_line() {
        let n = 5;
        let truth = |i: usize, j: usize| Duration::from_millis(10 * i.abs_diff(j) as u64);
        let mut clients: Vec<Client> = (0..n).map(|_| Client::new()).collect();
        for round in 0..1000 {
            for i in 0..n {
                let j = (i + 1 + (round * 7 + i * 3) % (n - 1)) % n;
                let other = clients[j].coordinate();
                clients[i].update(&format!("n{j}"), &other, truth(i, j)).unwrap();
            }
        }
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let est = clients[i].coordinate().distance_to(&clients[j].coordinate()).as_secs_f64();
                let want = truth(i, j).as_secs_f64();
                assert!((est - want).abs() / want < 0.2, "n{i}->n{j}: estimated {est}, true {want}");
            }
        }
    }

    #[test]
    fn bad_samples_are_refused() {
        let mut c = Client::new();
        let origin = Coord::origin();
        assert_eq!(c.update("a", &origin, Duration::ZERO), Err(RejectReason::RttOutOfRange(Duration::ZERO)));
        assert!(matches!(c.update("a", &origin, Duration::from_secs(11)), Err(RejectReason::RttOutOfRange(_))));
        let nan = Coord { error: f64::NAN, ..Coord::origin() };
        assert_eq!(c.update("a", &nan, Duration::from_millis(5)), Err(RejectReason::BadCoordinate));
        let short = Coord { vec: vec![0.0; 3], ..Coord::origin() };
        assert_eq!(c.update("a", &short, Duration::from_millis(5)), Err(RejectReason::BadCoordinate));
        assert_eq!((c.updates, c.rejected), (0, 4));
        assert_eq!(c.coordinate(), Coord::origin());
    }

    #[test]
    fn median_filter_ignores_one_outlier() {
        let mut c = Client::new();
        assert_eq!(c.filtered("a", 0.010), 0.010);
        assert_eq!(c.filtered("a", 0.012), 0.012);
        assert_eq!(c.filtered("a", 0.500), 0.012);
        assert_eq!(c.filtered("a", 0.011), 0.012);
        c.forget("a");
        assert_eq!(c.filtered("a", 0.300), 0.300);
    }
}
