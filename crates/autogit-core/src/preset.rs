//! Resource presets. The platform spec's sizing table is authoritative (the two spec documents
//! disagree on `team`: 12C/16G wins over 12C/12G). `beast` is the table's "Production" column.

use crate::units::{Bytes, GIB, MIB};
use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Minimal,
    #[default]
    Homelab,
    Team,
    Beast,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::Minimal,
        Preset::Homelab,
        Preset::Team,
        Preset::Beast,
    ];
    pub const NAMES: [&'static str; 4] = ["minimal", "homelab", "team", "beast"];

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "minimal" => Some(Self::Minimal),
            "homelab" => Some(Self::Homelab),
            "team" => Some(Self::Team),
            // The platform spec calls the largest column "Production".
            "beast" | "production" => Some(Self::Beast),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn col(self) -> usize {
        self as usize
    }

    /// CPU and memory for one component under this preset.
    pub fn size(self, component: Component) -> Size {
        let row = match component {
            Component::GitLab => [
                (4.0, 4 * GIB),
                (6.0, 6 * GIB),
                (12.0, 16 * GIB),
                (24.0, 32 * GIB),
            ],
            Component::Traefik | Component::Nginx => [
                (0.5, 128 * MIB),
                (1.0, 256 * MIB),
                (2.0, 512 * MIB),
                (4.0, GIB),
            ],
            Component::Grafana => [
                (0.5, 256 * MIB),
                (1.0, 512 * MIB),
                (2.0, GIB),
                (4.0, 2 * GIB),
            ],
            Component::Loki => [(1.0, 512 * MIB), (2.0, GIB), (4.0, 4 * GIB), (8.0, 8 * GIB)],
            Component::Tempo => [
                (0.5, 256 * MIB),
                (1.0, 512 * MIB),
                (2.0, 2 * GIB),
                (4.0, 4 * GIB),
            ],
            Component::Prometheus => [(1.0, 512 * MIB), (2.0, GIB), (4.0, 4 * GIB), (8.0, 8 * GIB)],
            Component::Meilisearch => [
                (1.0, 512 * MIB),
                (2.0, GIB),
                (4.0, 4 * GIB),
                (8.0, 16 * GIB),
            ],
            Component::Api => [
                (0.5, 256 * MIB),
                (1.0, 512 * MIB),
                (2.0, GIB),
                (4.0, 2 * GIB),
            ],
            // Not in the spec's table: the guard autogit deploys in front of AI routes. Its
            // analysis is CPU-bound (about 4 us per KiB), its memory the request bodies it
            // holds (64 MiB at most by default) and the stage-4 model.
            Component::Guard => [
                (0.5, 256 * MIB),
                (1.0, 256 * MIB),
                (2.0, 512 * MIB),
                (4.0, GIB),
            ],
            // Not in the spec's table (it sizes the services a user enables, not the exporters
            // that come with Prometheus): node-exporter reads /proc and /sys, a few MB.
            Component::NodeExporter => [
                (0.1, 64 * MIB),
                (0.25, 64 * MIB),
                (0.5, 128 * MIB),
                (0.5, 128 * MIB),
            ],
            // cAdvisor keeps a few minutes of every container's figures in memory.
            Component::Cadvisor => [
                (0.25, 128 * MIB),
                (0.5, 256 * MIB),
                (1.0, 512 * MIB),
                (1.0, 512 * MIB),
            ],
            Component::Alertmanager => [
                (0.1, 64 * MIB),
                (0.25, 128 * MIB),
                (0.5, 256 * MIB),
                (0.5, 256 * MIB),
            ],
            // Not in the spec's table: a runner manager is light; jobs run in their own
            // containers and are limited by `concurrent`.
            Component::Runner => [
                (0.5, 256 * MIB),
                (1.0, 512 * MIB),
                (2.0, GIB),
                (4.0, 2 * GIB),
            ],
        };
        let (cpus, mem) = row[self.col()];
        Size {
            cpus,
            memory: Bytes(mem),
        }
    }

    /// GitLab Omnibus tuning that goes with this preset.
    pub fn tuning(self) -> GitLabTuning {
        let (puma, sidekiq, shared_buffers, prometheus) = match self {
            Preset::Minimal => (2, 10, Bytes::mib(256), false),
            Preset::Homelab => (3, 15, Bytes::mib(512), false),
            Preset::Team => (6, 20, Bytes::gib(4), true),
            Preset::Beast => (12, 25, Bytes::gib(8), true),
        };
        GitLabTuning {
            puma_workers: puma,
            sidekiq_concurrency: sidekiq,
            postgres_shared_buffers: shared_buffers,
            prometheus,
        }
    }

    /// Default `concurrent` for a runner under this preset.
    pub fn runner_concurrency(self) -> u32 {
        [2, 4, 8, 16][self.col()]
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Size {
    pub cpus: f64,
    pub memory: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GitLabTuning {
    pub puma_workers: u32,
    pub sidekiq_concurrency: u32,
    pub postgres_shared_buffers: Bytes,
    /// Whether GitLab's bundled Prometheus (and its exporters) run inside the container.
    pub prometheus: bool,
}

/// A row of the sizing table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    GitLab,
    Traefik,
    Nginx,
    Grafana,
    Loki,
    Tempo,
    Prometheus,
    Meilisearch,
    Api,
    Runner,
    NodeExporter,
    Cadvisor,
    Alertmanager,
    Guard,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's totals row (9C/6.5G, 16C/11G, 32C/33G, 64C/73G) must add up.
    #[test]
    fn table_totals_match_the_spec() {
        use Component::*;
        let rows = [
            GitLab,
            Traefik,
            Grafana,
            Loki,
            Tempo,
            Prometheus,
            Meilisearch,
            Api,
        ];
        let expect = [(9.0, 6.5), (16.0, 11.0), (32.0, 33.0), (64.0, 73.0)];
        for (p, (c, g)) in Preset::ALL.into_iter().zip(expect) {
            let cpu: f64 = rows.iter().map(|r| p.size(*r).cpus).sum();
            let mem: u64 = rows.iter().map(|r| p.size(*r).memory.0).sum();
            assert_eq!(cpu, c, "{p} cpu");
            // The spec rounds its memory totals up (team: 32.5G is printed as 33G).
            let gib = mem as f64 / GIB as f64;
            assert!((gib - g).abs() <= 0.5, "{p} memory {gib} vs {g}");
        }
    }
}
