//! Change notification for blocking queries. A reader subscribes *before* it reads; every
//! applied batch that touches a table bumps that table's channel to the batch's index, which
//! wakes every subscriber to re-read and compare indexes (a wake-up is not a promise of change).
//! A snapshot restore bumps every table.

use tokio::sync::watch;

/// The logical tables blocking queries wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Kv,
    /// Nodes, services and checks together.
    Catalog,
    Sessions,
    /// ACL tokens, policies and roles.
    Acl,
    /// Network coordinates.
    Coordinates,
    /// The plugin registry.
    Plugins,
}

pub struct Watches {
    kv: watch::Sender<u64>,
    catalog: watch::Sender<u64>,
    sessions: watch::Sender<u64>,
    acl: watch::Sender<u64>,
    coordinates: watch::Sender<u64>,
    plugins: watch::Sender<u64>,
    /// Bumped by every snapshot restore: blocked queries return at once (Consul abandons
    /// every watch on restore).
    restores: watch::Sender<u64>,
}

impl Default for Watches {
    fn default() -> Self {
        Self::new()
    }
}

impl Watches {
    pub fn new() -> Self {
        Watches {
            kv: watch::channel(0).0,
            catalog: watch::channel(0).0,
            sessions: watch::channel(0).0,
            acl: watch::channel(0).0,
            coordinates: watch::channel(0).0,
            plugins: watch::channel(0).0,
            restores: watch::channel(0).0,
        }
    }

    fn sender(&self, table: Table) -> &watch::Sender<u64> {
        match table {
            Table::Kv => &self.kv,
            Table::Catalog => &self.catalog,
            Table::Sessions => &self.sessions,
            Table::Acl => &self.acl,
            Table::Coordinates => &self.coordinates,
            Table::Plugins => &self.plugins,
        }
    }

    /// The index of the newest write that touched `table` on this replica (0 until one has
    /// since start): a cheap change counter for caches.
    pub fn current(&self, table: Table) -> u64 {
        *self.sender(table).borrow()
    }

    pub fn subscribe(&self, table: Table) -> watch::Receiver<u64> {
        self.sender(table).subscribe()
    }

    pub fn notify(&self, table: Table, index: u64) {
        self.sender(table).send_replace(index);
    }

    /// Every blocking query holds one of these for as long as it waits.
    pub fn subscribe_restores(&self) -> watch::Receiver<u64> {
        self.restores.subscribe()
    }

    /// How many blocking queries are subscribed right now (each with `?index=` holds a restore
    /// receiver from before its first read until it answers): the `rpc.queries_blocking` gauge,
    /// and what a test waits for before the write that should wake one.
    pub fn blocked_queries(&self) -> usize {
        self.restores.receiver_count()
    }

    /// After a restore: every table may have changed, and every blocked query returns.
    pub fn notify_all(&self, index: u64) {
        self.notify(Table::Kv, index);
        self.notify(Table::Catalog, index);
        self.notify(Table::Sessions, index);
        self.notify(Table::Acl, index);
        self.notify(Table::Coordinates, index);
        self.notify(Table::Plugins, index);
        self.restores.send_modify(|n| *n += 1);
    }
}
