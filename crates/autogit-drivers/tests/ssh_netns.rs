//! [`Ssh`] against real `sshd`s in network namespaces made for the test
//! (`autogit_drivers::testing::netns`): commands and exit codes, hostile arguments arriving
//! unchanged, an unknown host key refused until `trust`, a changed key refused, and a
//! partition (link down: a clear error; link up: it works again). Needs root, iproute2 and
//! openssh; without them the tests say "skipping" (they fail under `AUTOGIT_REQUIRE_TOOLS`).

use autogit_drivers::remote::ssh::{Ssh, SshConfig, trust};
use autogit_drivers::remote::{RemoteError, RemoteExec};
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::time::{Duration, Instant};

fn lab(n: usize) -> Option<SshLab> {
    lab_available().then(|| SshLab::start(n).unwrap_or_else(|e| panic!("{e}")))
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

async fn trusted(lab: &SshLab, data: &std::path::Path) -> (SshConfig, Vec<Ssh>) {
    let cfg = lab.ssh_config(data);
    let mut hosts = Vec::new();
    for h in &lab.hosts {
        let r = trust(&cfg, &h.addr, false).await.unwrap();
        assert!(r.added);
        assert!(
            r.keys.iter().any(|k| k.fingerprint.starts_with("SHA256:")),
            "{r:?}"
        );
        hosts.push(Ssh::new(cfg.clone(), &h.addr).unwrap());
    }
    (cfg, hosts)
}

#[tokio::test]
async fn commands_run_on_each_host_with_exit_codes() {
    let Some(lab) = lab(2) else { return };
    let data = tempfile::tempdir().unwrap();
    let (_, hosts) = trusted(&lab, data.path()).await;
    for (i, h) in hosts.iter().enumerate() {
        let out = h
            .run(&argv(&["ip", "-4", "-o", "addr", "show"]))
            .await
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.stdout.contains(&lab.hosts[i].addr), "{}", out.stdout);
        let out = h
            .run(&argv(&["sh", "-c", "echo oops >&2; exit 7"]))
            .await
            .unwrap();
        assert_eq!(out.code, Some(7));
        assert_eq!(out.stderr.trim(), "oops");
        h.close().await;
    }
    // The control sockets live in a private directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.path().join("ssh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn hostile_arguments_arrive_unchanged() {
    let Some(lab) = lab(1) else { return };
    let data = tempfile::tempdir().unwrap();
    let (_, hosts) = trusted(&lab, data.path()).await;
    let canary = lab.hosts[0].dir.join("pwned");
    let hostile = [
        "",
        "'",
        "it's",
        "\"double\"",
        &format!("$(touch {})", canary.display()),
        &format!("`touch {}`", canary.display()),
        &format!("; touch {}", canary.display()),
        "a\nb",
        "-n",
        "--",
        "$HOME",
        "*",
        "~",
        "=ls",
        "back\\slash",
        "tab\there",
    ];
    let mut cmd = argv(&["printf", "%s\\0"]);
    cmd.extend(hostile.iter().map(|s| (*s).to_owned()));
    let out = hosts[0].run(&cmd).await.unwrap();
    assert!(out.success(), "{out:?}");
    let got: Vec<&str> = out.stdout.split('\0').collect();
    assert_eq!(&got[..got.len() - 1], &hostile[..]);
    assert!(!canary.exists(), "a hostile argument ran a command");
    // Secrets travel on stdin (runner register).
    let out = hosts[0]
        .run_input(
            &argv(&["sh", "-c", "IFS= read -r T; printf '%s' \"$T\""]),
            b"glrt-secret'$(x)\n",
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "glrt-secret'$(x)");
    hosts[0].close().await;
}

#[tokio::test]
async fn unknown_host_key_is_refused_until_trusted_and_a_changed_key_is_refused() {
    let Some(lab) = lab(1) else { return };
    let data = tempfile::tempdir().unwrap();
    let cfg = lab.ssh_config(data.path());
    let addr = &lab.hosts[0].addr;
    let h = Ssh::new(cfg.clone(), addr).unwrap();
    let err = h.run(&argv(&["true"])).await.unwrap_err();
    assert!(matches!(err, RemoteError::HostKey { .. }), "{err:?}");
    assert!(err.to_string().contains("autogit runner trust"), "{err}");

    let r = trust(&cfg, addr, false).await.unwrap();
    assert!(r.added && !r.keys.is_empty(), "{r:?}");
    assert!(h.run(&argv(&["true"])).await.unwrap().success());
    // Trusting again changes nothing.
    assert!(!trust(&cfg, addr, false).await.unwrap().added);
    h.close().await;

    // Someone else's key recorded for this address: refused by ssh and by trust.
    let other = lab.dir.join("other");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let key = other_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&cfg.known_hosts, format!("{addr} {key}\n")).unwrap();
    let mut fresh = cfg.clone();
    fresh.control_dir = None; // no shared connection from before
    let h2 = Ssh::new(fresh, addr).unwrap();
    let err = h2.run(&argv(&["true"])).await.unwrap_err();
    assert!(
        matches!(
            err,
            RemoteError::KeyChanged { .. } | RemoteError::HostKey { .. }
        ),
        "{err:?}"
    );
    let err = trust(&cfg, addr, false).await.unwrap_err();
    assert!(matches!(err, RemoteError::KeyChanged { .. }), "{err:?}");
    assert!(trust(&cfg, addr, true).await.unwrap().added);
    assert!(h2.run(&argv(&["true"])).await.unwrap().success());
}

#[tokio::test]
async fn a_partition_is_an_error_and_the_host_recovers() {
    let Some(lab) = lab(2) else { return };
    let data = tempfile::tempdir().unwrap();
    let (_, hosts) = trusted(&lab, data.path()).await;
    for h in &hosts {
        assert!(h.run(&argv(&["true"])).await.unwrap().success());
    }
    lab.set_link(0, false).unwrap();
    let t = Instant::now();
    let err = hosts[0].run(&argv(&["true"])).await.unwrap_err();
    assert!(
        matches!(
            err,
            RemoteError::Unreachable { .. } | RemoteError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    // The other host is unaffected.
    assert!(hosts[1].run(&argv(&["true"])).await.unwrap().success());
    lab.set_link(0, true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match hosts[0].run(&argv(&["echo", "back"])).await {
            Ok(o) if o.success() => {
                assert_eq!(o.stdout.trim(), "back");
                break;
            }
            r => assert!(Instant::now() < deadline, "no recovery: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for h in &hosts {
        h.close().await;
    }
}

#[tokio::test]
async fn bad_host_names_never_reach_ssh() {
    let data = tempfile::tempdir().unwrap();
    let cfg = SshConfig::new(data.path());
    for bad in ["-oProxyCommand=id", "a;b", "$(id)"] {
        assert!(matches!(
            Ssh::new(cfg.clone(), bad),
            Err(RemoteError::BadHost { .. })
        ));
        assert!(matches!(
            trust(&cfg, bad, false).await,
            Err(RemoteError::BadHost { .. })
        ));
    }
}

/// `user@host` reaches the real sshd as that user (split into `-l user -- host`), and a user
/// that ssh could read as an option is refused before ssh runs: the ProxyCommand it carries
/// never executes.
#[tokio::test]
async fn user_at_host_logs_in_and_option_like_users_never_reach_ssh() {
    let Some(lab) = lab(1) else { return };
    let data = tempfile::tempdir().unwrap();
    let (cfg, _) = trusted(&lab, data.path()).await;
    let mut anon = cfg.clone();
    anon.user = None;
    let h = Ssh::new(anon, &format!("root@{}", lab.hosts[0].addr)).unwrap();
    let out = h.run(&argv(&["id", "-un"])).await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "root");

    let marker = data.path().join("pwned");
    let hostile = format!("-oProxyCommand=touch {}", marker.display());
    let mut bad = cfg.clone();
    bad.user = Some(hostile.clone());
    assert!(matches!(
        Ssh::new(bad, &lab.hosts[0].addr),
        Err(RemoteError::BadHost { .. })
    ));
    assert!(matches!(
        Ssh::new(cfg.clone(), &format!("{hostile}@{}", lab.hosts[0].addr)),
        Err(RemoteError::BadHost { .. })
    ));
    assert!(!marker.exists());
}

/// A stand-in `nvidia-smi`: two GPUs for the query, a header with the CUDA version otherwise.
pub const FAKE_NVIDIA_SMI: &str = r#"#!/bin/sh
case "$*" in
  *--query-gpu=name,memory.total,memory.free,utilization.gpu,driver_version*)
    echo "NVIDIA GeForce RTX 3090 Ti, 24564, 20000, 7, 550.54.14"
    echo "NVIDIA GeForce RTX 5080, 16303, 16303, [N/A], 550.54.14" ;;
  *)
    echo "+-----------------------------------------------------------------------------+"
    echo "| NVIDIA-SMI 550.54.14    Driver Version: 550.54.14    CUDA Version: 12.4     |" ;;
esac
"#;

#[tokio::test]
async fn inventory_of_a_gpu_host_and_a_cpu_host() {
    use autogit_drivers::remote::inventory::probe;
    let Some(lab) = lab(2) else { return };
    lab.hosts[0].install_script("nvidia-smi", FAKE_NVIDIA_SMI);
    let data = tempfile::tempdir().unwrap();
    let (_, hosts) = trusted(&lab, data.path()).await;
    let gpu = probe(&hosts[0]).await.unwrap();
    assert!(gpu.problems.is_empty(), "{:?}", gpu.problems);
    assert_eq!(gpu.gpus.len(), 2);
    assert_eq!(gpu.gpus[0].name, "NVIDIA GeForce RTX 3090 Ti");
    assert_eq!(gpu.gpus[0].memory_free.0, 20000 << 20);
    assert_eq!(gpu.gpus[1].utilization, None);
    assert_eq!(gpu.cuda.as_deref(), Some("12.4"));
    assert!(gpu.cpus.unwrap() >= 1);
    assert!(gpu.memory.unwrap().0 > 0);
    let cpu = probe(&hosts[1]).await.unwrap();
    assert!(cpu.gpus.is_empty() && cpu.cuda.is_none(), "{cpu:?}");
    assert_eq!(cpu.cpus, gpu.cpus);
    for h in &hosts {
        h.close().await;
    }
}

#[tokio::test]
async fn a_key_the_host_does_not_know_is_an_authentication_error() {
    let Some(lab) = lab(1) else { return };
    let data = tempfile::tempdir().unwrap();
    let (mut cfg, _) = trusted(&lab, data.path()).await;
    let stranger = data.path().join("stranger");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(out.status.success());
    cfg.identity = Some(stranger);
    cfg.control_dir = None;
    let h = Ssh::new(cfg, &lab.hosts[0].addr).unwrap();
    let err = h.run(&argv(&["true"])).await.unwrap_err();
    assert!(matches!(err, RemoteError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("authorized_keys"), "{err}");
}
