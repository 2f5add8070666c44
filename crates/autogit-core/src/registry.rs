//! GitLab's container registry at `registry.<BASE_DOMAIN>`.
//!
//! The registry is the one Omnibus bundles in GitLab's container (the CNCF `distribution`
//! registry), behind Omnibus's own registry nginx on [`PORT`] in plain HTTP: TLS ends at the
//! ingress, with the platform's wildcard certificate, as for GitLab itself. Its images live
//! under [`STORAGE_PATH`], inside GitLab's data volume, so `gitlab-backup` (autogit's `backup`)
//! includes them. Clients authenticate with GitLab's tokens (GitLab issues the registry's JWTs).
//!
//! The ingress route differs from the other services' on purpose: image layers are large and
//! pushed in one request, so the route has no body limit, buffers neither requests nor
//! responses (Traefik: no `buffering` middleware; nginx: `proxy_request_buffering off`,
//! `client_max_body_size 0`), and waits [`TIMEOUT_SECS`] on a pause instead of 60 s.

use crate::config::{AutoBool, Config, IngressKind};
use crate::diag::Diagnostic;

/// The registry's subdomain (`registry.<BASE_DOMAIN>`).
pub const SUBDOMAIN: &str = "registry";

/// The port of Omnibus's registry nginx inside GitLab's container (GitLab's documented
/// default for a registry on its own port), reached by the ingress on the platform network.
pub const PORT: u16 = 5050;

/// Where Omnibus keeps the images (GitLab's default, in the `gitlab-data` volume).
pub const STORAGE_PATH: &str = "/var/opt/gitlab/gitlab-rails/shared/registry";

/// Garbage collection: Sundays at 03:00 (`gitlab.registry.gc_schedule`).
pub const DEFAULT_GC_SCHEDULE: &str = "0 3 * * 0";

/// Seconds the ingress waits on a pause in a registry upload or download.
pub const TIMEOUT_SECS: u32 = 900;

/// Whether GitLab has a route of its own (a base domain and an ingress): the registry needs
/// one, as Docker clients speak HTTPS to a registry unless told it is insecure.
fn routed(config: &Config, base_domain: Option<&str>) -> bool {
    base_domain.is_some() && config.platform.ingress != IngressKind::None
}

/// Whether the registry is on: `gitlab.registry.enabled`, `auto` meaning "when routed".
pub fn enabled(config: &Config, base_domain: Option<&str>) -> bool {
    match config.gitlab.registry.enabled {
        AutoBool::False => false,
        AutoBool::True | AutoBool::Auto => routed(config, base_domain),
    }
}

/// A warning when the registry is asked for (`enabled: true`) but cannot be served.
pub fn diagnostic(config: &Config, base_domain: Option<&str>) -> Option<Diagnostic> {
    (config.gitlab.registry.enabled == AutoBool::True && !routed(config, base_domain)).then(|| {
        Diagnostic::warning(
            "registry-needs-route",
            "gitlab.registry.enabled is true, but the registry is served at registry.<BASE_DOMAIN> through the ingress, and there is no base domain or no ingress",
        )
        .path("gitlab.registry.enabled")
        .help("set BASE_DOMAIN in .env and platform.ingress (traefik or nginx), or set gitlab.registry.enabled: auto")
    })
}

/// The registry's part of GitLab's health check: Omnibus's registry nginx on [`PORT`] answers
/// `GET /v2/` with 401 (GitLab's token service guards every registry call), as the
/// distribution API documents for a registry that wants a token. A registry process that
/// runit cannot keep up, or a broken registry nginx, makes GitLab unhealthy, so the state
/// machine repairs GitLab (restart, with its backoff and budget).
pub fn probe() -> crate::plan::Probe {
    crate::plan::Probe::Http {
        port: PORT,
        path: "/v2/".into(),
        status: 401,
        body: None,
    }
}

/// The registry's public URL.
pub fn url(base_domain: &str) -> String {
    format!("https://{SUBDOMAIN}.{base_domain}")
}

/// gitlab.rb lines for the registry: on (behind the ingress) or off.
pub fn omnibus(config: &Config, base_domain: Option<&str>) -> String {
    match base_domain.filter(|_| enabled(config, base_domain)) {
        Some(d) => format!(
            "# Container registry: TLS ends at the ingress (registry.{d}); Omnibus's registry\n\
             # nginx serves plain HTTP on {PORT} to it.\n\
             registry_external_url '{url}'\n\
             gitlab_rails['registry_enabled'] = true\n\
             gitlab_rails['registry_path'] = '{STORAGE_PATH}'\n\
             registry_nginx['enable'] = true\n\
             registry_nginx['listen_port'] = {PORT}\n\
             registry_nginx['listen_https'] = false\n\
             registry_nginx['proxy_set_headers'] = {{ 'X-Forwarded-Proto' => 'https', 'X-Forwarded-Ssl' => 'on' }}\n",
            url = url(d),
        ),
        None => "registry['enable'] = false\ngitlab_rails['registry_enabled'] = false\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LoadInput, load};

    fn config(text: &str) -> Config {
        load(&LoadInput {
            file: Some(("autogit.yml", text)),
            ..Default::default()
        })
        .config
    }

    #[test]
    fn on_when_routed_unless_switched_off() {
        let c = config("");
        assert!(enabled(&c, Some("example.test")));
        assert!(!enabled(&c, None));
        assert!(diagnostic(&c, None).is_none());
        let c = config("platform:\n  ingress: none\n");
        assert!(!enabled(&c, Some("example.test")));
        let c = config("gitlab:\n  registry:\n    enabled: false\n");
        assert!(!enabled(&c, Some("example.test")));
        assert!(omnibus(&c, Some("example.test")).contains("registry['enable'] = false"));
        let c = config("gitlab:\n  registry:\n    enabled: true\n");
        assert!(enabled(&c, Some("example.test")));
        let d = diagnostic(&c, None).expect("asked for without a route");
        assert_eq!(d.code, "registry-needs-route");
    }

    #[test]
    fn omnibus_serves_plain_http_behind_the_ingress() {
        let c = config("");
        let rb = omnibus(&c, Some("example.test"));
        assert!(
            rb.contains("registry_external_url 'https://registry.example.test'\n"),
            "{rb}"
        );
        assert!(
            rb.contains("registry_nginx['listen_port'] = 5050\n"),
            "{rb}"
        );
        assert!(
            rb.contains("registry_nginx['listen_https'] = false\n"),
            "{rb}"
        );
        assert!(rb.contains("'X-Forwarded-Proto' => 'https'"), "{rb}");
        assert!(omnibus(&c, None).contains("gitlab_rails['registry_enabled'] = false"));
    }

    #[test]
    fn a_bad_schedule_is_an_error_naming_the_field() {
        let l = load(&LoadInput {
            file: Some((
                "autogit.yml",
                "gitlab:\n  registry:\n    gc_schedule: weekly\n",
            )),
            ..Default::default()
        });
        let text = format!("{:?}", l.diagnostics);
        assert!(text.contains("gitlab.registry.gc_schedule"), "{text}");
    }
}
