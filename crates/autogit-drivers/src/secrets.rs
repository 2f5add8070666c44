//! autogit's secret store: one file per secret under `<data_dir>/secrets/` (directory 0700,
//! files 0600, written atomically), each sealed with the store's master key (see [`seal`]:
//! ChaCha20-Poly1305, a versioned header with the key id, the secret's name bound as
//! associated data), plus `gitlab.env`, a plaintext env file of mode 0600 (`KEY=value` lines)
//! that other tools read directly.
//!
//! The master key is 32 random bytes in a 0600 file kept outside the data dir, so that neither
//! a backup archive nor a snapshot of the data dir carries it ([`KeyLocation::resolve`]):
//! `$CREDENTIALS_DIRECTORY/autogit.key` when systemd passes it (`LoadCredential=`), else
//! `$AUTOGIT_KEY_FILE`, else `<data_dir>.key` next to the data dir. It is created on first
//! use; a missing key while sealed files exist is an error ([`SecretError::MissingKey`]), never
//! a new key. Plaintext files of earlier versions are sealed in place when the store is opened
//! (each atomically: a crash leaves it plaintext or sealed, and both read). `rotate_key` keeps
//! the old key as `<key>.old` until every file is sealed with the new one.
//!
//! Values live in [`SecretString`] (zeroized on drop, `Debug` prints `[REDACTED]`); nothing
//! in this module logs a value, and errors name files, never contents.

pub mod seal;

use crate::fsx::{self, FsError};
use seal::{Damage, KeyId, MasterKey, Shape};
pub use secrecy::{ExposeSecret, SecretString};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every secret file, of the env file and of the key file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the secrets directory.
pub const DIR_MODE: u32 = 0o700;
/// Name of the env file inside the secrets directory.
pub const ENV_FILE: &str = "gitlab.env";
/// The systemd credential's name (`LoadCredential=autogit.key:<key file>`).
pub const CREDENTIAL: &str = "autogit.key";
/// Largest secret read back (a token, a password, a small JSON document).
const MAX_SECRET: u64 = 64 * 1024;
/// The lock file inside the secrets directory (writers exclusive, readers shared).
const LOCK_FILE: &str = ".lock";

/// What can go wrong with the secret store. Messages name files and key ids, never values or
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A secret name outside `[a-z0-9][a-z0-9._-]*` (no `/`, no `..`, not the env file).
    #[error(
        "invalid secret name `{0}`: use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit"
    )]
    InvalidName(String),
    /// An env file key that is not a shell variable name.
    #[error("invalid environment variable name `{0}` for {ENV_FILE}")]
    InvalidEnvKey(String),
    /// A value that cannot be written as one `KEY=value` line.
    #[error("the value of `{0}` contains a line break or NUL and cannot go into {ENV_FILE}")]
    InvalidEnvValue(String),
    /// A secret or key file that others may read: refused rather than trusted.
    #[error(
        "{path} has mode {mode:o}; secrets must not be readable by group or others (chmod 600)"
    )]
    InsecureMode { path: PathBuf, mode: u32 },
    /// A sealed value that is not UTF-8 once opened.
    #[error("{0}: the opened value is not valid UTF-8")]
    NotUtf8(PathBuf),
    /// A secret file that cannot be read as sealed or as plaintext.
    #[error(
        "{path}: {damage}. Restore this secret from a backup, or remove the file and let autogit create it again (`autogit gitlab bootstrap`)"
    )]
    Damaged { path: PathBuf, damage: Damage },
    /// Sealed files exist but no key was found.
    #[error(
        "{sealed} secret(s) in {dir} are sealed (key {key_id}) but the key file {key} does not exist ({looked}). Put the key file back from your escrow copy (docs/gitlab.md, \"The secrets key\"); autogit never creates a new key over sealed secrets"
    )]
    MissingKey {
        dir: PathBuf,
        key: PathBuf,
        key_id: KeyId,
        sealed: usize,
        looked: String,
    },
    /// A file sealed with a key this store does not have.
    #[error(
        "{path} is sealed with key {sealed_with}, but the key at {key} is {key_id}. Put back the key file these secrets were sealed with (docs/gitlab.md, \"The secrets key\"); if the key was just rotated under a running service, restart it"
    )]
    WrongKey {
        path: PathBuf,
        sealed_with: KeyId,
        key: PathBuf,
        key_id: KeyId,
    },
    /// A secret from a backup sealed with a key this machine does not have.
    #[error(
        "{path} is sealed with key {sealed_with}, which this machine does not have ({key}: {here}). Put the key file of the machine that made the backup at {key} (or name it with AUTOGIT_KEY_FILE) and run the restore again (docs/gitlab.md, \"The secrets key\")"
    )]
    ForeignKey {
        path: PathBuf,
        sealed_with: KeyId,
        key: PathBuf,
        here: String,
    },
    /// The key file cannot be created where it is looked for.
    #[error(
        "cannot create the secrets key {path}: {source}. Let autogit write there once (e.g. run `autogit secrets status` as the service's user, outside a sandbox), or name a writable place with AUTOGIT_KEY_FILE; `autogit install` creates it before it installs the service"
    )]
    KeyCreate {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file that is not a key.
    #[error("{path} is not an autogit secrets key: {reason}")]
    BadKeyFile { path: PathBuf, reason: &'static str },
    /// `rotate-key` where the key is a systemd credential (read-only to the service).
    #[error(
        "the key comes from the systemd credential {0}, which is read-only: run `autogit secrets rotate-key` outside the service (with AUTOGIT_KEY_FILE naming the file that LoadCredential= reads, if not the default), then restart the service"
    )]
    KeyIsCredential(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.to_owned(),
        source,
    }
}

fn random_err(e: getrandom::Error) -> SecretError {
    SecretError::Io {
        path: PathBuf::from("<getrandom>"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Where the master key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrigin {
    /// `$CREDENTIALS_DIRECTORY/autogit.key` (systemd `LoadCredential=`): read-only.
    SystemdCredential,
    /// `$AUTOGIT_KEY_FILE`.
    Env,
    /// `<data_dir>.key`, next to the data dir.
    Default,
}

/// Where the master key is (or will be created).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyLocation {
    pub path: PathBuf,
    pub origin: KeyOrigin,
}

impl KeyLocation {
    /// The key of the store of `data_dir`: `$CREDENTIALS_DIRECTORY/autogit.key` when that file
    /// exists, else `$AUTOGIT_KEY_FILE`, else `<data_dir>.key` (a sibling of the data dir: a
    /// backup archive and a snapshot of the data dir never hold it).
    pub fn resolve(data_dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> KeyLocation {
        if let Some(dir) = lookup("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            let path = Path::new(&dir).join(CREDENTIAL);
            if path.is_file() {
                return KeyLocation {
                    path,
                    origin: KeyOrigin::SystemdCredential,
                };
            }
        }
        if let Some(file) = lookup("AUTOGIT_KEY_FILE").filter(|f| !f.is_empty()) {
            return KeyLocation {
                path: PathBuf::from(file),
                origin: KeyOrigin::Env,
            };
        }
        KeyLocation {
            path: default_key_file(data_dir),
            origin: KeyOrigin::Default,
        }
    }

    /// Where the previous key waits during a rotation.
    pub fn old_path(&self) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(".old");
        PathBuf::from(s)
    }

    fn looked(&self) -> String {
        match self.origin {
            KeyOrigin::SystemdCredential => "the systemd credential".into(),
            KeyOrigin::Env => "named by AUTOGIT_KEY_FILE; no systemd credential".into(),
            KeyOrigin::Default => {
                "the default; neither a systemd credential nor AUTOGIT_KEY_FILE is set".into()
            }
        }
    }
}

/// `<data_dir>.key`: `/var/lib/autogit` → `/var/lib/autogit.key`.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    let abs = fs::canonicalize(data_dir).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(data_dir))
            .unwrap_or_else(|_| data_dir.to_owned())
    });
    let mut s = abs.components().collect::<PathBuf>().into_os_string();
    s.push(".key");
    PathBuf::from(s)
}

/// The secret store of one data directory.
#[derive(Clone, Debug)]
pub struct SecretStore {
    dir: PathBuf,
    key: KeyLocation,
}

/// What `autogit secrets status` shows: locations, ids and counts; no value.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoreStatus {
    pub dir: PathBuf,
    pub key: KeyLocation,
    /// The key's id; `None` when no key exists yet (nothing sealed).
    pub key_id: Option<String>,
    /// A rotation that has not finished (the old key is still kept).
    pub rotation_pending: bool,
    pub sealed: usize,
    pub plaintext: usize,
    /// Sealed with a key other than the current (or, mid-rotation, the old) one.
    pub other_key: Vec<String>,
    /// Neither sealed nor plaintext.
    pub damaged: Vec<String>,
}

/// What `rotate_key` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rotation {
    pub key: PathBuf,
    pub old_key_id: Option<String>,
    pub new_key_id: String,
    /// Files sealed again with the new key.
    pub resealed: usize,
}

/// What a file's bytes are (see [`seal::shape`]).
type ShapeOf = Result<Shape, Damage>;

/// The keys in hand: the current one and, mid-rotation, the old one.
struct Keys {
    current: Option<MasterKey>,
    old: Option<MasterKey>,
}

impl Keys {
    fn find(&self, id: KeyId) -> Option<&MasterKey> {
        [&self.current, &self.old]
            .into_iter()
            .flatten()
            .find(|k| k.id() == id)
    }
}

/// A held `flock` on the store's lock file; released when dropped.
struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// Reads a key file: `None` when absent; its mode must be 0600 or narrower.
fn read_key(path: &Path) -> Result<Option<MasterKey>, SecretError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io(path)(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::InsecureMode {
            path: path.to_owned(),
            mode,
        });
    }
    let text = secrecy::zeroize::Zeroizing::new(fsx::read_bounded(path, 1024)?);
    MasterKey::from_file_text(&text)
        .map(Some)
        .map_err(|reason| SecretError::BadKeyFile {
            path: path.to_owned(),
            reason,
        })
}

/// Writes a key file so that it appears complete or not at all, and only where none exists:
/// built under a temporary name, fsynced, then hard-linked into place. `Ok(false)`: another
/// process created one first.
fn create_key_file(path: &Path, key: &MasterKey) -> Result<bool, SecretError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.new-{}", std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(key.to_file_text().as_bytes())?;
        f.sync_all()?;
        let linked = match fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        File::open(dir)?.sync_all()?;
        Ok(linked)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(io(path))
}

/// Whether `name` is a valid secret name.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && name.len() <= 128
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        })
        && !name.contains("..")
        && name != ENV_FILE
}

fn valid_env_key(key: &str) -> bool {
    let mut b = key.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == b'_')
        && key
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

impl SecretStore {
    /// Opens (creating it with mode 0700) `<data_dir>/secrets`, with the key that
    /// [`KeyLocation::resolve`] finds from this process's environment. An existing directory
    /// with a wider mode is narrowed to 0700; plaintext secrets of an earlier version are
    /// sealed in place, and a rotation a crash interrupted is finished.
    pub fn open(data_dir: &Path) -> Result<SecretStore, SecretError> {
        let key = KeyLocation::resolve(data_dir, &|k| std::env::var(k).ok());
        SecretStore::open_with_key(data_dir, key)
    }

    /// [`SecretStore::open`] with the key at `key`.
    pub fn open_with_key(data_dir: &Path, key: KeyLocation) -> Result<SecretStore, SecretError> {
        let dir = data_dir.join("secrets");
        // The data dir too, when this creates it (0700, whatever the umask).
        fsx::ensure_private_dir(&dir)?;
        let mode = fs::metadata(&dir).map_err(io(&dir))?.permissions().mode() & 0o777;
        if mode != DIR_MODE {
            fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io(&dir))?;
        }
        let store = SecretStore { dir, key };
        store.migrate()?;
        Ok(store)
    }

    /// The secrets directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where this store's key is.
    pub fn key_location(&self) -> &KeyLocation {
        &self.key
    }

    /// The file that holds secret `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, SecretError> {
        if !valid_name(name) {
            return Err(SecretError::InvalidName(name.to_owned()));
        }
        Ok(self.dir.join(name))
    }

    fn lock(&self, exclusive: bool) -> Result<Lock, SecretError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io(&path))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(|e| io(&path)(e.into()))?;
        Ok(Lock(file))
    }

    fn keys(&self) -> Result<Keys, SecretError> {
        let current = read_key(&self.key.path)?;
        let old = if self.key.origin == KeyOrigin::SystemdCredential {
            None
        } else {
            read_key(&self.key.old_path())?
        };
        Ok(Keys { current, old })
    }

    /// The key new files are sealed with; created when none exists and nothing is sealed
    /// (a missing key over sealed files is an error, never a new key). Call under the
    /// exclusive lock.
    fn write_key(&self, keys: &mut Keys) -> Result<MasterKey, SecretError> {
        if let Some(k) = &keys.current {
            return Ok(k.clone());
        }
        if let Some(id) = self.first_sealed()? {
            return Err(self.missing_key(id));
        }
        if self.key.origin == KeyOrigin::SystemdCredential {
            return Err(SecretError::KeyIsCredential(self.key.path.clone()));
        }
        let fresh = MasterKey::generate().map_err(random_err)?;
        create_key_file(&self.key.path, &fresh).map_err(|e| match e {
            SecretError::Io { path, source } => SecretError::KeyCreate { path, source },
            e => e,
        })?;
        // Another process may have won the race: use whatever is there now.
        let k = read_key(&self.key.path)?.ok_or_else(|| {
            io(&self.key.path)(std::io::Error::other(
                "the key file vanished after creation",
            ))
        })?;
        keys.current = Some(k.clone());
        Ok(k)
    }

    fn missing_key(&self, id: KeyId) -> SecretError {
        let sealed = self.scan().map_or(1, |files| {
            files
                .iter()
                .filter(|(_, s)| matches!(s, Ok(Shape::Sealed(_))))
                .count()
        });
        SecretError::MissingKey {
            dir: self.dir.clone(),
            key: self.key.path.clone(),
            key_id: id,
            sealed,
            looked: self.key.looked(),
        }
    }

    fn first_sealed(&self) -> Result<Option<KeyId>, SecretError> {
        Ok(self.scan()?.into_iter().find_map(|(_, s)| match s {
            Ok(Shape::Sealed(id)) => Some(id),
            _ => None,
        }))
    }

    /// Every secret file's name and shape (reads each file's bytes; modes unchecked).
    fn scan(&self) -> Result<Vec<(String, ShapeOf)>, SecretError> {
        let mut out = Vec::new();
        for name in self.names()? {
            let path = self.dir.join(&name);
            let bytes = fsx::read_bounded(&path, MAX_SECRET + 1024)?;
            out.push((name, seal::shape(&bytes)));
        }
        Ok(out)
    }

    /// Reads `name`'s file: `None` when absent; group/other-readable files refused.
    fn read_file(&self, name: &str) -> Result<Option<(PathBuf, Vec<u8>)>, SecretError> {
        let path = self.path(name)?;
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::InsecureMode { path, mode });
        }
        let bytes = fsx::read_bounded(&path, MAX_SECRET + 1024)?;
        Ok(Some((path, bytes)))
    }

    /// The plaintext of a file's bytes, whichever key (current or, mid-rotation, old)
    /// sealed it; plaintext files as they are.
    fn unseal(
        &self,
        keys: &Keys,
        name: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<secrecy::zeroize::Zeroizing<Vec<u8>>, SecretError> {
        let damaged = |damage| SecretError::Damaged {
            path: path.to_owned(),
            damage,
        };
        match seal::shape(bytes).map_err(damaged)? {
            Shape::Plain => Ok(secrecy::zeroize::Zeroizing::new(bytes.to_vec())),
            Shape::Sealed(id) => {
                let Some(key) = keys.find(id) else {
                    return Err(match &keys.current {
                        None => self.missing_key(id),
                        Some(current) => SecretError::WrongKey {
                            path: path.to_owned(),
                            sealed_with: id,
                            key: self.key.path.clone(),
                            key_id: current.id(),
                        },
                    });
                };
                seal::open(key, name, bytes).map_err(damaged)
            }
        }
    }

    /// Seals every plaintext file with the current key and finishes an interrupted rotation
    /// (files under the old key sealed with the new one, then the old key removed). Each
    /// file is replaced atomically, so a crash leaves it plaintext or sealed.
    fn migrate(&self) -> Result<(), SecretError> {
        let files = self.scan()?;
        let rotation_pending =
            self.key.origin != KeyOrigin::SystemdCredential && self.key.old_path().exists();
        if !rotation_pending && !files.iter().any(|(_, s)| *s == Ok(Shape::Plain)) {
            return Ok(());
        }
        let _lock = self.lock(true)?;
        let mut keys = self.keys()?;
        match self.reseal_all(&mut keys, None) {
            Ok(_) => {}
            // Nowhere to create a key (a daemon sandboxed by an older unit, a read-only
            // mount): the plaintext files stay as they are and are read as they are; the
            // first `put` says what to do, and the next open that can create the key seals.
            Err(SecretError::KeyCreate { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        if rotation_pending && keys.current.is_some() {
            remove_durably(&self.key.old_path())?;
        }
        Ok(())
    }

    /// Seals, with the current key, every file that is plaintext or sealed with the old key;
    /// stops after `limit` files (a crash, in tests). Call under the exclusive lock.
    fn reseal_all(&self, keys: &mut Keys, limit: Option<usize>) -> Result<usize, SecretError> {
        let mut done = 0;
        for name in self.names()? {
            if limit.is_some_and(|l| done >= l) {
                break;
            }
            let (path, bytes) = match self.read_file(&name) {
                Ok(Some(file)) => file,
                // Gone meanwhile, or readable by others (left as it is: `get` refuses it and
                // `rotate_key` checks every file before it starts).
                Ok(None) | Err(SecretError::InsecureMode { .. }) => continue,
                Err(e) => return Err(e),
            };
            // A damaged file is left as it is: `get` and `status` name it.
            let Ok(shape) = seal::shape(&bytes) else {
                continue;
            };
            let current_id = keys.current.as_ref().map(MasterKey::id);
            if let Shape::Sealed(id) = shape
                && Some(id) == current_id
            {
                continue;
            }
            let plain = self.unseal(keys, &name, &path, &bytes)?;
            let key = self.write_key(keys)?;
            let sealed = seal::seal(&key, &name, &plain).map_err(random_err)?;
            fsx::write_atomic(&path, &sealed, FILE_MODE)?;
            done += 1;
        }
        Ok(done)
    }

    /// The master key's id, creating the key when none exists and nothing is sealed (as the
    /// first `put` would): `autogit install` does this before a systemd unit names the key
    /// file in `LoadCredential=`, which fails the unit when the file is missing.
    pub fn ensure_key(&self) -> Result<String, SecretError> {
        let _lock = self.lock(true)?;
        let mut keys = self.keys()?;
        Ok(self.write_key(&mut keys)?.id().to_string())
    }

    /// Stores `value` under `name` (sealed, atomically, mode 0600), replacing any earlier value.
    pub fn put(&self, name: &str, value: &SecretString) -> Result<(), SecretError> {
        let path = self.path(name)?;
        let _lock = self.lock(true)?;
        let mut keys = self.keys()?;
        let key = self.write_key(&mut keys)?;
        let sealed =
            seal::seal(&key, name, value.expose_secret().as_bytes()).map_err(random_err)?;
        fsx::write_atomic(&path, &sealed, FILE_MODE)?;
        Ok(())
    }

    /// The secret `name`, or `None` when it was never stored. A file that group or others may
    /// read is refused ([`SecretError::InsecureMode`]); one that does not open is an error
    /// naming the file ([`SecretError::Damaged`], [`SecretError::WrongKey`],
    /// [`SecretError::MissingKey`]).
    pub fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
        self.path(name)?;
        let _lock = self.lock(false)?;
        let Some((path, bytes)) = self.read_file(name)? else {
            return Ok(None);
        };
        let keys = self.keys()?;
        let plain = self.unseal(&keys, name, &path, &bytes)?;
        let text = std::str::from_utf8(&plain).map_err(|_| SecretError::NotUtf8(path.clone()))?;
        Ok(Some(SecretString::from(text.to_owned())))
    }

    /// Whether secret `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool, SecretError> {
        Ok(self.path(name)?.is_file())
    }

    /// Removes secret `name`; absent is fine.
    pub fn remove(&self, name: &str) -> Result<(), SecretError> {
        let path = self.path(name)?;
        let _lock = self.lock(true)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Names of the stored secrets, sorted (the env file, the lock and temporary files
    /// excluded).
    pub fn names(&self) -> Result<Vec<String>, SecretError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_name(&name) && entry.path().is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Stores the file bytes of secret `name` as a backup archive holds them: a sealed file
    /// must open with a key this store has (else the error says which key is needed, and
    /// nothing is written); a plaintext one (an archive of an earlier version) is sealed.
    pub fn import(&self, name: &str, bytes: &[u8]) -> Result<(), SecretError> {
        let path = self.path(name)?;
        let _lock = self.lock(true)?;
        let mut keys = self.keys()?;
        let plain = self.unseal(&keys, name, &path, bytes)?;
        if let Ok(Shape::Sealed(id)) = seal::shape(bytes)
            && keys.current.as_ref().map(MasterKey::id) == Some(id)
        {
            fsx::write_atomic(&path, bytes, FILE_MODE)?;
            return Ok(());
        }
        let key = self.write_key(&mut keys)?;
        let sealed = seal::seal(&key, name, &plain).map_err(random_err)?;
        fsx::write_atomic(&path, &sealed, FILE_MODE)?;
        Ok(())
    }

    /// Whether the file bytes of secret `name` (from a backup archive) would open here; the
    /// error is the one [`SecretStore::get`] would give, naming `shown_as`.
    pub fn check_import(
        &self,
        name: &str,
        bytes: &[u8],
        shown_as: &Path,
    ) -> Result<(), SecretError> {
        if !valid_name(name) {
            return Err(SecretError::InvalidName(name.to_owned()));
        }
        let keys = self.keys()?;
        self.unseal(&keys, name, shown_as, bytes)
            .map(drop)
            .map_err(|e| match e {
                SecretError::MissingKey { key_id, .. }
                | SecretError::WrongKey {
                    sealed_with: key_id,
                    ..
                } => SecretError::ForeignKey {
                    path: shown_as.to_owned(),
                    sealed_with: key_id,
                    key: self.key.path.clone(),
                    here: keys
                        .current
                        .as_ref()
                        .map_or_else(|| "missing".to_owned(), |k| format!("key {}", k.id())),
                },
                e => e,
            })
    }

    /// Key location and id, and how many files are sealed, plaintext or unreadable (names
    /// only, never values).
    pub fn status(&self) -> Result<StoreStatus, SecretError> {
        let _lock = self.lock(false)?;
        let keys = self.keys()?;
        let mut st = StoreStatus {
            dir: self.dir.clone(),
            key: self.key.clone(),
            key_id: keys.current.as_ref().map(|k| k.id().to_string()),
            rotation_pending: keys.old.is_some(),
            sealed: 0,
            plaintext: 0,
            other_key: Vec::new(),
            damaged: Vec::new(),
        };
        let files = self.scan()?;
        if keys.current.is_none()
            && let Some(id) = files.iter().find_map(|(_, s)| match s {
                Ok(Shape::Sealed(id)) => Some(*id),
                _ => None,
            })
        {
            return Err(self.missing_key(id));
        }
        for (name, shape) in files {
            match shape {
                Ok(Shape::Plain) => st.plaintext += 1,
                Ok(Shape::Sealed(id)) if keys.find(id).is_some() => st.sealed += 1,
                Ok(Shape::Sealed(_)) => st.other_key.push(name),
                Err(_) => st.damaged.push(name),
            }
        }
        Ok(st)
    }

    /// A new key, and every file sealed with it. Crash-safe: the current key is first kept as
    /// `<key>.old`, then the new key replaces it, then each file is sealed again (atomically),
    /// and only then is `<key>.old` removed; reads in between use whichever key a file's
    /// header names, and the next open finishes an interrupted rotation. Refused when the key
    /// is a systemd credential (read-only).
    pub fn rotate_key(&self) -> Result<Rotation, SecretError> {
        self.rotate_key_until(None)
    }

    fn rotate_key_until(&self, crash_after: Option<usize>) -> Result<Rotation, SecretError> {
        if self.key.origin == KeyOrigin::SystemdCredential {
            return Err(SecretError::KeyIsCredential(self.key.path.clone()));
        }
        let _lock = self.lock(true)?;
        let mut keys = self.keys()?;
        // An earlier rotation that did not finish is finished first, so that only two keys
        // are ever in play.
        if keys.old.is_some() {
            self.reseal_all(&mut keys, None)?;
            remove_durably(&self.key.old_path())?;
            keys.old = None;
        }
        // Every file must open before anything changes.
        for name in self.names()? {
            if let Some((path, bytes)) = self.read_file(&name)? {
                self.unseal(&keys, &name, &path, &bytes)?;
            }
        }
        let old = keys.current.take();
        if let Some(old) = &old {
            fsx::write_atomic(
                &self.key.old_path(),
                old.to_file_text().as_bytes(),
                FILE_MODE,
            )?;
        }
        let new = MasterKey::generate().map_err(random_err)?;
        fsx::write_atomic(&self.key.path, new.to_file_text().as_bytes(), FILE_MODE)?;
        let new_id = new.id();
        keys = Keys {
            current: Some(new),
            old: old.clone(),
        };
        let resealed = self.reseal_all(&mut keys, crash_after)?;
        if crash_after.is_none() {
            remove_durably(&self.key.old_path())?;
        }
        Ok(Rotation {
            key: self.key.path.clone(),
            old_key_id: old.map(|k| k.id().to_string()),
            new_key_id: new_id.to_string(),
            resealed,
        })
    }

    /// The env file's path.
    pub fn env_file(&self) -> PathBuf {
        self.dir.join(ENV_FILE)
    }

    /// Writes the env file (atomically, mode 0600): one `KEY=value` line per entry, in the
    /// order given. Keys must be shell variable names; values must be single-line.
    pub fn write_env_file(
        &self,
        entries: &[(String, SecretString)],
    ) -> Result<PathBuf, SecretError> {
        let mut text =
            String::from("# Written by autogit (gitlab bootstrap). Mode 0600: keep it that way.\n");
        for (key, value) in entries {
            if !valid_env_key(key) {
                return Err(SecretError::InvalidEnvKey(key.clone()));
            }
            let v = value.expose_secret();
            if v.contains(['\n', '\r', '\0']) {
                return Err(SecretError::InvalidEnvValue(key.clone()));
            }
            text.push_str(key);
            text.push('=');
            text.push_str(v);
            text.push('\n');
        }
        let path = self.env_file();
        let result = fsx::write_atomic(&path, text.as_bytes(), FILE_MODE);
        // Do not keep a copy of every secret in a freed buffer longer than needed.
        secrecy::zeroize::Zeroize::zeroize(&mut text);
        result?;
        Ok(path)
    }
}

/// Removes `path` (absent is fine) and makes the removal durable.
fn remove_durably(path: &Path) -> Result<(), SecretError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, SecretError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(random_err)?;
    Ok(buf)
}

/// A random string of `len` characters from `[A-Za-z0-9]` (unbiased: rejection sampling).
pub fn random_alnum(len: usize) -> Result<SecretString, SecretError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes(len * 2)? {
            // 62 * 4 = 248: bytes at or above are rejected so every character is equally likely.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(SecretString::from(out))
}

/// `NAME`, else the content of the file `NAME_FILE` names (64 KiB at most, UTF-8, trailing
/// newline removed, not empty).
pub fn env_or_file(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = lookup(name) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    let Some(path) = lookup(&file_var) else {
        return Ok(None);
    };
    let bytes = fsx::read_bounded(Path::new(&path), 64 * 1024).map_err(|e| match e {
        FsError::TooLarge { .. } => format!("{file_var}: {path} is larger than 64 KiB"),
        FsError::Io { source, .. } => format!("{file_var}: cannot read {path}: {source}"),
        // Only writes are confined to a directory.
        e @ FsError::Outside { .. } => format!("{file_var}: {e}"),
    })?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{file_var}: {path} is not UTF-8 text"))?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    if value.is_empty() {
        return Err(format!("{file_var}: {path} is empty"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// The key where `open` would put it with no environment: `<data>.key`.
    fn key_at(data: &Path) -> KeyLocation {
        KeyLocation::resolve(data, &|_| None)
    }

    /// A store in `<d>/data`, its key at `<d>/data.key` (inside the temp dir).
    fn store(d: &tempfile::TempDir) -> SecretStore {
        let data = d.path().join("data");
        SecretStore::open_with_key(&data, key_at(&data)).unwrap()
    }

    fn sv(v: &str) -> SecretString {
        SecretString::from(v.to_owned())
    }

    fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn files_are_0600_in_a_0700_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        s.put(
            "gitlab-admin-token",
            &SecretString::from("glpat-abc".to_owned()),
        )
        .unwrap();
        assert_eq!(mode(s.dir()), 0o700);
        assert_eq!(mode(&s.path("gitlab-admin-token").unwrap()), 0o600);
        assert_eq!(
            s.get("gitlab-admin-token")
                .unwrap()
                .unwrap()
                .expose_secret(),
            "glpat-abc"
        );
        assert!(s.get("missing").unwrap().is_none());
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_new_data_dir_is_0700_under_umask_022() {
        // SAFETY: umask only sets the process's file creation mask; 022 is the usual one and
        // what the other tests in this binary expect anyway.
        unsafe {
            libc::umask(0o022);
        }
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("var/autogit");
        let s = SecretStore::open_with_key(&data, key_at(&data)).unwrap();
        s.put("t", &SecretString::from("v".to_owned())).unwrap();
        assert_eq!(
            (mode(&d.path().join("var")), mode(&data), mode(s.dir())),
            (0o700, 0o700, 0o700)
        );
        assert_eq!(mode(&s.path("t").unwrap()), 0o600);
        // The key: created on first use, 0600, next to (not inside) the data dir.
        assert_eq!(s.key_location().path, d.path().join("var/autogit.key"));
        assert_eq!(mode(&s.key_location().path), 0o600);
    }

    #[test]
    fn a_wide_directory_is_narrowed_and_a_readable_file_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data/secrets");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let s = store(&d);
        assert_eq!(mode(&dir), 0o700);
        fs::write(dir.join("leaky"), "x").unwrap();
        fs::set_permissions(dir.join("leaky"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            s.get("leaky"),
            Err(SecretError::InsecureMode { mode: 0o644, .. })
        ));
    }

    #[test]
    fn replacing_is_atomic_and_leaves_no_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        for v in ["one", "two", "three"] {
            s.put("t", &SecretString::from(v.to_owned())).unwrap();
        }
        assert_eq!(s.get("t").unwrap().unwrap().expose_secret(), "three");
        let files: Vec<_> = fs::read_dir(s.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != LOCK_FILE)
            .collect();
        assert_eq!(files, ["t"], "only the secret itself, no temp file");
        assert_eq!(s.names().unwrap(), vec!["t".to_owned()]);
        s.remove("t").unwrap();
        s.remove("t").unwrap();
        assert!(s.names().unwrap().is_empty());
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        for bad in ["../x", "a/b", "", ".hidden", "A", "a..b", ENV_FILE] {
            assert!(
                matches!(s.path(bad), Err(SecretError::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn env_file_is_0600_with_key_value_lines() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        let p = s
            .write_env_file(&[
                (
                    "GITLAB_URL".into(),
                    SecretString::from("http://x".to_owned()),
                ),
                (
                    "GITLAB_CI_TOKEN".into(),
                    SecretString::from("glpat-1".to_owned()),
                ),
            ])
            .unwrap();
        assert_eq!(mode(&p), 0o600);
        let text = fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("\nGITLAB_URL=http://x\nGITLAB_CI_TOKEN=glpat-1\n"),
            "{text}"
        );
        assert!(matches!(
            s.write_env_file(&[("bad key".into(), SecretString::from("v".to_owned()))]),
            Err(SecretError::InvalidEnvKey(_))
        ));
        assert!(matches!(
            s.write_env_file(&[("K".into(), SecretString::from("a\nB=c".to_owned()))]),
            Err(SecretError::InvalidEnvValue(_))
        ));
        // A refused write keeps the earlier file.
        assert_eq!(fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn values_on_disk_are_sealed_with_the_key_id_and_the_key_is_outside_the_data_dir() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        assert!(
            !s.key_location().path.exists(),
            "no key before anything is stored"
        );
        s.put("gitlab-admin-token", &sv("glpat-VERYSECRET"))
            .unwrap();
        let key = s.key_location().path.clone();
        assert_eq!(key, d.path().join("data.key"));
        assert!(!key.starts_with(d.path().join("data")));
        let bytes = fs::read(s.path("gitlab-admin-token").unwrap()).unwrap();
        assert!(!contains_bytes(&bytes, b"VERYSECRET"));
        let id = read_key(&key).unwrap().unwrap().id();
        assert_eq!(seal::shape(&bytes), Ok(Shape::Sealed(id)));
        assert_eq!(
            s.get("gitlab-admin-token")
                .unwrap()
                .unwrap()
                .expose_secret(),
            "glpat-VERYSECRET"
        );
        let st = s.status().unwrap();
        assert_eq!((st.sealed, st.plaintext), (1, 0));
        assert_eq!(st.key_id, Some(id.to_string()));
        // A wider key file is refused like a wider secret.
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            s.get("gitlab-admin-token"),
            Err(SecretError::InsecureMode { mode: 0o644, .. })
        ));
    }

    /// Every way a file can fail to open is a typed error that names the file and never
    /// shows the value.
    #[test]
    fn wrong_key_swapped_truncated_and_bad_header_are_typed_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        s.put("a", &sv("value-of-a-SECRET")).unwrap();
        s.put("b", &sv("value-of-b-SECRET")).unwrap();
        let (pa, pb) = (s.path("a").unwrap(), s.path("b").unwrap());
        let sealed_a = fs::read(&pa).unwrap();
        let check = |e: SecretError, want: &str| {
            let text = e.to_string();
            assert!(text.contains(&pa.display().to_string()), "{text}");
            assert!(text.contains(want), "{text}");
            assert!(!text.contains("SECRET"), "{text}");
            assert!(!format!("{e:?}").contains("SECRET"));
        };
        // b's file copied over a's name.
        fs::copy(&pb, &pa).unwrap();
        let e = s.get("a").unwrap_err();
        assert!(
            matches!(
                &e,
                SecretError::Damaged {
                    damage: Damage::Tampered,
                    ..
                }
            ),
            "{e:?}"
        );
        check(e, "another secret's name");
        // Cut short.
        fs::write(&pa, &sealed_a[..seal::HEADER_LEN + 4]).unwrap();
        let e = s.get("a").unwrap_err();
        assert!(matches!(
            &e,
            SecretError::Damaged {
                damage: Damage::Truncated,
                ..
            }
        ));
        check(e, "cut short");
        // A header of an unknown version.
        let mut v9 = sealed_a.clone();
        v9[4] = 9;
        fs::write(&pa, &v9).unwrap();
        let e = s.get("a").unwrap_err();
        assert!(matches!(
            &e,
            SecretError::Damaged {
                damage: Damage::UnknownVersion(9),
                ..
            }
        ));
        check(e, "version 9");
        // Neither sealed nor text.
        fs::write(&pa, b"\x80\x81 not text").unwrap();
        let e = s.get("a").unwrap_err();
        assert!(matches!(
            &e,
            SecretError::Damaged {
                damage: Damage::Neither,
                ..
            }
        ));
        check(e, "neither a sealed secret nor plaintext");
        // The right file under another key.
        fs::write(&pa, &sealed_a).unwrap();
        assert_eq!(
            s.get("a").unwrap().unwrap().expose_secret(),
            "value-of-a-SECRET"
        );
        let other = MasterKey::generate().unwrap();
        fsx::write_atomic(
            &s.key_location().path,
            other.to_file_text().as_bytes(),
            FILE_MODE,
        )
        .unwrap();
        let e = s.get("a").unwrap_err();
        assert!(matches!(&e, SecretError::WrongKey { key_id, .. } if *key_id == other.id()));
        check(e, "Put back the key file");
    }

    #[test]
    fn a_plaintext_store_is_sealed_at_open_without_loss() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data/secrets");
        fs::create_dir_all(&dir).unwrap();
        let values = [
            ("gitlab-admin-token", "glpat-PLAIN-admin"),
            ("gitlab-root-password", "PLAIN pass with spaces and ünïcode"),
            ("runner-token-gpu", "glrt-PLAIN-runner"),
            ("token-index.json", "{\"PLAIN\":[1,2,3]}"),
            ("empty", ""),
        ];
        for (n, v) in values {
            fs::write(dir.join(n), v).unwrap();
            fs::set_permissions(dir.join(n), fs::Permissions::from_mode(0o600)).unwrap();
        }
        // The env file stays plaintext: other programs read it.
        fs::write(dir.join(ENV_FILE), "GITLAB_URL=PLAIN\n").unwrap();
        // A file others may read does not stop the migration of the rest; it stays refused.
        fs::write(dir.join("leaky"), "PLAIN-leaky").unwrap();
        fs::set_permissions(dir.join("leaky"), fs::Permissions::from_mode(0o644)).unwrap();
        let s = store(&d);
        assert!(matches!(
            s.get("leaky"),
            Err(SecretError::InsecureMode { .. })
        ));
        fs::remove_file(dir.join("leaky")).unwrap();
        for (n, v) in values {
            let bytes = fs::read(dir.join(n)).unwrap();
            assert!(
                !contains_bytes(&bytes, b"PLAIN"),
                "{n} still holds plaintext"
            );
            assert!(matches!(seal::shape(&bytes), Ok(Shape::Sealed(_))), "{n}");
            assert_eq!(mode(&dir.join(n)), 0o600);
            assert_eq!(s.get(n).unwrap().unwrap().expose_secret(), v, "{n}");
        }
        assert_eq!(
            fs::read_to_string(dir.join(ENV_FILE)).unwrap(),
            "GITLAB_URL=PLAIN\n"
        );
        let st = s.status().unwrap();
        assert_eq!((st.sealed, st.plaintext), (values.len(), 0));
        // A second open changes nothing.
        let before: Vec<Vec<u8>> = values
            .iter()
            .map(|(n, _)| fs::read(dir.join(n)).unwrap())
            .collect();
        let s = store(&d);
        let after: Vec<Vec<u8>> = values
            .iter()
            .map(|(n, _)| fs::read(dir.join(n)).unwrap())
            .collect();
        assert_eq!(before, after);
        assert_eq!(s.names().unwrap().len(), values.len());
    }

    /// A crash mid-migration leaves some files sealed and some plaintext: both read, and the
    /// next open finishes. A damaged file is left alone and named by `get` and `status`.
    #[test]
    fn a_half_migrated_store_reads_and_a_damaged_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        s.put("sealed-one", &sv("v1")).unwrap();
        let dir = s.dir().to_owned();
        fs::write(dir.join("plain-one"), "v2").unwrap();
        fs::set_permissions(dir.join("plain-one"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(dir.join("broken"), b"\xfe\xfe SECRET-ISH").unwrap();
        fs::set_permissions(dir.join("broken"), fs::Permissions::from_mode(0o600)).unwrap();
        // Both shapes read before the migration...
        assert_eq!(s.get("plain-one").unwrap().unwrap().expose_secret(), "v2");
        assert_eq!(s.status().unwrap().plaintext, 1);
        // ...and after it.
        let s = store(&d);
        assert_eq!(s.get("sealed-one").unwrap().unwrap().expose_secret(), "v1");
        assert_eq!(s.get("plain-one").unwrap().unwrap().expose_secret(), "v2");
        let st = s.status().unwrap();
        assert_eq!((st.sealed, st.plaintext), (2, 0));
        assert_eq!(st.damaged, ["broken"]);
        let e = s.get("broken").unwrap_err().to_string();
        assert!(e.contains(&dir.join("broken").display().to_string()), "{e}");
        assert!(e.contains("damaged"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        assert_eq!(
            fs::read(dir.join("broken")).unwrap(),
            b"\xfe\xfe SECRET-ISH"
        );
    }

    /// Where no key can be created (a read-only place), a plaintext store still opens and
    /// reads; writing says where the key must go.
    #[test]
    fn a_plaintext_store_opens_where_no_key_can_be_created() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        fs::create_dir_all(data.join("secrets")).unwrap();
        fs::write(data.join("secrets/t"), "plain").unwrap();
        fs::set_permissions(data.join("secrets/t"), fs::Permissions::from_mode(0o600)).unwrap();
        // A key path under a regular file: nobody, root included, can create it.
        fs::write(d.path().join("not-a-dir"), "").unwrap();
        let key = KeyLocation {
            path: d.path().join("not-a-dir/autogit.key"),
            origin: KeyOrigin::Env,
        };
        let s = SecretStore::open_with_key(&data, key).unwrap();
        assert_eq!(s.get("t").unwrap().unwrap().expose_secret(), "plain");
        assert_eq!(s.status().unwrap().plaintext, 1);
        let e = s.put("u", &sv("v")).unwrap_err();
        assert!(matches!(e, SecretError::KeyCreate { .. }), "{e:?}");
        assert!(e.to_string().contains("not-a-dir/autogit.key"), "{e}");
        assert!(!s.dir().join("u").exists());
    }

    #[test]
    fn a_missing_key_over_sealed_files_is_an_error_and_never_a_new_key() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        s.put("a", &sv("x")).unwrap();
        let key = s.key_location().path.clone();
        let id = read_key(&key).unwrap().unwrap().id();
        fs::remove_file(&key).unwrap();
        let e = s.get("a").unwrap_err();
        assert!(matches!(&e, SecretError::MissingKey { key_id, sealed: 1, .. } if *key_id == id));
        let text = e.to_string();
        assert!(text.contains(&key.display().to_string()), "{text}");
        assert!(text.contains("escrow"), "{text}");
        assert!(matches!(
            s.put("b", &sv("y")),
            Err(SecretError::MissingKey { .. })
        ));
        assert!(matches!(
            s.rotate_key(),
            Err(SecretError::MissingKey { .. })
        ));
        assert!(matches!(s.status(), Err(SecretError::MissingKey { .. })));
        // Opening again, with a plaintext file to migrate, does not create one either.
        fs::write(s.dir().join("c"), "z").unwrap();
        fs::set_permissions(s.dir().join("c"), fs::Permissions::from_mode(0o600)).unwrap();
        let data = d.path().join("data");
        assert!(matches!(
            SecretStore::open_with_key(&data, key_at(&data)),
            Err(SecretError::MissingKey { .. })
        ));
        assert!(!key.exists());
        assert_eq!(fs::read(s.dir().join("c")).unwrap(), b"z");
    }

    #[test]
    fn rotation_reseals_everything_and_removes_the_old_key() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        for i in 0..4 {
            s.put(&format!("s{i}"), &sv(&format!("value-{i}"))).unwrap();
        }
        fs::write(s.dir().join("legacy"), "plain").unwrap();
        fs::set_permissions(s.dir().join("legacy"), fs::Permissions::from_mode(0o600)).unwrap();
        let old = read_key(&s.key_location().path).unwrap().unwrap();
        let r = s.rotate_key().unwrap();
        assert_eq!(r.old_key_id, Some(old.id().to_string()));
        assert_eq!(r.resealed, 5);
        let new = read_key(&s.key_location().path).unwrap().unwrap();
        assert_ne!(new.id(), old.id());
        assert_eq!(r.new_key_id, new.id().to_string());
        assert!(!s.key_location().old_path().exists(), "the old key is gone");
        for i in 0..4 {
            let bytes = fs::read(s.path(&format!("s{i}")).unwrap()).unwrap();
            assert_eq!(seal::shape(&bytes), Ok(Shape::Sealed(new.id())));
            assert!(seal::open(&old, &format!("s{i}"), &bytes).is_err());
            assert_eq!(
                s.get(&format!("s{i}")).unwrap().unwrap().expose_secret(),
                format!("value-{i}")
            );
        }
        assert_eq!(s.get("legacy").unwrap().unwrap().expose_secret(), "plain");
        let st = s.status().unwrap();
        assert_eq!(
            (st.sealed, st.plaintext, st.rotation_pending),
            (5, 0, false)
        );
        // A damaged file stops a rotation before anything changes.
        fs::write(s.dir().join("zz-broken"), b"\x80").unwrap();
        fs::set_permissions(s.dir().join("zz-broken"), fs::Permissions::from_mode(0o600)).unwrap();
        let e = s.rotate_key().unwrap_err().to_string();
        assert!(e.contains("zz-broken"), "{e}");
        assert_eq!(
            read_key(&s.key_location().path).unwrap().unwrap().id(),
            new.id()
        );
        assert!(!s.key_location().old_path().exists());
    }

    /// A rotation stopped after two of five files (a crash): every secret still reads (each
    /// file names its key), and the next open finishes the rotation and removes the old key.
    #[test]
    fn a_rotation_cut_halfway_leaves_everything_readable_and_is_finished_by_the_next_open() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        for i in 0..5 {
            s.put(&format!("s{i}"), &sv(&format!("value-{i}"))).unwrap();
        }
        let old = read_key(&s.key_location().path).unwrap().unwrap();
        let r = s.rotate_key_until(Some(2)).unwrap();
        assert_eq!(r.resealed, 2);
        assert!(s.key_location().old_path().exists());
        let new = read_key(&s.key_location().path).unwrap().unwrap();
        let ids: Vec<KeyId> = (0..5)
            .map(
                |i| match seal::shape(&fs::read(s.path(&format!("s{i}")).unwrap()).unwrap()) {
                    Ok(Shape::Sealed(id)) => id,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(ids.iter().filter(|id| **id == new.id()).count(), 2);
        assert_eq!(ids.iter().filter(|id| **id == old.id()).count(), 3);
        for i in 0..5 {
            assert_eq!(
                s.get(&format!("s{i}")).unwrap().unwrap().expose_secret(),
                format!("value-{i}")
            );
        }
        assert!(s.status().unwrap().rotation_pending);
        // A write in between uses the new key.
        s.put("s9", &sv("late")).unwrap();
        let s = store(&d);
        assert!(!s.key_location().old_path().exists());
        for i in 0..5 {
            let bytes = fs::read(s.path(&format!("s{i}")).unwrap()).unwrap();
            assert_eq!(seal::shape(&bytes), Ok(Shape::Sealed(new.id())));
            assert_eq!(
                s.get(&format!("s{i}")).unwrap().unwrap().expose_secret(),
                format!("value-{i}")
            );
        }
        assert_eq!(s.get("s9").unwrap().unwrap().expose_secret(), "late");
        // A crash between keeping the old key and writing the new one: `.old` is the current
        // key; the next open just removes it.
        fs::copy(&s.key_location().path, s.key_location().old_path()).unwrap();
        let s = store(&d);
        assert!(!s.key_location().old_path().exists());
        assert_eq!(s.get("s0").unwrap().unwrap().expose_secret(), "value-0");
    }

    #[test]
    fn a_systemd_credential_is_preferred_and_read_only() {
        let d = tempfile::tempdir().unwrap();
        let creds = d.path().join("creds");
        fs::create_dir_all(&creds).unwrap();
        let k = MasterKey::generate().unwrap();
        fsx::write_atomic(&creds.join(CREDENTIAL), k.to_file_text().as_bytes(), 0o400).unwrap();
        let data = d.path().join("data");
        let env_file = d.path().join("elsewhere.key");
        let creds_s = creds.display().to_string();
        let env_s = env_file.display().to_string();
        let both = |v: &str| match v {
            "CREDENTIALS_DIRECTORY" => Some(creds_s.clone()),
            "AUTOGIT_KEY_FILE" => Some(env_s.clone()),
            _ => None,
        };
        let loc = KeyLocation::resolve(&data, &both);
        assert_eq!(loc.origin, KeyOrigin::SystemdCredential);
        assert_eq!(loc.path, creds.join(CREDENTIAL));
        let env_only = |v: &str| (v == "AUTOGIT_KEY_FILE").then(|| env_s.clone());
        assert_eq!(
            KeyLocation::resolve(&data, &env_only),
            KeyLocation {
                path: env_file,
                origin: KeyOrigin::Env
            }
        );
        let s = SecretStore::open_with_key(&data, loc).unwrap();
        s.put("a", &sv("b")).unwrap();
        assert_eq!(
            seal::shape(&fs::read(s.path("a").unwrap()).unwrap()),
            Ok(Shape::Sealed(k.id()))
        );
        assert!(matches!(
            s.rotate_key(),
            Err(SecretError::KeyIsCredential(_))
        ));
    }

    #[test]
    fn debug_never_shows_a_value() {
        let d = tempfile::tempdir().unwrap();
        let s = store(&d);
        let v = SecretString::from("hunter2-secret".to_owned());
        s.put("pw", &v).unwrap();
        let got = s.get("pw").unwrap();
        let key = read_key(&s.key_location().path).unwrap().unwrap();
        let key_text = key.to_file_text();
        let status = s.status().unwrap();
        let rotation = s.rotate_key().unwrap();
        let new_key = read_key(&s.key_location().path).unwrap().unwrap();
        let new_text = new_key.to_file_text();
        for text in [
            format!("{v:?}"),
            format!("{got:?}"),
            format!("{s:?}"),
            format!("{key:?}"),
            format!("{new_key:?}"),
            format!("{status:?}"),
            format!("{rotation:?}"),
            serde_json::to_string(&status).unwrap(),
            serde_json::to_string(&rotation).unwrap(),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(key_text.trim()), "{text}");
            assert!(!text.contains(new_text.trim()), "{text}");
        }
    }

    #[test]
    fn random_strings_are_alnum_and_differ() {
        let a = random_alnum(32).unwrap();
        let b = random_alnum(32).unwrap();
        assert_eq!(a.expose_secret().len(), 32);
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
