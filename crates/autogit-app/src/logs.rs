//! The log controller: follows the platform's container logs through the engine API,
//! enriches and scrubs each line (`core::logs`), stores it (`drivers::logstore`), keeps the
//! store within its retention, and answers searches. The daemon runs [`LogController::pass`]
//! every second; `autogit serve` and `autogit logs search` call [`LogController::search`].

use crate::{Settings, SharedClock};
use autogit_core::logs::{
    Query, QueryError, ScrubPatterns, SearchMode, enrich_with, parse_query, parse_range, template,
};
use autogit_drivers::embed::{EmbedError, Embedder};
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::logstore::{Hit, Line, LogStore, LogStoreError, Retention};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the daemon reads new lines.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// Lines read from a container seen for the first time (its older history is not indexed).
pub const FIRST_TAIL: usize = 1000;
/// Retention is applied every this many passes.
const TRIM_EVERY: u64 = 300;
/// Lines given their templates per embed pass (one transaction).
const TEMPLATE_BATCH: usize = 5_000;
/// Templates embedded per embed pass (seconds of one core; the store is not held meanwhile).
const EMBED_BATCH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("time range `{0}`: give a number and a unit (90s, 15m, 24h, 7d, 2w), at most a year")]
    Range(String),
    #[error(transparent)]
    Store(#[from] LogStoreError),
    #[error("the engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Loki(#[from] autogit_drivers::loki::LokiError),
    #[error(transparent)]
    Meili(#[from] autogit_drivers::meili::MeiliError),
    #[error(
        "{0}: fix it in autogit.yml (`autogit validate` shows it); no line is stored until then"
    )]
    Scrub(String),
    #[error(
        "mode `{0}` needs semantic search, which is off: set logs.semantic.enabled: true in autogit.yml (docs/logs.md), or search with mode lexical"
    )]
    SemanticOff(&'static str),
    #[error(
        "logs.semantic.enabled is true but no model directory is given: set logs.semantic.model_dir in autogit.yml or AUTOGIT_EMBED_MODEL to the directory of all-MiniLM-L6-v2 (docs/logs.md)"
    )]
    NoModel,
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

/// What a search returns: the hits and the parsed query (for display).
#[derive(Debug)]
pub struct Found {
    pub query: Query,
    /// How the hits were ranked.
    pub mode: SearchMode,
    pub hits: Vec<Hit>,
    /// Whether any line has been stored yet (a fresh install has none).
    pub indexed: u64,
}

pub struct LogController {
    settings: Arc<Settings>,
    clock: SharedClock,
    store: Mutex<Option<LogStore>>,
    passes: std::sync::atomic::AtomicU64,
    retention: Retention,
    /// `logs.scrub`, compiled once; an error stores nothing (fails closed).
    patterns: Result<ScrubPatterns, String>,
    /// The embedding model, loaded at its first use (`logs.semantic.enabled`).
    embedder: std::sync::OnceLock<Result<Arc<Embedder>, String>>,
}

impl std::fmt::Debug for LogController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogController")
            .field("db", &self.db())
            .finish_non_exhaustive()
    }
}

impl LogController {
    pub fn new(settings: Arc<Settings>, clock: SharedClock) -> Self {
        Self {
            clock,
            store: Mutex::new(None),
            passes: std::sync::atomic::AtomicU64::new(0),
            retention: Retention {
                max_age: settings.config.logs.retention.0,
                max_lines: settings.config.logs.max_lines,
            },
            patterns: ScrubPatterns::compile(&settings.config.logs.scrub),
            settings,
            embedder: std::sync::OnceLock::new(),
        }
    }

    /// Whether semantic search is on (`logs.semantic.enabled`).
    pub fn semantic(&self) -> bool {
        self.settings.config.logs.semantic.enabled
    }

    /// The embedding model (`AUTOGIT_EMBED_MODEL`, else `logs.semantic.model_dir`), loaded
    /// once; a model that cannot be loaded is reported the same way at every use.
    pub fn embedder(&self) -> Result<Arc<Embedder>, LogError> {
        let env = std::env::var(autogit_drivers::embed::ENV).ok();
        let configured = self.settings.config.logs.semantic.model_dir.as_deref();
        let dir = Embedder::locate(env.as_deref(), configured.map(std::path::Path::new))
            .ok_or(LogError::NoModel)?;
        self.embedder
            .get_or_init(|| {
                Embedder::load(&dir)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| LogError::Embed(EmbedError::Run(e)))
    }

    /// The embed pass, off the ingest path (the daemon runs it on a blocking thread of its
    /// own): gives the lines stored since the last pass their templates, then embeds up to
    /// [`EMBED_BATCH`] templates that have no vector yet. The store is not held while the
    /// model runs. Returns how many templates were embedded (0: nothing left; off: 0).
    pub fn embed_pass(&self) -> Result<usize, LogError> {
        if !self.semantic() || !self.db().exists() {
            return Ok(0);
        }
        let embedder = self.embedder()?;
        loop {
            let lines = self.with_store(|s| s.lines_to_template(TEMPLATE_BATCH))?;
            if lines.is_empty() {
                break;
            }
            let keyed: Vec<(i64, String)> = lines
                .into_iter()
                .map(|(id, m)| (id, template(&m)))
                .collect();
            self.with_store(|s| s.assign_templates(&keyed))?;
            if keyed.len() < TEMPLATE_BATCH {
                break;
            }
        }
        let todo = self.with_store(|s| s.templates_to_embed(EMBED_BATCH))?;
        if todo.is_empty() {
            return Ok(0);
        }
        let texts: Vec<&str> = todo.iter().map(|t| t.1.as_str()).collect();
        let vectors = embedder.embed(&texts)?;
        let rows: Vec<(i64, Vec<f32>)> = todo.iter().map(|t| t.0).zip(vectors).collect();
        self.with_store(|s| s.set_vectors(&rows))?;
        Ok(rows.len())
    }

    /// What the store keeps (`logs.retention`, `logs.max_lines`).
    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn patterns(&self) -> Result<&ScrubPatterns, LogError> {
        self.patterns
            .as_ref()
            .map_err(|e| LogError::Scrub(e.clone()))
    }

    /// `<data dir>/logs.db`.
    pub fn db(&self) -> PathBuf {
        self.settings.data_dir.join("logs.db")
    }

    /// Values the scrubber replaces wherever they appear: the `.env` values of secret
    /// settings (tokens, passwords, keys).
    fn secrets(&self) -> Vec<String> {
        self.settings
            .values
            .iter()
            .filter(|(k, v)| {
                let k = k.to_ascii_uppercase();
                v.len() >= 8
                    && ["TOKEN", "PASSWORD", "SECRET", "KEY"]
                        .iter()
                        .any(|w| k.contains(w))
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut LogStore) -> Result<T, LogStoreError>,
    ) -> Result<T, LogStoreError> {
        let mut g = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(LogStore::open(&self.db())?);
        }
        let r = f(g.as_mut().expect("opened above"));
        if r.is_err() {
            *g = None;
        }
        r
    }

    /// Reads what each of the platform's containers wrote since the last pass and stores it,
    /// enriched and scrubbed. Returns how many lines were stored.
    pub async fn follow_pass<E: ContainerEngine>(&self, engine: &E) -> Result<usize, LogError> {
        let project = &self.settings.config.platform.project;
        let containers = engine
            .list(project)
            .await
            .map_err(|e| LogError::Engine(e.to_string()))?;
        let patterns = self.patterns()?;
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let mut stored = 0;
        for c in &containers {
            let cursor = self.with_store(|s| s.cursor(&c.id))?;
            let lines = match engine.logs_after(&c.id, cursor, Some(FIRST_TAIL)).await {
                Ok(l) => l,
                // A container removed between the list and the read.
                Err(_) => continue,
            };
            let Some(last) = lines.last().map(|l| l.0) else {
                continue;
            };
            let batch: Vec<Line> = lines
                .iter()
                .map(|(at, text)| Line {
                    at_ns: *at,
                    service: c.service.clone(),
                    enriched: enrich_with(text, &secrets, patterns),
                })
                .collect();
            stored += batch.len();
            self.with_store(|s| {
                s.insert(&batch)?;
                s.set_cursor(&c.id, last)
            })?;
        }
        stored += self.feed_pass()?;
        let n = self
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(TRIM_EVERY) {
            let now_ns = (self.clock.now() as i64).saturating_mul(1_000_000_000);
            let retention = self.retention;
            self.with_store(|s| s.trim(retention, now_ns))?;
        }
        Ok(stored)
    }

    /// autogit's own events and state transitions (the state store's feed, every process's)
    /// as lines of the service `autogit`, with the request id of the API request that
    /// started the work: `request:<X-Request-Id>` finds the request's task and what the
    /// controllers did for it. Returns how many lines were stored.
    pub fn feed_pass(&self) -> Result<usize, LogError> {
        let db = self.settings.state_db();
        if !db.exists() {
            return Ok(0);
        }
        let state = autogit_drivers::state::Store::open(&db)
            .map_err(|e| LogError::Engine(format!("the state store: {e}")))?;
        let cursor = self.with_store(|s| {
            Ok(s.cursor("autogit-feed-events")?
                .zip(s.cursor("autogit-feed-transitions")?))
        })?;
        let (rows, next) = state
            .feed_after(Some(cursor.unwrap_or((0, 0))), 1000)
            .map_err(|e| LogError::Engine(format!("the state store: {e}")))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let patterns = self.patterns()?;
        let secrets = self.secrets();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let mut seq = 0i64;
        let lines: Vec<Line> = rows
            .into_iter()
            .map(|(_, row)| {
                seq += 1;
                let (at, text, level, request) = feed_line(row);
                let mut enriched = enrich_with(&text, &secrets, patterns);
                enriched.level = Some(level);
                if request.is_some() {
                    enriched.request_id = request;
                }
                // Rows of the same second keep their order.
                Line {
                    at_ns: at.saturating_mul(1_000_000_000) + seq,
                    service: "autogit".into(),
                    enriched,
                }
            })
            .collect();
        let n = lines.len();
        self.with_store(|s| {
            s.insert(&lines)?;
            s.set_cursor("autogit-feed-events", next.0)?;
            s.set_cursor("autogit-feed-transitions", next.1)
        })?;
        Ok(n)
    }

    /// Where the lines are pushed besides the store: `LOKI_URL`, else the platform's Loki on
    /// this host's published port when it is enabled; `None`: nowhere.
    pub fn loki_url(&self) -> Option<String> {
        if let Some(u) = &self.settings.platform.loki_url {
            return Some(u.clone());
        }
        let plan = crate::plan::quiet(&self.settings).ok()?;
        plan.local()
            .find(|s| s.name == "loki")
            .and_then(|s| s.ports.first())
            .map(|p| format!("http://127.0.0.1:{}", p.host))
    }

    /// Pushes the stored lines Loki has not had yet (at most 5000 per call; the cursor moves
    /// only when Loki accepted them, so a Loki that is down gets them later, none lost).
    /// Returns how many were pushed.
    pub async fn loki_pass(&self, client: &reqwest::Client, url: &str) -> Result<usize, LogError> {
        let after = self.with_store(|s| s.cursor("loki"))?.unwrap_or(0);
        let rows = self.with_store(|s| s.lines_after(after, 5000))?;
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(0);
        };
        let entries: Vec<autogit_drivers::loki::Entry> = rows.into_iter().map(|(_, e)| e).collect();
        autogit_drivers::loki::push(client, url, &entries).await?;
        self.with_store(|s| s.set_cursor("loki", last))?;
        Ok(entries.len())
    }

    /// Where the lines are also pushed as documents: `MEILISEARCH_URL`, else the platform's
    /// Meilisearch on this host's published port when it is enabled; `None`: nowhere.
    pub fn meilisearch_url(&self) -> Option<String> {
        if let Some(u) = &self.settings.platform.meilisearch_url {
            return Some(u.clone());
        }
        let plan = crate::plan::quiet(&self.settings).ok()?;
        plan.local()
            .find(|s| s.name == "meilisearch")
            .and_then(|s| s.ports.first())
            .map(|p| format!("http://127.0.0.1:{}", p.host))
    }

    /// Pushes the stored lines Meilisearch has not had yet (at most 5000 per call, keyed by
    /// row so a repeat replaces; the cursor moves only when Meilisearch accepted them with
    /// its 202 and a task). Returns how many were pushed.
    pub async fn meilisearch_pass(
        &self,
        client: &reqwest::Client,
        url: &str,
    ) -> Result<usize, LogError> {
        let after = self.with_store(|s| s.cursor("meilisearch"))?.unwrap_or(0);
        let docs = self.with_store(|s| s.documents_after(after, 5000))?;
        let Some(last) = docs.last().map(|d| d.id) else {
            return Ok(0);
        };
        let key = self
            .settings
            .values
            .get("MEILI_MASTER_KEY")
            .filter(|k| !k.is_empty())
            .map(|k| secrecy::SecretString::from(k.clone()));
        autogit_drivers::meili::push(client, url, key.as_ref(), &docs).await?;
        self.with_store(|s| s.set_cursor("meilisearch", last))?;
        Ok(docs.len())
    }

    /// Searches the store: `q` in the query language of `core::logs`, `range` like `24h`
    /// (default: everything kept).
    pub fn search(&self, q: &str, range: Option<&str>, limit: usize) -> Result<Found, LogError> {
        self.search_mode(q, range, limit, None)
    }

    /// [`Self::search`] ranked as `mode` says; `None`: hybrid when semantic search is on,
    /// else lexical. Semantic and hybrid need `logs.semantic.enabled`; lines not embedded yet
    /// are found by their words only.
    pub fn search_mode(
        &self,
        q: &str,
        range: Option<&str>,
        limit: usize,
        mode: Option<SearchMode>,
    ) -> Result<Found, LogError> {
        let query = parse_query(q)?;
        let mode = match mode {
            Some(m) if m.semantic() && !self.semantic() => {
                return Err(LogError::SemanticOff(m.as_str()));
            }
            Some(m) => m,
            None if self.semantic() => SearchMode::Hybrid,
            None => SearchMode::Lexical,
        };
        let now_ns = (self.clock.now() as i64 + 1).saturating_mul(1_000_000_000);
        let from_ns = match range.filter(|r| !r.is_empty()) {
            Some(r) => {
                let secs = parse_range(r).ok_or_else(|| LogError::Range(r.to_owned()))?;
                now_ns - (secs as i64).saturating_mul(1_000_000_000)
            }
            None => 0,
        };
        if !self.db().exists() {
            return Ok(Found {
                query,
                mode,
                hits: Vec::new(),
                indexed: 0,
            });
        }
        let vector = match query.text() {
            Some(text) if mode.semantic() => {
                let v = self.embedder()?.embed(&[&text])?;
                v.into_iter().next()
            }
            _ => None,
        };
        let (hits, indexed) = self.with_store(|s| {
            let hits = s.search_mode(&query, from_ns, now_ns, limit, mode, vector.as_deref())?;
            Ok((hits, s.count()?))
        })?;
        Ok(Found {
            query,
            mode,
            hits,
            indexed,
        })
    }
}

/// One feed row as a log line: (unix seconds, text, level, request id).
fn feed_line(
    row: autogit_drivers::state::FeedRow,
) -> (i64, String, autogit_core::logs::Level, Option<String>) {
    use autogit_core::logs::Level;
    use autogit_drivers::state::FeedRow;
    match row {
        FeedRow::Event {
            at, kind, detail, ..
        } => {
            let value: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            let parsed: Option<crate::Event> = serde_json::from_value(value.clone()).ok();
            let (summary, level) = parsed.as_ref().map_or_else(
                || (String::new(), Level::Info),
                |e| {
                    let level = match e.severity() {
                        crate::event::Severity::Error => Level::Error,
                        crate::event::Severity::Warning => Level::Warn,
                        crate::event::Severity::Info => Level::Info,
                    };
                    (e.summary(), level)
                },
            );
            // The API's background work carries its request id as the task's `id`.
            let request = value
                .get("request_id")
                .or_else(|| kind.starts_with("task_").then(|| value.get("id")).flatten())
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            (at, format!("{kind}: {summary}"), level, request)
        }
        FeedRow::Transition(t) => {
            let level = match t.to.as_str() {
                "HEALTHY" | "DEPLOYING" | "STARTING" => Level::Info,
                "FAILED" => Level::Error,
                _ => Level::Warn,
            };
            (
                t.at,
                format!(
                    "service_state_changed: {} {} -> {}: {}",
                    t.service,
                    t.from.as_deref().unwrap_or("-"),
                    t.to,
                    t.reason
                ),
                level,
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_drivers::engine::memory::MemoryEngine;

    fn settings(dir: &std::path::Path) -> Arc<Settings> {
        let loaded = autogit_core::load::load(&autogit_core::load::LoadInput::default());
        let mut s = Settings::new(
            loaded.config,
            autogit_core::platform::PlatformEnv::default(),
            dir.to_owned(),
        );
        s.values.insert(
            "GITLAB_ROOT_PASSWORD".into(),
            "correct-horse-battery".into(),
        );
        Arc::new(s)
    }

    #[tokio::test]
    async fn follows_new_lines_once_scrubbed_and_searchable() {
        let d = tempfile::tempdir().unwrap();
        let settings = settings(d.path());
        let clock: SharedClock = Arc::new(crate::clock::ManualClock::at(2_000));
        let c = LogController::new(settings.clone(), clock);
        let engine = MemoryEngine::new(&[]);
        let project = settings.config.platform.project.clone();
        let id = {
            let mut g = engine.lock();
            let id = "c1".to_owned();
            let spec = autogit_core::container::ContainerSpec {
                name: format!("{project}-gitlab"),
                service: "gitlab".into(),
                image: "gitlab/gitlab-ce:17.0.0-ce.0".into(),
                command: Vec::new(),
                env: Default::default(),
                secret_keys: Vec::new(),
                ports: Vec::new(),
                mounts: Vec::new(),
                nano_cpus: 0,
                memory_bytes: 0,
                shm_size_bytes: None,
                network: project.clone(),
                aliases: Vec::new(),
                hostname: None,
                healthcheck: None,
                labels: [(
                    autogit_core::container::labels::MANAGED.to_owned(),
                    project.clone(),
                )]
                .into(),
                restart_policy: "no".into(),
            };
            g.containers.insert(
                id.clone(),
                autogit_drivers::engine::memory::Container {
                    id: id.clone(),
                    spec,
                    state: autogit_drivers::engine::RunState::Running,
                    health: autogit_drivers::engine::Health::None,
                    starts: 1,
                },
            );
            g.logs.insert(
                id.clone(),
                vec![
                    (1_000_000_000_000, "Started GET /users/sign_in".into()),
                    (
                        1_000_000_000_100,
                        "ERROR NoMethodError: undefined method for bob@example.com root password correct-horse-battery".into(),
                    ),
                ],
            );
            id
        };
        assert_eq!(c.follow_pass(&engine).await.unwrap(), 2);
        // Nothing new: nothing stored twice.
        assert_eq!(c.follow_pass(&engine).await.unwrap(), 0);
        engine.lock().logs.get_mut(&id).unwrap().push((
            1_000_000_000_200,
            "Completed 500 Internal Server Error request_id=abc".into(),
        ));
        assert_eq!(c.follow_pass(&engine).await.unwrap(), 1);
        let f = c.search("level:error", None, 10).unwrap();
        assert_eq!(f.indexed, 3);
        assert_eq!(f.hits.len(), 2, "{:?}", f.hits);
        let f = c
            .search("class:NoMethodError service:gitlab", Some("24h"), 10)
            .unwrap();
        assert_eq!(f.hits.len(), 1);
        let m = &f.hits[0].message;
        assert!(
            !m.contains("bob@example.com") && !m.contains("correct-horse-battery"),
            "{m}"
        );
        assert!(m.contains("<email>") && m.contains("<redacted>"), "{m}");
        assert_eq!(c.search("request:abc", None, 10).unwrap().hits.len(), 1);
        assert!(matches!(
            c.search("x", Some("soon"), 10),
            Err(LogError::Range(_))
        ));
        assert!(matches!(c.search("  ", None, 10), Err(LogError::Query(_))));
    }
}
