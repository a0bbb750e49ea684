//! Wake-ups for long polls and for block waits.
//!
//! A commit publishes its namespaces' new journal sequence numbers, an
//! announced or dropped pending upload the namespace's pending-upload
//! sequence (see [`crate::stores::Stores`], which publishes after the write
//! is durable); long polls wait on a `watch` channel per namespace, so a
//! wake-up costs no database query and idle polls cost only a parked task.
//! Stored blocks bump a counter per account, which a download waiting for a
//! block that is still being uploaded watches.
//!
//! [`Notifier`] is the seam: [`local::LocalNotifier`] wakes the waiters of
//! this process; a notifier for several server nodes feeds the same
//! channels from the database.

use tokio::sync::watch;

use crate::meta::{NsId, PendingSeq, Seq, Touched, UserId};

pub mod local;

pub use local::LocalNotifier;

/// What a namespace's watchers see: `(journal sequence, pending-upload sequence)`.
pub type NsState = (i64, i64);

pub trait Notifier: Send + Sync + 'static {
    /// Records that namespace `ns` reached journal sequence `seq` and wakes its waiters.
    fn publish(&self, ns: NsId, seq: Seq);
    /// Records that namespace `ns`'s pending uploads reached sequence `seq`.
    fn publish_pending(&self, ns: NsId, seq: PendingSeq);
    /// A receiver that changes whenever `ns` gets a new journal or
    /// pending-upload sequence number. Subscribe before reading the current
    /// state, so no wake-up is missed.
    fn subscribe(&self, ns: NsId) -> watch::Receiver<NsState>;
    /// Records that the account `user` stored blocks.
    fn blocks_stored(&self, user: UserId);
    /// A receiver that changes whenever the account `user` stores blocks.
    fn subscribe_blocks(&self, user: UserId) -> watch::Receiver<u64>;
    /// Releases every long poll (graceful shutdown).
    fn shutdown(&self);
    fn shutdown_signal(&self) -> watch::Receiver<bool>;

    /// Publishes every journal and pending-upload sequence a write reached.
    fn publish_all(&self, touched: &Touched) {
        for (ns, seq) in &touched.journals {
            self.publish(*ns, *seq);
        }
        for (ns, seq) in &touched.pendings {
            self.publish_pending(*ns, *seq);
        }
    }
}
