//! Files: bounded reads and atomic writes (temp file in the same directory, fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: refused, it is outside {dir} (an absolute or `..` path, or a symbolic link out of it); choose an output directory without links that leave it"
    )]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("{path}: file is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |source| FsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads at most `limit` bytes; a larger file is refused before it is read.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
    let file = File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if meta.is_file() && meta.len() > limit {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit,
        });
    }
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > limit {
        return Err(FsError::TooLarge {
            path: path.to_owned(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

/// Bytes an unprivileged writer may still use on the file system holding `path` (statvfs
/// `f_bavail * f_frsize`). A path that does not exist yet is measured at its nearest
/// existing ancestor.
pub fn free_space(path: &Path) -> Result<u64, FsError> {
    disk_usage(path).map(|u| u.free_bytes)
}

/// Space and inodes of the file system holding `path` (measured at its nearest existing
/// ancestor), as an unprivileged writer sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub free_inodes: u64,
    pub total_inodes: u64,
}

pub fn disk_usage(path: &Path) -> Result<DiskUsage, FsError> {
    let at = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("."));
    let st = rustix::fs::statvfs(at).map_err(|e| FsError::Io {
        path: at.to_owned(),
        source: e.into(),
    })?;
    Ok(DiskUsage {
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
        free_inodes: st.f_favail,
        total_inodes: st.f_files,
    })
}

/// Creates `dir` and every missing parent with mode 0700, whatever the umask (the mode is set
/// again after creation, since the umask can only narrow what `mkdir` gets). Directories that
/// already exist are left as they are: a parent such as `/var/lib` is not autogit's to change.
/// For autogit's own directories that must be private even when an older version created them
/// wider, use [`ensure_private_dir`].
pub fn create_private_dir(dir: &Path) -> Result<(), FsError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| fs::symlink_metadata(p).is_err())
        .collect();
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {
                fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io_err(d))?
            }
            // Another process made it first: it is theirs, as an existing directory is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(io_err(d)(e)),
        }
    }
    if !dir.is_dir() {
        return Err(FsError::Io {
            path: dir.to_owned(),
            source: io::Error::new(
                io::ErrorKind::NotADirectory,
                "exists and is not a directory",
            ),
        });
    }
    Ok(())
}

/// [`create_private_dir`], then narrows `dir` itself (not its parents) to 0700 when group or
/// others have any access to it. For directories only autogit uses (secrets, mirror caches,
/// TLS keys).
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    create_private_dir(dir)?;
    let mode = fs::metadata(dir).map_err(io_err(dir))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically with the given mode: readers see the old file or the
/// new one, never a half-written one. Secrets use mode 0o600, set at creation.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// [`write_atomic`] of `rel` (a relative path) under `dir`, refusing to write anywhere else:
/// `rel` may not be absolute or hold `..`, and the directory the file lands in, once created
/// and resolved (symbolic links followed), must be `dir` or below it; the file itself, when it
/// is a symbolic link, is replaced, never followed. Returns the path written.
pub fn write_under(dir: &Path, rel: &str, data: &[u8], mode: u32) -> Result<PathBuf, FsError> {
    use std::path::Component;
    let relp = Path::new(rel);
    let outside = || FsError::Outside {
        path: dir.join(rel),
        dir: dir.to_owned(),
    };
    if rel.is_empty() || !relp.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(outside());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let root = fs::canonicalize(dir).map_err(io_err(dir))?;
    let path = dir.join(relp);
    let parent = path.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let real_parent = fs::canonicalize(parent).map_err(io_err(parent))?;
    if !real_parent.starts_with(&root) {
        return Err(outside());
    }
    let file_name = relp.file_name().ok_or_else(outside)?;
    let target = real_parent.join(file_name);
    write_atomic(&target, data, mode)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/secret");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(d.path().join("sub")).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    #[allow(unsafe_code)]
    fn private_dirs_are_0700_under_umask_022() {
        // SAFETY: umask only sets the process's file creation mask; 022 is the usual one and
        // what the other tests in this binary expect anyway.
        unsafe {
            libc::umask(0o022);
        }
        let d = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let deep = d.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&d.path().join(p)), 0o700, "{p}");
        }
        // Existing directories are not changed by create_private_dir; ensure_private_dir
        // narrows the directory itself, never its parents.
        let shared = d.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
        ensure_private_dir(&shared.join("own")).unwrap();
        fs::set_permissions(shared.join("own"), fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&shared.join("own")).unwrap();
        assert_eq!((mode(&shared), mode(&shared.join("own"))), (0o755, 0o700));
        fs::write(d.path().join("file"), b"").unwrap();
        assert!(create_private_dir(&d.path().join("file")).is_err());
    }

    #[test]
    fn write_under_stays_in_its_directory() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let p = write_under(&out, "k8s/gitlab.yaml", b"x", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"x");
        for bad in [
            "../escape.yaml",
            "/etc/escape.yaml",
            "a/../../escape.yaml",
            "",
        ] {
            assert!(
                matches!(
                    write_under(&out, bad, b"x", 0o644),
                    Err(FsError::Outside { .. })
                ),
                "{bad}"
            );
        }
        // A directory inside that links out of it is refused; nothing is written there.
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("link")).unwrap();
        let e = write_under(&out, "link/x.yaml", b"x", 0o644).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        // A file that is a link out is replaced by the file, its target left alone.
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, out.join("v.yaml")).unwrap();
        write_under(&out, "v.yaml", b"new", 0o644).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(out.join("v.yaml")).unwrap(), b"new");
    }

    #[test]
    fn bounded_read_refuses_large_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        fs::write(&p, vec![b'a'; 100]).unwrap();
        assert!(matches!(
            read_bounded(&p, 10),
            Err(FsError::TooLarge { .. })
        ));
        assert_eq!(read_bounded(&p, 100).unwrap().len(), 100);
    }
}
