//! The ids the metadata store hands out, one type each, so a namespace can
//! never be passed where a user is meant (they are all `i64` in the tables
//! and on the wire; a value becomes one of these where it enters the server,
//! and `.0` again where it leaves).

use std::fmt;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl crate::meta::sql::db::Arg for $name {
            fn val(&self) -> crate::meta::sql::db::Val<'_> {
                crate::meta::sql::db::Val::Int(self.0)
            }
        }

        impl crate::meta::sql::db::FromCol for $name {
            fn from_col(v: crate::meta::sql::db::Val<'_>) -> Result<Self, String> {
                <i64 as crate::meta::sql::db::FromCol>::from_col(v).map($name)
            }
        }
    )*};
}

ids! {
    /// A user (an account).
    UserId;
    /// A device of a user (one per name it logged in with).
    DeviceId;
    /// A namespace: a user's root tree, or a shared folder's.
    NsId;
    /// A file or folder, the same through moves and edits.
    FileId;
    /// One revision of a file or folder (they ascend, per file).
    RevId;
    /// A position in a namespace's change journal (a cursor is one: the
    /// last sequence a device has seen).
    Seq;
    /// A shared folder.
    ShareId;
    /// A share link.
    LinkId;
    /// A pending-upload announcement.
    PendingId;
    /// A namespace's pending-upload sequence: it moves each time the
    /// announcements in the namespace change.
    PendingSeq;
}
