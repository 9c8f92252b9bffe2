//! Answers for names inside the agent's domain (and PTR names), as Consul's DNS server builds
//! them: which records, which rcode, which TTLs, what goes to Additional and Authority.

use crate::error::DnsError;
use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;

use super::authz::{DnsAuthz, Resource};
use super::name::{self, Lookup};
use super::source::{CatalogCache, Health, Instance, NodeInfo, Source};
use legate_agent::AgentShared;
use legate_config::Config;

/// What the handler sends back (before UDP/TCP trimming).
#[derive(Debug, Default)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Reply {
    fn nxdomain(soa: Record) -> Reply {
        Reply { rcode: ResponseCode::NXDomain, authorities: vec![soa], ..Reply::default() }
    }
}

/// One query inside the domain: its name, type, and the domain it was asked in.
pub struct Question<'a> {
    pub agent: &'a AgentShared,
    pub cache: &'a CatalogCache,
    pub cfg: &'a Config,
    pub qname: &'a Name,
    pub qtype: RecordType,
    /// Lowercased labels left of the domain.
    pub labels: &'a [&'a str],
    /// The domain the question was asked in (`domain` or `alt_domain`), with a final dot.
    pub domain: &'a str,
    /// What the answer may reveal.
    pub authz: &'a DnsAuthz,
}

impl Question<'_> {
    fn source(&self) -> Source<'_> {
        match self.other_datacenter() {
            Some(dc) => Source::for_datacenter(self.agent, &dc),
            None => Source::for_agent(self.agent, self.cfg, self.cache),
        }
    }

    /// The datacenter the name asks for, when it is not ours.
    fn other_datacenter(&self) -> Option<String> {
        match name::parse(self.labels) {
            Lookup::Node { dc, .. } | Lookup::Service { dc, .. } | Lookup::Query { dc, .. } => {
                dc.filter(|dc| !dc.eq_ignore_ascii_case(&self.cfg.datacenter))
            }
            _ => None,
        }
    }

    /// The datacenter the answer's names are in.
    fn datacenter(&self) -> String {
        self.other_datacenter().unwrap_or_else(|| self.cfg.datacenter.clone())
    }

    fn stale(&self) -> bool {
        self.cfg.dns_config.allow_stale
    }

    fn node_ttl(&self) -> u32 {
        self.cfg.dns_config.node_ttl.0.as_secs().min(u32::MAX as u64) as u32
    }

    /// `service_ttl` for a service: its own key, else the longest matching `prefix*` key.
    fn service_ttl(&self, service: &str) -> u32 {
        let map = &self.cfg.dns_config.service_ttl;
        let ttl = map.get(service).or_else(|| {
            map.iter()
                .filter_map(|(k, v)| {
                    let prefix = k.strip_suffix('*')?;
                    service.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()).then_some((prefix.len(), v))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, v)| v)
        });
        ttl.map_or(0, |d| d.0.as_secs().min(u32::MAX as u64) as u32)
    }

    fn name(&self, s: &str) -> Option<Name> {
        Name::from_ascii(s).ok()
    }

    /// `node.<dc>.<domain>`, the suffix of every node's name in an answer.
    fn node_suffix(&self) -> Option<Name> {
        self.name(&format!("node.{}.{}", self.datacenter(), self.domain))
    }

    /// `<node>.node.<dc>.<domain>`, given [`Self::node_suffix`] (made once per answer: a
    /// name is parsed per record otherwise).
    fn node_fqdn(node: &str, suffix: &Name) -> Option<Name> {
        Name::from_ascii(node).ok()?.append_domain(suffix).ok()
    }

    /// `<domain> SOA ns.<domain> hostmaster.<domain> <unix time> ...`; TTL `soa.min_ttl`.
    pub fn soa(&self) -> Record {
        let domain = self.name(self.domain).unwrap_or_else(Name::root);
        let ns = self.name(&format!("ns.{}", self.domain)).unwrap_or_else(Name::root);
        let mbox = self.name(&format!("hostmaster.{}", self.domain)).unwrap_or_else(Name::root);
        let serial = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
        let s = &self.cfg.dns_config.soa;
        let soa = SOA::new(ns, mbox, serial, s.refresh as i32, s.retry as i32, s.expire as i32, s.min_ttl);
        Record::from_rdata(domain, s.min_ttl, RData::SOA(soa))
    }

    /// Answers the question (an `Err` is a failed read: SERVFAIL).
    pub async fn answer(&self) -> Result<Reply, DnsError> {
        match self.qtype {
            RecordType::AXFR | RecordType::IXFR => {
                return Ok(Reply { rcode: ResponseCode::NotImp, ..Reply::default() })
            }
            RecordType::SOA => {
                let (ns, glue) = self.nameservers().await?;
                return Ok(Reply {
                    rcode: ResponseCode::NoError,
                    answers: vec![self.soa()],
                    authorities: ns,
                    additionals: glue,
                });
            }
            RecordType::NS => {
                let (ns, glue) = self.nameservers().await?;
                return Ok(Reply {
                    rcode: ResponseCode::NoError,
                    answers: ns,
                    authorities: Vec::new(),
                    additionals: glue,
                });
            }
            _ => {}
        }
        let lookup = name::parse(self.labels);
        let dc = match &lookup {
            Lookup::Node { dc, .. } | Lookup::Service { dc, .. } | Lookup::Query { dc, .. } => dc.clone(),
            _ => None,
        };
        // Another datacenter is answered through one of its servers; one that no server knows
        // is a name that does not exist.
        let other_dc = dc.is_some_and(|dc| !dc.eq_ignore_ascii_case(&self.cfg.datacenter));
        let found = match lookup {
            Lookup::Node { name, .. } => self.node(&name).await,
            Lookup::Service { name, tag, .. } => self.service(&name, tag.as_deref()).await,
            Lookup::Addr { hex, .. } => Ok(self.addr(&hex)),
            Lookup::Query { name, .. } => self.prepared_query(&name).await,
            Lookup::Mesh | Lookup::Invalid | Lookup::Apex => Ok(Reply::nxdomain(self.soa())),
        };
        let mut reply = match found {
            Err(e) if other_dc && e.is_no_path() => return Ok(Reply::nxdomain(self.soa())),
            other => other?,
        };
        if reply.rcode == ResponseCode::NoError && reply.answers.is_empty() {
            // RFC 2308 NODATA.
            reply.authorities.push(self.soa());
        }
        Ok(reply)
    }

    /// Up to three random healthy servers (the `consul` service) as NS records and A glue.
    async fn nameservers(&self) -> Result<(Vec<Record>, Vec<Record>), DnsError> {
        let all = self.source().service("consul", self.stale()).await?;
        let mut servers: Vec<&Instance> =
            all.iter().filter(|i| i.health != Health::Critical && self.allowed(i)).collect();
        servers.shuffle(&mut rand::thread_rng());
        let domain = self.name(self.domain).unwrap_or_else(Name::root);
        let ttl = self.node_ttl();
        let (mut ns, mut glue) = (Vec::new(), Vec::new());
        let Some(suffix) = self.node_suffix() else { return Ok((ns, glue)) };
        for s in servers.iter().take(3) {
            let Some(fqdn) = Self::node_fqdn(&s.node.name, &suffix) else { continue };
            let Ok(ip) = s.node.address.parse::<IpAddr>() else { continue };
            ns.push(Record::from_rdata(domain.clone(), ttl, RData::NS(NS(fqdn.clone()))));
            glue.push(ip_record(fqdn, ttl, ip));
        }
        Ok((ns, glue))
    }

    fn allowed(&self, i: &Instance) -> bool {
        self.authz.allows(Resource::Service(&i.service)) && self.authz.allows(Resource::Node(&i.node.name))
    }

    async fn node(&self, name: &str) -> Result<Reply, DnsError> {
        let node = match self.source().node(name, self.stale()).await? {
            Some(n) if self.authz.allows(Resource::Node(&n.name)) => n,
            _ => return Ok(Reply::nxdomain(self.soa())),
        };
        let ttl = self.node_ttl();
        let mut reply = Reply::default();
        if matches!(self.qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) {
            reply.answers.extend(address_records(self.qname, ttl, self.qtype, &node.address, &node.tagged_addresses));
            if self.qtype != RecordType::ANY && self.cfg.dns_config.enable_additional_node_meta_txt {
                reply.additionals.extend(meta_txt(self.qname, ttl, &node));
            }
        }
        if matches!(self.qtype, RecordType::TXT | RecordType::ANY) {
            reply.answers.extend(meta_txt(self.qname, ttl, &node));
        }
        Ok(reply)
    }

    async fn service(&self, name: &str, tag: Option<&str>) -> Result<Reply, DnsError> {
        let only_passing = self.cfg.dns_config.only_passing;
        let all = self.source().service(name, self.stale()).await?;
        let mut instances: Vec<&Instance> = all
            .iter()
            .filter(|i| match i.health {
                Health::Critical => false,
                Health::Warning => !only_passing,
                Health::Passing => true,
            })
            .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x.eq_ignore_ascii_case(t))))
            .filter(|i| self.allowed(i))
            .collect();
        if instances.is_empty() {
            return Ok(Reply::nxdomain(self.soa()));
        }
        instances.shuffle(&mut rand::thread_rng());
        Ok(self.instance_records(&instances, self.service_ttl(name)))
    }

    /// `<name>.query[.<dc>]`: the prepared query's answer, in the order the server gave it
    /// (no reshuffle: a `Near` sort holds); its `DNS.TTL`, else the service's TTL.
    async fn prepared_query(&self, name: &str) -> Result<Reply, DnsError> {
        let source = Source::Remote(self.agent, self.other_datacenter());
        let Some(answer) = source.query(name, self.stale()).await? else {
            return Ok(Reply::nxdomain(self.soa()));
        };
        let instances: Vec<&Instance> = answer.instances.iter().filter(|i| self.allowed(i)).collect();
        if instances.is_empty() {
            return Ok(Reply::nxdomain(self.soa()));
        }
        let ttl = match answer.ttl.as_str() {
            "" => self.service_ttl(&answer.service),
            t => legate_types::duration::parse_go_duration(t).map_or(0, |d| d.as_secs().min(u32::MAX as u64) as u32),
        };
        Ok(self.instance_records(&instances, ttl))
    }

    /// A, AAAA, ANY or SRV records of service instances.
    fn instance_records(&self, instances: &[&Instance], ttl: u32) -> Reply {
        let mut reply = Reply::default();
        match self.qtype {
            RecordType::SRV => self.srv_records(instances, ttl, &mut reply),
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                let limit = match self.cfg.dns_config.a_record_limit {
                    0 => usize::MAX,
                    n => n as usize,
                };
                let mut seen = FxHashSet::default();
                for i in instances {
                    let (addr, tagged) = instance_address(i);
                    for r in address_records(self.qname, ttl, self.qtype, addr, tagged) {
                        if seen.insert(r.data.clone()) && seen.len() <= limit {
                            reply.answers.push(r);
                        }
                    }
                }
            }
            _ => {}
        }
        reply
    }

    /// `1 <weight> <port> <target>` per instance, targets' addresses in Additional.
    fn srv_records(&self, instances: &[&Instance], ttl: u32, reply: &mut Reply) {
        let mut seen = FxHashSet::default();
        let mut extra_seen = FxHashSet::default();
        let suffix = self.node_suffix();
        for i in instances {
            let weight = match i.health {
                Health::Warning => i.weights.warning,
                _ => i.weights.passing,
            }
            .clamp(0, u16::MAX as i32) as u16;
            let node_fqdn = suffix.as_ref().and_then(|s| Self::node_fqdn(&i.node.name, s));
            let (target, extra) = if i.address.is_empty() {
                let Some(t) = node_fqdn.clone() else { continue };
                let extra = address_records(&t, ttl, RecordType::ANY, &i.node.address, &i.node.tagged_addresses);
                (t, extra)
            } else if let Ok(ip) = i.address.parse::<IpAddr>() {
                let hex = name::hex_of_addr(ip);
                let Some(t) = self.name(&format!("{hex}.addr.{}.{}", self.datacenter(), self.domain)) else {
                    continue;
                };
                (t.clone(), vec![ip_record(t, ttl, ip)])
            } else {
                let Some(t) = self.name(&fqdn(&i.address)) else { continue };
                (t, Vec::new())
            };
            if !seen.insert((target.clone(), i.port)) {
                continue;
            }
            reply.answers.push(Record::from_rdata(
                self.qname.clone(),
                ttl,
                RData::SRV(SRV::new(1, weight, i.port, target)),
            ));
            for r in extra {
                if extra_seen.insert((r.name.clone(), r.data.clone())) {
                    reply.additionals.push(r);
                }
            }
            if self.cfg.dns_config.enable_additional_node_meta_txt {
                if let Some(n) = node_fqdn {
                    for r in meta_txt(&n, ttl, &i.node) {
                        if extra_seen.insert((r.name.clone(), r.data.clone())) {
                            reply.additionals.push(r);
                        }
                    }
                }
            }
        }
    }

    fn addr(&self, hex: &str) -> Reply {
        let Some(ip) = name::addr_of_hex(hex) else { return Reply::nxdomain(self.soa()) };
        let rec = ip_record(self.qname.clone(), self.node_ttl(), ip);
        let matches = match ip {
            IpAddr::V4(_) => matches!(self.qtype, RecordType::A | RecordType::ANY),
            IpAddr::V6(_) => matches!(self.qtype, RecordType::AAAA | RecordType::ANY),
        };
        let mut reply = Reply::default();
        if matches {
            reply.answers.push(rec);
        } else {
            reply.additionals.push(rec);
        }
        reply
    }
}

/// PTR answers for a reverse name: nodes with that address, then services with it as their
/// own address. `None` when nothing has the address.
pub async fn ptr(
    agent: &AgentShared,
    cache: &CatalogCache,
    cfg: &Config,
    qname: &Name,
    ip: IpAddr,
    authz: &DnsAuthz,
) -> Result<Option<Vec<Record>>, DnsError> {
    let source = Source::for_agent(agent, cfg, cache);
    let stale = cfg.dns_config.allow_stale;
    let ttl = cfg.dns_config.node_ttl.0.as_secs().min(u32::MAX as u64) as u32;
    let same = |a: &str| a.parse::<IpAddr>().is_ok_and(|a| a == ip);
    let mut out = Vec::new();
    for n in source.nodes(stale).await? {
        let hit = same(&n.address) || n.tagged_addresses.values().any(|a| same(a));
        if hit && authz.allows(Resource::Node(&n.name)) {
            if let Ok(target) = Name::from_ascii(format!("{}.node.{}.{}", n.name, cfg.datacenter, cfg.domain)) {
                out.push(Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(target))));
            }
        }
    }
    if out.is_empty() {
        let mut seen = FxHashSet::default();
        for s in source.service_addrs(stale).await? {
            if same(&s.address) && authz.allows(Resource::Service(&s.service)) && seen.insert(s.service.clone()) {
                let n = format!("{}.service.{}.{}", s.service, cfg.datacenter, cfg.domain);
                if let Ok(target) = Name::from_ascii(n) {
                    out.push(Record::from_rdata(qname.clone(), ttl, RData::PTR(PTR(target))));
                }
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

fn fqdn(s: &str) -> String {
    if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

fn ip_record(owner: Name, ttl: u32, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(owner, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(owner, ttl, RData::AAAA(AAAA(v6))),
    }
}

/// The instance's address (its own, else its node's) and the tagged addresses that go with it.
fn instance_address(i: &Instance) -> (&str, &BTreeMap<String, String>) {
    if i.address.is_empty() {
        (&i.node.address, &i.node.tagged_addresses)
    } else {
        (&i.address, &i.tagged_addresses)
    }
}

/// A/AAAA for an address under a query type: the address itself when its family matches (or
/// ANY), else the tagged `lan_ipv4`/`lan_ipv6` of the requested family; a hostname is a CNAME.
fn address_records(
    owner: &Name,
    ttl: u32,
    qtype: RecordType,
    address: &str,
    tagged: &BTreeMap<String, String>,
) -> Vec<Record> {
    let Ok(ip) = address.parse::<IpAddr>() else {
        return match Name::from_ascii(fqdn(address)) {
            Ok(target) if !address.is_empty() => {
                vec![Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target)))]
            }
            _ => Vec::new(),
        };
    };
    let fits = |ip: &IpAddr| match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        _ => true,
    };
    if fits(&ip) {
        return vec![ip_record(owner.clone(), ttl, ip)];
    }
    let key = if qtype == RecordType::AAAA { "lan_ipv6" } else { "lan_ipv4" };
    tagged
        .get(key)
        .and_then(|a| a.parse::<IpAddr>().ok())
        .filter(fits)
        .map(|ip| vec![ip_record(owner.clone(), ttl, ip)])
        .unwrap_or_default()
}

/// Node meta as TXT records: `key=value` (RFC 1464 escaping), or the bare value for keys
/// starting with `rfc1035-`.
fn meta_txt(owner: &Name, ttl: u32, node: &NodeInfo) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(k, v)| {
            let text = match k.strip_prefix("rfc1035-") {
                Some(_) => v.clone(),
                None => format!("{}={v}", escape_key(k)),
            };
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![text])))
        })
        .collect()
}

fn escape_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let n = k.chars().count();
    for (i, c) in k.chars().enumerate() {
        match c {
            '`' | '=' => {
                out.push('`');
                out.push(c);
            }
            ' ' if i == 0 || i + 1 == n => out.push_str("` "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1464_keys() {
        assert_eq!(escape_key("a=b"), "a`=b");
        assert_eq!(escape_key(" x "), "` x` ");
        assert_eq!(escape_key("a`b"), "a``b");
    }
}
