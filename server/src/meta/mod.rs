//! Metadata store: users, devices, tokens, namespaces, files, immutable file
//! versions, block ownership, the change journal and upload sessions.
//!
//! [`MetaStore`] is the seam; [`sqlite::SqliteStore`] is
//! the embedded default. Methods are blocking (call them from
//! `spawn_blocking`); every write is one ACID transaction, and concurrent
//! writes share one fsync (group commit, see `sqlite`).

use ferry_shared::BlockId;
use ferry_shared::api::{ChangesResponse, CommitOp, Entry, PendingAnnounce, PendingList, Revision};
use ferry_shared::path::RelPath;

use crate::blocks::BlockLoc;
use crate::error::Result;

pub use ids::{DeviceId, FileId, LinkId, NsId, PendingId, PendingSeq, RevId, Seq, ShareId, UserId};

mod ids;
pub mod postgres;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
mod tests;

/// Who is calling: resolved from a bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// The user's root namespace.
    pub ns: NsId,
    /// The device's name when the token was checked (what the versions it
    /// makes show; empty for a device that is gone).
    pub device: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub id: UserId,
    pub name: String,
    pub quota: u64,
    /// Bytes of the user's files (heads).
    pub used: u64,
    /// Bytes of blocks the user uploaded that no commit has used yet
    /// (they count against the quota until one does, or they expire).
    pub uploaded: u64,
}

/// A block the server itself chunked and stored (web uploads): recorded as
/// owned by the account in the same transaction as the commit that uses it.
#[derive(Debug, Clone)]
pub struct NewBlock {
    pub id: BlockId,
    pub size: u32,
    pub stored_size: u32,
    pub loc: BlockLoc,
}

/// A file revision with its block list, for downloads.
#[derive(Debug, Clone)]
pub struct FileVersion {
    pub entry: Entry,
    pub blocks: Vec<(BlockId, u32)>,
}

/// A resumable upload in progress.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub id: String,
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub path: RelPath,
    pub size: u64,
    pub received: u64,
    pub mtime: Option<i64>,
    pub parent_rev: Option<RevId>,
    pub expires: i64,
    /// The revision the upload made, once it is complete.
    pub done: Option<Entry>,
}

/// Outcome of a commit batch: one result per operation, and the journals
/// it appended to.
pub struct CommitOutcome {
    pub results: Vec<Result<Entry>>,
    pub touched: Touched,
}

/// The root namespaces a write reached: their new journal sequences (every
/// member of a share sees its changes in their own journal) and pending-upload
/// sequences, for the long polls to wake.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub journals: std::collections::BTreeMap<NsId, Seq>,
    pub pendings: std::collections::BTreeMap<NsId, PendingSeq>,
}

impl Touched {
    pub fn journal(&mut self, ns: NsId, seq: Seq) {
        let e = self.journals.entry(ns).or_insert(seq);
        *e = (*e).max(seq);
    }

    pub fn pending(&mut self, ns: NsId, seq: PendingSeq) {
        let e = self.pendings.entry(ns).or_insert(seq);
        *e = (*e).max(seq);
    }
}

/// The whole metadata store, as the server uses it: one trait per part,
/// each implemented by a module of its own in a backend (see `sqlite/`).
pub trait MetaStore:
    Accounts + BlockRecords + Files + Journal + Links + PendingUploads + Shares + UploadSessions
{
}

impl<T: Accounts + BlockRecords + Files + Journal + Links + PendingUploads + Shares + UploadSessions> MetaStore for T {}

/// Folders shared with other users: each is a namespace of its own,
/// mounted in every member's tree (see `sqlite::shares`).
pub trait Shares: Send + Sync + 'static {
    /// Shares the caller's folder at `path` with user `with` (a member
    /// already: their role changes). The folder stays where it is for the
    /// caller and appears at the top of `with`'s tree.
    fn share(
        &self,
        caller: &Caller,
        path: &RelPath,
        with: &str,
        role: ferry_shared::api::ShareRole,
    ) -> Result<(ferry_shared::api::Share, Touched)>;
    fn set_role(
        &self,
        caller: &Caller,
        id: ShareId,
        user: &str,
        role: ferry_shared::api::ShareRole,
    ) -> Result<(ferry_shared::api::Share, Touched)>;
    /// Removes `user` (`None`: everyone but the owner) from share `id`: the
    /// owner revokes, a member leaves by naming themselves.
    fn remove_member(&self, caller: &Caller, id: ShareId, user: Option<&str>) -> Result<Touched>;
    /// The shares the caller is in, with their members.
    fn shares(&self, caller: &Caller) -> Result<Vec<ferry_shared::api::Share>>;
}

/// Users, their devices and tokens, quotas.
pub trait Accounts: Send + Sync + 'static {
    // Users (administration).
    fn add_user(&self, name: &str, password_hash: &str, quota: u64) -> Result<UserId>;
    fn list_users(&self) -> Result<Vec<UserInfo>>;
    fn set_password(&self, name: &str, password_hash: &str) -> Result<()>;
    fn set_quota(&self, name: &str, quota: u64) -> Result<()>;
    /// Removes a user with their devices, tokens and metadata.
    fn remove_user(&self, name: &str) -> Result<()>;
    /// `(user id, password hash)` of a user.
    fn password_hash(&self, name: &str) -> Result<Option<(UserId, String)>>;

    // Devices and tokens.
    /// Records a login: the device (reused by name) and a token hash. Returns the device id.
    fn create_token(&self, user_id: UserId, device_name: &str, token_hash: [u8; 32]) -> Result<DeviceId>;
    fn authenticate(&self, token_hash: [u8; 32]) -> Result<Option<Caller>>;
    fn revoke_token(&self, token_hash: [u8; 32]) -> Result<()>;
    fn user_info(&self, user_id: UserId) -> Result<UserInfo>;
}

/// Where blocks are stored and which accounts own them.
pub trait BlockRecords: Send + Sync + 'static {
    /// The ids among `ids` this account does not own (input order, no duplicates).
    fn missing_blocks(&self, user_id: UserId, ids: &[BlockId]) -> Result<Vec<BlockId>>;
    /// True when some account already stored this block (server-wide).
    fn block_stored(&self, id: &BlockId) -> Result<bool> {
        Ok(self.block_location(id)?.is_some())
    }
    /// Where a block is stored, if it is (server-wide).
    fn block_location(&self, id: &BlockId) -> Result<Option<BlockLoc>>;
    /// Where a block the account owns is stored; `None` if it does not own it.
    fn owned_block_location(&self, user_id: UserId, id: &BlockId) -> Result<Option<BlockLoc>> {
        Ok(self.owned_block_locations(user_id, std::slice::from_ref(id))?.pop().flatten().map(|(loc, _)| loc))
    }
    /// [`BlockRecords::owned_block_location`] of each of `ids`, in order, in
    /// one read, with the size of each as stored (its frame's payload).
    fn owned_block_locations(&self, user_id: UserId, ids: &[BlockId]) -> Result<Vec<Option<(BlockLoc, u32)>>>;
    /// Records blocks as stored and owned by the account. Blocks new to it
    /// count against its quota as uploaded until a commit uses them (or
    /// they expire): past the quota, 507 and nothing is recorded.
    fn add_blocks(&self, user_id: UserId, blocks: &[NewBlock]) -> Result<()>;
    /// Bytes the account may still upload: its quota less its files and
    /// its uploaded blocks no commit has used yet.
    fn upload_room(&self, user_id: UserId) -> Result<u64>;
    /// Forgets the blocks accounts uploaded before `before` (Unix ms) that
    /// no commit used: they no longer count against quotas, and the
    /// accounts no longer own them. Returns how many.
    fn expire_uploaded_blocks(&self, before: i64) -> Result<u64>;
    fn owns_block(&self, user_id: UserId, id: &BlockId) -> Result<bool> {
        Ok(self.owned_block_location(user_id, id)?.is_some())
    }
}

/// The file tree: commits and the reads of files and their history.
pub trait Files: Send + Sync + 'static {
    fn commit(&self, caller: &Caller, ops: Vec<CommitOp>, new_blocks: Vec<NewBlock>) -> Result<CommitOutcome>;
    /// The live file at `path` (or, with `rev`, that revision of the file that
    /// is or was at `path`).
    fn file_version(&self, ns: NsId, path: &RelPath, rev: Option<RevId>) -> Result<FileVersion>;
    fn revisions(&self, ns: NsId, path: &RelPath, limit: u32) -> Result<Vec<Revision>>;
    /// The live entries of the folder at `path` (the root too), by name.
    fn list_folder(&self, ns: NsId, path: &RelPath) -> Result<Vec<Entry>>;
    /// What was deleted in the caller's own tree, most recently deleted
    /// first (see `sqlite::trash`).
    fn trash(&self, ns: NsId, limit: u32) -> Result<Vec<ferry_shared::api::TrashItem>>;
    /// Brings back the item deleted at `path` of the caller's own tree, a
    /// folder with what was deleted inside it along with it; one result.
    fn restore_deleted(&self, caller: &Caller, path: &RelPath) -> Result<CommitOutcome>;
}

/// A share link as stored, with where its item is now.
#[derive(Debug, Clone)]
pub struct LinkRecord {
    pub id: LinkId,
    pub token: String,
    pub owner: UserId,
    pub ns: NsId,
    pub file: FileId,
    pub kind: ferry_shared::api::EntryKind,
    /// The item's path now, in its namespace; `None` once it is deleted (or
    /// its maker left the shared folder it is in).
    pub path: Option<RelPath>,
    /// Where the user it was listed for sees it.
    pub shown: Option<RelPath>,
    /// Its maker's name, when the link was listed for someone else (the
    /// owner of the shared folder it is in).
    pub by: Option<String>,
    pub created: i64,
    pub expires: Option<i64>,
    pub pw_hash: Option<String>,
}

/// Read-only share links.
pub trait Links: Send + Sync + 'static {
    /// A link to the live item at `path` of the caller's namespace.
    fn create_link(
        &self,
        caller: &Caller,
        path: &RelPath,
        token: &str,
        expires: Option<i64>,
        pw_hash: Option<String>,
    ) -> Result<LinkRecord>;
    /// The links a user made, and those others made into shared folders
    /// the user owns, oldest first.
    fn links(&self, user: UserId) -> Result<Vec<LinkRecord>>;
    fn link(&self, token: &str) -> Result<Option<LinkRecord>>;
    /// Revokes a link the user made, or one into a shared folder they own
    /// (404 if there is no such link).
    fn revoke_link(&self, user: UserId, id: LinkId) -> Result<()>;
    /// Whether a link in namespace `ns` reaches `path` of it: a link never
    /// passes through a shared folder its maker may only view (the maker
    /// is the owner of `ns`; see `sqlite::links`).
    fn link_reaches(&self, ns: NsId, path: &RelPath) -> Result<bool>;
}

/// The change journal of each namespace.
pub trait Journal: Send + Sync + 'static {
    fn cursor(&self, ns: NsId) -> Result<Seq>;
    /// `(journal sequence, pending-upload sequence)` of a namespace, read together.
    fn poll_state(&self, ns: NsId) -> Result<(Seq, PendingSeq)>;
    /// Journal records after `cursor`, oldest first. With `edits`, a file
    /// modification's block list comes as an edit of its previous revision's
    /// list where that is shorter (see `ferry_shared::api::Change::blocks_edit`).
    fn changes(&self, ns: NsId, cursor: Seq, limit: u32, edits: bool) -> Result<ChangesResponse>;
    /// Up to `limit` journal records before `before` (the newest without
    /// it), newest first, with who made each and when.
    fn activity(&self, ns: NsId, before: Option<Seq>, limit: u32) -> Result<Vec<ferry_shared::api::ActivityEvent>>;
}

/// Pending uploads (`ferry_shared::api::PendingAnnounce`): files whose
/// blocks are being sent, which other devices may fetch meanwhile.
pub trait PendingUploads: Send + Sync + 'static {
    /// Records (or replaces, by device and path) an announcement; returns its
    /// id and the namespace's new pending-upload sequence.
    fn announce_pending(&self, caller: &Caller, a: PendingAnnounce, expires: i64) -> Result<(PendingId, PendingSeq)>;
    /// Drops the caller device's announcement `id` (not found: 404), or all
    /// of them; returns the new pending-upload sequence if any went.
    fn drop_pending(&self, caller: &Caller, id: Option<PendingId>) -> Result<Option<PendingSeq>>;
    /// The announcements of a namespace that have not expired at `now`,
    /// but those of device `except`.
    fn pending_uploads(&self, ns: NsId, except: DeviceId, now: i64) -> Result<PendingList>;
    /// Removes expired announcements; returns `(namespace, new sequence)` of each changed one.
    fn sweep_pending(&self, now: i64) -> Result<Vec<(NsId, PendingSeq)>>;
}

/// Resumable upload sessions.
pub trait UploadSessions: Send + Sync + 'static {
    fn create_upload(&self, session: &UploadSession) -> Result<()>;
    fn upload(&self, id: &str) -> Result<Option<UploadSession>>;
    fn set_upload_received(&self, id: &str, received: u64) -> Result<()>;
    /// Marks a session complete with the revision it made; it keeps
    /// answering status queries with it until it expires.
    fn finish_upload(&self, id: &str, entry: &Entry) -> Result<()>;
    fn delete_upload(&self, id: &str) -> Result<()>;
    /// Ids of sessions that expired before `now_ms`.
    fn expired_uploads(&self, now_ms: i64) -> Result<Vec<String>>;
    /// `(open sessions, their total size)` of a user: unfinished ones that
    /// have not expired at `now_ms` (their bytes take disk space too).
    fn staged_uploads(&self, user_id: UserId, now_ms: i64) -> Result<(u64, u64)>;
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Refuses a cursor the journal cannot continue from: negative, or past its
/// head (a server restored from an older backup, a cursor of another
/// server). Accepting it would let a device wait for changes it has missed.
pub fn check_cursor(cursor: Seq, head: Seq) -> Result<()> {
    use crate::error::Error;
    use ferry_shared::api::ErrorCode;
    if cursor.0 < 0 {
        return Err(Error::bad_request("cursor must be 0 or a cursor this server gave"));
    }
    if cursor > head {
        return Err(Error::client(
            ErrorCode::CursorReset,
            format!(
                "cursor {cursor} is past the end of this server's journal ({head}): \
                 list from cursor 0 again and merge with what you hold"
            ),
        ));
    }
    Ok(())
}
