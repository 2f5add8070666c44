//! A job spread over several hosts (`compute run --hosts N`), for real: two `sshd`s in network
//! namespaces are the hosts, and the real `docker` CLI on the shared dockerd runs the parts
//! (both hosts reach the same engine).
//!
//! - `--hosts 2`: both parts start in the same pass, one on each host, each told its rank,
//!   the number of parts and every part's host (`MASTER_ADDR` the first);
//! - one part dies (exit 137): the other is stopped and cancelled, saying why;
//! - `--hosts 3` with two hosts: refused by the scheduler, no part started;
//! - a service cannot be spread.
//!
//! Needs root, iproute2, openssh and dockerd; without them "skipping" (a failure under
//! `AUTOGIT_REQUIRE_TOOLS`).

mod support;

use autogit_app::compute::{ComputeError, Submit};
use autogit_drivers::state::JobRow;
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> (bool, String) {
    let o = Command::new("docker").args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_owned(),
    )
}

/// Removes the parts' containers from the shared engine, whatever happens.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
    }
}

/// What each part says of itself, then it waits.
const SAY: &str = "echo \"part $AUTOGIT_RANK of $AUTOGIT_WORLD_SIZE in $AUTOGIT_GANG: $AUTOGIT_HOSTS, master $MASTER_ADDR\"; sleep 600";

fn row<'a>(rows: &'a [JobRow], id: &str) -> &'a JobRow {
    rows.iter().find(|r| r.id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_two_hosts_starts_whole_and_ends_whole() {
    if !lab_available() {
        return;
    }
    let Some(image) = support::job_image_or_skip() else {
        return;
    };
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = (1..=5).map(|i| format!("aggang-job-{i}")).collect();
    let _cleanup = Containers(names.clone());
    for n in &names {
        let _ = docker(&["rm", "-f", n]);
    }
    let data = tempfile::tempdir().unwrap();
    let (h0, h1) = (lab.hosts[0].addr.clone(), lab.hosts[1].addr.clone());
    let yml = format!(
        "platform:\n  project: aggang\nrunners:\n  cpu:\n    - name: c0\n      host: {h0}\n      user: root\n    - name: c1\n      host: {h1}\n      user: root\n"
    );
    let settings = support::settings(&yml, "", data.path());
    let (c, _) = support::lab_compute(&lab, settings, data.path()).await;
    let spread = |hosts: u32| Submit {
        hosts: Some(hosts),
        ..support::shell_job(&image, SAY)
    };

    // Both parts start at once, one on each host.
    let first = c.submit(spread(2)).await.unwrap();
    assert_eq!(
        (first.id.as_str(), first.state.as_str()),
        ("job-1", "running"),
        "{}",
        first.message
    );
    let (_, rows) = c.pass().await.unwrap();
    let (a, b) = (row(&rows, "job-1"), row(&rows, "job-2"));
    assert_eq!(
        (a.state.as_str(), b.state.as_str()),
        ("running", "running"),
        "{rows:?}"
    );
    let (ha, hb) = (a.host.clone().unwrap(), b.host.clone().unwrap());
    assert_ne!(ha, hb, "one part per host");
    let mut both = [ha.clone(), hb.clone()];
    both.sort();
    let mut lab_hosts = [h0.clone(), h1.clone()];
    lab_hosts.sort();
    assert_eq!(both, lab_hosts);
    // Each part knows its place, and where the others are (rank order, master first).
    let said = |name: &str| {
        let start = Instant::now();
        loop {
            let o = Command::new("docker")
                .args(["logs", name])
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if !out.is_empty() || start.elapsed() > Duration::from_secs(20) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(
        said("aggang-job-1"),
        format!("part 0 of 2 in job-1: {ha},{hb}, master {ha}")
    );
    assert_eq!(
        said("aggang-job-2"),
        format!("part 1 of 2 in job-1: {ha},{hb}, master {ha}")
    );
    assert_eq!(
        docker(&[
            "inspect",
            "--format",
            "{{.HostConfig.NetworkMode}}",
            "aggang-job-2"
        ])
        .1,
        "host",
        "the parts reach each other on their hosts' networks"
    );

    // One part dies: the other is stopped and cancelled in the same pass.
    assert!(docker(&["kill", "aggang-job-2"]).0);
    let start = Instant::now();
    let rows = loop {
        let (_, rows) = c.pass().await.unwrap();
        if row(&rows, "job-1").state != "running" {
            break rows;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{rows:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (a, b) = (row(&rows, "job-1"), row(&rows, "job-2"));
    assert_eq!(b.state, "failed", "{b:?}");
    assert_eq!(a.state, "cancelled", "{a:?}");
    assert!(
        a.message.contains("another part of its job failed"),
        "{}",
        a.message
    );
    assert!(
        !docker(&["inspect", "aggang-job-1"]).0,
        "the surviving part's container is removed"
    );

    // Three parts, two hosts: nothing of it starts.
    let third = c.submit(spread(3)).await.unwrap();
    assert_eq!(third.id, "job-3");
    let (_, rows) = c.pass().await.unwrap();
    for id in ["job-3", "job-4", "job-5"] {
        let r = row(&rows, id);
        assert_eq!(r.state, "failed", "{r:?}");
        assert!(r.message.contains("on each of 3 hosts"), "{}", r.message);
        assert!(!docker(&["inspect", &format!("aggang-{id}")]).0);
    }

    // A service runs on one host.
    let e = c
        .submit(Submit {
            capability: Some("inference".into()),
            port: Some(8080),
            ..spread(2)
        })
        .await
        .unwrap_err();
    assert!(matches!(e, ComputeError::Request(_)), "{e:?}");
}
