//! The DNS interface (Consul's `agent/dns.go` behaviour) on hickory-server: UDP and TCP on
//! every DNS address (`addresses.dns`, else `client_addr`) at `ports.dns`.
//!
//! - [`name`] parses names inside `domain` / `alt_domain`; [`answer`] builds the records
//!   from the catalog ([`source`]: the local store, or a server over the RPC forwarding path).
//! - Names outside the domain go to `recursors` ([`recurse`]), else REFUSED.
//! - Replies are trimmed here: UDP to 512 bytes and `udp_answer_limit` answers without EDNS, to
//!   the client's EDNS size with it; TCP to 64 KiB. TC is set on a trimmed reply only with
//!   `enable_truncate`, as Consul.
//! - [`authz::DnsAuthz`] is the single ACL decision point for everything an answer reveals.
//!
//! TCP runs on hickory-server's `Server`. UDP runs the same [`RequestHandler`] from a loop of
//! ours on one `SO_REUSEPORT` socket per core, each on a thread of its own that blocks in
//! `recvmmsg` ([`udp_batch`]: the queries waiting on the socket in one call, their replies out
//! in one `sendmmsg`): a query is answered inline on that thread (a lookup in the local
//! catalog view never waits), and only a query that does wait (forwarded to a server,
//! recursion) becomes a task on the runtime. hickory's UDP path spawns a task and crosses a
//! channel for every query, which halves throughput on a small machine; and a loop that is a runtime task waits behind
//! the runtime's other tasks and its I/O driver's wake-ups, which showed in the latency tail.

pub mod answer;
pub mod authz;
pub mod error;
pub mod name;
pub mod recurse;
pub mod source;
mod udp_batch;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use answer::{Question, Reply};
use legate_agent::AgentShared;
use legate_config::Config;

/// Sockets bound at start (before any task runs, so a bind error fails the start).
pub struct Listeners {
    /// Per address, the `SO_REUSEPORT` UDP sockets sharing its port (blocking: each is read
    /// by a thread of its own).
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<TcpListener>,
    /// The bound addresses (the real port when configured as 0).
    pub addrs: Vec<SocketAddr>,
}

/// A failed DNS bind: the address and the error.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub proto: &'static str,
    pub source: std::io::Error,
}

/// Binds UDP and TCP on every DNS address; nothing when `ports.dns` is negative. Port 0 takes
/// one free port per address, the same for UDP and TCP.
pub async fn bind(cfg: &Config) -> Result<Listeners, BindError> {
    let mut l = Listeners { udp: Vec::new(), tcp: Vec::new(), addrs: Vec::new() };
    if cfg.ports.dns < 0 {
        return Ok(l);
    }
    let per_addr = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    for ip in cfg.dns_addrs() {
        let (udp, tcp) = bind_pair(ip, cfg.ports.dns as u16).await?;
        let bound =
            udp.local_addr().map_err(|source| BindError { addr: SocketAddr::new(ip, 0), proto: "udp", source })?;
        l.addrs.push(bound);
        l.udp.push(udp);
        for _ in 1..per_addr {
            l.udp.push(udp_socket(bound).map_err(|source| BindError { addr: bound, proto: "udp", source })?);
        }
        l.tcp.push(tcp);
    }
    Ok(l)
}

/// A blocking UDP socket with `SO_REUSEPORT`: the kernel spreads queries over the sockets of
/// one port. (The TCP listener on the same port has no such option, so a second agent on the
/// port still fails to start.) Its reads time out now and then, so that a reader that missed
/// its wake-up at shutdown still stops.
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProto::UDP))?;
    s.set_reuse_port(true)?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

async fn bind_pair(ip: IpAddr, port: u16) -> Result<(std::net::UdpSocket, TcpListener), BindError> {
    let mut tries = 0;
    loop {
        let addr = SocketAddr::new(ip, port);
        let udp = match udp_socket(addr) {
            Ok(u) => u,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(source) => return Err(BindError { addr, proto: "udp", source }),
        };
        let bound = udp.local_addr().map_err(|source| BindError { addr, proto: "udp", source })?;
        match legate_agent::addr::bind_tcp(bound).await {
            Ok(t) => return Ok((udp, t)),
            // The free UDP port is taken over TCP: pick another.
            Err(e) if port == 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => tries += 1,
            Err(source) => return Err(BindError { addr: bound, proto: "tcp", source }),
        }
    }
}

/// Serves DNS on the bound sockets until `shutdown`.
pub async fn serve(agent: Arc<AgentShared>, listeners: Listeners, shutdown: CancellationToken) {
    if listeners.addrs.is_empty() {
        return;
    }
    let handler = Arc::new(Handler { agent, cache: source::CatalogCache::default() });
    let mut server = hickory_server::Server::new(SharedHandler(handler.clone()));
    for t in listeners.tcp {
        server.register_listener(t, Duration::from_secs(10), 64);
    }
    let runtime = tokio::runtime::Handle::current();
    let mut readers = Vec::new();
    for u in listeners.udp {
        let sock = Arc::new(u);
        let (h, rt, stop) = (handler.clone(), runtime.clone(), shutdown.clone());
        let s = sock.clone();
        match std::thread::Builder::new().name("dns-udp".into()).spawn(move || udp_loop(&s, &h, &rt, &stop)) {
            Ok(t) => readers.push((sock, t)),
            Err(e) => tracing::error!(error = %e, "DNS UDP reader thread not started"),
        }
    }
    shutdown.cancelled().await;
    // Wakes the readers out of recvfrom (Linux ends a blocked read on a shut-down UDP socket,
    // though it reports ENOTCONN for an unconnected one); the read timeout covers the rest.
    for (sock, _) in &readers {
        let _ = socket2::SockRef::from(&**sock).shutdown(std::net::Shutdown::Read);
    }
    let _ = tokio::task::spawn_blocking(move || {
        for (_, t) in readers {
            let _ = t.join();
        }
    })
    .await;
    if let Err(e) = server.shutdown_gracefully().await {
        tracing::warn!(error = %e, "DNS server stopped with an error");
    }
}

/// Receives queries on one UDP socket, a batch at a time, and answers each inline, on this
/// thread (inside the runtime's context); the batch's replies leave together. A query whose
/// answer has to wait (an RPC to a server, a recursor) continues as a task on the runtime and
/// sends its reply when it has it.
fn udp_loop(
    sock: &Arc<std::net::UdpSocket>,
    handler: &Arc<Handler>,
    runtime: &tokio::runtime::Handle,
    shutdown: &CancellationToken,
) {
    use std::future::Future;
    use std::task::{Context, Waker};
    let _context = runtime.enter();
    let mut batch = udp_batch::Receiver::default();
    let outbox = Arc::new(Outbox { sock: sock.clone(), gather: std::sync::Mutex::new(Gather::default()) });
    loop {
        let received = batch.recv(sock);
        if shutdown.is_cancelled() {
            return;
        }
        let n = match received {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        outbox.gather();
        for i in 0..n {
            let Some((query, src)) = batch.datagram(i) else {
                tracing::debug!("DNS UDP query dropped: larger than a query's 4 KiB or not from an IP address");
                continue;
            };
            let request = match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
                Ok(r) if r.metadata.message_type == MessageType::Query => r,
                Ok(_) => continue,
                Err(_) => {
                    // Unparseable: FORMERR when at least the header is there, as hickory does.
                    if query.len() >= 12 {
                        let mut reply = query[..12].to_vec();
                        reply[2] |= 0x80; // QR
                        reply[3] = (reply[3] & 0xf0) | 1; // FORMERR
                        reply[4..12].fill(0);
                        outbox.send(reply, src);
                    }
                    continue;
                }
            };
            let responder = UdpResponder { outbox: outbox.clone(), dst: src };
            let h = handler.clone();
            let mut answer = Box::pin(async move {
                h.handle_request::<_, hickory_server::net::runtime::TokioTime>(&request, responder).await;
            });
            // One poll here: a local answer completes now. Waiting work moves to a task, which
            // polls it again with a real waker.
            if answer.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
                runtime.spawn(answer);
            }
        }
        outbox.flush();
    }
}

/// Where one reader's replies go: gathered while it answers a batch and sent together at the
/// batch's end; straight to the socket otherwise (an answer that finished later, on the
/// runtime, while the reader waited for queries).
struct Outbox {
    /// Blocking, but a UDP send only waits for room in the socket's send buffer.
    sock: Arc<std::net::UdpSocket>,
    gather: std::sync::Mutex<Gather>,
}

#[derive(Default)]
struct Gather {
    open: bool,
    replies: Vec<(Vec<u8>, SocketAddr)>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gather> {
        self.gather.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn gather(&self) {
        self.lock().open = true;
    }

    fn send(&self, reply: Vec<u8>, dst: SocketAddr) {
        let mut g = self.lock();
        if g.open {
            g.replies.push((reply, dst));
            return;
        }
        drop(g);
        if let Err(e) = self.sock.send_to(&reply, dst) {
            tracing::debug!(error = %e, to = %dst, "DNS UDP reply not sent");
        }
    }

    /// Sends what the batch gathered and stops gathering.
    fn flush(&self) {
        let mut replies = {
            let mut g = self.lock();
            g.open = false;
            std::mem::take(&mut g.replies)
        };
        udp_batch::send_all(&self.sock, &replies);
        replies.clear();
        // Keep the buffer for the next batch (nothing was gathered meanwhile: closed).
        self.lock().replies = replies;
    }
}

/// Sends a response to one UDP client: encoded within the client's buffer size (512 bytes
/// without EDNS), through the reader's [`Outbox`].
#[derive(Clone)]
struct UdpResponder {
    outbox: Arc<Outbox>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response.destructive_emit(&mut encoder).map_err(|e| e.to_string())?;
        self.outbox.send(bytes, self.dst);
        Ok(info)
    }
}

/// The handler as hickory's TCP server holds it.
struct SharedHandler(Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for SharedHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, handle: R) -> ResponseInfo {
        self.0.handle_request::<R, T>(request, handle).await
    }
}

struct Handler {
    agent: Arc<AgentShared>,
    cache: source::CatalogCache,
}

/// A reply ready to send.
struct Out {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    edns: Option<Edns>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let out = self.respond(request).await;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &out.edns {
            builder.edns(e);
        }
        let metadata = out.metadata;
        let response = builder.build(
            metadata,
            out.answers.iter(),
            out.authorities.iter(),
            std::iter::empty(),
            out.additionals.iter(),
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "DNS response not sent");
                let mut metadata = Metadata::new(request.metadata.id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header { metadata, counts: Default::default() })
            }
        }
    }
}

/// Consul counts a DNS answer as stale when the server it read from last heard from its
/// leader more than this long ago.
const STALE_AFTER_MS: u64 = 5_000;

impl Handler {
    /// Whether this agent answers from a server that has lost touch with its leader (a
    /// leader's own contact is always fresh).
    fn answers_stale(&self) -> bool {
        self.agent.server().is_some_and(|s| s.leader_contact().1 > STALE_AFTER_MS)
    }

    async fn respond(&self, request: &Request) -> Out {
        // Client agents resolve the DNS token through a server (answers are filtered by it).
        self.agent.acl.warm_dns(&self.agent).await;
        let cfg = self.agent.config();
        let tcp = request.protocol() != Protocol::Udp;
        let req_md = &request.metadata;
        let mut md = Metadata::new(req_md.id, MessageType::Response, req_md.op_code);
        md.recursion_desired = req_md.recursion_desired;
        md.recursion_available = !cfg.recursors.is_empty();
        md.authoritative = true;
        let edns = request.edns.as_ref().map(|e| {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().max(512));
            r
        });
        let reply_with = |mut md: Metadata, reply: Reply, edns: Option<Edns>| {
            md.response_code = reply.rcode;
            Out {
                metadata: md,
                answers: reply.answers,
                authorities: reply.authorities,
                additionals: reply.additionals,
                edns,
            }
        };
        let rcode_only = |rcode| Reply { rcode, ..Reply::default() };

        let queries = request.queries.queries();
        if req_md.op_code != OpCode::Query {
            return reply_with(md, rcode_only(ResponseCode::NotImp), edns);
        }
        let [query] = queries else {
            return reply_with(md, rcode_only(ResponseCode::FormErr), edns);
        };
        let qname: &Name = query.original().name();
        let qtype = query.query_type();
        let lower = qname.to_ascii().to_ascii_lowercase();
        let labels: Vec<&str> = lower.trim_end_matches('.').split('.').filter(|l| !l.is_empty()).collect();

        let zone = [Some(cfg.domain.as_str()), cfg.alt_domain.as_deref()].into_iter().flatten().find_map(|d| {
            let dl: Vec<String> =
                d.trim_end_matches('.').split('.').filter(|l| !l.is_empty()).map(str::to_ascii_lowercase).collect();
            (labels.len() >= dl.len() && labels[labels.len() - dl.len()..].iter().zip(&dl).all(|(a, b)| *a == b))
                .then(|| (d, labels.len() - dl.len()))
        });
        if let Some((domain, left)) = zone {
            let _timer = legate_telemetry::Timer::start(
                "dns.domain_query",
                vec![("node", self.agent.node_name().to_string().into())],
            );
            if self.answers_stale() {
                legate_telemetry::incr("dns.stale_queries");
            }
            let q = Question {
                agent: &self.agent,
                cache: &self.cache,
                cfg: &cfg,
                qname,
                qtype,
                labels: &labels[..left],
                domain,
                authz: &authz::DnsAuthz::of(&self.agent),
            };
            let mut reply = match q.answer().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(name = %qname, error = %e, "DNS lookup failed");
                    rcode_only(ResponseCode::ServFail)
                }
            };
            let trimmed = trim(&mut reply, request, &md, edns.as_ref(), tcp, &cfg, qtype);
            md.truncation = trimmed && cfg.dns_config.enable_truncate;
            return reply_with(md, reply, edns);
        }

        if matches!(qtype, RecordType::PTR | RecordType::ANY) {
            if let Some(ip) = name::addr_of_arpa(&labels) {
                let _timer = legate_telemetry::Timer::start(
                    "dns.ptr_query",
                    vec![("node", self.agent.node_name().to_string().into())],
                );
                match answer::ptr(&self.agent, &self.cache, &cfg, qname, ip, &authz::DnsAuthz::of(&self.agent)).await {
                    Ok(Some(answers)) => {
                        let mut reply = Reply { answers, ..Reply::default() };
                        let trimmed = trim(&mut reply, request, &md, edns.as_ref(), tcp, &cfg, qtype);
                        md.truncation = trimmed && cfg.dns_config.enable_truncate;
                        return reply_with(md, reply, edns);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(name = %qname, error = %e, "DNS lookup failed");
                        return reply_with(md, rcode_only(ResponseCode::ServFail), edns);
                    }
                }
                if cfg.recursors.is_empty() {
                    return reply_with(md, rcode_only(ResponseCode::NXDomain), edns);
                }
            }
        }

        if cfg.recursors.is_empty() {
            // Consul has no handler for foreign names without recursors: REFUSED.
            md.authoritative = false;
            return reply_with(md, rcode_only(ResponseCode::Refused), edns);
        }
        match recurse::recurse(&cfg, request.as_slice(), req_md.id, tcp).await {
            Some(m) => {
                let mut metadata = m.metadata;
                metadata.recursion_available = true;
                Out {
                    metadata,
                    answers: m.answers,
                    authorities: m.authorities,
                    additionals: m.additionals,
                    edns: m.edns,
                }
            }
            None => {
                md.authoritative = false;
                reply_with(md, rcode_only(ResponseCode::ServFail), edns)
            }
        }
    }
}

/// Trims a reply to what the transport carries (see the module docs); true when answers were
/// dropped.
fn trim(
    reply: &mut Reply,
    request: &Request,
    md: &Metadata,
    edns: Option<&Edns>,
    tcp: bool,
    cfg: &Config,
    qtype: RecordType,
) -> bool {
    let total = reply.answers.len();
    let (max_size, max_answers) = if tcp {
        (u16::MAX as usize, if qtype == RecordType::SRV { 1024 } else { 4096 })
    } else {
        match edns {
            Some(e) => (e.max_payload().max(512) as usize, usize::MAX),
            None => (512, (cfg.dns_config.udp_answer_limit as usize).clamp(1, 8)),
        }
    };
    // Additional records that go with the kept answers: the targets of kept SRV records (all
    // of them when the answers are not SRV).
    let all_extra = std::mem::take(&mut reply.additionals);
    let sync = |answers: &[Record]| -> Vec<Record> {
        let targets: Vec<&Name> = answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(&s.target),
                _ => None,
            })
            .collect();
        if targets.is_empty() {
            return all_extra.clone();
        }
        all_extra.iter().filter(|r| targets.iter().any(|t| t.eq_ignore_root(&r.name))).cloned().collect()
    };
    let queries: Vec<_> = request.queries.queries().iter().map(|q| q.original().clone()).collect();
    // The encoded size (records are moved into the message and back, not copied).
    let size = |reply: &mut Reply| -> usize {
        let mut m = Message::new(md.id, MessageType::Response, md.op_code);
        m.queries = queries.clone();
        m.answers = std::mem::take(&mut reply.answers);
        m.authorities = std::mem::take(&mut reply.authorities);
        m.additionals = std::mem::take(&mut reply.additionals);
        m.edns = edns.cloned();
        let n = m.to_vec().map_or(usize::MAX, |v| v.len());
        reply.answers = m.answers;
        reply.authorities = m.authorities;
        reply.additionals = m.additionals;
        n
    };
    if reply.answers.len() > max_answers {
        reply.answers.truncate(max_answers);
        reply.additionals = sync(&reply.answers);
    } else {
        reply.additionals = all_extra.clone();
    }
    // Most answers are far below the limit: an upper bound (no name compression) spares
    // encoding them twice.
    if upper_bound(request, reply, edns.is_some()) > max_size && size(reply) > max_size {
        if !reply.answers.is_empty() {
            reply.authorities.clear();
        }
        // The largest answer count that fits (at least one).
        let (mut lo, mut hi) = (1, reply.answers.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            let mut probe = Reply { rcode: reply.rcode, answers: reply.answers[..mid].to_vec(), ..Reply::default() };
            probe.authorities = reply.authorities.clone();
            probe.additionals = sync(&probe.answers);
            if size(&mut probe) <= max_size {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        reply.answers.truncate(lo);
        reply.additionals = sync(&reply.answers);
        if size(reply) > max_size {
            reply.additionals.clear();
        }
    }
    reply.answers.len() < total
}

/// An upper bound of a reply's encoded size (every name written in full), or `usize::MAX`
/// for record types it does not know.
fn upper_bound(request: &Request, reply: &Reply, edns: bool) -> usize {
    fn name(n: &Name) -> usize {
        n.iter().map(|l| l.len() + 1).sum::<usize>() + 1
    }
    fn record(r: &Record) -> usize {
        let data = match &r.data {
            RData::A(_) => 4,
            RData::AAAA(_) => 16,
            RData::SRV(s) => 6 + name(&s.target),
            RData::PTR(p) => name(&p.0),
            RData::NS(n) => name(&n.0),
            RData::CNAME(c) => name(&c.0),
            RData::TXT(t) => t.txt_data.iter().map(|s| s.len() + 1).sum(),
            RData::SOA(s) => name(&s.mname) + name(&s.rname) + 20,
            _ => return usize::MAX / 4,
        };
        name(&r.name) + 10 + data
    }
    let questions: usize = request.queries.queries().iter().map(|q| name(q.original().name()) + 4).sum();
    let records: usize = reply.answers.iter().chain(&reply.authorities).chain(&reply.additionals).map(record).sum();
    12 + questions + records + if edns { 11 } else { 0 }
}
