//! autogit's secret store: one file per secret under `<data_dir>/secrets/` (directory 0700,
//! files 0600, written atomically), plus `gitlab.env`, an env file of mode 0600 (`KEY=value`
//! lines) for other tools.
//!
//! Values live in [`SecretString`] (zeroized on drop, `Debug` prints `[REDACTED]`); nothing
//! in this module logs a value, and errors name files, never contents.

use crate::fsx::{self, FsError};
pub use secrecy::{ExposeSecret, SecretString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mode of every secret file and of the env file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the secrets directory.
pub const DIR_MODE: u32 = 0o700;
/// Name of the env file inside the secrets directory.
pub const ENV_FILE: &str = "gitlab.env";
/// Largest secret read back (a token, a password, a small JSON document).
const MAX_SECRET: u64 = 64 * 1024;

/// What can go wrong with the secret store. Messages name files, never values.
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
    /// A secret file that others may read: refused rather than trusted.
    #[error(
        "{path} has mode {mode:o}; secrets must not be readable by group or others (chmod 600)"
    )]
    InsecureMode { path: PathBuf, mode: u32 },
    /// A secret file that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(PathBuf),
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

/// The secret store of one data directory.
#[derive(Clone, Debug)]
pub struct SecretStore {
    dir: PathBuf,
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
    /// Opens (creating it with mode 0700) `<data_dir>/secrets`. An existing directory with a
    /// wider mode is narrowed to 0700.
    pub fn open(data_dir: &Path) -> Result<SecretStore, SecretError> {
        let dir = data_dir.join("secrets");
        // The data dir too, when this creates it (0700, whatever the umask).
        fsx::ensure_private_dir(&dir)?;
        let mode = fs::metadata(&dir).map_err(io(&dir))?.permissions().mode() & 0o777;
        if mode != DIR_MODE {
            fs::set_permissions(&dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io(&dir))?;
        }
        Ok(SecretStore { dir })
    }

    /// The secrets directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds secret `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, SecretError> {
        if !valid_name(name) {
            return Err(SecretError::InvalidName(name.to_owned()));
        }
        Ok(self.dir.join(name))
    }

    /// Stores `value` under `name` (atomically, mode 0600), replacing any earlier value.
    pub fn put(&self, name: &str, value: &SecretString) -> Result<(), SecretError> {
        let path = self.path(name)?;
        fsx::write_atomic(&path, value.expose_secret().as_bytes(), FILE_MODE)?;
        Ok(())
    }

    /// The secret `name`, or `None` when it was never stored. A file that group or others may
    /// read is refused ([`SecretError::InsecureMode`]).
    pub fn get(&self, name: &str) -> Result<Option<SecretString>, SecretError> {
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
        let bytes = fsx::read_bounded(&path, MAX_SECRET)?;
        let text = String::from_utf8(bytes).map_err(|_| SecretError::NotUtf8(path.clone()))?;
        Ok(Some(SecretString::from(text)))
    }

    /// Whether secret `name` exists.
    pub fn contains(&self, name: &str) -> Result<bool, SecretError> {
        Ok(self.path(name)?.is_file())
    }

    /// Removes secret `name`; absent is fine.
    pub fn remove(&self, name: &str) -> Result<(), SecretError> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Names of the stored secrets, sorted (the env file and temporary files excluded).
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

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, SecretError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Io {
        path: PathBuf::from("<getrandom>"),
        source: std::io::Error::other(e.to_string()),
    })?;
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

    #[test]
    fn files_are_0600_in_a_0700_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = SecretStore::open(d.path()).unwrap();
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
        let s = SecretStore::open(&data).unwrap();
        s.put("t", &SecretString::from("v".to_owned())).unwrap();
        assert_eq!(
            (mode(&d.path().join("var")), mode(&data), mode(s.dir())),
            (0o700, 0o700, 0o700)
        );
        assert_eq!(mode(&s.path("t").unwrap()), 0o600);
    }

    #[test]
    fn a_wide_directory_is_narrowed_and_a_readable_file_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("secrets");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let s = SecretStore::open(d.path()).unwrap();
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
        let s = SecretStore::open(d.path()).unwrap();
        for v in ["one", "two", "three"] {
            s.put("t", &SecretString::from(v.to_owned())).unwrap();
        }
        assert_eq!(s.get("t").unwrap().unwrap().expose_secret(), "three");
        let files: Vec<_> = fs::read_dir(s.dir()).unwrap().collect();
        assert_eq!(files.len(), 1, "only the secret itself, no temp file");
        assert_eq!(s.names().unwrap(), vec!["t".to_owned()]);
        s.remove("t").unwrap();
        s.remove("t").unwrap();
        assert!(s.names().unwrap().is_empty());
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = SecretStore::open(d.path()).unwrap();
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
        let s = SecretStore::open(d.path()).unwrap();
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
    fn debug_never_shows_a_value() {
        let d = tempfile::tempdir().unwrap();
        let s = SecretStore::open(d.path()).unwrap();
        let v = SecretString::from("hunter2-secret".to_owned());
        s.put("pw", &v).unwrap();
        let got = s.get("pw").unwrap();
        for text in [format!("{v:?}"), format!("{got:?}"), format!("{s:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
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
