//! Server-side chunking of whole-file uploads (web app, file API): the bytes
//! are cut with the same CDC rule as clients use, so both dedupe together.
//!
//! `Ingests`: a large resumable upload is chunked, sealed and stored by a
//! blocking task that follows its staging file as the PUTs write it (only
//! up to what they have written), so the last chunk only commits. An
//! ingest lost to a restart, a failed write or the cap (8 at once, 2 per
//! user; one idle for 2 minutes gives up) is replaced by one from the
//! file's start, or the last chunk ingests the file as before. A simple
//! upload (`uploadType=media`) is read as it arrives: into memory up to
//! 8 MiB, else into a private staging file ingested alongside. Blocks the
//! uploader has are not stored again; every other block is, whether or not
//! another account has it (the time an upload takes tells nothing).

use std::io::Read;
use std::sync::Arc;

use ferry_shared::BlockId;

use crate::error::Result;
use crate::meta::{NewBlock, UserId};
use crate::stores::Stores;

/// A resumable upload's bytes ingested while they arrive: a blocking task
/// runs [`Stores::store_stream`] over the staging file, reading only what the PUT
/// handlers have written (published through `written`), so that chunking,
/// sealing and storing overlap the transfer instead of all starting at the
/// last chunk. Losing it costs only time: with none (a restart, a PUT that
/// failed half-way, too many at once) the last chunk ingests the file from
/// the start, as before.
pub struct Ingest {
    user: UserId,
    written: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<Result<(Vec<BlockId>, Vec<NewBlock>)>>,
}

/// At most this many ingests at once, and this many of one user's; more
/// uploads ingest at their end. (An ingest holds a thread while it waits
/// for bytes: these caps are what uploads may hold.)
const MAX_INGESTS: usize = 8;
const MAX_INGESTS_PER_USER: usize = 2;
/// An upload that sends nothing for this long loses its ingest (and the
/// thread it held); its last piece ingests it from the start.
const INGEST_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// The ingests by upload session id; `None` once the server stops.
pub struct Ingests(std::sync::Mutex<Option<std::collections::HashMap<String, Ingest>>>);

impl Default for Ingests {
    fn default() -> Self {
        Ingests(std::sync::Mutex::new(Some(Default::default())))
    }
}

impl Ingests {
    /// The ingest of session `id` whose bytes end at `received` (the file
    /// as it is now), started from the file's beginning if there is none or
    /// it had read past what the session kept.
    pub fn follow(
        &self,
        stores: &Arc<Stores>,
        id: &str,
        user: UserId,
        path: std::path::PathBuf,
        received: u64,
        size: u64,
    ) {
        let mut map = self.0.lock().expect("ingests poisoned");
        let Some(map) = map.as_mut() else { return };
        if map.get(id).is_some_and(|i| *i.written.borrow() == received && !i.task.is_finished()) {
            return;
        }
        map.remove(id);
        map.retain(|_, i| !i.task.is_finished());
        if map.len() >= MAX_INGESTS || map.values().filter(|i| i.user == user).count() >= MAX_INGESTS_PER_USER {
            return;
        }
        let Ok(file) = std::fs::File::open(&path) else { return };
        let (written, rx) = tokio::sync::watch::channel(received);
        let runtime = tokio::runtime::Handle::current();
        let stores = Arc::clone(stores);
        let task = tokio::task::spawn_blocking(move || {
            let reader = Follow { file, at: 0, size, written: rx, runtime, waited: false };
            stores.store_stream(user, std::io::BufReader::with_capacity(1 << 20, reader), size)
        });
        map.insert(id.to_owned(), Ingest { user, written, task });
    }

    /// Bytes up to `received` are in session `id`'s file.
    pub fn written(&self, id: &str, received: u64) {
        if let Some(i) = self.0.lock().expect("ingests poisoned").as_ref().and_then(|m| m.get(id)) {
            i.written.send_replace(received);
        }
    }

    /// Stops following session `id` (its bytes are not what was read).
    pub fn forget(&self, id: &str) {
        if let Some(m) = self.0.lock().expect("ingests poisoned").as_mut() {
            m.remove(id);
        }
    }

    /// The server stops: every ingest ends (its wait for bytes fails), and
    /// no new one starts, so no blocking task holds the shutdown.
    pub fn stop(&self) {
        self.0.lock().expect("ingests poisoned").take();
    }

    /// The blocks of session `id`'s whole file, if its ingest read all of
    /// it; `None`: ingest it now.
    pub async fn finish(&self, id: &str, size: u64) -> Option<(Vec<BlockId>, Vec<NewBlock>)> {
        let ingest = self.0.lock().expect("ingests poisoned").as_mut()?.remove(id)?;
        if *ingest.written.borrow() != size {
            return None;
        }
        match ingest.task.await {
            Ok(Ok(blocks)) => {
                tracing::debug!(size, "upload ingested while it arrived");
                Some(blocks)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "an upload's ingest failed; ingesting at the end");
                None
            }
            Err(_) => None,
        }
    }
}

/// Reads a growing file up to what has been written, waiting for more.
struct Follow {
    file: std::fs::File,
    at: u64,
    size: u64,
    written: tokio::sync::watch::Receiver<u64>,
    runtime: tokio::runtime::Handle,
    waited: bool,
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at >= self.size {
                return Ok(0);
            }
            let written = *self.written.borrow_and_update();
            if self.at < written {
                let want = buf.len().min((written - self.at) as usize);
                let n = self.file.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the upload file is shorter"));
                }
                self.at += n as u64;
                return Ok(n);
            }
            // Nothing new: wait for the next write, or give up. (This runs
            // on the chunker's own thread: the timer is made inside the
            // runtime's context, in the async block.)
            if !self.waited {
                self.waited = true;
                tracing::debug!(at = self.at, "an upload's ingest caught up; waiting for bytes");
            }
            let written = &mut self.written;
            match self.runtime.block_on(async { tokio::time::timeout(INGEST_IDLE, written.changed()).await }) {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(std::io::Error::other("the upload's ingest was stopped")),
                Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the upload went idle")),
            }
        }
    }
}
