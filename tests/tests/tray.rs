//! `ferry tray` on a private D-Bus session bus against a running daemon: it
//! comes up as a StatusNotifierItem, its exported menu (read back over
//! D-Bus with `dbus-send`, as a tray host reads it) follows the daemon's
//! state, and it quits cleanly from its own Quit entry.

use std::process::{Child, Command, Stdio};
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

#[test]
fn the_tray_shows_the_daemons_state_and_quits_from_its_menu() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Daemon::start(&server, "alice", "A", dir.path()).expect("daemon");
    wait_until(T, "idle", || a.status().is_ok_and(|s| s["state"] == "idle")).expect("idle");
    let bus = Bus::start();
    let mut tray = Command::new(binary("ferry"))
        .arg("tray")
        .env("FERRY_HOME", &a.home)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry tray");
    let name = format!("org.kde.StatusNotifierItem-{}-1", tray.id());
    let layout = || {
        bus.send(&[
            &format!("--dest={name}"),
            "/MenuBar",
            "com.canonical.dbusmenu.GetLayout",
            "int32:0",
            "int32:-1",
            "array:string:",
        ])
    };
    wait_until(T, "the tray's menu saying it is up to date", || layout().contains("Up to date"))
        .unwrap_or_else(|e| panic!("{e}: {}", layout()));
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
    let click = |label: &str| {
        let id = entry_id(&layout(), label).unwrap_or_else(|| panic!("no {label} in {}", layout()));
        bus.send(&[
            &format!("--dest={name}"),
            "/MenuBar",
            "com.canonical.dbusmenu.Event",
            &format!("int32:{id}"),
            "string:clicked",
            "variant:int32:0",
            "uint32:0",
        ]);
    };
    click("Resume");
    wait_until(T, "the daemon resumed by the tray", || a.status().is_ok_and(|s| s["state"] == "idle"))
        .expect("resumed");
    click("Quit");
    let deadline = std::time::Instant::now() + T;
    let status = loop {
        if let Some(s) = tray.try_wait().expect("wait") {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the tray did not quit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the tray quits cleanly: {status:?}");
    assert!(a.status().is_ok_and(|s| s["state"] == "idle"), "the daemon goes on");
}
