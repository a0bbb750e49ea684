//! `ferry-bench abuse`: the floods and bombs of the security probe, against
//! the release server, with what they cost it (memory, time) and how long
//! another user waits meanwhile. Each part starts a server of its own.

use std::time::{Duration, Instant};

use anyhow::Context;
use ferry_shared::BlockId;
use ferry_shared::api::{BlockList, CommitOp, CommitRequest};
use ferry_shared::block;
use ferry_shared::chunk::MIN_CHUNK;
use ferry_tests::{Client, Server, pseudo_random};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// How long a request of `c` takes (the other user's view of a flood).
async fn latency(c: &Client) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let resp = c.get("/account").send().await?;
    anyhow::ensure!(resp.status().is_success(), "{}", resp.status());
    Ok(t.elapsed())
}

/// Samples `latency` every 100 ms until `until` resolves; the worst one.
async fn worst_latency<F: Future>(c: &Client, until: F) -> anyhow::Result<(F::Output, Duration)> {
    let mut worst = Duration::ZERO;
    tokio::pin!(until);
    loop {
        tokio::select! {
            out = &mut until => return Ok((out, worst)),
            l = latency(c) => {
                worst = worst.max(l?);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

pub async fn run() -> anyhow::Result<()> {
    println!("== abuse: floods and bombs against the release server ==");
    logins().await?;
    edits().await?;
    unknown_ids().await?;
    slow_uploads().await?;
    batch_bombs().await?;
    upload_timing().await?;
    Ok(())
}

async fn logins() -> anyhow::Result<()> {
    for concurrency in [8usize, 32, 100] {
        // Every request from an address of its own (behind a trusted proxy),
        // so the per-address throttle does not hide the password checks.
        let server = Server::start_args(&["--trusted-proxy", "127.0.0.1"])?;
        let bob = Client::user(&server, "bob", "desk").await?;
        let before = server.memory_mib()?;
        let http = reqwest::Client::new();
        let n = 680;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let flood = futures_util::future::join_all((0..concurrency).map(|_| {
            let (http, url, next) = (http.clone(), server.url.clone(), &next);
            async move {
                let mut codes = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return codes;
                    }
                    let resp = http
                        .post(format!("{url}/auth/login"))
                        .header("x-forwarded-for", format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
                        .json(&json!({"username": format!("nobody{i}"), "password": "guess", "device_name": "d"}))
                        .send()
                        .await;
                    codes.push(resp.map(|r| r.status().as_u16()).unwrap_or(0));
                }
            }
        }));
        let t = Instant::now();
        let (codes, worst) = worst_latency(&bob, flood).await?;
        let took = t.elapsed();
        let codes: Vec<u16> = codes.into_iter().flatten().collect();
        let count = |c: u16| codes.iter().filter(|&&x| x == c).count();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = server.memory_mib()?;
        println!(
            "logins: {n} failed logins, {concurrency} at once: {:.1} s ({} × 401, {} × 429); server RSS {} MiB \
             before, peak {}, {} after; another user's request at worst {:.0} ms",
            took.as_secs_f64(),
            count(401),
            count(429),
            before.0,
            after.1,
            after.0,
            worst.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

async fn edits() -> anyhow::Result<()> {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let body = alice.edit_bomb("base.bin").await?;
    let before = server.memory_mib()?;
    let t = Instant::now();
    let r: serde_json::Value = alice
        .post("/commit")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await?
        .json()
        .await?;
    let took = t.elapsed();
    let after = server.memory_mib()?;
    println!(
        "edits: a {} B commit copying a 100,000-block parent 400 times: {} in {:.1} ms; peak RSS {} → {} MiB",
        body.len(),
        r["results"][0]["status"],
        took.as_secs_f64() * 1000.0,
        before.1,
        after.1
    );
    Ok(())
}

async fn unknown_ids() -> anyhow::Result<()> {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    for n in [10_000u32, 80_000, 160_000, 320_000] {
        let ids: Vec<BlockId> = (0..n).map(|i| BlockId::of(&[&i.to_be_bytes()[..], b"unknown"].concat())).collect();
        let op = CommitOp::Put {
            path: ferry_shared::RelPath::parse(&format!("stolen{n}.bin"))?,
            parent_rev: None,
            size: u64::from(n) * MIN_CHUNK as u64,
            mtime: 0,
            executable: false,
            blocks: BlockList::Full(ids),
        };
        let big = alice.post("/commit").json(&CommitRequest { ops: vec![op] }).send();
        let t = Instant::now();
        let mkdir = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let t = Instant::now();
            let r = bob.post("/commit").json(&json!({"ops": [{"op": "mkdir", "path": format!("m{n}")}]})).send().await;
            r.map(|_| t.elapsed())
        };
        let (big, mkdir) = tokio::join!(big, mkdir);
        let took = t.elapsed();
        let r: serde_json::Value = big?.json().await?;
        println!(
            "unknown ids: a commit naming {n} ids nobody uploaded: {} in {:.2} s; another user's mkdir meanwhile {:.0} ms",
            r["results"][0]["error"]["code"],
            took.as_secs_f64(),
            mkdir?.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

async fn slow_uploads() -> anyhow::Result<()> {
    let server = Server::start()?;
    for name in ["carol", "dave", "erin", "frank"] {
        ferry_tests::add_user(&server.data, name, &format!("password-{name}"), None)?;
    }
    let addr = server.url.strip_prefix("http://").context("http")?.to_owned();
    let bob = Client::user(&server, "bob", "desk").await?;
    let mut held = Vec::new();
    // 16 of four users and 2 of a fifth: the 66 of the probe; and one more
    // of each of the four, past their caps.
    for (name, n) in [("alice", 17), ("carol", 17), ("dave", 17), ("erin", 17), ("frank", 2)] {
        let c = Client::login(&server.url, name, &format!("password-{name}"), "slow").await?;
        for i in 0..n {
            let head = format!(
                "POST /files/upload?uploadType=media&path=slow{i}.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Length: 1000000\r\n\r\n0123456789",
                c.token
            );
            let mut s = tokio::net::TcpStream::connect(&addr).await?;
            s.write_all(head.as_bytes()).await?;
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        worst = worst.max(latency(&bob).await?);
    }
    let health = reqwest::get(format!("{}/health", server.url)).await?.status();
    println!(
        "slow uploads: {} slow uploads opened by five users (4 past their caps): another user's request at \
         worst {:.0} ms; /health {health}",
        held.len(),
        worst.as_secs_f64() * 1000.0
    );
    let t = Instant::now();
    let mut closed = 0;
    for s in &mut held {
        let mut buf = [0u8; 512];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(60), tokio::io::AsyncReadExt::read(s, &mut buf)).await
        {
            closed += 1;
        }
    }
    println!("slow uploads: {closed} of {} answered and closed within {:.0} s", held.len(), t.elapsed().as_secs_f64());
    Ok(())
}

async fn batch_bombs() -> anyhow::Result<()> {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let zeros = block::encode(&vec![0u8; 16 << 20]);
    for frames in [512usize, 4096] {
        let mut body = Vec::new();
        for _ in 0..frames {
            block::write_frame(&mut body, &zeros.id, zeros.encoding, &zeros.bytes);
        }
        let t = Instant::now();
        let status = alice.post("/blocks/batch").body(body.clone()).send().await?.status();
        println!(
            "batch bomb: {frames} frames of 16 MiB of zeros ({} KB): {status} in {:.2} s",
            body.len() / 1000,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

async fn upload_timing() -> anyhow::Result<()> {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    for size in [4usize << 10, 1 << 20] {
        let rounds = 100;
        let (mut fresh, mut held) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            // Content nobody has, and content bob holds: alice uploads each.
            let new = pseudo_random(size, 1_000_000 + i);
            let bobs = pseudo_random(size, 2_000_000 + i);
            bob.upload_block(&bobs).await?;
            for (data, into) in [(new, &mut fresh), (bobs, &mut held)] {
                let t = Instant::now();
                alice.upload_block(&data).await?;
                into.push(t.elapsed());
            }
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1000.0
        };
        println!(
            "upload timing: a {} KiB block nobody has {:.2} ms, one another user holds {:.2} ms (medians of {rounds})",
            size >> 10,
            median(&mut fresh),
            median(&mut held)
        );
    }
    Ok(())
}
