//! Mirroring with the `git` CLI: one bare cache repository per mirror under
//! `<data_dir>/mirrors/<name>.git`, branches and tags only (never `--mirror`: GitLab refuses
//! pushes to its hidden refs).
//!
//! One sync: the ref advertisement of both sides, at once (read in-process over `git://` and
//! smart HTTP, [`advert`]; `git ls-remote` otherwise); when their branches and tags agree
//! ([`autogit_core::mirror::decide`]) nothing else runs: no git process at all. Otherwise a complete, atomic
//! `fetch --prune` into the cache, LFS objects when the repository uses LFS and `git lfs` is
//! installed, then one atomic `push --prune`. A failed or interrupted fetch therefore never
//! reaches the target. A first sync (a cache without refs, a target that holds no other
//! source's mirror) skips the advertisements: there is nothing to compare yet. Mirrors run in parallel up to a bound, each attempt under a timeout (the
//! child is killed), with retries and exponential backoff, and each run is recorded in SQLite.
//!
//! **Invariant:** credentials only travel through `GIT_ASKPASS` to git ([`git`]), and as the
//! HTTP basic authentication of the in-process advertisement request ([`advert`]); never in
//! an argv, a file, a URL or an error.

pub mod advert;
pub mod git;
pub mod github;
pub mod objects;

use crate::state::{MirrorRunEnd, Store};
use autogit_core::mirror::{
    Decision, Pinned, check_host_literal, check_resolved, decide, parse_ls_remote, parse_source,
    pin, redact_url,
};
use git::{Call, Git};
use secrecy::SecretString;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tracing::Instrument;

const HEADS: &str = "+refs/heads/*:refs/heads/*";
const TAGS: &str = "+refs/tags/*:refs/tags/*";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{step} failed{}: {detail}", remote.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Git {
        step: &'static str,
        /// Redacted.
        remote: Option<String>,
        /// git's last stderr lines, scrubbed of credentials.
        detail: String,
    },
    #[error("timed out after {}s (the git process was killed)", after.as_secs())]
    Timeout { after: Duration },
    #[error("cannot run {}: {source}; is git installed?", git.display())]
    Spawn {
        git: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected `git ls-remote` output from {remote}: {detail}")]
    Parse { remote: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// The source is not allowed (a private address, a credential in the URL): not retried.
    #[error("{0}")]
    Refused(String),
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error(
        "another sync of mirror `{0}` is running (a scheduled one, or `autogit mirror sync` elsewhere); skipped"
    )]
    Busy(String),
    /// The target holds another source's mirror: a forced, pruning push would replace that
    /// repository's history with this one's. Not retried.
    #[error(
        "refusing to push {from} to {target}: it holds the mirror of {holder}, and a forced, pruning push would replace that history. If this source really replaces that one, empty or delete the target first"
    )]
    TargetHeld {
        target: String,
        /// The source this sync would push (redacted).
        from: String,
        holder: String,
    },
}

impl MirrorError {
    /// Worth another attempt: network and git failures, timeouts. Not: bad input, missing git.
    fn retryable(&self) -> bool {
        matches!(
            self,
            MirrorError::Git { .. } | MirrorError::Timeout { .. } | MirrorError::Resolve { .. }
        )
    }
}

/// One mirror to sync.
#[derive(Clone, Debug)]
pub struct Job {
    /// Unique; names the cache repository and the SQLite rows.
    pub name: String,
    pub source: String,
    pub target: String,
    pub source_token: Option<SecretString>,
    pub target_token: Option<SecretString>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// `<data_dir>/mirrors`.
    pub cache_dir: PathBuf,
    pub parallel: usize,
    /// Per attempt.
    pub timeout: Duration,
    /// Further attempts after the first failure.
    pub retries: u32,
    /// Wait before the first retry; doubles each time (at most a minute).
    pub backoff: Duration,
    /// The git program (tests put a recording wrapper here).
    pub git: PathBuf,
    /// `mirroring.allow_private`: sources may be on loopback, private, link-local, … addresses.
    /// Off (the default), a source whose host is such a literal or resolves to such an address
    /// (any one of them) is refused before git runs. Either way git connects to the address
    /// resolved here, never resolving the name again.
    pub allow_private: bool,
    /// Read ref advertisements in-process over `git://` and smart HTTP ([`advert`]); `git
    /// ls-remote` for everything else and whenever the fast path is unsure. On by default.
    pub native_refs: bool,
}

impl Options {
    pub fn new(cache_dir: PathBuf) -> Options {
        Options {
            cache_dir,
            parallel: default_parallel(std::thread::available_parallelism().map_or(1, |n| n.get())),
            timeout: Duration::from_secs(30 * 60),
            retries: 2,
            backoff: Duration::from_secs(5),
            git: PathBuf::from("git"),
            allow_private: false,
            native_refs: true,
        }
    }
}

/// Mirrors synced at once by default: twice the CPUs, at least 4, at most 16. A sync mostly
/// waits (on the network, on the other side's pack), so more than one per core pays: over
/// loopback on 2 cores, 200 first syncs took 21.5 s at 2 and 12.5 s at 4 (`xtask bench
/// mirror`); a remote far away only adds waiting. `mirroring.parallelism` overrides it.
pub fn default_parallel(cpus: usize) -> usize {
    (cpus * 2).clamp(4, 16)
}

/// What a successful sync did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Source and target agreed: nothing was pushed (and nothing fetched, unless the cache was
    /// new).
    UpToDate,
    Synced {
        changed: usize,
        deleted: usize,
        lfs: bool,
    },
}

/// One mirror's result.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    /// Redacted.
    pub source: String,
    /// Redacted.
    pub target: String,
    pub attempts: u32,
    pub elapsed: Duration,
    pub result: Result<Outcome, MirrorError>,
}

impl Report {
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.name, "source": self.source, "target": self.target,
            "attempts": self.attempts, "elapsed_ms": self.elapsed.as_millis() as u64,
        });
        match &self.result {
            Ok(Outcome::UpToDate) => v["result"] = "up_to_date".into(),
            Ok(Outcome::Synced {
                changed,
                deleted,
                lfs,
            }) => {
                v["result"] = "synced".into();
                v["changed"] = (*changed).into();
                v["deleted"] = (*deleted).into();
                v["lfs"] = (*lfs).into();
            }
            Err(e) => {
                v["result"] = "failed".into();
                v["error"] = e.to_string().into();
            }
        }
        v
    }
}

/// Progress, in the order it happens.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        name: &'a str,
    },
    Retrying {
        name: &'a str,
        attempt: u32,
        error: &'a MirrorError,
    },
    Finished(&'a Report),
}

/// The cache repository of a mirror.
pub fn cache_path(cache_dir: &Path, name: &str) -> PathBuf {
    cache_dir.join(format!("{name}.git"))
}

enum Msg {
    Started(usize),
    Retrying(usize, u32, MirrorError),
    Done(usize, Report),
}

/// Syncs every job, at most `opts.parallel` at a time. Records each run in `store` when given
/// and reports progress to `on_event` (on the caller's task). Reports come back in job order.
pub async fn sync_all(
    jobs: Vec<Job>,
    opts: &Options,
    store: Option<&Store>,
    mut on_event: impl FnMut(Event<'_>),
) -> Vec<Report> {
    let n = jobs.len();
    let git = match Git::new(opts.git.clone()) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            let msg = e.to_string();
            return jobs
                .into_iter()
                .map(|j| Report {
                    source: redact_url(&j.source),
                    target: redact_url(&j.target),
                    name: j.name,
                    attempts: 0,
                    elapsed: Duration::ZERO,
                    result: Err(MirrorError::Invalid(msg.clone())),
                })
                .collect();
        }
    };
    let sem = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let lfs = Arc::new(OnceCell::new());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let names: Vec<(String, String, String)> = jobs
        .iter()
        .map(|j| (j.name.clone(), redact_url(&j.source), redact_url(&j.target)))
        .collect();
    for (i, job) in jobs.into_iter().enumerate() {
        // Whose mirror the target holds, by the runs recorded: checked before any push.
        let holder = store.and_then(|s| {
            s.mirror_target_holder(&redact_url(&job.target))
                .ok()
                .flatten()
        });
        let (sem, git, lfs, tx, opts) = (
            sem.clone(),
            git.clone(),
            lfs.clone(),
            tx.clone(),
            opts.clone(),
        );
        // One span per repository (the driver level of a trace), a child of the caller's.
        let span = tracing::info_span!(
            "mirror.repo",
            otel.kind = "client",
            mirror = %job.name,
            source = %redact_url(&job.source),
            result = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        tokio::spawn(
            async move {
                let Ok(_permit) = sem.acquire_owned().await else {
                    return;
                };
                let _ = tx.send(Msg::Started(i));
                let report =
                    sync_with_retries(&job, &opts, &git, &lfs, holder.as_deref(), |a, e| {
                        let _ = tx.send(Msg::Retrying(i, a, e));
                    })
                    .await;
                let span = tracing::Span::current();
                span.record("attempts", report.attempts);
                span.record(
                    "result",
                    match &report.result {
                        Ok(Outcome::UpToDate) => "up_to_date",
                        Ok(Outcome::Synced { .. }) => "synced",
                        Err(_) => "failed",
                    },
                );
                let _ = tx.send(Msg::Done(i, report));
            }
            .instrument(span),
        );
    }
    drop(tx);
    let mut run_ids = vec![None; n];
    let mut reports: Vec<Option<Report>> = (0..n).map(|_| None).collect();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Started(i) => {
                let (name, src, dst) = &names[i];
                if let Some(s) = store {
                    run_ids[i] = s.mirror_run_start(name, src, dst, now()).ok();
                }
                on_event(Event::Started { name });
            }
            Msg::Retrying(i, attempt, e) => on_event(Event::Retrying {
                name: &names[i].0,
                attempt,
                error: &e,
            }),
            Msg::Done(i, report) => {
                if let (Some(s), Some(id)) = (store, run_ids[i]) {
                    let err = report.result.as_ref().err().map(ToString::to_string);
                    let end = match &report.result {
                        Ok(Outcome::UpToDate) => MirrorRunEnd {
                            result: "up_to_date",
                            changed: 0,
                            deleted: 0,
                            error: None,
                        },
                        Ok(Outcome::Synced {
                            changed, deleted, ..
                        }) => MirrorRunEnd {
                            result: "synced",
                            changed: *changed,
                            deleted: *deleted,
                            error: None,
                        },
                        Err(_) => MirrorRunEnd {
                            result: "failed",
                            changed: 0,
                            deleted: 0,
                            error: err.as_deref(),
                        },
                    };
                    let _ = s.mirror_run_end(id, now(), &end);
                }
                on_event(Event::Finished(&report));
                reports[i] = Some(report);
            }
        }
    }
    reports
        .into_iter()
        .zip(names)
        .map(|(r, (name, source, target))| {
            r.unwrap_or(Report {
                name,
                source,
                target,
                attempts: 0,
                elapsed: Duration::ZERO,
                result: Err(MirrorError::Invalid("the sync task ended early".into())),
            })
        })
        .collect()
}

fn now() -> u64 {
    crate::runtime::now()
}

async fn sync_with_retries(
    job: &Job,
    opts: &Options,
    git: &Git,
    lfs: &OnceCell<bool>,
    holder: Option<&str>,
    mut on_retry: impl FnMut(u32, MirrorError),
) -> Report {
    let start = Instant::now();
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let attempt_once = sync_once_held(job, opts, git, lfs, holder);
        let r = match tokio::time::timeout(opts.timeout, attempt_once).await {
            Ok(r) => r,
            Err(_) => Err(MirrorError::Timeout {
                after: opts.timeout,
            }),
        };
        match r {
            Err(e) if e.retryable() && attempt <= opts.retries => {
                let wait = opts
                    .backoff
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(Duration::from_secs(60));
                on_retry(attempt, e);
                tokio::time::sleep(wait).await;
            }
            r => break r,
        }
    };
    Report {
        name: job.name.clone(),
        source: redact_url(&job.source),
        target: redact_url(&job.target),
        attempts: attempt,
        elapsed: start.elapsed(),
        result,
    }
}

/// One attempt, without retries or timeout.
pub async fn sync_once(
    job: &Job,
    opts: &Options,
    git: &Git,
    lfs_installed: &OnceCell<bool>,
) -> Result<Outcome, MirrorError> {
    sync_once_held(job, opts, git, lfs_installed, None).await
}

/// [`sync_once`], knowing whose mirror the target holds (`holder`: the redacted source of the
/// last run that left the target equal to its source). A target that has branches or tags
/// and holds another source's mirror is refused ([`MirrorError::TargetHeld`]) before
/// anything is fetched or pushed; an empty one may be taken.
pub async fn sync_once_held(
    job: &Job,
    opts: &Options,
    git: &Git,
    lfs_installed: &OnceCell<bool>,
    holder: Option<&str>,
) -> Result<Outcome, MirrorError> {
    if job.name.is_empty() || job.name.contains(['/', '\\']) || job.name.starts_with('.') {
        return Err(MirrorError::Invalid(format!(
            "mirror name `{}` cannot name a cache directory",
            job.name
        )));
    }
    // Never two syncs of one mirror at once, across processes: an exclusive lock on
    // `<cache>.lock`, held until this attempt ends (the OS releases it if we die).
    // Caches hold private repositories: 0700 whatever the umask, narrowed if made wider.
    crate::fsx::ensure_private_dir(&opts.cache_dir).map_err(|e| MirrorError::Io {
        path: opts.cache_dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let lock_path = opts.cache_dir.join(format!("{}.lock", job.name));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| MirrorError::Io {
            path: lock_path.clone(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(MirrorError::Busy(job.name.clone())),
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(MirrorError::Io {
                path: lock_path,
                source,
            });
        }
    }
    // Defense in depth (callers check sources with core::mirror::check_source): nothing that
    // git could read as an option or as a command-running transport.
    for url in [&job.source, &job.target] {
        // `<transport>::<address>` (git's remote helpers, `ext::` runs a command); an IPv6
        // literal's `::` comes after `scheme://[`.
        let helper = url
            .split_once("::")
            .is_some_and(|(t, _)| !t.contains([':', '/', '[']));
        if url.starts_with('-') || helper || url.chars().any(char::is_control) {
            return Err(MirrorError::Invalid(format!(
                "refusing URL `{}`: it could be read as a git option or transport",
                redact_url(url)
            )));
        }
    }
    // The source is resolved here, every address checked, and git connects to the checked
    // one: no second resolution that DNS rebinding could switch to a private address.
    let pinned = pin_source(&job.source, opts.allow_private).await?;
    let ours = redact_url(&job.source);
    let cache = cache_path(&opts.cache_dir, &job.name);
    // A first sync (the cache holds no ref) of a target that holds no other source's mirror:
    // nothing to compare, nothing to refuse, so no advertisement is read; the fetch reads the
    // source's and the push the target's, as `clone --mirror` + `push --mirror` do.
    if cache_is_empty(&cache) && holder.is_none_or(|h| h == ours) {
        return first_sync(job, opts, git, lfs_installed, &pinned, &cache).await;
    }
    // Both sides at once: a no-change sync costs one round trip, not two.
    let (source, target) = tokio::try_join!(
        ls_remote(
            git,
            opts,
            &job.source,
            job.source_token.as_ref(),
            Some(&pinned)
        ),
        ls_remote(git, opts, &job.target, job.target_token.as_ref(), None)
    )?;
    let (changed, deleted) = match decide(&source, &target) {
        Decision::UpToDate => return Ok(Outcome::UpToDate),
        Decision::Sync { changed, deleted } => (changed.len(), deleted.len()),
    };
    if let Some(h) = holder
        && !target.is_empty()
        && h != ours
    {
        return Err(MirrorError::TargetHeld {
            target: redact_url(&job.target),
            from: ours,
            holder: h.to_owned(),
        });
    }
    if !cache.join("HEAD").exists() {
        init_cache(&cache).map_err(|source| MirrorError::Io {
            path: cache.clone(),
            source,
        })?;
    }
    fetch(job, git, &pinned, &cache, false).await?;
    let lfs = move_lfs(job, git, lfs_installed, &pinned, &cache).await?;
    push(job, git, &cache, false).await?;
    Ok(Outcome::Synced {
        changed,
        deleted,
        lfs,
    })
}

/// The first sync of a mirror: fetch, LFS, push, without reading either advertisement first
/// (each git process reads its own). The counts come from the push's porcelain report. A
/// failed fetch is explained as a failed listing would have been: when the source's
/// advertisement cannot be read either (a missing repository, a refused credential), that
/// error, as `git ls-remote` would give it; otherwise the fetch's own.
async fn first_sync(
    job: &Job,
    opts: &Options,
    git: &Git,
    lfs_installed: &OnceCell<bool>,
    pinned: &Pinned,
    cache: &Path,
) -> Result<Outcome, MirrorError> {
    if !cache.join("HEAD").exists() {
        init_cache(cache).map_err(|source| MirrorError::Io {
            path: cache.to_owned(),
            source,
        })?;
    }
    if let Err(fetch_error) = fetch(job, git, pinned, cache, true).await {
        let listed = ls_remote(
            git,
            opts,
            &job.source,
            job.source_token.as_ref(),
            Some(pinned),
        )
        .await;
        return Err(listed.err().unwrap_or(fetch_error));
    }
    let lfs = move_lfs(job, git, lfs_installed, pinned, cache).await?;
    let report = push(job, git, cache, true).await?;
    let (changed, deleted) = autogit_core::mirror::push_porcelain_counts(&String::from_utf8_lossy(
        &report,
    ))
    .map_err(|detail| MirrorError::Git {
        step: "git push",
        remote: Some(redact_url(&job.target)),
        detail,
    })?;
    // An empty source leaves the cache without refs: marked, so that later syncs compare
    // advertisements rather than fetch and push again.
    let mark = cache.join(SYNCED_MARK);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&mark)
        .map_err(|source| MirrorError::Io { path: mark, source })?;
    if changed == 0 && deleted == 0 {
        // The target already had every ref (a cache lost, the target kept).
        return Ok(Outcome::UpToDate);
    }
    Ok(Outcome::Synced {
        changed,
        deleted,
        lfs,
    })
}

/// A file in a cache whose first sync completed (git ignores it).
const SYNCED_MARK: &str = "autogit-synced";

/// Whether the cache never completed a sync and holds no branch or tag (absent, just
/// created, or left by a failed fetch: `--atomic` writes all refs or none).
fn cache_is_empty(cache: &Path) -> bool {
    if !cache.join("HEAD").exists() {
        return true;
    }
    if cache.join(SYNCED_MARK).exists() {
        return false;
    }
    let packed = std::fs::metadata(cache.join("packed-refs")).map_or(0, |m| m.len());
    let none_under = |d: &str| {
        std::fs::read_dir(cache.join(d)).map_or(true, |mut entries| entries.next().is_none())
    };
    packed == 0 && none_under("refs/heads") && none_under("refs/tags")
}

/// Complete and atomic, or nothing: a push only ever sees a whole fetch. No automatic
/// maintenance after a `first` fetch (one process less, and nothing to pack yet).
async fn fetch(
    job: &Job,
    git: &Git,
    pinned: &Pinned,
    cache: &Path,
    first: bool,
) -> Result<(), MirrorError> {
    // After later fetches git's automatic maintenance keeps a long-lived cache packed.
    let maintenance = if first { "false" } else { "true" };
    git.run(Call {
        step: "git fetch",
        dir: Some(cache),
        args: vec![
            "-c".into(),
            format!("maintenance.auto={maintenance}"),
            "fetch".into(),
            "--atomic".into(),
            "--prune".into(),
            "--no-tags".into(),
            "--update-head-ok".into(),
            "--no-write-fetch-head".into(),
            "--quiet".into(),
            "--".into(),
            pinned.url.clone(),
            HEADS.into(),
            TAGS.into(),
        ],
        remote: Some(&job.source),
        token: job.source_token.as_ref(),
        stdin: None,
        pin: Some(pinned),
    })
    .await
    .map(drop)
}

/// One atomic, pruning push of the cache's branches and tags; with `porcelain`, git's report
/// of each ref (stdout), for [`autogit_core::mirror::push_porcelain_counts`].
async fn push(job: &Job, git: &Git, cache: &Path, porcelain: bool) -> Result<Vec<u8>, MirrorError> {
    git.run(Call {
        step: "git push",
        dir: Some(cache),
        args: vec![
            "push".into(),
            "--atomic".into(),
            "--prune".into(),
            // `--quiet` would silence the porcelain report too.
            if porcelain { "--porcelain" } else { "--quiet" }.into(),
            "--".into(),
            job.target.clone(),
            HEADS.into(),
            TAGS.into(),
        ],
        remote: Some(&job.target),
        token: job.target_token.as_ref(),
        stdin: None,
        pin: None,
    })
    .await
}

/// LFS objects from the source to the target when the cache holds any LFS pointer and `git
/// lfs` is installed (without it there is nothing to move them with: no scan, checked once
/// per run). Whether it did.
async fn move_lfs(
    job: &Job,
    git: &Git,
    lfs_installed: &OnceCell<bool>,
    pinned: &Pinned,
    cache: &Path,
) -> Result<bool, MirrorError> {
    let installed = *lfs_installed
        .get_or_init(|| async { lfs_available(git).await })
        .await;
    let lfs = installed && uses_lfs(git, cache).await?;
    if lfs {
        for (step, verb, remote, url, token, pin) in [
            (
                "git lfs fetch",
                "fetch",
                &job.source,
                &pinned.url,
                job.source_token.as_ref(),
                Some(pinned),
            ),
            (
                "git lfs push",
                "push",
                &job.target,
                &job.target,
                job.target_token.as_ref(),
                None,
            ),
        ] {
            git.run(Call {
                step,
                dir: Some(cache),
                // No lock verification: a mirror pushes what the source has, locks or not.
                args: vec![
                    "-c".into(),
                    "lfs.locksverify=false".into(),
                    "lfs".into(),
                    verb.into(),
                    "--all".into(),
                    url.clone(),
                ],
                remote: Some(remote),
                token,
                stdin: None,
                pin,
            })
            .await?;
        }
    }
    Ok(lfs)
}

/// What `git init --bare --shared=0600` makes, without a process: `HEAD`, `config`,
/// `objects/{info,pack}` and `refs/{heads,tags}`, directories 0700 and files 0600 whatever the
/// umask (`core.sharedRepository=0600` keeps git writing them so). Built beside the cache and
/// renamed into place, so a cache is whole or absent; a leftover from a crash is replaced.
fn init_cache(cache: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tag: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let name = cache.file_name().unwrap_or_default().to_string_lossy();
    let tmp = cache.with_file_name(format!(".{name}.init-{tag}"));
    let dir = |p: &Path| std::fs::DirBuilder::new().mode(0o700).create(p);
    let file = |p: &Path, text: &str| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)?;
        std::io::Write::write_all(&mut f, text.as_bytes())
    };
    let build = || -> std::io::Result<()> {
        dir(&tmp)?;
        for d in [
            "objects",
            "objects/info",
            "objects/pack",
            "refs",
            "refs/heads",
            "refs/tags",
        ] {
            dir(&tmp.join(d))?;
        }
        file(
            &tmp.join("config"),
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n\tsharedrepository = 0600\n",
        )?;
        file(&tmp.join("HEAD"), "ref: refs/heads/main\n")?;
        if cache.exists() {
            // A cache without HEAD: a leftover git could not use either.
            std::fs::remove_dir_all(cache)?;
        }
        std::fs::rename(&tmp, cache)
    };
    let r = build();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

/// The local GitLab project a mirror pushes to: found by path, or created (private, empty) in
/// its namespace group, which is created too when missing. Idempotent.
pub async fn ensure_project(
    client: &crate::gitlab::client::GitLabClient,
    target: &autogit_core::mirror::TargetPath,
) -> Result<crate::gitlab::client::Project, crate::gitlab::client::GitLabError> {
    if let Some(p) = client.project_by_path(&target.full()).await? {
        return Ok(p);
    }
    let group = match client.group(&target.namespace).await? {
        Some(g) => g,
        None => {
            let (parent, path) = match target.namespace.rsplit_once('/') {
                Some((parent, leaf)) => (client.group(parent).await?.map(|g| g.id), leaf),
                None => (None, target.namespace.as_str()),
            };
            client.create_mirror_group(path, parent).await?
        }
    };
    client
        .create_project(&target.name, &target.name, group.id, "private")
        .await
}

/// Checks a source (structure and literal host, [`autogit_core::mirror::parse_source`]),
/// resolves its host unless it is an IP literal, checks every address, and pins git to the
/// first one.
pub async fn pin_source(url: &str, allow_private: bool) -> Result<Pinned, MirrorError> {
    let refused = |why: String| MirrorError::Refused(format!("{}: {why}", redact_url(url)));
    let src = parse_source(url).map_err(refused)?;
    check_host_literal(&src, allow_private).map_err(refused)?;
    let addrs: Vec<IpAddr> = match src.ip {
        Some(ip) => vec![ip],
        None => {
            let mut v: Vec<IpAddr> =
                tokio::net::lookup_host((src.host.as_str(), src.effective_port()))
                    .await
                    .map_err(|source| MirrorError::Resolve {
                        host: src.host.clone(),
                        source,
                    })?
                    .map(|a| a.ip())
                    .collect();
            v.dedup();
            v
        }
    };
    check_resolved(&src.host, &addrs, allow_private).map_err(refused)?;
    Ok(pin(url, &src, addrs[0]))
}

async fn ls_remote(
    git: &Git,
    opts: &Options,
    url: &str,
    token: Option<&SecretString>,
    pinned: Option<&Pinned>,
) -> Result<autogit_core::mirror::Refs, MirrorError> {
    if opts.native_refs {
        match git.refs.ls_remote(url, token, pinned).await {
            advert::Answer::Refs(refs) => return Ok(refs),
            advert::Answer::Failed(detail) => {
                return Err(MirrorError::Git {
                    step: "git ls-remote",
                    remote: Some(redact_url(url)),
                    detail: git::scrub(&detail, token),
                });
            }
            // A transport or an answer that git reads better.
            advert::Answer::Fallback(_why) => {}
        }
    }
    let out = git
        .run(Call {
            step: "git ls-remote",
            dir: None,
            args: vec![
                "ls-remote".into(),
                "--".into(),
                pinned.map_or(url, |p| p.url.as_str()).into(),
                "refs/heads/*".into(),
                "refs/tags/*".into(),
            ],
            remote: Some(url),
            token,
            stdin: None,
            pin: pinned,
        })
        .await?;
    parse_ls_remote(&String::from_utf8_lossy(&out)).map_err(|detail| MirrorError::Parse {
        remote: redact_url(url),
        detail,
    })
}

async fn lfs_available(git: &Git) -> bool {
    git.run(Call {
        step: "git lfs version",
        dir: None,
        args: vec!["lfs".into(), "version".into()],
        remote: None,
        token: None,
        stdin: None,
        pin: None,
    })
    .await
    .is_ok()
}

/// Whether the cache holds any LFS pointer, in history or at a head: the blobs small enough
/// to be pointers ([`autogit_core::mirror::lfs_pointer_candidates`]), then their first bytes.
/// A cache of loose objects only (a small fetch) is read in-process ([`objects::loose_lfs`]);
/// otherwise its objects are listed in-process ([`objects::list`]) and one `git cat-file
/// --batch-command` answers both questions; where the listing cannot be read here, two `git
/// cat-file` (one pass over the objects each, no history walk). A `.gitattributes` that
/// tracks files with LFS but no pointer means there is nothing to move.
async fn uses_lfs(git: &Git, cache: &Path) -> Result<bool, MirrorError> {
    // A small fetch left only loose objects: read here, no process at all.
    if let Ok(Some(found)) = objects::loose_lfs(cache) {
        return Ok(found);
    }
    if let Ok(Some(mut oids)) = objects::list(cache) {
        if oids.is_empty() {
            return Ok(false);
        }
        oids.sort_unstable();
        oids.dedup();
        let blobs = git
            .cat_file_two_rounds(
                Call {
                    step: "git cat-file",
                    dir: Some(cache),
                    args: Vec::new(),
                    remote: None,
                    token: None,
                    stdin: None,
                    pin: None,
                },
                &oids,
                |info| {
                    autogit_core::mirror::lfs_pointer_candidates_named(info)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                },
            )
            .await?;
        return Ok(autogit_core::mirror::has_lfs_pointer(&blobs));
    }
    let listed = git
        .run(Call {
            step: "git cat-file",
            dir: Some(cache),
            args: vec![
                "cat-file".into(),
                "--batch-all-objects".into(),
                "--unordered".into(),
                "--batch-check=%(objecttype) %(objectsize) %(objectname)".into(),
            ],
            remote: None,
            token: None,
            stdin: None,
            pin: None,
        })
        .await?;
    let listed = String::from_utf8_lossy(&listed);
    let candidates = autogit_core::mirror::lfs_pointer_candidates(&listed);
    if candidates.is_empty() {
        return Ok(false);
    }
    let mut input = candidates.join("\n");
    input.push('\n');
    let blobs = git
        .run(Call {
            step: "git cat-file",
            dir: Some(cache),
            args: vec!["cat-file".into(), "--batch".into()],
            remote: None,
            token: None,
            stdin: Some(input.into_bytes()),
            pin: None,
        })
        .await?;
    Ok(autogit_core::mirror::has_lfs_pointer(&blobs))
}
