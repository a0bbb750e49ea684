//! Change notifications for long polls and for block waits.
//!
//! A commit publishes its namespace's new journal sequence number, an
//! announced or dropped pending upload the namespace's pending-upload
//! sequence; long polls wait on a `watch` channel per namespace, so a
//! wake-up costs no database query and idle polls cost only a parked task.
//! Stored blocks bump a counter per account, which a download waiting for a
//! block that is still being uploaded watches. [`Notifier`] is the seam for
//! several server nodes later (PostgreSQL LISTEN/NOTIFY feeding `publish`).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// What a namespace's watchers see: `(journal sequence, pending-upload sequence)`.
pub type NsState = (i64, i64);

pub struct Notifier {
    namespaces: Mutex<HashMap<i64, watch::Sender<NsState>>>,
    /// Blocks stored, per account.
    blocks: Mutex<HashMap<i64, watch::Sender<u64>>>,
    shutdown: watch::Sender<bool>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            namespaces: Mutex::new(HashMap::new()),
            blocks: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        }
    }
}

/// Drops channels nobody waits on any more, so a map stays small.
fn prune<T>(map: &mut HashMap<i64, watch::Sender<T>>) {
    if map.len() > 1024 {
        map.retain(|_, tx| tx.receiver_count() > 0);
    }
}

impl Notifier {
    /// Records that namespace `ns` reached journal sequence `seq` and wakes its waiters.
    pub fn publish(&self, ns: i64, seq: i64) {
        self.update(ns, |cur| (seq > cur.0).then(|| cur.0 = seq).is_some());
    }

    /// Records that namespace `ns`'s pending uploads reached sequence `seq`.
    pub fn publish_pending(&self, ns: i64, seq: i64) {
        self.update(ns, |cur| (seq > cur.1).then(|| cur.1 = seq).is_some());
    }

    /// Publishes every journal and pending-upload sequence a write reached.
    pub fn publish_all(&self, touched: &crate::store::Touched) {
        for (ns, seq) in &touched.journals {
            self.publish(*ns, *seq);
        }
        for (ns, seq) in &touched.pendings {
            self.publish_pending(*ns, *seq);
        }
    }

    fn update(&self, ns: i64, f: impl FnOnce(&mut NsState) -> bool) {
        let map = self.namespaces.lock().expect("notifier poisoned");
        if let Some(tx) = map.get(&ns) {
            tx.send_if_modified(f);
        }
    }

    /// A receiver that changes whenever `ns` gets a new journal or
    /// pending-upload sequence number. Subscribe before reading the current
    /// state, so no wake-up is missed.
    pub fn subscribe(&self, ns: i64) -> watch::Receiver<NsState> {
        let mut map = self.namespaces.lock().expect("notifier poisoned");
        prune(&mut map);
        map.entry(ns).or_insert_with(|| watch::channel((0, 0)).0).subscribe()
    }

    /// Records that the account `user` stored blocks.
    pub fn blocks_stored(&self, user: i64) {
        let map = self.blocks.lock().expect("notifier poisoned");
        if let Some(tx) = map.get(&user) {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// A receiver that changes whenever the account `user` stores blocks.
    pub fn subscribe_blocks(&self, user: i64) -> watch::Receiver<u64> {
        let mut map = self.blocks.lock().expect("notifier poisoned");
        prune(&mut map);
        map.entry(user).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Releases every long poll (graceful shutdown).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
