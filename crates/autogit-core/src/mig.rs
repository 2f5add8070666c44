//! Multi-Instance GPU devices, from `nvidia-smi -L` (run by the inventory probe). Pure.
//!
//! With MIG enabled, `nvidia-smi -L` lists each GPU and, under it, its MIG devices (one per
//! compute instance), as in NVIDIA's MIG user guide:
//!
//! ```text
//! GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
//!   MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71585b8ba)
//!   MIG 1g.5gb      Device  1: (UUID: MIG-cba663e8-9bed-5b7b-b4a0-dd1fd3b1b1a1)
//! ```
//!
//! (R450/R460 drivers wrote `MIG 1g.5gb Device 0: (UUID: MIG-GPU-<gpu uuid>/1/0)`; both are
//! read.) A job placed on a MIG device gets it by its UUID (`--gpus "device=MIG-…"`, which the
//! NVIDIA runtime turns into `NVIDIA_VISIBLE_DEVICES=MIG-…`). The device's memory is read
//! from its profile name (`3g.20gb`: 20 GB, counted as 20·10⁹ bytes, never more than the
//! instance has); compute instances that split one GPU instance (`1c.3g.20gb`) share its
//! memory, so each counts as the GPU instance's memory divided by how many of them the GPU
//! lists with that profile.

use crate::units::Bytes;
use serde::{Deserialize, Serialize};

/// One MIG device (a compute instance) of a GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigDevice {
    /// The GPU's index (`nvidia-smi`'s order).
    pub gpu: u32,
    /// The device's index under its GPU.
    pub device: u32,
    /// `3g.20gb`, `1c.3g.20gb`.
    pub profile: String,
    /// `MIG-…`: what the job is given.
    pub uuid: String,
    /// Memory the job may count on.
    pub memory: Bytes,
}

/// Memory of a profile's GPU instance (`3g.20gb` → 20 GB), and whether the profile is a
/// compute instance sharing it (`1c.3g.20gb`).
fn profile_memory(profile: &str) -> Option<(u64, bool)> {
    let parts: Vec<&str> = profile.split('.').collect();
    let mem = parts.last()?.strip_suffix("gb")?;
    let gb: u64 = mem.parse().ok().filter(|g| *g > 0 && *g <= 1024)?;
    let slices = |p: &str, unit: char| {
        p.strip_suffix(unit)
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| (1..=8).contains(&n)))
    };
    match parts.as_slice() {
        [g, _] if slices(g, 'g') => Some((gb * 1_000_000_000, false)),
        [c, g, _] if slices(c, 'c') && slices(g, 'g') => Some((gb * 1_000_000_000, true)),
        _ => None,
    }
}

/// Reads `nvidia-smi -L`: the MIG devices, and a problem line for each MIG line that does not
/// read. GPUs without MIG devices give none.
pub fn parse_list(text: &str) -> (Vec<MigDevice>, Vec<String>) {
    let mut devices: Vec<(MigDevice, bool)> = Vec::new();
    let mut problems = Vec::new();
    let mut gpu: Option<u32> = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("GPU ") {
            gpu = rest.split(':').next().and_then(|i| i.trim().parse().ok());
            if gpu.is_none() {
                problems.push(format!("nvidia-smi -L line {}: {t:?}", n + 1));
            }
            continue;
        }
        let Some(rest) = t.strip_prefix("MIG ") else {
            continue;
        };
        let parsed = (|| {
            let g = gpu?;
            let mut words = rest.split_whitespace();
            let profile = words.next()?.to_owned();
            if words.next()? != "Device" {
                return None;
            }
            let device: u32 = words.next()?.strip_suffix(':')?.parse().ok()?;
            let uuid = rest
                .split_once("(UUID: ")?
                .1
                .strip_suffix(')')?
                .trim()
                .to_owned();
            let uuid_ok = uuid.starts_with("MIG-")
                && uuid.len() <= 96
                && uuid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/".contains(&b));
            if !uuid_ok {
                return None;
            }
            let (memory, shared) = profile_memory(&profile)?;
            Some((
                MigDevice {
                    gpu: g,
                    device,
                    profile,
                    uuid,
                    memory: Bytes(memory),
                },
                shared,
            ))
        })();
        match parsed {
            Some(d) => devices.push(d),
            None => problems.push(format!("nvidia-smi -L line {}: {t:?}", n + 1)),
        }
    }
    // Compute instances of one GPU instance share its memory.
    let counts: Vec<u64> = devices
        .iter()
        .map(|(d, shared)| {
            if *shared {
                devices
                    .iter()
                    .filter(|(o, _)| o.gpu == d.gpu && o.profile == d.profile)
                    .count() as u64
            } else {
                1
            }
        })
        .collect();
    let out = devices
        .into_iter()
        .zip(counts)
        .map(|((mut d, _), n)| {
            d.memory = Bytes(d.memory.0 / n.max(1));
            d
        })
        .collect();
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_with_and_without_mig() {
        let text = "\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71585b8ba)
  MIG 2g.10gb     Device  1: (UUID: MIG-cba663e8-9bed-5b7b-b4a0-dd1fd3b1b1a1)
  MIG 1g.5gb      Device  2: (UUID: MIG-1d4b3e2a-99c1-5f07-a6c3-3f6bb7f0a2d4)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-0b2d7c4e-1f3a-4c5d-8e9f-a1b2c3d4e5f6)
GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4)
  MIG 1c.3g.40gb  Device  0: (UUID: MIG-aaaaaaaa-bbbb-5ccc-8ddd-eeeeeeeeeeee)
  MIG 1c.3g.40gb  Device  1: (UUID: MIG-aaaaaaaa-bbbb-5ccc-8ddd-ffffffffffff)
  MIG 1g.5gb Device 2: (UUID: MIG-GPU-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4/7/0)
  MIG 9z.5gb      Device  3: (UUID: MIG-bad)
  MIG 1g.5gb      Device  4: (UUID: GPU-not-a-mig)
";
        let (devices, problems) = parse_list(text);
        let got: Vec<String> = devices
            .iter()
            .map(|d| {
                format!(
                    "{}:{} {} {} {}",
                    d.gpu, d.device, d.profile, d.memory.0, d.uuid
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "0:0 3g.20gb 20000000000 MIG-c6d4f1ef-42e4-5de3-91c7-45d71585b8ba",
                "0:1 2g.10gb 10000000000 MIG-cba663e8-9bed-5b7b-b4a0-dd1fd3b1b1a1",
                "0:2 1g.5gb 5000000000 MIG-1d4b3e2a-99c1-5f07-a6c3-3f6bb7f0a2d4",
                "2:0 1c.3g.40gb 20000000000 MIG-aaaaaaaa-bbbb-5ccc-8ddd-eeeeeeeeeeee",
                "2:1 1c.3g.40gb 20000000000 MIG-aaaaaaaa-bbbb-5ccc-8ddd-ffffffffffff",
                "2:2 1g.5gb 5000000000 MIG-GPU-9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4/7/0",
            ]
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("9z.5gb"), "{problems:?}");
        // No MIG: nothing, and no problems.
        let (d, p) = parse_list(
            "GPU 0: NVIDIA GeForce RTX 3090 Ti (UUID: GPU-1234)\nGPU 1: NVIDIA GeForce RTX 4090 (UUID: GPU-5678)\n",
        );
        assert!(d.is_empty() && p.is_empty());
        assert_eq!(parse_list("").0, []);
    }
}
