//! Work on a cron schedule that survives restarts: the last scheduled time a pass took is
//! kept in a small JSON file (atomically replaced), so a restarted daemon neither repeats a
//! run nor forgets one; missed times collapse into one run. Used by scheduled backups and the
//! registry's garbage collection.

use std::path::PathBuf;

/// Where one schedule keeps its last scheduled time.
#[derive(Debug)]
pub struct Cadence {
    file: PathBuf,
}

/// What a pass should do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing is due; the next time, if the schedule has one.
    Wait(Option<i64>),
    /// The run scheduled at `at` is due (already recorded as taken); then `next`.
    Run { at: i64, next: Option<i64> },
}

impl Cadence {
    pub fn new(file: PathBuf) -> Self {
        Self { file }
    }

    fn last(&self) -> Option<i64> {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["last_scheduled"].as_i64())
    }

    fn record(&self, t: i64) -> Result<(), String> {
        autogit_drivers::fsx::write_atomic(
            &self.file,
            serde_json::json!({ "last_scheduled": t })
                .to_string()
                .as_bytes(),
            0o600,
        )
        .map_err(|e| e.to_string())
    }

    /// The first call only starts the schedule (nothing runs before its first time). A due
    /// run is recorded before it is returned: a failing run is reported once per scheduled
    /// time, not on every pass until it works.
    pub fn turn(&self, schedule: &str, now: i64) -> Result<Turn, String> {
        let Some(last) = self.last() else {
            self.record(now)?;
            return autogit_core::schedule::next(schedule, now).map(Turn::Wait);
        };
        match autogit_core::schedule::due(schedule, Some(last), now)? {
            Some(at) => {
                self.record(at)?;
                Ok(Turn::Run {
                    at,
                    next: autogit_core::schedule::next(schedule, at)?,
                })
            }
            None => autogit_core::schedule::next(schedule, now).map(Turn::Wait),
        }
    }
}
