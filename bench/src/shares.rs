//! A folder shared between two users, measured as its members feel it:
//! alice's devices A and B and bob's device C, each through its own
//! byte-counting proxy. How long a new file takes to reach alice's other
//! device and bob's (the same journal wake-up, so the same time is the
//! goal), how long bob's edit takes to come back, and what crosses the
//! wire, for every device in both directions, when bob changes one byte of
//! a large shared file (delta sync inside a share: bob's edit reuses the
//! blocks alice uploaded).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::counting::CountingProxy;
use ferry_tests::{Daemon, Server, pseudo_random, wait_until};

const T: Duration = Duration::from_secs(120);

fn idle(d: &Daemon) -> anyhow::Result<()> {
    wait_until(T, "daemon idle", || {
        d.status().is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

fn content(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

pub fn run(edits: u64) -> anyhow::Result<()> {
    println!(
        "== shares: server + alice's daemons A, B and bob's daemon C on 127.0.0.1, each through a counting proxy =="
    );
    let tmp = tempfile::tempdir_in(std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;
    let server = Server::start()?;
    let proxies =
        [CountingProxy::start(&server.url)?, CountingProxy::start(&server.url)?, CountingProxy::start(&server.url)?];
    let a = Daemon::start_at(&proxies[0].url, "alice", "A", tmp.path())?;
    let b = Daemon::start_at(&proxies[1].url, "alice", "B", tmp.path())?;
    let c = Daemon::start_at(&proxies[2].url, "bob", "C", tmp.path())?;
    std::fs::create_dir_all(a.path("team"))?;
    std::fs::write(a.path("team/big.bin"), pseudo_random(64 << 20, 3))?;
    wait_until(T, "team on B", || std::fs::metadata(b.path("team/big.bin")).is_ok_and(|m| m.len() == 64 << 20))?;
    idle(&a)?;
    a.ferry(&["share", &a.path("team").to_string_lossy(), "--with", "bob"])?;
    wait_until(T, "team on C", || std::fs::metadata(c.path("team/big.bin")).is_ok_and(|m| m.len() == 64 << 20))?;
    for d in [&a, &b, &c] {
        idle(d)?;
    }

    // 1. A new 1 KiB file from A: to alice's B and to bob's C.
    let (mut to_b, mut to_c, mut back) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..edits {
        for d in [&a, &b, &c] {
            idle(d)?;
        }
        let data = pseudo_random(1024, 1000 + i);
        let name = format!("team/{i}.txt");
        let t = Instant::now();
        std::fs::write(a.path(&name), &data)?;
        let (mut tb, mut tc) = (None, None);
        wait_until(T, "the file on B and C", || {
            if tb.is_none() && content(&b.path(&name)).as_deref() == Some(&data[..]) {
                tb = Some(t.elapsed());
            }
            if tc.is_none() && content(&c.path(&name)).as_deref() == Some(&data[..]) {
                tc = Some(t.elapsed());
            }
            tb.is_some() && tc.is_some()
        })?;
        to_b.push(ms(tb.unwrap_or_default()));
        to_c.push(ms(tc.unwrap_or_default()));
        // 2. bob's edit of it, back to A.
        idle(&c)?;
        let edit = pseudo_random(1024, 5000 + i);
        let t = Instant::now();
        std::fs::write(c.path(&name), &edit)?;
        wait_until(T, "bob's edit on A", || content(&a.path(&name)).as_deref() == Some(&edit[..]))?;
        back.push(ms(t.elapsed()));
    }
    println!(
        "new 1 KiB file in the shared folder, A → alice's B: p50 {:.0} ms, p99 {:.0} ms; A → bob's C: p50 {:.0} ms, p99 {:.0} ms ({edits} isolated edits)",
        pct(&mut to_b.clone(), 0.5),
        pct(&mut to_b, 0.99),
        pct(&mut to_c.clone(), 0.5),
        pct(&mut to_c, 0.99)
    );
    println!("bob's edit, C → A: p50 {:.0} ms, p99 {:.0} ms", pct(&mut back.clone(), 0.5), pct(&mut back, 0.99));

    // 3. bob changes one byte in the middle of the 64 MiB shared file.
    for d in [&a, &b, &c] {
        idle(d)?;
    }
    let before: Vec<_> = proxies.iter().map(|p| p.counts()).collect();
    let mid = 32u64 << 20;
    let mut f = std::fs::OpenOptions::new().write(true).open(c.path("team/big.bin"))?;
    f.seek(SeekFrom::Start(mid))?;
    f.write_all(&[0xAB])?;
    f.sync_all()?;
    drop(f);
    let byte_at = |p: &Path| -> Option<u8> {
        use std::io::Read;
        let mut f = std::fs::File::open(p).ok()?;
        f.seek(SeekFrom::Start(mid)).ok()?;
        let mut b = [0u8];
        f.read_exact(&mut b).ok()?;
        Some(b[0])
    };
    wait_until(T, "bob's byte on A and B", || {
        byte_at(&a.path("team/big.bin")) == Some(0xAB) && byte_at(&b.path("team/big.bin")) == Some(0xAB)
    })?;
    for d in [&a, &b, &c] {
        idle(d)?;
    }
    let after: Vec<_> = proxies.iter().map(|p| p.counts()).collect();
    let d: Vec<_> = after.into_iter().zip(before).map(|(x, y)| x - y).collect();
    let total: u64 = d.iter().map(|c| c.total()).sum();
    println!(
        "bob overwrites 1 byte in the middle of a shared 64 MiB file: {:.1} KiB on the wire in all (A up {:.1}, down {:.1}; B up {:.1}, down {:.1}; C up {:.1}, down {:.1} KiB)",
        total as f64 / 1024.0,
        d[0].up as f64 / 1024.0,
        d[0].down as f64 / 1024.0,
        d[1].up as f64 / 1024.0,
        d[1].down as f64 / 1024.0,
        d[2].up as f64 / 1024.0,
        d[2].down as f64 / 1024.0,
    );
    Ok(())
}
