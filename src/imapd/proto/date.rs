//! IMAP dates: `date` (`1-Feb-2024`) for SEARCH, `date-time`
//! (`05-Mar-2024 10:00:00 +0100`) for APPEND and INTERNALDATE.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn month(m: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .map(|i| i as u32 + 1)
}

fn naive_date(s: &str) -> Option<NaiveDate> {
    let mut it = s.trim().splitn(3, '-');
    let d: u32 = it.next()?.trim().parse().ok()?;
    let m = month(it.next()?)?;
    let y: i32 = it.next()?.parse().ok()?;
    NaiveDate::from_ymd_opt(y, m, d)
}

/// `1-Feb-2024` → unix seconds of that day's 00:00 UTC.
pub fn parse_date(s: &str) -> Option<i64> {
    Some(naive_date(s)?.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// `05-Mar-2024 10:00:00 +0100` (day may be space-padded) → unix seconds.
pub fn parse_date_time(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let d = naive_date(date)?;
    let mut t = time.split(':');
    let (h, mi, se) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    let ndt: NaiveDateTime = d.and_hms_opt(h, mi, se)?;
    let zb = zone.as_bytes();
    if zb.len() != 5 || !matches!(zb[0], b'+' | b'-') {
        return None;
    }
    let zh: i32 = zone[1..3].parse().ok()?;
    let zm: i32 = zone[3..5].parse().ok()?;
    let mut off = zh * 3600 + zm * 60;
    if zb[0] == b'-' {
        off = -off;
    }
    let tz = FixedOffset::east_opt(off)?;
    Some(tz.from_local_datetime(&ndt).single()?.timestamp())
}

/// Unix seconds → ` 5-Mar-2024 09:00:00 +0000` (UTC, day space-padded as RFC 3501 writes it).
pub fn format_date_time(secs: i64) -> String {
    let dt: DateTime<Utc> = Utc
        .timestamp_opt(secs, 0)
        .single()
        .unwrap_or_else(|| Utc.timestamp_opt(0, 0).single().unwrap_or_default());
    dt.format("%e-%b-%Y %H:%M:%S +0000").to_string()
}

/// The calendar day (00:00 UTC) containing `secs`, for SEARCH ON/SINCE/BEFORE.
pub fn day_of(secs: i64) -> i64 {
    secs - secs.rem_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1-Feb-2024"), Some(1706745600));
        assert_eq!(parse_date("01-feb-2024"), Some(1706745600));
        assert_eq!(parse_date("31-Feb-2024"), None);
        assert_eq!(
            parse_date_time("05-Mar-2024 10:00:00 +0100"),
            Some(1709629200)
        );
        assert_eq!(
            parse_date_time(" 5-Mar-2024 09:00:00 +0000"),
            Some(1709629200)
        );
        assert_eq!(parse_date_time("5-Mar-2024 09:00:00 0000"), None);
        assert_eq!(format_date_time(1709629200), " 5-Mar-2024 09:00:00 +0000");
        assert_eq!(day_of(1709629200), 1709596800);
    }
}
