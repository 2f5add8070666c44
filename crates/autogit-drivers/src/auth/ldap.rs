//! LDAP simple-bind logins (RFC 4511/4513) with `ldap3` over rustls: search-then-bind with a
//! service account, or a direct bind to a DN template; StartTLS or ldaps; the user's groups
//! searched afterwards. Every value from the login is escaped by `autogit_core::ldap` before
//! it reaches a filter or a DN. Errors name the server and the operation, never a password.

use autogit_core::ldap::{self as rules, Group, LdapSettings, Security, UserLookup};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

/// `invalidCredentials` (RFC 4511 appendix A).
const INVALID_CREDENTIALS: u32 = 49;

/// What a login found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The password is right: the user's DN and groups.
    Bound { dn: String, groups: Vec<Group> },
    /// Unknown user, several entries for the name, or a wrong password.
    Rejected,
}

/// The directory could not answer: unreachable, TLS refused, the service account refused,
/// a search failed. Never holds a password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectoryError(pub String);

/// An LDAP directory.
pub struct Directory {
    settings: LdapSettings,
    bind_password: Option<SecretString>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.settings.url)
            .field("security", &self.settings.security)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// A directory for `settings`; `bind_password` is the service account's (search mode).
    /// Reads `LDAP_CA_FILE` now, so that a bad file is a configuration error at start.
    pub fn new(
        settings: LdapSettings,
        bind_password: Option<SecretString>,
    ) -> Result<Self, DirectoryError> {
        if matches!(settings.lookup, UserLookup::Search { .. }) && bind_password.is_none() {
            return Err(DirectoryError(
                "LDAP_BIND_PASSWORD: unset; LDAP_BIND_DN needs a password (LDAP_BIND_PASSWORD or LDAP_BIND_PASSWORD_FILE)".into(),
            ));
        }
        let tls = match &settings.ca_file {
            Some(path) if settings.security != Security::None => Some(tls_config(path)?),
            Some(_) => {
                return Err(DirectoryError(
                    "LDAP_CA_FILE: set, but LDAP_URL is ldap:// without LDAP_STARTTLS=true; use ldaps:// or StartTLS, or unset it".into(),
                ));
            }
            None => None,
        };
        Ok(Self {
            settings,
            bind_password,
            tls,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs)
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> DirectoryError {
        DirectoryError(format!("{} ({what}): {e}", self.settings.url))
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let mut s = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.settings.security == Security::StartTls);
        if let Some(c) = &self.tls {
            s = s.set_config(c.clone());
        }
        let (conn, mut ldap) = tokio::time::timeout(
            self.timeout(),
            LdapConnAsync::with_settings(s, &self.settings.url),
        )
        .await
        .map_err(|_| self.fail("connect", "timed out"))?
        .map_err(|e| self.fail("connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!("LDAP connection ended: {e}");
            }
        });
        ldap.with_timeout(self.timeout());
        Ok(ldap)
    }

    /// Binds; `Ok(false)` for invalidCredentials.
    async fn bind(&self, ldap: &mut Ldap, dn: &str, pw: &str) -> Result<bool, DirectoryError> {
        ldap.with_timeout(self.timeout());
        let r = ldap
            .simple_bind(dn, pw)
            .await
            .map_err(|e| self.fail("bind", e))?;
        match r.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            _ => Err(self.fail("bind", r)),
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        ldap.with_timeout(self.timeout());
        let r = ldap
            .search(base, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.fail("search", e))?;
        // noSuchObject (32): the base does not exist; say so rather than "no user".
        let (entries, _) = r.success().map_err(|e| match e {
            LdapError::LdapResult { result } if result.rc == 32 => {
                self.fail("search", format!("the base `{base}` does not exist"))
            }
            e => self.fail("search", e),
        })?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// Checks `username`'s `password`. A username the core refuses, or an empty password (which
    /// LDAP would take as an unauthenticated bind and accept), is rejected before any request.
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Outcome, DirectoryError> {
        let pw = password.expose_secret();
        if pw.is_empty() || !rules::acceptable_username(username) {
            return Ok(Outcome::Rejected);
        }
        let mut ldap = self.connect().await?;
        let result = self.login_on(&mut ldap, username, pw).await;
        let _ = ldap.unbind().await;
        result
    }

    async fn login_on(
        &self,
        ldap: &mut Ldap,
        username: &str,
        pw: &str,
    ) -> Result<Outcome, DirectoryError> {
        let dn = match &self.settings.lookup {
            UserLookup::Template(t) => rules::fill_dn(t, username),
            UserLookup::Search {
                bind_dn,
                base,
                filter,
            } => {
                let svc = self.bind_password.as_ref().map(|p| p.expose_secret());
                if !self.bind(ldap, bind_dn, svc.unwrap_or_default()).await? {
                    return Err(self.fail(
                        "bind as LDAP_BIND_DN",
                        format!(
                            "the directory refused `{bind_dn}`'s password (LDAP_BIND_PASSWORD)"
                        ),
                    ));
                }
                let filter = rules::fill_filter(filter, username, "");
                let found = self.search(ldap, base, &filter, vec!["1.1"]).await?;
                match found.as_slice() {
                    [one] => one.dn.clone(),
                    // None, or several (ambiguous: never guess which one).
                    _ => return Ok(Outcome::Rejected),
                }
            }
        };
        if !self.bind(ldap, &dn, pw).await? {
            return Ok(Outcome::Rejected);
        }
        if let UserLookup::Search { bind_dn, .. } = &self.settings.lookup {
            // Groups are read as the service account, which may read them all.
            let svc = self.bind_password.as_ref().map(|p| p.expose_secret());
            self.bind(ldap, bind_dn, svc.unwrap_or_default()).await?;
        }
        let filter = rules::fill_filter(&self.settings.group_filter, username, &dn);
        let attr = self.settings.group_attr.as_str();
        let groups = self
            .search(ldap, &self.settings.group_base, &filter, vec![attr])
            .await?
            .into_iter()
            .map(|e| Group {
                names: e
                    .attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                dn: e.dn,
            })
            .collect();
        Ok(Outcome::Bound { dn, groups })
    }
}

fn tls_config(path: &str) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| DirectoryError(format!("LDAP_CA_FILE: {path}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    for c in certs {
        roots.add(c).map_err(|e| bad(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
