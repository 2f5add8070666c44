//! `autogit export`: the platform state ([`autogit_core::state::PlatformState`]) from the
//! configuration, or captured from what runs, and the files of each generator.
//!
//! Capture reads the engine (every managed container of the project, inspected through
//! [`ContainerEngine::inspect`]), the state store (the mirror sources and the targets they
//! were first recorded with, the runners' registrations and their hosts' last probes), the
//! runners' hosts themselves when asked ([`capture_with`]: their running runner containers,
//! and whether they answer now), the certificate on disk and the DNS provider's zone (the platform's records, when autogit
//! manages records there); what none holds (how the certificate is obtained, the runners'
//! settings) comes from the configuration, and the drift between the configuration and what
//! runs is computed by `core::state::drift`.

use crate::Settings;
use crate::dns::DnsController;
use autogit_core::ansible;
use autogit_core::kubernetes;
use autogit_core::plan::Plan;
use autogit_core::render;
use autogit_core::state::{self, Drift, MirrorSource, PlatformState};
use autogit_core::terraform;
use autogit_drivers::engine::{ContainerEngine, EngineError};
use autogit_drivers::state::Store;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the running platform from the engine: {0}")]
    Engine(#[from] EngineError),
    #[error("cannot read the state database {path}: {reason}")]
    State { path: String, reason: String },
}

/// What a generator writes: (path relative to the output directory, text).
pub type Files = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Compose,
    Kubernetes,
    /// A Kustomize base: the Kubernetes manifests and their `kustomization.yaml`.
    Kustomize,
    Terraform,
    /// Terraform for a Kubernetes cluster: the Kubernetes export as `kubernetes_manifest`s.
    TerraformKubernetes,
    /// A Pulumi YAML program (`Pulumi.yaml`) for one Docker host.
    Pulumi,
    Ansible,
}

/// The state the configuration describes (its plan as this host would deploy it), with the
/// DNS records added through the API among the records it wants.
pub fn from_config(settings: &Arc<Settings>, plan: &Plan) -> PlatformState {
    let mut st = state::from_config(&settings.config, &settings.platform, plan, &|k: &str| {
        settings.setting(k)
    });
    let dns = DnsController::new(settings.clone(), crate::Bus::new(crate::clock::system()));
    if dns.manages_records()
        && let Ok(records) = dns.desired_records(plan)
    {
        st.dns = records;
    }
    st
}

/// A capture: what runs, what the configuration says, and how they differ.
#[derive(Clone, Debug)]
pub struct Captured {
    pub state: PlatformState,
    pub config: PlatformState,
    pub drift: Vec<Drift>,
    /// Why the DNS records were not read from the zone (no provider autogit can read, or the
    /// provider's error); the state then has the configuration's records and drift does
    /// not compare them.
    pub dns_unread: Option<String>,
}

/// Reads the running platform: the project's containers on `engine` and the state store of
/// the settings' data dir (read-only; a missing database means nothing was recorded). The
/// runners' hosts are not visited: see [`capture_with`].
pub async fn capture<E: ContainerEngine>(
    settings: &Arc<Settings>,
    engine: &E,
    plan: &Plan,
) -> Result<Captured, ExportError> {
    capture_with(settings, engine, plan, None).await
}

/// [`capture`], and with `runners` each runner's host visited as well (over SSH, a compute
/// extension, or locally; all at once, within the SSH timeouts): the runner containers
/// running there are counted, and a host that answers or not is this capture's probe, in
/// place of the daemon's last one. Nothing is written to the hosts or the store.
pub async fn capture_with<E: ContainerEngine>(
    settings: &Arc<Settings>,
    engine: &E,
    plan: &Plan,
    runners: Option<&crate::runners::RunnerController>,
) -> Result<Captured, ExportError> {
    let config = from_config(settings, plan);
    let mut specs = Vec::new();
    for o in engine.list(&plan.project).await? {
        match engine.inspect(&o.id).await {
            Ok(spec) => specs.push(spec),
            // Removed between the list and the inspection: it does not run.
            Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Where the platform controller mounts rendered files from (`platform::data_dir`).
    let rendered = absolute(&settings.data_dir).join("rendered");
    let rendered = rendered.display().to_string();
    let mut st = state::from_containers(&config, &specs, &rendered);
    st.mirrors = recorded_mirrors(settings, &config)?;
    recorded_runners(settings, &mut st)?;
    if let Some(runners) = runners {
        let (at, seen) = runners.running_containers().await;
        seen_runners(&mut st, at, &seen);
    }
    st.certificates = certificates_on_disk(settings, &config);
    let dns_unread = match zone_records(settings, plan).await {
        Ok(records) => {
            st.dns = records;
            None
        }
        Err(why) => Some(why),
    };
    let drift = state::drift(&config, &st);
    Ok(Captured {
        state: st,
        config,
        drift,
        dns_unread,
    })
}

/// The certificates the configuration has, as they are on disk (`<data>/tls/<domain>/`): the
/// names the leaf covers and when it expires; one that is not there (or unreadable) is left
/// out, which the drift reports.
fn certificates_on_disk(
    settings: &Settings,
    config: &PlatformState,
) -> Vec<state::CertificateState> {
    let Some(domain) = settings.platform.base_domain.as_deref() else {
        return Vec::new();
    };
    let (chain, key) = autogit_drivers::acme::cert_paths(&settings.data_dir.join("tls"), domain);
    let Ok(info) = autogit_drivers::acme::read_cert(&chain, &key) else {
        return Vec::new();
    };
    config
        .certificates
        .iter()
        .map(|c| {
            let mut names = info.names.clone();
            names.sort();
            state::CertificateState {
                name: c.name.clone(),
                dns_names: names,
                current: c.current.clone(),
                not_after: Some(info.not_after),
            }
        })
        .collect()
}

/// The platform's records as the provider's zone holds them (`core::state::dns_found`).
async fn zone_records(
    settings: &Arc<Settings>,
    plan: &Plan,
) -> Result<Vec<autogit_core::dns::Record>, String> {
    let dns = DnsController::new(settings.clone(), crate::Bus::new(crate::clock::system()));
    if !dns.manages_records() {
        return Err(
            "autogit manages no DNS records here (no BASE_DOMAIN, or DNS_PROVIDER is none or manual)"
                .to_owned(),
        );
    }
    let view = dns.plan(plan).await.map_err(|e| e.to_string())?;
    Ok(state::dns_found(&view.desired, &view.plan))
}

fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    })
}

/// The mirror sources the state store has recorded a target for, named and typed as the
/// configuration names them where it still does.
/// The runners' registrations and their hosts' last probes, as the state store recorded them
/// (read-only; a missing database means nothing was ever registered or probed).
fn recorded_runners(settings: &Settings, st: &mut PlatformState) -> Result<(), ExportError> {
    let db = settings.state_db();
    let (registrations, hosts) = if db.exists() {
        let err = |e: autogit_drivers::state::StateError| ExportError::State {
            path: db.display().to_string(),
            reason: e.to_string(),
        };
        let store = Store::open(&db).map_err(err)?;
        (
            store.registrations().map_err(err)?,
            store.hosts().map_err(err)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    for r in &mut st.runners {
        r.recorded = Some(state::RunnerRecord {
            registration: registrations
                .iter()
                .find(|g| g.name == r.name)
                .map(|g| g.state.clone()),
            probe: hosts
                .iter()
                .find(|h| h.host == r.host)
                .map(|h| state::HostProbe {
                    reachable: h.reachable,
                    checked_at: h.checked_at,
                    error: h.error.clone(),
                    live: false,
                }),
            containers: None,
        });
    }
    Ok(())
}

/// What a capture saw on the runners' hosts (`RunnerController::running_containers`) over
/// what the store recorded: the host's probe is this one, and the running containers are
/// counted where the host answered.
fn seen_runners(st: &mut PlatformState, at: i64, seen: &BTreeMap<String, Result<u32, String>>) {
    for r in &mut st.runners {
        let Some(got) = seen.get(&r.name) else {
            continue;
        };
        let rec = r.recorded.get_or_insert_with(Default::default);
        rec.probe = Some(state::HostProbe {
            reachable: got.is_ok(),
            checked_at: at,
            error: got.as_ref().err().cloned(),
            live: true,
        });
        rec.containers = got.as_ref().ok().copied();
    }
}

fn recorded_mirrors(
    settings: &Settings,
    config: &PlatformState,
) -> Result<Vec<MirrorSource>, ExportError> {
    let db = settings.state_db();
    if !db.exists() {
        return Ok(Vec::new());
    }
    let err = |e: autogit_drivers::state::StateError| ExportError::State {
        path: db.display().to_string(),
        reason: e.to_string(),
    };
    let targets = Store::open(&db)
        .map_err(err)?
        .mirror_targets()
        .map_err(err)?;
    Ok(targets
        .into_iter()
        .map(|t| {
            let known = config.mirrors.iter().find(|m| m.source == t.source);
            MirrorSource {
                name: known.map_or_else(|| t.target.clone(), |m| m.name.clone()),
                kind: known.map_or_else(|| "git".to_owned(), |m| m.kind.clone()),
                source: t.source,
                target: t.target,
                token_env: known.and_then(|m| m.token_env.clone()),
            }
        })
        .collect())
}

/// The files of one generator for `st`. The configuration files that services mount (Tempo,
/// Prometheus, the ingress) are rendered from the configuration (`plan`) in both cases: the
/// engine does not hold them.
pub fn files(format: Format, st: &PlatformState, settings: &Settings, plan: &Plan) -> Files {
    // The Kubernetes generators mount the cluster's variant (Prometheus without the host's
    // exporters and API).
    let cluster = |plan: &Plan, settings: &Settings| {
        render::cluster_files(plan, &settings.config)
            .into_iter()
            .collect()
    };
    let rendered = render::all_files(plan, &settings.config);
    match format {
        Format::Compose => {
            let mut out = vec![(
                "docker-compose.yml".to_owned(),
                render::compose_state(st, "."),
            )];
            out.extend(
                rendered
                    .into_iter()
                    .filter(|(name, _)| name != "docker-compose.yml"),
            );
            out
        }
        Format::Kubernetes => {
            let files: BTreeMap<String, String> = cluster(plan, settings);
            kubernetes::manifests(st, &files)
        }
        Format::Kustomize => {
            let files: BTreeMap<String, String> = cluster(plan, settings);
            autogit_core::kustomize::files(st, &files)
        }
        // The .tf files only: the configuration files the containers bind-mount from the
        // module's directory are written next to them by `plan::write_rendered`, as for
        // compose (it has the API's configuration copies and the certificate too).
        Format::Terraform => terraform::files(st),
        Format::TerraformKubernetes => {
            let files: BTreeMap<String, String> = cluster(plan, settings);
            terraform::kubernetes_files(st, &files)
        }
        // `Pulumi.yaml`; the rendered files go under `rendered/` (its `renderedDir`).
        Format::Pulumi => autogit_core::pulumi::files(st),
        // The playbook and its inventory; the rendered files go under `rendered/`
        // (`plan::write_rendered`), which the playbook copies to the host.
        Format::Ansible => ansible::files(st),
    }
}
