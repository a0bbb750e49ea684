//! What a person does at their desktop, end to end: conflicts settled with
//! `ferry resolve` (nothing destroyed: the version not kept stays in history).

use std::time::Duration;

use ferry_tests::{Client, Daemon, Server, wait_until};

const T: Duration = Duration::from_secs(60);

fn idle(d: &Daemon) -> bool {
    d.status().is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
}

struct Desk {
    server: Server,
    a: Daemon,
    phone: Client,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Desk {
    fn start() -> Desk {
        let server = Server::start().expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Daemon::start(&server, "alice", "A", dir.path()).expect("daemon");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let phone = rt.block_on(Client::user(&server, "alice", "phone")).expect("login");
        Desk { server, a, phone, rt, _dir: dir }
    }

    fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        if let Err(e) = wait_until(T, what, cond) {
            panic!("{e}\n{}\n{}", self.a.log(), self.server.log());
        }
    }

    /// The server's content at `path`, if a file is there.
    fn on_server(&self, path: &str) -> Option<Vec<u8>> {
        self.rt.block_on(async {
            let r = self.phone.get(&format!("/files/download?path={path}")).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            Some(r.bytes().await.ok()?.to_vec())
        })
    }

    fn head(&self, path: &str) -> i64 {
        let r: ferry_shared::api::ListRevisionsResponse = self
            .rt
            .block_on(async {
                self.phone.get(&format!("/files/list_revisions?path={path}")).send().await?.json().await
            })
            .expect("revisions");
        r.revisions[0].rev
    }

    /// `path` edited here (while the daemon is down) and on the phone: a
    /// conflict copy of this device's version. Returns the copy's path.
    fn conflict(&mut self, path: &str, mine: &[u8], theirs: &[u8]) -> String {
        self.wait("synced", || idle(&self.a) && self.on_server(path).is_some());
        self.a.kill();
        std::fs::write(self.a.path(path), mine).expect("write");
        let head = self.head(path);
        let r = self.rt.block_on(self.phone.put_small(path, theirs, Some(head))).expect("put");
        assert!(r.entry.is_some(), "{r:?}");
        self.a.restart().expect("restart");
        let mut copy = String::new();
        self.wait("a conflict copy on the server", || {
            let list: Vec<String> =
                serde_json::from_str(&self.a.ferry(&["conflicts", "--json"]).unwrap_or_default()).unwrap_or_default();
            copy = list.into_iter().next().unwrap_or_default();
            !copy.is_empty() && idle(&self.a) && self.on_server(&copy).as_deref() == Some(mine)
        });
        copy
    }
}

#[test]
fn resolve_keeps_mine_theirs_or_both_and_destroys_nothing() {
    let mut d = Desk::start();
    std::fs::write(d.a.path("r.txt"), b"first").expect("write");

    // Mine: my version at the original path, theirs in its history.
    let copy = d.conflict("r.txt", b"mine 1", b"theirs 1");
    let out = d.a.ferry(&["resolve", &d.a.path(&copy).to_string_lossy(), "--keep", "mine"]).expect("resolve");
    assert!(out.contains("kept your version at r.txt"), "{out}");
    d.wait("mine on the server", || d.on_server("r.txt").as_deref() == Some(b"mine 1") && d.on_server(&copy).is_none());
    let revs: ferry_shared::api::ListRevisionsResponse =
        d.rt.block_on(async { d.phone.get("/files/list_revisions?path=r.txt").send().await?.json().await })
            .expect("history");
    assert!(revs.revisions.iter().any(|r| r.size == 8 && !r.deleted), "theirs in history: {revs:?}");

    // Theirs: the copy goes (its history stays), the file is as the server had it.
    let copy = d.conflict("r.txt", b"mine 2", b"theirs 2");
    d.a.ferry(&["resolve", &d.a.path(&copy).to_string_lossy(), "--keep", "theirs"]).expect("resolve");
    d.wait("the copy gone", || d.on_server(&copy).is_none() && !d.a.path(&copy).exists());
    assert_eq!(d.on_server("r.txt").as_deref(), Some(&b"theirs 2"[..]));

    // Both, named by the original: the copy gets a plain name.
    let copy = d.conflict("r.txt", b"mine 3", b"theirs 3");
    let out = d.a.ferry(&["resolve", &d.a.path("r.txt").to_string_lossy(), "--keep", "both"]).expect("resolve");
    assert!(out.contains("r (2).txt"), "{out}");
    d.wait("both on the server", || {
        d.on_server("r (2).txt").as_deref() == Some(b"mine 3") && d.on_server(&copy).is_none()
    });
    assert_eq!(d.on_server("r.txt").as_deref(), Some(&b"theirs 3"[..]));

    // What cannot be resolved says why.
    let err = d.a.ferry(&["resolve", &d.a.path("r.txt").to_string_lossy(), "--keep", "mine"]).unwrap_err();
    assert!(format!("{err}").contains("has no conflict copy"), "{err}");
}

#[test]
fn a_pause_holds_across_restarts_and_a_timed_one_ends_by_itself() {
    let mut d = Desk::start();
    std::fs::write(d.a.path("a.txt"), b"a").expect("write");
    d.wait("a.txt on the server", || d.on_server("a.txt").is_some());
    let out = d.a.ferry(&["pause"]).expect("pause");
    assert!(out.contains("until `ferry resume`"), "{out}");
    d.wait("paused", || d.a.status().is_ok_and(|s| s["state"] == "paused"));
    std::fs::write(d.a.path("b.txt"), b"b").expect("write");
    d.a.kill();
    d.a.restart().expect("restart");
    d.wait("paused after the restart", || {
        d.a.status()
            .is_ok_and(|s| s["state"] == "paused" && s["reason"].as_str().is_some_and(|r| r.contains("by the user")))
    });
    assert!(d.on_server("b.txt").is_none(), "nothing is sent while paused");
    d.a.ferry(&["resume"]).expect("resume");
    d.wait("b.txt on the server", || d.on_server("b.txt").is_some());

    // For a while: it ends by itself, and says until when meanwhile.
    let out = d.a.ferry(&["pause", "--for", "2s"]).expect("pause");
    assert!(out.contains("paused until"), "{out}");
    d.wait("paused for a while", || d.a.status().is_ok_and(|s| s["paused_until"].as_i64().is_some()));
    std::fs::write(d.a.path("c.txt"), b"c").expect("write");
    d.wait("c.txt on the server once the pause ended", || d.on_server("c.txt").is_some());
    d.wait("idle", || idle(&d.a) && d.a.status().is_ok_and(|s| s["paused_until"].is_null()));
    let err = d.a.ferry(&["pause", "--for", "soon"]).unwrap_err();
    assert!(format!("{err}").contains("give a number and a unit"), "{err}");
}

#[test]
fn doctor_checks_everything_and_says_how_to_fix_what_is_wrong() {
    let mut d = Desk::start();
    d.wait("idle", || idle(&d.a));
    let checks: Vec<serde_json::Value> =
        serde_json::from_str(&d.a.ferry(&["doctor", "--json"]).expect("doctor")).expect("json");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["check"].as_str()).collect();
    for want in ["config", "server", "clock", "login", "folder", "marker", "disk", "watches", "daemon"] {
        assert!(names.contains(&want), "{want} checked: {checks:?}");
    }
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:#?}");
    // The daemon down and the server gone: two problems, each with its fix.
    d.a.kill();
    d.server.stop().expect("stop");
    let out = std::process::Command::new(ferry_tests::binary("ferry"))
        .arg("doctor")
        .env("FERRY_HOME", &d.a.home)
        .output()
        .expect("doctor");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("!!  server") && text.contains("cannot reach"), "{text}");
    assert!(text.contains("!!  daemon") && text.contains("fix: systemctl --user start ferry"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("problem(s) found"));
}

#[test]
fn bandwidth_limits_apply_at_once_both_ways_and_are_kept() {
    let mut d = Desk::start();
    d.wait("idle", || idle(&d.a));
    let out = d.a.ferry(&["limit", "--up", "1MB/s"]).expect("limit");
    assert!(out.contains("uploads: 1.0 MB/s, downloads: unlimited"), "{out}");
    d.wait("the limit in the status", || d.a.status().is_ok_and(|s| s["limit_up"] == 1_000_000));
    // 3 MB that do not compress take at least ~2.75 s at 1 MB/s (a quarter
    // second's worth may go at once); the daemon answers meanwhile.
    let data = ferry_tests::pseudo_random(3_000_000, 9);
    let t = std::time::Instant::now();
    std::fs::write(d.a.path("big.bin"), &data).expect("write");
    d.wait("the upload under way", || d.a.status().is_ok_and(|s| s["state"] == "syncing"));
    assert!(d.a.status().is_ok(), "the control socket answers during a limited upload");
    d.wait("big.bin on the server", || d.on_server("big.bin").is_some_and(|b| b.len() == data.len()));
    assert!(t.elapsed() >= Duration::from_millis(2_500), "held to the limit: {:?}", t.elapsed());

    // Downloads, after a restart (the limit is kept in the config).
    let out = d.a.ferry(&["limit", "--up", "off", "--down", "1MB/s"]).expect("limit");
    assert!(out.contains("uploads: unlimited, downloads: 1.0 MB/s"), "{out}");
    d.a.kill();
    d.a.restart().expect("restart");
    d.wait("the limit after a restart", || d.a.status().is_ok_and(|s| s["limit_down"] == 1_000_000));
    let data = ferry_tests::pseudo_random(2_000_000, 10);
    let t = std::time::Instant::now();
    assert!(d.rt.block_on(d.phone.put_small("down.bin", &data, None)).expect("put").entry.is_some());
    d.wait("down.bin here", || std::fs::read(d.a.path("down.bin")).is_ok_and(|b| b == data));
    assert!(t.elapsed() >= Duration::from_millis(1_500), "held to the limit: {:?}", t.elapsed());
    let out = d.a.ferry(&["limit", "--down", "off"]).expect("limit");
    assert!(out.contains("uploads: unlimited, downloads: unlimited"), "{out}");
    let err = d.a.ferry(&["limit", "--up", "fast"]).unwrap_err();
    assert!(format!("{err}").contains("give a rate like 2MB/s"), "{err}");
}

/// `HH:MM` of local time `minutes` from now (whole minutes, from the
/// minute now began).
fn clock_in(minutes: i64) -> String {
    let t = jiff::Zoned::now().checked_add(jiff::SignedDuration::from_mins(minutes)).expect("time");
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[test]
fn a_limit_schedule_follows_the_clock_without_commands() {
    let mut d = Desk::start();
    d.wait("idle", || idle(&d.a));
    // A window around now applies at once; the limits without it outside.
    let out = d.a.ferry(&["limit", "--down", "5MB/s"]).expect("limit");
    assert!(out.contains("uploads: unlimited, downloads: 5.0 MB/s"), "{out}");
    let window = format!("{}-{}", clock_in(-2), clock_in(30));
    let out = d.a.ferry(&["limit", "--up", "1MB/s", "--between", &window]).expect("limit");
    assert!(out.contains(&format!("{window} daily: uploads 1.0 MB/s, downloads unlimited (now)")), "{out}");
    d.wait("the scheduled limits", || {
        d.a.status().is_ok_and(|s| s["limit_up"] == 1_000_000 && s["limit_down"].is_null())
    });
    let text = d.a.ferry(&["status"]).expect("status");
    assert!(text.contains("bandwidth now: uploads 1.0 MB/s, downloads unlimited"), "{text}");
    assert!(text.contains(&format!("schedule: {window} daily: uploads 1.0 MB/s, downloads unlimited (now)")), "{text}");
    // The same window again changes only what is given.
    let out = d.a.ferry(&["limit", "--down", "2MB/s", "--between", &window]).expect("limit");
    assert!(out.contains("uploads 1.0 MB/s, downloads 2.0 MB/s (now)"), "{out}");

    // A one-minute window that opens at the next minute: the daemon's timer
    // switches the limits in and out on its own, and keeps the schedule
    // across a restart.
    // (At least 30 s ahead: the limit, a restart and a look at the status first.)
    let (from, to) = if jiff::Zoned::now().second() < 30 { (1, 2) } else { (2, 3) };
    let window = format!("{}-{}", clock_in(from), clock_in(to));
    let days = match jiff::Zoned::now().checked_add(jiff::SignedDuration::from_mins(from)).expect("t").weekday() {
        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday => "sat,sun",
        _ => "mon-fri",
    };
    d.a.ferry(&["limit", "--up", "off", "--down", "1MB/s", "--between", &window, "--days", days]).expect("limit");
    d.a.kill();
    d.a.restart().expect("restart");
    d.wait("the schedule after a restart, closed", || {
        d.a.status().is_ok_and(|s| {
            s["limit_down"] == 5_000_000 && s["limit_schedule"].as_str().is_some_and(|t| t.starts_with(&window))
        })
    });
    let edge = Duration::from_secs(60 * (to as u64) + 30);
    let at_edge = |what: &str, cond: &dyn Fn(&serde_json::Value) -> bool| {
        if let Err(e) = wait_until(edge, what, || d.a.status().is_ok_and(|s| cond(&s))) {
            panic!(
                "{e}
{}",
                d.a.log()
            );
        }
    };
    at_edge("the window opens", &|s| s["limit_down"] == 1_000_000 && s["limit_up"].is_null());
    at_edge("the window closes", &|s| s["limit_down"] == 5_000_000);

    let out = d.a.ferry(&["limit", "--no-schedule"]).expect("limit");
    assert!(out.trim_end().ends_with("uploads: unlimited, downloads: 5.0 MB/s"), "{out}");
    d.wait("no schedule", || d.a.status().is_ok_and(|s| s["limit_schedule"].is_null()));
    for (args, says) in [
        (&["limit", "--up", "1MB/s", "--between", "9-17"][..], "give the hours as HH:MM-HH:MM"),
        (&["limit", "--between", "09:00-17:00"], "give the limits for 09:00-17:00"),
        (&["limit", "--up", "1MB/s", "--between", "09:00-17:00", "--days", "someday"], "days are mon, tue"),
        (&["limit", "--up", "1MB/s", "--days", "mon"], "--between"),
    ] {
        let err = d.a.ferry(args).unwrap_err();
        assert!(format!("{err}").contains(says), "{args:?}: {err}");
    }
}

#[test]
fn status_is_a_live_view_in_a_terminal_and_plain_when_piped() {
    use std::io::{Read, Write};
    let d = Desk::start();
    d.wait("idle", || idle(&d.a));
    // A limited upload long enough to watch: 8 MB at 1 MB/s.
    d.a.ferry(&["limit", "--up", "1MB/s"]).expect("limit");
    d.wait("the limit", || d.a.status().is_ok_and(|s| s["limit_up"] == 1_000_000));
    std::fs::write(d.a.path("slow.bin"), ferry_tests::pseudo_random(8_000_000, 11)).expect("write");
    d.wait("the upload under way", || d.a.status().is_ok_and(|s| s["pending_uploads"] == 1));

    // `script` gives `ferry status` a terminal (a pty) and copies it out.
    // `exec`, so the Ctrl-C reaches ferry alone: dash, a common `sh`, would
    // die of it while waiting for its child.
    let ferry = ferry_tests::binary("ferry");
    let mut term = std::process::Command::new("script")
        .args(["-qfec", &format!("exec {} status", ferry.display()), "/dev/null"])
        .env("FERRY_HOME", &d.a.home)
        .env("SHELL", "/bin/sh")
        .env("COLUMNS", "100")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let mut out = term.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    if let Err(e) = wait_until(T, "the rate and the time left", || {
        let t = text();
        t.contains("Syncing: 1 file,") && t.contains("/s, about") && t.contains("left")
    }) {
        panic!("{e}\n{}\n{}", text(), d.a.log());
    }
    let t = text();
    assert!(t.contains("↑ 1 file ("), "{t}");
    assert!(t.contains("\x1b["), "redrawn in place (cursor moves): {t:?}");
    assert!(t.contains("bandwidth now: uploads 1.0 MB/s"), "{t}");
    d.wait("the view follows the daemon to up to date", || text().contains("Up to date:"));
    // Ctrl-C at the terminal leaves it, with exit status 0.
    term.stdin.as_mut().expect("stdin").write_all(b"\x03").expect("ctrl-c");
    let status = wait_until(T, "the view to end", || term.try_wait().is_ok_and(|s| s.is_some()))
        .map(|()| term.wait().expect("status"));
    assert!(matches!(&status, Ok(s) if s.success()), "{status:?}\n{}", text());
    reader.join().expect("reader");

    // Piped: printed once, no cursor moves.
    let plain = d.a.ferry(&["status"]).expect("status");
    assert!(plain.starts_with("state: idle") && !plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn an_excluded_folder_leaves_this_device_only_and_comes_back() {
    let mut d = Desk::start();
    for (p, data) in [("big/a.txt", &b"a"[..]), ("big/sub/b.txt", b"b"), ("keep.txt", b"k")] {
        std::fs::create_dir_all(d.a.path(p).parent().expect("parent")).expect("mkdir");
        std::fs::write(d.a.path(p), data).expect("write");
    }
    d.wait("all on the server", || d.on_server("big/sub/b.txt").is_some() && d.on_server("keep.txt").is_some());
    // A change not sent yet when the folder is excluded goes up first.
    d.a.ferry(&["pause"]).expect("pause");
    d.wait("paused", || d.a.status().is_ok_and(|s| s["state"] == "paused"));
    std::fs::write(d.a.path("big/a.txt"), b"a, edited").expect("write");
    let out = d.a.ferry(&["exclude", &d.a.path("big").to_string_lossy()]).expect("exclude");
    assert!(out.contains("excluded big"), "{out}");
    d.a.ferry(&["resume"]).expect("resume");
    d.wait("big gone from this device", || !d.a.path("big").exists());
    d.wait("idle", || idle(&d.a));
    assert_eq!(d.on_server("big/a.txt").as_deref(), Some(&b"a, edited"[..]));
    assert_eq!(d.on_server("big/sub/b.txt").as_deref(), Some(&b"b"[..]));
    assert!(d.a.path("keep.txt").exists());
    // Changes elsewhere stay on the server only.
    assert!(d.rt.block_on(d.phone.put_small("big/new.txt", b"new", None)).expect("put").entry.is_some());
    std::fs::write(d.a.path("keep.txt"), b"k2").expect("write");
    d.wait("keep.txt sent", || d.on_server("keep.txt").as_deref() == Some(b"k2"));
    d.wait("idle", || idle(&d.a));
    assert!(!d.a.path("big").exists());
    let status = d.a.ferry(&["status"]).expect("status");
    assert!(status.contains("folders not synced to this device") && status.contains("  big"), "{status}");
    // Back again, with what came meanwhile; kept across a restart.
    d.a.kill();
    d.a.restart().expect("restart");
    d.wait("still excluded after a restart", || d.a.status().is_ok_and(|s| s["excluded"][0] == "big"));
    d.a.ferry(&["include", &d.a.path("big").to_string_lossy()]).expect("include");
    d.wait("big back", || {
        std::fs::read(d.a.path("big/new.txt")).is_ok_and(|b| b == b"new")
            && std::fs::read(d.a.path("big/a.txt")).is_ok_and(|b| b == b"a, edited")
            && d.a.path("big/sub/b.txt").exists()
    });
    let err = d.a.ferry(&["include", &d.a.path("big").to_string_lossy()]).unwrap_err();
    assert!(format!("{err}").contains("is not excluded"), "{err}");
    let err = d.a.ferry(&["exclude", &d.a.path("keep.txt").to_string_lossy()]).unwrap_err();
    assert!(format!("{err}").contains("is not a folder"), "{err}");
}

#[test]
fn the_daemons_log_is_kept_and_followed() {
    use std::io::BufRead;
    let d = Desk::start();
    d.wait("idle", || idle(&d.a));
    let log = d.a.ferry(&["logs", "-n", "500"]).expect("logs");
    assert!(log.contains("syncing") && !log.contains('\u{1b}'), "plain text with the daemon's lines:\n{log}");
    let mut follow = std::process::Command::new(ferry_tests::binary("ferry"))
        .args(["logs", "--follow", "-n", "0"])
        .env("FERRY_HOME", &d.a.home)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ferry logs --follow");
    let out = follow.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Something for the daemon to log about.
    std::fs::write(d.a.path("new.txt"), b"n").expect("write");
    let line = rx.recv_timeout(T).expect("a line followed");
    assert!(!line.is_empty());
    let _ = follow.kill();
    let _ = follow.wait();
}
