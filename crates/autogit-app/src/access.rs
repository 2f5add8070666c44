//! Scaffold with the signatures of the auth work (keys in memory); replaced on merge.

use crate::{Settings, SharedClock};
use autogit_core::access::Role;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub token_id: Option<String>,
    pub expires_at: Option<i64>,
}

impl Principal {
    pub fn permits(&self, required: Role, area: &str) -> bool {
        self.role.allows(required)
            && (self.scopes.is_empty() || self.scopes.iter().any(|s| s == area))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("unknown or revoked credentials")]
    UnknownKey,
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing credentials",
            AuthError::UnknownKey => "unknown key",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccessError(String);

#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    pub prefix: String,
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub ttl: Option<Duration>,
}

#[derive(Debug)]
pub struct CreatedKey {
    pub info: KeyInfo,
    pub secret: SecretString,
}

#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    pub token_id: String,
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct AccessController {
    keys: Arc<Mutex<HashMap<String, (String, KeyInfo)>>>,
    clock: SharedClock,
}

impl std::fmt::Debug for AccessController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessController")
    }
}

impl AccessController {
    pub fn open(_settings: &Settings, clock: SharedClock) -> Result<Self, AccessError> {
        Ok(Self {
            keys: Arc::default(),
            clock,
        })
    }

    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let keys = self.keys.lock().unwrap();
        let (_, info) = keys.get(bearer).ok_or(AuthError::UnknownKey)?;
        if info.revoked_at.is_some() {
            return Err(AuthError::UnknownKey);
        }
        Ok(Principal {
            subject: format!("key:{}", info.prefix),
            role: info.role,
            scopes: info.scopes.clone(),
            token_id: None,
            expires_at: info.expires_at,
        })
    }

    pub fn create_key(&self, req: NewKey) -> Result<CreatedKey, AccessError> {
        let mut keys = self.keys.lock().unwrap();
        let prefix = format!("agk_{:08x}", fastrand::u32(..));
        let secret = format!(
            "{prefix}_{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let info = KeyInfo {
            prefix: prefix.clone(),
            name: req.name,
            role: req.role,
            scopes: req.scopes,
            created_at: self.clock.now() as i64,
            expires_at: None,
            revoked_at: None,
        };
        keys.insert(secret.clone(), (prefix, info.clone()));
        Ok(CreatedKey {
            info,
            secret: SecretString::from(secret),
        })
    }

    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, AccessError> {
        Ok(self
            .keys
            .lock()
            .unwrap()
            .values()
            .map(|v| v.1.clone())
            .collect())
    }

    pub fn revoke_key(&self, prefix: &str) -> Result<KeyInfo, AccessError> {
        let mut keys = self.keys.lock().unwrap();
        let now = self.clock.now() as i64;
        for (_, (p, info)) in keys.iter_mut() {
            if p == prefix {
                info.revoked_at = Some(now);
                return Ok(info.clone());
            }
        }
        Err(AccessError(format!("no key {prefix}")))
    }

    pub fn issue_token(
        &self,
        principal: &Principal,
        _ttl: Option<Duration>,
    ) -> Result<IssuedToken, AccessError> {
        let created = self.create_key(NewKey {
            name: "token".into(),
            role: principal.role,
            scopes: principal.scopes.clone(),
            ttl: None,
        })?;
        Ok(IssuedToken {
            token_id: created.info.prefix,
            expires_at: self.clock.now() as i64 + 900,
            token: created.secret,
        })
    }

    pub async fn login(
        &self,
        _provider: Option<&str>,
        _username: &str,
        password: &SecretString,
    ) -> Result<Principal, AuthError> {
        let _ = password.expose_secret();
        Err(AuthError::UnknownKey)
    }

    pub fn revoke_token(&self, token_id: &str) -> Result<(), AccessError> {
        self.revoke_key(token_id).map(|_| ())
    }

    pub fn rotate_signing_key(&self) -> Result<String, AccessError> {
        Ok("k1".into())
    }
}
