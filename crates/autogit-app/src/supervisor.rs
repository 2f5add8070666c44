//! How the daemon runs each controller, after kube-rs: a pass returns when it wants to run
//! again ([`Requeue`]); a failed pass is retried after an exponential backoff with jitter
//! (`core::lifecycle::backoff_secs`), published as `controller_failed`; nothing is a fixed
//! sleep loop, and every wait ends at once on shutdown.

use crate::{Bus, Event, SharedClock};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// When a controller wants its next pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// At this unix time (a schedule's next run, a certificate's retry time).
    At(i64),
    After(Duration),
    /// Nothing more to do in this process (not configured).
    Never,
}

/// The backoff after failed passes.
#[derive(Clone, Copy, Debug)]
pub struct ErrorPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl ErrorPolicy {
    /// The wait after the `failures`-th failure in a row, jitter in [0, 1).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        Duration::from_secs(autogit_core::lifecycle::backoff_secs(
            failures,
            self.initial.as_secs().max(1),
            self.max.as_secs(),
            jitter,
        ))
    }
}

/// A shutdown signal every loop can wait on; cloning shares it.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

pub fn shutdown() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl Shutdown {
    /// Resolves once the trigger fired (or was dropped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// A failed pass. Retried by the policy either way; published as `controller_failed` unless
/// the controller already published its own, more specific event (`dns_sync_failed`, ...),
/// so one failure is one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassError {
    pub message: String,
    pub published: bool,
}

impl PassError {
    /// A failure the controller has published itself.
    pub fn published(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            published: true,
        }
    }
}

impl From<String> for PassError {
    fn from(message: String) -> Self {
        Self {
            message,
            published: false,
        }
    }
}

/// The longest a controller sleeps between passes, whatever it asked: a clock that jumps or a
/// schedule computed wrong cannot put a controller to sleep for days.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Runs `pass` until shutdown: after success when it asks, after failure by the policy.
pub async fn supervise<F, Fut>(
    name: &str,
    bus: &Bus,
    clock: &SharedClock,
    policy: ErrorPolicy,
    shutdown: &Shutdown,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Requeue, PassError>>,
{
    let mut failures = 0u32;
    loop {
        if shutdown.fired() {
            return;
        }
        let result = tokio::select! {
            r = pass() => r,
            () = shutdown.wait() => return,
        };
        let wait = match result {
            Ok(Requeue::Never) => return,
            Ok(Requeue::After(d)) => {
                failures = 0;
                d
            }
            Ok(Requeue::At(t)) => {
                failures = 0;
                Duration::from_secs(t.saturating_sub(clock.now() as i64).max(1) as u64)
            }
            Err(error) => {
                failures += 1;
                let d = policy.delay(failures, fastrand::f64());
                if !error.published {
                    bus.publish(Event::ControllerFailed {
                        controller: name.to_owned(),
                        error: error.message,
                        failures,
                        retry_in_s: d.as_secs(),
                    });
                }
                d
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait.min(MAX_WAIT)) => {}
            () = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = ErrorPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        assert_eq!(p.delay(1, 0.999), Duration::from_secs(5));
        assert_eq!(p.delay(2, 0.999), Duration::from_secs(10));
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(10)); // 20 s, halved by jitter
        assert_eq!(p.delay(9, 0.999), Duration::from_secs(60));
    }

    /// Failures back off (published each time), a success resets, shutdown ends the loop
    /// even in the middle of a wait. Time is tokio's paused clock: nothing really sleeps.
    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_shutdown_ends_the_loop() {
        let bus = Bus::new(Arc::new(ManualClock::at(0)));
        let clock: SharedClock = Arc::new(ManualClock::at(0));
        let mut rx = bus.subscribe();
        let (trigger, stop) = shutdown();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let started = tokio::time::Instant::now();
        let policy = ErrorPolicy::default();
        let run = supervise("test", &bus, &clock, policy, &stop, move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(format!("failure {n}").into())
                } else {
                    Ok(Requeue::After(Duration::from_secs(600)))
                }
            }
        });
        let stopper = async {
            // After three failures (5+10+20 s at most) and one success, stop mid-wait.
            tokio::time::sleep(Duration::from_secs(100)).await;
            trigger.fire();
        };
        tokio::join!(run, stopper);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(
            started.elapsed() < Duration::from_secs(101),
            "shutdown ended the wait"
        );
        let mut failures = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let Event::ControllerFailed {
                failures: n,
                retry_in_s,
                ..
            } = &e.event
            {
                failures.push((*n, *retry_in_s));
            }
        }
        assert_eq!(failures.len(), 3);
        for (i, (n, wait)) in failures.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
            let full = 5u64 << i;
            assert!((full / 2..=full).contains(wait), "{wait} for failure {n}");
        }
    }

    /// A failure the controller published itself is backed off like any other, but not
    /// published again: one failure, one notification.
    #[tokio::test(start_paused = true)]
    async fn a_published_failure_is_not_published_twice() {
        let bus = Bus::new(Arc::new(ManualClock::at(0)));
        let clock: SharedClock = Arc::new(ManualClock::at(0));
        let mut rx = bus.subscribe();
        let (trigger, stop) = shutdown();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let run = supervise(
            "dns",
            &bus,
            &clock,
            ErrorPolicy::default(),
            &stop,
            move || {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err(PassError::published("dns_sync_failed was published")) }
            },
        );
        let stopper = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            trigger.fire();
        };
        tokio::join!(run, stopper);
        // 0 s, then 2.5–5 s, then 5–10 s, then 10–20 s: three or four passes in 30 s.
        assert!((3..=4).contains(&calls.load(Ordering::SeqCst)), "{calls:?}");
        assert!(rx.try_recv().is_err(), "nothing published");
    }
}
