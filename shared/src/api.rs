//! Wire types: the JSON bodies of every request and response, and the error
//! codes. Every type here is a protocol contract (see
//! [`crate::PROTOCOL_VERSION`]); add optional fields rather than changing
//! existing ones.

use serde::{Deserialize, Serialize};

use crate::block::BlockId;
use crate::path::RelPath;

macro_rules! wire {
    ($($item:item)*) => {
        $(
            #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
            #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
            $item
        )*
    };
}

/// Id of a file or folder; stable across moves and renames.
pub type FileId = i64;
/// Id of one immutable revision of a file or folder.
pub type RevId = i64;
/// Position in a namespace's change journal.
pub type Cursor = i64;

/// Stable, machine-readable error codes (`error.code` in every error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidPath,
    Unauthorized,
    Forbidden,
    NotFound,
    /// The named parent revision is not the head any more (or the name is taken).
    Conflict,
    /// A folder is not empty.
    NotEmpty,
    /// A commit names a block the account has not uploaded.
    MissingBlocks,
    /// A block's content does not match its id.
    BadBlock,
    LengthRequired,
    PayloadTooLarge,
    RangeNotSatisfiable,
    QuotaExceeded,
    TooManyRequests,
    Internal,
    Unavailable,
    /// The method is not one this endpoint takes (the `Allow` header lists them).
    MethodNotAllowed,
    /// An `If-Match` / `If-Unmodified-Since` precondition failed: the file
    /// changed since the caller last saw it.
    PreconditionFailed,
    /// The body's `Content-Type` is not one this endpoint reads.
    UnsupportedMediaType,
    /// The cursor is past the end of the journal (a server restored from an
    /// older backup, or a cursor from another server): list from 0 again and
    /// merge with what is held, deleting nothing.
    CursorReset,
    /// Shared folders do not nest: a shared folder (or a folder holding
    /// one) cannot go into a shared folder, nor can a folder inside one be
    /// shared.
    NestedShare,
    /// The request's body arrived too slowly and was cut off.
    RequestTimeout,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidPath | ErrorCode::BadBlock | ErrorCode::MissingBlocks => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::NotEmpty | ErrorCode::CursorReset | ErrorCode::NestedShare => 409,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::LengthRequired => 411,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::QuotaExceeded => 507,
        }
    }
}

wire! {
    /// Body of every 4xx/5xx answer.
    pub struct ErrorBody {
        pub error: ErrorDetail,
    }

    pub struct ErrorDetail {
        pub code: ErrorCode,
        pub message: String,
        /// For `conflict`: the current head of the path, if there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub head: Option<Entry>,
        /// For `missing_blocks`: the blocks the account must upload first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub missing: Vec<BlockId>,
    }

    pub struct LoginRequest {
        #[cfg_attr(feature = "openapi", schema(max_length = 200))]
        pub username: String,
        pub password: String,
        /// This device's name, shown in history (1 to 200 characters, not only spaces).
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
        pub device_name: String,
    }

    pub struct LoginResponse {
        pub token: String,
        pub user_id: i64,
        pub device_id: i64,
    }

    /// Which of these blocks does my account lack?
    pub struct MissingBlocksRequest {
        pub ids: Vec<BlockId>,
    }

    pub struct MissingBlocksResponse {
        pub missing: Vec<BlockId>,
    }

    /// The current state of a file or folder.
    pub struct Entry {
        pub id: FileId,
        pub path: RelPath,
        pub kind: EntryKind,
        /// Head revision.
        pub rev: RevId,
        pub size: u64,
        /// Modification time given by the client, Unix milliseconds.
        pub mtime: i64,
        pub executable: bool,
        /// Content hash (see `ferry_shared::block::content_hash`); empty for folders.
        pub hash: String,
        pub deleted: bool,
        /// Server time of the revision, Unix milliseconds.
        pub modified: i64,
        /// Device that made the revision.
        pub device: String,
        /// Set on a shared folder's place in a member's tree (its mount):
        /// which share, the member's role and the owner.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub share: Option<Mount>,
    }

    /// A shared folder as mounted in one member's tree.
    pub struct Mount {
        /// The share's id (`/shares/{id}`).
        pub id: i64,
        pub role: ShareRole,
        /// The user who owns it (its bytes count against their quota).
        pub owner: String,
    }

    /// Shares a folder with another user (`POST /shares`); sharing it with
    /// someone already a member changes their role.
    pub struct ShareRequest {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::path::NonRootPath))]
        pub path: RelPath,
        /// The user to share with.
        #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
        pub with: String,
        #[serde(default = "MemberRole::editor")]
        pub role: MemberRole,
    }

    /// A new role for a member (`PUT /shares/{id}/members/{user}`).
    pub struct RoleRequest {
        pub role: MemberRole,
    }

    /// A shared folder, as one member sees it.
    pub struct Share {
        pub id: i64,
        /// Where it is in the caller's tree.
        pub path: RelPath,
        pub owner: String,
        /// The caller's role.
        pub role: ShareRole,
        /// Everyone in it, the owner first.
        pub members: Vec<Member>,
    }

    pub struct Member {
        pub user: String,
        pub role: ShareRole,
    }

    pub struct ShareList {
        pub shares: Vec<Share>,
    }

    /// A batch of operations; each is checked and answered on its own, in order.
    pub struct CommitRequest {
        #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
        pub ops: Vec<CommitOp>,
    }

    pub struct CommitResponse {
        pub results: Vec<OpResult>,
    }

    /// Outcome of one operation: `entry` on success, `error` otherwise.
    pub struct OpResult {
        pub status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub entry: Option<Entry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<ErrorDetail>,
    }

    /// A new file's block list, either in full or as an edit of the parent
    /// revision's list (what keeps a one-byte change of a big file small).
    #[serde(rename_all = "snake_case")]
    pub enum BlockList {
        Full(Vec<BlockId>),
        Edit(Vec<BlockEdit>),
    }

    #[serde(rename_all = "snake_case")]
    pub enum BlockEdit {
        /// Blocks `[start, start + count)` of the parent revision.
        Copy {
            #[cfg_attr(feature = "openapi", schema(value_type = u64, maximum = 4294967295_u64))]
            start: u32,
            #[cfg_attr(feature = "openapi", schema(value_type = u64, maximum = 4294967295_u64))]
            count: u32,
        },
        /// New blocks, in order.
        Add(Vec<BlockId>),
    }

    /// One operation of a commit. `parent_rev` is the revision the client based
    /// the change on; it must still be the head, else the answer is 409 with
    /// the current head. `None` means "the path must not exist" (a new file).
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum CommitOp {
        Put {
            path: RelPath,
            parent_rev: Option<RevId>,
            #[cfg_attr(feature = "openapi", schema(maximum = 10737418240_u64))]
            size: u64,
            mtime: i64,
            #[serde(default)]
            executable: bool,
            blocks: BlockList,
        },
        Delete {
            path: RelPath,
            parent_rev: Option<RevId>,
        },
        Move {
            from: RelPath,
            to: RelPath,
            parent_rev: Option<RevId>,
        },
        Mkdir {
            path: RelPath,
        },
        Rmdir {
            path: RelPath,
            parent_rev: Option<RevId>,
        },
        /// Makes an old revision of the file at `path` the new head.
        Restore {
            path: RelPath,
            rev: RevId,
        },
    }

    /// One journal record.
    pub struct Change {
        pub seq: Cursor,
        pub op: ChangeOp,
        /// The entry after the change (for `move`, at its new path).
        pub entry: Entry,
        /// For `move`: where it was before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub from: Option<RelPath>,
        /// For file `add`/`modify`: the revision's blocks, in order, with sizes
        /// (unless `blocks_edit` says them more briefly).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub blocks: Option<Vec<BlockRef>>,
        /// For file `modify`, when asked for with `blocks=edit`: the block list
        /// as an edit of the file's previous revision's list (a one-byte change
        /// of a 10 GiB file stays a few hundred bytes). A client that does not
        /// hold `base_rev`'s list asks again without `blocks=edit`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub blocks_edit: Option<BlocksEdit>,
    }

    /// A block list as an edit of the list of revision `base_rev`.
    pub struct BlocksEdit {
        pub base_rev: RevId,
        pub edits: Vec<BlockRefEdit>,
    }

    #[serde(rename_all = "snake_case")]
    pub enum BlockRefEdit {
        /// Blocks `[start, start + count)` of the base list.
        Copy {
            #[cfg_attr(feature = "openapi", schema(value_type = u64, maximum = 4294967295_u64))]
            start: u32,
            #[cfg_attr(feature = "openapi", schema(value_type = u64, maximum = 4294967295_u64))]
            count: u32,
        },
        /// New blocks, in order.
        Add(Vec<BlockRef>),
    }

    pub struct BlockRef {
        pub id: BlockId,
        #[cfg_attr(feature = "openapi", schema(value_type = u64, maximum = 4294967295_u64))]
        pub size: u32,
    }

    pub struct ChangesResponse {
        pub changes: Vec<Change>,
        /// Pass this as `cursor` next time.
        pub cursor: Cursor,
        /// More changes are waiting: ask again at once.
        pub has_more: bool,
    }

    pub struct PollResponse {
        /// `true` when the journal is past the given cursor.
        pub changes: bool,
        pub cursor: Cursor,
        /// The namespace's pending-upload sequence: it moves whenever an
        /// upload is announced or dropped (see [`PendingUpload`]).
        #[serde(default)]
        pub pending: i64,
    }

    /// Announces a file whose blocks are being uploaded, before the commit:
    /// other devices may fetch its blocks as they land. Never a head: it
    /// shows at its path only once committed. Announcing again for the same
    /// path replaces it; the commit of any change at the path drops it.
    pub struct PendingAnnounce {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::path::NonRootPath))]
        pub path: RelPath,
        #[serde(default)]
        pub parent_rev: Option<RevId>,
        #[cfg_attr(feature = "openapi", schema(maximum = 10737418240_u64))]
        pub size: u64,
        /// The file's blocks, in order (their sizes add up to `size`).
        pub blocks: Vec<BlockRef>,
    }

    pub struct PendingAnnounced {
        pub id: i64,
        /// Unix milliseconds after which the announcement is dropped.
        pub expires: i64,
    }

    /// An upload in progress, as other devices see it.
    pub struct PendingUpload {
        pub id: i64,
        pub path: RelPath,
        #[serde(default)]
        pub parent_rev: Option<RevId>,
        pub size: u64,
        /// The content hash the file will have (see `Entry::hash`).
        pub hash: String,
        pub blocks: Vec<BlockRef>,
        /// The uploading device.
        pub device: String,
        pub expires: i64,
    }

    pub struct PendingList {
        /// Other devices' announcements.
        pub pending: Vec<PendingUpload>,
        /// The pending-upload sequence this list is at (see `PollResponse::pending`).
        pub seq: i64,
        /// How many announcements of the asking device's own are listed
        /// (left out of `pending`). A device with no upload under way drops
        /// them: one an earlier run sent just before it was killed can
        /// reach the server after the new run dropped them all.
        #[serde(default)]
        pub own: u32,
    }

    pub struct ListRevisionsRequest {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::path::NonRootPath))]
        pub path: RelPath,
        /// Most revisions to return (default 100).
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
        pub limit: Option<u32>,
    }

    pub struct ListRevisionsResponse {
        pub revisions: Vec<Revision>,
    }

    pub struct Revision {
        pub rev: RevId,
        pub size: u64,
        pub hash: String,
        /// Server time of the revision, Unix milliseconds.
        pub modified: i64,
        pub mtime: i64,
        pub device: String,
        pub deleted: bool,
    }

    /// Start of a resumable upload. `name` is taken for `path` (Google's
    /// metadata), and the size may come in `X-Upload-Content-Length` instead.
    pub struct ResumableStartRequest {
        #[serde(alias = "name")]
        #[cfg_attr(feature = "openapi", schema(value_type = crate::path::NonRootPath))]
        pub path: RelPath,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(maximum = 10737418240_u64))]
        pub size: Option<u64>,
        #[serde(default)]
        pub mtime: Option<i64>,
        /// If given, the upload commits only if this is still the head.
        #[serde(default)]
        pub parent_rev: Option<RevId>,
    }

    pub struct ResumableStartResponse {
        pub upload_url: String,
        pub expires: i64,
    }

    /// A new read-only share link to a file or folder.
    pub struct LinkRequest {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::path::NonRootPath))]
        pub path: RelPath,
        /// Seconds from now until the link stops working (none: never; at
        /// most 100 years).
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3153600000_u64))]
        pub expires_in: Option<u64>,
        /// Asked before anything is shown (none: anyone with the link).
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(min_length = 1))]
        pub password: Option<String>,
    }

    /// A share link. It follows its item through renames and moves.
    pub struct Link {
        pub id: i64,
        /// The URL to hand out (absolute).
        pub url: String,
        /// Where the item is now; `None` once it was deleted.
        pub path: Option<RelPath>,
        pub kind: EntryKind,
        pub created: i64,
        pub expires: Option<i64>,
        /// Whether a password is asked.
        pub password: bool,
        /// Who made it, when that is not the caller: a member's link into
        /// a shared folder the caller owns (who may revoke it too).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub by: Option<String>,
    }

    pub struct LinkList {
        pub links: Vec<Link>,
    }

    /// Something that happened to a file or folder: who did what, when,
    /// from which device (`GET /activity`).
    pub struct ActivityEvent {
        /// Its place in the journal (newer events have larger ones).
        pub seq: Cursor,
        pub op: ChangeOp,
        pub kind: EntryKind,
        pub path: RelPath,
        /// For a move: where it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub from: Option<RelPath>,
        /// The user and device that made the change.
        pub user: String,
        pub device: String,
        /// Server time, Unix milliseconds.
        pub time: i64,
    }

    /// Log a browser in (`POST /auth/session`): the session is a cookie.
    pub struct SessionRequest {
        #[cfg_attr(feature = "openapi", schema(max_length = 200))]
        pub username: String,
        pub password: String,
    }

    /// A browser session: who is logged in, and the token every request
    /// that changes something must carry in `X-CSRF-Token`.
    pub struct Session {
        pub user: String,
        pub user_id: i64,
        /// The name this browser has in history and activity.
        pub device: String,
        pub csrf: String,
    }

    /// The caller's account: storage used and the quota.
    pub struct Account {
        pub user: String,
        /// Bytes of the live files and history counted against the quota.
        pub used: u64,
        pub quota: u64,
    }

    /// A folder's live entries, by name (`GET /files/list`).
    pub struct Listing {
        pub path: RelPath,
        pub entries: Vec<Entry>,
    }

    /// A file or folder, by path (`POST /files/delete`, `POST /trash/restore`).
    pub struct PathRequest {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::path::NonRootPath))]
        pub path: RelPath,
    }

    /// Something deleted that can be restored (`GET /trash`). A folder
    /// stands for what was deleted inside it too.
    pub struct TrashItem {
        pub path: RelPath,
        pub kind: EntryKind,
        /// A file's size before it was deleted; a folder's: of the files in it.
        pub size: u64,
        /// For a folder: the deleted files and folders inside it.
        pub items: u64,
        /// When it was deleted (server time, Unix milliseconds).
        pub deleted: i64,
        /// Who deleted it, and from which device.
        pub user: String,
        pub device: String,
    }

    /// Deleted items, most recently deleted first.
    pub struct TrashList {
        pub items: Vec<TrashItem>,
    }

    /// Events newest first; `before` asks for the page after this one.
    pub struct ActivityPage {
        pub events: Vec<ActivityEvent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub before: Option<Cursor>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
}

/// What a member of a shared folder may do there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ShareRole {
    /// Made the share; its bytes count against their quota.
    Owner,
    /// Reads and writes.
    Editor,
    /// Reads only: the server refuses their writes (403).
    Viewer,
}

/// The role a share's owner gives a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Editor,
    Viewer,
}

impl MemberRole {
    pub fn editor() -> MemberRole {
        MemberRole::Editor
    }
}

impl From<MemberRole> for ShareRole {
    fn from(r: MemberRole) -> ShareRole {
        match r {
            MemberRole::Editor => ShareRole::Editor,
            MemberRole::Viewer => ShareRole::Viewer,
        }
    }
}

impl ShareRole {
    pub fn can_write(self) -> bool {
        self != ShareRole::Viewer
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShareRole::Owner => "owner",
            ShareRole::Editor => "editor",
            ShareRole::Viewer => "viewer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Add,
    Modify,
    Delete,
    Move,
    Mkdir,
    Rmdir,
}

/// Why a commit's block list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockListError {
    #[error("a file of this size has at most {most} blocks, but this block list makes {n}")]
    TooLong { n: u64, most: u64 },
    #[error("a block list edit needs parent_rev")]
    NoParent,
    #[error("block edit copies [{start}, {}) but the parent revision has {parent} blocks", u64::from(*start) + u64::from(*count))]
    CopyOutside { start: u32, count: u32, parent: usize },
}

/// Lengths of the common prefix and suffix of two lists (never overlapping:
/// together at most the shorter list's length).
pub fn common_ends<T, U>(a: &[T], b: &[U], eq: impl Fn(&T, &U) -> bool) -> (usize, usize) {
    let pre = a.iter().zip(b).take_while(|(x, y)| eq(x, y)).count();
    let max_suf = a.len().min(b.len()) - pre;
    let suf = a.iter().rev().zip(b.iter().rev()).take(max_suf).take_while(|(x, y)| eq(x, y)).count();
    (pre, suf)
}

impl BlockList {
    /// How many blocks the list makes once applied (an edit's copies
    /// counted, not yet checked against the parent), without building it.
    pub fn n_blocks(&self) -> u64 {
        match self {
            BlockList::Full(ids) => ids.len() as u64,
            BlockList::Edit(edits) => edits
                .iter()
                .map(|e| match e {
                    BlockEdit::Copy { count, .. } => u64::from(*count),
                    BlockEdit::Add(ids) => ids.len() as u64,
                })
                .fold(0u64, u64::saturating_add),
        }
    }

    /// The block ids the list names itself (a full list, an edit's additions).
    pub fn named_ids(&self) -> impl Iterator<Item = &BlockId> {
        let (full, edits) = match self {
            BlockList::Full(ids) => (ids.as_slice(), &[][..]),
            BlockList::Edit(edits) => (&[][..], edits.as_slice()),
        };
        full.iter().chain(edits.iter().flat_map(|e| match e {
            BlockEdit::Copy { .. } => &[][..],
            BlockEdit::Add(ids) => ids.as_slice(),
        }))
    }

    /// The list this makes of the parent revision's list (`parent`, read
    /// through `id`), at most `most` blocks long: its length is checked
    /// before anything is built, and every copy against the parent.
    pub fn expand<T>(
        self,
        parent: Option<&[T]>,
        id: impl Fn(&T) -> BlockId,
        most: u64,
    ) -> Result<Vec<BlockId>, BlockListError> {
        let n = self.n_blocks();
        if n > most {
            return Err(BlockListError::TooLong { n, most });
        }
        let edits = match self {
            BlockList::Full(ids) => return Ok(ids),
            BlockList::Edit(edits) => edits,
        };
        let parent = parent.ok_or(BlockListError::NoParent)?;
        let mut out = Vec::with_capacity(n as usize);
        for e in edits {
            match e {
                BlockEdit::Copy { start, count } => {
                    let (s, c) = (start as usize, count as usize);
                    let slice = parent.get(s..s.saturating_add(c)).ok_or(BlockListError::CopyOutside {
                        start,
                        count,
                        parent: parent.len(),
                    })?;
                    out.extend(slice.iter().map(&id));
                }
                BlockEdit::Add(ids) => out.extend(ids),
            }
        }
        Ok(out)
    }

    /// The smallest edit of `parent` that gives `new` (common prefix and
    /// suffix copied, the middle sent), or the full list when they share
    /// neither end or there is no parent.
    pub fn between(parent: Option<&[BlockId]>, new: &[BlockId]) -> BlockList {
        let Some(parent) = parent else { return BlockList::Full(new.to_vec()) };
        let (pre, suf) = common_ends(parent, new, |a, b| a == b);
        if pre + suf == 0 {
            return BlockList::Full(new.to_vec());
        }
        BlockList::Edit(splice(
            parent.len(),
            new,
            (pre, suf),
            |start, count| BlockEdit::Copy { start, count },
            BlockEdit::Add,
        ))
    }
}

/// The edit of a list of `parent_len` items into `new` that copies the
/// common prefix and suffix (`ends`) and adds the middle.
fn splice<T: Clone, E>(
    parent_len: usize,
    new: &[T],
    (pre, suf): (usize, usize),
    copy: impl Fn(u32, u32) -> E,
    add: impl Fn(Vec<T>) -> E,
) -> Vec<E> {
    let mut edits = Vec::new();
    if pre > 0 {
        edits.push(copy(0, pre as u32));
    }
    let mid = &new[pre..new.len() - suf];
    if !mid.is_empty() {
        edits.push(add(mid.to_vec()));
    }
    if suf > 0 {
        edits.push(copy((parent_len - suf) as u32, suf as u32));
    }
    edits
}

impl BlocksEdit {
    /// `new` as an edit of `base` (revision `base_rev`), or `None` when they
    /// share neither end (the full list is no longer).
    pub fn between(base_rev: RevId, base: &[BlockRef], new: &[BlockRef]) -> Option<BlocksEdit> {
        let (pre, suf) = common_ends(base, new, |a, b| a == b);
        if pre + suf == 0 {
            return None;
        }
        let edits =
            splice(base.len(), new, (pre, suf), |start, count| BlockRefEdit::Copy { start, count }, BlockRefEdit::Add);
        Some(BlocksEdit { base_rev, edits })
    }

    /// The list this edit makes of `base`, or `None` when it copies blocks
    /// `base` does not have.
    pub fn apply(&self, base: &[BlockRef]) -> Option<Vec<BlockRef>> {
        let mut out = Vec::new();
        for e in &self.edits {
            match e {
                BlockRefEdit::Copy { start, count } => {
                    let (s, c) = (*start as usize, *count as usize);
                    out.extend_from_slice(base.get(s..s.checked_add(c)?)?);
                }
                BlockRefEdit::Add(blocks) => out.extend_from_slice(blocks),
            }
        }
        Some(out)
    }
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { code, message: message.into(), head: None, missing: Vec::new() } }
    }
}

/// Long-poll timeout when the client gives none, in seconds.
pub const POLL_DEFAULT_SECS: u64 = 60;
/// Longest long-poll timeout the server honours, in seconds.
pub const POLL_MAX_SECS: u64 = 300;
/// Most operations accepted in one commit request.
pub const MAX_COMMIT_OPS: usize = 10_000;
/// Most block references one commit request may make, its edits counted
/// as the lists they make (a full list of that many ids is about what a
/// commit's 64 MiB body holds; the client's groups stay far below it).
pub const MAX_COMMIT_BLOCKS: u64 = 1 << 20;
/// Most block ids in one missing-blocks request.
pub const MAX_MISSING_QUERY: usize = 10_000;
/// Longest wait for a block that is being uploaded, in seconds.
pub const BLOCK_WAIT_MAX_SECS: u64 = 60;
/// Most blocks in one pending-upload announcement (10 GiB in 16 KiB blocks).
pub const MAX_PENDING_BLOCKS: usize = 655_360;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_expand_within_their_bound() {
        let ids: Vec<BlockId> = (0..6u8).map(|i| BlockId::of(&[i])).collect();
        let parent: Vec<(BlockId, u32)> = ids.iter().map(|id| (*id, 1)).collect();
        let id = |b: &(BlockId, u32)| b.0;
        let edit = BlockList::Edit(vec![
            BlockEdit::Copy { start: 1, count: 2 },
            BlockEdit::Add(vec![ids[5]]),
            BlockEdit::Copy { start: 0, count: 1 },
        ]);
        assert_eq!(edit.n_blocks(), 4);
        assert_eq!(edit.named_ids().copied().collect::<Vec<_>>(), vec![ids[5]]);
        assert_eq!(edit.clone().expand(Some(&parent), id, 4), Ok(vec![ids[1], ids[2], ids[5], ids[0]]));
        // Counted before anything is built: a huge copy is refused at once.
        assert_eq!(edit.clone().expand(Some(&parent), id, 3), Err(BlockListError::TooLong { n: 4, most: 3 }));
        let bomb = BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: u32::MAX }; 400]);
        assert_eq!(bomb.n_blocks(), 400 * u64::from(u32::MAX));
        assert!(matches!(bomb.expand(Some(&parent), id, 1 << 20), Err(BlockListError::TooLong { .. })));
        let outside = BlockList::Edit(vec![BlockEdit::Copy { start: 5, count: 2 }]);
        assert_eq!(
            outside.expand(Some(&parent), id, 10),
            Err(BlockListError::CopyOutside { start: 5, count: 2, parent: 6 })
        );
        assert_eq!(edit.expand::<(BlockId, u32)>(None, id, 10), Err(BlockListError::NoParent));
        let full = BlockList::Full(ids.clone());
        assert_eq!(full.named_ids().count(), 6);
        assert_eq!(full.expand::<(BlockId, u32)>(None, id, 6), Ok(ids));
    }

    #[test]
    fn commit_op_json_shape() {
        let op: CommitOp = serde_json::from_str(
            r#"{"op":"put","path":"a/b","parent_rev":null,"size":3,"mtime":0,"blocks":{"full":[]}}"#,
        )
        .unwrap();
        assert!(matches!(op, CommitOp::Put { .. }));
        let edit = BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: 2 }, BlockEdit::Add(vec![])]);
        assert_eq!(serde_json::to_string(&edit).unwrap(), r#"{"edit":[{"copy":{"start":0,"count":2}},{"add":[]}]}"#);
        assert!(serde_json::from_str::<CommitOp>(r#"{"op":"delete","path":"../x","parent_rev":1}"#).is_err());
    }

    #[test]
    fn list_edits_round_trip() {
        let r = |i: u8| BlockRef { id: BlockId::of(&[i]), size: u32::from(i) + 1 };
        let base: Vec<BlockRef> = (0..6).map(r).collect();
        let cases: Vec<Vec<BlockRef>> = vec![
            vec![r(9), r(1), r(2), r(3), r(4), r(5)],       // first block changed
            vec![r(9), r(0), r(1), r(2), r(3), r(4), r(5)], // one inserted at the start
            vec![r(0), r(1), r(2), r(9), r(4), r(5)],       // one in the middle
            (0..6).map(r).chain([r(9)]).collect(),          // appended
            vec![r(0), r(5)],                               // middle removed
            base.clone(),                                   // unchanged
        ];
        for new in cases {
            let e = BlocksEdit::between(7, &base, &new).expect("shares an end");
            assert_eq!(e.apply(&base).as_deref(), Some(&new[..]), "{e:?}");
            let ids = |l: &[BlockRef]| l.iter().map(|b| b.id).collect::<Vec<_>>();
            assert!(matches!(BlockList::between(Some(&ids(&base)), &ids(&new)), BlockList::Edit(_)));
        }
        assert_eq!(BlocksEdit::between(7, &base, &[r(9)]), None);
        let bad = BlocksEdit { base_rev: 1, edits: vec![BlockRefEdit::Copy { start: 5, count: 2 }] };
        assert_eq!(bad.apply(&base), None);
        let huge = BlocksEdit { base_rev: 1, edits: vec![BlockRefEdit::Copy { start: u32::MAX, count: u32::MAX }] };
        assert_eq!(huge.apply(&base), None);
    }

    #[test]
    fn error_body_shape() {
        let v = serde_json::to_value(ErrorBody::new(ErrorCode::QuotaExceeded, "full")).unwrap();
        assert_eq!(v, serde_json::json!({"error": {"code": "quota_exceeded", "message": "full"}}));
        assert_eq!(ErrorCode::QuotaExceeded.status(), 507);
    }
}
