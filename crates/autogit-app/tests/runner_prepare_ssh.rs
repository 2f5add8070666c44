//! `runner prepare`: the NVIDIA container toolkit on runner hosts, through the runner
//! controller against a real `sshd` in a network namespace per host (root, iproute2,
//! openssh-server), with stand-in `nvidia-smi`, `nvidia-ctk`, `docker` and `systemctl` that
//! print the outputs in `tests/fixtures/nvidia/` (formats from NVIDIA's and Docker's
//! documentation: see its README) and keep what was configured in files. No GPU can run here.

mod support;

use autogit_app::Event;
use autogit_app::runners::RunnerController;
use autogit_app::runners::discover::trust;
use autogit_core::toolkit::{Step, parse_probe};
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nvidia")
}

/// Installs the stand-ins on a host; `with_ctk`: whether the toolkit is installed.
fn install(host: &autogit_drivers::testing::netns::LabHost, with_ctk: bool) {
    let (fx, st) = (
        fixtures().display().to_string(),
        host.dir.display().to_string(),
    );
    host.install_script(
        "nvidia-smi",
        &format!(
            "#!/bin/sh\ncase \"$*\" in *driver_version*) cat {fx}/driver.csv ;; *) exit 9 ;; esac\n"
        ),
    );
    host.install_script(
        "docker",
        &format!(
            "#!/bin/sh\n[ \"$1\" = info ] || exit 9\nif [ -e {st}/daemon-restarted ]; then cat {fx}/docker-runtimes-nvidia.json; else cat {fx}/docker-runtimes.json; fi\n"
        ),
    );
    host.install_script(
        "systemctl",
        &format!(
            "#!/bin/sh\necho \"systemctl $*\" >> {st}/steps\n[ \"$*\" = \"restart docker\" ] && [ -e {st}/daemon-json ] && : > {st}/daemon-restarted\nexit 0\n"
        ),
    );
    if with_ctk {
        host.install_script(
            "nvidia-ctk",
            &format!(
                r#"#!/bin/sh
case "$1" in
  --version) cat {fx}/ctk-version.txt; exit 0 ;;
esac
case "$1 $2" in
  "cdi list") cat {fx}/cdi-list.stderr >&2; [ -e {st}/cdi-spec ] && cat {fx}/cdi-list.stdout; exit 0 ;;
  "cdi generate") echo "nvidia-ctk $*" >> {st}/steps; : > {st}/cdi-spec ;;
  "runtime configure") echo "nvidia-ctk $*" >> {st}/steps; : > {st}/daemon-json ;;
  *) exit 9 ;;
esac
"#
            ),
        );
    }
}

fn steps(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("steps"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_configures_what_is_missing_once_and_reports_what_it_cannot_do() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(2).unwrap_or_else(|e| panic!("{e}"));
    let (gpu, bare) = (&lab.hosts[0], &lab.hosts[1]);
    install(gpu, true);
    install(bare, false);
    let data = tempfile::tempdir().unwrap();
    let yml = format!(
        "runners:\n  gpu:\n    - name: g1\n      host: {}\n      user: root\n    - name: g2\n      host: {}\n      user: root\n",
        gpu.addr, bare.addr
    );
    let settings = support::settings(&yml, "", data.path());
    let cfg = lab.ssh_config(data.path());
    for h in [gpu, bare] {
        trust(&cfg, &h.addr, false).await.unwrap();
    }
    let (bus, clock) = support::bus_at(1_764_000_000);
    let mut rx = bus.subscribe();
    let runners =
        RunnerController::new(settings, bus.clone(), Arc::new(clock)).with_ssh_config(cfg);

    // Detection by runner name: the driver and toolkit are there, Docker has no nvidia
    // runtime and no CDI specification names the GPUs.
    let found = runners.toolkit("g1").await.unwrap();
    assert_eq!(found.host, gpu.addr);
    assert_eq!(found.toolkit.driver.as_deref(), Some("550.54.14"));
    assert_eq!(found.toolkit.ctk.as_deref(), Some("1.17.3"));
    assert!(found.toolkit.root);
    assert!(found.toolkit.cdi_devices.is_empty());
    let what: Vec<&str> = found.missing.iter().map(|m| m.what).collect();
    assert_eq!(what, ["docker-runtime", "cdi-spec"]);
    assert!(found.missing[0].fix[0].contains("nvidia-ctk runtime configure --runtime=docker"));
    assert!(steps(&gpu.dir).is_empty(), "detection changes nothing");

    // Prepare by host address: configure, restart dockerd, generate the CDI specification.
    let done = runners.prepare(&gpu.addr).await.unwrap();
    let ran: Vec<Step> = done.ran.iter().map(|s| s.step).collect();
    assert_eq!(
        ran,
        [
            Step::ConfigureDocker,
            Step::RestartDocker,
            Step::GenerateCdi
        ]
    );
    assert!(done.ran.iter().all(|s| s.ok), "{:?}", done.ran);
    assert_eq!(
        steps(&gpu.dir),
        [
            "nvidia-ctk runtime configure --runtime=docker",
            "systemctl restart docker",
            "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
        ]
    );
    assert!(done.after.missing.is_empty(), "{:?}", done.after.missing);
    assert!(
        done.after
            .toolkit
            .docker_runtimes
            .contains(&"nvidia".to_owned())
    );
    assert_eq!(
        done.after.toolkit.cdi_devices,
        [
            "nvidia.com/gpu=0",
            "nvidia.com/gpu=GPU-3f2c1a9e-4b1d-8c2e-9a7f-1e5d6c7b8a90",
            "nvidia.com/gpu=all"
        ]
    );
    // Idempotent: a second run runs nothing.
    let again = runners.prepare("g1").await.unwrap();
    assert!(again.ran.is_empty(), "{:?}", again.ran);
    assert_eq!(steps(&gpu.dir).len(), 3);

    // No toolkit on the other host: nothing is run, the error carries NVIDIA's apt steps
    // (this machine's os-release is Debian's).
    let e = runners.prepare("g2").await.unwrap_err().to_string();
    assert!(e.contains("`nvidia-ctk`) is not installed"), "{e}");
    assert!(
        e.contains("sudo apt-get install -y nvidia-container-toolkit")
            && e.contains("nvidia.github.io/libnvidia-container/gpgkey"),
        "{e}"
    );
    assert!(steps(&bare.dir).is_empty());

    let events = support::drain(&mut rx);
    let prepared: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::RunnerHostPrepared { .. }))
        .collect();
    assert_eq!(
        prepared.len(),
        1,
        "one event for the run that changed something"
    );
}

/// A WSL 2 host with the Windows driver and no toolkit, as the probe prints it: the fixes are
/// NVIDIA's apt steps inside the distribution; a missing driver would be the Windows one.
#[test]
fn a_wsl2_host_gets_the_wsl2_fixes() {
    let text = std::fs::read_to_string(fixtures().join("probe-wsl2.txt")).unwrap();
    let mut t = parse_probe(&text);
    assert!(t.wsl2 && !t.root);
    assert_eq!(t.driver.as_deref(), Some("560.94"));
    let missing = autogit_core::toolkit::missing(&t);
    let ctk = missing.iter().find(|m| m.what == "nvidia-ctk").unwrap();
    assert!(
        ctk.fix
            .iter()
            .any(|f| f.contains("apt-get install -y nvidia-container-toolkit"))
    );
    let runtime = missing.iter().find(|m| m.what == "docker-runtime").unwrap();
    assert!(
        runtime.fix[1].contains("service docker restart"),
        "WSL 2 without systemd: {:?}",
        runtime.fix
    );
    t.driver = None;
    let driver = autogit_core::toolkit::missing(&t)
        .into_iter()
        .find(|m| m.what == "driver")
        .unwrap();
    assert!(
        driver.fix[0].contains("driver for Windows"),
        "{:?}",
        driver.fix
    );
    assert!(driver.fix[0].contains("do not install a Linux NVIDIA driver inside WSL 2"));
}
