//! Commit semantics: put, modify and a concurrent conflict, delete, move, mkdir
//! and rmdir, case and normalization twins, batches of 1000 and with one
//! failure, restoring an old revision, block-list edits.

use anyhow::Context;
use ferry_shared::api::{
    BlockEdit, BlockList, ChangeOp, CommitOp, CommitResponse, EntryKind, ErrorCode, ListRevisionsResponse,
};
use ferry_shared::block;
use ferry_shared::{BlockId, RelPath};
use ferry_tests::{Client, Server, pseudo_random};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::RANGE;
use serde_json::json;

use super::{
    MTIME, TestResult, changes, commit_one, cursor_of, download, download_ok, expect_error, expect_json, ok_entry,
    op_error, put_file, put_op, revisions_get, rp, with_query,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_put_modify_and_concurrent_conflict() -> TestResult {
    let server = Server::start()?;
    let dev1 = Client::user(&server, "alice", "dev1").await?;
    let dev2 = Client::user(&server, "alice", "dev2").await?;

    // New file: parent_rev null.
    let v1 = b"version one".to_vec();
    let e1 = put_file(&dev1, "notes/doc.txt", &v1, None).await?;
    assert_eq!(e1.path.as_str(), "notes/doc.txt");
    assert_eq!((e1.kind, e1.size, e1.deleted), (EntryKind::File, v1.len() as u64, false));
    assert_eq!(e1.mtime, MTIME);
    assert_eq!(e1.device, "dev1");
    assert_eq!(e1.hash, block::content_hash(v1.len() as u64, [&BlockId::of(&v1)]));
    assert_eq!(download_ok(&dev2, "notes/doc.txt").await?, v1);

    // Modify with the right parent_rev.
    let v2 = b"version two, a bit longer".to_vec();
    let e2 = put_file(&dev2, "notes/doc.txt", &v2, Some(e1.rev)).await?;
    assert_eq!(e2.id, e1.id, "a modification keeps the file id");
    assert!(e2.rev > e1.rev);
    assert_eq!(e2.device, "dev2");
    assert_eq!(download_ok(&dev1, "notes/doc.txt").await?, v2);

    // A stale parent_rev is a conflict naming the current head.
    let r = dev1.put_small("notes/doc.txt", b"based on v1", Some(e1.rev)).await?;
    let e = op_error(&r, 409, ErrorCode::Conflict);
    let head = e.head.as_ref().context("conflict without head")?;
    assert_eq!((head.id, head.rev, head.size), (e2.id, e2.rev, e2.size));
    assert_eq!(download_ok(&dev1, "notes/doc.txt").await?, v2);

    // Put at an existing path with parent_rev null: conflict.
    let r = dev1.put_small("notes/doc.txt", b"I think this is new", None).await?;
    let e = op_error(&r, 409, ErrorCode::Conflict);
    assert_eq!(e.head.as_ref().context("head")?.rev, e2.rev);

    // Two devices race against the same head: exactly one wins.
    let (a, b) = (b"device one's edit".to_vec(), b"device two's edit, different".to_vec());
    let (ida, idb) = (dev1.upload_block(&a).await?, dev2.upload_block(&b).await?);
    let (ra, rb) = tokio::join!(
        dev1.commit(vec![put_op("notes/doc.txt", Some(e2.rev), a.len(), vec![ida])]),
        dev2.commit(vec![put_op("notes/doc.txt", Some(e2.rev), b.len(), vec![idb])]),
    );
    let (ra, rb) = (ra?.results.remove(0), rb?.results.remove(0));
    let statuses = [ra.status, rb.status];
    assert!(statuses == [200, 409] || statuses == [409, 200], "{ra:?} {rb:?}");
    let (winner, loser, content, device) =
        if ra.status == 200 { (&ra, &rb, &a, "dev1") } else { (&rb, &ra, &b, "dev2") };
    let won = ok_entry(winner);
    assert_eq!(won.device, device);
    let e = op_error(loser, 409, ErrorCode::Conflict);
    let head = e.head.as_ref().context("conflict without head")?;
    assert_eq!((head.id, head.rev, &head.hash, &head.device), (won.id, won.rev, &won.hash, &won.device));
    assert_eq!(&download_ok(&dev1, "notes/doc.txt").await?, content);
    let revs: ListRevisionsResponse = expect_json(revisions_get(&dev1, "notes/doc.txt").await?, 200).await?;
    assert_eq!(revs.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![won.rev, e2.rev, e1.rev]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_delete_move_mkdir_rmdir() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;

    // Delete.
    let f = put_file(&alice, "a/b/gone.txt", b"short-lived", None).await?;
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b/gone.txt"), parent_rev: Some(f.rev + 1000) }).await?;
    assert_eq!(op_error(&r, 409, ErrorCode::Conflict).head.as_ref().context("head")?.rev, f.rev);
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b/gone.txt"), parent_rev: Some(f.rev) }).await?;
    let d = ok_entry(&r);
    assert!(d.deleted && d.rev > f.rev && d.id == f.id);
    expect_error(download(&alice, "a/b/gone.txt").await?, 404, "not_found").await?;
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b/gone.txt"), parent_rev: None }).await?;
    op_error(&r, 404, ErrorCode::NotFound);
    // Deleting a folder with `delete` is refused.
    let r = commit_one(&alice, CommitOp::Delete { path: rp("a/b"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::Conflict);

    // Move to another folder (created on the way), then rename in place.
    let content = pseudo_random(5000, 11);
    let x = put_file(&alice, "x.txt", &content, None).await?;
    let r =
        commit_one(&alice, CommitOp::Move { from: rp("x.txt"), to: rp("dir2/y.txt"), parent_rev: Some(x.rev) }).await?;
    let moved = ok_entry(&r).clone();
    assert_eq!(moved.id, x.id, "a move keeps the file id");
    assert_ne!(moved.rev, x.rev, "a move makes a new revision");
    assert_eq!((moved.path.as_str(), &moved.hash, moved.size), ("dir2/y.txt", &x.hash, x.size));
    expect_error(download(&alice, "x.txt").await?, 404, "not_found").await?;
    assert_eq!(download_ok(&alice, "dir2/y.txt").await?, content);
    let r =
        commit_one(&alice, CommitOp::Move { from: rp("dir2/y.txt"), to: rp("dir2/z.txt"), parent_rev: Some(x.rev) })
            .await?;
    op_error(&r, 409, ErrorCode::Conflict);
    let r = commit_one(
        &alice,
        CommitOp::Move { from: rp("dir2/y.txt"), to: rp("dir2/z.txt"), parent_rev: Some(moved.rev) },
    )
    .await?;
    let renamed = ok_entry(&r).clone();
    assert_eq!(renamed.id, x.id);
    assert!(renamed.rev > moved.rev);
    assert_eq!(download_ok(&alice, "dir2/z.txt").await?, content);
    expect_error(download(&alice, "dir2/y.txt").await?, 404, "not_found").await?;
    // Moving onto an existing name is a conflict.
    put_file(&alice, "dir2/taken.txt", b"taken", None).await?;
    let r = commit_one(&alice, CommitOp::Move { from: rp("dir2/z.txt"), to: rp("dir2/taken.txt"), parent_rev: None })
        .await?;
    op_error(&r, 409, ErrorCode::Conflict);
    // The journal tells where it came from.
    let all = changes(&alice, 0, 1000).await?;
    let moves: Vec<_> = all.changes.iter().filter(|c| c.op == ChangeOp::Move).collect();
    assert_eq!(moves.len(), 2, "{all:?}");
    assert_eq!(moves[0].from.as_ref().map(RelPath::as_str), Some("x.txt"));
    assert_eq!(moves[0].entry.path.as_str(), "dir2/y.txt");
    assert_eq!(moves[1].from.as_ref().map(RelPath::as_str), Some("dir2/y.txt"));
    assert_eq!(moves[1].entry.path.as_str(), "dir2/z.txt");
    // History follows the file through moves.
    let revs: ListRevisionsResponse = expect_json(revisions_get(&alice, "dir2/z.txt").await?, 200).await?;
    assert_eq!(revs.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![renamed.rev, moved.rev, x.rev]);

    // Mkdir is idempotent.
    let before = cursor_of(&alice).await?;
    let m1 = ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("docs") }).await?).clone();
    assert_eq!((m1.kind, m1.path.as_str()), (EntryKind::Dir, "docs"));
    let m2 = ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("docs") }).await?).clone();
    assert_eq!((m2.id, m2.rev), (m1.id, m1.rev));
    assert_eq!(cursor_of(&alice).await?, before + 1, "a repeated mkdir must not journal anything");
    // Mkdir where a file is: conflict.
    let r = commit_one(&alice, CommitOp::Mkdir { path: rp("dir2/taken.txt") }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    // Putting a file where a folder is: conflict.
    let r = alice.put_small("docs", b"not a folder", None).await?;
    op_error(&r, 409, ErrorCode::Conflict);

    // Rmdir: refused while not empty, fine once empty.
    let sub = ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("docs/sub") }).await?).clone();
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("docs"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::NotEmpty);
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("docs/sub"), parent_rev: Some(sub.rev) }).await?;
    assert!(ok_entry(&r).deleted);
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("docs"), parent_rev: Some(m1.rev) }).await?;
    let gone = ok_entry(&r);
    assert!(gone.deleted && gone.kind == EntryKind::Dir);
    // Rmdir on a file is refused.
    let r = commit_one(&alice, CommitOp::Rmdir { path: rp("dir2/taken.txt"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    assert_eq!(download_ok(&alice, "dir2/taken.txt").await?, b"taken");
    let tail = changes(&alice, before, 1000).await?;
    let ops: Vec<ChangeOp> = tail.changes.iter().map(|c| c.op).collect();
    assert_eq!(ops, vec![ChangeOp::Mkdir, ChangeOp::Mkdir, ChangeOp::Rmdir, ChangeOp::Rmdir]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_refuses_case_and_normalization_twins() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;

    let readme = put_file(&alice, "README.md", b"the readme", None).await?;
    let r = alice.put_small("Readme.md", b"a case twin", None).await?;
    let e = op_error(&r, 409, ErrorCode::Conflict);
    let head = e.head.as_ref().context("head")?;
    assert_eq!((head.id, head.rev), (readme.id, readme.rev));
    assert_eq!(head.path.as_str(), "README.md", "the head must name the existing file's real path");
    let r = commit_one(&alice, CommitOp::Mkdir { path: rp("readme.MD") }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    put_file(&alice, "other.txt", b"other", None).await?;
    let r = commit_one(&alice, CommitOp::Move { from: rp("other.txt"), to: rp("ReadMe.md"), parent_rev: None }).await?;
    op_error(&r, 409, ErrorCode::Conflict);
    assert_eq!(download_ok(&alice, "README.md").await?, b"the readme");
    assert_eq!(download_ok(&alice, "other.txt").await?, b"other");

    // NFC name exists; its NFD spelling is the same name.
    let nfc = "caf\u{e9}.txt";
    let nfd = "cafe\u{301}.txt";
    let cafe = put_file(&alice, nfc, b"coffee", None).await?;
    let id = alice.upload_block(b"decomposed coffee").await?;
    let raw = json!({"ops": [{"op": "put", "path": nfd, "parent_rev": null, "size": 17, "mtime": MTIME,
        "blocks": {"full": [id]}}]});
    let resp: CommitResponse = expect_json(alice.post("/commit").json(&raw).send().await?, 200).await?;
    let e = op_error(&resp.results[0], 409, ErrorCode::Conflict);
    assert_eq!(e.head.as_ref().context("head")?.id, cafe.id);
    // An NFD file name in another case, under an NFD folder that is the NFC one.
    let raw = json!({"ops": [{"op": "put", "path": "CAFE\u{301}.TXT", "parent_rev": null, "size": 17, "mtime": MTIME,
        "blocks": {"full": [id]}}]});
    let resp: CommitResponse = expect_json(alice.post("/commit").json(&raw).send().await?, 200).await?;
    op_error(&resp.results[0], 409, ErrorCode::Conflict);
    // The NFD spelling reaches the NFC file.
    assert_eq!(download_ok(&alice, nfd).await?, b"coffee");
    let all = changes(&alice, 0, 1000).await?;
    let names: Vec<&str> = all.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(names, vec!["README.md", "other.txt", nfc], "twins must not reach the journal");

    // A case-only rename of the file itself is allowed.
    let r =
        commit_one(&alice, CommitOp::Move { from: rp("README.md"), to: rp("Readme.md"), parent_rev: Some(readme.rev) })
            .await?;
    assert_eq!(ok_entry(&r).id, readme.id);
    assert_eq!(ok_entry(&r).path.as_str(), "Readme.md");
    let renamed_rev = ok_entry(&r).rev;

    // Changing the file through another spelling of its path changes the file
    // under its stored name: no device ever sees a second spelling.
    let r = alice.put_small("README.MD", b"edited via another case", Some(renamed_rev)).await?;
    assert_eq!(ok_entry(&r).id, readme.id);
    assert_eq!(ok_entry(&r).path.as_str(), "Readme.md");
    let r = commit_one(&alice, CommitOp::Mkdir { path: rp("Docs") }).await?;
    ok_entry(&r);
    let r = alice.put_small("DOCS/inner.txt", b"inner", None).await?;
    assert_eq!(ok_entry(&r).path.as_str(), "Docs/inner.txt");
    let tail = changes(&alice, all.cursor, 1000).await?;
    let names: Vec<&str> = tail.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(names, vec!["Readme.md", "Readme.md", "Docs", "Docs/inner.txt"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_batch_of_1000_puts_in_one_request() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let contents: Vec<Vec<u8>> = (0..1000).map(|i| format!("small file number {i}\n").into_bytes()).collect();
    let ids: Vec<BlockId> =
        futures_util::stream::iter(contents.iter()).map(|c| alice.upload_block(c)).buffered(16).try_collect().await?;
    let ops: Vec<CommitOp> = contents
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (c, id))| put_op(&format!("batch/f{i:04}.txt"), None, c.len(), vec![*id]))
        .collect();
    let before = cursor_of(&alice).await?;
    // One request.
    let resp = alice.commit(ops).await?;
    assert_eq!(resp.results.len(), 1000);
    let mut file_ids = std::collections::HashSet::new();
    for (i, r) in resp.results.iter().enumerate() {
        let e = ok_entry(r);
        assert_eq!(e.path.as_str(), format!("batch/f{i:04}.txt"));
        assert_eq!(e.size, contents[i].len() as u64);
        assert!(file_ids.insert(e.id), "duplicate file id");
    }
    // Results are in order: revisions increase.
    assert!(resp.results.windows(2).all(|w| w[0].entry.as_ref().unwrap().rev < w[1].entry.as_ref().unwrap().rev));
    // 1000 adds and the folder's mkdir.
    let page = changes(&alice, before, 5000).await?;
    assert_eq!(page.changes.len(), 1001);
    assert_eq!(page.changes[0].op, ChangeOp::Mkdir);
    assert_eq!(page.changes.iter().filter(|c| c.op == ChangeOp::Add).count(), 1000);
    assert_eq!(page.cursor, before + 1001);
    for i in [0usize, 1, 499, 998, 999] {
        assert_eq!(download_ok(&alice, &format!("batch/f{i:04}.txt")).await?, contents[i]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_batch_with_one_failure_keeps_the_others() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let existing = put_file(&alice, "exists.txt", b"original", None).await?;
    let (n1, n2, clash) = (b"new one".to_vec(), b"new two".to_vec(), b"clash".to_vec());
    let (id1, id2, idc) =
        (alice.upload_block(&n1).await?, alice.upload_block(&n2).await?, alice.upload_block(&clash).await?);
    let never = BlockId::of(b"never uploaded");
    let before = cursor_of(&alice).await?;
    let resp = alice
        .commit(vec![
            put_op("new1.txt", None, n1.len(), vec![id1]),
            put_op("exists.txt", None, clash.len(), vec![idc]),
            CommitOp::Delete { path: rp("no-such-file.txt"), parent_rev: None },
            CommitOp::Mkdir { path: rp("newdir") },
            put_op("sub/missing.txt", None, 14, vec![never]),
            put_op("newdir/new2.txt", None, n2.len(), vec![id2]),
        ])
        .await?;
    let r = &resp.results;
    assert_eq!(r.len(), 6);
    ok_entry(&r[0]);
    assert_eq!(op_error(&r[1], 409, ErrorCode::Conflict).head.as_ref().context("head")?.rev, existing.rev);
    op_error(&r[2], 404, ErrorCode::NotFound);
    ok_entry(&r[3]);
    assert_eq!(op_error(&r[4], 400, ErrorCode::MissingBlocks).missing, vec![never]);
    ok_entry(&r[5]);
    assert_eq!(download_ok(&alice, "new1.txt").await?, n1);
    assert_eq!(download_ok(&alice, "newdir/new2.txt").await?, n2);
    assert_eq!(download_ok(&alice, "exists.txt").await?, b"original");
    // The failed put did not leave its folder behind.
    let tail = changes(&alice, before, 1000).await?;
    let paths: Vec<&str> = tail.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(paths, vec!["new1.txt", "newdir", "newdir/new2.txt"]);
    assert_eq!(tail.cursor, before + 3);
    expect_error(download(&alice, "sub/missing.txt").await?, 404, "not_found").await?;
    // "sub" does not exist, so making it is a new journal record.
    ok_entry(&commit_one(&alice, CommitOp::Mkdir { path: rp("sub") }).await?);
    assert_eq!(cursor_of(&alice).await?, before + 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_restore_old_revision() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let v1 = pseudo_random(3000, 1);
    let v2 = pseudo_random(5000, 2);
    let e1 = put_file(&alice, "r.bin", &v1, None).await?;
    let e2 = put_file(&alice, "r.bin", &v2, Some(e1.rev)).await?;
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: e1.rev }).await?;
    let e3 = ok_entry(&r).clone();
    assert_eq!(e3.id, e1.id);
    assert!(e3.rev > e2.rev, "a restore makes a new head");
    assert_eq!((e3.size, &e3.hash), (e1.size, &e1.hash));
    assert_eq!(download_ok(&alice, "r.bin").await?, v1);
    // History is kept: all three revisions, and the middle one still downloads.
    let revs: ListRevisionsResponse = expect_json(revisions_get(&alice, "r.bin").await?, 200).await?;
    assert_eq!(revs.revisions.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![e3.rev, e2.rev, e1.rev]);
    let url = with_query("/files/download", &[("path", "r.bin"), ("rev", &e2.rev.to_string())]);
    let resp = alice.get(&url).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await?.to_vec(), v2);
    let last = changes(&alice, 0, 1000).await?.changes.pop().context("journal")?;
    assert_eq!(last.op, ChangeOp::Modify);
    assert_eq!(last.entry.rev, e3.rev);
    assert_eq!(last.blocks.as_ref().map(|b| b.iter().map(|r| r.id).collect::<Vec<_>>()), Some(vec![BlockId::of(&v1)]));

    // Restore of a deleted file brings it back.
    let r = commit_one(&alice, CommitOp::Delete { path: rp("r.bin"), parent_rev: Some(e3.rev) }).await?;
    let deleted = ok_entry(&r).clone();
    expect_error(download(&alice, "r.bin").await?, 404, "not_found").await?;
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: e2.rev }).await?;
    assert!(!ok_entry(&r).deleted);
    assert_eq!(download_ok(&alice, "r.bin").await?, v2);
    // A deletion, or another file's revision, cannot be restored.
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: deleted.rev }).await?;
    op_error(&r, 400, ErrorCode::BadRequest);
    let other = put_file(&alice, "other.bin", b"other", None).await?;
    let r = commit_one(&alice, CommitOp::Restore { path: rp("r.bin"), rev: other.rev }).await?;
    op_error(&r, 404, ErrorCode::NotFound);
    assert_eq!(download_ok(&alice, "r.bin").await?, v2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_block_list_edit_and_size_mismatch() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let parts: Vec<Vec<u8>> = (0..4).map(|i| pseudo_random(40_000 + i * 1000, 100 + i as u64)).collect();
    let mut ids = Vec::new();
    for p in &parts {
        ids.push(alice.upload_block(p).await?);
    }
    let (a, b, c, d) = (&parts[0], &parts[1], &parts[2], &parts[3]);
    let full = [a.as_slice(), b, c].concat();
    let r = commit_one(&alice, put_op("big.bin", None, full.len(), ids[..3].to_vec())).await?;
    let e1 = ok_entry(&r).clone();
    assert_eq!(download_ok(&alice, "big.bin").await?, full);

    // Replace the middle block: copy A, add D, copy C.
    let edited = [a.as_slice(), d, c].concat();
    let op = CommitOp::Put {
        path: rp("big.bin"),
        parent_rev: Some(e1.rev),
        size: edited.len() as u64,
        mtime: MTIME,
        executable: true,
        blocks: BlockList::Edit(vec![
            BlockEdit::Copy { start: 0, count: 1 },
            BlockEdit::Add(vec![ids[3]]),
            BlockEdit::Copy { start: 2, count: 1 },
        ]),
    };
    let r = commit_one(&alice, op).await?;
    let e2 = ok_entry(&r).clone();
    assert_eq!(e2.size, edited.len() as u64);
    assert!(e2.executable);
    assert_eq!(e2.hash, block::content_hash(edited.len() as u64, [&ids[0], &ids[3], &ids[2]]));
    assert_eq!(download_ok(&alice, "big.bin").await?, edited);
    let last = changes(&alice, 0, 1000).await?.changes.pop().context("journal")?;
    let refs = last.blocks.context("blocks in the change")?;
    assert_eq!(
        refs.iter().map(|r| (r.id, r.size as usize)).collect::<Vec<_>>(),
        vec![(ids[0], a.len()), (ids[3], d.len()), (ids[2], c.len())]
    );
    // Ranges across the edited blocks come out right too.
    let start = a.len() - 10;
    let end = a.len() + d.len() + 10;
    let resp = alice.get("/files/download?path=big.bin").header(RANGE, format!("bytes={start}-{end}")).send().await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await?.to_vec(), edited[start..=end]);

    // Copying past the parent's end is refused; so is an edit without a parent.
    let bad = CommitOp::Put {
        path: rp("big.bin"),
        parent_rev: Some(e2.rev),
        size: 0,
        mtime: MTIME,
        executable: false,
        blocks: BlockList::Edit(vec![BlockEdit::Copy { start: 2, count: 5 }]),
    };
    op_error(&commit_one(&alice, bad).await?, 400, ErrorCode::BadRequest);
    let orphan = CommitOp::Put {
        path: rp("new.bin"),
        parent_rev: None,
        size: a.len() as u64,
        mtime: MTIME,
        executable: false,
        blocks: BlockList::Edit(vec![BlockEdit::Add(vec![ids[0]])]),
    };
    op_error(&commit_one(&alice, orphan).await?, 400, ErrorCode::BadRequest);

    // Size that does not match the blocks.
    let r = commit_one(&alice, put_op("wrong-size.bin", None, a.len() + 1, vec![ids[0]])).await?;
    op_error(&r, 400, ErrorCode::BadRequest);
    let r = commit_one(&alice, put_op("big.bin", Some(e2.rev), 1, vec![ids[0]])).await?;
    op_error(&r, 400, ErrorCode::BadRequest);
    expect_error(download(&alice, "wrong-size.bin").await?, 404, "not_found").await?;
    assert_eq!(download_ok(&alice, "big.bin").await?, edited);
    Ok(())
}
