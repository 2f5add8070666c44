//! Where the time between a SIGKILL and the health endpoint answering again goes, read from
//! the engine's own event timestamps (`docker events`, `TimeNano`), for any healer:
//!
//! 1. kill → `die`: the engine (containerd, then dockerd) noticing the process is gone;
//! 2. `die` → network `disconnect`: the engine tearing the dead container down (its endpoint
//!    on the network released);
//! 3. `disconnect` → network `connect`: whatever happens between the teardown and the next
//!    start: for `restart: always` the engine's own decision, for autogit the event reaching
//!    it, its pass and its start request;
//! 4. `connect` → `start`: the engine starting the container (mounts, containerd task);
//! 5. `start` → health answers: the process starting and answering.
//!
//! Also when the `die` event reached a client (this bench's `docker events`, as it reaches
//! autogit's event stream).

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
struct Ev {
    kind: String,
    action: String,
    /// Engine time, nanoseconds since the epoch.
    at_ns: u128,
    /// When this bench read it.
    arrived: SystemTime,
    /// The container: the actor of a container event, the `container` attribute of a
    /// network event.
    container: String,
}

/// Every container and network event of the engine, from when it was made.
#[derive(Debug)]
pub struct EngineLog {
    child: Child,
    events: Arc<Mutex<Vec<Ev>>>,
}

/// One repair, phase by phase ([module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    pub die: Duration,
    pub die_delivered: Duration,
    pub teardown: Duration,
    pub decide_and_request: Duration,
    pub start: Duration,
    pub answer: Duration,
}

pub const NAMES: [&str; 6] = [
    "kill -> die event (engine)",
    "(die -> event read by a client: overlaps)",
    "die -> network released (teardown)",
    "released -> network connected (react, request)",
    "connected -> start event (engine starts it)",
    "start -> health answers",
];

impl Phases {
    pub fn values(&self) -> [Duration; 6] {
        [
            self.die,
            self.die_delivered,
            self.teardown,
            self.decide_and_request,
            self.start,
            self.answer,
        ]
    }
}

fn ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

fn between(a: u128, b: u128) -> Duration {
    Duration::from_nanos(b.saturating_sub(a) as u64)
}

impl EngineLog {
    pub fn watch() -> EngineLog {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "type=network",
                "--format",
                "{{.Type}} {{.Action}} {{.TimeNano}} {{.Actor.ID}} {{index .Actor.Attributes \"container\"}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let out = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let arrived = SystemTime::now();
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() < 5 {
                    continue;
                }
                let Ok(at_ns) = f[2].parse() else { continue };
                let container = if f[0] == "network" { f[4] } else { f[3] };
                sink.lock().unwrap().push(Ev {
                    kind: f[0].to_owned(),
                    action: f[1].to_owned(),
                    at_ns,
                    arrived,
                    container: container.to_owned(),
                });
            }
        });
        // `docker events` subscribes asynchronously: give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        EngineLog { child, events }
    }

    /// The phases of the repair of `container_id`, killed at `killed` and answering again at
    /// `healthy`; `None` when an event is missing.
    pub fn phases(
        &self,
        container_id: &str,
        killed: SystemTime,
        healthy: SystemTime,
    ) -> Option<Phases> {
        let evs = self.events.lock().unwrap().clone();
        let k = ns(killed);
        let find = |kind: &str, action: &str, after: u128| {
            evs.iter()
                .find(|e| {
                    e.kind == kind
                        && e.action == action
                        && e.at_ns >= after
                        && e.container == container_id
                })
                .cloned()
        };
        let die = find("container", "die", k)?;
        let released = find("network", "disconnect", die.at_ns)?;
        let connected = find("network", "connect", released.at_ns)?;
        let start = find("container", "start", connected.at_ns)?;
        Some(Phases {
            die: between(k, die.at_ns),
            die_delivered: between(die.at_ns, ns(die.arrived)),
            teardown: between(die.at_ns, released.at_ns),
            decide_and_request: between(released.at_ns, connected.at_ns),
            start: between(connected.at_ns, start.at_ns),
            answer: between(start.at_ns, ns(healthy)),
        })
    }
}

impl Drop for EngineLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The median of each phase.
pub fn medians(runs: &[Phases]) -> Phases {
    let m = |f: fn(&Phases) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    Phases {
        die: m(|p| p.die),
        die_delivered: m(|p| p.die_delivered),
        teardown: m(|p| p.teardown),
        decide_and_request: m(|p| p.decide_and_request),
        start: m(|p| p.start),
        answer: m(|p| p.answer),
    }
}

/// A table: one row per phase, the medians of autogit and of `restart: always`.
pub fn print(ours: &[Phases], theirs: &[Phases]) {
    let (a, b) = (medians(ours), medians(theirs));
    println!(
        "  where the time goes (medians of {} / {} runs with every event seen; engine timestamps):",
        ours.len(),
        theirs.len()
    );
    println!(
        "    {:<48} {:>10} {:>16}",
        "phase", "autogit", "restart: always"
    );
    for ((name, x), y) in NAMES.iter().zip(a.values()).zip(b.values()) {
        println!(
            "    {:<48} {:>8.0}ms {:>14.0}ms",
            name,
            x.as_secs_f64() * 1e3,
            y.as_secs_f64() * 1e3
        );
    }
}
