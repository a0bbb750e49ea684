//! Desktop notifications on a private D-Bus session: a real `dbus-daemon`,
//! `dbus-monitor` reading what the daemon sends to
//! `org.freedesktop.Notifications`, and a real `ferry daemon` making
//! conflict copies. No notification service owns the name, so every call
//! also fails: syncing must not notice.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use ferry_tests::{Client, Daemon, Server, wait_until};

const T: Duration = Duration::from_secs(60);

/// A private session bus and a monitor of notification calls on it.
struct Bus {
    address: String,
    daemon: Child,
    monitor: Child,
    log: std::path::PathBuf,
}

impl Bus {
    fn start(dir: &Path) -> Bus {
        let (daemon, address) = ferry_tests::dbus_session();
        let log = dir.join("monitor.log");
        let monitor = Command::new("dbus-monitor")
            .args(["--address", &address, "interface='org.freedesktop.Notifications',member='Notify'"])
            .stdout(std::fs::File::create(&log).expect("monitor log"))
            .spawn()
            .expect("dbus-monitor");
        let bus = Bus { address, daemon, monitor, log };
        // The monitor is listening once it has said hello on the bus.
        wait_until(T, "dbus-monitor to listen", || bus.seen().contains("NameAcquired")).expect("monitor");
        bus
    }

    fn seen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn notifications(&self) -> usize {
        self.seen().matches("member=Notify").count()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.monitor.kill();
        let _ = self.daemon.kill();
        let _ = self.monitor.wait();
        let _ = self.daemon.wait();
    }
}

/// Edits `files` on A's disk while A is down and on another device, then
/// starts A again: each becomes a conflict copy on A.
fn edit_both(rt: &tokio::runtime::Runtime, other: &Client, a: &mut Daemon, files: &[String]) {
    a.kill();
    for n in files {
        std::fs::write(a.path(n), format!("A's edit of {n}")).unwrap();
        let revs: ferry_shared::api::ListRevisionsResponse = rt
            .block_on(async { other.get(&format!("/files/list_revisions?path={n}")).send().await?.json().await })
            .unwrap();
        let r =
            rt.block_on(other.put_small(n, format!("the phone's edit of {n}").as_bytes(), Some(revs.revisions[0].rev)));
        assert!(r.as_ref().is_ok_and(|r| r.entry.is_some()), "{r:?}");
    }
    a.restart().unwrap();
}

/// A with files `f0.txt`… uploaded, and another device of alice's.
fn setup(server: &Server, dir: &Path, bus: &Bus, n: usize) -> (Daemon, Client, tokio::runtime::Runtime, Vec<String>) {
    let env = [("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())];
    let a = Daemon::start_with_env(&server.url, "alice", "A", dir, &env).expect("daemon");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let other = rt.block_on(Client::user(server, "alice", "phone")).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("f{i}.txt")).collect();
    for name in &names {
        std::fs::write(a.path(name), "first").unwrap();
    }
    wait_until(T, "A to upload", || {
        a.status()
            .is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["cursor"].as_i64() >= Some(n as i64))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    (a, other, rt, names)
}

fn conflicts(d: &Daemon) -> usize {
    d.status().map(|s| s["conflicts"].as_array().map_or(0, Vec::len)).unwrap_or(0)
}

#[test]
fn conflict_copies_make_one_notification_per_burst() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::start(dir.path());
    let (mut a, other, rt, names) = setup(&server, dir.path(), &bus, 6);
    // One file edited on both sides while A is down: one conflict copy, one notification.
    edit_both(&rt, &other, &mut a, &names[..1]);
    wait_until(T, "a conflict copy", || conflicts(&a) == 1).unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    wait_until(T, "a notification", || bus.notifications() == 1)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", bus.seen(), a.log()));
    let seen = bus.seen();
    assert!(seen.contains("string \"Ferry\"") && seen.contains("Ferry made a conflict copy"), "{seen}");
    assert!(seen.contains("f0 (conflicted copy from A"), "{seen}");

    // Five at once: one notification that counts them.
    edit_both(&rt, &other, &mut a, &names[1..]);
    wait_until(T, "five more conflict copies", || conflicts(&a) == 5).unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    wait_until(T, "a second notification", || bus.notifications() >= 2)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", bus.seen(), a.log()));
    // The notifier says when it has dealt with the five copies: only then
    // does "no third notification" mean something.
    wait_until(T, "the notifier to finish the second burst", || copies_in_bursts(&a.log()) >= 5)
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    assert_eq!(bus.notifications(), 2, "one notification per burst:\n{}", bus.seen());
    assert!(bus.seen().contains("Ferry made 5 conflict copies"), "{}", bus.seen());
    // Nobody answered the calls (no notification service): syncing went on.
    wait_until(T, "A idle", || a.status().is_ok_and(|s| s["state"] == "idle")).unwrap();
    assert!(a.log().contains("cannot show desktop notifications"), "{}", a.log());
}

/// Conflict copies in the bursts the notifier has ended (its log lines
/// `news burst: N conflict copies, …`).
fn copies_in_bursts(log: &str) -> usize {
    log.lines()
        .filter_map(|l| l.split("news burst: ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum()
}

#[test]
fn notifications_can_be_switched_off() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::start(dir.path());
    let (mut a, other, rt, names) = setup(&server, dir.path(), &bus, 1);
    a.kill();
    let config = find(&a.home, "config.json").expect("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["notifications"] = serde_json::Value::Bool(false);
    std::fs::write(&config, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    edit_both(&rt, &other, &mut a, &names);
    wait_until(T, "a conflict copy", || conflicts(&a) == 1).unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    wait_until(T, "the notifier to end the burst", || copies_in_bursts(&a.log()) == 1)
        .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    assert!(a.log().contains("notifications are off: not shown"), "{}", a.log());
    assert_eq!(bus.notifications(), 0, "{}", bus.seen());
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && let Some(f) = find(&p, name)
        {
            return Some(f);
        }
    }
    None
}

#[test]
fn a_new_share_and_lost_access_are_notified() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::start(dir.path());
    let env = [("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())];
    let b = Daemon::start_with_env(&server.url, "bob", "B", dir.path(), &env).expect("daemon");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let alice = rt.block_on(Client::user(&server, "alice", "laptop")).unwrap();
    // bob's daemon has been through the journal once: what comes now is news.
    std::fs::write(b.path("mine.txt"), "bob's").unwrap();
    wait_until(T, "B to upload", || b.status().is_ok_and(|s| s["cursor"].as_i64() >= Some(1))).unwrap();
    assert!(rt.block_on(alice.put_small("Team/plan.txt", b"plan", None)).unwrap().entry.is_some());
    let share = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut req = alice.http.request(method, format!("{}{path}", alice.url)).bearer_auth(&alice.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = rt.block_on(req.send()).unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        rt.block_on(resp.text()).unwrap()
    };
    let made = share(reqwest::Method::POST, "/shares", Some(serde_json::json!({"path": "Team", "with": "bob"})));
    let id = serde_json::from_str::<serde_json::Value>(&made).unwrap()["id"].as_i64().unwrap();
    wait_until(T, "the share on B", || b.path("Team/plan.txt").exists()).unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    wait_until(T, "a notification of the share", || bus.seen().contains("alice shared Team with you"))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", bus.seen(), b.log()));
    share(reqwest::Method::DELETE, &format!("/shares/{id}/members/bob"), None);
    wait_until(T, "the share gone from B", || !b.path("Team").exists()).unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    wait_until(T, "a notification of lost access", || bus.seen().contains("your access to Team"))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", bus.seen(), b.log()));
}

#[test]
fn clicking_the_conflict_notification_shows_the_copy_in_its_folder() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::start(dir.path());
    let desktop = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let shown = ferry_tests::stand_in_desktop(&desktop, &bus.address, true);
    let (mut a, other, rt, names) = setup(&server, dir.path(), &bus, 1);
    edit_both(&rt, &other, &mut a, &names);
    wait_until(T, "a conflict copy", || conflicts(&a) == 1).unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    wait_until(T, "the file manager asked to show it", || !shown.lock().unwrap().is_empty())
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", bus.seen(), a.log()));
    let copy = a.status().unwrap()["conflicts"][0].as_str().unwrap().to_owned();
    let uri = reqwest::Url::from_file_path(a.path(&copy)).unwrap();
    assert_eq!(*shown.lock().unwrap(), [uri.to_string()], "the copy itself, selected in its folder");
    assert!(uri.as_str().contains("%20(conflicted%20copy"), "a URI, escaped: {uri}");
    assert!(bus.seen().contains("Show in folder"), "the notification offers it:\n{}", bus.seen());
    assert!(!a.log().contains("cannot show desktop notifications"), "{}", a.log());
}
