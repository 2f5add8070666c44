//! A runner host reached through a `compute` extension instead of SSH: `host:
//! extension:prefix-exec/localhost`, where `prefix-exec` is the Python SDK's example
//! (`sdk/python/examples/prefix_exec_compute.py`, a real process speaking the protocol) that
//! runs each command as `env HOME=<tmp> ARGV...` on this machine. Through it, for real:
//!
//! - the inventory probe finds the engine (the real `docker` CLI on the shared dockerd);
//! - a job is placed there, started under its lease wrapper (the lease file lands under the
//!   `HOME` the prefix gave), followed with `docker inspect` until it ends, and its exit
//!   status recorded;
//! - a host the extension does not serve is an error for that host only;
//! - the extension killed behind autogit's back: that host misses one probe, the next pass
//!   starts the extension again and the host answers.
//!
//! Needs python3 and dockerd; without them "skipping" (a failure under
//! `AUTOGIT_REQUIRE_TOOLS`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::skip;

/// The job's container: `platform.project` (here `agext`) is its prefix.
const NAME: &str = "agext-job-1";

struct Container(&'static str);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", self.0]).output();
    }
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pids of this process's children running the example extension.
fn extension_pids() -> Vec<String> {
    let out = Command::new("pgrep")
        .args([
            "-P",
            &std::process::id().to_string(),
            "-f",
            "extensions/prefix-exec",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_a_host_reached_through_a_compute_extension() {
    if !Path::new("/usr/bin/python3").exists() && skip("no /usr/bin/python3") {
        return;
    }
    let Some(image) = support::job_image_or_skip() else {
        return;
    };
    let _cleanup = Container(NAME);
    let _ = Command::new("docker").args(["rm", "-f", NAME]).output();

    let data = tempfile::tempdir().unwrap();
    let home = data.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ext = data.path().join("extensions");
    std::fs::create_dir_all(&ext).unwrap();
    std::os::unix::fs::symlink(
        repo().join("sdk/python/examples/prefix_exec_compute.py"),
        ext.join("prefix-exec"),
    )
    .unwrap();
    let yml = "platform:\n  project: agext\nrunners:\n  cpu:\n    - name: c0\n      host: extension:prefix-exec/localhost\n    - name: c1\n      host: extension:prefix-exec/elsewhere\ncompute:\n  lease: 60s\n";
    let env = format!(
        "EXTENSIONS_ENABLED=prefix-exec\nPREFIX_EXEC_COMMAND=env HOME={}\nPREFIX_EXEC_HOSTS=localhost\nPREFIX_EXEC_TIMEOUT=60\n",
        home.display()
    );
    let settings = support::settings(yml, &env, data.path());
    let (c, _) = support::compute(settings);

    // Exits 3 after a moment: long enough to be seen running.
    let row = c
        .submit(support::shell_job(&image, "sleep 3; exit 3"))
        .await
        .unwrap();
    assert_eq!(row.id, "job-1");
    assert_eq!(
        (row.state.as_str(), row.host.as_deref()),
        ("running", Some("extension:prefix-exec/localhost")),
        "{row:?}"
    );
    // Started under its lease wrapper, as on an SSH host: the lease file is under the HOME
    // that the extension's prefix gave the command.
    assert!(home.join(".autogit/leases/agext/job-1").is_file());
    let label = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.autogit.job\"}}",
            NAME,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&label.stdout).trim(),
        "job-1",
        "{label:?}"
    );

    let start = Instant::now();
    let (health, row) = loop {
        let (health, rows) = c.pass().await.unwrap();
        let row = rows.into_iter().find(|r| r.id == "job-1").unwrap();
        eprintln!(
            "{:5.1}s {}: {}",
            start.elapsed().as_secs_f64(),
            row.state,
            row.message
        );
        if row.state != "running" {
            break (health, row);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{row:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (row.state.as_str(), row.exit_code),
        ("failed", Some(3)),
        "{row:?}"
    );
    let here = health
        .iter()
        .find(|h| h.host == "extension:prefix-exec/localhost")
        .unwrap();
    assert!(here.reachable, "{here:?}");
    assert!(
        here.engine().is_some_and(|e| e.starts_with("docker ")),
        "{here:?}"
    );
    // The host the extension does not serve: its own error, naming why.
    let there = health
        .iter()
        .find(|h| h.host == "extension:prefix-exec/elsewhere")
        .unwrap();
    assert!(!there.reachable);
    let err = there.error.as_deref().unwrap_or("");
    assert!(err.contains("not in PREFIX_EXEC_HOSTS"), "{err}");

    // Killed behind autogit's back: one missed probe, then a new process.
    let pids = extension_pids();
    assert_eq!(pids.len(), 1, "one process serves every host: {pids:?}");
    Command::new("kill")
        .args(["-KILL", &pids[0]])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (health, _) = c.pass().await.unwrap();
    let here = health
        .iter()
        .find(|h| h.host == "extension:prefix-exec/localhost")
        .unwrap();
    assert!(!here.reachable, "{here:?}");
    assert!(
        here.error.as_deref().unwrap_or("").contains("prefix-exec"),
        "the error names the extension: {here:?}"
    );
    let (health, _) = c.pass().await.unwrap();
    let here = health
        .iter()
        .find(|h| h.host == "extension:prefix-exec/localhost")
        .unwrap();
    assert!(here.reachable, "started again: {here:?}");
    let again = extension_pids();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, pids);
}
