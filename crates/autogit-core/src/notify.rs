//! Which events a `health.notify` entry gets: its filter (`events`, `min_severity`) and its
//! rate limit (`rate_limit: {max, per}`, a fixed window per entry). Pure: the application
//! layer keeps one [`Limiter`] per entry (in the state store, so a restart does not reset
//! it) and passes the event's time in.

use crate::units::Dur;
use serde::Serialize;

/// Every event kind autogit publishes (the application layer's `Event::kind`; its tests
/// check that the two lists agree). `events: [...]` accepts these.
pub const EVENT_KINDS: [&str; 35] = [
    "service_state_changed",
    "flag_raised",
    "reconcile_action",
    "reconcile_action_failed",
    "mirror_sync_started",
    "mirror_synced",
    "mirror_failed",
    "mirror_sync_finished",
    "mirror_pruned",
    "dns_synced",
    "dns_sync_failed",
    "certificate_renewed",
    "certificate_renewal_failed",
    "certificate_expiring",
    "ingress_refresh_failed",
    "backup_created",
    "backup_failed",
    "backup_copied",
    "backup_copy_failed",
    "runner_scaled",
    "runner_scale_failed",
    "runner_registered",
    "runner_registration_failed",
    "runner_unregistered",
    "runner_repaired",
    "runner_host_resolved",
    "runner_host_prepared",
    "host_unreachable",
    "host_reachable",
    "compute_job_changed",
    "compute_service_repaired",
    "controller_failed",
    "webhook_failed",
    "task_started",
    "task_finished",
];

/// An event's severity, lowest first (`min_severity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "info" => Some(Level::Info),
            "warning" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// At most `max` messages in each window of `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub max: u32,
    pub per: Dur,
}

/// One entry's filter and rate limit; the default lets every notifying event through.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Only these kinds (all when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl Rule {
    /// Whether an event of `kind` and `severity` (`info`, `warning`, `error`) passes the
    /// filter. An unknown severity counts as `error`: a filter never hides what it cannot
    /// read.
    pub fn admits(&self, kind: &str, severity: &str) -> bool {
        let level = Level::parse(severity).unwrap_or(Level::Error);
        (self.events.is_empty() || self.events.iter().any(|k| k == kind))
            && self.min_severity.is_none_or(|min| level >= min)
    }
}

/// What the limiter says about one event that passed the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it; `suppressed` events were dropped since the last message sent (say so).
    Send { suppressed: u64 },
    /// Over the limit: dropped, and counted.
    Drop,
}

/// A fixed-window rate limiter for one notifier: the first event opens a window of `per`;
/// within it, `max` are sent and the rest dropped and counted; the first event sent after
/// that carries the count. Its fields are what a store keeps between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limiter {
    /// When the current window opened (Unix seconds); `None` before the first event.
    pub window_start: Option<u64>,
    /// Messages sent in the current window.
    pub sent: u32,
    /// Events dropped and not yet reported.
    pub suppressed: u64,
}

impl Limiter {
    /// Decides for one event at `now` (Unix seconds). Without a limit every event is sent.
    /// A clock that goes back opens a new window rather than blocking until it catches up.
    pub fn decide(&mut self, limit: Option<&RateLimit>, now: u64) -> Decision {
        let Some(limit) = limit else {
            return Decision::Send {
                suppressed: std::mem::take(&mut self.suppressed),
            };
        };
        let per = limit.per.0.as_secs().max(1);
        let expired = match self.window_start {
            None => true,
            Some(start) => now < start || now - start >= per,
        };
        if expired {
            self.window_start = Some(now);
            self.sent = 0;
        }
        if self.sent < limit.max {
            self.sent += 1;
            Decision::Send {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Decision::Drop
        }
    }

    /// Events dropped and not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// The line a message carries after `n` suppressed events.
pub fn suppressed_note(n: u64) -> String {
    if n == 1 {
        "1 more event suppressed by the rate limit".to_owned()
    } else {
        format!("{n} more events suppressed by the rate limit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(max: u32, per: u64) -> RateLimit {
        RateLimit {
            max,
            per: Dur::secs(per),
        }
    }

    #[test]
    fn filter_by_kind_and_severity() {
        let r = Rule {
            events: vec!["mirror_failed".into(), "backup_created".into()],
            min_severity: Some(Level::Warning),
            rate_limit: None,
        };
        assert!(r.admits("mirror_failed", "error"));
        assert!(!r.admits("backup_created", "info"), "below min_severity");
        assert!(!r.admits("dns_sync_failed", "error"), "not listed");
        assert!(Rule::default().admits("anything", "info"));
        let sev = Rule {
            min_severity: Some(Level::Error),
            ..Rule::default()
        };
        assert!(!sev.admits("host_unreachable", "warning"));
        assert!(
            sev.admits("host_unreachable", "bogus"),
            "unknown counts as error"
        );
    }

    #[test]
    fn over_the_limit_drops_then_reports_the_count() {
        let l = limit(2, 600);
        let mut s = Limiter::default();
        assert_eq!(s.decide(Some(&l), 1000), Decision::Send { suppressed: 0 });
        assert_eq!(s.decide(Some(&l), 1001), Decision::Send { suppressed: 0 });
        for t in 1002..1005 {
            assert_eq!(s.decide(Some(&l), t), Decision::Drop);
        }
        assert_eq!(s.suppressed(), 3);
        // Still inside the window.
        assert_eq!(s.decide(Some(&l), 1599), Decision::Drop);
        // The next window: sent, with the count.
        assert_eq!(s.decide(Some(&l), 1600), Decision::Send { suppressed: 4 });
        assert_eq!(s.decide(Some(&l), 1601), Decision::Send { suppressed: 0 });
        assert_eq!(
            suppressed_note(3),
            "3 more events suppressed by the rate limit"
        );
    }

    #[test]
    fn a_clock_going_back_opens_a_window() {
        let l = limit(1, 600);
        let mut s = Limiter::default();
        assert_eq!(s.decide(Some(&l), 5000), Decision::Send { suppressed: 0 });
        assert_eq!(s.decide(Some(&l), 5001), Decision::Drop);
        assert_eq!(s.decide(Some(&l), 10), Decision::Send { suppressed: 1 });
        assert_eq!(s.decide(None, 11), Decision::Send { suppressed: 0 });
    }

    proptest! {
        /// Whatever the times, no window of `per` seconds (starting at a window's first
        /// event) sees more than `max` sends, and every event is either sent or counted
        /// exactly once.
        #[test]
        fn never_more_than_max_per_window_and_nothing_lost(
            max in 1u32..5,
            per in 1u64..100,
            gaps in proptest::collection::vec(0u64..40, 1..200),
        ) {
            let l = limit(max, per);
            let mut s = Limiter::default();
            let mut now = 1_000u64;
            let mut sends: Vec<u64> = Vec::new();
            let mut reported = 0u64;
            for g in &gaps {
                now += g;
                if let Decision::Send { suppressed } = s.decide(Some(&l), now) {
                    sends.push(now);
                    reported += suppressed;
                }
            }
            prop_assert_eq!(sends.len() as u64 + reported + s.suppressed(), gaps.len() as u64);
            for (i, &t) in sends.iter().enumerate() {
                let within = sends[i..].iter().take_while(|&&u| u < t + per).count();
                // A window opened before t may still run: at most 2*max in any span of `per`,
                // and at most `max` in a window that opens at t.
                prop_assert!(within <= 2 * max as usize);
            }
        }
    }
}
