//! The fuzz targets: each takes arbitrary bytes and runs them through one of Legate's parsers
//! or decoders the way untrusted input reaches it. An error is the expected answer to garbage;
//! a panic, a hang or an allocation blow-up is a bug. `fuzz/fuzz_targets/<name>.rs` runs each
//! under libFuzzer (`scripts/fuzz.sh`, nightly); `tests/replay.rs` feeds every committed corpus
//! and regression input through them in the normal test suite.

use serde_json::{json, Value};

/// A target: bytes in, nothing out (a panic is the finding).
pub type Target = fn(&[u8]);

/// Every target by name, as the corpus directories are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("go_duration", go_duration),
    ("query", query),
    ("filter", filter),
    ("acl_rules", acl_rules),
    ("config", config),
    ("dns_query", dns_query),
    ("gossip", gossip),
    ("rpc_frame", rpc_frame),
    ("snapshot", snapshot),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Go durations (`10s`, `1h2m`, `-1.5us`) as check intervals, TTLs and `?wait=` give them.
pub fn go_duration(data: &[u8]) {
    let s = text(data);
    let _ = legate_types::duration::parse_go_duration(&s);
    let _ = s.parse::<legate_types::duration::GoDuration>();
}

/// A request's raw query string and path.
pub fn query(data: &[u8]) {
    let s = text(data);
    let _ = legate_http::parse_query(&s);
    let _ = legate_http::decode_path(&s);
}

/// `?filter=` expressions, evaluated over entries shaped like the catalog's.
pub fn filter(data: &[u8]) {
    let items: Vec<Value> = vec![
        json!({"Node": "n1", "Service": {"Service": "web", "Tags": ["v1", "primary"], "Meta": {"env": "prod"}, "Port": 80}}),
        json!({"Node": "n2", "Checks": [{"Status": "passing"}], "Weights": {"Passing": 1}, "Empty": null}),
    ];
    let _ = legate_filter::apply(Some(&text(data)), items);
}

/// ACL rules, HCL and legacy.
pub fn acl_rules(data: &[u8]) {
    let s = text(data);
    for legacy in [false, true] {
        if let Ok(rules) = legate_acl::Rules::parse(&s, legacy) {
            let authz = legate_acl::Authz::compile("fuzz", [&rules], false);
            let _ = authz;
        }
    }
}

/// A config file: the first byte picks JSON, HCL or TOML; the rest is the text, parsed and
/// decoded into the agent's config as a file would be.
pub fn config(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let format = ["json", "hcl", "toml"][pick as usize % 3];
    if let Ok(map) = legate_config::load::parse_text("fuzz", &text(rest), format) {
        let _ = serde_json::from_value::<legate_config::Config>(Value::Object(map));
    }
}

/// A DNS query as it arrives on the wire: decoded, and every question's name sorted into
/// Legate's name forms (services, nodes, addresses, reverse lookups).
pub fn dns_query(data: &[u8]) {
    let Ok(msg) = hickory_proto::op::Message::from_vec(data) else { return };
    for q in &msg.queries {
        let lower = q.name().to_ascii().to_ascii_lowercase();
        let labels: Vec<&str> = lower.trim_end_matches('.').split('.').filter(|l| !l.is_empty()).collect();
        let _ = legate_dns::name::parse(&labels);
        let _ = legate_dns::name::addr_of_arpa(&labels);
        if let Some(first) = labels.first() {
            let _ = legate_dns::name::addr_of_hex(first);
        }
    }
}

/// A gossip datagram: as received by a pool without encryption, by one with a key (mostly
/// refused by the AEAD), and the same bytes sealed by a peer holding the key (what is inside a
/// datagram that passes the AEAD).
pub fn gossip(data: &[u8]) {
    let key = vec![7u8; 32];
    let keys = std::slice::from_ref(&key);
    let _ = legate_gossip::fuzz::datagram(&[], data);
    let _ = legate_gossip::fuzz::datagram(keys, data);
    if let Some(inner) = data.get(1..) {
        if let Ok(sealed) = legate_gossip::fuzz::seal(keys, inner) {
            let _ = legate_gossip::fuzz::datagram(keys, &sealed);
        }
    }
}

/// One RPC frame's bytes as the server RPC port decodes them.
pub fn rpc_frame(data: &[u8]) {
    let _ = legate_raft::rpc::decode_request(data);
}

/// A snapshot archive (`/v1/snapshot` PUT, `legate snapshot restore`): unpacked and, when it
/// unpacks, imported into an empty store.
pub fn snapshot(data: &[u8]) {
    let Ok((_, state)) = legate_state::snapshot::unarchive(data) else { return };
    let Ok(store) = legate_state::Store::in_memory() else { return };
    if let Ok(txn) = store.write(false) {
        if legate_state::snapshot::import_txn(&txn, &state).is_ok() {
            let _ = txn.commit();
        }
    }
}
