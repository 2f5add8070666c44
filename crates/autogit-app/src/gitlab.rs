//! The GitLab controller: the admin token (captured initial root password, or minted with
//! `gitlab-rails runner` in the container, the token on stdin), the idempotent bootstrap of
//! users, groups and service-account tokens, token rotation, runner tokens and GitLab's status.
//! The REST client and the bootstrap steps are `drivers::gitlab`; this is the workflow between
//! them and the engine.

use crate::Settings;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::engine::{ContainerEngine, EngineError};
use autogit_drivers::gitlab::bootstrap::{
    self, ADMIN_TOKEN, Bootstrap, Date, Exec, Report, RunnerMeta, RunnerTarget, RunnerToken,
    TokenIndex, admin_client, capture_initial_root_password,
};
use autogit_drivers::gitlab::client::{GitLabClient, RetryPolicy};
use autogit_drivers::secrets::{SecretStore, SecretString};
use std::sync::Arc;

/// A client with the admin token `gitlab bootstrap` stored (none stored is an error that says
/// to bootstrap); for operations that act on GitLab without minting a token themselves.
pub fn stored_admin_client(store: &SecretStore, url: &str) -> Result<GitLabClient, String> {
    let token = store
        .get(ADMIN_TOKEN)
        .map_err(|e| e.to_string())?
        .ok_or("no admin token stored: run `autogit gitlab bootstrap` first")?;
    GitLabClient::new(url, Some(token)).map_err(|e| e.to_string())
}

/// The retry policy of status-like calls: one retry, short timeouts (the bootstrap keeps the
/// patient default policy).
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        first_delay: std::time::Duration::from_millis(200),
        max_delay: std::time::Duration::from_secs(1),
        max_retry_after: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(10),
    }
}

/// Runs commands in the platform's GitLab container; connects to the engine only when a
/// command must actually run there (minting the admin token, reading the root password).
#[derive(Debug)]
pub struct GitLabContainer<'a> {
    settings: &'a Settings,
}

impl GitLabContainer<'_> {
    async fn engine_and_id(&self) -> Result<(Docker, String), EngineError> {
        let engine = Docker::connect(self.settings.socket(), &self.settings.env).await?;
        let project = &self.settings.config.platform.project;
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

#[derive(Debug)]
pub struct GitLabController {
    settings: Arc<Settings>,
    /// Where GitLab answers (`--url`, else the published HTTP port on loopback).
    url: String,
}

impl GitLabController {
    pub fn new(settings: Arc<Settings>, url: Option<String>) -> Self {
        let url = url.unwrap_or_else(|| settings.gitlab_local_url());
        Self { settings, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The secret store of the data dir (created 0700 when missing).
    pub fn store(&self) -> Result<SecretStore, String> {
        let data = self.settings.ensure_data_dir()?;
        SecretStore::open(&data).map_err(|e| e.to_string())
    }

    fn exec(&self) -> GitLabContainer<'_> {
        GitLabContainer {
            settings: &self.settings,
        }
    }

    /// A client with a working admin token, minting one when needed; `true` when minted.
    pub async fn admin(&self, store: &SecretStore) -> Result<(GitLabClient, bool), String> {
        let base = GitLabClient::new(&self.url, None).map_err(|e| e.to_string())?;
        admin_client(
            &base,
            &self.exec(),
            store,
            self.settings.config.gitlab.token_lifetime,
            Date::today(),
        )
        .await
        .map_err(|e| format!("cannot get an admin token for {}: {e}", self.url))
    }

    /// Creates what the configuration names and GitLab lacks (idempotent).
    pub async fn bootstrap(&self) -> Result<Report, String> {
        let store = self.store()?;
        // The password file exists only in a container GitLab created less than 24 h ago; a
        // missing engine or container here is not an error when the admin token still works.
        let captured = capture_initial_root_password(&self.exec(), &store).await;
        let (client, minted) = self.admin(&store).await?;
        let boot = Bootstrap::new(client, &store, &self.settings.config.gitlab, Date::today());
        let mut report = boot.ensure().await.map_err(|e| e.to_string())?;
        report.admin_token_minted = minted;
        if let Ok(true) = captured {
            report.root_password_stored = true;
        }
        Ok(report)
    }

    /// Rotates every token autogit manages; the names of those rotated.
    pub async fn rotate_tokens(&self) -> Result<Vec<String>, String> {
        let store = self.store()?;
        let (client, _) = self.admin(&store).await?;
        let mut boot = Bootstrap::new(client, &store, &self.settings.config.gitlab, Date::today());
        boot.rotate_tokens()
            .await
            .map_err(|e| format!("rotating tokens: {e}"))
    }

    /// Creates a runner in GitLab; its token goes into the secret store.
    pub async fn runner_token(
        &self,
        target: &RunnerTarget,
        tags: &[String],
        run_untagged: bool,
        protected: bool,
        description: &str,
    ) -> Result<RunnerToken, String> {
        let store = self.store()?;
        let (client, _) = self.admin(&store).await?;
        let boot = Bootstrap::new(client, &store, &self.settings.config.gitlab, Date::today());
        boot.create_runner_token(target, tags, run_untagged, protected, description)
            .await
            .map_err(|e| format!("creating a runner: {e}"))
    }

    /// An instance runner for `runner register`: (runner id, secret name, token).
    pub async fn instance_runner(
        &self,
        tags: &[String],
        protected: bool,
        description: &str,
    ) -> Result<(u64, String, SecretString), String> {
        let store = self.store()?;
        let (client, _) = self.admin(&store).await?;
        let boot = Bootstrap::new(client, &store, &self.settings.config.gitlab, Date::today());
        let t = boot
            .create_runner_token(
                &RunnerTarget::Instance,
                tags,
                tags.is_empty(),
                protected,
                description,
            )
            .await
            .map_err(|e| format!("creating a runner in GitLab: {e}"))?;
        let token = store
            .get(&t.secret)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the token {} was not stored", t.secret))?;
        Ok((t.id, t.secret, token))
    }

    /// Brings the scope of the runner whose token is the secret `secret` (GitLab runner `id`)
    /// to `tags` (untagged jobs too when there are none) and `protected`, in place with `PUT
    /// /runners/:id` when the stored record says it differs; whether it changed.
    pub async fn sync_runner_scope(
        &self,
        id: u64,
        secret: &str,
        tags: &[String],
        protected: bool,
    ) -> Result<bool, String> {
        let store = self.store()?;
        let mut index = TokenIndex::load(&store).map_err(|e| e.to_string())?;
        let run_untagged = tags.is_empty();
        if let Some(m) = index.runners.get(secret)
            && m.tags == tags
            && m.run_untagged == run_untagged
            && m.protected == protected
        {
            return Ok(false);
        }
        let (client, _) = self.admin(&store).await?;
        client
            .update_runner_scope(id, tags, run_untagged, protected)
            .await
            .map_err(|e| format!("updating runner {id} in GitLab: {e}"))?;
        let meta = index
            .runners
            .entry(secret.to_owned())
            .or_insert_with(|| RunnerMeta {
                id,
                runner_type: "instance_type".to_owned(),
                description: String::new(),
                tags: Vec::new(),
                run_untagged,
                protected,
            });
        meta.tags = tags.to_vec();
        meta.run_untagged = run_untagged;
        meta.protected = protected;
        index.save(&store).map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// GitLab's status over REST: authenticated with the stored admin token when there is one
    /// (`true`), else the unauthenticated endpoints only.
    pub async fn status(&self) -> Result<(bool, bootstrap::Status), String> {
        let store = self.store()?;
        let token = store.get(ADMIN_TOKEN).map_err(|e| e.to_string())?;
        let authenticated = token.is_some();
        let client = GitLabClient::new(&self.url, token)
            .map_err(|e| e.to_string())?
            .with_retry(quick_retry());
        Ok((authenticated, bootstrap::status(&client, &store).await))
    }
}
