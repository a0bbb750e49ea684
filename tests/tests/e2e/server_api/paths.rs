//! Path rejection: invalid paths refused by the commit and the file API alike;
//! names other platforms cannot store are ordinary names.

use ferry_tests::{Client, Server};
use serde_json::json;

use super::{
    MTIME, TestResult, changes, cursor_of, download, download_ok, expect_error, put_file, revisions_get,
    revisions_post, simple_upload,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_are_rejected() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let id = alice.upload_block(b"payload").await?;
    let long = "x".repeat(300);
    let bad_paths = ["../x", "a//b", "a/./b", "a\u{0}b", "a\u{1b}b", long.as_str(), "a/../../etc/passwd", "dir/"];
    for p in bad_paths {
        let ops = [
            json!({"op": "put", "path": p, "parent_rev": null, "size": 7, "mtime": MTIME, "blocks": {"full": [id]}}),
            json!({"op": "mkdir", "path": p}),
            json!({"op": "delete", "path": p, "parent_rev": null}),
            json!({"op": "move", "from": "ok.txt", "to": p, "parent_rev": null}),
        ];
        for op in ops {
            let resp = alice.post("/commit").json(&json!({ "ops": [op] })).send().await?;
            let e = expect_error(resp, 400, "bad_request").await?;
            assert!(e.message.contains("path"), "the message says what is wrong: {}", e.message);
        }
    }
    // Nothing was created.
    let all = changes(&alice, 0, 1000).await?;
    assert!(all.changes.is_empty() && all.cursor == 0, "{all:?}");

    // The file API answers invalid_path.
    let evil = "../etc/passwd";
    expect_error(download(&alice, evil).await?, 400, "invalid_path").await?;
    expect_error(simple_upload(&alice, evil, b"root::0:0").await?, 400, "invalid_path").await?;
    expect_error(simple_upload(&alice, "a//b", b"x").await?, 400, "invalid_path").await?;
    expect_error(revisions_get(&alice, evil).await?, 400, "invalid_path").await?;
    expect_error(revisions_get(&alice, "/").await?, 400, "invalid_path").await?;
    expect_error(revisions_post(&alice, evil).await?, 400, "bad_request").await?;
    // Malformed JSON and a wrong method get the JSON error shape too.
    let resp = alice.post("/commit").header("content-type", "application/json").body("{not json").send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/commit").json(&json!({"ops": [{"op": "teleport", "path": "a"}]})).send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/files/upload?uploadType=resumable").json(&json!({"path": evil, "size": 3})).send().await?;
    expect_error(resp, 400, "bad_request").await?;
    let resp = alice.post("/files/upload?uploadType=resumable").json(&json!({"path": "", "size": 3})).send().await?;
    expect_error(resp, 400, "invalid_path").await?;
    let all = changes(&alice, 0, 1000).await?;
    assert!(all.changes.is_empty() && all.cursor == 0, "{all:?}");
    // A valid path still works (the rejections are about the paths).
    put_file(&alice, "ok.txt", b"payload", None).await?;
    assert_eq!(cursor_of(&alice).await?, 1);
    // The namespace is platform-neutral: names Windows cannot store are
    // ordinary names (a client whose disk cannot hold one keeps it off).
    let foreign =
        ["What?.txt", "Meeting: notes.md", "say \"hi\".txt", "CON", "aux.txt", "dot.", "space ", "a\\b", "<|*>"];
    for name in foreign {
        put_file(&alice, name, b"payload", None).await?;
        assert_eq!(download_ok(&alice, name).await?, b"payload", "{name}");
    }
    let all = changes(&alice, 1, 1000).await?;
    let names: Vec<&str> = all.changes.iter().map(|c| c.entry.path.as_str()).collect();
    assert_eq!(names, foreign);
    Ok(())
}
