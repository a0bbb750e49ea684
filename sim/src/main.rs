//! `ferry-sim`: runs seeds of the whole-system simulation.
//!
//! ```text
//! ferry-sim --seeds 100000            # a long run: seeds 0..100000 on every core
//! ferry-sim --seed 4242 --trace       # replay one seed with its event trace
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use ferry_sim::{Faults, Options, run_seed};

#[derive(Parser)]
#[command(about = "Seeded simulation of Ferry devices and server with faults")]
struct Args {
    /// Run this one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many seeds, from --start.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Devices per run.
    #[arg(long, default_value_t = 3)]
    devices: usize,
    /// Scheduler steps before quiescence.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Users: 1 (every device one user's) or 2 (the last device a second
    /// user's, with shared folders); default: 2 for odd seeds.
    #[arg(long)]
    users: Option<usize>,
    /// No fault injection.
    #[arg(long)]
    no_faults: bool,
    /// Print every event as it happens.
    #[arg(long)]
    trace: bool,
    /// The server's metadata on PostgreSQL: a database of its own for each
    /// seed in a throwaway cluster (PostgreSQL's binaries are needed).
    #[arg(long)]
    postgres: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // RUST_LOG=ferry_server=error shows what the server logs (its internal errors).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let opts = Options {
        devices: args.devices,
        steps: args.steps,
        faults: !args.no_faults,
        trace: args.trace,
        users: args.users,
        postgres: args.postgres,
        ..Options::default()
    };
    let (start, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.start, args.seeds),
    };
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let next = AtomicU64::new(start);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new((Faults::default(), 0u64, 0u64));
    let done = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.min(count as usize).max(1) {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= start + count {
                        return;
                    }
                    match run_seed(seed, &opts) {
                        Ok(o) => {
                            let mut t = totals.lock().expect("totals");
                            t.0.add(&o.faults);
                            t.1 += u64::from(o.user_ops);
                            t.2 += u64::from(o.requests);
                        }
                        Err(v) => {
                            eprintln!("{v}");
                            failures.lock().expect("failures").push(v.seed);
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(1000) {
                        eprintln!("{n} seeds, {:.0} s", began.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    let (faults, user_ops, requests) = *totals.lock().expect("totals");
    let failed = failures.into_inner().expect("failures");
    println!(
        "{count} seeds from {start} in {:.1} s: {} failed; {user_ops} user operations, {requests} requests, {} faults ({faults:?})",
        began.elapsed().as_secs_f64(),
        failed.len(),
        faults.total()
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        println!("failing seeds: {failed:?}");
        std::process::ExitCode::FAILURE
    }
}
