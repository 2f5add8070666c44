//! Off-host copies of backup archives (`backup.targets`): the [`Storage`] trait (put, get,
//! list, delete of flat object names), its providers ([`s3::S3`], [`sftp::Sftp`], and
//! extensions of type `storage`: `crate::extension::storage`), and the verified workflow on
//! top of any of them:
//!
//! - [`upload_verified`]: put the archive, read it back and compare its size and SHA-256 with
//!   the local file, and only then write its checksum file `<name>.sha256` (sha256sum format):
//!   a copy without one is incomplete and never offered for restore.
//! - [`fetch_verified`]: get the checksum file and the archive, and refuse (deleting the
//!   local copy) an archive whose SHA-256 differs.
//! - [`prune`]: retention on the remote (`core::backup::remote_retention`).
//!
//! Names are plain archive names ([`check_name`]); a provider maps them to keys or paths.

pub mod s3;
pub mod sftp;

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The suffix of an archive's checksum file on a target.
pub const CHECKSUM_SUFFIX: &str = ".sha256";

/// One object on a target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteObject {
    pub name: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{target}: the credentials were refused ({detail}); check {hint}")]
    Auth {
        target: String,
        detail: String,
        hint: String,
    },
    #[error(
        "{target}: `{name}` is not there; `autogit restore --from {target} --list` shows what is"
    )]
    NotFound { target: String, name: String },
    #[error(
        "{target}: `{name}` is corrupt: its SHA-256 is {found}, its checksum file says {expected}; it was not used (take another copy or restore an older one)"
    )]
    Corrupt {
        target: String,
        name: String,
        expected: String,
        found: String,
    },
    #[error(
        "{target}: the copy of `{name}` read back differs from the archive ({detail}); the copy was deleted, check the target's storage"
    )]
    Mismatch {
        target: String,
        name: String,
        detail: String,
    },
    #[error("{target}: {detail}")]
    Remote { target: String, detail: String },
    #[error("{target}: `{name}` is not an archive name autogit writes")]
    BadName { target: String, name: String },
    #[error("{target} is not usable: {reason}")]
    Config { target: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A place archives are copied to. Names are flat (no `/`); [`check_name`] holds for each.
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// The target's name (`backup.targets[].name`), for messages.
    fn name(&self) -> &str;
    /// Where it is, e.g. `s3 http://minio:9000/backups/gitlab/` (no secrets).
    fn describe(&self) -> String;
    /// Writes `file` as `name`, replacing an object of that name.
    async fn put(&self, file: &Path, name: &str) -> Result<(), StorageError>;
    /// Writes object `name` to `file` (created or truncated).
    async fn get(&self, name: &str, file: &Path) -> Result<(), StorageError>;
    /// Every object (archives, checksum files and anything else there).
    async fn list(&self) -> Result<Vec<RemoteObject>, StorageError>;
    /// Deletes `name`; one that is not there is not an error.
    async fn delete(&self, name: &str) -> Result<(), StorageError>;
    /// Releases what the provider holds open (a shared SSH connection, an extension process).
    async fn close(&self) {}
}

/// An archive name, or an archive name with [`CHECKSUM_SUFFIX`]: nothing else is put,
/// fetched or deleted.
pub fn check_name(target: &str, name: &str) -> Result<(), StorageError> {
    let base = name.strip_suffix(CHECKSUM_SUFFIX).unwrap_or(name);
    if autogit_core::backup::is_archive_name(base) && !name.contains('/') {
        Ok(())
    } else {
        Err(StorageError::BadName {
            target: target.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// Size and lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<(u64, String), StorageError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, data_encoding::HEXLOWER.encode(&hasher.finalize())))
}

async fn sha256_async(path: &Path) -> Result<(u64, String), StorageError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || sha256_file(&p))
        .await
        .map_err(|e| StorageError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?
}

/// What [`upload_verified`] copied.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    pub target: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Archives retention deleted on the target afterwards.
    pub removed: Vec<String>,
}

/// A scratch file in `work` that is removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(work: &Path, target: &str, name: &str) -> Scratch {
    Scratch(work.join(format!(".{target}-{name}.{}.part", std::process::id())))
}

/// Copies `archive` to `store`, reads the copy back and compares size and SHA-256, then
/// writes `<name>.sha256`. A copy that differs is deleted and is an error. `work` holds the
/// read-back copy while it is checked.
pub async fn upload_verified(
    store: &dyn Storage,
    archive: &Path,
    work: &Path,
) -> Result<Copied, StorageError> {
    let target = store.name().to_owned();
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_name(&target, &name)?;
    let (size, sha256) = sha256_async(archive).await?;
    store.put(archive, &name).await?;
    let back = scratch(work, &target, &name);
    let checked = async {
        store.get(&name, &back.0).await?;
        let (got_size, got_sha) = sha256_async(&back.0).await?;
        if (got_size, &got_sha) != (size, &sha256) {
            return Err(StorageError::Mismatch {
                target: target.clone(),
                name: name.clone(),
                detail: format!(
                    "{got_size} bytes, SHA-256 {got_sha}; expected {size} bytes, {sha256}"
                ),
            });
        }
        Ok(())
    }
    .await;
    drop(back);
    if let Err(e) = checked {
        let _ = store.delete(&name).await;
        return Err(e);
    }
    let sum = scratch(work, &target, &format!("{name}{CHECKSUM_SUFFIX}"));
    std::fs::write(&sum.0, format!("{sha256}  {name}\n")).map_err(io_err(&sum.0))?;
    store
        .put(&sum.0, &format!("{name}{CHECKSUM_SUFFIX}"))
        .await?;
    Ok(Copied {
        target,
        name,
        size,
        sha256,
        removed: Vec::new(),
    })
}

/// An archive on a target, complete (it has its checksum file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub name: String,
    pub size: u64,
}

/// The complete archives on `store`, oldest first.
pub async fn list_archives(store: &dyn Storage) -> Result<Vec<Listed>, StorageError> {
    let objects = store.list().await?;
    let mut out: Vec<Listed> = objects
        .iter()
        .filter(|o| autogit_core::backup::is_archive_name(&o.name))
        .filter(|o| {
            let sum = format!("{}{CHECKSUM_SUFFIX}", o.name);
            objects.iter().any(|x| x.name == sum)
        })
        .map(|o| Listed {
            name: o.name.clone(),
            size: o.size,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Fetches `name` from `store` into `dest` after checking it against its checksum file; a
/// corrupt or incomplete copy is removed and is an error. Returns size and SHA-256.
pub async fn fetch_verified(
    store: &dyn Storage,
    name: &str,
    dest: &Path,
) -> Result<(u64, String), StorageError> {
    let target = store.name().to_owned();
    check_name(&target, name)?;
    let work = dest.parent().unwrap_or(Path::new("."));
    let sum = scratch(work, &target, &format!("{name}{CHECKSUM_SUFFIX}"));
    store
        .get(&format!("{name}{CHECKSUM_SUFFIX}"), &sum.0)
        .await
        .map_err(|e| match e {
            StorageError::NotFound { .. } => StorageError::NotFound {
                target: target.clone(),
                name: name.to_owned(),
            },
            e => e,
        })?;
    let text = std::fs::read(&sum.0).map_err(io_err(&sum.0))?;
    let expected = String::from_utf8_lossy(&text[..text.len().min(256)])
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StorageError::Remote {
            target,
            detail: format!("the checksum file of `{name}` holds no SHA-256"),
        });
    }
    let part = scratch(work, &target, name);
    store.get(name, &part.0).await?;
    let (size, found) = sha256_async(&part.0).await?;
    if found != expected {
        return Err(StorageError::Corrupt {
            target,
            name: name.to_owned(),
            expected,
            found,
        });
    }
    std::fs::rename(&part.0, dest).map_err(io_err(dest))?;
    Ok((size, found))
}

/// Applies retention on `store`: archives beyond the newest `keep` or older than `max_age`
/// seconds at `now` are deleted with their checksum files (the newest always stays).
pub async fn prune(
    store: &dyn Storage,
    keep: u32,
    max_age: Option<u64>,
    now: u64,
) -> Result<Vec<String>, StorageError> {
    let names: Vec<String> = store.list().await?.into_iter().map(|o| o.name).collect();
    let gone = autogit_core::backup::remote_retention(&names, keep, max_age, now);
    for name in &gone {
        store.delete(&format!("{name}{CHECKSUM_SUFFIX}")).await?;
        store.delete(name).await?;
    }
    Ok(gone)
}
