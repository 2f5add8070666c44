//! Cron schedules over unix time (UTC), for the daemon's scheduled jobs (mirroring). Pure:
//! the caller supplies `now`.
//!
//! **Missed runs collapse:** after downtime, a job whose schedule passed several times is due
//! once (for the latest missed time), not once per missed time.

use croner::errors::CronError;
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use std::cmp::Ordering;

use crate::civil::{civil_from_days, days_from_civil};

/// A UTC instant in whole seconds, as croner searches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Utc(i64);

impl CronDateTime for Utc {
    fn to_civil(&self) -> CivilDateTime {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400) as u32;
        CivilDateTime::new(
            civil_from_days(days)
                .and_then(|(y, m, d)| CivilDate::from_ymd_opt(i32::try_from(y).ok()?, m, d))
                .unwrap_or_else(|| CivilDate::from_ymd_opt(1970, 1, 1).expect("a valid date")),
            CivilTime::from_hms_opt(secs / 3600, secs % 3600 / 60, secs % 60)
                .unwrap_or_else(|| CivilTime::from_hms_opt(0, 0, 0).expect("a valid time")),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        // 1970-01-01 was a Thursday.
        let n = (self.0.div_euclid(86_400) + 4).rem_euclid(7) as u32;
        Weekday::from_days_from_sunday(n)
    }

    fn resolve_civil(&self, c: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let days = days_from_civil(i64::from(c.year()), c.month(), c.day())
            .ok_or(CronError::InvalidDate)?;
        let secs = i64::from(c.hour()) * 3600 + i64::from(c.minute()) * 60 + i64::from(c.second());
        Ok(Resolution::Single(Utc(days * 86_400 + secs)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(seconds).map(Utc)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

fn parse(expr: &str) -> Result<Cron, String> {
    crate::units::check_cron(expr)?;
    expr.parse::<Cron>()
        .map_err(|e| format!("cron schedule `{expr}`: {e}"))
}

/// The scheduled time a job is due for at `now`: the latest occurrence after `last` (the
/// scheduled time of the previous run) and at or before `now`. A job that never ran is due at
/// once (for the latest occurrence, or `now` when the schedule has none yet).
pub fn due(expr: &str, last: Option<i64>, now: i64) -> Result<Option<i64>, String> {
    let cron = parse(expr)?;
    let latest = cron
        .find_previous_occurrence(&Utc(now), true)
        .ok()
        .map(|u| u.0);
    Ok(match (last, latest) {
        (None, Some(t)) => Some(t),
        (None, None) => Some(now),
        (Some(l), Some(t)) if t > l => Some(t),
        _ => None,
    })
}

/// The next occurrence strictly after `after`.
pub fn next(expr: &str, after: i64) -> Result<Option<i64>, String> {
    Ok(parse(expr)?
        .find_next_occurrence(&Utc(after), false)
        .ok()
        .map(|u| u.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    /// 2026-12-01T00:00:00Z, a Tuesday.
    const T0: i64 = 1_796_083_200;

    #[test]
    fn calendar_round_trip() {
        for t in [0, T0, T0 + 86_399, 951_782_400, -86_400] {
            let c = Utc(t).to_civil();
            let Resolution::Single(back) = Utc(0).resolve_civil(c).unwrap() else {
                panic!()
            };
            assert_eq!(back.0, t);
        }
        assert_eq!(Utc(T0).civil_weekday(), Weekday::Tuesday);
        assert_eq!(Utc(0).civil_weekday(), Weekday::Thursday);
    }

    #[test]
    fn every_six_hours() {
        let s = "0 */6 * * *";
        assert_eq!(next(s, T0).unwrap(), Some(T0 + 6 * H));
        assert_eq!(next(s, T0 - 1).unwrap(), Some(T0));
        // Never ran: due at once, for the latest occurrence.
        assert_eq!(due(s, None, T0 + 2 * H).unwrap(), Some(T0));
        // Ran at T0: not due until T0+6h.
        assert_eq!(due(s, Some(T0), T0 + 5 * H).unwrap(), None);
        assert_eq!(due(s, Some(T0), T0 + 6 * H).unwrap(), Some(T0 + 6 * H));
        // Down for two days: due once, for the latest missed time.
        assert_eq!(
            due(s, Some(T0), T0 + 48 * H + 60).unwrap(),
            Some(T0 + 48 * H)
        );
        assert_eq!(due(s, Some(T0 + 48 * H), T0 + 48 * H + 120).unwrap(), None);
    }

    #[test]
    fn weekdays_and_errors() {
        // Mondays at 03:30: the next after Tuesday T0 is six days later.
        assert_eq!(
            next("30 3 * * 1", T0).unwrap(),
            Some(T0 + 6 * 86_400 + 3 * H + 1800)
        );
        assert!(due("0 */6 * *", None, T0).is_err());
    }
}
