//! UTC timestamps without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Civil date (year, month, day) from days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `(YYYYMMDD, RFC 3339 timestamp)` for a number of seconds since the Unix epoch.
pub(crate) fn format_utc(secs: i64) -> (String, String) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

/// Now, as `(YYYYMMDD, RFC 3339)`.
pub(crate) fn now_utc() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format_utc(secs)
}

#[cfg(test)]
mod tests {
    use super::format_utc;

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, "19700101", "1970-01-01T00:00:00Z"),
            (951_782_400, "20000229", "2000-02-29T00:00:00Z"),
            (1_766_784_600, "20251226", "2025-12-26T21:30:00Z"),
            (4_102_444_799, "20991231", "2099-12-31T23:59:59Z"),
        ];
        for (secs, day, ts) in cases {
            assert_eq!(format_utc(secs), (day.to_owned(), ts.to_owned()), "{secs}");
        }
    }
}
