//! The NVIDIA container toolkit on a GPU host, as decisions: what one probe found (driver,
//! `nvidia-ctk`, CDI devices, the engine's runtimes, WSL2, the distribution), what is
//! missing with the exact fix, and which `nvidia-ctk` steps `autogit runner prepare HOST`
//! runs (only those not done yet, so running it again changes nothing).
//!
//! Formats, from NVIDIA's and Docker's documentation: `nvidia-ctk --version` prints
//! `NVIDIA Container Toolkit CLI version X.Y.Z` then a commit line; `nvidia-ctk cdi list` logs
//! `Found N CDI devices` on stderr and prints one device name a line (`nvidia.com/gpu=0`,
//! `nvidia.com/gpu=all`) on stdout (container-toolkit "Support for Container Device
//! Interface"); `nvidia-ctk runtime configure --runtime=docker` adds the `nvidia` runtime to
//! `/etc/docker/daemon.json`, which `docker info --format '{{json .Runtimes}}'` lists after
//! the daemon restarts (container-toolkit "Installing the NVIDIA Container Toolkit",
//! "Configuring Docker"); Podman uses CDI and needs no runtime ("Configuring Podman").

use serde::Serialize;

/// The probe: one `sh` script, one line per fact, each starting with `@name`.
pub const PROBE_SCRIPT: &str = r#"echo "@uid $(id -u)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "@os ${ID:-} ${ID_LIKE:-}"; fi
if grep -qi microsoft /proc/version 2>/dev/null || [ -e /dev/dxg ]; then echo "@wsl2"; fi
PATH="$PATH:/usr/lib/wsl/lib"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "@driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
fi
if command -v nvidia-ctk >/dev/null 2>&1; then
  echo "@ctk $(nvidia-ctk --version 2>/dev/null | head -n 1)"
  nvidia-ctk cdi list 2>/dev/null | while IFS= read -r d; do echo "@cdi $d"; done
fi
if command -v docker >/dev/null 2>&1; then
  echo "@docker $(docker info --format '{{json .Runtimes}}' 2>/dev/null)"
elif command -v podman >/dev/null 2>&1; then
  echo "@podman"
fi
"#;

/// The probe as an argument vector (run on the host as the runner's SSH user).
pub fn probe_argv() -> Vec<String> {
    ["sh", "-c", PROBE_SCRIPT].map(str::to_owned).to_vec()
}

/// The container engine on the host, as the probe saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Docker,
    Podman,
}

/// What the probe found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Toolkit {
    /// The NVIDIA driver's version (`nvidia-smi`), if a driver answers.
    pub driver: Option<String>,
    /// `nvidia-ctk`'s version, if installed.
    pub ctk: Option<String>,
    /// CDI device names (`nvidia.com/gpu=0`, …, `nvidia.com/gpu=all`).
    pub cdi_devices: Vec<String>,
    pub engine: Option<Engine>,
    /// Docker's runtimes (`nvidia` once configured).
    pub docker_runtimes: Vec<String>,
    pub wsl2: bool,
    /// `/etc/os-release`'s `ID` and `ID_LIKE` words (`ubuntu debian`).
    pub os: Vec<String>,
    /// Whether the SSH user is root (else the steps run with `sudo -n`).
    pub root: bool,
}

/// Reads the probe's output. Lines it does not know are ignored (a login banner).
pub fn parse_probe(out: &str) -> Toolkit {
    let mut t = Toolkit::default();
    for line in out.lines() {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match key {
            "@uid" => t.root = rest == "0",
            "@os" => t.os = rest.split_whitespace().map(str::to_owned).collect(),
            "@wsl2" => t.wsl2 = true,
            "@driver" if !rest.is_empty() => t.driver = Some(rest.to_owned()),
            "@ctk" => {
                // `NVIDIA Container Toolkit CLI version 1.17.3`
                let v = rest.rsplit_once("version ").map_or(rest, |(_, v)| v).trim();
                if !v.is_empty() {
                    t.ctk = Some(v.to_owned());
                }
            }
            "@cdi" if rest.contains('=') && rest.contains('/') && !rest.contains(' ') => {
                t.cdi_devices.push(rest.to_owned())
            }
            "@docker" => {
                t.engine = Some(Engine::Docker);
                if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(rest) {
                    t.docker_runtimes = m.keys().cloned().collect();
                }
            }
            "@podman" => t.engine = Some(Engine::Podman),
            _ => {}
        }
    }
    t
}

/// Which distribution family the fixes are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Debian,
    Ubuntu,
    Other,
}

fn family(t: &Toolkit) -> Family {
    if t.os.iter().any(|w| w == "ubuntu") {
        Family::Ubuntu
    } else if t.os.iter().any(|w| w == "debian") {
        Family::Debian
    } else {
        Family::Other
    }
}

/// Something the host lacks, why it matters, and the exact commands that fix it there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// `driver`, `nvidia-ctk`, `docker-runtime`, `cdi-spec`, `engine`.
    pub what: &'static str,
    pub why: String,
    /// Commands to run on the host, in order.
    pub fix: Vec<String>,
    /// Whether `autogit runner prepare HOST` does it.
    pub prepare_does_it: bool,
}

/// NVIDIA's apt repository and the toolkit (container-toolkit install guide, "With apt:
/// Ubuntu, Debian"); the same inside WSL 2's Ubuntu.
const CTK_APT: [&str; 3] = [
    "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | sudo gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg && curl -s -L https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' | sudo tee /etc/apt/sources.list.d/nvidia-container-toolkit.list",
    "sudo apt-get update",
    "sudo apt-get install -y nvidia-container-toolkit",
];

/// Where `prepare` writes the CDI specification: `/etc/cdi` survives a reboot
/// (`/var/run/cdi` is cleared).
pub const CDI_SPEC: &str = "/etc/cdi/nvidia.yaml";

/// What the host lacks for GPU jobs in containers, with the fix for its distribution
/// (Debian, Ubuntu, WSL 2).
pub fn missing(t: &Toolkit) -> Vec<Missing> {
    let mut out = Vec::new();
    let fam = family(t);
    if t.driver.is_none() {
        let fix: Vec<String> = if t.wsl2 {
            vec![
                "install the NVIDIA driver for Windows on the Windows host (https://www.nvidia.com/Download/index.aspx); do not install a Linux NVIDIA driver inside WSL 2".into(),
                "wsl --shutdown   # from Windows, then start the distribution again: nvidia-smi is /usr/lib/wsl/lib/nvidia-smi".into(),
            ]
        } else {
            match fam {
                Family::Ubuntu => vec!["sudo ubuntu-drivers install".into(), "sudo reboot".into()],
                Family::Debian => vec![
                    "sudo sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' /etc/apt/sources.list.d/debian.sources   # or add `contrib non-free non-free-firmware` to /etc/apt/sources.list".into(),
                    "sudo apt-get update".into(),
                    "sudo apt-get install -y nvidia-driver firmware-misc-nonfree".into(),
                    "sudo reboot".into(),
                ],
                Family::Other => vec![
                    "install the NVIDIA driver with the distribution's package manager (https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/)".into(),
                ],
            }
        };
        out.push(Missing {
            what: "driver",
            why: "no NVIDIA driver answers (`nvidia-smi` is missing or fails)".into(),
            fix,
            prepare_does_it: false,
        });
    }
    if t.ctk.is_none() {
        let fix = match (fam, t.wsl2) {
            (Family::Debian | Family::Ubuntu, _) | (_, true) => {
                CTK_APT.iter().map(|s| (*s).to_owned()).collect()
            }
            (Family::Other, false) => vec![
                "install nvidia-container-toolkit from NVIDIA's repository for this distribution (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html)".into(),
            ],
        };
        out.push(Missing {
            what: "nvidia-ctk",
            why: "the NVIDIA container toolkit (`nvidia-ctk`) is not installed".into(),
            fix,
            prepare_does_it: false,
        });
    }
    match t.engine {
        None => out.push(Missing {
            what: "engine",
            why: "neither docker nor podman is installed".into(),
            fix: vec!["sudo apt-get install -y docker.io   # or podman".into()],
            prepare_does_it: false,
        }),
        Some(Engine::Docker) if !t.docker_runtimes.iter().any(|r| r == "nvidia") => {
            out.push(Missing {
                what: "docker-runtime",
                why: "Docker has no `nvidia` runtime: `--gpus` fails".into(),
                fix: configure_fix(t),
                prepare_does_it: true,
            })
        }
        _ => {}
    }
    if t.cdi_devices.is_empty() {
        out.push(Missing {
            what: "cdi-spec",
            why: "no CDI specification names the GPUs (Podman's `--device nvidia.com/gpu=N`)"
                .into(),
            fix: vec![format!("sudo nvidia-ctk cdi generate --output={CDI_SPEC}")],
            prepare_does_it: true,
        });
    }
    out
}

fn restart_docker(t: &Toolkit) -> &'static str {
    if t.wsl2 {
        // WSL 2 without systemd has the SysV script only.
        "systemctl restart docker 2>/dev/null || service docker restart"
    } else {
        "systemctl restart docker"
    }
}

fn configure_fix(t: &Toolkit) -> Vec<String> {
    vec![
        "sudo nvidia-ctk runtime configure --runtime=docker".into(),
        format!("sudo sh -c '{}'", restart_docker(t)),
    ]
}

/// A step `prepare` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// `nvidia-ctk runtime configure --runtime=docker`.
    ConfigureDocker,
    /// Restarts dockerd so it reads the runtime (running containers stop unless
    /// `live-restore` is on).
    RestartDocker,
    /// `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`.
    GenerateCdi,
}

/// The steps `prepare` runs on a host, in order: only what is not done yet. `Err`: what it
/// cannot do for the host (a driver, the toolkit, an engine), which comes first.
pub fn prepare_steps(t: &Toolkit) -> Result<Vec<Step>, Vec<Missing>> {
    let all = missing(t);
    let blocking: Vec<Missing> = all.iter().filter(|m| !m.prepare_does_it).cloned().collect();
    if !blocking.is_empty() {
        return Err(blocking);
    }
    let mut steps = Vec::new();
    if all.iter().any(|m| m.what == "docker-runtime") {
        steps.extend([Step::ConfigureDocker, Step::RestartDocker]);
    }
    if all.iter().any(|m| m.what == "cdi-spec") {
        steps.push(Step::GenerateCdi);
    }
    Ok(steps)
}

/// The command of a step on the host: as root, else through `sudo -n` (no password prompt:
/// a missing sudo rule fails at once and says so).
pub fn step_argv(step: Step, t: &Toolkit) -> Vec<String> {
    let cmd: Vec<String> = match step {
        Step::ConfigureDocker => ["nvidia-ctk", "runtime", "configure", "--runtime=docker"]
            .map(str::to_owned)
            .to_vec(),
        Step::RestartDocker => vec!["sh".into(), "-c".into(), restart_docker(t).into()],
        Step::GenerateCdi => vec![
            "nvidia-ctk".into(),
            "cdi".into(),
            "generate".into(),
            format!("--output={CDI_SPEC}"),
        ],
    };
    if t.root {
        cmd
    } else {
        ["sudo".to_owned(), "-n".to_owned()]
            .into_iter()
            .chain(cmd)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_only_what_is_missing() {
        let ready = Toolkit {
            driver: Some("550.54.14".into()),
            ctk: Some("1.17.3".into()),
            cdi_devices: vec!["nvidia.com/gpu=0".into(), "nvidia.com/gpu=all".into()],
            engine: Some(Engine::Docker),
            docker_runtimes: vec!["nvidia".into(), "runc".into()],
            wsl2: false,
            os: vec!["debian".into()],
            root: true,
        };
        assert_eq!(prepare_steps(&ready), Ok(vec![]));
        let no_runtime = Toolkit {
            docker_runtimes: vec!["runc".into()],
            ..ready.clone()
        };
        assert_eq!(
            prepare_steps(&no_runtime),
            Ok(vec![Step::ConfigureDocker, Step::RestartDocker])
        );
        let podman_no_cdi = Toolkit {
            engine: Some(Engine::Podman),
            cdi_devices: vec![],
            root: false,
            ..ready.clone()
        };
        assert_eq!(prepare_steps(&podman_no_cdi), Ok(vec![Step::GenerateCdi]));
        assert_eq!(
            step_argv(Step::GenerateCdi, &podman_no_cdi),
            [
                "sudo",
                "-n",
                "nvidia-ctk",
                "cdi",
                "generate",
                "--output=/etc/cdi/nvidia.yaml"
            ]
        );
        let no_ctk = Toolkit {
            ctk: None,
            cdi_devices: vec![],
            ..ready.clone()
        };
        let blocked = prepare_steps(&no_ctk).unwrap_err();
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].what, "nvidia-ctk");
        assert!(blocked[0].fix[2].contains("apt-get install -y nvidia-container-toolkit"));
    }
}
