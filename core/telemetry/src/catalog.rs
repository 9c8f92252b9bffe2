//! Every metric Legate records, with its kind and help text: what `/v1/agent/metrics?format=
//! prometheus` declares even before the first observation (as Consul's Prometheus sink does
//! with its definitions), and the list a test checks the agent against.
//!
//! Names are without the prefix: Consul's get `telemetry.metrics_prefix` (`consul.raft.apply`);
//! Legate's own (`legate.*`) are named as they are, whatever the prefix.

use crate::registry::Kind;

pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn c(name: &'static str, help: &'static str) -> Def {
    Def { name, kind: Kind::Counter, help }
}
const fn s(name: &'static str, help: &'static str) -> Def {
    Def { name, kind: Kind::Sample, help }
}
const fn g(name: &'static str, help: &'static str) -> Def {
    Def { name, kind: Kind::Gauge, help }
}

/// Whether a recorded name is Legate's own (shown without `metrics_prefix`).
pub fn is_own(name: &str) -> bool {
    name.starts_with("legate.")
}

pub static DEFINITIONS: &[Def] = &[
    // Raft and the servers.
    g("autopilot.healthy", "1 when every server is healthy by autopilot's rules, 0 when not (leader only)."),
    g(
        "autopilot.failure_tolerance",
        "How many voting servers can fail with the cluster still having a quorum (leader only).",
    ),
    s("raft.leader.lastContact", "Time since the leader last heard from a follower, in ms (leader only)."),
    s("raft.commitTime", "Time from a write reaching the leader to its commit by a quorum, in ms."),
    c("raft.apply", "Raft transactions the leader appended."),
    c("raft.state.leader", "Times this server became leader."),
    c("raft.state.candidate", "Times this server started an election."),
    c("raft.state.follower", "Times this server became a follower."),
    s("raft.leader.dispatchLog", "Time the leader takes to write log entries to its disk, in ms."),
    s("raft.rpc.appendEntries.storeLogs", "Time a follower takes to write replicated entries to its disk, in ms."),
    s("raft.replication.appendEntries.rpc", "Time of one AppendEntries call to a peer, in ms (label peer_id)."),
    c("raft.replication.appendEntries.logs", "Log entries sent to a peer (label peer_id)."),
    s("raft.fsm.apply", "Time to apply a committed batch to the state store, in ms."),
    s("raft.snapshot.create", "Time to build a snapshot of the state store, in ms."),
    s("raft.snapshot.persist", "Time to write a snapshot to its destination, in ms."),
    s("raft.snapshot.takeSnapshot", "Time of a whole snapshot: build and persist, in ms."),
    s("raft.snapshot.restore", "Time to install a snapshot into the state store, in ms."),
    g("server.isLeader", "1 on the leader, 0 on other servers."),
    s("leader.reconcile", "Time of one reconciliation of the gossip members into the catalog, in ms."),
    // Writes through the servers, by endpoint.
    s("kvs.apply", "Time of a KV write through Raft, in ms."),
    s("txn.apply", "Time of a /v1/txn write through Raft, in ms."),
    s("txn.read", "Time of a read-only /v1/txn, in ms."),
    s("catalog.register", "Time of a catalog registration through Raft, in ms."),
    s("catalog.deregister", "Time of a catalog deregistration through Raft, in ms."),
    s("session.apply", "Time of a session create or destroy through Raft, in ms."),
    s("acl.apply", "Time of an ACL write through Raft, in ms."),
    s("acl.ResolveToken", "Time to resolve a token into its permissions, in ms."),
    g("session_ttl.active", "Sessions with a TTL the leader is tracking."),
    s("session_ttl.invalidate", "Time to destroy a session whose TTL ran out, in ms."),
    // Queries.
    c("rpc.request", "Requests a server answered for other agents or for the HTTP API."),
    c("rpc.query", "Blocking queries a server answered."),
    g("rpc.queries_blocking", "Blocking queries this server holds open right now."),
    c("rpc.request_error", "Requests a server answered with an error."),
    c("client.rpc", "Calls this agent made to the servers."),
    c("client.rpc.exceeded", "Calls refused by this client agent's limits.rpc_rate."),
    c("client.rpc.failed", "Calls this agent made to the servers that failed."),
    c("catalog.service.query", "Catalog queries for a service (label service)."),
    c("catalog.service.query-tag", "Catalog queries for a service with a tag (labels service, tag)."),
    c("catalog.service.not-found", "Catalog queries for a service that has no instances."),
    c("health.service.query", "Health queries for a service (label service)."),
    c("health.service.query-tag", "Health queries for a service with a tag (labels service, tag)."),
    c("health.service.not-found", "Health queries for a service that has no instances."),
    s("api.http", "Time of an HTTP API request, in ms (labels method, path)."),
    // DNS.
    s("dns.domain_query", "Time to answer a DNS query in the agent's domain, in ms (label node)."),
    s("dns.ptr_query", "Time to answer a reverse (PTR) DNS query, in ms (label node)."),
    c("dns.stale_queries", "DNS answers served from a follower's possibly stale state."),
    // Gossip.
    c("serf.member.join", "Members that joined the gossip pool."),
    c("serf.member.flap", "Members that came back within 60 s of failing."),
    c("serf.member.failed", "Members the gossip pool found failed."),
    c("serf.member.left", "Members that left the gossip pool."),
    c("serf.member.update", "Members whose tags changed."),
    c("serf.events", "User events received."),
    s("serf.queue.Event", "User events waiting to be gossiped, sampled."),
    s("serf.queue.Intent", "Join and leave intents waiting to be gossiped, sampled."),
    g("memberlist.health.score", "This agent's view of its own health: 0 is healthy, higher is worse."),
    s("memberlist.gossip", "Time of one gossip round, in ms."),
    s("serf.coordinate.adjustment-ms", "The network coordinate's adjustment term after each update, in ms."),
    c("serf.coordinate.rejected", "Round-trip samples the network coordinate refused."),
    s("fsm.coordinate.batch-update", "Time of a batch of network coordinate updates through Raft, in ms."),
    s("fsm.prepared-query", "Time of a prepared query write through Raft, in ms."),
    s("fsm.plugin", "Time of a plugin registry write (a chunk, a commit, a delete) through Raft, in ms."),
    s("prepared-query.execute", "Time to execute a prepared query, in ms."),
    g("members.servers", "Servers in the gossip pool that are alive."),
    g("members.clients", "Client agents in the gossip pool that are alive."),
    // The state store (leader).
    g("state.nodes", "Nodes in the catalog."),
    g("state.services", "Distinct service names in the catalog."),
    g("state.service_instances", "Service instances in the catalog."),
    g("state.kv_entries", "Keys in the KV store."),
    // The process.
    g("runtime.alloc_bytes", "Bytes the allocator has handed out and not taken back."),
    g("runtime.sys_bytes", "Bytes the allocator holds from the operating system."),
    g("runtime.resident_bytes", "Resident set size of the process."),
    g("runtime.num_goroutines", "Tasks alive in the agent's async runtime."),
    g("runtime.num_threads", "Operating-system threads of the process."),
    g(
        "agent.telemetry.sink_dropped",
        "Metric lines the statsd, statsite or DogStatsD sinks dropped because their queue was full.",
    ),
    g("agent.uptime_seconds", "Seconds since the agent started."),
    c("agent.log.dropped_lines", "Log lines dropped because the output did not keep up."),
    // Legate's own: plugins, checks, watches, reloads.
    c("legate.plugin.calls", "Calls into a WASM plugin (labels plugin, kind)."),
    s("legate.plugin.duration", "Time of one plugin call, in ms (labels plugin, kind)."),
    c("legate.plugin.outcome", "Plugin calls by result (labels plugin, outcome: passing, warning, critical, error)."),
    c("legate.plugin.traps", "Plugin calls that trapped (label plugin)."),
    c("legate.plugin.timeouts", "Plugin calls stopped at their deadline (label plugin)."),
    c("legate.plugin.memory_limit", "Plugin calls that hit their memory cap (label plugin)."),
    c("legate.plugin.host_calls", "Host functions a plugin called (labels plugin, interface: http, net, kv, log)."),
    c("legate.plugin.cache.hit", "Plugins loaded from the compiled cache."),
    c("legate.plugin.cache.miss", "Plugins compiled because the cache had no entry."),
    c("legate.plugin.reloads", "Plugins loaded again because their file changed (label plugin)."),
    c("legate.plugin.registry.fetches", "Registry plugins fetched from the servers (label plugin)."),
    c("legate.plugin.registry.fetch_bytes", "Bytes of registry plugins fetched from the servers (label plugin)."),
    s("legate.plugin.registry.fetch_time", "Time to fetch a registry plugin from the servers, in ms (label plugin)."),
    c(
        "legate.plugin.registry.refused",
        "Registry plugins refused: not signed by a trusted key, or a digest mismatch (labels plugin, reason).",
    ),
    c("legate.plugin.backoffs", "Times a check waited before retrying a plugin that failed to load (label plugin)."),
    c("legate.check.runs", "Health check runs (label type)."),
    s("legate.check.duration", "Time of one health check run, in ms (label type)."),
    c("legate.check.status_changes", "Health checks that changed status (labels type, status)."),
    c("legate.watch.fires", "Watch handlers started (labels type, handler)."),
    s("legate.watch.handler.duration", "Time of one watch handler run, in ms (labels type, handler)."),
    c("legate.watch.failures", "Watch handler runs that failed (labels type, handler)."),
    c("legate.config.reload.count", "Configuration reloads that took effect."),
    c("legate.config.reload.failures", "Configuration reloads refused (the running configuration stayed)."),
    s("legate.config.reload.duration", "Time of one configuration reload, in ms."),
];

pub fn find(name: &str) -> Option<&'static Def> {
    DEFINITIONS.iter().find(|d| d.name == name)
}
