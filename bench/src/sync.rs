//! End-to-end sync figures: the real server and two real daemons on loopback
//! (release binaries next to this one), the workloads Syncthing was measured on.
//! Each daemon talks to the server through its own byte-counting TCP proxy, so
//! the delta rows report what crossed the wire for the whole system (every
//! device, both directions, HTTP headers and long polls included), not one
//! side's own counter. The drop is measured against this disk's limit: every
//! byte is written durably twice (by the server and by B), so the fsynced
//! write rate, measured first in the same run, halved, is the most any sync
//! could do here.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_tests::counting::{CountingProxy, Counts};
use ferry_tests::{Daemon, Server, pseudo_random, wait_until};

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    proc_field(pid, "status", "VmRSS:") as f64 / 1024.0
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let (user, sys) = cpu_split(pid);
    user + sys
}

/// User and system CPU seconds of a process.
fn cpu_split(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (field(11), field(12))
}

fn size_of(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)].as_secs_f64() * 1000.0
}

fn wait_idle(d: &Daemon) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(600), "daemon idle", || {
        d.status()
            .map(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
            .unwrap_or(false)
    })
}

/// Sequential writes with an fsync at the end, as `dd bs=4M count=256
/// conv=fsync` does, in `dir` (the disk the run uses): MB/s.
fn fsynced_write_rate(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join("disk-rate.bin");
    let chunk = pseudo_random(4 << 20, 1);
    let mut best = 0f64;
    for _ in 0..2 {
        let t = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..256 {
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
        best = best.max((256u64 << 22) as f64 / 1e6 / t.elapsed().as_secs_f64());
        drop(f);
        std::fs::remove_file(&path)?;
    }
    Ok(best)
}

fn kib(n: u64) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

/// The parts `ferry-bench sync` runs by default.
pub const BASIC: [&str; 5] = ["latency", "delta", "drop", "many", "idle"];

pub fn run(parts: &[String]) -> anyhow::Result<()> {
    let part = |name: &str| parts.iter().any(|p| p == name);
    if let Some(p) = parts.iter().find(|p| !BASIC.contains(&p.as_str()) && *p != "tree-100k" && *p != "huge") {
        anyhow::bail!("unknown part {p:?}; known: {}, tree-100k, huge", BASIC.join(", "));
    }
    println!("== sync: server ({}) + daemons A and B on 127.0.0.1 ==", ferry_tests::BackendChoice::from_env().name());
    // Quiet daemons: their log writes would count as bytes written.
    if std::env::var_os("FERRY_TEST_LOG").is_none() {
        eprintln!("(set FERRY_TEST_LOG=warn to keep daemon logs out of the byte counts)");
    }
    let mut tmp = tempfile::tempdir_in(std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;
    if std::env::var_os("FERRY_BENCH_KEEP").is_some() {
        // Keep the folders and daemon logs for a look afterwards.
        tmp.disable_cleanup(true);
        eprintln!("keeping {}", tmp.path().display());
    }
    let server = Server::start()?;
    let proxy_a = CountingProxy::start(&server.url)?;
    let proxy_b = CountingProxy::start(&server.url)?;
    let direct = std::env::var_os("FERRY_BENCH_DIRECT").is_some();
    let (url_a, url_b) =
        if direct { (server.url.clone(), server.url.clone()) } else { (proxy_a.url.clone(), proxy_b.url.clone()) };
    let a = Daemon::start_at(&url_a, "alice", "A", tmp.path())?;
    let b = Daemon::start_at(&url_b, "alice", "B", tmp.path())?;
    let wire = || (proxy_a.counts(), proxy_b.counts());
    let (pa, pb) = (a.pid().context("pid")?, b.pid().context("pid")?);
    wait_idle(&a)?;
    wait_idle(&b)?;

    // 1. Propagation latency of a new 1 KiB file, 50 isolated edits.
    if part("latency") {
        std::fs::create_dir_all(a.path("lat"))?;
        wait_until(Duration::from_secs(30), "lat/ on B", || b.path("lat").exists())?;
        let mut lat = Vec::new();
        for i in 0..50 {
            wait_idle(&a)?;
            wait_idle(&b)?;
            let data = pseudo_random(1024, i + 100);
            let name = format!("lat/{i}.txt");
            let t = Instant::now();
            std::fs::write(a.path(&name), &data)?;
            let target = b.path(&name);
            wait_until(Duration::from_secs(30), "new file on B", || size_of(&target) == Some(1024))?;
            lat.push(t.elapsed());
        }
        let (p50, p99) = (pct(&mut lat.clone(), 0.5), pct(&mut lat, 0.99));
        println!("new 1 KiB file A → B: p50 {p50:.0} ms, p99 {p99:.0} ms (50 isolated edits)");
    }

    // 2. Bytes on the wire, both ways for both devices, for small edits of a
    // synced 64 MiB file.
    if part("delta") {
        let big = a.path("delta.bin");
        std::fs::write(&big, pseudo_random(64 << 20, 7))?;
        let big_b = b.path("delta.bin");
        wait_until(Duration::from_secs(120), "64 MiB on B", || size_of(&big_b) == Some(64 << 20))?;
        wait_idle(&a)?;
        wait_idle(&b)?;
        let fetched = |d: &Daemon| d.status().map(|s| s["block_bytes_received"].as_u64().unwrap_or(0)).unwrap_or(0);
        let measure =
            |label: &str, edit: &dyn Fn() -> anyhow::Result<()>, done: &dyn Fn() -> bool| -> anyhow::Result<()> {
                wait_idle(&a)?;
                wait_idle(&b)?;
                let ((a0, b0), f0) = (wire(), fetched(&b));
                edit()?;
                wait_until(Duration::from_secs(120), label, done)?;
                wait_idle(&a)?;
                wait_idle(&b)?;
                let (wa, wb) = wire();
                let (da, db): (Counts, Counts) = (wa - a0, wb - b0);
                println!(
                    "{label}: {} on the wire in all (A up {}, down {}; B up {}, down {}); B fetched {} of block data",
                    kib(da.total() + db.total()),
                    kib(da.up),
                    kib(da.down),
                    kib(db.up),
                    kib(db.down),
                    kib(fetched(&b) - f0),
                );
                Ok(())
            };
        let mid = 32u64 << 20;
        let byte_at = |p: &Path, off: u64| -> Option<u8> {
            use std::io::Read;
            let mut f = std::fs::File::open(p).ok()?;
            f.seek(SeekFrom::Start(off)).ok()?;
            let mut b = [0u8];
            f.read_exact(&mut b).ok()?;
            Some(b[0])
        };
        let orig = byte_at(&big, mid).context("byte")?;
        measure(
            "(a) overwrite 1 byte in the middle of 64 MiB",
            &|| {
                let mut f = std::fs::OpenOptions::new().write(true).open(&big)?;
                f.seek(SeekFrom::Start(mid))?;
                f.write_all(&[orig ^ 0xff])?;
                Ok(())
            },
            &|| byte_at(&big_b, mid) == Some(orig ^ 0xff),
        )?;
        measure(
            "(b) insert 1 byte at the start of 64 MiB",
            &|| {
                let mut data = vec![0x5a];
                data.extend(std::fs::read(&big)?);
                std::fs::write(&big, data)?;
                Ok(())
            },
            &|| size_of(&big_b) == Some((64 << 20) + 1),
        )?;
        measure(
            "(c) append 1 MiB to 64 MiB",
            &|| {
                let mut f = std::fs::OpenOptions::new().append(true).open(&big)?;
                f.write_all(&pseudo_random(1 << 20, 8))?;
                Ok(())
            },
            &|| size_of(&big_b) == Some((65 << 20) + 1),
        )?;
    }

    // 3. One drop of 1,000 × 100 KiB files and one 512 MiB file.
    if part("drop") {
        let disk_rate = fsynced_write_rate(tmp.path())?;
        println!(
            "disk: fsynced sequential writes {disk_rate:.0} MB/s; two-copy limit (server and B each write every byte) {:.0} MB/s",
            disk_rate / 2.0
        );
        let stage = tmp.path().join("stage-drop");
        std::fs::create_dir_all(stage.join("small"))?;
        for i in 0..1000 {
            std::fs::write(stage.join(format!("small/{i}.bin")), pseudo_random(100 << 10, i + 1000))?;
        }
        {
            let mut f = std::fs::File::create(stage.join("big.bin"))?;
            for i in 0..64 {
                f.write_all(&pseudo_random(8 << 20, i + 5000))?;
            }
        }
        let total = 1000 * (100u64 << 10) + (512u64 << 20);
        wait_idle(&a)?;
        let ps = server.pid().context("server pid")?;
        let cpu0 = [cpu_split(pa), cpu_split(ps), cpu_split(pb)];
        let t = Instant::now();
        std::fs::rename(&stage, a.path("drop"))?;
        let last_small = b.path("drop/small/999.bin");
        let big_drop = b.path("drop/big.bin");
        wait_until(Duration::from_secs(600), "the drop on B", || {
            size_of(&big_drop) == Some(512 << 20) && size_of(&last_small) == Some(100 << 10)
        })?;
        wait_until(Duration::from_secs(600), "all small files on B", || {
            std::fs::read_dir(b.path("drop/small")).map(|d| d.count()).unwrap_or(0) == 1000
        })?;
        let took = t.elapsed();
        let rate = total as f64 / 1e6 / took.as_secs_f64();
        println!(
            "drop of 1,000 × 100 KiB + 512 MiB ({:.0} MB) A → B: {:.1} s, {rate:.0} MB/s = {:.0} % of the two-copy limit",
            total as f64 / 1e6,
            took.as_secs_f64(),
            100.0 * rate / (disk_rate / 2.0)
        );
        let cpu: Vec<String> = [pa, ps, pb]
            .iter()
            .zip(cpu0)
            .map(|(&pid, (u0, s0))| {
                let (u, s) = cpu_split(pid);
                format!("{:.2} s ({:.2} user + {:.2} system)", u - u0 + s - s0, u - u0, s - s0)
            })
            .collect();
        println!(
            "  CPU during the drop: A {}, server {}, B {} (of {:.1} s × 2 cores)",
            cpu[0],
            cpu[1],
            cpu[2],
            took.as_secs_f64()
        );
        std::fs::remove_dir_all(a.path("drop"))?;
        // Over a thousand deletions at once: the daemon pauses for confirmation.
        wait_until(Duration::from_secs(60), "A to pause on the mass deletion", || {
            a.status().map(|s| s["state"] == "paused").unwrap_or(false)
        })?;
        a.ferry(&["resume", "--confirm-deletes"])?;
        wait_until(Duration::from_secs(120), "drop removed on B", || !b.path("drop").exists())?;
    }

    // 4. 10,000 files of 1 KiB.
    if part("many") {
        let stage = tmp.path().join("stage-10k");
        for d in 0..10 {
            std::fs::create_dir_all(stage.join(format!("d{d}")))?;
            for i in 0..1000 {
                std::fs::write(stage.join(format!("d{d}/{i}.txt")), pseudo_random(1024, d * 1000 + i))?;
            }
        }
        wait_idle(&a)?;
        wait_idle(&b)?;
        let t = Instant::now();
        std::fs::rename(&stage, a.path("many"))?;
        wait_until(Duration::from_secs(600), "10,000 files on B", || {
            (0..10).all(|d| std::fs::read_dir(b.path(&format!("many/d{d}"))).map(|r| r.count()).unwrap_or(0) == 1000)
        })?;
        println!("10,000 files of 1 KiB A → B: {:.2} s", t.elapsed().as_secs_f64());
    }

    // 5. Idle: RSS and CPU with ~10,000 tracked files.
    let mut b = b;
    let mut pb = pb;
    if part("idle") {
        wait_idle(&a)?;
        wait_idle(&b)?;
        std::thread::sleep(Duration::from_secs(2));
        let (ca, cb) = (cpu_secs(pa), cpu_secs(pb));
        std::thread::sleep(Duration::from_secs(60));
        println!(
            "idle with {} tracked files: RSS A {:.0} MiB, B {:.0} MiB; CPU in 60 idle s: A {:.2} s, B {:.2} s",
            a.status()?["files"],
            rss_mib(pa),
            rss_mib(pb),
            cpu_secs(pa) - ca,
            cpu_secs(pb) - cb
        );

        // The same tree after a restart of B (the steady state of a daemon that
        // has not just moved a gigabyte: the allocator keeps what big transfers used).
        b.kill();
        b.restart()?;
        pb = b.pid().context("pid")?;
        wait_until(Duration::from_secs(60), "B's control socket", || b.status().is_ok())?;
        wait_idle(&b)?;
        std::thread::sleep(Duration::from_secs(5));
        let cb = cpu_secs(pb);
        std::thread::sleep(Duration::from_secs(30));
        println!(
            "B restarted, idle with {} tracked files: RSS {:.0} MiB; CPU in 30 idle s after start-up: {:.2} s",
            b.status()?["files"],
            rss_mib(pb),
            cpu_secs(pb) - cb
        );
    }

    if part("tree-100k") {
        let stage = tmp.path().join("stage-100k");
        for d in 0..100 {
            std::fs::create_dir_all(stage.join(format!("d{d}")))?;
            for i in 0..1000 {
                std::fs::write(stage.join(format!("d{d}/{i}")), format!("{d}/{i}"))?;
            }
        }
        let t = Instant::now();
        std::fs::rename(&stage, a.path("tree"))?;
        wait_until(Duration::from_secs(1800), "100k files on B", || {
            std::fs::read_dir(b.path("tree/d99")).map(|r| r.count()).unwrap_or(0) == 1000
        })?;
        wait_idle(&a)?;
        wait_idle(&b)?;
        let took = t.elapsed();
        std::thread::sleep(Duration::from_secs(5));
        println!(
            "100,000 files A → B in {:.1} s; idle with {} tracked files: RSS A {:.0} MiB, B {:.0} MiB",
            took.as_secs_f64(),
            a.status()?["files"],
            rss_mib(pa),
            rss_mib(pb)
        );
        if let Some(secs) = std::env::var("FERRY_BENCH_PAUSE").ok().and_then(|v| v.parse().ok()) {
            eprintln!("pausing {secs} s: A is pid {pa}, B is pid {pb}");
            std::thread::sleep(Duration::from_secs(secs));
        }
        b.kill();
        b.restart()?;
        pb = b.pid().context("pid")?;
        wait_until(Duration::from_secs(60), "B's control socket", || b.status().is_ok())?;
        wait_idle(&b)?;
        std::thread::sleep(Duration::from_secs(5));
        println!("B restarted, idle with {} tracked files: RSS {:.0} MiB", b.status()?["files"], rss_mib(pb));
    }

    if part("huge") {
        let stage = tmp.path().join("huge.bin");
        {
            let mut f = std::fs::File::create(&stage)?;
            for i in 0..512 {
                f.write_all(&pseudo_random(8 << 20, i + 9000))?;
            }
        }
        wait_idle(&a)?;
        std::fs::rename(&stage, a.path("huge.bin"))?;
        let mut peak = 0f64;
        let target = b.path("huge.bin");
        wait_until(Duration::from_secs(1800), "4 GiB on B", || {
            peak = peak.max(rss_mib(pa));
            size_of(&target) == Some(4 << 30)
        })?;
        println!("uploading a 4 GiB file: peak RSS of A {peak:.0} MiB");
    }
    drop(server);
    Ok(())
}
