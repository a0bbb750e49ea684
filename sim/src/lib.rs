//! A seeded, deterministic simulation of Ferry: several devices and one
//! server in one process, driven by a scheduler that decides, from a seed,
//! every interleaving of user edits, engine steps, network deliveries and
//! faults. The real planner, engine and server (router, handlers, SQLite,
//! block store) run inside; only time ([`clock`]), the network ([`net`]) and
//! the disk ([`disk`]) are simulated. A failing seed replays exactly.
//!
//! Each run: a chaos phase of random steps with faults, then quiescence (all
//! faults healed, every device syncs until nobody has anything left to do),
//! then the checks of [`World::check`]:
//! - every device and the server show the same tree (names, kinds, contents,
//!   executable bits);
//! - everything a user wrote and did not destroy themselves is in a live
//!   tree on the server, at its path or in a conflict copy: in history only
//!   is lost (empty files, all one content, are not told apart);
//! - what the second user wrote in a folder shared with them read-only
//!   never reaches its owner (unless they moved it where they may write);
//! - the mass-deletion guard fires only where a user removed items (the
//!   simulated user confirms those, as a person would; a pause on a disk
//!   whose user removed nothing is reported);
//! - what each disk can hold is judged by the disk model's own name rules,
//!   not the engine's;
//! - nothing the engine made visible at a path was partial or corrupt (every
//!   file it placed is byte-for-byte something a user wrote);
//! - no partial download is left behind.
//!
//! `check.rs` holds those checks; `user.rs` what users do.

mod check;
pub mod clock;
pub mod disk;
pub mod net;
mod shares;
pub mod user;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use ferry_client::daemon::status::Status;
use ferry_client::sync::engine::{
    Engine, Error as EngineError, FolderUnavailable, Prefetches, RoundStats, prefetch_round,
};
use ferry_client::sync::tree::ContentHash;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::clock::{SimClock, WorldTime};
use crate::disk::{DiskPath, SimDisk};
use crate::net::{InFlight, Net, SharedNet, SimApi, SimServer};
pub use crate::user::UserOp;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub devices: usize,
    /// Scheduler steps before quiescence.
    pub steps: usize,
    /// Inject faults (crashes, restarts, lost requests, full and unreadable disks, clock jumps).
    pub faults: bool,
    /// Keep the whole event trace (printed for a failing seed).
    pub trace: bool,
    /// `Some(true)`: the first device's disk is case-insensitive, `Some(false)`:
    /// none is; `None`: each device's is, one time in three.
    pub case_insensitive: Option<bool>,
    /// Users: `Some(1)` one user with every device; `Some(2)` a second user
    /// with the last device, and folders shared between them; `None`: two
    /// users for odd seeds.
    pub users: Option<usize>,
    /// The server's metadata on PostgreSQL (a database of its own in a
    /// throwaway cluster for each seed), not SQLite.
    pub postgres: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            devices: 3,
            steps: 300,
            faults: true,
            trace: false,
            case_insensitive: None,
            users: None,
            postgres: false,
        }
    }
}

impl Options {
    /// The `ferry-sim` flags that give these options (those not the default).
    pub fn flags(&self) -> String {
        let d = Options::default();
        let mut f = String::new();
        if self.devices != d.devices {
            f += &format!(" --devices {}", self.devices);
        }
        if self.steps != d.steps {
            f += &format!(" --steps {}", self.steps);
        }
        if let Some(u) = self.users {
            f += &format!(" --users {u}");
        }
        if !self.faults {
            f += " --no-faults";
        }
        if self.postgres {
            f += " --postgres";
        }
        f
    }
}

/// Faults injected in one run, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub device_crashes: u32,
    pub server_restarts: u32,
    pub requests_dropped: u32,
    pub answers_lost: u32,
    pub server_errors: u32,
    pub corrupt_blocks: u32,
    pub disk_full: u32,
    pub permission_denied: u32,
    pub unmounts: u32,
    pub clock_jumps: u32,
    /// Journal pages whose block-list edits name a base the device does not hold.
    pub stale_edits: u32,
    /// Shares made, roles changed, members revoked or leaving (two users).
    pub share_changes: u32,
    /// Mass-deletion pauses the simulated user confirmed (not a fault: how
    /// often the guard was exercised).
    pub deletes_confirmed: u32,
}

impl Faults {
    pub fn total(&self) -> u32 {
        self.device_crashes
            + self.server_restarts
            + self.requests_dropped
            + self.answers_lost
            + self.server_errors
            + self.corrupt_blocks
            + self.disk_full
            + self.permission_denied
            + self.unmounts
            + self.clock_jumps
            + self.stale_edits
            + self.share_changes
    }

    pub fn add(&mut self, o: &Faults) {
        self.device_crashes += o.device_crashes;
        self.server_restarts += o.server_restarts;
        self.requests_dropped += o.requests_dropped;
        self.answers_lost += o.answers_lost;
        self.server_errors += o.server_errors;
        self.corrupt_blocks += o.corrupt_blocks;
        self.disk_full += o.disk_full;
        self.permission_denied += o.permission_denied;
        self.unmounts += o.unmounts;
        self.clock_jumps += o.clock_jumps;
        self.stale_edits += o.stale_edits;
        self.share_changes += o.share_changes;
        self.deletes_confirmed += o.deletes_confirmed;
    }
}

/// A history for the planner check: both devices sync `base`; device 1
/// then makes `there` and sends it; device 0 makes `here` without syncing
/// and may lose its state database (a reinstall); then everything settles.
/// When device 0 plans, its three trees (remote, local, synced) differ in
/// every way these edits can make them differ.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    pub base: Vec<UserOp>,
    pub there: Vec<UserOp>,
    pub here: Vec<UserOp>,
    pub lose_state: bool,
    /// Device 0's disk folds case (see [`Options::case_insensitive`]).
    pub case_insensitive: bool,
}

/// A run that passed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub user_ops: u32,
    pub requests: u32,
    pub faults: Faults,
    /// BLAKE3 of the event trace: equal for two runs of one seed.
    pub trace_digest: [u8; 32],
}

/// A run that broke an invariant.
#[derive(Debug)]
pub struct Violation {
    pub seed: u64,
    /// The options that are not the defaults, as `ferry-sim` flags.
    pub flags: String,
    pub what: String,
    /// The last events before it.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {}: {}", self.seed, self.what)?;
        writeln!(f, "replay: cargo run -p ferry-sim -- --seed {}{} --trace", self.seed, self.flags)?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

type SimEngine = Engine<SimDisk, SimApi, SimClock>;
type Round = Pin<Box<dyn Future<Output = (SimEngine, Result<RoundStats, EngineError>)>>>;

/// A device's "was woken" flag: the scheduler polls only woken rounds.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Device {
    name: String,
    disk: SimDisk,
    clock: SimClock,
    api: SimApi,
    state_db: PathBuf,
    /// Whose device it is (`server.callers[user]`).
    user: usize,
    /// What its engines reported (kept across crashes: the report of a
    /// failing seed shows its last errors).
    status: Arc<Mutex<Status>>,
    /// The engine between rounds (`None` after a crash, or while a round runs).
    engine: Option<SimEngine>,
    round: Option<Round>,
    /// The next round starts like a daemon does (folder check, stale temp
    /// files). Cleared once a round gets past that: a round that fails leaves
    /// it set (a daemon whose start-up fails exits, and starts afresh).
    fresh: bool,
    /// The user answered a mass-deletion pause with `--confirm-deletes`.
    confirm: bool,
    /// Items the user deleted or moved on this disk since its last round
    /// that ended well (no errors, nothing deferred): a person confirms a
    /// mass-deletion pause only then.
    removed_since_round: usize,
    woken: Arc<Flag>,
    last: Option<RoundStats>,
    /// The engine's prefetches (streaming sync), kept while a round runs.
    prefetches: Option<Prefetches<SimDisk>>,
    /// A look at the pending uploads and the fills it started.
    prefetch: Option<Prefetching>,
    prefetch_woken: Arc<Flag>,
}

type Prefetching = Pin<Box<dyn Future<Output = ()>>>;

/// What a device runs beside the user: its sync round, or its prefetch.
#[derive(Debug, Clone, Copy)]
enum Task {
    Round,
    Prefetch,
}

/// Files at least this large are announced before they are sent, and files
/// larger are downloaded block by block (smaller than a real device's, so
/// that histories stream often).
const SIM_STREAM_MIN: u64 = 48 << 10;

/// Deletions a round makes on the server without asking (a daemon's
/// default is 1,000).
const SIM_MAX_DELETES: usize = 6;

/// Contents users wrote, and which of them must never be lost.
#[derive(Default)]
struct Ledger {
    written: HashSet<ContentHash>,
    /// Written and not destroyed by a user since: each must be in a live
    /// tree at quiescence (history does not count).
    must_survive: HashMap<ContentHash, String>,
    /// Mass-deletion pauses on a disk whose user had removed nothing: the
    /// engine took something for deleted that no one deleted.
    false_alarms: Vec<String>,
}

pub struct World {
    seed: u64,
    opts: Options,
    rng: StdRng,
    time: Arc<WorldTime>,
    net: SharedNet,
    server: SimServer,
    devices: Vec<Device>,
    ledger: Ledger,
    /// Files a user is still writing: `(device, path, full content)`.
    pending_writes: Vec<(usize, DiskPath, Vec<u8>)>,
    faults: Faults,
    user_ops: u32,
    /// How many users share the server (devices beyond the first user's
    /// belong to the second).
    users: usize,
    /// Contents user 1 wrote inside a folder shared with them read-only,
    /// since they last could write there: none may reach the owner.
    viewer_writes: HashSet<ContentHash>,
    /// Contents written so far (each is stamped with its number).
    written_count: u64,
    requests: u32,
    trace: Vec<String>,
    hasher: blake3::Hasher,
    _dir: tempfile::TempDir,
}

/// Where the simulation keeps its databases: memory-backed when possible.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new().prefix("ferry-sim-").tempdir_in(shm)
    {
        return Ok(d);
    }
    tempfile::Builder::new().prefix("ferry-sim-").tempdir()
}

async fn round(engine: &mut SimEngine, fresh: bool, confirm: bool) -> Result<RoundStats, EngineError> {
    if fresh {
        engine.check_root()?;
        engine.remove_stale_temp_files().await?;
        engine.drop_stale_announcements().await?;
    }
    engine.deletes_confirmed |= confirm;
    engine.refresh_remote().await?;
    engine.sync_round().await
}

impl World {
    pub fn new(seed: u64, opts: Options) -> anyhow::Result<World> {
        let dir = scratch_dir()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let time = WorldTime::new(1_800_000_000_000 + rng.random_range(0..86_400_000));
        let net: SharedNet = Arc::new(Mutex::new(Net::default()));
        let names: Vec<(String, String)> =
            (0..opts.devices).map(|i| (format!("dev{i}"), format!("token-of-device-{i}-{seed}"))).collect();
        // Two users: the last device is the second user's.
        let users =
            if opts.devices < 2 { 1 } else { opts.users.unwrap_or(if seed % 2 == 1 { 2 } else { 1 }).clamp(1, 2) };
        let user_of = |i: usize| if users == 2 && i + 1 == opts.devices { 1 } else { 0 };
        let by_user: Vec<Vec<(String, String)>> = (0..users)
            .map(|u| names.iter().enumerate().filter(|(i, _)| user_of(*i) == u).map(|(_, n)| n.clone()).collect())
            .collect();
        let db = match opts.postgres {
            true => Some(net::SeedDb::new()?),
            false => None,
        };
        let server = SimServer::start(&dir.path().join("server"), &by_user, db)?;
        let devices = names
            .iter()
            .enumerate()
            .map(|(i, (name, token))| {
                let skew = if opts.faults { rng.random_range(-120_000..120_000) } else { 0 };
                let clock = SimClock::new(Arc::clone(&time), skew);
                let disk = SimDisk::new(name.clone(), clock.clone());
                // A third of the disks fold case and normalization (macOS), a
                // sixth also refuse the names Windows cannot store (Windows,
                // a FAT or exFAT disk); the rest are Linux disks.
                let (folds, windows) = match opts.case_insensitive {
                    Some(all) => (all && i == 0, false),
                    None => match rng.random_range(0..6) {
                        0 | 1 => (true, false),
                        2 => (true, true),
                        _ => (false, false),
                    },
                };
                disk.user().case_insensitive = folds;
                disk.user().windows = windows;
                Device {
                    name: name.clone(),
                    user: user_of(i),
                    disk,
                    clock,
                    api: SimApi::new(i, token.clone(), Arc::clone(&net)),
                    state_db: dir.path().join(format!("{name}.db")),
                    status: Arc::new(Mutex::new(Status::new(format!("{name}:/"), "sim".into()))),
                    engine: None,
                    round: None,
                    fresh: true,
                    confirm: false,
                    removed_since_round: 0,
                    woken: Arc::default(),
                    last: None,
                    prefetches: None,
                    prefetch: None,
                    prefetch_woken: Arc::default(),
                }
            })
            .collect();
        Ok(World {
            seed,
            opts,
            rng,
            time,
            net,
            server,
            devices,
            ledger: Ledger::default(),
            pending_writes: Vec::new(),
            faults: Faults::default(),
            user_ops: 0,
            users,
            viewer_writes: HashSet::new(),
            written_count: 0,
            requests: 0,
            trace: Vec::new(),
            hasher: blake3::Hasher::new(),
            _dir: dir,
        })
    }

    fn log(&mut self, line: String) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        if self.opts.trace {
            eprintln!("[{:>6}] {line}", self.trace.len());
        }
        self.trace.push(line);
    }

    fn violation(&self, what: impl Into<String>) -> Violation {
        let n = self.trace.len();
        let keep = if self.opts.trace { n } else { 60 };
        Violation {
            seed: self.seed,
            flags: self.opts.flags(),
            what: what.into(),
            trace: self.trace[n.saturating_sub(keep)..].to_vec(),
        }
    }

    /// Runs the chaos phase, quiescence and the checks.
    pub fn run(mut self) -> Result<Outcome, Violation> {
        for _ in 0..self.opts.steps {
            self.step().map_err(|e| self.violation(format!("{e:#}")))?;
        }
        self.quiesce()?;
        self.check()?;
        Ok(self.outcome())
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            seed: self.seed,
            user_ops: self.user_ops,
            requests: self.requests,
            faults: self.faults,
            trace_digest: *self.hasher.finalize().as_bytes(),
        }
    }

    /// A planner-check history (see [`Scenario`]), then quiescence and the checks.
    pub fn run_scenario(mut self, sc: &Scenario) -> Result<Outcome, Violation> {
        for op in &sc.base {
            self.apply_op(0, op);
        }
        self.quiesce()?;
        for op in &sc.there {
            self.apply_op(1, op);
        }
        self.time.advance(1_000);
        self.run_round_to_end(1)?;
        for op in &sc.here {
            self.apply_op(0, op);
        }
        if sc.lose_state {
            self.crash(0);
            for suffix in ["", "-wal", "-shm"] {
                let mut p = self.devices[0].state_db.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
            self.log("dev0 loses its state database".into());
        }
        self.quiesce()?;
        self.check()?;
        Ok(self.outcome())
    }

    fn open_engine(&self, d: usize) -> anyhow::Result<SimEngine> {
        let dev = &self.devices[d];
        let mut engine = Engine::open(
            (dev.disk.clone(), dev.api.clone(), dev.clock.clone()),
            dev.name.clone(),
            &dev.state_db,
            // Low, so that the guard fires in short histories: a user who
            // removes a folder of several items answers its pause.
            (SIM_MAX_DELETES, 0.5),
            dev.status.clone(),
        )?;
        engine.stream_min = SIM_STREAM_MIN;
        engine.small_file = SIM_STREAM_MIN;
        Ok(engine)
    }

    fn start_round(&mut self, d: usize) -> anyhow::Result<()> {
        let engine = match self.devices[d].engine.take() {
            Some(e) => e,
            None => {
                let e = self.open_engine(d)?;
                self.devices[d].prefetches = Some(e.prefetches.clone());
                e
            }
        };
        let dev = &mut self.devices[d];
        let fresh = dev.fresh;
        let confirm = std::mem::take(&mut dev.confirm);
        dev.round = Some(Box::pin(async move {
            let mut engine = engine;
            let r = round(&mut engine, fresh, confirm).await;
            (engine, r)
        }));
        dev.woken.0.store(true, Ordering::Relaxed);
        self.log(format!("{} starts a round", self.devices[d].name));
        Ok(())
    }

    /// Polls a woken round once.
    fn poll(&mut self, d: usize) {
        let dev = &mut self.devices[d];
        let Some(fut) = dev.round.as_mut() else { return };
        let Poll::Ready((engine, result)) = poll_woken(&dev.woken, fut) else { return };
        dev.round = None;
        let name = dev.name.clone();
        match result {
            Ok(stats) => {
                dev.engine = Some(engine);
                dev.fresh = false;
                dev.last = Some(stats);
                if stats.errors == 0 && stats.deferred == 0 {
                    dev.removed_since_round = 0; // all of it went through
                }
                self.log(format!("{name} round done: {stats:?}"));
            }
            Err(EngineError::MassDelete(e)) => {
                dev.engine = Some(engine);
                dev.fresh = false; // the pause comes after start-up
                dev.last = None;
                // A person confirms only deletions they made; a pause with
                // none is reported (and left unconfirmed: nothing is deleted).
                if dev.removed_since_round > 0 {
                    dev.confirm = true;
                    self.faults.deletes_confirmed += 1;
                    self.log(format!("{name} paused ({e}); the user, who removed items, confirms"));
                } else {
                    let alarm = format!("{name} paused ({e}) though its user removed nothing");
                    self.ledger.false_alarms.push(alarm.clone());
                    self.log(alarm);
                }
            }
            Err(EngineError::FolderUnavailable(e @ FolderUnavailable::Missing(_))) => {
                // The daemon stays up and starts afresh once the folder is back.
                dev.engine = Some(engine);
                dev.fresh = true;
                dev.last = None;
                self.log(format!("{name} waits for its folder: {e:#}"));
            }
            Err(e) => {
                dev.engine = Some(engine);
                dev.last = None;
                self.log(format!("{name} round failed: {e:#}"));
            }
        }
    }

    /// Starts a look at the pending uploads (as the daemon's prefetcher does
    /// when the long poll says they changed): new ones get a prefetch, and
    /// each is filled as far as the server has its blocks.
    fn start_prefetch(&mut self, d: usize) -> anyhow::Result<()> {
        let dev = &mut self.devices[d];
        let Some(prefetches) = dev.prefetches.clone() else { return Ok(()) };
        let state = Mutex::new(ferry_client::sync::state::State::open(&dev.state_db)?);
        let (disk, api, name) = (dev.disk.clone(), dev.api.clone(), dev.name.clone());
        dev.prefetch = Some(Box::pin(async move {
            let _ = prefetch_round(&prefetches, &disk, &api, &state, &name, 0).await;
        }));
        dev.prefetch_woken.0.store(true, Ordering::Relaxed);
        self.log(format!("{} looks at pending uploads", self.devices[d].name));
        Ok(())
    }

    /// Polls a woken prefetch once.
    fn poll_prefetch(&mut self, d: usize) {
        let dev = &mut self.devices[d];
        let Some(fut) = dev.prefetch.as_mut() else { return };
        if poll_woken(&dev.prefetch_woken, fut).is_ready() {
            dev.prefetch = None;
            let name = dev.name.clone();
            self.log(format!("{name} prefetch done"));
        }
    }

    /// Runs device `d`'s prefetch (if one runs) with a reliable network until it ends.
    fn run_prefetch_to_end(&mut self, d: usize) -> Result<(), Violation> {
        self.drive_to_end(d, Task::Prefetch)
    }

    /// Polls device `d`'s round or prefetch whenever it is woken and
    /// delivers the device's requests reliably, until the task ends.
    fn drive_to_end(&mut self, d: usize, task: Task) -> Result<(), Violation> {
        let what = match task {
            Task::Round => "round",
            Task::Prefetch => "prefetch",
        };
        for _ in 0..1_000_000 {
            let dev = &self.devices[d];
            let (running, woken) = match task {
                Task::Round => (dev.round.is_some(), dev.woken.0.load(Ordering::Relaxed)),
                Task::Prefetch => (dev.prefetch.is_some(), dev.prefetch_woken.0.load(Ordering::Relaxed)),
            };
            if !running {
                return Ok(());
            }
            if woken {
                match task {
                    Task::Round => self.poll(d),
                    Task::Prefetch => self.poll_prefetch(d),
                }
                continue;
            }
            let mine = self.net.lock().expect("net").queue.iter().position(|r| r.device == d);
            match mine {
                Some(i) => self.deliver(i, false),
                None => {
                    let name = &self.devices[d].name;
                    return Err(self.violation(format!("{name}'s {what} is stuck: not woken, nothing in flight")));
                }
            }
        }
        Err(self.violation(format!("{}'s {what} never ends", self.devices[d].name)))
    }

    fn crash(&mut self, d: usize) {
        let dev = &mut self.devices[d];
        dev.round = None;
        dev.engine = None;
        dev.prefetch = None;
        dev.prefetches = None;
        dev.fresh = true;
        dev.last = None;
        self.faults.device_crashes += 1;
        self.log(format!("{} crashes (kill -9)", self.devices[d].name));
    }

    /// Delivers request `i` of the network queue, maybe with a fault.
    fn deliver(&mut self, i: usize, faults: bool) {
        let inflight: InFlight = self.net.lock().expect("net").queue.remove(i);
        self.requests += 1;
        let what = format!("{} {} {}", self.devices[inflight.device].name, inflight.req.method, inflight.req.uri);
        let roll: f64 = if faults { self.rng.random() } else { 1.0 };
        if roll < 0.04 {
            self.faults.requests_dropped += 1;
            self.log(format!("{what}: request lost"));
            inflight.complete(Err(net::connection_lost()));
            return;
        }
        if roll < 0.06 {
            self.faults.server_errors += 1;
            self.log(format!("{what}: 503"));
            inflight.complete(Ok(net::unavailable()));
            return;
        }
        let mut resp = self.server.handle(&inflight.req);
        self.log(format!("{what}: {}", resp.status));
        if roll < 0.10 {
            self.faults.answers_lost += 1;
            self.log(format!("{what}: answer lost after the server acted"));
            inflight.complete(Err(net::connection_lost()));
            return;
        }
        if roll < 0.12 && inflight.req.uri.starts_with("/blocks/") && resp.status == 200 && resp.body.len() > 40 {
            // A damaged block from storage: the client must refuse it.
            self.faults.corrupt_blocks += 1;
            let at = resp.body.len() - 1 - self.rng.random_range(0..8);
            resp.body[at] ^= 0x55;
            self.log(format!("{what}: block bytes damaged"));
        }
        if roll < 0.14 && inflight.req.uri.starts_with("/changes?") && resp.status == 200 {
            // Block-list edits against a base the device never held: it must
            // ask again for full lists, never apply them.
            if let Some(body) = stale_edits(&resp.body) {
                self.faults.stale_edits += 1;
                resp.body = body;
                self.log(format!("{what}: block-list edits made stale"));
            }
        }
        inflight.complete(Ok(resp));
    }

    fn in_flight(&self) -> usize {
        self.net.lock().expect("net").queue.len()
    }

    /// One scheduler step of the chaos phase.
    fn step(&mut self) -> anyhow::Result<()> {
        let n = self.devices.len();
        let d = self.rng.random_range(0..n);
        let faults = self.opts.faults;
        match self.rng.random_range(0..100) {
            0..30 => {
                if self.rng.random_bool(0.1) {
                    self.finish_write();
                } else if self.devices[d].disk.user().mounted {
                    let op = {
                        let fs = self.devices[d].disk.user();
                        user::random_op(&mut self.rng, &fs)
                    };
                    if let Some(op) = op {
                        self.apply_op(d, &op);
                    }
                }
            }
            30..55 => {
                // A woken round or prefetch: (device, is a prefetch).
                let mut woken: Vec<(usize, bool)> = (0..n)
                    .filter(|&i| self.devices[i].round.is_some() && self.devices[i].woken.0.load(Ordering::Relaxed))
                    .map(|i| (i, false))
                    .collect();
                woken.extend(
                    (0..n)
                        .filter(|&i| {
                            self.devices[i].prefetch.is_some()
                                && self.devices[i].prefetch_woken.0.load(Ordering::Relaxed)
                        })
                        .map(|i| (i, true)),
                );
                if !woken.is_empty() {
                    match woken[self.rng.random_range(0..woken.len())] {
                        (i, false) => self.poll(i),
                        (i, true) => self.poll_prefetch(i),
                    }
                }
            }
            55..78 => {
                let q = self.in_flight();
                if q > 0 {
                    let i = self.rng.random_range(0..q);
                    self.deliver(i, faults);
                }
            }
            78..85 => {
                let dev = &self.devices[d];
                if dev.round.is_none() {
                    self.start_round(d)?;
                }
            }
            85..88 => {
                // Past start-up only: a start-up removes stale temp files.
                let dev = &self.devices[d];
                if dev.prefetch.is_none() && !dev.fresh {
                    self.start_prefetch(d)?;
                }
            }
            88..90 if self.users > 1 => self.share_action()?,
            88..95 => {
                let ms = self.rng.random_range(1..400);
                self.time.advance(ms);
            }
            _ if faults => self.fault(d)?,
            _ => {}
        }
        Ok(())
    }

    fn fault(&mut self, d: usize) -> anyhow::Result<()> {
        match self.rng.random_range(0..10) {
            0 | 1 => self.crash(d),
            2 => {
                self.server.restart()?;
                self.faults.server_restarts += 1;
                self.log("server restarts".into());
            }
            3 => {
                let mut fs = self.devices[d].disk.user();
                fs.full = !fs.full;
                let full = fs.full;
                drop(fs);
                if full {
                    self.faults.disk_full += 1;
                }
                self.log(format!("{}: disk full = {full}", self.devices[d].name));
            }
            4 | 5 => {
                let picked = {
                    let fs = self.devices[d].disk.user();
                    let keys: Vec<&DiskPath> = fs.nodes.keys().collect();
                    (!keys.is_empty()).then(|| keys[self.rng.random_range(0..keys.len())].clone())
                };
                if let Some(p) = picked {
                    let mut fs = self.devices[d].disk.user();
                    let denied = if fs.denied.remove(&p) {
                        false
                    } else {
                        fs.denied.insert(p.clone());
                        true
                    };
                    drop(fs);
                    if denied {
                        self.faults.permission_denied += 1;
                    }
                    self.log(format!("{}: {p} unreadable = {denied}", self.devices[d].name));
                }
            }
            6 => {
                let mut fs = self.devices[d].disk.user();
                fs.mounted = !fs.mounted;
                let mounted = fs.mounted;
                drop(fs);
                if !mounted {
                    self.faults.unmounts += 1;
                }
                self.log(format!("{}: folder mounted = {mounted}", self.devices[d].name));
            }
            7 => {
                let ms = self.rng.random_range(-3_600_000..3_600_000);
                self.devices[d].clock.jump(ms);
                self.faults.clock_jumps += 1;
                self.log(format!("{}: clock jumps {ms} ms", self.devices[d].name));
            }
            _ => {
                // Answers arrive late: a burst of deliveries in shuffled order.
                let q = self.in_flight();
                for _ in 0..q.min(3) {
                    let q = self.in_flight();
                    if q > 0 {
                        let i = self.rng.random_range(0..q);
                        self.deliver(i, true);
                    }
                }
            }
        }
        Ok(())
    }

    /// Heals every fault and lets all devices sync until none has anything
    /// left to do.
    fn quiesce(&mut self) -> Result<(), Violation> {
        self.log("-- quiescence: faults healed".into());
        for d in 0..self.devices.len() {
            let mut fs = self.devices[d].disk.user();
            fs.mounted = true;
            fs.full = false;
            fs.denied.clear();
            drop(fs);
        }
        // Requests still in flight (some from crashed rounds) arrive now.
        while self.in_flight() > 0 {
            self.deliver(0, false);
        }
        for pass in 0..16 {
            self.time.advance(1_000);
            let mut busy = false;
            for d in 0..self.devices.len() {
                // A prefetch holds what a round may take over: it ends first.
                self.run_prefetch_to_end(d)?;
                if !self.devices[d].fresh && self.devices[d].prefetches.is_some() {
                    self.start_prefetch(d).map_err(|e| self.violation(format!("prefetch: {e:#}")))?;
                    self.run_prefetch_to_end(d)?;
                }
                let stats = self.run_round_to_end(d)?;
                busy |= stats.is_none_or(|s| s.ops > 0 || s.errors > 0 || s.deferred > 0);
            }
            let mut cursors = Vec::new();
            for u in 0..self.users {
                cursors.push(self.server.cursor(u).map_err(|e| self.violation(format!("server: {e:#}")))?);
            }
            let behind = self.devices.iter().any(|d| d.engine.as_ref().is_none_or(|e| e.cursor != cursors[d.user]));
            if !busy && !behind {
                self.log(format!("-- quiet after {pass} passes"));
                return Ok(());
            }
        }
        let mut report = Vec::new();
        for dev in &self.devices {
            let Some(e) = dev.engine.as_ref() else { continue };
            let errors = dev.status.lock().map(|s| s.recent_errors.clone()).unwrap_or_default();
            report.push(format!("{}: last errors {errors:?}", dev.name));
            if let Ok((local, _)) = ferry_client::sync::seams::Disk::scan(&dev.disk) {
                let plan = ferry_client::sync::planner::plan(&e.rtree, &local, &e.stree);
                report.extend(plan.ops.iter().map(|op| format!("  plans {op:?}")));
                if !plan.is_empty() {
                    report.extend(
                        e.rtree.iter().map(|(p, r)| format!("    remote {p} id {} rev {} {:?}", r.id, r.rev, r.kind)),
                    );
                    report.extend(local.iter().map(|(p, l)| format!("    local {p} inode {} {:?}", l.inode, l.kind)));
                    report.extend(
                        e.stree
                            .iter()
                            .map(|(p, s)| format!("    synced {p} id {} rev {} inode {}", s.id, s.rev, s.local.inode)),
                    );
                }
            }
        }
        report.extend(self.journal_lines());
        Err(self.violation(format!("no quiescence after 16 passes:\n{}", report.join("\n"))))
    }

    /// Runs a round on device `d` with a reliable network until it ends.
    fn run_round_to_end(&mut self, d: usize) -> Result<Option<RoundStats>, Violation> {
        if self.devices[d].round.is_none() {
            self.start_round(d).map_err(|e| self.violation(format!("opening {}: {e:#}", self.devices[d].name)))?;
        }
        self.drive_to_end(d, Task::Round)?;
        Ok(self.devices[d].last)
    }
}

/// Polls a task once, clearing its "woken" flag first (the waker sets it).
fn poll_woken<T>(woken: &Arc<Flag>, fut: &mut Pin<Box<dyn Future<Output = T>>>) -> Poll<T> {
    woken.0.store(false, Ordering::Relaxed);
    let waker = Waker::from(Arc::clone(woken));
    fut.as_mut().poll(&mut Context::from_waker(&waker))
}

/// A changes page whose block-list edits name another base revision, or
/// `None` when it has none.
fn stale_edits(body: &[u8]) -> Option<Vec<u8>> {
    let mut page: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut any = false;
    for ch in page["changes"].as_array_mut()? {
        if let Some(rev) = ch["blocks_edit"]["base_rev"].as_i64() {
            ch["blocks_edit"]["base_rev"] = (rev - 1).into();
            any = true;
        }
    }
    any.then(|| serde_json::to_vec(&page).expect("serializable"))
}

/// Runs one seed.
pub fn run_seed(seed: u64, opts: &Options) -> Result<Outcome, Violation> {
    let world = World::new(seed, opts.clone()).map_err(|e| Violation {
        seed,
        flags: opts.flags(),
        what: format!("setting up: {e:#}"),
        trace: Vec::new(),
    })?;
    world.run()
}
