//! The idempotent GitLab bootstrap.
//!
//! 1. The first admin token cannot be had over REST (there is no password grant), so it is
//!    minted once with `gitlab-rails runner` in the GitLab container ([`mint_admin_token`]):
//!    a token value autogit generated itself, for `root`, named `autogit-admin`, scopes `api`
//!    (+ `admin_mode` where GitLab has it), expiring after `gitlab.token_lifetime`. Earlier
//!    `autogit-admin` tokens are revoked by the same script, so running it again is safe.
//! 2. Everything else goes through REST ([`Bootstrap`]): users (missing ones are created with a
//!    random password kept in the secret store; existing users are never changed), groups and
//!    memberships, and the service accounts (bot users `autogit-<name>`) with a personal access
//!    token each, of the narrowest scopes and with an expiry. A second run creates nothing:
//!    a token is re-created only when its stored secret is missing, or it is expired, revoked,
//!    or its scopes changed in the configuration.
//! 3. [`Bootstrap::rotate_tokens`] rotates every autogit-managed token; runner authentication
//!    tokens come from [`Bootstrap::create_runner_token`].
//!
//! Token metadata (ids, expiry, never values) is kept in the secret store as
//! `gitlab-tokens.json`, so the store alone says what autogit manages.

use super::client::{GitLabClient, GitLabError, NewRunner, NewUser, RunnerType};
use crate::engine::{ContainerEngine, EngineError};
use crate::secrets::{ExposeSecret, SecretError, SecretStore, SecretString, random_alnum};
use autogit_core::config::{GitLab as GitLabConfig, ServiceAccount};
use autogit_core::units::Dur;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;

/// Secret holding the admin token (root's `autogit-admin` PAT).
pub const ADMIN_TOKEN: &str = "gitlab-admin-token";
/// Name of the admin PAT in GitLab.
pub const ADMIN_TOKEN_NAME: &str = "autogit-admin";
/// Secret holding the initial root password captured from the container.
pub const ROOT_PASSWORD: &str = "gitlab-root-password";
/// Secret holding token metadata (no values).
pub const TOKEN_INDEX: &str = "gitlab-tokens.json";
/// Where GitLab writes the initial root password (deleted after 24 h).
pub const INITIAL_ROOT_PASSWORD_FILE: &str = "/etc/gitlab/initial_root_password";
/// `gitlab-rails` in the Omnibus image.
pub const GITLAB_RAILS: &str = "/opt/gitlab/bin/gitlab-rails";

/// Secret name of a configured user's initial password.
pub fn user_password_secret(username: &str) -> String {
    format!("gitlab-user-{}-password", username.to_ascii_lowercase())
}

/// Secret name of a service account's token.
pub fn account_token_secret(account: &str) -> String {
    format!("gitlab-sa-{account}-token")
}

/// Secret name of a runner's authentication token.
pub fn runner_token_secret(id: u64) -> String {
    format!("gitlab-runner-{id}-token")
}

/// Env file key of a service account's token: `GITLAB_<NAME>_TOKEN`.
pub fn account_env_key(account: &str) -> String {
    format!(
        "GITLAB_{}_TOKEN",
        account.to_ascii_uppercase().replace('-', "_")
    )
}

/// What can go wrong while bootstrapping. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("gitlab-rails runner failed (exit {code}): {output}")]
    Rails { code: i64, output: String },
    #[error("group `{path}` needs its parent group `{parent}`, which does not exist")]
    MissingParent { path: String, parent: String },
    #[error("group `{group}` lists member `{username}`, who is not a GitLab user")]
    UnknownUser { username: String, group: String },
    #[error("no admin token: run `autogit gitlab bootstrap` first")]
    NoAdminToken,
    #[error("group `{0}` not found")]
    UnknownGroup(String),
    #[error("{TOKEN_INDEX} is damaged: {0}")]
    Index(String),
}

// ---- dates --------------------------------------------------------------------------------

/// A calendar day (UTC), as GitLab's `expires_at` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(i64);

impl Date {
    /// The day of a unix time.
    pub fn from_unix(secs: u64) -> Date {
        Date((secs / 86_400) as i64)
    }

    /// Today (UTC).
    pub fn today() -> Date {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Date::from_unix(secs)
    }

    /// `self` plus `d` (whole days, rounded down).
    pub fn plus(self, d: Dur) -> Date {
        Date(self.0 + (d.as_secs() / 86_400) as i64)
    }

    /// Parses `YYYY-MM-DD` (a day that exists).
    pub fn parse(s: &str) -> Option<Date> {
        let mut it = s.trim().get(..10)?.split('-');
        let y: i64 = it.next()?.parse().ok()?;
        let m: u32 = it.next()?.parse().ok()?;
        let d: u32 = it.next()?.parse().ok()?;
        autogit_core::civil::days_from_civil(y, m, d).map(Date)
    }
}

impl std::fmt::Display for Date {
    /// `YYYY-MM-DD`; a day past 9999-12-31 (never a token's expiry) shows as that day.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = autogit_core::civil::civil_from_days(self.0).unwrap_or(if self.0 < 0 {
            (-9999, 1, 1)
        } else {
            (9999, 12, 31)
        });
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

// ---- running commands in the GitLab container ----------------------------------------------

/// Runs a command in the GitLab container: (exit code, combined output).
pub trait Exec: Send + Sync {
    fn exec(
        &self,
        argv: &[String],
    ) -> impl Future<Output = Result<(i64, String), EngineError>> + Send;
    /// [`Exec::exec`] with `stdin` on the command's standard input: secrets go this way, never
    /// in `argv` (visible in `ps` and in the engine's exec events).
    fn exec_with_stdin(
        &self,
        argv: &[String],
        stdin: &[u8],
    ) -> impl Future<Output = Result<(i64, String), EngineError>> + Send;
}

/// [`Exec`] through a container engine.
#[derive(Debug)]
pub struct InContainer<'a, E: ContainerEngine> {
    pub engine: &'a E,
    /// Container id or name.
    pub container: String,
}

impl<E: ContainerEngine> Exec for InContainer<'_, E> {
    async fn exec(&self, argv: &[String]) -> Result<(i64, String), EngineError> {
        self.engine.exec(&self.container, argv).await
    }
    async fn exec_with_stdin(
        &self,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<(i64, String), EngineError> {
        self.engine
            .exec_with_stdin(&self.container, argv, stdin)
            .await
    }
}

/// The Ruby one-liner `gitlab-rails runner` runs to mint the admin token, `expires_at` a date.
/// The token value is not in it: the script reads it from its first line of standard input
/// (so it is never in an argv, `ps` or `docker events`).
pub fn admin_token_script(expires_at: Date) -> String {
    [
        "u = User.find_by_username('root') || User.admins.order(:id).first".to_owned(),
        "raise 'autogit: no administrator found' unless u".to_owned(),
        format!(
            "u.personal_access_tokens.where(name: '{ADMIN_TOKEN_NAME}', revoked: false).each {{ |old| old.revoke! }}"
        ),
        "s = [:api]".to_owned(),
        "s << :admin_mode if Gitlab::Auth.all_available_scopes.include?(:admin_mode)".to_owned(),
        format!(
            "a = {{ name: '{ADMIN_TOKEN_NAME}', scopes: s, expires_at: Date.parse('{expires_at}') }}"
        ),
        "a[:organization] = Organizations::Organization.default_organization if defined?(Organizations::Organization) && PersonalAccessToken.column_names.include?('organization_id')".to_owned(),
        "v = STDIN.gets.to_s.strip".to_owned(),
        "raise 'autogit: no token on standard input' if v.empty?".to_owned(),
        "t = u.personal_access_tokens.build(a)".to_owned(),
        "t.set_token(v)".to_owned(),
        "t.save!".to_owned(),
        "puts \"autogit-admin-token-id=#{t.id}\"".to_owned(),
    ]
    .join("; ")
}

/// Mints the admin token with `gitlab-rails runner` (seconds: it boots Rails) and stores it
/// as [`ADMIN_TOKEN`]; returns the token's id. Output is redacted before it reaches an error.
pub async fn mint_admin_token(
    exec: &impl Exec,
    store: &SecretStore,
    lifetime: Dur,
    today: Date,
) -> Result<u64, BootstrapError> {
    let token = SecretString::from(format!("glpat-{}", random_alnum(32)?.expose_secret()));
    let expires = today.plus(lifetime);
    let script = admin_token_script(expires);
    let argv = vec![GITLAB_RAILS.to_owned(), "runner".to_owned(), script];
    let mut input = format!("{}\n", token.expose_secret()).into_bytes();
    let result = exec.exec_with_stdin(&argv, &input).await;
    secrecy::zeroize::Zeroize::zeroize(&mut input);
    let (code, output) = result?;
    let output = output.replace(token.expose_secret(), "<redacted>");
    let id = output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("autogit-admin-token-id=")
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match (code, id) {
        (0, Some(id)) => {
            store.put(ADMIN_TOKEN, &token)?;
            let mut index = TokenIndex::load(store)?;
            index.tokens.insert(
                ADMIN_TOKEN.to_owned(),
                TokenMeta {
                    pat_id: id,
                    username: "root".to_owned(),
                    name: ADMIN_TOKEN_NAME.to_owned(),
                    scopes: vec!["api".to_owned()],
                    expires_at: expires.to_string(),
                    env_key: None,
                },
            );
            index.save(store)?;
            Ok(id)
        }
        _ => Err(BootstrapError::Rails {
            code,
            output: tail(&output, 20),
        }),
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Copies `/etc/gitlab/initial_root_password` into the secret store as [`ROOT_PASSWORD`].
/// `Ok(true)` when the password is stored (now or before), `Ok(false)` when the file is gone
/// (GitLab deletes it 24 h after installation) and nothing was stored earlier. The file's
/// content never reaches an error or a log.
pub async fn capture_initial_root_password(
    exec: &impl Exec,
    store: &SecretStore,
) -> Result<bool, BootstrapError> {
    let argv = vec!["cat".to_owned(), INITIAL_ROOT_PASSWORD_FILE.to_owned()];
    let (code, mut output) = exec.exec(&argv).await?;
    let found = if code == 0 {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix("Password:"))
            .map(|p| SecretString::from(p.trim().to_owned()))
            .filter(|p| !p.expose_secret().is_empty())
    } else {
        None
    };
    secrecy::zeroize::Zeroize::zeroize(&mut output);
    match found {
        Some(p) => {
            store.put(ROOT_PASSWORD, &p)?;
            Ok(true)
        }
        None => Ok(store.contains(ROOT_PASSWORD)?),
    }
}

/// A client authenticated with the stored admin token, minting one first when none is
/// stored or the stored one is rejected (401), expired or revoked.
pub async fn admin_client(
    base: &GitLabClient,
    exec: &impl Exec,
    store: &SecretStore,
    lifetime: Dur,
    today: Date,
) -> Result<(GitLabClient, bool), BootstrapError> {
    if let Some(token) = store.get(ADMIN_TOKEN)? {
        let client = base.clone().with_token(Some(token));
        match client.current_token().await {
            Ok(t) if t.active && !t.revoked && !expired(t.expires_at.as_deref(), today) => {
                // A token put in the store by hand (or by an older autogit) becomes managed:
                // `rotate-tokens` needs its id.
                let mut index = TokenIndex::load(store)?;
                if index.tokens.get(ADMIN_TOKEN).map(|m| m.pat_id) != Some(t.id) {
                    index.tokens.insert(
                        ADMIN_TOKEN.to_owned(),
                        TokenMeta {
                            pat_id: t.id,
                            username: "root".to_owned(),
                            name: t.name.clone(),
                            scopes: t.scopes.clone(),
                            expires_at: t.expires_at.clone().unwrap_or_default(),
                            env_key: None,
                        },
                    );
                    index.save(store)?;
                }
                return Ok((client, false));
            }
            Ok(_) | Err(GitLabError::Unauthorized { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    mint_admin_token(exec, store, lifetime, today).await?;
    let token = store
        .get(ADMIN_TOKEN)?
        .ok_or(BootstrapError::NoAdminToken)?;
    let client = base.clone().with_token(Some(token));
    client.current_token().await?;
    Ok((client, true))
}

fn expired(expires_at: Option<&str>, today: Date) -> bool {
    expires_at.and_then(Date::parse).is_some_and(|d| d <= today)
}

// ---- token metadata -------------------------------------------------------------------------

/// What autogit knows about one token it manages (never the value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMeta {
    pub pat_id: u64,
    pub username: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: String,
    /// Key in the env file, for service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_key: Option<String>,
}

/// A runner whose authentication token autogit stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerMeta {
    pub id: u64,
    pub runner_type: String,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    /// Only jobs of protected branches and tags (absent in an index written before: no).
    #[serde(default)]
    pub protected: bool,
}

/// `gitlab-tokens.json`: secret name → metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIndex {
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenMeta>,
    #[serde(default)]
    pub runners: BTreeMap<String, RunnerMeta>,
}

impl TokenIndex {
    /// Loads the index (empty when absent).
    pub fn load(store: &SecretStore) -> Result<TokenIndex, BootstrapError> {
        match store.get(TOKEN_INDEX)? {
            None => Ok(TokenIndex::default()),
            Some(text) => serde_json::from_str(text.expose_secret())
                .map_err(|e| BootstrapError::Index(e.to_string())),
        }
    }

    /// Saves the index (atomically, 0600).
    pub fn save(&self, store: &SecretStore) -> Result<(), BootstrapError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| BootstrapError::Index(e.to_string()))?;
        store.put(TOKEN_INDEX, &SecretString::from(text))?;
        Ok(())
    }
}

// ---- the bootstrap ------------------------------------------------------------------------

/// What a bootstrap run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub users_created: Vec<String>,
    pub users_existing: Vec<String>,
    pub groups_created: Vec<String>,
    pub groups_existing: Vec<String>,
    /// `group:username` pairs added.
    pub members_added: Vec<String>,
    pub tokens_created: Vec<String>,
    pub tokens_kept: Vec<String>,
    /// Whether the admin token was minted in this run.
    pub admin_token_minted: bool,
    /// Whether the initial root password is in the secret store.
    pub root_password_stored: bool,
    pub env_file: Option<String>,
}

/// Where a runner belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunnerTarget {
    Instance,
    /// A group by full path.
    Group(String),
    /// A project by numeric id.
    Project(u64),
}

/// A runner authentication token just created and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerToken {
    pub id: u64,
    /// The secret that holds the `glrt-` token.
    pub secret: String,
}

/// The REST part of the bootstrap, with an admin client.
#[derive(Debug)]
pub struct Bootstrap<'a> {
    pub client: GitLabClient,
    pub store: &'a SecretStore,
    pub config: &'a GitLabConfig,
    pub today: Date,
}

impl<'a> Bootstrap<'a> {
    /// A bootstrap with `client` (authenticated as an administrator).
    pub fn new(
        client: GitLabClient,
        store: &'a SecretStore,
        config: &'a GitLabConfig,
        today: Date,
    ) -> Bootstrap<'a> {
        Bootstrap {
            client,
            store,
            config,
            today,
        }
    }

    fn expiry(&self) -> Date {
        self.today.plus(self.config.token_lifetime)
    }

    /// Makes GitLab match the configuration; creates only what is missing.
    pub async fn ensure(&self) -> Result<Report, BootstrapError> {
        let mut report = Report::default();
        self.ensure_users(&mut report).await?;
        self.ensure_groups(&mut report).await?;
        self.ensure_service_accounts(&mut report).await?;
        report.env_file = Some(self.write_env_file()?.display().to_string());
        report.root_password_stored = self.store.contains(ROOT_PASSWORD)?;
        Ok(report)
    }

    async fn ensure_users(&self, report: &mut Report) -> Result<(), BootstrapError> {
        for u in &self.config.users {
            if self.client.user_by_username(&u.username).await?.is_some() {
                report.users_existing.push(u.username.clone());
                continue;
            }
            let secret = user_password_secret(&u.username);
            let password = random_alnum(24)?;
            // Stored first: a user GitLab created is never left without its password.
            self.store.put(&secret, &password)?;
            let created = self
                .client
                .create_user(&NewUser {
                    username: &u.username,
                    email: &u.email,
                    name: &u.name,
                    password: Some(&password),
                    admin: u.role == autogit_core::config::UserRole::Admin,
                })
                .await;
            if let Err(e) = created {
                self.store.remove(&secret)?;
                return Err(e.into());
            }
            report.users_created.push(u.username.clone());
        }
        Ok(())
    }

    async fn ensure_groups(&self, report: &mut Report) -> Result<(), BootstrapError> {
        let mut groups: Vec<_> = self.config.groups.iter().collect();
        // Parents first.
        groups.sort_by_key(|g| g.path.matches('/').count());
        for g in groups {
            let group = match self.client.group(&g.path).await? {
                Some(found) => {
                    report.groups_existing.push(g.path.clone());
                    found
                }
                None => {
                    let (parent_id, leaf) = match g.path.rsplit_once('/') {
                        Some((parent, leaf)) => {
                            let p = self.client.group(parent).await?.ok_or_else(|| {
                                BootstrapError::MissingParent {
                                    path: g.path.clone(),
                                    parent: parent.to_owned(),
                                }
                            })?;
                            (Some(p.id), leaf)
                        }
                        None => (None, g.path.as_str()),
                    };
                    let created = self
                        .client
                        .create_group(&g.name, leaf, g.visibility.as_str(), parent_id)
                        .await?;
                    report.groups_created.push(g.path.clone());
                    created
                }
            };
            if g.members.is_empty() {
                continue;
            }
            let existing = self.client.group_members(group.id).await?;
            for m in &g.members {
                if existing
                    .iter()
                    .any(|e| e.username.eq_ignore_ascii_case(&m.username))
                {
                    continue;
                }
                let user = self
                    .client
                    .user_by_username(&m.username)
                    .await?
                    .ok_or_else(|| BootstrapError::UnknownUser {
                        username: m.username.clone(),
                        group: g.path.clone(),
                    })?;
                match self
                    .client
                    .add_group_member(group.id, user.id, m.access.level())
                    .await
                {
                    Ok(_) | Err(GitLabError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                report
                    .members_added
                    .push(format!("{}:{}", g.path, m.username));
            }
        }
        Ok(())
    }

    async fn ensure_service_accounts(&self, report: &mut Report) -> Result<(), BootstrapError> {
        let mut index = TokenIndex::load(self.store)?;
        let host = self.config.hostname.clone();
        for account in &self.config.service_accounts {
            let username = account.username();
            let user = match self.client.user_by_username(&username).await? {
                Some(u) => u,
                None => {
                    self.client
                        .create_user(&NewUser {
                            username: &username,
                            email: &format!("{username}@noreply.{host}"),
                            name: &format!("autogit {} (service account)", account.name),
                            password: None,
                            admin: false,
                        })
                        .await?
                }
            };
            let secret = account_token_secret(&account.name);
            let meta = index.tokens.get(&secret).cloned();
            let have_secret = self.store.contains(&secret)?;
            let tokens = self.client.personal_access_tokens(user.id).await?;
            let current = meta
                .as_ref()
                .and_then(|m| tokens.iter().find(|t| t.id == m.pat_id));
            let usable = current.is_some_and(|t| {
                t.active
                    && !t.revoked
                    && !expired(t.expires_at.as_deref(), self.today)
                    && same_scopes(&t.scopes, &account.scopes)
            });
            if usable && have_secret {
                report.tokens_kept.push(secret);
                continue;
            }
            // Revoke what autogit made before: one live token per account.
            for t in tokens
                .iter()
                .filter(|t| t.name == username && t.active && !t.revoked)
            {
                match self.client.revoke_personal_access_token(t.id).await {
                    Ok(()) | Err(GitLabError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let created = self
                .client
                .create_personal_access_token(
                    user.id,
                    &username,
                    &account.scopes,
                    &self.expiry().to_string(),
                )
                .await?;
            self.store.put(&secret, &created.token)?;
            index.tokens.insert(
                secret.clone(),
                meta_of(
                    account,
                    &username,
                    created.id,
                    created.expires_at,
                    self.expiry(),
                ),
            );
            index.save(self.store)?;
            report.tokens_created.push(secret);
        }
        Ok(())
    }

    /// Writes `gitlab.env`: `GITLAB_URL` and one `GITLAB_<NAME>_TOKEN` per service account
    /// whose token is stored.
    pub fn write_env_file(&self) -> Result<std::path::PathBuf, BootstrapError> {
        let mut entries = vec![(
            "GITLAB_URL".to_owned(),
            SecretString::from(self.config.external_url.clone()),
        )];
        for account in &self.config.service_accounts {
            if let Some(v) = self.store.get(&account_token_secret(&account.name))? {
                entries.push((account_env_key(&account.name), v));
            }
        }
        Ok(self.store.write_env_file(&entries)?)
    }

    /// Rotates every autogit-managed token (service accounts, then the admin token last) with
    /// `POST /personal_access_tokens/:id/rotate`; stores the new values and rewrites the env
    /// file. Returns the rotated secrets' names.
    pub async fn rotate_tokens(&mut self) -> Result<Vec<String>, BootstrapError> {
        let mut index = TokenIndex::load(self.store)?;
        let mut names: Vec<String> = index
            .tokens
            .keys()
            .filter(|k| k.as_str() != ADMIN_TOKEN)
            .cloned()
            .collect();
        if index.tokens.contains_key(ADMIN_TOKEN) {
            names.push(ADMIN_TOKEN.to_owned());
        }
        let expiry = self.expiry().to_string();
        let mut rotated = Vec::new();
        for name in names {
            let Some(meta) = index.tokens.get(&name).cloned() else {
                continue;
            };
            let new = self
                .client
                .rotate_personal_access_token(meta.pat_id, Some(&expiry))
                .await?;
            self.store.put(&name, &new.token)?;
            let updated = TokenMeta {
                pat_id: new.id,
                expires_at: new.expires_at.clone().unwrap_or_else(|| expiry.clone()),
                ..meta
            };
            index.tokens.insert(name.clone(), updated);
            index.save(self.store)?;
            if name == ADMIN_TOKEN {
                self.client = self.client.clone().with_token(Some(new.token));
            }
            rotated.push(name);
        }
        self.write_env_file()?;
        Ok(rotated)
    }

    /// Creates a runner with `POST /user/runners` and stores its `glrt-` authentication token
    /// as `gitlab-runner-<id>-token`.
    pub async fn create_runner_token(
        &self,
        target: &RunnerTarget,
        tags: &[String],
        run_untagged: bool,
        protected: bool,
        description: &str,
    ) -> Result<RunnerToken, BootstrapError> {
        let (runner_type, group_id, project_id) = match target {
            RunnerTarget::Instance => (RunnerType::Instance, None, None),
            RunnerTarget::Group(path) => {
                let g = self
                    .client
                    .group(path)
                    .await?
                    .ok_or_else(|| BootstrapError::UnknownGroup(path.clone()))?;
                (RunnerType::Group, Some(g.id), None)
            }
            RunnerTarget::Project(id) => (RunnerType::Project, None, Some(*id)),
        };
        let created = self
            .client
            .create_runner(&NewRunner {
                runner_type,
                group_id,
                project_id,
                description: description.to_owned(),
                tags: tags.to_vec(),
                run_untagged,
                protected,
            })
            .await?;
        let secret = runner_token_secret(created.id);
        self.store.put(&secret, &created.token)?;
        let mut index = TokenIndex::load(self.store)?;
        index.runners.insert(
            secret.clone(),
            RunnerMeta {
                id: created.id,
                runner_type: runner_type.as_str().to_owned(),
                description: description.to_owned(),
                tags: tags.to_vec(),
                run_untagged,
                protected,
            },
        );
        index.save(self.store)?;
        Ok(RunnerToken {
            id: created.id,
            secret,
        })
    }
}

fn meta_of(
    account: &ServiceAccount,
    username: &str,
    id: u64,
    expires_at: Option<String>,
    fallback: Date,
) -> TokenMeta {
    TokenMeta {
        pat_id: id,
        username: username.to_owned(),
        name: username.to_owned(),
        scopes: account.scopes.clone(),
        expires_at: expires_at.unwrap_or_else(|| fallback.to_string()),
        env_key: Some(account_env_key(&account.name)),
    }
}

fn same_scopes(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// What `gitlab status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub version: Option<String>,
    pub health: Option<String>,
    pub ready: Option<bool>,
    /// The readiness checks that failed, with GitLab's messages (when `ready` is false).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing_checks: Vec<String>,
    pub users: Option<usize>,
    pub runners: Option<usize>,
    pub runners_online: Option<usize>,
    pub managed_tokens: usize,
    pub errors: Vec<String>,
}

/// Collects version, health, readiness, user and runner counts; each failure is noted, not
/// fatal.
pub async fn status(client: &GitLabClient, store: &SecretStore) -> Status {
    let mut s = Status::default();
    match client.health().await {
        Ok(h) => s.health = Some(h.trim().to_owned()),
        Err(e) => s.errors.push(e.to_string()),
    }
    match client.readiness_report().await {
        Ok(r) => {
            s.ready = Some(r.ready);
            s.failing_checks = r.failing;
        }
        Err(e) => s.errors.push(e.to_string()),
    }
    match client.version().await {
        Ok(v) => s.version = Some(v.version),
        Err(e) => s.errors.push(e.to_string()),
    }
    match client
        .get_all::<super::client::User>("users?active=true&pagination=keyset&order_by=id&sort=asc")
        .await
    {
        Ok(u) => s.users = Some(u.len()),
        Err(e) => s.errors.push(e.to_string()),
    }
    match client.all_runners().await {
        Ok(r) => {
            s.runners_online = Some(r.iter().filter(|x| x.online == Some(true)).count());
            s.runners = Some(r.len());
        }
        Err(e) => s.errors.push(e.to_string()),
    }
    s.managed_tokens = TokenIndex::load(store).map_or(0, |i| i.tokens.len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_add() {
        for (unix, text) in [
            (0, "1970-01-01"),
            (951_782_400, "2000-02-29"),
            (1_764_028_800, "2025-11-25"),
        ] {
            let d = Date::from_unix(unix);
            assert_eq!(d.to_string(), text);
            assert_eq!(Date::parse(text), Some(d));
        }
        let d = Date::parse("2025-12-31").unwrap();
        assert_eq!(d.plus(Dur::secs(86_400)).to_string(), "2026-01-01");
        assert_eq!(d.plus(Dur::secs(90 * 86_400)).to_string(), "2026-03-31");
        assert!(Date::parse("2025-13-01").is_none());
        assert!(Date::parse("2025-02-29").is_none(), "no such day");
        assert_eq!(Date::from_unix(u64::MAX).to_string(), "9999-12-31");
        assert!(expired(
            Some("2025-11-25"),
            Date::parse("2025-11-25").unwrap()
        ));
        assert!(!expired(
            Some("2025-11-26"),
            Date::parse("2025-11-25").unwrap()
        ));
        assert!(!expired(None, Date::parse("2025-11-25").unwrap()));
    }

    #[test]
    fn the_script_revokes_by_name_and_embeds_only_what_it_must() {
        let s = admin_token_script(Date::parse("2026-02-23").unwrap());
        assert!(s.contains("where(name: 'autogit-admin', revoked: false)"));
        assert!(s.contains("old.revoke!"));
        // The token comes from standard input, never the script (an argument).
        assert!(s.contains("v = STDIN.gets.to_s.strip") && s.contains("t.set_token(v)"));
        assert!(!s.contains("glpat-"));
        assert!(s.contains("Date.parse('2026-02-23')"));
        assert!(s.contains(":admin_mode"));
        assert!(!s.contains('\n'), "one line");
    }

    #[test]
    fn env_keys_and_secret_names() {
        assert_eq!(account_env_key("ci"), "GITLAB_CI_TOKEN");
        assert_eq!(account_env_key("my-bot"), "GITLAB_MY_BOT_TOKEN");
        for n in [
            account_token_secret("ci"),
            user_password_secret("Alice.B"),
            runner_token_secret(7),
        ] {
            assert!(crate::secrets::valid_name(&n), "{n}");
        }
    }
}
