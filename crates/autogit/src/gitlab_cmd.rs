//! `autogit gitlab …`: bootstrap users and tokens, rotate tokens, create runner tokens, show
//! GitLab's status and the secret store. The work is in `autogit_drivers::gitlab`; this module
//! finds GitLab, prints results and never prints a secret unless `--show-secrets` asks.

use crate::cli::Global;
use crate::ctx::{Loaded, data_dir};
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::engine::{ContainerEngine, EngineError};
use autogit_drivers::gitlab::bootstrap::{
    self, ADMIN_TOKEN, Bootstrap, Date, Exec, Report, RunnerTarget, TokenIndex, admin_client,
    capture_initial_root_password,
};
use autogit_drivers::gitlab::client::{GitLabClient, RetryPolicy};
use autogit_drivers::secrets::{ExposeSecret, SecretStore};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum GitlabCommand {
    /// Create what the configuration names and GitLab lacks: the admin token, users, groups,
    /// service accounts and their tokens (idempotent; `install` runs it)
    Bootstrap {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Rotate every token autogit manages (service accounts, then the admin token)
    RotateTokens {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create a runner in GitLab and store its authentication token (GitLab 17+ flow)
    RunnerToken {
        /// A group runner of this group (full path) instead of an instance runner
        #[arg(long, conflicts_with = "project")]
        group: Option<String>,
        /// A project runner of this project (numeric id)
        #[arg(long)]
        project: Option<u64>,
        /// A tag jobs can select (repeatable)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Also pick up jobs without tags
        #[arg(long)]
        run_untagged: bool,
        /// Shown in GitLab's runner list
        #[arg(long, default_value = "autogit runner")]
        description: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Version, health, readiness, users and runners online
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Names of the secrets autogit stores (values only with --show-secrets)
    Secrets {
        /// Print the values too (the initial root password, tokens)
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// GitLab's address as seen from this host
    /// [default: http://127.0.0.1:<gitlab.ports.http>]
    #[arg(long, env = "AUTOGIT_GITLAB_URL", value_name = "URL")]
    pub url: Option<String>,
}

/// The URL autogit talks to GitLab on: `--url`, else [`local_url`].
pub fn api_url(api: &ApiArgs, loaded: &Loaded) -> String {
    api.url.clone().unwrap_or_else(|| local_url(loaded))
}

/// GitLab's published HTTP port on loopback: how the daemon and `install` reach it.
pub fn local_url(loaded: &Loaded) -> String {
    format!("http://127.0.0.1:{}", loaded.config.gitlab.ports.http)
}

/// A client with the admin token `gitlab bootstrap` stored (none stored is an error that says
/// to bootstrap); for commands that act on GitLab without minting a token themselves.
pub fn stored_admin_client(store: &SecretStore, url: &str) -> Result<GitLabClient, String> {
    let token = store
        .get(ADMIN_TOKEN)
        .map_err(|e| e.to_string())?
        .ok_or("no admin token stored: run `autogit gitlab bootstrap` first")?;
    GitLabClient::new(url, Some(token)).map_err(|e| e.to_string())
}

/// Runs commands in the platform's GitLab container; connects to the engine only when a
/// command must actually run there (minting the admin token, reading the root password).
struct GitLabContainer<'a> {
    loaded: &'a Loaded,
}

impl GitLabContainer<'_> {
    async fn engine_and_id(&self) -> Result<(Docker, String), EngineError> {
        let engine = Docker::connect(
            self.loaded.config.platform.socket.as_deref().map(Path::new),
            &self.loaded.env,
        )
        .await?;
        let project = &self.loaded.config.platform.project;
        let id = engine
            .list(project)
            .await?
            .into_iter()
            .find(|o| o.service == "gitlab")
            .map(|o| o.id)
            .ok_or_else(|| EngineError::NotFound {
                what: format!(
                    "the gitlab container of project `{project}` (run `autogit install` first)"
                ),
            })?;
        Ok((engine, id))
    }
}

impl Exec for GitLabContainer<'_> {
    async fn exec(&self, argv: &[String]) -> Result<(i64, String), EngineError> {
        let (engine, id) = self.engine_and_id().await?;
        engine.exec(&id, argv).await
    }
    async fn exec_with_stdin(
        &self,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<(i64, String), EngineError> {
        let (engine, id) = self.engine_and_id().await?;
        engine.exec_with_stdin(&id, argv, stdin).await
    }
}

fn open_store(ui: &Ui, g: &Global) -> Result<SecretStore, u8> {
    let data = data_dir(g);
    SecretStore::open(&data).map_err(|e| fail(ui, e))
}

/// Captures the initial root password (when GitLab still has it) and returns a client with
/// a working admin token, minting one when needed.
async fn admin(
    loaded: &Loaded,
    store: &SecretStore,
    url: &str,
) -> Result<(GitLabClient, bool), String> {
    let base = GitLabClient::new(url, None).map_err(|e| e.to_string())?;
    let exec = GitLabContainer { loaded };
    admin_client(
        &base,
        &exec,
        store,
        loaded.config.gitlab.token_lifetime,
        Date::today(),
    )
    .await
    .map_err(|e| format!("cannot get an admin token for {url}: {e}"))
}

/// Creates an instance runner in GitLab (`POST /user/runners`) for `runner register`:
/// (runner id, secret name, token). The token is stored in the secret store first.
pub(crate) fn create_instance_runner(
    g: &Global,
    loaded: &Loaded,
    api: &ApiArgs,
    tags: &[String],
    description: &str,
) -> Result<(u64, String, autogit_drivers::secrets::SecretString), String> {
    let store = SecretStore::open(&data_dir(g)).map_err(|e| e.to_string())?;
    let url = api_url(api, loaded);
    runtime().block_on(async {
        let (client, _) = admin(loaded, &store, &url).await?;
        let boot = Bootstrap::new(client, &store, &loaded.config.gitlab, Date::today());
        let t = boot
            .create_runner_token(&RunnerTarget::Instance, tags, tags.is_empty(), description)
            .await
            .map_err(|e| format!("creating a runner in GitLab: {e}"))?;
        let token = store
            .get(&t.secret)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the token {} was not stored", t.secret))?;
        Ok((t.id, t.secret, token))
    })
}

/// A stored runner token, by secret name.
pub(crate) fn stored_secret(
    g: &Global,
    name: &str,
) -> Option<autogit_drivers::secrets::SecretString> {
    SecretStore::open(&data_dir(g)).ok()?.get(name).ok()?
}

/// The bootstrap, for `gitlab bootstrap` and `install`. Returns the report or a message.
pub async fn bootstrap_with(
    loaded: &Loaded,
    store: &SecretStore,
    url: &str,
) -> Result<Report, String> {
    let exec = GitLabContainer { loaded };
    // The password file exists only in a container GitLab created less than 24 h ago; a
    // missing engine or container here is not an error when the admin token still works.
    let captured = capture_initial_root_password(&exec, store).await;
    let (client, minted) = admin(loaded, store, url).await?;
    let boot = Bootstrap::new(client, store, &loaded.config.gitlab, Date::today());
    let mut report = boot.ensure().await.map_err(|e| e.to_string())?;
    report.admin_token_minted = minted;
    if let Ok(true) = captured {
        report.root_password_stored = true;
    }
    Ok(report)
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

pub fn run(ui: &Ui, g: &Global, loaded: &Loaded, cmd: GitlabCommand) -> u8 {
    let store = match open_store(ui, g) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match cmd {
        GitlabCommand::Bootstrap { api } => {
            let url = api_url(&api, loaded);
            match runtime().block_on(bootstrap_with(loaded, &store, &url)) {
                Ok(report) => {
                    print_report(ui, &report);
                    exit::OK
                }
                Err(e) => fail(ui, e),
            }
        }
        GitlabCommand::RotateTokens { api } => {
            let url = api_url(&api, loaded);
            runtime().block_on(async {
                let (client, _) = match admin(loaded, &store, &url).await {
                    Ok(c) => c,
                    Err(e) => return fail(ui, e),
                };
                let mut boot = Bootstrap::new(client, &store, &loaded.config.gitlab, Date::today());
                match boot.rotate_tokens().await {
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
                    Err(e) => fail(ui, format!("rotating tokens: {e}")),
                }
            })
        }
        GitlabCommand::RunnerToken {
            group,
            project,
            tags,
            run_untagged,
            description,
            api,
        } => {
            let url = api_url(&api, loaded);
            let target = match (group, project) {
                (Some(g), _) => RunnerTarget::Group(g),
                (None, Some(p)) => RunnerTarget::Project(p),
                (None, None) => RunnerTarget::Instance,
            };
            runtime().block_on(async {
                let (client, _) = match admin(loaded, &store, &url).await {
                    Ok(c) => c,
                    Err(e) => return fail(ui, e),
                };
                let boot = Bootstrap::new(client, &store, &loaded.config.gitlab, Date::today());
                match boot
                    .create_runner_token(&target, &tags, run_untagged, &description)
                    .await
                {
                    Ok(t) => {
                        let path = store.path(&t.secret).map(|p| p.display().to_string());
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
                    Err(e) => fail(ui, format!("creating a runner: {e}")),
                }
            })
        }
        GitlabCommand::Status { api } => {
            let url = api_url(&api, loaded);
            let last =
                autogit_drivers::backup::last_backup(&crate::backup_cmd::backup_dir(g, loaded));
            gitlab_status(ui, &store, &url, last)
        }
        GitlabCommand::Secrets { show_secrets } => secrets(ui, &store, show_secrets),
    }
}

/// `gitlab status` (and the GitLab part of `status gitlab`): the admin token when stored,
/// else the unauthenticated endpoints only.
pub fn gitlab_status(
    ui: &Ui,
    store: &SecretStore,
    url: &str,
    last_backup: Option<(String, u64)>,
) -> u8 {
    let (authenticated, s) = match fetch_status(store, url) {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    if ui.json {
        ui.print_json(&json!({
            "url": url, "authenticated": authenticated, "status": s,
            "last_backup": last_backup.as_ref().map(|(n, size)| json!({"archive": n, "size": size})),
        }));
    } else {
        print_status_table(ui, url, authenticated, &s, last_backup.as_ref());
    }
    if s.health.is_some() {
        exit::OK
    } else {
        exit::FAILURE
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

/// GitLab's status over REST: authenticated with the stored admin token when there is one.
pub fn fetch_status(store: &SecretStore, url: &str) -> Result<(bool, bootstrap::Status), String> {
    let token = store.get(ADMIN_TOKEN).map_err(|e| e.to_string())?;
    let authenticated = token.is_some();
    // A status answers quickly: one retry, short timeouts (the bootstrap keeps the patient
    // default policy).
    let client = GitLabClient::new(url, token)
        .map_err(|e| e.to_string())?
        .with_retry(quick_retry());
    Ok((
        authenticated,
        runtime().block_on(bootstrap::status(&client, store)),
    ))
}

/// The retry policy of status-like calls.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        first_delay: std::time::Duration::from_millis(200),
        max_delay: std::time::Duration::from_secs(1),
        max_retry_after: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(10),
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
pub fn rest_status_json(g: &Global, loaded: &Loaded) -> serde_json::Value {
    let url = local_url(loaded);
    let store = match SecretStore::open(&data_dir(g)) {
        Ok(s) => s,
        Err(e) => return serde_json::json!({"url": url, "error": e.to_string()}),
    };
    match fetch_status(&store, &url) {
        Ok((authenticated, s)) => {
            let last = autogit_drivers::backup::last_backup(&loaded.backup_dir());
            serde_json::json!({
                "url": url, "authenticated": authenticated, "status": s, "error": s.errors.first(),
                "last_backup": last.map(|(n, _)| n),
            })
        }
        Err(e) => serde_json::json!({"url": url, "error": e}),
    }
}

/// GitLab's table under `status gitlab`.
pub fn print_rest_status(ui: &Ui, g: &Global, loaded: &Loaded) {
    let url = local_url(loaded);
    let status = SecretStore::open(&data_dir(g))
        .map_err(|e| e.to_string())
        .and_then(|store| fetch_status(&store, &url));
    match status {
        Ok((authenticated, s)) => {
            let last = autogit_drivers::backup::last_backup(&loaded.backup_dir());
            print_status_table(ui, &url, authenticated, &s, last.as_ref());
        }
        Err(e) => ui.note(&format!("warning: GitLab at {url}: {e}")),
    }
}
