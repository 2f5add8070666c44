//! `autogit runner engine-proxy` through the binary, in front of the real engine: it serves
//! the Docker executor's calls, refuses the rest, and stops on SIGTERM removing its socket.
//! The allow-list itself is tested in `crates/autogit-drivers/tests/engine_proxy.rs`.

mod common;

use common::{cmd, have_engine, run};
use std::time::{Duration, Instant};

fn docker_via(sock: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(["-H", &format!("unix://{}", sock.display())])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_proxy_serves_allowed_calls_and_stops_on_sigterm() {
    let d = tempfile::tempdir().unwrap();
    // Wrong input is refused before anything listens.
    let bad = run(
        d.path(),
        &["runner", "engine-proxy", "--runner", "Not/A-Name"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("is not a runner name"),
        "{}",
        bad.stderr
    );
    let no_engine = run(
        d.path(),
        &[
            "runner",
            "engine-proxy",
            "--runner",
            "g1",
            "--engine",
            "/nonexistent/docker.sock",
        ],
    );
    assert_eq!(no_engine.code, 1, "{}", no_engine.stderr);
    assert!(
        no_engine
            .stderr
            .contains("no engine socket at /nonexistent/docker.sock")
    );
    if !have_engine() {
        return;
    }
    let sock = d.path().join("proxy.sock");
    let child = cmd(d.path())
        .args(["runner", "engine-proxy", "--runner", "g1", "--listen"])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let version = docker_via(&sock, &["version", "--format", "{{.Server.Version}}"]);
    let refused = docker_via(&sock, &["network", "ls"]);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the engine proxy refuses it"),
        "{refused:?}"
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!sock.exists(), "the socket is removed on stop");
}
