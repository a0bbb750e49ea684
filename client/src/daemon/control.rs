//! The control socket: a Unix socket in the state directory (mode 0600) that
//! answers `ferry status` and takes pause/resume. One JSON line each way: a
//! [`Request`], then an [`Answer`] (a stream of them for `Watch`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::events::{Control, Event};
use crate::daemon::status::Status;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Pause until resumed, or until `until` (Unix milliseconds).
    Pause {
        #[serde(default)]
        until: Option<i64>,
    },
    Resume {
        confirm_deletes: bool,
    },
    /// The status now, and again each time it changes (one JSON line each),
    /// until the client hangs up.
    Watch,
    /// The folders not to sync here, from now on.
    Excluded {
        paths: Vec<ferry_shared::RelPath>,
    },
    /// New bandwidth limits (bytes per second; `None`: unlimited) and
    /// their schedule, at once.
    Limits(crate::net::schedule::Limits),
    /// The server moved to `url` (`ferry server URL`, which checked it and
    /// saved it in the configuration): every request goes there from now on.
    Server {
        url: String,
    },
}

/// The daemon's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// To `Status`, and each line of `Watch`.
    Status(Box<Status>),
    /// A command taken.
    Done { ok: bool },
    /// A request the daemon could not read.
    Refused { error: String },
}

impl Answer {
    fn line(&self) -> String {
        format!("{}\n", serde_json::to_string(self).unwrap_or_default())
    }
}

pub async fn serve(
    path: PathBuf,
    status: Arc<Mutex<Status>>,
    tx: mpsc::Sender<Event>,
    limits: Arc<tokio::sync::watch::Sender<crate::net::schedule::Limits>>,
    remote: crate::net::remote::Remote,
) {
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "no control socket");
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    while let Ok((stream, _)) = listener.accept().await {
        let (status, tx, limits, remote) = (Arc::clone(&status), tx.clone(), Arc::clone(&limits), remote.clone());
        let (remote_ctl, status_ctl) = (remote.clone(), Arc::clone(&status));
        // The status as of now, with the bytes moved so far (counted as
        // they go, not only when a file is done: `ferry status` shows a rate).
        let now = move || {
            let mut s = status.lock().expect("status poisoned");
            s.set_traffic(remote.traffic());
            Answer::Status(Box::new(s.clone()))
        };
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(r).read_line(&mut line).await.is_err() {
                return;
            }
            let request = serde_json::from_str::<Request>(&line);
            if let Ok(Request::Watch) = request {
                let mut changes = crate::daemon::status::subscribe();
                loop {
                    if w.write_all(now().line().as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        r = changes.changed() => if r.is_err() { return },
                        // Now and then anyway: a client that went away is noticed.
                        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                    }
                }
            }
            let answer = match request {
                Ok(Request::Status) => now(),
                Ok(Request::Pause { until }) => {
                    let _ = tx.send(Event::Control(Control::Pause { until })).await;
                    Answer::Done { ok: true }
                }
                Ok(Request::Resume { confirm_deletes }) => {
                    let _ = tx.send(Event::Control(Control::Resume { confirm_deletes })).await;
                    Answer::Done { ok: true }
                }
                Ok(Request::Excluded { paths }) => {
                    let _ = tx.send(Event::Control(Control::Excluded(paths))).await;
                    Answer::Done { ok: true }
                }
                Ok(Request::Limits(l)) => {
                    // At once, also for transfers under way (not at the next
                    // round), and in the status before the answer; then
                    // `limits::follow` keeps them to the schedule.
                    super::limits::apply(&l, &remote_ctl, &status_ctl);
                    limits.send_replace(l);
                    Answer::Done { ok: true }
                }
                Ok(Request::Server { url }) => {
                    tracing::info!(%url, from = %remote_ctl.base(), "the server moved");
                    remote_ctl.set_base(&url);
                    if let Ok(mut s) = status_ctl.lock() {
                        s.server = url;
                    }
                    crate::daemon::status::changed();
                    // A round at once, against the new address.
                    let _ = tx.send(Event::Remote).await;
                    Answer::Done { ok: true }
                }
                Ok(Request::Watch) => unreachable!("answered above"),
                Err(e) => Answer::Refused { error: e.to_string() },
            };
            let _ = w.write_all(answer.line().as_bytes()).await;
        });
    }
}

/// Sends one request to the daemon and returns its answer.
pub async fn request(path: &std::path::Path, req: &Request) -> anyhow::Result<Answer> {
    use anyhow::Context;
    let stream = tokio::net::UnixStream::connect(path).await.with_context(|| {
        format!("the daemon is not running (no socket at {}): start it with `ferry daemon`", path.display())
    })?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    serde_json::from_str(&line).context("the daemon's answer is not one this version of ferry reads")
}

/// The daemon's status now.
pub async fn status(path: &std::path::Path) -> anyhow::Result<Status> {
    match request(path, &Request::Status).await? {
        Answer::Status(s) => Ok(*s),
        Answer::Refused { error } => anyhow::bail!("the daemon refused the request: {error}"),
        Answer::Done { .. } => anyhow::bail!("the daemon answered without its status"),
    }
}

/// Sends a command (pause, resume, new settings) to the daemon.
pub async fn command(path: &std::path::Path, req: &Request) -> anyhow::Result<()> {
    match request(path, req).await? {
        Answer::Refused { error } => anyhow::bail!("the daemon refused the request: {error}"),
        Answer::Done { .. } | Answer::Status(_) => Ok(()),
    }
}
