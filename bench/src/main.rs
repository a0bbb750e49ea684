//! `ferry-bench`: prints the figures the issues ask for. Not a test: nothing
//! here asserts a speed. Run in release mode:
//!
//! ```text
//! cargo build --release -p ferry-server -p ferry-bench
//! target/release/ferry-bench chunking|commits|longpoll|all
//! ```

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_shared::BlockId;
use ferry_shared::api::{BlockList, CommitOp};
use ferry_shared::chunk::{self, ChunkParams, Chunker};
use ferry_tests::{Client, Server, pseudo_random};

mod abuse;
mod limit;
mod shares;
mod sync;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Chunk + hash + compress throughput, block counts and delta sizes.
    Chunking {
        /// Buffer size in MiB.
        #[arg(long, default_value_t = 256)]
        mib: usize,
    },
    /// Commits per second of 1 KiB files through the HTTP API.
    Commits {
        #[arg(long, default_value_t = 20_000)]
        files: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Long-poll wake latency with many idle long polls held open.
    Longpoll {
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// End-to-end sync between two daemons (latency, delta bytes, throughput, RSS).
    Sync {
        /// Also measure idle RSS with 100,000 tracked files.
        #[arg(long)]
        tree_100k: bool,
        /// Also measure RSS while uploading a 4 GiB file.
        #[arg(long)]
        huge: bool,
        /// Run only these parts (comma-separated: latency, delta, drop, many, idle, tree-100k, huge).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// A folder shared between two users: propagation to the owner's other
    /// device and to the member, the member's edits back, delta bytes.
    Shares {
        #[arg(long, default_value_t = 30)]
        edits: u64,
    },
    /// Bandwidth limits: the rate a limited upload and download hold on the wire.
    Limit {
        #[arg(long, default_value_t = 32)]
        mib: usize,
        /// Bytes per second.
        #[arg(long, default_value_t = 4_000_000)]
        rate: u64,
    },
    /// Share links: download throughput of a large file and of a folder's
    /// zip through a link, and the server's RSS meanwhile.
    Links {
        #[arg(long, default_value_t = 512)]
        mib: usize,
        /// Also stream a 10 GiB folder as a zip (one block repeated: quick
        /// to set up, every byte still read, opened and sent).
        #[arg(long)]
        huge: bool,
    },
    /// The security probe's floods and bombs: what each costs the server
    /// (memory, time) and how long another user waits meanwhile.
    Abuse,
    /// Everything above with the defaults.
    All,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().what {
        What::Chunking { mib } => chunking(mib),
        What::Commits { files, concurrency } => rt()?.block_on(commits(files, concurrency)),
        What::Longpoll { idle, samples } => rt()?.block_on(longpoll(idle, samples)),
        What::Sync { tree_100k, huge, only } => {
            let mut parts = only;
            if parts.is_empty() {
                parts = sync::BASIC.iter().map(|p| p.to_string()).collect();
                parts.extend(tree_100k.then(|| "tree-100k".to_string()));
                parts.extend(huge.then(|| "huge".to_string()));
            }
            sync::run(&parts)
        }
        What::Links { mib, huge } => rt()?.block_on(links(mib, huge)),
        What::Shares { edits } => shares::run(edits),
        What::Limit { mib, rate } => limit::run(mib, rate),
        What::Abuse => rt()?.block_on(abuse::run()),
        What::All => {
            chunking(256)?;
            rt()?.block_on(commits(20_000, 64))?;
            rt()?.block_on(longpoll(10_000, 200))?;
            sync::run(&sync::BASIC.map(String::from))
        }
    }
}

fn rt() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

/// Text-like data: words from a small vocabulary, compressible ~3x by zstd.
fn text_like(n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "sync",
        "file",
        "block",
        "server",
        "client",
        "revision",
        "journal",
        "commit",
        "delta",
        "ferry",
        "folder",
        "namespace",
        "device",
        "conflict",
        "upload",
        "download",
        "chunk",
        "hash",
        "cursor",
        "and",
        "of",
        "to",
        "in",
    ];
    let rnd = pseudo_random(n / 2, 99);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        let w = WORDS[rnd[i % rnd.len()] as usize % WORDS.len()];
        out.extend_from_slice(w.as_bytes());
        out.push(if rnd[(i + 1) % rnd.len()].is_multiple_of(11) { b'\n' } else { b' ' });
        i += 1;
    }
    out.truncate(n);
    out
}

fn chunking(mib: usize) -> anyhow::Result<()> {
    let n = mib << 20;
    println!("== chunking: {mib} MiB buffers, size rule for a {mib} MiB file ==");
    for (label, data) in [("incompressible", pseudo_random(n, 1)), ("text-like", text_like(n))] {
        let params = ChunkParams::for_size(n as u64);
        // fastcdc alone.
        let t = Instant::now();
        let mut count = 0usize;
        for c in fastcdc::v2020::FastCDC::new(&data, params.min, params.avg, params.max) {
            count += c.length.min(1);
        }
        let fast = t.elapsed();
        // Chunk + hash + compress on one core, sequentially.
        let t = Instant::now();
        let mut out = 0usize;
        for c in Chunker::new(&data[..], params) {
            out += ferry_shared::block::encode_owned(c?.data).bytes.len();
        }
        let single = t.elapsed();
        // The pipeline on both cores: chunker thread + worker threads.
        let t = Instant::now();
        let mut piped = 0usize;
        chunk::encode_stream(&data[..], params, chunk::default_workers(), |b| -> io::Result<()> {
            piped += b.block.bytes.len();
            Ok(())
        })?;
        let both = t.elapsed();
        assert_eq!(out, piped);
        println!(
            "{label:>15}: fastcdc alone {:.2} GB/s ({count} chunks) | chunk+hash+compress 1 core {:.2} GB/s | pipeline {} workers + chunker {:.2} GB/s | compressed to {:.1}%",
            gbps(n, fast),
            gbps(n, single),
            chunk::default_workers(),
            gbps(n, both),
            100.0 * out as f64 / n as f64
        );
    }

    // Block counts per file size under the rule (streamed, never in memory).
    for size in [1u64 << 20, 64 << 20, 1 << 30, 10 << 30] {
        let params = ChunkParams::for_size(size);
        let t = Instant::now();
        let blocks = Chunker::new(RandomReader::new(size, 7), params).count();
        println!(
            "blocks of a {:>6} MiB random file: {blocks:>5} (avg {} KiB, min {} KiB, max {} KiB; {:.1} s)",
            size >> 20,
            params.avg >> 10,
            params.min >> 10,
            params.max >> 10,
            t.elapsed().as_secs_f64()
        );
    }

    // Delta cost of small edits of a 64 MiB random file: new blocks (compressed
    // bytes) plus the block-list edit a commit would carry.
    let base = pseudo_random(64 << 20, 11);
    let ids = |d: &[u8]| -> Vec<(BlockId, usize)> {
        Chunker::new(d, ChunkParams::for_size(d.len() as u64))
            .map(|c| {
                let c = c.expect("in-memory read");
                (BlockId::of(&c.data), ferry_shared::block::encode(&c.data).bytes.len())
            })
            .collect()
    };
    let before = ids(&base);
    let known: std::collections::HashSet<BlockId> = before.iter().map(|(id, _)| *id).collect();
    let mut overwrite = base.clone();
    overwrite[32 << 20] ^= 0xff;
    let mut insert = vec![0x42u8];
    insert.extend_from_slice(&base);
    let mut append = base.clone();
    append.extend_from_slice(&pseudo_random(1 << 20, 12));
    for (label, edited) in
        [("overwrite 1 byte mid", overwrite), ("insert 1 byte at start", insert), ("append 1 MiB", append)]
    {
        let after = ids(&edited);
        let new: Vec<&(BlockId, usize)> = after.iter().filter(|(id, _)| !known.contains(id)).collect();
        let bytes: usize = new.iter().map(|(_, n)| n).sum();
        // Commit edit: copies are two integers, each new id 64 hex chars + quotes.
        let edit_json = 200 + new.len() * 68;
        println!(
            "64 MiB file, {label:>22}: {} new blocks, {:.1} KiB of blocks + ~{:.1} KiB commit",
            new.len(),
            bytes as f64 / 1024.0,
            edit_json as f64 / 1024.0
        );
    }
    Ok(())
}

/// Streams `len` pseudo-random bytes without holding them.
struct RandomReader {
    left: u64,
    x: u64,
}

impl RandomReader {
    fn new(len: u64, seed: u64) -> Self {
        RandomReader { left: len, x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 }
    }
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize & !7;
        let n = if n == 0 { (buf.len() as u64).min(self.left) as usize } else { n };
        for chunk in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let b = self.x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Open file descriptors of process `pid` (its sockets among them).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn put_op(path: String, id: BlockId) -> CommitOp {
    CommitOp::Put {
        path: ferry_shared::RelPath::parse(&path).expect("valid path"),
        parent_rev: None,
        size: 1024,
        mtime: 0,
        executable: false,
        blocks: BlockList::Full(vec![id]),
    }
}

async fn run_parallel<F, Fut>(n: usize, concurrency: usize, f: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let f = Arc::new(f);
    let t = Instant::now();
    let mut tasks = Vec::new();
    // Task `w` does items w, w + concurrency, …: an item's account (`i %
    // accounts`) is always that of the same tasks, so no account ever has
    // more requests in flight than its share (the server refuses an
    // account's 17th upload at once).
    for w in 0..concurrency {
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(concurrency) {
                f(i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed())
}

async fn commits(files: usize, concurrency: usize) -> anyhow::Result<()> {
    let server = Server::start()?;
    let r = commits_on(&server, files, concurrency).await;
    if r.is_err() {
        // What the server said about it (its data folder goes with it).
        let log = server.log();
        let tail: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).take(20).collect();
        eprintln!("the server's errors and warnings:\n{}", tail.join("\n"));
    }
    r
}

async fn commits_on(server: &Server, files: usize, concurrency: usize) -> anyhow::Result<()> {
    println!(
        "== commits: {files} files of 1 KiB, {concurrency} concurrent requests, on {} ==",
        ferry_tests::BackendChoice::from_env().name()
    );
    // Several accounts, as a server has: one account may send 16 requests
    // with bodies at once, and its commits take turns on its journal.
    let accounts = concurrency.div_ceil(8).max(1);
    let mut users = Vec::with_capacity(accounts);
    for u in 0..accounts {
        let name = format!("bench{u}");
        ferry_tests::add_user(&server.data, &name, &format!("password-{name}"), Some("100GiB"))?;
        users.push(Client::user(server, &name, "bench").await?);
    }
    let users = Arc::new(users);
    println!("({accounts} accounts, {} concurrent requests each)", concurrency.div_ceil(accounts));
    let data: Arc<Vec<Vec<u8>>> = Arc::new((0..files * 2).map(|i| pseudo_random(1024, i as u64 + 1)).collect());

    // (a) Block upload + commit per file (what a client does for a new file).
    let us = Arc::clone(&users);
    let d = Arc::clone(&data);
    let took = run_parallel(files, concurrency, move |i| {
        let (c, d) = (us[i % us.len()].clone(), Arc::clone(&d));
        async move {
            let id = c.upload_block(&d[i]).await?;
            let r = c.commit(vec![put_op(format!("a/{i}.txt"), id)]).await?;
            anyhow::ensure!(r.results[0].status == 200, "commit failed: {:?}", r.results[0].error);
            Ok(())
        }
    })
    .await?;
    println!("upload block + commit, one file per commit: {:.0} files/s", files as f64 / took.as_secs_f64());

    // (b) Commits alone (blocks already uploaded): the metadata path.
    let ids: Arc<Vec<BlockId>> = Arc::new(data[..files].iter().map(|d| BlockId::of(d)).collect());
    let us = Arc::clone(&users);
    let ids2 = Arc::clone(&ids);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(files)));
    let lat = Arc::clone(&latencies);
    let took = run_parallel(files, concurrency, move |i| {
        let (c, ids, lat) = (us[i % us.len()].clone(), Arc::clone(&ids2), Arc::clone(&lat));
        async move {
            let t = Instant::now();
            let r = c.commit(vec![put_op(format!("b/{i}.txt"), ids[i])]).await?;
            lat.lock().expect("latencies").push(t.elapsed());
            anyhow::ensure!(r.results[0].status == 200, "commit failed: {:?}", r.results[0].error);
            Ok(())
        }
    })
    .await?;
    let mut lat = latencies.lock().expect("latencies").clone();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "commit only, one file per commit (every answer durable): {:.0} commits/s, latency p50 {:.1} ms, p99 {:.1} ms",
        files as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );

    // (c) Batched: 1,000 files per commit request, each of one account's
    // blocks (an account commits only what it uploaded).
    let t = Instant::now();
    for (u, owner) in users.iter().enumerate() {
        let own: Vec<BlockId> =
            ids.iter().enumerate().filter(|(i, _)| i % users.len() == u).map(|(_, id)| *id).collect();
        for (k, batch) in own.chunks(1000).enumerate() {
            let ops = batch.iter().enumerate().map(|(j, id)| put_op(format!("c/{k}/{j}.txt"), *id)).collect();
            let r = owner.commit(ops).await?;
            anyhow::ensure!(r.results.iter().all(|x| x.status == 200), "batch failed");
        }
    }
    println!("commit only, 1,000 files per request: {:.0} files/s", files as f64 / t.elapsed().as_secs_f64());
    println!("server RSS after {} files: {:.0} MiB", files * 3, rss_mib(server.pid().context("pid")?));
    Ok(())
}

async fn longpoll(idle: usize, samples: usize) -> anyhow::Result<()> {
    println!("== long polls: {idle} idle long polls held open, {samples} wake-ups measured ==");
    // 10,000 connections from one address: past the default cap.
    let server = Server::start_args(&["--max-connections-per-address", "0"])?;
    let pid = server.pid().context("pid")?;
    let rss_before = rss_mib(pid);
    let idler = Client::user(&server, "alice", "idle").await?;
    // Idle polls on alice's namespace, parked at her real head (nobody
    // writes there: they stay parked). A cursor past the head would be
    // answered at once with cursor_reset, holding nothing.
    let head: serde_json::Value = idler.get("/changes/poll?cursor=0&timeout=0").send().await?.json().await?;
    let head = head["cursor"].as_i64().context("alice's cursor")?;
    // One client per source address: one address has only ~28,000 ports.
    let clients: Vec<reqwest::Client> = (1..=4u8)
        .map(|i| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .local_address(std::net::IpAddr::from([127, 0, 0, i]))
                .build()
        })
        .collect::<Result<_, _>>()?;
    let fds_before = open_fds(pid);
    let mut held = Vec::with_capacity(idle);
    for i in 0..idle {
        let req = clients[i % clients.len()]
            .get(format!("{}/changes/poll?cursor={head}&timeout=300", server.url))
            .bearer_auth(&idler.token);
        held.push(tokio::spawn(async move { req.send().await.map(|r| r.status()) }));
    }
    // Premise: the server holds every one (a connection each), none answered.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answered = held.iter().filter(|h| h.is_finished()).count();
        anyhow::ensure!(answered == 0, "{answered} idle polls were answered: they are not held");
        if open_fds(pid) >= fds_before + idle {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server holds {} connections of {idle} polls (is `ulimit -n` high enough for the server and \
             this process?)",
            open_fds(pid).saturating_sub(fds_before)
        );
    }
    // Give the handlers a moment to park, then read memory once it is still.
    let mut last = rss_mib(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_mib(pid);
        if (now - last).abs() < 0.5 {
            break;
        }
        last = now;
    }
    let rss_held = rss_mib(pid);
    println!(
        "server RSS: {rss_before:.0} MiB at start, {rss_held:.0} MiB with {idle} long polls held ({:.1} KiB per held poll)",
        (rss_held - rss_before) * 1024.0 / idle as f64
    );

    // Wake-ups: bob's device 1 polls, bob's device 2 commits.
    let poller = Client::user(&server, "bob", "poller").await?;
    let writer = Client::user(&server, "bob", "writer").await?;
    let id = writer.upload_block(b"wake").await?;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let cursor: i64 =
            poller.get("/changes/poll?cursor=0&timeout=0").send().await?.json::<serde_json::Value>().await?["cursor"]
                .as_i64()
                .unwrap_or(0);
        let p = poller.clone();
        let poll = tokio::spawn(async move {
            let r = p.get(&format!("/changes/poll?cursor={cursor}&timeout=60")).send().await?;
            let v: serde_json::Value = r.json().await?;
            anyhow::Ok((Instant::now(), v["changes"].as_bool() == Some(true)))
        });
        // Let the poll reach the server and park.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        let op = CommitOp::Put {
            path: ferry_shared::RelPath::parse(&format!("w/{i}"))?,
            parent_rev: None,
            size: 4,
            mtime: 0,
            executable: false,
            blocks: BlockList::Full(vec![id]),
        };
        writer.commit(vec![op]).await?;
        let (woke, changed) = poll.await??;
        anyhow::ensure!(changed, "poll returned without changes");
        lat.push(woke.saturating_duration_since(start));
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "wake latency (commit sent → poll answered, includes the commit's fsync): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("server RSS at the end: {:.0} MiB", rss_mib(pid));
    let still_held = held.iter().filter(|h| !h.is_finished()).count();
    println!("idle polls still held: {still_held} of {idle}");
    anyhow::ensure!(
        still_held == idle,
        "only {still_held} of {idle} idle polls were held while waking: the figures above do not hold"
    );
    for h in held {
        h.abort();
    }
    Ok(())
}

/// Downloads `url` as a stranger, counting bytes and sampling the server's
/// RSS; returns (bytes, time, peak RSS MiB).
async fn fetch_counting(url: &str, server_pid: u32) -> anyhow::Result<(u64, Duration, f64)> {
    use futures_util::StreamExt;
    let t0 = Instant::now();
    let resp = reqwest::get(url).await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    let mut stream = resp.bytes_stream();
    let (mut n, mut peak, mut next_sample) = (0u64, 0f64, 0u64);
    while let Some(chunk) = stream.next().await {
        n += chunk?.len() as u64;
        if n >= next_sample {
            peak = peak.max(rss_mib(server_pid));
            next_sample += 16 << 20;
        }
    }
    Ok((n, t0.elapsed(), peak))
}

async fn links(mib: usize, huge: bool) -> anyhow::Result<()> {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "bench").await?;
    let size = mib << 20;
    let data = pseudo_random(size, 512);
    let t0 = Instant::now();
    let resp = alice
        .post("/files/upload?uploadType=media&path=big/file.bin")
        .header("content-length", size)
        .body(data)
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "upload: {}", resp.status());
    println!("links: uploaded {mib} MiB (media upload, server-chunked) in {:.2} s", t0.elapsed().as_secs_f64());
    let pid = server.pid().context("server pid")?;
    let link = |path: &'static str| {
        let alice = alice.clone();
        async move {
            let l: ferry_shared::api::Link =
                alice.post("/links").json(&serde_json::json!({"path": path})).send().await?.json().await?;
            anyhow::Ok(l.url)
        }
    };
    let file_url = link("big/file.bin").await?;
    let folder_url = link("big").await?;
    let idle = rss_mib(pid);
    for (what, url) in
        [("file link", file_url.clone()), ("file link", file_url), ("folder zip", format!("{folder_url}?zip=1"))]
    {
        let (n, d, peak) = fetch_counting(&url, pid).await?;
        println!(
            "links: {what}: {} MiB in {:.2} s = {:.0} MB/s; server RSS {idle:.0} MiB idle, {peak:.0} MiB peak",
            n >> 20,
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64() / 1e6
        );
    }
    if huge {
        // Almost 10 GiB in one file: 2,559 times the same 4 MiB block.
        ferry_tests::add_user(&server.data, "carol", "password-carol", Some("20GiB"))?;
        let carol = Client::user(&server, "carol", "bench").await?;
        let block = pseudo_random(4 << 20, 10);
        let id = carol.upload_block(&block).await?;
        let n = 2559;
        let op = CommitOp::Put {
            path: ferry_shared::RelPath::parse("huge/ten.bin")?,
            parent_rev: None,
            size: (n * block.len()) as u64,
            mtime: 1_700_000_000_000,
            executable: false,
            blocks: BlockList::Full(vec![id; n]),
        };
        let r = carol.commit(vec![op]).await?.results.remove(0);
        anyhow::ensure!(r.entry.is_some(), "{:?}", r.error);
        let l: ferry_shared::api::Link =
            carol.post("/links").json(&serde_json::json!({"path": "huge"})).send().await?.json().await?;
        let idle = rss_mib(pid);
        let (n, d, peak) = fetch_counting(&format!("{}?zip=1", l.url), pid).await?;
        println!(
            "links: 10 GiB folder zip: {} MiB in {:.1} s = {:.0} MB/s; server RSS {idle:.0} MiB idle, {peak:.0} MiB peak",
            n >> 20,
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
