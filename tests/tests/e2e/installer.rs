//! `installer/install.sh` and `uninstall.sh` into a temporary prefix: what
//! they install, that the systemd units pass `systemd-analyze verify` (where
//! it is installed), that the file-manager actions work against a real
//! server and daemon, that installing twice changes nothing, and that
//! uninstalling removes exactly what was installed and never the synced
//! folder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_tests::{Daemon, Server, binary, wait_until};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo").to_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

/// `systemd-analyze verify` says nothing about the unit (it warns on stderr
/// and still exits 0 for unknown keys and the like).
fn verify(unit: &Path) {
    let Ok(out) = Command::new("systemd-analyze").arg("verify").arg(unit).output() else {
        ferry_tests::skip(
            "installer (systemd-analyze verify)",
            &format!("systemd-analyze is not installed: {} not verified", unit.display()),
        );
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    let name = unit.file_name().expect("name").to_string_lossy();
    assert!(out.status.success() && !err.contains(&*name), "{}:\n{err}", unit.display());
}

#[test]
fn install_check_use_and_uninstall_in_a_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = tmp.path().join("prefix");
    let bins = binary("ferry").parent().expect("target dir").to_owned();
    let install = || {
        run(Command::new("bash")
            .arg(repo().join("installer/install.sh"))
            .args(["--server", "--prefix"])
            .arg(&prefix)
            .arg("--binaries")
            .arg(&bins))
    };
    let out = install();
    assert!(out.contains("installed Ferry in"), "{out}");
    let installed = files_under(&prefix);
    let manifest = std::fs::read_to_string(prefix.join("share/ferry/installed.txt")).expect("manifest");
    let mut listed: Vec<PathBuf> = manifest.lines().map(PathBuf::from).collect();
    listed.sort();
    assert_eq!(installed, listed, "every installed file is listed for uninstall.sh");
    for f in [
        "bin/ferry",
        "bin/ferry-server",
        "config/systemd/user/ferry.service",
        "config/autostart/ferry-tray.desktop",
        "share/ferry/ferry-action",
        "share/nautilus/scripts/Ferry: version history",
        "share/nautilus/scripts/Ferry: keep this version",
        "share/nautilus/scripts/Ferry: copy share link",
        "config/caja/scripts/Ferry: copy share link",
        "share/nemo/actions/ferry-history.nemo_action",
        "share/kio/servicemenus/ferry.desktop",
        "share/ferry/ferry-server.service.example",
        "share/ferry/ferry-server.env.example",
    ] {
        assert!(prefix.join(f).is_file(), "{f} installed");
    }
    let unit = std::fs::read_to_string(prefix.join("config/systemd/user/ferry.service")).expect("unit");
    assert!(unit.contains(&format!("ExecStart={}/bin/ferry daemon", prefix.display())), "{unit}");
    assert!(unit.contains("Restart=on-failure") && unit.contains("After=network-online.target"), "{unit}");
    verify(&prefix.join("config/systemd/user/ferry.service"));
    let server_unit = tmp.path().join("ferry-server.service");
    std::fs::copy(prefix.join("share/ferry/ferry-server.service.example"), &server_unit).expect("copy");
    verify(&server_unit);
    let tray = std::fs::read_to_string(prefix.join("config/autostart/ferry-tray.desktop")).expect("autostart");
    assert!(tray.contains(&format!("Exec={}/bin/ferry tray", prefix.display())), "{tray}");
    let nemo = std::fs::read_to_string(prefix.join("share/nemo/actions/ferry-link.nemo_action")).expect("nemo");
    assert!(nemo.contains(&format!("Exec={}/share/ferry/ferry-action link %F", prefix.display())), "{nemo}");

    // The actions, as a file manager runs them (no desktop here: they print).
    let server = Server::start().expect("server");
    let a = Daemon::start(&server, "alice", "A", tmp.path()).expect("daemon");
    std::fs::write(a.path("report.txt"), b"v1").expect("write");
    wait_until(Duration::from_secs(60), "report.txt synced", || {
        a.status().is_ok_and(|s| s["state"] == "idle" && s["cursor"].as_i64() >= Some(1))
    })
    .expect("synced");
    let action = |what: &str| {
        run(Command::new(prefix.join(format!("share/nautilus/scripts/{what}")))
            .arg(a.path("report.txt"))
            .env("FERRY_HOME", &a.home)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY"))
    };
    let link = action("Ferry: copy share link");
    assert!(link.contains(&format!("Ferry: link to report.txt: {}/l/", server.url)), "{link}");
    let history = action("Ferry: version history");
    assert!(history.contains("Ferry: versions of report.txt") && history.contains(" A\n"), "{history}");

    // Again: the same files; then uninstall: all of them gone, the folder kept.
    install();
    assert_eq!(files_under(&prefix), installed);
    let out = run(Command::new("bash").arg(repo().join("installer/uninstall.sh")).arg("--prefix").arg(&prefix));
    assert!(out.contains("removed Ferry"), "{out}");
    assert_eq!(files_under(&prefix), Vec::<PathBuf>::new());
    assert_eq!(std::fs::read(a.path("report.txt")).expect("kept"), b"v1");
    let again = run(Command::new("bash").arg(repo().join("installer/uninstall.sh")).arg("--prefix").arg(&prefix));
    assert!(again.contains("nothing to remove"), "{again}");
}

/// The packaged files (`installer/deb/`) are the templates rendered for /usr.
#[test]
fn deb_assets_are_current() {
    let tmp = tempfile::tempdir().expect("tempdir");
    run(Command::new("bash").arg(repo().join("installer/deb-assets.sh")).arg(tmp.path()));
    for f in files_under(tmp.path()) {
        let name = f.file_name().expect("name");
        let committed = std::fs::read(repo().join("installer/deb").join(name)).unwrap_or_default();
        assert_eq!(
            std::fs::read(&f).expect("rendered"),
            committed,
            "installer/deb/{} is stale: run installer/deb-assets.sh",
            name.to_string_lossy()
        );
    }
}

/// The cargo-deb that builds the packages, pinned; installed into
/// `target/tools` the first time (about a minute).
fn cargo_deb() -> PathBuf {
    const VERSION: &str = "3.8.0";
    let root = repo().join("target/tools");
    let bin = root.join("bin/cargo-deb");
    let have = Command::new(&bin).arg("--version").output().ok();
    if have.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == format!("cargo-deb {VERSION}")) {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args(["install", "cargo-deb", "--locked", "--quiet", "--version", VERSION, "--root"])
        .arg(&root)
        .env_remove("CARGO_TARGET_DIR"));
    bin
}

/// `cargo deb` makes both packages from the metadata in the crates'
/// Cargo.toml (here from the test build's binaries, to spare a release
/// build): each holds what it says, with the files `installer/deb/` has.
#[test]
fn debian_packages_build_from_the_crates_metadata() {
    let deb = cargo_deb();
    let out = tempfile::tempdir().expect("tempdir");
    let binaries = binary("ferry").parent().expect("target dir").to_owned();
    for (package, files) in [
        (
            "ferry",
            &[
                "./usr/bin/ferry",
                "./usr/lib/systemd/user/ferry.service",
                "./etc/xdg/autostart/ferry-tray.desktop",
                "./usr/share/ferry/ferry-action",
                "./usr/share/nemo/actions/ferry-keep.nemo_action",
                "./usr/share/kio/servicemenus/ferry.desktop",
            ][..],
        ),
        (
            "ferry-server",
            &[
                "./usr/bin/ferry-server",
                "./usr/lib/systemd/system/ferry-server.service",
                "./etc/ferry/ferry-server.env",
            ],
        ),
    ] {
        let said = run(Command::new(&deb)
            .args(["-p", package, "--no-build", "--profile", "dev", "--fast", "--no-strip", "-o"])
            .arg(out.path())
            .env("CARGO_TARGET_DIR", binaries.parent().expect("target"))
            .current_dir(repo()));
        let file = PathBuf::from(said.lines().find(|l| l.trim().ends_with(".deb")).expect("the .deb's path").trim());
        assert!(file.starts_with(out.path()) && file.extension().is_some_and(|e| e == "deb"), "{said}");
        let fields = run(Command::new("dpkg-deb").arg("--field").arg(&file));
        assert!(fields.contains(&format!("Package: {package}\n")) && fields.contains("Architecture: "), "{fields}");
        assert!(fields.contains(&format!("Version: {}-1", env!("CARGO_PKG_VERSION"))), "{fields}");
        let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&file));
        for f in files {
            assert!(contents.lines().any(|l| l.ends_with(f)), "{package}: no {f} in\n{contents}");
        }
        // The packaged unit and settings are the committed files, byte for byte.
        let unpacked = tempfile::tempdir().expect("tempdir");
        run(Command::new("dpkg-deb").arg("-x").arg(&file).arg(unpacked.path()));
        let unit = if package == "ferry" { "ferry.service" } else { "ferry-server.service" };
        let dir = if package == "ferry" { "usr/lib/systemd/user" } else { "usr/lib/systemd/system" };
        assert_eq!(
            std::fs::read(unpacked.path().join(dir).join(unit)).expect("unit"),
            std::fs::read(repo().join("installer/deb").join(unit)).expect("committed unit")
        );
        let version = run(Command::new(unpacked.path().join("usr/bin").join(package)).arg("--version"));
        assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    }
}
