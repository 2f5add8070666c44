//! Loading everything a command needs: configuration file, .env, environment, host facts,
//! data dir. All file reading of the binary happens here.

use crate::cli::Global;
use autogit_app::Settings;
use autogit_core::config::Config;
use autogit_core::diag::{Diagnostic, Diagnostics};
use autogit_core::ingress::{external_url_check, gitlab_external_url};
use autogit_core::load::{FlagOverride, LoadInput, load};
use autogit_core::platform::{PlatformEnv, load_platform};
use autogit_core::source::{Origin, Sources, decode_utf8};
use autogit_core::yaml::Limits;
use autogit_drivers::fsx::{FsError, read_bounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a command loaded: the settings every controller takes, and the diagnostics of loading
/// them (with the sources they point into).
pub struct Loaded {
    pub settings: Arc<Settings>,
    pub sources: Sources,
    pub diagnostics: Diagnostics,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Loaded {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// How the binary reaches runner hosts: `ssh` with autogit's known_hosts and connection
/// sockets under the data directory; `AUTOGIT_SSH_CONFIG` names an ssh_config file to read
/// instead of the user's (identity, user, jump hosts).
pub fn ssh_config(g: &Global) -> autogit_drivers::remote::ssh::SshConfig {
    Settings::new(Config::default(), PlatformEnv::default(), data_dir(g))
        .with_env(process_env())
        .ssh_config()
}

pub fn data_dir(g: &Global) -> PathBuf {
    if let Some(d) = &g.data_dir {
        return d.clone();
    }
    if autogit_drivers::host::euid() == Some(0) {
        return PathBuf::from("/var/lib/autogit");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("autogit");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/autogit"),
        None => PathBuf::from(".autogit"),
    }
}

/// Reads a text file for the configuration; problems become diagnostics naming the file.
fn read_text(path: &Path, limits: Limits, sources: &mut Sources) -> Result<String, Diagnostic> {
    let shown = path.display().to_string();
    let bytes = read_bounded(path, limits.max_bytes as u64).map_err(|e| match e {
        FsError::TooLarge { size, limit, .. } => Diagnostic::error("too-large", format!("{shown}: file is {size} bytes, more than the {limit} bytes a configuration may have"))
            .help("autogit configuration files are small; check that the right file was given"),
        FsError::Io { source, .. } => Diagnostic::error("read", format!("cannot read {shown}: {source}")),
        e @ FsError::Outside { .. } => Diagnostic::error("read", e.to_string()),
    })?;
    match decode_utf8(&bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err((byte, line, col)) => {
            let id = sources.add(
                Origin::File(shown.clone()),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
            Err(Diagnostic::error(
                "invalid-utf8",
                format!("{shown} is not valid UTF-8 (byte {byte})"),
            )
            .at(Some(autogit_core::source::Loc::new(id, line, col, 1)))
            .help("save the file as UTF-8"))
        }
    }
}

pub fn load_all(g: &Global, extra_flags: &[FlagOverride]) -> Loaded {
    let env = process_env();
    let limits = Limits::default();
    let mut pre = Diagnostics::default();
    let mut pre_sources = Sources::new();

    let config_path = match &g.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("autogit.yml")).filter(|p| p.exists()),
    };
    let mut text = None;
    if let Some(p) = &config_path {
        match read_text(p, limits, &mut pre_sources) {
            Ok(t) => text = Some(t),
            Err(d) => pre.push(d),
        }
    }
    if pre.has_errors() {
        let mut settings = Settings::new(Config::default(), PlatformEnv::default(), data_dir(g));
        settings.config_path = config_path;
        settings.env = env;
        return Loaded {
            settings: Arc::new(settings),
            sources: pre_sources,
            diagnostics: pre,
        };
    }

    let mut flags: Vec<FlagOverride> = Vec::new();
    for s in &g.set {
        match FlagOverride::from_set(s) {
            Ok(f) => flags.push(f),
            Err(msg) => pre.push(Diagnostic::error("flag", msg)),
        }
    }
    flags.extend_from_slice(extra_flags);
    let name = config_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let input = LoadInput {
        file: text.as_deref().map(|t| (name.as_str(), t)),
        env: &env,
        flags: &flags,
        limits,
    };
    let mut loaded = load(&input);
    let mut diagnostics = pre;
    diagnostics.extend(std::mem::take(&mut loaded.diagnostics));

    // The .env registry: --env-file, or .env next to the configuration file.
    let env_path = g.env_file.clone().or_else(|| {
        let dir = config_path
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(dir.join(".env")).filter(|p| p.exists())
    });
    let mut sources = loaded.sources;
    let mut env_text = None;
    if let Some(p) = &env_path {
        match read_text(p, limits, &mut sources) {
            Ok(t) => env_text = Some(t),
            Err(d) => diagnostics.push(d),
        }
        warn_if_readable_by_others(p, &mut diagnostics);
    }
    let env_name = env_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (platform, entries) = load_platform(
        env_text.as_deref().map(|t| (env_name.as_str(), t)),
        &env,
        &mut sources,
        &mut diagnostics,
    );
    // GitLab's external_url against its ingress route (BASE_DOMAIN comes from .env); every
    // controller then sees the URL GitLab is deployed with.
    let mut config = loaded.config;
    if let Some(d) = external_url_check(&config, platform.base_domain.as_deref()) {
        diagnostics.push(d);
    }
    config.gitlab.external_url = gitlab_external_url(&config, platform.base_domain.as_deref());
    diagnostics.sort();
    Loaded {
        settings: Arc::new(Settings {
            config,
            platform,
            config_path,
            env_path,
            data_dir: data_dir(g),
            env,
            values: entries.into_iter().map(|(k, e)| (k, e.value)).collect(),
        }),
        sources,
        diagnostics,
    }
}

fn warn_if_readable_by_others(path: &Path, diags: &mut Diagnostics) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        diags.push(
            Diagnostic::warning(
                "env-permissions",
                format!(
                    "{} can be read by other users (mode {:o}); it may hold secrets",
                    path.display(),
                    m.permissions().mode() & 0o777
                ),
            )
            .help(format!("chmod 600 {}", path.display())),
        );
    }
}

/// The API server of a kubeconfig context (`KUBECONFIG`, else `~/.kube/config`), as kubectl
/// finds it; the current context when `context` is `None`.
pub fn kube_endpoint(
    context: Option<&str>,
) -> Result<autogit_drivers::kube::config::Endpoint, autogit_drivers::kube::config::KubeconfigError>
{
    let kubeconfig = std::env::var("KUBECONFIG").ok();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let files = autogit_drivers::kube::config::files(kubeconfig.as_deref(), home.as_deref());
    autogit_drivers::kube::config::endpoint(&files, context)
}
