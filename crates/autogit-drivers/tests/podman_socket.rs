//! The Docker driver against a real Podman's Docker-compatible API (`podman system service`
//! on a socket of its own): found through DOCKER_HOST, recognised as Podman, the API version
//! negotiated, the project's containers listed. Running containers under Podman is not tested
//! here: the machines that test autogit do not let Podman's runtime set its resource limits.
//! Without `podman` the test says so and passes, unless `AUTOGIT_REQUIRE_TOOLS` is set.

use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::engine::docker::Docker;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn podmans_docker_api_is_found_and_recognised() {
    let found = ["/usr/bin/podman", "/bin/podman"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(podman) = found else {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "podman is required (AUTOGIT_REQUIRE_TOOLS=1): apt-get install podman"
        );
        eprintln!("skipping: podman not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let log = std::fs::File::create(dir.path().join("podman.log")).unwrap();
    let _service = Service(
        Command::new(podman)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "podman system service did not create its socket: {}",
            std::fs::read_to_string(dir.path().join("podman.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let env = vec![(
        "DOCKER_HOST".to_owned(),
        format!("unix://{}", socket.display()),
    )];
    let mut engine = None;
    for _ in 0..50 {
        if let Ok(e) = Docker::connect(None, &env).await {
            engine = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let engine = engine.expect("connect to podman's socket");
    let info = engine.info().await.unwrap();
    assert_eq!(info.kind, "podman", "{info:?}");
    assert_eq!(info.socket, socket);
    assert!(
        !info.version.is_empty() && !info.api_version.is_empty(),
        "{info:?}"
    );
    let listed = engine
        .list(&format!("agt-podman-{}", std::process::id()))
        .await
        .unwrap();
    assert!(listed.is_empty());
}
