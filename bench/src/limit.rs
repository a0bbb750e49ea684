//! Bandwidth limits as the wire sees them: daemon A uploads a file with
//! `ferry limit --up`, daemon B downloads it with `--down`, each through a
//! byte-counting proxy; the rate is what crossed the proxy over the
//! transfer's time, against the limit.

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
    a.ferry(&["limit", "--up", &rate.to_string()])?;
    b.ferry(&["limit", "--down", &rate.to_string()])?;
    let limit = rate as f64;
    let data = pseudo_random(mib << 20, 77);
    let (a0, b0) = (pa.counts(), pb.counts());
    let t = Instant::now();
    std::fs::write(a.path("limited.bin"), &data)?;
    let target = b.path("limited.bin");
    // Uploaded: A idle again; downloaded: the file whole on B.
    let mut up_done = None;
    wait_until(T, "the file on B", || {
        if up_done.is_none() && a.status().is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0) {
            up_done = Some(t.elapsed());
        }
        std::fs::metadata(&target).is_ok_and(|m| m.len() == data.len() as u64)
    })?;
    let down_done = t.elapsed();
    let up = pa.counts() - a0;
    let down = pb.counts() - b0;
    let up_secs = up_done.unwrap_or(down_done).as_secs_f64();
    let (up_rate, down_rate) = (up.up as f64 / up_secs, down.down as f64 / down_done.as_secs_f64());
    let off = |r: f64| (r / limit - 1.0) * 100.0;
    println!(
        "upload: {:.2} MB in {up_secs:.1} s = {:.2} MB/s ({:+.1} % of the limit)",
        up.up as f64 / 1e6,
        up_rate / 1e6,
        off(up_rate)
    );
    println!(
        "download (streams while A uploads): {:.2} MB in {:.1} s = {:.2} MB/s ({:+.1} % of the limit)",
        down.down as f64 / 1e6,
        down_done.as_secs_f64(),
        down_rate / 1e6,
        off(down_rate)
    );
    Ok(())
}
