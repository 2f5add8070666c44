//! The runner's engine proxy and job isolation against the real engine (dockerd).
//!
//! The proxy runs in this process on a socket of its own in front of `/var/run/docker.sock`;
//! the real `docker` CLI (a Go client like gitlab-runner's) talks to it as a runner would.
//! A job container is then created through the proxy the way gitlab-runner's Docker executor
//! creates one from autogit's `config.toml` (its network, not privileged, no engine socket),
//! and tries to reach the engine and the platform's services. Every name carries this
//! process's id; everything created is removed at the end, also on failure. Without dockerd
//! or busybox the tests say so and pass, unless `AUTOGIT_REQUIRE_TOOLS` is set.

use autogit_core::config::{Executor, JobNetwork, Runner};
use autogit_core::engine_proxy::MANAGED_LABEL;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn required() -> bool {
    std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_some()
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn docker_via(sock: &Path, args: &[&str]) -> Output {
    let host = format!("unix://{}", sock.display());
    Command::new("docker")
        .args(["-H", &host])
        .args(args)
        .output()
        .expect("docker")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The engine and the job image, or `None` after saying why not.
fn ready() -> Option<String> {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(!required(), "dockerd is required (AUTOGIT_REQUIRE_TOOLS=1)");
        eprintln!("skipping: no dockerd");
        return None;
    }
    match autogit_drivers::testing::job_stand_in_image() {
        Ok(i) => Some(i),
        Err(e) => {
            assert!(
                !required(),
                "the job image (busybox-static) is required: {e}"
            );
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// Removes what a test created, by name, when dropped.
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        // Containers a test created through the proxy carry its network.
        for n in &self.networks {
            let out = docker(&["ps", "-aq", "--filter", &format!("network={n}")]);
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
            let _ = docker(&["network", "rm", n]);
        }
    }
}

fn runner(name: &str) -> Runner {
    Runner {
        name: name.into(),
        host: "local".into(),
        user: None,
        executor: Executor::Docker,
        concurrent: 1,
        tags: Vec::new(),
        gpu: None,
        capabilities: Vec::new(),
        wsl2: false,
        min: 0,
        max: 1,
        sharing: Default::default(),
        protected: false,
    }
}

/// Starts the proxy for `runner` (its policy as the runner's host gets it) on a socket in
/// `dir`, in front of the host's engine.
async fn proxy(dir: &Path, r: &Runner) -> PathBuf {
    let sock = dir.join("engine-proxy.sock");
    let listener = autogit_drivers::engine_proxy::bind(&sock).expect("bind the proxy");
    let policy = autogit_core::runner::proxy_policy(&[r], JobNetwork::Runner);
    tokio::spawn(autogit_drivers::engine_proxy::serve(
        listener,
        PathBuf::from("/var/run/docker.sock"),
        policy,
    ));
    sock
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_passes_what_the_executor_needs_and_refuses_the_rest() {
    let Some(image) = ready() else { return };
    let pid = std::process::id();
    let r = runner(&format!("px{pid}"));
    let net = autogit_core::runner::job_network(&r, JobNetwork::Runner);
    let platform = format!("agt-px-platform-{pid}");
    let _cleanup = Cleanup {
        containers: vec![platform.clone()],
        networks: vec![net.clone()],
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = proxy(dir.path(), &r).await;
    assert!(docker(&["network", "create", &net]).status.success());
    // A platform container, as autogit's services are: not gitlab-runner's.
    let started = docker(&["run", "-d", "--name", &platform, &image]);
    assert!(started.status.success(), "{}", text(&started));

    let blocking = |args: Vec<String>| {
        let sock = sock.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            docker_via(&sock, &a)
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let label = format!("{MANAGED_LABEL}=true");

    // What the Docker executor does: version, create, attach, start, wait, remove.
    let v = blocking(s(&["version", "--format", "{{.Server.Version}}"]))
        .await
        .unwrap();
    assert!(v.status.success(), "{}", text(&v));
    let job = blocking(s(&[
        "run",
        "--rm",
        "--label",
        &label,
        "--network",
        &net,
        &image,
        "sh",
        "-c",
        "echo job-output; test -S /var/run/docker.sock && echo HAS-SOCKET; exit 0",
    ]))
    .await
    .unwrap();
    assert!(job.status.success(), "{}", text(&job));
    let out = String::from_utf8_lossy(&job.stdout);
    assert!(
        out.contains("job-output"),
        "attach streams the output: {}",
        text(&job)
    );
    assert!(!out.contains("HAS-SOCKET"), "{}", text(&job));
    // Input too: an attached stdin reaches the job.
    let mut cat = Command::new("docker")
        .args(["-H", &format!("unix://{}", sock.display())])
        .args([
            "run",
            "--rm",
            "-i",
            "--label",
            &label,
            "--network",
            &net,
            &image,
            "cat",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = cat.stdin.take().unwrap();
        stdin.write_all(b"through-stdin\n").unwrap();
    }
    let cat = tokio::task::spawn_blocking(move || cat.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&cat.stdout).contains("through-stdin"),
        "{}",
        text(&cat)
    );

    // What would be root on the host, or reach beyond the runner's own containers.
    let refused: Vec<(Vec<String>, &str)> = vec![
        (
            s(&[
                "run",
                "--rm",
                "--privileged",
                "--label",
                &label,
                "--network",
                &net,
                &image,
                "true",
            ]),
            "Privileged",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                &net,
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                &image,
                "true",
            ]),
            "reaches the host's files",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                &net,
                "-v",
                "/:/host",
                &image,
                "true",
            ]),
            "reaches the host's files",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                "host",
                &image,
                "true",
            ]),
            "NetworkMode: host",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                &net,
                "--pid",
                "host",
                &image,
                "true",
            ]),
            "PidMode",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                &net,
                "--cap-add",
                "SYS_ADMIN",
                &image,
                "true",
            ]),
            "CapAdd",
        ),
        (
            s(&["run", "--rm", "--network", &net, &image, "true"]),
            MANAGED_LABEL,
        ),
        (
            s(&["exec", &platform, "true"]),
            "not created by gitlab-runner",
        ),
        (s(&["stop", &platform]), "not created by gitlab-runner"),
        (
            s(&["container", "inspect", &platform]),
            "not created by gitlab-runner",
        ),
        (
            s(&["cp", &format!("{platform}:/bin/sh"), "-"]),
            "not created by gitlab-runner",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                &net,
                "-v",
                &format!("agt-px-platform-data-{pid}:/x"),
                &image,
                "true",
            ]),
            "not one of gitlab-runner's",
        ),
        (
            s(&[
                "run",
                "--rm",
                "--label",
                &label,
                "--network",
                &net,
                "-p",
                "127.0.0.1::80",
                &image,
                "true",
            ]),
            "PortBindings",
        ),
        (s(&["import", "http://127.0.0.1:1/rootfs.tar"]), "fromSrc"),
        (s(&["network", "ls"]), "the engine proxy refuses it"),
        (
            s(&["network", "create", &format!("agt-px-evil-{pid}")]),
            "refuses it",
        ),
        (
            s(&[
                "volume",
                "create",
                "--opt",
                "type=none",
                "--opt",
                "o=bind",
                "--opt",
                "device=/",
                "--label",
                &label,
                &format!("runner-agt-px-evil-{pid}"),
            ]),
            "driver options",
        ),
        (
            s(&[
                "volume",
                "create",
                "--label",
                &label,
                &format!("agt-px-platform-{pid}"),
            ]),
            "not named as gitlab-runner names its volumes",
        ),
    ];
    for (args, says) in refused {
        let o = blocking(args.clone()).await.unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(says),
            "`docker {}` should be refused saying {says:?}: {}",
            args.join(" "),
            text(&o)
        );
    }
    // The platform's container is untouched.
    let state = docker(&["inspect", "-f", "{{.State.Running}}", &platform]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "true");
}

/// A job on its runner's network reaches GitLab's published port, and neither the engine
/// (no socket in the container, no engine port) nor the platform's other services: one on
/// the platform's network, one published on the host's loopback only.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_reaches_gitlab_and_nothing_else_of_the_platform() {
    let Some(image) = ready() else { return };
    let pid = std::process::id();
    let r = runner(&format!("iso{pid}"));
    let net = autogit_core::runner::job_network(&r, JobNetwork::Runner);
    let platform_net = format!("agt-iso-platform-{pid}");
    let gitlab = format!("agt-iso-gitlab-{pid}");
    let service = format!("agt-iso-service-{pid}");
    let local_only = format!("agt-iso-local-{pid}");
    let _cleanup = Cleanup {
        containers: vec![gitlab.clone(), service.clone(), local_only.clone()],
        networks: vec![net.clone(), platform_net.clone()],
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = proxy(dir.path(), &r).await;
    // The runner's network, as the on-demand start creates it (core::ondemand::start_argv).
    for n in [&net, &platform_net] {
        let o = docker(&["network", "create", n]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let httpd = |name: &str, body: &str| {
        format!(
            "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8081 -h /www # {name}"
        )
    };
    let free_port = || {
        std::net::TcpListener::bind(("0.0.0.0", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (gitlab_port, local_port) = (free_port(), free_port());
    for (name, publish, body) in [
        (
            &gitlab,
            format!("0.0.0.0:{gitlab_port}:8081"),
            "gitlab-answers",
        ),
        (
            &local_only,
            format!("127.0.0.1:{local_port}:8081"),
            "local-only",
        ),
        (&service, String::new(), "platform-service"),
    ] {
        let mut args = vec!["run", "-d", "--name", name, "--network", &platform_net];
        if !publish.is_empty() {
            args.extend(["-p", &publish]);
        }
        let cmd = httpd(name, body);
        args.extend([&image, "sh", "-c", &cmd]);
        let o = docker(&args);
        assert!(o.status.success(), "{}", text(&o));
    }
    let ip = |c: &str, n: &str| {
        let o = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
            c,
        ]);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let service_ip = ip(&service, &platform_net);
    let gw = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &net,
    ]);
    let gateway = String::from_utf8_lossy(&gw.stdout).trim().to_owned();
    assert!(!service_ip.is_empty() && !gateway.is_empty());
    // The host's view first: each service answers, so a refusal below is the isolation's.
    for _ in 0..50 {
        let o = docker(&[
            "exec",
            &service,
            "wget",
            "-q",
            "-O-",
            "http://127.0.0.1:8081/",
        ]);
        if o.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let host_view = reqwest::get(format!("http://127.0.0.1:{local_port}/"))
        .await
        .expect("the loopback-only service answers the host")
        .text()
        .await
        .unwrap();
    assert!(host_view.contains("local-only"));

    let script = format!(
        "test -e /var/run/docker.sock && echo ENGINE-SOCKET; \
         timeout 5 wget -q -O- http://{gateway}:{gitlab_port}/ || echo GITLAB-UNREACHABLE; \
         timeout 5 wget -q -O- http://{service_ip}:8081/ && echo REACHED-PLATFORM-SERVICE; \
         timeout 5 wget -q -O- http://{gateway}:{local_port}/ && echo REACHED-LOOPBACK-SERVICE; \
         for p in 2375 2376; do nc -w 3 {gateway} $p </dev/null && echo REACHED-ENGINE-PORT-$p; done; \
         echo done"
    );
    let label = format!("{MANAGED_LABEL}=true");
    let job = {
        let sock = sock.clone();
        let args = [
            "run".to_owned(),
            "--rm".to_owned(),
            "--label".to_owned(),
            label,
            "--network".to_owned(),
            net.clone(),
            image.clone(),
            "sh".to_owned(),
            "-c".to_owned(),
            script,
        ];
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            docker_via(&sock, &a)
        })
        .await
        .unwrap()
    };
    let out = String::from_utf8_lossy(&job.stdout);
    assert!(
        job.status.success() && out.contains("done"),
        "{}",
        text(&job)
    );
    assert!(
        out.contains("gitlab-answers"),
        "GitLab reachable: {}",
        text(&job)
    );
    for bad in [
        "ENGINE-SOCKET",
        "GITLAB-UNREACHABLE",
        "REACHED-PLATFORM-SERVICE",
        "REACHED-LOOPBACK-SERVICE",
        "REACHED-ENGINE-PORT",
    ] {
        assert!(!out.contains(bad), "{bad}: {}", text(&job));
    }
}

/// A refused request whose body is still on its way gets the refusal, not a broken pipe: the
/// proxy reads the body before it answers (the docker CLI reported `write: broken pipe` on a
/// refused `network create` when the 403 and the close came first). No engine is needed: the
/// request is refused by its path.
#[tokio::test]
async fn a_refused_request_still_sending_its_body_reads_the_refusal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(autogit_drivers::engine_proxy::serve(
        listener,
        dir.path().join("no-engine.sock"),
        autogit_core::engine_proxy::Policy::default(),
    ));
    let body = vec![b'x'; 512 * 1024];
    let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
    c.write_all(
        format!(
            "POST /v1.41/networks/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The proxy has the head and has decided; the body comes later, as from a slow client.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.write_all(&body)
        .await
        .expect("the proxy reads the body of a request it refuses");
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("refuses it"), "{answer}");
}
