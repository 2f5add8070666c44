//! `autogit daemon` as a systemd service: the unit (`core::service`) for this executable, the
//! configuration file and the data dir, installed where systemd reads it
//! (`drivers::systemd`): as root the system unit `/etc/systemd/system/autogit.service`,
//! otherwise the user unit `~/.config/systemd/user/autogit.service` (`systemctl --user`).
//! `AUTOGIT_SYSTEMD_UNIT_DIR` puts the unit elsewhere.

use crate::Settings;
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
    let data = absolute(&settings.data_dir).display().to_string();
    autogit_core::service::systemd_unit(&exe, config.as_deref(), &data)
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
    install(&dir, "autogit.service", &unit(settings), user)
}
