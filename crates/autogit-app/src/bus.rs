//! The in-process event bus: controllers publish [`Event`]s, subscribers (log, state store,
//! notifiers, the API's stream) each get every event. Publishing never waits: a subscriber
//! that falls more than the channel's capacity behind loses the oldest events and is told how
//! many (tokio's broadcast `Lagged`).

use crate::clock::SharedClock;
use crate::event::{Envelope, Event};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How many events a slow subscriber may fall behind before it loses the oldest.
pub const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Envelope>>,
    clock: SharedClock,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl Bus {
    pub fn new(clock: SharedClock) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx, clock }
    }

    /// Stamps the event with the clock's time and hands it to every subscriber.
    pub fn publish(&self, event: Event) {
        let env = Envelope {
            at: self.clock.now(),
            event,
        };
        // No subscriber is not an error: a one-shot command may not listen.
        let _ = self.tx.send(Arc::new(env));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.tx.subscribe()
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// A handle that publishes without keeping the bus open: the bus closes (subscribers see
    /// the end) once every [`Bus`] is dropped, even while weak handles remain.
    pub fn downgrade(&self) -> WeakBus {
        WeakBus {
            tx: self.tx.downgrade(),
            clock: self.clock.clone(),
        }
    }
}

/// See [`Bus::downgrade`].
#[derive(Clone)]
pub struct WeakBus {
    tx: broadcast::WeakSender<Arc<Envelope>>,
    clock: SharedClock,
}

impl std::fmt::Debug for WeakBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakBus")
    }
}

impl WeakBus {
    /// Publishes when the bus is still open; otherwise the event is dropped.
    pub fn publish(&self, event: Event) {
        if let Some(tx) = self.tx.upgrade() {
            let _ = tx.send(Arc::new(Envelope {
                at: self.clock.now(),
                event,
            }));
        }
    }
}

/// Receives the next event, skipping over a lag (counted in `lost`); `None` once the bus is
/// gone.
pub async fn next(
    rx: &mut broadcast::Receiver<Arc<Envelope>>,
    lost: &mut u64,
) -> Option<Arc<Envelope>> {
    loop {
        match rx.recv().await {
            Ok(e) => return Some(e),
            Err(broadcast::error::RecvError::Lagged(n)) => *lost += n,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn every_subscriber_gets_every_event_stamped_by_the_clock() {
        let clock = ManualClock::at(1000);
        let bus = Bus::new(Arc::new(clock.clone()));
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(Event::BackupFailed { error: "x".into() });
        clock.advance(5);
        bus.publish(Event::HostReachable { host: "h".into() });
        let mut lost = 0;
        for rx in [&mut a, &mut b] {
            let first = next(rx, &mut lost).await.unwrap();
            assert_eq!((first.at, first.event.kind()), (1000, "backup_failed"));
            let second = next(rx, &mut lost).await.unwrap();
            assert_eq!((second.at, second.event.kind()), (1005, "host_reachable"));
        }
        assert_eq!(lost, 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_and_knows_how_many() {
        let bus = Bus::new(crate::clock::system());
        let mut rx = bus.subscribe();
        for i in 0..CAPACITY + 10 {
            bus.publish(Event::HostReachable {
                host: format!("h{i}"),
            });
        }
        let mut lost = 0;
        let first = next(&mut rx, &mut lost).await.unwrap();
        assert_eq!(lost, 10);
        assert_eq!(first.event, Event::HostReachable { host: "h10".into() });
    }
}
