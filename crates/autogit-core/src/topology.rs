//! GPU interconnect topology as `nvidia-smi topo -m` prints it, and which set of GPUs on a
//! host a multi-GPU job should get: NVLink first, then the shortest PCIe path.
//!
//! The matrix (NVIDIA System Management Interface, `nvidia-smi topo -m`): a header row of
//! device columns (`GPU0 GPU1 … NIC0 …`, then `CPU Affinity`, `NUMA Affinity`, …), one row per
//! device with, per column, `X` (itself), `NV#` (a bonded set of # NVLinks), `PIX` (at most one
//! PCIe bridge), `PXB` (several PCIe bridges, no host bridge), `PHB` (a PCIe host bridge, the
//! CPU), `NODE` (between host bridges within a NUMA node) or `SYS` (across NUMA nodes: QPI/UPI),
//! and a legend. Newer drivers underline the header with ANSI escapes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How two GPUs are connected, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Link {
    /// `NV#`: # bonded NVLinks (more is faster).
    NvLink(u8),
    Pix,
    Pxb,
    Phb,
    Node,
    Sys,
}

impl Link {
    /// Smaller is better: NVLink by its link count (more links rank better), then PCIe
    /// paths from the shortest.
    pub fn rank(self) -> u32 {
        match self {
            Link::NvLink(n) => 100 - u32::from(n.min(99)),
            Link::Pix => 200,
            Link::Pxb => 300,
            Link::Phb => 400,
            Link::Node => 500,
            Link::Sys => 600,
        }
    }

    fn parse(s: &str) -> Option<Link> {
        Some(match s {
            "PIX" => Link::Pix,
            "PXB" => Link::Pxb,
            "PHB" => Link::Phb,
            "NODE" => Link::Node,
            "SYS" | "SOC" => Link::Sys,
            _ => Link::NvLink(s.strip_prefix("NV")?.parse().ok()?),
        })
    }

    pub fn name(self) -> String {
        match self {
            Link::NvLink(n) => format!("NV{n}"),
            Link::Pix => "PIX".into(),
            Link::Pxb => "PXB".into(),
            Link::Phb => "PHB".into(),
            Link::Node => "NODE".into(),
            Link::Sys => "SYS".into(),
        }
    }
}

/// The links between a host's GPUs (by `nvidia-smi` index).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// `(a, b)` with `a < b`.
    #[serde(with = "pairs")]
    pub links: BTreeMap<(u32, u32), Link>,
}

mod pairs {
    //! JSON object keys must be strings: `"0-1": "NvLink(4)"`-like pairs as a list.
    use super::Link;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<(u32, u32), Link>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        m.iter()
            .map(|(&(a, b), &l)| (a, b, l))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(u32, u32), Link>, D::Error> {
        let v: Vec<(u32, u32, Link)> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|(a, b, l)| ((a, b), l)).collect())
    }
}

impl Topology {
    /// The link between two GPUs; `None` when the matrix did not say (or `a == b`).
    pub fn link(&self, a: u32, b: u32) -> Option<Link> {
        let key = if a < b { (a, b) } else { (b, a) };
        self.links.get(&key).copied()
    }

    /// How good a set of GPUs is for one job: its slowest link first, then the sum of all its
    /// links' ranks (smaller is better). A pair the matrix does not name counts as `SYS`.
    pub fn score(&self, gpus: &[u32]) -> (u32, u32) {
        let mut worst = 0;
        let mut sum = 0;
        for (i, &a) in gpus.iter().enumerate() {
            for &b in &gpus[i + 1..] {
                let r = self.link(a, b).unwrap_or(Link::Sys).rank();
                worst = worst.max(r);
                sum += r;
            }
        }
        (worst, sum)
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn gpu_index(s: &str) -> Option<u32> {
    s.strip_prefix("GPU")?.parse().ok()
}

/// Reads `nvidia-smi topo -m`. A matrix with no GPU, a row whose cells do not parse, or
/// links that disagree between the two directions is an error (the caller reports it;
/// placement then falls back to VRAM alone).
pub fn parse_topo(text: &str) -> Result<Topology, String> {
    let text = strip_ansi(text);
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .by_ref()
        .find(|l| l.split_whitespace().any(|w| gpu_index(w).is_some()))
        .ok_or("no GPU columns in `nvidia-smi topo -m`")?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let columns: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .take_while(|w| {
            gpu_index(w).is_some()
                || w.strip_prefix("NIC")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                || w.starts_with("mlx")
        })
        .collect();
    let mut t = Topology::default();
    for line in lines {
        let mut cells = line.split_whitespace();
        let Some(row) = cells.next().and_then(gpu_index) else {
            continue;
        };
        for (col, cell) in columns.iter().zip(cells) {
            let Some(other) = gpu_index(col) else {
                continue;
            };
            if cell == "X" {
                if other != row {
                    return Err(format!("GPU{row}: `X` in column {col}"));
                }
                continue;
            }
            let link = Link::parse(cell)
                .ok_or_else(|| format!("GPU{row}, {col}: unknown link `{cell}`"))?;
            let key = if row < other {
                (row, other)
            } else {
                (other, row)
            };
            if let Some(prev) = t.links.insert(key, link)
                && prev != link
            {
                return Err(format!(
                    "GPU{row} and GPU{other}: the matrix says both {} and {}",
                    prev.name(),
                    link.name()
                ));
            }
        }
    }
    if t.links.is_empty() && columns.iter().filter(|c| gpu_index(c).is_some()).count() > 1 {
        return Err("no GPU rows in `nvidia-smi topo -m`".into());
    }
    Ok(t)
}

/// The best `k` of `candidates` (GPU indexes) for one job by `topology`, ties broken by
/// `tiebreak` (smaller first, summed over the set: the caller's best fit). Exhaustive while
/// the number of sets is small (C(n, k) ≤ 20 000, e.g. 8 of 16); greedy from each start
/// beyond that. `None` when there are fewer than `k` candidates.
pub fn best_set(
    candidates: &[u32],
    k: usize,
    topology: &Topology,
    tiebreak: impl Fn(u32) -> u64,
) -> Option<Vec<u32>> {
    if candidates.len() < k {
        return None;
    }
    if k == 0 {
        return Some(Vec::new());
    }
    let key = |set: &[u32]| {
        let (worst, sum) = topology.score(set);
        let tb: u64 = set.iter().map(|&g| tiebreak(g)).sum();
        (worst, sum, tb, set.to_vec())
    };
    // (slowest link, all links, tiebreak, the set itself for a stable order), the set.
    type Ranked = ((u32, u32, u64, Vec<u32>), Vec<u32>);
    let mut best: Option<Ranked> = None;
    let mut consider = |set: Vec<u32>| {
        let mut sorted = set;
        sorted.sort_unstable();
        let kk = key(&sorted);
        if best.as_ref().is_none_or(|(b, _)| kk < *b) {
            best = Some((kk, sorted));
        }
    };
    let n = candidates.len();
    if combinations(n, k) <= 20_000 {
        let mut idx: Vec<usize> = (0..k).collect();
        loop {
            consider(idx.iter().map(|&i| candidates[i]).collect());
            // The next combination in lexicographic order: the rightmost index that can
            // still move, moved, and the ones after it right behind it.
            let mut i = k;
            while i > 0 && idx[i - 1] == n - k + (i - 1) {
                i -= 1;
            }
            if i == 0 {
                return best.map(|(_, s)| s);
            }
            idx[i - 1] += 1;
            for j in i..k {
                idx[j] = idx[j - 1] + 1;
            }
        }
    }
    for &start in candidates {
        let mut set = vec![start];
        while set.len() < k {
            let next = candidates
                .iter()
                .filter(|c| !set.contains(c))
                .min_by_key(|&&c| {
                    let mut s = set.clone();
                    s.push(c);
                    key(&s)
                })
                .copied()?;
            set.push(next);
        }
        consider(set);
    }
    best.map(|(_, s)| s)
}

fn combinations(n: usize, k: usize) -> u128 {
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for i in 0..k {
        c = c * (n - i) as u128 / (i + 1) as u128;
        if c > 1_000_000 {
            return c;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_by_topology() {
        // Two NVLink pairs (0-1, 2-3), PCIe between them.
        let mut t = Topology::default();
        for (a, b, l) in [
            (0, 1, Link::NvLink(4)),
            (2, 3, Link::NvLink(4)),
            (0, 2, Link::Sys),
            (0, 3, Link::Sys),
            (1, 2, Link::Sys),
            (1, 3, Link::Sys),
        ] {
            t.links.insert((a, b), l);
        }
        let flat = |_| 0;
        assert_eq!(best_set(&[0, 1, 2, 3], 2, &t, flat), Some(vec![0, 1]));
        assert_eq!(best_set(&[1, 2, 3], 2, &t, flat), Some(vec![2, 3]));
        assert_eq!(best_set(&[0, 2], 2, &t, flat), Some(vec![0, 2]));
        // Same topology: the tiebreak (best fit) decides.
        assert_eq!(
            best_set(&[0, 1, 2, 3], 2, &t, |g| u64::from(4 - g)),
            Some(vec![2, 3])
        );
        assert_eq!(best_set(&[0, 1], 3, &t, flat), None);
        assert_eq!(best_set(&[0, 1, 2, 3], 4, &t, flat), Some(vec![0, 1, 2, 3]));
        assert!(Link::NvLink(12).rank() < Link::NvLink(4).rank());
        assert!(Link::NvLink(1).rank() < Link::Pix.rank());
    }

    #[test]
    fn large_hosts_fall_back_to_greedy_and_still_pick_the_nvlink_set() {
        // 32 GPUs, NVLink only among 8..16: the greedy path must find that octet.
        let mut t = Topology::default();
        for a in 0..32u32 {
            for b in a + 1..32 {
                let l = if (8..16).contains(&a) && (8..16).contains(&b) {
                    Link::NvLink(12)
                } else {
                    Link::Sys
                };
                t.links.insert((a, b), l);
            }
        }
        let all: Vec<u32> = (0..32).collect();
        assert!(combinations(32, 8) > 20_000);
        assert_eq!(
            best_set(&all, 8, &t, |_| 0),
            Some((8..16).collect::<Vec<u32>>())
        );
    }
}
