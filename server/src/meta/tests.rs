//! The metadata store suite: every `MetaStore` backend must pass all of it.
//! Each check takes a fresh, empty store; [`conformance!`] makes a test of
//! each for a backend.

use std::sync::Arc;

use ferry_shared::BlockId;
use ferry_shared::api::{BlockList, CommitOp, ErrorCode};
use ferry_shared::path::RelPath;

use super::sqlite::SqliteStore;
use super::{BlockRecords, Caller, DeviceId, Files, Journal, MetaStore, NewBlock, Seq, ShareId};
use crate::blocks::BlockLoc;
use crate::error::Error;

fn caller(store: &dyn MetaStore, name: &str, device: &str) -> Caller {
    let user = match store.password_hash(name).unwrap() {
        Some((id, _)) => id,
        None => store.add_user(name, "not-a-real-hash", 1 << 30).unwrap(),
    };
    let token = blake3::hash(format!("{name}/{device}").as_bytes());
    store.create_token(user, device, *token.as_bytes()).unwrap();
    store.authenticate(*token.as_bytes()).unwrap().unwrap()
}

fn put(path: &str, parent_rev: Option<i64>, block: &NewBlock) -> CommitOp {
    CommitOp::Put {
        path: RelPath::parse(path).unwrap(),
        parent_rev,
        size: u64::from(block.size),
        mtime: 0,
        executable: false,
        blocks: BlockList::Full(vec![block.id]),
    }
}

/// A put of a file made of `block` twice.
fn put_twice(path: &str, block: &NewBlock) -> CommitOp {
    CommitOp::Put {
        path: RelPath::parse(path).unwrap(),
        parent_rev: None,
        size: 2 * u64::from(block.size),
        mtime: 0,
        executable: false,
        blocks: BlockList::Full(vec![block.id, block.id]),
    }
}

fn block(data: &[u8]) -> NewBlock {
    NewBlock { id: BlockId::of(data), size: data.len() as u32, stored_size: data.len() as u32, loc: BlockLoc::Loose }
}

/// Concurrent commits from many threads: all succeed, and the journal is a
/// gap-free sequence with one record per change.
fn concurrent_commits_form_one_journal(store: Arc<dyn MetaStore>) {
    let c = caller(&*store, "alice", "d1");
    let b = block(b"content");
    store.add_blocks(c.user_id, std::slice::from_ref(&b)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (store, c, b) = (Arc::clone(&store), c.clone(), b.clone());
            std::thread::spawn(move || {
                for i in 0..100 {
                    let out = store.commit(&c, vec![put(&format!("t{t}/f{i}"), None, &b)], Vec::new()).unwrap();
                    out.results.into_iter().for_each(|r| {
                        r.unwrap();
                    });
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    // 800 files and 8 folders.
    assert_eq!(store.cursor(c.ns).unwrap(), Seq(808));
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.changes(c.ns, Seq(cursor), 100, false).unwrap();
        seen.extend(page.changes.iter().map(|ch| ch.seq));
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, (1..=808).collect::<Vec<_>>());
}

/// Writes of one account at once (on PostgreSQL, run together in one
/// transaction of their namespace's lane) succeed or fail each alone: one
/// refused after it wrote (past the quota) leaves nothing, one refused
/// before (a name taken) nothing either, and the rest stand, their
/// journal gap-free.
fn writes_at_once_fail_alone(store: Arc<dyn MetaStore>) {
    let c = caller(&*store, "ivy", "a");
    let small = block(b"small");
    let half = NewBlock { id: BlockId::of(b"half"), size: 600 << 20, stored_size: 3, loc: BlockLoc::Loose };
    store.add_blocks(c.user_id, &[small.clone(), half.clone()]).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (store, c, small, half) = (Arc::clone(&store), c.clone(), small.clone(), half.clone());
            std::thread::spawn(move || {
                let commit = |op| store.commit(&c, vec![op], Vec::new()).unwrap().results.remove(0);
                commit(put(&format!("t{t}/x"), None, &small)).unwrap();
                for i in 0..30 {
                    match i % 3 {
                        0 => {
                            let r = commit(put_twice(&format!("big{t}/f{i}"), &half));
                            assert!(matches!(&r, Err(e) if e.code() == ErrorCode::QuotaExceeded), "{r:?}");
                        }
                        1 => {
                            let r = commit(put(&format!("t{t}/x"), None, &small));
                            assert!(matches!(&r, Err(Error::Conflict { .. })), "{r:?}");
                        }
                        _ => {
                            commit(put(&format!("t{t}/f{i}"), None, &small)).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let mut want = std::collections::BTreeSet::new();
    for t in 0..8 {
        want.insert(format!("t{t}"));
        want.insert(format!("t{t}/x"));
        want.extend((0..30).filter(|i| i % 3 == 2).map(|i| format!("t{t}/f{i}")));
    }
    assert_eq!(listed(&*store, &c), want);
    assert_eq!(tree_of(&*store, &c), want, "the journal replays to the tree");
    let page = store.changes(c.ns, Seq(0), 1000, false).unwrap();
    assert_eq!(page.changes.iter().map(|ch| ch.seq).collect::<Vec<_>>(), (1..=want.len() as i64).collect::<Vec<_>>());
    let info = store.user_info(c.user_id).unwrap();
    assert_eq!((info.used, info.uploaded), (8 * 11 * u64::from(small.size), 600 << 20));
}

/// Two devices commit against the same head: exactly one wins.
fn same_head_one_winner(store: Arc<dyn MetaStore>) {
    let a = caller(&*store, "bob", "a");
    let b = caller(&*store, "bob", "b");
    let (x, y, z) = (block(b"x"), block(b"y"), block(b"z"));
    store.add_blocks(a.user_id, &[x.clone(), y.clone(), z.clone()]).unwrap();
    let first = store.commit(&a, vec![put("doc.txt", None, &x)], Vec::new()).unwrap();
    let head = first.results.into_iter().next().unwrap().unwrap();
    let ra = store.commit(&a, vec![put("doc.txt", Some(head.rev), &y)], Vec::new()).unwrap();
    let rb = store.commit(&b, vec![put("doc.txt", Some(head.rev), &z)], Vec::new()).unwrap();
    let winner = ra.results.into_iter().next().unwrap().unwrap();
    match rb.results.into_iter().next().unwrap() {
        Err(Error::Conflict { head: Some(h), .. }) => assert_eq!(h.rev, winner.rev),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A commit naming a block the account has not uploaded is refused, even if
/// another account has it; uploaded blocks count against the quota until
/// committed, and expire if never committed.
fn blocks_are_per_account(store: Arc<dyn MetaStore>) {
    let a = caller(&*store, "carol", "a");
    let d = caller(&*store, "dave", "a");
    let secret = block(b"carol's secret");
    store.add_blocks(a.user_id, std::slice::from_ref(&secret)).unwrap();
    assert!(store.block_stored(&secret.id).unwrap());
    assert_eq!(store.missing_blocks(d.user_id, &[secret.id]).unwrap(), vec![secret.id]);
    let r = store.commit(&d, vec![put("stolen", None, &secret)], Vec::new()).unwrap();
    assert!(matches!(r.results[0], Err(Error::MissingBlocks { .. })));
    // Blocks uploaded count against the quota until a commit uses them:
    // past it, nothing is recorded.
    let over = NewBlock { id: BlockId::of(b"big"), size: u32::MAX, stored_size: 3, loc: BlockLoc::Loose };
    let r = store.add_blocks(d.user_id, std::slice::from_ref(&over));
    assert!(matches!(&r, Err(e) if e.code() == ErrorCode::QuotaExceeded), "{r:?}");
    assert!(store.owned_block_location(d.user_id, &over.id).unwrap().is_none());
    let half = NewBlock { id: BlockId::of(b"half"), size: 600 << 20, stored_size: 3, loc: BlockLoc::Loose };
    store.add_blocks(d.user_id, std::slice::from_ref(&half)).unwrap();
    assert_eq!(store.user_info(d.user_id).unwrap().uploaded, 600 << 20);
    assert_eq!(store.upload_room(d.user_id).unwrap(), (1 << 30) - (600 << 20));
    let again = NewBlock { id: BlockId::of(b"again"), size: 600 << 20, stored_size: 3, loc: BlockLoc::Loose };
    assert!(store.add_blocks(d.user_id, std::slice::from_ref(&again)).is_err(), "two uploads past the quota");
    // Committed, it counts as a file; a commit past the quota is refused.
    let r = store.commit(&d, vec![put("half", None, &half)], Vec::new()).unwrap();
    assert!(r.results[0].is_ok(), "{:?}", r.results[0]);
    let info = store.user_info(d.user_id).unwrap();
    assert_eq!((info.used, info.uploaded), (600 << 20, 0));
    let big = put_twice("big", &half);
    let r = store.commit(&d, vec![big], Vec::new()).unwrap();
    assert!(matches!(&r.results[0], Err(e) if e.code() == ErrorCode::QuotaExceeded), "{:?}", r.results[0]);
    // Uploaded blocks no commit used expire: no longer counted, nor owned;
    // committed ones stay.
    let small = block(b"never committed");
    store.add_blocks(d.user_id, std::slice::from_ref(&small)).unwrap();
    assert_eq!(store.user_info(d.user_id).unwrap().uploaded, small.size as u64);
    // (carol's secret, never committed either, goes too.)
    assert_eq!(store.expire_uploaded_blocks(super::now_ms() + 1).unwrap(), 2);
    assert_eq!(store.user_info(d.user_id).unwrap().uploaded, 0);
    assert!(!store.owns_block(d.user_id, &small.id).unwrap());
    assert!(store.owns_block(d.user_id, &half.id).unwrap());
}

/// In a commit of many operations, each that fails changes nothing, and
/// the others stand: whether it failed before it wrote (a conflict) or
/// after (past the quota, once its uploaded blocks were settled).
fn operations_fail_alone(store: Arc<dyn MetaStore>) {
    let c = caller(&*store, "erin", "a");
    let small = block(b"small");
    let half = NewBlock { id: BlockId::of(b"half"), size: 600 << 20, stored_size: 3, loc: BlockLoc::Loose };
    store.add_blocks(c.user_id, &[small.clone(), half.clone()]).unwrap();
    let big = put_twice("big", &half);
    let ops = vec![
        put("new/a", None, &small),
        big,
        put("new/a", None, &small),
        CommitOp::Mkdir { path: RelPath::parse("new/dir").unwrap() },
        put("new/b", None, &small),
    ];
    let r = store.commit(&c, ops, Vec::new()).unwrap();
    assert!(r.results[0].is_ok(), "{:?}", r.results[0]);
    assert!(matches!(&r.results[1], Err(e) if e.code() == ErrorCode::QuotaExceeded), "{:?}", r.results[1]);
    assert!(matches!(&r.results[2], Err(Error::Conflict { .. })), "{:?}", r.results[2]);
    assert!(r.results[3].is_ok() && r.results[4].is_ok(), "{:?}", &r.results[3..]);
    let want: std::collections::BTreeSet<String> =
        ["new", "new/a", "new/b", "new/dir"].into_iter().map(String::from).collect();
    assert_eq!(tree_of(&*store, &c), want);
    // The journal has what stood, gap-free; the failed put's blocks are
    // still only uploaded, counted as such; the files count as files.
    let page = store.changes(c.ns, Seq(0), 100, false).unwrap();
    let paths: Vec<String> = page.changes.iter().map(|ch| ch.entry.path.to_string()).collect();
    assert_eq!(paths, ["new", "new/a", "new/dir", "new/b"]);
    assert_eq!(page.changes.iter().map(|ch| ch.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let info = store.user_info(c.user_id).unwrap();
    assert_eq!((info.used, info.uploaded), (2 * u64::from(small.size), 600 << 20));
    // The same operations once more, each on its own: as before.
    let again = store.commit(&c, vec![put("new/a", None, &small)], Vec::new()).unwrap();
    assert!(matches!(&again.results[0], Err(Error::Conflict { .. })), "{:?}", again.results[0]);
}

/// Many blocks at once (more than one statement's list holds, repeats
/// among them): found, located, recorded and settled as one at a time
/// would; another account's and a share's blocks as before.
fn many_blocks_at_once(store: Arc<dyn MetaStore>) {
    let a = caller(&*store, "gina", "a");
    let b = caller(&*store, "hal", "a");
    // Blocks as small as chunking cuts (a list may be no longer than that).
    let sized = |text: String| {
        let mut data = text.into_bytes();
        data.resize(ferry_shared::chunk::MIN_CHUNK, b'.');
        block(&data)
    };
    let mine: Vec<NewBlock> = (0..300u32).map(|i| sized(format!("gina {i}"))).collect();
    let theirs: Vec<NewBlock> = (0..5u32).map(|i| sized(format!("hal {i}"))).collect();
    // Recorded with repeats: counted once each.
    let mut twice = mine[..260].to_vec();
    twice.extend_from_slice(&mine[250..]);
    store.add_blocks(a.user_id, &twice).unwrap();
    store.add_blocks(b.user_id, &theirs).unwrap();
    let total: u64 = mine.iter().map(|nb| u64::from(nb.size)).sum();
    assert_eq!(store.user_info(a.user_id).unwrap().uploaded, total);

    // Asked in another order, with repeats and others' blocks between.
    let mut asked: Vec<BlockId> = mine.iter().rev().map(|nb| nb.id).collect();
    asked.insert(7, theirs[0].id);
    asked.insert(100, mine[3].id);
    asked.push(theirs[1].id);
    asked.push(theirs[0].id);
    assert_eq!(store.missing_blocks(a.user_id, &asked).unwrap(), vec![theirs[0].id, theirs[1].id]);
    let found = store.owned_block_locations(a.user_id, &asked).unwrap();
    assert_eq!(found.len(), asked.len());
    for (id, got) in asked.iter().zip(&found) {
        let expected = mine.iter().find(|nb| nb.id == *id).map(|nb| (nb.loc, nb.stored_size));
        assert_eq!(*got, expected, "{id}");
    }

    // One file of them all, a block named twice: each settled once, the
    // file's size counted, nothing left uploaded.
    let mut list: Vec<BlockId> = mine.iter().map(|nb| nb.id).collect();
    list.push(mine[0].id);
    let size: u64 = list.iter().map(|id| u64::from(mine.iter().find(|nb| nb.id == *id).unwrap().size)).sum();
    let op = |blocks: Vec<BlockId>, size: u64, path: &str| CommitOp::Put {
        path: RelPath::parse(path).unwrap(),
        parent_rev: None,
        size,
        mtime: 0,
        executable: false,
        blocks: BlockList::Full(blocks),
    };
    let r = store.commit(&a, vec![op(list.clone(), size, "all")], Vec::new()).unwrap();
    assert!(r.results[0].is_ok(), "{:?}", r.results[0]);
    let info = store.user_info(a.user_id).unwrap();
    assert_eq!((info.used, info.uploaded), (size, 0));
    // A list naming another account's block is refused, with just those named.
    list.insert(150, theirs[2].id);
    list.push(theirs[2].id);
    let r = store.commit(&a, vec![op(list, size + 2 * u64::from(theirs[2].size), "stolen")], Vec::new()).unwrap();
    assert!(
        matches!(&r.results[0], Err(Error::MissingBlocks { missing }) if *missing == vec![theirs[2].id]),
        "{:?}",
        r.results[0]
    );
}

/// With `edits`, a modification's block list comes as an edit of the
/// previous revision's (a move's revision counts: it has the same list), and
/// applying it to that list gives the full list; additions, revivals and a
/// list sharing nothing with its base come in full.
fn journal_block_lists_as_edits(store: Arc<dyn MetaStore>) {
    let c = caller(&*store, "frank", "a");
    // Blocks as small as chunking cuts (a list may be no longer than that).
    const B: usize = ferry_shared::chunk::MIN_CHUNK;
    let blocks: Vec<NewBlock> = (0..6u8).map(|i| block(&[i; B])).collect();
    store.add_blocks(c.user_id, &blocks).unwrap();
    let list = |idx: &[usize]| -> CommitOp {
        CommitOp::Put {
            path: RelPath::parse("f").unwrap(),
            parent_rev: None,
            size: (B * idx.len()) as u64,
            mtime: 0,
            executable: false,
            blocks: BlockList::Full(idx.iter().map(|&i| blocks[i].id).collect()),
        }
    };
    let with_parent = |op: CommitOp, rev: i64| match op {
        CommitOp::Put { path, size, mtime, executable, blocks, .. } => {
            CommitOp::Put { path, parent_rev: Some(rev), size, mtime, executable, blocks }
        }
        other => other,
    };
    let commit = |op: CommitOp| store.commit(&c, vec![op], Vec::new()).unwrap().results.remove(0).unwrap();
    let v1 = commit(list(&[0, 1, 2, 3]));
    let v2 = commit(with_parent(list(&[0, 1, 4, 3]), v1.rev));
    let moved = commit(CommitOp::Move {
        from: RelPath::parse("f").unwrap(),
        to: RelPath::parse("g").unwrap(),
        parent_rev: Some(v2.rev),
    });
    let g = |op: CommitOp| match op {
        CommitOp::Put { size, mtime, executable, blocks, parent_rev, .. } => {
            CommitOp::Put { path: RelPath::parse("g").unwrap(), parent_rev, size, mtime, executable, blocks }
        }
        other => other,
    };
    let v3 = commit(g(with_parent(list(&[5, 0, 1, 4, 3]), moved.rev)));
    let v4 = commit(g(with_parent(list(&[2]), v3.rev)));
    let full = store.changes(c.ns, Seq(0), 100, false).unwrap().changes;
    let edited = store.changes(c.ns, Seq(0), 100, true).unwrap().changes;
    assert_eq!(full.len(), edited.len());
    let mut held: Option<Vec<ferry_shared::api::BlockRef>> = None;
    for (f, e) in full.iter().zip(&edited) {
        assert_eq!(f.entry, e.entry);
        match (&e.blocks, &e.blocks_edit) {
            (Some(b), None) => assert_eq!(Some(b), f.blocks.as_ref()),
            (None, Some(edit)) => {
                let base_rev = if e.entry.rev == v2.rev { v1.rev } else { moved.rev };
                assert_eq!(edit.base_rev, base_rev, "{e:?}");
                assert_eq!(edit.apply(held.as_deref().unwrap()).as_ref(), f.blocks.as_ref());
            }
            (None, None) => assert!(f.blocks.is_none()),
            both => panic!("both forms: {both:?}"),
        }
        if f.blocks.is_some() {
            held = f.blocks.clone();
        }
    }
    let rev_of = |rev: i64| edited.iter().find(|ch| ch.entry.rev == rev).unwrap();
    assert!(rev_of(v1.rev).blocks.is_some(), "an addition comes in full");
    assert!(rev_of(v2.rev).blocks_edit.is_some() && rev_of(v3.rev).blocks_edit.is_some());
    assert!(rev_of(v4.rev).blocks.is_some(), "nothing shared: in full");
}

/// Announcements: listed for the other devices only, replaced by path,
/// dropped by a commit at, above or below their path, by their device, on expiry,
/// and with their account; a device holds a bounded number.
fn pending_uploads_follow_commits(store: Arc<dyn MetaStore>) {
    use ferry_shared::api::{BlockRef, PendingAnnounce};
    let a = caller(&*store, "gina", "a");
    let b = caller(&*store, "gina", "b");
    let blk = block(b"pending");
    store.add_blocks(a.user_id, std::slice::from_ref(&blk)).unwrap();
    let announce = |path: &str| PendingAnnounce {
        path: RelPath::parse(path).unwrap(),
        parent_rev: None,
        size: 7,
        blocks: vec![BlockRef { id: blk.id, size: 7 }],
    };
    let far = super::now_ms() + 600_000;
    let listed = |c: &Caller| -> Vec<String> {
        store
            .pending_uploads(c.ns, c.device_id, super::now_ms())
            .unwrap()
            .pending
            .iter()
            .map(|p| p.path.to_string())
            .collect()
    };
    let (_, s1) = store.announce_pending(&a, announce("d/x"), far).unwrap();
    let (_, s2) = store.announce_pending(&a, announce("d/x"), far).unwrap();
    assert!(s2 > s1);
    store.announce_pending(&a, announce("d/sub/y"), far).unwrap();
    store.announce_pending(&a, announce("top"), far).unwrap();
    assert_eq!(listed(&b), ["d/x", "d/sub/y", "top"]);
    assert!(listed(&a).is_empty(), "a device's own are left out");
    // A commit at a path drops what was announced there; a folder's move drops what is under it.
    let out = store.commit(&b, vec![put("top", None, &blk)], vec![blk.clone()]).unwrap();
    assert!(!out.touched.pendings.is_empty());
    assert_eq!(listed(&b), ["d/x", "d/sub/y"]);
    // A file announced where a commit puts a folder (its upload cannot land).
    store.announce_pending(&a, announce("f"), far).unwrap();
    store.commit(&b, vec![put("f/g/inner", None, &blk)], vec![blk.clone()]).unwrap();
    assert_eq!(listed(&b), ["d/x", "d/sub/y"]);
    store.commit(&b, vec![CommitOp::Mkdir { path: RelPath::parse("d").unwrap() }], Vec::new()).unwrap();
    let out = store
        .commit(
            &b,
            vec![CommitOp::Move {
                from: RelPath::parse("d").unwrap(),
                to: RelPath::parse("e").unwrap(),
                parent_rev: None,
            }],
            Vec::new(),
        )
        .unwrap();
    assert!(out.results[0].is_ok() && !out.touched.pendings.is_empty());
    assert!(listed(&b).is_empty());
    // Only its device drops one; expired ones are not listed and are swept.
    let (id, _) = store.announce_pending(&a, announce("z"), far).unwrap();
    assert!(store.drop_pending(&b, Some(id)).is_err());
    assert!(store.drop_pending(&a, Some(id)).unwrap().is_some());
    store.announce_pending(&a, announce("old"), super::now_ms() - 1).unwrap();
    assert!(listed(&b).is_empty());
    assert_eq!(store.sweep_pending(super::now_ms()).unwrap().len(), 1);
    // A bounded number per device.
    for i in 0..64 {
        store.announce_pending(&a, announce(&format!("many/{i}")), far).unwrap();
    }
    let over = store.announce_pending(&a, announce("many/64"), far).unwrap_err();
    assert_eq!(over.code(), ErrorCode::TooManyRequests);
    // Removing the account removes them; sweeping still works.
    store.remove_user("gina").unwrap();
    assert!(store.pending_uploads(a.ns, DeviceId(0), super::now_ms()).unwrap().pending.is_empty());
    store.sweep_pending(super::now_ms() + 10_000_000).unwrap();
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn MetaStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
    (dir, Arc::new(store))
}

/// A commit's block lists cost what they say, bounded before anything is
/// built: an edit copying billions of blocks, a list longer than its
/// file's size allows, and a commit over the per-request total are
/// refused; many unknown ids are answered as missing, listed once each.
fn block_lists_are_bounded(store: Arc<dyn MetaStore>) {
    use ferry_shared::api::{BlockEdit, MAX_COMMIT_BLOCKS};
    let c = caller(&*store, "gina", "a");
    const B: usize = ferry_shared::chunk::MIN_CHUNK;
    let base: Vec<NewBlock> = (0..4u8).map(|i| block(&[i; B])).collect();
    store.add_blocks(c.user_id, &base).unwrap();
    let ids: Vec<BlockId> = base.iter().map(|b| b.id).collect();
    let put_list = |path: &str, parent_rev, size: u64, blocks| CommitOp::Put {
        path: RelPath::parse(path).unwrap(),
        parent_rev,
        size,
        mtime: 0,
        executable: false,
        blocks,
    };
    let first = store.commit(&c, vec![put_list("f", None, (4 * B) as u64, BlockList::Full(ids.clone()))], vec![]);
    let rev = first.unwrap().results.remove(0).unwrap().rev;
    let status =
        |r: &crate::Result<ferry_shared::api::Entry>| r.as_ref().map(|_| 200).unwrap_or_else(|e| e.code().status());
    // 400 copies of a huge parent (40 million entries): refused from the
    // counts alone; so is what a commit's lists make past its total.
    let bomb = BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: 100_000 }; 400]);
    let r = store.commit(&c, vec![put_list("f", Some(rev), 10 << 30, bomb)], vec![]).unwrap();
    assert_eq!(status(&r.results[0]), 413, "{:?}", r.results[0]);
    const { assert!(MAX_COMMIT_BLOCKS < 40_000_000) };
    let half = (MAX_COMMIT_BLOCKS / 2 + 1) as u32;
    let big = || put_list("f", Some(rev), 10 << 30, BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: half }]));
    let r = store.commit(&c, vec![big(), big()], vec![]).unwrap();
    // (The first is refused by its parent's length, the second by the total.)
    assert_eq!((status(&r.results[0]), status(&r.results[1])), (400, 413), "{:?}", r.results);
    // An edit longer than its file's size allows, however it is spelled:
    // one byte is one block.
    let copies = BlockList::Edit(vec![BlockEdit::Copy { start: 0, count: 4 }]);
    let r = store.commit(&c, vec![put_list("f", Some(rev), 1, copies)], vec![]).unwrap();
    assert_eq!(status(&r.results[0]), 400, "{:?}", r.results[0]);
    let r = store.commit(&c, vec![put_list("one", None, 1, BlockList::Full(vec![ids[0], ids[0]]))], vec![]).unwrap();
    assert_eq!(status(&r.results[0]), 400, "{:?}", r.results[0]);
    // 100,000 ids nobody uploaded (one repeated): missing, each named once.
    let mut unknown: Vec<BlockId> = (0..100_000u32).map(|i| BlockId::of(&i.to_le_bytes())).collect();
    unknown.push(unknown[0]);
    let size = (unknown.len() * B) as u64;
    let r = store.commit(&c, vec![put_list("g", None, size, BlockList::Full(unknown))], vec![]).unwrap();
    match &r.results[0] {
        Err(Error::MissingBlocks { missing }) => assert_eq!(missing.len(), 100_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let ns = {
        let store = SqliteStore::open(&path).unwrap();
        let c = caller(&store, "erin", "a");
        let b = block(b"kept");
        store.add_blocks(c.user_id, std::slice::from_ref(&b)).unwrap();
        store.commit(&c, vec![put("kept.txt", None, &b)], Vec::new()).unwrap().results.remove(0).unwrap();
        c.ns
    };
    let store = SqliteStore::open(&path).unwrap();
    let v = store.file_version(ns, &RelPath::parse("kept.txt").unwrap(), None).unwrap();
    assert_eq!(v.entry.size, 4);
    assert_eq!(store.cursor(ns).unwrap(), Seq(1));
}

fn p(s: &str) -> RelPath {
    RelPath::parse(s).unwrap()
}

/// The live paths of a user's tree, from their journal.
fn tree_of(store: &dyn MetaStore, c: &Caller) -> std::collections::BTreeSet<String> {
    use ferry_shared::api::ChangeOp;
    let mut tree = std::collections::BTreeSet::new();
    for ch in store.changes(c.ns, Seq(0), 10_000, false).unwrap().changes {
        let path = ch.entry.path.to_string();
        match ch.op {
            ChangeOp::Add | ChangeOp::Modify | ChangeOp::Mkdir => {
                tree.insert(path);
            }
            ChangeOp::Delete | ChangeOp::Rmdir => tree.retain(|k| k != &path && !k.starts_with(&format!("{path}/"))),
            ChangeOp::Move => {
                let from = ch.from.unwrap().to_string();
                let moved: Vec<String> =
                    tree.iter().filter(|k| **k == from || k.starts_with(&format!("{from}/"))).cloned().collect();
                for k in moved {
                    tree.remove(&k);
                    tree.insert(format!("{path}{}", &k[from.len()..]));
                }
            }
        }
    }
    tree
}

fn ok(out: super::CommitOutcome) {
    for r in out.results {
        r.unwrap();
    }
}

/// A shared folder: each member's journal shows it at their own path,
/// moves into and out of it and between members' views are journaled as
/// each reader sees them, and revoking takes it out of the member's tree.
fn shared_folders_in_every_members_journal(store: Arc<dyn MetaStore>) {
    use ferry_shared::api::ShareRole;
    let store = &*store;
    let (a, b) = (caller(store, "alice", "laptop"), caller(store, "bob", "desk"));
    let blk = block(b"hello");
    ok(store
        .commit(&a, vec![put("team/sub/x.txt", None, &blk), put("mine.txt", None, &blk)], vec![blk.clone()])
        .unwrap());
    let (share, _) = store.share(&a, &p("team"), "bob", ShareRole::Editor).unwrap();
    assert_eq!(share.path, p("team"));
    let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(tree_of(store, &b), want(&["team", "team/sub", "team/sub/x.txt"]));
    // bob renames his mount and moves a folder out of the share into his own tree.
    ok(store.commit(&b, vec![CommitOp::Move { from: p("team"), to: p("alice"), parent_rev: None }], vec![]).unwrap());
    ok(store
        .commit(&b, vec![CommitOp::Move { from: p("alice/sub"), to: p("sub"), parent_rev: None }], vec![])
        .unwrap());
    assert_eq!(tree_of(store, &b), want(&["alice", "sub", "sub/x.txt"]));
    assert_eq!(tree_of(store, &a), want(&["mine.txt", "team"]));
    // bob may read what he moved out (its blocks are his now).
    assert!(store.owns_block(b.user_id, &blk.id).unwrap());
    // alice moves her own file into the share: bob sees it appear.
    ok(store
        .commit(&a, vec![CommitOp::Move { from: p("mine.txt"), to: p("team/mine.txt"), parent_rev: None }], vec![])
        .unwrap());
    assert_eq!(tree_of(store, &b), want(&["alice", "alice/mine.txt", "sub", "sub/x.txt"]));
    assert_eq!(tree_of(store, &a), want(&["team", "team/mine.txt"]));
    // A folder holding a mount cannot go into a share; a mount neither.
    ok(store.commit(&b, vec![CommitOp::Mkdir { path: p("box") }], vec![]).unwrap());
    ok(store
        .commit(&b, vec![CommitOp::Move { from: p("alice"), to: p("box/alice"), parent_rev: None }], vec![])
        .unwrap());
    let r = store.commit(&b, vec![CommitOp::Move { from: p("box"), to: p("box/alice/box"), parent_rev: None }], vec![]);
    assert!(r.unwrap().results[0].is_err());
    // Bytes bob writes into the share count against alice.
    let (a_used, b_used) = (store.user_info(a.user_id).unwrap().used, store.user_info(b.user_id).unwrap().used);
    let big = block(&[7u8; 1000]);
    store.add_blocks(b.user_id, std::slice::from_ref(&big)).unwrap();
    ok(store.commit(&b, vec![put("box/alice/big.bin", None, &big)], vec![]).unwrap());
    assert_eq!(store.user_info(a.user_id).unwrap().used, a_used + 1000);
    assert_eq!(store.user_info(b.user_id).unwrap().used, b_used);
    // Viewers may not write.
    store.share(&a, &p("team"), "bob", ShareRole::Viewer).unwrap();
    let r = store.commit(&b, vec![put("box/alice/new.txt", None, &blk)], vec![]).unwrap();
    assert!(matches!(&r.results[0], Err(Error::Client { code: ErrorCode::Forbidden, .. })), "{:?}", r.results[0]);
    // Revoked: gone from bob's tree, alice's untouched.
    let id = share.id;
    store.remove_member(&a, ShareId(id), Some("bob")).unwrap();
    assert_eq!(tree_of(store, &b), want(&["box", "sub", "sub/x.txt"]));
    assert_eq!(tree_of(store, &a), want(&["team", "team/big.bin", "team/mine.txt"]));
    assert!(store.shares(&b).unwrap().is_empty());
}

/// The trash: a folder deleted file by file (as a daemon does) is one item
/// standing for what was in it; a file on its own is another; restoring the
/// folder brings back all of it, and a path taken meanwhile is refused.
fn trash_lists_and_restores_deleted_items(store: Arc<dyn MetaStore>) {
    use ferry_shared::api::EntryKind;
    let store = &*store;
    let (a, b) = (caller(store, "alice", "laptop"), caller(store, "bob", "desk"));
    let (one, two) = (block(b"one"), block(b"second"));
    ok(store
        .commit(
            &a,
            vec![put("docs/a.txt", None, &one), put("docs/sub/b.txt", None, &two), put("solo.txt", None, &one)],
            vec![one.clone(), two.clone()],
        )
        .unwrap());
    assert!(store.trash(a.ns, 100).unwrap().is_empty());
    ok(store.commit(&a, vec![CommitOp::Delete { path: p("solo.txt"), parent_rev: None }], vec![]).unwrap());
    ok(store
        .commit(
            &a,
            vec![
                CommitOp::Delete { path: p("docs/sub/b.txt"), parent_rev: None },
                CommitOp::Rmdir { path: p("docs/sub"), parent_rev: None },
                CommitOp::Delete { path: p("docs/a.txt"), parent_rev: None },
                CommitOp::Rmdir { path: p("docs"), parent_rev: None },
            ],
            vec![],
        )
        .unwrap());
    let trash = store.trash(a.ns, 100).unwrap();
    let paths: Vec<_> = trash.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(paths, ["docs", "solo.txt"], "{trash:?}");
    let docs = &trash[0];
    assert_eq!((docs.kind, docs.items, docs.size), (EntryKind::Dir, 3, 3 + 6));
    assert_eq!((docs.user.as_str(), docs.device.as_str()), ("alice", "laptop"));
    assert_eq!((trash[1].kind, trash[1].size), (EntryKind::File, 3));
    assert_eq!(store.trash(a.ns, 1).unwrap().len(), 1);
    // Nobody else's trash shows it, or restores it.
    assert!(store.trash(b.ns, 100).unwrap().is_empty());
    assert!(matches!(store.restore_deleted(&b, &p("docs")), Err(Error::Client { code: ErrorCode::NotFound, .. })));

    let out = store.restore_deleted(&a, &p("docs")).unwrap();
    ok(out);
    assert_eq!(tree_of(store, &a), ["docs", "docs/a.txt", "docs/sub", "docs/sub/b.txt"].map(String::from).into());
    assert_eq!(store.file_version(a.ns, &p("docs/sub/b.txt"), None).unwrap().entry.size, 6);
    let paths: Vec<_> = store.trash(a.ns, 100).unwrap().into_iter().map(|t| t.path.to_string()).collect();
    assert_eq!(paths, ["solo.txt"]);
    // Another file moved to the path: the deleted one stays in the trash.
    // (A file written at the path is the deleted one's next revision.)
    ok(store.commit(&a, vec![put("other.txt", None, &two)], vec![]).unwrap());
    ok(store
        .commit(&a, vec![CommitOp::Move { from: p("other.txt"), to: p("solo.txt"), parent_rev: None }], vec![])
        .unwrap());
    match store.restore_deleted(&a, &p("solo.txt")) {
        Err(Error::Conflict { .. }) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("restored over the new solo.txt"),
    }
    assert!(matches!(store.restore_deleted(&a, &p("never")), Err(Error::Client { code: ErrorCode::NotFound, .. })));
}

/// A reader following the journal while several connections commit sees
/// every sequence exactly once, in order: none is skipped because a later
/// one committed first.
fn readers_never_skip_a_sequence(store: Arc<dyn MetaStore>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let c = caller(&*store, "rita", "d1");
    let b = block(b"journal");
    store.add_blocks(c.user_id, std::slice::from_ref(&b)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, c, done) = (Arc::clone(&store), c.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut cursor, mut next) = (0, 1);
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = store.changes(c.ns, Seq(cursor), 1000, false).unwrap();
                for ch in &page.changes {
                    assert_eq!(ch.seq, next, "after {cursor} the journal gave {} next", ch.seq);
                    next += 1;
                }
                cursor = page.cursor;
                if finished && !page.has_more {
                    return next - 1;
                }
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (store, c, b) = (Arc::clone(&store), c.clone(), b.clone());
            std::thread::spawn(move || {
                for i in 0..50 {
                    ok(store.commit(&c, vec![put(&format!("w{t}-{i}"), None, &b)], Vec::new()).unwrap());
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    done.store(true, Ordering::SeqCst);
    assert_eq!(reader.join().unwrap(), 200);
}

/// Two shares fanning out into the same members at once: every member's
/// journal holds every change of both, gap-free, and nothing deadlocks.
fn overlapping_shares_fan_out_at_once(store: Arc<dyn MetaStore>) {
    use ferry_shared::api::ShareRole;
    let (a, b) = (caller(&*store, "amy", "a"), caller(&*store, "ben", "b"));
    let (m1, m2) = (caller(&*store, "mia", "m"), caller(&*store, "max", "m"));
    let blk = block(b"fan");
    for owner in [&a, &b] {
        store.add_blocks(owner.user_id, std::slice::from_ref(&blk)).unwrap();
        ok(store.commit(owner, vec![CommitOp::Mkdir { path: p("team") }], vec![]).unwrap());
        for m in ["mia", "max"] {
            store.share(owner, &p("team"), m, ShareRole::Editor).unwrap();
        }
    }
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .flat_map(|owner| (0..2).map(move |t| (owner.clone(), t)))
        .map(|(owner, t)| {
            let (store, blk) = (Arc::clone(&store), blk.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    ok(store.commit(&owner, vec![put(&format!("team/{t}-{i}"), None, &blk)], Vec::new()).unwrap());
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    for m in [&m1, &m2] {
        let changes = store.changes(m.ns, Seq(0), 10_000, false).unwrap().changes;
        let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gap-free");
        let files = tree_of(&*store, m).into_iter().filter(|p| p.matches('/').count() == 1).count();
        assert_eq!(files, 100, "both shares' 50 files each");
    }
}

/// Every live path of a user's tree, as listed folder by folder.
fn listed(store: &dyn MetaStore, c: &Caller) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut folders = vec![RelPath::root()];
    while let Some(folder) = folders.pop() {
        for e in store.list_folder(c.ns, &folder).unwrap() {
            if e.kind == ferry_shared::api::EntryKind::Dir {
                folders.push(e.path.clone());
            }
            out.insert(e.path.to_string());
        }
    }
    out
}

/// A member renames their mount of a share while its owner writes into
/// it, both at once: every change reaches the member's journal at the
/// path the mount had when it was made, so replaying the journal gives
/// the tree the member lists.
fn mounts_move_while_their_share_is_written(store: Arc<dyn MetaStore>) {
    use ferry_shared::api::ShareRole;
    let (amy, mia) = (caller(&*store, "amy", "a"), caller(&*store, "mia", "m"));
    let blk = block(b"moving mount");
    for c in [&amy, &mia] {
        store.add_blocks(c.user_id, std::slice::from_ref(&blk)).unwrap();
    }
    ok(store.commit(&amy, vec![CommitOp::Mkdir { path: p("team") }], vec![]).unwrap());
    store.share(&amy, &p("team"), "mia", ShareRole::Editor).unwrap();
    let owner = (0..2)
        .map(|t| {
            let (store, amy, blk) = (Arc::clone(&store), amy.clone(), blk.clone());
            std::thread::spawn(move || {
                for i in 0..30 {
                    ok(store.commit(&amy, vec![put(&format!("team/{t}-{i}"), None, &blk)], Vec::new()).unwrap());
                }
            })
        })
        .collect::<Vec<_>>();
    let member = {
        let (store, mia, blk) = (Arc::clone(&store), mia.clone(), blk.clone());
        std::thread::spawn(move || {
            let mut at = "team".to_owned();
            for i in 0..60 {
                // A new name each time: a change journaled at an old one
                // would stay in the replayed tree.
                let to = &format!("m{i}");
                let mv = CommitOp::Move { from: p(&at), to: p(to), parent_rev: None };
                ok(store.commit(&mia, vec![mv], Vec::new()).unwrap());
                ok(store.commit(&mia, vec![put(&format!("{to}/m-{i}"), None, &blk)], Vec::new()).unwrap());
                ok(store.commit(&mia, vec![put(&format!("own-{i}"), None, &blk)], Vec::new()).unwrap());
                at = to.to_owned();
            }
        })
    };
    owner.into_iter().chain([member]).for_each(|t| t.join().unwrap());
    let changes = store.changes(mia.ns, Seq(0), 10_000, false).unwrap().changes;
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gap-free");
    let tree = listed(&*store, &mia);
    assert_eq!(tree_of(&*store, &mia), tree, "the journal replays to the tree");
    assert_eq!(tree.iter().filter(|p| p.starts_with("m59/")).count(), 120, "60 of amy's, 60 of mia's");
}

/// One `#[test]` per check of the suite, each on a fresh store that
/// `$make` returns (with a guard that keeps it alive).
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            conformance!(@each $make;
                block_lists_are_bounded,
                concurrent_commits_form_one_journal,
                writes_at_once_fail_alone,
                same_head_one_winner,
                blocks_are_per_account,
                many_blocks_at_once,
                operations_fail_alone,
                journal_block_lists_as_edits,
                pending_uploads_follow_commits,
                shared_folders_in_every_members_journal,
                trash_lists_and_restores_deleted_items,
                readers_never_skip_a_sequence,
                overlapping_shares_fan_out_at_once,
                mounts_move_while_their_share_is_written,
            );
        }
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let Some((_guard, store)) = $make else { return };
                super::$check(store);
            }
        )*
    };
}

conformance!(sqlite, Some(super::sqlite()));
conformance!(postgres, super::postgres());

/// Connections the database server ended while idle in the pool (a
/// restart) cost writes nothing: each runs again on a new connection.
#[test]
fn postgres_writes_outlive_broken_connections() {
    let Some(cluster) = crate::testing::PgCluster::shared().unwrap() else {
        crate::testing::skip("the PostgreSQL metadata suite", "no PostgreSQL binaries (initdb, pg_ctl)");
        return;
    };
    let url = cluster.fresh_db().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(super::postgres::PostgresStore::connect(&url).unwrap());
    let c = caller(&*store, "frank", "a");
    let b = block(b"content");
    store.add_blocks(c.user_id, std::slice::from_ref(&b)).unwrap();
    // Several connections in the pool: commits side by side.
    let commit_all = |round: usize| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (store, c, b) = (Arc::clone(&store), c.clone(), b.clone());
                std::thread::spawn(move || {
                    let out = store.commit(&c, vec![put(&format!("r{round}/t{t}"), None, &b)], Vec::new()).unwrap();
                    out.results.into_iter().for_each(|r| {
                        r.unwrap();
                    });
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    };
    commit_all(0);
    cluster.break_connections(&url).unwrap();
    commit_all(1);
    // 8 files in 2 folders, each once.
    assert_eq!(store.cursor(c.ns).unwrap(), Seq(10));
}

/// A fresh database of the tests' PostgreSQL cluster (`None`: skipped).
fn postgres() -> Option<(Arc<crate::testing::PgCluster>, Arc<dyn MetaStore>)> {
    let Some(cluster) = crate::testing::PgCluster::shared().unwrap() else {
        crate::testing::skip("the PostgreSQL metadata suite", "no PostgreSQL binaries (initdb, pg_ctl)");
        return None;
    };
    let url = cluster.fresh_db().unwrap();
    let store = super::postgres::PostgresStore::connect(&url).unwrap();
    Some((cluster, Arc::new(store)))
}
