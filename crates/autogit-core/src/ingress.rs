//! What the ingress serves, and where: the routes as URLs, and GitLab's `external_url` kept in
//! agreement with its route. Pure: callers pass the configuration and `BASE_DOMAIN`.
//!
//! With a base domain and an ingress, GitLab is served at `https://gitlab.<BASE_DOMAIN>`
//! (its subdomain, TLS at the ingress). GitLab builds clone URLs, redirects and OAuth callbacks
//! from `external_url`, so an `external_url` nobody chose follows the route, and one that was
//! chosen and disagrees with it is reported (`external-url-route`).

use crate::config::{Config, IngressKind};
use crate::diag::Diagnostic;
use crate::validate::url_host;
use serde_json::{Value, json};

/// The largest request body the ingress passes on (413 above it): GitLab Omnibus's own
/// `client_max_body_size` (250m), so a push GitLab would take is never refused in front of it.
pub const MAX_BODY_BYTES: u64 = 250 * 1024 * 1024;

/// Requests per second per client address the ingress lets through on average, and the burst
/// above it (429 beyond). Traefik counts per source address; nginx the same (`$binary_remote_addr`).
pub const RATE_AVERAGE: u32 = 100;
pub const RATE_BURST: u32 = 200;

/// The rate limit of the routers of services Cloudflare proxies: the same limits, counted per
/// client address as the `X-Forwarded-For` the entry point kept says it (the rightmost address
/// outside Cloudflare's ranges). The entry points keep that header only from Cloudflare's edge
/// (`forwardedHeaders.trustedIPs`); from anyone else Traefik drops it, so a forged one is never
/// counted, and a client that bypasses Cloudflare shares one bucket with the others that do.
pub const CLOUDFLARE_RATE_LIMIT: &str = "rate-limit-cloudflare";

/// The IP allowlist of the routers of services Cloudflare proxies: the same ranges, checked
/// against the client address as [`CLOUDFLARE_RATE_LIMIT`] reads it (the rightmost
/// `X-Forwarded-For` address outside Cloudflare's ranges), not against the edge's address,
/// which every visitor would share. A client that bypasses Cloudflare has no such header (the
/// entry point drops it from anyone but the edge), so it is refused: a proxied service with an
/// allowlist is reachable through Cloudflare only.
pub const CLOUDFLARE_ALLOWLIST: &str = "ip-allowlist-cloudflare";

/// Traefik's `forwardedHeaders` of an entry point when Cloudflare proxies (`proxied`): trust
/// `X-Forwarded-*` from Cloudflare's edge only; `None` otherwise (Traefik then trusts no one).
pub fn traefik_forwarded_headers(proxied: bool) -> Option<Value> {
    proxied.then(|| json!({"trustedIPs": crate::cloudflare::ranges()}))
}

/// nginx's realip settings when Cloudflare proxies: `$remote_addr` (and so the rate limit's
/// `$binary_remote_addr` and `allow`) becomes `CF-Connecting-IP`, believed only from
/// Cloudflare's edge. Empty when nothing is proxied.
pub fn nginx_real_ip(proxied: bool) -> String {
    if !proxied {
        return String::new();
    }
    let mut o = format!(
        "# Cloudflare's edge ({}, as of {}): the client address it forwards is believed from these only.
",
        crate::cloudflare::RANGES_SOURCE,
        crate::cloudflare::RANGES_DATE
    );
    for r in crate::cloudflare::ranges() {
        o.push_str(&format!("set_real_ip_from {r};\n"));
    }
    o.push_str(&format!(
        "real_ip_header {};\n",
        crate::cloudflare::CLIENT_IP_HEADER
    ));
    o
}

/// Traefik's middlewares, in order, as the file provider and the Kubernetes `Middleware`
/// objects define them: the shared ones ([`crate::state::MIDDLEWARES`]), the IP allowlist when
/// `allow` is not empty, [`CLOUDFLARE_RATE_LIMIT`] (and [`CLOUDFLARE_ALLOWLIST`] with an
/// allowlist) when `cloudflare` (some service is proxied),
/// the guard's forward-auth when it has an address.
pub fn traefik_middlewares(
    allow: &[String],
    guard: Option<&str>,
    cloudflare: bool,
) -> Vec<(&'static str, Value)> {
    let mut m = Vec::new();
    m.push((
        "security-headers",
        json!({"headers": {
            "stsSeconds": 31_536_000,
            "stsIncludeSubdomains": true,
            "contentTypeNosniff": true,
            "frameDeny": true,
            "referrerPolicy": "strict-origin-when-cross-origin",
        }}),
    ));
    m.push((
        "rate-limit",
        json!({"rateLimit": {"average": RATE_AVERAGE, "burst": RATE_BURST}}),
    ));
    if cloudflare {
        m.push((
            CLOUDFLARE_RATE_LIMIT,
            json!({"rateLimit": {"average": RATE_AVERAGE, "burst": RATE_BURST,
                "sourceCriterion": {"ipStrategy": {"excludedIPs": crate::cloudflare::ranges()}}}}),
        ));
    }
    m.push((
        "body-limit",
        json!({"buffering": {"maxRequestBodyBytes": MAX_BODY_BYTES}}),
    ));
    if !allow.is_empty() {
        m.push((
            "ip-allowlist",
            json!({"ipAllowList": {"sourceRange": allow}}),
        ));
        if cloudflare {
            m.push((
                CLOUDFLARE_ALLOWLIST,
                json!({"ipAllowList": {"sourceRange": allow,
                    "ipStrategy": {"excludedIPs": crate::cloudflare::ranges()}}}),
            ));
        }
    }
    if let Some(address) = guard {
        m.push((
            "guard",
            json!({"forwardAuth": {
                "address": address,
                "forwardBody": true,
                "maxBodySize": 1_048_576,
                "authResponseHeaders": ["X-Autogit-Guard-Verdict", "X-Autogit-Guard-Risk"],
            }}),
        ));
    }
    m
}

/// Traefik's service for the guard as a reverse proxy (`platform.guard_proxy`).
pub const GUARD_PROXY_SERVICE: &str = "autogit-guard";

/// The guard's verdict headers: the guard sets them on what it passes on, and the ingress
/// removes any a client sent, so a service never takes a forged "clean" for the guard's.
pub const GUARD_HEADERS: [&str; 2] = ["X-Autogit-Guard-Verdict", "X-Autogit-Guard-Risk"];

/// Seconds between the ingress's health checks of the guard when it fails open: how long
/// requests still get 502 after the guard stops, before they go to the service unchecked.
pub const GUARD_HEALTH_INTERVAL_SECS: u32 = 2;

/// The service a router sends to: the guard (proxy mode; with failing open, a failover
/// service in front of it) for the services it checks, else the service itself.
pub fn traefik_router_service(plan: &crate::plan::Plan, service: &str) -> String {
    match &plan.guard_proxy {
        Some(g) if g.services.iter().any(|s| s == service) => {
            if g.fail_open {
                format!("{service}-guarded")
            } else {
                GUARD_PROXY_SERVICE.to_owned()
            }
        }
        _ => service.to_owned(),
    }
}

/// The guard's Traefik service: its address, the request's `Host` passed on (the guard
/// chooses the upstream by it), and, when failing open, the health check that the failover
/// service needs to know the guard is down.
pub fn traefik_guard_proxy_service(g: &crate::plan::GuardProxy) -> Value {
    let mut lb = json!({"servers": [{"url": g.url}], "passHostHeader": true});
    if g.fail_open {
        lb["healthCheck"] = json!({
            "path": "/healthz",
            "interval": format!("{GUARD_HEALTH_INTERVAL_SECS}s"),
            "timeout": "1s",
        });
    }
    json!({"loadBalancer": lb})
}

/// The ingress's `ssh` entry point inside its container. The host side is `gitlab.ports.ssh`
/// (the port GitLab's clone URLs name); connections go on to GitLab's port 22 unchanged (plain
/// TCP: SSH is end to end between the client and GitLab, the ingress sees no cleartext).
pub const SSH_ENTRY_PORT: u16 = 22;

/// How long an idle SSH connection through the ingress is kept (a `git clone` waiting on the
/// server counts as idle to a TCP proxy): nginx's `proxy_timeout`; Traefik's TCP proxy has no
/// idle limit of its own on a router.
pub const SSH_IDLE_TIMEOUT_SECS: u32 = 3600;

/// The request-id middleware: Traefik has none of its own, so autogit renders a local plugin
/// (Go, interpreted by Traefik's Yaegi; no download) under `traefik/plugins-local/`, mounted at
/// `/plugins-local` (Traefik reads `./plugins-local` from its working directory, `/` in the
/// image). It keeps a valid client `X-Request-Id` ([`REQUEST_ID_PATTERN`]), else generates 32
/// hex digits, and sets it on the request to the backend and on the response.
pub const REQUEST_ID_PLUGIN_MODULE: &str = "autogit.local/requestid";
/// The plugin's source (`request_id.go`), its `go.mod` and Traefik's manifest for it, as
/// (path under `rendered/traefik/plugins-local/src/<module>/`, text).
pub fn request_id_plugin_files() -> [(&'static str, String); 3] {
    [
        (
            "requestid.go",
            include_str!("ingress/request_id.go").to_owned(),
        ),
        (
            "go.mod",
            format!("module {REQUEST_ID_PLUGIN_MODULE}\n\ngo 1.22\n"),
        ),
        (
            ".traefik.yml",
            format!(
                "# Rendered by autogit: Traefik's manifest of the request-id local plugin.\n\
                 displayName: autogit request id\ntype: middleware\nimport: {REQUEST_ID_PLUGIN_MODULE}\n\
                 summary: Keeps a valid X-Request-Id or generates one, for the backend, the client and the access log.\n\
                 testData: {{}}\n"
            ),
        ),
    ]
}
/// What a client's `X-Request-Id` must look like to be kept (nginx's `map` regex; the plugin's
/// `valid` is the same rule): 1 to 128 of `A-Z a-z 0-9 - _ . :`. Anything else (too long,
/// spaces, quotes, control characters: what could forge or break a log line) is replaced.
pub const REQUEST_ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// Slow clients (the WAF-style baseline, docs/ingress.md "Slow clients and refused paths").
/// nginx: the whole request header must arrive within this many seconds (`client_header_timeout`,
/// 408 after it), a slowloris holding a connection with a trickle of header lines included.
pub const HEADER_TIMEOUT_SECS: u32 = 10;
/// nginx: the longest pause between two reads of a request body (`client_body_timeout`; a large
/// push that keeps sending is never cut), and between two writes of a response (`send_timeout`).
/// Traefik has one read limit for the whole request, headers and body
/// (`respondingTimeouts.readTimeout`, Traefik's own default, made explicit): a slowloris is cut
/// after it, and so is a request body that takes longer (a 250 MiB push needs ~4.2 MB/s; slower
/// links push over SSH, which has no such limit).
pub const READ_TIMEOUT_SECS: u32 = 60;
/// nginx: how long a connection to an upstream may take to open (`proxy_connect_timeout`; its
/// default is 60 s). Upstreams are on the platform network or the LAN: a container that is
/// stopped leaves an address nobody answers on until nginx's resolver forgets it (10 s), and
/// a request there then fails after this (504) instead of hanging for a minute. The guard's
/// fail-closed (and fail-open) answer depends on it.
pub const CONNECT_TIMEOUT_SECS: u32 = 5;

/// Paths on GitLab's route the ingress refuses (403) before they reach GitLab, as regular
/// expressions on the decoded, normalised path (the same text for nginx's `location ~` and
/// Traefik's `PathRegexp`), each with why. Only at the root: GitLab serves repository files
/// under `/<namespace>/<project>/-/...`, where `.env` or `.git` may well be a file's name.
pub const REFUSED_PATHS: [(&str, &str); 2] = [
    (
        r"^/\.(git|svn|hg|bzr|env|aws|ssh|docker|htaccess|htpasswd|DS_Store)(/|$)",
        "dot-files and version-control metadata at the root: what scanners probe for leaked \
         secrets and source; GitLab has no such route (namespaces cannot start with a dot), so \
         a request for one is a probe, never a user",
    ),
    (
        r"^/-/(metrics|health|readiness|liveness)(/|$)",
        "GitLab's monitoring endpoints: behind the ingress every request comes from the \
         ingress's address on the platform network, so GitLab's `monitoring_whitelist` cannot \
         tell the internet from Prometheus; Prometheus and health checks reach GitLab on the \
         platform network, not through the ingress",
    ),
];

/// GitLab's subdomain under `BASE_DOMAIN` (the plan's `gitlab` service).
pub const GITLAB_SUBDOMAIN: &str = "gitlab";

/// The `external_url` `autogit init` writes (`default.yml`) and the embedded default uses. A
/// file that still says this has not chosen a URL: with a base domain the route's URL replaces it.
pub const INIT_EXTERNAL_URL: &str = "http://gitlab.localhost:8080";

/// The URL the ingress serves GitLab at: `https://gitlab.<base_domain>`; `None` without a base
/// domain or without an ingress (no route).
pub fn gitlab_route_url(config: &Config, base_domain: Option<&str>) -> Option<String> {
    let domain = base_domain.filter(|d| !d.is_empty())?;
    (config.platform.ingress != IngressKind::None)
        .then(|| format!("https://{GITLAB_SUBDOMAIN}.{domain}"))
}

/// GitLab's `external_url` as deployed: an explicit `gitlab.external_url` as written; otherwise
/// (unset, or left at [`INIT_EXTERNAL_URL`]) the route's URL when there is a route, else the
/// decoded default (`http://<hostname>:<ports.http>`).
pub fn gitlab_external_url(config: &Config, base_domain: Option<&str>) -> String {
    let g = &config.gitlab;
    match gitlab_route_url(config, base_domain) {
        Some(route) if !g.external_url_explicit => route,
        _ => g.external_url.clone(),
    }
}

/// A warning when an explicit `gitlab.external_url` is not the URL the ingress serves GitLab at:
/// scheme `https`, host `gitlab.<base_domain>`, no path. The port is not compared: the ingress may
/// be reached through a forwarded port (INGRESS_HTTPS_PORT is the host's side of it).
pub fn external_url_check(config: &Config, base_domain: Option<&str>) -> Option<Diagnostic> {
    let route = gitlab_route_url(config, base_domain)?;
    let url = &config.gitlab.external_url;
    if !config.gitlab.external_url_explicit || agrees(url, &route) {
        return None;
    }
    Some(
        Diagnostic::warning(
            "external-url-route",
            format!("`gitlab.external_url` is {url}, but the ingress serves GitLab at {route}"),
        )
        .path("gitlab.external_url")
        .found(url.clone())
        .expected(route.clone())
        .help(format!(
            "GitLab builds clone URLs, redirects and OAuth callbacks from external_url; set it to {route}, or remove it to have it derived from BASE_DOMAIN"
        )),
    )
}

/// Same scheme and host (case-insensitive) and no path beyond `/`; ports are not compared.
fn agrees(url: &str, route: &str) -> bool {
    let scheme = |u: &str| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let path_empty = url
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
        .is_some_and(|p| p.is_empty() || p == "/");
    scheme(url) == scheme(route)
        && path_empty
        && matches!((url_host(url), url_host(route)), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, explicit: bool, ingress: IngressKind) -> Config {
        let mut c = Config::default();
        c.gitlab.external_url = url.to_owned();
        c.gitlab.external_url_explicit = explicit;
        c.platform.ingress = ingress;
        c
    }

    #[test]
    fn external_url_follows_the_route_unless_chosen() {
        use IngressKind::{Nginx, None as NoIngress, Traefik};
        let d = Some("example.test");
        // (url, explicit, ingress, base domain) -> deployed URL, warns
        let cases = [
            (
                INIT_EXTERNAL_URL,
                false,
                Traefik,
                d,
                "https://gitlab.example.test",
                false,
            ),
            (
                INIT_EXTERNAL_URL,
                false,
                Nginx,
                d,
                "https://gitlab.example.test",
                false,
            ),
            (
                INIT_EXTERNAL_URL,
                false,
                Traefik,
                None,
                INIT_EXTERNAL_URL,
                false,
            ),
            (
                INIT_EXTERNAL_URL,
                false,
                NoIngress,
                d,
                INIT_EXTERNAL_URL,
                false,
            ),
            (
                "https://git.example.test",
                true,
                Traefik,
                d,
                "https://git.example.test",
                true,
            ),
            (
                "http://gitlab.example.test",
                true,
                Traefik,
                d,
                "http://gitlab.example.test",
                true,
            ),
            (
                "https://gitlab.example.test/gl",
                true,
                Traefik,
                d,
                "https://gitlab.example.test/gl",
                true,
            ),
            (
                "https://GitLab.Example.test",
                true,
                Traefik,
                d,
                "https://GitLab.Example.test",
                false,
            ),
            (
                "https://gitlab.example.test:8443",
                true,
                Traefik,
                d,
                "https://gitlab.example.test:8443",
                false,
            ),
            (
                "https://gitlab.example.test/",
                true,
                Nginx,
                d,
                "https://gitlab.example.test/",
                false,
            ),
            (
                "https://git.example.test",
                true,
                Traefik,
                None,
                "https://git.example.test",
                false,
            ),
            (
                "https://git.example.test",
                true,
                NoIngress,
                d,
                "https://git.example.test",
                false,
            ),
        ];
        for (url, explicit, ingress, domain, want, warns) in cases {
            let c = config(url, explicit, ingress);
            assert_eq!(
                gitlab_external_url(&c, domain),
                want,
                "{url} {ingress:?} {domain:?}"
            );
            let w = external_url_check(&c, domain);
            assert_eq!(w.is_some(), warns, "{url} {ingress:?} {domain:?}: {w:?}");
            if let Some(w) = w {
                assert_eq!(w.code, "external-url-route");
                assert_eq!(w.path, "gitlab.external_url");
                assert_eq!(w.expected.as_deref(), Some("https://gitlab.example.test"));
                assert_eq!(w.found.as_deref(), Some(url));
            }
        }
    }
}
