//! What a runner host has: CPUs, memory, container engine, GPUs (NVIDIA), WSL2. The driver
//! runs [`PROBE_SCRIPT`] on the host (one round trip) and hands its output to [`parse_probe`];
//! everything here is parsing, tested with recorded and malformed outputs.

use crate::units::Bytes;
use serde::{Deserialize, Serialize};

/// The `nvidia-smi` query autogit runs (CSV, no header, no units: MiB and percent).
pub const NVIDIA_SMI_QUERY: &str =
    "--query-gpu=name,memory.total,memory.free,utilization.gpu,driver_version";

/// Run with `sh -c` on the host; prints `@@section` markers followed by each tool's output.
/// Missing tools leave their section empty.
pub const PROBE_SCRIPT: &str = "\
echo @@nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null
echo @@meminfo; grep '^MemTotal:' /proc/meminfo 2>/dev/null
echo @@version; cat /proc/version 2>/dev/null
echo @@dxg; [ -e /dev/dxg ] && echo present
echo @@docker; docker version --format '{{.Server.Version}}' 2>/dev/null
echo @@podman; podman version --format '{{.Client.Version}}' 2>/dev/null
echo @@gpus; nvidia-smi --query-gpu=name,memory.total,memory.free,utilization.gpu,driver_version --format=csv,noheader,nounits 2>&1
echo @@smi; nvidia-smi 2>/dev/null | head -n 6
echo @@topo; nvidia-smi topo -m 2>/dev/null
echo @@mig; nvidia-smi -L 2>/dev/null
echo @@end
";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Position in `nvidia-smi`'s list (what `--gpus device=N` means).
    pub index: u32,
    pub name: String,
    pub memory_total: Bytes,
    pub memory_free: Bytes,
    /// Percent; `None` where the driver says `[N/A]` (common under WSL2).
    pub utilization: Option<u8>,
    pub driver: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Docker,
    Podman,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub kind: EngineKind,
    pub version: String,
}

/// A host's inventory. `problems` says what could not be read, one line each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub cpus: Option<u32>,
    pub memory: Option<Bytes>,
    pub wsl2: bool,
    /// Docker when its daemon answers, else Podman when installed.
    pub engine: Option<EngineInfo>,
    pub gpus: Vec<Gpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// The links between its GPUs (`nvidia-smi topo -m`), with two GPUs or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<crate::topology::Topology>,
    /// Its MIG devices (`nvidia-smi -L`), where MIG is enabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mig: Vec<crate::mig::MigDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Parses `nvidia-smi --query-gpu=… --format=csv,noheader,nounits`. Good lines become GPUs
/// (indexed by position among all non-empty lines); bad ones become problem lines.
pub fn parse_gpus(text: &str) -> (Vec<Gpu>, Vec<String>) {
    let mut gpus = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        match parse_gpu_line(index as u32, line) {
            Ok(g) => gpus.push(g),
            Err(why) => problems.push(format!("nvidia-smi line {}: {why}: {line:?}", index + 1)),
        }
    }
    (gpus, problems)
}

fn parse_gpu_line(index: u32, line: &str) -> Result<Gpu, String> {
    // The name may contain commas; the four numeric/driver fields are at the end.
    let mut rest: Vec<&str> = line.rsplitn(5, ',').map(str::trim).collect();
    if rest.len() != 5 {
        return Err(format!("expected 5 fields, found {}", rest.len()));
    }
    rest.reverse();
    let [name, total, free, util, driver] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
    if name.is_empty() {
        return Err("empty GPU name".into());
    }
    let mib = |field: &str, v: &str| {
        v.parse::<u64>()
            .map(Bytes::mib)
            .map_err(|_| format!("{field} `{v}` is not a number of MiB"))
    };
    let memory_total = mib("memory.total", total)?;
    let memory_free = mib("memory.free", free)?;
    if memory_free > memory_total {
        return Err("memory.free is larger than memory.total".into());
    }
    let utilization = match util {
        "[N/A]" | "N/A" | "[Not Supported]" => None,
        v => match v.parse::<u8>() {
            Ok(p) if p <= 100 => Some(p),
            _ => return Err(format!("utilization.gpu `{v}` is not a percentage")),
        },
    };
    if driver.is_empty() || !driver.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("driver_version `{driver}` is not a version"));
    }
    Ok(Gpu {
        index,
        name: name.to_owned(),
        memory_total,
        memory_free,
        utilization,
        driver: driver.to_owned(),
    })
}

/// `CUDA Version: 12.4` from `nvidia-smi`'s header.
pub fn parse_cuda_version(header: &str) -> Option<String> {
    let at = header.find("CUDA Version:")? + "CUDA Version:".len();
    let v: String = header[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

/// WSL2: the kernel says so in `/proc/version` (`…microsoft-standard-WSL2…`), or `/dev/dxg`
/// (the GPU paravirtualisation device) exists.
pub fn is_wsl2(proc_version: &str, dxg_exists: bool) -> bool {
    dxg_exists || proc_version.to_ascii_lowercase().contains("microsoft")
}

/// `MemTotal:  131795244 kB`.
pub fn parse_meminfo(text: &str) -> Option<Bytes> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => n.checked_mul(1024).map(Bytes),
        _ => None,
    }
}

/// A version as `docker version --format` prints it (`27.3.1`, `5.4.2`, `28.0.0-rc.1`).
fn parse_version(text: &str) -> Option<String> {
    let v = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    (v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+~".contains(&b)))
    .then(|| v.to_owned())
}

/// Splits [`PROBE_SCRIPT`]'s output into sections and reads each.
pub fn parse_probe(text: &str) -> Inventory {
    let mut inv = Inventory::default();
    let section = |name: &str| -> Option<&str> {
        let marker = format!("@@{name}\n");
        let start = text.find(&marker)? + marker.len();
        let end = text[start..].find("@@").map_or(text.len(), |e| start + e);
        Some(&text[start..end])
    };
    if section("end").is_none() && !text.contains("@@end") {
        inv.problems
            .push("the probe did not finish (output cut short)".to_owned());
    }
    inv.cpus = section("nproc")
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n > 0);
    if inv.cpus.is_none() {
        inv.problems.push("CPU count unknown".to_owned());
    }
    inv.memory = section("meminfo").and_then(parse_meminfo);
    if inv.memory.is_none() {
        inv.problems
            .push("memory unknown (/proc/meminfo)".to_owned());
    }
    inv.wsl2 = is_wsl2(
        section("version").unwrap_or(""),
        section("dxg").is_some_and(|s| s.trim() == "present"),
    );
    inv.engine = if let Some(v) = section("docker").and_then(parse_version) {
        Some(EngineInfo {
            kind: EngineKind::Docker,
            version: v,
        })
    } else {
        section("podman")
            .and_then(parse_version)
            .map(|v| EngineInfo {
                kind: EngineKind::Podman,
                version: v,
            })
    };
    let gpu_text = section("gpus").unwrap_or("");
    let not_installed = gpu_text.contains("not found") || gpu_text.trim().is_empty();
    if !not_installed {
        let (gpus, problems) = parse_gpus(gpu_text);
        inv.gpus = gpus;
        inv.problems.extend(problems);
        inv.cuda = section("smi").and_then(parse_cuda_version);
        let topo = section("topo").unwrap_or("");
        // A driver too old for `topo -m` prints no matrix: nothing to say. A matrix that does
        // not parse is a problem; placement then goes by VRAM alone.
        if inv.gpus.len() > 1 && topo.contains("GPU0") {
            match crate::topology::parse_topo(topo) {
                Ok(t) => inv.topology = Some(t),
                Err(e) => inv.problems.push(format!("nvidia-smi topo -m: {e}")),
            }
        }
        let (mig, problems) = crate::mig::parse_list(section("mig").unwrap_or(""));
        inv.mig = mig;
        inv.problems.extend(problems);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, GPUs parsed as "index name total/free util driver", problem count)
    #[test]
    fn nvidia_smi_lines() {
        let cases: &[(&str, &[&str], usize)] = &[
            (
                "NVIDIA GeForce RTX 3090 Ti, 24564, 23000, 3, 550.54.14\n",
                &["0 NVIDIA GeForce RTX 3090 Ti 24564/23000 Some(3) 550.54.14"],
                0,
            ),
            (
                "NVIDIA GeForce RTX 5080, 16303, 16000, 0, 572.16\nNVIDIA H100 80GB HBM3, 81559, 81000, 100, 572.16\n",
                &[
                    "0 NVIDIA GeForce RTX 5080 16303/16000 Some(0) 572.16",
                    "1 NVIDIA H100 80GB HBM3 81559/81000 Some(100) 572.16",
                ],
                0,
            ),
            // WSL2 often reports no utilization.
            (
                "NVIDIA GeForce RTX 5080, 16303, 15000, [N/A], 572.16",
                &["0 NVIDIA GeForce RTX 5080 16303/15000 None 572.16"],
                0,
            ),
            // A comma in the name.
            (
                "Odd, Name, 100, 50, 1, 1.0",
                &["0 Odd, Name 100/50 Some(1) 1.0"],
                0,
            ),
            ("", &[], 0),
            ("\n\n", &[], 0),
            // Malformed lines: reported, the good ones kept (indexes keep their position).
            (
                "GPU, 100, 50, 1\nB, 10, 5, 0, 1.0",
                &["1 B 10/5 Some(0) 1.0"],
                1,
            ),
            ("GPU, lots, 50, 1, 1.0", &[], 1),
            ("GPU, 100, 500, 1, 1.0", &[], 1),
            ("GPU, 100, 50, 101, 1.0", &[], 1),
            ("GPU, 100, 50, -1, 1.0", &[], 1),
            ("GPU, 100, 50, 1, ", &[], 1),
            (", 100, 50, 1, 1.0", &[], 1),
            ("GPU, 100 MiB, 50, 1, 1.0", &[], 1),
            (
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
                &[],
                1,
            ),
        ];
        for (input, want, problems) in cases {
            let (gpus, p) = parse_gpus(input);
            let got: Vec<String> = gpus
                .iter()
                .map(|g| {
                    format!(
                        "{} {} {}/{} {:?} {}",
                        g.index,
                        g.name,
                        g.memory_total.0 >> 20,
                        g.memory_free.0 >> 20,
                        g.utilization,
                        g.driver
                    )
                })
                .collect();
            assert_eq!(&got, want, "{input:?}");
            assert_eq!(p.len(), *problems, "{input:?}: {p:?}");
        }
    }

    #[test]
    fn cuda_wsl_memory() {
        let header = "+-----------------------------------------------------------------------------------------+\n| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |\n";
        assert_eq!(parse_cuda_version(header).as_deref(), Some("12.4"));
        assert_eq!(parse_cuda_version("no gpu"), None);
        assert_eq!(parse_cuda_version("CUDA Version: N/A"), None);
        assert!(is_wsl2(
            "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@...)",
            false
        ));
        assert!(is_wsl2("Linux version 6.1.0-18-amd64", true));
        assert!(!is_wsl2(
            "Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)",
            false
        ));
        assert_eq!(
            parse_meminfo("MemTotal:       16384 kB\n"),
            Some(Bytes::mib(16))
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: lots kB\n"), None);
    }

    #[test]
    fn probe_output() {
        let text = "@@nproc\n16\n@@meminfo\nMemTotal:       65536000 kB\n@@version\nLinux version 5.15.153.1-microsoft-standard-WSL2\n@@dxg\npresent\n@@docker\n@@podman\n5.4.2\n@@gpus\nNVIDIA GeForce RTX 5080, 16303, 16000, [N/A], 572.16\n@@smi\n| NVIDIA-SMI 570.86.10   Driver Version: 572.16   CUDA Version: 12.8 |\n@@end\n";
        let inv = parse_probe(text);
        assert_eq!(inv.cpus, Some(16));
        assert_eq!(inv.memory, Some(Bytes(65_536_000 * 1024)));
        assert!(inv.wsl2);
        assert_eq!(
            inv.engine,
            Some(EngineInfo {
                kind: EngineKind::Podman,
                version: "5.4.2".into()
            })
        );
        assert_eq!(inv.gpus.len(), 1);
        assert_eq!(inv.cuda.as_deref(), Some("12.8"));
        assert!(inv.problems.is_empty(), "{:?}", inv.problems);

        // Two GPUs with an NVLink bridge: the matrix is read; a broken one is a problem.
        let two = |topo: &str| {
            format!(
                "@@nproc\n8\n@@meminfo\nMemTotal: 1024 kB\n@@version\nLinux\n@@dxg\n@@docker\n27.3.1\n@@podman\n@@gpus\nNVIDIA GeForce RTX 3090, 24576, 24000, 0, 550.54.14\nNVIDIA GeForce RTX 3090, 24576, 24000, 0, 550.54.14\n@@smi\n@@topo\n{topo}@@end\n"
            )
        };
        let inv = parse_probe(&two(
            "\tGPU0\tGPU1\tCPU Affinity\nGPU0\t X \tNV4\t0-7\nGPU1\tNV4\t X \t0-7\n",
        ));
        assert_eq!(
            inv.topology.as_ref().and_then(|t| t.link(0, 1)),
            Some(crate::topology::Link::NvLink(4))
        );
        assert!(inv.problems.is_empty(), "{:?}", inv.problems);
        let inv = parse_probe(&two("\tGPU0\tGPU1\nGPU0\t X \t???\n"));
        assert_eq!(inv.topology, None);
        assert!(
            inv.problems[0].contains("nvidia-smi topo -m"),
            "{:?}",
            inv.problems
        );
        // A driver without `topo -m` (or a stand-in) prints no matrix: nothing to report.
        let inv = parse_probe(&two("| NVIDIA-SMI 550.54.14 |\n"));
        assert!(inv.topology.is_none() && inv.problems.is_empty());

        let bare = "@@nproc\n2\n@@meminfo\nMemTotal: 1024 kB\n@@version\nLinux version 6.1\n@@dxg\n@@docker\n27.3.1\n@@podman\n@@gpus\nsh: 1: nvidia-smi: not found\n@@smi\n@@end\n";
        let inv = parse_probe(bare);
        assert_eq!(inv.engine.unwrap().kind, EngineKind::Docker);
        assert!(inv.gpus.is_empty() && !inv.wsl2 && inv.problems.is_empty());

        let cut = parse_probe("@@nproc\n2\n");
        assert!(cut.problems.iter().any(|p| p.contains("did not finish")));
        // A hostile "version" is not an engine.
        let evil = parse_probe("@@docker\n$(id)\n@@end\n");
        assert_eq!(evil.engine, None);
    }
}
