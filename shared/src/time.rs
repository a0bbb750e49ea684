//! Unix milliseconds as a UTC calendar date and time, without a time crate.

/// `(year, month, day, hour, minute, second)` in UTC.
pub fn utc(ms: i64) -> (i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, tod / 3600, tod % 3600 / 60, tod % 60)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc_string(ms: i64) -> String {
    let (y, m, d, h, mi, s) = utc(ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::utc_string(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc_string(1_709_618_828_000), "2024-03-05 06:07:08");
        assert_eq!(super::utc_string(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(super::utc_string(-1000), "1969-12-31 23:59:59");
    }
}
