//! Real processes, real faults: `kill -9` of the daemons and the server at
//! random moments while both devices upload, download and commit, for 50
//! rounds; files that change while they are sent. After the dust settles
//! the two folders agree, hold the last version of everything, and no
//! partial file was ever seen at a synced path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use ferry_tests::{Daemon, Server, pseudo_random, snapshot, wait_until};

const T: Duration = Duration::from_secs(180);

/// A tiny seeded generator (the run prints its seed; `FERRY_CRASH_SEED` replays it).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, data).expect("write");
}

fn idle(d: &Daemon) -> bool {
    d.status()
        .map(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
        .unwrap_or(false)
}

/// Every file in `folder` must hold a version someone wrote at that path
/// (never a partial or mixed one). Returns a description of the first that does not.
fn partial_file(folder: &Path, versions: &HashMap<String, HashSet<blake3::Hash>>) -> Option<String> {
    snapshot(folder).into_iter().filter(|(p, _)| !p.ends_with('/')).find_map(|(p, data)| {
        let known = versions.get(&p).is_some_and(|v| v.contains(&blake3::hash(&data)));
        (!known).then(|| format!("{p} ({} bytes) is no version anyone wrote", data.len()))
    })
}

#[test]
fn fifty_rounds_of_kill_9_lose_nothing() {
    let seed: u64 = std::env::var("FERRY_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    eprintln!("seed {seed} (FERRY_CRASH_SEED={seed} replays the same schedule)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start().expect("server");
    let mut devices = [
        Daemon::start(&server, "alice", "A", dir.path()).expect("A"),
        Daemon::start(&server, "alice", "B", dir.path()).expect("B"),
    ];
    // path → the last content its writer wrote; and every version ever written.
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut versions: HashMap<String, HashSet<blake3::Hash>> = HashMap::new();
    let mut kills = [0u32; 3];
    for round in 0..50u64 {
        // Each device writes its own files (new ones, and edits of earlier
        // ones): small files, and now and then a larger one (many blocks).
        for (i, d) in devices.iter().enumerate() {
            let name = ["a", "b"][i];
            for k in 0..1 + rng.below(6) {
                let path = if round > 0 && rng.below(3) == 0 {
                    format!("{name}/r{}/f{k}", rng.below(round))
                } else {
                    format!("{name}/r{round}/f{k}")
                };
                let size =
                    if rng.below(8) == 0 { 2_000_000 + rng.below(3_000_000) } else { rng.below(50_000) } as usize;
                let data = pseudo_random(size, rng.next());
                write(&d.path(&path), &data);
                versions.entry(path.clone()).or_default().insert(blake3::hash(&data));
                expected.insert(path, data);
            }
        }
        // A random moment later, in the middle of whatever is going on...
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        // ...one of the three dies without warning and comes back.
        let victim = rng.below(3) as usize;
        kills[victim] += 1;
        match victim {
            0 | 1 => {
                devices[victim].kill();
                devices[victim].restart().expect("daemon restarts");
            }
            _ => server.crash_and_restart().expect("server restarts"),
        }
        for d in &devices {
            if let Some(bad) = partial_file(&d.folder, &versions) {
                panic!("round {round} (seed {seed}): {} shows {bad}", d.device);
            }
        }
    }
    eprintln!("kill -9: A {} times, B {} times, the server {} times", kills[0], kills[1], kills[2]);
    // Nothing was written beside the two devices' homes and folders.
    let mut beside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["folder-A", "folder-B", "home-A", "home-B"]);
    let [a, b] = &devices;
    let want = expected;
    let files = |d: &Daemon| -> BTreeMap<String, Vec<u8>> {
        snapshot(&d.folder).into_iter().filter(|(p, _)| !p.ends_with('/')).collect()
    };
    let settled = wait_until(T, "both folders to hold the last version of everything", || {
        idle(a) && idle(b) && files(a) == want && files(b) == want
    });
    if let Err(e) = settled {
        let (fa, fb) = (files(a), files(b));
        let diff: Vec<String> = want
            .iter()
            .filter(|(p, v)| fa.get(*p) != Some(v) || fb.get(*p) != Some(v))
            .map(|(p, v)| {
                format!("{p}: want {} bytes, A {:?}, B {:?}", v.len(), fa.get(p).map(Vec::len), fb.get(p).map(Vec::len))
            })
            .chain(fa.keys().chain(fb.keys()).filter(|p| !want.contains_key(*p)).map(|p| format!("{p}: unexpected")))
            .take(20)
            .collect();
        panic!(
            "seed {seed}: {e}\n{}\nA: {:?}\nB: {:?}",
            diff.join("\n"),
            a.status().map(|s| s["recent_errors"].clone()),
            b.status().map(|s| s["recent_errors"].clone())
        );
    }
}

#[test]
fn files_changing_while_they_are_sent_arrive_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start().expect("server");
    let a = Daemon::start(&server, "alice", "A", dir.path()).expect("A");
    let b = Daemon::start(&server, "alice", "B", dir.path()).expect("B");
    // One file rewritten in place again and again (each version large enough
    // to take a while to hash and send), one file growing by appends.
    let mut versions: HashMap<String, HashSet<blake3::Hash>> = HashMap::new();
    let grow = a.path("log.txt");
    let mut log = Vec::new();
    let mut last = Vec::new();
    for i in 0..40u64 {
        last = pseudo_random(3_000_000, i);
        write(&a.path("busy.bin"), &last);
        versions.entry("busy.bin".into()).or_default().insert(blake3::hash(&last));
        log.extend_from_slice(format!("line {i}: {}\n", "x".repeat(2000)).as_bytes());
        write(&grow, &log);
        versions.entry("log.txt".into()).or_default().insert(blake3::hash(&log));
        if let Some(bad) = partial_file(&b.folder, &versions) {
            panic!("B shows {bad}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    wait_until(T, "B to hold the final versions", || {
        std::fs::read(b.path("busy.bin")).ok().as_ref() == Some(&last)
            && std::fs::read(b.path("log.txt")).ok().as_ref() == Some(&log)
    })
    .expect("final versions on B");
    assert!(partial_file(&b.folder, &versions).is_none());
}
