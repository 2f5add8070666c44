//! The Docker engine driver against a real dockerd (or Podman's Docker-compatible socket).
//!
//! Every test uses its own project (`agt-<test>-<pid>`), so they run in parallel without
//! seeing each other, and removes what it created even when it fails. Without a reachable
//! engine the tests say so and pass, unless `AUTOGIT_REQUIRE_TOOLS` is set (scripts/test.sh),
//! when they fail.

mod support;

use autogit_core::container::{MountSpec, PortBinding, labels};
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::engine::{ContainerEngine, EngineError, Health, RunState};
use bollard::query_parameters::{InspectContainerOptions, KillContainerOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use support::{Cleanup, IMAGE, project, project_labels, ready, run, spec, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` on 127.0.0.1:`port`; the whole response, or `None` when nothing answers.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

async fn health_of(docker: &Docker, project: &str, service: &str) -> Option<Health> {
    docker
        .list(project)
        .await
        .ok()?
        .into_iter()
        .find(|o| o.service == service)
        .map(|o| o.health)
}

#[tokio::test]
async fn info_reports_the_engine() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let info = docker.info().await.expect("info");
    assert!(
        info.kind == "docker" || info.kind == "podman",
        "kind {}",
        info.kind
    );
    assert!(!info.version.is_empty());
    let (major, minor) = info.api_version.split_once('.').expect("api version");
    let api = (
        major.parse::<u32>().expect("major"),
        minor.parse::<u32>().expect("minor"),
    );
    assert!(api >= (1, 40), "api {}", info.api_version);
    assert_eq!(info.socket, docker.socket());
    assert!(info.socket.exists());
}

#[tokio::test]
async fn missing_socket_is_no_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing.sock");
    let err = Docker::connect(Some(&missing), &[])
        .await
        .expect_err("no engine there");
    match &err {
        EngineError::NoEngine { tried } => {
            assert!(tried.contains(&missing.display().to_string()), "{tried}");
            assert!(tried.contains("missing"), "{tried}");
        }
        other => panic!("expected NoEngine, got {other:?}"),
    }
    assert!(err.to_string().contains("no container engine found"));

    // DOCKER_HOST is authoritative: a dead one is not silently replaced by another socket.
    let env = vec![(
        "DOCKER_HOST".to_owned(),
        format!("unix://{}", missing.display()),
    )];
    assert!(matches!(
        Docker::connect(None, &env).await,
        Err(EngineError::NoEngine { .. })
    ));

    // A socket file nobody listens on: connection refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    match Docker::connect(Some(&stale), &[]).await {
        Err(EngineError::NoEngine { tried }) => {
            assert!(tried.contains("connection refused"), "{tried}");
        }
        other => panic!("expected NoEngine, got {other:?}"),
    }

    // Something that is not the engine's API at all answers.
    let other = dir.path().join("other.sock");
    let listener = tokio::net::UnixListener::bind(&other).expect("bind");
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    match Docker::connect(Some(&other), &[]).await {
        Err(EngineError::NoEngine { tried }) => {
            assert!(tried.contains("not a Docker API"), "{tried}")
        }
        r => panic!("expected NoEngine, got {r:?}"),
    }
    server.abort();
}

/// A fake engine on a unix socket: answers `GET .../version` and `GET .../info` with the given
/// JSON, everything else with 404. Returns the socket path (inside `dir`) and the server task.
fn fake_engine(
    dir: &Path,
    version: &'static str,
    info: &'static str,
) -> (std::path::PathBuf, tokio::task::JoinHandle<()>) {
    let path = dir.join("fake.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path);
                let (status, body) = if path.ends_with("/version") {
                    ("200 OK", version)
                } else if path.ends_with("/info") {
                    ("200 OK", info)
                } else {
                    ("404 Not Found", r#"{"message":"page not found"}"#)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (path, task)
}

#[tokio::test]
async fn old_engine_is_too_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, server) = fake_engine(
        dir.path(),
        r#"{"Version":"18.09.9","ApiVersion":"1.39","MinAPIVersion":"1.12"}"#,
        "{}",
    );
    match Docker::connect(Some(&path), &[]).await {
        Err(EngineError::TooOld { found, needed }) => {
            assert_eq!((found.as_str(), needed.as_str()), ("1.39", "1.40"));
        }
        other => panic!("expected TooOld, got {other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn podman_socket_is_recognised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, server) = fake_engine(
        dir.path(),
        r#"{"Version":"4.3.1","ApiVersion":"1.41","MinAPIVersion":"1.24",
            "Platform":{"Name":"linux/amd64/debian-12"},
            "Components":[{"Name":"Podman Engine","Version":"4.3.1","Details":{}}]}"#,
        r#"{"SecurityOptions":["name=seccomp,profile=default","name=rootless"]}"#,
    );
    // Found where rootless Podman puts it, after the Docker sockets are not there.
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(runtime.join("podman")).expect("mkdir");
    std::fs::rename(&path, runtime.join("podman/podman.sock")).expect("move the socket");
    let env = vec![("XDG_RUNTIME_DIR".to_owned(), runtime.display().to_string())];
    let candidates =
        autogit_drivers::engine::docker::socket_candidates(None, &env).expect("candidates");
    let podman = runtime.join("podman/podman.sock");
    let engine = Docker::connect(Some(&podman), &env).await.expect("connect");
    let info = engine.info().await.expect("info");
    assert_eq!(info.kind, "podman");
    assert_eq!(info.version, "4.3.1");
    assert_eq!(info.api_version, "1.41");
    assert!(info.rootless);
    assert_eq!(info.socket, podman);
    assert!(candidates.contains(&podman));
    assert!(
        candidates.iter().position(|c| c == &podman)
            > candidates.iter().position(|c| c.ends_with("docker.sock"))
    );
    server.abort();
}

#[tokio::test]
async fn unreadable_socket_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("locked.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        eprintln!("skipping: running with privileges that ignore socket permissions");
        return;
    }
    match Docker::connect(Some(&path), &[]).await {
        Err(EngineError::PermissionDenied { socket }) => {
            assert_eq!(socket, path.display().to_string());
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn network_and_volume_are_idempotent() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let project = project("netvol");
    let _guard = Cleanup::new(&docker, &project).await;
    let labels = project_labels(&project);
    let net = support::network(&project);
    let vol = format!("{project}_data");

    assert!(docker.ensure_network(&net, &labels).await.expect("network"));
    assert!(!docker.ensure_network(&net, &labels).await.expect("again"));
    let inspect = docker
        .client()
        .inspect_network(
            &net,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("inspect network");
    assert_eq!(inspect.driver.as_deref(), Some("bridge"));
    assert_eq!(
        inspect.labels.unwrap_or_default().get(labels::MANAGED),
        Some(&project)
    );

    assert!(docker.ensure_volume(&vol, &labels).await.expect("volume"));
    assert!(!docker.ensure_volume(&vol, &labels).await.expect("again"));
    let v = docker
        .client()
        .inspect_volume(&vol)
        .await
        .expect("inspect volume");
    assert_eq!(v.labels.get(labels::MANAGED), Some(&project));

    docker.remove_network(&net).await.expect("remove network");
    support::assert_not_found(docker.remove_network(&net).await);
    docker.remove_volume(&vol).await.expect("remove volume");
    support::assert_not_found(docker.remove_volume(&vol).await);
    // Gone means created again.
    assert!(docker.ensure_network(&net, &labels).await.expect("network"));
}

#[tokio::test]
async fn create_applies_the_whole_spec() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("create");
    let _guard = Cleanup::new(&docker, &project).await;
    let host_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(host_dir.path().join("conf.txt"), "from the host\n").expect("write");
    let port = support::free_port();

    let mut s = spec(&project, "web");
    s.env = BTreeMap::from([
        ("PLAIN".to_owned(), "value".to_owned()),
        ("SECRET_TOKEN".to_owned(), "s3cr3t-value".to_owned()),
    ]);
    s.secret_keys = vec!["SECRET_TOKEN".to_owned()];
    s.ports = vec![PortBinding {
        host_ip: Some("127.0.0.1".to_owned()),
        host_port: port,
        container_port: 8080,
        udp: false,
    }];
    s.mounts = vec![
        support::volume_mount(&project, "data", "/data"),
        MountSpec::Bind {
            source: host_dir.path().display().to_string(),
            target: "/conf".to_owned(),
            read_only: true,
        },
    ];
    s.nano_cpus = 250_000_000;
    s.memory_bytes = 96 << 20;
    s.shm_size_bytes = Some(8 << 20);
    s.hostname = Some("webhost".to_owned());
    s.aliases = vec!["web".to_owned(), "www".to_owned()];
    support::rehash(&mut s);
    let id = run(&docker, &s).await;

    let i = docker
        .client()
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    assert_eq!(i.name.as_deref(), Some(format!("/{project}-web").as_str()));
    let config = i.config.expect("config");
    assert_eq!(config.image.as_deref(), Some(IMAGE));
    assert_eq!(config.hostname.as_deref(), Some("webhost"));
    let env = config.env.unwrap_or_default();
    assert!(env.contains(&"PLAIN=value".to_owned()), "{env:?}");
    assert!(env.contains(&"SECRET_TOKEN=s3cr3t-value".to_owned()));
    let got_labels = config.labels.unwrap_or_default();
    for (k, v) in &s.labels {
        assert_eq!(got_labels.get(k), Some(v), "label {k}");
    }
    assert_eq!(got_labels.get(labels::SPEC_HASH), Some(&s.hash()));
    assert!(
        config
            .exposed_ports
            .unwrap_or_default()
            .contains(&"8080/tcp".to_owned())
    );
    let hc = config.healthcheck.expect("healthcheck");
    assert_eq!(
        hc.test.as_deref(),
        Some(
            s.healthcheck
                .as_ref()
                .map(|h| h.test.as_slice())
                .unwrap_or_default()
        )
    );
    assert_eq!(hc.interval, Some(1_000_000_000));
    assert_eq!(hc.timeout, Some(2_000_000_000));
    assert_eq!(hc.retries, Some(3));

    let host = i.host_config.expect("host config");
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.memory, Some(96 << 20));
    assert_eq!(host.shm_size, Some(8 << 20));
    assert_eq!(
        host.restart_policy.and_then(|r| r.name),
        Some(bollard::models::RestartPolicyNameEnum::NO)
    );
    let bindings = host.port_bindings.unwrap_or_default();
    let b = bindings
        .get("8080/tcp")
        .cloned()
        .flatten()
        .unwrap_or_default();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(b[0].host_port.as_deref(), Some(port.to_string().as_str()));

    let mounts = i.mounts.unwrap_or_default();
    let data = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/data"))
        .expect("volume mount");
    assert_eq!(
        data.name.as_deref(),
        Some(format!("{project}_data").as_str())
    );
    assert_eq!(data.rw, Some(true));
    let conf = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/conf"))
        .expect("bind mount");
    assert_eq!(conf.rw, Some(false));

    let nets = i
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let endpoint = nets.get(&s.network).expect("on the project network");
    let aliases = endpoint.aliases.clone().unwrap_or_default();
    assert!(aliases.contains(&"web".to_owned()), "{aliases:?}");
    assert!(aliases.contains(&"www".to_owned()), "{aliases:?}");

    // Read back through the trait, the container is the spec it was created from (the
    // engine does not know which variables are secrets: `secret_keys` is the caller's).
    let back = docker
        .inspect(&id)
        .await
        .expect("inspect through the trait");
    assert_eq!(
        back,
        autogit_core::container::ContainerSpec {
            secret_keys: Vec::new(),
            ..s.clone()
        }
    );
    assert!(matches!(
        docker.inspect("autogit-no-such-container").await,
        Err(EngineError::NotFound { .. })
    ));

    // The port answers from the host, the bind mount is read-only inside.
    let mut answer = None;
    assert!(
        wait_until(10, async || {
            answer = http_get(port, "/health").await;
            answer.is_some()
        })
        .await,
        "nothing answers on 127.0.0.1:{port}"
    );
    assert!(answer.unwrap_or_default().contains("200"));
    let (code, out) = docker
        .exec(&id, &["cat".to_owned(), "/conf/conf.txt".to_owned()])
        .await
        .expect("exec");
    assert_eq!((code, out.as_str()), (0, "from the host\n"));
    let (code, _) = docker
        .exec(&id, &["sh", "-c", "echo x > /conf/new"].map(str::to_owned))
        .await
        .expect("exec");
    assert_ne!(code, 0, "the bind mount is read-only");

    // Creating the same name again names the container in the way.
    match docker.create(&s).await {
        Err(EngineError::Engine(msg)) => {
            assert!(msg.contains(&s.name), "{msg}");
            assert!(msg.contains("already exists"), "{msg}");
            assert!(!msg.contains("s3cr3t"), "{msg}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn health_turns_healthy_and_list_is_per_project() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("health");
    let other = support::project("health-other");
    let _guard = Cleanup::new(&docker, &project).await;
    let _guard_other = Cleanup::new(&docker, &other).await;

    let web = spec(&project, "web");
    let web_id = run(&docker, &web).await;
    let mut sick = spec(&project, "sick");
    sick.healthcheck = sick.healthcheck.map(|mut h| {
        h.test = [
            "CMD",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1:8080/missing",
        ]
        .map(str::to_owned)
        .to_vec();
        h.retries = 1;
        h
    });
    run(&docker, &sick).await;
    let mut plain = spec(&project, "plain");
    plain.healthcheck = None;
    run(&docker, &plain).await;
    let foreign = spec(&other, "web");
    run(&docker, &foreign).await;

    assert!(
        wait_until(30, async || health_of(&docker, &project, "web").await
            == Some(Health::Healthy))
        .await,
        "web did not turn healthy: {:?}",
        docker.list(&project).await
    );
    assert!(
        wait_until(30, async || health_of(&docker, &project, "sick").await
            == Some(Health::Unhealthy))
        .await,
        "sick did not turn unhealthy: {:?}",
        docker.list(&project).await
    );

    let list = docker.list(&project).await.expect("list");
    let names: Vec<&str> = list.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            format!("{project}-plain"),
            format!("{project}-sick"),
            format!("{project}-web")
        ]
    );
    let w = list.iter().find(|o| o.service == "web").expect("web");
    assert_eq!(w.id, web_id);
    assert_eq!(w.state, RunState::Running);
    assert_eq!(w.spec_hash.as_deref(), Some(web.hash().as_str()));
    assert!(w.started_at.is_some());
    assert_eq!(w.exit_code, None);
    assert!(!w.oom_killed);
    assert_eq!(w.labels.get(labels::MANAGED), Some(&project));
    let p = list.iter().find(|o| o.service == "plain").expect("plain");
    assert_eq!(p.health, Health::None);

    // Stopped: exited with a code, no health, still listed.
    docker.stop(&web_id, 5).await.expect("stop");
    docker
        .stop(&web_id, 5)
        .await
        .expect("stopping twice is fine");
    let w = docker
        .list(&project)
        .await
        .expect("list")
        .into_iter()
        .find(|o| o.service == "web")
        .expect("web");
    assert_eq!(w.state, RunState::Exited);
    assert!(w.exit_code.is_some());
    assert_eq!(w.health, Health::None);
    docker.start(&web_id).await.expect("start");
    docker.start(&web_id).await.expect("starting twice is fine");
    docker.restart(&web_id, 5).await.expect("restart");
    assert!(
        wait_until(30, async || health_of(&docker, &project, "web").await
            == Some(Health::Healthy))
        .await
    );

    let theirs = docker.list(&other).await.expect("list other");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].name, format!("{other}-web"));

    for o in docker.list(&project).await.expect("list") {
        docker.remove(&o.id).await.expect("remove");
    }
    assert!(docker.list(&project).await.expect("list").is_empty());
    support::assert_not_found(docker.remove(&web_id).await);
    support::assert_not_found(docker.start(&web_id).await);
}

#[tokio::test]
async fn events_report_die_after_kill() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("events");
    let _guard = Cleanup::new(&docker, &project).await;
    let s = spec(&project, "web");
    docker
        .ensure_network(&s.network, &project_labels(&project))
        .await
        .expect("network");
    let id = docker.create(&s).await.expect("create");

    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let events = {
        let docker = docker.clone();
        let project = project.clone();
        tokio::spawn(async move { docker.events(&project, tx).await })
    };
    // Starting until the stream reports it proves the subscription is live.
    let mut started = false;
    for _ in 0..20 {
        docker.start(&id).await.expect("start");
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            assert_eq!(e.action, "start");
            assert_eq!(e.service, "web");
            assert_eq!(e.container_id, id);
            started = true;
            break;
        }
        docker.stop(&id, 1).await.expect("stop");
    }
    assert!(started, "no start event");

    docker
        .client()
        .kill_container(
            &id,
            Some(KillContainerOptions {
                signal: "KILL".to_owned(),
            }),
        )
        .await
        .expect("docker kill");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.iter().any(|a: &String| a == "die") {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => {
                assert_eq!(e.container_id, id);
                assert!(e.time > 0);
                seen.push(e.action);
            }
            _ => break,
        }
    }
    assert!(seen.contains(&"die".to_owned()), "events: {seen:?}");
    assert!(seen.contains(&"kill".to_owned()), "events: {seen:?}");

    docker.remove(&id).await.expect("remove");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen.iter().any(|a| a == "destroy") {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => seen.push(e.action),
            _ => break,
        }
    }
    assert!(seen.contains(&"destroy".to_owned()), "events: {seen:?}");

    // Closing the receiver ends the stream cleanly.
    drop(rx);
    let r = tokio::time::timeout(Duration::from_secs(5), events)
        .await
        .expect("events returns once the receiver is gone")
        .expect("join");
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test]
async fn events_report_health_status() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("hevents");
    let _guard = Cleanup::new(&docker, &project).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let events = {
        let docker = docker.clone();
        let project = project.clone();
        tokio::spawn(async move { docker.events(&project, tx).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = spec(&project, "web");
    run(&docker, &s).await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|a: &String| a == "health_status: healthy") {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => seen.push(e.action),
            _ => break,
        }
    }
    assert!(
        seen.contains(&"health_status: healthy".to_owned()),
        "events: {seen:?}"
    );
    events.abort();
}

#[tokio::test]
async fn logs_and_exec() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("logs");
    let _guard = Cleanup::new(&docker, &project).await;
    let mut s = spec(&project, "web");
    s.command = [
        "sh",
        "-c",
        "echo line-one; echo line-two >&2; echo line-three; exec httpd -f -p 8080 -h /www",
    ]
    .map(str::to_owned)
    .to_vec();
    let id = run(&docker, &s).await;

    let mut lines = Vec::new();
    assert!(
        wait_until(10, async || {
            lines = docker.logs(&id, None, None).await.unwrap_or_default();
            lines.len() >= 3
        })
        .await,
        "logs: {lines:?}"
    );
    for l in ["line-one", "line-two", "line-three"] {
        assert!(lines.iter().any(|x| x == l), "{l} missing from {lines:?}");
    }
    let tail = docker.logs(&id, None, Some(1)).await.expect("logs");
    assert_eq!(tail.len(), 1, "{tail:?}");
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        + 3600;
    assert!(
        docker
            .logs(&id, Some(future), None)
            .await
            .expect("logs")
            .is_empty()
    );

    let (code, out) = docker
        .exec(
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"].map(str::to_owned),
        )
        .await
        .expect("exec");
    assert_eq!(code, 3);
    assert!(out.contains("out") && out.contains("err"), "{out:?}");
    let (code, out) = docker
        .exec(&id, &["hostname".to_owned()])
        .await
        .expect("exec");
    assert_eq!(code, 0);
    assert!(!out.trim().is_empty());

    support::assert_not_found(docker.logs("agt-no-such-container", None, None).await);
    support::assert_not_found(
        docker
            .exec("agt-no-such-container", &["true".to_owned()])
            .await,
    );
}

#[tokio::test]
async fn images_present_and_failed_pull() {
    let Some(docker) = ready().await else {
        return;
    };
    assert!(docker.image_present(IMAGE).await.expect("inspect"));
    assert!(
        !docker
            .image_present("autogit-test/never-built:0")
            .await
            .expect("inspect")
    );
    // Nothing listens on port 9 of the loopback: the pull fails at once, with or without
    // network access.
    let image = "127.0.0.1:9/autogit-test/missing:1";
    let progress = |_p: autogit_drivers::engine::PullProgress| {};
    match docker.pull(image, &progress).await {
        Err(EngineError::Pull {
            image: named,
            reason,
        }) => {
            assert_eq!(named, image);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a Pull error, got {other:?}"),
    }
    let err = docker
        .pull("autogit-test/does-not-exist:0", &progress)
        .await
        .expect_err("no such image");
    assert!(
        matches!(&err, EngineError::Pull { image, .. } if image == "autogit-test/does-not-exist:0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("autogit-test/does-not-exist:0"));
    eprintln!("pull error: {err}");

    // Creating from an image that is not there says which image.
    let project = project("images");
    let _guard = Cleanup::new(&docker, &project).await;
    let mut s = spec(&project, "web");
    s.image = "autogit-test/never-built:0".to_owned();
    docker
        .ensure_network(&s.network, &project_labels(&project))
        .await
        .expect("network");
    match docker.create(&s).await {
        Err(EngineError::NotFound { what }) => assert!(what.contains(&s.image), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn start_without_its_network_names_the_network() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("nonet");
    let _guard = Cleanup::new(&docker, &project).await;
    let s = spec(&project, "web");
    docker
        .ensure_network(&s.network, &project_labels(&project))
        .await
        .expect("network");
    let id = docker.create(&s).await.expect("create");
    docker
        .remove_network(&s.network)
        .await
        .expect("remove network");
    match docker.start(&id).await {
        Err(EngineError::NotFound { what }) => assert!(what.contains(&s.network), "{what}"),
        other => panic!("expected NotFound naming the network, got {other:?}"),
    }
    // Back with the network, the same container starts.
    docker
        .ensure_network(&s.network, &project_labels(&project))
        .await
        .expect("network");
    docker.start(&id).await.expect("start");
}

#[tokio::test]
async fn volume_data_survives_remove_and_recreate() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("volume");
    let _guard = Cleanup::new(&docker, &project).await;
    let mut s = spec(&project, "db");
    s.mounts = vec![support::volume_mount(&project, "data", "/data")];
    let id = run(&docker, &s).await;
    let (code, _) = docker
        .exec(
            &id,
            &["sh", "-c", "echo kept-across-recreate > /data/file"].map(str::to_owned),
        )
        .await
        .expect("write");
    assert_eq!(code, 0);
    docker.remove(&id).await.expect("remove");
    assert!(docker.list(&project).await.expect("list").is_empty());
    // The volume is still there.
    assert!(
        !docker
            .ensure_volume(&format!("{project}_data"), &project_labels(&project))
            .await
            .expect("volume")
    );

    let id2 = run(&docker, &s).await;
    assert_ne!(id, id2);
    let (code, out) = docker
        .exec(&id2, &["cat".to_owned(), "/data/file".to_owned()])
        .await
        .expect("read");
    assert_eq!((code, out.as_str()), (0, "kept-across-recreate\n"));
}

#[tokio::test]
async fn explicit_socket_connects() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let socket = docker.socket().to_owned();
    let again = Docker::connect(
        Some(Path::new(&format!("unix://{}", socket.display()))),
        &[],
    )
    .await
    .expect("connect by explicit path");
    assert_eq!(again.socket(), socket);
    let env = vec![(
        "DOCKER_HOST".to_owned(),
        format!("unix://{}", socket.display()),
    )];
    let by_env = Docker::connect(None, &env)
        .await
        .expect("connect by DOCKER_HOST");
    assert_eq!(by_env.socket(), socket);
    by_env.info().await.expect("info");
}

/// A runtime for the stand-in GitLab (`testing::fake_gitlab_image`) of `project`, with `cpu`
/// in its spec (a different `cpu` is a different spec hash: a recreate).
fn gitlab_runtime(
    docker: &Docker,
    project: &str,
    version: &str,
    port: u16,
    cpu: &str,
    db: &Path,
) -> autogit_drivers::runtime::Runtime<Docker> {
    use autogit_core::load::{LoadInput, load};
    use autogit_core::plan::{PlanInput, plan};
    use autogit_core::platform::load_platform;
    let config = format!(
        "gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"{version}\"\n  ports: {{http: {port}, https: {}, ssh: {}}}\n  resources: {{preset: minimal, cpu: {cpu}, memory: 64M}}\nrunners: {{}}\nplatform:\n  project: {project}\n",
        port + 1,
        port + 2
    );
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", &config)),
        ..Default::default()
    });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let mut sources = autogit_core::source::Sources::new();
    let mut diags = Default::default();
    let (platform, _) = load_platform(None, &[], &mut sources, &mut diags);
    let (p, _) = plan(&loaded.config, &platform, &PlanInput::default());
    autogit_drivers::runtime::Runtime::new(
        docker.clone(),
        autogit_drivers::state::Store::open(db).unwrap(),
        &p,
        &loaded.config,
        "/tmp",
        &BTreeMap::new(),
        autogit_drivers::notify::Notifier::none(),
    )
    .unwrap()
    .without_host_probes()
}

/// Issue 25 #10: an autogit killed during a spec-change recreate leaves the engine removing
/// the old container; the next pass met "removal of container … is already in progress",
/// failed, and left no container. The runtime now waits for that removal and goes on.
#[tokio::test]
async fn recreate_waits_for_a_removal_already_in_progress() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let version = "0.0.10";
    if let Err(e) = tokio::task::spawn_blocking(move || {
        autogit_drivers::testing::fake_gitlab_image(version, &[])
    })
    .await
    .unwrap()
    {
        assert!(!support::required(), "stand-in image: {e}");
        eprintln!("skipping: {e}");
        return;
    }
    let project = project("rm-race");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let port = support::free_port();
    let before = gitlab_runtime(&docker, &project, version, port, "0.5", &db);
    before.prepare(&|_| {}).await.unwrap();
    let r = before.reconcile_once().await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let old = before.engine.list(&project).await.unwrap();
    assert_eq!(old.len(), 1, "{old:?}");
    let old = old[0].id.clone();
    drop(before);

    // The removal that the killed autogit had asked for is still running in the engine.
    let client = docker.client().clone();
    let removing = old.clone();
    let removal = tokio::spawn(async move {
        client
            .remove_container(
                &removing,
                Some(bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    v: false,
                    link: false,
                }),
            )
            .await
    });
    let seen = wait_until(5, async || {
        match docker
            .client()
            .inspect_container(&old, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i
                .state
                .and_then(|s| s.status)
                .is_some_and(|s| s.to_string() == "removing"),
            Err(_) => true,
        }
    })
    .await;
    assert!(seen, "the removal never started");

    let after = gitlab_runtime(&docker, &project, version, port, "0.25", &db);
    let r = after.reconcile_once().await.unwrap();
    assert!(r.errors.is_empty(), "the pass failed: {:?}", r.errors);
    removal.await.unwrap().unwrap();
    let now = after.engine.list(&project).await.unwrap();
    assert_eq!(now.len(), 1, "one container, the new one: {now:?}");
    assert_ne!(now[0].id, old);
    assert_eq!(
        docker
            .client()
            .inspect_container(&now[0].id, None::<InspectContainerOptions>)
            .await
            .unwrap()
            .host_config
            .unwrap()
            .nano_cpus,
        Some(250_000_000),
        "created from the new spec"
    );
}

/// GitLab's engine health check with the registry on (core's `health_test`, as the planner
/// builds it for a routed GitLab) in the GitLab stand-in, whose registry answers `/v2/` with
/// 401 on 5050: healthy. The same image with only its port-80 server (no registry): unhealthy,
/// and the engine's health log names the registry's address, so `docker inspect` and the
/// state machine's DEGRADED say why.
#[tokio::test]
async fn gitlab_health_check_covers_the_registry() {
    let Some(docker) = ready().await else {
        return;
    };
    let project = project("registry-health");
    let _guard = Cleanup::new(&docker, &project).await;
    let image =
        tokio::task::spawn_blocking(|| autogit_drivers::testing::fake_gitlab_image("0.0.25", &[]))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    let health = autogit_core::plan::HealthCheck {
        probe: autogit_core::plan::Probe::Http {
            port: 80,
            path: "/-/health".into(),
            status: 200,
            body: None,
        },
        ready_path: None,
        interval: autogit_core::units::Dur::secs(1),
        timeout: autogit_core::units::Dur::secs(5),
        retries: 2,
        start_period: autogit_core::units::Dur::secs(0),
        also: vec![autogit_core::registry::probe()],
    };
    let test = autogit_core::state::health_test(&health, autogit_core::plan::Role::Gitlab);
    let gitlab = |service: &str, command: &[&str]| {
        let mut s = spec(&project, service);
        s.image = image.clone();
        s.command = command.iter().map(|c| (*c).to_owned()).collect();
        if let Some(h) = s.healthcheck.as_mut() {
            h.test = test.clone();
            h.retries = 2;
        }
        support::rehash(&mut s);
        s
    };
    run(&docker, &gitlab("with-registry", &[])).await;
    run(
        &docker,
        &gitlab("without", &["/bin/httpd", "-f", "-p", "80", "-h", "/www"]),
    )
    .await;
    assert!(
        wait_until(30, async || health_of(&docker, &project, "with-registry")
            .await
            == Some(Health::Healthy))
        .await,
        "with its registry: {:?}",
        docker.list(&project).await
    );
    assert!(
        wait_until(30, async || health_of(&docker, &project, "without").await
            == Some(Health::Unhealthy))
        .await,
        "without a registry: {:?}",
        docker.list(&project).await
    );
    let log = docker
        .client()
        .inspect_container(
            &format!("{project}-without"),
            None::<InspectContainerOptions>,
        )
        .await
        .expect("inspect")
        .state
        .and_then(|s| s.health)
        .and_then(|h| h.log)
        .unwrap_or_default();
    let last = log
        .last()
        .and_then(|l| l.output.clone())
        .unwrap_or_default();
    assert!(
        last.contains("127.0.0.1:5050/v2/ answered nothing, not 401"),
        "{log:?}"
    );
}
