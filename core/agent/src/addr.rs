//! The address this agent advertises to the cluster, derived from `bind_addr` as Consul does:
//! a specific bind address is advertised as is; `0.0.0.0` means "the single private IPv4 of
//! this host", and more than one (or none) is an error asking for `-bind` / `-advertise`.

use std::net::{IpAddr, Ipv4Addr};

use legate_config::Config;

use crate::AgentError;

pub fn advertise_addr(config: &Config) -> Result<IpAddr, AgentError> {
    if let Some(a) = &config.advertise_addr {
        return a.parse().map_err(|_| AgentError::Address(format!("advertise_addr {a:?} is not an IP address")));
    }
    let bind: IpAddr = config
        .bind_addr
        .parse()
        .map_err(|_| AgentError::Address(format!("bind_addr {:?} is not an IP address", config.bind_addr)))?;
    if !bind.is_unspecified() {
        return Ok(bind);
    }
    let private: Vec<Ipv4Addr> = interface_ipv4s().into_iter().filter(is_private).collect();
    match private.as_slice() {
        [one] => Ok(IpAddr::V4(*one)),
        [] => Err(AgentError::Address(
            "No private IPv4 address found. Please configure one with 'bind' and/or 'advertise'.".into(),
        )),
        many => Err(AgentError::Address(format!(
            "Multiple private IPv4 addresses found ({}). Please configure one with 'bind' and/or 'advertise'.",
            many.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn is_private(ip: &Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private() || (a == 100 && (64..128).contains(&b)) // RFC 6598 shared space, as go-sockaddr
}

/// IPv4 addresses of the host's interfaces that are up.
fn interface_ipv4s() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we free with freeifaddrs; we only read it.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            if up && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

pub use legate_types::net::bind_tcp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_bind_is_advertised() {
        let c = Config { bind_addr: "127.0.0.5".into(), ..Config::default() };
        assert_eq!(advertise_addr(&c).unwrap(), "127.0.0.5".parse::<IpAddr>().unwrap());
        let c = Config { advertise_addr: Some("10.1.2.3".into()), ..Config::default() };
        assert_eq!(advertise_addr(&c).unwrap(), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn loopback_is_not_private() {
        assert!(!is_private(&Ipv4Addr::LOCALHOST));
        assert!(is_private(&Ipv4Addr::new(10, 0, 0, 1)));
        assert!(is_private(&Ipv4Addr::new(100, 64, 0, 1)));
    }
}
