//! The DNS interface, queried with a real DNS client (hickory-proto messages over UDP and TCP
//! sockets) against agents whose catalog is filled through the HTTP API.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use legate_core::config::{Config, GoDuration};
use legate_tests::{retry_until, test_config, AgentProcess, InProcessAgent};
use reqwest::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub(crate) fn dns_config() -> Config {
    let mut c = test_config();
    c.ports.dns = 0;
    c
}

pub(crate) async fn start(c: Config) -> (InProcessAgent, SocketAddr) {
    let a = InProcessAgent::start(c).await;
    let dns = a.agent.dns_addrs()[0];
    legate_tests::wait_leader(&a.base).await;
    (a, dns)
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() & 0xffff) as u16
}

/// One query over UDP; returns the reply and its size on the wire.
async fn udp_edns(server: SocketAddr, name: &str, qtype: RecordType, edns: Option<u16>) -> (Message, usize) {
    let q = query(name, qtype, edns);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf)).await.expect("DNS reply").unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, q.metadata.id);
    (m, n)
}

pub(crate) async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_edns(server, name, qtype, None).await.0
}

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let q = query(name, qtype, None).to_vec().unwrap();
    let mut s = TcpStream::connect(server).await.unwrap();
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    s.write_all(&out).await.unwrap();
    let mut lb = [0u8; 2];
    s.read_exact(&mut lb).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(lb) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

pub(crate) fn ips(records: &[Record]) -> BTreeSet<IpAddr> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

pub(crate) fn ip_set(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn srvs(m: &Message) -> Vec<(u16, u16, String)> {
    let mut v: Vec<_> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn txts(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => {
                Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<String>())
            }
            _ => None,
        })
        .collect()
}

fn has_soa(m: &Message) -> bool {
    m.authorities.iter().any(|r| matches!(r.data, RData::SOA(_)))
}

async fn register(a: &InProcessAgent, body: Value) {
    let r = Client::new().put(a.url("/v1/catalog/register")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// n1: web (tags v1, primary), passing; n2: web (v2) with a warning check and weights;
/// n3: web with a critical check; n4: web with its own address; db on n1.
pub(crate) async fn fill_catalog(a: &InProcessAgent) {
    register(
        a,
        json!({"Node": "n1", "Address": "10.0.0.1", "NodeMeta": {"env": "prod", "rfc1035-note": "plain"},
               "Service": {"ID": "web1", "Service": "web", "Tags": ["v1", "primary"], "Port": 80}}),
    )
    .await;
    register(
        a,
        json!({"Node": "n1", "Address": "10.0.0.1", "NodeMeta": {"env": "prod", "rfc1035-note": "plain"},
               "Service": {"Service": "db", "Port": 5432}}),
    )
    .await;
    register(
        a,
        json!({"Node": "n2", "Address": "10.0.0.2",
               "Service": {"ID": "web2", "Service": "web", "Tags": ["v2"], "Port": 81,
                           "Weights": {"Passing": 10, "Warning": 3}},
               "Checks": [{"CheckID": "w", "Name": "w", "Status": "warning", "ServiceID": "web2"}]}),
    )
    .await;
    register(
        a,
        json!({"Node": "n3", "Address": "10.0.0.3",
               "Service": {"ID": "web3", "Service": "web", "Port": 82},
               "Checks": [{"CheckID": "down", "Name": "down", "Status": "critical"}]}),
    )
    .await;
    register(
        a,
        json!({"Node": "n4", "Address": "10.0.0.4",
               "Service": {"ID": "web4", "Service": "web", "Port": 83, "Address": "10.1.1.1"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_lookups_filter_health_and_tags() {
    let (a, dns) = start(dns_config()).await;
    fill_catalog(&a).await;

    // A: every non-critical instance (the warning one too), service address over node address.
    let m = udp_edns(dns, "web.service.consul.", RecordType::A, Some(4096)).await.0;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available, "no recursors: no RA");
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1", "10.0.0.2", "10.1.1.1"]));
    assert!(m.answers.iter().all(|r| r.name.to_ascii() == "web.service.consul."));

    // Case-insensitive, with the datacenter, with `.dc`.
    for name in ["WEB.Service.CONSUL.", "web.service.dc1.consul.", "web.service.dc1.dc.consul."] {
        let m = udp_edns(dns, name, RecordType::A, Some(4096)).await.0;
        assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1", "10.0.0.2", "10.1.1.1"]), "{name}");
    }

    // Tag filter, dotted RFC 2782 and plain forms.
    let m = udp(dns, "v1.web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    let m = udp(dns, "_web._v2.service.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&m), vec![(3, 81, "n2.node.dc1.consul.".to_string())], "warning weight");
    assert_eq!(ips(&m.additionals), ip_set(&["10.0.0.2"]));
    let m = udp(dns, "nosuchtag.web.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // SRV: node targets with A in Additional; an explicit service address as <hex>.addr.
    let m = tcp(dns, "_web._tcp.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srvs(&m),
        vec![
            (1, 80, "n1.node.dc1.consul.".to_string()),
            (1, 83, "0a010101.addr.dc1.consul.".to_string()),
            (3, 81, "n2.node.dc1.consul.".to_string()),
        ]
    );
    assert_eq!(ips(&m.additionals), ip_set(&["10.0.0.1", "10.0.0.2", "10.1.1.1"]));
    let addr_extra = m.additionals.iter().find(|r| r.name.to_ascii() == "0a010101.addr.dc1.consul.").unwrap();
    assert!(matches!(addr_extra.data, RData::A(_)));
    // Node meta TXT rides along in Additional.
    assert!(txts(&m.additionals).contains("env=prod"));
    // `_svc._tcp` without the `service` label.
    let m = tcp(dns, "_web._tcp.consul.", RecordType::SRV).await;
    assert_eq!(srvs(&m).len(), 3);

    // No such service / wrong datacenter: NXDOMAIN with the SOA in Authority.
    for name in ["nosuch.service.consul.", "web.service.dc2.consul.", "web.service.a.b.consul.", "foo.bar.consul."] {
        let m = udp(dns, name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty());
        assert!(has_soa(&m), "{name}: SOA in authority");
    }
    // Instances exist but have no AAAA: NOERROR, empty, SOA (NODATA).
    let m = udp(dns, "web.service.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(has_soa(&m));

    // A service whose only instance is critical is gone.
    register(
        &a,
        json!({"Node": "n3", "Address": "10.0.0.3", "Service": {"ID": "lone", "Service": "lone", "Port": 1},
               "Checks": [{"CheckID": "lone-c", "Name": "c", "Status": "critical", "ServiceID": "lone"}]}),
    )
    .await;
    let m = udp(dns, "lone.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // Answers follow catalog changes: n2's check turns critical, n1's address changes.
    register(
        &a,
        json!({"Node": "n2", "Address": "10.0.0.2",
               "Checks": [{"CheckID": "w", "Name": "w", "Status": "critical", "ServiceID": "web2"}]}),
    )
    .await;
    register(&a, json!({"Node": "n1", "Address": "10.0.0.11", "NodeMeta": {"env": "prod", "rfc1035-note": "plain"}}))
        .await;
    let m = udp_edns(dns, "web.service.consul.", RecordType::A, Some(4096)).await.0;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.11", "10.1.1.1"]));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_passing_drops_warning_instances() {
    let mut c = dns_config();
    c.dns_config.only_passing = true;
    let (a, dns) = start(c).await;
    fill_catalog(&a).await;
    let m = udp_edns(dns, "web.service.consul.", RecordType::A, Some(4096)).await.0;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1", "10.1.1.1"]));
    let m = udp(dns, "v2.web.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_addr_query_and_ptr_lookups() {
    let (a, dns) = start(dns_config()).await;
    fill_catalog(&a).await;
    register(&a, json!({"Node": "v6.host", "Address": "2001:db8::7"})).await;

    let m = udp(dns, "n1.node.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    assert!(txts(&m.additionals).contains("env=prod"), "node meta in Additional");
    let m = udp(dns, "N1.node.dc1.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    let m = udp(dns, "n1.node.consul.", RecordType::TXT).await;
    assert_eq!(txts(&m.answers), ["env=prod".to_string(), "plain".to_string()].into());
    let m = udp(dns, "n1.node.consul.", RecordType::ANY).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    assert_eq!(txts(&m.answers).len(), 2);
    // Dots in node names; AAAA for an IPv6 node.
    let m = udp(dns, "v6.host.node.consul.", RecordType::AAAA).await;
    assert_eq!(ips(&m.answers), ip_set(&["2001:db8::7"]));
    // AAAA of an IPv4 node: NODATA.
    let m = udp(dns, "n1.node.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && has_soa(&m));
    let m = udp(dns, "nobody.node.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_soa(&m));
    let m = udp(dns, "n1.node.dc9.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // <hex>.addr
    let m = udp(dns, "0a000001.addr.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    let m = udp(dns, "20010db8000000000000000000000007.addr.consul.", RecordType::AAAA).await;
    assert_eq!(ips(&m.answers), ip_set(&["2001:db8::7"]));
    let m = udp(dns, "0a000001.addr.consul.", RecordType::AAAA).await;
    assert!(m.answers.is_empty());
    assert_eq!(ips(&m.additionals), ip_set(&["10.0.0.1"]), "mismatched type goes to Additional");
    let m = udp(dns, "zz.addr.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // No prepared query exists.
    let m = udp(dns, "anything.query.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_soa(&m));

    // PTR: node addresses, then service addresses.
    let ptr = |m: &Message| -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect()
    };
    let m = udp(dns, "1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(ptr(&m), vec!["n1.node.dc1.consul.".to_string()]);
    let m = udp(dns, "1.1.1.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(ptr(&m), vec!["web.service.dc1.consul.".to_string()]);
    let v6 = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let m = udp(dns, v6, RecordType::PTR).await;
    assert_eq!(ptr(&m), vec!["v6.host.node.dc1.consul.".to_string()]);
    let m = udp(dns, "9.9.9.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soa_ns_and_ttls() {
    let mut c = dns_config();
    c.dns_config.node_ttl = GoDuration(Duration::from_secs(30));
    c.dns_config.service_ttl = [
        ("*".to_string(), GoDuration(Duration::from_secs(5))),
        ("we*".to_string(), GoDuration(Duration::from_secs(10))),
        ("web*".to_string(), GoDuration(Duration::from_secs(15))),
        ("db".to_string(), GoDuration(Duration::from_secs(20))),
    ]
    .into();
    c.dns_config.soa.min_ttl = 7;
    let (a, dns) = start(c).await;
    fill_catalog(&a).await;

    let ttl = |m: &Message| m.answers[0].ttl;
    assert_eq!(ttl(&udp(dns, "web.service.consul.", RecordType::A).await), 15);
    assert_eq!(ttl(&udp(dns, "db.service.consul.", RecordType::A).await), 20);
    assert_eq!(ttl(&udp(dns, "n1.node.consul.", RecordType::A).await), 30);
    // The agent's own `consul` service (a server): only the `*` wildcard.
    let m = retry_until(Duration::from_secs(15), "consul service in DNS", || async {
        let m = udp(dns, "consul.service.consul.", RecordType::A).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(ttl(&m), 5);
    assert_eq!(ips(&m.answers), ip_set(&["127.0.0.1"]));

    // SOA: answer plus NS authority with glue.
    let m = udp(dns, "consul.", RecordType::SOA).await;
    let soa = match &m.answers[0].data {
        RData::SOA(s) => s.clone(),
        other => panic!("not a SOA: {other:?}"),
    };
    assert_eq!(m.answers[0].name.to_ascii(), "consul.");
    assert_eq!(m.answers[0].ttl, 7);
    assert_eq!(soa.mname.to_ascii(), "ns.consul.");
    assert_eq!(soa.rname.to_ascii(), "hostmaster.consul.");
    assert_eq!((soa.refresh, soa.retry, soa.expire, soa.minimum), (3600, 600, 86400, 7));
    assert!(m
        .authorities
        .iter()
        .any(|r| matches!(&r.data, RData::NS(n) if n.0.to_ascii() == "test-node.node.dc1.consul.")));
    // NS: the servers, with A glue.
    let m = udp(dns, "consul.", RecordType::NS).await;
    assert!(matches!(&m.answers[0].data, RData::NS(n) if n.0.to_ascii() == "test-node.node.dc1.consul."));
    assert_eq!(m.answers[0].ttl, 30);
    assert_eq!(ips(&m.additionals), ip_set(&["127.0.0.1"]));
    a.stop().await;
}

/// Registers `n` instances of `big`, one per node.
async fn many_instances(a: &InProcessAgent, n: usize) {
    for i in 0..n {
        register(
            a,
            json!({"Node": format!("big-node-with-a-long-name-{i:03}"), "Address": format!("10.9.{}.{}", i / 200, i % 200 + 1),
                   "Service": {"Service": "big", "Port": 1000 + i}}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_trimming_truncation_and_tcp() {
    let (a, dns) = start(dns_config()).await;
    many_instances(&a, 100).await;

    // No EDNS: udp_answer_limit (3) answers, no TC without enable_truncate.
    let (m, size) = udp_edns(dns, "big.service.consul.", RecordType::A, None).await;
    assert_eq!(m.answers.len(), 3);
    assert!(!m.metadata.truncation);
    assert!(size <= 512);
    // SRV without EDNS: also fits 512 bytes, additional records follow the kept answers.
    let (m, size) = udp_edns(dns, "big.service.consul.", RecordType::SRV, None).await;
    assert!(!m.answers.is_empty() && m.answers.len() <= 3);
    assert!(size <= 512, "{size}");
    let targets: BTreeSet<String> = srvs(&m).into_iter().map(|s| s.2).collect();
    let extra: BTreeSet<String> =
        m.additionals.iter().filter(|r| matches!(r.data, RData::A(_))).map(|r| r.name.to_ascii()).collect();
    assert_eq!(targets, extra);
    // EDNS: the client's buffer size, here too small for all 100 SRV records.
    let (m, size) = udp_edns(dns, "big.service.consul.", RecordType::SRV, Some(1232)).await;
    assert!(m.answers.len() > 3 && m.answers.len() < 100, "{}", m.answers.len());
    assert!(size <= 1232, "{size}");
    // A big EDNS buffer takes every A record.
    let (m, _) = udp_edns(dns, "big.service.consul.", RecordType::A, Some(8192)).await;
    assert_eq!(m.answers.len(), 100);
    // TCP: everything, with every target's address.
    let m = tcp(dns, "big.service.consul.", RecordType::SRV).await;
    assert_eq!(m.answers.len(), 100);
    assert_eq!(ips(&m.additionals).len(), 100);
    assert!(!m.metadata.truncation);
    a.stop().await;

    // enable_truncate sets TC on trimmed UDP answers; udp_answer_limit is honoured.
    let mut c = dns_config();
    c.dns_config.enable_truncate = true;
    c.dns_config.udp_answer_limit = 5;
    let (a, dns) = start(c).await;
    many_instances(&a, 20).await;
    let m = udp(dns, "big.service.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 5);
    assert!(m.metadata.truncation);
    let (m, _) = udp_edns(dns, "big.service.consul.", RecordType::A, Some(4096)).await;
    assert_eq!(m.answers.len(), 20);
    assert!(!m.metadata.truncation);
    let m = tcp(dns, "big.service.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 20);
    a.stop().await;

    // a_record_limit caps A answers whatever the transport.
    let mut c = dns_config();
    c.dns_config.a_record_limit = 2;
    let (a, dns) = start(c).await;
    many_instances(&a, 6).await;
    let m = tcp(dns, "big.service.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 2);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_domain_answers_in_its_own_domain() {
    let mut c = dns_config();
    c.alt_domain = Some("test-domain.".into());
    let (a, dns) = start(c).await;
    fill_catalog(&a).await;
    let m = udp(dns, "v1.web.service.test-domain.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    let m = udp(dns, "_web._v1.service.test-domain.", RecordType::SRV).await;
    assert_eq!(srvs(&m), vec![(1, 80, "n1.node.dc1.test-domain.".to_string())]);
    let m = udp(dns, "nosuch.service.test-domain.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let soa = m.authorities.iter().find(|r| matches!(r.data, RData::SOA(_))).unwrap();
    assert_eq!(soa.name.to_ascii(), "test-domain.");
    // The primary domain still works.
    let m = udp(dns, "v1.web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_names_recurse_or_are_refused() {
    // The upstream: an agent of ours serving `upstream.` with a service in it.
    let mut up = dns_config();
    up.domain = "upstream.".into();
    let (upstream, up_dns) = start(up).await;
    fill_catalog(&upstream).await;

    // No recursors: REFUSED, no RA.
    let (plain, plain_dns) = start(dns_config()).await;
    for m in [
        udp(plain_dns, "web.service.upstream.", RecordType::A).await,
        tcp(plain_dns, "example.com.", RecordType::A).await,
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.recursion_available);
    }
    plain.stop().await;

    // A dead recursor first, then the upstream: sequential order falls through to it.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = dns_config();
    c.recursors = vec![dead.local_addr().unwrap().to_string(), up_dns.to_string()];
    c.dns_config.recursor_timeout = GoDuration(Duration::from_millis(300));
    let (a, dns) = start(c).await;
    let m = udp(dns, "web.service.upstream.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.recursion_available);
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1", "10.0.0.2", "10.1.1.1"]));
    // Over TCP too; NXDOMAIN from the upstream is passed on.
    let m = tcp(dns, "_web._v1.service.upstream.", RecordType::SRV).await;
    assert_eq!(srvs(&m), vec![(1, 80, "n1.node.dc1.upstream.".to_string())]);
    let m = udp(dns, "nosuch.service.upstream.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Our own domain is still answered locally (RA set now that recursors exist).
    let m = udp(dns, "web.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.recursion_available);
    // A PTR nobody here knows goes to the recursors too.
    register(&upstream, json!({"Node": "far", "Address": "10.7.7.7"})).await;
    let m = udp(dns, "7.7.7.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(matches!(&m.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "far.node.dc1.upstream."));
    a.stop().await;

    // Only dead recursors: SERVFAIL with RA.
    let mut c = dns_config();
    c.recursors = vec![dead.local_addr().unwrap().to_string()];
    c.dns_config.recursor_timeout = GoDuration(Duration::from_millis(200));
    let (a, dns) = start(c).await;
    let m = udp(dns, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.metadata.recursion_available);
    a.stop().await;
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_port_minus_one_disables_dns() {
    let a = InProcessAgent::start(test_config()).await;
    assert!(a.agent.dns_addrs().is_empty());
    a.stop().await;
}

/// The real binary: `-dns-port` and the dev agent's own `consul` service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_agent_answers_for_the_consul_service() {
    let p = AgentProcess::start(
        &["agent", "-dev", "-http-port", "0", "-dns-port", "0", "-server-port", "0", "-node", "devnode"],
        &[],
    );
    let dns: SocketAddr = retry_until(Duration::from_secs(10), "DNS listener in the banner", || async {
        p.output()
            .lines()
            .find_map(|l| l.trim().strip_prefix("DNS listeners: ["))
            .and_then(|rest| rest.split([',', ']']).next())
            .and_then(|a| a.trim().parse().ok())
    })
    .await;
    let m = retry_until(Duration::from_secs(15), "consul.service.consul", || async {
        let m = udp(dns, "consul.service.consul.", RecordType::A).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(ips(&m.answers), ip_set(&["127.0.0.1"]));
    let m = udp(dns, "devnode.node.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["127.0.0.1"]));
    // A service registered through the agent endpoint shows up too.
    let r = Client::new()
        .put(p.url("/v1/agent/service/register"))
        .json(&json!({"Name": "api", "Port": 9000, "Tags": ["blue"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = retry_until(Duration::from_secs(15), "api in DNS", || async {
        let m = udp(dns, "_api._blue.service.consul.", RecordType::SRV).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(srvs(&m), vec![(1, 9000, "devnode.node.dc1.consul.".to_string())]);
}

/// A client agent has no state store: it answers DNS through a server over the RPC port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_agent_answers_through_a_server() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (d1s, d2s) = (d1.path().to_str().unwrap(), d2.path().to_str().unwrap());
    let common = ["-http-port", "0", "-serf-lan-port", "8301", "-retry-interval", "1s"];
    let mut server_args = vec!["agent", "-server", "-bootstrap-expect", "1", "-node", "s1", "-bind", "127.0.8.1"];
    server_args.extend(["-client", "127.0.8.1", "-data-dir", d1s, "-dns-port", "-1"]);
    server_args.extend(common);
    let server = AgentProcess::start(&server_args, &[]);
    let mut client_args = vec!["agent", "-node", "c1", "-bind", "127.0.8.2", "-client", "127.0.8.2"];
    client_args.extend(["-data-dir", d2s, "-dns-port", "0", "-retry-join", "127.0.8.1"]);
    client_args.extend(common);
    let client = AgentProcess::start(&client_args, &[]);
    let dns: SocketAddr = retry_until(Duration::from_secs(10), "DNS listener in the banner", || async {
        client
            .output()
            .lines()
            .find_map(|l| l.trim().strip_prefix("DNS listeners: ["))
            .and_then(|rest| rest.split([',', ']']).next())
            .and_then(|a| a.trim().parse().ok())
    })
    .await;
    legate_tests::wait_leader(&format!("http://{}", server.http.unwrap())).await;

    // A service registered on the server's catalog, seen through the client's DNS.
    let r = Client::new()
        .put(server.url("/v1/catalog/register"))
        .json(&json!({"Node": "ext", "Address": "10.5.5.5", "Service": {"Service": "ext", "Port": 7000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = retry_until(Duration::from_secs(20), "ext through the client", || async {
        let m = udp(dns, "ext.service.consul.", RecordType::SRV).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(srvs(&m), vec![(1, 7000, "ext.node.dc1.consul.".to_string())]);
    assert_eq!(ips(&m.additionals), ip_set(&["10.5.5.5"]));
    // The client's own node, once the leader has registered it.
    let m = retry_until(Duration::from_secs(20), "c1 through the client", || async {
        let m = udp(dns, "c1.node.consul.", RecordType::A).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(ips(&m.answers), ip_set(&["127.0.8.2"]));
    let m = udp(dns, "ext.service.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let m = udp(dns, "nope.service.consul.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = retry_until(Duration::from_secs(20), "PTR of s1 through the client", || async {
        let m = udp(dns, "1.8.0.127.in-addr.arpa.", RecordType::PTR).await;
        (!m.answers.is_empty()).then_some(m)
    })
    .await;
    assert!(matches!(&m.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "s1.node.dc1.consul."), "{m:?}");
    assert_eq!(m.answers.len(), 1, "only s1 has the address: {m:?}");
}

/// The UDP sockets share their port within one agent only: a second agent on a taken DNS port
/// fails to start with Consul's bind error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_dns_port_fails_the_start() {
    let (a, dns) = start(dns_config()).await;
    let mut c = dns_config();
    c.ports.dns = i32::from(dns.port());
    let err = match legate_core::Agent::start(c, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("second agent on {dns} started"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("Error starting DNS server: listen tcp 127.0.0.1:"), "{err}");
    a.stop().await;
}

/// `dns_config` and `recursors` reload without a restart (the config dir is watched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_config_reloads_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    std::fs::write(dir.path().join("dns.json"), r#"{"dns_config": {"only_passing": false}}"#).unwrap();
    std::fs::write(
        dir.path().join("web.json"),
        r#"{"service": {"name": "web", "port": 80, "check": {"id": "web-ttl", "name": "web", "ttl": "600s", "status": "warning"}}}"#,
    )
    .unwrap();
    let p = AgentProcess::start(
        &["agent", "-dev", "-http-port", "0", "-dns-port", "0", "-server-port", "0", "-config-dir", &d],
        &[],
    );
    let dns: SocketAddr = retry_until(Duration::from_secs(10), "DNS listener in the banner", || async {
        p.output()
            .lines()
            .find_map(|l| l.trim().strip_prefix("DNS listeners: ["))
            .and_then(|rest| rest.split([',', ']']).next())
            .and_then(|a| a.trim().parse().ok())
    })
    .await;
    // The warning instance is answered...
    retry_until(Duration::from_secs(15), "web (warning) in DNS", || async {
        let m = udp(dns, "web.service.consul.", RecordType::A).await;
        (ips(&m.answers) == ip_set(&["127.0.0.1"])).then_some(())
    })
    .await;
    let m = udp(dns, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // ...until only_passing is switched on; a recursor (a dead one) turns REFUSED into SERVFAIL.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        dir.path().join("dns.json"),
        format!(
            r#"{{"dns_config": {{"only_passing": true, "recursor_timeout": "200ms"}}, "recursors": ["{}"]}}"#,
            dead.local_addr().unwrap()
        ),
    )
    .unwrap();
    retry_until(Duration::from_secs(15), "only_passing applied", || async {
        let m = udp(dns, "web.service.consul.", RecordType::A).await;
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
    })
    .await;
    let m = udp(dns, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.metadata.recursion_available);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_hide_what_the_dns_token_cannot_read() {
    const MGMT: &str = "6b9e1c2d-0a3f-4e47-9a43-2c4e1c0a9f02";
    let mut c = dns_config();
    c.acl.enabled = true;
    c.acl.default_policy = "deny".into();
    c.acl.tokens.initial_management = Some(MGMT.into());
    let (a, dns) = start(c).await;
    let http = Client::new();
    let put = |path: &'static str, body: Value| http.put(a.url(path)).header("X-Consul-Token", MGMT).json(&body).send();
    retry_until(Duration::from_secs(15), "management token written", || async {
        (put("/v1/catalog/register", json!({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web"}}))
            .await
            .ok()?
            .status()
            == 200)
            .then_some(())
    })
    .await;
    let r = put("/v1/catalog/register", json!({"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "secret"}}));
    assert_eq!(r.await.unwrap().status(), 200);

    // No DNS token: anonymous, which reads nothing under deny.
    let m = udp(dns, "web.service.consul.", RecordType::A).await;
    assert!(m.answers.is_empty(), "{m:?}");

    // A DNS token that reads web and the nodes, set at run time.
    let rules = "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }";
    let r = put("/v1/acl/policy", json!({"Name": "dns", "Rules": rules})).await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = put("/v1/acl/token", json!({"Policies": [{"Name": "dns"}]})).await.unwrap().json().await.unwrap();
    let r = put("/v1/agent/token/dns", json!({"Token": t["SecretID"]})).await.unwrap();
    assert_eq!(r.status(), 200);
    let m = udp(dns, "web.service.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.1"]));
    let m = udp(dns, "secret.service.consul.", RecordType::A).await;
    assert!(m.answers.is_empty() && m.metadata.response_code == ResponseCode::NXDomain, "{m:?}");
    // Nodes are readable: n2 answers as a node, but not through the service it runs.
    let m = udp(dns, "n2.node.consul.", RecordType::A).await;
    assert_eq!(ips(&m.answers), ip_set(&["10.0.0.2"]));
    a.stop().await;
}
