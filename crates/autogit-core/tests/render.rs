//! Planner and renderer snapshots for a full platform, plus planner checks on ports and host.

use autogit_core::diag::{Diagnostics, render_all};
use autogit_core::load::{LoadInput, load};
use autogit_core::plan::{HostFacts, Plan, PlanInput, plan};
use autogit_core::platform::load_platform;
use autogit_core::render;
use autogit_core::units::Bytes;
use std::collections::BTreeMap;

const CONFIG: &str = r#"
gitlab:
  hostname: gitlab.vectorweight.com
  external_url: https://gitlab.vectorweight.com
  resources:
    preset: team
runners:
  cpu:
    - name: homelab-cpu
      host: local
  gpu:
    - name: wsl-5080
      host: desktop2.lan
      executor: podman
      wsl2: true
      capabilities: [inference, train]
"#;

const ENV: &str = "BASE_DOMAIN=vectorweight.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus,meilisearch,api\nPORT_GRAFANA=3000\n";

fn build(config: &str, env: &str, input: &PlanInput) -> (Plan, String) {
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    let mut sources = loaded.sources;
    let mut diags = loaded.diagnostics;
    let (platform, _) = load_platform(Some((".env", env)), &[], &mut sources, &mut diags);
    let (plan, pd) = plan(&loaded.config, &platform, input);
    let mut all = Diagnostics::default();
    all.extend(diags);
    all.extend(pd);
    (plan, render_all(&all, &sources))
}

fn full() -> (Plan, autogit_core::config::Config) {
    let (p, diags) = build(CONFIG, ENV, &PlanInput::default());
    assert!(!diags.contains("error["), "{diags}");
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", CONFIG)),
        ..Default::default()
    });
    (p, loaded.config)
}

#[test]
fn omnibus_config() {
    let (plan, config) = full();
    insta::assert_snapshot!(render::gitlab_omnibus(&config, plan.base_domain.as_deref()));
}

/// Plans `config` with `BASE_DOMAIN=example.test` behind `ingress`; returns the plan, the
/// configuration and the `external_url` of the rendered gitlab.rb (which must be what GitLab's
/// container gets).
fn external_url_case(config: &str, ingress: &str) -> (Plan, autogit_core::config::Config, String) {
    let config = format!("{config}platform:\n  ingress: {ingress}\n");
    let (plan, diags) = build(&config, "BASE_DOMAIN=example.test\n", &PlanInput::default());
    assert!(!diags.contains("error["), "{diags}");
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", &config)),
        ..Default::default()
    });
    let (_, rb) = render::all_files(&plan, &loaded.config)
        .into_iter()
        .find(|(f, _)| f == "gitlab/gitlab.rb")
        .expect("gitlab.rb is rendered");
    let omnibus = plan
        .services
        .iter()
        .find(|s| s.name == "gitlab")
        .and_then(|s| s.environment.get("GITLAB_OMNIBUS_CONFIG"))
        .expect("GitLab's container gets its configuration");
    assert_eq!(&rb, omnibus, "the file and the container agree");
    let url = rb
        .lines()
        .find_map(|l| l.strip_prefix("external_url '"))
        .map(|u| u.trim_end_matches('\'').to_owned())
        .expect("external_url is rendered");
    (plan, loaded.config, url)
}

/// The hosts the rendered ingress routes to the `gitlab` service.
fn routed_gitlab_hosts(plan: &Plan, ingress: &str) -> Vec<String> {
    if ingress == "nginx" {
        let conf = render::nginx(plan);
        let block = conf
            .split("\nserver {")
            .find(|b| b.contains("set $upstream http://gitlab:"))
            .expect("a server block for gitlab");
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix("server_name "))
            .map(|n| {
                n.trim_end_matches(';')
                    .split(' ')
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        let dynamic = render::traefik_dynamic(plan);
        let rule = dynamic
            .lines()
            .skip_while(|l| l.trim() != "gitlab:")
            .find_map(|l| l.trim().strip_prefix("rule: "))
            .expect("a router for gitlab")
            .trim_matches('"')
            .to_owned();
        rule.split(" || ")
            .map(|h| {
                h.trim_start_matches("Host(`")
                    .trim_end_matches("`)")
                    .to_owned()
            })
            .collect()
    }
}

/// GitLab's rendered `external_url` is the URL the ingress serves it at: derived from
/// BASE_DOMAIN when not chosen (absent, or `autogit init`'s default), and as written when chosen
/// (then `autogit validate` warns if it disagrees: `ingress::external_url_check`).
#[test]
fn gitlab_external_url_agrees_with_its_route() {
    for ingress in ["traefik", "nginx"] {
        for config in [
            "",
            "gitlab:\n  external_url: http://gitlab.localhost:8080\n",
            "gitlab:\n  hostname: gitlab.localhost\n  external_url: http://gitlab.localhost:8080\n",
            "gitlab:\n  external_url: https://gitlab.example.test\n",
        ] {
            let (plan, c, url) = external_url_case(config, ingress);
            assert_eq!(url, "https://gitlab.example.test", "{ingress}: {config}");
            let hosts = routed_gitlab_hosts(&plan, ingress);
            assert_eq!(hosts, ["gitlab.example.test"], "{ingress}");
            assert!(
                render::gitlab_omnibus(&c, plan.base_domain.as_deref())
                    .contains("X-Forwarded-Proto' => 'https'"),
                "TLS ends at the ingress"
            );
        }
        // Chosen, and not the route: deployed as written (validate warns).
        let (_, _, url) = external_url_case(
            "gitlab:\n  external_url: https://git.example.test\n",
            ingress,
        );
        assert_eq!(url, "https://git.example.test");
    }
}

#[test]
fn compose_file() {
    let (p, _) = full();
    insta::assert_snapshot!(render::compose(&p, "."));
}

#[test]
fn discovery_json() {
    let (p, _) = full();
    insta::assert_json_snapshot!(render::discovery(&p));
}

#[test]
fn ingress_with_the_platform_certificate() {
    let input = PlanInput {
        tls_certificate: Some("expires 2026-03-01".into()),
        ..Default::default()
    };
    let (p, diags) = build(CONFIG, ENV, &input);
    assert!(!diags.contains("error["), "{diags}");
    assert_eq!(p.tls.as_deref(), Some("expires 2026-03-01"));
    let ingress = p.service("traefik").unwrap();
    assert!(
        ingress.mounts.iter().any(|m| matches!(m, autogit_core::plan::Mount::Rendered { file, target } if file == "tls" && target == autogit_core::plan::TLS_DIR)),
        "{:?}",
        ingress.mounts
    );
    insta::assert_snapshot!("traefik_dynamic_tls", render::traefik_dynamic(&p));
    insta::assert_snapshot!("nginx_tls", render::nginx(&p));
    // Without a certificate: no TLS section, no mount.
    let (p, _) = build(CONFIG, ENV, &PlanInput::default());
    assert!(p.tls.is_none());
    assert!(!render::traefik_dynamic(&p).contains("certFile"));
    assert!(!render::nginx(&p).contains("ssl_certificate"));
}

#[test]
fn ingress_allowlist_and_guard_forward_auth() {
    let config = format!(
        "{CONFIG}platform:\n  ingress_allow: [10.0.0.0/8, 192.168.1.0/24]\n  guard_forward_auth: http://autogit-guard:8787/guard/forward-auth\n  guard_services: [grafana, nosuch]\n"
    );
    let (p, diags) = build(&config, ENV, &PlanInput::default());
    assert!(diags.contains("guard-unknown-service"), "{diags}");
    assert!(diags.contains("`nosuch`"), "{diags}");
    insta::assert_snapshot!("traefik_dynamic_allow_guard", render::traefik_dynamic(&p));
    let dynamic = render::traefik_dynamic(&p);
    let grafana = &dynamic[dynamic.find("    grafana:").unwrap()..];
    assert!(
        grafana.contains(
            "middlewares:\n        - request-id\n        - ip-allowlist\n        - security-headers\n        - rate-limit\n        - body-limit\n        - guard\n"
        ),
        "{dynamic}"
    );
    let config = format!(
        "{CONFIG}platform:\n  ingress: nginx\n  ingress_allow: [10.0.0.0/8]\n  guard_forward_auth: http://g:8787/guard/forward-auth\n"
    );
    let (p, diags) = build(&config, ENV, &PlanInput::default());
    assert!(diags.contains("guard-needs-traefik"), "{diags}");
    let nginx = render::nginx(&p);
    assert!(
        nginx.contains("    allow 10.0.0.0/8;\n    deny all;"),
        "{nginx}"
    );
    // GitLab's SSH: the nginx main configuration's stream block, behind the same allowlist.
    insta::assert_snapshot!("nginx_main_allow", render::nginx_main(&p));
}

/// The guard as a reverse proxy (`platform.guard_proxy`): the guarded routers go to the guard
/// (Traefik: its service, or a failover service when failing open; nginx: `proxy_pass` to it,
/// with a named location to the service on nginx's own 502/504 when failing open); client
/// verdict headers are removed; other routes are untouched. Both modes together are an error.
#[test]
fn guard_proxy_routes_and_failing_open() {
    for fail_open in [false, true] {
        let config = format!(
            "{CONFIG}platform:\n  guard_proxy: http://autogit-guard:8787\n  guard_services: [grafana]\n  guard_fail_open: {fail_open}\n"
        );
        let (p, diags) = build(&config, ENV, &PlanInput::default());
        assert!(!diags.contains("error["), "{diags}");
        let dynamic = render::traefik_dynamic(&p);
        insta::assert_snapshot!(
            format!("traefik_dynamic_guard_proxy_open_{fail_open}"),
            dynamic
        );
        let grafana = &dynamic[dynamic.find("    grafana:").unwrap()..];
        let want = if fail_open {
            "service: grafana-guarded"
        } else {
            "service: autogit-guard"
        };
        assert!(grafana.contains(want), "{dynamic}");
        assert!(grafana.contains("        - guard-headers\n"), "{dynamic}");
        assert!(!grafana.contains("- guard\n"), "no forward-auth: {dynamic}");
        let gitlab = &dynamic[dynamic.find("    gitlab:").unwrap()..];
        assert!(gitlab.contains("service: gitlab\n"), "{dynamic}");
        assert_eq!(dynamic.contains("failover:"), fail_open, "{dynamic}");
        assert_eq!(dynamic.contains("healthCheck:"), fail_open, "{dynamic}");

        let config = format!("{config}  ingress: nginx\n");
        let (p, diags) = build(&config, ENV, &PlanInput::default());
        assert!(!diags.contains("guard-needs-traefik"), "{diags}");
        let nginx = render::nginx(&p);
        insta::assert_snapshot!(format!("nginx_guard_proxy_open_{fail_open}"), nginx);
        let grafana = &nginx[nginx.find("server_name grafana.").unwrap()..];
        let grafana = &grafana[..grafana.find("\nserver {").unwrap_or(grafana.len())];
        assert!(
            grafana.contains("set $upstream http://autogit-guard:8787;"),
            "{grafana}"
        );
        assert!(
            grafana.contains("proxy_set_header X-Autogit-Guard-Verdict \"\";"),
            "{grafana}"
        );
        assert_eq!(
            grafana.contains("error_page 502 504 = @autogit_unguarded;"),
            fail_open
        );
        assert_eq!(
            grafana.contains(
                "location @autogit_unguarded {\n        set $upstream http://grafana:3000;"
            ),
            fail_open,
            "{grafana}"
        );
        assert!(!nginx.contains(
            "Verdict \"\";\n    }\n}\n\nserver {\n    listen 80;\n    server_name gitlab"
        ));
    }
    let config = format!(
        "{CONFIG}platform:\n  guard_proxy: http://g:8787\n  guard_forward_auth: http://g:8787/guard/forward-auth\n  guard_services: [grafana]\n"
    );
    let (_, diags) = build(&config, ENV, &PlanInput::default());
    assert!(diags.contains("error[guard-two-modes]"), "{diags}");
    let config = format!(
        "{CONFIG}platform:\n  guard_forward_auth: http://g:8787/guard/forward-auth\n  guard_services: [grafana]\n  guard_fail_open: true\n"
    );
    let (_, diags) = build(&config, ENV, &PlanInput::default());
    assert!(diags.contains("guard-fail-open-needs-proxy"), "{diags}");
    let config = format!("{CONFIG}platform:\n  guard_proxy: http://g:8787\n");
    let (_, diags) = build(&config, ENV, &PlanInput::default());
    assert!(diags.contains("guard-no-services"), "{diags}");
}

/// `guard_services` alone: autogit deploys the guard (`autogit guard serve` of the deploying
/// binary, on the platform network only, seeing `<data>/guard` and `rendered/guard/`), the
/// ingress starts after it and sends the guarded routes to it in proxy mode (both ingresses);
/// its upstreams are each guarded service's host names on the platform network. A guard of
/// the user's (`guard_proxy`) means none is deployed; without an ingress none is, with a
/// warning.
#[test]
fn guard_services_alone_deploy_the_guard_in_proxy_mode() {
    use autogit_core::plan::{GUARD_PORT, GUARD_SERVICE, HostPath, Mount, Role};
    let config = format!("{CONFIG}platform:\n  guard_services: [grafana, api]\n");
    let (p, diags) = build(&config, ENV, &PlanInput::default());
    assert!(!diags.contains("guard-"), "{diags}");
    let g = p.service(GUARD_SERVICE).expect("a guard service");
    assert_eq!(g.role, Role::Guard);
    assert!(g.ports.is_empty() && g.subdomain.is_none(), "{g:?}");
    assert_eq!(g.internal_port, Some(GUARD_PORT));
    let cmd = g.command.join(" ");
    assert!(cmd.starts_with("/usr/local/bin/autogit guard serve --listen 0.0.0.0:8787 --insecure-no-auth --rate-limit 0 --upstream-file /etc/autogit/guard/upstreams"), "{cmd}");
    for u in [
        "--upstream grafana.vectorweight.com=http://grafana:3000",
        "--upstream api.vectorweight.com=http://api:8000",
        "--upstream dash.vectorweight.com=http://api:8000",
    ] {
        assert!(cmd.contains(u), "{u} not in {cmd}");
    }
    assert!(!cmd.contains("gitlab"), "{cmd}");
    // Only the binary, its own data and the routes' directory: no engine socket, no key, not
    // the whole data dir.
    let of: Vec<_> = g
        .mounts
        .iter()
        .map(|m| match m {
            Mount::HostPath {
                of,
                target,
                read_only,
            } => format!("{of:?}:{target:?}:{read_only}"),
            Mount::Rendered { file, target } => format!("rendered/{file}:{target}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        of,
        [
            "Binary:Some(\"/usr/local/bin/autogit\"):true",
            "GuardDir:Some(\"/var/lib/autogit/guard\"):false",
            "rendered/guard:/etc/autogit/guard",
        ]
    );
    assert!(g.host_env.is_empty() && g.secret_env.is_empty(), "{g:?}");
    assert_eq!(
        g.environment.get("AUTOGIT_DATA_DIR").map(String::as_str),
        Some("/var/lib/autogit")
    );
    assert!(autogit_core::plan::needs(&p, HostPath::GuardDir));
    let ingress = p.service("traefik").unwrap();
    assert!(
        ingress.depends_on.iter().any(|d| d == GUARD_SERVICE),
        "{:?}",
        ingress.depends_on
    );
    let gp = p.guard_proxy.as_ref().expect("proxy mode");
    assert_eq!(gp.url, "http://guard:8787");
    assert!(!gp.fail_open);
    let dynamic = render::traefik_dynamic(&p);
    assert!(dynamic.contains("url: \"http://guard:8787\""), "{dynamic}");
    let grafana = &dynamic[dynamic.find("    grafana:").unwrap()..];
    assert!(grafana.contains("service: autogit-guard"), "{dynamic}");
    let gitlab = &dynamic[dynamic.find("    gitlab:").unwrap()..];
    assert!(gitlab.contains("service: gitlab\n"), "{dynamic}");
    // The compose file runs it too, with the guard dir from its environment.
    let compose = render::compose(&p, "/srv/autogit/rendered");
    assert!(
        compose.contains(
            "${AUTOGIT_GUARD_DIR:?set AUTOGIT_GUARD_DIR to the host path}:/var/lib/autogit/guard"
        ),
        "{compose}"
    );

    // nginx: the same, through proxy_pass; failing open as configured.
    let (p, diags) = build(
        &format!("{config}  ingress: nginx\n  guard_fail_open: true\n"),
        ENV,
        &PlanInput::default(),
    );
    assert!(!diags.contains("guard-"), "{diags}");
    assert!(p.guard_proxy.as_ref().unwrap().fail_open);
    let nginx = render::nginx(&p);
    let grafana = &nginx[nginx.find("server_name grafana.").unwrap()..];
    assert!(
        grafana.contains("set $upstream http://guard:8787;"),
        "{grafana}"
    );
    assert!(
        grafana.contains("error_page 502 504 = @autogit_unguarded;"),
        "{grafana}"
    );
    assert!(
        p.service("nginx")
            .unwrap()
            .depends_on
            .iter()
            .any(|d| d == GUARD_SERVICE)
    );

    // A guard of the user's: none deployed.
    let (p, _) = build(
        &format!("{config}  guard_proxy: http://mine:9000\n"),
        ENV,
        &PlanInput::default(),
    );
    assert!(p.service(GUARD_SERVICE).is_none());
    assert_eq!(p.guard_proxy.unwrap().url, "http://mine:9000");
    // No ingress: none, and a warning that says why.
    let (p, diags) = build(
        &config,
        "SERVICES_ENABLED=gitlab,grafana\n",
        &PlanInput::default(),
    );
    assert!(p.service(GUARD_SERVICE).is_none() && p.guard_proxy.is_none());
    assert!(diags.contains("warning[guard-needs-ingress]"), "{diags}");
    // A guarded name that is not a routed service is still a warning.
    let (_, diags) = build(
        &format!("{CONFIG}platform:\n  guard_services: [nosuch]\n"),
        ENV,
        &PlanInput::default(),
    );
    assert!(diags.contains("nosuch"), "{diags}");
}

/// GitLab's SSH moves from GitLab's own ports to the ingress's `ssh` entry point (same host
/// port, `gitlab.ports.ssh`); without an ingress GitLab keeps publishing it.
#[test]
fn gitlab_ssh_is_published_by_the_ingress() {
    let ports = |p: &Plan, s: &str| -> Vec<(String, u16, u16)> {
        p.service(s)
            .unwrap()
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.host, p.container))
            .collect()
    };
    for ingress in ["traefik", "nginx"] {
        let config = format!("{CONFIG}platform:\n  ingress: {ingress}\n");
        let (p, _) = build(&config, ENV, &PlanInput::default());
        assert!(
            !ports(&p, "gitlab").iter().any(|(n, _, _)| n == "ssh"),
            "{ingress}"
        );
        assert!(
            ports(&p, ingress).contains(&("ssh".to_owned(), 2222, 22)),
            "{ingress}: {:?}",
            ports(&p, ingress)
        );
    }
    let config = format!("{CONFIG}platform:\n  ingress: none\n");
    let (p, _) = build(&config, ENV, &PlanInput::default());
    assert!(ports(&p, "gitlab").contains(&("ssh".to_owned(), 2222, 22)));
    assert!(!render::traefik_static(&p).contains("ssh"));
}

#[test]
fn http01_through_the_ingress() {
    let env = format!(
        "{ENV}ACME_CHALLENGE=http-01\nACME_EMAIL=ops@vectorweight.com\nACME_DIRECTORY=staging\n"
    );
    let (p, diags) = build(CONFIG, &env, &PlanInput::default());
    assert!(!diags.contains("error["), "{diags}");
    let stat = render::traefik_static(&p);
    assert!(
        stat.contains("certificatesResolvers:")
            && stat.contains("entryPoint: web")
            && stat.contains("acme-staging-v02")
            && stat.contains("email: \"ops@vectorweight.com\""),
        "{stat}"
    );
    let dynamic = render::traefik_dynamic(&p);
    assert!(dynamic.contains("certResolver: autogit"), "{dynamic}");
    // nginx: the challenge files autogit writes, served on port 80, mounted into the ingress.
    let config = format!("{CONFIG}platform:\n  ingress: nginx\n");
    let (p, _) = build(&config, &env, &PlanInput::default());
    let nginx = render::nginx(&p);
    assert!(
        nginx.contains(
            "location ^~ /.well-known/acme-challenge/ {\n        root /etc/autogit/acme-http;"
        ),
        "{nginx}"
    );
    assert!(p.service("nginx").unwrap().mounts.iter().any(
        |m| matches!(m, autogit_core::plan::Mount::Rendered { file, .. } if file == "acme-http")
    ));
    // With the certificate in place, the HTTPS redirect server still answers challenges.
    let input = PlanInput {
        tls_certificate: Some("expires 2026-03-01".into()),
        ..Default::default()
    };
    let (p, _) = build(&config, &env, &input);
    let nginx = render::nginx(&p);
    let redirect = nginx.split("listen 80 default_server;").nth(1).unwrap();
    assert!(
        redirect.contains("/.well-known/acme-challenge/") && redirect.contains("return 308"),
        "{nginx}"
    );
}

#[test]
fn ingress_and_observability_files() {
    let (p, config) = full();
    insta::assert_snapshot!("traefik", render::traefik_static(&p));
    insta::assert_snapshot!("traefik_dynamic", render::traefik_dynamic(&p));
    insta::assert_snapshot!("nginx", render::nginx(&p));
    insta::assert_snapshot!("prometheus", render::prometheus(&p, &config));
    insta::assert_snapshot!("tempo", render::tempo());
}

#[test]
fn alert_rules_and_alertmanager() {
    use autogit_core::config::Notify;
    use autogit_core::monitoring;
    insta::assert_snapshot!(
        "alert_rules",
        monitoring::alert_rules_file(&monitoring::AlertThresholds::default())
    );
    let notify = [
        Notify::Log,
        Notify::Webhook {
            url: "https://hooks.example.com/autogit".into(),
            secret_env: Some("HOOK_SECRET".into()),
        },
    ];
    let am = monitoring::alertmanager_config(&notify);
    assert!(!am.contains("HOOK_SECRET"), "{am}");
    insta::assert_snapshot!("alertmanager", am);
    insta::assert_snapshot!(
        "alertmanager_no_webhook",
        monitoring::alertmanager_config(&[])
    );
}

/// Traefik's static file must hold only static options (its loader rejects dynamic ones such
/// as `http`), and every router must point at a defined service and defined middlewares.
#[test]
fn traefik_static_and_dynamic_are_separate_and_consistent() {
    use autogit_core::source::SourceId;
    use autogit_core::yaml::{Limits, node_to_json, parse};
    let (p, _) = full();
    let parse_json = |text: &str| {
        node_to_json(
            &parse(text, SourceId(0), Limits::default())
                .unwrap()
                .unwrap(),
        )
    };
    let st = parse_json(&render::traefik_static(&p));
    for k in st.as_object().unwrap().keys() {
        assert!(
            [
                "entryPoints",
                "providers",
                "ping",
                "log",
                "accessLog",
                "api",
                "certificatesResolvers",
                "metrics",
                "experimental"
            ]
            .contains(&k.as_str()),
            "`{k}` is not a static option"
        );
    }
    let dy = parse_json(&render::traefik_dynamic(&p));
    let http = &dy["http"];
    let routers = http["routers"].as_object().unwrap();
    assert_eq!(
        routers.len(),
        9,
        "gitlab + 6 services + gitlab's refused paths + the registry"
    );
    for (name, r) in routers {
        assert!(
            http["services"]
                .get(r["service"].as_str().unwrap())
                .is_some(),
            "{name}: service defined"
        );
        for m in r["middlewares"].as_array().unwrap() {
            assert!(
                http["middlewares"].get(m.as_str().unwrap()).is_some(),
                "{name}: middleware {m} defined"
            );
        }
        // Its own subdomain; the API also serves the dashboard at `dash.`.
        let rule = r["rule"].as_str().unwrap();
        if name == "api" {
            assert_eq!(
                rule,
                "Host(`api.vectorweight.com`) || Host(`dash.vectorweight.com`)"
            );
        } else if name == "gitlab-refused" {
            assert!(
                rule.starts_with("(Host(`gitlab.vectorweight.com`)) && (PathRegexp(`^/\\."),
                "{rule}"
            );
            assert_eq!(r["priority"], 10_000, "above gitlab's own router");
        } else {
            assert_eq!(rule, format!("Host(`{name}.vectorweight.com`)"));
        }
    }
}

/// One source of routes: Traefik's file provider. The static configuration names no other
/// provider (no docker provider, so no engine socket in the ingress), and no container of the
/// compose export carries `traefik.*` labels that nothing would read.
#[test]
fn routes_come_from_the_file_provider_only() {
    let (p, _) = full();
    let static_conf = render::traefik_static(&p);
    let providers = &static_conf[static_conf.find("providers:").unwrap()..];
    let providers: Vec<&str> = providers
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("    "))
        .map(str::trim)
        .collect();
    assert_eq!(providers, ["file:"], "{static_conf}");
    let compose = render::compose(&p, ".");
    assert!(
        !compose
            .lines()
            .any(|l| l.trim_start().starts_with("traefik.")),
        "no traefik.* label: {compose}"
    );
    assert!(
        compose.contains("io.autogit.host: gitlab.vectorweight.com"),
        "{compose}"
    );
}

#[test]
fn plan_places_services_and_pins_images() {
    let (p, _) = full();
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gitlab",
            "grafana",
            "loki",
            "tempo",
            "prometheus",
            "meilisearch",
            "api",
            "node-exporter",
            "cadvisor",
            "alertmanager",
            "traefik",
            "runner-homelab-cpu",
            "runner-wsl-5080"
        ]
    );
    for i in p.images() {
        assert!(!i.tag.is_empty() && i.tag != "latest", "{i} must be pinned");
    }
    let gitlab = p.service("gitlab").unwrap();
    assert_eq!(
        (gitlab.cpus, gitlab.memory),
        (12.0, Bytes::gib(16)),
        "team preset: 12C/16G"
    );
    assert_eq!(
        p.service("grafana").unwrap().ports[0].host,
        3000,
        "explicit PORT_GRAFANA"
    );
    // Dynamic ports come from the pool in order, skipping taken ones.
    assert_eq!(p.service("loki").unwrap().ports[0].host, 20000);
    assert_eq!(p.service("tempo").unwrap().ports[0].host, 20001);
}

#[test]
fn remembered_ports_are_kept() {
    let input = PlanInput {
        host: None,
        remembered_ports: BTreeMap::from([("loki".to_owned(), 20500)]),
        ..Default::default()
    };
    let (p, _) = build(CONFIG, ENV, &input);
    assert_eq!(p.service("loki").unwrap().ports[0].host, 20500);
    assert_eq!(p.service("tempo").unwrap().ports[0].host, 20000);
}

#[test]
fn plan_diagnostics() {
    let host = HostFacts {
        cpus: 2.0,
        memory: Bytes::gib(4),
        rootless: Some(true),
    };
    let cases = [
        (
            "collision",
            "gitlab:\n  ports:\n    http: 3000\n",
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\nPORT_GRAFANA=3000\n",
        ),
        (
            "explicit_missing",
            "",
            "SERVICES_ENABLED=gitlab,loki\nPORT_ALLOCATION=explicit\n",
        ),
        ("rootless_low_ports", "", "BASE_DOMAIN=example.com\n"),
        (
            "bad_env",
            "",
            "BASE_DOMAIN=localhost\nSERVICES_ENABLED=gitlab,grafanna\nPORT_LOKKI=1\nDNS_PROVIDER=cloudflare\nBASE_DOMIAN=x\nPORT_ALLOCATION=sometimes\n",
        ),
    ];
    for (name, config, env) in cases {
        let (_, out) = build(
            config,
            env,
            &PlanInput {
                host: Some(host),
                remembered_ports: BTreeMap::new(),
                ..Default::default()
            },
        );
        insta::assert_snapshot!(name, out);
    }
}

/// The `api` service runs the deploying autogit's `serve` on the host's data dir, key file
/// and engine socket: the plan names those paths, `plan::resolve` fills them in, and the
/// engine's container and the compose file then mount the same host paths. No warning.
#[test]
fn api_service_mounts_resolve_to_the_host_paths() {
    use autogit_core::container::{MountSpec, container_spec};
    use autogit_core::plan::{HostPath, HostPaths, Mount, needs, resolve};
    let (mut p, diags) = build(
        CONFIG,
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,api\n",
        &PlanInput::default(),
    );
    assert!(
        !diags.contains("warning[") && !diags.contains("error["),
        "{diags}"
    );
    let api = p.service("api").unwrap().clone();
    assert_eq!(api.image.to_string(), "debian:trixie-slim");
    assert_eq!(
        api.command,
        [
            "/usr/local/bin/autogit",
            "serve",
            "--listen",
            "0.0.0.0:8000"
        ]
    );
    assert_eq!(
        api.environment["AUTOGIT_CONFIG"],
        "/etc/autogit/autogit.yml"
    );
    assert_eq!(api.environment["AUTOGIT_ENV_FILE"], "/etc/autogit/.env");
    for h in [
        HostPath::DataDir,
        HostPath::KeyFile,
        HostPath::Binary,
        HostPath::EngineSocket,
    ] {
        assert!(needs(&p, h), "{h:?}");
    }
    // Unresolved, the compose file asks its environment for the host paths.
    let unresolved = render::compose(&p, ".");
    assert!(
        unresolved.contains("${AUTOGIT_DATA_DIR:?set AUTOGIT_DATA_DIR to the host path}"),
        "{unresolved}"
    );

    let paths = HostPaths {
        data_dir: "/srv/autogit".into(),
        key_file: "/srv/autogit.key".into(),
        binary: "/opt/bin/autogit".into(),
        guard_dir: "/srv/autogit/guard".into(),
        engine_socket: "/run/user/1000/docker.sock".into(),
    };
    resolve(&mut p, &paths);
    assert!(!needs(&p, HostPath::DataDir));
    let api = p.service("api").unwrap();
    assert!(api.host_env.is_empty());
    assert!(
        !api.mounts
            .iter()
            .any(|m| matches!(m, Mount::HostPath { .. }))
    );
    assert_eq!(api.environment["AUTOGIT_DATA_DIR"], "/srv/autogit");
    assert_eq!(api.environment["AUTOGIT_KEY_FILE"], "/srv/autogit.key");
    assert_eq!(api.environment["AUTOGIT_HOST_BINARY"], "/opt/bin/autogit");
    assert_eq!(
        api.environment["AUTOGIT_HOST_ENGINE_SOCKET"],
        "/run/user/1000/docker.sock"
    );
    let spec = container_spec(&p, api, "/srv/autogit/rendered", &BTreeMap::new());
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => format!("{source}:{target}{}", if *read_only { ":ro" } else { "" }),
            MountSpec::Volume { name, target } => format!("{name}:{target}"),
        })
        .collect();
    assert_eq!(
        binds,
        [
            "/opt/bin/autogit:/usr/local/bin/autogit:ro",
            "/srv/autogit:/srv/autogit",
            "/srv/autogit.key:/srv/autogit.key:ro",
            "/run/user/1000/docker.sock:/var/run/docker.sock",
            "/srv/autogit/rendered/api:/etc/autogit:ro",
        ]
    );
    // The compose export mounts the same paths (its rendered dir relative to the file).
    let compose = render::compose(&p, "/srv/autogit/rendered");
    for b in &binds {
        assert!(
            compose.contains(&format!("- \"{b}\"\n")),
            "{b} in\n{compose}"
        );
    }
    // The engine's health check works without wget (the Debian base has bash).
    let test = &spec.healthcheck.as_ref().unwrap().test;
    assert_eq!(&test[..3], ["CMD", "bash", "-c"]);
    assert!(test[3].contains("/dev/tcp/127.0.0.1/8000") && test[3].contains("GET /healthz"));
}

/// The dashboard's alias: the API's container answers at `dash.` too, in every place a
/// subdomain goes (ingress rules above; DNS records per service; HTTP-01 certificate names).
#[test]
fn the_api_serves_the_dashboard_at_dash() {
    use autogit_core::dns::DnsTarget;
    use autogit_core::platform::{DnsMode, PlatformEnv};
    let (p, _) = full();
    let api = p.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(api.hosts(), ["api", "dash"]);
    let gitlab = p.services.iter().find(|s| s.name == "gitlab").unwrap();
    assert_eq!(gitlab.hosts(), ["gitlab"]);
    let env = PlatformEnv {
        base_domain: Some("vectorweight.com".into()),
        ingress_ip: Some("192.0.2.10".into()),
        dns_mode: DnsMode::PerService,
        ..Default::default()
    };
    let names: Vec<String> = DnsTarget::from_plan(&p, &env, 300)
        .unwrap()
        .address_records()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(
        names.contains(&"dash.vectorweight.com".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"api.vectorweight.com".to_owned()),
        "{names:?}"
    );
}

#[test]
fn cloudflare_proxied_services_trust_only_cloudflare_for_the_client_address() {
    let env = format!(
        "{ENV}DNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=t\nCLOUDFLARE_PROXIED=grafana\n"
    );
    let (p, diags) = build(CONFIG, &env, &PlanInput::default());
    assert!(!diags.contains("error["), "{diags}");
    assert_eq!(p.cloudflare_proxied, ["grafana"]);
    let stat = render::traefik_static(&p);
    insta::assert_snapshot!("traefik_static_cloudflare", stat);
    let dynamic = render::traefik_dynamic(&p);
    insta::assert_snapshot!("traefik_dynamic_cloudflare", dynamic);
    // Grafana (proxied) counts per forwarded client; GitLab (direct) per source address.
    let router = |name: &str| {
        let at = dynamic.find(&format!("    {name}:\n")).unwrap();
        dynamic[at..at + dynamic[at..].find("service:").unwrap()].to_owned()
    };
    assert!(
        router("grafana").contains("- rate-limit-cloudflare\n"),
        "{dynamic}"
    );
    assert!(router("gitlab").contains("- rate-limit\n"), "{dynamic}");
    let nginx = render::nginx(&p);
    insta::assert_snapshot!("nginx_cloudflare", nginx);
    assert!(nginx.contains("set_real_ip_from 173.245.48.0/20;\n"));
    assert!(nginx.contains("set_real_ip_from 2a06:98c0::/29;\n"));
    assert!(nginx.contains("real_ip_header CF-Connecting-IP;\n"));
    // Nothing proxied: none of it.
    let (p, _) = build(CONFIG, ENV, &PlanInput::default());
    assert!(!render::nginx(&p).contains("real_ip"));
    assert!(!render::traefik_static(&p).contains("forwardedHeaders"));
    assert!(!render::traefik_dynamic(&p).contains("rate-limit-cloudflare"));
    // With an allowlist, the proxied router checks the forwarded client, the others the
    // source address; the Cloudflare one skips Cloudflare's ranges from the right.
    let config = format!("{CONFIG}platform:\n  ingress_allow: [192.0.2.0/24]\n");
    let (p, _) = build(&config, &env, &PlanInput::default());
    let dynamic = render::traefik_dynamic(&p);
    assert!(
        router_of(&dynamic, "grafana").contains("- ip-allowlist-cloudflare\n"),
        "{dynamic}"
    );
    assert!(
        router_of(&dynamic, "gitlab").contains("- ip-allowlist\n"),
        "{dynamic}"
    );
    let mw = &dynamic[dynamic.find("    ip-allowlist-cloudflare:\n").unwrap()..];
    let mw = &mw[..mw.find("    rate-limit").unwrap_or(mw.len())];
    assert!(mw.contains("- \"192.0.2.0/24\""), "{mw}");
    assert!(mw.contains("excludedIPs:"), "{mw}");
    assert!(mw.contains("- \"173.245.48.0/20\""), "{mw}");
}

/// A router's part of Traefik's dynamic file, up to its service.
fn router_of(dynamic: &str, name: &str) -> String {
    let at = dynamic.find(&format!("    {name}:\n")).unwrap();
    dynamic[at..at + dynamic[at..].find("service:").unwrap()].to_owned()
}

/// With the registry on, GitLab's engine health check also asks the registry's `/v2/` (401,
/// GitLab's token service wanted), so a broken registry makes GitLab unhealthy and the state
/// machine repairs it; without it, the image's own check alone.
#[test]
fn gitlab_health_includes_the_registry_when_it_is_on() {
    use autogit_core::plan::Role;
    let test_of = |p: &Plan| {
        let g = p.services.iter().find(|s| s.role == Role::Gitlab).unwrap();
        autogit_core::state::health_test(g.health.as_ref().unwrap(), g.role)
    };
    let (p, _) = full();
    assert!(p.registry);
    let t = test_of(&p);
    assert_eq!(t[0], "CMD-SHELL");
    assert!(
        t[1].starts_with("/opt/gitlab/bin/gitlab-healthcheck --fail --max-time 10 || exit 1\n"),
        "{t:?}"
    );
    assert!(t[1].contains("http://127.0.0.1:5050/v2/"), "{t:?}");
    assert!(t[1].contains("\"$code\" = 401"), "{t:?}");
    let config = CONFIG.replace("gitlab:\n", "gitlab:\n  registry:\n    enabled: false\n");
    let (p, _) = build(&config, ENV, &PlanInput::default());
    assert!(!p.registry);
    assert_eq!(
        test_of(&p),
        [
            "CMD",
            "/opt/gitlab/bin/gitlab-healthcheck",
            "--fail",
            "--max-time",
            "10"
        ]
    );
}

/// Grafana's provisioning checked against its documented schema
/// (<https://grafana.com/docs/grafana/latest/administration/provisioning/> and the dashboard
/// JSON model). Grafana itself does not run here: this is a structural check of the fields
/// Grafana reads, not Grafana loading the files. The PromQL of every panel is evaluated by the
/// real Prometheus in `crates/autogit/tests/prometheus.rs`.
#[test]
fn grafana_provisioning_follows_the_documented_schema() {
    use autogit_core::grafana::{DASHBOARDS_DIR, PROVISIONING_DIR, queries};
    use autogit_core::plan::Mount;
    use autogit_core::source::SourceId;
    use autogit_core::yaml::{Limits, node_to_json, parse};
    use std::collections::BTreeSet;
    let (p, config) = full();
    let files: BTreeMap<String, String> = render::all_files(&p, &config).into_iter().collect();
    let parse_yaml = |text: &str| {
        node_to_json(
            &parse(text, SourceId(0), Limits::default())
                .unwrap()
                .unwrap(),
        )
    };
    // Mounted where Grafana reads them: each rendered directory at its target.
    let grafana = p.service("grafana").unwrap();
    let mounted: BTreeMap<&str, &str> = grafana
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Rendered { file, target } => Some((target.as_str(), file.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(mounted.get(PROVISIONING_DIR), Some(&"grafana/provisioning"));
    assert_eq!(mounted.get(DASHBOARDS_DIR), Some(&"grafana/dashboards"));

    // Datasources: `apiVersion: 1`, the documented keys only, unique names and uids, one
    // default, every cross-reference (trace to logs, exemplars, derived fields) resolving.
    let ds = parse_yaml(&files["grafana/provisioning/datasources/autogit.yml"]);
    assert_eq!(ds["apiVersion"], 1);
    let list = ds["datasources"].as_array().unwrap();
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for d in list {
        for k in d.as_object().unwrap().keys() {
            assert!(
                [
                    "name",
                    "type",
                    "uid",
                    "access",
                    "url",
                    "isDefault",
                    "editable",
                    "jsonData",
                    "secureJsonData",
                    "orgId",
                    "user",
                    "database",
                    "basicAuth",
                    "basicAuthUser",
                    "withCredentials",
                    "version",
                ]
                .contains(&k.as_str()),
                "datasource key {k} is not in Grafana's provisioning schema"
            );
        }
        let uid = d["uid"].as_str().unwrap();
        assert!(
            !uid.is_empty()
                && uid.len() <= 40
                && uid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{uid}"
        );
        assert!(names.insert(d["name"].as_str().unwrap().to_owned()));
        assert!(["proxy", "direct"].contains(&d["access"].as_str().unwrap()));
        assert!(d["url"].as_str().unwrap().starts_with("http://"));
        assert!(d["jsonData"].is_object());
        uids.insert(uid.into(), d["type"].as_str().unwrap().into());
    }
    let types: BTreeSet<&str> = uids.values().map(String::as_str).collect();
    assert_eq!(types, BTreeSet::from(["prometheus", "loki", "tempo"]));
    assert_eq!(list.iter().filter(|d| d["isDefault"] == true).count(), 1);
    let text = serde_json::to_string(&ds).unwrap();
    for (i, _) in text.match_indices("\"datasourceUid\":\"") {
        let rest = &text[i + 17..];
        let uid = &rest[..rest.find('"').unwrap()];
        assert!(
            uids.contains_key(uid),
            "datasourceUid {uid} is not provisioned"
        );
    }

    // The dashboard provider: a file provider reading the mounted dashboards.
    let pr = parse_yaml(&files["grafana/provisioning/dashboards/autogit.yml"]);
    assert_eq!(pr["apiVersion"], 1);
    let prov = &pr["providers"][0];
    for k in prov.as_object().unwrap().keys() {
        assert!(
            [
                "name",
                "orgId",
                "folder",
                "folderUid",
                "type",
                "disableDeletion",
                "updateIntervalSeconds",
                "allowUiUpdates",
                "options",
            ]
            .contains(&k.as_str()),
            "provider key {k}"
        );
    }
    assert_eq!(prov["type"], "file");
    assert_eq!(prov["options"]["path"], DASHBOARDS_DIR);

    // Dashboards: the five, each a JSON model Grafana accepts: uid and title, panels with
    // unique ids, known panel types, a grid position inside 24 columns and not overlapping,
    // unique refIds, and a provisioned datasource of the right type.
    let dashboards: Vec<(&String, serde_json::Value)> = files
        .iter()
        .filter(|(f, _)| f.starts_with("grafana/dashboards/"))
        .map(|(f, t)| (f, serde_json::from_str(t).unwrap()))
        .collect();
    let mut titles: Vec<&str> = dashboards
        .iter()
        .map(|(_, d)| d["title"].as_str().unwrap())
        .collect();
    titles.sort_unstable();
    assert_eq!(
        titles,
        [
            "autogit: GitLab",
            "autogit: mirrors",
            "autogit: platform overview",
            "autogit: runners and GPUs",
            "autogit: security and the guard",
        ]
    );
    let mut dash_uids = BTreeSet::new();
    for (file, d) in &dashboards {
        let uid = d["uid"].as_str().unwrap();
        assert!(
            uid.len() <= 40 && dash_uids.insert(uid),
            "{file}: uid {uid}"
        );
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{file}");
        assert!(d["time"]["from"].is_string() && d["templating"]["list"].is_array());
        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for panel in d["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{file}: {title}: id"
            );
            let kind = panel["type"].as_str().unwrap();
            assert!(
                [
                    "timeseries",
                    "stat",
                    "table",
                    "logs",
                    "gauge",
                    "bargauge",
                    "text"
                ]
                .contains(&kind),
                "{file}: {title}: panel type {kind}"
            );
            let g = &panel["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(w >= 1 && h >= 1 && x + w <= 24, "{file}: {title}: {g}");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(
                        cells.insert((cx, cy)),
                        "{file}: {title} overlaps another panel"
                    );
                }
            }
            let ds_uid = panel["datasource"]["uid"].as_str().unwrap();
            assert_eq!(
                uids.get(ds_uid).map(String::as_str),
                panel["datasource"]["type"].as_str(),
                "{file}: {title}: datasource"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            let refs: BTreeSet<&str> = targets
                .iter()
                .map(|t| t["refId"].as_str().unwrap())
                .collect();
            assert_eq!(refs.len(), targets.len(), "{file}: {title}: refIds");
            for t in targets {
                assert_eq!(t["datasource"], panel["datasource"], "{file}: {title}");
                assert!(!t["expr"].as_str().unwrap().is_empty());
            }
        }
        assert!(!queries(d).is_empty());
    }
    insta::assert_snapshot!(
        "grafana_datasources",
        files["grafana/provisioning/datasources/autogit.yml"]
    );
    // The dashboards as panel titles and their queries (the JSON itself is long).
    let mut summary = String::new();
    for (file, d) in &dashboards {
        summary.push_str(&format!("## {file}: {}\n", d["title"].as_str().unwrap()));
        for panel in d["panels"].as_array().unwrap() {
            summary.push_str(&format!(
                "- {} ({})\n",
                panel["title"].as_str().unwrap(),
                panel["type"].as_str().unwrap()
            ));
            for t in panel["targets"].as_array().unwrap() {
                summary.push_str(&format!("    {}\n", t["expr"].as_str().unwrap()));
            }
        }
    }
    insta::assert_snapshot!("grafana_dashboards", summary);
}

/// With Prometheus come node-exporter, cAdvisor and Alertmanager: pinned, sized by the preset,
/// on the platform network only (no host port, no subdomain), scraped and wired by the rendered
/// Prometheus configuration (`promtool check config` runs on it in
/// `crates/autogit/tests/validators.rs`); without Prometheus none of them.
#[test]
fn the_monitoring_stack_comes_with_prometheus() {
    use autogit_core::plan::{MONITORING_COMPANIONS, Mount};
    use autogit_core::preset::{Component, Preset};
    let (p, config) = full();
    for name in MONITORING_COMPANIONS {
        let s = p.service(name).unwrap_or_else(|| panic!("{name} planned"));
        assert!(s.ports.is_empty() && s.subdomain.is_none(), "{name}");
        assert!(!s.image.to_string().ends_with(":latest"), "{name}");
        assert!(s.health.is_some(), "{name}");
    }
    let sized = |n: &str| p.service(n).map(|s| (s.cpus, s.memory));
    let team = Preset::Team;
    for (n, c) in [
        ("node-exporter", Component::NodeExporter),
        ("cadvisor", Component::Cadvisor),
        ("alertmanager", Component::Alertmanager),
        ("loki", Component::Loki),
        ("tempo", Component::Tempo),
        ("grafana", Component::Grafana),
        ("prometheus", Component::Prometheus),
    ] {
        assert_eq!(
            sized(n),
            Some((team.size(c).cpus, team.size(c).memory)),
            "{n}"
        );
    }
    // node-exporter reads the host's root read-only; Alertmanager its rendered configuration.
    assert!(
        p.service("node-exporter")
            .unwrap()
            .mounts
            .iter()
            .any(|m| matches!(
                m,
                Mount::Host { path, target, read_only: true } if path == "/" && target == "/host"
            ))
    );
    let files: BTreeMap<String, String> = render::all_files(&p, &config).into_iter().collect();
    assert!(files.contains_key("alertmanager/alertmanager.yml"));
    let prom = &files["prometheus/prometheus.yml"];
    for needle in [
        "\"node-exporter:9100\"",
        "\"cadvisor:8080\"",
        "\"alertmanager:9093\"",
        "alertmanagers:",
    ] {
        assert!(prom.contains(needle), "{needle} in {prom}");
    }
    // A rootless engine or Podman: no cAdvisor (rootful Docker's cgroups and layers), the rest.
    for (yaml, what) in [
        ("platform:\n  rootless: true\n", "rootless"),
        ("platform:\n  engine: podman\n", "podman"),
    ] {
        let (p, d) = build(
            yaml,
            "SERVICES_ENABLED=gitlab,prometheus\n",
            &PlanInput::default(),
        );
        assert!(!d.contains("error["), "{d}");
        assert!(p.service("cadvisor").is_none(), "{what}");
        assert!(p.service("node-exporter").is_some() && p.service("alertmanager").is_some());
        let files: BTreeMap<String, String> = render::all_files(&p, &config).into_iter().collect();
        assert!(
            !files["prometheus/prometheus.yml"].contains("cadvisor"),
            "{what}"
        );
    }
    // Without Prometheus: no exporters.
    let (bare, _) = build(
        CONFIG,
        "BASE_DOMAIN=vectorweight.com\nSERVICES_ENABLED=gitlab,grafana\n",
        &PlanInput::default(),
    );
    for name in MONITORING_COMPANIONS {
        assert!(bare.service(name).is_none(), "{name} without prometheus");
    }
}

/// DCGM's exporter is rendered for the NVIDIA runner hosts (not deployed: they are not
/// autogit's to run services on) and scraped as one job; not on WSL2 (DCGM does not run
/// there), not for `auto` or `local` hosts.
#[test]
fn dcgm_exporter_for_gpu_runner_hosts() {
    use autogit_core::monitoring::dcgm_targets;
    let config = r#"
gitlab:
  hostname: gitlab.example.com
runners:
  gpu:
    - name: rig
      host: gpu1.lan
    - name: rig2
      host: "fd00::7"
    - name: wsl
      host: desktop.lan
      wsl2: true
    - name: found
      host: auto
"#;
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(
        dcgm_targets(&loaded.config),
        ["[fd00::7]:9400", "gpu1.lan:9400"]
    );
    let (p, d) = build(
        config,
        "SERVICES_ENABLED=gitlab,grafana,prometheus\n",
        &PlanInput::default(),
    );
    assert!(!d.contains("error["), "{d}");
    let files: BTreeMap<String, String> =
        render::all_files(&p, &loaded.config).into_iter().collect();
    let prom = &files["prometheus/prometheus.yml"];
    assert_eq!(prom.matches("job_name: dcgm").count(), 1, "{prom}");
    assert!(
        prom.contains("\"gpu1.lan:9400\"") && !prom.contains("desktop.lan"),
        "{prom}"
    );
    insta::assert_snapshot!("dcgm_exporter", files["dcgm-exporter/docker-compose.yml"]);
    let overview = &files["grafana/dashboards/runners.json"];
    assert!(overview.contains("DCGM_FI_DEV_FB_USED"));
    // The test's main configuration has a WSL2 GPU runner only: no DCGM file, no panels.
    let (fp, fc) = full();
    let full_files: BTreeMap<String, String> = render::all_files(&fp, &fc).into_iter().collect();
    assert!(!full_files.contains_key("dcgm-exporter/docker-compose.yml"));
    assert!(!full_files["grafana/dashboards/runners.json"].contains("DCGM_"));
}

/// Loki's and Tempo's rendered configurations against their documented configuration
/// references (grafana.com/docs/loki/latest/configure/, grafana.com/docs/tempo/latest/configuration/).
/// Loki and Tempo do not run here: this is a structural check of the keys and values they read,
/// not the real binaries loading the files.
#[test]
fn loki_and_tempo_configs_follow_their_documented_schemas() {
    use autogit_core::source::SourceId;
    use autogit_core::yaml::{Limits, node_to_json, parse};
    let (p, config) = full();
    let files: BTreeMap<String, String> = render::all_files(&p, &config).into_iter().collect();
    let parse_yaml = |text: &str| {
        node_to_json(
            &parse(text, SourceId(0), Limits::default())
                .unwrap()
                .unwrap(),
        )
    };
    let loki = parse_yaml(&files["loki/loki.yaml"]);
    for k in loki.as_object().unwrap().keys() {
        assert!(
            [
                "auth_enabled",
                "server",
                "common",
                "schema_config",
                "storage_config",
                "limits_config",
                "compactor",
                "analytics",
                "ingester",
                "querier",
                "ruler",
                "query_range",
                "frontend",
                "memberlist",
                "table_manager",
                "distributor",
            ]
            .contains(&k.as_str()),
            "Loki has no top-level block {k}"
        );
    }
    assert_eq!(
        loki["auth_enabled"], false,
        "single tenant: no X-Scope-OrgID needed"
    );
    assert_eq!(loki["server"]["http_listen_port"], 3100);
    // TSDB needs schema v13 and a 24h index period; retention needs the compactor with a
    // delete request store (Loki 3).
    let schema = &loki["schema_config"]["configs"][0];
    assert_eq!(
        (schema["store"].as_str(), schema["schema"].as_str()),
        (Some("tsdb"), Some("v13"))
    );
    assert_eq!(schema["index"]["period"], "24h");
    assert!(schema["from"].as_str().unwrap().len() == 10);
    assert_eq!(loki["compactor"]["retention_enabled"], true);
    assert_eq!(loki["compactor"]["delete_request_store"], "filesystem");
    assert_eq!(loki["limits_config"]["retention_period"], "336h");
    assert!(
        loki["common"]["storage"]["filesystem"]["chunks_directory"]
            .as_str()
            .unwrap()
            .starts_with("/loki/")
    );
    let loki_svc = p.service("loki").unwrap();
    assert_eq!(loki_svc.command, ["-config.file=/etc/loki/loki.yaml"]);
    assert!(loki_svc.mounts.iter().any(
        |m| matches!(m, autogit_core::plan::Mount::Volume { target, .. } if target == "/loki")
    ));

    let tempo = parse_yaml(&files["tempo/tempo.yaml"]);
    for k in tempo.as_object().unwrap().keys() {
        assert!(
            [
                "server",
                "distributor",
                "ingester",
                "compactor",
                "storage",
                "metrics_generator",
                "overrides",
                "querier",
                "query_frontend",
                "stream_over_http_enabled"
            ]
            .contains(&k.as_str()),
            "Tempo has no top-level block {k}"
        );
    }
    let otlp = &tempo["distributor"]["receivers"]["otlp"]["protocols"];
    assert_eq!(
        otlp["http"]["endpoint"], "0.0.0.0:4318",
        "OTLP/HTTP, where autogit's traces go"
    );
    assert_eq!(otlp["grpc"]["endpoint"], "0.0.0.0:4317");
    assert_eq!(tempo["storage"]["trace"]["backend"], "local");
    assert!(
        tempo["compactor"]["compaction"]["block_retention"]
            .as_str()
            .unwrap()
            .ends_with('h')
    );
    insta::assert_snapshot!("loki", files["loki/loki.yaml"]);
}

/// GitLab's own HTTP(S) ports: behind an ingress only on loopback (the ingress is the door,
/// with its limits), unless `gitlab.ports.bind` says otherwise; without an ingress on every
/// address, or on the one `bind` names. SSH is never rebound (the ingress takes it over).
#[test]
fn gitlab_ports_are_loopback_only_behind_an_ingress() {
    let binds = |config: &str, env: &str| -> Vec<(String, Option<String>)> {
        let (plan, diags) = build(config, env, &PlanInput::default());
        assert!(!diags.contains("error["), "{diags}");
        let gitlab = plan.services.iter().find(|s| s.name == "gitlab").unwrap();
        gitlab
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.bind.clone()))
            .collect()
    };
    let lo = Some("127.0.0.1".to_owned());
    for ingress in ["traefik", "nginx"] {
        let config = format!("platform:\n  ingress: {ingress}\n");
        assert_eq!(
            binds(&config, "BASE_DOMAIN=example.test\n"),
            [("http".into(), lo.clone()), ("https".into(), lo.clone())],
            "{ingress}: SSH moved to the ingress, HTTP(S) on loopback"
        );
        let config =
            format!("platform:\n  ingress: {ingress}\ngitlab:\n  ports:\n    bind: 0.0.0.0\n");
        assert_eq!(
            binds(&config, "BASE_DOMAIN=example.test\n"),
            [
                ("http".into(), Some("0.0.0.0".into())),
                ("https".into(), Some("0.0.0.0".into()))
            ],
            "{ingress}: an explicit bind wins"
        );
    }
    // No base domain: no ingress, GitLab's ports are the door.
    assert_eq!(
        binds("", ""),
        [
            ("http".into(), None),
            ("https".into(), None),
            ("ssh".into(), None)
        ]
    );
    let b = binds("gitlab:\n  ports:\n    bind: 192.168.1.10\n", "");
    assert_eq!(b[0], ("http".into(), Some("192.168.1.10".into())));
    assert_eq!(b[2], ("ssh".into(), None), "bind is GitLab's HTTP(S) only");
}

/// Tempo's OTLP/HTTP receiver is published on loopback beside its query port: a pool port
/// (kept across installs as `tempo-otlp`, never another service's), PORT_TEMPO_OTLP when set,
/// none with explicit allocation and no PORT_TEMPO_OTLP; it is autogit's default trace
/// endpoint (`plan::tempo_otlp_endpoint`).
#[test]
fn tempo_publishes_its_otlp_receiver_on_loopback() {
    let env = "SERVICES_ENABLED=gitlab,tempo,loki\n";
    let otlp = |p: &Plan| {
        p.service("tempo")
            .unwrap()
            .ports
            .iter()
            .find(|x| x.name == "otlp")
            .map(|x| (x.bind.clone(), x.host, x.container))
    };
    let (p, diags) = build("", env, &PlanInput::default());
    assert!(!diags.contains("error["), "{diags}");
    let (bind, host, container) = otlp(&p).expect("an OTLP port");
    assert_eq!((bind.as_deref(), container), (Some("127.0.0.1"), 4318));
    let mut hosts: Vec<u16> = p
        .local()
        .flat_map(|s| s.ports.iter().map(|x| x.host))
        .collect();
    let n = hosts.len();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts.len(), n, "no port twice");
    assert_eq!(
        autogit_core::plan::tempo_otlp_endpoint(&p),
        Some(format!("http://127.0.0.1:{host}"))
    );

    // Remembered: kept, even where the pool would have picked another port.
    let input = PlanInput {
        remembered_ports: BTreeMap::from([("tempo-otlp".to_owned(), 20700)]),
        ..Default::default()
    };
    let (p, _) = build("", env, &input);
    assert_eq!(otlp(&p).unwrap().1, 20700);
    // A remembered port another service now holds is not reused.
    let (p, _) = build("", &format!("{env}PORT_LOKI=20700\n"), &input);
    assert_ne!(otlp(&p).unwrap().1, 20700);

    let (p, _) = build(
        "",
        &format!("{env}PORT_TEMPO_OTLP=24318\n"),
        &PlanInput::default(),
    );
    assert_eq!(otlp(&p).unwrap().1, 24318);
    let explicit = "SERVICES_ENABLED=gitlab,tempo\nPORT_ALLOCATION=explicit\nPORT_TEMPO=23200\n";
    let (p, diags) = build("", explicit, &PlanInput::default());
    assert!(!diags.contains("error["), "{diags}");
    assert_eq!(otlp(&p), None);
    assert_eq!(autogit_core::plan::tempo_otlp_endpoint(&p), None);
    let (_, diags) = build(
        "",
        &format!("{env}PORT_TEMPO_OTLP=nope\n"),
        &PlanInput::default(),
    );
    assert!(diags.contains("PORT_TEMPO_OTLP"), "{diags}");
}

/// Routes of running inference services (`core::routes`): a router per route on `websecure`
/// with the platform routes' middlewares, to the service's `http://HOST:PORT`; guarded
/// routes through forward-auth or the guard's proxy (failing open: a failover service), and
/// the guard's upstream lines in proxy mode only. Names the platform holds are refused.
#[test]
fn compute_service_routes() {
    use autogit_core::routes::{
        ServiceRoute, check_route, guard_upstreams, nginx_routes, traefik_routes,
    };
    let routes = [
        ServiceRoute {
            name: "llm".into(),
            job: "job-3".into(),
            upstream: "http://gpu1.lan:32768".into(),
            guard: true,
        },
        ServiceRoute {
            name: "embed".into(),
            job: "job-4".into(),
            upstream: autogit_core::routes::upstream_url("fd00::7", 32769, None).unwrap(),
            guard: false,
        },
    ];
    let modes = [
        ("plain", ""),
        (
            "forward_auth",
            "platform:\n  ingress_allow: [10.0.0.0/8]\n  guard_forward_auth: http://autogit-guard:8787/guard/forward-auth\n  guard_services: [grafana]\n",
        ),
        (
            "proxy",
            "platform:\n  guard_proxy: http://autogit-guard:8787\n  guard_services: [grafana]\n",
        ),
        (
            "proxy_fail_open",
            "platform:\n  guard_proxy: http://autogit-guard:8787\n  guard_services: [grafana]\n  guard_fail_open: true\n",
        ),
    ];
    for (mode, extra) in modes {
        let config = format!("{CONFIG}{extra}");
        let (p, diags) = build(&config, ENV, &PlanInput::default());
        assert!(!diags.contains("error["), "{diags}");
        let doc = traefik_routes(&p, &routes);
        insta::assert_snapshot!(format!("traefik_compute_routes_{mode}"), doc);
        let llm = &doc[doc.find("    compute-llm:").unwrap()..];
        let llm = &llm[..llm.find("    compute-embed").unwrap_or(llm.len())];
        assert!(
            llm.contains("rule: \"Host(`llm.vectorweight.com`)\""),
            "{doc}"
        );
        assert!(
            llm.contains("- security-headers\n")
                && llm.contains("- rate-limit\n")
                && llm.contains("- body-limit\n")
                && llm.contains("- request-id\n"),
            "{doc}"
        );
        assert_eq!(llm.contains("- guard\n"), mode == "forward_auth", "{doc}");
        assert_eq!(
            llm.contains("- guard-headers\n"),
            mode.starts_with("proxy"),
            "{doc}"
        );
        assert_eq!(
            llm.contains("- ip-allowlist\n"),
            mode == "forward_auth",
            "{doc}"
        );
        let want = match mode {
            "proxy" => "service: autogit-guard\n",
            "proxy_fail_open" => "service: compute-llm-guarded\n",
            _ => "service: compute-llm\n",
        };
        assert!(llm.contains(want), "{mode}: {doc}");
        // The unguarded route goes to its service, whatever the mode.
        assert!(doc.contains("url: \"http://[fd00::7]:32769\""), "{doc}");
        let embed =
            &doc[doc.find("    compute-embed:").unwrap()..doc.find("    compute-llm:").unwrap()];
        assert!(
            !embed.contains("guard") && !embed.contains("refuse"),
            "{doc}"
        );
        // Guarded without a guard in the ingress (the configuration changed after submit):
        // refused (403), not served unchecked.
        assert_eq!(llm.contains("- refuse\n"), mode == "plain", "{doc}");
        let lines = guard_upstreams(&p, &routes);
        if mode.starts_with("proxy") {
            assert!(
                lines.ends_with("\nllm.vectorweight.com=http://gpu1.lan:32768\n"),
                "{lines}"
            );
            assert!(!lines.contains("embed"), "{lines}");
        } else {
            assert_eq!(lines, "");
        }
        assert_eq!(traefik_routes(&p, &[]), "");

        // The same routes with nginx: a server per route with the platform's limits and
        // headers, guarded through the guard's proxy (forward-auth: impossible with nginx,
        // refused with 403 like a guard that is gone), never unchecked.
        let (p, _) = build(
            &format!(
                "{config}{}  ingress: nginx\n",
                if extra.is_empty() { "platform:\n" } else { "" }
            ),
            ENV,
            &PlanInput::default(),
        );
        let conf = nginx_routes(&p, &routes);
        insta::assert_snapshot!(format!("nginx_compute_routes_{mode}"), conf);
        let llm = &conf[conf.find("server_name llm.vectorweight.com;").unwrap()..];
        let llm = &llm[..llm.find("\nserver {").unwrap_or(llm.len())];
        assert!(
            llm.contains("limit_req zone=autogit") || llm.contains("return 403;"),
            "{conf}"
        );
        assert!(llm.contains("client_max_body_size"), "{conf}");
        match mode {
            "proxy" | "proxy_fail_open" => {
                assert!(
                    llm.contains("set $upstream http://autogit-guard:8787;"),
                    "{conf}"
                );
                assert_eq!(
                    llm.contains("error_page 502 504 = @autogit_unguarded;"),
                    mode == "proxy_fail_open",
                    "{conf}"
                );
            }
            _ => {
                assert!(llm.contains("location / {\n        return 403;"), "{conf}");
                assert!(!llm.contains("gpu1.lan"), "{conf}");
            }
        }
        let embed = &conf[conf.find("server_name embed.vectorweight.com;").unwrap()..];
        assert!(
            embed.contains("set $upstream http://[fd00::7]:32769;"),
            "{conf}"
        );
        assert_eq!(nginx_routes(&p, &[]), "");
    }
    let (p, _) = build(CONFIG, ENV, &PlanInput::default());
    let (_, config) = full();
    let taken = [("llm".to_owned(), "job-3".to_owned())];
    assert!(check_route(&config, &p, "chat", &taken).is_ok());
    for (name, why) in [
        ("llm", "taken by job-3"),
        ("grafana", "platform service grafana"),
        ("registry", "container registry"),
        ("Chat", "not a subdomain name"),
        ("-x", "not a subdomain name"),
        ("a.b", "not a subdomain name"),
        ("", "not a subdomain name"),
    ] {
        let e = check_route(&config, &p, name, &taken).unwrap_err();
        assert!(e.contains(why), "{name}: {e}");
    }
    // nginx serves routes too; no ingress and no base domain: refused, saying why.
    let nginx = format!("{CONFIG}platform:\n  ingress: nginx\n");
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", &nginx)),
        ..Default::default()
    });
    assert!(check_route(&loaded.config, &p, "chat", &[]).is_ok());
    let none = format!("{CONFIG}platform:\n  ingress: none\n");
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", &none)),
        ..Default::default()
    });
    let e = check_route(&loaded.config, &p, "chat", &[]).unwrap_err();
    assert!(e.contains("needs an ingress"), "{e}");
    let (p, _) = build(CONFIG, "SERVICES_ENABLED=gitlab\n", &PlanInput::default());
    let e = check_route(&config, &p, "chat", &[]).unwrap_err();
    assert!(e.contains("BASE_DOMAIN"), "{e}");
    // A platform service that is not enabled keeps its name (enabling it later would collide).
    let (p, _) = build(
        CONFIG,
        "BASE_DOMAIN=vectorweight.com\nSERVICES_ENABLED=gitlab\n",
        &PlanInput::default(),
    );
    for name in ["grafana", "dash"] {
        let e = check_route(&config, &p, name, &[]).unwrap_err();
        assert!(
            e.contains("reserved for the platform service"),
            "{name}: {e}"
        );
    }
    let e = check_route(&config, &p, "traefik", &[]).unwrap_err();
    assert!(e.contains("platform service traefik"), "{e}");
    assert!(check_route(&config, &p, "chat", &[]).is_ok());
}

/// Whether a route goes through the guard: as asked, else when the plan's ingress has one
/// (deployed for `guard_services`, `guard_proxy`, or forward-auth with Traefik); asking for
/// it without one is an error that names the settings.
#[test]
fn compute_route_guard_default() {
    use autogit_core::routes::resolve_guard;
    let plan_of =
        |platform: &str| build(&format!("{CONFIG}{platform}"), ENV, &PlanInput::default()).0;
    let none = plan_of("");
    assert_eq!(resolve_guard(&none, None), Ok(false));
    assert_eq!(resolve_guard(&none, Some(false)), Ok(false));
    let e = resolve_guard(&none, Some(true)).unwrap_err();
    assert!(
        e.contains("platform.guard_services")
            && e.contains("platform.guard_proxy")
            && e.contains("guard_forward_auth"),
        "{e}"
    );
    for platform in [
        "platform:\n  guard_proxy: http://g:8787\n  guard_services: [grafana]\n",
        "platform:\n  guard_services: [grafana]\n",
        "platform:\n  guard_services: [grafana]\n  ingress: nginx\n",
        "platform:\n  guard_forward_auth: http://g:8787/guard/forward-auth\n  guard_services: [grafana]\n",
    ] {
        let p = plan_of(platform);
        assert_eq!(resolve_guard(&p, None), Ok(true), "{platform}");
        assert_eq!(resolve_guard(&p, Some(false)), Ok(false), "{platform}");
    }
    // Forward-auth with nginx sends nothing through the guard.
    let p = plan_of(
        "platform:\n  guard_forward_auth: http://g:8787/guard/forward-auth\n  guard_services: [grafana]\n  ingress: nginx\n",
    );
    assert_eq!(resolve_guard(&p, None), Ok(false));
    assert!(resolve_guard(&p, Some(true)).is_err());
}
