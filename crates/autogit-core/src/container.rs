//! What a container engine must create for one service: the engine-neutral container
//! specification, derived purely from the plan, with a stable hash of itself. The hash goes
//! into a label; a container whose label differs from the desired hash is recreated.

use crate::plan::{Mount, Plan, Protocol, ServiceSpec};
use serde::Serialize;
use std::collections::BTreeMap;

/// Labels autogit puts on everything it creates.
pub mod labels {
    /// Compose's labels, so `docker compose -p <project> ps` shows autogit's containers.
    pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
    pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
    /// Marks objects autogit manages; the value is the project.
    pub const MANAGED: &str = "io.autogit.project";
    pub const SERVICE: &str = "io.autogit.service";
    /// Hash of the desired [`super::ContainerSpec`].
    pub const SPEC_HASH: &str = "io.autogit.spec-hash";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortBinding {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MountSpec {
    /// Named volume (full engine name, `<project>_<name>`).
    Volume { name: String, target: String },
    /// Host path bind mount.
    Bind {
        source: String,
        target: String,
        read_only: bool,
    },
}

/// The engine's own HEALTHCHECK for a container (what `docker inspect` reports as Health).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineHealthcheck {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval_secs: u64,
    pub timeout_secs: u64,
    pub retries: u32,
    pub start_period_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerSpec {
    /// Container name: `<project>-<service>`.
    pub name: String,
    pub service: String,
    pub image: String,
    pub command: Vec<String>,
    /// Environment, secret values included (resolved by the caller); never logged.
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    /// Names of the variables in `env` whose values are secrets (hashed, never shown).
    pub secret_keys: Vec<String>,
    pub ports: Vec<PortBinding>,
    pub mounts: Vec<MountSpec>,
    /// CPU limit in units of 1e-9 CPUs (Docker's NanoCpus).
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub shm_size_bytes: Option<i64>,
    pub network: String,
    /// DNS names of the container on the network.
    pub aliases: Vec<String>,
    pub hostname: Option<String>,
    pub healthcheck: Option<EngineHealthcheck>,
    pub labels: BTreeMap<String, String>,
    /// Engine restart policy. autogit heals itself, so this is `no`.
    pub restart_policy: String,
}

/// FNV-1a, 64 bit: stable across runs and platforms (unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl ContainerSpec {
    /// Hash of everything that, when changed, needs a new container. Secret values take part
    /// (a rotated secret recreates the container) but only through the hash.
    pub fn hash(&self) -> String {
        let mut without = self.clone();
        without.labels.remove(labels::SPEC_HASH);
        let mut text = serde_json::to_string(&without).unwrap_or_default();
        for (k, v) in &self.env {
            text.push('\0');
            text.push_str(k);
            text.push('=');
            text.push_str(v);
        }
        format!("{:016x}", fnv1a(text.as_bytes()))
    }
}

/// Engine names of the named volumes and the network of a plan.
pub fn volume_name(project: &str, volume: &str) -> String {
    format!("{project}_{volume}")
}
pub fn network_name(project: &str, network: &str) -> String {
    format!("{project}_{network}")
}

fn engine_healthcheck(s: &ServiceSpec) -> Option<EngineHealthcheck> {
    let h = s.health.as_ref()?;
    let test = crate::state::health_test(h, s.role);
    Some(EngineHealthcheck {
        test,
        interval_secs: h.interval.as_secs(),
        timeout_secs: h.timeout.as_secs(),
        retries: h.retries,
        start_period_secs: h.start_period.as_secs(),
    })
}

/// The `api` container's check: its Debian base has bash but no wget or curl, so bash's
/// `/dev/tcp` sends the request and the status line must say 200.
pub fn api_healthcheck(port: u16, path: &str) -> Vec<String> {
    vec![
        "CMD".into(),
        "bash".into(),
        "-c".into(),
        format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"
        ),
    ]
}

/// The container for one local service of the plan. `rendered_dir` is the absolute directory
/// holding the rendered files; `secrets` resolves `secret_env` names (missing ones are left
/// out and reported by the caller). The plan must be resolved (`plan::resolve`): a
/// [`Mount::HostPath`] left in it has no source and the engine refuses the container.
pub fn container_spec(
    plan: &Plan,
    s: &ServiceSpec,
    rendered_dir: &str,
    secrets: &BTreeMap<String, String>,
) -> ContainerSpec {
    let mut env = s.environment.clone();
    let mut secret_keys = Vec::new();
    for k in &s.secret_env {
        if let Some(v) = secrets.get(k) {
            env.insert(k.clone(), v.clone());
            secret_keys.push(k.clone());
        }
    }
    let mounts = s
        .mounts
        .iter()
        .map(|m| match m {
            Mount::Volume { name, target } => MountSpec::Volume {
                name: volume_name(&plan.project, name),
                target: target.clone(),
            },
            Mount::Rendered { file, target } => MountSpec::Bind {
                source: format!("{rendered_dir}/{file}"),
                target: target.clone(),
                read_only: true,
            },
            Mount::Host {
                path,
                target,
                read_only,
            } => MountSpec::Bind {
                source: path.clone(),
                target: target.clone(),
                read_only: *read_only,
            },
            Mount::HostPath {
                of,
                target,
                read_only,
            } => MountSpec::Bind {
                source: String::new(),
                target: target
                    .clone()
                    .unwrap_or_else(|| format!("<unresolved {}>", of.compose_var())),
                read_only: *read_only,
            },
        })
        .collect();
    let mut labels = BTreeMap::from([
        (labels::COMPOSE_PROJECT.to_owned(), plan.project.clone()),
        (labels::COMPOSE_SERVICE.to_owned(), s.name.clone()),
        (labels::MANAGED.to_owned(), plan.project.clone()),
        (labels::SERVICE.to_owned(), s.name.clone()),
    ]);
    let hostname = s
        .environment
        .get("GITLAB_OMNIBUS_CONFIG")
        .and(Some(s.name.clone()));
    let mut spec = ContainerSpec {
        name: format!("{}-{}", plan.project, s.name),
        service: s.name.clone(),
        image: s.image.to_string(),
        command: s.command.clone(),
        env,
        secret_keys,
        ports: s
            .ports
            .iter()
            .map(|p| PortBinding {
                host_ip: p.bind.clone(),
                host_port: p.host,
                container_port: p.container,
                udp: p.protocol == Protocol::Udp,
            })
            .collect(),
        mounts,
        nano_cpus: (s.cpus * 1e9) as i64,
        memory_bytes: i64::try_from(s.memory.0).unwrap_or(i64::MAX),
        shm_size_bytes: s.shm_size.map(|b| i64::try_from(b.0).unwrap_or(i64::MAX)),
        network: network_name(&plan.project, &plan.network),
        aliases: vec![s.name.clone()],
        hostname,
        healthcheck: engine_healthcheck(s),
        labels: labels.clone(),
        restart_policy: "no".to_owned(),
    };
    let hash = spec.hash();
    labels.insert(labels::SPEC_HASH.to_owned(), hash);
    spec.labels = labels;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
