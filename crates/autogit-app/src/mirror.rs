//! The mirror controller: which mirrors exist (core: configured sources, accounts listed over
//! the GitHub and GitLab APIs, filters, target paths), where they push (the URL template or
//! the local GitLab's projects, created when missing), the git driver's sync, the history in
//! SQLite, `prune_projects`, and the schedule the daemon follows.

use crate::{Bus, Event, Settings, SharedClock};
use autogit_core::mirror::{Listed, Planned, expand_target, from_listing, planned, redact_url};
use autogit_drivers::gitlab::bootstrap::account_token_secret;
use autogit_drivers::gitlab::client::GitLabClient;
use autogit_drivers::mirror::github::{self, GitHub, Owner};
use autogit_drivers::mirror::{
    Event as Progress, Job, MirrorError, Options, Outcome, Report, sync_all,
};
use autogit_drivers::secrets::{SecretStore, SecretString};
use autogit_drivers::state::{MirrorRunEnd, MirrorStatus, MirrorTarget, Store};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MirrorControlError {
    #[error("no configured mirror is named `{0}`; `autogit mirror list` shows their names")]
    UnknownMirror(String),
    #[error("{0}")]
    State(String),
    #[error("mirroring.schedule: {0}")]
    Schedule(String),
}

/// What one sync did.
#[derive(Debug)]
pub struct SyncReport {
    /// One per mirror, in order: synced, up to date or failed (with the reason).
    pub reports: Vec<Report>,
    pub failed: usize,
    /// GitLab projects deleted by `prune_projects`.
    pub pruned: Vec<String>,
    /// Why pruning was skipped or failed, if it was.
    pub prune_error: Option<String>,
    pub elapsed: Duration,
}

/// A mirror with its history, for `mirror list` and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorRow {
    pub name: String,
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    pub token_env: Option<String>,
    pub problem: Option<String>,
    pub last_result: Option<String>,
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    pub lag_s: Option<i64>,
    /// Bytes of Git LFS objects in the mirror's cache; `None` when it has none.
    pub lfs_bytes: Option<u64>,
}

/// The size of the files under `dir` (at most 1 000 000 entries are looked at); `None` when
/// there is no such directory or nothing in it.
fn dir_bytes(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 1_000_000 {
                return Some(total);
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    (total > 0).then_some(total)
}

#[derive(Debug)]
pub struct MirrorController {
    settings: Arc<Settings>,
    bus: Bus,
    clock: SharedClock,
}

/// A mirror that cannot be synced, as a failed report.
fn failed(p: &Planned, target: &str, why: String) -> Report {
    Report {
        name: p.name.clone(),
        source: redact_url(&p.source),
        target: redact_url(target),
        attempts: 0,
        elapsed: Duration::ZERO,
        result: Err(MirrorError::Invalid(why)),
    }
}

impl MirrorController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            settings,
            bus,
            clock,
        }
    }

    /// Whether there is anything to mirror on a schedule.
    pub fn scheduled(&self) -> bool {
        let m = &self.settings.config.mirroring;
        let s = &m.sources;
        m.enabled && !(s.github.is_empty() && s.gitlab.is_empty() && s.git.is_empty())
    }

    /// Syncs the configured mirrors (all, or those named in `only` by name, source or target
    /// path). `progress` sees the driver's progress on the caller's task. When `cancel`
    /// resolves first, the runs are recorded as interrupted and `Ok(None)` is returned (git
    /// children are killed; fetches and pushes are atomic, so nothing is half-written).
    #[tracing::instrument(name = "mirror.sync", skip_all, fields(only = only.len()))]
    pub async fn sync(
        &self,
        only: &[String],
        mut progress: impl FnMut(Progress<'_>),
        cancel: impl Future<Output = ()>,
    ) -> Result<Option<SyncReport>, MirrorControlError> {
        let m = &self.settings.config.mirroring;
        let mut all = self.resolve_accounts(planned(m)).await;
        let started = Instant::now();
        let empty = || SyncReport {
            reports: Vec::new(),
            failed: 0,
            pruned: Vec::new(),
            prune_error: None,
            elapsed: started.elapsed(),
        };
        if all.is_empty() {
            if let Some(r) = only.first() {
                return Err(MirrorControlError::UnknownMirror(r.clone()));
            }
            return Ok(Some(empty()));
        }
        let data = self
            .settings
            .ensure_data_dir()
            .map_err(MirrorControlError::State)?;
        let store = Store::open(&data.join("state.db"))
            .map_err(|e| MirrorControlError::State(e.to_string()))?;
        // Targets stay where they were first recorded, whatever failed to list this time.
        self.stable_targets(&store, &mut all)?;
        let matches =
            |p: &Planned, r: &String| &p.name == r || &p.source == r || &p.target.full() == r;
        for r in only {
            if !all.iter().any(|p| matches(p, r)) {
                return Err(MirrorControlError::UnknownMirror(r.clone()));
            }
        }
        if !only.is_empty() {
            all.retain(|p| only.iter().any(|r| matches(p, r)));
        }

        // Targets: the URL template, or the local GitLab's projects (created when missing).
        let mut problems: Vec<Report> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        let mut wanted: Vec<String> = all.iter().map(|p| p.target.full()).collect();
        let gitlab = m
            .target_url_template
            .is_none()
            .then(|| self.gitlab_client(&data));
        for p in &all {
            let placeholder = p.target.full();
            if let Some(why) = &p.problem {
                problems.push(failed(p, &placeholder, why.clone()));
                continue;
            }
            let source_token = match self.source_token(&p.token_env) {
                Ok(t) => t,
                Err(why) => {
                    problems.push(failed(p, &placeholder, why));
                    continue;
                }
            };
            let (target, target_token) = match (&m.target_url_template, &gitlab) {
                (Some(t), _) => (expand_target(t, &p.target), None),
                (None, Some(Ok((client, token)))) => {
                    match autogit_drivers::mirror::ensure_project(client, &p.target).await {
                        Ok(project) => {
                            // A project renamed or moved in GitLab (found through its old
                            // path's redirect) is pushed where it is now, and recorded there.
                            let path = self.follow_move(&store, p, &project.path_with_namespace);
                            wanted.push(path.clone());
                            (
                                format!(
                                    "{}/{}.git",
                                    self.settings
                                        .config
                                        .gitlab
                                        .external_url
                                        .trim_end_matches('/'),
                                    path
                                ),
                                Some(token.clone()),
                            )
                        }
                        Err(e) => {
                            problems.push(failed(
                                p,
                                &placeholder,
                                format!("cannot find or create GitLab project {}: {e}", p.target),
                            ));
                            continue;
                        }
                    }
                }
                (None, Some(Err(why))) => {
                    problems.push(failed(p, &placeholder, why.clone()));
                    continue;
                }
                (None, None) => unreachable!("a client is made when there is no template"),
            };
            jobs.push(Job {
                name: p.name.clone(),
                source: p.source.clone(),
                target,
                source_token,
                target_token,
            });
        }

        let mut opts = Options::new(data.join("mirrors"));
        if let Some(n) = m.parallelism {
            opts.parallel = n as usize;
        }
        opts.timeout = m.timeout.0;
        opts.retries = m.retries;
        opts.allow_private = m.allow_private;
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        let bus = self.bus.clone();
        let sync = sync_all(jobs, &opts, Some(&store), |e| {
            if let Progress::Finished(r) = &e {
                bus.publish(report_event(r));
            }
            progress(e);
        });
        let done = tokio::select! {
            r = sync => Some(r),
            () = cancel => None,
        };
        let Some(mut reports) = done else {
            let _ = store.mirror_runs_abort(&names, self.clock.now(), "interrupted");
            return Ok(None);
        };
        for r in &problems {
            if let Ok(id) = store.mirror_run_start(&r.name, &r.source, &r.target, self.clock.now())
            {
                let err = r.result.as_ref().err().map(ToString::to_string);
                let _ = store.mirror_run_end(
                    id,
                    self.clock.now(),
                    &MirrorRunEnd {
                        result: "failed",
                        changed: 0,
                        deleted: 0,
                        error: err.as_deref(),
                    },
                );
            }
            self.bus.publish(report_event(r));
        }
        let complete = problems.is_empty() && only.is_empty();
        reports.extend(problems);
        let failed = reports.iter().filter(|r| r.result.is_err()).count();
        // prune_projects: only against the local GitLab, only after a complete listing.
        let (mut pruned, mut prune_error) = (Vec::new(), None);
        if m.prune_projects
            && let Some(Ok((client, _))) = &gitlab
        {
            match self.prune(client, &store, &wanted, complete).await {
                Ok(done) => pruned = done,
                Err(e) => prune_error = Some(format!("prune_projects: {e}")),
            }
        }
        Ok(Some(SyncReport {
            reports,
            failed,
            pruned,
            prune_error,
            elapsed: started.elapsed(),
        }))
    }

    async fn prune(
        &self,
        client: &GitLabClient,
        store: &Store,
        wanted: &[String],
        complete: bool,
    ) -> Result<Vec<String>, String> {
        let m = &self.settings.config.mirroring;
        let existing = client
            .group_projects(&m.namespace)
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = existing
            .iter()
            .map(|p| p.path_with_namespace.clone())
            .collect();
        let gone = autogit_core::mirror::prune_candidates(&m.namespace, &names, wanted, complete)?;
        let mut done = Vec::new();
        for path in gone {
            if let Some(p) = existing.iter().find(|p| p.path_with_namespace == path) {
                client
                    .delete_project(p.id)
                    .await
                    .map_err(|e| format!("deleting {path}: {e}"))?;
                // The target is gone: its name is free again for whatever source comes next.
                let _ = store.forget_mirror_target(&path);
                self.bus.publish(Event::MirrorPruned {
                    project: path.clone(),
                });
                done.push(path);
            }
        }
        Ok(done)
    }

    /// Gives each mirror its recorded target ([`autogit_core::mirror::assign_targets`]) and
    /// records the targets of sources seen for the first time. A record the store refuses
    /// (another process recorded that target for another source meanwhile) fails that mirror.
    fn stable_targets(&self, store: &Store, all: &mut [Planned]) -> Result<(), MirrorControlError> {
        let m = &self.settings.config.mirroring;
        let recorded: std::collections::BTreeMap<String, String> = store
            .mirror_targets()
            .map_err(|e| MirrorControlError::State(e.to_string()))?
            .into_iter()
            .map(|t| (t.source, t.target))
            .collect();
        let fresh = autogit_core::mirror::assign_targets(all, &m.namespace, &recorded);
        for (source, target) in fresh {
            if let Err(e) = store.record_mirror_target(&source, &target, self.clock.now()) {
                for p in all.iter_mut().filter(|p| redact_url(&p.source) == source) {
                    p.problem = Some(format!("cannot record {target} as its target: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Where `p` is pushed in the local GitLab: `found` (the project's path now, which
    /// differs from the planned one after a rename), recorded as the source's target.
    fn follow_move(&self, store: &Store, p: &Planned, found: &str) -> String {
        if found != p.target.full() {
            let _ = store.record_mirror_target(&redact_url(&p.source), found, self.clock.now());
        }
        found.to_owned()
    }

    /// The value of a source's `token_env`: `Ok(None)` without one, `Err` when it is not set.
    fn source_token(&self, token_env: &Option<String>) -> Result<Option<SecretString>, String> {
        match token_env {
            Some(k) => match self.settings.value(k) {
                Some(v) => Ok(Some(SecretString::from(v))),
                None => Err(format!(
                    "`{k}` (its token_env) is not set in the environment or .env"
                )),
            },
            None => Ok(None),
        }
    }

    /// Replaces each GitHub or GitLab account with its repositories (listed over the API,
    /// filtered); an account that cannot be listed stays, failed, with the reason.
    async fn resolve_accounts(&self, all: Vec<Planned>) -> Vec<Planned> {
        let m = &self.settings.config.mirroring;
        let mut out = Vec::new();
        let mut github = m.sources.github.iter();
        let mut gitlab = m.sources.gitlab.iter();
        for mut p in all {
            let listed = match p.kind {
                "gitlab" => {
                    let Some(src) = gitlab.next() else { continue };
                    let listed = match self.source_token(&src.token_env) {
                        Ok(token) => list_gitlab(src, token).await,
                        Err(why) => Err(why),
                    };
                    listed.map(|repos| (repos, &src.filters))
                }
                "github" => {
                    let Some(src) = github.next() else { continue };
                    let owner = match (&src.username, &src.organization) {
                        (Some(u), _) => Owner::User(u.clone()),
                        (None, Some(o)) => Owner::Org(o.clone()),
                        (None, None) => continue,
                    };
                    let listed = match self.source_token(&src.token_env) {
                        Ok(token) => {
                            list_github(src.api_url.as_deref(), token, &owner, &src.filters).await
                        }
                        Err(why) => Err(why),
                    };
                    listed.map(|repos| (repos, &src.filters))
                }
                _ => {
                    out.push(p);
                    continue;
                }
            };
            match listed {
                Ok((repos, filters)) => out.extend(from_listing(
                    &p,
                    &m.namespace,
                    filters,
                    &repos,
                    m.allow_private,
                )),
                Err(why) => {
                    p.problem = Some(why);
                    out.push(p);
                }
            }
        }
        out
    }

    /// The client for the local GitLab with the `mirror` service account's token, or why not.
    fn gitlab_client(
        &self,
        data: &std::path::Path,
    ) -> Result<(GitLabClient, SecretString), String> {
        let secret = account_token_secret("mirror");
        let token = SecretStore::open(data)
            .and_then(|s| s.get(&secret))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no token for the `mirror` service account in {}/secrets (GitLab bootstrap creates it: run `autogit install`), or set `mirroring.target_url_template`",
                    data.display()
                )
            })?;
        let client = GitLabClient::new(
            &self.settings.config.gitlab.external_url,
            Some(token.clone()),
        )
        .map_err(|e| e.to_string())?;
        Ok((client, token))
    }

    /// Every configured mirror with its last run (mirrors found by listing an account come
    /// from the history). Read-only: a missing database means no sync has run.
    pub fn list(&self) -> Result<Vec<MirrorRow>, MirrorControlError> {
        let m = &self.settings.config.mirroring;
        let db = self.settings.state_db();
        let (history, recorded): (Vec<MirrorStatus>, Vec<MirrorTarget>) = if db.exists() {
            Store::open(&db)
                .and_then(|s| Ok((s.mirror_status()?, s.mirror_targets()?)))
                .map_err(|e| MirrorControlError::State(e.to_string()))?
        } else {
            (Vec::new(), Vec::new())
        };
        let now = self.clock.now() as i64;
        let mirrors_dir = self.settings.data_dir.join("mirrors");
        let mut all = planned(m);
        // The targets the syncs use: those recorded, not re-derived (read-only: nothing new
        // is recorded here).
        let recorded = recorded.into_iter().map(|t| (t.source, t.target)).collect();
        autogit_core::mirror::assign_targets(&mut all, &m.namespace, &recorded);
        for h in &history {
            if !all.iter().any(|p| p.name == h.mirror) {
                all.push(Planned {
                    name: h.mirror.clone(),
                    kind: "listed",
                    source: h.source.clone(),
                    target: autogit_core::mirror::TargetPath {
                        namespace: m.namespace.clone(),
                        name: h.mirror.clone(),
                    },
                    token_env: None,
                    problem: None,
                    named: false,
                });
            }
        }
        Ok(all
            .into_iter()
            .map(|p| {
                let h = history.iter().find(|h| h.mirror == p.name);
                MirrorRow {
                    source: redact_url(&p.source),
                    target: p.target.full(),
                    last_result: h.map(|h| h.last_result.clone()),
                    last_success: h.and_then(|h| h.last_success),
                    last_error_at: h.and_then(|h| h.last_error_at),
                    last_error: h.and_then(|h| h.last_error.clone()),
                    lag_s: h.and_then(|h| h.last_success).map(|s| (now - s).max(0)),
                    lfs_bytes: dir_bytes(
                        &autogit_drivers::mirror::cache_path(&mirrors_dir, &p.name)
                            .join("lfs/objects"),
                    ),
                    name: p.name,
                    kind: p.kind,
                    token_env: p.token_env,
                    problem: p.problem,
                }
            })
            .collect())
    }

    fn schedule_file(&self) -> PathBuf {
        self.settings.data_dir.join("state/mirror-schedule.json")
    }

    /// One scheduled pass (the daemon's): when `mirroring.schedule` is due, sync everything
    /// once. Missed runs collapse into one: the scheduled time of the last run is kept in
    /// `<data>/state/mirror-schedule.json`. Returns when the schedule is due next.
    pub async fn pass(
        &self,
        cancel: impl Future<Output = ()>,
    ) -> Result<Option<i64>, MirrorControlError> {
        let m = &self.settings.config.mirroring;
        if !self.scheduled() {
            return Ok(None);
        }
        let file = self.schedule_file();
        let last = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["last_scheduled"].as_i64());
        let now = self.clock.now() as i64;
        let due = autogit_core::schedule::due(&m.schedule, last, now)
            .map_err(MirrorControlError::Schedule)?;
        if let Some(t) = due {
            self.bus.publish(Event::MirrorSyncStarted {
                scheduled_for: Some(t),
                mirrors: planned(m).len(),
            });
            let report = self.sync(&[], |_| {}, cancel).await?;
            let Some(report) = report else {
                // Interrupted (shutdown): the schedule stays due for the next start.
                return Ok(None);
            };
            autogit_drivers::fsx::write_atomic(
                &file,
                serde_json::json!({ "last_scheduled": t })
                    .to_string()
                    .as_bytes(),
                0o600,
            )
            .map_err(|e| MirrorControlError::State(e.to_string()))?;
            let next = autogit_core::schedule::next(&m.schedule, t).ok().flatten();
            self.bus.publish(Event::MirrorSyncFinished {
                scheduled_for: Some(t),
                synced: report.reports.len() - report.failed,
                failed: report.failed,
                pruned: report.pruned,
                next,
            });
            return Ok(next);
        }
        autogit_core::schedule::next(&m.schedule, now).map_err(MirrorControlError::Schedule)
    }
}

fn report_event(r: &Report) -> Event {
    match &r.result {
        Ok(Outcome::UpToDate) => Event::MirrorSynced {
            name: r.name.clone(),
            changed: 0,
            deleted: 0,
            lfs: false,
        },
        Ok(Outcome::Synced {
            changed,
            deleted,
            lfs,
        }) => Event::MirrorSynced {
            name: r.name.clone(),
            changed: *changed,
            deleted: *deleted,
            lfs: *lfs,
        },
        Err(e) => Event::MirrorFailed {
            name: r.name.clone(),
            source: r.source.clone(),
            error: e.to_string(),
        },
    }
}

/// A GitHub user's or organization's repositories.
async fn list_github(
    api_url: Option<&str>,
    token: Option<SecretString>,
    owner: &Owner,
    filters: &autogit_core::config::Filters,
) -> Result<Vec<Listed>, String> {
    let api = api_url.unwrap_or(github::DEFAULT_API);
    let listed = match GitHub::new(api, token) {
        Ok(gh) => gh.list(owner).await,
        Err(e) => Err(e),
    };
    listed
        .map(|repos| {
            repos
                .into_iter()
                .map(|r| {
                    let url = r.clone_url();
                    // Never guessed: an answer without `archived` (the schema does not
                    // require it) is not mirrored while archived repositories are excluded.
                    let problem = match (&url, r.archived) {
                        (None, _) => Some(format!(
                            "GitHub listed {} without a clone_url or html_url; skipped",
                            r.full_name
                        )),
                        (_, None) if !filters.archived => Some(format!(
                            "GitHub did not say whether {} is archived, and archived repositories are excluded; skipped",
                            r.full_name
                        )),
                        _ => None,
                    };
                    Listed {
                        problem,
                        clone_url: url.unwrap_or_else(|| r.full_name.clone()),
                        name: r.name,
                        fork: r.fork,
                        archived: r.archived.unwrap_or(false),
                    }
                })
                .collect()
        })
        .map_err(|e| format!("cannot list the repositories: {e}"))
}

/// The projects of a GitLab group (with subgroups) or user.
async fn list_gitlab(
    src: &autogit_core::config::GitLabSource,
    token: Option<SecretString>,
) -> Result<Vec<Listed>, String> {
    use autogit_drivers::gitlab::client::{Account, ListFilter};
    let client = GitLabClient::new(&src.url, token).map_err(|e| e.to_string())?;
    let want = ListFilter {
        archived: src.filters.archived,
        forks: src.filters.forks,
    };
    let projects = match (&src.group, &src.username) {
        (Some(g), _) => client.account_projects(Account::Group(g), want).await,
        (None, Some(u)) => client.account_projects(Account::User(u), want).await,
        (None, None) => Ok(Vec::new()),
    }
    .map_err(|e| format!("cannot list the repositories: {e}"))?;
    Ok(projects
        .into_iter()
        .map(|p| Listed {
            name: p.path,
            clone_url: p.http_url_to_repo,
            fork: p.forked_from_project.is_some(),
            archived: p.archived,
            problem: None,
        })
        .collect())
}

/// What `mirror add` did.
#[derive(Debug, Clone)]
pub struct Added {
    /// `mirroring.sources.git`, `.github` or `.gitlab`.
    pub list: &'static str,
    pub file: PathBuf,
    /// It was there already: nothing was written.
    pub already: bool,
    /// What was added, in words (`the repository rust-lang/rust as https://…`).
    pub what: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(
        "there is no autogit.yml to add to (the embedded default is in use): `autogit init` writes one"
    )]
    NoConfig,
    #[error("{0}")]
    Invalid(String),
    /// The result would not load: the diagnostics of the edited text, nothing written.
    #[error("{} was not changed", .file.display())]
    WouldBreak {
        file: PathBuf,
        diagnostics: autogit_core::diag::Diagnostics,
        sources: autogit_core::source::Sources,
    },
    #[error("{0}")]
    Io(String),
}

/// YAML double-quoted form of `s`.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl MirrorController {
    /// Appends a source to `mirroring.sources` in autogit.yml, changing nothing else
    /// (comments, order, layout kept), after checking it and the resulting configuration.
    /// `github:OWNER/REPO` and `gitlab:GROUP/PROJECT` add one repository as a git source.
    pub fn add(
        &self,
        source: &str,
        token_env: Option<&str>,
        org: bool,
        group: bool,
        url: Option<&str>,
    ) -> Result<Added, AddError> {
        use autogit_core::mirror::{AddSpec, parse_add, single_repo_url};
        let path = self
            .settings
            .config_path
            .clone()
            .ok_or(AddError::NoConfig)?;
        if let Some(k) = token_env
            && !(k
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && k.bytes().next().is_some_and(|b| b.is_ascii_uppercase()))
        {
            return Err(AddError::Invalid(format!(
                "--token-env {k}: the name of an environment variable (A-Z, 0-9, _), not a token"
            )));
        }
        let m = &self.settings.config.mirroring;
        let spec = parse_add(source, org, group, m.allow_private).map_err(AddError::Invalid)?;
        let token = token_env
            .map(|k| format!(", token_env: {k}"))
            .unwrap_or_default();
        let git_item = |u: &str| match token_env {
            Some(k) => format!("{{url: {}, token_env: {k}}}", quoted(u)),
            None => quoted(u),
        };
        let (list, item, already, what) = match &spec {
            AddSpec::GithubAccount { name, org } => {
                let key = if *org { "organization" } else { "username" };
                let dup = m.sources.github.iter().any(|s| {
                    (if *org { &s.organization } else { &s.username }).as_deref() == Some(name)
                });
                let api = url
                    .map(|u| format!(", api_url: {}", quoted(u)))
                    .unwrap_or_default();
                (
                    "github",
                    format!("{{{key}: {}{api}{token}}}", quoted(name)),
                    dup,
                    format!("every repository of the GitHub {key} {name}"),
                )
            }
            AddSpec::GitlabGroup { path: g } => {
                let u = url
                    .map(|u| format!(", url: {}", quoted(u)))
                    .unwrap_or_default();
                let dup = m
                    .sources
                    .gitlab
                    .iter()
                    .any(|s| s.group.as_deref() == Some(g));
                (
                    "gitlab",
                    format!("{{group: {}{u}{token}}}", quoted(g)),
                    dup,
                    format!("every project of the GitLab group {g}"),
                )
            }
            AddSpec::GithubRepo { .. } | AddSpec::GitlabProject { .. } => {
                let clone = single_repo_url(&spec, url).unwrap_or_default();
                autogit_core::mirror::check_source(&clone, m.allow_private)
                    .map_err(|e| AddError::Invalid(format!("{clone}: {e}")))?;
                let dup = m.sources.git.iter().any(|s| s.url == clone);
                (
                    "git",
                    git_item(&clone),
                    dup,
                    format!(
                        "the repository {} as {clone}",
                        source.split_once(':').map_or(source, |(_, p)| p)
                    ),
                )
            }
            AddSpec::Git { url: u } => {
                let dup = m.sources.git.iter().any(|s| &s.url == u);
                ("git", git_item(u), dup, u.clone())
            }
        };
        let added = |already| Added {
            list,
            file: path.clone(),
            already,
            what: what.clone(),
        };
        if already {
            return Ok(added(true));
        }
        let io = |e: &dyn std::fmt::Display| AddError::Io(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| io(&e))?;
        let new =
            autogit_core::yaml_edit::append_to_list(&text, &["mirroring", "sources", list], &item)
                .map_err(|e| io(&e))?;
        // The result must load as cleanly as before: never write a file autogit would reject.
        let name = path.display().to_string();
        let check = autogit_core::load::load(&autogit_core::load::LoadInput {
            file: Some((&name, &new)),
            ..Default::default()
        });
        if check.diagnostics.has_errors() {
            return Err(AddError::WouldBreak {
                file: path.clone(),
                diagnostics: check.diagnostics,
                sources: check.sources,
            });
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).map_or(0o644, |m| m.permissions().mode() & 0o777);
        autogit_drivers::fsx::write_atomic(&path, new.as_bytes(), mode)
            .map_err(|e| AddError::Io(e.to_string()))?;
        Ok(added(false))
    }
}

#[cfg(test)]
mod lfs_size_tests {
    use super::dir_bytes;

    #[test]
    fn lfs_objects_are_summed_and_an_empty_store_is_none() {
        let d = tempfile::tempdir().unwrap();
        let objects = d.path().join("m.git/lfs/objects");
        assert_eq!(dir_bytes(&objects), None, "no directory");
        std::fs::create_dir_all(objects.join("ab/cd")).unwrap();
        assert_eq!(dir_bytes(&objects), None, "nothing in it");
        std::fs::write(objects.join("ab/cd/abcd01"), vec![0u8; 1234]).unwrap();
        std::fs::create_dir_all(objects.join("ef/01")).unwrap();
        std::fs::write(objects.join("ef/01/ef0102"), vec![0u8; 766]).unwrap();
        assert_eq!(dir_bytes(&objects), Some(2000));
    }
}
