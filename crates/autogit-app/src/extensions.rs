//! The provider registry and the extensions behind it (`docs/extensions.md`).
//!
//! Every provider a controller can use is registered here by name, through one interface
//! ([`DnsFactory`]): the compiled-in DNS providers (rfc2136, cloudflare, route53, gcloud,
//! dnsmasq) at construction, then each extension named in `EXTENSIONS_ENABLED` and found in
//! the extensions directory, replacing a built-in of the same name. `DNS_PROVIDER` picks one.
//! A `notify` extension is started by name for `health.notify`'s `{type: extension}`
//! ([`Registry::notify_extension`]). Login providers: the built-in `ldap`
//! ([`built_in_auth`]) and every enabled extension declaring `auth`
//! ([`Registry::auth_providers`]), registered with the access controller by name.
//! `autogit extension list|info|check` reads the same registry.

use crate::Settings;
use crate::access::{AccessError, AuthProvider, Identity, ProviderError};
use crate::dns::DnsError;
use autogit_core::extension::{Manifest, OrderError, ProviderType, start_order};
use autogit_core::platform::DnsProvider as Kind;
use autogit_drivers::dns::DnsProvider;
use autogit_drivers::extension::{self as ext, ExtensionDns, ExtensionError, Found, Limits};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Builds the DNS provider registered under a name, for the settings it is used with.
#[async_trait::async_trait]
pub trait DnsFactory: Send + Sync {
    /// Where it comes from, for `extension list` (`built-in`, or the executable's path).
    fn origin(&self) -> String;
    async fn build(&self, settings: &Settings) -> Result<Box<dyn DnsProvider>, DnsError>;
}

/// A compiled-in provider (`drivers::dns::from_platform` for that kind).
struct BuiltIn(Kind);

#[async_trait::async_trait]
impl DnsFactory for BuiltIn {
    fn origin(&self) -> String {
        "built-in".to_owned()
    }
    async fn build(&self, settings: &Settings) -> Result<Box<dyn DnsProvider>, DnsError> {
        let mut platform = settings.platform.clone();
        platform.dns_provider = self.0;
        autogit_drivers::dns::from_platform(&platform, &settings.lookup())
            .map_err(DnsError::Config)?
            .ok_or_else(|| DnsError::Config("this provider changes no records".to_owned()))
    }
}

/// An extension providing `dns`.
struct Extension {
    found: Found,
    limits: Limits,
    /// The registry's enabled and installed extensions, for its dependencies.
    available: Vec<String>,
}

/// What an extension is given: autogit's process environment for its declared `env`, the
/// settings and secrets (`.env`, the environment, `<NAME>_FILE`) for its declared settings.
/// Only names its manifest declares are looked up (`drivers::extension::start`).
/// `available`: the extensions enabled and installed (what a dependency may name).
fn grant<'a>(settings: &'a Settings, available: &'a [String]) -> ext::Grant<'a> {
    ext::Grant {
        available: Box::new(move |name: &str| available.iter().any(|n| n == name)),
        env: Box::new(|k: &str| {
            settings
                .env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        }),
        setting: Box::new(|k: &str| settings.setting(k)),
        secret: Box::new(|k: &str| settings.secret(k)),
    }
}

fn dns_error(e: ExtensionError) -> DnsError {
    match e {
        ExtensionError::Config { .. }
        | ExtensionError::NotFound { .. }
        | ExtensionError::Manifest { .. } => DnsError::Config(e.to_string()),
        e => DnsError::Provider(format!("{e}; nothing was applied")),
    }
}

#[async_trait::async_trait]
impl DnsFactory for Extension {
    fn origin(&self) -> String {
        self.found.path.display().to_string()
    }
    async fn build(&self, settings: &Settings) -> Result<Box<dyn DnsProvider>, DnsError> {
        let zone = autogit_drivers::dns::zone_of(&settings.platform).ok_or_else(|| {
            DnsError::Config(format!(
                "DNS_PROVIDER={} needs BASE_DOMAIN (or DNS_ZONE) in .env or the environment",
                self.found.name
            ))
        })?;
        let ttl = settings.platform.dns_ttl;
        let grant = grant(settings, &self.available);
        let started = ExtensionDns::start(&self.found, &grant, &zone, ttl, self.limits).await;
        Ok(Box::new(started.map_err(dns_error)?))
    }
}

/// The built-in login providers the settings configure: `ldap` when `LDAP_URL` is set (`local`
/// is the access controller's own). [`Registry::auth_providers`] adds the extensions.
pub fn built_in_auth(settings: &Settings) -> Result<Vec<Arc<dyn AuthProvider>>, AccessError> {
    let mut out: Vec<Arc<dyn AuthProvider>> = Vec::new();
    if let Some(ldap) = crate::ldap::LdapProvider::from_settings(settings)? {
        out.push(Arc::new(ldap));
    }
    Ok(out)
}

/// An enabled extension providing `auth`: a login provider named after it, started for each
/// login (`drivers::extension::auth::login`).
struct ExtensionAuth {
    found: Found,
    limits: Limits,
    settings: Settings,
    available: Vec<String>,
}

impl std::fmt::Debug for ExtensionAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionAuth")
            .field("name", &self.found.name)
            .field("path", &self.found.path)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl AuthProvider for ExtensionAuth {
    fn name(&self) -> &str {
        &self.found.name
    }

    async fn verify(
        &self,
        username: &str,
        password: &secrecy::SecretString,
    ) -> Result<Option<Identity>, ProviderError> {
        let grant = grant(&self.settings, &self.available);
        match ext::auth::login(&self.found, &grant, self.limits, username, password).await {
            Ok(Some(u)) => Ok(Some(Identity {
                username: u.name,
                role: u.role,
            })),
            Ok(None) => Ok(None),
            // The SDK's AuthError: the backend refused the credentials.
            Err(ExtensionError::Remote { code, .. })
                if code == autogit_core::extension::code::AUTH =>
            {
                Ok(None)
            }
            Err(e) => Err(ProviderError::Unavailable(e.to_string())),
        }
    }
}

/// What `extension check` found.
#[derive(Debug, Clone)]
pub struct Checked {
    pub manifest: Manifest,
    /// In EXTENSIONS_ENABLED: only then was it initialized and asked `health`.
    pub enabled: bool,
    /// Each provider type's `health` answer.
    pub health: Vec<(ProviderType, serde_json::Value)>,
}

/// The providers by type and name.
pub struct Registry {
    dir: PathBuf,
    limits: Limits,
    /// Enabled extensions, found or not.
    enabled: Vec<String>,
    found: BTreeMap<String, Found>,
    skipped: Vec<(PathBuf, String)>,
    dns: BTreeMap<String, Arc<dyn DnsFactory>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir)
            .field("enabled", &self.enabled)
            .field("dns", &self.dns.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What `extension list` shows of one extension.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub path: Option<PathBuf>,
    pub enabled: bool,
    /// Its manifest, or why there is none (not installed, handshake failed, refused).
    pub manifest: Result<Manifest, String>,
}

impl Registry {
    /// The built-in providers only.
    pub fn built_in(dir: PathBuf, limits: Limits) -> Self {
        let mut r = Self {
            dir,
            limits,
            enabled: Vec::new(),
            found: BTreeMap::new(),
            skipped: Vec::new(),
            dns: BTreeMap::new(),
        };
        for kind in [
            Kind::Rfc2136,
            Kind::Cloudflare,
            Kind::Route53,
            Kind::Gcloud,
            Kind::Dnsmasq,
        ] {
            r.register_dns(
                &autogit_drivers::dns::provider_name(kind),
                Arc::new(BuiltIn(kind)),
            );
        }
        r
    }

    /// The built-ins, then every extension of `EXTENSIONS_ENABLED` found in the extensions
    /// directory (`EXTENSIONS_DIR`, else `<data dir>/extensions`), registered for `dns` under
    /// its name.
    pub fn load(settings: &Settings) -> Result<Self, String> {
        let p = &settings.platform;
        let dir = p
            .extensions_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| settings.data_dir.join("extensions"));
        let limits = Limits::new(Duration::from_secs(u64::from(p.extensions_timeout)));
        let mut r = Self::built_in(dir, limits);
        let (found, skipped) = ext::discover(&r.dir).map_err(|e| e.to_string())?;
        r.skipped = skipped;
        r.found = found.into_iter().map(|f| (f.name.clone(), f)).collect();
        r.enabled = p.extensions_enabled.clone();
        let available = r.available();
        for name in &available {
            let found = r.found[name].clone();
            let available = available.clone();
            r.register_dns(
                name,
                Arc::new(Extension {
                    found,
                    limits,
                    available,
                }),
            );
        }
        Ok(r)
    }

    /// The extensions enabled and installed.
    pub fn available(&self) -> Vec<String> {
        self.enabled
            .iter()
            .filter(|n| self.found.contains_key(*n))
            .cloned()
            .collect()
    }

    /// Registers (or replaces) the DNS provider `name`; returns the one it replaced.
    pub fn register_dns(
        &mut self,
        name: &str,
        factory: Arc<dyn DnsFactory>,
    ) -> Option<Arc<dyn DnsFactory>> {
        self.dns.insert(name.to_owned(), factory)
    }

    /// The DNS providers by name, with where each comes from.
    pub fn dns_names(&self) -> Vec<(String, String)> {
        self.dns
            .iter()
            .map(|(n, f)| (n.clone(), f.origin()))
            .collect()
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Files of the directory that are not extensions, with why.
    pub fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
    }

    /// The DNS provider `DNS_PROVIDER` names: `Ok(None)` for `manual` and `none`.
    pub async fn dns_provider(
        &self,
        settings: &Settings,
    ) -> Result<Option<Box<dyn DnsProvider>>, DnsError> {
        let p = &settings.platform;
        let name = match p.dns_provider {
            Kind::None | Kind::Manual => return Ok(None),
            Kind::Extension => p.dns_extension.clone().unwrap_or_default(),
            kind => autogit_drivers::dns::provider_name(kind),
        };
        match self.dns.get(&name) {
            Some(f) => f.build(settings).await.map(Some),
            None if self.enabled.contains(&name) => Err(DnsError::Config(
                ExtensionError::NotFound {
                    name,
                    dir: self.dir.clone(),
                }
                .to_string(),
            )),
            None => Err(DnsError::Config(format!(
                "no DNS provider `{name}` is registered"
            ))),
        }
    }

    /// The enabled extensions that declare `auth` (each asked its handshake), as login
    /// providers named after them; an extension named after a built-in (`ldap`) replaces it
    /// in the access controller. The extensions that could not be asked, with why.
    pub async fn auth_providers(
        &self,
        settings: &Settings,
    ) -> (Vec<Arc<dyn AuthProvider>>, Vec<(String, String)>) {
        let available = self.available();
        let (mut providers, mut failed) = (Vec::new(), Vec::new());
        for name in &available {
            let found = self.found[name].clone();
            match ext::handshake(&found, self.limits).await {
                Ok(m) if m.provider(ProviderType::Auth).is_some() => {
                    providers.push(Arc::new(ExtensionAuth {
                        found,
                        limits: self.limits,
                        settings: settings.clone(),
                        available: available.clone(),
                    }) as Arc<dyn AuthProvider>);
                }
                Ok(_) => {}
                Err(e) => failed.push((name.clone(), e.to_string())),
            }
        }
        (providers, failed)
    }

    /// The enabled extension `name`, started as a `notify` provider (`health.notify`'s
    /// `{type: extension, name}`).
    pub async fn notify_extension(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<ext::ExtensionNotify, ExtensionError> {
        if !self.enabled.iter().any(|n| n == name) {
            return Err(ExtensionError::Config {
                name: name.to_owned(),
                reason: "health.notify names it, but it is not in EXTENSIONS_ENABLED".to_owned(),
            });
        }
        let found = self.find(name)?;
        let available = self.available();
        ext::ExtensionNotify::start(found, &grant(settings, &available), self.limits).await
    }

    /// The enabled extension `name`, started as a `storage` provider (`backup.targets`'
    /// `{type: extension, name}`).
    pub async fn storage_extension(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<ext::ExtensionStorage, ExtensionError> {
        if !self.enabled.iter().any(|n| n == name) {
            return Err(ExtensionError::Config {
                name: name.to_owned(),
                reason: "backup.targets names it, but it is not in EXTENSIONS_ENABLED".to_owned(),
            });
        }
        let found = self.find(name)?;
        let available = self.available();
        ext::ExtensionStorage::start(found, &grant(settings, &available), self.limits).await
    }

    /// The enabled extension `name`, started as an `ssl` provider (`TLS_SOURCE=extension:<name>`).
    pub async fn ssl_extension(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<ext::ExtensionSsl, ExtensionError> {
        if !self.enabled.iter().any(|n| n == name) {
            return Err(ExtensionError::Config {
                name: name.to_owned(),
                reason: "TLS_SOURCE names it, but it is not in EXTENSIONS_ENABLED".to_owned(),
            });
        }
        let found = self.find(name)?;
        let available = self.available();
        ext::ExtensionSsl::start(found, &grant(settings, &available), self.limits).await
    }

    /// The enabled extension `name`, started as a `compute` provider (a runner `host:
    /// extension:NAME/HOST`); each command it runs may take `command_timeout` (or
    /// `EXTENSIONS_TIMEOUT` when that is longer).
    pub async fn compute_extension(
        &self,
        name: &str,
        settings: &Settings,
        command_timeout: Duration,
    ) -> Result<ext::ExtensionCompute, ExtensionError> {
        if !self.enabled.iter().any(|n| n == name) {
            return Err(ExtensionError::Config {
                name: name.to_owned(),
                reason: format!(
                    "a runner's host is `extension:{name}/…`, but `{name}` is not in EXTENSIONS_ENABLED"
                ),
            });
        }
        let found = self.find(name)?;
        let available = self.available();
        let mut limits = self.limits;
        limits.call_timeout = limits.call_timeout.max(command_timeout);
        ext::ExtensionCompute::start(found, &grant(settings, &available), limits).await
    }

    /// The extension `name` if it is installed.
    pub fn find(&self, name: &str) -> Result<&Found, ExtensionError> {
        self.found
            .get(name)
            .ok_or_else(|| ExtensionError::NotFound {
                name: name.to_owned(),
                dir: self.dir.clone(),
            })
    }

    /// Every installed or enabled extension with its manifest (each asked its handshake).
    pub async fn list(&self) -> Vec<Listed> {
        let mut names: Vec<String> = self.found.keys().cloned().collect();
        names.extend(self.enabled.iter().cloned());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let found = self.found.get(&name);
            let manifest = match found {
                Some(f) => ext::handshake(f, self.limits)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("not installed in {}", self.dir.display())),
            };
            out.push(Listed {
                enabled: self.enabled.contains(&name),
                path: found.map(|f| f.path.clone()),
                name,
                manifest,
            });
        }
        out
    }

    /// The order the enabled extensions start in, from their manifests' dependencies.
    pub fn start_order(listed: &[Listed]) -> Result<Vec<String>, OrderError> {
        let deps: BTreeMap<String, Vec<String>> = listed
            .iter()
            .filter(|l| l.enabled)
            .map(|l| {
                let d = l
                    .manifest
                    .as_ref()
                    .map(|m| m.dependencies.clone())
                    .unwrap_or_default();
                (l.name.clone(), d)
            })
            .collect();
        start_order(&deps)
    }

    /// `extension check`: the handshake, then, if it is enabled, for each provider type
    /// autogit can use from an extension, `initialize` with the settings and `health`, then
    /// `shutdown`. An extension that is not enabled is given no setting or secret: only its
    /// handshake runs.
    pub async fn check(&self, name: &str, settings: &Settings) -> Result<Checked, ExtensionError> {
        let found = self.find(name)?.clone();
        let manifest = ext::handshake(&found, self.limits).await?;
        let enabled = self.enabled.iter().any(|n| n == name);
        let mut health = Vec::new();
        let usable = manifest.providers.iter().filter(|_| enabled);
        for decl in usable {
            let zone = autogit_drivers::dns::zone_of(&settings.platform).unwrap_or_default();
            let context = match decl.kind {
                ProviderType::Dns => {
                    serde_json::json!({"zone": zone, "ttl": settings.platform.dns_ttl})
                }
                _ => serde_json::json!({}),
            };
            let available = self.available();
            let grant = grant(settings, &available);
            let started = ext::start(&found, decl.kind, &grant, context, self.limits).await?;
            let mut process = started.process;
            let answer = process.call("health", serde_json::json!({})).await;
            process.shutdown().await;
            health.push((decl.kind, answer?));
        }
        Ok(Checked {
            manifest,
            enabled,
            health,
        })
    }
}
