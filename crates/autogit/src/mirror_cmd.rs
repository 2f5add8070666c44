//! `autogit mirror sync` and `autogit mirror list`: the configured mirrors (core), the git
//! driver, the GitLab projects they push to, and their history in SQLite.

use crate::cli::Global;
use crate::commands::report;
use crate::ctx::{Loaded, data_dir};
use crate::exit;
use crate::ui::{Ui, runtime};
use autogit_core::mirror::{
    Listed, Planned, expand_target, from_listing, planned, redact_url, unique_names,
};
use autogit_drivers::gitlab::bootstrap::account_token_secret;
use autogit_drivers::gitlab::client::GitLabClient;
use autogit_drivers::mirror::github::{self, GitHub, Owner};
use autogit_drivers::mirror::{Event, Job, MirrorError, Options, Outcome, Report, sync_all};
use autogit_drivers::runtime::now;
use autogit_drivers::secrets::{SecretStore, SecretString};
use autogit_drivers::state::{MirrorRunEnd, Store};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn absolute(p: PathBuf) -> PathBuf {
    std::fs::canonicalize(&p).unwrap_or(p)
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

pub fn sync(ui: &Ui, g: &Global, loaded: &Loaded, repos: &[String]) -> u8 {
    if !report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let m = &loaded.config.mirroring;
    let rt = runtime();
    let mut all = rt.block_on(resolve_accounts(loaded, planned(m)));
    if !repos.is_empty() {
        for r in repos {
            if !all
                .iter()
                .any(|p| &p.name == r || &p.source == r || &p.target.full() == r)
            {
                ui.error(&format!(
                    "no configured mirror is named `{r}`; `autogit mirror list` shows their names"
                ));
                return exit::FAILURE;
            }
        }
        all.retain(|p| {
            repos
                .iter()
                .any(|r| &p.name == r || &p.source == r || &p.target.full() == r)
        });
    }
    if all.is_empty() {
        ui.note("nothing to sync: no sources under `mirroring.sources`");
        if ui.json {
            ui.print_json(&json!({"mirrors": [], "failed": 0}));
        }
        return exit::OK;
    }
    if !m.enabled {
        ui.note("note: `mirroring.enabled` is false (no scheduled syncs); syncing now as asked");
    }
    let data = data_dir(g);
    if let Err(e) = std::fs::create_dir_all(&data) {
        ui.error(&format!("cannot create {}: {e}", data.display()));
        return exit::FAILURE;
    }
    let data = absolute(data);
    let store = match Store::open(&data.join("state.db")) {
        Ok(s) => s,
        Err(e) => {
            ui.error(&e.to_string());
            return exit::FAILURE;
        }
    };

    // Targets: the URL template, or the local GitLab's projects (created when missing).
    let mut problems: Vec<Report> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let gitlab = if m.target_url_template.is_none() {
        Some(gitlab_client(loaded, &data))
    } else {
        None
    };
    for p in &all {
        let placeholder = p.target.full();
        if let Some(why) = &p.problem {
            problems.push(failed(p, &placeholder, why.clone()));
            continue;
        }
        let source_token = match &p.token_env {
            Some(k) => match loaded.secrets(std::slice::from_ref(k)).remove(k) {
                Some(v) => Some(SecretString::from(v)),
                None => {
                    problems.push(failed(
                        p,
                        &placeholder,
                        format!("`{k}` (its token_env) is not set in the environment or .env"),
                    ));
                    continue;
                }
            },
            None => None,
        };
        let (target, target_token) = match (&m.target_url_template, &gitlab) {
            (Some(t), _) => (expand_target(t, &p.target), None),
            (None, Some(Ok((client, token)))) => {
                match rt.block_on(autogit_drivers::mirror::ensure_project(client, &p.target)) {
                    Ok(_) => (
                        format!(
                            "{}/{}.git",
                            loaded.config.gitlab.external_url.trim_end_matches('/'),
                            p.target.full()
                        ),
                        Some(token.clone()),
                    ),
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
    let total = jobs.len() + problems.len();
    let started = Instant::now();
    // On a terminal a progress bar with the lines above it; elsewhere plain lines.
    let bar = (!ui.json && !ui.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(jobs.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("[{elapsed}] [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let say = |msg: String| match &bar {
        Some(b) => b.println(msg),
        None => ui.note(&msg),
    };
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let sync = sync_all(jobs, &opts, Some(&store), |e| {
        if ui.json {
            return;
        }
        match e {
            Event::Started { name } => match &bar {
                Some(b) => b.set_message(name.to_owned()),
                None => ui.note(&format!("{name}: syncing")),
            },
            Event::Retrying {
                name,
                attempt,
                error,
            } => say(format!(
                "{name}: attempt {attempt} failed ({error}); retrying"
            )),
            Event::Finished(r) => {
                if let Some(b) = &bar {
                    b.inc(1);
                }
                say(format!("{}: {}", r.name, line(r)));
            }
        }
    });
    // Ctrl-C: stop (git children are killed with their tasks when the runtime goes); fetches
    // and pushes are atomic, so nothing is half-written; the runs are recorded as interrupted.
    let done = rt.block_on(async {
        tokio::select! {
            r = sync => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let Some(mut reports) = done else {
        let _ = store.mirror_runs_abort(&names, now(), "interrupted");
        ui.error("mirror sync interrupted; every mirror is as before its sync or fully synced");
        return exit::FAILURE;
    };
    for r in &problems {
        if let Ok(id) = store.mirror_run_start(&r.name, &r.source, &r.target, now()) {
            let err = r.result.as_ref().err().map(ToString::to_string);
            let _ = store.mirror_run_end(
                id,
                now(),
                &MirrorRunEnd {
                    result: "failed",
                    changed: 0,
                    deleted: 0,
                    error: err.as_deref(),
                },
            );
        }
        if !ui.json {
            ui.note(&format!("{}: {}", r.name, line(r)));
        }
    }
    let complete = problems.is_empty() && repos.is_empty();
    reports.extend(problems);
    let failures = reports.iter().filter(|r| r.result.is_err()).count();
    // prune_projects: only against the local GitLab, only after a complete listing.
    let mut pruned: Vec<String> = Vec::new();
    if m.prune_projects
        && let Some(Ok((client, _))) = &gitlab
    {
        let wanted: Vec<String> = all.iter().map(|p| p.target.full()).collect();
        let result = rt.block_on(async {
            let existing = client
                .group_projects(&m.namespace)
                .await
                .map_err(|e| e.to_string())?;
            let names: Vec<String> = existing
                .iter()
                .map(|p| p.path_with_namespace.clone())
                .collect();
            let gone =
                autogit_core::mirror::prune_candidates(&m.namespace, &names, &wanted, complete)?;
            let mut done = Vec::new();
            for path in gone {
                if let Some(p) = existing.iter().find(|p| p.path_with_namespace == path) {
                    client
                        .delete_project(p.id)
                        .await
                        .map_err(|e| format!("deleting {path}: {e}"))?;
                    done.push(path);
                }
            }
            Ok::<_, String>(done)
        });
        match result {
            Ok(done) => {
                for p in &done {
                    ui.note(&format!("pruned {p}: its source is no longer configured"));
                }
                pruned = done;
            }
            Err(e) => ui.note(&format!("prune_projects: {e}")),
        }
    }
    if ui.json {
        ui.print_json(&json!({
            "mirrors": reports.iter().map(Report::json).collect::<Vec<_>>(),
            "failed": failures,
            "pruned": pruned,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
    } else {
        let mut t = ui.table();
        t.set_header(vec![
            "NAME", "SOURCE", "TARGET", "RESULT", "CHANGED", "DELETED", "TIME",
        ]);
        for r in &reports {
            let (res, ch, del) = match &r.result {
                Ok(Outcome::UpToDate) => ("up to date".to_owned(), 0, 0),
                Ok(Outcome::Synced {
                    changed,
                    deleted,
                    lfs,
                }) => (
                    if *lfs { "synced (+LFS)" } else { "synced" }.to_owned(),
                    *changed,
                    *deleted,
                ),
                Err(_) => ("FAILED".to_owned(), 0, 0),
            };
            t.add_row(vec![
                r.name.clone(),
                r.source.clone(),
                r.target.clone(),
                res,
                ch.to_string(),
                del.to_string(),
                format!("{:.1}s", r.elapsed.as_secs_f64()),
            ]);
        }
        println!("{t}");
        println!(
            "{} of {total} mirrors synced or up to date, {failures} failed, in {:.1}s",
            total - failures,
            started.elapsed().as_secs_f64()
        );
    }
    if failures > 0 {
        exit::FAILURE
    } else {
        exit::OK
    }
}

fn line(r: &Report) -> String {
    match &r.result {
        Ok(Outcome::UpToDate) => "up to date".to_owned(),
        Ok(Outcome::Synced {
            changed, deleted, ..
        }) => format!(
            "synced ({changed} refs changed, {deleted} deleted) in {:.1}s",
            r.elapsed.as_secs_f64()
        ),
        Err(e) => format!("FAILED: {e}"),
    }
}

/// The value of a source's `token_env`: `Ok(None)` without one, `Err` when it is not set.
fn source_token(
    loaded: &Loaded,
    token_env: &Option<String>,
) -> Result<Option<SecretString>, String> {
    match token_env {
        Some(k) => match loaded.secrets(std::slice::from_ref(k)).remove(k) {
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
async fn resolve_accounts(loaded: &Loaded, all: Vec<Planned>) -> Vec<Planned> {
    let m = &loaded.config.mirroring;
    let mut out = Vec::new();
    let mut github = m.sources.github.iter();
    let mut gitlab = m.sources.gitlab.iter();
    for mut p in all {
        if p.kind == "gitlab" {
            let Some(src) = gitlab.next() else {
                continue;
            };
            let listed = match source_token(loaded, &src.token_env) {
                Ok(token) => list_gitlab(src, token).await,
                Err(why) => Err(why),
            };
            match listed {
                Ok(repos) => out.extend(from_listing(
                    &p,
                    &m.namespace,
                    &src.filters,
                    &repos,
                    m.allow_private,
                )),
                Err(why) => {
                    p.problem = Some(why);
                    out.push(p);
                }
            }
            continue;
        }
        if p.kind != "github" {
            out.push(p);
            continue;
        }
        let Some(src) = github.next() else {
            continue;
        };
        let token = match source_token(loaded, &src.token_env) {
            Ok(t) => t,
            Err(why) => {
                p.problem = Some(why);
                out.push(p);
                continue;
            }
        };
        let owner = match (&src.username, &src.organization) {
            (Some(u), _) => Owner::User(u.clone()),
            (None, Some(o)) => Owner::Org(o.clone()),
            (None, None) => continue,
        };
        let api = src.api_url.as_deref().unwrap_or(github::DEFAULT_API);
        let listed = match GitHub::new(api, token) {
            Ok(gh) => gh.list(&owner).await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(repos) => {
                let repos: Vec<Listed> = repos
                    .into_iter()
                    .map(|r| Listed {
                        name: r.name,
                        clone_url: r.clone_url,
                        fork: r.fork,
                        archived: r.archived,
                    })
                    .collect();
                out.extend(from_listing(
                    &p,
                    &m.namespace,
                    &src.filters,
                    &repos,
                    m.allow_private,
                ));
            }
            Err(e) => {
                p.problem = Some(format!("cannot list the repositories: {e}"));
                out.push(p);
            }
        }
    }
    unique_names(&mut out);
    out
}

/// The projects of a GitLab group (with subgroups) or user.
async fn list_gitlab(
    src: &autogit_core::config::GitLabSource,
    token: Option<SecretString>,
) -> Result<Vec<Listed>, String> {
    let client = GitLabClient::new(&src.url, token).map_err(|e| e.to_string())?;
    let projects = match (&src.group, &src.username) {
        (Some(g), _) => client.group_projects(g).await,
        (None, Some(u)) => client.user_projects(u).await,
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
        })
        .collect())
}

/// The client for the local GitLab with the `mirror` service account's token, or why not.
fn gitlab_client(
    loaded: &Loaded,
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
    let client = GitLabClient::new(&loaded.config.gitlab.external_url, Some(token.clone()))
        .map_err(|e| e.to_string())?;
    Ok((client, token))
}

pub fn list(ui: &Ui, g: &Global, loaded: &Loaded) -> u8 {
    if !report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let m = &loaded.config.mirroring;
    let all = planned(m);
    // Read-only: a missing database means no sync has run; it is not created here.
    let db = data_dir(g).join("state.db");
    let history = if db.exists() {
        match Store::open(&db).and_then(|s| s.mirror_status()) {
            Ok(h) => h,
            Err(e) => {
                ui.error(&e.to_string());
                return exit::FAILURE;
            }
        }
    } else {
        Vec::new()
    };
    let t_now = now() as i64;
    // Mirrors found by listing an account are not in the configuration: shown from history.
    let mut all = all;
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
            });
        }
    }
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|p| {
            let h = history.iter().find(|h| h.mirror == p.name);
            json!({
                "name": p.name, "kind": p.kind, "source": redact_url(&p.source),
                "target": p.target.full(), "token_env": p.token_env, "problem": p.problem,
                "last_result": h.map(|h| h.last_result.clone()),
                "last_success": h.and_then(|h| h.last_success),
                "last_error_at": h.and_then(|h| h.last_error_at),
                "last_error": h.and_then(|h| h.last_error.clone()),
                "lag_s": h.and_then(|h| h.last_success).map(|s| (t_now - s).max(0)),
                // Kept for scripts written against the first shape.
                "last_sync": h.and_then(|h| h.last_success),
            })
        })
        .collect();
    if ui.json {
        ui.print_json(&json!({
            "enabled": m.enabled, "schedule": m.schedule, "namespace": m.namespace,
            "sources": rows,
        }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec![
        "NAME",
        "KIND",
        "SOURCE",
        "TARGET",
        "TOKEN FROM",
        "LAST SUCCESS",
        "LAST ERROR",
    ]);
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let success = match r["lag_s"].as_i64() {
            Some(lag) => format!("{} ago", human(lag)),
            None => "never".to_owned(),
        };
        let error = match (r["last_error_at"].as_i64(), r["last_error"].as_str()) {
            (Some(at), Some(e)) => format!("{} ago: {}", human((t_now - at).max(0)), short(e)),
            _ => r["problem"]
                .as_str()
                .map_or("-".to_owned(), |p| format!("not synced: {}", short(p))),
        };
        t.add_row(vec![
            s("name"),
            s("kind"),
            s("source"),
            s("target"),
            s("token_env"),
            success,
            error,
        ]);
    }
    println!("{t}");
    println!(
        "mirroring {} · schedule \"{}\" · into group `{}`",
        if m.enabled { "enabled" } else { "disabled" },
        m.schedule,
        m.namespace
    );
    exit::OK
}

fn short(s: &str) -> String {
    let first = s.split(';').next().unwrap_or(s);
    if first.chars().count() > 80 {
        format!("{}…", first.chars().take(79).collect::<String>())
    } else {
        first.to_owned()
    }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// YAML double-quoted form of `s`.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `mirror add`: appends the source to `mirroring.sources` in autogit.yml, changing nothing
/// else (comments, order, layout kept), after checking it and the resulting configuration.
pub fn add(
    ui: &Ui,
    loaded: &Loaded,
    source: &str,
    token_env: Option<&str>,
    org: bool,
    url: Option<&str>,
) -> u8 {
    let Some(path) = loaded.config_path.clone() else {
        ui.error("there is no autogit.yml to add to (the embedded default is in use): `autogit init` writes one");
        return exit::FAILURE;
    };
    if let Some(k) = token_env
        && !(k
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && k.bytes().next().is_some_and(|b| b.is_ascii_uppercase()))
    {
        ui.error(&format!(
            "--token-env {k}: the name of an environment variable (A-Z, 0-9, _), not a token"
        ));
        return exit::FAILURE;
    }
    let m = &loaded.config.mirroring;
    let token = token_env
        .map(|k| format!(", token_env: {k}"))
        .unwrap_or_default();
    let (list, item, already) = if let Some(name) = source.strip_prefix("github:") {
        let key = if org { "organization" } else { "username" };
        let dup =
            m.sources.github.iter().any(|s| {
                (if org { &s.organization } else { &s.username }).as_deref() == Some(name)
            });
        ("github", format!("{{{key}: {}{token}}}", quoted(name)), dup)
    } else if let Some(group) = source.strip_prefix("gitlab:") {
        let u = url
            .map(|u| format!(", url: {}", quoted(u)))
            .unwrap_or_default();
        let dup = m
            .sources
            .gitlab
            .iter()
            .any(|s| s.group.as_deref() == Some(group));
        (
            "gitlab",
            format!("{{group: {}{u}{token}}}", quoted(group)),
            dup,
        )
    } else {
        if let Err(e) = autogit_core::mirror::check_source(source, m.allow_private) {
            ui.error(&format!("{source}: {e}"));
            return exit::FAILURE;
        }
        let dup = m.sources.git.iter().any(|s| s.url == source);
        let item = match token_env {
            Some(k) => format!("{{url: {}, token_env: {k}}}", quoted(source)),
            None => quoted(source),
        };
        ("git", item, dup)
    };
    if already {
        ui.note(&format!(
            "{source} is already a source in {}",
            path.display()
        ));
        return exit::OK;
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            ui.error(&format!("{}: {e}", path.display()));
            return exit::FAILURE;
        }
    };
    let new = match autogit_core::yaml_edit::append_to_list(
        &text,
        &["mirroring", "sources", list],
        &item,
    ) {
        Ok(n) => n,
        Err(e) => {
            ui.error(&format!("{}: {e}", path.display()));
            return exit::FAILURE;
        }
    };
    // The result must load as cleanly as before: never write a file autogit would reject.
    let name = path.display().to_string();
    let check = autogit_core::load::load(&autogit_core::load::LoadInput {
        file: Some((&name, &new)),
        ..Default::default()
    });
    if check.diagnostics.has_errors() {
        ui.diagnostics(&check.diagnostics, &check.sources);
        ui.error(&format!("{} was not changed", path.display()));
        return exit::FAILURE;
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).map_or(0o644, |m| m.permissions().mode() & 0o777);
    if let Err(e) = autogit_drivers::fsx::write_atomic(&path, new.as_bytes(), mode) {
        ui.error(&e.to_string());
        return exit::FAILURE;
    }
    if ui.json {
        ui.print_json(
            &json!({"added": source, "list": format!("mirroring.sources.{list}"), "file": path}),
        );
    } else {
        println!(
            "added {source} to mirroring.sources.{list} in {}",
            path.display()
        );
    }
    exit::OK
}
