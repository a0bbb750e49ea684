//! What wakes the daemon's loop: the events its sources send (the long
//! poll, the file watcher, the control socket). A leaf: the sources and the
//! loop both depend on it, never on each other.

#[derive(Debug)]
pub enum Event {
    /// The server's journal moved past our cursor.
    Remote,
    /// Something changed on disk.
    Local,
    /// A control command.
    Control(Control),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Until resumed, or until a time (Unix milliseconds).
    Pause {
        until: Option<i64>,
    },
    Resume {
        confirm_deletes: bool,
    },
    /// The folders not to sync here.
    Excluded(Vec<ferry_shared::RelPath>),
}
