//! What every controller is configured with: the loaded configuration, the `.env` registry,
//! the values of `.env` and the environment (for the secrets the configuration names), and
//! the data directory. The binary reads the files (its `ctx.rs`) and hands a `Settings` over;
//! nothing here reads a configuration file.

use autogit_core::config::Config;
use autogit_core::platform::PlatformEnv;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Settings {
    /// The configuration, with `gitlab.external_url` the URL GitLab is deployed with (derived
    /// from BASE_DOMAIN unless chosen), so every controller agrees with the rendered gitlab.rb.
    pub config: Config,
    pub platform: PlatformEnv,
    /// Which configuration file was used; `None` for the embedded default.
    pub config_path: Option<PathBuf>,
    /// Which platform `.env` was read, if any.
    pub env_path: Option<PathBuf>,
    /// autogit's data directory (state, secrets, caches, rendered files).
    pub data_dir: PathBuf,
    /// The process environment.
    pub env: Vec<(String, String)>,
    /// Values of the `.env` file. Never printed.
    pub values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("config_path", &self.config_path)
            .field("data_dir", &self.data_dir)
            .field("values", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings for a configuration held in memory (tests, embedded default). GitLab's
    /// `external_url` becomes the one it is deployed with
    /// (`autogit_core::ingress::gitlab_external_url`: its ingress route when not chosen).
    pub fn new(mut config: Config, platform: PlatformEnv, data_dir: PathBuf) -> Self {
        config.gitlab.external_url =
            autogit_core::ingress::gitlab_external_url(&config, platform.base_domain.as_deref());
        Self {
            config,
            platform,
            config_path: None,
            env_path: None,
            data_dir,
            env: Vec::new(),
            values: BTreeMap::new(),
        }
    }

    /// The same settings with this process environment.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// The value of one variable: the environment first, then `.env`; empty counts as unset.
    pub fn value(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| self.values.get(name).cloned())
            .filter(|v| !v.is_empty())
    }

    /// The values of the secrets named by the plan (those that are set).
    pub fn secrets(&self, names: &[String]) -> BTreeMap<String, String> {
        names
            .iter()
            .filter_map(|n| Some((n.clone(), self.value(n)?)))
            .collect()
    }

    /// A setting from `.env` or the environment, trimmed; `None` when unset or blank.
    pub fn setting(&self, key: &str) -> Option<String> {
        self.value(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A secret named in the registry: `NAME` from the environment or `.env`, else the content
    /// of the file `NAME_FILE` points at (without its trailing newline). `Ok(None)` when
    /// neither is set; the error names the variable and the file, never the value.
    pub fn secret(&self, name: &str) -> Result<Option<String>, String> {
        autogit_drivers::secrets::env_or_file(&|k: &str| self.value(k), name)
    }

    /// The settings as a lookup function, for the drivers' factories.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |k: &str| self.value(k)
    }

    /// The data dir, created 0700 whatever the umask when it is missing, as an absolute path
    /// (bind mounts need one).
    pub fn ensure_data_dir(&self) -> Result<PathBuf, String> {
        let d = &self.data_dir;
        autogit_drivers::fsx::create_private_dir(d)
            .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        Ok(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
    }

    pub fn state_db(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    /// Where backup archives go: `backup.path`, relative to the data dir unless absolute.
    pub fn backup_dir(&self) -> PathBuf {
        let p = Path::new(&self.config.backup.path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.data_dir.join(p)
        }
    }

    /// GitLab's published HTTP port on this host (loopback, or the one address of
    /// `gitlab.ports.bind`): how the daemon and `install` reach it.
    pub fn gitlab_local_url(&self) -> String {
        let ports = &self.config.gitlab.ports;
        format!("http://{}:{}", ports.local_host(), ports.http)
    }

    /// How autogit reaches runner hosts: `ssh` with autogit's known_hosts and connection
    /// sockets under the data directory; `AUTOGIT_SSH_CONFIG` names an ssh_config file to read
    /// instead of the user's (identity, user, jump hosts).
    pub fn ssh_config(&self) -> autogit_drivers::remote::ssh::SshConfig {
        let mut cfg = autogit_drivers::remote::ssh::SshConfig::new(&self.data_dir);
        cfg.config_file = self
            .env
            .iter()
            .find(|(k, v)| k == "AUTOGIT_SSH_CONFIG" && !v.is_empty())
            .map(|(_, v)| PathBuf::from(v));
        cfg
    }

    /// The engine socket the configuration names, if any.
    pub fn socket(&self) -> Option<&Path> {
        self.config.platform.socket.as_deref().map(Path::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::new(
            Config::default(),
            PlatformEnv::default(),
            PathBuf::from("/nonexistent"),
        );
        s.values.insert("A".into(), "from-dotenv".into());
        s.values.insert("B".into(), "dotenv-only".into());
        s.env.push(("A".into(), "from-env".into()));
        s.env.push(("EMPTY".into(), String::new()));
        s
    }

    #[test]
    fn the_environment_wins_and_empty_is_unset() {
        let s = settings();
        assert_eq!(s.value("A").as_deref(), Some("from-env"));
        assert_eq!(s.value("B").as_deref(), Some("dotenv-only"));
        assert_eq!(s.value("EMPTY"), None);
        assert_eq!(s.value("MISSING"), None);
    }

    #[test]
    fn secret_files_are_read_and_errors_never_hold_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cret\n").unwrap();
        let mut s = settings();
        s.values
            .insert("TOKEN_FILE".into(), f.display().to_string());
        assert_eq!(s.secret("TOKEN").unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&f, "\n").unwrap();
        let e = s.secret("TOKEN").unwrap_err();
        assert!(e.contains("TOKEN_FILE") && e.contains("empty"), "{e}");
        assert_eq!(s.secret("NOTHING").unwrap(), None);
        assert!(!format!("{s:?}").contains("dotenv-only"));
    }
}
