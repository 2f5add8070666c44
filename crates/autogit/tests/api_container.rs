//! The plan's `api` service on the real engine: `install` with `SERVICES_ENABLED=gitlab,api`
//! starts the host's own autogit binary as `autogit serve` in a Debian-like container on the
//! host's data dir, key file and engine socket; it becomes healthy and answers
//! `GET /api/v1/services` with a key made by `autogit api-key create` on the host. Then the
//! simple path: `autogit daemon --api-listen` serves the same API in-process.
//!
//! There is no image registry here, so `debian:trixie-slim` is a stand-in imported from this
//! host's files (bash, busybox's coreutils, the glibc libraries the binary links): the same
//! things the real image provides. A real `debian:trixie-slim` already present is used as is.

mod common;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.0 request on loopback: (status, body).
fn get(port: u16, path: &str, key: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: api.test\r\n{auth}Accept: application/json\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls until `GET path` answers 200 (or panics after `secs`).
fn wait_200(port: u16, path: &str, key: Option<&str>, secs: u64) -> String {
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (status, body) = get(port, path, key);
            if status == 200 {
                return body;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "GET {path} on {port} not 200 after {secs}s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn data_args<'a>(dir: &'a Path, args: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    v.extend([
        "--data-dir".to_owned(),
        dir.join("data").display().to_string(),
    ]);
    v
}

fn at(dir: &Path, args: &[&str]) -> Run {
    let a = data_args(dir, args);
    run(dir, &a.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn api_service_runs_serve_on_the_host_data_dir_and_the_daemon_can_serve_it_too() {
    if !have_engine() {
        return;
    }
    fake_gitlab_image("0.0.3", &[]);
    api_base_image();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let project = format!("agt-api-{}", std::process::id());
    let (http, api_port, daemon_port) = (31280u16, 31290u16, 31291u16);
    std::fs::write(
        d.join("autogit.yml"),
        format!(
            "gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"0.0.3\"\n  ports: {{http: {http}, https: {}, ssh: {}}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 3s\nrunners: {{}}\nhealth:\n  check_interval: 1s\n  timeout: 2s\n  failure_threshold: 3\n  reconcile_interval: 2s\nplatform:\n  project: {project}\n",
            http + 1,
            http + 2
        ),
    )
    .unwrap();
    std::fs::write(
        d.join(".env"),
        format!("SERVICES_ENABLED=gitlab,api\nPORT_API={api_port}\n"),
    )
    .unwrap();
    let _down = Down(d.to_owned());

    let r = at(d, &["plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("api-preview"), "{}", r.stderr);

    let r = at(d, &["install", "--wait", "120s", "--no-bootstrap"]);
    assert_eq!(r.code, 0, "install:\n{}\n{}", r.stdout, r.stderr);
    let container = format!("{project}-api");
    // The host's paths, mounted where the plan says.
    let data = std::fs::canonicalize(d.join("data")).unwrap();
    let mounts = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}} {{end}}",
        &container,
    ]);
    let exe = std::fs::canonicalize(bin()).unwrap();
    for m in [
        format!("{}:/usr/local/bin/autogit:false", exe.display()),
        format!("{0}:{0}:true", data.display()),
        format!("{0}.key:{0}.key:false", data.display()),
        "/var/run/docker.sock:/var/run/docker.sock:true".to_owned(),
        format!("{}/rendered/api:/etc/autogit:false", data.display()),
    ] {
        assert!(mounts.contains(&m), "{m} not in {mounts}");
    }
    let mode = std::fs::metadata(data.join("rendered/api/.env")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &container]);
    assert_eq!(health, "healthy");

    // A key made on the host, in the shared data dir, opens the containerised API.
    let created = at(
        d,
        &["api-key", "create", "it", "--role", "viewer", "--json"],
    );
    assert_eq!(created.code, 0, "{}", created.stderr);
    let key: Value = serde_json::from_str(&created.stdout).unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    assert_eq!(get(api_port, "/api/v1/services", None).0, 401);
    let body = wait_200(api_port, "/api/v1/services", Some(&key), 30);
    let services: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = services
        .as_array()
        .or_else(|| services["items"].as_array())
        .unwrap_or_else(|| panic!("{services:#}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"gitlab") && names.contains(&"api"),
        "{services:#}"
    );

    // Installing again changes nothing: the API's container is the same one.
    let id = docker(&["inspect", "-f", "{{.Id}}", &container]);
    let r = at(d, &["reconcile", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["actions"].as_array().unwrap().len(), 0, "{v:#}");
    assert_eq!(docker(&["inspect", "-f", "{{.Id}}", &container]), id);

    // The simple path: the daemon serves the same API in its own process.
    let a = data_args(
        d,
        &[
            "daemon",
            "--api-listen",
            &format!("127.0.0.1:{daemon_port}"),
        ],
    );
    let mut daemon = cmd(d)
        .args(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let body = wait_200(daemon_port, "/api/v1/services", Some(&key), 30);
    assert!(body.contains("\"gitlab\""), "{body}");
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", daemon_port)).is_err(),
        "the API stops with the daemon"
    );
}
