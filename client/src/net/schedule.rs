//! Bandwidth limits as people give them: rates (`2MB/s`, `off`), and a
//! schedule (`ferry limit --up 2MB/s --between 09:00-18:00 --days
//! mon-fri`): inside the window, in local time, the schedule's limits
//! apply; outside it, the others. Pure values: the daemon applies them to
//! the client's buckets at each edge of the window (`daemon::limits`).

use serde::{Deserialize, Serialize};

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

/// A time of day window in local time, `09:00-18:00`; one that ends before
/// it starts runs past midnight (`22:00-06:00`, counted to the day it
/// starts on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    /// Minutes after midnight.
    start: u16,
    end: u16,
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.trim().len() <= 5).then_some(h * 60 + m)
}

impl std::str::FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Window, String> {
        let bad = || format!("{s:?}: give the hours as HH:MM-HH:MM, like 09:00-18:00 or 22:00-06:00");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (parse_clock(a).ok_or_else(bad)?, parse_clock(b).ok_or_else(bad)?);
        if start == end {
            return Err(format!(
                "{s:?}: the window starts and ends at the same time (leave out --between for all day)"
            ));
        }
        Ok(Window { start, end })
    }
}

impl TryFrom<String> for Window {
    type Error = String;
    fn try_from(s: String) -> Result<Window, String> {
        s.parse()
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        w.to_string()
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_FULL: [&str; 7] = ["mon", "tues", "wednes", "thurs", "fri", "satur", "sun"];

/// Days of the week, `mon-fri`, `sat,sun`, `mon,wed,fri`, `fri-mon`,
/// `weekdays`, `weekends` or `daily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Days(
    /// Bit 0: Monday ... bit 6: Sunday.
    u8,
);

impl Days {
    pub const ALL: Days = Days(0x7f);

    /// Whether the day `monday_zero` (0: Monday ... 6: Sunday) is one of them.
    pub fn has(self, monday_zero: u8) -> bool {
        self.0 & (1 << (monday_zero % 7)) != 0
    }
}

impl std::str::FromStr for Days {
    type Err = String;
    fn from_str(s: &str) -> Result<Days, String> {
        let day = |d: &str| {
            let d = d.trim().to_ascii_lowercase();
            (0..7u8).find(|&i| d == DAY_NAMES[i as usize] || d == format!("{}day", DAY_FULL[i as usize])).ok_or_else(
                || {
                    format!(
                        "{s:?}: days are mon, tue, wed, thu, fri, sat, sun, as a list (sat,sun) or a range (mon-fri)"
                    )
                },
            )
        };
        let mut bits = 0u8;
        match s.trim().to_ascii_lowercase().as_str() {
            "daily" | "all" | "every day" => return Ok(Days::ALL),
            "weekdays" => return Ok(Days(0x1f)),
            "weekends" | "weekend" => return Ok(Days(0x60)),
            _ => {}
        }
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => bits |= 1 << day(part)?,
            }
        }
        Ok(Days(bits))
    }
}

impl TryFrom<String> for Days {
    type Error = String;
    fn try_from(s: String) -> Result<Days, String> {
        s.parse()
    }
}

impl std::fmt::Display for Days {
    /// `mon-fri`, `sat,sun`, `daily`: what `FromStr` reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Days::ALL {
            return f.write_str("daily");
        }
        // Runs of consecutive days (in Monday-first order).
        let mut parts = Vec::new();
        let mut d = 0;
        while d < 7 {
            if !self.has(d) {
                d += 1;
                continue;
            }
            let start = d;
            while d + 1 < 7 && self.has(d + 1) {
                d += 1;
            }
            parts.push(match d - start {
                0 => DAY_NAMES[start as usize].to_owned(),
                1 => format!("{},{}", DAY_NAMES[start as usize], DAY_NAMES[d as usize]),
                _ => format!("{}-{}", DAY_NAMES[start as usize], DAY_NAMES[d as usize]),
            });
            d += 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl From<Days> for String {
    fn from(d: Days) -> String {
        d.to_string()
    }
}

/// Limits that apply inside a window on some days (bytes per second; none:
/// unlimited), instead of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<u64>,
    pub between: Window,
    pub days: Days,
}

impl Schedule {
    /// Whether the window holds the minute `minute` of a day `monday_zero`.
    pub fn covers(&self, monday_zero: u8, minute: u16) -> bool {
        let Window { start, end } = self.between;
        if start < end {
            self.days.has(monday_zero) && start <= minute && minute < end
        } else {
            // Past midnight: the part after it belongs to the day before.
            (self.days.has(monday_zero) && minute >= start) || (self.days.has(monday_zero + 6) && minute < end)
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: uploads {}, downloads {}", self.between, self.days, show_rate(self.up), show_rate(self.down))
    }
}

/// A device's limits: always, or on a schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub up: Option<u64>,
    pub down: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

impl Limits {
    /// `(up, down)` at a local time, and whether the schedule's window
    /// holds it.
    pub fn at(&self, t: &jiff::Zoned) -> (Option<u64>, Option<u64>, bool) {
        let minute = t.hour() as u16 * 60 + t.minute() as u16;
        let day = t.weekday().to_monday_zero_offset() as u8;
        match self.schedule {
            Some(s) if s.covers(day, minute) => (s.up, s.down, true),
            _ => (self.up, self.down, false),
        }
    }

    /// The next time after `t` the schedule's window opens or closes (on
    /// any day: a day it skips only costs a look).
    pub fn next_edge(&self, t: &jiff::Zoned) -> Option<jiff::Zoned> {
        let s = self.schedule?;
        let mut day = t.date();
        let mut best: Option<jiff::Zoned> = None;
        for _ in 0..3 {
            for m in [s.between.start, s.between.end] {
                let at = day.at((m / 60) as i8, (m % 60) as i8, 0, 0).to_zoned(t.time_zone().clone()).ok();
                if let Some(at) = at.filter(|a| a.timestamp() > t.timestamp())
                    && best.as_ref().is_none_or(|b| at.timestamp() < b.timestamp())
                {
                    best = Some(at);
                }
            }
            if best.is_some() {
                break;
            }
            day = day.tomorrow().ok()?;
        }
        best
    }

    /// For people: `uploads 2.0 MB/s, downloads unlimited; 09:00-18:00 mon-fri: ...`.
    pub fn describe(&self) -> String {
        let mut out = format!("uploads {}, downloads {}", show_rate(self.up), show_rate(self.down));
        if let Some(s) = self.schedule {
            out += &format!("; {s}");
        }
        out
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
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    fn at(s: &str) -> jiff::Zoned {
        s.parse().expect("a zoned time")
    }

    fn office() -> Limits {
        Limits {
            up: None,
            down: Some(10_000_000),
            schedule: Some(Schedule {
                up: Some(2_000_000),
                down: None,
                between: "09:00-18:00".parse().unwrap(),
                days: "mon-fri".parse().unwrap(),
            }),
        }
    }

    #[test]
    fn windows_and_days_read_and_write_back() {
        for (s, back) in [
            ("mon-fri", "mon-fri"),
            ("sat,sun", "sat,sun"),
            ("Mon,Wed,Fri", "mon,wed,fri"),
            ("fri-mon", "mon,fri-sun"),
            ("weekdays", "mon-fri"),
            ("daily", "daily"),
            ("monday-sunday", "daily"),
        ] {
            assert_eq!(s.parse::<Days>().map(|d| d.to_string()), Ok(back.to_owned()), "{s}");
        }
        assert!("mon-xyz".parse::<Days>().is_err() && "".parse::<Days>().is_err() && "mo".parse::<Days>().is_err());
        assert_eq!("9:30-18:00".parse::<Window>().map(|w| w.to_string()), Ok("09:30-18:00".to_owned()));
        for bad in ["09:00", "25:00-26:00", "09:00-09:00", "9-17", "09:60-10:00"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&office()).unwrap();
        assert!(json.contains(r#""between":"09:00-18:00","days":"mon-fri""#), "{json}");
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), office());
        assert!(serde_json::from_str::<Limits>(&json.replace("mon-fri", "someday")).is_err());
    }

    #[test]
    fn the_window_holds_its_hours_on_its_days() {
        let l = office();
        // 2026-12-04 is a Friday.
        assert_eq!(l.at(&at("2026-12-04T09:00[UTC]")), (Some(2_000_000), None, true));
        assert_eq!(l.at(&at("2026-12-04T17:59[UTC]")), (Some(2_000_000), None, true));
        assert_eq!(l.at(&at("2026-12-04T18:00[UTC]")), (None, Some(10_000_000), false));
        assert!(!l.at(&at("2026-12-04T08:59[UTC]")).2);
        assert!(!l.at(&at("2026-12-05T12:00[UTC]")).2, "Saturday");
        // Local time: 09:30 in Seoul is 00:30 UTC.
        assert!(l.at(&at("2026-12-04T09:30[Asia/Seoul]")).2);

        // Past midnight, counted to the day it starts on.
        let night =
            Schedule { up: None, down: None, between: "22:00-06:00".parse().unwrap(), days: "fri".parse().unwrap() };
        assert!(night.covers(4, 23 * 60) && night.covers(5, 5 * 60), "Friday night into Saturday");
        assert!(!night.covers(4, 5 * 60) && !night.covers(5, 23 * 60) && !night.covers(5, 6 * 60));
        let sunday_night = Schedule { days: "sun".parse().unwrap(), ..night };
        assert!(sunday_night.covers(0, 60), "Sunday night into Monday");
    }

    #[test]
    fn the_timer_is_set_to_the_next_edge() {
        let l = office();
        let edge = |t: &str| l.next_edge(&at(t)).map(|z| z.to_string());
        assert_eq!(edge("2026-12-04T08:00[UTC]").as_deref(), Some("2026-12-04T09:00:00+00:00[UTC]"));
        assert_eq!(edge("2026-12-04T09:00[UTC]").as_deref(), Some("2026-12-04T18:00:00+00:00[UTC]"));
        assert_eq!(edge("2026-12-04T20:00[UTC]").as_deref(), Some("2026-12-05T09:00:00+00:00[UTC]"));
        // Across a change to summer time (Berlin, 2026-03-29 02:00 -> 03:00).
        let dst = Limits {
            schedule: Some(Schedule { between: "02:30-04:00".parse().unwrap(), ..office().schedule.unwrap() }),
            ..office()
        };
        let e = dst.next_edge(&at("2026-03-29T01:00[Europe/Berlin]")).unwrap();
        assert_eq!(e.to_string(), "2026-03-29T03:30:00+02:00[Europe/Berlin]", "the gap's time comes after it");
        assert_eq!(Limits::default().next_edge(&at("2026-12-04T08:00[UTC]")), None);
    }
}
