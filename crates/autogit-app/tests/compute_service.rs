//! An inference job as a long-lived service (`core::jobkind`), for real: an `sshd` in a
//! network namespace is the host, the real `docker` CLI on the shared dockerd runs the job,
//! and the stand-in inference server is busybox `httpd` in the locally built job image,
//! answering `/health` on port 8080 (the test kills it to make the health check fail). The engine runs the health
//! check (`--health-cmd`), autogit reads it with `docker inspect`, and the platform services'
//! state machine (`reconcile::decide`: backoff, restart budget, the human flag) repairs it:
//!
//! - it becomes `HEALTHY`, published on a host port that answers;
//! - its health endpoint fails: `DEGRADED`, restarted (same container), healthy again;
//! - broken so that a restart does not help (a marker in its file system that the command
//!   honours): the restart fails, and after the backoff it is recreated (a new container);
//! - killed: restarted;
//! - killed once more with the restart budget spent: `FAILED` and flagged for a human, left
//!   alone (the job stays `running`, its note says how to clear the flag);
//! - cancelled: its container is removed and its service record is `ABSENT`;
//! - all along, its route (`--route llm`) in Traefik's `compute.yml` goes to the host port
//!   it is published on (a recreated container's new one), and leaves with the job;
//! - and a batch job run past its `--timeout` is stopped and failed.
//!
//! Needs root, iproute2, openssh and dockerd; without them "skipping" (a failure under
//! `AUTOGIT_REQUIRE_TOOLS`).

mod support;

use autogit_app::Event;
use autogit_app::compute::{ComputeController, Submit};
use autogit_core::lifecycle::State;
use autogit_drivers::state::{JobRow, Store};
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::process::Command;
use std::time::{Duration, Instant};

/// The job's container: `platform.project` (here `agsvc`) is its prefix.
const NAME: &str = "agsvc-job-1";

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Removes a job's container, whatever happens.
struct Container(&'static str);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", self.0]).output();
    }
}

/// The service state recorded for `compute-job-1`.
fn service_state(data: &std::path::Path) -> (Option<State>, bool) {
    let store = Store::open(&data.join("state.db")).unwrap();
    let r = store.records(0, 0).unwrap().remove("compute-job-1");
    (
        r.as_ref().and_then(|r| r.state),
        r.is_some_and(|r| r.history.flagged),
    )
}

/// Runs passes until `done` holds for job-1 (at most `secs`), printing each.
async fn until(
    c: &ComputeController,
    data: &std::path::Path,
    what: &str,
    secs: u64,
    done: impl Fn(&JobRow, Option<State>) -> bool,
) -> JobRow {
    let start = Instant::now();
    loop {
        let (_, rows) = c.pass().await.unwrap();
        let row = rows.into_iter().find(|r| r.id == "job-1").unwrap();
        let (state, _) = service_state(data);
        eprintln!(
            "{:5.1}s {what}: {} {state:?}: {}",
            start.elapsed().as_secs_f64(),
            row.state,
            row.message
        );
        assert_eq!(row.state, "running", "a service job stays running: {row:?}");
        if done(&row, state) {
            return row;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs}s: {row:?} {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A plain HTTP/1.0 GET on the loopback (the engine publishes the port there too).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn repairs(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ComputeServiceRepaired {
                action,
                attempt,
                error,
                ..
            } => Some(format!(
                "{action}#{attempt}{}",
                if error.is_some() { " failed" } else { "" }
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_service_is_health_checked_repaired_and_flagged_by_the_lifecycle_policy() {
    if !lab_available() {
        return;
    }
    let Some(image) = support::job_image_or_skip() else {
        return;
    };
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let _cleanup = Container(NAME);
    let _ = docker(&["rm", "-f", NAME]);

    let data = tempfile::tempdir().unwrap();
    let h0 = lab.hosts[0].addr.clone();
    let yml = format!(
        "platform:\n  project: agsvc\nrunners:\n  gpu:\n    - name: g0\n      host: {h0}\n      user: root\n      capabilities: [inference]\n\
         health:\n  restart_budget:\n    max: 4\n    window: 10m\n  backoff:\n    initial: 1s\n    max: 2s\n\
         compute:\n  lease: 60s\n"
    );
    let settings = support::settings(&yml, "BASE_DOMAIN=test.internal\n", data.path());
    let routes = data.path().join("rendered/traefik/dynamic/compute.yml");
    let (c, bus) = support::lab_compute(&lab, settings, data.path()).await;
    let mut rx = bus.subscribe();

    // The stand-in server: busybox httpd serving /www/health (its pid in /pid), unless
    // /broken exists in the container's file system (which survives a restart, not a
    // recreate); the shell stays as PID 1 and leaves on SIGTERM.
    let server = "mkdir -p /www && echo ok > /www/health; \
        if [ ! -e /broken ]; then httpd -f -p 8080 -h /www & echo $! > /pid; fi; \
        trap 'exit 0' TERM; while :; do sleep 1; done";
    let row = c
        .submit(Submit {
            start_period: Some("6s".into()),
            ..support::routed_service(&image, server)
        })
        .await
        .unwrap();
    assert_eq!((row.id.as_str(), row.state.as_str()), ("job-1", "running"));
    assert_eq!(service_state(data.path()).0, Some(State::Deploying));
    // Its lease file is in the platform's own directory on the host.
    assert!(
        lab.hosts[0]
            .dir
            .join(".autogit/leases/agsvc/job-1")
            .is_file()
    );
    assert_eq!(
        docker(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.autogit.kind\"}}",
            NAME
        ]),
        "inference"
    );

    // Healthy, and published on a host port that answers.
    let row = until(&c, data.path(), "deploy", 60, |_, s| {
        s == Some(State::Healthy)
    })
    .await;
    let port: u16 = row
        .message
        .split("http://")
        .nth(1)
        .and_then(|r| r.split(':').nth(1))
        .and_then(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no endpoint in {:?}", row.message));
    assert!(
        row.message.starts_with("service HEALTHY at http://"),
        "{}",
        row.message
    );
    // The host port is recorded with the job, and its route (`--route llm`) goes there.
    assert_eq!(row.host_port, Some(port), "{row:?}");
    assert!(
        row.message
            .contains(", routed at https://llm.test.internal"),
        "{}",
        row.message
    );
    assert_eq!(
        support::route_upstream(&routes),
        Some(format!("http://{h0}:{port}"))
    );
    let answer = http_get(port, "/health");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let first_id = docker(&["inspect", "--format", "{{.Id}}", NAME]);

    // Its health endpoint fails: degraded, restarted in place, healthy again.
    docker(&["exec", NAME, "sh", "-c", "kill $(cat /pid)"]);
    until(&c, data.path(), "unhealthy", 60, |_, s| {
        s == Some(State::Repairing)
    })
    .await;
    until(&c, data.path(), "restarted", 60, |_, s| {
        s == Some(State::Healthy)
    })
    .await;
    assert_eq!(
        docker(&["inspect", "--format", "{{.Id}}", NAME]),
        first_id,
        "a first repair restarts the same container"
    );
    assert_eq!(repairs(&support::drain(&mut rx)), ["restart#1"]);

    // Broken for good in this container: the restart does not help; the recreate does.
    docker(&["exec", NAME, "sh", "-c", ": > /broken; kill $(cat /pid)"]);
    let row = until(&c, data.path(), "broken", 90, |_, s| {
        s == Some(State::Healthy) && docker(&["inspect", "--format", "{{.Id}}", NAME]) != first_id
    })
    .await;
    // The recreated container's host port is the one recorded (a route follows it).
    let published = docker(&["port", NAME, "8080/tcp"]);
    let now_at: Option<u16> = published
        .lines()
        .find_map(|l| l.rsplit_once(':').and_then(|(_, p)| p.parse().ok()));
    assert_eq!(row.host_port, now_at, "{published}");
    // The route follows the recreated container's port.
    assert_eq!(
        support::route_upstream(&routes),
        Some(format!("http://{h0}:{}", now_at.unwrap()))
    );
    let events = support::drain(&mut rx);
    assert_eq!(repairs(&events), ["restart#1", "recreate#2"]);
    assert!(
        events.iter().any(
            |e| matches!(e, Event::ServiceStateChanged { service, to, .. }
            if service == "compute-job-1" && to == "FAILED")
        ),
        "the failed restart is a FAILED state: {events:?}"
    );
    let second_id = docker(&["inspect", "--format", "{{.Id}}", NAME]);
    assert_ne!(second_id, first_id, "recreated");

    // Killed: a crash, restarted.
    docker(&["kill", NAME]);
    until(&c, data.path(), "killed", 60, |_, s| {
        s == Some(State::Repairing)
    })
    .await;
    until(&c, data.path(), "restarted", 60, |_, s| {
        s == Some(State::Healthy)
    })
    .await;
    assert_eq!(repairs(&support::drain(&mut rx)), ["restart#1"]);

    // Killed again with 4 repairs in the window (restart_budget.max 4): flagged, left alone.
    docker(&["kill", NAME]);
    let row = until(&c, data.path(), "budget spent", 60, |_, _| {
        service_state(data.path()).1
    })
    .await;
    assert_eq!(service_state(data.path()), (Some(State::Failed), true));
    assert!(
        row.message.contains("reconcile --clear compute-job-1"),
        "{}",
        row.message
    );
    let events = support::drain(&mut rx);
    assert!(repairs(&events).is_empty(), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::FlagRaised { service, .. } if service == "compute-job-1")),
        "{events:?}"
    );
    for _ in 0..3 {
        c.pass().await.unwrap();
    }
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Status}}", NAME]),
        "exited",
        "a flagged service is left alone"
    );
    assert!(repairs(&support::drain(&mut rx)).is_empty());

    // Cancelled: the container goes, the service record is ABSENT.
    let row = c.cancel("job-1").await.unwrap();
    assert_eq!(row.state, "cancelled");
    assert_eq!(service_state(data.path()).0, Some(State::Absent));
    assert_eq!(docker(&["ps", "-aq", "--filter", "name=^agsvc-job-1$"]), "");
    assert!(!routes.exists(), "its route is gone with it");

    // A batch job past its time limit (`--timeout`): stopped and failed.
    let _cleanup2 = Container("agsvc-job-2");
    let row = c
        .submit(Submit {
            gpus: 0,
            user: "ann".into(),
            job: vec![image.clone(), "sleep".into(), "600".into()],
            timeout: Some("2s".into()),
            ..Submit::default()
        })
        .await
        .unwrap();
    assert_eq!((row.id.as_str(), row.state.as_str()), ("job-2", "running"));
    let start = Instant::now();
    let row = loop {
        let (_, rows) = c.pass().await.unwrap();
        let row = rows.into_iter().find(|r| r.id == "job-2").unwrap();
        if row.state != "running" {
            break row;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{row:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(row.state, "failed", "{row:?}");
    assert!(row.message.contains("time limit of 2 s"), "{}", row.message);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Status}}", "agsvc-job-2"]),
        "exited"
    );
}
