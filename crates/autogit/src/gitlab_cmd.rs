//! `autogit gitlab …`: parse, call the GitLab controller (`autogit_app::gitlab`: admin token,
//! bootstrap, rotation, runner tokens, status), render. Never prints a secret unless
//! `--show-secrets` asks.

use crate::cli::{ApiArgs, GitlabCommand};
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_app::gitlab::GitLabController;
use autogit_drivers::gitlab::bootstrap::{self, Report, RunnerTarget, TokenIndex};
use autogit_drivers::secrets::{ExposeSecret, SecretStore};
use serde_json::json;

/// The controller for `--url` (else GitLab's published port on loopback).
pub fn controller(loaded: &Loaded, api: &ApiArgs) -> GitLabController {
    GitLabController::new(loaded.settings.clone(), api.url.clone())
}

/// GitLab's published HTTP port on loopback: how the daemon and `install` reach it.
pub fn local_url(loaded: &Loaded) -> String {
    loaded.gitlab_local_url()
}

/// The URL autogit talks to GitLab on: `--url`, else [`local_url`].
pub fn api_url(api: &ApiArgs, loaded: &Loaded) -> String {
    api.url.clone().unwrap_or_else(|| local_url(loaded))
}

pub fn print_report(ui: &Ui, report: &Report) {
    if ui.json {
        ui.print_json(&json!({ "bootstrap": report }));
        return;
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut t = ui.table();
    t.set_header(vec!["", "CREATED", "ALREADY THERE"]);
    t.add_row(vec![
        "users".to_owned(),
        list(&report.users_created),
        list(&report.users_existing),
    ]);
    t.add_row(vec![
        "groups".to_owned(),
        list(&report.groups_created),
        list(&report.groups_existing),
    ]);
    t.add_row(vec![
        "memberships".to_owned(),
        list(&report.members_added),
        "-".to_owned(),
    ]);
    t.add_row(vec![
        "tokens".to_owned(),
        list(&report.tokens_created),
        list(&report.tokens_kept),
    ]);
    println!("{t}");
    if report.admin_token_minted {
        ui.note("minted a new admin token with gitlab-rails runner");
    }
    if let Some(env) = &report.env_file {
        ui.note(&format!(
            "service account tokens for other tools: {env} (mode 0600)"
        ));
    }
    if !report.root_password_stored {
        ui.note(
            "the initial root password was not captured (GitLab deletes it 24 h after installation); reset it with `gitlab-rake \"gitlab:password:reset[root]\"` if you need it",
        );
    }
}

pub fn run(ui: &Ui, loaded: &Loaded, cmd: GitlabCommand) -> u8 {
    let rt = runtime();
    match cmd {
        GitlabCommand::Bootstrap { api } => match rt.block_on(controller(loaded, &api).bootstrap())
        {
            Ok(report) => {
                print_report(ui, &report);
                exit::OK
            }
            Err(e) => fail(ui, e),
        },
        GitlabCommand::RotateTokens { api } => {
            match rt.block_on(controller(loaded, &api).rotate_tokens()) {
                Ok(rotated) => {
                    if ui.json {
                        ui.print_json(&json!({ "rotated": rotated }));
                    } else if rotated.is_empty() {
                        ui.note("no tokens to rotate: run `autogit gitlab bootstrap` first");
                    } else {
                        for r in &rotated {
                            println!("rotated {r}");
                        }
                    }
                    exit::OK
                }
                Err(e) => fail(ui, e),
            }
        }
        GitlabCommand::RunnerToken {
            group,
            project,
            tags,
            run_untagged,
            protected,
            description,
            api,
        } => {
            let target = match (group, project) {
                (Some(g), _) => RunnerTarget::Group(g),
                (None, Some(p)) => RunnerTarget::Project(p),
                (None, None) => RunnerTarget::Instance,
            };
            let c = controller(loaded, &api);
            match rt.block_on(c.runner_token(&target, &tags, run_untagged, protected, &description))
            {
                Ok(t) => {
                    let path = c
                        .store()
                        .and_then(|s| s.path(&t.secret).map_err(|e| e.to_string()))
                        .map(|p| p.display().to_string());
                    if ui.json {
                        ui.print_json(&json!({
                            "runner_id": t.id, "secret": t.secret, "path": path.ok(),
                        }));
                    } else {
                        println!(
                            "runner {} created; its token is in {}",
                            t.id,
                            path.unwrap_or(t.secret)
                        );
                    }
                    exit::OK
                }
                Err(e) => fail(ui, e),
            }
        }
        GitlabCommand::Status { api } => {
            let c = controller(loaded, &api);
            let last = autogit_drivers::backup::last_backup(&loaded.backup_dir());
            let (authenticated, s) = match rt.block_on(c.status()) {
                Ok(r) => r,
                Err(e) => return fail(ui, e),
            };
            if ui.json {
                ui.print_json(&json!({
                    "url": c.url(), "authenticated": authenticated, "status": s,
                    "last_backup": last.as_ref().map(|(n, size)| json!({"archive": n, "size": size})),
                }));
            } else {
                print_status_table(ui, c.url(), authenticated, &s, last.as_ref());
            }
            if s.health.is_some() {
                exit::OK
            } else {
                exit::FAILURE
            }
        }
        GitlabCommand::Secrets { show_secrets } => {
            match controller(loaded, &ApiArgs { url: None }).store() {
                Ok(store) => secrets(ui, &store, show_secrets),
                Err(e) => fail(ui, e),
            }
        }
    }
}

/// GitLab's status as a table: for `gitlab status` and `status gitlab`.
pub fn print_status_table(
    ui: &Ui,
    url: &str,
    authenticated: bool,
    s: &bootstrap::Status,
    last_backup: Option<&(String, u64)>,
) {
    let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
    let mut t = ui.table();
    t.set_header(vec!["GITLAB", url]);
    t.add_row(vec!["version".to_owned(), show(s.version.clone())]);
    t.add_row(vec!["health".to_owned(), show(s.health.clone())]);
    t.add_row(vec![
        "ready".to_owned(),
        show(s.ready.map(|r| r.to_string())),
    ]);
    if !s.failing_checks.is_empty() {
        t.add_row(vec![
            "failing checks".to_owned(),
            s.failing_checks.join("\n"),
        ]);
    }
    t.add_row(vec![
        "users".to_owned(),
        show(s.users.map(|u| u.to_string())),
    ]);
    t.add_row(vec![
        "runners online".to_owned(),
        match (s.runners_online, s.runners) {
            (Some(o), Some(n)) => format!("{o} of {n}"),
            _ => "unknown".to_owned(),
        },
    ]);
    t.add_row(vec![
        "managed tokens".to_owned(),
        s.managed_tokens.to_string(),
    ]);
    t.add_row(vec![
        "last backup".to_owned(),
        last_backup.map_or_else(|| "none".to_owned(), |(n, _)| n.clone()),
    ]);
    println!("{t}");
    if !authenticated {
        ui.note("no admin token stored: version, users and runners need `autogit gitlab bootstrap` first");
    }
    for e in &s.errors {
        ui.note(&format!("warning: {e}"));
    }
}

fn secrets(ui: &Ui, store: &SecretStore, show: bool) -> u8 {
    let names = match store.names() {
        Ok(n) => n,
        Err(e) => return fail(ui, e),
    };
    let index = TokenIndex::load(store).unwrap_or_default();
    let mut rows = Vec::new();
    for n in &names {
        let value = if show {
            match store.get(n) {
                Ok(v) => v.map(|v| v.expose_secret().to_owned()),
                Err(e) => return fail(ui, e),
            }
        } else {
            None
        };
        let expires = index.tokens.get(n).map(|m| m.expires_at.clone());
        rows.push((n.clone(), expires, value));
    }
    if ui.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(n, exp, v)| {
                let mut o = json!({ "name": n, "expires_at": exp });
                if let Some(v) = v {
                    o["value"] = json!(v);
                }
                o
            })
            .collect();
        ui.print_json(&json!({ "dir": store.dir(), "secrets": items }));
        return exit::OK;
    }
    let mut t = ui.table();
    let mut header = vec!["SECRET", "EXPIRES"];
    if show {
        header.push("VALUE");
    }
    t.set_header(header);
    for (n, exp, v) in rows {
        let mut row = vec![n, exp.unwrap_or_else(|| "-".to_owned())];
        if show {
            row.push(v.unwrap_or_default());
        }
        t.add_row(row);
    }
    println!("{t}");
    ui.note(&format!("stored in {} (mode 0700)", store.dir().display()));
    exit::OK
}

/// What GitLab's REST API says (version, health, readiness, users, runners), for
/// `status gitlab --output json`.
pub fn rest_status_json(loaded: &Loaded) -> serde_json::Value {
    let c = controller(loaded, &ApiArgs { url: None });
    match runtime().block_on(c.status()) {
        Ok((authenticated, s)) => {
            let last = autogit_drivers::backup::last_backup(&loaded.backup_dir());
            json!({
                "url": c.url(), "authenticated": authenticated, "status": s, "error": s.errors.first(),
                "last_backup": last.map(|(n, _)| n),
            })
        }
        Err(e) => json!({"url": c.url(), "error": e}),
    }
}

/// GitLab's table under `status gitlab`.
pub fn print_rest_status(ui: &Ui, loaded: &Loaded) {
    let c = controller(loaded, &ApiArgs { url: None });
    match runtime().block_on(c.status()) {
        Ok((authenticated, s)) => {
            let last = autogit_drivers::backup::last_backup(&loaded.backup_dir());
            print_status_table(ui, c.url(), authenticated, &s, last.as_ref());
        }
        Err(e) => ui.note(&format!("warning: GitLab at {}: {e}", c.url())),
    }
}
