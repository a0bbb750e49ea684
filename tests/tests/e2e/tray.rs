//! `ferry tray` on a private D-Bus session bus against a running daemon: it
//! comes up as a StatusNotifierItem, its exported menu (read back over
//! D-Bus with `dbus-send`, as a tray host reads it) follows the daemon's
//! state, a recent change it lists opens in the file manager (a stand-in
//! on the same bus) with the file selected, and it quits cleanly from its
//! own Quit entry, or at once on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use ferry_tests::{Daemon, Server, binary, wait_until};

const T: Duration = Duration::from_secs(60);

struct Bus {
    address: String,
    daemon: Child,
}

impl Bus {
    fn start() -> Bus {
        let (daemon, address) = ferry_tests::dbus_session();
        Bus { address, daemon }
    }

    fn send(&self, args: &[&str]) -> String {
        let out = Command::new("dbus-send")
            .args(["--print-reply", &format!("--bus={}", self.address)])
            .args(args)
            .output()
            .expect("dbus-send");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// The id of the menu entry labelled `label` in a `GetLayout` reply: the
/// last `int32 N` before the label.
fn entry_id(layout: &str, label: &str) -> Option<i32> {
    let at = layout.find(&format!("string \"{label}\""))?;
    let before = &layout[..at];
    let i = before.rfind("int32 ")?;
    before[i + 6..].split_whitespace().next()?.parse().ok()
}

/// `ferry tray` for `a` on `bus`, its log in `log`; stopped if the test
/// ends early.
struct Tray {
    child: Child,
    name: String,
}

impl Tray {
    fn start(a: &Daemon, bus: &Bus, log: &Path) -> Tray {
        let child = Command::new(binary("ferry"))
            .arg("tray")
            .env("FERRY_HOME", &a.home)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stderr(std::fs::File::create(log).expect("tray log"))
            .spawn()
            .expect("ferry tray");
        let name = format!("org.kde.StatusNotifierItem-{}-1", child.id());
        Tray { child, name }
    }

    /// Its exported menu, as a tray host reads it.
    fn layout(&self, bus: &Bus) -> String {
        let dest = format!("--dest={}", self.name);
        bus.send(&[&dest, "/MenuBar", "com.canonical.dbusmenu.GetLayout", "int32:0", "int32:-1", "array:string:"])
    }

    /// Clicks the menu entry labelled `label`, as a tray host does.
    fn click(&self, bus: &Bus, label: &str) {
        let layout = self.layout(bus);
        let id = entry_id(&layout, label).unwrap_or_else(|| panic!("no {label} in {layout}"));
        let dest = format!("--dest={}", self.name);
        let id = format!("int32:{id}");
        bus.send(&[
            &dest,
            "/MenuBar",
            "com.canonical.dbusmenu.Event",
            &id,
            "string:clicked",
            "variant:int32:0",
            "uint32:0",
        ]);
    }

    fn exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(T, "the tray to end", || {
            status = self.child.try_wait().expect("wait");
            status.is_some()
        })
        .expect("the tray ends");
        status.expect("an exit status")
    }
}

impl Drop for Tray {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_tray_shows_the_daemons_state_and_quits_from_its_menu() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Daemon::start(&server, "alice", "A", dir.path()).expect("daemon");
    wait_until(T, "idle", || a.status().is_ok_and(|s| s["state"] == "idle")).expect("idle");
    std::fs::create_dir_all(a.path("docs")).expect("mkdir");
    std::fs::write(a.path("docs/plan.txt"), b"plan").expect("write");
    let bus = Bus::start();
    let desktop = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let shown = ferry_tests::stand_in_desktop(&desktop, &bus.address, false);
    let log = dir.path().join("tray.log");
    let mut tray = Tray::start(&a, &bus, &log);
    let layout = || tray.layout(&bus);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(T, "the tray's menu saying it is up to date", || layout().contains("Up to date"))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", layout(), logged()));
    let menu = layout();
    for label in ["Open folder", "Open web app", "Recent changes", "Conflicts (0)", "Pause for 1 hour", "Quit"] {
        assert!(menu.contains(&format!("\"{label}\"")), "{label} in the menu:\n{menu}");
    }
    // A state change reaches the menu.
    a.ferry(&["pause"]).expect("pause");
    wait_until(T, "the menu saying paused", || {
        let m = layout();
        m.contains("\"Paused\"") && m.contains("\"Resume\"")
    })
    .unwrap_or_else(|e| panic!("{e}: {}", layout()));
    // Resume from the menu, as a click does.
    let click = |label: &str| tray.click(&bus, label);
    click("Resume");
    wait_until(T, "the daemon resumed by the tray", || a.status().is_ok_and(|s| s["state"] == "idle"))
        .expect("resumed");
    // A recent change, clicked: the file manager shows it selected.
    wait_until(T, "the new file among the recent changes", || layout().contains("\"docs/plan.txt\""))
        .unwrap_or_else(|e| panic!("{e}: {}", layout()));
    click("docs/plan.txt");
    wait_until(T, "the file manager asked to show it", || !shown.lock().unwrap().is_empty())
        .unwrap_or_else(|e| panic!("{e}\n{}", logged()));
    let uri = reqwest::Url::from_file_path(a.path("docs/plan.txt")).expect("uri");
    assert_eq!(*shown.lock().unwrap(), [uri.to_string()], "the file itself, selected in its folder");
    click("Quit");
    let status = tray.exit();
    assert!(status.success(), "the tray quits cleanly: {status:?}\n{}", logged());
    assert!(a.status().is_ok_and(|s| s["state"] == "idle"), "the daemon goes on");

    // SIGTERM (logging out, `systemctl --user stop`) ends it at once too.
    let mut tray = Tray::start(&a, &bus, &log);
    wait_until(T, "the tray up again", || tray.layout(&bus).contains("Up to date")).expect("up");
    let term = Command::new("kill").args(["-TERM", &tray.child.id().to_string()]).status().expect("kill");
    assert!(term.success());
    let status = tray.exit();
    assert!(status.success(), "the tray stops cleanly on SIGTERM: {status:?}\n{}", logged());
}
