//! Bandwidth limits: a byte rate shared by every transfer in one direction
//! (block uploads, block downloads), as a token bucket that lends: a chunk
//! may pass at once and the next waits until the rate has paid for it, so
//! the average holds the limit however the chunks come. Small requests
//! (the long poll, commits, journal pages) are not held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The size of the pieces a limited body is sent or read in.
pub const PIECE: usize = 64 << 10;

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; `None`: unlimited.
    rate: Option<u64>,
    /// Bytes that may pass now (negative: owed).
    tokens: f64,
    last: Instant,
}

/// One direction's limit.
#[derive(Debug)]
pub struct Limiter {
    bucket: Mutex<Bucket>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter { bucket: Mutex::new(Bucket { rate: None, tokens: 0.0, last: Instant::now() }) }
    }
}

impl Limiter {
    pub fn set(&self, rate: Option<u64>) {
        let mut b = self.bucket.lock().expect("limiter poisoned");
        b.rate = rate.filter(|r| *r > 0);
        b.tokens = 0.0;
        b.last = Instant::now();
    }

    pub fn rate(&self) -> Option<u64> {
        self.bucket.lock().expect("limiter poisoned").rate
    }

    /// How long `n` more bytes must wait (and takes them).
    fn charge(&self, n: usize) -> Duration {
        let mut b = self.bucket.lock().expect("limiter poisoned");
        let Some(rate) = b.rate else { return Duration::ZERO };
        let now = Instant::now();
        let rate = rate as f64;
        // What the rate has paid since, keeping at most a quarter second's worth.
        let burst = (rate / 4.0).max(PIECE as f64);
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        b.tokens -= n as f64;
        if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / rate) }
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: usize) {
        let wait = self.charge(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// `2MB/s`, `500KB/s`, `10MiB/s`, `1.5MB/s`, `800000` (bytes per second) or
/// `off` (`None`).
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") || t == "0" {
        return Ok(None);
    }
    let t = t.strip_suffix("/s").unwrap_or(t);
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: give a rate like 2MB/s, 500KB/s or off"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{s:?}: the unit is B, KB, MB, GB, KiB, MiB or GiB (per second)")),
    };
    let rate = (n * mult).round();
    if rate < 1024.0 {
        return Err(format!("{s:?}: at least 1 KiB/s (or off)"));
    }
    Ok(Some(rate as u64))
}

/// A rate given on the command line: bytes per second, or `None` for off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        parse_rate(s).map(Rate)
    }
}

/// A rate for people: `2.0 MB/s`.
pub fn show_rate(rate: Option<u64>) -> String {
    match rate {
        None => "unlimited".to_owned(),
        Some(r) if r >= 1_000_000 => format!("{:.1} MB/s", r as f64 / 1e6),
        Some(r) => format!("{:.0} KB/s", r as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2MB/s"), Ok(Some(2_000_000)));
        assert_eq!(parse_rate("1.5MB/s"), Ok(Some(1_500_000)));
        assert_eq!(parse_rate("500KB/s"), Ok(Some(500_000)));
        assert_eq!(parse_rate("10MiB/s"), Ok(Some(10 << 20)));
        assert_eq!(parse_rate("800000"), Ok(Some(800_000)));
        assert_eq!(parse_rate("off"), Ok(None));
        assert!(parse_rate("fast").is_err() && parse_rate("2XB/s").is_err() && parse_rate("10").is_err());
        assert_eq!(show_rate(Some(2_000_000)), "2.0 MB/s");
    }

    #[test]
    fn a_limit_charges_what_passed() {
        let l = Limiter::default();
        assert_eq!(l.charge(1 << 30), Duration::ZERO, "unlimited");
        l.set(Some(1_000_000));
        // A quarter second's worth may pass at once at most; the rest waits.
        let w = l.charge(1_000_000);
        assert!(w > Duration::from_millis(900) && w <= Duration::from_secs(1), "{w:?}");
    }
}
