//! The `ldap` login provider: an [`AuthProvider`] over `autogit_drivers::auth::ldap`'s
//! directory, configured by the `LDAP_*` settings (`docs/api.md`, "LDAP logins"), its groups
//! mapped to a role by `autogit_core::ldap::role_for`.

use crate::Settings;
use crate::access::{AccessError, AuthProvider, Identity, ProviderError};
use autogit_core::ldap::{self as rules, LdapSettings};
use autogit_drivers::auth::ldap::{Directory, Outcome};
use secrecy::SecretString;

/// The provider's name: logins name it (`"provider": "ldap"` or `alice@ldap`).
pub const LDAP_PROVIDER: &str = "ldap";

/// Logins against an LDAP directory.
#[derive(Debug)]
pub struct LdapProvider {
    directory: Directory,
    roles: Vec<(String, autogit_core::access::Role)>,
}

impl LdapProvider {
    /// The provider the settings describe; `Ok(None)` without `LDAP_URL`.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, AccessError> {
        let problem = |problem: String| AccessError::Provider {
            provider: LDAP_PROVIDER,
            problem,
        };
        let Some(config) = rules::settings(&|k| settings.setting(k))
            .map_err(|e| problem(format!("{e} (in .env or the environment)")))?
        else {
            return Ok(None);
        };
        let password = settings
            .secret("LDAP_BIND_PASSWORD")
            .map_err(problem)?
            .map(SecretString::from);
        Self::new(config, password).map(Some).map_err(problem)
    }

    /// A provider for `config`; `bind_password` is the service account's.
    pub fn new(config: LdapSettings, bind_password: Option<SecretString>) -> Result<Self, String> {
        let roles = config.roles.clone();
        let directory = Directory::new(config, bind_password).map_err(|e| e.0)?;
        Ok(Self { directory, roles })
    }
}

#[async_trait::async_trait]
impl AuthProvider for LdapProvider {
    fn name(&self) -> &str {
        LDAP_PROVIDER
    }

    async fn verify(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Identity>, ProviderError> {
        match self.directory.login(username, password).await {
            Ok(Outcome::Rejected) => Ok(None),
            Ok(Outcome::Bound { dn, groups }) => match rules::role_for(&groups, &self.roles) {
                Some(role) => Ok(Some(Identity {
                    username: username.to_owned(),
                    role,
                })),
                None => Err(ProviderError::NoRole(format!(
                    "`{dn}` is in no group LDAP_ROLES maps to a role ({}); add it to one, or map one of its groups",
                    self.roles
                        .iter()
                        .map(|(g, _)| g.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
            Err(e) => Err(ProviderError::Unavailable(e.0)),
        }
    }
}
