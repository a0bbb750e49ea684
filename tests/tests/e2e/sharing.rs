//! Folders shared between users, end to end: the real server, two users'
//! daemons, the `ferry share` family of commands. An editor's changes go
//! both ways; a viewer's stay with the viewer (kept outside the share) and
//! never reach the owner; revoking while the recipient is offline, leaving,
//! and removing the shared folder on the recipient's disk take it off their
//! devices and nothing off the owner's.

use std::path::Path;
use std::time::Duration;

use ferry_shared::api::ShareList;
use ferry_tests::{Client, Daemon, Server, snapshot, wait_until};

const T: Duration = Duration::from_secs(60);

struct Two {
    server: Server,
    a: Daemon,
    b: Daemon,
    _dir: tempfile::TempDir,
}

impl Two {
    /// alice's device A and bob's device B; alice has `Team/plan.txt`,
    /// `Team/sub/x.txt` and `notes.txt`.
    fn start() -> Two {
        let server = Server::start().expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Daemon::start(&server, "alice", "A", dir.path()).expect("daemon A");
        let b = Daemon::start(&server, "bob", "B", dir.path()).expect("daemon B");
        let t = Two { server, a, b, _dir: dir };
        write(&t.a.path("Team/plan.txt"), b"alice's plan");
        write(&t.a.path("Team/sub/x.txt"), b"x");
        write(&t.a.path("notes.txt"), b"alice's notes");
        // Team, plan.txt, sub, x.txt and notes.txt are on the server.
        t.wait("A's files on the server", || idle(&t.a) && t.a.status().is_ok_and(|s| s["cursor"].as_i64() >= Some(5)));
        t.idle();
        t
    }

    fn logs(&self) -> String {
        format!("\n--- A ---\n{}\n--- B ---\n{}\n--- server ---\n{}", self.a.log(), self.b.log(), self.server.log())
    }

    fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        if let Err(e) = wait_until(T, what, cond) {
            panic!("{e}{}", self.logs());
        }
    }

    fn idle(&self) {
        for d in [&self.a, &self.b] {
            self.wait("an idle daemon", || idle(d));
        }
    }

    fn ferry(&self, d: &Daemon, args: &[&str]) -> String {
        d.ferry(args).unwrap_or_else(|e| panic!("{e}{}", self.logs()))
    }
}

fn idle(d: &Daemon) -> bool {
    d.status().is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn editors_changes_go_both_ways() {
    let t = Two::start();
    let out = t.ferry(&t.a, &["share", &t.a.path("Team").to_string_lossy(), "--with", "bob"]);
    assert!(out.contains("shared Team with bob as editor"), "{out}");
    t.wait("the share on B", || read(&t.b.path("Team/plan.txt")).as_deref() == Some(b"alice's plan"));
    t.wait("the subfolder on B", || read(&t.b.path("Team/sub/x.txt")).as_deref() == Some(b"x"));
    assert!(!t.b.path("notes.txt").exists(), "only the shared folder is shared");

    // bob edits and adds; alice sees both.
    write(&t.b.path("Team/plan.txt"), b"bob's plan");
    write(&t.b.path("Team/bob.txt"), b"from bob");
    t.wait("bob's edit on A", || read(&t.a.path("Team/plan.txt")).as_deref() == Some(b"bob's plan"));
    t.wait("bob's file on A", || read(&t.a.path("Team/bob.txt")).as_deref() == Some(b"from bob"));

    // History and activity inside the share, with who did what.
    let rt = rt();
    let alice = rt.block_on(Client::user(&t.server, "alice", "script")).expect("login");
    let bob = rt.block_on(Client::user(&t.server, "bob", "script")).expect("login");
    let revs: ferry_shared::api::ListRevisionsResponse = rt
        .block_on(async { bob.get("/files/list_revisions?path=Team/plan.txt").send().await?.json().await })
        .expect("revisions");
    // Newest first: bob's edit over alice's original. (A write the daemon
    // caught half-way, truncated, may sit between them as its own revision:
    // history keeps what was on disk.)
    let sizes: Vec<u64> = revs.revisions.iter().map(|r| r.size).collect();
    let (bobs, alices) = (b"bob's plan".len() as u64, b"alice's plan".len() as u64);
    assert!(sizes.len() >= 2 && sizes[0] == bobs && sizes.last() == Some(&alices), "{revs:?}");
    let activity: ferry_shared::api::ActivityPage =
        rt.block_on(async { alice.get("/activity").send().await?.json().await }).expect("activity");
    assert!(
        activity.events.iter().any(|e| e.user == "bob" && e.path.as_str() == "Team/bob.txt"),
        "{:?}",
        activity.events
    );
    // Quota: bob's bytes in alice's folder count against alice.
    let me: serde_json::Value = rt.block_on(async { bob.get("/shares").send().await?.json().await }).expect("shares");
    assert_eq!(me["shares"][0]["owner"], "alice", "{me}");
    assert_eq!(me["shares"][0]["role"], "editor", "{me}");

    // bob renames his place of the share: only his tree changes.
    std::fs::rename(t.b.path("Team"), t.b.path("Alice's team")).expect("rename");
    t.idle();
    assert!(t.a.path("Team/plan.txt").exists());
    write(&t.a.path("Team/later.txt"), b"later");
    t.wait("a later file at bob's name", || read(&t.b.path("Alice's team/later.txt")).as_deref() == Some(b"later"));

    // Moves into and out of the share.
    std::fs::rename(t.a.path("notes.txt"), t.a.path("Team/notes.txt")).expect("move in");
    t.wait("a file moved into the share", || {
        read(&t.b.path("Alice's team/notes.txt")).as_deref() == Some(b"alice's notes")
    });
    std::fs::rename(t.b.path("Alice's team/bob.txt"), t.b.path("bob.txt")).expect("move out");
    t.wait("a file moved out of the share", || !t.a.path("Team/bob.txt").exists());
    t.idle();
    assert_eq!(read(&t.b.path("bob.txt")).as_deref(), Some(&b"from bob"[..]));
    let shares = t.ferry(&t.b, &["shares"]);
    assert!(shares.contains("Alice's team  shared with you by alice as editor"), "{shares}");
    let shares = t.ferry(&t.a, &["shares"]);
    assert!(shares.contains("Team  yours, shared with bob (editor)"), "{shares}");
}

#[test]
fn a_viewers_changes_stay_with_the_viewer() {
    let t = Two::start();
    t.ferry(&t.a, &["share", &t.a.path("Team").to_string_lossy(), "--with", "bob", "--role", "viewer"]);
    t.wait("the share on B", || read(&t.b.path("Team/plan.txt")).is_some());
    t.idle();
    // The server refuses a viewer's write, saying why.
    let rt = rt();
    let bob = rt.block_on(Client::user(&t.server, "bob", "script")).expect("login");
    let r = rt.block_on(bob.put_small("Team/evil.txt", b"no", None)).expect("commit");
    let e = r.error.expect("refused");
    assert_eq!(r.status, 403, "{e:?}");
    assert!(e.message.contains("read-only by alice"), "{}", e.message);

    // On B: an edit, a new file, a deletion.
    write(&t.b.path("Team/plan.txt"), b"bob's plan");
    write(&t.b.path("Team/new.txt"), b"bob's new file");
    std::fs::remove_file(t.b.path("Team/sub/x.txt")).expect("rm");
    t.wait("the server's version back on B", || {
        read(&t.b.path("Team/plan.txt")).as_deref() == Some(b"alice's plan")
            && read(&t.b.path("Team/sub/x.txt")).as_deref() == Some(b"x")
            && !t.b.path("Team/new.txt").exists()
    });
    t.idle();
    // bob's versions are kept outside the share, as conflict copies, and synced as his.
    let kept = snapshot(&t.b.path("Team (your edits)"));
    let contents: Vec<&[u8]> = kept.values().map(Vec::as_slice).collect();
    assert!(contents.contains(&&b"bob's plan"[..]) && contents.contains(&&b"bob's new file"[..]), "{kept:?}");
    assert!(kept.keys().all(|k| k.contains("(conflicted copy from B")), "{kept:?}");
    let conflicts = t.ferry(&t.b, &["conflicts"]);
    assert!(conflicts.contains("Team (your edits)/plan (conflicted copy from B"), "{conflicts}");
    let status = t.ferry(&t.b, &["status"]);
    assert!(status.contains("read-only") && status.contains("Team: shared with you by alice (viewer)"), "{status}");
    // Nothing of it reached alice.
    let a = snapshot(&t.a.folder);
    assert_eq!(a.get("Team/plan.txt").map(Vec::as_slice), Some(&b"alice's plan"[..]));
    assert!(!a.values().any(|v| v.starts_with(b"bob")), "{a:?}");
    assert!(!a.keys().any(|k| k.contains("your edits") || k.contains("conflicted")), "{a:?}");

    // Made an editor, bob can write.
    t.ferry(&t.a, &["share", &t.a.path("Team").to_string_lossy(), "--with", "bob", "--role", "editor"]);
    t.wait("bob's new role on B", || {
        t.b.status().is_ok_and(|s| s["shares"][0] == "Team: shared with you by alice (editor)")
    });
    write(&t.b.path("Team/plan.txt"), b"bob's plan, now an editor");
    t.wait("bob's edit on A", || read(&t.a.path("Team/plan.txt")).as_deref() == Some(b"bob's plan, now an editor"));
}

#[test]
fn revoking_while_the_recipient_is_offline_leaving_and_removing() {
    let mut t = Two::start();
    let team = t.a.path("Team").to_string_lossy().into_owned();
    t.ferry(&t.a, &["share", &team, "--with", "bob"]);
    t.wait("the share on B", || read(&t.b.path("Team/plan.txt")).is_some());
    t.idle();

    // Revoked while B is down; bob had edited a file meanwhile.
    t.b.kill();
    write(&t.b.path("Team/plan.txt"), b"bob's offline edit");
    let out = t.ferry(&t.a, &["unshare", &team, "--with", "bob"]);
    assert!(out.contains("bob is no longer in Team"), "{out}");
    t.b.restart().expect("restart B");
    t.wait("the share gone from B", || !t.b.path("Team/sub/x.txt").exists());
    t.idle();
    // bob's unsent edit is kept (now his own file); alice's files are untouched.
    assert_eq!(read(&t.b.path("Team/plan.txt")).as_deref(), Some(&b"bob's offline edit"[..]));
    assert_eq!(read(&t.a.path("Team/plan.txt")).as_deref(), Some(&b"alice's plan"[..]));
    assert_eq!(read(&t.a.path("Team/sub/x.txt")).as_deref(), Some(&b"x"[..]));
    let shares: ShareList = serde_json::from_str(&t.ferry(&t.b, &["shares", "--json"])).expect("json");
    assert!(shares.shares.is_empty(), "{shares:?}");

    // Shared again: bob has a Team of his own now, so it comes as "Team (alice)".
    t.ferry(&t.a, &["share", &team, "--with", "bob"]);
    t.wait("the share on B again", || read(&t.b.path("Team (alice)/sub/x.txt")).is_some());
    t.idle();
    let out = t.ferry(&t.b, &["leave", &t.b.path("Team (alice)").to_string_lossy()]);
    assert!(out.contains("left Team (alice)"), "{out}");
    t.wait("left", || !t.b.path("Team (alice)").exists());

    // Shared once more, then removed on bob's disk: he leaves; nothing of alice's goes.
    t.ferry(&t.a, &["share", &team, "--with", "bob"]);
    t.wait("the share on B once more", || read(&t.b.path("Team (alice)/sub/x.txt")).is_some());
    t.idle();
    std::fs::remove_dir_all(t.b.path("Team (alice)")).expect("rm -r");
    t.idle();
    let rt = rt();
    let bob = rt.block_on(Client::user(&t.server, "bob", "script")).expect("login");
    t.wait("bob out of the share", || {
        rt.block_on(async { bob.get("/shares").send().await?.json::<ShareList>().await })
            .is_ok_and(|l| l.shares.is_empty())
    });
    t.idle();
    assert_eq!(read(&t.a.path("Team/plan.txt")).as_deref(), Some(&b"alice's plan"[..]));
    assert_eq!(read(&t.a.path("Team/sub/x.txt")).as_deref(), Some(&b"x"[..]));
    assert!(!t.b.path("Team (alice)").exists());
    // Clear errors for what cannot be done.
    let err = t.a.ferry(&["share", &t.a.path("notes.txt").to_string_lossy(), "--with", "bob"]).unwrap_err();
    assert!(format!("{err}").contains("share the folder holding it"), "{err}");
    let err = t.a.ferry(&["share", &t.a.path("Team/sub").to_string_lossy(), "--with", "bob"]).unwrap_err();
    assert!(format!("{err}").contains("shared folders cannot be nested"), "{err}");
    let err = t.a.ferry(&["share", &team, "--with", "carol"]).unwrap_err();
    assert!(format!("{err}").contains("no user 'carol'"), "{err}");
    let err = t.b.ferry(&["leave", &t.b.path("Team").to_string_lossy()]).unwrap_err();
    assert!(format!("{err}").contains("not a shared folder"), "{err}");
}
