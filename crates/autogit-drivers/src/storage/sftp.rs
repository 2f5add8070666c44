//! [`Sftp`]: a directory on an SSH host through the system `sftp` in batch mode, with the
//! SSH driver's options ([`crate::remote::ssh::Ssh::sftp_argv`]): host keys pinned in
//! autogit's `known_hosts` (`autogit runner trust HOST` first), never a prompt. Uploads go to
//! `<name>.part` and are renamed into place, so a copy cut short never has the archive's name.
//!
//! Paths reach sftp's batch parser double-quoted; autogit refuses paths holding `"`, `\` or a
//! line break rather than escaping them.

use super::{RemoteObject, Storage, StorageError, check_name};
use crate::remote::RemoteError;
use crate::remote::ssh::Ssh;
use std::path::Path;

#[derive(Debug)]
pub struct Sftp {
    name: String,
    ssh: Ssh,
    /// The remote directory, without a trailing `/`.
    dir: String,
}

impl Sftp {
    /// `dir` must exist on the host.
    pub fn new(name: &str, ssh: Ssh, dir: &str) -> Result<Self, StorageError> {
        let dir = dir.trim_end_matches('/');
        let dir = if dir.is_empty() { "/" } else { dir };
        quoted(name, dir)?;
        Ok(Self {
            name: name.to_owned(),
            ssh,
            dir: dir.to_owned(),
        })
    }

    fn remote_path(&self, name: &str) -> String {
        if self.dir == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.dir)
        }
    }

    fn fail(&self, e: RemoteError) -> StorageError {
        match e {
            RemoteError::Auth { detail, .. } => StorageError::Auth {
                target: self.name.clone(),
                detail,
                hint: "the target's `identity` and the host's authorized_keys".into(),
            },
            e => StorageError::Remote {
                target: self.name.clone(),
                detail: e.to_string(),
            },
        }
    }

    /// Runs `batch`; a failed command is an error carrying sftp's last message.
    async fn batch(&self, batch: &str, what: &str) -> Result<String, StorageError> {
        let out = self.ssh.sftp_batch(batch).await.map_err(|e| self.fail(e))?;
        if out.success() {
            return Ok(out.stdout);
        }
        let detail = out
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("sftp failed")
            .to_owned();
        if detail.contains("not found") || detail.contains("No such file") {
            return Err(StorageError::NotFound {
                target: self.name.clone(),
                name: what.to_owned(),
            });
        }
        Err(StorageError::Remote {
            target: self.name.clone(),
            detail: format!("{what}: {detail}"),
        })
    }
}

/// `s` double-quoted for sftp's batch parser, or an error for what it cannot hold plainly.
fn quoted(target: &str, s: &str) -> Result<String, StorageError> {
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(StorageError::Config {
            target: target.to_owned(),
            reason: format!(
                "the path `{}` holds `\"`, `\\` or a control character",
                s.escape_debug()
            ),
        });
    }
    Ok(format!("\"{s}\""))
}

#[async_trait::async_trait]
impl Storage for Sftp {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "sftp {}:{}",
            crate::remote::RemoteExec::host(&self.ssh),
            self.dir
        )
    }

    async fn put(&self, file: &Path, name: &str) -> Result<(), StorageError> {
        check_name(&self.name, name)?;
        let local = quoted(&self.name, &file.display().to_string())?;
        let dest = quoted(&self.name, &self.remote_path(name))?;
        let part = quoted(&self.name, &self.remote_path(&format!("{name}.part")))?;
        // SFTP v3 `rename` does not replace: the old copy goes first (`-`: may be absent).
        let batch = format!("put {local} {part}\n-rm {dest}\nrename {part} {dest}\n");
        self.batch(&batch, name).await.map(drop)
    }

    async fn get(&self, name: &str, file: &Path) -> Result<(), StorageError> {
        check_name(&self.name, name)?;
        let local = quoted(&self.name, &file.display().to_string())?;
        let src = quoted(&self.name, &self.remote_path(name))?;
        self.batch(&format!("get {src} {local}\n"), name)
            .await
            .map(drop)
    }

    async fn list(&self) -> Result<Vec<RemoteObject>, StorageError> {
        let dir = quoted(&self.name, &self.dir)?;
        let out = self.batch(&format!("ls -ln {dir}\n"), &self.dir).await?;
        Ok(parse_ls(&out))
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(&self.name, name)?;
        let path = quoted(&self.name, &self.remote_path(name))?;
        match self.batch(&format!("rm {path}\n"), name).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ends the shared SSH connection (`ControlPersist` would keep it a minute).
    async fn close(&self) {
        self.ssh.close().await;
    }
}

/// Regular files of `ls -ln` as sftp prints it (`-rw------- 1 0 0 1234 Dec  7 03:00 dir/name`;
/// its echo of the command, `sftp> …`, and other lines are skipped).
fn parse_ls(out: &str) -> Vec<RemoteObject> {
    out.lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 9 {
                return None;
            }
            let path = f[8..].join(" ");
            let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
            Some(RemoteObject {
                name,
                size: f[4].parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_lines_of_sftp() {
        let out = "sftp> ls -ln \"/srv/b\"\n-rw-------    1 0        0            1234 Dec  7 03:00 /srv/b/autogit-backup-20261207T030000Z-18.5.4.tar\ndrwx------    2 0        0            4096 Dec  7 03:00 /srv/b/sub\n-rw-r--r--    1 0        0              86 Dec  7 03:00 /srv/b/x.sha256\n";
        assert_eq!(
            parse_ls(out),
            vec![
                RemoteObject {
                    name: "autogit-backup-20261207T030000Z-18.5.4.tar".into(),
                    size: 1234
                },
                RemoteObject {
                    name: "x.sha256".into(),
                    size: 86
                }
            ]
        );
        assert!(quoted("t", "/a\"b").is_err());
        assert_eq!(quoted("t", "/srv/b").unwrap(), "\"/srv/b\"");
    }
}
