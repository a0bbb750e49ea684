//! The notifier of one process: a `watch` channel per namespace and per
//! account, made when the first waiter subscribes.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::{Notifier, NsState};
use crate::meta::{NsId, PendingSeq, Seq, UserId};

pub struct LocalNotifier {
    namespaces: Mutex<HashMap<NsId, watch::Sender<NsState>>>,
    /// Blocks stored, per account.
    blocks: Mutex<HashMap<UserId, watch::Sender<u64>>>,
    shutdown: watch::Sender<bool>,
}

impl Default for LocalNotifier {
    fn default() -> Self {
        LocalNotifier {
            namespaces: Mutex::new(HashMap::new()),
            blocks: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        }
    }
}

/// Drops channels nobody waits on any more, so a map stays small.
fn prune<K, T>(map: &mut HashMap<K, watch::Sender<T>>) {
    if map.len() > 1024 {
        map.retain(|_, tx| tx.receiver_count() > 0);
    }
}

impl LocalNotifier {
    fn update_ns(&self, ns: NsId, f: impl FnOnce(&mut NsState) -> bool) {
        let map = self.namespaces.lock().expect("notifier poisoned");
        if let Some(tx) = map.get(&ns) {
            tx.send_if_modified(f);
        }
    }
}

impl Notifier for LocalNotifier {
    fn publish(&self, ns: NsId, seq: Seq) {
        self.update_ns(ns, |cur| (seq.0 > cur.0).then(|| cur.0 = seq.0).is_some());
    }

    fn publish_pending(&self, ns: NsId, seq: PendingSeq) {
        self.update_ns(ns, |cur| (seq.0 > cur.1).then(|| cur.1 = seq.0).is_some());
    }

    fn subscribe(&self, ns: NsId) -> watch::Receiver<NsState> {
        let mut map = self.namespaces.lock().expect("notifier poisoned");
        prune(&mut map);
        map.entry(ns).or_insert_with(|| watch::channel((0, 0)).0).subscribe()
    }

    fn blocks_stored(&self, user: UserId) {
        let map = self.blocks.lock().expect("notifier poisoned");
        if let Some(tx) = map.get(&user) {
            tx.send_modify(|n| *n += 1);
        }
    }

    fn subscribe_blocks(&self, user: UserId) -> watch::Receiver<u64> {
        let mut map = self.blocks.lock().expect("notifier poisoned");
        prune(&mut map);
        map.entry(user).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
