//! Table-level tests of the state store, through the `*_txn` functions the Raft state machine
//! calls (no HTTP): KV verbs, indexes and tombstones; locks and sessions (destroy, invalidation
//! by a critical check, lock-delays); the catalog and its per-service indexes; `/v1/txn`
//! all-or-nothing; the ACL tables; watches; and snapshot export/import.

use std::time::Duration;

use redb::WriteTransaction;

use crate::acl::{self, AclOp, Link, Policy, Role, Token};
use crate::catalog::{
    self, CatalogFail, CatalogOp, CatalogResult, CatalogVerb, Check, Deregister, Node, Register, Service,
};
use crate::kv::{self, KvFail, KvOp, KvResult, KvVerb, StoredEntry};
use crate::session::{self, Released, Session};
use crate::txn::{TxnOp, TxnOpResult};
use crate::watch::{Table, Watches};
use crate::{schema, snapshot, table_index_read, txn_ops, Store};

// ---- helpers ----

fn store() -> Store {
    Store::in_memory().unwrap()
}

/// Runs `f` in a write transaction and commits it.
fn write<T>(s: &Store, f: impl FnOnce(&WriteTransaction) -> T) -> T {
    let txn = s.write(false).unwrap();
    let out = f(&txn);
    txn.commit().unwrap();
    out
}

fn kv_apply(s: &Store, op: &KvOp, index: u64) -> Result<KvResult, KvFail> {
    write(s, |t| kv::apply_txn(t, op, index).unwrap())
}

fn set(key: &str, value: &str) -> KvOp {
    KvOp { value: value.as_bytes().to_vec(), ..KvOp::new(KvVerb::Set, key) }
}

fn cas(key: &str, value: &str, index: u64) -> KvOp {
    KvOp { verb: KvVerb::Cas, index, ..set(key, value) }
}

fn with_session(verb: KvVerb, key: &str, session: &str) -> KvOp {
    KvOp { session: Some(session.to_string()), ..KvOp::new(verb, key) }
}

/// The entry a successful write reports.
fn entry(r: Result<KvResult, KvFail>) -> StoredEntry {
    match r {
        Ok(KvResult::Entry { entry, .. }) => entry,
        other => panic!("expected an entry: {other:?}"),
    }
}

fn get(s: &Store, key: &str) -> Option<StoredEntry> {
    kv::get(&s.read().unwrap(), key).unwrap()
}

fn rel(keys: &[(&str, u64)]) -> Released {
    keys.iter().map(|(k, d)| (k.to_string(), *d)).collect()
}

fn node(name: &str) -> Node {
    Node { node: name.into(), address: "10.0.0.1".into(), ..Node::default() }
}

fn svc(id: &str, name: &str) -> Service {
    Service { id: id.into(), service: name.into(), ..Service::default() }
}

fn check(id: &str, service_id: &str, status: &str) -> Check {
    Check {
        check_id: id.into(),
        name: id.into(),
        service_id: service_id.into(),
        status: status.into(),
        ..Check::default()
    }
}

fn reg(node_name: &str, service: Option<Service>, checks: Vec<Check>) -> Register {
    Register { node: node(node_name), service, checks, skip_node_update: false }
}

/// Registers and commits; the locks it released on success.
fn register(s: &Store, r: &Register, index: u64) -> Result<Released, CatalogFail> {
    write(s, |t| {
        let mut released = Released::new();
        catalog::register_txn(t, r, index, &mut released).unwrap().map(|()| released)
    })
}

fn deregister(s: &Store, d: &Deregister, index: u64) -> Result<Released, CatalogFail> {
    write(s, |t| {
        let mut released = Released::new();
        catalog::deregister_txn(t, d, index, &mut released).unwrap().map(|()| released)
    })
}

fn new_session(id: &str, node: &str, behavior: &str, lock_delay: u64, checks: &[&str]) -> Session {
    Session {
        id: id.into(),
        node: node.into(),
        behavior: behavior.into(),
        lock_delay,
        node_checks: checks.iter().map(|c| c.to_string()).collect(),
        ..Session::default()
    }
}

fn create_session(s: &Store, sess: &Session, index: u64) -> Result<(), String> {
    write(s, |t| session::create_txn(t, sess, index).unwrap())
}

fn destroy(s: &Store, id: &str, index: u64) -> Released {
    write(s, |t| {
        let mut released = Released::new();
        session::destroy_txn(t, id, index, &mut released).unwrap();
        released
    })
}

/// Node `n1` (index 1) and session `s1` on it (index 2).
fn node_and_session(s: &Store, behavior: &str, lock_delay: u64) {
    register(s, &reg("n1", None, Vec::new()), 1).unwrap();
    create_session(s, &new_session("s1", "n1", behavior, lock_delay, &[]), 2).unwrap();
}

fn acl_apply(s: &Store, ops: &[AclOp], index: u64) -> Result<(), String> {
    write(s, |t| acl::apply_txn(t, ops, index).unwrap())
}

fn token(accessor: &str, secret: &str) -> Token {
    Token { accessor_id: accessor.into(), secret_id: secret.into(), description: "test".into(), ..Token::default() }
}

// ---- KV ----

#[test]
fn kv_set_keeps_create_index_and_moves_modify_index() {
    let s = store();
    let e = entry(kv_apply(&s, &KvOp { flags: 42, ..set("app/a", "one") }, 5));
    assert_eq!((e.create_index, e.modify_index, e.flags, e.lock_index), (5, 5, 42, 0));
    assert_eq!(get(&s, "app/a").unwrap().value, b"one");
    entry(kv_apply(&s, &set("app/a", "two"), 7));
    let got = get(&s, "app/a").unwrap();
    assert_eq!((got.create_index, got.modify_index, got.flags), (5, 7, 0), "flags are the write's");
    assert_eq!(got.value, b"two");
    assert_eq!(s.table_index(schema::IDX_KVS).unwrap(), 7);
    match kv_apply(&s, &KvOp::new(KvVerb::Get, "app/a"), 8) {
        Ok(KvResult::Entry { entry, with_value, .. }) => assert!(with_value && entry.modify_index == 7),
        other => panic!("{other:?}"),
    }
    let r = kv_apply(&s, &KvOp::new(KvVerb::Get, "missing"), 8);
    assert!(matches!(r, Err(KvFail::Refused(_))), "{r:?}");
    assert_eq!(s.table_index(schema::IDX_KVS).unwrap(), 7, "reads bump nothing");
}

#[test]
fn cas_needs_the_current_modify_index_and_zero_only_creates() {
    let s = store();
    kv_apply(&s, &set("k", "v1"), 3).unwrap();
    let r = kv_apply(&s, &cas("k", "v2", 2), 4);
    assert!(matches!(r, Err(KvFail::Refused(_))), "{r:?}");
    assert_eq!(get(&s, "k").unwrap().value, b"v1");
    let e = entry(kv_apply(&s, &cas("k", "v2", 3), 4));
    assert_eq!((e.create_index, e.modify_index), (3, 4));
    let r = kv_apply(&s, &cas("k", "v3", 0), 5);
    assert!(matches!(r, Err(KvFail::Refused(_))), "cas=0 on an existing key: {r:?}");
    assert_eq!(get(&s, "k").unwrap().value, b"v2");
    assert_eq!(s.table_index(schema::IDX_KVS).unwrap(), 4, "a refused write bumps nothing");
    let e = entry(kv_apply(&s, &cas("new", "x", 0), 6));
    assert_eq!((e.create_index, e.modify_index), (6, 6));
    assert!(matches!(kv_apply(&s, &cas("absent", "x", 6), 7), Err(KvFail::Refused(_))));
    let stale = KvOp { index: 5, ..KvOp::new(KvVerb::DeleteCas, "new") };
    assert!(matches!(kv_apply(&s, &stale, 8), Err(KvFail::Refused(_))));
    kv_apply(&s, &KvOp { index: 6, ..KvOp::new(KvVerb::DeleteCas, "new") }, 8).unwrap();
    assert!(get(&s, "new").is_none());
}

#[test]
fn delete_leaves_a_tombstone_so_the_prefix_index_never_goes_back() {
    let s = store();
    kv_apply(&s, &set("app/a", "1"), 10).unwrap();
    kv_apply(&s, &set("app/b", "2"), 11).unwrap();
    kv_apply(&s, &set("other", "3"), 12).unwrap();
    let pidx = |p: &str| {
        let r = s.read().unwrap();
        let es = kv::list(&r, p).unwrap();
        kv::prefix_index(&r, p, &es).unwrap()
    };
    assert_eq!(pidx("app/"), 11);
    kv_apply(&s, &KvOp::new(KvVerb::Delete, "app/b"), 13).unwrap();
    assert!(get(&s, "app/b").is_none());
    assert_eq!(pidx("app/"), 13, "the tombstone's index, not the surviving entry's 10");
    assert_eq!(pidx("other"), 12);
    assert_eq!(kv::table_index(&s.read().unwrap()).unwrap(), 13);
    assert_eq!(kv::oldest_tombstone(&s.read().unwrap()).unwrap(), Some(13));
    kv_apply(&s, &KvOp::new(KvVerb::Delete, "app/never"), 14).unwrap();
    assert_eq!(kv::table_index(&s.read().unwrap()).unwrap(), 13, "deleting an absent key changes nothing");
    assert_eq!(write(&s, |t| kv::reap_tombstones_txn(t, 12).unwrap()), 0);
    assert_eq!(write(&s, |t| kv::reap_tombstones_txn(t, 13).unwrap()), 1);
    assert_eq!(kv::oldest_tombstone(&s.read().unwrap()).unwrap(), None);
    assert_eq!(kv::table_index(&s.read().unwrap()).unwrap(), 13, "reaping keeps the table index");
    kv_apply(&s, &KvOp::new(KvVerb::Delete, "other"), 15).unwrap();
    kv_apply(&s, &set("other", "back"), 16).unwrap();
    assert_eq!(kv::oldest_tombstone(&s.read().unwrap()).unwrap(), None, "a set clears the key's tombstone");
    assert_eq!(get(&s, "other").unwrap().create_index, 16);
}

#[test]
fn delete_tree_removes_only_the_prefix() {
    let s = store();
    for (i, k) in ["t/1", "t/2", "t/sub/3", "u/1"].into_iter().enumerate() {
        kv_apply(&s, &set(k, "x"), i as u64 + 1).unwrap();
    }
    kv_apply(&s, &KvOp::new(KvVerb::DeleteTree, "t/"), 5).unwrap();
    let r = s.read().unwrap();
    assert!(kv::list(&r, "t/").unwrap().is_empty());
    let rest: Vec<String> = kv::list(&r, "").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(rest, ["u/1"]);
    assert_eq!(kv::prefix_index(&r, "t/", &[]).unwrap(), 5);
    assert_eq!(kv::prefix_index(&r, "u/", &kv::list(&r, "u/").unwrap()).unwrap(), 4);
}

#[test]
fn lock_is_exclusive_to_one_session_and_unlock_frees_it() {
    let s = store();
    node_and_session(&s, "release", 0);
    create_session(&s, &new_session("s2", "n1", "release", 0, &[]), 3).unwrap();
    let e = entry(kv_apply(&s, &with_session(KvVerb::Lock, "lk", "s1"), 4));
    assert_eq!((e.session.as_deref(), e.lock_index, e.create_index, e.modify_index), (Some("s1"), 1, 4, 4));
    let r = kv_apply(&s, &with_session(KvVerb::Lock, "lk", "s2"), 5);
    assert!(matches!(r, Err(KvFail::Refused(_))), "{r:?}");
    let e = get(&s, "lk").unwrap();
    assert_eq!((e.session.as_deref(), e.modify_index), (Some("s1"), 4));
    let e = entry(kv_apply(&s, &with_session(KvVerb::Lock, "lk", "s1"), 6));
    assert_eq!((e.lock_index, e.modify_index), (1, 6), "a re-acquire by the holder keeps lock_index");
    let r = kv_apply(&s, &with_session(KvVerb::Unlock, "lk", "s2"), 7);
    assert!(matches!(r, Err(KvFail::Refused(_))), "{r:?}");
    let e = entry(kv_apply(&s, &with_session(KvVerb::Unlock, "lk", "s1"), 8));
    assert_eq!((e.session, e.lock_index, e.modify_index), (None, 1, 8));
    let e = entry(kv_apply(&s, &with_session(KvVerb::Lock, "lk", "s2"), 9));
    assert_eq!((e.session.as_deref(), e.lock_index), (Some("s2"), 2));
    let r = kv_apply(&s, &KvOp::new(KvVerb::Lock, "lk2"), 10);
    assert!(matches!(r, Err(KvFail::Invalid(_))), "no session: {r:?}");
    let r = kv_apply(&s, &with_session(KvVerb::Lock, "lk2", "ghost"), 11);
    assert!(matches!(r, Err(KvFail::Invalid(_))), "unknown session: {r:?}");
    assert!(get(&s, "lk2").is_none());
}

// ---- sessions ----

#[test]
fn session_create_needs_a_registered_node_and_no_critical_check() {
    let s = store();
    let err = create_session(&s, &new_session("s1", "n1", "release", 0, &[]), 1).unwrap_err();
    assert!(err.contains("Missing node registration"), "{err}");
    register(&s, &reg("n1", None, vec![check("serfHealth", "", "critical")]), 2).unwrap();
    let err = create_session(&s, &new_session("s1", "n1", "release", 0, &["serfHealth"]), 3).unwrap_err();
    assert!(err.contains("critical"), "{err}");
    let err = create_session(&s, &new_session("s1", "n1", "release", 0, &["nope"]), 4).unwrap_err();
    assert!(err.contains("Missing check"), "{err}");
    assert!(session::list(&s.read().unwrap()).unwrap().is_empty());
    assert_eq!(s.table_index(schema::IDX_SESSIONS).unwrap(), 0);
    register(&s, &reg("n1", None, vec![check("serfHealth", "", "passing")]), 5).unwrap();
    create_session(&s, &new_session("s1", "n1", "release", 0, &["serfHealth"]), 6).unwrap();
    let got = session::get(&s.read().unwrap(), "s1").unwrap().unwrap();
    assert_eq!((got.node.as_str(), got.create_index, got.modify_index), ("n1", 6, 6));
    assert_eq!(got.node_checks, ["serfHealth"]);
    assert_eq!(s.table_index(schema::IDX_SESSIONS).unwrap(), 6);
}

#[test]
fn destroying_a_release_session_frees_its_locks_and_reports_the_lock_delay() {
    const DELAY: u64 = 15_000_000_000;
    let s = store();
    node_and_session(&s, "release", DELAY);
    entry(kv_apply(&s, &KvOp { value: b"va".to_vec(), ..with_session(KvVerb::Lock, "a", "s1") }, 3));
    entry(kv_apply(&s, &with_session(KvVerb::Lock, "b", "s1"), 4));
    kv_apply(&s, &set("c", "free"), 5).unwrap();
    let released = destroy(&s, "s1", 6);
    assert_eq!(released, rel(&[("a", DELAY), ("b", DELAY)]));
    let a = get(&s, "a").unwrap();
    assert_eq!((a.session, a.create_index, a.modify_index, a.lock_index), (None, 3, 6, 1));
    assert_eq!(a.value, b"va");
    assert_eq!(get(&s, "c").unwrap().modify_index, 5, "a key the session did not hold is untouched");
    assert!(session::get(&s.read().unwrap(), "s1").unwrap().is_none());
    s.lock_delays.arm(&released);
    assert!(s.lock_delays.active("a") && s.lock_delays.active("b"));
    assert!(!s.lock_delays.active("c"));
    assert!(destroy(&s, "s1", 7).is_empty(), "destroying an unknown session does nothing");
    assert_eq!(s.table_index(schema::IDX_SESSIONS).unwrap(), 6);
}

#[test]
fn destroying_a_delete_session_deletes_its_keys() {
    let s = store();
    node_and_session(&s, "delete", 0);
    entry(kv_apply(&s, &with_session(KvVerb::Lock, "svc/leader", "s1"), 3));
    kv_apply(&s, &set("svc/config", "x"), 4).unwrap();
    let released = destroy(&s, "s1", 5);
    assert_eq!(released, rel(&[("svc/leader", 0)]));
    let r = s.read().unwrap();
    assert!(kv::get(&r, "svc/leader").unwrap().is_none());
    assert!(kv::get(&r, "svc/config").unwrap().is_some());
    let es = kv::list(&r, "svc/").unwrap();
    assert_eq!(kv::prefix_index(&r, "svc/", &es).unwrap(), 5, "the delete left a tombstone");
    s.lock_delays.arm(&released);
    assert!(!s.lock_delays.active("svc/leader"), "a zero lock-delay arms nothing");
}

#[test]
fn a_check_turning_critical_invalidates_its_sessions_and_releases_their_locks() {
    let s = store();
    register(&s, &reg("n1", None, vec![check("alive", "", "passing")]), 1).unwrap();
    create_session(&s, &new_session("s1", "n1", "release", 1_000_000_000, &["alive"]), 2).unwrap();
    create_session(&s, &new_session("s2", "n1", "release", 0, &[]), 3).unwrap();
    assert_eq!(entry(kv_apply(&s, &with_session(KvVerb::Lock, "leader", "s1"), 4)).lock_index, 1);
    let released = register(&s, &reg("n1", None, vec![check("alive", "", "warning")]), 5).unwrap();
    assert!(released.is_empty(), "warning is not critical: {released:?}");
    assert!(session::get(&s.read().unwrap(), "s1").unwrap().is_some());
    let released = register(&s, &reg("n1", None, vec![check("alive", "", "critical")]), 6).unwrap();
    assert_eq!(released, rel(&[("leader", 1_000_000_000)]));
    let r = s.read().unwrap();
    assert!(session::get(&r, "s1").unwrap().is_none());
    assert!(session::get(&r, "s2").unwrap().is_some(), "a session not tied to the check survives");
    let e = kv::get(&r, "leader").unwrap().unwrap();
    assert_eq!((e.session, e.modify_index, e.lock_index), (None, 6, 1));
    drop(r);
    deregister(&s, &Deregister { node: "n1".into(), ..Deregister::default() }, 7).unwrap();
    assert!(session::list(&s.read().unwrap()).unwrap().is_empty(), "the node's removal ends its sessions");
}

// ---- catalog ----

#[test]
fn register_reads_back_through_node_service_and_check_queries() {
    let s = store();
    let web1 = Service { port: 8080, tags: vec!["v1".into()], ..svc("web1", "web") };
    register(&s, &reg("n1", Some(web1), vec![check("web-check", "web1", "passing")]), 10).unwrap();
    register(&s, &reg("n2", Some(svc("web2", "web")), Vec::new()), 11).unwrap();
    register(&s, &reg("n10", Some(svc("db10", "db")), Vec::new()), 12).unwrap();
    let r = s.read().unwrap();
    let n1 = catalog::node(&r, "n1").unwrap().unwrap();
    assert_eq!((n1.address.as_str(), n1.create_index), ("10.0.0.1", 10));
    let services = catalog::node_services(&r, "n1").unwrap();
    assert_eq!(services.len(), 1, "n10's services are not n1's: {services:?}");
    assert_eq!((services[0].id.as_str(), services[0].port, services[0].create_index), ("web1", 8080, 10));
    let instances = catalog::service_nodes(&r, "web").unwrap();
    let pairs: Vec<(&str, &str)> = instances.iter().map(|(n, sv)| (n.node.as_str(), sv.id.as_str())).collect();
    assert_eq!(pairs, [("n1", "web1"), ("n2", "web2")]);
    assert!(catalog::service_nodes(&r, "we").unwrap().is_empty(), "a name prefix is not a match");
    let checks = catalog::node_checks(&r, "n1").unwrap();
    assert_eq!(checks.len(), 1);
    let c = &checks[0];
    assert_eq!((c.node.as_str(), c.service_name.as_str(), c.status.as_str()), ("n1", "web", "passing"));
    assert_eq!(c.service_tags, ["v1"]);
    assert!(catalog::node_checks(&r, "n2").unwrap().is_empty());
}

#[test]
fn deregistering_a_service_removes_its_checks_only() {
    let s = store();
    let checks = vec![check("web-check", "web1", "passing"), check("node-check", "", "passing")];
    register(&s, &reg("n1", Some(svc("web1", "web")), checks), 1).unwrap();
    register(&s, &reg("n1", Some(svc("db1", "db")), vec![check("db-check", "db1", "passing")]), 2).unwrap();
    let d = Deregister { node: "n1".into(), service_id: Some("web1".into()), check_id: None };
    deregister(&s, &d, 3).unwrap();
    let r = s.read().unwrap();
    let ids: Vec<String> = catalog::node_services(&r, "n1").unwrap().into_iter().map(|sv| sv.id).collect();
    assert_eq!(ids, ["db1"]);
    let checks: Vec<String> = catalog::node_checks(&r, "n1").unwrap().into_iter().map(|c| c.check_id).collect();
    assert_eq!(checks, ["db-check", "node-check"]);
    assert!(catalog::service_nodes(&r, "web").unwrap().is_empty());
    assert_eq!(catalog::service_index(&r, "web").unwrap(), 3);
    assert_eq!(catalog::service_index(&r, "db").unwrap(), 2);
    assert_eq!(catalog::tables_index(&r, &[schema::IDX_CHECKS]).unwrap(), 3);
}

#[test]
fn service_index_moves_only_for_the_touched_service() {
    let s = store();
    register(&s, &reg("n1", Some(svc("web1", "web")), Vec::new()), 5).unwrap();
    register(&s, &reg("n1", Some(svc("db1", "db")), Vec::new()), 6).unwrap();
    let idx = |name: &str| catalog::service_index(&s.read().unwrap(), name).unwrap();
    assert_eq!((idx("web"), idx("db")), (5, 6));
    register(&s, &reg("n1", None, vec![check("db-check", "db1", "passing")]), 7).unwrap();
    assert_eq!((idx("web"), idx("db")), (5, 7));
    register(&s, &reg("n1", Some(Service { port: 80, ..svc("web1", "web") }), Vec::new()), 8).unwrap();
    assert_eq!((idx("web"), idx("db")), (8, 7));
    register(&s, &reg("n1", Some(Service { port: 80, ..svc("web1", "web") }), Vec::new()), 9).unwrap();
    assert_eq!(idx("web"), 8, "an unchanged re-registration bumps nothing");
    register(&s, &reg("n1", None, vec![check("serf", "", "passing")]), 10).unwrap();
    assert_eq!((idx("web"), idx("db")), (10, 10), "a node-level check concerns every service of the node");
    assert_eq!(idx("nope"), 10, "an unknown service falls back to the catalog's index");
}

#[test]
fn renaming_a_service_moves_its_instance_between_names() {
    let s = store();
    register(&s, &reg("n1", Some(svc("s1", "web")), vec![check("c", "s1", "passing")]), 1).unwrap();
    register(&s, &reg("n1", Some(svc("s1", "api")), Vec::new()), 2).unwrap();
    let r = s.read().unwrap();
    assert!(catalog::service_nodes(&r, "web").unwrap().is_empty());
    assert_eq!(catalog::service_nodes(&r, "api").unwrap().len(), 1);
    assert_eq!((catalog::service_index(&r, "web").unwrap(), catalog::service_index(&r, "api").unwrap()), (2, 2));
    assert_eq!(catalog::node_checks(&r, "n1").unwrap()[0].service_name, "api", "checks follow the name");
}

#[test]
fn a_node_name_cannot_change_its_id() {
    let s = store();
    let id = "8f2c1d3e-aaaa-bbbb-cccc-0123456789ab";
    register(&s, &Register { node: Node { id: id.into(), ..node("n1") }, ..Register::default() }, 1).unwrap();
    let other = Node { id: "9f2c1d3e-dddd-eeee-ffff-0123456789ab".into(), address: "10.0.0.9".into(), ..node("n1") };
    let err = register(&s, &Register { node: other, ..Register::default() }, 2).unwrap_err();
    assert!(err.0.contains("renaming Node ID"), "{err}");
    let n = catalog::node(&s.read().unwrap(), "n1").unwrap().unwrap();
    assert_eq!((n.id.as_str(), n.address.as_str(), n.modify_index), (id, "10.0.0.1", 1));
    let same = Node { id: id.to_uppercase(), address: "10.0.0.9".into(), ..node("n1") };
    register(&s, &Register { node: same, ..Register::default() }, 3).unwrap();
    assert_eq!(catalog::node(&s.read().unwrap(), "n1").unwrap().unwrap().modify_index, 3);
}

// ---- /v1/txn ----

#[test]
fn txn_ops_return_one_result_per_op_in_order() {
    let s = store();
    let ops = [
        TxnOp::Kv(set("x", "1")),
        TxnOp::Kv(KvOp::new(KvVerb::Get, "x")),
        TxnOp::Kv(KvOp::new(KvVerb::CheckNotExists, "y")),
        TxnOp::Catalog(CatalogOp::Node { verb: CatalogVerb::Set, node: node("n1") }),
    ];
    let (results, errors) = write(&s, |t| txn_ops(t, &ops, 9, &mut Released::new()).unwrap());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(results.len(), 4);
    match &results[1] {
        TxnOpResult::Kv(KvResult::Entry { key, entry, with_value: true }) => {
            assert_eq!(key, "x");
            assert_eq!((entry.value.as_slice(), entry.modify_index), (b"1".as_slice(), 9));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(results[2], TxnOpResult::Kv(KvResult::Nothing));
    match &results[3] {
        TxnOpResult::Catalog(CatalogResult::Node(n)) => assert_eq!((n.node.as_str(), n.create_index), ("n1", 9)),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&s, "x").unwrap().create_index, 9);
    assert!(catalog::node(&s.read().unwrap(), "n1").unwrap().is_some());
}

#[test]
fn txn_ops_report_failing_ops_and_an_abort_leaves_the_store_unchanged() {
    let s = store();
    kv_apply(&s, &set("x", "orig"), 1).unwrap();
    let ops = [
        TxnOp::Kv(set("x", "new")),
        TxnOp::Kv(set("z", "1")),
        TxnOp::Kv(KvOp { index: 99, ..KvOp::new(KvVerb::CheckIndex, "x") }),
        TxnOp::Catalog(CatalogOp::Service { verb: CatalogVerb::Set, node: "ghost".into(), service: svc("w", "web") }),
    ];
    let txn = s.write(false).unwrap();
    let (results, errors) = txn_ops(&txn, &ops, 5, &mut Released::new()).unwrap();
    assert_eq!(results.len(), 2);
    let failed: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, [2, 3], "{errors:?}");
    assert!(errors[0].1.contains("!= 99"), "{errors:?}");
    assert!(errors[1].1.contains("doesn't exist"), "{errors:?}");
    txn.abort().unwrap();
    let x = get(&s, "x").unwrap();
    assert_eq!((x.value.as_slice(), x.modify_index), (b"orig".as_slice(), 1));
    assert!(get(&s, "z").is_none());
    assert_eq!(s.table_index(schema::IDX_KVS).unwrap(), 1);
}

#[test]
fn an_aborted_txn_keeps_the_sessions_and_locks_its_ops_released() {
    let s = store();
    node_and_session(&s, "release", 5_000_000_000);
    entry(kv_apply(&s, &with_session(KvVerb::Lock, "held", "s1"), 3));
    let ops = [
        TxnOp::Catalog(CatalogOp::Node { verb: CatalogVerb::Delete, node: node("n1") }),
        TxnOp::Kv(KvOp { index: 99, ..KvOp::new(KvVerb::CheckIndex, "absent") }),
    ];
    let txn = s.write(false).unwrap();
    let mut released = Released::new();
    let (_, errors) = txn_ops(&txn, &ops, 4, &mut released).unwrap();
    assert_eq!(errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
    assert_eq!(released, rel(&[("held", 5_000_000_000)]), "inside the txn the node delete released the lock");
    txn.abort().unwrap();
    let r = s.read().unwrap();
    assert!(catalog::node(&r, "n1").unwrap().is_some());
    assert!(session::get(&r, "s1").unwrap().is_some());
    assert_eq!(kv::get(&r, "held").unwrap().unwrap().session.as_deref(), Some("s1"));
}

// ---- ACL ----

#[test]
fn acl_token_reads_by_accessor_and_secret_and_follows_a_new_secret() {
    let s = store();
    let t = Token { policies: vec![Link { id: "p1".into(), name: String::new() }], ..token("acc-1", "sec-1") };
    acl_apply(&s, &[AclOp::TokenSet(t)], 3).unwrap();
    let r = s.read().unwrap();
    let by_id = acl::token(&r, "acc-1").unwrap().unwrap();
    assert_eq!((by_id.secret_id.as_str(), by_id.create_index, by_id.modify_index), ("sec-1", 3, 3));
    assert_eq!(by_id.policies[0].id, "p1");
    assert_eq!(acl::token_by_secret(&r, "sec-1").unwrap(), Some(by_id));
    assert!(acl::token_by_secret(&r, "acc-1").unwrap().is_none(), "an accessor is not a secret");
    drop(r);
    acl_apply(&s, &[AclOp::TokenSet(token("acc-1", "sec-2"))], 4).unwrap();
    let r = s.read().unwrap();
    assert!(acl::token_by_secret(&r, "sec-1").unwrap().is_none(), "the old secret no longer resolves");
    let t = acl::token_by_secret(&r, "sec-2").unwrap().unwrap();
    assert_eq!((t.accessor_id.as_str(), t.create_index, t.modify_index), ("acc-1", 3, 4));
    drop(r);
    acl_apply(&s, &[AclOp::TokenDelete("acc-1".into())], 5).unwrap();
    let r = s.read().unwrap();
    assert!(acl::token(&r, "acc-1").unwrap().is_none());
    assert!(acl::token_by_secret(&r, "sec-2").unwrap().is_none());
    assert_eq!(table_index_read(&r, schema::IDX_ACL_TOKENS).unwrap(), 5);
}

#[test]
fn acl_policies_and_roles_read_back_by_id_and_name() {
    let s = store();
    let p = Policy { id: "p1".into(), name: "ops".into(), rules: "key_prefix \"\" {}".into(), ..Policy::default() };
    acl_apply(&s, &[AclOp::PolicySet(p.clone())], 2).unwrap();
    acl_apply(&s, &[AclOp::PolicySet(Policy { description: "changed".into(), ..p })], 3).unwrap();
    let links = vec![Link { id: "p1".into(), name: "ops".into() }];
    let role = Role { id: "r1".into(), name: "dev".into(), policies: links, ..Role::default() };
    acl_apply(&s, &[AclOp::RoleSet(role)], 4).unwrap();
    let r = s.read().unwrap();
    let got = acl::policy(&r, "p1").unwrap().unwrap();
    assert_eq!((got.description.as_str(), got.create_index, got.modify_index), ("changed", 2, 3));
    assert_eq!(acl::policy_by_name(&r, "ops").unwrap().map(|p| p.id), Some("p1".to_string()));
    assert!(acl::policy_by_name(&r, "p1").unwrap().is_none(), "names and IDs are distinct");
    let role = acl::role_by_name(&r, "dev").unwrap().unwrap();
    assert_eq!((role.id.as_str(), role.create_index, role.policies[0].id.as_str()), ("r1", 4, "p1"));
    assert_eq!(acl::role(&r, "r1").unwrap(), Some(role));
    drop(r);
    acl_apply(&s, &[AclOp::PolicyDelete("p1".into()), AclOp::RoleDelete("r1".into())], 5).unwrap();
    let r = s.read().unwrap();
    assert!(acl::policies(&r).unwrap().is_empty() && acl::roles(&r).unwrap().is_empty());
    assert_eq!(table_index_read(&r, schema::IDX_ACL_POLICIES).unwrap(), 5);
    assert_eq!(table_index_read(&r, schema::IDX_ACL_ROLES).unwrap(), 5);
}

#[test]
fn acl_bootstrap_happens_once_unless_reset_at_its_index() {
    let s = store();
    let boot =
        |accessor: &str, reset_index: Option<u64>| AclOp::Bootstrap { token: token(accessor, accessor), reset_index };
    acl_apply(&s, &[boot("root", None)], 7).unwrap();
    assert_eq!(acl::bootstrap_index(&s.read().unwrap()).unwrap(), Some(7));
    let err = acl_apply(&s, &[AclOp::TokenSet(token("other", "other-secret")), boot("root2", None)], 8).unwrap_err();
    assert!(err.contains("reset index: 7"), "{err}");
    let r = s.read().unwrap();
    assert!(acl::token(&r, "other").unwrap().is_none(), "a refused command writes none of its ops");
    assert!(acl::token(&r, "root2").unwrap().is_none());
    drop(r);
    assert!(acl_apply(&s, &[boot("root2", Some(3))], 9).is_err(), "a wrong reset index is refused");
    acl_apply(&s, &[boot("root2", Some(7))], 10).unwrap();
    let r = s.read().unwrap();
    assert_eq!(acl::bootstrap_index(&r).unwrap(), Some(10));
    assert!(acl::token_by_secret(&r, "root2").unwrap().is_some());
    assert!(acl::token(&r, "root").unwrap().is_some(), "a reset keeps the first token");
}

// ---- watches ----

#[tokio::test]
async fn notify_wakes_a_subscriber_of_that_table_only() {
    let w = Watches::new();
    let mut kv_rx = w.subscribe(Table::Kv);
    let catalog_rx = w.subscribe(Table::Catalog);
    assert_eq!(w.current(Table::Kv), 0);
    let waiter = tokio::spawn(async move {
        kv_rx.changed().await.unwrap();
        kv_rx
    });
    w.notify(Table::Kv, 12);
    let kv_rx = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
    assert_eq!(*kv_rx.borrow(), 12);
    assert_eq!(w.current(Table::Kv), 12);
    assert_eq!(w.current(Table::Catalog), 0);
    assert!(!catalog_rx.has_changed().unwrap());
}

#[test]
fn notify_all_bumps_every_table_and_the_restore_counter() {
    let w = Watches::new();
    let mut restores = w.subscribe_restores();
    let acl_rx = w.subscribe(Table::Acl);
    assert_eq!(w.blocked_queries(), 1);
    w.notify_all(30);
    assert!(restores.has_changed().unwrap());
    assert_eq!(*restores.borrow_and_update(), 1);
    for t in [Table::Kv, Table::Catalog, Table::Sessions, Table::Acl] {
        assert_eq!(w.current(t), 30, "{t:?}");
    }
    assert!(acl_rx.has_changed().unwrap());
    w.notify_all(31);
    assert_eq!(*restores.borrow(), 2);
    drop(restores);
    assert_eq!(w.blocked_queries(), 0);
}

// ---- snapshots ----

#[test]
fn snapshot_import_replaces_the_state_and_keeps_queries_working() {
    let a = store();
    register(&a, &reg("n1", Some(svc("web1", "web")), Vec::new()), 3).unwrap();
    kv_apply(&a, &set("k", "v"), 4).unwrap();
    kv_apply(&a, &set("gone", "x"), 5).unwrap();
    kv_apply(&a, &KvOp::new(KvVerb::Delete, "gone"), 6).unwrap();
    let data = snapshot::export(&a.read().unwrap()).unwrap();
    let b = store();
    kv_apply(&b, &set("stale", "x"), 1).unwrap();
    write(&b, |t| snapshot::import_txn(t, &data).unwrap());
    let r = b.read().unwrap();
    assert!(kv::get(&r, "stale").unwrap().is_none(), "import replaces, it does not merge");
    assert_eq!(kv::get(&r, "k").unwrap().unwrap().modify_index, 4);
    assert_eq!(kv::prefix_index(&r, "gone", &[]).unwrap(), 6, "tombstones travel");
    assert_eq!(catalog::service_nodes(&r, "web").unwrap().len(), 1);
    assert_eq!(catalog::service_index(&r, "web").unwrap(), 3);
}

// ---- plugin registry ----

mod plugins {
    use super::*;
    use crate::plugin::{self, PluginOp, PluginVersion, Signature, CHUNK_SIZE};

    /// A blob of `len` bytes and its (made-up but well-formed) digest.
    fn blob(len: usize, seed: u8) -> (Vec<u8>, String) {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        (bytes, format!("{:02x}", seed).repeat(32))
    }

    fn apply(s: &Store, op: &PluginOp, index: u64) -> Result<(), String> {
        write(s, |t| plugin::apply_txn(t, op, index).unwrap())
    }

    fn chunks(sha: &str, bytes: &[u8], at_unix: u64) -> Vec<PluginOp> {
        let size = bytes.len() as u64;
        let total = plugin::chunk_count(size);
        bytes
            .chunks(CHUNK_SIZE)
            .enumerate()
            .map(|(i, data)| PluginOp::Chunk {
                sha256: sha.to_string(),
                index: i as u32,
                total,
                size,
                at_unix,
                data: data.to_vec(),
            })
            .collect()
    }

    fn commit(name: &str, version: &str, sha: &str, size: u64) -> PluginOp {
        let v = PluginVersion {
            name: name.into(),
            version: version.into(),
            sha256: sha.into(),
            size,
            world: "check".into(),
            ..PluginVersion::default()
        };
        PluginOp::Commit { version_json: serde_json::to_string(&v).unwrap(), signatures: Vec::new() }
    }

    /// Uploads and commits `name@version` from index `at`; the index after.
    fn push(s: &Store, name: &str, version: &str, bytes: &[u8], sha: &str, at: u64) -> u64 {
        let mut i = at;
        for op in chunks(sha, bytes, 100) {
            apply(s, &op, i).unwrap();
            i += 1;
        }
        apply(s, &commit(name, version, sha, bytes.len() as u64), i).unwrap();
        i + 1
    }

    fn wasm_check(node_name: &str, id: &str, plugin_ref: &str) -> Register {
        let mut c = check(id, "", "passing");
        c.kind = "wasm".into();
        c.definition = serde_json::json!({"Wasm": {"Plugin": plugin_ref}}).to_string();
        reg(node_name, None, vec![c])
    }

    #[test]
    fn chunks_then_commit_and_the_blob_reads_back() {
        let s = store();
        let (bytes, sha) = blob(2 * CHUNK_SIZE + 10, 1);
        let ops = chunks(&sha, &bytes, 100);
        assert_eq!(ops.len(), 3);
        // A commit before every chunk is there is refused.
        apply(&s, &ops[0], 1).unwrap();
        apply(&s, &ops[2], 2).unwrap();
        let err = apply(&s, &commit("p", "1", &sha, bytes.len() as u64), 3).unwrap_err();
        assert!(err.contains("chunk 1") && err.contains("missing"), "{err}");
        assert!(plugin::versions(&s.read().unwrap()).unwrap().is_empty());
        // Chunks are not visible and move no index.
        assert_eq!(table_index_read(&s.read().unwrap(), schema::IDX_PLUGINS).unwrap(), 0);
        apply(&s, &ops[1], 4).unwrap();
        // Sent again (an unknown outcome): the same chunk is a no-op.
        apply(&s, &ops[1], 5).unwrap();
        apply(&s, &commit("p", "1", &sha, bytes.len() as u64), 6).unwrap();
        let r = s.read().unwrap();
        assert_eq!(plugin::assemble(&r, &sha).unwrap().unwrap(), bytes);
        assert_eq!(plugin::table_index(&r).unwrap(), 6);
        let v = plugin::resolve(&r, "p", Some("1")).unwrap().unwrap();
        assert_eq!((v.create_index, v.size), (6, bytes.len() as u64));
        // A commit sent again is a no-op; another digest under the same version is refused.
        drop(r);
        apply(&s, &commit("p", "1", &sha, bytes.len() as u64), 7).unwrap();
        assert_eq!(plugin::resolve(&s.read().unwrap(), "p", Some("1")).unwrap().unwrap().create_index, 6);
        let (other, other_sha) = blob(10, 2);
        for op in chunks(&other_sha, &other, 100) {
            apply(&s, &op, 8).unwrap();
        }
        let err = apply(&s, &commit("p", "1", &other_sha, 10), 9).unwrap_err();
        assert!(err.contains("already exists with another digest"), "{err}");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let s = store();
        let (bytes, sha) = blob(CHUNK_SIZE + 1, 3);
        let mut ops = chunks(&sha, &bytes, 0);
        if let PluginOp::Chunk { data, .. } = &mut ops[1] {
            data.push(0);
        }
        assert!(apply(&s, &ops[1], 1).unwrap_err().contains("expected"));
        let bad = PluginOp::Chunk { sha256: "xyz".into(), index: 0, total: 1, size: 1, at_unix: 0, data: vec![1] };
        assert!(apply(&s, &bad, 2).unwrap_err().contains("invalid digest"));
        let debug = format!("{:?}", ops[0]);
        assert!(debug.contains("data_len") && debug.len() < 300, "a chunk's bytes are never printed: {debug}");
    }

    #[test]
    fn latest_is_the_version_pushed_last() {
        let s = store();
        let (a, sha_a) = blob(100, 4);
        let (b, sha_b) = blob(200, 5);
        let i = push(&s, "p", "2.0.0", &a, &sha_a, 1);
        push(&s, "p", "1.9.0", &b, &sha_b, i);
        let r = s.read().unwrap();
        let latest = plugin::resolve(&r, "p", None).unwrap().unwrap();
        assert_eq!(latest.version, "1.9.0", "pushed last, whatever semver says");
        let infos = plugin::infos(&r).unwrap();
        assert_eq!(infos.iter().filter(|i| i.latest).map(|i| i.version.as_str()).collect::<Vec<_>>(), ["1.9.0"]);
        assert!(plugin::resolve(&r, "q", None).unwrap().is_none());
    }

    #[test]
    fn delete_is_refused_while_a_check_references_the_version() {
        let s = store();
        let (a, sha_a) = blob(100, 6);
        let (b, sha_b) = blob(100, 7);
        let mut i = push(&s, "p", "1", &a, &sha_a, 1);
        i = push(&s, "p", "2", &b, &sha_b, i);
        register(&s, &wasm_check("n1", "pinned", "registry:p@1"), i).unwrap();
        register(&s, &wasm_check("n2", "latest", "registry:p"), i + 1).unwrap();
        i += 2;
        let err = apply(&s, &PluginOp::Delete { name: "p".into(), version: "1".into() }, i).unwrap_err();
        assert!(err.contains("n1/pinned") && !err.contains("n2/latest"), "{err}");
        let err = apply(&s, &PluginOp::Delete { name: "p".into(), version: "2".into() }, i + 1).unwrap_err();
        assert!(err.contains("n2/latest"), "{err}");
        let refs = plugin::infos(&s.read().unwrap()).unwrap();
        let runs_on: Vec<_> = refs.iter().map(|p| (p.version.as_str(), p.runs_on.len())).collect();
        assert_eq!(runs_on, [("1", 1), ("2", 1)]);
        // Once the pinned check is gone, version 1 goes, and its blob with it.
        deregister(
            &s,
            &Deregister { node: "n1".into(), check_id: Some("pinned".into()), ..Deregister::default() },
            i + 2,
        )
        .unwrap();
        apply(&s, &PluginOp::Delete { name: "p".into(), version: "1".into() }, i + 3).unwrap();
        let r = s.read().unwrap();
        assert!(plugin::blob(&r, &sha_a).unwrap().is_none(), "the blob goes with its last version");
        assert!(plugin::chunk(&r, &sha_a, 0).unwrap().is_none());
        assert!(plugin::blob(&r, &sha_b).unwrap().is_some());
        assert_eq!(plugin::table_index(&r).unwrap(), i + 3);
        drop(r);
        // Deleting what is gone is a no-op (a delete sent again).
        apply(&s, &PluginOp::Delete { name: "p".into(), version: "1".into() }, i + 4).unwrap();
    }

    #[test]
    fn a_blob_under_two_versions_stays_until_both_go_and_digest_references_hold_the_last() {
        let s = store();
        let (a, sha) = blob(100, 8);
        let mut i = push(&s, "p", "1", &a, &sha, 1);
        i = push(&s, "p", "1-again", &a, &sha, i);
        register(&s, &wasm_check("n1", "by-digest", &format!("sha256:{sha}")), i).unwrap();
        apply(&s, &PluginOp::Delete { name: "p".into(), version: "1".into() }, i + 1).unwrap();
        assert!(plugin::blob(&s.read().unwrap(), &sha).unwrap().is_some());
        let err = apply(&s, &PluginOp::Delete { name: "p".into(), version: "1-again".into() }, i + 2).unwrap_err();
        assert!(err.contains("n1/by-digest"), "{err}");
    }

    #[test]
    fn signatures_merge_and_dead_uploads_are_reaped() {
        let s = store();
        let (a, sha) = blob(10, 9);
        let i = push(&s, "p", "1", &a, &sha, 1);
        let sig = Signature { public_key: "cGs=".into(), signature: "c2ln".into() };
        apply(&s, &PluginOp::Sign { sha256: sha.clone(), signature: sig.clone() }, i).unwrap();
        apply(&s, &PluginOp::Sign { sha256: sha.clone(), signature: sig.clone() }, i + 1).unwrap();
        assert_eq!(plugin::blob(&s.read().unwrap(), &sha).unwrap().unwrap().signatures, vec![sig]);
        // An upload that stopped between chunks: reaped; a committed blob is not.
        let (b, sha_b) = blob(CHUNK_SIZE + 5, 10);
        apply(&s, &chunks(&sha_b, &b, 7)[0], i + 2).unwrap();
        apply(&s, &PluginOp::Reap { sha256: sha.clone() }, i + 3).unwrap();
        apply(&s, &PluginOp::Reap { sha256: sha_b.clone() }, i + 4).unwrap();
        let r = s.read().unwrap();
        assert!(plugin::blob(&r, &sha).unwrap().is_some());
        assert!(plugin::blob(&r, &sha_b).unwrap().is_none());
        assert!(plugin::chunk(&r, &sha_b, 0).unwrap().is_none());
    }

    #[test]
    fn snapshots_carry_the_registry() {
        let a = store();
        let (bytes, sha) = blob(CHUNK_SIZE + 3, 11);
        push(&a, "p", "1", &bytes, &sha, 1);
        let data = snapshot::export(&a.read().unwrap()).unwrap();
        let b = store();
        write(&b, |t| snapshot::import_txn(t, &data).unwrap());
        let r = b.read().unwrap();
        assert_eq!(plugin::assemble(&r, &sha).unwrap().unwrap(), bytes);
        assert_eq!(plugin::resolve(&r, "p", None).unwrap().unwrap().version, "1");
    }
}

/// KV values are encoded as bytes: the same bincode as the plain `Vec<u8>` earlier versions
/// wrote, so their stores, Raft logs and snapshots still decode (and the other way round).
/// bincode writes a struct as the tuple of its fields, so the earlier encodings are those of
/// tuples holding the value as a `Vec<u8>`.
#[test]
fn kv_values_keep_the_bincode_of_earlier_versions() {
    let value: Vec<u8> = (0..=255).chain(0..7).collect();
    let session = Some("s".to_string());
    let entry = StoredEntry {
        create_index: 3,
        modify_index: 9,
        lock_index: 1,
        flags: 42,
        session: session.clone(),
        value: value.clone(),
    };
    let earlier = bincode::serialize(&(3u64, 9u64, 1u64, 42u64, &session, &value)).unwrap();
    assert_eq!(bincode::serialize(&entry).unwrap(), earlier);
    assert_eq!(bincode::deserialize::<StoredEntry>(&earlier).unwrap(), entry);

    let op = KvOp { value: value.clone(), flags: 5, index: 7, session: None, ..KvOp::new(KvVerb::Cas, "a/b") };
    let earlier = bincode::serialize(&(KvVerb::Cas, "a/b", &value, 5u64, 7u64, None::<String>)).unwrap();
    assert_eq!(bincode::serialize(&op).unwrap(), earlier);
    assert_eq!(bincode::deserialize::<KvOp>(&earlier).unwrap(), op);
}
