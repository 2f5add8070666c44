//! The audit log's file: `<data_dir>/audit/audit.jsonl` (directory 0700, file 0600), one record
//! a line, appended with `O_APPEND` and fsynced per record, under an exclusive `flock` so that
//! several processes (the API server, the CLI) keep one chain; and `audit/head`, rewritten
//! atomically after each append with the last sequence number and hash, so that cutting
//! records off the end is detected too. What a record holds and how it is chained is
//! `autogit_app::audit`'s business; this module moves lines.

use crate::fsx::{self, FsError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory inside the data dir.
pub const DIR: &str = "audit";
/// The log's file name.
pub const FILE: &str = "audit.jsonl";
/// The head file's name.
pub const HEAD: &str = "head";
/// Longest line read back.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: the last record is longer than {MAX_LINE} bytes; run `autogit audit verify`")]
    LineTooLong { path: PathBuf },
    #[error(
        "{path} is not a head file autogit wrote (`{{\"seq\":N,\"hash\":\"…\"}}`); run `autogit audit verify`"
    )]
    BadHead { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditFileError + '_ {
    move |source| AuditFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The last record's sequence number and hash, as the head file keeps them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// The audit files of one data dir.
#[derive(Clone, Debug)]
pub struct AuditFile {
    path: PathBuf,
    head: PathBuf,
}

/// The log, opened for appending and locked against other writers until dropped.
#[derive(Debug)]
pub struct Locked<'a> {
    files: &'a AuditFile,
    file: File,
    len: u64,
}

impl AuditFile {
    /// Opens (creating the directory 0700 and the file 0600) the audit log of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, AuditFileError> {
        let dir = data_dir.join(DIR);
        fsx::ensure_private_dir(&dir)?;
        let path = dir.join(FILE);
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let mode = std::fs::metadata(&path)
            .map_err(io(&path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(&path))?;
        }
        Ok(Self {
            head: dir.join(HEAD),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head file next to the log.
    pub fn head_path(&self) -> &Path {
        &self.head
    }

    /// Opens the log for appending and takes the exclusive lock (waits for other writers).
    pub fn lock(&self) -> Result<Locked<'_>, AuditFileError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(&self.path)(e.into()))?;
        let len = file.metadata().map_err(io(&self.path))?.len();
        Ok(Locked {
            files: self,
            file,
            len,
        })
    }
}

impl Locked<'_> {
    /// The file's length when locked.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Cuts an incomplete last line (a write torn by a crash: it was never acknowledged,
    /// since a record counts once fsynced) and gives back how many bytes went.
    pub fn drop_torn_tail(&mut self) -> Result<u64, AuditFileError> {
        let path = &self.files.path;
        if self.len == 0 {
            return Ok(0);
        }
        let mut last = [0u8; 1];
        self.file
            .seek(SeekFrom::Start(self.len - 1))
            .map_err(io(path))?;
        self.file.read_exact(&mut last).map_err(io(path))?;
        if last[0] == b'\n' {
            return Ok(0);
        }
        let keep = match self.last_newline_before(self.len)? {
            Some(n) => n + 1,
            None => 0,
        };
        self.file.set_len(keep).map_err(io(path))?;
        self.file.sync_all().map_err(io(path))?;
        let cut = self.len - keep;
        self.len = keep;
        Ok(cut)
    }

    fn last_newline_before(&mut self, end: u64) -> Result<Option<u64>, AuditFileError> {
        let path = self.files.path.clone();
        let mut pos = end;
        let mut buf = vec![0u8; 4096];
        while pos > 0 {
            let start = pos.saturating_sub(buf.len() as u64);
            let n = (pos - start) as usize;
            self.file.seek(SeekFrom::Start(start)).map_err(io(&path))?;
            self.file.read_exact(&mut buf[..n]).map_err(io(&path))?;
            if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
                return Ok(Some(start + i as u64));
            }
            if end - start > MAX_LINE as u64 {
                return Err(AuditFileError::LineTooLong { path });
            }
            pos = start;
        }
        Ok(None)
    }

    /// The last complete line (without its newline), if any.
    pub fn last_line(&mut self) -> Result<Option<String>, AuditFileError> {
        if self.len == 0 {
            return Ok(None);
        }
        let end = self.len - 1; // the final newline
        let start = self.last_newline_before(end)?.map_or(0, |n| n + 1);
        let path = self.files.path.clone();
        let mut buf = vec![0u8; (end - start) as usize];
        self.file.seek(SeekFrom::Start(start)).map_err(io(&path))?;
        self.file.read_exact(&mut buf).map_err(io(&path))?;
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    /// Appends `line` and a newline in one write, then fsyncs.
    pub fn append(&mut self, line: &str) -> Result<(), AuditFileError> {
        let path = &self.files.path;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes).map_err(io(path))?;
        self.file.sync_data().map_err(io(path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Rewrites the head file atomically.
    pub fn write_head(&self, head: &Head) -> Result<(), AuditFileError> {
        let text = serde_json::to_string(head).expect("a head serializes") + "\n";
        fsx::write_atomic(&self.files.head, text.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// The head file at `path`; `None` when there is none.
pub fn read_head(path: &Path) -> Result<Option<Head>, AuditFileError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| AuditFileError::BadHead {
                    path: path.to_owned(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Every line of the log at `path`, with whether the file ended in a newline.
pub fn read_lines(path: &Path) -> Result<(Vec<String>, bool), AuditFileError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let complete = bytes.is_empty() || bytes.ends_with(b"\n");
    let text = String::from_utf8_lossy(&bytes);
    Ok((text.lines().map(str::to_owned).collect(), complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_reads_the_tail_and_drops_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let f = AuditFile::open(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join(DIR)), 0o700);
        assert_eq!(mode(f.path()), 0o600);
        {
            let mut l = f.lock().unwrap();
            assert_eq!(l.last_line().unwrap(), None);
            l.append("one").unwrap();
            l.append(&"x".repeat(5000)).unwrap();
            l.append("three").unwrap();
            assert_eq!(l.last_line().unwrap().as_deref(), Some("three"));
            l.write_head(&Head {
                seq: 3,
                hash: "h".into(),
            })
            .unwrap();
        }
        assert_eq!(read_head(f.head_path()).unwrap().unwrap().seq, 3);
        OpenOptions::new()
            .append(true)
            .open(f.path())
            .unwrap()
            .write_all(b"{\"seq\":4,\"torn")
            .unwrap();
        let mut l = f.lock().unwrap();
        assert_eq!(l.drop_torn_tail().unwrap(), 14);
        assert_eq!(l.last_line().unwrap().as_deref(), Some("three"));
        drop(l);
        let (lines, complete) = read_lines(f.path()).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(complete);
    }
}
