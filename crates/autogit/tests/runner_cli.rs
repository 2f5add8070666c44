//! `autogit runner trust` and `autogit runner health` through the binary, against real `sshd`s
//! in network namespaces made for the test (`autogit_drivers::testing::netns`). The binary
//! itself runs inside the lab's client namespace (`ip netns exec`); `AUTOGIT_SSH_CONFIG`
//! gives it the lab's key. Needs root, iproute2 and openssh, else "skipping".

mod common;

use autogit_drivers::testing::netns::{SshLab, lab_available};
use common::{Run, bin, finish};
use std::path::Path;
use std::process::Command;

const FAKE_NVIDIA_SMI: &str = r#"#!/bin/sh
case "$*" in
  *--query-gpu=*) echo "NVIDIA GeForce RTX 3090 Ti, 24564, 20000, 7, 550.54.14" ;;
  *) echo "| NVIDIA-SMI 550.54.14    Driver Version: 550.54.14    CUDA Version: 12.4 |" ;;
esac
"#;

/// Runs the binary in the lab's client namespace with `dir` as working and data directory.
fn run_in(lab: &SshLab, dir: &Path, args: &[&str]) -> Run {
    let ssh_cfg = dir.join("ssh_config");
    std::fs::write(
        &ssh_cfg,
        format!("IdentityFile {}\nUser root\n", lab.identity.display()),
    )
    .unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.client_ns])
        .arg(bin())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("AUTOGIT_SSH_CONFIG", &ssh_cfg)
        .output()
        .unwrap();
    finish(out)
}

#[test]
fn trust_then_health_shows_each_host() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    lab.hosts[0].install_script("nvidia-smi", FAKE_NVIDIA_SMI);
    let d = tempfile::tempdir().unwrap();
    let (gpu, cpu) = (&lab.hosts[0].addr, &lab.hosts[1].addr);
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  cpu:\n    - name: c1\n      host: {cpu}\n  gpu:\n    - name: g1\n      host: {gpu}\n      gpu: nvidia\n      capabilities: [inference]\n"
        ),
    )
    .unwrap();

    // Unknown host keys: unreachable, with the way out in the message; exit 1.
    let r = run_in(&lab, d.path(), &["runner", "health", "-o", "json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["hosts"][0]["reachable"], false);
    assert!(
        v["hosts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("autogit runner trust"),
        "{v}"
    );

    for h in [gpu, cpu] {
        let r = run_in(&lab, d.path(), &["runner", "trust", h]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("ssh-ed25519") && r.stdout.contains("SHA256:"),
            "{}",
            r.stdout
        );
    }
    let r = run_in(&lab, d.path(), &["runner", "health", "-o", "json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    let g = hosts.iter().find(|h| h["host"] == gpu.as_str()).unwrap();
    let c = hosts.iter().find(|h| h["host"] == cpu.as_str()).unwrap();
    assert_eq!(g["runners"][0], "g1");
    assert_eq!(
        g["inventory"]["gpus"][0]["name"],
        "NVIDIA GeForce RTX 3090 Ti"
    );
    assert_eq!(g["inventory"]["cuda"], "12.4");
    assert!(c["inventory"]["gpus"].as_array().unwrap().is_empty());
    assert!(c["inventory"]["cpus"].as_u64().unwrap() >= 1);

    let r = run_in(&lab, d.path(), &["runner", "health"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("RTX 3090 Ti") && r.stdout.contains("CUDA 12.4"),
        "{}",
        r.stdout
    );

    // A partition: that host is reported unreachable, the other still answers; exit 1.
    lab.set_link(1, false).unwrap();
    let r = run_in(&lab, d.path(), &["runner", "health", "-o", "json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let c = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == cpu.as_str())
        .unwrap();
    assert_eq!(c["reachable"], false, "{v}");
    // runner list shows what health last saw.
    let r = run_in(&lab, d.path(), &["runner", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("unreachable") && r.stdout.contains("1 GPU"),
        "{}",
        r.stdout
    );
}

#[test]
fn bad_hosts_are_refused_without_running_ssh() {
    let d = tempfile::tempdir().unwrap();
    let r = common::run(d.path(), &["runner", "trust", "-oProxyCommand=id"]);
    // clap sees an option; either way nothing runs and the exit code is not 0.
    assert_ne!(r.code, 0);
    let r = common::run(d.path(), &["runner", "trust", "--", "-oProxyCommand=id"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a host name"), "{}", r.stderr);
    // AUTOGIT_SSH_CONFIG is a program setting, not a misspelt override.
    let r = common::run_env(
        d.path(),
        &["validate"],
        &[("AUTOGIT_SSH_CONFIG", "/dev/null")],
    );
    assert!(!r.stderr.contains("AUTOGIT_SSH_CONFIG"), "{}", r.stderr);
}

/// A stand-in `docker` that records `run` arguments and answers `inspect` from marker files
/// in `state` (`done-NAME` holds the exit code), as the real one prints autogit's format
/// (`core::jobkind::inspect_format`: status, exit code, OOM-killed, health).
fn fake_docker(state: &Path) -> String {
    format!(
        r#"#!/bin/sh
state={state}
mkdir -p "$state"
case "$1" in
  version) echo 27.3.1 ;;
  run) printf '%s\n' "$@" > "$state/run-$4.args"; echo "cid-$4" ;;
  inspect)
    if [ -e "$state/done-$4" ]; then echo "exited $(cat "$state/done-$4") false none"
    elif [ -e "$state/run-$4.args" ]; then echo "running 0 false none"
    else echo "Error: No such object: $4" >&2; exit 1; fi ;;
  *) echo "fake docker: $*" >&2; exit 1 ;;
esac
"#,
        state = state.display()
    )
}

const TWO_GPUS: &str = r#"#!/bin/sh
case "$*" in
  *--query-gpu=*)
    echo "NVIDIA GeForce RTX 3090 Ti, 24564, 24000, 0, 550.54.14"
    echo "NVIDIA GeForce RTX 5080, 16303, 16303, 0, 550.54.14" ;;
  *) echo "| NVIDIA-SMI 550.54.14    Driver Version: 550.54.14    CUDA Version: 12.4 |" ;;
esac
"#;

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr))
}

#[test]
fn compute_run_places_starts_queues_and_tracks_jobs() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    let docker_state = lab.hosts[0].dir.join("docker");
    lab.hosts[0].install_script("nvidia-smi", TWO_GPUS);
    lab.hosts[0].install_script("docker", &fake_docker(&docker_state));
    lab.hosts[1].install_script("docker", &fake_docker(&lab.hosts[1].dir.join("docker")));
    let d = tempfile::tempdir().unwrap();
    let (gpu, cpu) = (&lab.hosts[0].addr, &lab.hosts[1].addr);
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  cpu:\n    - name: c1\n      host: {cpu}\n  gpu:\n    - name: g1\n      host: {gpu}\n      gpu: nvidia\n      capabilities: [inference]\ncompute:\n  quotas:\n    - user: ann\n      gpus: 1\n      vram: 16G\n"
        ),
    )
    .unwrap();
    for h in [gpu, cpu] {
        assert_eq!(run_in(&lab, d.path(), &["runner", "trust", h]).code, 0);
    }
    let run = |args: &[&str]| run_in(&lab, d.path(), args);

    // Best fit: 10 GiB goes to the 16 GiB GPU (index 1), hostile arguments intact.
    let r = run(&[
        "compute",
        "run",
        "-o",
        "json",
        "--vram",
        "10G",
        "--capability",
        "inference",
        "--user",
        "bob",
        "busybox:1.36",
        "echo",
        "a b;c",
        "$(id)",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["id"], "job-1");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["host"], gpu.as_str());
    assert_eq!(v["gpus"], serde_json::json!([1]));
    let args = std::fs::read_to_string(docker_state.join("run-autogit-job-1.args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert!(
        args.windows(2).any(|w| w == ["--gpus", "\"device=1\""]),
        "{args:?}"
    );
    assert_eq!(
        &args[args.len() - 4..],
        ["busybox:1.36", "echo", "a b;c", "$(id)"]
    );

    // 20 GiB: only the 24 GiB GPU.
    let v = json(&run(&[
        "compute", "run", "-o", "json", "--vram", "20G", "--user", "bob", "img:1",
    ]));
    assert_eq!(
        (v["state"].as_str(), v["gpus"].clone()),
        (Some("running"), serde_json::json!([0]))
    );
    // Another 20 GiB: no room, queued.
    let r = run(&["compute", "run", "--vram", "20G", "--user", "bob", "img:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("job-3 queued"), "{}", r.stdout);
    // Never fits: rejected, exit 1.
    let r = run(&["compute", "run", "-o", "json", "--vram", "100G", "img:1"]);
    assert_eq!(r.code, 1);
    assert_eq!(json(&r)["state"], "failed");
    assert!(
        json(&r)["message"]
            .as_str()
            .unwrap()
            .contains("no configured host"),
        "{}",
        r.stdout
    );
    // Over ann's quota (16G at once): rejected.
    let r = run(&[
        "compute", "run", "-o", "json", "--gpus", "2", "--vram", "8G", "--user", "ann", "img:1",
    ]);
    assert_eq!(json(&r)["state"], "failed");
    assert!(
        json(&r)["message"].as_str().unwrap().contains("quota"),
        "{}",
        r.stdout
    );
    // CPU-only jobs go to the host without GPUs.
    let v = json(&run(&[
        "compute",
        "run",
        "-o",
        "json",
        "--gpus",
        "0",
        "--on-lost",
        "resume",
        "img:1",
    ]));
    assert_eq!(v["host"], cpu.as_str(), "{v}");
    assert_eq!(v["spec"]["on_lost"], "resume", "{v}");
    let cpu_job = v["id"].as_str().unwrap().to_owned();
    let v = json(&run(&["compute", "status", &cpu_job, "-o", "json"]));
    assert_eq!(
        (v["lease"]["state"].as_str(), v["lease"]["on_lost"].as_str()),
        (Some("live"), Some("resume")),
        "{v}"
    );

    // Status follows the container, with the job's lease (started through the lease wrapper:
    // its file is under the SSH user's HOME on the host; inference reschedules by default).
    let v = json(&run(&["compute", "status", "job-1", "-o", "json"]));
    assert_eq!(v["state"], "running");
    assert_eq!(
        (v["lease"]["state"].as_str(), v["lease"]["on_lost"].as_str()),
        (Some("live"), Some("reschedule")),
        "{v}"
    );
    assert!(lab.hosts[0].dir.join(".autogit/leases/job-1").is_file());
    let r = run(&["compute", "status", "job-1"]);
    assert!(r.stdout.contains("lease:     live on"), "{}", r.stdout);
    std::fs::write(docker_state.join("done-autogit-job-1"), "0").unwrap();
    let v = json(&run(&["compute", "status", "job-1", "-o", "json"]));
    assert_eq!(
        (v["state"].as_str(), v["exit_code"].as_i64()),
        (Some("succeeded"), Some(0))
    );

    // job-2 fails with 3; its GPU frees and the queued job-3 starts there on the next pass.
    std::fs::write(docker_state.join("done-autogit-job-2"), "3").unwrap();
    let v = json(&run(&["compute", "list", "-o", "json"]));
    let job = |id: &str| {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            job("job-2")["state"].as_str(),
            job("job-2")["exit_code"].as_i64()
        ),
        (Some("failed"), Some(3))
    );
    assert_eq!(job("job-3")["state"], "running", "{v}");
    assert_eq!(job("job-3")["gpus"], serde_json::json!([0]));
    let r = run(&["compute", "list"]);
    assert!(
        r.stdout.contains("RTX 5080") && r.stdout.contains("job-3"),
        "{}",
        r.stdout
    );

    // A container that vanished: the job failed.
    assert_eq!(job("job-6")["state"], "running");
    std::fs::remove_file(lab.hosts[1].dir.join("docker/run-autogit-job-6.args")).unwrap();
    let v = json(&run(&["compute", "status", "job-6", "-o", "json"]));
    assert_eq!(v["state"], "failed");
    assert!(v["message"].as_str().unwrap().contains("gone"), "{v}");

    // The GPU host goes away: its job's state is unknown, not invented.
    lab.set_link(0, false).unwrap();
    let v = json(&run(&["compute", "status", "job-3", "-o", "json"]));
    assert_eq!(v["state"], "running");
    assert!(
        v["message"].as_str().unwrap().contains("unreachable"),
        "{v}"
    );
    // Issue 25 #14, a partition: while the GPU host is cut off, a GPU job waits instead of
    // failing as "no configured host can ever run it" (the host's last known GPUs still
    // count), the host going away is recorded as an event, and the job is placed once the
    // host answers again.
    let r = run(&[
        "compute", "run", "-o", "json", "--vram", "10G", "--user", "bob", "img:1",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["state"], "queued", "{v}");
    let waiting = v["id"].as_str().unwrap().to_owned();
    let events = Command::new("sqlite3")
        .arg(d.path().join("data/state.db"))
        .arg("SELECT count(*) FROM events WHERE kind = 'host_unreachable'")
        .output()
        .unwrap();
    let n: u32 = String::from_utf8_lossy(&events.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(n >= 1, "the unreachable host is recorded");
    lab.set_link(0, true).unwrap();
    let v = json(&run(&["compute", "list", "-o", "json"]));
    let job = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == waiting.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (job["state"].as_str(), job["host"].as_str()),
        (Some("running"), Some(gpu.as_str())),
        "{v}"
    );
    // Its host's watchdog had stopped it (the marker it leaves) and the engine cannot start it
    // again (this stand-in `docker` knows no `start`): the host answered that no copy runs,
    // so the job (policy reschedule by default) is back in the queue at once, with the reason.
    std::fs::write(
        lab.hosts[0]
            .dir
            .join(format!(".autogit/leases/{waiting}.fenced")),
        "",
    )
    .unwrap();
    let v = json(&run(&["compute", "status", &waiting, "-o", "json"]));
    assert_eq!(
        (v["state"].as_str(), &v["host"]),
        (Some("queued"), &serde_json::Value::Null),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("cannot start it again"),
        "{v}"
    );
    assert!(v["lease"].is_null(), "{v}");
    let r = run(&["compute", "status", "job-99"]);
    assert_eq!(r.code, 1);

    // One job over both hosts: its parts start together, one on each, and know each other.
    let r = run(&["compute", "run", "--gpus", "0", "--hosts", "2", "img:1"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let first: u64 = r
        .stdout
        .split_whitespace()
        .next()
        .and_then(|id| id.strip_prefix("job-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        r.stdout.contains(&format!(
            "one job over 2 hosts: its parts are job-{first} to job-{}",
            first + 1
        )),
        "{}",
        r.stdout
    );
    let mut hosts = Vec::new();
    for (rank, id) in [first, first + 1].into_iter().enumerate() {
        let v = json(&run(&[
            "compute",
            "status",
            &format!("job-{id}"),
            "-o",
            "json",
        ]));
        assert_eq!(v["state"], "running", "{v}");
        let host = v["host"].as_str().unwrap().to_owned();
        let i = if host == *gpu { 0 } else { 1 };
        let args = std::fs::read_to_string(
            lab.hosts[i]
                .dir
                .join(format!("docker/run-autogit-job-{id}.args")),
        )
        .unwrap();
        assert!(
            args.contains("--network\nhost\n") && args.contains(&format!("AUTOGIT_RANK={rank}\n")),
            "{args}"
        );
        hosts.push(host);
    }
    hosts.sort();
    let mut want = vec![gpu.to_string(), cpu.to_string()];
    want.sort();
    assert_eq!(hosts, want, "one part on each host");
    // A service is not spread.
    let r = run(&["compute", "run", "--hosts", "2", "--port", "8080", "img:1"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
}

#[test]
fn discover_finds_ssh_hosts_and_the_gpus_of_trusted_ones() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    lab.hosts[0].install_script("nvidia-smi", FAKE_NVIDIA_SMI);
    let d = tempfile::tempdir().unwrap();
    let (gpu, cpu) = (&lab.hosts[0].addr, &lab.hosts[1].addr);
    // A /29 around the first host (its client side .1 has no sshd), the second by address,
    // and an address where nothing answers.
    let range = "10.77.0.0/29";
    let r = run_in(
        &lab,
        d.path(),
        &["runner", "discover", range, cpu, "10.77.1.9", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["scanned"], 8);
    let host = |v: &serde_json::Value, h: &str| {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["host"] == h)
            .cloned()
    };
    let g = host(&v, gpu).expect("the GPU host answers SSH");
    assert_eq!(
        (g["ssh"].as_bool(), g["trusted"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(
        g["keys"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(
        g["error"]
            .as_str()
            .unwrap()
            .contains("autogit runner trust")
    );
    assert!(host(&v, "10.77.0.1").is_none(), "no sshd there: {v}");
    assert_eq!(host(&v, "10.77.1.9").unwrap()["ssh"], false);
    assert_eq!(host(&v, cpu).unwrap()["ssh"], true);

    assert_eq!(run_in(&lab, d.path(), &["runner", "trust", gpu]).code, 0);
    let r = run_in(&lab, d.path(), &["runner", "discover", gpu]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("RTX 3090 Ti") && r.stdout.contains("yes"),
        "{}",
        r.stdout
    );

    // Ranges too large: exit 2. No targets: listen for `autogit agent` over mDNS; none runs in
    // the lab, so exit 1 saying what to do.
    assert_eq!(
        run_in(&lab, d.path(), &["runner", "discover", "10.0.0.0/8"]).code,
        2
    );
    let r = run_in(&lab, d.path(), &["runner", "discover", "--wait", "1s"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no autogit agent answered"),
        "{}",
        r.stderr
    );
}

/// `host: auto`: discovery fills in the host (the only trusted host with an NVIDIA GPU for a GPU
/// runner), records it in the state store, and `runner health` and `runner list` then use it;
/// a runner that several hosts fit stays unresolved and every command says so.
#[test]
fn discovery_resolves_host_auto() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    lab.hosts[0].install_script("nvidia-smi", FAKE_NVIDIA_SMI);
    let d = tempfile::tempdir().unwrap();
    let (gpu, cpu) = (&lab.hosts[0].addr, &lab.hosts[1].addr);
    std::fs::write(
        d.path().join("autogit.yml"),
        "runners:\n  cpu:\n    - name: c1\n      host: auto\n  gpu:\n    - name: g1\n      host: auto\n      gpu: nvidia\n",
    )
    .unwrap();
    for h in [gpu, cpu] {
        assert_eq!(run_in(&lab, d.path(), &["runner", "trust", h]).code, 0);
    }
    // Before discovery: health says the host is not discovered.
    let r = run_in(&lab, d.path(), &["runner", "health", "-o", "json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["hosts"][0]["host"], "auto", "{v}");

    let r = run_in(
        &lab,
        d.path(),
        &["runner", "discover", gpu, cpu, "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = json(&r);
    let auto = v["auto"].as_array().unwrap();
    let of = |n: &str| auto.iter().find(|a| a["runner"] == n).unwrap().clone();
    assert_eq!(of("g1")["host"], gpu.as_str(), "{v}");
    let c1 = of("c1");
    assert!(c1["host"].is_null(), "{v}");
    assert!(
        c1["error"]
            .as_str()
            .unwrap()
            .contains("2 discovered hosts fit"),
        "{v}"
    );

    // The resolution is remembered: health probes the GPU host for g1; c1 is still "auto".
    let r = run_in(&lab, d.path(), &["runner", "health", "-o", "json"]);
    let v = json(&r);
    let hosts = v["hosts"].as_array().unwrap();
    let g = hosts.iter().find(|h| h["host"] == gpu.as_str()).unwrap();
    assert_eq!(g["runners"][0], "g1");
    assert_eq!(g["reachable"], true, "{v}");
    assert_eq!(
        g["inventory"]["gpus"][0]["name"],
        "NVIDIA GeForce RTX 3090 Ti"
    );
    let a = hosts.iter().find(|h| h["host"] == "auto").unwrap();
    assert_eq!(a["runners"][0], "c1");
    assert!(
        a["error"].as_str().unwrap().contains("not discovered"),
        "{v}"
    );
    let r = run_in(&lab, d.path(), &["runner", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("host: auto found at {gpu}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("runner discover"), "{}", r.stdout);
}

/// `runner prepare` through the binary: `--check` reports what is missing (exit 1), a run
/// configures it (exit 0), a second run has nothing to do. The stand-ins print the outputs of
/// `crates/autogit-app/tests/fixtures/nvidia` (formats from NVIDIA's documentation).
#[test]
fn prepare_configures_the_nvidia_toolkit_once() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let host = &lab.hosts[0];
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../autogit-app/tests/fixtures/nvidia");
    let (fx, st) = (fx.display().to_string(), host.dir.display().to_string());
    host.install_script("nvidia-smi", &format!("#!/bin/sh\ncat {fx}/driver.csv\n"));
    host.install_script(
        "docker",
        &format!("#!/bin/sh\n[ -e {st}/configured ] && cat {fx}/docker-runtimes-nvidia.json || cat {fx}/docker-runtimes.json\n"),
    );
    host.install_script(
        "systemctl",
        &format!("#!/bin/sh\necho \"systemctl $*\" >> {st}/steps\n"),
    );
    host.install_script(
        "nvidia-ctk",
        &format!(
            "#!/bin/sh\ncase \"$1 $2\" in\n  \"--version \") cat {fx}/ctk-version.txt ;;\n  \"cdi list\") [ -e {st}/cdi ] && cat {fx}/cdi-list.stdout; true ;;\n  \"cdi generate\") echo \"nvidia-ctk $*\" >> {st}/steps; : > {st}/cdi ;;\n  \"runtime configure\") echo \"nvidia-ctk $*\" >> {st}/steps; : > {st}/configured ;;\nesac\n"
        ),
    );
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  gpu:\n    - name: g1\n      host: {}\n",
            host.addr
        ),
    )
    .unwrap();
    let t = run_in(&lab, d.path(), &["runner", "trust", &host.addr]);
    assert_eq!(t.code, 0, "{}{}", t.stdout, t.stderr);

    let check = run_in(&lab, d.path(), &["runner", "prepare", "g1", "--check"]);
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(
        check
            .stdout
            .contains("driver 550.54.14 · nvidia-ctk 1.17.3"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("missing docker-runtime"),
        "{}",
        check.stdout
    );
    assert!(
        check
            .stdout
            .contains("sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml")
    );
    assert!(!host.dir.join("steps").exists(), "--check changes nothing");

    let run = run_in(
        &lab,
        d.path(),
        &["runner", "prepare", &host.addr, "-o", "json"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let ran: Vec<&str> = v["ran"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["configure-docker", "restart-docker", "generate-cdi"]);
    assert_eq!(v["missing"], serde_json::json!([]));

    let again = run_in(&lab, d.path(), &["runner", "prepare", "g1"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    let steps = std::fs::read_to_string(host.dir.join("steps")).unwrap();
    assert_eq!(steps.lines().count(), 3, "{steps}");
}

/// Multi-GPU placement through the binary: a host with two NVLink pairs (its `nvidia-smi topo
/// -m` from `crates/autogit-core/tests/fixtures/topo/two-nvlink-pairs.txt`) gets a 2-GPU job
/// on a linked pair, not on the two GPUs best fit alone would take; with `sharing: exclusive`
/// a further job waits for a GPU of its own.
#[test]
fn multi_gpu_jobs_go_to_nvlinked_gpus_and_exclusive_gpus_are_not_shared() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let host = &lab.hosts[0];
    let topo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../autogit-core/tests/fixtures/topo/two-nvlink-pairs.txt");
    host.install_script(
        "nvidia-smi",
        &format!(
            "#!/bin/sh\ncase \"$*\" in\n  *--query-gpu=*)\n    echo \"NVIDIA RTX A5000, 24564, 24000, 0, 550.54.14\"\n    echo \"NVIDIA RTX A6000, 49140, 48000, 0, 550.54.14\"\n    echo \"NVIDIA RTX A5000, 24564, 24000, 0, 550.54.14\"\n    echo \"NVIDIA RTX A5000, 24564, 24000, 0, 550.54.14\" ;;\n  \"topo -m\") cat {} ;;\n  *) echo \"| NVIDIA-SMI 550.54.14    Driver Version: 550.54.14    CUDA Version: 12.4 |\" ;;\nesac\n",
            topo.display()
        ),
    );
    host.install_script("docker", &fake_docker(&host.dir.join("docker")));
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  gpu:\n    - name: g1\n      host: {}\n      sharing: exclusive\n",
            host.addr
        ),
    )
    .unwrap();
    assert_eq!(
        run_in(&lab, d.path(), &["runner", "trust", &host.addr]).code,
        0
    );
    let run = |args: &[&str]| run_in(&lab, d.path(), args);
    let h = run(&["runner", "health", "-o", "json"]);
    assert_eq!(h.code, 0, "{}{}", h.stdout, h.stderr);
    assert!(
        json(&h)["hosts"][0]["inventory"]["topology"]["links"]
            .as_array()
            .is_some_and(|l| l.len() == 6),
        "{}",
        h.stdout
    );
    // GPUs 0 and 2 fit 20 GiB tightest; 2 and 3 are NVLinked (0 and 1 too, but 1 is large).
    let v = json(&run(&[
        "compute", "run", "-o", "json", "--gpus", "2", "--vram", "20G", "img", "train",
    ]));
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["gpus"], serde_json::json!([2, 3]));
    // Exclusive: 1 GiB fits beside it on GPU 2 by VRAM, but goes to a GPU of its own (0).
    let v = json(&run(&[
        "compute", "run", "-o", "json", "--gpus", "1", "--vram", "1G", "img", "a",
    ]));
    assert_eq!(v["gpus"], serde_json::json!([0]), "{v}");
    let v = json(&run(&[
        "compute", "run", "-o", "json", "--gpus", "1", "--vram", "1G", "img", "b",
    ]));
    assert_eq!(v["gpus"], serde_json::json!([1]), "{v}");
    // Every GPU holds a job now: the next one waits.
    let v = json(&run(&[
        "compute", "run", "-o", "json", "--gpus", "1", "--vram", "1G", "img", "c",
    ]));
    assert_eq!(v["state"], "queued", "{v}");
}

/// `diagnose` against runner hosts in network namespaces: one whose clock is an hour ahead (a
/// stand-in `date` on its PATH, as a host without time synchronisation answers) fails
/// `clock.<host>` with the fix; the other is in step; then that one's link goes down and it
/// fails `runner.<host>` as not reachable, with the way to check it.
#[test]
fn diagnose_reports_a_skewed_clock_and_a_host_down_in_its_namespace() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    lab.hosts[0].install_script(
        "date",
        "#!/bin/sh\n# An hour ahead: `date +%s` as a host without time synchronisation answers.\nif [ \"$1\" = +%s ]; then echo $(( $(/bin/date +%s) + 3600 )); else exec /bin/date \"$@\"; fi\n",
    );
    let d = tempfile::tempdir().unwrap();
    let (skewed, other) = (&lab.hosts[0].addr, &lab.hosts[1].addr);
    std::fs::write(
        d.path().join("autogit.yml"),
        format!(
            "runners:\n  cpu:\n    - name: skewed\n      host: {skewed}\n    - name: other\n      host: {other}\n"
        ),
    )
    .unwrap();
    for h in [skewed, other] {
        let r = run_in(&lab, d.path(), &["runner", "trust", h]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let diagnose = || {
        let r = run_in(
            &lab,
            d.path(),
            &[
                "diagnose",
                "--only",
                "runner",
                "--only",
                "clock",
                "--timeout",
                "20s",
                "-o",
                "json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
        (r.code, v)
    };
    let check = |v: &serde_json::Value, id: &str| -> serde_json::Value {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {v:#}"))
    };
    let (code, v) = diagnose();
    assert_eq!(code, 11, "a failed check: {v:#}");
    let c = check(&v, &format!("clock.{skewed}"));
    assert_eq!(c["status"], "fail", "{c}");
    let evidence = c["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("ahead by 3"), "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("timedatectl set-ntp true"),
        "{c}"
    );
    assert_eq!(
        check(&v, &format!("clock.{other}"))["status"],
        "ok",
        "{v:#}"
    );
    assert_eq!(
        check(&v, &format!("runner.{other}"))["status"],
        "ok",
        "{v:#}"
    );

    // The other host's link goes down: not reachable, with the way to check it; no clock read.
    lab.set_link(1, false).unwrap();
    let (code, v) = diagnose();
    assert_eq!(code, 11, "{v:#}");
    let c = check(&v, &format!("runner.{other}"));
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["evidence"].as_str().unwrap().contains("not reachable"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("autogit runner health"),
        "{c}"
    );
    assert!(
        !v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == format!("clock.{other}")),
        "{v:#}"
    );
}
