//! The DNS provider a platform uses, from its `.env` registry: `DNS_PROVIDER` and each
//! provider's settings (RFC2136_*, CLOUDFLARE_*, AWS_*, GCP_*, DNSMASQ_*), with secrets from
//! the variable or from the file `NAME_FILE` names. One factory for `dns plan`/`dns sync`,
//! certificate issuance and the daemon.

use super::DnsProvider;
use super::cloudflare::{self, Cloudflare, CloudflareConfig};
use super::dnsmasq::{Dnsmasq, DnsmasqConfig};
use super::gcloud::{self, Gcloud, GcloudConfig, ServiceAccount};
use super::rfc2136::{Rfc2136, Rfc2136Config};
use super::route53::{self, Route53, Route53Config};
use crate::secrets::env_or_file;
use autogit_core::platform::{DnsProvider as Kind, PlatformEnv};
use secrecy::SecretString;
use std::time::Duration;

/// Per network step (connect, each read) when talking to an RFC 2136 server.
pub const RFC2136_TIMEOUT: Duration = Duration::from_secs(10);

/// Providers autogit can update, for messages.
pub const WORKING: &str = "rfc2136 (BIND, Knot, PowerDNS: dynamic updates with a TSIG key), cloudflare (an API token), route53 (an IAM access key), gcloud (a service-account key), dnsmasq (a configuration file) and manual (`autogit dns plan` lists the records to create)";

/// How settings are looked up: the environment over `.env`, empty counts as unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The provider's name as `DNS_PROVIDER` spells it.
pub fn provider_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}").to_ascii_lowercase())
}

/// The zone: DNS_ZONE, else BASE_DOMAIN.
pub fn zone_of(platform: &PlatformEnv) -> Option<String> {
    platform
        .dns_zone
        .clone()
        .or_else(|| platform.base_domain.clone())
}

/// The provider of `DNS_PROVIDER`: `Ok(None)` for `manual` and `none` (autogit changes no
/// records); `Err` names the missing or unreadable setting.
pub fn from_platform(
    platform: &PlatformEnv,
    lookup: Lookup<'_>,
) -> Result<Option<Box<dyn DnsProvider>>, String> {
    let setting = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let name = provider_name(platform.dns_provider);
    let missing = |k: &str| format!("DNS_PROVIDER={name} needs {k} in .env or the environment");
    let zone = || zone_of(platform).ok_or_else(|| missing("BASE_DOMAIN (or DNS_ZONE)"));
    let p: Box<dyn DnsProvider> = match platform.dns_provider {
        Kind::None | Kind::Manual => return Ok(None),
        Kind::Extension => {
            return Err(format!(
                "DNS_PROVIDER={} names an extension: extensions are started by the application's provider registry, not by this factory",
                platform.dns_extension.as_deref().unwrap_or("?")
            ));
        }
        Kind::Rfc2136 => {
            let server = setting("RFC2136_SERVER").ok_or_else(|| missing("RFC2136_SERVER"))?;
            let key_name =
                setting("RFC2136_TSIG_KEY_NAME").ok_or_else(|| missing("RFC2136_TSIG_KEY_NAME"))?;
            let algorithm =
                setting("RFC2136_TSIG_ALGORITHM").unwrap_or_else(|| "hmac-sha256".to_owned());
            let secret = env_or_file(lookup, "RFC2136_TSIG_SECRET")?.ok_or_else(|| {
                missing("RFC2136_TSIG_SECRET (or RFC2136_TSIG_SECRET_FILE, a file holding it)")
            })?;
            Box::new(
                Rfc2136::new(&Rfc2136Config {
                    server,
                    zone: zone()?,
                    key_name,
                    algorithm,
                    secret: SecretString::from(secret),
                    timeout: RFC2136_TIMEOUT,
                })
                .map_err(|e| e.to_string())?,
            )
        }
        Kind::Cloudflare => {
            let token = env_or_file(lookup, "CLOUDFLARE_API_TOKEN")?.ok_or_else(|| {
                "DNS_PROVIDER=cloudflare needs CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_TOKEN_FILE, a file holding it) in .env or the environment: an API token with Zone:DNS:Edit".to_owned()
            })?;
            Box::new(
                Cloudflare::new(&CloudflareConfig {
                    api_url: setting("CLOUDFLARE_API_URL")
                        .unwrap_or_else(|| cloudflare::DEFAULT_API_URL.to_owned()),
                    token: SecretString::from(token),
                    zone: zone()?,
                    zone_id: setting("CLOUDFLARE_ZONE_ID"),
                    timeout: Duration::from_secs(30),
                })
                .map_err(|e| e.to_string())?,
            )
        }
        Kind::Route53 => {
            let key = setting("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
            let secret_key = env_or_file(lookup, "AWS_SECRET_ACCESS_KEY")?.ok_or_else(|| {
                missing("AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE, a file holding it)")
            })?;
            let zone_id =
                setting("AWS_HOSTED_ZONE_ID").ok_or_else(|| missing("AWS_HOSTED_ZONE_ID"))?;
            Box::new(
                Route53::new(&Route53Config {
                    endpoint: setting("AWS_ROUTE53_ENDPOINT")
                        .unwrap_or_else(|| route53::DEFAULT_ENDPOINT.to_owned()),
                    access_key_id: key,
                    secret_access_key: SecretString::from(secret_key),
                    session_token: setting("AWS_SESSION_TOKEN").map(SecretString::from),
                    hosted_zone_id: zone_id,
                    zone: zone()?,
                    timeout: Duration::from_secs(30),
                    poll_interval: Duration::from_secs(2),
                    insync_timeout: Duration::from_secs(180),
                })
                .map_err(|e| e.to_string())?,
            )
        }
        Kind::Dnsmasq => {
            let path = setting("DNSMASQ_CONFIG_PATH").ok_or_else(|| {
                "DNS_PROVIDER=dnsmasq needs DNSMASQ_CONFIG_PATH in .env or the environment: the absolute path of a file dnsmasq includes (conf-file= or a file in conf-dir)".to_owned()
            })?;
            Box::new(
                Dnsmasq::new(&DnsmasqConfig {
                    path: path.into(),
                    reload_command: setting("DNSMASQ_RELOAD_COMMAND"),
                    default_ttl: platform.dns_ttl,
                    timeout: Duration::from_secs(60),
                })
                .map_err(|e| e.to_string())?,
            )
        }
        Kind::Gcloud => {
            let project = setting("GCP_PROJECT").ok_or_else(|| missing("GCP_PROJECT"))?;
            let managed_zone =
                setting("GCP_MANAGED_ZONE").ok_or_else(|| missing("GCP_MANAGED_ZONE"))?;
            let file = setting("GCP_SERVICE_ACCOUNT_FILE").ok_or_else(|| {
                missing("GCP_SERVICE_ACCOUNT_FILE (the service account's JSON key)")
            })?;
            let path = std::path::Path::new(&file);
            let bytes = crate::fsx::read_bounded(path, 64 * 1024)
                .map_err(|e| format!("GCP_SERVICE_ACCOUNT_FILE: cannot read {file}: {e}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("GCP_SERVICE_ACCOUNT_FILE: {file} is not UTF-8 text"))?;
            let account = ServiceAccount::from_json(&text, path).map_err(|e| e.to_string())?;
            Box::new(
                Gcloud::new(&GcloudConfig {
                    endpoint: setting("GCP_DNS_ENDPOINT")
                        .unwrap_or_else(|| gcloud::DEFAULT_ENDPOINT.to_owned()),
                    project,
                    managed_zone,
                    account,
                    zone: zone()?,
                    timeout: Duration::from_secs(30),
                    poll_interval: Duration::from_secs(2),
                    done_timeout: Duration::from_secs(180),
                })
                .map_err(|e| e.to_string())?,
            )
        }
    };
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn platform(kind: Kind) -> PlatformEnv {
        PlatformEnv {
            dns_provider: kind,
            base_domain: Some("example.test".into()),
            ..PlatformEnv::default()
        }
    }

    #[test]
    fn manual_and_none_have_no_provider() {
        let none = |_: &str| None;
        assert!(
            from_platform(&platform(Kind::Manual), &none)
                .unwrap()
                .is_none()
        );
        assert!(
            from_platform(&platform(Kind::None), &none)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_missing_setting_is_named_and_a_secret_never_shown() {
        let mut vals = BTreeMap::new();
        vals.insert("RFC2136_SERVER", "127.0.0.1:53");
        let lookup = |k: &str| vals.get(k).map(|v| (*v).to_owned());
        let e = from_platform(&platform(Kind::Rfc2136), &lookup)
            .err()
            .unwrap();
        assert!(e.contains("RFC2136_TSIG_KEY_NAME"), "{e}");
        vals.insert("RFC2136_TSIG_KEY_NAME", "autogit");
        vals.insert("RFC2136_TSIG_SECRET", "c2VjcmV0LXZhbHVlLWZvci10ZXN0cw==");
        let lookup = |k: &str| vals.get(k).map(|v| (*v).to_owned());
        let p = from_platform(&platform(Kind::Rfc2136), &lookup)
            .unwrap()
            .unwrap();
        assert!(p.describe().contains("127.0.0.1:53"));
        assert!(!p.describe().contains("c2VjcmV0"));
    }
}
