//! Bandwidth limits as the wire sees them: daemon A uploads a file with
//! `ferry limit --up`, daemon B downloads it with `--down`, each through a
//! byte-counting proxy; the rate is what crossed the proxy over the
//! transfer's time, against the limit. Then the upload again under a
//! schedule whose window holds now (`--between ... --days ...`).

use std::time::{Duration, Instant};

use ferry_tests::counting::CountingProxy;
use ferry_tests::{Daemon, Server, pseudo_random, wait_until};

const T: Duration = Duration::from_secs(600);

fn idle(d: &Daemon) -> anyhow::Result<()> {
    wait_until(T, "daemon idle", || {
        d.status().is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["pending_downloads"] == 0)
    })
}

pub fn run(mib: usize, rate: u64) -> anyhow::Result<()> {
    println!(
        "== limit: {mib} MiB through daemons limited to {:.1} MB/s, each behind a counting proxy ==",
        rate as f64 / 1e6
    );
    let tmp = tempfile::tempdir_in(std::env::var("FERRY_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;
    let server = Server::start()?;
    let (pa, pb) = (CountingProxy::start(&server.url)?, CountingProxy::start(&server.url)?);
    let a = Daemon::start_at(&pa.url, "alice", "A", tmp.path())?;
    let b = Daemon::start_at(&pb.url, "alice", "B", tmp.path())?;
    idle(&a)?;
    idle(&b)?;
    let limit = rate as f64;
    let cursor = |d: &Daemon| d.status().ok().and_then(|s| s["cursor"].as_i64()).unwrap_or(0);
    let off = |r: f64| (r / limit - 1.0) * 100.0;

    // 1. A uploads, limited; B is not limited.
    a.ferry(&["limit", "--up", &rate.to_string()])?;
    let data = pseudo_random(mib << 20, 77);
    let (c0, a0) = (cursor(&a), pa.counts());
    let t = Instant::now();
    std::fs::write(a.path("up.bin"), &data)?;
    wait_until(T, "up.bin committed", || cursor(&a) > c0 && a.status().is_ok_and(|s| s["pending_uploads"] == 0))?;
    let secs = t.elapsed().as_secs_f64();
    let up = (pa.counts() - a0).up as f64;
    println!(
        "upload: {:.2} MB in {secs:.1} s = {:.2} MB/s ({:+.1} % of the limit)",
        up / 1e6,
        up / secs / 1e6,
        off(up / secs)
    );
    wait_until(T, "up.bin on B", || std::fs::metadata(b.path("up.bin")).is_ok_and(|m| m.len() == data.len() as u64))?;
    idle(&a)?;
    idle(&b)?;

    // 2. B downloads, limited; A sends at full speed.
    a.ferry(&["limit", "--up", "off"])?;
    b.ferry(&["limit", "--down", &rate.to_string()])?;
    let data = pseudo_random(mib << 20, 78);
    let (c0, b0) = (cursor(&a), pb.counts());
    let t = Instant::now();
    std::fs::write(a.path("down.bin"), &data)?;
    wait_until(T, "down.bin committed", || cursor(&a) > c0)?;
    let sent = t.elapsed();
    wait_until(T, "down.bin on B", || {
        std::fs::metadata(b.path("down.bin")).is_ok_and(|m| m.len() == data.len() as u64)
    })?;
    let secs = t.elapsed().as_secs_f64();
    let down = (pb.counts() - b0).down as f64;
    println!(
        "download: {:.2} MB in {secs:.1} s = {:.2} MB/s ({:+.1} % of the limit; A had sent it after {:.1} s)",
        down / 1e6,
        down / secs / 1e6,
        off(down / secs),
        sent.as_secs_f64()
    );

    // 3. A uploads under a scheduled limit (a window around now, today).
    b.ferry(&["limit", "--down", "off"])?;
    let now = jiff::Zoned::now();
    let clock = |m: i64| -> anyhow::Result<String> {
        let t = now.checked_add(jiff::SignedDuration::from_mins(m))?;
        Ok(format!("{:02}:{:02}", t.hour(), t.minute()))
    };
    let window = format!("{}-{}", clock(-1)?, clock(60)?);
    // The window starts a minute ago: on that minute's day (at 00:00, yesterday).
    let start = now.checked_sub(jiff::SignedDuration::from_mins(1))?;
    let today = format!("{}", start.strftime("%a")).to_ascii_lowercase();
    let said = a.ferry(&["limit", "--up", &rate.to_string(), "--between", &window, "--days", &today])?;
    wait_until(T, "the scheduled limit", || a.status().is_ok_and(|s| s["limit_up"] == rate))?;
    let data = pseudo_random(mib << 20, 79);
    let (c0, a0) = (cursor(&a), pa.counts());
    let t = Instant::now();
    std::fs::write(a.path("scheduled.bin"), &data)?;
    wait_until(T, "scheduled.bin committed", || {
        cursor(&a) > c0 && a.status().is_ok_and(|s| s["pending_uploads"] == 0)
    })?;
    let secs = t.elapsed().as_secs_f64();
    let up = (pa.counts() - a0).up as f64;
    println!(
        "scheduled upload ({}): {:.2} MB in {secs:.1} s = {:.2} MB/s ({:+.1} % of the limit)",
        said.lines().last().unwrap_or("").trim(),
        up / 1e6,
        up / secs / 1e6,
        off(up / secs)
    );
    Ok(())
}
