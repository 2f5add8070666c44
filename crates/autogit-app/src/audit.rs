//! Scaffold with the signatures of the audit work (records in memory); replaced on merge.

use crate::{Settings, SharedClock};
use autogit_core::access::Role;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub actor: String,
    pub role: Option<Role>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub request_id: String,
    pub source: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev: String,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditError(String);

#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub after: Option<u64>,
    pub limit: usize,
    pub actor: Option<String>,
    pub action: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AuditLog {
    records: Arc<Mutex<Vec<AuditRecord>>>,
}

impl AuditLog {
    pub fn open(_settings: &Settings, _clock: SharedClock) -> Result<Self, AuditError> {
        Ok(Self {
            records: Arc::default(),
        })
    }

    pub fn append(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let mut r = self.records.lock().unwrap();
        let rec = AuditRecord {
            seq: r.len() as u64 + 1,
            at: String::new(),
            entry,
            prev: String::new(),
            hash: String::new(),
        };
        r.push(rec.clone());
        Ok(rec)
    }

    pub fn list(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| q.after.is_none_or(|a| r.seq > a))
            .filter(|r| q.actor.as_ref().is_none_or(|a| &r.entry.actor == a))
            .filter(|r| q.action.as_ref().is_none_or(|a| &r.entry.action == a))
            .take(q.limit)
            .cloned()
            .collect())
    }
}

pub fn verify(_path: &Path) -> Result<u64, AuditError> {
    Ok(0)
}
