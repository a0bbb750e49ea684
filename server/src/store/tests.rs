//! The metadata store suite: every `MetaStore` backend must pass it (today
//! SQLite; PostgreSQL joins by adding one `#[test]` that calls these).

use std::sync::Arc;

use ferry_shared::BlockId;
use ferry_shared::api::{BlockList, CommitOp, ErrorCode};
use ferry_shared::path::RelPath;

use super::sqlite::SqliteStore;
use super::{Caller, MetaStore, NewBlock};
use crate::blockstore::BlockLoc;
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
    assert_eq!(store.cursor(c.ns).unwrap(), 808);
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.changes(c.ns, cursor, 100).unwrap();
        seen.extend(page.changes.iter().map(|ch| ch.seq));
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, (1..=808).collect::<Vec<_>>());
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
/// another account has it.
fn blocks_are_per_account(store: Arc<dyn MetaStore>) {
    let a = caller(&*store, "carol", "a");
    let d = caller(&*store, "dave", "a");
    let secret = block(b"carol's secret");
    store.add_blocks(a.user_id, std::slice::from_ref(&secret)).unwrap();
    assert!(store.block_stored(&secret.id).unwrap());
    assert_eq!(store.missing_blocks(d.user_id, &[secret.id]).unwrap(), vec![secret.id]);
    let r = store.commit(&d, vec![put("stolen", None, &secret)], Vec::new()).unwrap();
    assert!(matches!(r.results[0], Err(Error::MissingBlocks { .. })));
    let over = NewBlock { id: BlockId::of(b"big"), size: u32::MAX, stored_size: 3, loc: BlockLoc::Loose };
    store.add_blocks(d.user_id, std::slice::from_ref(&over)).unwrap();
    let big = CommitOp::Put {
        path: RelPath::parse("big").unwrap(),
        parent_rev: None,
        size: u64::from(u32::MAX) * 2,
        mtime: 0,
        executable: false,
        blocks: BlockList::Full(vec![over.id, over.id]),
    };
    let r = store.commit(&d, vec![big], Vec::new()).unwrap();
    assert!(matches!(&r.results[0], Err(e) if e.code() == ErrorCode::QuotaExceeded), "{:?}", r.results[0]);
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn MetaStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
    (dir, Arc::new(store))
}

#[test]
fn sqlite_concurrent_commits_form_one_journal() {
    concurrent_commits_form_one_journal(sqlite().1);
}

#[test]
fn sqlite_same_head_one_winner() {
    same_head_one_winner(sqlite().1);
}

#[test]
fn sqlite_blocks_are_per_account() {
    blocks_are_per_account(sqlite().1);
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
    assert_eq!(store.cursor(ns).unwrap(), 1);
}
