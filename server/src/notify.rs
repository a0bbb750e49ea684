//! Change notifications for long polls.
//!
//! A commit publishes its namespace's new journal sequence number; long polls
//! wait on a `watch` channel per namespace, so a wake-up costs no database
//! query and idle polls cost only a parked task. [`Notifier`] is the seam for
//! several server nodes later (PostgreSQL LISTEN/NOTIFY feeding `publish`).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

pub struct Notifier {
    namespaces: Mutex<HashMap<i64, watch::Sender<i64>>>,
    shutdown: watch::Sender<bool>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier { namespaces: Mutex::new(HashMap::new()), shutdown: watch::channel(false).0 }
    }
}

impl Notifier {
    /// Records that namespace `ns` reached journal sequence `seq` and wakes its waiters.
    pub fn publish(&self, ns: i64, seq: i64) {
        let map = self.namespaces.lock().expect("notifier poisoned");
        if let Some(tx) = map.get(&ns) {
            tx.send_if_modified(|cur| {
                if seq > *cur {
                    *cur = seq;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// A receiver that changes whenever `ns` gets a new sequence number.
    /// Subscribe before reading the current cursor, so no wake-up is missed.
    pub fn subscribe(&self, ns: i64) -> watch::Receiver<i64> {
        let mut map = self.namespaces.lock().expect("notifier poisoned");
        // Drop channels nobody waits on any more, so the map stays small.
        if map.len() > 1024 {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        map.entry(ns).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Releases every long poll (graceful shutdown).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
