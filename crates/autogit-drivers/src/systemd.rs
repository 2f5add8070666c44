//! Installing a systemd unit: the file written atomically (untouched when unchanged), then
//! `systemctl [--user] daemon-reload`, `enable --now` and `restart` as needed.

use crate::fsx::write_atomic;
use std::path::{Path, PathBuf};

/// Where the unit went and how systemctl was called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub unit: PathBuf,
    /// `systemctl` or `systemctl --user`.
    pub scope: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no systemd here (systemctl does not answer)")]
    NoSystemd,
    #[error("cannot write {unit}: {error}")]
    Write { unit: PathBuf, error: String },
    /// The unit is written; systemctl refused this step.
    #[error("wrote {unit} but `{scope} {step}` failed ({error}); run it yourself")]
    Systemctl {
        unit: PathBuf,
        scope: &'static str,
        step: String,
        error: String,
    },
}

pub fn has_systemctl() -> bool {
    std::process::Command::new("systemctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Writes `name` with `text` into `dir` and enables it now (`user`: the user's manager).
pub fn install(dir: &Path, name: &str, text: &str, user: bool) -> Result<Installed, ServiceError> {
    if !has_systemctl() {
        return Err(ServiceError::NoSystemd);
    }
    let unit = dir.join(name);
    let unchanged = std::fs::read_to_string(&unit).is_ok_and(|t| t == text);
    if !unchanged {
        write_atomic(&unit, text.as_bytes(), 0o644).map_err(|e| ServiceError::Write {
            unit: unit.clone(),
            error: e.to_string(),
        })?;
    }
    let scope = if user {
        "systemctl --user"
    } else {
        "systemctl"
    };
    let steps: &[&[&str]] = if unchanged {
        &[&["enable", "--now", name]]
    } else {
        &[
            &["daemon-reload"],
            &["enable", "--now", name],
            &["restart", name],
        ]
    };
    for args in steps {
        let mut c = std::process::Command::new("systemctl");
        if user {
            c.arg("--user");
        }
        let out = c.args(*args).output();
        let error = match out {
            Ok(o) if o.status.success() => continue,
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        return Err(ServiceError::Systemctl {
            unit,
            scope,
            step: args.join(" "),
            error,
        });
    }
    Ok(Installed { unit, scope })
}
