//! A byte-counting TCP proxy: what a device and the server send each other,
//! measured on the wire (HTTP headers, bodies, long polls, everything), for
//! the figures of the whole system rather than one side's own counter.
//!
//! Each proxy runs on its own thread with its own runtime, so blocking test
//! code can start one in front of the server for each device.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes that went through a proxy so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Device → server.
    pub up: u64,
    /// Server → device.
    pub down: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.up + self.down
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts { up: self.up - o.up, down: self.down - o.down }
    }
}

#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
}

/// A proxy on 127.0.0.1 forwarding every connection to `upstream`, until dropped.
pub struct CountingProxy {
    /// `http://127.0.0.1:PORT`: give this to a device instead of the server's URL.
    pub url: String,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingProxy {
    /// Starts a proxy in front of the server at `upstream` (`http://HOST:PORT`).
    pub fn start(upstream: &str) -> anyhow::Result<CountingProxy> {
        Self::start_limited(upstream, None)
    }

    /// [`CountingProxy::start`] with what the device sends held to
    /// `up_rate` bytes a second (a slow uplink).
    pub fn start_limited(upstream: &str, up_rate: Option<u64>) -> anyhow::Result<CountingProxy> {
        let target = upstream.strip_prefix("http://").context("an http:// upstream")?.trim_end_matches('/').to_owned();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let url = format!("http://{}", std_listener.local_addr()?);
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = Arc::clone(&counters);
        let limit =
            up_rate.map(|rate| Arc::new(Limit { rate, started: std::time::Instant::now(), sent: AtomicU64::new(0) }));
        let thread = std::thread::Builder::new().name("counting-proxy".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let (c, target, limit) = (Arc::clone(&c), target.clone(), limit.clone());
                        tokio::spawn(async move {
                            if let Ok(server) = TcpStream::connect(&target).await {
                                forward(client, server, c, limit).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(CountingProxy { url, counters, stop: Some(stop), thread: Some(thread) })
    }

    pub fn counts(&self) -> Counts {
        Counts { up: self.counters.up.load(Ordering::SeqCst), down: self.counters.down.load(Ordering::SeqCst) }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A rate shared by all of a proxy's connections.
struct Limit {
    rate: u64,
    started: std::time::Instant,
    sent: AtomicU64,
}

async fn forward(client: TcpStream, server: TcpStream, counters: Arc<Counters>, up_rate: Option<Arc<Limit>>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = pump(&mut cr, &mut sw, &counters.up, up_rate);
    let down = pump(&mut sr, &mut cw, &counters.down, None);
    tokio::join!(up, down);
}

/// Copies until EOF or an error, counting (within `limit`, shared with the
/// proxy's other connections, when given); then closes the write side.
async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    count: &AtomicU64,
    limit: Option<Arc<Limit>>,
) {
    let mut buf = vec![0u8; if limit.is_some() { 16 << 10 } else { 256 << 10 }];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(l) = &limit {
            let total = l.sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            let due = l.started + std::time::Duration::from_secs_f64(total as f64 / l.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    let _ = to.shutdown().await;
}
