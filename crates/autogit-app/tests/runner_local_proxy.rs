//! `autogit daemon`'s engine proxy for this machine's runners
//! (`RunnerController::serve_local_engine_proxy`) in front of the real engine: served only
//! for registered local runners, answering the Docker executor's calls and refusing the rest,
//! one per socket, gone when stopped. Needs dockerd (else "skipping", unless
//! `AUTOGIT_REQUIRE_TOOLS`).

mod support;

use autogit_app::runners::RunnerController;
use autogit_drivers::state::{RegistrationRow, Store};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn engine() -> bool {
    let ok = Command::new("docker")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
        "dockerd is required (AUTOGIT_REQUIRE_TOOLS=1)"
    );
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_proxy_for_registered_local_runners() {
    if !engine() {
        eprintln!("skipping: no dockerd");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let sock = data.path().join("run/engine-proxy.sock");
    let yml = format!(
        "runners:\n  isolation:\n    proxy_socket: {}\n  cpu:\n    - name: l1\n      host: local\n",
        sock.display()
    );
    let settings = support::settings(&yml, "", data.path());
    let (bus, clock) = support::bus_at(1_764_000_000);
    let runners = RunnerController::new(settings, bus, Arc::new(clock));

    // Not registered yet: nothing to serve.
    runners
        .serve_local_engine_proxy(std::future::pending())
        .await
        .unwrap();
    assert!(!sock.exists());

    Store::open(&data.path().join("state.db"))
        .unwrap()
        .set_registration(&RegistrationRow {
            name: "l1".into(),
            host: "local".into(),
            runner_id: 9,
            secret: "gitlab-runner-9-token".into(),
            state: "registered".into(),
            at: 0,
            message: String::new(),
        })
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runners = Arc::new(runners);
    let serving = {
        let runners = runners.clone();
        tokio::spawn(async move {
            runners
                .serve_local_engine_proxy(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let via = |args: &[&str]| {
        Command::new("docker")
            .args(["-H", &format!("unix://{}", sock.display())])
            .args(args)
            .output()
            .unwrap()
    };
    let version =
        tokio::task::block_in_place(|| via(&["version", "--format", "{{.Server.Version}}"]));
    assert!(version.status.success(), "{version:?}");
    let refused = tokio::task::block_in_place(|| via(&["network", "ls"]));
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("engine proxy refuses"),
        "{refused:?}"
    );
    // One proxy per socket: a second one does not take it over.
    let second = runners
        .serve_local_engine_proxy(std::future::pending())
        .await
        .unwrap_err();
    assert!(second.contains("already listens"), "{second}");
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(!sock.exists(), "the socket goes with the proxy");
}
