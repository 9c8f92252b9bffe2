//! Open connections per client IP (`limits.http_max_conns_per_client`,
//! `limits.rpc_max_conns_per_client`): a place is taken when a connection is accepted and given
//! back when it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client IP, across the listeners of one kind (HTTP, the RPC port).
#[derive(Default)]
pub struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// A place for one more connection from `ip`, or None when it already has `max` open
    /// (0: no limit). The place is given back when the [`Slot`] is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if max > 0 && *n >= max as usize {
            return None;
        }
        *n += 1;
        Some(Slot { of: self.clone(), ip })
    }

    /// Connections open from every client.
    pub fn total(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

/// One connection's place in [`PerClient`].
pub struct Slot {
    of: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_ip_gets_at_most_its_share_of_connections() {
        let conns = Arc::new(PerClient::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first: Vec<Slot> = (0..3).map(|_| conns.admit(a, 3).expect("under the limit")).collect();
        assert!(conns.admit(a, 3).is_none(), "the 4th from one IP is refused");
        assert!(conns.admit(b, 3).is_some(), "another IP is not");
        drop(first);
        assert_eq!(conns.open(a), 0, "closed connections give their places back");
        assert!(conns.admit(a, 3).is_some());
        assert!((0..10).all(|_| conns.admit(a, 0).map(std::mem::forget).is_some()), "0: no limit");
    }
}
