//! Backup and restore of the GitLab container, its secrets and autogit's own files.
//!
//! The layout, the zip-slip guard, manifest checks and retention are decided in
//! `autogit_core::backup`; this module runs the commands and moves the bytes:
//!
//! - [`create`]: `gitlab-backup create` in the container, copy its archive and
//!   `/etc/gitlab/{gitlab-secrets.json,gitlab.rb}` out, add autogit's configuration, a state
//!   snapshot and the secret store, write `manifest.json` with the sha256 of every member, and
//!   move the archive into place atomically (a `.partial` file is fsynced, then renamed; on
//!   any error, a full disk included, it is removed). Free space is checked before each step
//!   that needs it; GitLab's copy in the container and the scratch files are removed on every
//!   exit. Then retention.
//! - [`restore`]: read every header and the manifest first, refusing unsafe members (absolute,
//!   `..`, links, devices, anything outside the layout), sizes that disagree with the manifest
//!   and a total that does not fit in the free space, all before writing anything; then
//!   extract, bounded by the declared sizes, verify every digest, check the running GitLab's version,
//!   and only then stop puma and sidekiq, `gitlab-backup restore`, put the secrets back,
//!   reconfigure and restart.
//!
//! Archives hold secrets: they are written with mode 0600.

use crate::engine::{ContainerEngine, EngineError};
use crate::secrets::SecretStore;
use autogit_core::backup::{
    self as core, FORMAT, GITLAB_BACKUP_DIR, GITLAB_RB_FILE, GITLAB_SECRETS_FILE,
    GITLAB_VERSION_FILE, MANIFEST, Manifest, Member, MemberKind,
};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Errors of backup and restore. None carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed in the GitLab container (exit {code}):\n{output}")]
    Command {
        command: String,
        code: i64,
        output: String,
    },
    #[error("{archive}: {reason}")]
    Archive { archive: PathBuf, reason: String },
    #[error("{archive}: refusing member `{member}`: {reason}; nothing was restored")]
    UnsafeMember {
        archive: PathBuf,
        member: String,
        reason: String,
    },
    #[error("refusing to restore {archive}: {reason}")]
    VersionMismatch { archive: PathBuf, reason: String },
    /// An encrypted archive and nothing to decrypt it with.
    #[error(
        "{0} is encrypted (age): give --identity FILE (an age identity file holding the key it was encrypted to) or --passphrase-file FILE"
    )]
    Encrypted(PathBuf),
    /// The identity or passphrase does not open the archive.
    #[error("cannot decrypt {archive}: {reason}")]
    Decrypt { archive: PathBuf, reason: String },
    /// A recipient, identity file or passphrase file that cannot be used.
    #[error("{0}")]
    Encryption(String),
    /// The archive's autogit secrets do not open here (another machine's key, or none).
    #[error(
        "refusing to restore {archive}: its autogit secrets cannot be opened on this machine: {reason}. Nothing was changed"
    )]
    Secrets { archive: PathBuf, reason: String },
    #[error(
        "not enough space for {what}: it needs {needed} bytes in {path}, where {available} are free. Free some space there, or use a directory on a larger file system"
    )]
    NoSpace {
        path: PathBuf,
        what: String,
        needed: u64,
        available: u64,
    },
    #[error("{0}")]
    Other(String),
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and missing parents) 0700, or narrows it to 0700: archives and their
/// scratch copies hold secrets.
fn private_dir(dir: &Path) -> Result<(), BackupError> {
    crate::fsx::ensure_private_dir(dir).map_err(|e| match e {
        crate::fsx::FsError::Io { path, source } => BackupError::Io { path, source },
        other => BackupError::Other(other.to_string()),
    })
}

/// Files of autogit's own that go into the archive.
#[derive(Clone, Debug, Default)]
pub struct LocalFiles {
    /// `autogit.yml`, when there is one.
    pub config: Option<PathBuf>,
    /// The platform `.env`, when there is one.
    pub platform_env: Option<PathBuf>,
    /// A state snapshot (see `state::Store::snapshot_to`).
    pub state_snapshot: Option<PathBuf>,
    /// The secret store's directory (`<data>/secrets`); its env file is derived and left out.
    /// Its files are sealed: the master key (outside the data dir) is never archived.
    pub secrets: Option<PathBuf>,
    /// A consistent snapshot of `<data>/access.db` (see [`sqlite_snapshot`]).
    pub access_snapshot: Option<PathBuf>,
    /// `<data>/audit/`: its regular files are archived as `autogit/audit/<name>`.
    pub audit: Option<PathBuf>,
}

/// How [`create`] encrypts the archive.
#[derive(Clone, Default)]
pub enum Encryption {
    /// A plain tar.
    #[default]
    None,
    /// To these age X25519 recipients (`age1…`): any one of their identities decrypts.
    Recipients(Vec<String>),
    /// With a passphrase (age's scrypt recipient).
    Passphrase(secrecy::SecretString),
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encryption::None => f.write_str("None"),
            Encryption::Recipients(r) => f.debug_tuple("Recipients").field(r).finish(),
            Encryption::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

impl Encryption {
    /// Whether archives are encrypted.
    pub fn is_some(&self) -> bool {
        !matches!(self, Encryption::None)
    }

    /// The age encryptor; a recipient that is not an X25519 `age1…` key is an error naming it.
    fn encryptor(&self) -> Result<Option<age::Encryptor>, BackupError> {
        match self {
            Encryption::None => Ok(None),
            Encryption::Passphrase(p) => Ok(Some(age::Encryptor::with_user_passphrase(p.clone()))),
            Encryption::Recipients(list) => {
                if list.is_empty() {
                    return Err(BackupError::Encryption(
                        "no age recipient to encrypt to".to_owned(),
                    ));
                }
                let parsed = list
                    .iter()
                    .map(|r| {
                        r.trim().parse::<age::x25519::Recipient>().map_err(|e| {
                            BackupError::Encryption(format!(
                                "`{r}` is not an age X25519 recipient (age1…, as `age-keygen -y` prints): {e}"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
                    .map(Some)
                    .map_err(|e| BackupError::Encryption(e.to_string()))
            }
        }
    }
}

/// What [`restore_with`] decrypts an encrypted archive with.
#[derive(Clone, Default)]
pub enum Decryption {
    /// Nothing: an encrypted archive is refused ([`BackupError::Encrypted`]).
    #[default]
    None,
    /// An age identity file (`AGE-SECRET-KEY-1…` lines, as `age-keygen` writes).
    Identity(PathBuf),
    /// The passphrase it was encrypted with.
    Passphrase(secrecy::SecretString),
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decryption::None => f.write_str("None"),
            Decryption::Identity(p) => f.debug_tuple("Identity").field(p).finish(),
            Decryption::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

/// Whether `path` is an age file (binary format).
pub fn is_encrypted(path: &Path) -> Result<bool, BackupError> {
    let mut head = [0u8; core::AGE_MAGIC.len()];
    let mut f = File::open(path).map_err(io_at(path))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(io_at(path))? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got == head.len() && head == core::AGE_MAGIC)
}

/// Decrypts the age file `archive` into `out` (mode 0600); on error `out` is removed.
fn decrypt_to(archive: &Path, out: &Path, how: &Decryption) -> Result<(), BackupError> {
    let fail = |reason: String| BackupError::Decrypt {
        archive: archive.to_owned(),
        reason,
    };
    let identities: Vec<Box<dyn age::Identity>> = match how {
        Decryption::None => return Err(BackupError::Encrypted(archive.to_owned())),
        Decryption::Identity(file) => age::IdentityFile::from_file(file.display().to_string())
            .map_err(|e| BackupError::Encryption(format!("identity file {}: {e}", file.display())))?
            .into_identities()
            .map_err(|e| {
                BackupError::Encryption(format!("identity file {}: {e}", file.display()))
            })?,
        Decryption::Passphrase(p) => vec![Box::new(age::scrypt::Identity::new(p.clone()))],
    };
    let input = io::BufReader::new(File::open(archive).map_err(io_at(archive))?);
    let decryptor = age::Decryptor::new_buffered(input).map_err(|e| fail(e.to_string()))?;
    let passphrase = decryptor.is_scrypt();
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            fail(match (passphrase, how) {
                (true, Decryption::Identity(_)) => {
                    "it was encrypted with a passphrase: give --passphrase-file".to_owned()
                }
                (false, Decryption::Passphrase(_)) => {
                    "it was encrypted to a recipient key: give --identity".to_owned()
                }
                _ => e.to_string(),
            })
        })?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(io_at(out))?;
        io::copy(&mut reader, &mut file).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                fail(format!("{e}: the archive is damaged or was changed"))
            } else {
                io_at(out)(e)
            }
        })?;
        file.sync_all().map_err(io_at(out))
    })();
    if result.is_err() {
        let _ = fs::remove_file(out);
    }
    result
}

/// Copies the SQLite database `src` to `dest` as one consistent snapshot (`VACUUM INTO`, in
/// one read transaction: a writer in another process neither blocks it nor tears it), mode
/// 0600. `src` is opened read-only; `dest` must not exist.
pub fn sqlite_snapshot(src: &Path, dest: &Path) -> Result<(), BackupError> {
    let fail = |e: rusqlite::Error| BackupError::Other(format!("{}: {e}", src.display()));
    let conn =
        rusqlite::Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(fail)?;
    conn.execute("VACUUM INTO ?1", [dest.to_string_lossy().as_ref()])
        .map_err(fail)?;
    fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io_at(dest))
}

/// What [`create`] needs.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Where archives go (created 0700 when missing).
    pub dest: PathBuf,
    /// Archives kept after this one (0: all).
    pub keep: u32,
    /// A scratch directory on the same file system as `dest` is best (copies, not moves).
    pub work: PathBuf,
    pub local: LocalFiles,
    /// Seconds since the epoch (the caller's clock).
    pub now: u64,
    pub autogit_version: String,
    /// Encrypt the archive (`<name>.tar.age`).
    pub encryption: Encryption,
}

/// What [`create`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupReport {
    pub archive: PathBuf,
    /// Whether the archive is an age file.
    pub encrypted: bool,
    pub size: u64,
    pub gitlab_version: String,
    pub gitlab_backup_id: String,
    pub members: usize,
    /// Archives removed by retention.
    pub removed: Vec<String>,
}

async fn run_in(
    engine: &impl ContainerEngine,
    id: &str,
    argv: &[&str],
) -> Result<String, BackupError> {
    let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    let (code, output) = engine.exec(id, &argv).await?;
    if code != 0 {
        let lines: Vec<&str> = output.lines().collect();
        return Err(BackupError::Command {
            command: argv.join(" "),
            code,
            output: lines[lines.len().saturating_sub(20)..].join("\n"),
        });
    }
    Ok(output)
}

/// The GitLab version running in the container (the Omnibus image's VERSION file).
pub async fn running_version(
    engine: &impl ContainerEngine,
    id: &str,
) -> Result<String, BackupError> {
    Ok(run_in(engine, id, &["cat", GITLAB_VERSION_FILE])
        .await?
        .trim()
        .to_owned())
}

/// Copies one file out of the container into `dest_file` (unwrapping the engine's tar).
async fn copy_file_out(
    engine: &impl ContainerEngine,
    id: &str,
    path: &str,
    work: &Path,
    dest_file: &Path,
) -> Result<(), BackupError> {
    let wrapped = work.join(".copy-out.tar");
    engine.copy_out(id, path, &wrapped).await?;
    let result = (|| {
        let file = File::open(&wrapped).map_err(io_at(&wrapped))?;
        let mut archive = tar::Archive::new(file);
        let mut entries = archive.entries().map_err(io_at(&wrapped))?;
        let mut entry = entries
            .next()
            .ok_or_else(|| BackupError::Other(format!("{path}: the engine sent an empty archive")))?
            .map_err(io_at(&wrapped))?;
        if !entry.header().entry_type().is_file() {
            return Err(BackupError::Other(format!(
                "{path} in the container is not a regular file"
            )));
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest_file)
            .map_err(io_at(dest_file))?;
        io::copy(&mut entry, &mut out).map_err(io_at(dest_file))?;
        out.sync_all().map_err(io_at(dest_file))
    })();
    let _ = fs::remove_file(&wrapped);
    result
}

/// A reader that hashes what passes through, and remembers whether reading failed (so that
/// an error while copying can be blamed on the right side).
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
    read_failed: bool,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            size: 0,
            read_failed: false,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .inspect_err(|_| self.read_failed = true)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    h
}

/// Appends the local file `src` as `name`, returning its manifest entry. A failed read is
/// an error about `src`; a failed write (a full disk) one about `archive`, the destination.
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    src: &Path,
    archive: &Path,
) -> Result<Member, BackupError> {
    let file = File::open(src).map_err(io_at(src))?;
    let size = file.metadata().map_err(io_at(src))?.len();
    let mut reader = Hashing::new(file.take(size));
    let mut h = header(size);
    builder
        .append_data(&mut h, name, &mut reader)
        .map_err(|e| {
            if reader.read_failed {
                io_at(src)(e)
            } else {
                io_at(archive)(e)
            }
        })?;
    Ok(Member {
        name: name.to_owned(),
        size: reader.size,
        sha256: hex(&reader.hash.finalize()),
    })
}

/// Writes the archive `members` (name, local file) plus the manifest to `final_path`
/// atomically. On any error nothing is left under either name; a failed write (a full disk)
/// is an error about `final_path`.
pub fn write_archive(
    final_path: &Path,
    members: &[(String, PathBuf)],
    manifest: Manifest,
) -> Result<u64, BackupError> {
    write_archive_with(final_path, members, manifest, &Encryption::None)
}

/// Where the tar goes: the file, or age's stream writer over it.
enum Sink {
    Plain(io::BufWriter<File>),
    Age(age::stream::StreamWriter<io::BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl Sink {
    /// Ends the stream (age's last chunk) and returns the file.
    fn finish(self) -> io::Result<File> {
        let buffered = match self {
            Sink::Plain(w) => w,
            Sink::Age(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// [`write_archive`], encrypted with age when `encryption` says so. The manifest's digests are
/// those of the members, inside the encryption.
pub fn write_archive_with(
    final_path: &Path,
    members: &[(String, PathBuf)],
    mut manifest: Manifest,
    encryption: &Encryption,
) -> Result<u64, BackupError> {
    let encryptor = encryption.encryptor()?;
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.partial"));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io_at(final_path))?;
        let out = io::BufWriter::with_capacity(1 << 20, file);
        let sink = match encryptor {
            None => Sink::Plain(out),
            Some(e) => Sink::Age(e.wrap_output(out).map_err(io_at(final_path))?),
        };
        let mut builder = tar::Builder::new(sink);
        builder.mode(tar::HeaderMode::Deterministic);
        for (member, src) in members {
            manifest
                .members
                .push(append_file(&mut builder, member, src, final_path)?);
        }
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Other(format!("manifest: {e}")))?;
        let mut h = header(json.len() as u64);
        builder
            .append_data(&mut h, MANIFEST, json.as_slice())
            .map_err(io_at(final_path))?;
        let sink = builder.into_inner().map_err(io_at(final_path))?;
        let file = sink.finish().map_err(io_at(final_path))?;
        file.sync_all().map_err(io_at(final_path))?;
        let size = file.metadata().map_err(io_at(final_path))?.len();
        fs::rename(&partial, final_path).map_err(io_at(final_path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// Where `create` notes the GitLab backup it left in the container until it is removed, so a
/// run that was cancelled or killed has it removed by the next one.
const PENDING: &str = ".pending-gitlab-backup";

/// Removes a directory when dropped: scratch space is gone on every exit, a cancelled future
/// (dropped at an await) included.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Refuses to start when `needed` bytes will not fit where `path` goes.
fn check_room(path: &Path, needed: u64, what: &str) -> Result<(), BackupError> {
    let available = crate::fsx::free_space(path).map_err(|e| BackupError::Other(e.to_string()))?;
    if needed > available {
        return Err(BackupError::NoSpace {
            path: path.to_owned(),
            what: what.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

fn device_of(dir: &Path) -> Option<u64> {
    fs::metadata(dir)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
}

/// Removes the GitLab backup an earlier, interrupted run left in the container (best effort:
/// the note stays when the container cannot be reached).
async fn remove_pending(engine: &impl ContainerEngine, id: &str, work: &Path) {
    let note = work.join(PENDING);
    let Ok(text) = fs::read_to_string(&note) else {
        return;
    };
    let file = text.trim();
    let safe = file
        .strip_prefix(GITLAB_BACKUP_DIR)
        .and_then(|f| f.strip_prefix('/'))
        .is_some_and(|f| core::parse_gitlab_backup_name(f).is_some());
    if !safe || run_in(engine, id, &["rm", "-f", file]).await.is_ok() {
        let _ = fs::remove_file(&note);
    }
}

/// The size of a file in the container (`ls -ln`: GNU's and busybox's agree on field 5).
async fn size_in_container(engine: &impl ContainerEngine, id: &str, path: &str) -> Option<u64> {
    let out = run_in(engine, id, &["ls", "-ln", path]).await.ok()?;
    out.split_whitespace().nth(4)?.parse().ok()
}

/// Takes a backup. `progress` gets one line per phase.
///
/// Space is checked before each step that needs it (before `gitlab-backup create`, against
/// the size of the last archive; after it, against the real size: the copy out needs it
/// twice in `work`, the archive once in `dest`). GitLab's copy in the container and every
/// scratch file are removed on every exit: success, error, and a cancelled future (scratch at
/// once; the container's copy by the next run, which finds it noted in `work`).
pub async fn create(
    engine: &impl ContainerEngine,
    id: &str,
    opts: &BackupOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BackupReport, BackupError> {
    for d in [&opts.dest, &opts.work] {
        private_dir(d)?;
    }
    remove_pending(engine, id, &opts.work).await;
    // Before the slow part: an archive about as large as the last one must fit.
    if let Some((last, size)) = last_backup(&opts.dest) {
        check_room(
            &opts.dest,
            size.saturating_add(HEADROOM),
            &format!("a new archive about as large as the last one ({last})"),
        )?;
    }
    let version = running_version(engine, id).await?;
    progress(&format!(
        "gitlab-backup create (GitLab {version}); this takes a while"
    ));
    // Skip nothing: repositories, uploads, builds, artifacts, LFS, registry, packages.
    let out = run_in(engine, id, &["gitlab-backup", "create", "STRATEGY=copy"]).await?;
    // GitLab prints the id ("Backup <id> is done."); find the file by listing to be sure.
    let listing = run_in(engine, id, &["ls", "-1", GITLAB_BACKUP_DIR]).await?;
    let mut found: Vec<core::GitLabBackupName> = listing
        .lines()
        .filter_map(|l| core::parse_gitlab_backup_name(l.trim()))
        .collect();
    found.sort_by_key(|b| b.timestamp);
    let gl = found.pop().ok_or_else(|| {
        BackupError::Other(format!(
            "gitlab-backup create finished but left no backup in {GITLAB_BACKUP_DIR}; its output ended with:\n{}",
            out.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    })?;
    let gl_file = format!("{}_gitlab_backup.tar", gl.id);
    let in_container = format!("{GITLAB_BACKUP_DIR}/{gl_file}");
    // Noted first, so that even a killed run has it removed by the next one.
    let note = opts.work.join(PENDING);
    crate::fsx::write_atomic(&note, in_container.as_bytes(), 0o600)
        .map_err(|e| BackupError::Other(e.to_string()))?;
    // Checked before the slow part: a recipient that is not one fails at once.
    opts.encryption.encryptor()?;
    let final_path = opts.dest.join(if opts.encryption.is_some() {
        core::encrypted_archive_name(opts.now, &gl.version)
    } else {
        core::archive_name(opts.now, &gl.version)
    });
    let scratch = opts.work.join(format!("backup-{}", opts.now));
    let result = async {
        let gl_size = size_in_container(engine, id, &in_container).await;
        if let Some(size) = gl_size {
            let l = &opts.local;
            let local: u64 = [&l.config, &l.platform_env, &l.state_snapshot]
                .into_iter()
                .flatten()
                .filter_map(|p| fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            // The copy out is the engine's tar, then the file unwrapped from it.
            let work_needs = size.saturating_mul(2).saturating_add(HEADROOM);
            let dest_needs = size.saturating_add(local).saturating_add(HEADROOM);
            if device_of(&opts.work).is_some() && device_of(&opts.work) == device_of(&opts.dest) {
                // While the archive is written, one copy is in work and one in dest.
                check_room(
                    &final_path,
                    work_needs.max(dest_needs.saturating_add(size)),
                    &format!("{gl_file} ({size} bytes) copied out and archived"),
                )?;
            } else {
                check_room(
                    &opts.work,
                    work_needs,
                    &format!("copying {gl_file} ({size} bytes) out of the container"),
                )?;
                check_room(
                    &final_path,
                    dest_needs,
                    &format!("the archive of {gl_file} ({size} bytes)"),
                )?;
            }
        }
        private_dir(&scratch)?;
        let _scratch = RemoveOnDrop(scratch.clone());
        let gl_local = scratch.join(&gl_file);
        progress(&format!("copying {gl_file} out of the container"));
        copy_file_out(engine, id, &in_container, &scratch, &gl_local).await?;
        let secrets_local = scratch.join("gitlab-secrets.json");
        copy_file_out(engine, id, GITLAB_SECRETS_FILE, &scratch, &secrets_local).await?;
        let rb_local = scratch.join("gitlab.rb");
        copy_file_out(engine, id, GITLAB_RB_FILE, &scratch, &rb_local).await?;

        let mut members = vec![
            (format!("gitlab/{gl_file}"), gl_local),
            ("etc-gitlab/gitlab-secrets.json".to_owned(), secrets_local),
            ("etc-gitlab/gitlab.rb".to_owned(), rb_local),
        ];
        let l = &opts.local;
        if let Some(p) = l.config.as_ref().filter(|p| p.is_file()) {
            members.push(("autogit/autogit.yml".to_owned(), p.clone()));
        }
        if let Some(p) = l.platform_env.as_ref().filter(|p| p.is_file()) {
            members.push(("autogit/platform.env".to_owned(), p.clone()));
        }
        if let Some(p) = l.state_snapshot.as_ref().filter(|p| p.is_file()) {
            members.push(("autogit/state.db".to_owned(), p.clone()));
        }
        if let Some(dir) = l.secrets.as_ref().filter(|p| p.is_dir()) {
            let store = SecretStore::open(dir.parent().unwrap_or(Path::new(".")))
                .map_err(|e| BackupError::Other(e.to_string()))?;
            for n in store
                .names()
                .map_err(|e| BackupError::Other(e.to_string()))?
            {
                members.push((format!("autogit/secrets/{n}"), dir.join(&n)));
            }
        }
        if let Some(p) = l.access_snapshot.as_ref().filter(|p| p.is_file()) {
            members.push(("autogit/access.db".to_owned(), p.clone()));
        }
        if let Some(dir) = l.audit.as_ref().filter(|p| p.is_dir()) {
            let mut files: Vec<(String, PathBuf)> = fs::read_dir(dir)
                .map_err(io_at(dir))?
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    (format!("autogit/audit/{n}"), e.path())
                })
                .filter(|(m, _)| core::classify_member(m).is_ok())
                .collect();
            files.sort();
            members.extend(files);
        }
        for (m, _) in &members {
            // What we write must be what a restore accepts.
            core::classify_member(m)
                .map_err(|reason| BackupError::Other(format!("{m}: {reason}")))?;
        }
        let manifest = Manifest {
            format: FORMAT,
            created: autogit_core::civil::rfc3339_utc(opts.now),
            gitlab_version: gl.version.clone(),
            gitlab_backup_id: gl.id.clone(),
            autogit_version: opts.autogit_version.clone(),
            members: Vec::new(),
        };
        progress(&format!("writing {}", final_path.display()));
        let members_n = members.len() + 1;
        let size = {
            let final_path = final_path.clone();
            let encryption = opts.encryption.clone();
            tokio::task::spawn_blocking(move || {
                write_archive_with(&final_path, &members, manifest, &encryption)
            })
            .await
            .map_err(|e| BackupError::Other(e.to_string()))??
        };
        Ok::<_, BackupError>((final_path.clone(), size, members_n))
    }
    .await;
    // Success or not, GitLab's copy does not stay in the container's volume (one full-size
    // copy per failure otherwise); the note goes once it is gone.
    if run_in(engine, id, &["rm", "-f", &in_container])
        .await
        .is_ok()
    {
        let _ = fs::remove_file(&note);
    }
    let (archive, size, members) = result?;
    let names: Vec<String> = fs::read_dir(&opts.dest)
        .map_err(io_at(&opts.dest))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let mut removed = Vec::new();
    for old in core::retention(&names, opts.keep) {
        let p = opts.dest.join(&old);
        fs::remove_file(&p).map_err(io_at(&p))?;
        removed.push(old);
    }
    Ok(BackupReport {
        archive,
        encrypted: opts.encryption.is_some(),
        size,
        gitlab_version: gl.version,
        gitlab_backup_id: gl.id,
        members,
        removed,
    })
}

/// An archive read and verified: the manifest and where its members were extracted.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// Extracted members, by name.
    pub dir: PathBuf,
}

/// Extracts `archive` into the empty directory `into`, verifying before it writes: first
/// every header and the manifest are read (unsafe members, names and sizes that disagree
/// with the manifest, and a total larger than the free space at `into` are refused, with
/// nothing written), then each member is extracted, bounded by its declared size, and its
/// digest compared with the manifest's. On error `into` is removed.
pub fn extract_verified(archive: &Path, into: &Path) -> Result<Verified, BackupError> {
    extract_verified_with(archive, into, &Decryption::None)
}

/// [`extract_verified`] of an archive that may be encrypted: an age file is first decrypted
/// with `how` next to `into` (0600; removed afterwards), then verified as a plain one.
pub fn extract_verified_with(
    archive: &Path,
    into: &Path,
    how: &Decryption,
) -> Result<Verified, BackupError> {
    with_plain(archive, into, how, |plain| {
        extract_checked(plain, into, false)
    })
}

/// Runs `f` on the plain tar of `archive`: itself, or its decryption next to `into`.
fn with_plain<T>(
    archive: &Path,
    into: &Path,
    how: &Decryption,
    f: impl FnOnce(&Path) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    if !is_encrypted(archive)? {
        return f(archive);
    }
    if matches!(how, Decryption::None) {
        return Err(BackupError::Encrypted(archive.to_owned()));
    }
    let parent = into.parent().unwrap_or(Path::new("."));
    private_dir(parent)?;
    let size = fs::metadata(archive).map_err(io_at(archive))?.len();
    check_room(
        parent,
        size.saturating_add(HEADROOM),
        &format!("decrypting {}", archive.display()),
    )?;
    let name = into
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plain = parent.join(format!(".{name}.decrypted.tar"));
    let _ = fs::remove_file(&plain);
    decrypt_to(archive, &plain, how)?;
    let result = f(&plain).map_err(|e| match e {
        // Errors about the decrypted copy are about the archive.
        BackupError::Archive { reason, .. } => BackupError::Archive {
            archive: archive.to_owned(),
            reason,
        },
        BackupError::UnsafeMember { member, reason, .. } => BackupError::UnsafeMember {
            archive: archive.to_owned(),
            member,
            reason,
        },
        other => other,
    });
    let _ = fs::remove_file(&plain);
    result
}

/// [`extract_verified`]; with `upload_copy`, the free space must also hold a second copy of
/// the GitLab backup (the tar that `restore` uploads into the container).
fn extract_checked(
    archive: &Path,
    into: &Path,
    upload_copy: bool,
) -> Result<Verified, BackupError> {
    let result = extract_inner(archive, into, upload_copy);
    if result.is_err() {
        let _ = fs::remove_dir_all(into);
    }
    result
}

/// Room left beyond an estimate: file system metadata, directories, the manifest.
const HEADROOM: u64 = 1 << 20;

/// What pass one learnt from the headers.
struct Declared {
    manifest: Manifest,
    /// Bytes the members need once extracted.
    total: u64,
}

fn read_declared(archive: &Path) -> Result<Declared, BackupError> {
    let bad = |member: &str, reason: String| BackupError::UnsafeMember {
        archive: archive.to_owned(),
        member: member.to_owned(),
        reason,
    };
    let damaged = |reason: String| BackupError::Archive {
        archive: archive.to_owned(),
        reason,
    };
    let file = File::open(archive).map_err(io_at(archive))?;
    let archive_len = file.metadata().map_err(io_at(archive))?.len();
    let mut tar = tar::Archive::new(file);
    let mut declared: Vec<(String, u64)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut manifest_bytes = None;
    // Headers only: the data of every member but the manifest is skipped by seeking.
    for entry in tar.entries_with_seek().map_err(io_at(archive))? {
        let mut entry = entry.map_err(io_at(archive))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(bad(
                &raw,
                format!("it is a {kind:?} entry; an autogit backup holds regular files only"),
            ));
        }
        let member_kind = core::classify_member(&raw).map_err(|r| bad(&raw, r))?;
        if !names.insert(raw.clone()) {
            return Err(bad(&raw, "it appears twice".to_owned()));
        }
        if names.len() > core::MAX_MEMBERS {
            return Err(damaged(format!(
                "more than {} members: not an autogit backup",
                core::MAX_MEMBERS
            )));
        }
        let size = entry.size();
        let end = entry.raw_file_position().saturating_add(size);
        if end > archive_len {
            return Err(damaged(format!(
                "member `{raw}` declares {size} bytes, past the end of the file ({archive_len} bytes): the archive was cut short or is not an autogit backup"
            )));
        }
        if member_kind == MemberKind::Manifest {
            if size > 1 << 20 {
                return Err(damaged(format!(
                    "{MANIFEST} is {size} bytes, more than 1 MiB"
                )));
            }
            let mut buf = Vec::new();
            (&mut entry)
                .take(1 << 20)
                .read_to_end(&mut buf)
                .map_err(io_at(archive))?;
            manifest_bytes = Some(buf);
        }
        declared.push((raw, size));
    }
    let manifest_bytes = manifest_bytes.ok_or_else(|| {
        damaged(format!(
            "no {MANIFEST}: not an autogit backup, or it was cut short"
        ))
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| damaged(format!("{MANIFEST}: {e}")))?;
    let total = core::check_declared(&manifest, &declared).map_err(damaged)?;
    Ok(Declared { manifest, total })
}

fn extract_inner(archive: &Path, into: &Path, upload_copy: bool) -> Result<Verified, BackupError> {
    // Pass one: nothing is written until the headers and the manifest agree and fit.
    let Declared { manifest, total } = read_declared(archive)?;
    let upload = if upload_copy {
        manifest
            .members
            .iter()
            .find(|m| {
                matches!(
                    core::classify_member(&m.name),
                    Ok(MemberKind::GitLabBackup(_))
                )
            })
            .map_or(0, |m| m.size)
    } else {
        0
    };
    let needed = total.saturating_add(upload).saturating_add(HEADROOM);
    let available = crate::fsx::free_space(into).map_err(|e| BackupError::Other(e.to_string()))?;
    if needed > available {
        return Err(BackupError::NoSpace {
            path: into.to_owned(),
            what: format!("restoring {}", archive.display()),
            needed,
            available,
        });
    }

    // Pass two: extract, each member bounded by its declared size and checked against the
    // manifest as soon as it is written.
    private_dir(into)?;
    let file = File::open(archive).map_err(io_at(archive))?;
    let mut tar = tar::Archive::new(file);
    let mut found: Vec<Member> = Vec::new();
    for entry in tar.entries().map_err(io_at(archive))? {
        let mut entry = entry.map_err(io_at(archive))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // The file may have changed since pass one: every member is checked again.
        let listed = manifest.members.iter().find(|m| m.name == raw);
        let kind = entry.header().entry_type();
        let member_kind = core::classify_member(&raw);
        if raw == MANIFEST && member_kind == Ok(MemberKind::Manifest) {
            continue;
        }
        let (Some(listed), true, Ok(_)) = (listed, kind.is_file(), member_kind) else {
            return Err(BackupError::Archive {
                archive: archive.to_owned(),
                reason: format!("member `{raw}` changed while it was being read"),
            });
        };
        if entry.size() != listed.size || found.iter().any(|m| m.name == raw) {
            return Err(BackupError::Archive {
                archive: archive.to_owned(),
                reason: format!("member `{raw}` changed while it was being read"),
            });
        }
        // classify_member allows only fixed directories and one file name below them.
        let dest = into.join(&raw);
        if let Some(parent) = dest.parent() {
            private_dir(parent)?;
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .map_err(io_at(&dest))?;
        let mut reader = Hashing::new((&mut entry).take(listed.size));
        io::copy(&mut reader, &mut out).map_err(io_at(&dest))?;
        out.sync_all().map_err(io_at(&dest))?;
        let member = Member {
            name: raw,
            size: reader.size,
            sha256: hex(&reader.hash.finalize()),
        };
        if member.size != listed.size || member.sha256 != listed.sha256 {
            return Err(BackupError::Archive {
                archive: archive.to_owned(),
                reason: format!(
                    "member `{}` does not match the manifest (sha256 {} expected, {} found): the archive is damaged or was changed",
                    member.name, listed.sha256, member.sha256
                ),
            });
        }
        found.push(member);
    }
    core::verify_manifest(&manifest, &found).map_err(|reason| BackupError::Archive {
        archive: archive.to_owned(),
        reason,
    })?;
    Ok(Verified {
        manifest,
        dir: into.to_owned(),
    })
}

/// Wraps one local file into a tar (for `copy_in`), named `name`, with `mode`.
fn single_file_tar(src: &Path, name: &str, mode: u32, tar_path: &Path) -> Result<(), BackupError> {
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tar_path)
        .map_err(io_at(tar_path))?;
    let mut b = tar::Builder::new(io::BufWriter::new(out));
    let file = File::open(src).map_err(io_at(src))?;
    let size = file.metadata().map_err(io_at(src))?.len();
    let mut h = header(size);
    h.set_mode(mode);
    b.append_data(&mut h, name, file.take(size))
        .map_err(io_at(tar_path))?;
    b.into_inner()
        .map_err(io_at(tar_path))?
        .flush()
        .map_err(io_at(tar_path))
}

/// What [`restore`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    pub gitlab_version: String,
    pub gitlab_backup_id: String,
    /// autogit secrets put back into the store.
    pub secrets_restored: Vec<String>,
    /// Where the archive's autogit.yml / platform.env / state.db were left for comparison.
    pub kept_for_reference: PathBuf,
}

/// Restores `archive` into the running GitLab container `id`. Verification and the version
/// check happen before anything in the container is touched.
pub async fn restore(
    engine: &impl ContainerEngine,
    id: &str,
    archive: &Path,
    work: &Path,
    store: &SecretStore,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<RestoreReport, BackupError> {
    restore_with(
        engine,
        id,
        archive,
        work,
        store,
        &Decryption::None,
        progress,
    )
    .await
}

/// [`restore`] of an archive that may be encrypted (age): decrypted with `how` first; an
/// encrypted archive without it is refused before anything is written.
pub async fn restore_with(
    engine: &impl ContainerEngine,
    id: &str,
    archive: &Path,
    work: &Path,
    store: &SecretStore,
    how: &Decryption,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<RestoreReport, BackupError> {
    if is_encrypted(archive)? && matches!(how, Decryption::None) {
        return Err(BackupError::Encrypted(archive.to_owned()));
    }
    let stem = archive
        .file_name()
        .map(|n| {
            let n = n.to_string_lossy();
            let n = n.strip_suffix(core::AGE_SUFFIX).unwrap_or(&n);
            n.trim_end_matches(".tar").to_owned()
        })
        .unwrap_or_else(|| "archive".to_owned());
    let into = work.join(format!("restore-{stem}"));
    if into.exists() {
        fs::remove_dir_all(&into).map_err(io_at(&into))?;
    }
    progress(&format!("verifying {}", archive.display()));
    let verified = {
        let (a, i, how) = (archive.to_owned(), into.clone(), how.clone());
        tokio::task::spawn_blocking(move || {
            with_plain(&a, &i, &how, |plain| extract_checked(plain, &i, true))
        })
        .await
        .map_err(|e| BackupError::Other(e.to_string()))??
    };
    let m = &verified.manifest;
    let running = running_version(engine, id).await?;
    core::check_version(&m.gitlab_version, &running).map_err(|reason| {
        BackupError::VersionMismatch {
            archive: archive.to_owned(),
            reason,
        }
    })?;

    // The archive's autogit secrets must open with a key this machine has (they are sealed
    // with the key of the machine that made the backup): checked before GitLab is touched.
    let secrets_dir = into.join("autogit").join("secrets");
    let archived_secrets = archived_secrets(&secrets_dir)?;
    for (name, bytes) in &archived_secrets {
        store
            .check_import(
                name,
                bytes,
                &archive.join(format!("autogit/secrets/{name}")),
            )
            .map_err(|e| BackupError::Secrets {
                archive: archive.to_owned(),
                reason: e.to_string(),
            })?;
    }

    let gl_file = format!("{}_gitlab_backup.tar", m.gitlab_backup_id);
    let upload = into.join(".upload.tar");
    single_file_tar(
        &into.join("gitlab").join(&gl_file),
        &gl_file,
        0o600,
        &upload,
    )?;
    progress(&format!("copying {gl_file} into the container"));
    run_in(engine, id, &["mkdir", "-p", GITLAB_BACKUP_DIR]).await?;
    engine.copy_in(id, GITLAB_BACKUP_DIR, &upload).await?;
    let _ = fs::remove_file(&upload);
    let in_container = format!("{GITLAB_BACKUP_DIR}/{gl_file}");
    run_in(engine, id, &["chown", "git:git", &in_container]).await?;

    progress("stopping puma and sidekiq");
    run_in(engine, id, &["gitlab-ctl", "stop", "puma"]).await?;
    run_in(engine, id, &["gitlab-ctl", "stop", "sidekiq"]).await?;
    progress(&format!(
        "gitlab-backup restore BACKUP={}",
        m.gitlab_backup_id
    ));
    let backup_arg = format!("BACKUP={}", m.gitlab_backup_id);
    let restored = run_in(
        engine,
        id,
        &["gitlab-backup", "restore", &backup_arg, "force=yes"],
    )
    .await;
    if let Err(e) = restored {
        // Leave GitLab running rather than half-stopped; the error says what failed.
        let _ = run_in(engine, id, &["gitlab-ctl", "start"]).await;
        return Err(e);
    }
    progress("putting gitlab-secrets.json and gitlab.rb back");
    for (member, name) in [
        ("etc-gitlab/gitlab-secrets.json", "gitlab-secrets.json"),
        ("etc-gitlab/gitlab.rb", "gitlab.rb"),
    ] {
        let t = into.join(".etc.tar");
        single_file_tar(&into.join(member), name, 0o600, &t)?;
        engine.copy_in(id, "/etc/gitlab", &t).await?;
        let _ = fs::remove_file(&t);
    }
    progress("gitlab-ctl reconfigure and restart");
    run_in(engine, id, &["gitlab-ctl", "reconfigure"]).await?;
    run_in(engine, id, &["gitlab-ctl", "restart"]).await?;
    let _ = run_in(engine, id, &["rm", "-f", &in_container]).await;

    // Tokens in the archive belong to the restored database.
    let mut secrets_restored = Vec::new();
    for (name, bytes) in &archived_secrets {
        store
            .import(name, bytes)
            .map_err(|e| BackupError::Other(e.to_string()))?;
        secrets_restored.push(name.clone());
    }
    let _ = fs::remove_dir_all(&secrets_dir);
    // GitLab's own copy of the data and the secrets were only needed to restore.
    let _ = fs::remove_dir_all(into.join("gitlab"));
    let _ = fs::remove_dir_all(into.join("etc-gitlab"));
    Ok(RestoreReport {
        gitlab_version: m.gitlab_version.clone(),
        gitlab_backup_id: m.gitlab_backup_id.clone(),
        secrets_restored,
        kept_for_reference: into,
    })
}

/// The secret files an extracted archive holds (name, file bytes: sealed, or plaintext from an
/// archive of an earlier version), sorted by name.
fn archived_secrets(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for e in fs::read_dir(dir).map_err(io_at(dir))? {
        let e = e.map_err(io_at(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        File::open(e.path())
            .and_then(|f| f.take(1 << 20).read_to_end(&mut bytes))
            .map_err(io_at(&e.path()))?;
        out.push((name, bytes));
    }
    out.sort();
    Ok(out)
}

/// The newest archive in `dir`: (file name, size, manifest time from the name).
pub fn last_backup(dir: &Path) -> Option<(String, u64)> {
    let mut names: Vec<(String, u64)> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().ok()?.len();
            core::is_archive_name(&n).then_some((n, size))
        })
        .collect();
    names.sort();
    names.pop()
}
