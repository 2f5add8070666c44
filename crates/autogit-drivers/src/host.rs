//! Facts about this machine: CPUs, memory, whether we run as root, whether the container engine
//! is rootless. Read from /proc and the environment; nothing is executed.

use autogit_core::plan::HostFacts;
use autogit_core::units::Bytes;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Effective user id (the owner of /proc/self).
pub fn euid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

pub fn memory_total() -> Option<Bytes> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(Bytes(kib * 1024))
}

/// The Docker socket autogit would use: DOCKER_HOST, the rootless socket, the system socket.
pub fn docker_socket(env: &[(String, String)]) -> Option<(PathBuf, bool)> {
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    if let Some(h) = get("DOCKER_HOST")
        && let Some(p) = h.strip_prefix("unix://")
    {
        let rootless = p.starts_with("/run/user/") || p.contains("/podman/");
        return Some((PathBuf::from(p), rootless));
    }
    if let Some(dir) = get("XDG_RUNTIME_DIR") {
        let p = PathBuf::from(dir).join("docker.sock");
        if p.exists() {
            return Some((p, true));
        }
    }
    let p = PathBuf::from("/var/run/docker.sock");
    p.exists().then_some((p, false))
}

pub fn facts(env: &[(String, String)]) -> Option<HostFacts> {
    let cpus = std::thread::available_parallelism().ok()?.get() as f64;
    let memory = memory_total()?;
    let rootless = docker_socket(env)
        .map(|(_, r)| r)
        .or_else(|| euid().map(|u| u != 0));
    Some(HostFacts {
        cpus,
        memory,
        rootless,
    })
}
