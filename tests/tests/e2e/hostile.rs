//! A hostile server: a proxy in front of the real server sends device B
//! change records with unsafe paths and blocks whose bytes do not match their
//! ids. B must refuse them, write nothing outside its folder, never show a
//! corrupted file, and catch up once the server behaves.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferry_tests::proxy::{Proxy, hostile_paths};
use ferry_tests::{Daemon, Server, pseudo_random, snapshot, wait_until};

const T: Duration = Duration::from_secs(60);

fn recent_errors(d: &Daemon) -> String {
    d.status().map(|s| s["recent_errors"].to_string()).unwrap_or_default()
}

/// Every name under `dir`, recursively (to spot anything that escaped).
fn all_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_cannot_write_outside_the_folder_or_corrupt_files() {
    let server = Server::start().expect("server");
    let proxy = Proxy::start(&server.url).await.expect("proxy");
    let tamper = std::sync::Arc::clone(&proxy.tamper);
    let url = proxy.url.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Daemon::start(&server, "alice", "A", dir.path()).expect("daemon A");
        let b = Daemon::start_at(&url, "alice", "B", dir.path()).expect("daemon B");

        // 1. Unsafe paths in the journal: refused one by one; the rest syncs.
        tamper.inject_paths.store(true, Ordering::SeqCst);
        std::fs::write(a.path("good.txt"), "good").unwrap();
        wait_until(T, "good.txt on B", || std::fs::read(b.path("good.txt")).ok().as_deref() == Some(b"good")).unwrap();
        wait_until(T, "B to report the refused records", || recent_errors(&b).contains("refused")).unwrap();
        tamper.inject_paths.store(false, Ordering::SeqCst);
        let names = all_names(dir.path());
        let escaped: Vec<&String> = names
            .iter()
            .filter(|n| ["escape", "byte.txt", "ctl", "overlong", "deep.txt"].iter().any(|bad| n.contains(bad)))
            .collect();
        assert!(escaped.is_empty(), "{escaped:?}");
        for p in ["/escape.txt", "/tmp/escape.txt"] {
            assert!(!Path::new(p).exists(), "{p} was written");
        }
        assert!(!dir.path().parent().unwrap().join("escape.txt").exists());
        assert!(hostile_paths().len() > 10);

        // 2. Corrupted blocks: nothing corrupted is ever written at a path;
        // once the server behaves, the files arrive intact.
        tamper.corrupt_blocks.store(true, Ordering::SeqCst);
        let small = pseudo_random(200 << 10, 1);
        let large = pseudo_random(3 << 20, 2);
        std::fs::write(a.path("small.bin"), &small).unwrap();
        std::fs::write(a.path("large.bin"), &large).unwrap();
        wait_until(T, "B to refuse the corrupted blocks", || {
            let e = recent_errors(&b);
            e.contains("small.bin") && e.contains("large.bin")
        })
        .unwrap();
        for name in ["small.bin", "large.bin"] {
            assert!(!b.path(name).exists(), "{name} was written from corrupted blocks");
        }
        tamper.corrupt_blocks.store(false, Ordering::SeqCst);
        wait_until(T, "intact files on B", || {
            std::fs::read(b.path("small.bin")).ok() == Some(small.clone())
                && std::fs::read(b.path("large.bin")).ok() == Some(large.clone())
        })
        .unwrap();
        let (sa, sb) = (snapshot(&a.folder), snapshot(&b.folder));
        assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
        assert_eq!(sa, sb);
    })
    .await
    .unwrap();
}
