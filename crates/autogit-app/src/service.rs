//! `autogit daemon` as a systemd service: the unit (`core::service`) for this executable, the
//! configuration file and the data dir, installed where systemd reads it
//! (`drivers::systemd`): as root the system unit `/etc/systemd/system/autogit.service`,
//! otherwise the user unit `~/.config/systemd/user/autogit.service` (`systemctl --user`).
//! `AUTOGIT_SYSTEMD_UNIT_DIR` puts the unit elsewhere.
//!
//! The secrets' master key file (`drivers::secrets::KeyLocation`: `AUTOGIT_KEY_FILE`, else
//! `<data dir>.key`) reaches the daemon as the systemd credential `autogit.key`
//! (`LoadCredential=`), so the service reads it from `$CREDENTIALS_DIRECTORY` and the key
//! needs no write access outside the data dir. `ensure` creates the key first: systemd refuses
//! to start a unit whose credential file is missing.

use crate::Settings;
use autogit_drivers::secrets::{KeyLocation, KeyOrigin, SecretStore};
use autogit_drivers::systemd::{Installed, ServiceError, install};
use std::path::{Path, PathBuf};

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    })
}

/// The unit that runs this executable's `daemon` with these settings' files.
pub fn unit(settings: &Settings) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/autogit".into());
    let config = settings
        .config_path
        .as_ref()
        .map(|p| absolute(p).display().to_string());
    let data = absolute(&settings.data_dir);
    let key = key_file(&data).display().to_string();
    let data = data.display().to_string();
    autogit_core::service::systemd_unit(&exe, config.as_deref(), &data, Some(&key))
}

/// The key file the unit passes as a credential: where the commands find the key
/// (`AUTOGIT_KEY_FILE`, else `<data dir>.key`), never a credential directory of the caller.
pub fn key_file(data: &Path) -> PathBuf {
    let lookup = |k: &str| {
        if k == "CREDENTIALS_DIRECTORY" {
            None
        } else {
            std::env::var(k).ok()
        }
    };
    KeyLocation::resolve(data, &lookup).path
}

/// Writes the unit (unchanged: left alone) and enables it now.
pub fn ensure(settings: &Settings) -> Result<Installed, ServiceError> {
    let user = autogit_drivers::host::euid() != Some(0);
    let dir = settings
        .setting("AUTOGIT_SYSTEMD_UNIT_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            if user {
                settings
                    .setting("HOME")
                    .map(|h| PathBuf::from(h).join(".config/systemd/user"))
            } else {
                Some(PathBuf::from("/etc/systemd/system"))
            }
        })
        .ok_or(ServiceError::NoSystemd)?;
    // The credential's file must exist before the unit starts.
    let key = key_file(&absolute(&settings.data_dir));
    let key_error = |error: String| ServiceError::Write {
        unit: key.clone(),
        error,
    };
    let data = settings.ensure_data_dir().map_err(key_error)?;
    let location = KeyLocation {
        path: key.clone(),
        origin: KeyOrigin::Env,
    };
    SecretStore::open_with_key(&data, location)
        .and_then(|s| s.ensure_key())
        .map_err(|e| key_error(e.to_string()))?;
    install(&dir, "autogit.service", &unit(settings), user)
}
