//! An Ansible playbook and its inventory from the platform model
//! ([`crate::state::PlatformState`]): a pure, deterministic function using the
//! `community.docker` collection (`docker_network`, `docker_volume`, `docker_container`)
//! against one Docker host.
//!
//! The playbook checks that every Vault variable it needs is defined, creates the
//! network and the named volumes (`<project>_<volume>`, the engine's names), copies the
//! rendered configuration files the services mount, and starts the services of this host
//! that are made with the platform (the compose file's) in `depends_on` order, with the
//! preset's limits, ports, mounts, environment, health check and autogit's labels.
//!
//! **Secrets are never inlined.** A secret (or withheld) variable is `{{ vault_<name> }}`,
//! defined in an Ansible Vault file the deployer keeps
//! (`ansible-vault create group_vars/autogit/vault.yml`); tasks that carry one are
//! `no_log`. Plain values are wrapped in `{% raw %}` where they would otherwise be read as
//! Jinja.

use crate::container::{network_name, volume_name};
use crate::emit::to_yaml;
use crate::plan::{HostPath, Mount, Protocol};
use crate::state::{EnvValue, PlatformState, ServiceState};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The inventory group the playbook targets.
pub const GROUP: &str = "autogit";

/// The Vault variable holding a secret environment variable.
pub fn vault_var(name: &str) -> String {
    format!("vault_{}", crate::terraform::ident(name))
}

fn host_path_var(p: HostPath) -> String {
    crate::terraform::ident(p.compose_var())
}

/// A plain value as Ansible reads it: Jinja markers kept literal.
fn literal(s: &str) -> String {
    if ["{{", "{%", "{#"].iter().any(|m| s.contains(m)) && !s.contains("{% endraw %}") {
        format!("{{% raw %}}{s}{{% endraw %}}")
    } else {
        s.to_owned()
    }
}

fn exported(st: &PlatformState) -> Vec<&ServiceState> {
    st.services.iter().filter(|s| s.always_local()).collect()
}

/// The services in an order that starts each after what it depends on (by name where free).
fn start_order<'a>(services: &[&'a ServiceState]) -> Vec<&'a ServiceState> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < services.len() {
        let next = services.iter().find(|s| {
            !done.contains(s.name.as_str())
                && s.depends_on
                    .iter()
                    .all(|d| !names.contains(d.as_str()) || done.contains(d.as_str()))
        });
        // A cycle (never planned): the rest by name.
        let next = next.or_else(|| services.iter().find(|s| !done.contains(s.name.as_str())));
        let Some(s) = next else { break };
        done.insert(s.name.as_str());
        out.push(*s);
    }
    out
}

/// What the playbook needs defined: (variable, what it is, secret).
#[derive(Default)]
struct Needs(BTreeMap<String, (String, bool)>);

fn container_task(
    st: &PlatformState,
    s: &ServiceState,
    needs: &mut Needs,
    has_rendered: &mut bool,
) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), json!(s.container_name));
    c.insert("image".into(), json!(s.image));
    if let Some(h) = &s.hostname {
        c.insert("hostname".into(), json!(h));
    }
    c.insert("restart_policy".into(), json!("unless-stopped"));
    c.insert("state".into(), json!("started"));
    c.insert("cpus".into(), json!(s.resources.cpus));
    c.insert(
        "memory".into(),
        json!(format!("{}M", s.resources.memory.0.div_ceil(1024 * 1024))),
    );
    if let Some(shm) = s.resources.shm_size {
        c.insert(
            "shm_size".into(),
            json!(format!("{}M", shm.0.div_ceil(1024 * 1024))),
        );
    }
    if !s.command.is_empty() {
        let cmd: Vec<String> = s.command.iter().map(|a| literal(a)).collect();
        c.insert("command".into(), json!(cmd));
    }
    let mut secret = false;
    if !s.env.is_empty() {
        let mut env = Map::new();
        for e in &s.env {
            let v = match &e.value {
                EnvValue::Plain(v) => literal(v),
                EnvValue::HostPath(p) => {
                    let var = host_path_var(*p);
                    needs
                        .0
                        .entry(var.clone())
                        .or_insert_with(|| (format!("the host path {}", p.compose_var()), false));
                    format!("{{{{ {var} }}}}")
                }
                EnvValue::Secret | EnvValue::Withheld => {
                    secret = true;
                    let var = vault_var(&e.name);
                    let what = if e.value == EnvValue::Secret {
                        format!("{}: a secret", e.name)
                    } else {
                        format!("{} of {}: its value was not captured", e.name, s.name)
                    };
                    needs.0.entry(var.clone()).or_insert((what, true));
                    format!("{{{{ {var} }}}}")
                }
            };
            env.insert(e.name.clone(), json!(v));
        }
        c.insert("env".into(), Value::Object(env));
    }
    if !s.ports.is_empty() {
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| {
                let proto = if p.protocol == Protocol::Udp {
                    "/udp"
                } else {
                    "/tcp"
                };
                match &p.bind {
                    Some(b) => format!("{b}:{}:{}{proto}", p.host, p.container),
                    None => format!("{}:{}{proto}", p.host, p.container),
                }
            })
            .collect();
        c.insert("published_ports".into(), json!(ports));
        // Without it the module binds a port with no address to 0.0.0.0 only (IPv4), where
        // the engine, compose and autogit bind every address (community.docker issue 70).
        if s.ports.iter().any(|p| p.bind.is_none()) {
            c.insert("default_host_ip".into(), json!(""));
        }
    }
    if !s.mounts.is_empty() {
        let mounts: Vec<Value> = s
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Volume { name, target } => json!({
                    "type": "volume",
                    "source": volume_name(&st.project, name),
                    "target": target,
                }),
                Mount::Rendered { file, target } => {
                    *has_rendered = true;
                    json!({
                        "type": "bind",
                        "source": format!("{{{{ autogit_rendered_dir }}}}/{file}"),
                        "target": target,
                        "read_only": true,
                    })
                }
                Mount::Host {
                    path,
                    target,
                    read_only,
                } => json!({"type": "bind", "source": path, "target": target, "read_only": read_only}),
                Mount::HostPath {
                    of,
                    target,
                    read_only,
                } => {
                    let var = host_path_var(*of);
                    needs.0.entry(var.clone()).or_insert_with(|| {
                        (format!("the host path {}", of.compose_var()), false)
                    });
                    let src = format!("{{{{ {var} }}}}");
                    let target = target.clone().unwrap_or_else(|| src.clone());
                    json!({"type": "bind", "source": src, "target": target, "read_only": read_only})
                }
            })
            .collect();
        c.insert("mounts".into(), Value::Array(mounts));
    }
    if let Some(h) = &s.health {
        c.insert(
            "healthcheck".into(),
            json!({
                "test": h.test,
                "interval": format!("{}s", h.interval.as_secs()),
                "timeout": format!("{}s", h.timeout.as_secs()),
                "retries": h.retries,
                "start_period": format!("{}s", h.start_period.as_secs()),
            }),
        );
    }
    let networks: Vec<Value> = s
        .networks
        .iter()
        .map(|n| json!({"name": network_name(&st.project, n), "aliases": [s.name]}))
        .collect();
    c.insert("networks".into(), Value::Array(networks));
    let mut labels = Map::new();
    labels.insert("io.autogit.project".into(), json!(st.project));
    labels.insert("io.autogit.service".into(), json!(s.name));
    labels.insert("io.autogit.role".into(), json!(s.role));
    if let Some(r) = &s.route {
        labels.insert("io.autogit.host".into(), json!(r.host));
    }
    c.insert("labels".into(), Value::Object(labels));
    let mut task = Map::new();
    task.insert("name".into(), json!(format!("Service {}", s.name)));
    task.insert("community.docker.docker_container".into(), Value::Object(c));
    if secret {
        // The module echoes its parameters on failure and with -v: never a secret.
        task.insert("no_log".into(), json!(true));
    }
    Value::Object(task)
}

/// The playbook as data (a list of one play), as `playbook.yml` holds it.
pub fn playbook(st: &PlatformState) -> Value {
    plays(st).0
}

/// The files: `playbook.yml`, `inventory.yml`, in that order. The rendered configuration
/// files the services mount are expected under `rendered/` next to them (the caller
/// writes them).
pub fn files(st: &PlatformState) -> Vec<(String, String)> {
    let (plays, needs) = plays(st);
    let left: Vec<&str> = st
        .services
        .iter()
        .filter(|s| !s.always_local())
        .map(|s| s.name.as_str())
        .collect();
    let mut header = format!(
        "# Rendered by autogit for project `{}` (preset {}). Run with:\n#   ansible-playbook -i inventory.yml playbook.yml --ask-vault-pass\n# Needs the community.docker collection and the Docker SDK for Python on the target.\n",
        st.project, st.preset
    );
    let secrets: Vec<&str> = needs
        .0
        .iter()
        .filter(|(_, (_, s))| *s)
        .map(|(v, _)| v.as_str())
        .collect();
    if !secrets.is_empty() {
        header.push_str(&format!(
            "# Secrets come from Ansible Vault (ansible-vault create group_vars/{GROUP}/vault.yml): {}\n",
            secrets.join(", ")
        ));
    }
    let paths: Vec<String> = needs
        .0
        .iter()
        .filter(|(_, (_, s))| !*s)
        .map(|(v, (what, _))| format!("{v} ({what})"))
        .collect();
    if !paths.is_empty() {
        header.push_str(&format!(
            "# Host paths to set in the inventory: {}\n",
            paths.join(", ")
        ));
    }
    if !left.is_empty() {
        header.push_str(&format!(
            "# Not here (autogit manages them: remote or on-demand runners): {}\n",
            left.join(", ")
        ));
    }
    let playbook = format!("{header}{}", to_yaml(&plays));
    let mut vars = Map::new();
    vars.insert(
        "autogit_rendered_dir".into(),
        json!(format!("/var/lib/autogit/{}/rendered", st.project)),
    );

    let inventory = json!({
        "all": {"children": {GROUP: {
            "hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }},
            "vars": vars,
        }}},
    });
    let inventory = format!(
        "# The Docker host of `{}`: this machine by default; replace localhost with the host to\n# deploy to (reached over SSH). The secrets are not here: see playbook.yml.\n{}",
        st.project,
        to_yaml(&inventory)
    );
    vec![
        ("playbook.yml".to_owned(), playbook),
        ("inventory.yml".to_owned(), inventory),
    ]
}

/// The plays, and the variables they need.
fn plays(st: &PlatformState) -> (Value, Needs) {
    let services = exported(st);
    let mut needs = Needs::default();
    let mut has_rendered = false;
    let containers: Vec<Value> = start_order(&services)
        .into_iter()
        .map(|s| container_task(st, s, &mut needs, &mut has_rendered))
        .collect();
    let mut tasks = Vec::new();
    if !needs.0.is_empty() {
        let that: Vec<String> = needs.0.keys().map(|v| format!("{v} is defined")).collect();
        let secrets: Vec<&str> = needs
            .0
            .iter()
            .filter(|(_, (_, s))| *s)
            .map(|(v, _)| v.as_str())
            .collect();
        tasks.push(json!({
            "name": "Every variable the platform needs is set",
            "ansible.builtin.assert": {
                "that": that,
                "fail_msg": format!(
                    "set the Vault variables {} (ansible-vault create group_vars/{GROUP}/vault.yml) and the host paths in the inventory",
                    secrets.join(", ")
                ),
                "quiet": true,
            },
        }));
    }
    let nets: BTreeSet<&str> = services
        .iter()
        .flat_map(|s| s.networks.iter().map(String::as_str))
        .chain(std::iter::once(st.network.as_str()))
        .collect();
    for n in nets {
        tasks.push(json!({
            "name": format!("Network {n}"),
            "community.docker.docker_network": {
                "name": network_name(&st.project, n),
                "labels": {"io.autogit.project": st.project},
            },
        }));
    }
    let volumes = crate::state::named_volumes(services.iter().copied());
    for v in volumes {
        tasks.push(json!({
            "name": format!("Volume {v}"),
            "community.docker.docker_volume": {
                "volume_name": volume_name(&st.project, v),
                "labels": {"io.autogit.project": st.project},
            },
        }));
    }
    if has_rendered {
        tasks.push(json!({
            "name": "The configuration files the services mount",
            "ansible.builtin.copy": {
                "src": "rendered/",
                "dest": "{{ autogit_rendered_dir }}/",
                "mode": "0644",
            },
        }));
    }
    tasks.extend(containers);
    let mut play = Map::new();
    play.insert(
        "name".into(),
        json!(format!("The autogit platform {}", st.project)),
    );
    play.insert("hosts".into(), json!(GROUP));
    play.insert("gather_facts".into(), json!(false));
    play.insert("tasks".into(), Value::Array(tasks));
    (json!([play]), needs)
}
