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
}
