//! The whole-system simulation in the test suite: 10,000 seeds (or
//! `FERRY_SIM_SEEDS`), each a random history of three devices and the
//! server with faults, checked after quiescence; 1,000 of them again with
//! the server's metadata on PostgreSQL. A failing seed prints the
//! command that replays it with its full event trace.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_sim::{Faults, Options, run_seed};

fn seeds() -> u64 {
    std::env::var("FERRY_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

#[test]
fn ten_thousand_seeds_keep_every_invariant() {
    run_seeds(seeds(), &Options::default());
}

/// The same histories with the server's metadata on PostgreSQL (a
/// database of its own for each seed in a throwaway cluster): 1,000 seeds,
/// or `FERRY_SIM_PG_SEEDS`.
#[test]
fn a_thousand_seeds_on_postgresql() {
    if ferry_server::testing::PgCluster::binaries().is_none() {
        ferry_server::testing::skip("the simulation on PostgreSQL", "no PostgreSQL binaries (initdb, pg_ctl)");
        return;
    }
    let count = std::env::var("FERRY_SIM_PG_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    run_seeds(count, &Options { postgres: true, ..Options::default() });
}

/// Runs seeds `0..count` on up to four threads; fails with every seed
/// that failed, each with the command that replays it.
fn run_seeds(count: u64, opts: &Options) {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new((Faults::default(), 0u64, 0u64));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= count {
                        return;
                    }
                    match run_seed(seed, opts) {
                        Ok(o) => {
                            let mut t = totals.lock().unwrap();
                            t.0.add(&o.faults);
                            t.1 += u64::from(o.user_ops);
                            t.2 += u64::from(o.requests);
                        }
                        Err(v) => failures.lock().unwrap().push(v.to_string()),
                    }
                }
            });
        }
    });
    let (faults, ops, requests) = *totals.lock().unwrap();
    eprintln!(
        "{count} seeds{}: {ops} user operations, {requests} requests, {} faults injected ({faults:?})",
        opts.flags(),
        faults.total()
    );
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {count} seeds failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_seed_replays_exactly() {
    let opts = Options::default();
    for seed in [3, 41] {
        let a = run_seed(seed, &opts).expect("passes");
        let b = run_seed(seed, &opts).expect("passes");
        assert_eq!(a.trace_digest, b.trace_digest, "seed {seed} took another path the second time");
        assert!(a.faults.total() > 0 && a.user_ops > 0);
    }
}

/// Seeds that once failed outside the default 10,000, with the options they
/// failed under.
#[test]
fn seeds_that_once_failed_pass() {
    // A crash left a partial download; the restart's clean-up round failed on
    // an unmounted folder, and the next round did not clean up again.
    let five = Options { devices: 5, ..Options::default() };
    // Two users: a move out of a shared folder whose top-level name was
    // taken in the target (a unique-name clash mid-move); a shared folder
    // moved on disk into another one (refused by the server: moved back).
    let two = Options { users: Some(2), ..Options::default() };
    // Four devices, longer histories: a move on the server onto a name a
    // new local item held by case only (the move failed on a
    // case-insensitive disk, yet its path was recorded as agreed, so the
    // next round deleted the moved file); a file user 1 wrote in a folder
    // shared read-only, then moved with that folder into one they edit; a
    // server move of a folder into a twin of itself on a case-insensitive
    // disk (kept failing); deletions whose round failed, then paused (the
    // person who made them confirms); a crashed run's announcement
    // delivered after its restart dropped them all (another device kept its
    // prefetch); a viewer's edit to keep outside a share where a file held
    // a folder's name on the way (never moved out, round after round); a
    // crashed run's announcement that reached the server after its restart
    // dropped them all, of a file committed before it (listed until it
    // expired: the device did not know of it).
    let four = Options { devices: 4, steps: 500, ..Options::default() };
    for (seed, opts) in [
        (44_800, &five),
        (187, &two),
        (756, &two),
        (923, &two),
        (1_796_590_395, &four),
        (7_000_705, &four),
        (7_001_563, &four),
        (7_002_533, &four),
        (916_248, &four),
        (365, &four),
        (1_796_644_566, &four),
    ] {
        if let Err(v) = run_seed(seed, opts) {
            panic!("{v}");
        }
    }
}
