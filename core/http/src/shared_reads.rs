//! One read, and one serialized answer, per wake-up for blocking queries that ask the same
//! thing. A write wakes every query blocked on its table; without this, ten thousand `consul
//! watch`es or consul-templates on one key or service each ran the same read and serialized the
//! same answer. Queries with the same [`key`] (the path, every parameter but `index` and `wait`,
//! the token's accessor and the ACL tables' version when the query came) share a [`Slot`]: the
//! first waiter to wake at a table version reads and leaves its [`Shared`] result there, the
//! others woken by the same version take it; the first of them to answer from it builds and
//! serializes the response, which the others send as it is (one buffer, counted references).
//!
//! A result read after the waiter saw table version `v` reflects every write up to `v`, so it
//! answers any waiter woken at `v` or before. Slots live as long as a query holds them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use super::{ApiError, ApiResponse, Request};

/// The slots, each a `Slot<T>` of the type its endpoint reads (a slot is only ever read by one
/// endpoint: the path is in its key).
#[derive(Default)]
pub struct SharedReads {
    slots: Mutex<HashMap<String, Weak<dyn Any + Send + Sync>>>,
}

pub struct Slot<T> {
    /// The latest shared read.
    latest: Mutex<Option<Arc<Shared<T>>>>,
}

/// One read's result, and the response made from it once one waiter answered with it.
pub struct Shared<T> {
    /// The table version the result was read at.
    version: u64,
    /// The result's index.
    pub index: u64,
    pub result: T,
    /// Whether the read dropped entries the token may not see.
    filtered: bool,
    response: Mutex<Option<Answer>>,
}

/// A response built from a shared result, its body serialized.
struct Answer {
    response: ApiResponse,
    pretty: bool,
    /// Whether building it dropped entries the token may not see.
    filtered: bool,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedReads {
    /// The slot of `key`, made if no query holds one.
    pub fn slot<T: Send + Sync + 'static>(&self, key: String) -> Arc<Slot<T>> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(&key).and_then(Weak::upgrade).and_then(|s| s.downcast::<Slot<T>>().ok()) {
            return slot;
        }
        // Forget the slots no query holds once they are half the map.
        if slots.len() >= 64 && slots.len().is_power_of_two() {
            slots.retain(|_, s| s.strong_count() > 0);
        }
        let slot = Arc::new(Slot { latest: Mutex::new(None) });
        let any: Arc<dyn Any + Send + Sync> = slot.clone();
        slots.insert(key, Arc::downgrade(&any));
        slot
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.slots).len()
    }
}

impl<T> Slot<T> {
    /// The result for a waiter woken at table `version`: one read at `version` or later, else
    /// `read`'s, kept for the others. `req` is marked filtered as the read marked it.
    pub fn read<E>(
        &self,
        version: u64,
        req: &Request,
        read: impl FnOnce() -> Result<(u64, T), E>,
    ) -> Result<Arc<Shared<T>>, E> {
        if let Some(shared) = lock(&self.latest).as_ref() {
            if shared.version >= version {
                req.filtered.store(shared.filtered, Relaxed);
                return Ok(shared.clone());
            }
        }
        req.filtered.store(false, Relaxed);
        let (index, result) = read()?;
        let shared = Arc::new(Shared {
            version,
            index,
            result,
            filtered: req.filtered.load(Relaxed),
            response: Mutex::new(None),
        });
        let mut latest = lock(&self.latest);
        if latest.as_ref().is_none_or(|l| l.version < version) {
            *latest = Some(shared.clone());
        }
        Ok(shared)
    }
}

impl<T> Shared<T> {
    /// The response made from this result by `make`, its body serialized (`pretty` as the
    /// request asked): built by the first waiter that answers with it, sent as it is by the
    /// others. Errors are not kept.
    pub fn respond(
        &self,
        req: &Request,
        pretty: bool,
        make: impl FnOnce() -> Result<ApiResponse, ApiError>,
    ) -> Result<ApiResponse, ApiError> {
        let mut answer = lock(&self.response);
        if let Some(a) = answer.as_ref().filter(|a| a.pretty == pretty) {
            if let Some(response) = a.response.try_clone() {
                req.filtered.store(a.filtered, Relaxed);
                return Ok(response);
            }
        }
        let response = make()?.serialized(pretty);
        if let Some(copy) = response.try_clone() {
            *answer = Some(Answer { response: copy, pretty, filtered: req.filtered.load(Relaxed) });
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn request(query: &[(&str, &str)], accessor: &str) -> Request {
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
    }

    #[test]
    fn a_version_is_read_once_and_a_newer_one_again() {
        let slot: Slot<u32> = Slot { latest: Mutex::new(None) };
        let req = request(&[], "a");
        let reads = Cell::new(0);
        let read = |v: u32| {
            reads.set(reads.get() + 1);
            Ok::<_, ()>((u64::from(v) * 10, v))
        };
        let got = |r: Result<Arc<Shared<u32>>, ()>| r.map(|s| (s.index, s.result));
        assert_eq!(got(slot.read(5, &req, || read(1))), Ok((10, 1)));
        assert_eq!(got(slot.read(5, &req, || read(2))), Ok((10, 1)));
        assert_eq!(got(slot.read(4, &req, || read(3))), Ok((10, 1)), "an older wake-up takes the newer result");
        assert_eq!(got(slot.read(6, &req, || read(4))), Ok((40, 4)));
        assert_eq!(reads.get(), 2);
        assert_eq!(got(slot.read(7, &req, || Err(()))), Err(()), "errors are not kept");
        assert_eq!(got(slot.read(7, &req, || read(5))), Ok((50, 5)));
    }

    #[test]
    fn the_filtered_mark_goes_with_the_shared_read_and_answer() {
        let slot: Slot<u32> = Slot { latest: Mutex::new(None) };
        let first = request(&[], "a");
        first.filtered.store(true, Relaxed);
        // The first waiter's read drops nothing: a mark from its earlier read does not stay.
        let shared = slot.read(1, &first, || Ok::<_, ()>((1, 1))).unwrap();
        assert!(!first.filtered.load(Relaxed));
        // Building the answer drops an entry: the mark is kept with the answer.
        let make = || {
            first.filtered.store(true, Relaxed);
            Ok(ApiResponse::json(&vec!["a"]))
        };
        shared.respond(&first, false, make).unwrap();
        let second = request(&[], "a");
        let shared = slot.read(1, &second, || Ok::<_, ()>((2, 2))).unwrap();
        assert!(!second.filtered.load(Relaxed));
        shared.respond(&second, false, || panic!("the answer is built once")).unwrap();
        assert!(second.filtered.load(Relaxed), "the second waiter's answer is marked as the first's");
    }

    #[test]
    fn an_answer_is_built_and_serialized_once_and_shared() {
        let slot: Slot<Vec<u32>> = Slot { latest: Mutex::new(None) };
        let req = request(&[], "a");
        let shared = slot.read(3, &req, || Ok::<_, ()>((3, vec![1, 2]))).unwrap();
        let builds = Cell::new(0);
        let make = || {
            builds.set(builds.get() + 1);
            Ok(ApiResponse::json(&shared.result).header("X-Test", "1"))
        };
        let body = |r: ApiResponse| match r.body {
            crate::response::Body::Raw { content_type, data } => (content_type, data),
            other => panic!("not serialized: {other:?}"),
        };
        let (ct, a) = body(shared.respond(&req, false, make).unwrap());
        assert_eq!((ct, &a[..]), ("application/json", &b"[1,2]"[..]));
        let again = shared.respond(&req, false, make).unwrap();
        assert_eq!(again.headers, vec![("X-Test", std::borrow::Cow::Borrowed("1"))]);
        let (_, b) = body(again);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same buffer, not a copy");
        assert_eq!(builds.get(), 1);
        // Pretty is serialized apart (the dev flag is not in the key).
        let (_, p) = body(shared.respond(&req, true, make).unwrap());
        assert_eq!(&p[..], b"[\n    1,\n    2\n]\n");
        assert_eq!(builds.get(), 2);
        // A failed build is not kept.
        let failing = || Err(ApiError::Internal("boom".into()));
        let fresh = slot.read(4, &req, || Ok::<_, ()>((4, vec![3]))).unwrap();
        assert!(fresh.respond(&req, false, failing).is_err());
        let (_, c) = body(fresh.respond(&req, false, || Ok(ApiResponse::json(&fresh.result))).unwrap());
        assert_eq!(&c[..], b"[3]");
    }

    #[test]
    fn the_key_tells_apart_what_changes_the_answer_and_nothing_else() {
        let req = request;
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
        let a = shared.slot::<u32>("k".into());
        let b = shared.slot::<u32>("k".into());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &shared.slot::<u32>("other".into())));
        drop((a, b));
        for i in 0..200 {
            drop(shared.slot::<u32>(format!("k{i}")));
        }
        assert!(shared.len() < 200, "slots no query holds are forgotten: {}", shared.len());
    }
}
