//! The platform registry: the `.env` file (BASE_DOMAIN, ACME_EMAIL, SERVICES_ENABLED,
//! PORT_ALLOCATION, PORT_<SERVICE>, DNS settings). The process environment overrides the file,
//! as with every dotenv tool. Keys autogit does not know are allowed (the file also holds the
//! secrets that `token_env` fields name) unless they look like a misspelt autogit key.

use crate::diag::{Diagnostic, Diagnostics, suggest};
use crate::source::{Loc, Origin, SourceId, Sources};
use crate::validate::check_hostname;
use serde::Serialize;
use std::collections::BTreeMap;

/// A service of the platform catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceId {
    Gitlab,
    Grafana,
    Loki,
    Tempo,
    Prometheus,
    Meilisearch,
    Api,
}

impl ServiceId {
    pub const ALL: [ServiceId; 7] = [
        ServiceId::Gitlab,
        ServiceId::Grafana,
        ServiceId::Loki,
        ServiceId::Tempo,
        ServiceId::Prometheus,
        ServiceId::Meilisearch,
        ServiceId::Api,
    ];
    pub const NAMES: [&'static str; 7] = [
        "gitlab",
        "grafana",
        "loki",
        "tempo",
        "prometheus",
        "meilisearch",
        "api",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortAllocation {
    /// Free ports are picked from the pool and remembered across runs.
    Dynamic,
    /// Every published service names its port in PORT_<SERVICE>.
    Explicit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsProvider {
    None,
    Rfc2136,
    Cloudflare,
    Route53,
    Gcloud,
    Dnsmasq,
    Manual,
    /// An extension (`EXTENSIONS_ENABLED` names it) provides the records: its name is
    /// [`PlatformEnv::dns_extension`]. An extension named like a built-in replaces it.
    Extension,
}

impl DnsProvider {
    const NAMES: [&'static str; 7] = [
        "none",
        "rfc2136",
        "cloudflare",
        "route53",
        "gcloud",
        "dnsmasq",
        "manual",
    ];

    fn parse(s: &str) -> Option<Self> {
        use DnsProvider::*;
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => None,
            "rfc2136" | "bind" => Rfc2136,
            "cloudflare" => Cloudflare,
            "route53" => Route53,
            "gcloud" | "google" => Gcloud,
            "dnsmasq" => Dnsmasq,
            "manual" => Manual,
            _ => return Option::None,
        })
    }

    /// Keys that must be set when this provider is selected.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            DnsProvider::None | DnsProvider::Manual | DnsProvider::Extension => &[],
            DnsProvider::Rfc2136 => &[
                "RFC2136_SERVER",
                "RFC2136_TSIG_KEY_NAME",
                "RFC2136_TSIG_SECRET",
            ],
            DnsProvider::Cloudflare => &["CLOUDFLARE_API_TOKEN"],
            DnsProvider::Route53 => &[
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_HOSTED_ZONE_ID",
            ],
            DnsProvider::Gcloud => &[
                "GCP_PROJECT",
                "GCP_MANAGED_ZONE",
                "GCP_SERVICE_ACCOUNT_FILE",
                "GCP_DNS_ENDPOINT",
            ],
            DnsProvider::Dnsmasq => &["DNSMASQ_CONFIG_PATH"],
        }
    }
}

/// Where the platform certificate comes from (`TLS_SOURCE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsSource {
    /// An ACME CA (`ACME_DIRECTORY`), by DNS-01 or HTTP-01: today's behaviour.
    #[default]
    Acme,
    /// autogit's own CA (for LAN-only installs): `autogit tls ca` prints it for clients.
    Internal,
    /// A user-supplied chain and key (`TLS_CERT_FILE`, `TLS_KEY_FILE`).
    File,
    /// `extension:<name>`: an enabled extension providing `ssl` (`ssl.issue`), named by
    /// [`PlatformEnv::tls_extension`].
    Extension,
}

impl TlsSource {
    /// The valid `TLS_SOURCE` values.
    pub const NAMES: &[&str] = &["acme", "internal", "file"];

    pub fn parse(s: &str) -> Option<TlsSource> {
        match s {
            "acme" => Some(TlsSource::Acme),
            "internal" => Some(TlsSource::Internal),
            "file" => Some(TlsSource::File),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TlsSource::Acme => "acme",
            TlsSource::Internal => "internal",
            TlsSource::File => "file",
            TlsSource::Extension => "extension",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsMode {
    Wildcard,
    PerService,
}

/// The decoded platform registry. Secret values are never kept here, only whether they are set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlatformEnv {
    pub base_domain: Option<String>,
    pub acme_email: Option<String>,
    /// Where the daemon pushes the enriched log lines (Loki's push API), besides its own
    /// store: `LOKI_URL`, else the platform's Loki on its published port when enabled.
    pub loki_url: Option<String>,
    /// Where the daemon also pushes the stored lines as documents (Meilisearch's document
    /// API): `MEILISEARCH_URL`, else the platform's Meilisearch on its published port when
    /// enabled. The key is `MEILI_MASTER_KEY` of `.env`.
    pub meilisearch_url: Option<String>,
    /// Where autogit exports its traces (OTLP/HTTP, protobuf): `OTLP_ENDPOINT`, the
    /// collector's base URL (`/v1/traces` is added). Unset: no traces.
    pub otlp_endpoint: Option<String>,
    /// `staging`, `production` or a directory URL.
    pub acme_directory: String,
    /// ACME_CA_ROOT: a PEM file to trust for the ACME CA's HTTPS (a private CA such as
    /// step-ca or Pebble); unset: the public web PKI.
    pub acme_ca_root: Option<String>,
    /// ACME_CHALLENGE=http-01: certificates for the services' own names by HTTP-01 (served by
    /// the ingress) instead of the DNS-01 wildcard.
    pub acme_http01: bool,
    /// TLS_SOURCE: where the platform certificate comes from (`acme`, `internal`, `file`).
    pub tls_source: TlsSource,
    /// TLS_CERT_FILE / TLS_KEY_FILE: the user-supplied chain and key of `TLS_SOURCE=file`
    /// (absolute paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// With [`TlsSource::Extension`]: the extension's name (after `extension:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_extension: Option<String>,
    pub services_enabled: Vec<ServiceId>,
    pub port_allocation: PortAllocation,
    pub port_pool: (u16, u16),
    pub ports: BTreeMap<ServiceId, u16>,
    /// PORT_TEMPO_OTLP: the host port (on loopback) of Tempo's OTLP/HTTP receiver, where
    /// autogit sends its traces when OTLP_ENDPOINT is unset; dynamic when not set.
    pub tempo_otlp_port: Option<u16>,
    pub ingress_ip: Option<String>,
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
    pub dns_provider: DnsProvider,
    pub dns_mode: DnsMode,
    /// TTL of the records autogit writes (DNS_TTL), seconds.
    pub dns_ttl: u32,
    /// The zone to update (DNS_ZONE); `None`: BASE_DOMAIN is the zone apex.
    pub dns_zone: Option<String>,
    /// CLOUDFLARE_PROXIED: the subdomains (routed services, e.g. `registry`) whose address
    /// records go through Cloudflare's proxy (`proxied: true`). Empty by default; only with
    /// DNS_PROVIDER=cloudflare; never `gitlab` (its name also carries GitLab SSH, which
    /// Cloudflare's HTTP proxy cannot pass).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloudflare_proxied: Vec<String>,
    /// With [`DnsProvider::Extension`]: the extension's name (DNS_PROVIDER's value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_extension: Option<String>,
    /// EXTENSIONS_ENABLED: the extensions autogit may run, by name (comma-separated).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions_enabled: Vec<String>,
    /// EXTENSIONS_DIR: where extensions are found; `None`: `<data dir>/extensions`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions_dir: Option<String>,
    /// EXTENSIONS_TIMEOUT: seconds an extension has to answer one call.
    pub extensions_timeout: u32,
    /// Where each explicit port was set, for collision diagnostics.
    #[serde(skip)]
    pub port_locs: BTreeMap<ServiceId, Loc>,
    #[serde(skip)]
    pub ingress_port_locs: [Option<Loc>; 2],
}

impl Default for PlatformEnv {
    fn default() -> Self {
        Self {
            base_domain: None,
            acme_email: None,
            loki_url: None,
            meilisearch_url: None,
            otlp_endpoint: None,
            acme_directory: "production".to_owned(),
            acme_ca_root: None,
            acme_http01: false,
            tls_source: TlsSource::Acme,
            tls_cert_file: None,
            tls_key_file: None,
            tls_extension: None,
            services_enabled: vec![ServiceId::Gitlab],
            port_allocation: PortAllocation::Dynamic,
            port_pool: (20000, 20999),
            ports: BTreeMap::new(),
            tempo_otlp_port: None,
            ingress_ip: None,
            ingress_http_port: 80,
            ingress_https_port: 443,
            dns_provider: DnsProvider::None,
            dns_mode: DnsMode::Wildcard,
            dns_ttl: 300,
            dns_zone: None,
            cloudflare_proxied: Vec::new(),
            dns_extension: None,
            extensions_enabled: Vec::new(),
            extensions_dir: None,
            extensions_timeout: crate::extension::DEFAULT_CALL_TIMEOUT_SECS,
            port_locs: BTreeMap::new(),
            ingress_port_locs: [None, None],
        }
    }
}

const KNOWN: &[&str] = &[
    "BASE_DOMAIN",
    "ACME_EMAIL",
    "ACME_DIRECTORY",
    "ACME_CA_ROOT",
    "ACME_CHALLENGE",
    "TLS_SOURCE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "SERVICES_ENABLED",
    "PORT_ALLOCATION",
    "PORT_POOL",
    "INGRESS_IP",
    "INGRESS_HTTP_PORT",
    "INGRESS_HTTPS_PORT",
    "DNS_PROVIDER",
    "DNS_MODE",
    "DNS_TTL",
    "DNS_ZONE",
    "RFC2136_SERVER",
    "RFC2136_TSIG_KEY_NAME",
    "RFC2136_TSIG_ALGORITHM",
    "RFC2136_TSIG_SECRET",
    "RFC2136_TSIG_SECRET_FILE",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_API_TOKEN_FILE",
    "CLOUDFLARE_ZONE_ID",
    "CLOUDFLARE_API_URL",
    "CLOUDFLARE_PROXIED",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY_FILE",
    "AWS_SESSION_TOKEN",
    "AWS_HOSTED_ZONE_ID",
    "AWS_REGION",
    "AWS_ROUTE53_ENDPOINT",
    "GCP_PROJECT",
    "GCP_MANAGED_ZONE",
    "GCP_SERVICE_ACCOUNT_FILE",
    "DNSMASQ_CONFIG_PATH",
    "DNSMASQ_RELOAD_COMMAND",
    "LOKI_URL",
    "MEILISEARCH_URL",
    "OTLP_ENDPOINT",
    "EXTENSIONS_ENABLED",
    "EXTENSIONS_DIR",
    "EXTENSIONS_TIMEOUT",
    "LDAP_URL",
    "LDAP_STARTTLS",
    "LDAP_CA_FILE",
    "LDAP_BIND_DN",
    "LDAP_BIND_PASSWORD",
    "LDAP_BIND_PASSWORD_FILE",
    "LDAP_USER_BASE",
    "LDAP_USER_FILTER",
    "LDAP_USER_DN",
    "LDAP_GROUP_BASE",
    "LDAP_GROUP_FILTER",
    "LDAP_GROUP_ATTR",
    "LDAP_ROLES",
    "LDAP_TIMEOUT",
    "OIDC_ISSUER",
    "OIDC_CLIENT_ID",
    "OIDC_CLIENT_SECRET",
    "OIDC_CLIENT_SECRET_FILE",
    "OIDC_REDIRECT_URL",
    "OIDC_SCOPES",
    "OIDC_USERNAME_CLAIM",
    "OIDC_GROUPS_CLAIM",
    "OIDC_ROLES",
    "OIDC_TIMEOUT",
];

/// Secrets that may instead be read from a file named by `<KEY>_FILE` (Docker/systemd
/// credentials style); the file's content, without a trailing newline, is the value.
pub const FILE_VARIANTS: &[&str] = &[
    "RFC2136_TSIG_SECRET",
    "CLOUDFLARE_API_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
];

/// One `KEY=VALUE` entry with where it came from.
#[derive(Clone, Debug)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    pub loc: Loc,
}

/// Parses dotenv text: `KEY=VALUE`, optional `export `, `#` comments, single or double quotes
/// (double quotes understand `\n`, `\"` and `\\`). Later keys win, as in the shell.
pub fn parse_dotenv(text: &str, source: SourceId, diags: &mut Diagnostics) -> Vec<EnvEntry> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_start();
        let indent = raw.len() - line.len();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            diags.push(
                Diagnostic::error("dotenv-syntax", "expected KEY=VALUE")
                    .at(Some(Loc::new(
                        source,
                        line_no,
                        indent + 1,
                        raw.trim().chars().count(),
                    )))
                    .found(format!("`{}`", raw.trim())),
            );
            continue;
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !key.as_bytes()[0].is_ascii_digit();
        let key_col = raw.find(key).unwrap_or(0) + 1;
        if !valid {
            diags.push(
                Diagnostic::error(
                    "dotenv-syntax",
                    format!("`{key}` is not a valid variable name"),
                )
                .at(Some(Loc::new(source, line_no, key_col, key.len().max(1))))
                .expected("letters, digits and `_`, not starting with a digit"),
            );
            continue;
        }
        let value_col = raw.len() - rest.len() + 1;
        let rest_t = rest.trim();
        let value = if let Some(inner) = rest_t.strip_prefix('"') {
            match inner.rfind('"') {
                Some(end) => unescape(&inner[..end]),
                None => {
                    diags.push(
                        Diagnostic::error("dotenv-syntax", "unterminated double quote")
                            .at(Some(Loc::new(source, line_no, value_col, 1))),
                    );
                    continue;
                }
            }
        } else if let Some(inner) = rest_t.strip_prefix('\'') {
            match inner.rfind('\'') {
                Some(end) => inner[..end].to_owned(),
                None => {
                    diags.push(
                        Diagnostic::error("dotenv-syntax", "unterminated single quote")
                            .at(Some(Loc::new(source, line_no, value_col, 1))),
                    );
                    continue;
                }
            }
        } else {
            // An unquoted value ends at ` #` (an inline comment).
            rest_t.split(" #").next().unwrap_or("").trim().to_owned()
        };
        out.push(EnvEntry {
            key: key.to_owned(),
            value,
            loc: Loc::new(
                source,
                line_no,
                value_col,
                rest.trim_end().chars().count().max(1),
            ),
        });
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds the platform registry from the `.env` text (if any) and the process environment.
/// Returns the registry and the merged key → value map (secrets included, for drivers).
pub fn load_platform(
    dotenv: Option<(&str, &str)>,
    process_env: &[(String, String)],
    sources: &mut Sources,
    diags: &mut Diagnostics,
) -> (PlatformEnv, BTreeMap<String, EnvEntry>) {
    let mut merged: BTreeMap<String, EnvEntry> = BTreeMap::new();
    if let Some((name, text)) = dotenv {
        let id = sources.add(Origin::File(name.to_owned()), text);
        for e in parse_dotenv(text, id, diags) {
            // Misspelt autogit keys in the file are worth a warning; other keys are secrets or
            // settings for other tools.
            if !KNOWN.contains(&e.key.as_str())
                && !e.key.starts_with("PORT_")
                && let Some(s) = suggest(&e.key, KNOWN.iter().copied())
            {
                let key_loc = Loc::new(e.loc.source, e.loc.line as usize, 1, e.key.len());
                diags.push(
                    Diagnostic::warning(
                        "dotenv-unknown",
                        format!("`{}` is not an autogit setting", e.key),
                    )
                    .at(Some(key_loc))
                    .label(format!("did you mean `{s}`?"))
                    .path(e.key.clone()),
                );
            }
            merged.insert(e.key.clone(), e);
        }
    }
    for (k, v) in process_env {
        if KNOWN.contains(&k.as_str()) || (k.starts_with("PORT_") && k.len() > 5) {
            let id = sources.add(Origin::Env(k.clone()), format!("{k}={v}"));
            merged.insert(
                k.clone(),
                EnvEntry {
                    key: k.clone(),
                    value: v.clone(),
                    loc: Loc::new(id, 1, k.len() + 2, v.chars().count().max(1)),
                },
            );
        }
    }

    let mut p = PlatformEnv::default();
    let bad = |e: &EnvEntry, expected: &str| {
        Diagnostic::error("invalid-value", format!("invalid value for `{}`", e.key))
            .at(Some(e.loc))
            .path(e.key.clone())
            .found(format!("`{}`", e.value))
            .label(format!("expected {expected}"))
            .expected(expected.to_owned())
    };
    let get = |k: &str| merged.get(k).filter(|e| !e.value.is_empty());

    if let Some(e) = get("BASE_DOMAIN") {
        match check_hostname(&e.value) {
            Ok(()) if e.value.contains('.') => p.base_domain = Some(e.value.to_ascii_lowercase()),
            Ok(()) => diags.push(bad(
                e,
                "a domain with at least two labels, e.g. example.com",
            )),
            Err(why) => diags.push(bad(e, "a domain such as example.com").help(why)),
        }
    }
    if let Some(e) = get("ACME_EMAIL") {
        let ok = e
            .value
            .split_once('@')
            .is_some_and(|(u, d)| !u.is_empty() && d.contains('.') && !d.contains('@'));
        if ok {
            p.acme_email = Some(e.value.clone())
        } else {
            diags.push(bad(e, "an email address"))
        }
    }
    if let Some(e) = get("LOKI_URL") {
        let v = e.value.trim_end_matches('/');
        if (v.starts_with("http://") || v.starts_with("https://"))
            && v.len() > "https://".len()
            && !v.contains(char::is_whitespace)
            && !v.contains('@')
        {
            p.loki_url = Some(v.to_owned());
        } else {
            diags.push(bad(
                e,
                "Loki's base URL, http:// or https://, without credentials (http://loki.lan:3100)",
            ));
        }
    }
    if let Some(e) = get("MEILISEARCH_URL") {
        let v = e.value.trim_end_matches('/');
        if (v.starts_with("http://") || v.starts_with("https://"))
            && v.len() > "https://".len()
            && !v.contains(char::is_whitespace)
            && !v.contains('@')
        {
            p.meilisearch_url = Some(v.to_owned());
        } else {
            diags.push(bad(
                e,
                "Meilisearch's base URL, http:// or https://, without credentials (http://search.lan:7700); its key goes in MEILI_MASTER_KEY",
            ));
        }
    }
    if let Some(e) = get("OTLP_ENDPOINT") {
        let v = e.value.trim_end_matches('/');
        if (v.starts_with("http://") || v.starts_with("https://"))
            && v.len() > "https://".len()
            && !v.contains(char::is_whitespace)
            && !v.contains('@')
        {
            p.otlp_endpoint = Some(v.to_owned());
        } else {
            diags.push(bad(
                e,
                "an OpenTelemetry collector's OTLP/HTTP base URL, http:// or https://, without credentials (http://tempo.lan:4318)",
            ));
        }
    }
    if let Some(e) = get("ACME_DIRECTORY") {
        let v = e.value.as_str();
        if v == "staging" || v == "production" || v.starts_with("https://") {
            p.acme_directory = v.to_owned();
        } else {
            diags.push(bad(
                e,
                "`staging`, `production` or an https:// directory URL",
            ));
        }
    }
    if let Some(e) = get("ACME_CHALLENGE") {
        match e.value.as_str() {
            "dns-01" => p.acme_http01 = false,
            "http-01" => p.acme_http01 = true,
            _ => diags.push(bad(e, "`dns-01` (a wildcard certificate) or `http-01`")),
        }
    }
    if let Some(e) = get("ACME_CA_ROOT") {
        if e.value.starts_with('/') {
            p.acme_ca_root = Some(e.value.clone());
        } else {
            diags.push(bad(e, "an absolute path to a PEM file"));
        }
    }
    if let Some(e) = get("TLS_SOURCE") {
        match TlsSource::parse(e.value.as_str()) {
            Some(t) => p.tls_source = t,
            // Checked against EXTENSIONS_ENABLED below, once that is decoded.
            None if e.value.starts_with("extension:") => {
                p.tls_source = TlsSource::Extension;
                p.tls_extension = Some(e.value["extension:".len()..].trim().to_owned());
            }
            None => diags.push(bad(
                e,
                "`acme` (a certificate from ACME_DIRECTORY), `internal` (autogit's own CA, for LAN-only installs), `file` (TLS_CERT_FILE and TLS_KEY_FILE) or `extension:<name>` (an enabled extension providing `ssl`)",
            )),
        }
    }
    for (key, slot) in [
        ("TLS_CERT_FILE", &mut p.tls_cert_file),
        ("TLS_KEY_FILE", &mut p.tls_key_file),
    ] {
        if let Some(e) = get(key) {
            if e.value.starts_with('/') {
                *slot = Some(e.value.clone());
            } else {
                diags.push(bad(e, "an absolute path to a PEM file"));
            }
        }
    }
    if p.tls_source == TlsSource::File
        && let Some(e) = get("TLS_SOURCE")
    {
        let missing: Vec<&str> = [
            ("TLS_CERT_FILE", p.tls_cert_file.is_none()),
            ("TLS_KEY_FILE", p.tls_key_file.is_none()),
        ]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| k)
        .collect();
        if !missing.is_empty() {
            diags.push(
                Diagnostic::error(
                    "missing",
                    format!("TLS_SOURCE=file needs {}", missing.join(" and ")),
                )
                .at(Some(e.loc))
                .path(e.key.clone())
                .help("set TLS_CERT_FILE (the PEM chain, leaf first) and TLS_KEY_FILE (its private key) to absolute paths"),
            );
        }
    }
    // ACME_CHALLENGE chooses how an ACME CA is answered: with another source there is no ACME
    // at all (no HTTP-01 webroot for nginx, no Traefik resolver of its own).
    if p.tls_source != TlsSource::Acme
        && p.acme_http01
        && let Some(e) = get("ACME_CHALLENGE")
    {
        p.acme_http01 = false;
        diags.push(
            Diagnostic::warning(
                "acme-challenge-unused",
                "ACME_CHALLENGE=http-01 is ignored: TLS_SOURCE is not `acme`, so no ACME CA is asked",
            )
            .at(Some(e.loc))
            .path(e.key.clone())
            .help("remove ACME_CHALLENGE, or set TLS_SOURCE=acme to have the certificate from an ACME CA"),
        );
    }
    if let Some(e) = get("SERVICES_ENABLED") {
        let mut list = Vec::new();
        for name in e.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match ServiceId::parse(name) {
                Some(s) if !list.contains(&s) => list.push(s),
                Some(_) => {}
                None => {
                    let mut d = bad(
                        e,
                        &format!("a comma-separated list of: {}", ServiceId::NAMES.join(", ")),
                    )
                    .message_with(format!("unknown service `{name}` in SERVICES_ENABLED"));
                    if let Some(s) = suggest(name, ServiceId::NAMES) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                }
            }
        }
        if !list.contains(&ServiceId::Gitlab) {
            diags.push(
                Diagnostic::warning(
                    "no-gitlab",
                    "SERVICES_ENABLED does not list `gitlab`; it is always deployed",
                )
                .at(Some(e.loc)),
            );
            list.insert(0, ServiceId::Gitlab);
        }
        list.sort();
        p.services_enabled = list;
    }
    if let Some(e) = get("PORT_ALLOCATION") {
        match e.value.to_ascii_lowercase().as_str() {
            "dynamic" => p.port_allocation = PortAllocation::Dynamic,
            "explicit" => p.port_allocation = PortAllocation::Explicit,
            _ => diags.push(bad(e, "`dynamic` or `explicit`")),
        }
    }
    if let Some(e) = get("PORT_POOL") {
        let range = e.value.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        match range {
            Some((a, b)) if a >= 1024 && a < b => p.port_pool = (a, b),
            _ => diags.push(bad(
                e,
                "a range LOW-HIGH of ports from 1024 to 65535, e.g. 20000-20999",
            )),
        }
    }
    let port = |e: &EnvEntry| e.value.trim().parse::<u16>().ok().filter(|p| *p > 0);
    for (k, e) in &merged {
        let Some(svc) = k.strip_prefix("PORT_") else {
            continue;
        };
        if matches!(svc, "ALLOCATION" | "POOL") || e.value.is_empty() {
            continue;
        }
        if svc == "TEMPO_OTLP" {
            match port(e) {
                Some(v) => p.tempo_otlp_port = Some(v),
                None => diags.push(bad(e, "a port number from 1 to 65535")),
            }
            continue;
        }
        let Some(id) = ServiceId::parse(svc) else {
            let mut d = Diagnostic::error("unknown-service", format!("`{k}` names no service"))
                .at(Some(Loc::new(
                    e.loc.source,
                    e.loc.line as usize,
                    1,
                    k.len(),
                )))
                .path(k.clone())
                .expected(format!(
                    "PORT_<SERVICE> with SERVICE one of: {}",
                    ServiceId::NAMES.join(", ").to_uppercase()
                ));
            if let Some(s) = suggest(&svc.to_ascii_lowercase(), ServiceId::NAMES) {
                d = d.label(format!("did you mean `PORT_{}`?", s.to_ascii_uppercase()));
            }
            diags.push(d);
            continue;
        };
        if id == ServiceId::Gitlab {
            diags.push(
                Diagnostic::error(
                    "gitlab-port",
                    "GitLab's ports are set in autogit.yml (`gitlab.ports`), not PORT_GITLAB",
                )
                .at(Some(e.loc))
                .path(k.clone()),
            );
            continue;
        }
        match port(e) {
            Some(v) => {
                p.ports.insert(id, v);
                p.port_locs.insert(id, e.loc);
            }
            None => diags.push(bad(e, "a port number from 1 to 65535")),
        }
    }
    for (i, key) in ["INGRESS_HTTP_PORT", "INGRESS_HTTPS_PORT"]
        .into_iter()
        .enumerate()
    {
        if let Some(e) = get(key) {
            match port(e) {
                Some(v) => {
                    if i == 0 {
                        p.ingress_http_port = v
                    } else {
                        p.ingress_https_port = v
                    }
                    p.ingress_port_locs[i] = Some(e.loc);
                }
                None => diags.push(bad(e, "a port number from 1 to 65535")),
            }
        }
    }
    if let Some(e) = get("INGRESS_IP") {
        if e.value.parse::<std::net::IpAddr>().is_ok() {
            p.ingress_ip = Some(e.value.clone())
        } else {
            diags.push(bad(e, "an IP address"))
        }
    }
    if let Some(e) = get("EXTENSIONS_ENABLED") {
        for name in e.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match crate::extension::check_name(name) {
                Ok(()) if !p.extensions_enabled.iter().any(|n| n == name) => {
                    p.extensions_enabled.push(name.to_owned())
                }
                Ok(()) => {}
                Err(why) => diags.push(
                    bad(e, "a comma-separated list of extension names")
                        .message_with("invalid extension name in EXTENSIONS_ENABLED".to_owned())
                        .help(why),
                ),
            }
        }
    }
    if let Some(e) = get("EXTENSIONS_DIR") {
        if e.value.starts_with('/') {
            p.extensions_dir = Some(e.value.clone());
        } else {
            diags.push(bad(e, "an absolute path"));
        }
    }
    if let Some(e) = get("EXTENSIONS_TIMEOUT") {
        match e.value.trim().parse::<u32>() {
            Ok(t) if (1..=3600).contains(&t) => p.extensions_timeout = t,
            _ => diags.push(bad(e, "seconds, from 1 to 3600")),
        }
    }
    if let (Some(name), Some(e)) = (p.tls_extension.clone(), get("TLS_SOURCE")) {
        match p
            .extensions_enabled
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&name))
        {
            Some(n) => p.tls_extension = Some(n.clone()),
            None => {
                p.tls_source = TlsSource::Acme;
                p.tls_extension = None;
                diags.push(
                    bad(
                        e,
                        "`extension:<name>` naming an extension in EXTENSIONS_ENABLED",
                    )
                    .help(format!(
                        "add `{name}` to EXTENSIONS_ENABLED, or pick `acme`, `internal` or `file`"
                    )),
                );
            }
        }
    }
    if let Some(e) = get("DNS_PROVIDER") {
        let enabled = p
            .extensions_enabled
            .iter()
            .find(|n| n.eq_ignore_ascii_case(e.value.trim()));
        match DnsProvider::parse(&e.value) {
            // An enabled extension of that name wins, also over a built-in of the same name.
            _ if enabled.is_some() => {
                p.dns_provider = DnsProvider::Extension;
                p.dns_extension = enabled.cloned();
            }
            Some(d) => p.dns_provider = d,
            None => {
                let mut d = bad(
                    e,
                    &format!(
                        "one of: {}, or an extension named in EXTENSIONS_ENABLED",
                        DnsProvider::NAMES.join(", ")
                    ),
                );
                if let Some(s) = suggest(&e.value, DnsProvider::NAMES) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                diags.push(d);
            }
        }
        for req in p.dns_provider.required_keys() {
            let from_file = FILE_VARIANTS.contains(req);
            if get(req).is_none() && !(from_file && get(&format!("{req}_FILE")).is_some()) {
                let or_file = if from_file {
                    format!(" (or {req}_FILE=<path of a file holding it>)")
                } else {
                    String::new()
                };
                diags.push(
                    Diagnostic::error(
                        "dns-missing",
                        format!("DNS_PROVIDER={} needs `{req}`", e.value),
                    )
                    .at(Some(e.loc))
                    .path((*req).to_owned())
                    .help(format!(
                        "add {req}=...{or_file} to the .env file or the environment"
                    )),
                );
            }
        }
    }
    if let Some(e) = get("DNS_MODE") {
        match e.value.to_ascii_lowercase().as_str() {
            "wildcard" => p.dns_mode = DnsMode::Wildcard,
            "per-service" => p.dns_mode = DnsMode::PerService,
            _ => diags.push(bad(e, "`wildcard` or `per-service`")),
        }
    }
    if let Some(e) = get("DNS_TTL") {
        match e.value.trim().parse::<u32>() {
            Ok(t) if (1..=604_800).contains(&t) => p.dns_ttl = t,
            _ => diags.push(bad(e, "a TTL in seconds from 1 to 604800, e.g. 300")),
        }
    }
    if let Some(e) = get("DNS_ZONE") {
        let zone = e.value.trim_end_matches('.').to_ascii_lowercase();
        match check_hostname(&zone) {
            Ok(()) => {
                let inside = p
                    .base_domain
                    .as_deref()
                    .is_none_or(|b| b == zone || b.ends_with(&format!(".{zone}")));
                if inside {
                    p.dns_zone = Some(zone);
                } else {
                    diags.push(
                        bad(e, "the zone that holds BASE_DOMAIN (BASE_DOMAIN or a parent of it)")
                            .help("DNS_ZONE is the zone apex on the DNS server; leave it unset when BASE_DOMAIN is the apex"),
                    );
                }
            }
            Err(why) => diags.push(bad(e, "a zone name such as example.com").help(why)),
        }
    }
    if let Some(e) = get("CLOUDFLARE_PROXIED") {
        load_proxied(e, &mut p, diags);
    }
    (p, merged)
}

/// CLOUDFLARE_PROXIED: comma-separated subdomains; refused for `gitlab` (GitLab SSH shares its
/// name) and with any DNS provider other than Cloudflare (nothing else can proxy).
fn load_proxied(e: &EnvEntry, p: &mut PlatformEnv, diags: &mut Diagnostics) {
    let names: Vec<String> = e
        .value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return;
    }
    if p.dns_provider != DnsProvider::Cloudflare {
        diags.push(
            Diagnostic::error(
                "proxied-needs-cloudflare",
                "CLOUDFLARE_PROXIED is set but DNS_PROVIDER is not `cloudflare`".to_owned(),
            )
            .at(Some(e.loc))
            .path("CLOUDFLARE_PROXIED".to_owned())
            .help("only Cloudflare can proxy records: set DNS_PROVIDER=cloudflare, or remove CLOUDFLARE_PROXIED"),
        );
        return;
    }
    for name in names {
        if name == "gitlab" || name.contains("ssh") {
            diags.push(
                Diagnostic::error(
                    "proxied-ssh",
                    format!("CLOUDFLARE_PROXIED names `{name}`: GitLab SSH cannot be proxied"),
                )
                .at(Some(e.loc))
                .path("CLOUDFLARE_PROXIED".to_owned())
                .help("gitlab.<BASE_DOMAIN> also serves git over SSH (gitlab.ports.ssh), which Cloudflare's HTTP proxy does not pass; remove it from CLOUDFLARE_PROXIED"),
            );
            continue;
        }
        if let Err(why) = check_hostname(&name).and_then(|()| {
            if name.contains('.') {
                Err("a subdomain label such as `registry`, without BASE_DOMAIN".to_owned())
            } else {
                Ok(())
            }
        }) {
            diags.push(
                Diagnostic::error(
                    "invalid-value",
                    "invalid value for `CLOUDFLARE_PROXIED`".to_owned(),
                )
                .at(Some(e.loc))
                .path("CLOUDFLARE_PROXIED".to_owned())
                .found(format!("`{name}`"))
                .expected("comma-separated subdomains, e.g. `registry,grafana`".to_owned())
                .help(why),
            );
            continue;
        }
        if !p.cloudflare_proxied.contains(&name) {
            p.cloudflare_proxied.push(name);
        }
    }
}

trait MessageWith {
    fn message_with(self, m: String) -> Self;
}
impl MessageWith for Diagnostic {
    fn message_with(mut self, m: String) -> Self {
        self.message = m;
        self
    }
}

/// The commented `.env` that `autogit init` writes.
pub const ENV_TEMPLATE: &str = include_str!("default.env");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_endpoint_is_a_plain_http_base_url() {
        let (p, d) = load("OTLP_ENDPOINT=http://tempo.lan:4318/\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.otlp_endpoint.as_deref(), Some("http://tempo.lan:4318"));
        assert_eq!(load("").0.otlp_endpoint, None, "no traces unless asked");
        for bad in ["tempo:4318", "grpc://tempo:4317", "https://u:p@tempo"] {
            let (p, d) = load(&format!("OTLP_ENDPOINT={bad}\n"));
            assert!(p.otlp_endpoint.is_none(), "{bad}");
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
        }
    }

    /// HTTP-01 belongs to ACME: with another source it is ignored, with a warning, so the
    /// plan renders no webroot or Traefik resolver for it.
    #[test]
    fn acme_challenge_only_with_an_acme_source() {
        let (p, d) = load("ACME_CHALLENGE=http-01\n");
        assert!(p.acme_http01 && d.is_empty(), "{d:?}");
        let (p, d) = load("TLS_SOURCE=internal\nACME_CHALLENGE=http-01\n");
        assert!(!p.acme_http01);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(format!("{d:?}").contains("acme-challenge-unused"), "{d:?}");
    }

    #[test]
    fn tls_source_and_its_files() {
        assert_eq!(load("").0.tls_source, TlsSource::Acme, "today's behaviour");
        let (p, d) = load("TLS_SOURCE=internal\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.tls_source, TlsSource::Internal);
        let (p, d) = load("TLS_SOURCE=file\nTLS_CERT_FILE=/etc/c.pem\nTLS_KEY_FILE=/etc/k.pem\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.tls_source, TlsSource::File);
        assert_eq!(p.tls_cert_file.as_deref(), Some("/etc/c.pem"));
        assert_eq!(p.tls_key_file.as_deref(), Some("/etc/k.pem"));
        let (p, d) = load("TLS_SOURCE=letsencrypt\n");
        assert_eq!(p.tls_source, TlsSource::Acme);
        assert_eq!(d, ["invalid-value: invalid value for `TLS_SOURCE`"]);
        let (_, d) = load("TLS_SOURCE=file\nTLS_KEY_FILE=/etc/k.pem\n");
        assert_eq!(d, ["missing: TLS_SOURCE=file needs TLS_CERT_FILE"]);
        let (_, d) = load("TLS_SOURCE=file\nTLS_CERT_FILE=c.pem\nTLS_KEY_FILE=/k.pem\n");
        assert_eq!(
            d,
            [
                "invalid-value: invalid value for `TLS_CERT_FILE`",
                "missing: TLS_SOURCE=file needs TLS_CERT_FILE"
            ]
        );
        let (p, d) = load("EXTENSIONS_ENABLED=step-ca\nTLS_SOURCE=extension:step-ca\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.tls_source, TlsSource::Extension);
        assert_eq!(p.tls_extension.as_deref(), Some("step-ca"));
        let (p, d) = load("TLS_SOURCE=extension:step-ca\n");
        assert_eq!(p.tls_source, TlsSource::Acme);
        assert_eq!(d, ["invalid-value: invalid value for `TLS_SOURCE`"]);
        for t in TlsSource::NAMES {
            assert_eq!(TlsSource::parse(t).map(TlsSource::name), Some(*t));
        }
    }

    fn load(text: &str) -> (PlatformEnv, Vec<String>) {
        let mut sources = Sources::new();
        let mut diags = Diagnostics::default();
        let (p, _) = load_platform(Some((".env", text)), &[], &mut sources, &mut diags);
        let codes = diags
            .0
            .iter()
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        (p, codes)
    }

    #[test]
    fn cloudflare_proxied_is_cloudflare_only_and_never_gitlab_ssh() {
        let cf = "DNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=t\n";
        let (p, d) = load(&format!(
            "{cf}CLOUDFLARE_PROXIED= Registry, grafana,registry\n"
        ));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.cloudflare_proxied, ["registry", "grafana"]);
        assert!(PlatformEnv::default().cloudflare_proxied.is_empty());

        let (p, d) = load(&format!("{cf}CLOUDFLARE_PROXIED=registry,gitlab\n"));
        assert_eq!(p.cloudflare_proxied, ["registry"]);
        assert_eq!(
            d,
            ["proxied-ssh: CLOUDFLARE_PROXIED names `gitlab`: GitLab SSH cannot be proxied"]
        );
        let (_, d) = load(&format!("{cf}CLOUDFLARE_PROXIED=registry.example.com\n"));
        assert_eq!(d, ["invalid-value: invalid value for `CLOUDFLARE_PROXIED`"]);

        let (p, d) = load("DNS_PROVIDER=none\nCLOUDFLARE_PROXIED=registry\n");
        assert!(p.cloudflare_proxied.is_empty());
        assert_eq!(
            d,
            [
                "proxied-needs-cloudflare: CLOUDFLARE_PROXIED is set but DNS_PROVIDER is not `cloudflare`"
            ]
        );
    }

    #[test]
    fn an_enabled_extension_is_a_dns_provider_and_replaces_a_built_in_of_its_name() {
        let (p, d) = load(
            "DNS_PROVIDER=nsupdate\nEXTENSIONS_ENABLED=nsupdate, other\nEXTENSIONS_TIMEOUT=5\nEXTENSIONS_DIR=/opt/ext\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.dns_provider, DnsProvider::Extension);
        assert_eq!(p.dns_extension.as_deref(), Some("nsupdate"));
        assert_eq!(p.extensions_enabled, ["nsupdate", "other"]);
        assert_eq!(
            (p.extensions_timeout, p.extensions_dir.as_deref()),
            (5, Some("/opt/ext"))
        );
        // A built-in's name names the extension when one of that name is enabled; its own
        // settings (CLOUDFLARE_API_TOKEN) are then not required.
        let (p, d) = load("DNS_PROVIDER=cloudflare\nEXTENSIONS_ENABLED=cloudflare\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.dns_extension.as_deref(), Some("cloudflare"));
        // Not enabled: unknown, and the message says how to enable it.
        let (_, d) =
            load("DNS_PROVIDER=nsupdate\nEXTENSIONS_ENABLED=Bad_Name\nEXTENSIONS_TIMEOUT=0\n");
        assert_eq!(
            d,
            [
                "invalid-value: invalid extension name in EXTENSIONS_ENABLED",
                "invalid-value: invalid value for `EXTENSIONS_TIMEOUT`",
                "invalid-value: invalid value for `DNS_PROVIDER`"
            ]
        );
    }

    #[test]
    fn dns_settings() {
        let rfc = "BASE_DOMAIN=git.example.com\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER=10.0.0.2\nRFC2136_TSIG_KEY_NAME=k\n";
        let (p, d) = load(&format!(
            "{rfc}RFC2136_TSIG_SECRET_FILE=/run/secrets/tsig\nDNS_TTL=60\nDNS_ZONE=Example.COM.\n"
        ));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(p.dns_provider, DnsProvider::Rfc2136);
        assert_eq!(
            (p.dns_ttl, p.dns_zone.as_deref()),
            (60, Some("example.com"))
        );

        let (p, d) = load(rfc);
        assert_eq!(p.dns_ttl, 300);
        assert_eq!(
            d,
            ["dns-missing: DNS_PROVIDER=rfc2136 needs `RFC2136_TSIG_SECRET`"]
        );

        let (_, d) = load(&format!(
            "{rfc}RFC2136_TSIG_SECRET=c2VjcmV0\nDNS_TTL=0\nDNS_ZONE=other.org\n"
        ));
        assert_eq!(
            d,
            [
                "invalid-value: invalid value for `DNS_TTL`",
                "invalid-value: invalid value for `DNS_ZONE`"
            ]
        );
    }
}
