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
use ferry_tests::{Daemon, Server, pseudo_random, wait_until};

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
