//! Makes the state store's applies durable off the write path. Applies commit with redb's
//! `Durability::None` (the Raft log replays them after a crash); every so often the state
//! machine asks for a durable point, and this thread makes one: an empty write transaction
//! committed with `Durability::Immediate`, which writes and fsyncs everything committed before
//! it. The write that asked has been answered by then, and the next write's log append runs
//! beside the fsync.
//!
//! A durable point falls between apply batches, never inside one: a batch that splits a
//! transaction off into a commit of its own holds [`Flusher::batch`] across both.
//!
//! A failed durable commit is kept and handed to the next apply, which fails with it (as a
//! failed commit on the apply path would): the state machine stops rather than run on a store
//! it cannot make durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use legate_state::Store;

pub(super) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Held by an apply batch, and by the durable commit.
    batch: Mutex<()>,
    wake: Condvar,
    /// A durable commit is asked for or under way (it holds redb's write lock meanwhile).
    busy: AtomicBool,
}

#[derive(Default)]
struct State {
    requested: bool,
    closed: bool,
    failed: Option<String>,
}

impl Flusher {
    pub(super) fn start(store: Store) -> Flusher {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            batch: Mutex::new(()),
            wake: Condvar::new(),
            busy: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("state-flusher".into())
            .spawn(move || run(&store, &s))
            .expect("spawning the state store's flusher thread");
        Flusher { shared, thread: Some(thread) }
    }

    /// Asks for a durable point covering every commit made before this call.
    pub(super) fn request(&self) {
        let mut st = self.shared.lock();
        st.requested = true;
        self.shared.busy.store(true, Ordering::Release);
        drop(st);
        self.shared.wake.notify_one();
    }

    /// Whether a durable commit is asked for or running: a write transaction begun now waits
    /// for it.
    pub(super) fn busy(&self) -> bool {
        self.shared.busy.load(Ordering::Acquire)
    }

    /// Held while an apply batch commits: no durable point falls inside it.
    pub(super) fn batch(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error of a durable commit that failed, if one did.
    pub(super) fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn run(store: &Store, shared: &Shared) {
    loop {
        let closed = {
            let mut st = shared.lock();
            while !st.requested && !st.closed {
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.requested = false;
            st.closed
        };
        // At close, one last durable point: a clean stop replays nothing.
        let result = {
            let _batch = shared.batch.lock().unwrap_or_else(|p| p.into_inner());
            store.write(true).and_then(|txn| Ok(txn.commit()?))
        };
        let mut st = shared.lock();
        if !st.requested {
            shared.busy.store(false, Ordering::Release);
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "the state store's durable commit failed");
            st.failed.get_or_insert_with(|| e.to_string());
        }
        if closed {
            return;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
