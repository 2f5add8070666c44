//! OIDC sign-in for the dashboard: the authorization code flow with PKCE (S256), `state` and
//! `nonce` (`docs/dashboard.md`, "OIDC"). [`OidcLogin::begin`] makes a pending login and the
//! provider's authorization URL; [`OidcLogin::complete`] takes the callback's `state` and
//! `code`, exchanges the code with its verifier, checks the ID token (signature in
//! `autogit_drivers::auth::oidc`, claims in `autogit_core::oidc`) and maps its groups to a
//! role. A pending login is used once and lives [`PENDING_TTL`] seconds.

use crate::Settings;
use crate::access::{AccessError, Principal};
use crate::clock::SharedClock;
use autogit_core::oidc::{self as rules, PENDING_TTL, check_claims, role_of};
use autogit_drivers::auth::oidc::{self as driver, OidcClient, OidcError};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The provider's name in subjects (`user:alice@oidc`).
pub const OIDC_PROVIDER: &str = "oidc";
/// Most logins in progress at once (older expired ones are dropped first).
const MAX_PENDING: usize = 10_000;

/// Why a sign-in did not give a session. Messages carry no code, verifier or token.
#[derive(Debug, thiserror::Error)]
pub enum OidcLoginError {
    /// The provider could not be reached, or answered something unusable (503).
    #[error("{0}")]
    Unavailable(String),
    /// The `state` is unknown, used or expired (a replayed or forged callback).
    #[error("this sign-in is unknown or expired; start it again")]
    UnknownState,
    /// The provider refused the code, or the ID token failed a check (401).
    #[error("{0}")]
    Denied(String),
    /// The user is in no group mapped to a role (403).
    #[error("{0}")]
    NoRole(String),
}

struct Pending {
    verifier: SecretString,
    nonce: String,
    next: String,
    created: i64,
}

/// A login started: where to send the browser, and the `state` to bind to it (cookie).
#[derive(Debug)]
pub struct Started {
    pub url: String,
    pub state: String,
}

/// The dashboard's OIDC sign-in.
pub struct OidcLogin {
    client: OidcClient,
    clock: SharedClock,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl OidcLogin {
    /// The sign-in the `OIDC_*` settings describe; `Ok(None)` without `OIDC_ISSUER`. Nothing
    /// is fetched yet (the discovery document comes with the first sign-in).
    pub fn from_settings(
        settings: &Settings,
        clock: SharedClock,
    ) -> Result<Option<Self>, AccessError> {
        let problem = |problem: String| AccessError::Provider {
            provider: OIDC_PROVIDER,
            problem,
        };
        let Some(config) = rules::settings(&|k| settings.setting(k))
            .map_err(|e| problem(format!("{e} (in .env or the environment)")))?
        else {
            return Ok(None);
        };
        let secret = settings
            .secret("OIDC_CLIENT_SECRET")
            .map_err(problem)?
            .map(SecretString::from);
        let client = OidcClient::new(config, secret).map_err(|e| problem(e.to_string()))?;
        Ok(Some(Self {
            client,
            clock,
            pending: Mutex::new(HashMap::new()),
        }))
    }

    fn now(&self) -> i64 {
        self.clock.now() as i64
    }

    /// Starts a sign-in that comes back to `next` (a dashboard path).
    pub async fn begin(&self, next: &str) -> Result<Started, OidcLoginError> {
        let endpoint = self
            .client
            .discovery()
            .await
            .map_err(|e| OidcLoginError::Unavailable(e.to_string()))?
            .authorization_endpoint
            .clone();
        let rand =
            |e: autogit_drivers::auth::AuthStoreError| OidcLoginError::Unavailable(e.to_string());
        let (verifier, challenge) = driver::pkce().map_err(rand)?;
        let state = driver::random_token().map_err(rand)?;
        let nonce = driver::random_token().map_err(rand)?;
        let url = rules::authorize_url(
            &endpoint,
            self.client.settings(),
            &state,
            &nonce,
            &challenge,
        );
        let now = self.now();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| now - p.created <= PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            return Err(OidcLoginError::Unavailable(
                "too many sign-ins in progress; try again in a few minutes".into(),
            ));
        }
        pending.insert(
            state.clone(),
            Pending {
                verifier,
                nonce,
                next: next.to_owned(),
                created: now,
            },
        );
        Ok(Started { url, state })
    }

    /// Completes the sign-in of `state` with the provider's `code`: the principal
    /// (`user:NAME@oidc`) and the dashboard path to go on to.
    pub async fn complete(
        &self,
        state: &str,
        code: &str,
    ) -> Result<(Principal, String), OidcLoginError> {
        let p = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(state)
            .ok_or(OidcLoginError::UnknownState)?;
        if self.now() - p.created > PENDING_TTL {
            return Err(OidcLoginError::UnknownState);
        }
        if code.is_empty() || code.len() > 4096 {
            return Err(OidcLoginError::Denied(
                "the callback has no usable code".into(),
            ));
        }
        let claims = self
            .client
            .exchange(code, &p.verifier)
            .await
            .map_err(|e| match e {
                OidcError::Provider { .. } => OidcLoginError::Unavailable(e.to_string()),
                OidcError::Refused(_) | OidcError::Token(_) => {
                    OidcLoginError::Denied(e.to_string())
                }
            })?;
        let s = self.client.settings();
        let id = check_claims(&claims, s, &p.nonce, self.now())
            .map_err(|e| OidcLoginError::Denied(e.to_string()))?;
        let role = role_of(&id.groups, &s.roles).ok_or_else(|| {
            OidcLoginError::NoRole(format!(
                "`{}` is in no group OIDC_ROLES maps to a role (its `{}` claim: {:?})",
                id.username, s.groups_claim, id.groups
            ))
        })?;
        Ok((
            Principal {
                subject: format!("user:{}@{OIDC_PROVIDER}", id.username),
                role,
                scopes: Vec::new(),
                token_id: None,
                expires_at: None,
            },
            p.next,
        ))
    }
}
