//! A routed inference service on autogit's own machine (`host: local`), for real: the compute
//! controller starts the job with the real `docker` CLI, publishes its port, and routes it at
//! the gateway of the platform's network, which is where the ingress's container reaches this
//! machine (`localhost` there is the container itself, and `local` names nothing). A
//! container on the platform's network, where Traefik or nginx run, gets the service's answer
//! from the route's upstream.
//!
//! Needs dockerd and the locally built job image; without them "skipping" (a failure under
//! `AUTOGIT_REQUIRE_TOOLS`).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_service_on_this_machine_is_reached_at_the_platform_networks_gateway() {
    let Some(image) = support::job_image_or_skip() else {
        return;
    };
    let project = format!("lr{}", std::process::id());
    let network = format!("{project}_autogit");
    let job = format!("{project}-job-1");
    /// The job's container, the network and the job's lease files (under `~/.autogit/leases`
    /// on the host the job ran on: this one), whatever happens.
    struct Gone {
        job: String,
        network: String,
        project: String,
    }
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = docker(&["rm", "-f", &self.job]);
            let _ = docker(&["network", "rm", &self.network]);
            if let Some(home) = std::env::var_os("HOME") {
                let leases = std::path::Path::new(&home).join(".autogit/leases");
                let _ = std::fs::remove_dir_all(leases.join(&self.project));
            }
        }
    }
    let _gone = Gone {
        job: job.clone(),
        network: network.clone(),
        project: project.clone(),
    };
    // The platform's network, as the platform controller creates it for the ingress.
    assert!(docker(&["network", "create", &network]).status.success());

    let data = tempfile::tempdir().unwrap();
    let yml = format!(
        "platform:\n  project: {project}\nrunners:\n  gpu:\n    - name: g0\n      host: local\n      capabilities: [inference]\n"
    );
    let settings = support::settings(&yml, "BASE_DOMAIN=test.internal\n", data.path());
    let (c, _) = support::compute(settings);
    let server = "mkdir -p /www && echo llm-here > /www/health && cp /www/health /www/index.html; \
        httpd -f -p 8080 -h /www & trap 'exit 0' TERM; while :; do sleep 1; done";
    let row = c
        .submit(support::routed_service(&image, server))
        .await
        .unwrap();
    assert_eq!(row.state, "running", "{}", row.message);
    assert_eq!(row.host.as_deref(), Some("local"));

    // The route, once the pass has read the published port.
    let routes = data.path().join("rendered/traefik/dynamic/compute.yml");
    let start = Instant::now();
    let upstream = loop {
        c.pass().await.unwrap();
        if let Some(u) = support::route_upstream(&routes) {
            break u;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no route after 60 s: {:?}",
            std::fs::read_to_string(&routes)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let gateway = text(&docker(&[
        "network",
        "inspect",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
        &network,
    ]));
    let port = text(&docker(&["port", &job, "8080/tcp"]));
    let port = port.lines().next().unwrap().rsplit(':').next().unwrap();
    assert_eq!(upstream, format!("http://{gateway}:{port}"));

    // From the platform's network, as the ingress's container asks it.
    let asked = docker(&[
        "run",
        "--rm",
        "--network",
        &network,
        &image,
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {gateway} {port}"),
    ]);
    assert!(text(&asked).contains("llm-here"), "{upstream}: {asked:?}");

    // Cancelled: the route leaves with it.
    c.cancel("job-1").await.unwrap();
    assert!(!routes.exists(), "{:?}", std::fs::read_to_string(&routes));
}
