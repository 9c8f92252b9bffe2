//! Parsing of names inside the agent's domain. Labels are compared lowercased; the parser scans
//! from the right for the first keyword (`service`, `node`, `query`, `addr`, and the mesh
//! keywords `connect`, `ingress`, `virtual`); the labels right of it name the datacenter
//! (`<dc>` or `<dc>.dc`), the labels left of it the node, service and tag (tags may contain
//! dots). RFC 2782 names (`_svc._tag`) work with or without the `service` label.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The domain itself.
    Apex,
    Node {
        name: String,
        dc: Option<String>,
    },
    Service {
        name: String,
        tag: Option<String>,
        dc: Option<String>,
    },
    Query {
        name: String,
        dc: Option<String>,
    },
    Addr {
        hex: String,
        dc: Option<String>,
    },
    /// Mesh lookups (connect/ingress/virtual): no mesh here, so no instances.
    Mesh,
    Invalid,
}

const KEYWORDS: &[&str] = &["service", "connect", "virtual", "ingress", "node", "query", "addr"];

/// `labels` are the lowercased labels left of the domain, leftmost first.
pub fn parse(labels: &[&str]) -> Lookup {
    if labels.is_empty() {
        return Lookup::Apex;
    }
    let Some(pos) = labels.iter().rposition(|l| KEYWORDS.contains(l)) else {
        // `_svc._tag[.dc]` without the `service` label.
        return match labels {
            [s, t] if is_rfc2782(s, t) => rfc2782(s, t, None),
            [s, t, dc] if is_rfc2782(s, t) => rfc2782(s, t, Some(dc)),
            _ => Lookup::Invalid,
        };
    };
    let dc = match &labels[pos + 1..] {
        [] => None,
        [dc] => Some(dc.to_string()),
        [dc, "dc"] => Some(dc.to_string()),
        _ => return Lookup::Invalid,
    };
    let left = &labels[..pos];
    if left.is_empty() {
        return Lookup::Invalid;
    }
    match labels[pos] {
        "service" => match left {
            [s, t] if is_rfc2782(s, t) => rfc2782(s, t, dc.as_deref()),
            _ => {
                let (name, tags) = left.split_last().expect("non-empty");
                let tag = (!tags.is_empty()).then(|| tags.join("."));
                Lookup::Service { name: name.to_string(), tag, dc }
            }
        },
        "node" => Lookup::Node { name: left.join("."), dc },
        "query" => {
            let name = match left {
                [q, t] if is_rfc2782(q, t) => q[1..].to_string(),
                _ => left.join("."),
            };
            Lookup::Query { name, dc }
        }
        "addr" => match left {
            [hex] => Lookup::Addr { hex: hex.to_string(), dc },
            _ => Lookup::Invalid,
        },
        _ => Lookup::Mesh,
    }
}

fn is_rfc2782(s: &str, t: &str) -> bool {
    s.len() > 1 && t.len() > 1 && s.starts_with('_') && t.starts_with('_')
}

fn rfc2782(s: &str, t: &str, dc: Option<&str>) -> Lookup {
    let tag = &t[1..];
    Lookup::Service {
        name: s[1..].to_string(),
        tag: (tag != "tcp").then(|| tag.to_string()),
        dc: dc.map(str::to_string),
    }
}

/// `<hex>.addr` names: 8 hex digits are an IPv4 address, 32 an IPv6 one.
pub fn addr_of_hex(hex: &str) -> Option<std::net::IpAddr> {
    let bytes = hex::decode(hex).ok()?;
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// The `<hex>.addr` label of an address.
pub fn hex_of_addr(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => hex::encode(v4.octets()),
        std::net::IpAddr::V6(v6) => hex::encode(v6.octets()),
    }
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa`, nibbles of `ip6.arpa`).
pub fn addr_of_arpa(labels: &[&str]) -> Option<std::net::IpAddr> {
    match labels {
        [rest @ .., "in-addr", "arpa"] if rest.len() == 4 => {
            let mut o = [0u8; 4];
            for (i, l) in rest.iter().rev().enumerate() {
                o[i] = l.parse().ok()?;
            }
            Some(std::net::IpAddr::from(o))
        }
        [rest @ .., "ip6", "arpa"] if rest.len() == 32 => {
            let mut o = [0u8; 16];
            for (i, l) in rest.iter().rev().enumerate() {
                if l.len() != 1 {
                    return None;
                }
                let n = u8::from_str_radix(l, 16).ok()?;
                o[i / 2] |= if i % 2 == 0 { n << 4 } else { n };
            }
            Some(std::net::IpAddr::from(o))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Lookup {
        let labels: Vec<&str> = s.split('.').filter(|l| !l.is_empty()).collect();
        parse(&labels)
    }

    #[test]
    fn forms() {
        assert_eq!(p(""), Lookup::Apex);
        assert_eq!(p("web.service"), Lookup::Service { name: "web".into(), tag: None, dc: None });
        assert_eq!(
            p("a.b.web.service.dc1"),
            Lookup::Service { name: "web".into(), tag: Some("a.b".into()), dc: Some("dc1".into()) }
        );
        assert_eq!(
            p("_web._v1.service.dc1.dc"),
            Lookup::Service { name: "web".into(), tag: Some("v1".into()), dc: Some("dc1".into()) }
        );
        assert_eq!(p("_web._tcp"), Lookup::Service { name: "web".into(), tag: None, dc: None });
        assert_eq!(p("my.host.node"), Lookup::Node { name: "my.host".into(), dc: None });
        assert_eq!(p("7f000001.addr"), Lookup::Addr { hex: "7f000001".into(), dc: None });
        assert_eq!(p("q1.query.dc1"), Lookup::Query { name: "q1".into(), dc: Some("dc1".into()) });
        assert_eq!(p("web.connect"), Lookup::Mesh);
        assert_eq!(p("service"), Lookup::Invalid);
        assert_eq!(p("web.service.a.b"), Lookup::Invalid);
        assert_eq!(p("nothing"), Lookup::Invalid);
    }

    #[test]
    fn addresses() {
        assert_eq!(addr_of_hex("7f000001"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(addr_of_hex("zz000001"), None);
        assert_eq!(hex_of_addr("10.0.0.2".parse().unwrap()), "0a000002");
        assert_eq!(addr_of_arpa(&["4", "3", "2", "1", "in-addr", "arpa"]), Some("1.2.3.4".parse().unwrap()));
        let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let s = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        let labels: Vec<&str> = s.split('.').collect();
        assert_eq!(addr_of_arpa(&labels), Some(v6));
    }
}
