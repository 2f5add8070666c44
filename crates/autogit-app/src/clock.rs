//! Time as controllers see it. Every decision a controller makes takes `now` from its
//! [`Clock`], so tests drive time by hand ([`ManualClock`]) instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix seconds, from wherever the caller decides.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        autogit_drivers::runtime::now()
    }
}

/// A clock moved by hand (tests). Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(unix: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix)))
    }

    pub fn set(&self, unix: u64) {
        self.0.store(unix, Ordering::SeqCst);
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The clock controllers share.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let c = ManualClock::at(100);
        let d = c.clone();
        c.advance(5);
        assert_eq!(d.now(), 105);
        d.set(7);
        assert_eq!(c.now(), 7);
    }
}
