//! The access controller: who is calling the REST API, and with which role.
//!
//! Credentials are API keys (`agk_<prefix>_<secret>`, argon2id-hashed in `access.db`) and
//! short-lived EdDSA JWTs issued from a key or a login; logins go through [`AuthProvider`]s
//! (the built-in `local` one checks users in `access.db`; `ldap` binds to a directory,
//! [`crate::ldap`]). The
//! decisions are `autogit_core::access`'s; the storage and crypto `autogit_drivers::auth`'s.
//!
//! The hot path ([`AccessController::authenticate`]) is synchronous and in memory: a JWT is
//! one Ed25519 verification; an API key is one argon2id verification (tens of ms), then
//! cached for [`KEY_CACHE_SECS`] keyed by the SHA-256 of the presented key. Revocations made
//! by this process drop the cache at once; those made by another process (the CLI, under a
//! running server) are seen on the next request through SQLite's `data_version`, which also
//! reloads signing keys and revoked token ids.

use crate::Settings;
use crate::clock::SharedClock;
pub use autogit_core::access::Role;
use autogit_core::access::{self as rules, Claims, ClaimsError, Standing, TtlError};
use autogit_drivers::auth::db::{AccessDb, Failures, KeyRow, UserRow};
use autogit_drivers::auth::hash::Hasher;
use autogit_drivers::auth::jwt::{self, JwtError, KeySet, SigningKey};
use autogit_drivers::auth::{AuthStoreError, keys, random};
use autogit_drivers::secrets::{ExposeSecret, SecretStore, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

/// How long a successful API-key verification is remembered.
pub const KEY_CACHE_SECS: i64 = 60;
/// Most cached verifications (only successful ones are cached; past this the cache restarts).
const KEY_CACHE_MAX: usize = 10_000;
/// The built-in provider.
pub const LOCAL_PROVIDER: &str = "local";
/// Shortest password of a local user.
pub const MIN_PASSWORD: usize = 12;
/// Longest password or user name handed to a provider.
const MAX_LOGIN_FIELD: usize = 1024;

/// Who is calling, as the API's handlers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// `key:agk_1a2b3c4d` or `user:alice` (`user:alice@ldap` from another provider).
    pub subject: String,
    pub role: Role,
    /// API areas allowed; empty means all.
    pub scopes: Vec<String>,
    /// The token's id (`jti`) when authenticated by a token.
    pub token_id: Option<String>,
    /// When the credential stops working (unix seconds).
    pub expires_at: Option<i64>,
}

impl Principal {
    /// Whether this caller may run an operation of `area` that requires `required`.
    pub fn permits(&self, required: Role, area: &str) -> bool {
        self.role.allows(required) && rules::scopes_allow(&self.scopes, area)
    }
}

/// Why a request is not authenticated. Messages carry no credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send `Authorization: Bearer <API key or token>`")]
    Missing,
    #[error("the credentials are neither an autogit API key (agk_…) nor a well-formed token")]
    Malformed,
    #[error("unknown or wrong API key")]
    UnknownKey,
    #[error("unknown or wrong API key")]
    WrongSecret,
    #[error("the credentials have expired; create a new key or request a new token")]
    Expired,
    #[error("the token is not valid yet; check the clocks of client and server")]
    NotYetValid,
    #[error("the credentials were revoked")]
    Revoked,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's algorithm is not accepted; autogit signs and accepts EdDSA only")]
    UnsupportedAlgorithm,
    #[error(
        "the token was signed with a key autogit does not have (not autogit's, or rotated out over 24 h ago); request a new token"
    )]
    UnknownSigningKey,
    #[error("the token was not issued by autogit")]
    WrongIssuer,
    #[error("the token is not meant for this API")]
    WrongAudience,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed logins for this user; try again in {retry_after_secs} s")]
    Locked { retry_after_secs: u64 },
    #[error("no login provider named `{0}`")]
    UnknownProvider(String),
    #[error("the login is right but gives no role: {0}")]
    NoRole(String),
    #[error("the login provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("authentication is unavailable: {0}")]
    Internal(String),
}

impl AuthError {
    /// A short reason, safe for a 401 body and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing credentials",
            AuthError::Malformed => "malformed credentials",
            // One reason for both: the answer must not tell which prefixes exist.
            AuthError::UnknownKey | AuthError::WrongSecret => "invalid API key",
            AuthError::Expired => "credentials expired",
            AuthError::NotYetValid => "token not yet valid",
            AuthError::Revoked => "credentials revoked",
            AuthError::BadSignature => "invalid token signature",
            AuthError::UnsupportedAlgorithm => "unsupported token algorithm",
            AuthError::UnknownSigningKey => "unknown token signing key",
            AuthError::WrongIssuer => "wrong token issuer",
            AuthError::WrongAudience => "wrong token audience",
            AuthError::BadCredentials => "invalid username or password",
            AuthError::Locked { .. } => "too many failed logins",
            AuthError::UnknownProvider(_) => "unknown login provider",
            AuthError::NoRole(_) => "no role for this user: it is in no group mapped to a role",
            AuthError::ProviderUnavailable(_) => "login provider unavailable",
            AuthError::Internal(_) => "authentication unavailable",
        }
    }

    /// Seconds the client should wait (`Retry-After`), for a locked account.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthError::Locked { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Whether the server, not the caller, is at fault (503 rather than 401).
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            AuthError::Internal(_) | AuthError::ProviderUnavailable(_)
        )
    }
}

impl From<AuthStoreError> for AuthError {
    fn from(e: AuthStoreError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

/// What went wrong managing keys, users and signing keys.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Store(#[from] AuthStoreError),
    #[error(
        "invalid key name {0:?}: use 1 to 64 printable characters, no leading or trailing blanks"
    )]
    InvalidKeyName(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error(
        "invalid user name {0:?}: use lowercase letters, digits, `.`, `_` and `-` (at most 64)"
    )]
    InvalidUserName(String),
    #[error(
        "a key must live at least 1 minute; use a longer --expires, or none for a key that does not expire"
    )]
    KeyTtlTooShort,
    #[error(transparent)]
    Ttl(#[from] TtlError),
    #[error("`{0}` is not an API key prefix (8 characters, as `autogit api-key list` shows them)")]
    NotAPrefix(String),
    #[error("no API key with prefix `{0}`; `autogit api-key list` shows them")]
    NoSuchKey(String),
    #[error("a user named `{0}` exists already; remove it first to replace it")]
    UserExists(String),
    #[error("no user named `{0}`; `autogit api-user list` shows them")]
    NoSuchUser(String),
    #[error("a password needs at least {MIN_PASSWORD} characters (and at most 1024)")]
    WeakPassword,
    #[error("the credential has expired; a token cannot be issued from it")]
    CredentialExpired,
    #[error(
        "no signing key could be loaded from the secret store; run `autogit auth rotate-signing-key`"
    )]
    NoSigningKey,
    #[error("a token id is 1 to 128 characters; `{0}` is not one")]
    InvalidTokenId(String),
    #[error("login provider `{provider}`: {problem}")]
    Provider {
        provider: &'static str,
        problem: String,
    },
}

/// A key to create.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    /// How long it lives; `None`: until revoked.
    pub ttl: Option<Duration>,
}

/// A key as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `agk_<prefix>`: how logs, the audit log and `revoke` name it.
    pub id: String,
    pub prefix: String,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
}

/// A created key: `secret` is the whole key, shown once.
#[derive(Debug)]
pub struct CreatedKey {
    pub info: KeyInfo,
    pub secret: SecretString,
}

/// An issued token.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    pub token_id: String,
    pub expires_at: i64,
}

/// A local user as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// Who a provider says logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub role: Role,
}

/// Why a provider gives no identity, other than a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// It could not answer (directory down, misconfigured).
    #[error("{0}")]
    Unavailable(String),
    /// The password is right but the user has no role here (in no group that is mapped to
    /// one); the message says what would give one.
    #[error("{0}")]
    NoRole(String),
}

/// Checks a username and password. OIDC and LDAP come as implementations of this trait
/// (registered with [`AccessController::register_provider`]).
#[async_trait::async_trait]
pub trait AuthProvider: Send + Sync + std::fmt::Debug {
    /// The name a login selects it by (`local`, `ldap`, ...).
    fn name(&self) -> &str;
    /// `Ok(Some(identity))` for right credentials, `Ok(None)` for wrong ones (unknown users
    /// included, taking the same time), `Err` when the provider cannot tell.
    async fn verify(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Identity>, ProviderError>;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The built-in provider: users in `access.db` with argon2id password hashes. A name that does
/// not exist costs one argon2 verification, as a wrong password does.
#[derive(Debug)]
pub struct LocalUsers {
    db: Arc<Mutex<AccessDb>>,
    hasher: Arc<Hasher>,
    clock: SharedClock,
}

#[async_trait::async_trait]
impl AuthProvider for LocalUsers {
    fn name(&self) -> &str {
        LOCAL_PROVIDER
    }

    async fn verify(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Identity>, ProviderError> {
        let (db, hasher, clock) = (self.db.clone(), self.hasher.clone(), self.clock.clone());
        let (name, password) = (username.to_owned(), password.clone());
        tokio::task::spawn_blocking(move || {
            let pw = password.expose_secret().as_bytes();
            let row = if rules::valid_user_name(&name) {
                lock(&db)
                    .user(&name)
                    .map_err(|e| ProviderError::Unavailable(e.to_string()))?
            } else {
                None
            };
            match row {
                Some(u) if hasher.verify(pw, &u.hash) => {
                    lock(&db)
                        .touch_user(&u.name, clock.now() as i64)
                        .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
                    Ok(Some(Identity {
                        username: u.name,
                        role: u.role,
                    }))
                }
                Some(_) => Ok(None),
                None => {
                    hasher.verify_dummy(pw);
                    Ok(None)
                }
            }
        })
        .await
        .map_err(|e| ProviderError::Unavailable(format!("the local provider's task failed: {e}")))?
    }
}

/// What `authenticate` reads: reloaded when `access.db` changes.
#[derive(Default)]
struct Snapshot {
    data_version: i64,
    signer: Option<Arc<SigningKey>>,
    verifiers: KeySet,
    revoked_tokens: HashSet<String>,
    revoked_keys: HashSet<String>,
}

struct CachedKey {
    principal: Principal,
    verified_at: i64,
}

struct Inner {
    data_dir: PathBuf,
    clock: SharedClock,
    secrets: SecretStore,
    hasher: Arc<Hasher>,
    db: Arc<Mutex<AccessDb>>,
    snapshot: RwLock<Snapshot>,
    cache: Mutex<HashMap<[u8; 32], CachedKey>>,
    providers: RwLock<BTreeMap<String, Arc<dyn AuthProvider>>>,
}

/// Authentication, keys, users, tokens and signing keys of one data dir. Cheap to clone.
#[derive(Clone)]
pub struct AccessController {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AccessController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let providers: Vec<String> = self
            .inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        f.debug_struct("AccessController")
            .field("data_dir", &self.inner.data_dir)
            .field("providers", &providers)
            .finish_non_exhaustive()
    }
}

fn key_info(r: &KeyRow, now: i64) -> KeyInfo {
    let status = match rules::standing(r.expires_at, r.revoked_at, now) {
        Standing::Valid => "active",
        Standing::Revoked => "revoked",
        Standing::Expired => "expired",
    };
    KeyInfo {
        id: rules::key_id(&r.prefix),
        prefix: r.prefix.clone(),
        name: r.name.clone(),
        role: r.role,
        scopes: r.scopes.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        last_used_at: r.last_used_at,
        revoked_at: r.revoked_at,
        status,
    }
}

fn user_info(u: &UserRow) -> UserInfo {
    UserInfo {
        name: u.name.clone(),
        role: u.role,
        created_at: u.created_at,
        last_login_at: u.last_login_at,
    }
}

fn key_subject_prefix(subject: &str) -> Option<&str> {
    subject.strip_prefix("key:")?.strip_prefix(rules::KEY_TAG)
}

impl AccessController {
    /// Opens the access store of `settings.data_dir`: `access.db`, the pepper and the signing
    /// key (both made on first use), and registers the `local` provider and, when `LDAP_URL` is
    /// set, the `ldap` one.
    pub fn open(settings: &Settings, clock: SharedClock) -> Result<Self, AccessError> {
        let data_dir = settings.data_dir.clone();
        let secrets = SecretStore::open(&data_dir).map_err(AuthStoreError::from)?;
        let hasher = Arc::new(Hasher::new(keys::pepper(&secrets)?));
        let db = Arc::new(Mutex::new(AccessDb::open(&data_dir)?));
        let local: Arc<dyn AuthProvider> = Arc::new(LocalUsers {
            db: db.clone(),
            hasher: hasher.clone(),
            clock: clock.clone(),
        });
        let ctl = Self {
            inner: Arc::new(Inner {
                data_dir,
                clock,
                secrets,
                hasher,
                db,
                snapshot: RwLock::new(Snapshot::default()),
                cache: Mutex::new(HashMap::new()),
                providers: RwLock::new(BTreeMap::from([(LOCAL_PROVIDER.to_owned(), local)])),
            }),
        };
        for p in crate::extensions::built_in_auth(settings)? {
            ctl.register_provider(p);
        }
        let has_current = lock(&ctl.inner.db)
            .signing_keys()?
            .iter()
            .any(|k| k.retired_at.is_none());
        if has_current {
            ctl.reload()?;
        } else {
            ctl.rotate_signing_key()?;
        }
        Ok(ctl)
    }

    fn now(&self) -> i64 {
        self.inner.clock.now() as i64
    }

    /// Adds (or replaces, by name) a login provider.
    pub fn register_provider(&self, provider: Arc<dyn AuthProvider>) {
        self.inner
            .providers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(provider.name().to_owned(), provider);
    }

    fn has_provider(&self, name: &str) -> bool {
        self.inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    /// Registers the enabled extensions that declare `auth` (`EXTENSIONS_ENABLED`), each under
    /// its name, replacing a built-in of that name. Returns their names; an extension that
    /// cannot be asked its handshake is logged and left out.
    pub async fn register_extensions(&self, settings: &Settings) -> Vec<String> {
        let registry = match crate::extensions::Registry::load(settings) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("login providers from extensions: {e}");
                return Vec::new();
            }
        };
        let (providers, failed) = registry.auth_providers(settings).await;
        for (name, why) in failed {
            tracing::warn!(
                extension = name,
                "not registered as a login provider: {why}"
            );
        }
        providers
            .into_iter()
            .map(|p| {
                let name = p.name().to_owned();
                self.register_provider(p);
                name
            })
            .collect()
    }

    /// Names of the registered login providers.
    pub fn providers(&self) -> Vec<String> {
        self.inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Reads signing keys and revocations from the store and drops the key cache.
    fn reload(&self) -> Result<(), AuthStoreError> {
        let now = self.now();
        let db = lock(&self.inner.db);
        let data_version = db.data_version()?;
        let mut snap = Snapshot {
            data_version,
            revoked_tokens: db.revoked_tokens(now)?.into_iter().collect(),
            revoked_keys: db.revoked_key_prefixes()?.into_iter().collect(),
            ..Snapshot::default()
        };
        for row in db.signing_keys()? {
            let usable = row
                .retired_at
                .is_none_or(|r| now - r <= rules::MAX_TOKEN_TTL + rules::LEEWAY);
            if !usable {
                continue;
            }
            let Some(key) = keys::load(&self.inner.secrets, &row.kid)? else {
                continue;
            };
            snap.verifiers.insert(row.kid.clone(), key.verifier());
            if row.retired_at.is_none() && snap.signer.is_none() {
                snap.signer = Some(Arc::new(key));
            }
        }
        drop(db);
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snap;
        lock(&self.inner.cache).clear();
        Ok(())
    }

    /// Reloads when another process changed `access.db` since the last look.
    fn refresh(&self) -> Result<(), AuthStoreError> {
        let current = lock(&self.inner.db).data_version()?;
        let seen = self
            .inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .data_version;
        if current != seen {
            self.reload()?;
        }
        Ok(())
    }

    /// Authenticates an `Authorization: Bearer` value: an API key or a token.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let bearer = bearer.trim();
        if bearer.is_empty() {
            return Err(AuthError::Missing);
        }
        self.refresh()?;
        if bearer.starts_with(rules::KEY_TAG) {
            self.authenticate_key(bearer)
        } else if jwt::looks_like_jwt(bearer) {
            self.authenticate_token(bearer)
        } else {
            Err(AuthError::Malformed)
        }
    }

    /// Whether [`authenticate`](Self::authenticate) of `bearer` would run argon2 (an API key
    /// whose verification is not cached: tens of milliseconds of CPU), so that an async caller
    /// can run it with `spawn_blocking` and keep the cheap path on its worker.
    pub fn needs_blocking(&self, bearer: &str) -> bool {
        let bearer = bearer.trim();
        if rules::parse_api_key(bearer).is_none() {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        let now = self.now();
        !lock(&self.inner.cache)
            .get(&digest)
            .is_some_and(|c| now - c.verified_at < KEY_CACHE_SECS && now >= c.verified_at)
    }

    fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let now = self.now();
        let snap = self
            .inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let claims = jwt::verify(token, &snap.verifiers).map_err(|e| match e {
            JwtError::Malformed => AuthError::Malformed,
            JwtError::UnsupportedAlgorithm => AuthError::UnsupportedAlgorithm,
            JwtError::UnknownKey => AuthError::UnknownSigningKey,
            JwtError::BadSignature => AuthError::BadSignature,
        })?;
        rules::check_claims(&claims, now).map_err(|e| match e {
            ClaimsError::Expired => AuthError::Expired,
            ClaimsError::NotYetValid => AuthError::NotYetValid,
            ClaimsError::WrongIssuer => AuthError::WrongIssuer,
            ClaimsError::WrongAudience => AuthError::WrongAudience,
            ClaimsError::TooLong => AuthError::Malformed,
        })?;
        if snap.revoked_tokens.contains(&claims.jti)
            || key_subject_prefix(&claims.sub).is_some_and(|p| snap.revoked_keys.contains(p))
        {
            return Err(AuthError::Revoked);
        }
        Ok(Principal {
            subject: claims.sub,
            role: claims.role,
            scopes: claims.scopes,
            token_id: Some(claims.jti),
            expires_at: Some(claims.exp),
        })
    }

    fn authenticate_key(&self, key: &str) -> Result<Principal, AuthError> {
        let (prefix, _) = rules::parse_api_key(key).ok_or(AuthError::Malformed)?;
        let now = self.now();
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        {
            let mut cache = lock(&self.inner.cache);
            if let Some(c) = cache.get(&digest) {
                let fresh = now - c.verified_at < KEY_CACHE_SECS && now >= c.verified_at;
                if fresh && c.principal.expires_at.is_none_or(|e| now < e) {
                    return Ok(c.principal.clone());
                }
                cache.remove(&digest);
            }
        }
        let row = lock(&self.inner.db)
            .key(prefix)?
            .ok_or(AuthError::UnknownKey)?;
        // argon2 outside every lock: other requests go on meanwhile.
        if !self.inner.hasher.verify(key.as_bytes(), &row.hash) {
            return Err(AuthError::WrongSecret);
        }
        match rules::standing(row.expires_at, row.revoked_at, now) {
            Standing::Valid => {}
            Standing::Revoked => return Err(AuthError::Revoked),
            Standing::Expired => return Err(AuthError::Expired),
        }
        // last_used_at is therefore accurate to KEY_CACHE_SECS.
        lock(&self.inner.db).touch_key(prefix, now)?;
        let principal = Principal {
            subject: format!("key:{}", rules::key_id(prefix)),
            role: row.role,
            scopes: row.scopes,
            token_id: None,
            expires_at: row.expires_at,
        };
        let mut cache = lock(&self.inner.cache);
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            digest,
            CachedKey {
                principal: principal.clone(),
                verified_at: now,
            },
        );
        Ok(principal)
    }

    /// Creates an API key; its secret is in the result and nowhere else.
    pub fn create_key(&self, req: NewKey) -> Result<CreatedKey, AccessError> {
        if !rules::valid_key_name(&req.name) {
            return Err(AccessError::InvalidKeyName(
                req.name.chars().take(80).collect(),
            ));
        }
        let scopes = rules::normalize_scopes(&req.scopes).map_err(AccessError::InvalidScope)?;
        let now = self.now();
        let expires_at = match req.ttl {
            Some(t) if t.as_secs() < 60 => return Err(AccessError::KeyTtlTooShort),
            Some(t) => Some(now.saturating_add(i64::try_from(t.as_secs()).unwrap_or(i64::MAX))),
            None => None,
        };
        let prefix_bytes = random::<{ rules::PREFIX_BYTES }>()?;
        let secret_bytes = random::<{ rules::SECRET_BYTES }>()?;
        let key = SecretString::from(rules::format_api_key(&prefix_bytes, &secret_bytes));
        let (prefix, _) =
            rules::parse_api_key(key.expose_secret()).expect("a key we format parses");
        let row = KeyRow {
            prefix: prefix.to_owned(),
            name: req.name,
            role: req.role,
            scopes,
            hash: self.inner.hasher.hash(key.expose_secret().as_bytes())?,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        lock(&self.inner.db).insert_key(&row)?;
        Ok(CreatedKey {
            info: key_info(&row, now),
            secret: key,
        })
    }

    /// Every key, newest first.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, AccessError> {
        let now = self.now();
        Ok(lock(&self.inner.db)
            .keys()?
            .iter()
            .map(|r| key_info(r, now))
            .collect())
    }

    /// Revokes a key (`agk_1a2b3c4d` or `1a2b3c4d`) and the tokens issued from it. Revoking a
    /// revoked key again is not an error.
    pub fn revoke_key(&self, prefix: &str) -> Result<KeyInfo, AccessError> {
        let p = rules::parse_key_prefix(prefix)
            .ok_or_else(|| AccessError::NotAPrefix(prefix.chars().take(40).collect()))?;
        let now = self.now();
        let row = lock(&self.inner.db)
            .revoke_key(p, now)?
            .ok_or_else(|| AccessError::NoSuchKey(p.to_owned()))?;
        self.reload()?;
        Ok(key_info(&row, now))
    }

    /// Issues a token for `principal`, living `ttl` (default 15 min, at most 24 h) and never
    /// longer than the credential it comes from.
    pub fn issue_token(
        &self,
        principal: &Principal,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, AccessError> {
        let now = self.now();
        if principal.expires_at.is_some_and(|e| e <= now) {
            return Err(AccessError::CredentialExpired);
        }
        let exp = rules::token_expiry(now, ttl.map(|d| d.as_secs()), principal.expires_at)?;
        let jti = rules::base32_lower(&random::<16>()?);
        let claims = Claims {
            iss: rules::ISSUER.into(),
            aud: rules::AUDIENCE.into(),
            sub: principal.subject.clone(),
            role: principal.role,
            scopes: principal.scopes.clone(),
            iat: now,
            nbf: now,
            exp,
            jti: jti.clone(),
        };
        let signer = self
            .inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .signer
            .clone()
            .ok_or(AccessError::NoSigningKey)?;
        Ok(IssuedToken {
            token: SecretString::from(signer.sign(&claims)),
            token_id: jti,
            expires_at: exp,
        })
    }

    /// Checks a login with `provider` (default `local`). After
    /// [`rules::FREE_FAILURES`] failures in a row a user is locked out for a doubling time
    /// (30 s up to 15 min), whichever provider, and whether or not the name exists.
    pub async fn login(
        &self,
        provider: Option<&str>,
        username: &str,
        password: &SecretString,
    ) -> Result<Principal, AuthError> {
        // `bob@ldap` names the provider in the username (local names have no `@`);
        // `bob@example.org@ldap` too.
        let (name, username) = match (provider, username.rsplit_once('@')) {
            (Some(p), _) => (p, username),
            (None, Some((user, p))) if p != LOCAL_PROVIDER && self.has_provider(p) => (p, user),
            (None, _) => (LOCAL_PROVIDER, username),
        };
        let p = self
            .inner
            .providers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| AuthError::UnknownProvider(name.chars().take(40).collect()))?;
        if username.is_empty()
            || username.len() > MAX_LOGIN_FIELD
            || password.expose_secret().len() > MAX_LOGIN_FIELD
        {
            return Err(AuthError::BadCredentials);
        }
        let now = self.now();
        let f = lock(&self.inner.db).failures(name, username)?;
        if let Some(wait) = rules::locked_for(f.locked_until, now) {
            return Err(AuthError::Locked {
                retry_after_secs: wait as u64,
            });
        }
        match p.verify(username, password).await {
            Ok(Some(id)) => {
                lock(&self.inner.db).clear_failures(name, username)?;
                let subject = if name == LOCAL_PROVIDER {
                    format!("user:{}", id.username)
                } else {
                    format!("user:{}@{name}", id.username)
                };
                Ok(Principal {
                    subject,
                    role: id.role,
                    scopes: Vec::new(),
                    token_id: None,
                    expires_at: None,
                })
            }
            Ok(None) => {
                let now = self.now();
                let db = lock(&self.inner.db);
                let f = db.failures(name, username)?;
                let failures = rules::failures_now(f.failures, f.last_failure_at, now) + 1;
                let lock_secs = rules::lock_secs(failures);
                db.set_failures(
                    name,
                    username,
                    Failures {
                        failures,
                        last_failure_at: now,
                        locked_until: (lock_secs > 0).then_some(now + lock_secs),
                    },
                    now - rules::FAILURE_WINDOW_SECS,
                )?;
                Err(AuthError::BadCredentials)
            }
            Err(ProviderError::NoRole(why)) => {
                tracing::warn!(provider = name, "login without a role: {why}");
                Err(AuthError::NoRole(why))
            }
            Err(ProviderError::Unavailable(why)) => {
                tracing::warn!(provider = name, "login provider unavailable: {why}");
                Err(AuthError::ProviderUnavailable(why))
            }
        }
    }

    /// Revokes token `token_id` (its `jti`) until it would have expired anyway.
    pub fn revoke_token(&self, token_id: &str) -> Result<(), AccessError> {
        if token_id.is_empty()
            || token_id.chars().count() > 128
            || token_id.chars().any(char::is_control)
        {
            return Err(AccessError::InvalidTokenId(
                token_id.chars().take(40).collect(),
            ));
        }
        let until = self.now() + rules::MAX_TOKEN_TTL + rules::LEEWAY;
        lock(&self.inner.db).revoke_token(token_id, until)?;
        self.reload()?;
        Ok(())
    }

    /// Makes a new signing key current. The previous ones verify the tokens they signed until
    /// those have expired (24 h at most); older keys are deleted.
    pub fn rotate_signing_key(&self) -> Result<String, AccessError> {
        let now = self.now();
        let kid = keys::new_kid()?;
        keys::generate(&self.inner.secrets, &kid)?;
        {
            let db = lock(&self.inner.db);
            db.add_signing_key(&kid, now)?;
            for old in db.signing_keys()? {
                if old
                    .retired_at
                    .is_some_and(|r| now - r > rules::MAX_TOKEN_TTL + rules::LEEWAY)
                {
                    self.inner
                        .secrets
                        .remove(&keys::signing_key_name(&old.kid))
                        .map_err(AuthStoreError::from)?;
                    db.delete_signing_key(&old.kid)?;
                }
            }
            db.purge_revoked_tokens(now)?;
        }
        self.reload()?;
        Ok(kid)
    }

    /// The current signing key's id.
    pub fn signing_key_id(&self) -> Option<String> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .signer
            .as_ref()
            .map(|s| s.kid().to_owned())
    }

    /// Adds a local user.
    pub fn add_user(
        &self,
        name: &str,
        role: Role,
        password: &SecretString,
    ) -> Result<UserInfo, AccessError> {
        if !rules::valid_user_name(name) {
            return Err(AccessError::InvalidUserName(
                name.chars().take(80).collect(),
            ));
        }
        let n = password.expose_secret().chars().count();
        if !(MIN_PASSWORD..=MAX_LOGIN_FIELD).contains(&n) {
            return Err(AccessError::WeakPassword);
        }
        let row = UserRow {
            name: name.to_owned(),
            role,
            hash: self
                .inner
                .hasher
                .hash(password.expose_secret().as_bytes())?,
            created_at: self.now(),
            last_login_at: None,
        };
        if !lock(&self.inner.db).insert_user(&row)? {
            return Err(AccessError::UserExists(name.to_owned()));
        }
        Ok(user_info(&row))
    }

    /// Local users, by name.
    pub fn list_users(&self) -> Result<Vec<UserInfo>, AccessError> {
        Ok(lock(&self.inner.db)
            .users()?
            .iter()
            .map(user_info)
            .collect())
    }

    /// Removes a local user. Tokens already issued to it live out their (short) lifetime.
    pub fn remove_user(&self, name: &str) -> Result<UserInfo, AccessError> {
        let db = lock(&self.inner.db);
        let user = db
            .user(name)?
            .ok_or_else(|| AccessError::NoSuchUser(name.chars().take(80).collect()))?;
        db.remove_user(name)?;
        Ok(user_info(&user))
    }
}
