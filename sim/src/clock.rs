//! Simulated time: one global clock the scheduler moves forward, seen by each
//! device with its own skew (which can jump, as a real clock's does).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ferry_client::sync::seams::Clock;

/// The world's time, in milliseconds since the Unix epoch.
#[derive(Debug, Default)]
pub struct WorldTime {
    ms: AtomicI64,
    /// Makes every mtime unique (a real file system has nanoseconds).
    seq: AtomicI64,
}

impl WorldTime {
    pub fn new(start_ms: i64) -> Arc<WorldTime> {
        Arc::new(WorldTime { ms: AtomicI64::new(start_ms), seq: AtomicI64::new(0) })
    }

    pub fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::Relaxed)
    }

    pub fn advance(&self, ms: i64) {
        self.ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// A device's clock: world time plus the device's skew.
#[derive(Debug, Clone)]
pub struct SimClock {
    world: Arc<WorldTime>,
    skew_ms: Arc<AtomicI64>,
}

impl SimClock {
    pub fn new(world: Arc<WorldTime>, skew_ms: i64) -> SimClock {
        SimClock { world, skew_ms: Arc::new(AtomicI64::new(skew_ms)) }
    }

    /// A jump of the device's clock (NTP correction, a dead RTC battery).
    pub fn jump(&self, ms: i64) {
        self.skew_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Nanoseconds, distinct on every call (for file mtimes).
    pub fn now_ns(&self) -> i64 {
        let sub = self.world.seq.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        self.now_ms() * 1_000_000 + sub
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.world.now_ms() + self.skew_ms.load(Ordering::Relaxed)
    }
}
