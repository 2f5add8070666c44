//! A host's inventory over [`RemoteExec`]: one round trip running
//! [`autogit_core::inventory::PROBE_SCRIPT`] with `sh -c`, parsed by
//! [`autogit_core::inventory::parse_probe`].

use super::{RemoteError, RemoteExec};
use autogit_core::inventory::{Inventory, PROBE_SCRIPT, parse_probe};

pub async fn probe<R: RemoteExec>(host: &R) -> Result<Inventory, RemoteError> {
    let argv = ["sh".to_owned(), "-c".to_owned(), PROBE_SCRIPT.to_owned()];
    let out = host.run(&argv).await?;
    let mut inv = parse_probe(&out.stdout);
    if !out.success() && !out.stdout.contains("@@end") {
        inv.problems.push(format!(
            "the probe exited with {:?}: {}",
            out.code,
            out.stderr.trim()
        ));
    }
    Ok(inv)
}

/// What `autogit agent` announces about this machine: its host name, how many NVIDIA GPUs
/// `nvidia-smi -L` lists, and whether it runs under WSL2 (`/proc/version` or `/dev/dxg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFacts {
    pub hostname: String,
    pub gpus: usize,
    pub wsl2: bool,
}

/// This machine's [`LocalFacts`].
pub fn local_facts() -> LocalFacts {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "autogit-host".to_owned());
    let gpus = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        });
    let wsl2 = std::fs::read_to_string("/proc/version")
        .is_ok_and(|v| v.to_ascii_lowercase().contains("microsoft"))
        || std::path::Path::new("/dev/dxg").exists();
    LocalFacts {
        hostname,
        gpus,
        wsl2,
    }
}
