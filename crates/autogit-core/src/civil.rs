//! Civil (proleptic Gregorian) UTC dates and times from and to unix time, with jiff's civil
//! `Date` arithmetic, and the two timestamp formats autogit writes. One copy for the whole
//! workspace (schedules, backups, engine timestamps, GitLab token expiry, SigV4 signing).
//!
//! Pure: core's jiff is built without its `std` feature, so it has no clock (no `now`
//! constructors), no system time zone and no time zone database; `clippy.toml` refuses the
//! clock APIs should a feature turn them on. Dates are the ones jiff represents, years -9999 to
//! 9999; a day number outside that range has no date (`None`).

use jiff::Span;
use jiff::civil::Date;

const EPOCH: Date = Date::constant(1970, 1, 1);

/// `(year, month, day)` of a day number (days since 1970-01-01, negative before); `None`
/// outside years -9999 to 9999.
pub fn civil_from_days(days: i64) -> Option<(i64, u32, u32)> {
    let date = EPOCH.checked_add(Span::new().try_days(days).ok()?).ok()?;
    Some((
        i64::from(date.year()),
        u32::try_from(date.month()).ok()?,
        u32::try_from(date.day()).ok()?,
    ))
}

/// Day number (days since 1970-01-01) of a civil date; `None` for a date that does not exist
/// (`2026-02-30`, month 13) or lies outside years -9999 to 9999.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let date = Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()?;
    Some(i64::from(EPOCH.until(date).ok()?.get_days()))
}

/// `(year, month, day, hour, minute, second)` of a unix time; beyond 9999-12-31T23:59:59Z
/// (which certificates use for "no expiry"), that last second.
fn parts(unix: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    match i64::try_from(days).ok().and_then(civil_from_days) {
        Some((y, m, d)) => (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60),
        None => (9999, 12, 31, 23, 59, 59),
    }
}

/// `20261201T023000Z` (also SigV4's `x-amz-date`).
pub fn compact_utc(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = parts(unix);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// RFC 3339 (`2026-12-01T02:30:00Z`).
pub fn rfc3339_utc(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = parts(unix);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// RFC 5322's date-time, in UTC (`Tue, 01 Dec 2026 02:30:00 +0000`), for an e-mail's `Date`.
pub fn rfc5322_utc(unix: u64) -> String {
    let (y, m, d, hh, mm, ss) = parts(unix);
    // 1970-01-01 was a Thursday.
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = DAYS[((unix / 86_400) % 7) as usize];
    let mon = MONTHS[(m.clamp(1, 12) - 1) as usize];
    format!("{wd}, {d:02} {mon} {y:04} {hh:02}:{mm:02}:{ss:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Day numbers of -9999-01-01 and 9999-12-31, the range jiff represents.
    const FIRST_DAY: i64 = -4_371_587;
    const LAST_DAY: i64 = 2_932_896;

    #[test]
    fn rfc5322_dates() {
        assert_eq!(rfc5322_utc(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2026-12-07 12:58:57 UTC was a Monday.
        assert_eq!(
            rfc5322_utc(1_796_648_337),
            "Mon, 07 Dec 2026 12:58:57 +0000"
        );
    }

    #[test]
    fn known_days() {
        assert_eq!(civil_from_days(0), Some((1970, 1, 1)));
        assert_eq!(civil_from_days(11_016), Some((2000, 2, 29)));
        assert_eq!(civil_from_days(-1), Some((1969, 12, 31)));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(compact_utc(0), "19700101T000000Z");
        assert_eq!(rfc3339_utc(1_764_556_245), "2025-12-01T02:30:45Z");
    }

    #[test]
    fn the_edges_of_the_calendar() {
        assert_eq!(civil_from_days(FIRST_DAY), Some((-9999, 1, 1)));
        assert_eq!(civil_from_days(LAST_DAY), Some((9999, 12, 31)));
        assert_eq!(civil_from_days(FIRST_DAY - 1), None);
        assert_eq!(civil_from_days(LAST_DAY + 1), None);
        assert_eq!(civil_from_days(i64::MIN), None);
        assert_eq!(days_from_civil(2026, 2, 29), None);
        assert_eq!(days_from_civil(2026, 13, 1), None);
        assert_eq!(days_from_civil(10_000, 1, 1), None);
        // RFC 5280's "no well-defined expiration", and what lies beyond it.
        let last = 253_402_300_799;
        assert_eq!(rfc3339_utc(last), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(last + 1), "9999-12-31T23:59:59Z");
        assert_eq!(compact_utc(u64::MAX), "99991231T235959Z");
    }

    proptest! {
        #[test]
        fn days_round_trip(days in FIRST_DAY..=LAST_DAY) {
            let (y, m, d) = civil_from_days(days).unwrap();
            prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), Some(days));
        }
    }
}
