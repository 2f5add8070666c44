//! The guard controller: the prompt-injection filter (`autogit-guard`, pure) with its
//! quarantine and HTTP server (`autogit-guard-service`). Analyses store what is not clean in the
//! quarantine of the data dir (`<data>/guard/quarantine.sqlite`); reviews go through here too.

use autogit_guard::{Analysis, GuardConfig, Verdict};
use autogit_guard_service::ServiceError;
use autogit_guard_service::server::{self, ServeOptions, ServerState};
use autogit_guard_service::store::{AnalysisStatus, QuarantineRecord, QuarantineStore};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct GuardController {
    data_dir: PathBuf,
}

/// An analysis, and where it was quarantined (not clean and storing allowed).
#[derive(Debug)]
pub struct Checked {
    pub analysis: Analysis,
    pub quarantine_id: Option<String>,
    /// Why it could not be stored, when it should have been.
    pub quarantine_error: Option<String>,
    /// Why the local model was not used (then stages 1–3 ran without the classifier).
    pub model_warning: Option<String>,
}

/// A `guard scan-repo` run as kept for the dashboard and the API (`<data>/guard/scans/`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ScanRecord {
    /// `scan-<unix seconds>-<n>`.
    pub id: String,
    /// The scanned directory or file, absolute.
    pub path: String,
    /// Unix seconds.
    pub at: i64,
    pub files_scanned: usize,
    pub files_skipped: usize,
    /// All findings, counted.
    pub total: usize,
    /// The first [`SCAN_FINDINGS_KEPT`] findings.
    pub findings: Vec<autogit_guard_service::scan::FileFinding>,
}

/// How many scans are kept (the oldest go first).
pub const SCANS_KEPT: usize = 50;
/// How many findings of a scan are kept.
pub const SCAN_FINDINGS_KEPT: usize = 500;

impl GuardController {
    fn scans_dir(&self) -> PathBuf {
        self.data_dir.join("guard").join("scans")
    }

    /// Scans a repository (`guard scan-repo`) and, when autogit's data dir exists on this
    /// host, keeps the result for the dashboard and `GET /api/v1/security/scans` (written
    /// atomically; the oldest beyond [`SCANS_KEPT`] removed). Returns the report and why it
    /// was not kept, if it was not.
    pub fn scan_repo(
        &self,
        path: &Path,
        now: i64,
    ) -> Result<(autogit_guard_service::scan::ScanReport, Option<String>), ServiceError> {
        let report = autogit_guard_service::scan::scan_repo(path)?;
        if !self.data_dir.is_dir() {
            return Ok((report, None));
        }
        let kept = self.keep_scan(path, now, &report).err();
        Ok((report, kept))
    }

    fn keep_scan(
        &self,
        path: &Path,
        now: i64,
        report: &autogit_guard_service::scan::ScanReport,
    ) -> Result<(), String> {
        let dir = self.scans_dir();
        autogit_drivers::fsx::ensure_private_dir(&dir).map_err(|e| e.to_string())?;
        let existing = self.scans().map_err(|e| e.to_string())?;
        let n = existing.iter().filter(|s| s.at == now).count();
        let record = ScanRecord {
            id: format!("scan-{now}-{n}"),
            path: std::path::absolute(path)
                .unwrap_or_else(|_| path.to_owned())
                .display()
                .to_string(),
            at: now,
            files_scanned: report.files_scanned,
            files_skipped: report.files_skipped,
            total: report.findings.len(),
            findings: report
                .findings
                .iter()
                .take(SCAN_FINDINGS_KEPT)
                .cloned()
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        autogit_drivers::fsx::write_atomic(&dir.join(format!("{}.json", record.id)), &json, 0o600)
            .map_err(|e| e.to_string())?;
        for old in existing.iter().skip(SCANS_KEPT.saturating_sub(1)) {
            let _ = std::fs::remove_file(dir.join(format!("{}.json", old.id)));
        }
        Ok(())
    }

    /// The kept scans, newest first. A file that is not a scan record is skipped.
    pub fn scans(&self) -> Result<Vec<ScanRecord>, std::io::Error> {
        let mut v: Vec<ScanRecord> = match std::fs::read_dir(self.scans_dir()) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        v.sort_by(|a: &ScanRecord, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("guard").join("quarantine.sqlite")
    }

    pub fn store(&self) -> Result<QuarantineStore, ServiceError> {
        QuarantineStore::open(&self.store_path())
    }

    /// Analyses `text`; a suspicious or blocked one goes to the quarantine labelled `source`
    /// unless `quarantine` is false.
    pub fn check(
        &self,
        config: GuardConfig,
        text: &str,
        source: &str,
        quarantine: bool,
    ) -> Result<Checked, ServiceError> {
        let (guard, model_warning) = self.guard(config)?;
        let analysis = guard.analyze(text);
        let (mut quarantine_id, mut quarantine_error) = (None, None);
        if quarantine && analysis.verdict != Verdict::Clean {
            match self
                .store()
                .and_then(|mut s| s.insert(source, text, &analysis))
            {
                Ok(r) => quarantine_id = Some(r.id),
                Err(e) => quarantine_error = Some(e.to_string()),
            }
        }
        Ok(Checked {
            analysis,
            quarantine_id,
            quarantine_error,
            model_warning,
        })
    }

    pub fn list(
        &self,
        status: Option<AnalysisStatus>,
        limit: usize,
    ) -> Result<Vec<QuarantineRecord>, ServiceError> {
        self.store()?.list(status, limit)
    }

    pub fn show(&self, id: &str) -> Result<QuarantineRecord, ServiceError> {
        self.store()?.get(id)
    }

    /// Marks a record as a false positive (benign for `guard model refit`).
    pub fn release(&self, id: &str) -> Result<QuarantineRecord, ServiceError> {
        self.store()?.set_status(id, AnalysisStatus::Released)
    }

    /// Marks a record as a confirmed attack (an attack for `guard model refit`).
    pub fn confirm(&self, id: &str) -> Result<QuarantineRecord, ServiceError> {
        self.store()?.set_status(id, AnalysisStatus::Confirmed)
    }

    pub fn delete(&self, id: &str) -> Result<(), ServiceError> {
        self.store()?.delete(id)
    }

    /// Serves the filter over HTTP until interrupted (forward-auth and the proxy), storing
    /// what is not clean unless `quarantine` is false.
    pub fn serve(
        &self,
        listen: SocketAddr,
        config: GuardConfig,
        quarantine: bool,
        options: ServeOptions,
    ) -> Result<(), ServiceError> {
        let (guard, _) = self.guard(config)?;
        let store = quarantine.then(|| self.store()).transpose()?;
        let state = ServerState::new(guard, store, options)?;
        server::run_blocking(listen, state)
    }
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Bad thresholds.
    #[error("{0}")]
    Thresholds(ServiceError),
    /// The dataset cannot be read, or holds nothing.
    #[error("{0}")]
    Dataset(String),
}

impl GuardController {
    /// Detection figures on a labelled dataset (CSV or JSONL with `text` and `label`) at
    /// `threshold` (default: the suspicious threshold), and the misclassified examples.
    pub fn evaluate(
        &self,
        config: GuardConfig,
        dataset: &Path,
        threshold: Option<f64>,
    ) -> Result<
        (
            autogit_guard_service::eval::Metrics,
            Vec<autogit_guard_service::eval::Miss>,
        ),
        EvalError,
    > {
        use autogit_guard_service::eval;
        let threshold = threshold.unwrap_or(config.suspicious_threshold);
        let (guard, _) = self.guard(config).map_err(EvalError::Thresholds)?;
        let examples =
            eval::load_dataset(dataset).map_err(|e| EvalError::Dataset(e.to_string()))?;
        if examples.is_empty() {
            return Err(EvalError::Dataset("the dataset is empty".to_owned()));
        }
        Ok(eval::evaluate(&guard, &examples, threshold))
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    #[test]
    fn scans_are_kept_newest_first_and_bounded() {
        let data = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.rs"), "let x = 1; // \u{202E} evil\n").unwrap();
        std::fs::write(repo.path().join("clean.txt"), "fine\n").unwrap();
        let c = GuardController::new(data.path());
        // No data dir: nothing is kept.
        let gone = GuardController::new(&data.path().join("missing"));
        assert_eq!(gone.scan_repo(repo.path(), 1).unwrap().1, None);
        assert!(gone.scans().unwrap().is_empty());
        for t in 0..(SCANS_KEPT as i64 + 3) {
            let (report, kept) = c.scan_repo(repo.path(), 100 + t).unwrap();
            assert_eq!(kept, None);
            assert_eq!(report.files_scanned, 2);
        }
        let scans = c.scans().unwrap();
        assert_eq!(scans.len(), SCANS_KEPT);
        assert_eq!(scans[0].at, 100 + SCANS_KEPT as i64 + 2, "newest first");
        assert_eq!(scans[0].total, 1);
        assert_eq!(scans[0].findings[0].path, "a.rs");
        assert!(scans[0].path.starts_with('/'));
    }
}
