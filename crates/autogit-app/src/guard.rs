//! The guard controller: the prompt-injection filter (`autogit-guard`, pure) with its
//! quarantine and HTTP server (`autogit-guard-service`). Analyses store what is not clean in the
//! quarantine of the data dir (`<data>/guard/quarantine.sqlite`); reviews go through here too.

use autogit_guard::{Analysis, Guard, GuardConfig, Verdict};
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
}

impl GuardController {
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
        let guard = Guard::new(config)?;
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

    /// Marks a record as a false positive.
    pub fn release(&self, id: &str) -> Result<QuarantineRecord, ServiceError> {
        self.store()?.set_status(id, AnalysisStatus::Released)
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
        let guard = Guard::new(config)?;
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
        let guard = Guard::new(config).map_err(|e| EvalError::Thresholds(e.into()))?;
        let examples =
            eval::load_dataset(dataset).map_err(|e| EvalError::Dataset(e.to_string()))?;
        if examples.is_empty() {
            return Err(EvalError::Dataset("the dataset is empty".to_owned()));
        }
        Ok(eval::evaluate(&guard, &examples, threshold))
    }
}
