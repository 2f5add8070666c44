//! The plan as every controller sees it: the configuration planned against this host's facts,
//! the ports remembered from earlier installs (in the state store) and the certificate on
//! disk; and the rendered files written from it.

use crate::Settings;
use autogit_core::diag::Diagnostics;
use autogit_core::plan::{API_RENDERED, HostFacts, HostPath, HostPaths};
use autogit_core::plan::{Plan, PlanInput, plan as core_plan};
use autogit_core::render;
use autogit_drivers::fsx::write_under;
use autogit_drivers::state::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The plan, the planner's diagnostics (the loader's are the caller's) and the host facts.
/// Its host paths are resolved ([`host_paths`]): what the engine, the compose export and
/// `autogit plan` see are this host's paths.
pub fn plan(settings: &Settings) -> (Plan, Diagnostics, Option<HostFacts>) {
    plan_with(settings, autogit_drivers::host::facts(&settings.env))
}

/// [`plan`] with the given host facts; `None` plans for no host in particular (the preset's
/// sizes uncapped by this host's CPUs: `export kubernetes`, where the cluster's nodes run it).
pub fn plan_with(
    settings: &Settings,
    host: Option<HostFacts>,
) -> (Plan, Diagnostics, Option<HostFacts>) {
    let input = PlanInput {
        host,
        remembered_ports: remembered_ports(settings),
        tls_certificate: tls_certificate(settings),
    };
    let (mut plan, diags) = core_plan(&settings.config, &settings.platform, &input);
    let needed = HostPath::ALL
        .into_iter()
        .any(|p| autogit_core::plan::needs(&plan, p));
    if needed {
        autogit_core::plan::resolve(&mut plan, &host_paths(settings));
        // `serve` reads its configuration once: a changed autogit.yml recreates the container
        // (the digest is part of its spec). autogit.yml holds no secret values.
        if let Some(api) = plan.services.iter_mut().find(|s| s.name == "api") {
            api.environment.insert(
                "AUTOGIT_CONFIG_DIGEST".into(),
                format!(
                    "{:016x}",
                    autogit_core::container::fnv1a(effective_config(settings).as_bytes())
                ),
            );
        }
    }
    (plan, diags, host)
}

/// This host's values of the paths a plan names ([`HostPath`]): the data dir (absolute), the
/// secrets key ([`autogit_drivers::secrets::KeyLocation`], from the process environment as
/// the secret store reads it), the running binary and the engine socket. Inside the `api`
/// container, `AUTOGIT_HOST_BINARY` and `AUTOGIT_HOST_ENGINE_SOCKET` carry the host's values
/// (set by the plan), so that the API's own deploys plan the same containers.
pub fn host_paths(settings: &Settings) -> HostPaths {
    let env = |k: &str| {
        settings
            .env
            .iter()
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let data = absolute(&settings.data_dir);
    let key = autogit_drivers::secrets::KeyLocation::resolve(&data, &env);
    let binary = env(HostPath::Binary.compose_var()).unwrap_or_else(|| {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| autogit_core::plan::API_BINARY.to_owned())
    });
    let socket = env(HostPath::EngineSocket.compose_var()).unwrap_or_else(|| {
        settings
            .socket()
            .map(Path::to_owned)
            .or_else(|| autogit_drivers::host::docker_socket(&settings.env).map(|(p, _)| p))
            .unwrap_or_else(|| PathBuf::from(autogit_core::plan::API_ENGINE_SOCKET))
            .display()
            .to_string()
    });
    HostPaths {
        data_dir: data.display().to_string(),
        key_file: key.path.display().to_string(),
        binary,
        engine_socket: socket,
        guard_dir: data.join("guard").display().to_string(),
    }
}

/// `p` made absolute (canonical when it exists), as bind mounts need.
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    })
}

/// The configuration this autogit runs with, as text: its autogit.yml, or the embedded
/// default when there is none.
fn effective_config(settings: &Settings) -> String {
    settings
        .config_path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| autogit_core::load::EMBEDDED_DEFAULT.to_owned())
}

/// The plan, or why there is none, without printing anything (controllers and the daemon;
/// the commands print diagnostics themselves).
pub fn quiet(settings: &Settings) -> Result<Plan, String> {
    let (plan, diags, _) = plan(settings);
    if diags.has_errors() {
        return Err("the configuration has errors; run `autogit validate`".to_owned());
    }
    Ok(plan)
}

/// Host ports chosen for services on an earlier install, so the next plan keeps them: from the
/// state store (read-only: a missing database is not created), or from the `state/ports.json`
/// of autogit 0.1 until the next install moves them into the store.
pub fn remembered_ports(settings: &Settings) -> BTreeMap<String, u16> {
    let db = settings.state_db();
    if db.exists()
        && let Ok(ports) = Store::open(&db).and_then(|s| s.ports())
        && !ports.is_empty()
    {
        return ports;
    }
    std::fs::read(settings.data_dir.join("state/ports.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records the plan's dynamic host ports (every local service but GitLab, whose ports are
/// configured) in the state store, and removes the old `state/ports.json`.
pub fn remember_ports(store: &Store, settings: &Settings, plan: &Plan) -> Result<(), String> {
    for s in plan.local().filter(|s| s.name != "gitlab") {
        if let Some(p) = s.ports.first() {
            store.set_port(&s.name, p.host).map_err(|e| e.to_string())?;
        }
        // A second port of a service (Tempo's OTLP receiver) under `<service>-<port>`.
        for p in s.ports.iter().skip(1) {
            store
                .set_port(&format!("{}-{}", s.name, p.name), p.host)
                .map_err(|e| e.to_string())?;
        }
    }
    let legacy = settings.data_dir.join("state/ports.json");
    if legacy.exists() {
        let _ = std::fs::remove_file(legacy);
    }
    Ok(())
}

/// Where autogit exports its traces: OTLP_ENDPOINT, else the platform's Tempo on this host
/// when it is enabled (`core::plan::tempo_otlp_endpoint`), else nowhere.
pub fn otlp_endpoint(settings: &Settings) -> Option<String> {
    if let Some(e) = &settings.platform.otlp_endpoint {
        return Some(e.clone());
    }
    if !settings
        .platform
        .services_enabled
        .contains(&autogit_core::platform::ServiceId::Tempo)
    {
        return None;
    }
    autogit_core::plan::tempo_otlp_endpoint(&quiet(settings).ok()?)
}

/// The platform certificate on disk, as the planner's fact: its expiry (changes with every
/// renewal), or `None` when there is none (the ingress then serves without it).
pub fn tls_certificate(settings: &Settings) -> Option<String> {
    let domain = settings.platform.base_domain.as_ref()?;
    let (chain, key) = autogit_drivers::acme::cert_paths(&settings.data_dir.join("tls"), domain);
    if !key.is_file() {
        return None;
    }
    let info = autogit_drivers::acme::read_cert(&chain, &key).ok()?;
    Some(format!(
        "expires {}",
        autogit_core::civil::rfc3339_utc(info.not_after.max(0) as u64)
    ))
}

/// Writes every rendered file of the plan under `dir` (atomically), the HTTP-01 webroot when
/// used, and a copy of the platform certificate the ingress mounts (`tls/`, key 0600).
pub fn write_rendered(
    settings: &Settings,
    dir: &Path,
    plan: &Plan,
) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    // The certificate first: the ingress configuration that names it is written after, so
    // Traefik, which reloads when its dynamic file changes (and only then), never reads the
    // new configuration with the old certificate files. Each file is replaced atomically.
    if plan.tls.is_some()
        && let Some(domain) = &plan.base_domain
    {
        let (chain, key) =
            autogit_drivers::acme::cert_paths(&settings.data_dir.join("tls"), domain);
        for (src, name, mode) in [(chain, "fullchain.pem", 0o644), (key, "key.pem", 0o600)] {
            let dest = std::fs::read(&src)
                .map_err(|e| format!("{}: {e}", src.display()))
                .and_then(|b| {
                    write_under(dir, &format!("tls/{name}"), &b, mode).map_err(|e| e.to_string())
                })
                .map_err(|e| format!("cannot copy the certificate: {e}"))?;
            written.push(dest);
        }
    }
    for (rel, content) in render::all_files(plan, &settings.config) {
        let path = write_under(dir, &rel, content.as_bytes(), 0o644)
            .map_err(|e| format!("cannot write {e}"))?;
        written.push(path);
    }
    if plan.service("api").is_some() {
        written.extend(write_api_config(settings, &dir.join(API_RENDERED))?);
    }
    // Mounted as directories into containers that run as other users (Prometheus and
    // Alertmanager: nobody; Grafana: 472), so their modes must not follow a strict umask.
    // Not the API's directory: it holds `.env` and runs as root.
    for s in plan.local() {
        for m in &s.mounts {
            if let autogit_core::plan::Mount::Rendered { file, .. } = m
                && file != API_RENDERED
            {
                open_tree(&dir.join(file))?;
            }
        }
    }
    // The deployed guard's two directories exist before its container mounts them (else the
    // engine would make them, root-owned): its view of the compute routes, and its data.
    if plan.service(autogit_core::plan::GUARD_SERVICE).is_some() {
        let routes = dir.join(autogit_core::plan::GUARD_RENDERED);
        let data = settings.data_dir.join("guard");
        for d in [&routes, &data] {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        open_tree(&routes)?;
    }
    // nginx's directory of compute routes, mounted even while it is empty.
    if plan.service("nginx").is_some() {
        let routes = dir.join(autogit_core::routes::NGINX_RENDERED_DIR);
        std::fs::create_dir_all(&routes)
            .map_err(|e| format!("cannot create {}: {e}", routes.display()))?;
        open_tree(&routes)?;
    }
    if plan.http01.is_some() {
        let acme = dir.join("acme-http/.well-known/acme-challenge");
        std::fs::create_dir_all(&acme)
            .map_err(|e| format!("cannot create {}: {e}", acme.display()))?;
    }
    Ok(written)
}

/// Mode 0755 on `path` and every directory under it, when it is a directory and not a link
/// (the files keep theirs).
fn open_tree(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    // Not through a link: only what autogit made under its own directory.
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", path.display()))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            open_tree(&e.path())?;
        }
    }
    Ok(())
}

/// The `api` container's configuration, under `dir` (mounted at `core::plan::API_CONFIG_DIR`):
/// copies of autogit.yml and of `.env` (empty when there is none), 0600 because `.env` holds
/// secrets. The secrets key is created when missing, as the container mounts it (a bind mount
/// of a missing file would fail, or make a directory in its place).
pub fn write_api_config(settings: &Settings, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let yml = write_under(
        dir,
        "autogit.yml",
        effective_config(settings).as_bytes(),
        0o600,
    )
    .map_err(|e| format!("cannot write {e}"))?;
    let dotenv = match &settings.env_path {
        Some(p) => std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        None => Vec::new(),
    };
    let env = write_under(dir, ".env", &dotenv, 0o600).map_err(|e| format!("cannot write {e}"))?;
    let paths = host_paths(settings);
    let key = autogit_drivers::secrets::KeyLocation::resolve(Path::new(&paths.data_dir), &|k| {
        settings
            .env
            .iter()
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    });
    if !key.path.is_file() {
        autogit_drivers::secrets::SecretStore::open_with_key(Path::new(&paths.data_dir), key)
            .and_then(|s| s.ensure_key())
            .map_err(|e| format!("the api service mounts the secrets key: {e}"))?;
    }
    Ok(vec![yml, env])
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_core::config::Config;
    use autogit_core::platform::PlatformEnv;

    /// Ports chosen by an install come back in the next plan: from the state store, or from
    /// the `state/ports.json` of autogit 0.1 until the next install moves them.
    #[test]
    fn remembered_ports_come_from_the_store_then_the_legacy_file() {
        let d = tempfile::tempdir().unwrap();
        let s = Settings::new(
            Config::default(),
            PlatformEnv::default(),
            d.path().to_owned(),
        );
        assert!(remembered_ports(&s).is_empty());
        std::fs::create_dir_all(d.path().join("state")).unwrap();
        std::fs::write(d.path().join("state/ports.json"), r#"{"traefik": 30080}"#).unwrap();
        assert_eq!(remembered_ports(&s).get("traefik"), Some(&30080));
        let store = Store::open(&s.state_db()).unwrap();
        store.set_port("traefik", 30443).unwrap();
        assert_eq!(remembered_ports(&s).get("traefik"), Some(&30443));
        // No state database: nothing is created by reading.
        let e = tempfile::tempdir().unwrap();
        let t = Settings::new(
            Config::default(),
            PlatformEnv::default(),
            e.path().to_owned(),
        );
        let _ = remembered_ports(&t);
        assert!(!t.state_db().exists());
    }
}
