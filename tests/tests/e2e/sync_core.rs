//! End-to-end tests of the sync core as a new user meets it: two real
//! daemons (A and B of one user) talk to the real server through
//! byte-counting proxies, so what a change costs is measured on the wire for
//! the whole system; names that are legal on the user's disk (NFD, `?`, `:`,
//! `"`) sync both ways; a folder that vanishes and comes back resumes
//! syncing without a restart.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use ferry_tests::counting::{CountingProxy, Counts};
use ferry_tests::{Daemon, Server, pseudo_random, snapshot, wait_until};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1 << 20;

/// A server, and daemons A and B of alice, each behind its own counting proxy.
struct Pair {
    a: Daemon,
    b: Daemon,
    pa: CountingProxy,
    pb: CountingProxy,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn start() -> Pair {
        let server = Server::start().expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let pa = CountingProxy::start(&server.url).expect("proxy A");
        let pb = CountingProxy::start(&server.url).expect("proxy B");
        let a = Daemon::start_at(&pa.url, "alice", "A", dir.path()).expect("daemon A");
        let b = Daemon::start_at(&pb.url, "alice", "B", dir.path()).expect("daemon B");
        Pair { a, b, pa, pb, server, _dir: dir }
    }

    fn logs(&self) -> String {
        fn tail(s: &str) -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
        format!(
            "\n--- A ---\n{}\n--- B ---\n{}\n--- server ---\n{}",
            tail(&self.a.log()),
            tail(&self.b.log()),
            tail(&self.server.log())
        )
    }

    fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        if let Err(e) = wait_until(T, what, cond) {
            panic!("{e}{}", self.logs());
        }
    }

    /// Waits until both daemons are idle with nothing pending.
    fn idle(&self) {
        for d in [&self.a, &self.b] {
            self.wait("an idle daemon", || {
                d.status()
                    .is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
            });
        }
    }
}

fn byte_at(p: &Path, off: u64) -> Option<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(p).ok()?;
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut b = [0u8];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

fn block_bytes(d: &Daemon) -> u64 {
    d.status().map(|s| s["block_bytes_received"].as_u64().unwrap_or(0)).unwrap_or(0)
}

/// A one-byte edit of a large file costs a block or two each way, not the
/// file: the receiver reuses the unchanged blocks of its own copy.
#[test]
fn a_one_byte_edit_of_a_large_file_moves_little_both_ways() {
    let p = Pair::start();
    let size = 16 * MIB;
    let big = p.a.path("big.bin");
    std::fs::write(&big, pseudo_random(size, 42)).unwrap();
    let big_b = p.b.path("big.bin");
    p.wait("the file on B", || std::fs::metadata(&big_b).is_ok_and(|m| m.len() == size as u64));
    p.idle();

    let edits: [(&str, &dyn Fn()); 2] = [
        ("overwrite a byte in the middle", &|| {
            let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
            f.seek(SeekFrom::Start(size as u64 / 2)).unwrap();
            f.write_all(&[byte_at(&big, size as u64 / 2).unwrap() ^ 0xff]).unwrap();
        }),
        ("insert a byte at the start", &|| {
            let mut data = vec![0x5a];
            data.extend(std::fs::read(&big).unwrap());
            std::fs::write(&big, data).unwrap();
        }),
    ];
    for (what, edit) in edits {
        let (a0, b0, blocks0) = (p.pa.counts(), p.pb.counts(), block_bytes(&p.b));
        edit();
        let want = blake3::hash(&std::fs::read(&big).unwrap());
        p.wait(what, || std::fs::read(&big_b).is_ok_and(|d| blake3::hash(&d) == want));
        p.idle();
        let (a, b): (Counts, Counts) = (p.pa.counts() - a0, p.pb.counts() - b0);
        let fetched = block_bytes(&p.b) - blocks0;
        eprintln!(
            "{what}: A up {} down {}, B up {} down {}, B fetched {fetched} bytes of blocks",
            a.up, a.down, b.up, b.down
        );
        // Generous bounds (a block is at most 128 KiB here; the file is 16 MiB).
        assert!(fetched <= 512 << 10, "{what}: B fetched {fetched} bytes of blocks{}", p.logs());
        assert!(b.total() <= MIB as u64, "{what}: B moved {b:?} on the wire{}", p.logs());
        assert!(a.total() <= MIB as u64, "{what}: A moved {a:?} on the wire{}", p.logs());
    }
}

/// The names in `dir` as spelled on disk (sorted).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n != ".ferry-root" && !n.starts_with(".ferry-tmp-"));
    names.sort();
    names
}

/// A name in NFD (as a Mac writes it) and names Windows cannot store sync
/// like any other between Linux devices, both ways, through edits, renames
/// and deletes; the NFD file keeps its spelling on the disk that has it. A
/// device whose disk has Windows' rules keeps those names off its disk,
/// says so in its status, and deletes nothing.
#[test]
fn names_legal_on_the_disk_sync_both_ways() {
    let p = Pair::start();
    let dir = tempfile::tempdir().unwrap();
    let pc = CountingProxy::start(&p.server.url).unwrap();
    let c = Daemon::start_with_env(&pc.url, "alice", "C", dir.path(), &[("FERRY_NAME_RULES", "windows")]).unwrap();
    let (nfc, nfd) = ("caf\u{e9}.txt", "cafe\u{301}.txt");
    let (folder_nfc, folder_nfd) = ("R\u{e9}sum\u{e9}", "Re\u{301}sume\u{301}");
    let foreign = ["What?.txt", "Meeting: notes.md", "say \"hi\".txt"];
    std::fs::write(p.a.path(nfd), "written on a Mac").unwrap();
    std::fs::create_dir(p.a.path(folder_nfd)).unwrap();
    std::fs::write(p.a.path(&format!("{folder_nfd}/{nfd}")), "inside").unwrap();
    for name in foreign {
        std::fs::write(p.a.path(name), name).unwrap();
    }
    let inner_nfc = format!("{folder_nfc}/{nfc}");
    p.wait("everything on B under its NFC name", || {
        std::fs::read(p.b.path(nfc)).is_ok_and(|d| d == b"written on a Mac")
            && std::fs::read(p.b.path(&inner_nfc)).is_ok_and(|d| d == b"inside")
            && foreign.iter().all(|n| std::fs::read(p.b.path(n)).is_ok_and(|d| d == n.as_bytes()))
    });
    let on_b = names_in(&p.b.folder);
    p.wait("the NFC names on C, the others kept off with a reason", || {
        std::fs::read(c.path(nfc)).is_ok_and(|d| d == b"written on a Mac")
            && std::fs::read(c.path(&inner_nfc)).is_ok_and(|d| d == b"inside")
            && c.status().is_ok_and(|s| {
                let kept = s["kept_off_disk"].to_string();
                foreign.iter().all(|n| kept.contains(&n.replace('"', "\\\""))) && s["state"] == "idle"
            })
    });
    assert!(foreign.iter().all(|n| !c.path(n).exists()));
    // A keeps the Mac spelling: no second file under the NFC name.
    assert_eq!(names_in(&p.a.folder), {
        let mut v: Vec<String> = [nfd, folder_nfd].iter().chain(&foreign).map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    });

    // An edit on B reaches A's NFD file in place; one on A reaches B.
    std::fs::write(p.b.path(nfc), "edited on B").unwrap();
    p.wait("B's edit in A's NFD file", || std::fs::read(p.a.path(nfd)).is_ok_and(|d| d == b"edited on B"));
    assert!(!names_in(&p.a.folder).contains(&nfc.to_owned()), "{:?}", names_in(&p.a.folder));
    p.idle();
    std::fs::write(p.a.path(nfd), "edited on A").unwrap();
    p.wait("A's edit on B", || std::fs::read(p.b.path(nfc)).is_ok_and(|d| d == b"edited on A"));
    p.idle();
    // A rename on B moves A's file; a rename on A (of the NFD folder) moves B's.
    std::fs::rename(p.b.path(nfc), p.b.path("renamed.txt")).unwrap();
    p.wait("the rename on A", || !p.a.path(nfd).exists() && p.a.path("renamed.txt").exists());
    std::fs::rename(p.a.path(folder_nfd), p.a.path("moved")).unwrap();
    p.wait("the folder move on B", || {
        !p.b.path(folder_nfc).exists() && std::fs::read(p.b.path(&format!("moved/{nfc}"))).is_ok()
    });
    // Deletions both ways, of names C never had.
    std::fs::remove_file(p.a.path(foreign[0])).unwrap();
    std::fs::remove_file(p.b.path(foreign[1])).unwrap();
    p.wait("the deletions on both", || !p.a.path(foreign[1]).exists() && !p.b.path(foreign[0]).exists());
    p.idle();
    p.wait("C to settle", || c.status().is_ok_and(|s| s["state"] == "idle" && s["pending_downloads"] == 0));
    assert!(p.b.path(foreign[2]).exists() && p.a.path(foreign[2]).exists(), "C deleted nothing");
    let (sa, sb) = (names_in(&p.a.folder), names_in(&p.b.folder));
    assert_eq!(sa, sb, "B had {on_b:?}");
    assert!(!sa.iter().any(|n| n.contains("conflicted copy")), "{sa:?}");

    // Two spellings of one name side by side (a Linux disk holds both):
    // one moves aside as a conflict copy, and both sync.
    std::fs::write(p.a.path("ni\u{f1}o.txt"), "nfc").unwrap();
    std::fs::write(p.a.path("nin\u{303}o.txt"), "nfd").unwrap();
    p.wait("both spellings' contents on B", || {
        let names = names_in(&p.b.folder);
        names.contains(&"ni\u{f1}o.txt".to_owned())
            && names.iter().any(|n| n.starts_with("ni\u{f1}o (conflicted copy from A"))
    });
    p.idle();
    let contents: Vec<Vec<u8>> = names_in(&p.b.folder)
        .iter()
        .filter(|n| n.starts_with("ni\u{f1}o"))
        .map(|n| std::fs::read(p.b.path(n)).unwrap())
        .collect();
    assert_eq!(contents.len(), 2);
    assert!(contents.contains(&b"nfc".to_vec()) && contents.contains(&b"nfd".to_vec()));
}

fn state_of(d: &Daemon) -> (String, String) {
    d.status()
        .map(|s| (s["state"].as_str().unwrap_or("").to_owned(), s["reason"].as_str().unwrap_or("").to_owned()))
        .unwrap_or_default()
}

/// A sync folder that vanishes (an unplugged disk, a renamed folder) or is
/// replaced by an empty one (a mount point without its disk) puts the
/// daemon in state `error` with the reason; it stays up, deletes nothing on
/// either side, and resumes by itself when the folder is back.
#[test]
fn a_folder_that_vanishes_and_comes_back_resumes_syncing() {
    let p = Pair::start();
    for i in 0..5 {
        std::fs::write(p.a.path(&format!("f{i}.txt")), format!("file {i}")).unwrap();
    }
    p.wait("the files on B", || (0..5).all(|i| p.b.path(&format!("f{i}.txt")).exists()));
    p.idle();
    let away = p.a.folder.with_file_name("folder-A-unplugged");

    for how in ["renamed away", "replaced by an empty folder"] {
        std::fs::rename(&p.a.folder, &away).unwrap();
        if how == "replaced by an empty folder" {
            std::fs::create_dir(&p.a.folder).unwrap();
        }
        p.wait("A in state error, saying why", || {
            let (state, reason) = state_of(&p.a);
            state == "error" && reason.contains("missing") && reason.contains("nothing is deleted")
        });
        // Meanwhile B goes on: a new file, an edit, a deletion.
        std::fs::write(p.b.path(&format!("new while {how}.txt")), how).unwrap();
        std::fs::write(p.b.path("f1.txt"), format!("edited while {how}")).unwrap();
        std::fs::remove_file(p.b.path("f2.txt")).unwrap();
        p.wait("B idle", || state_of(&p.b).0 == "idle");
        // A's files are all still on the server: B has everything but its own deletion.
        for i in [0, 3, 4] {
            assert!(p.b.path(&format!("f{i}.txt")).exists(), "f{i}.txt deleted while A's folder was {how}");
        }
        assert_eq!(state_of(&p.a).0, "error", "{}", p.logs());
        // Back: A resumes without a restart and takes in what B did.
        if how == "replaced by an empty folder" {
            std::fs::remove_dir(&p.a.folder).unwrap();
        }
        std::fs::rename(&away, &p.a.folder).unwrap();
        p.wait("A to resume and catch up", || {
            std::fs::read(p.a.path(&format!("new while {how}.txt"))).is_ok_and(|d| d == how.as_bytes())
                && std::fs::read(p.a.path("f1.txt")).is_ok_and(|d| d == format!("edited while {how}").as_bytes())
                && !p.a.path("f2.txt").exists()
        });
        p.idle();
        // And A's own changes flow again (the watcher is back too).
        let name = format!("after {how}.txt");
        std::fs::write(p.a.path(&name), "back").unwrap();
        p.wait("A's new file on B", || p.b.path(&name).exists());
        std::fs::write(p.a.path("f2.txt"), "again").unwrap();
        p.wait("f2.txt on B again", || p.b.path("f2.txt").exists());
        p.idle();
    }
    p.idle();
    assert_eq!(snapshot(&p.a.folder), snapshot(&p.b.folder));
    assert!(!p.a.log().contains("stopping"), "the daemon never stopped");
}

/// Streaming sync: while A sends a large file over a slow uplink, B fetches
/// its blocks as they land (into a temp file nobody sees) and takes that
/// over at the commit; the file shows on B only once committed, intact.
#[test]
fn a_large_file_streams_to_the_other_device_while_it_uploads() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().unwrap();
    // 24 MB/s up for A: a 48 MiB file takes about two seconds to send.
    let pa = CountingProxy::start_limited(&server.url, Some(24_000_000)).unwrap();
    let a = Daemon::start_at(&pa.url, "alice", "A", dir.path()).unwrap();
    let b = Daemon::start(&server, "alice", "B", dir.path()).unwrap();
    let size = 48 * MIB;
    let data = pseudo_random(size, 77);
    let staged = dir.path().join("big.bin");
    std::fs::write(&staged, &data).unwrap();
    std::fs::rename(&staged, a.path("big.bin")).unwrap();
    let target = b.path("big.bin");
    let logs = || format!("\n--- A ---\n{}\n--- B ---\n{}", a.log(), b.log());
    // Before the commit, B's prefetch is under way and the file is not shown.
    wait_until(T, "B to prefetch", || b.log().contains("prefetching a file being uploaded elsewhere"))
        .unwrap_or_else(|e| panic!("{e}{}", logs()));
    let temps_with_data = || {
        std::fs::read_dir(&b.folder)
            .map(|d| {
                d.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with(".ferry-tmp-")
                        && e.metadata().is_ok_and(|m| m.len() > 0)
                })
            })
            .unwrap_or(false)
    };
    wait_until(T, "prefetched blocks in B's temp file", || temps_with_data() || target.exists())
        .unwrap_or_else(|e| panic!("{e}{}", logs()));
    wait_until(T, "the file on B", || std::fs::metadata(&target).is_ok_and(|m| m.len() == size as u64))
        .unwrap_or_else(|e| panic!("{e}{}", logs()));
    assert_eq!(blake3::hash(&std::fs::read(&target).unwrap()), blake3::hash(&data));
    assert!(b.log().contains("taking over a prefetch"), "{}", logs());
    // Nothing is left behind: the prefetch became the file.
    wait_until(T, "no temp files on B", || !temps_with_data()).unwrap_or_else(|e| panic!("{e}{}", logs()));
    drop(server);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The server comes back from an older backup: its journal ends before the
/// daemon's cursor. The daemon is told (`cursor_reset`), lists everything
/// again and merges with its folder without a base: what only it has goes
/// up again, what differs keeps both versions, and nothing is deleted.
#[test]
fn a_server_restored_from_an_older_backup_loses_nothing() {
    let mut server = Server::start().expect("server");
    let dir = tempfile::tempdir().unwrap();
    let mut a = Daemon::start(&server, "alice", "A", dir.path()).unwrap();
    let idle = |d: &Daemon, what: &str| {
        wait_until(T, what, || {
            d.status()
                .is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["cursor"].as_i64() > Some(0))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    };
    std::fs::write(a.path("edited.txt"), "before the backup").unwrap();
    std::fs::write(a.path("same.txt"), "unchanged").unwrap();
    idle(&a, "A to upload");
    wait_until(T, "both files on the server", || a.status().is_ok_and(|s| s["cursor"].as_i64() >= Some(2))).unwrap();

    // The backup, then more work the backup does not have.
    server.stop().unwrap();
    let backup = dir.path().join("backup");
    copy_dir(&server.data, &backup);
    server.restart_same_port().unwrap();
    let before = a.status().unwrap()["cursor"].as_i64().unwrap();
    std::fs::write(a.path("edited.txt"), "after the backup").unwrap();
    std::fs::write(a.path("new.txt"), "only after the backup").unwrap();
    wait_until(T, "A to upload the newer work", || {
        a.status().is_ok_and(|s| s["cursor"].as_i64() >= Some(before + 2) && s["pending_uploads"] == 0)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));

    // The server is restored from the backup while A is down.
    a.kill();
    server.stop().unwrap();
    std::fs::remove_dir_all(&server.data).unwrap();
    copy_dir(&backup, &server.data);
    server.restart_same_port().unwrap();
    a.restart().unwrap();
    wait_until(T, "A to notice", || {
        a.status().is_ok_and(|s| s["recent_errors"].to_string().contains("older than this device"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    idle(&a, "A to merge");

    // Nothing A had is gone; what differed is kept in both versions.
    let contents: Vec<Vec<u8>> = snapshot(&a.folder).into_values().collect();
    for want in ["before the backup", "after the backup", "unchanged", "only after the backup"] {
        assert!(contents.iter().any(|c| c == want.as_bytes()), "{want:?} lost: {:?}\n{}", snapshot(&a.folder), a.log());
    }
    // And the server has it all again: a new device gets the same folder.
    let b = Daemon::start(&server, "alice", "B", dir.path()).unwrap();
    let want = snapshot(&a.folder);
    wait_until(T, "B to match A", || snapshot(&b.folder) == want)
        .unwrap_or_else(|e| panic!("{e}\nA: {:?}\nB: {:?}\n{}", want.keys(), snapshot(&b.folder).keys(), b.log()));
}
