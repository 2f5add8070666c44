//! Partitions and fencing by lease (`core::lease`), for real: two `sshd`s in network
//! namespaces are the hosts, the real `docker` CLI on the shared dockerd runs the jobs (both
//! hosts reach the same engine: the lab's hosts share this machine's file system), and the
//! host's veth is cut mid-job with `ip link set down`. Each host's `docker` is wrapped by a
//! script that logs every call with its host and time (then runs the real one), so the test
//! can order what each host did. Lease 30s (a probe of a host whose link was cut takes about
//! 16 s here: ssh's keep-alives end the shared connection), fencing grace 10s
//! (`FENCE_GRACE_SECS`).
//!
//! - job-1 (`reschedule`) and job-2 (`resume`) run on host 0; host 0's link goes down.
//! - host 0 is shown unreachable while the leases are live; no second start happens then; the
//!   host-side watchdog stops both containers once their lease file is stale; only after that
//!   is job-1 started on host 1; job-2 waits.
//! - the link comes back: job-2's container (the same one) runs again on host 0.
//!
//! Needs root, iproute2, openssh and dockerd; without them "skipping" (a failure under
//! `AUTOGIT_REQUIRE_TOOLS`).

mod support;

use autogit_app::compute::{ComputeController, Submit};
use autogit_core::lease::{LeaseState, OnLost};
use autogit_drivers::state::JobRow;
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::process::Command;
use std::time::{Duration, Instant};

use support::skip;

/// The host's `docker`: log each call (begin and end, with the exit status), run the real one.
fn logging_docker(real: &str, host: &str, log: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\nlog={log}\necho \"$(date +%s.%N) {host} begin $*\" >> \"$log\"\n{real} \"$@\"; rc=$?\necho \"$(date +%s.%N) {host} end $rc $*\" >> \"$log\"\nexit $rc\n",
        log = log.display()
    )
}

/// (time, host, phase, rest) of each logged call.
fn calls(log: &std::path::Path) -> Vec<(f64, String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(4, ' ');
            Some((
                it.next()?.parse().ok()?,
                it.next()?.to_owned(),
                it.next()?.to_owned(),
                it.next()?.to_owned(),
            ))
        })
        .collect()
}

fn inspect(container: &str, format: &str) -> String {
    let o = Command::new("docker")
        .args(["inspect", "--format", format, container])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Removes the jobs' containers from the shared engine, whatever happens.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
    }
}

fn job(c: &ComputeController, rows: &[JobRow], id: &str) -> (JobRow, Option<LeaseState>) {
    let row = rows.iter().find(|r| r.id == id).unwrap().clone();
    let lease = c.lease(id).unwrap().map(|l| l.state);
    (row, lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_host_is_fenced_and_its_jobs_rescheduled_or_resumed_by_policy() {
    if !lab_available() {
        return;
    }
    let Some(image) = support::job_image_or_skip() else {
        return;
    };
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    let log = lab.dir.join("docker-calls.log");
    for (i, h) in lab.hosts.iter().enumerate() {
        h.install_script("docker", &logging_docker(&real, &format!("h{i}"), &log));
    }
    let names = ["autogit-job-1", "autogit-job-2"].map(str::to_owned);
    let _cleanup = Containers(names.to_vec());
    for n in &names {
        let _ = Command::new("docker").args(["rm", "-f", n]).output();
    }

    let data = tempfile::tempdir().unwrap();
    let (h0, h1) = (lab.hosts[0].addr.clone(), lab.hosts[1].addr.clone());
    let yml = format!(
        "runners:\n  cpu:\n    - name: c0\n      host: {h0}\n      user: root\n    - name: c1\n      host: {h1}\n      user: root\ncompute:\n  lease: 30s\n  unreachable_after: 1\n"
    );
    let settings = support::settings(&yml, "", data.path());
    let (c, _) = support::lab_compute(&lab, settings, data.path()).await;

    // Both jobs on host 0: host 1 is away while they are submitted.
    lab.set_link(1, false).unwrap();
    let submit = |policy: OnLost| Submit {
        gpus: 0,
        vram: Some("1G".into()),
        capability: None,
        priority: 0,
        user: "ann".into(),
        job: vec![image.clone(), "sleep".into(), "600".into()],
        on_lost: Some(policy),
        ..Submit::default()
    };
    for (id, policy) in [("job-1", OnLost::Reschedule), ("job-2", OnLost::Resume)] {
        let row = c.submit(submit(policy)).await.unwrap();
        assert_eq!(row.id, id);
        assert_eq!(
            (row.state.as_str(), row.host.as_deref()),
            ("running", Some(h0.as_str())),
            "{row:?}"
        );
    }
    lab.set_link(1, true).unwrap();
    let old: Vec<String> = names.iter().map(|n| inspect(n, "{{.Id}}")).collect();
    for n in &names {
        assert_eq!(inspect(n, "{{.State.Status}}"), "running");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (health, rows) = c.pass().await.unwrap();
        if health.iter().all(|h| h.reachable) {
            for id in ["job-1", "job-2"] {
                assert_eq!(job(&c, &rows, id).1, Some(LeaseState::Live));
            }
            break;
        }
        assert!(Instant::now() < deadline, "host 1 does not answer again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Cut host 0 mid-job.
    lab.set_link(0, false).unwrap();
    let cut = Instant::now();
    let cut_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut seen_unreachable = false;
    let mut seen_lost = false;
    let requeued_after;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let (health, rows) = c.pass().await.unwrap();
        assert!(health.iter().any(|h| h.host == h0 && !h.reachable));
        let (j1, l1) = job(&c, &rows, "job-1");
        let (j2, l2) = job(&c, &rows, "job-2");
        eprintln!(
            "{:5.1}s after the cut: job-1 {} on {:?}, lease {l1:?}; job-2 {}, lease {l2:?}",
            cut.elapsed().as_secs_f64(),
            j1.state,
            j1.host,
            j2.state
        );
        match l1 {
            Some(LeaseState::Unreachable) => seen_unreachable = true,
            Some(LeaseState::Lost) => seen_lost = true,
            _ => {}
        }
        // Unreachable, not failed: both stay running while their fate is unknown.
        assert_eq!(j2.state, "running", "{j2:?}");
        assert_eq!(j2.host.as_deref(), Some(h0.as_str()));
        if j1.host.as_deref() == Some(h1.as_str()) {
            assert_eq!(j1.state, "running", "{j1:?}");
            requeued_after = cut.elapsed();
            assert_eq!(
                l2,
                Some(LeaseState::Lost),
                "job-2 waits for its host: {j2:?}"
            );
            assert!(j2.message.contains("policy resume"), "{}", j2.message);
            break;
        }
        assert!(
            j1.state == "running" || j1.state == "queued",
            "job-1 must not fail: {j1:?}"
        );
        assert!(Instant::now() < deadline, "job-1 was never placed again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The order on the hosts: host 0's watchdog stopped job-1 (the stop returned) before host
    // 1 started it; nothing else started anything.
    let log_calls = calls(&log);
    let stop_done = |name: &str| {
        log_calls
            .iter()
            .find(|(_, h, p, rest)| {
                h == "h0" && p == "end" && rest.starts_with("0 stop") && rest.ends_with(name)
            })
            .map(|(t, ..)| *t)
    };
    let stop1 = stop_done("autogit-job-1").expect("host 0's watchdog never stopped job-1");
    let runs: Vec<&(f64, String, String, String)> = log_calls
        .iter()
        .filter(|(_, _, p, rest)| p == "begin" && rest.starts_with("run "))
        .collect();
    let run_of = |host: &str, name: &str| {
        runs.iter()
            .filter(|(_, h, _, rest)| h == host && rest.contains(&format!("--name {name} ")))
            .map(|(t, ..)| *t)
            .collect::<Vec<f64>>()
    };
    assert_eq!(run_of("h0", "autogit-job-1").len(), 1, "{runs:?}");
    assert_eq!(run_of("h0", "autogit-job-2").len(), 1, "{runs:?}");
    assert!(run_of("h1", "autogit-job-2").is_empty(), "{runs:?}");
    let rerun = run_of("h1", "autogit-job-1");
    assert_eq!(rerun.len(), 1, "{runs:?}");
    assert!(
        rerun[0] > stop1,
        "job-1 started on host 1 at {} while host 0's copy ran until {stop1}",
        rerun[0]
    );
    // Host 1 touched job-1 (its wrapper's `rm -f` of an old container comes first: on this
    // shared engine it would end host 0's copy itself) only after host 0's watchdog had.
    let first_h1 = log_calls
        .iter()
        .find(|(_, h, p, rest)| h == "h1" && p == "begin" && rest.contains("autogit-job-1"))
        .map(|(t, ..)| *t)
        .unwrap();
    assert!(
        first_h1 > stop1,
        "host 1 acted on job-1 at {first_h1}, before host 0's watchdog stopped it at {stop1}"
    );
    let stop2 = stop_done("autogit-job-2").expect("host 0's watchdog never stopped job-2");
    assert!(seen_unreachable, "host 0 was never shown unreachable");
    assert!(seen_lost, "job-1's lease was never shown lost");
    assert_eq!(inspect("autogit-job-2", "{{.State.Status}}"), "exited");
    assert_eq!(inspect("autogit-job-1", "{{.State.Status}}"), "running");
    assert_ne!(inspect("autogit-job-1", "{{.Id}}"), old[0]);
    eprintln!(
        "watchdog stop done {:.1}s (job-1) / {:.1}s (job-2) after the cut; job-1 running on host 1 {:.1}s after the cut",
        stop1 - cut_unix,
        stop2 - cut_unix,
        requeued_after.as_secs_f64()
    );
    // Lease 30s + poll 1s + stop 5s (sleep ignores SIGTERM: it is killed at 5s), from the
    // last renewal before the cut.
    assert!(
        stop1 - cut_unix < 30.0 + 1.0 + 5.0 + 4.0,
        "{}",
        stop1 - cut_unix
    );

    // The link comes back: job-2 resumes on host 0, in the same container.
    lab.set_link(0, true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, rows) = c.pass().await.unwrap();
        let (j2, l2) = job(&c, &rows, "job-2");
        if j2.message.contains("resumed") {
            assert_eq!(j2.state, "running");
            assert_eq!(l2, Some(LeaseState::Live));
            break;
        }
        assert!(Instant::now() < deadline, "job-2 did not resume: {j2:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(inspect("autogit-job-2", "{{.State.Status}}"), "running");
    assert_eq!(inspect("autogit-job-2", "{{.Id}}"), old[1]);
    let (_, rows) = c.pass().await.unwrap();
    for id in ["job-1", "job-2"] {
        let (row, lease) = job(&c, &rows, id);
        assert_eq!(
            (row.state.as_str(), lease),
            ("running", Some(LeaseState::Live)),
            "{row:?}"
        );
    }
    // Still one start of each on each host (job-2's resume is a `start`, not a `run`).
    let runs = calls(&log)
        .into_iter()
        .filter(|(_, _, p, rest)| p == "begin" && rest.starts_with("run "))
        .count();
    assert_eq!(runs, 3);
    for id in ["job-1", "job-2"] {
        c.cancel(id).await.unwrap();
    }
}

/// The `host_unreachable` event and the leases agree: it fires once, at the probe that makes
/// `compute.unreachable_after` misses in a row, not at the first. The host's name cannot
/// resolve (`.invalid`), so each probe fails at once with the real `ssh`.
#[tokio::test]
async fn host_unreachable_fires_after_unreachable_after_missed_probes() {
    if Command::new("ssh").arg("-V").output().is_err() && skip("no ssh client") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let yml = "runners:\n  cpu:\n    - name: c0\n      host: gone.invalid\n      user: root\ncompute:\n  unreachable_after: 3\n";
    let settings = support::settings(yml, "", data.path());
    let (c, bus) = support::compute(settings);
    let mut rx = bus.subscribe();
    let mut fired = Vec::new();
    for probe in 1..=5 {
        let (health, _) = c.pass().await.unwrap();
        assert!(!health[0].reachable, "{health:?}");
        let n = support::drain(&mut rx)
            .iter()
            .filter(|e| matches!(e, autogit_app::Event::HostUnreachable { host, .. } if host == "gone.invalid"))
            .count();
        fired.push((probe, n));
    }
    assert_eq!(fired, [(1, 0), (2, 0), (3, 1), (4, 0), (5, 0)]);
}
