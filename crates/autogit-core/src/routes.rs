//! Routes of inference services: a running service job that asks for `route: NAME` is served
//! by the ingress at `https://NAME.<BASE_DOMAIN>` with the wildcard certificate and the
//! platform routes' middlewares, optionally through the prompt-injection guard (proxy or
//! forward-auth mode, whichever `platform` configures). Pure: [`check_name`] and
//! [`resolve_guard`] decide at submit, [`traefik_routes`] renders the Traefik file-provider
//! document that the compute controller writes next to the platform's (`compute.yml` in the
//! dynamic directory), and [`guard_upstreams`] the guard's `HOST=URL` lines (`guard serve
//! --upstream-file`) for the guarded routes in proxy mode.
//! With nginx, [`nginx_routes`] renders the server blocks of the routes into
//! `rendered/nginx/routes/` ([`NGINX_RENDERED_DIR`], a directory nginx's container mounts and
//! its main configuration includes), and the compute controller makes nginx reload; the
//! guard is then in proxy mode only (nginx cannot send a body to a forward-auth endpoint).

use crate::config::{Config, IngressKind};
use crate::emit::to_yaml;
use crate::plan::Plan;
use serde::Serialize;
use serde_json::{Map, json};

/// Prefix of the routers and services of routed jobs in Traefik's configuration (they share
/// one namespace with the platform's routers in the file provider's directory).
pub const PREFIX: &str = "compute-";

/// The file the compute controller writes in Traefik's dynamic directory.
pub const TRAEFIK_FILE: &str = "compute.yml";
/// nginx's routes of compute services: `rendered/<NGINX_RENDERED_DIR>/<NGINX_FILE>`, mounted
/// (the directory) at [`NGINX_ROUTES_DIR`], which nginx's main configuration includes.
pub const NGINX_RENDERED_DIR: &str = "nginx/routes";
pub const NGINX_FILE: &str = "compute.conf";
pub const NGINX_ROUTES_DIR: &str = "/etc/nginx/autogit-routes";

/// One running routed service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceRoute {
    /// The subdomain (`NAME` of `NAME.<BASE_DOMAIN>`).
    pub name: String,
    /// The job it serves.
    pub job: String,
    /// `http://HOST:HOST_PORT` of the running service.
    pub upstream: String,
    /// Whether requests go through the guard.
    pub guard: bool,
}

/// `http://ADDRESS:PORT` (an IPv6 literal in brackets).
pub fn host_url(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("http://[{address}]:{port}")
    } else {
        format!("http://{address}:{port}")
    }
}

/// Where the ingress reaches a port published on runner host `host`: at the host's address
/// ([`crate::remote::host_address`]), or, on autogit's own machine (`host: local`), at
/// `local_gateway`, the gateway of the platform's network. The ingress runs in a container on
/// that network, where `localhost` is the container itself; the gateway is this machine, and
/// the engine answers there for every port it publishes. `None`: a local host and no gateway
/// known.
pub fn upstream_url(host: &str, port: u16, local_gateway: Option<&str>) -> Option<String> {
    if crate::remote::is_local(host) {
        return local_gateway.map(|g| host_url(g, port));
    }
    Some(host_url(crate::remote::host_address(host), port))
}

/// Where a port published on runner host `host` is reached from autogit's own machine (for
/// messages): `127.0.0.1` for `host: local`, else the host's address.
pub fn service_url(host: &str, port: u16) -> String {
    upstream_url(host, port, Some("127.0.0.1")).unwrap_or_else(|| host_url(host, port))
}

/// The engine command that prints the gateways of network `network` (one per line, IPv4
/// and IPv6), for [`upstream_url`]'s `local_gateway`: Docker's and Podman's `network
/// inspect` keep them in different places.
pub fn gateway_argv(engine: crate::inventory::EngineKind, network: &str) -> Vec<String> {
    use crate::inventory::EngineKind;
    let (program, format) = match engine {
        EngineKind::Docker => (
            "docker",
            "{{range .IPAM.Config}}{{println .Gateway}}{{end}}",
        ),
        EngineKind::Podman => ("podman", "{{range .Subnets}}{{println .Gateway}}{{end}}"),
    };
    [program, "network", "inspect", "--format", format, network]
        .map(str::to_owned)
        .into()
}

/// The gateway [`gateway_argv`] printed that the ingress should use: the first IPv4 one
/// (published ports are always there), else the first address at all.
pub fn parse_gateway(out: &str) -> Option<String> {
    let all: Vec<std::net::IpAddr> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .map(ToString::to_string)
}

/// A route name is one DNS label of lower-case letters, digits and `-` (not first or last),
/// 1 to 63 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--route `{name}` is not a subdomain name: 1 to 63 of `a-z 0-9 -`, not starting or ending with `-` (e.g. llm)"
        ))
    }
}

/// Why a route cannot be served on this platform (no base domain, an ingress other than
/// Traefik, a name a platform service has, or one a running job holds), else `Ok`.
/// `taken`: the routes of queued and running jobs, as (route, job).
pub fn check_route(
    config: &Config,
    plan: &Plan,
    name: &str,
    taken: &[(String, String)],
) -> Result<(), String> {
    check_name(name)?;
    let Some(domain) = &plan.base_domain else {
        return Err(format!(
            "--route `{name}` needs BASE_DOMAIN (the route is https://{name}.<BASE_DOMAIN>); set it in .env"
        ));
    };
    if config.platform.ingress == IngressKind::None {
        return Err(
            "--route needs an ingress (platform.ingress: traefik or nginx); platform.ingress is none"
                .into(),
        );
    }
    let platform = plan
        .services
        .iter()
        .find(|s| s.name == name || s.hosts().iter().any(|h| h == name));
    if let Some(s) = platform {
        return Err(format!(
            "--route `{name}`: {name}.{domain} is the platform service {}'s; choose another name",
            s.name
        ));
    }
    // The platform's other services, enabled later, would collide with the route.
    let reserved = crate::platform::ServiceId::NAMES
        .iter()
        .chain(crate::plan::aliases(crate::plan::Role::Api))
        .chain(&["traefik", "nginx"]);
    if let Some(r) = reserved.into_iter().find(|r| **r == name) {
        return Err(format!(
            "--route `{name}`: {name}.{domain} is reserved for the platform service {r} (enabled or not); choose another name"
        ));
    }
    if name == crate::registry::SUBDOMAIN {
        return Err(format!(
            "--route `{name}`: {name}.{domain} is the container registry's; choose another name"
        ));
    }
    if let Some((_, job)) = taken.iter().find(|(r, _)| r == name) {
        return Err(format!(
            "--route `{name}` is taken by {job}, which is queued or running; cancel it or choose another name"
        ));
    }
    Ok(())
}

/// Whether a route goes through the guard: as asked (`Some`), else whenever the plan's
/// ingress has one (the guard autogit deploys for `platform.guard_services`,
/// `platform.guard_proxy`, or `platform.guard_forward_auth` with Traefik: nginx cannot send
/// a body to a forward-auth endpoint). Asking for the guard without one is an error.
pub fn resolve_guard(plan: &Plan, asked: Option<bool>) -> Result<bool, String> {
    let nginx = plan.service("nginx").is_some();
    let configured = plan.guard_proxy.is_some() || (plan.guard.is_some() && !nginx);
    match asked {
        Some(true) if !configured => Err(
            "the route asks for the guard, but the ingress sends nothing through it: list services in platform.guard_services (autogit then deploys the guard) or set platform.guard_proxy (a guard of yours in the path); platform.guard_forward_auth works with Traefik only (docs/guard.md); or submit with --no-guard"
                .into(),
        ),
        Some(g) => Ok(g),
        None => Ok(configured),
    }
}

fn host(route: &ServiceRoute, domain: &str) -> String {
    format!("{}.{domain}", route.name)
}

/// Traefik's file-provider document for the routed services: per route a router on
/// `websecure` for `NAME.<domain>` with the platform's TLS and middlewares (request id,
/// the allowlist when set, security headers, rate limit, body limit), and its service; a
/// guarded route gets the forward-auth middleware (forward-auth mode) or goes to the guard's
/// service with the verdict headers removed (proxy mode; failing open through a failover
/// service), and is refused (403) when the ingress has no guard any more. The middlewares and the guard's service are the platform's (`autogit.yml`, the
/// same file provider). Empty when there is no route or no base domain.
pub fn traefik_routes(plan: &Plan, routes: &[ServiceRoute]) -> String {
    let Some(domain) = &plan.base_domain else {
        return String::new();
    };
    if routes.is_empty() {
        return String::new();
    }
    let tls = if plan.http01.is_some() && plan.tls.is_none() {
        json!({"certResolver": "autogit"})
    } else {
        json!({})
    };
    let mut routers = Map::new();
    let mut services = Map::new();
    for r in routes {
        let id = format!("{PREFIX}{}", r.name);
        let proxied = plan.cloudflare_proxied.contains(&r.name);
        let mut middlewares = vec!["request-id".to_owned()];
        if !plan.ingress_allow.is_empty() {
            middlewares.push(if proxied {
                crate::ingress::CLOUDFLARE_ALLOWLIST.to_owned()
            } else {
                "ip-allowlist".to_owned()
            });
        }
        middlewares.extend(crate::state::MIDDLEWARES.iter().map(|m| match *m {
            "rate-limit" if proxied => crate::ingress::CLOUDFLARE_RATE_LIMIT.to_owned(),
            m => m.to_owned(),
        }));
        let mut service = id.clone();
        if r.guard {
            if let Some(g) = &plan.guard_proxy {
                middlewares.push("guard-headers".to_owned());
                service = if g.fail_open {
                    services.insert(
                        format!("{id}-guarded"),
                        json!({"failover": {"service": crate::ingress::GUARD_PROXY_SERVICE, "fallback": id}}),
                    );
                    format!("{id}-guarded")
                } else {
                    crate::ingress::GUARD_PROXY_SERVICE.to_owned()
                };
            } else if plan.guard.is_some() {
                middlewares.push("guard".to_owned());
            } else {
                // Asked for the guard, which the ingress no longer has (the configuration
                // changed since the job was submitted): refused, not served unchecked.
                middlewares.push("refuse".to_owned());
            }
        }
        routers.insert(
            id.clone(),
            json!({
                "rule": format!("Host(`{}`)", host(r, domain)),
                "entryPoints": ["websecure"],
                "service": service,
                "tls": tls,
                "middlewares": middlewares,
            }),
        );
        services.insert(
            id,
            json!({"loadBalancer": {"servers": [{"url": r.upstream}]}}),
        );
    }
    let doc = json!({"http": {"routers": routers, "services": services}});
    let head = header(
        "# Rendered by autogit: routes of running compute services (Traefik file provider).\n",
        routes,
        domain,
    );
    format!("{head}{}", to_yaml(&doc))
}

/// `title`, then a comment line per route: its host, upstream and job, and whether guarded.
fn header(title: &str, routes: &[ServiceRoute], domain: &str) -> String {
    let mut head = title.to_owned();
    for r in routes {
        head.push_str(&format!(
            "# {} -> {} ({}{})\n",
            host(r, domain),
            r.upstream,
            r.job,
            if r.guard { ", guarded" } else { "" }
        ));
    }
    head
}

/// nginx's server blocks for the routed services (the file the compute controller writes to
/// [`NGINX_RENDERED_DIR`]): per route a server for `NAME.<domain>` with the platform's TLS,
/// headers, allowlist, rate and body limits (`render::NginxServer`, the platform services'
/// own), proxying to the service, or through the guard in proxy mode when the route is
/// guarded (failing open as configured); a guarded route whose guard the ingress no longer
/// has answers 403, never unchecked. Empty when there is no route or no base domain.
pub fn nginx_routes(plan: &Plan, routes: &[ServiceRoute]) -> String {
    let Some(domain) = &plan.base_domain else {
        return String::new();
    };
    if routes.is_empty() {
        return String::new();
    }
    let server = crate::render::NginxServer::of(plan);
    let mut out = header(
        "# Rendered by autogit: routes of running compute services (included by nginx.conf).\n",
        routes,
        domain,
    );
    for r in routes {
        let guard = plan.guard_proxy.as_ref().filter(|_| r.guard);
        // Guarded without a guard in the ingress (the configuration changed since the job was
        // submitted): refused, not served unchecked.
        let refuse = if r.guard && guard.is_none() {
            "\n    location / {\n        return 403;\n    }"
        } else {
            ""
        };
        let block = server.block(&host(r, domain), &r.upstream, guard, "");
        if refuse.is_empty() {
            out.push_str(&block);
        } else {
            // The server's own limits and headers, with `/` refused.
            let head = &block[..block.find("\n    location / {").unwrap_or(block.len())];
            out.push_str(head);
            out.push_str(refuse);
            out.push_str("\n}\n");
        }
    }
    out
}

/// The guard's upstreams for the guarded routes in proxy mode, one `HOST=URL` a line (what
/// `autogit guard serve --upstream-file` reads); empty in forward-auth mode (the ingress
/// sends the request to the service itself) or without a base domain.
pub fn guard_upstreams(plan: &Plan, routes: &[ServiceRoute]) -> String {
    let (Some(domain), Some(_)) = (&plan.base_domain, &plan.guard_proxy) else {
        return String::new();
    };
    let mut out = String::new();
    for r in routes.iter().filter(|r| r.guard) {
        out.push_str(&format!("{}={}\n", host(r, domain), r.upstream));
    }
    if out.is_empty() {
        return out;
    }
    format!("# Rendered by autogit: the guarded routes of running compute services.\n{out}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::EngineKind;

    #[test]
    fn upstreams_by_host() {
        let up = |h: &str, g: Option<&str>| upstream_url(h, 32768, g);
        assert_eq!(up("192.0.2.7", None).unwrap(), "http://192.0.2.7:32768");
        assert_eq!(up("root@gpu-box", None).unwrap(), "http://gpu-box:32768");
        assert_eq!(up("extension:wsl/desk", None).unwrap(), "http://desk:32768");
        assert_eq!(up("fd00::7", None).unwrap(), "http://[fd00::7]:32768");
        // Autogit's own machine: the ingress's container reaches it at its network's gateway.
        assert_eq!(up("local", None), None);
        assert_eq!(
            up("localhost", Some("172.18.0.1")).unwrap(),
            "http://172.18.0.1:32768"
        );
        assert_eq!(service_url("local", 8), "http://127.0.0.1:8");
        assert_eq!(service_url("root@[fd00::7]", 8), "http://[fd00::7]:8");
    }

    #[test]
    fn gateways() {
        assert_eq!(
            gateway_argv(EngineKind::Docker, "p_autogit")[..3],
            ["docker", "network", "inspect"]
        );
        assert_eq!(
            gateway_argv(EngineKind::Podman, "p_autogit")[5],
            "p_autogit"
        );
        assert_eq!(
            parse_gateway("fd00:1::1\n172.18.0.1\n").as_deref(),
            Some("172.18.0.1")
        );
        assert_eq!(parse_gateway("fd00:1::1\n").as_deref(), Some("fd00:1::1"));
        assert_eq!(parse_gateway("\n<no value>\n"), None);
    }
}
