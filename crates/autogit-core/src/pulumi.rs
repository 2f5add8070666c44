//! A Pulumi YAML program from the platform model ([`crate::state::PlatformState`]): one
//! `Pulumi.yaml` (the project and its program, `runtime: yaml`) for one Docker host through
//! Pulumi's Docker provider (`docker`, pinned by [`DOCKER_PROVIDER_VERSION`]), resource for
//! resource what the Terraform export writes (Pulumi's Docker provider is bridged from the
//! same `kreuzwerker/docker`): a `Network` per network, a `Volume` per named volume, a
//! `RemoteImage` and a `Container` per service of this host, with the preset's limits,
//! ports, mounts, environment, health check, labels and `dependsOn`.
//!
//! **Secrets are never inlined.** A secret (or withheld) variable is a config key declared
//! `secret: true` (`pulumi config set --secret NAME`), referenced as `${NAME}`. Literal text
//! has every `$` doubled (`$$`), so nothing a value holds is interpolated.

use crate::container::{network_name, volume_name};
use crate::emit::to_yaml;
use crate::plan::{HostPath, Mount, Protocol};
use crate::state::{EnvValue, PlatformState, ServiceState};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The Docker provider's version the resources' properties are written for.
pub const DOCKER_PROVIDER_VERSION: &str = "5.1.0";

/// The resource types the program can hold.
pub const RESOURCE_TYPES: [&str; 4] = [
    "docker:index/network:Network",
    "docker:index/volume:Volume",
    "docker:index/remoteImage:RemoteImage",
    "docker:index/container:Container",
];

/// The config key of the directory holding the rendered configuration files.
pub const RENDERED_DIR: &str = "renderedDir";

/// Literal text: every `$` doubled. Pulumi YAML reads `$$` as one `$` and `${` as the start
/// of an interpolation (pulumi-yaml's `parseInterpolate`), so nothing in it is interpolated.
pub fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// A resource's logical name: lowercase, `_` for anything else.
pub fn ident(prefix: &str, s: &str) -> String {
    let body: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{body}")
}

fn megabytes(b: crate::units::Bytes) -> u64 {
    b.0.div_ceil(1024 * 1024)
}

fn cpus(c: f64) -> String {
    let milli = (c * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{}", milli as f64 / 1000.0)
    }
}

fn exported(st: &PlatformState) -> impl Iterator<Item = &ServiceState> {
    st.services.iter().filter(|s| s.always_local())
}

/// Declares a config key (first description wins).
fn config(cfg: &mut BTreeMap<String, Value>, key: &str, description: String, secret: bool) {
    cfg.entry(key.to_owned()).or_insert_with(|| {
        let mut v = json!({"type": "string", "description": description});
        if secret {
            v["secret"] = json!(true);
        }
        v
    });
}

fn host_path_key(p: HostPath) -> String {
    p.compose_var().to_owned()
}

fn host_path_config(cfg: &mut BTreeMap<String, Value>, p: HostPath) -> String {
    let key = host_path_key(p);
    config(
        cfg,
        &key,
        format!(
            "The host path autogit calls {} on the deploying host",
            p.compose_var()
        ),
        false,
    );
    key
}

fn env_entry(
    s: &ServiceState,
    name: &str,
    value: &EnvValue,
    cfg: &mut BTreeMap<String, Value>,
) -> String {
    match value {
        EnvValue::Plain(v) => literal(&format!("{name}={v}")),
        EnvValue::HostPath(p) => {
            let key = host_path_config(cfg, *p);
            format!("{}=${{{key}}}", literal(name))
        }
        EnvValue::Secret => {
            config(cfg, name, format!("{name}: a secret"), true);
            format!("{}=${{{name}}}", literal(name))
        }
        EnvValue::Withheld => {
            config(
                cfg,
                name,
                format!(
                    "{name} of {}: found on the running container, its value not captured",
                    s.name
                ),
                true,
            );
            format!("{}=${{{name}}}", literal(name))
        }
    }
}

fn container(
    st: &PlatformState,
    s: &ServiceState,
    local: &BTreeSet<&str>,
    cfg: &mut BTreeMap<String, Value>,
) -> Value {
    let mut p = Map::new();
    p.insert("name".into(), json!(literal(&s.container_name)));
    p.insert(
        "image".into(),
        json!(format!("${{{}.imageId}}", ident("img", &s.name))),
    );
    if let Some(h) = &s.hostname {
        p.insert("hostname".into(), json!(literal(h)));
    }
    p.insert("restart".into(), json!("unless-stopped"));
    p.insert("cpus".into(), json!(cpus(s.resources.cpus)));
    p.insert("memory".into(), json!(megabytes(s.resources.memory)));
    if let Some(shm) = s.resources.shm_size {
        p.insert("shmSize".into(), json!(megabytes(shm)));
    }
    if !s.command.is_empty() {
        let c: Vec<String> = s.command.iter().map(|c| literal(c)).collect();
        p.insert("command".into(), json!(c));
    }
    if !s.env.is_empty() {
        let envs: Vec<String> = s
            .env
            .iter()
            .map(|e| env_entry(s, &e.name, &e.value, cfg))
            .collect();
        p.insert("envs".into(), json!(envs));
    }
    if !s.ports.is_empty() {
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|port| {
                let mut v = json!({"internal": port.container, "external": port.host,
                    "protocol": if port.protocol == Protocol::Udp { "udp" } else { "tcp" }});
                if let Some(ip) = &port.bind {
                    v["ip"] = json!(literal(ip));
                }
                v
            })
            .collect();
        p.insert("ports".into(), json!(ports));
    }
    if !s.mounts.is_empty() {
        let mut mounts = Vec::new();
        for m in &s.mounts {
            let v = match m {
                Mount::Volume { name, target } => json!({"type": "volume",
                    "source": format!("${{{}.name}}", ident("vol", name)), "target": literal(target)}),
                Mount::Rendered { file, target } => {
                    config(
                        cfg,
                        RENDERED_DIR,
                        "The absolute path of the directory holding autogit's rendered files (autogit export pulumi --out writes them under rendered/)".into(),
                        false,
                    );
                    json!({"type": "bind", "source": format!("${{{RENDERED_DIR}}}/{}", literal(file)),
                        "target": literal(target), "readOnly": true})
                }
                Mount::Host {
                    path,
                    target,
                    read_only,
                } => json!({"type": "bind", "source": literal(path), "target": literal(target),
                    "readOnly": read_only}),
                Mount::HostPath {
                    of,
                    target,
                    read_only,
                } => {
                    let key = host_path_config(cfg, *of);
                    let src = format!("${{{key}}}");
                    let target = target.as_deref().map_or_else(|| src.clone(), literal);
                    json!({"type": "bind", "source": src, "target": target, "readOnly": read_only})
                }
            };
            mounts.push(v);
        }
        p.insert("mounts".into(), json!(mounts));
    }
    if let Some(hc) = &s.health {
        let tests: Vec<String> = hc.test.iter().map(|t| literal(t)).collect();
        p.insert(
            "healthcheck".into(),
            json!({"tests": tests, "interval": format!("{}s", hc.interval.as_secs()),
                "timeout": format!("{}s", hc.timeout.as_secs()), "retries": hc.retries,
                "startPeriod": format!("{}s", hc.start_period.as_secs())}),
        );
        // Created healthy before what depends on it is created (compose's
        // `condition: service_healthy`), as in the Terraform export.
        let wait = hc.start_period.as_secs()
            + (hc.interval.as_secs() + hc.timeout.as_secs()) * u64::from(hc.retries.max(1));
        p.insert("wait".into(), json!(true));
        p.insert("waitTimeout".into(), json!(wait.max(60)));
    }
    if !s.networks.is_empty() {
        let nets: Vec<Value> = s
            .networks
            .iter()
            .map(|n| json!({"name": format!("${{{}.name}}", ident("net", n)), "aliases": [literal(&s.name)]}))
            .collect();
        p.insert("networksAdvanced".into(), json!(nets));
    }
    let mut labels = vec![
        ("io.autogit.project", st.project.clone()),
        ("io.autogit.service", s.name.clone()),
        (
            "io.autogit.role",
            serde_json::to_value(s.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
    ];
    if let Some(r) = &s.route {
        labels.push(("io.autogit.host", r.host.clone()));
    }
    let labels: Vec<Value> = labels
        .into_iter()
        .map(|(k, v)| json!({"label": k, "value": literal(&v)}))
        .collect();
    p.insert("labels".into(), json!(labels));
    let mut options = json!({"version": DOCKER_PROVIDER_VERSION});
    let deps: Vec<String> = s
        .depends_on
        .iter()
        .filter(|d| local.contains(d.as_str()))
        .map(|d| format!("${{{}}}", ident("ctr", d)))
        .collect();
    if !deps.is_empty() {
        options["dependsOn"] = json!(deps);
    }
    json!({"type": RESOURCE_TYPES[3], "properties": p, "options": options})
}

/// `Pulumi.yaml`: the project and its program.
pub fn files(st: &PlatformState) -> Vec<(String, String)> {
    let mut cfg: BTreeMap<String, Value> = BTreeMap::new();
    let mut resources = Map::new();
    let version = json!({"version": DOCKER_PROVIDER_VERSION});
    let networks: BTreeSet<&str> = exported(st)
        .flat_map(|s| s.networks.iter().map(String::as_str))
        .chain(std::iter::once(st.network.as_str()))
        .collect();
    for n in networks {
        resources.insert(
            ident("net", n),
            json!({"type": RESOURCE_TYPES[0], "properties": {"name": literal(&network_name(&st.project, n))}, "options": version}),
        );
    }
    for v in crate::state::named_volumes(exported(st)) {
        resources.insert(
            ident("vol", v),
            json!({"type": RESOURCE_TYPES[1], "properties": {"name": literal(&volume_name(&st.project, v)),
                "labels": [{"label": "io.autogit.project", "value": literal(&st.project)}]}, "options": version}),
        );
    }
    let local: BTreeSet<&str> = exported(st).map(|s| s.name.as_str()).collect();
    for s in exported(st) {
        resources.insert(
            ident("img", &s.name),
            json!({"type": RESOURCE_TYPES[2], "properties": {"name": literal(&s.image), "keepLocally": true}, "options": version}),
        );
        resources.insert(ident("ctr", &s.name), container(st, s, &local, &mut cfg));
    }
    let left: Vec<&str> = st
        .services
        .iter()
        .filter(|s| !s.always_local())
        .map(|s| s.name.as_str())
        .collect();
    let mut program = json!({
        "name": st.project,
        "runtime": "yaml",
        "description": format!("The autogit platform `{}` on one Docker host (preset {})", st.project, st.preset),
    });
    if !cfg.is_empty() {
        program["config"] = json!(cfg);
    }
    program["resources"] = Value::Object(resources);
    let mut head = format!(
        "# Rendered by autogit for project `{}`: a Pulumi YAML program for one Docker host\n# (Pulumi's docker provider {DOCKER_PROVIDER_VERSION}). Set the secrets first:\n#   pulumi config set --secret NAME   (each config key marked secret below)\n# then: pulumi up\n",
        st.project
    );
    if !left.is_empty() {
        head.push_str(&format!(
            "# Not here (autogit manages them: remote or on-demand runners): {}\n",
            left.join(", ")
        ));
    }
    vec![(
        "Pulumi.yaml".to_owned(),
        format!("{head}{}", to_yaml(&program)),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(literal("a ${b} $c $${d}"), "a $${b} $$c $$$${d}");
        assert_eq!(ident("ctr", "runner-local-cpu"), "ctr_runner_local_cpu");
    }
}
