//! Renderers: pure functions from the model to the text of files. Snapshot-tested.

use crate::config::{Config, IngressKind};
use crate::emit::to_yaml;
use crate::plan::{ACME_HTTP_DIR, Mount, Placement, Plan, Probe, Role, TLS_DIR};
use crate::state::{EnvValue, PlatformState, ServiceState, router_middlewares};
use crate::validate::url_port;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

fn ruby_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// GitLab Omnibus configuration (the body of `GITLAB_OMNIBUS_CONFIG`, same syntax as gitlab.rb).
/// `external_url` is [`crate::ingress::gitlab_external_url`]: with `base_domain` and an
/// ingress, the URL the ingress serves GitLab at unless one was chosen.
pub fn gitlab_omnibus(config: &Config, base_domain: Option<&str>) -> String {
    let g = &config.gitlab;
    let external_url = crate::ingress::gitlab_external_url(config, base_domain);
    let t = config.gitlab_tuning();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by autogit from autogit.yml; edit that file, not this one."
    );
    let _ = writeln!(o, "external_url {}", ruby_str(&external_url));
    let _ = writeln!(o, "gitlab_rails['gitlab_shell_ssh_port'] = {}", g.ports.ssh);
    // The container's nginx stays on 80 whatever port external_url names; the host port
    // mapping (gitlab.ports.http -> 80) does the rest.
    let _ = writeln!(o, "nginx['listen_port'] = 80");
    let https = external_url.starts_with("https://");
    if https && config.platform.ingress != IngressKind::None {
        let _ = writeln!(
            o,
            "# TLS ends at the ingress; GitLab serves plain HTTP behind it."
        );
        let _ = writeln!(o, "nginx['listen_https'] = false");
        let _ = writeln!(
            o,
            "nginx['proxy_set_headers'] = {{ 'X-Forwarded-Proto' => 'https', 'X-Forwarded-Ssl' => 'on' }}"
        );
    }
    let _ = writeln!(o, "letsencrypt['enable'] = false");
    // Puma keeps its unix socket (used by Workhorse); its TCP listener moves to a loopback port
    // that no configured port can collide with.
    let taken = [
        Some(g.ports.http),
        Some(g.ports.https),
        Some(g.ports.ssh),
        url_port(&external_url),
    ];
    let puma_port = [8089u16, 18089, 28089]
        .into_iter()
        .find(|p| !taken.contains(&Some(*p)))
        .unwrap_or(38089);
    let _ = writeln!(o, "puma['listen'] = '127.0.0.1'");
    let _ = writeln!(o, "puma['port'] = {puma_port}");
    let _ = writeln!(
        o,
        "puma['socket'] = '/var/opt/gitlab/gitlab-rails/sockets/gitlab.socket'"
    );
    let _ = writeln!(o, "puma['worker_processes'] = {}", t.puma_workers);
    let _ = writeln!(o, "sidekiq['concurrency'] = {}", t.sidekiq_concurrency);
    let _ = writeln!(
        o,
        "postgresql['shared_buffers'] = {}",
        ruby_str(&format!(
            "{}MB",
            t.postgres_shared_buffers.0 / (1024 * 1024)
        ))
    );
    let _ = writeln!(o, "prometheus_monitoring['enable'] = {}", t.prometheus);
    let list: Vec<String> = config
        .platform
        .monitoring_whitelist
        .iter()
        .map(|c| ruby_str(c))
        .collect();
    let _ = writeln!(
        o,
        "gitlab_rails['monitoring_whitelist'] = [{}]",
        list.join(", ")
    );
    let _ = writeln!(
        o,
        "gitlab_rails['backup_keep_time'] = {}",
        u64::from(config.backup.retention) * 86_400
    );
    o.push_str(&crate::registry::omnibus(config, base_domain));
    o
}

/// The GitLab service of a plan with the registry on (its route goes to GitLab's container).
fn registry_gitlab(plan: &Plan) -> Option<&crate::plan::ServiceSpec> {
    plan.registry
        .then(|| plan.local().find(|s| s.role == Role::Gitlab))
        .flatten()
}

/// The registry router's middlewares: GitLab's, without the body limit (Traefik's
/// `buffering` would hold whole layers in memory and refuse those above 250 MiB) and without
/// the guard.
fn registry_middlewares(plan: &Plan, gitlab: &str) -> Vec<String> {
    std::iter::once("request-id".to_owned())
        .chain(
            router_middlewares(plan, gitlab)
                .into_iter()
                .filter(|m| !matches!(m.as_str(), "body-limit" | "guard" | "guard-headers")),
        )
        .collect()
}

/// A literal string in a compose file: compose interpolates `$NAME` and `${...}` in every
/// value, so a `$` meant for the container (a shell health check's `$code`, a password in a
/// plain setting) is written `$$`.
fn compose_literal(s: &str) -> String {
    s.replace('$', "$$")
}

fn compose_literals(v: &[String]) -> Vec<String> {
    v.iter().map(|s| compose_literal(s)).collect()
}

fn compose_service(st: &PlatformState, s: &ServiceState, rendered_dir: &str) -> Value {
    let mut m = Map::new();
    m.insert("image".into(), Value::from(s.image.as_str()));
    m.insert(
        "container_name".into(),
        Value::from(s.container_name.as_str()),
    );
    if let Some(h) = &s.hostname {
        m.insert("hostname".into(), Value::from(h.as_str()));
    }
    m.insert("restart".into(), Value::from("unless-stopped"));
    m.insert("cpus".into(), json!(s.resources.cpus));
    m.insert(
        "mem_limit".into(),
        Value::from(s.resources.memory.to_string().to_ascii_lowercase()),
    );
    if let Some(shm) = s.resources.shm_size {
        m.insert(
            "shm_size".into(),
            Value::from(shm.to_string().to_ascii_lowercase()),
        );
    }
    if !s.command.is_empty() {
        m.insert("command".into(), json!(compose_literals(&s.command)));
    }
    if !s.ports.is_empty() {
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| {
                let proto = if p.protocol == crate::plan::Protocol::Udp {
                    "/udp"
                } else {
                    ""
                };
                Value::from(match &p.bind {
                    Some(b) => format!("{b}:{}:{}{proto}", p.host, p.container),
                    None => format!("{}:{}{proto}", p.host, p.container),
                })
            })
            .collect();
        m.insert("ports".into(), Value::Array(ports));
    }
    if !s.env.is_empty() {
        let mut env = Map::new();
        for e in &s.env {
            let k = &e.name;
            let v = match &e.value {
                EnvValue::Plain(v) => compose_literal(v),
                EnvValue::HostPath(p) => {
                    let var = p.compose_var();
                    format!("${{{var}:?set {var} to the host path}}")
                }
                // Secrets come from the environment or the .env file next to the compose
                // file; compose refuses to start without them.
                EnvValue::Secret => format!("${{{k}:?set {k} in .env}}"),
                EnvValue::Withheld => format!("${{{k}:?set {k} (its value was not captured)}}"),
            };
            env.insert(k.clone(), Value::from(v));
        }
        m.insert("environment".into(), Value::Object(env));
    }
    if !s.mounts.is_empty() {
        let vols: Vec<Value> = s
            .mounts
            .iter()
            .map(|mnt| {
                Value::from(match mnt {
                    Mount::Volume { name, target } => format!("{name}:{target}"),
                    Mount::Rendered { file, target } => {
                        format!("{rendered_dir}/{file}:{target}:ro")
                    }
                    Mount::Host {
                        path,
                        target,
                        read_only,
                    } => format!("{path}:{target}{}", if *read_only { ":ro" } else { "" }),
                    // Unresolved (a plan rendered without a host): compose reads the path
                    // from its environment and refuses to start without it.
                    Mount::HostPath {
                        of,
                        target,
                        read_only,
                    } => {
                        let var = of.compose_var();
                        let src = format!("${{{var}:?set {var} to the host path}}");
                        let target = target.clone().unwrap_or_else(|| src.clone());
                        format!("{src}:{target}{}", if *read_only { ":ro" } else { "" })
                    }
                })
            })
            .collect();
        m.insert("volumes".into(), Value::Array(vols));
    }
    if let Some(h) = &s.health {
        m.insert(
            "healthcheck".into(),
            json!({
                "test": compose_literals(&h.test),
                "interval": h.interval.to_string(),
                "timeout": h.timeout.to_string(),
                "retries": h.retries,
                "start_period": h.start_period.to_string(),
            }),
        );
    }
    let deps: Vec<&String> = s
        .depends_on
        .iter()
        .filter(|d| {
            st.services
                .iter()
                .any(|l| &l.name == *d && l.always_local())
        })
        .collect();
    if !deps.is_empty() {
        m.insert("depends_on".into(), json!(deps));
    }
    m.insert("networks".into(), json!(s.networks));
    let mut labels = Map::new();
    labels.insert(
        "io.autogit.project".into(),
        Value::from(st.project.as_str()),
    );
    labels.insert("io.autogit.service".into(), Value::from(s.name.as_str()));
    labels.insert(
        "io.autogit.role".into(),
        serde_json::to_value(s.role).unwrap_or(Value::Null),
    );
    // Routes are the ingress's rendered configuration (Traefik's file provider, nginx's
    // conf.d), never container labels: see docs/ingress.md, "Service discovery".
    if let Some(route) = &s.route {
        labels.insert("io.autogit.host".into(), Value::from(route.host.as_str()));
    }
    m.insert("labels".into(), Value::Object(labels));
    Value::Object(m)
}

/// The whole platform as a compose file (`autogit export compose`). `rendered_dir` is where the
/// rendered configuration files are, relative to the compose file.
pub fn compose(plan: &Plan, rendered_dir: &str) -> String {
    compose_state(&crate::state::from_plan(plan), rendered_dir)
}

/// The compose file of a platform state: every service that runs on this host and is
/// created with the platform (remote and on-demand runners are autogit's to manage).
pub fn compose_state(st: &PlatformState, rendered_dir: &str) -> String {
    let mut services = Map::new();
    let mut volumes = Map::new();
    for s in st.services.iter().filter(|s| s.always_local()) {
        services.insert(s.name.clone(), compose_service(st, s, rendered_dir));
        for mnt in &s.mounts {
            if let Mount::Volume { name, .. } = mnt {
                volumes.insert(name.clone(), json!({}));
            }
        }
    }
    let doc = json!({
        "services": services,
        "networks": { st.network.clone(): { "name": st.network_name() } },
        "volumes": volumes,
    });
    let mut out = format!(
        "# Rendered by autogit for project `{}` (preset {}). Run with:\n#   docker compose -p {} up -d\n# Runners and remote hosts are managed by autogit and are not part of this file.\n",
        st.project, st.preset, st.project
    );
    out.push_str(&to_yaml(&doc));
    out
}

/// The service discovery JSON of the platform spec: one object per routed service.
pub fn discovery(plan: &Plan) -> Value {
    let items: Vec<Value> = plan
        .services
        .iter()
        .filter(|s| s.placement == Placement::Local && s.role != Role::Runner)
        .map(|s| {
            let health = s.health.as_ref();
            json!({
                "service": s.name,
                "subdomain": s.subdomain,
                "internal_port": s.internal_port,
                "external_port": s.ports.first().map(|p| p.host),
                "health_endpoint": health.and_then(|h| match &h.probe { Probe::Http { path, .. } => Some(path.clone()), _ => None }),
                "ready_endpoint": health.and_then(|h| h.ready_path.clone()),
                "labels": s.labels,
            })
        })
        .collect();
    Value::Array(items)
}

/// Prometheus configuration: scrapes itself, autogit's `/metrics` (the `api` service, with
/// the bearer token file), every service with a metrics endpoint; loads the alert rules
/// (`crate::monitoring`).
pub fn prometheus(plan: &Plan, config: &Config) -> String {
    crate::monitoring::prometheus_config(&crate::monitoring::compose_setup(plan, config))
}

/// Tempo: single-binary mode with local storage, OTLP receivers (gRPC 4317, HTTP 4318: where
/// autogit's traces go), traces kept 14 days.
pub fn tempo() -> String {
    let doc = json!({
        "server": {"http_listen_port": 3200},
        "distributor": {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}}}},
        "compactor": {"compaction": {"block_retention": "336h"}},
        "storage": {"trace": {"backend": "local", "local": {"path": "/var/tempo/traces"}, "wal": {"path": "/var/tempo/wal"}}},
    });
    format!("# Rendered by autogit.\n{}", to_yaml(&doc))
}

/// Loki: single binary (monolithic), file system storage under its volume, the TSDB index
/// (schema v13), no multi-tenancy, lines kept 14 days (the compactor deletes older ones), the
/// same as autogit's own log store. The daemon pushes the scrubbed lines to it
/// (docs/logs.md).
pub fn loki() -> String {
    let doc = json!({
        "auth_enabled": false,
        "server": {"http_listen_port": 3100, "grpc_listen_port": 9096},
        "common": {
            "path_prefix": "/loki",
            "instance_addr": "127.0.0.1",
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
            "storage": {"filesystem": {"chunks_directory": "/loki/chunks", "rules_directory": "/loki/rules"}},
        },
        "schema_config": {"configs": [{
            "from": "2024-01-01",
            "store": "tsdb",
            "object_store": "filesystem",
            "schema": "v13",
            "index": {"prefix": "index_", "period": "24h"},
        }]},
        "limits_config": {"retention_period": "336h", "reject_old_samples": true, "reject_old_samples_max_age": "168h"},
        "compactor": {
            "working_directory": "/loki/compactor",
            "retention_enabled": true,
            "delete_request_store": "filesystem",
        },
        "analytics": {"reporting_enabled": false},
    });
    format!("# Rendered by autogit.\n{}", to_yaml(&doc))
}

/// Traefik's static configuration: entry points (HTTP redirects to HTTPS), the file provider
/// watching the dynamic directory, ping for health. The file provider is the one source of
/// routes: the ingress never needs the engine's socket (root-equivalent), and what Traefik
/// serves is a file autogit rendered and tests, the same one the compose export ships.
pub fn traefik_static(plan: &Plan) -> String {
    if plan.base_domain.is_none() {
        return String::new();
    }
    // Slow clients: the whole request within READ_TIMEOUT_SECS (crate::ingress).
    let read_timeouts = json!({"readTimeout": format!("{}s", crate::ingress::READ_TIMEOUT_SECS)});
    let mut doc = json!({
        "entryPoints": {
            "web": {"address": ":80", "transport": {"respondingTimeouts": read_timeouts}, "http": {"redirections": {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": true}}}},
            "websecure": {"address": ":443", "transport": {"respondingTimeouts": read_timeouts}},
        },
        "providers": {"file": {"directory": "/etc/traefik/dynamic", "watch": true}},
        "ping": {"entryPoint": "web"},
        "log": {"level": "INFO"},
        // JSON lines with the request id (set by the request-id plugin before anything else
        // runs); other request headers are not logged (they may carry credentials).
        "accessLog": {"format": "json", "fields": {"headers": {
            "defaultMode": "drop",
            "names": {"X-Request-Id": "keep"},
        }}},
        "experimental": {"localPlugins": {"requestid": {
            "moduleName": crate::ingress::REQUEST_ID_PLUGIN_MODULE,
        }}},
    });
    // Behind Cloudflare's proxy: X-Forwarded-* believed from Cloudflare's edge only.
    if let Some(fh) = crate::ingress::traefik_forwarded_headers(!plan.cloudflare_proxied.is_empty())
    {
        for ep in ["web", "websecure"] {
            doc["entryPoints"][ep]["forwardedHeaders"] = fh.clone();
        }
    }
    if gitlab_ssh(plan) {
        doc["entryPoints"]["ssh"] =
            json!({"address": format!(":{}", crate::ingress::SSH_ENTRY_PORT)});
    }
    // HTTP-01 without a platform certificate: Traefik's own ACME resolver answers the
    // challenges on `web` (before the HTTPS redirect) and renews by itself.
    if let (Some((email, directory)), None) = (&plan.http01, &plan.tls) {
        let mut acme = json!({
            "storage": "/acme/acme.json",
            "caServer": crate::tls::directory_url(directory),
            "httpChallenge": {"entryPoint": "web"},
        });
        if let Some(e) = email {
            acme["email"] = json!(e);
        }
        doc["certificatesResolvers"] = json!({"autogit": {"acme": acme}});
    }
    format!(
        "# Rendered by autogit: Traefik static configuration.\n{}",
        to_yaml(&doc)
    )
}

/// Traefik's dynamic configuration: a router per service with a Host rule on HTTPS, its
/// service, and the shared middlewares. With the platform certificate (`plan.tls`), it is the
/// default certificate of the default TLS store; the file names the certificate's identifier,
/// so a renewal changes the file and Traefik's file provider reloads it.
pub fn traefik_dynamic(plan: &Plan) -> String {
    let Some(domain) = &plan.base_domain else {
        return String::new();
    };
    let mut routers = Map::new();
    let mut services = Map::new();
    for s in plan.local() {
        if let (Some(_), Some(port)) = (&s.subdomain, s.internal_port) {
            routers.insert(
                s.name.clone(),
                json!({
                    "rule": host_rule(s, domain),
                    "entryPoints": ["websecure"],
                    "service": crate::ingress::traefik_router_service(plan, &s.name),
                    "tls": if plan.http01.is_some() && plan.tls.is_none() { json!({"certResolver": "autogit"}) } else { json!({}) },
                    "middlewares": std::iter::once("request-id".to_owned())
                        .chain(router_middlewares(plan, &s.name))
                        .collect::<Vec<_>>(),
                }),
            );
            services.insert(s.name.clone(), json!({"loadBalancer": {"servers": [{"url": format!("http://{}:{port}", s.name)}]}}));
            // Failing open: Traefik's failover service, the guard while its health check
            // passes, else the service itself.
            if plan
                .guard_proxy
                .as_ref()
                .is_some_and(|g| g.fail_open && g.services.contains(&s.name))
            {
                services.insert(
                    format!("{}-guarded", s.name),
                    json!({"failover": {"service": crate::ingress::GUARD_PROXY_SERVICE, "fallback": s.name}}),
                );
            }
            // GitLab's refused paths: a router above GitLab's (explicit priority) whose only
            // middleware refuses every client (an allowlist nobody is on: 403).
            if s.role == Role::Gitlab {
                let paths = crate::ingress::REFUSED_PATHS
                    .iter()
                    .map(|(re, _)| format!("PathRegexp(`{re}`)"))
                    .collect::<Vec<_>>()
                    .join(" || ");
                routers.insert(
                    format!("{}-refused", s.name),
                    json!({
                        "rule": format!("({}) && ({paths})", host_rule(s, domain)),
                        "priority": 10_000,
                        "entryPoints": ["websecure"],
                        "service": s.name,
                        "tls": if plan.http01.is_some() && plan.tls.is_none() { json!({"certResolver": "autogit"}) } else { json!({}) },
                        "middlewares": ["request-id", "refuse"],
                    }),
                );
            }
        }
    }
    if let Some(g) = registry_gitlab(plan) {
        routers.insert(
            "registry".into(),
            json!({
                "rule": format!("Host(`{}.{domain}`)", crate::registry::SUBDOMAIN),
                "entryPoints": ["websecure"],
                "service": "registry",
                "tls": if plan.http01.is_some() && plan.tls.is_none() { json!({"certResolver": "autogit"}) } else { json!({}) },
                "middlewares": registry_middlewares(plan, &g.name),
            }),
        );
        services.insert(
            "registry".into(),
            json!({"loadBalancer": {"servers": [{"url": format!("http://{}:{}", g.name, crate::registry::PORT)}]}}),
        );
    }
    if let Some(gp) = &plan.guard_proxy {
        services.insert(
            crate::ingress::GUARD_PROXY_SERVICE.to_owned(),
            crate::ingress::traefik_guard_proxy_service(gp),
        );
    }
    let mut doc = json!({
        "http": {
            "routers": routers,
            "services": services,
            "middlewares": crate::ingress::traefik_middlewares(
                &plan.ingress_allow,
                plan.guard.as_ref().map(|(a, _)| a.as_str()),
                !plan.cloudflare_proxied.is_empty(),
            )
            .into_iter()
            .chain(plan.guard_proxy.as_ref().map(|_| {
                (
                    "guard-headers",
                    json!({"headers": {"customRequestHeaders": crate::ingress::GUARD_HEADERS
                        .iter()
                        .map(|h| (h.to_string(), json!("")))
                        .collect::<Map<String, Value>>()}}),
                )
            }))
            .chain([
                ("request-id", json!({"plugin": {"requestid": {}}})),
                (
                    "refuse",
                    json!({"ipAllowList": {"sourceRange": ["255.255.255.255/32"]}}),
                ),
            ])
            .map(|(name, spec)| (name.to_owned(), spec))
            .collect::<Map<String, Value>>(),
        },
    });
    // GitLab's SSH: a TCP router on the `ssh` entry point. SSH carries no server name, so the
    // rule is `HostSNI(`*`)` (every connection on that entry point); the allowlist applies.
    if gitlab_ssh(plan) {
        let mut router = json!({
            "entryPoints": ["ssh"],
            "rule": "HostSNI(`*`)",
            "service": "gitlab-ssh",
        });
        let mut tcp = json!({
            "routers": {"gitlab-ssh": router.clone()},
            "services": {"gitlab-ssh": {"loadBalancer": {"servers": [{"address": "gitlab:22"}]}}},
        });
        if !plan.ingress_allow.is_empty() {
            router["middlewares"] = json!(["ip-allowlist"]);
            tcp["routers"]["gitlab-ssh"] = router;
            tcp["middlewares"] =
                json!({"ip-allowlist": {"ipAllowList": {"sourceRange": plan.ingress_allow}}});
        }
        doc["tcp"] = tcp;
    }
    let mut head =
        String::from("# Rendered by autogit: Traefik dynamic configuration (file provider).\n");
    if let Some(id) = &plan.tls {
        let files = json!({
            "certFile": format!("{TLS_DIR}/fullchain.pem"),
            "keyFile": format!("{TLS_DIR}/key.pem"),
        });
        doc["tls"] = json!({
            "certificates": [files.clone()],
            "stores": {"default": {"defaultCertificate": files}},
            "options": {"default": {"minVersion": "VersionTLS12"}},
        });
        let _ = writeln!(head, "# certificate: *.{domain} {id}");
    }
    format!("{head}{}", to_yaml(&doc))
}

/// Whether the ingress carries GitLab's SSH: it publishes the `ssh` port the plan moved to it
/// from GitLab (see `plan`).
fn gitlab_ssh(plan: &Plan) -> bool {
    plan.local().any(|s| {
        s.role == Role::Ingress
            && s.ports
                .iter()
                .any(|p| p.container == crate::ingress::SSH_ENTRY_PORT)
    })
}

/// nginx's main configuration (`/etc/nginx/nginx.conf`): the official image's, plus a `stream`
/// block for GitLab's SSH, which cannot live in `conf.d` (included inside `http`). The
/// `modules-enabled` include loads the stream module where it is a dynamic module (Debian's
/// packaging); the official image has it built in and that directory empty.
pub fn nginx_main(plan: &Plan) -> String {
    let mut o = String::from(
        "# Rendered by autogit: nginx's main configuration (the official image's, and GitLab's SSH).\n\
         include /etc/nginx/modules-enabled/*.conf;\n\
         user nginx;\nworker_processes auto;\n\
         error_log /var/log/nginx/error.log notice;\npid /var/run/nginx.pid;\n\
         events {\n    worker_connections 1024;\n}\n\
         http {\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n\
         \x20   sendfile on;\n    keepalive_timeout 65;\n\
         \x20   include /etc/nginx/conf.d/*.conf;\n",
    );
    // The routes of compute services (`rendered/nginx/routes/`, a mounted directory: the
    // compute controller replaces its file and makes nginx reload).
    let _ = writeln!(
        o,
        "    include {}/*.conf;\n}}",
        crate::routes::NGINX_ROUTES_DIR
    );
    if gitlab_ssh(plan) {
        let allow = nginx_allow(plan, "        ");
        // Plain TCP to GitLab's port 22, its address resolved per connection (a recreated
        // GitLab is found at its new address; nginx starts while GitLab is still down).
        let _ = write!(
            o,
            "\n# GitLab's SSH: plain TCP on its own port, on to GitLab's port 22.\n\
             stream {{\n    resolver 127.0.0.11 valid=10s ipv6=off;\n\
             \x20   map $server_port $autogit_gitlab_ssh {{\n        default gitlab:22;\n    }}\n\
             \x20   server {{\n        listen {port};{allow}\n        proxy_pass $autogit_gitlab_ssh;\n\
             \x20       proxy_connect_timeout 10s;\n        proxy_timeout {idle}s;\n    }}\n}}\n",
            port = crate::ingress::SSH_ENTRY_PORT,
            idle = crate::ingress::SSH_IDLE_TIMEOUT_SECS,
        );
    }
    o
}

/// nginx's `allow` lines for `ingress_allow`, then `deny all`, each on a new line indented by
/// `indent`; nothing when everyone may connect.
fn nginx_allow(plan: &Plan, indent: &str) -> String {
    if plan.ingress_allow.is_empty() {
        return String::new();
    }
    let mut a: String = plan
        .ingress_allow
        .iter()
        .map(|c| format!("\n{indent}allow {c};"))
        .collect();
    a.push_str(&format!("\n{indent}deny all;"));
    a
}

/// Traefik's rule for a routed service: its subdomain and its aliases.
fn host_rule(s: &crate::plan::ServiceSpec, domain: &str) -> String {
    s.hosts()
        .iter()
        .map(|h| format!("Host(`{h}.{domain}`)"))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// nginx: one server block per subdomain, proxying to the service on the platform network.
pub fn nginx(plan: &Plan) -> String {
    let Some(domain) = &plan.base_domain else {
        return String::new();
    };
    // Upstreams are resolved per request through the engine's embedded DNS, not once at
    // start: a container autogit recreates comes back with a new address.
    // The same limits as Traefik's middlewares (`crate::ingress`): per client address, 429 when
    // exceeded (nginx's default would be 503), bodies up to GitLab's own limit (413 above).
    let mut o = format!(
        "# Rendered by autogit.\nresolver 127.0.0.11 valid=10s ipv6=off;\n\
         limit_req_zone $binary_remote_addr zone=autogit:10m rate={}r/s;\n\
         limit_req_status 429;\n\
         # Request ids: the client's X-Request-Id when valid, else nginx's own (32 hex digits);\n\
         # sent to the backend and the client, and in the JSON access log.\n\
         map $http_x_request_id $autogit_request_id {{\n    \"~{}\" $http_x_request_id;\n    default $request_id;\n}}\n\
         log_format autogit_json escape=json '{{\"time\":\"$time_iso8601\",\"request_id\":\"$autogit_request_id\",\
         \"client\":\"$remote_addr\",\"host\":\"$host\",\"method\":\"$request_method\",\"uri\":\"$request_uri\",\
         \"status\":$status,\"bytes\":$body_bytes_sent,\"duration\":$request_time,\"upstream\":\"$upstream_addr\",\
         \"user_agent\":\"$http_user_agent\"}}';\n\
         access_log /var/log/nginx/access.log autogit_json;\n\
         # Slow clients: the whole header within {header}s (408), pauses in a body or a response\n\
         # up to {read}s.\n\
         client_header_timeout {header}s;\nclient_body_timeout {read}s;\nsend_timeout {read}s;\n\
         # An upstream that does not answer (a stopped container's old address) fails fast.\n\
         proxy_connect_timeout {connect}s;\n",
        crate::ingress::RATE_AVERAGE,
        crate::ingress::REQUEST_ID_PATTERN,
        header = crate::ingress::HEADER_TIMEOUT_SECS,
        read = crate::ingress::READ_TIMEOUT_SECS,
        connect = crate::ingress::CONNECT_TIMEOUT_SECS,
    );
    o.push_str(&crate::ingress::nginx_real_ip(
        !plan.cloudflare_proxied.is_empty(),
    ));
    let server = NginxServer::of(plan);
    if let Some(id) = &plan.tls {
        let _ = write!(
            o,
            "# certificate: *.{domain} {id}\n\
             ssl_certificate {TLS_DIR}/fullchain.pem;\n\
             ssl_certificate_key {TLS_DIR}/key.pem;\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n\
             ssl_session_cache shared:autogit_tls:10m;\n\
             \nserver {{\n    listen 80 default_server;\n    server_name _;{acme}\n    location / {{\n        return 308 https://$host$request_uri;\n    }}\n}}\n",
            acme = server.acme,
        );
    }
    // A host no server names (a route that was removed, a mistyped name) gets 404, as with
    // Traefik, not the first service's answer (nginx's default server would be the first).
    let _ = write!(
        o,
        "\nserver {{\n    listen {} default_server;\n    server_name _;\n    return 404;\n}}\n",
        server.listen
    );
    let (listen, hsts, allow, acme80) = (
        server.listen,
        server.hsts,
        server.allow.as_str(),
        server.acme80(),
    );
    for s in plan.local() {
        if let (Some(_), Some(port)) = (&s.subdomain, s.internal_port) {
            let names = s
                .hosts()
                .iter()
                .map(|h| format!("{h}.{domain}"))
                .collect::<Vec<_>>()
                .join(" ");
            // GitLab's refused paths (crate::ingress::REFUSED_PATHS): regex locations win over
            // `location /`; the path is decoded and normalised before it is matched.
            let refused: String = if s.role == Role::Gitlab {
                crate::ingress::REFUSED_PATHS
                    .iter()
                    .map(|(re, _)| {
                        format!("\n    location ~ \"{re}\" {{\n        return 403;\n    }}")
                    })
                    .collect()
            } else {
                String::new()
            };
            let guard = plan
                .guard_proxy
                .as_ref()
                .filter(|g| g.services.contains(&s.name));
            o.push_str(&server.block(
                &names,
                &format!("http://{}:{port}", s.name),
                guard,
                &refused,
            ));
        }
    }
    // The registry: GitLab's allowlist and rate limit, no body limit, nothing buffered (layers
    // stream through), and long pauses allowed (crate::registry).
    if let Some(g) = registry_gitlab(plan) {
        let _ = write!(
            o,
            "\nserver {{\n    listen {listen};\n    server_name {sub}.{domain};{hsts}\n    add_header X-Content-Type-Options \"nosniff\" always;\n    add_header X-Request-Id $autogit_request_id always;{allow}{acme80}\n    client_max_body_size 0;\n    client_body_timeout {t}s;\n    send_timeout {t}s;\n    location / {{\n        limit_req zone=autogit burst={burst} nodelay;\n        set $upstream http://{name}:{port};\n        proxy_pass $upstream;{headers}\n        proxy_request_buffering off;\n        proxy_buffering off;\n        proxy_read_timeout {t}s;\n        proxy_send_timeout {t}s;\n    }}\n}}\n",
            sub = crate::registry::SUBDOMAIN,
            t = crate::registry::TIMEOUT_SECS,
            burst = crate::ingress::RATE_BURST,
            name = g.name,
            port = crate::registry::PORT,
            headers = nginx_proxy_headers(false),
        );
    }
    o
}

/// What nginx's routed server blocks share (the platform's services and the routes of
/// compute services, `crate::routes::nginx_routes`): the listen line, HSTS, the allowlist and,
/// without a platform certificate, the HTTP-01 location on port 80.
pub(crate) struct NginxServer {
    pub(crate) listen: &'static str,
    pub(crate) hsts: &'static str,
    pub(crate) allow: String,
    /// The HTTP-01 challenge location (`rendered/acme-http`), when autogit answers them.
    pub(crate) acme: String,
    tls: bool,
}

impl NginxServer {
    pub(crate) fn of(plan: &Plan) -> Self {
        let tls = plan.tls.is_some();
        let (listen, hsts) = if tls {
            (
                "443 ssl",
                "\n    add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always;",
            )
        } else {
            ("80", "")
        };
        NginxServer {
            listen,
            hsts,
            allow: nginx_allow(plan, "    "),
            acme: if plan.http01.is_some() {
                format!(
                    "\n    location ^~ /.well-known/acme-challenge/ {{\n        root {ACME_HTTP_DIR};\n        default_type text/plain;\n    }}"
                )
            } else {
                String::new()
            },
            tls,
        }
    }

    /// Without TLS the service blocks themselves listen on 80 and answer the challenges.
    fn acme80(&self) -> &str {
        if self.tls { "" } else { &self.acme }
    }

    /// One server block for `names` (space-separated host names) proxying to `direct`
    /// (`http://host:port`), or through `guard` (proxy mode: `/` goes to it, it keeps the Host
    /// and chooses the service by it; failing open, a 502/504 nginx itself gives when the guard
    /// does not answer sends the request, body included, to the service; an answer of the
    /// guard's own is passed on as it is); `extra` are more locations (refused paths).
    pub(crate) fn block(
        &self,
        names: &str,
        direct: &str,
        guard: Option<&crate::plan::GuardProxy>,
        extra: &str,
    ) -> String {
        let (target, fallback) = match guard {
            Some(g) => (
                format!("http://{}", g.authority()),
                g.fail_open.then(|| {
                    format!(
                        "\n    location @autogit_unguarded {{\n        set $upstream {direct};\n        proxy_pass $upstream;{headers}\n    }}",
                        headers = nginx_proxy_headers(true),
                    )
                }),
            ),
            None => (direct.to_owned(), None),
        };
        let error_page = if fallback.is_some() {
            "\n        error_page 502 504 = @autogit_unguarded;"
        } else {
            ""
        };
        format!(
            "\nserver {{\n    listen {listen};\n    server_name {names};{hsts}\n    add_header X-Content-Type-Options \"nosniff\" always;\n    add_header X-Frame-Options \"DENY\" always;\n    add_header Referrer-Policy \"strict-origin-when-cross-origin\" always;\n    add_header X-Request-Id $autogit_request_id always;{allow}{acme80}\n    client_max_body_size {max_body};{extra}\n    location / {{\n        limit_req zone=autogit burst={burst} nodelay;\n        set $upstream {target};\n        proxy_pass $upstream;{headers}{error_page}\n    }}{fallback}\n}}\n",
            listen = self.listen,
            hsts = self.hsts,
            allow = self.allow,
            acme80 = self.acme80(),
            max_body = crate::ingress::MAX_BODY_BYTES,
            burst = crate::ingress::RATE_BURST,
            headers = nginx_proxy_headers(guard.is_some()),
            fallback = fallback.unwrap_or_default(),
        )
    }
}

/// The request headers nginx sends upstream; with `guarded`, the guard's verdict headers a
/// client sent are removed (an empty value is not sent), so only the guard's own reach the
/// service.
fn nginx_proxy_headers(guarded: bool) -> String {
    let mut h = String::from(
        "\n        proxy_http_version 1.1;\n        proxy_set_header Host $host;\n        proxy_set_header X-Real-IP $remote_addr;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        proxy_set_header X-Forwarded-Proto $scheme;\n        proxy_set_header X-Request-Id $autogit_request_id;",
    );
    if guarded {
        for name in crate::ingress::GUARD_HEADERS {
            let _ = write!(h, "\n        proxy_set_header {name} \"\";");
        }
    }
    h
}

/// The rendered files the Kubernetes generators mount: [`all_files`] with Prometheus scraping
/// only what a cluster runs ([`crate::monitoring::cluster_setup`]).
pub fn cluster_files(plan: &Plan, config: &Config) -> Vec<(String, String)> {
    let mut files = all_files(plan, config);
    for (name, text) in &mut files {
        if name == "prometheus/prometheus.yml" {
            *text = crate::monitoring::prometheus_config(&crate::monitoring::cluster_setup(
                plan, config,
            ));
        }
    }
    files
}

/// Every file `install --dry-run` writes under `rendered/`, as (relative path, content).
pub fn all_files(plan: &Plan, config: &Config) -> Vec<(String, String)> {
    let mut files = vec![
        ("docker-compose.yml".to_owned(), compose(plan, ".")),
        (
            "gitlab/gitlab.rb".to_owned(),
            gitlab_omnibus(config, plan.base_domain.as_deref()),
        ),
        (
            "services.json".to_owned(),
            format!("{:#}\n", discovery(plan)),
        ),
    ];
    let has = |n: &str| plan.local().any(|s| s.name == n);
    if has("prometheus") {
        files.push(("prometheus/prometheus.yml".into(), prometheus(plan, config)));
        files.push((
            "prometheus/alerts.yml".into(),
            crate::monitoring::alert_rules_file(&crate::monitoring::AlertThresholds::default()),
        ));
        files.push((
            "alertmanager/alertmanager.yml".into(),
            crate::monitoring::alertmanager_config(&config.health.notify),
        ));
    }
    if has("grafana") {
        files.extend(crate::grafana::files(
            &crate::grafana::GrafanaSetup::for_plan(plan, config),
        ));
    }
    if has("loki") {
        files.push(("loki/loki.yaml".into(), loki()));
    }
    if config
        .runners
        .gpu
        .iter()
        .any(|r| r.gpu == Some(crate::config::GpuVendor::Nvidia) && !r.wsl2)
    {
        files.push((
            "dcgm-exporter/docker-compose.yml".into(),
            crate::monitoring::dcgm_exporter_compose(),
        ));
    }
    if has("tempo") {
        files.push(("tempo/tempo.yaml".into(), tempo()));
    }
    if has("traefik") {
        files.push(("traefik/traefik.yml".into(), traefik_static(plan)));
        files.push(("traefik/dynamic/autogit.yml".into(), traefik_dynamic(plan)));
        for (name, text) in crate::ingress::request_id_plugin_files() {
            files.push((
                format!(
                    "traefik/plugins-local/src/{}/{name}",
                    crate::ingress::REQUEST_ID_PLUGIN_MODULE
                ),
                text,
            ));
        }
    }
    if has("nginx") {
        files.push(("nginx/nginx.conf".into(), nginx_main(plan)));
        files.push(("nginx/autogit.conf".into(), nginx(plan)));
    }
    files
}
