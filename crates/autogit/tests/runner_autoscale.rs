//! On-demand runners through the real binary: `runner autoscale --once` against the fake
//! GitLab (pending and running jobs listed as GitLab's jobs API answers; GitLab cannot run
//! here) and the real container engine on `host: local`, with a stand-in runner image. A job
//! waiting for the runner's tags starts its container; after `runners.cooldown` without work
//! it is stopped: zero runner containers when idle. The runner's engine access is the engine
//! proxy (`runners.isolation.engine: proxy`, the default), served by this test process
//! (`drivers::engine_proxy`, as `autogit runner engine-proxy` serves it on a host): without it
//! the runner does not start, and says what to run.

mod common;
#[path = "../../autogit-drivers/tests/gitlab_support/mod.rs"]
mod gitlab_support;

use autogit_drivers::gitlab::bootstrap::ADMIN_TOKEN;
use autogit_drivers::secrets::{SecretStore, SecretString};
use autogit_drivers::state::{RegistrationRow, Store};
use common::{Run, docker_ok, have_engine, run};
use gitlab_support::{FJob, Fake};
use std::path::Path;

const ADMIN: &str = "glpat-autoscale-admin-0123456789";

async fn autogit(dir: &Path, args: Vec<String>) -> Run {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&dir, &a)
    })
    .await
    .unwrap()
}

/// A data dir where `name` is a runner registered on `local` (GitLab runner id `id`) and the
/// admin token is stored, as `runner register` leaves it.
fn registered(data: &Path, name: &str, id: i64) {
    SecretStore::open(data)
        .unwrap()
        .put(ADMIN_TOKEN, &SecretString::from(ADMIN))
        .unwrap();
    Store::open(&data.join("state.db"))
        .unwrap()
        .set_registration(&RegistrationRow {
            name: name.to_owned(),
            host: "local".into(),
            runner_id: id,
            secret: format!("gitlab-runner-{id}-token"),
            state: "registered".into(),
            at: 0,
            message: String::new(),
        })
        .unwrap();
}

/// One `runner autoscale --once -o json` pass against the GitLab at `url`.
async fn autoscale_once(dir: &Path, url: &str, data: &Path) -> Run {
    let args: Vec<String> = [
        "runner",
        "autoscale",
        "--once",
        "--url",
        url,
        "-o",
        "json",
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    autogit(dir, args).await
}

fn running(container: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("name=^{container}$")])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_starts_the_runner_and_the_cooldown_stops_it() {
    if !have_engine() {
        return;
    }
    let image = tokio::task::spawn_blocking(|| {
        autogit_drivers::testing::fake_gitlab_image("runner-standin", &["/bin/sleep", "3600"])
    })
    .await
    .unwrap()
    .unwrap();
    let fake = Fake::start().await;
    let project = {
        let mut st = fake.state();
        st.add_token(1, "autogit-admin", ADMIN, &["api", "admin_mode"]);
        st.add_group("team");
        st.add_project("team", "app", false, false);
        st.projects.last().unwrap().id
    };
    fake.state().jobs.push(FJob {
        id: 501,
        project_id: project,
        status: "pending".into(),
        // `render` is one of the runner's capabilities, not of its `tags`: GitLab knows the
        // runner by both, and so does the autoscaler.
        tag_list: vec!["gpu".into(), "render".into()],
    });
    let name = format!("r{}", std::process::id());
    let container = format!("autogit-runner-{name}");
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            docker_ok(&["rm", "-f", &self.0]);
            docker_ok(&["volume", "rm", "-f", &self.0]);
            // The runner's own network, created by the on-demand start.
            docker_ok(&["network", "rm", &self.0]);
        }
    }
    let _cleanup = Cleanup(container.clone());

    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  mode: on-demand\n  cooldown: 2s\n  image: {image}\n  isolation:\n    proxy_socket: {}\n  gpu:\n    - name: {name}\n      host: local\n      tags: [gpu]\n      capabilities: [render]\n",
            d.path().join("proxy.sock").display()
        ),
    )
    .unwrap();
    let proxy_sock = d.path().join("proxy.sock");
    let data = d.path().join("data");
    registered(&data, &name, 7);
    let pass = || autoscale_once(d.path(), &fake.url, &data);
    // No engine proxy on the host yet: the runner is not started with the engine's socket
    // instead; the pass says what to run.
    let refused = pass().await;
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    let v: serde_json::Value = serde_json::from_str(&refused.stdout).unwrap();
    let err = v["runners"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("no engine proxy listens") && err.contains("autogit runner engine-proxy"),
        "{}",
        refused.stdout
    );
    assert!(!running(&container));
    let listener = autogit_drivers::engine_proxy::bind(&proxy_sock).unwrap();
    let policy =
        autogit_core::engine_proxy::host_policy(std::slice::from_ref(&name), false).unwrap();
    tokio::spawn(autogit_drivers::engine_proxy::serve(
        listener,
        "/var/run/docker.sock".into(),
        policy,
    ));
    let action = |r: &Run| -> (String, u64) {
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let row = &v["runners"][0];
        (
            row["action"].as_str().unwrap().to_owned(),
            row["jobs"].as_u64().unwrap(),
        )
    };

    assert!(
        !running(&container),
        "no runner container before there is work"
    );
    // A job waits for `gpu`: the runner starts.
    assert_eq!(action(&pass().await), ("start".to_owned(), 1));
    assert!(running(&container));
    // Its engine is the proxy, and it is on its own network (its jobs' network_mode).
    let inspect = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Source}}>{{.Destination}} {{end}}|{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &container,
        ])
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    assert!(
        seen.contains(&format!("{}>/var/run/docker.sock", proxy_sock.display())),
        "{seen}"
    );
    assert!(!seen.contains("/var/run/docker.sock>"), "{seen}");
    assert!(seen.ends_with(&format!("|{container}")), "{seen}");
    // While it runs, the runner stays.
    fake.state().jobs[0].status = "running".into();
    assert_eq!(action(&pass().await), ("keep".to_owned(), 1));
    // The job is done: the cooldown starts; the runner stays until it has passed.
    fake.state().jobs[0].status = "success".into();
    assert_eq!(action(&pass().await), ("keep".to_owned(), 0));
    assert!(running(&container));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(action(&pass().await), ("stop".to_owned(), 0));
    assert!(!running(&container), "idle: zero runner containers");
    // A job for other tags does not start it.
    fake.state().jobs.push(FJob {
        id: 502,
        project_id: project,
        status: "pending".into(),
        tag_list: vec!["windows".into()],
    });
    assert_eq!(action(&pass().await), ("keep".to_owned(), 0));
    assert!(!running(&container));
}

fn containers_of(runner_volume: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=io.autogit.runner={runner_volume}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Runner containers follow the queue between `min` and `max`: up to what the waiting jobs
/// need in one pass, never above `max`, down (gracefully: SIGQUIT, as gitlab-runner finishes
/// its jobs) only after the cooldown, and to zero when idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_containers_follow_the_queue_between_min_and_max() {
    if !have_engine() {
        return;
    }
    // A stand-in runner that stops on SIGQUIT, as gitlab-runner does once its jobs are done.
    let image = tokio::task::spawn_blocking(|| {
        autogit_drivers::testing::fake_gitlab_image(
            "runner-scaling",
            &[
                "/bin/sh",
                "-c",
                "trap 'exit 0' QUIT; while true; do sleep 1; done",
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    let fake = Fake::start().await;
    let project = {
        let mut st = fake.state();
        st.add_token(1, "autogit-admin", ADMIN, &["api", "admin_mode"]);
        st.add_group("team");
        st.add_project("team", "app", false, false);
        st.projects.last().unwrap().id
    };
    let name = format!("s{}", std::process::id());
    let volume = format!("autogit-runner-{name}");
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for i in ["", "-2", "-3", "-4"] {
                docker_ok(&["rm", "-f", &format!("{}{i}", self.0)]);
            }
            docker_ok(&["volume", "rm", "-f", &self.0]);
        }
    }
    let _cleanup = Cleanup(volume.clone());
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  cooldown: 2s\n  image: {image}\n  isolation:\n    engine: socket\n    network: bridge\n  cpu:\n    - name: {name}\n      host: local\n      tags: [build]\n      concurrent: 1\n      max: 3\n"
        ),
    )
    .unwrap();
    let data = d.path().join("data");
    registered(&data, &name, 8);
    let pass = || autoscale_once(d.path(), &fake.url, &data);
    let row = |r: &Run| -> (String, u64, u64) {
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let row = &v["runners"][0];
        (
            row["action"].as_str().unwrap().to_owned(),
            row["containers"].as_u64().unwrap(),
            row["target"].as_u64().unwrap(),
        )
    };
    let set_jobs = |statuses: &[&str]| {
        let mut st = fake.state();
        st.jobs.clear();
        for (i, s) in statuses.iter().enumerate() {
            st.jobs.push(FJob {
                id: 700 + i as u64,
                project_id: project,
                status: (*s).into(),
                tag_list: vec!["build".into()],
            });
        }
    };
    let names = |n: usize| -> Vec<String> {
        let mut v: Vec<String> = (0..n)
            .map(|i| match i {
                0 => volume.clone(),
                i => format!("{volume}-{}", i + 1),
            })
            .collect();
        v.sort();
        v
    };

    // Zero idle.
    assert_eq!(row(&pass().await), ("keep".into(), 0, 0));
    // Two jobs wait, one job per container: two containers in one pass.
    set_jobs(&["pending", "pending"]);
    assert_eq!(row(&pass().await), ("start".into(), 0, 2));
    assert_eq!(containers_of(&volume), names(2));
    // Five: three, the max.
    set_jobs(&["running", "running", "pending", "pending", "pending"]);
    assert_eq!(row(&pass().await), ("start".into(), 2, 3));
    assert_eq!(containers_of(&volume), names(3));
    // One job left: the three stay through the cooldown...
    set_jobs(&["running", "success", "success", "success", "success"]);
    assert_eq!(row(&pass().await), ("keep".into(), 3, 3));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // ...then the two extra ones are asked to stop after their jobs (SIGQUIT) and exit.
    assert_eq!(row(&pass().await), ("stop".into(), 3, 1));
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_eq!(containers_of(&volume), names(1));
    assert_eq!(row(&pass().await), ("keep".into(), 1, 1));
    // Nothing left: after the cooldown, zero containers.
    set_jobs(&["success"]);
    assert_eq!(row(&pass().await), ("keep".into(), 1, 1));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(row(&pass().await), ("stop".into(), 1, 0));
    assert!(containers_of(&volume).is_empty());
    let all = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=io.autogit.runner={volume}"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&all.stdout).trim().is_empty(),
        "exited replicas are removed too"
    );
}
