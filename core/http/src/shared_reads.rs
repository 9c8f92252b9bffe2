//! One read per wake-up for blocking queries that ask the same thing. A write wakes every query
//! blocked on its table; without this, ten thousand `consul watch`es or consul-templates on one
//! key or service each ran the same read. Queries with the same [`key`] (the path, every
//! parameter but `index` and `wait`, the token's accessor and the ACL tables' version when the
//! query came) share a [`Slot`]: the first waiter to wake at a table version reads and leaves
//! its result there, the others woken by the same version take a copy.
//!
//! A result read after the waiter saw table version `v` reflects every write up to `v`, so it
//! answers any waiter woken at `v` or before. Slots live as long as a query holds them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::Request;

/// A read's result, of the type its endpoint reads (a slot is only ever read by one endpoint:
/// the path is in its key).
type Stored = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
pub struct SharedReads {
    slots: Mutex<HashMap<String, Weak<Slot>>>,
}

#[derive(Default)]
pub struct Slot {
    /// The table version the stored result was read at, and the result.
    latest: Mutex<Option<(u64, Stored)>>,
}

/// What a blocking query's result depends on besides the store: everything that tells two
/// queries apart. Tokens with the same accessor hold the same policies unless the ACL tables
/// changed, and `acl_version` (the ACL tables' version when the query came) tells those apart.
pub fn key(req: &Request, acl_version: u64) -> String {
    let mut params: Vec<&(String, String)> =
        req.query.iter().filter(|(k, _)| !matches!(k.as_str(), "index" | "wait" | "token")).collect();
    params.sort();
    let mut key = format!("{}\0{acl_version}\0{}", req.authz.accessor, req.path);
    for (k, v) in params {
        key.push('\0');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

impl SharedReads {
    /// The slot of `key`, made if no query holds one.
    pub fn slot(&self, key: String) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(&key).and_then(Weak::upgrade) {
            return slot;
        }
        // Forget the slots no query holds once they are half the map.
        if slots.len() >= 64 && slots.len().is_power_of_two() {
            slots.retain(|_, s| s.strong_count() > 0);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key, Arc::downgrade(&slot));
        slot
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

impl Slot {
    /// The result for a waiter woken at table `version`: a copy of one read at `version` or
    /// later, else `read`'s (kept for the others).
    pub fn read<T, E>(&self, version: u64, read: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
    {
        if let Some((at, stored)) = self.latest.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if *at >= version {
                if let Some(r) = stored.downcast_ref::<T>() {
                    return Ok(r.clone());
                }
            }
        }
        let r = read()?;
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.as_ref().is_none_or(|(at, _)| *at < version) {
            *latest = Some((version, Arc::new(r.clone())));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_version_is_read_once_and_a_newer_one_again() {
        let slot = Slot::default();
        let reads = Cell::new(0);
        let read = |v: u32| {
            reads.set(reads.get() + 1);
            Ok::<_, ()>(v)
        };
        assert_eq!(slot.read(5, || read(1)), Ok(1));
        assert_eq!(slot.read(5, || read(2)), Ok(1));
        assert_eq!(slot.read(4, || read(3)), Ok(1), "an older wake-up takes the newer result");
        assert_eq!(slot.read(6, || read(4)), Ok(4));
        assert_eq!(reads.get(), 2);
        assert_eq!(slot.read(7, || Err::<u32, _>(())), Err(()), "errors are not kept");
        assert_eq!(slot.read(7, || read(5)), Ok(5));
    }

    #[test]
    fn the_key_tells_apart_what_changes_the_answer_and_nothing_else() {
        let req = |query: &[(&str, &str)], accessor: &str| {
            let query = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let mut r = Request::new(
                http::Method::GET,
                "health/service/web".into(),
                query,
                Default::default(),
                Default::default(),
                None,
            );
            let mut authz = legate_acl::Authz::disabled();
            authz.accessor = accessor.into();
            r.authz = Arc::new(authz);
            r
        };
        let base = key(&req(&[("passing", ""), ("index", "5"), ("wait", "1m")], "a"), 7);
        // The wait, the index reached and how the token was passed do not change the answer;
        // nor does the order of the parameters.
        assert_eq!(base, key(&req(&[("index", "9"), ("passing", "")], "a"), 7));
        assert_eq!(base, key(&req(&[("token", "s3cret"), ("passing", "")], "a"), 7));
        // Another token, another ACL version or another parameter do.
        assert_ne!(base, key(&req(&[("passing", "")], "b"), 7));
        assert_ne!(base, key(&req(&[("passing", "")], "a"), 8));
        assert_ne!(base, key(&req(&[("passing", ""), ("tag", "v1")], "a"), 7));
        assert_ne!(base, key(&req(&[], "a"), 7));
    }

    #[test]
    fn queries_share_a_slot_only_while_one_holds_it_and_by_what_they_ask() {
        let shared = SharedReads::default();
        let a = shared.slot("k".into());
        let b = shared.slot("k".into());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &shared.slot("other".into())));
        drop((a, b));
        for i in 0..200 {
            drop(shared.slot(format!("k{i}")));
        }
        assert!(shared.len() < 200, "slots no query holds are forgotten: {}", shared.len());
    }
}
