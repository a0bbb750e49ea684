//! The HTTP range headers of the file API, parsed the one way both sides
//! read them: `Content-Range` of a resumable upload and `Range` of a
//! download. Malformed input is `None`/unsatisfiable, never a panic.

/// `Content-Range` of a resumable `PUT`: `bytes A-B/TOTAL`, or a status
/// query `bytes */TOTAL` or `bytes */*` (total not known to the asker, as
/// Google's `recover()` sends it).
#[derive(Debug, PartialEq, Eq)]
pub enum ContentRange {
    Bytes { start: u64, end: u64, total: u64 },
    Query { total: Option<u64> },
}

pub fn parse_content_range(s: &str) -> Option<ContentRange> {
    let rest = s.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    if range.trim() == "*" {
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        return Some(ContentRange::Query { total });
    }
    let total: u64 = total.trim().parse().ok()?;
    let (a, b) = range.split_once('-')?;
    let (start, end): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (start <= end && end < total).then_some(ContentRange::Bytes { start, end, total })
}

/// A `Range` that selects nothing of the file (answered with 416).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Parses a single `Range: bytes=...` against `size`: `Ok(None)` for no or an
/// unsupported (multi-part) range, `Err` when unsatisfiable.
pub fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| Unsatisfiable)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        (size.saturating_sub(n), size.checked_sub(1).ok_or(Unsatisfiable)?)
    } else {
        let start: u64 = a.parse().map_err(|_| Unsatisfiable)?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| Unsatisfiable)?.min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || start > end {
        return Err(Unsatisfiable);
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-9/20"), Some(ContentRange::Bytes { start: 0, end: 9, total: 20 }));
        assert_eq!(parse_content_range("bytes */20"), Some(ContentRange::Query { total: Some(20) }));
        assert_eq!(parse_content_range("bytes */*"), Some(ContentRange::Query { total: None }));
        assert_eq!(parse_content_range("bytes 0-9/*"), None);
        assert_eq!(parse_content_range("bytes 5-4/20"), None);
        assert_eq!(parse_content_range("bytes 0-20/20"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn range() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-", 100), Err(Unsatisfiable));
    }
}
