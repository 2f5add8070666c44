//! The secret store as the commands see it: `autogit secrets status` and `rotate-key`.
//!
//! The store and its master key are `drivers::secrets` (sealed files, the key outside the data
//! dir, migration at open, crash-safe rotation); this module opens the store of the settings'
//! data dir. The key location comes from the process environment (`CREDENTIALS_DIRECTORY`,
//! `AUTOGIT_KEY_FILE`), as for every other opener of the store, so that the daemon and the
//! commands always agree on it (a value in `.env` would not be seen by all of them).

use crate::Settings;
use autogit_drivers::secrets::{Rotation, SecretStore, StoreStatus};

/// The store of the settings' data dir (created 0700 when missing). Opening it seals any
/// plaintext secret left by an earlier version.
pub fn store(settings: &Settings) -> Result<SecretStore, String> {
    let data = settings.ensure_data_dir()?;
    SecretStore::open(&data).map_err(|e| e.to_string())
}

/// Where the key is, its id, and how many secrets are sealed (no value).
pub fn status(settings: &Settings) -> Result<StoreStatus, String> {
    store(settings)?.status().map_err(|e| e.to_string())
}

/// A new master key, every secret sealed with it, the old key removed.
pub fn rotate_key(settings: &Settings) -> Result<Rotation, String> {
    store(settings)?.rotate_key().map_err(|e| e.to_string())
}
