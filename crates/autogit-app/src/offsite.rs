//! Off-host copies of backup archives (`backup.targets`): each configured target opened as a
//! [`Storage`] (S3 with its keys from the variables it names, SFTP over the SSH driver with
//! autogit's pinned host keys, or an enabled `storage` extension), every new archive copied
//! and verified there with retention ([`copy_all`]), and a verified fetch for restores
//! ([`fetch`]). The workflow itself is `drivers::storage`; decisions (retention) are core's.

use crate::Settings;
use crate::extensions::Registry;
use autogit_core::config::BackupTarget;
use autogit_drivers::remote::ssh::Ssh;
use autogit_drivers::storage::s3::{DEFAULT_PART_SIZE, S3, S3Config};
use autogit_drivers::storage::sftp::Sftp;
use autogit_drivers::storage::{self, Copied, Listed, Storage};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An opened target; [`Opened::close`] ends an extension's process or a shared SSH
/// connection.
pub struct Opened(Box<dyn Storage>);

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

impl Opened {
    pub fn storage(&self) -> &dyn Storage {
        self.0.as_ref()
    }

    pub async fn close(self) {
        self.0.close().await;
    }
}

/// The configured target named `name`.
pub fn target<'a>(settings: &'a Settings, name: &str) -> Result<&'a BackupTarget, String> {
    let targets = &settings.config.backup.targets;
    targets.iter().find(|t| t.name() == name).ok_or_else(|| {
        let known: Vec<&str> = targets.iter().map(|t| t.name()).collect();
        if known.is_empty() {
            format!("no backup target `{name}`: backup.targets in autogit.yml names none")
        } else {
            format!(
                "no backup target `{name}` in backup.targets (there are: {})",
                known.join(", ")
            )
        }
    })
}

/// Opens `t` (nothing is sent yet, except an extension's handshake and `initialize`).
pub async fn open(settings: &Settings, t: &BackupTarget) -> Result<Opened, String> {
    match t {
        BackupTarget::S3(s) => {
            let key = |env: &str| -> Result<String, String> {
                settings.secret(env)?.ok_or_else(|| {
                    format!(
                        "backup target `{}`: {env} is not set (or {env}_FILE, a file holding it)",
                        s.name
                    )
                })
            };
            let access_key_id = key(&s.access_key_env)?;
            let secret = key(&s.secret_key_env)?;
            S3::new(S3Config {
                name: s.name.clone(),
                endpoint: s.endpoint.clone(),
                bucket: s.bucket.clone(),
                region: s.region.clone(),
                prefix: s.prefix.clone(),
                access_key_id,
                secret_access_key: secret.into(),
                key_envs: (s.access_key_env.clone(), s.secret_key_env.clone()),
                part_size: settings
                    .setting("AUTOGIT_S3_PART_SIZE")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_PART_SIZE),
                timeout: Duration::from_secs(1800),
            })
            .map(|s| Opened(Box::new(s)))
            .map_err(|e| e.to_string())
        }
        BackupTarget::Sftp(s) => {
            let mut cfg = settings.ssh_config();
            if let Some(id) = &s.identity {
                cfg.identity = Some(PathBuf::from(id));
            }
            cfg.port = s.port;
            cfg.command_timeout = Duration::from_secs(3600);
            let ssh = Ssh::new(cfg, &s.host).map_err(|e| e.to_string())?;
            Sftp::new(&s.name, ssh, &s.path)
                .map(|s| Opened(Box::new(s)))
                .map_err(|e| e.to_string())
        }
        BackupTarget::Extension(e) => {
            let registry = Registry::load(settings)?;
            registry
                .storage_extension(&e.name, settings)
                .await
                .map(|e| Opened(Box::new(e)))
                .map_err(|e| e.to_string())
        }
    }
}

/// The outcome of copying one archive to one target.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Copy {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied: Option<Copied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Copies `archive` to every configured target, verifies each copy, then applies the target's
/// retention (`keep`, else `backup.retention`; `max_age`) at `now`. One target failing does
/// not stop the others.
pub async fn copy_all(settings: &Settings, archive: &Path, work: &Path, now: u64) -> Vec<Copy> {
    let mut out = Vec::new();
    for t in &settings.config.backup.targets {
        let result = async {
            let opened = open(settings, t).await?;
            let r = async {
                let store = opened.storage();
                let mut copied = storage::upload_verified(store, archive, work)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = t.retention();
                copied.removed = storage::prune(
                    store,
                    r.keep.unwrap_or(settings.config.backup.retention),
                    r.max_age.map(|d| d.0.as_secs()),
                    now,
                )
                .await
                .map_err(|e| format!("copied and verified, but retention failed: {e}"))?;
                Ok::<_, String>(copied)
            }
            .await;
            opened.close().await;
            r
        }
        .await;
        out.push(match result {
            Ok(c) => Copy {
                target: t.name().to_owned(),
                copied: Some(c),
                error: None,
            },
            Err(e) => Copy {
                target: t.name().to_owned(),
                copied: None,
                error: Some(e),
            },
        });
    }
    out
}

/// The complete archives on target `name`, oldest first.
pub async fn list(settings: &Settings, name: &str) -> Result<Vec<Listed>, String> {
    let opened = open(settings, target(settings, name)?).await?;
    let r = storage::list_archives(opened.storage())
        .await
        .map_err(|e| e.to_string());
    opened.close().await;
    r
}

/// Fetches `archive` from target `name` into `dir` and verifies it against its checksum
/// file; returns the local path. `latest` picks the newest complete archive.
pub async fn fetch(
    settings: &Settings,
    name: &str,
    archive: &str,
    dir: &Path,
) -> Result<PathBuf, String> {
    let opened = open(settings, target(settings, name)?).await?;
    let r = async {
        let store = opened.storage();
        let archive = if archive == "latest" {
            storage::list_archives(store)
                .await
                .map_err(|e| e.to_string())?
                .pop()
                .map(|l| l.name)
                .ok_or_else(|| format!("backup target `{name}` holds no complete archive"))?
        } else {
            archive.to_owned()
        };
        autogit_drivers::fsx::create_private_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let dest = dir.join(&archive);
        storage::fetch_verified(store, &archive, &dest)
            .await
            .map_err(|e| e.to_string())?;
        Ok(dest)
    }
    .await;
    opened.close().await;
    r
}
