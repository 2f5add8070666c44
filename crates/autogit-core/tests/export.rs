//! The platform-state model and its generators: Kubernetes manifests (snapshot), the compose
//! file from a captured state, and drift between the configuration and what runs.

use autogit_core::ansible;
use autogit_core::container::container_spec;
use autogit_core::kubernetes;
use autogit_core::load::{LoadInput, load};
use autogit_core::plan::{HostPaths, Plan, PlanInput, plan, resolve};
use autogit_core::platform::{PlatformEnv, load_platform};
use autogit_core::render;
use autogit_core::state::{self, Drift, EnvValue, Origin, PlatformState};
use autogit_core::terraform;
use std::collections::BTreeMap;

const CONFIG: &str = r#"
gitlab:
  hostname: gitlab.vectorweight.com
  external_url: https://gitlab.vectorweight.com
  resources:
    preset: homelab
runners:
  mode: always
  cpu:
    - name: homelab-cpu
      host: local
  gpu:
    - name: rtx
      host: gpu1.lan
      gpu: nvidia
      capabilities: [inference]
mirroring:
  sources:
    git:
      - url: https://example.org/a/tool.git
"#;

const ENV: &str = "BASE_DOMAIN=vectorweight.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus,meilisearch,api\nPORT_GRAFANA=3000\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER=192.0.2.53:53\nRFC2136_TSIG_KEY_NAME=autogit\nRFC2136_TSIG_SECRET=c2VjcmV0LXRzaWcta2V5LXZhbHVl\nACME_EMAIL=ops@vectorweight.com\n";

struct Built {
    plan: Plan,
    env: PlatformEnv,
    config: autogit_core::config::Config,
    values: BTreeMap<String, String>,
}

fn build(config: &str, env: &str) -> Built {
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    let mut sources = loaded.sources;
    let mut diags = loaded.diagnostics;
    let (platform, entries) = load_platform(Some((".env", env)), &[], &mut sources, &mut diags);
    assert!(
        !diags.has_errors(),
        "{}",
        autogit_core::diag::render_all(&diags, &sources)
    );
    let (p, _) = plan(&loaded.config, &platform, &PlanInput::default());
    Built {
        plan: p,
        env: platform,
        config: loaded.config,
        values: entries.into_iter().map(|(k, e)| (k, e.value)).collect(),
    }
}

fn config_state(b: &Built) -> PlatformState {
    let values = b.values.clone();
    state::from_config(&b.config, &b.env, &b.plan, &move |k| values.get(k).cloned())
}

fn all(files: &[(String, String)]) -> String {
    files.iter().map(|(n, t)| format!("=== {n}\n{t}")).collect()
}

fn rendered(b: &Built) -> BTreeMap<String, String> {
    render::cluster_files(&b.plan, &b.config)
        .into_iter()
        .collect()
}

#[test]
fn kubernetes_manifests() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let files = kubernetes::manifests(&st, &rendered(&b));
    insta::assert_snapshot!(all(&files));
}

/// The cluster runs neither the host's exporters nor autogit's API: its Prometheus does not
/// scrape their compose names (targets that would always be down), while the compose
/// deployment's does.
#[test]
fn kubernetes_prometheus_scrapes_only_what_the_cluster_runs() {
    let b = build(CONFIG, ENV);
    let host = render::all_files(&b.plan, &b.config)
        .into_iter()
        .find(|(n, _)| n == "prometheus/prometheus.yml")
        .expect("prometheus is enabled")
        .1;
    let text = all(&kubernetes::manifests(&config_state(&b), &rendered(&b)));
    for target in ["node-exporter:9100", "cadvisor:8080", "api:8000"] {
        assert!(host.contains(target), "compose scrapes {target}:\n{host}");
        assert!(
            !text.contains(target),
            "the cluster has no {target}:\n{text}"
        );
    }
    assert!(text.contains("job_name: grafana"), "{text}");
}

#[test]
fn kubernetes_secrets_are_referenced_never_inlined() {
    let b = build(CONFIG, ENV);
    let text = all(&kubernetes::manifests(&config_state(&b), &rendered(&b)));
    assert!(!text.contains("kind: Secret\n"), "{text}");
    // The TSIG secret's value is in .env: only its name reaches the manifests.
    assert!(!text.contains("c2VjcmV0LXRzaWcta2V5LXZhbHVl"));
    assert!(text.contains("tsigSecretSecretRef:\n"));
    assert!(text.contains("key: MEILI_MASTER_KEY"));
    assert!(text.contains("key: GF_SECURITY_ADMIN_PASSWORD"));
}

#[test]
fn kubernetes_output_is_deterministic() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let files = rendered(&b);
    let first = kubernetes::manifests(&st, &files);
    // The plan's service order does not matter.
    let mut shuffled = b.plan.clone();
    shuffled.services.reverse();
    let values = b.values.clone();
    let st2 = state::from_config(&b.config, &b.env, &shuffled, &move |k| {
        values.get(k).cloned()
    });
    assert_eq!(first, kubernetes::manifests(&st2, &files));
    assert_eq!(first, kubernetes::manifests(&st, &files));
}

#[test]
fn kubernetes_with_nginx_and_http01_has_no_traefik_resources() {
    let b = build(
        &format!("{CONFIG}platform:\n  ingress: nginx\n  ingress_allow: [10.0.0.0/8]\n"),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\nACME_CHALLENGE=http-01\n",
    );
    let files = kubernetes::manifests(&config_state(&b), &rendered(&b));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"traefik.yaml"), "{names:?}");
    let text = all(&files);
    assert!(text.contains("ingressClassName: nginx"));
    assert!(
        text.contains("nginx.ingress.kubernetes.io/whitelist-source-range: \"10.0.0.0/8\""),
        "{text}"
    );
    assert!(text.contains("http01:"), "{text}");
    // HTTP-01 cannot issue a wildcard: the certificate names the routed hosts.
    assert!(text.contains("- grafana.example.com"));
    assert!(!text.contains("\"*.example.com\""));
}

#[test]
fn kubernetes_gpu_runner_requests_gpus_and_selects_gpu_nodes() {
    let b = build(CONFIG, ENV);
    let files = kubernetes::manifests(&config_state(&b), &rendered(&b));
    let gpu = &files
        .iter()
        .find(|(n, _)| n == "runner-rtx.yaml")
        .unwrap()
        .1;
    assert!(gpu.contains("nvidia.com/gpu: \"1\""), "{gpu}");
    assert!(gpu.contains("nvidia.com/gpu.present: \"true\""), "{gpu}");
    let cpu = &files
        .iter()
        .find(|(n, _)| n == "runner-homelab-cpu.yaml")
        .unwrap()
        .1;
    assert!(!cpu.contains("nvidia.com/gpu"), "{cpu}");
    // What compose orders by depends_on is recorded (Kubernetes has no start order).
    assert!(cpu.contains("autogit.io/depends-on: gitlab\n"), "{cpu}");
    // The ingress container and the API have no place in a cluster.
    assert!(
        !files
            .iter()
            .any(|(n, _)| n == "traefik-ingress.yaml" || n == "api.yaml")
    );
}

#[test]
fn from_config_lists_dns_certificate_runners_and_mirrors() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    assert_eq!(st.origin, Origin::Config);
    let names: Vec<String> = st.dns.iter().map(|r| r.to_string()).collect();
    assert!(
        names
            .iter()
            .any(|r| r.starts_with("*.vectorweight.com 300 A 192.0.2.10")),
        "{names:?}"
    );
    assert_eq!(
        st.certificates[0].dns_names,
        ["*.vectorweight.com", "vectorweight.com"]
    );
    assert_eq!(st.runners.len(), 2);
    assert_eq!(st.mirrors[0].source, "https://example.org/a/tool.git");
    let text = serde_json::to_string(&st).unwrap();
    assert!(!text.contains("c2VjcmV0LXRzaWcta2V5LXZhbHVl"));
    assert_eq!(
        st.service("meilisearch")
            .unwrap()
            .env_value("MEILI_MASTER_KEY"),
        Some(&EnvValue::Secret)
    );
}

fn paths() -> HostPaths {
    HostPaths {
        data_dir: "/srv/autogit".into(),
        key_file: "/srv/autogit.key".into(),
        binary: "/usr/local/bin/autogit".into(),
        engine_socket: "/var/run/docker.sock".into(),
        guard_dir: "/srv/autogit/guard".into(),
    }
}

/// What the engine would run for the plan: one container per always-on local service.
fn running(b: &Built) -> (Built, Vec<autogit_core::container::ContainerSpec>) {
    let mut p = b.plan.clone();
    resolve(&mut p, &paths());
    let secrets = BTreeMap::from([
        ("MEILI_MASTER_KEY".to_owned(), "meili-value-1".to_owned()),
        (
            "GF_SECURITY_ADMIN_PASSWORD".to_owned(),
            "grafana-value-2".to_owned(),
        ),
    ]);
    let specs = p
        .local()
        .filter(|s| !s.on_demand)
        .map(|s| container_spec(&p, s, "/srv/autogit/rendered", &secrets))
        .collect();
    (
        Built {
            plan: p,
            env: b.env.clone(),
            config: b.config.clone(),
            values: b.values.clone(),
        },
        specs,
    )
}

#[test]
fn capture_of_what_the_plan_runs_has_no_drift() {
    let (b, specs) = running(&build(CONFIG, ENV));
    let want = config_state(&b);
    // The engine returns port mappings and mounts in its own order.
    let mut specs = specs;
    for s in &mut specs {
        s.ports.reverse();
        s.mounts.reverse();
    }
    let got = state::from_containers(&want, &specs, "/srv/autogit/rendered");
    assert_eq!(got.origin, Origin::Running);
    assert_eq!(state::drift(&want, &got), Vec::<Drift>::new());
    // Captured secrets are references: their values are nowhere in the model.
    let text = serde_json::to_string(&got).unwrap();
    assert!(!text.contains("meili-value-1") && !text.contains("grafana-value-2"));
    // The compose file of the captured state is the one of the configuration.
    assert_eq!(
        render::compose_state(&got, "/srv/autogit/rendered"),
        render::compose_state(&want, "/srv/autogit/rendered")
    );
}

#[test]
fn drift_lists_every_difference() {
    let (b, mut specs) = running(&build(CONFIG, ENV));
    let want = config_state(&b);
    let grafana = specs.iter_mut().find(|s| s.service == "grafana").unwrap();
    grafana.image = "grafana/grafana:11.2.0".into();
    grafana
        .env
        .insert("GF_SERVER_ROOT_URL".into(), "http://other".into());
    grafana
        .env
        .insert("EXTRA_TOKEN".into(), "extra-secret-value".into());
    grafana.memory_bytes /= 2;
    grafana.ports[0].host_port = 3999;
    specs.retain(|s| s.service != "loki");
    let mut stray = specs[0].clone();
    stray.service = "stray".into();
    stray
        .labels
        .insert("io.autogit.service".into(), "stray".into());
    specs.push(stray);
    let got = state::from_containers(&want, &specs, "/srv/autogit/rendered");
    let drift = state::drift(&want, &got);
    let fields: Vec<(String, String)> = drift
        .iter()
        .map(|d| (d.service.clone().unwrap(), d.field.clone()))
        .collect();
    assert_eq!(
        fields,
        [
            ("grafana", "env.EXTRA_TOKEN"),
            ("grafana", "env.GF_SERVER_ROOT_URL"),
            ("grafana", "image"),
            ("grafana", "memory"),
            ("grafana", "ports"),
            ("loki", "service"),
            ("stray", "service"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let extra = drift.iter().find(|d| d.field == "env.EXTRA_TOKEN").unwrap();
    assert_eq!(extra.found, "set (value not captured)");
    assert!(
        !serde_json::to_string(&drift)
            .unwrap()
            .contains("extra-secret-value")
    );
    assert!(
        !serde_json::to_string(&got)
            .unwrap()
            .contains("extra-secret-value")
    );
}

/// Every object of `all` of the given kind.
fn of_kind<'a>(all: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|o| o["kind"] == kind).collect()
}

fn names(all: &[serde_json::Value], kind: &str) -> Vec<String> {
    of_kind(all, kind)
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// What the objects refer to exists among them, and the custom resources carry the fields
/// cert-manager and Traefik require (kubernetes-validate has no schema for them).
fn check_references(st: &PlatformState, all: &[serde_json::Value]) {
    let services = names(all, "Service");
    let claims = names(all, "PersistentVolumeClaim");
    let config_maps = names(all, "ConfigMap");
    for o in all {
        let kind = o["kind"].as_str().unwrap();
        assert!(
            o["apiVersion"].is_string() && o["metadata"]["name"].is_string(),
            "{o}"
        );
        let cluster_scoped = matches!(kind, "Namespace" | "ClusterIssuer");
        assert_eq!(
            o["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some(st.project.as_str()),
            "{kind} {}",
            o["metadata"]["name"]
        );
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "autogit"
        );
        let pod = &o["spec"]["template"]["spec"];
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                assert!(claims.iter().any(|n| n == c), "claim {c}");
            }
            if let Some(c) = v["configMap"]["name"].as_str() {
                assert!(config_maps.iter().any(|n| n == c), "config map {c}");
            }
        }
        for c in pod["containers"].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                    assert_eq!(r["name"], kubernetes::secrets_name(st));
                    assert_eq!(r["key"], e["name"]);
                }
            }
        }
    }
    let service_port = |name: &str, port: &serde_json::Value| {
        of_kind(all, "Service").iter().any(|s| {
            s["metadata"]["name"] == name
                && s["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == *port)
        })
    };
    for ing in of_kind(all, "Ingress") {
        for rule in ing["spec"]["rules"].as_array().unwrap() {
            let b = &rule["http"]["paths"][0]["backend"]["service"];
            let name = b["name"].as_str().unwrap();
            assert!(services.iter().any(|s| s == name), "{name}");
            assert!(service_port(name, &b["port"]["number"]), "{name}");
        }
        assert_eq!(
            ing["spec"]["tls"][0]["secretName"],
            kubernetes::tls_secret_name(st)
        );
    }
    let middlewares = names(all, "Middleware");
    for r in of_kind(all, "IngressRoute") {
        for route in r["spec"]["routes"].as_array().unwrap() {
            assert_eq!(route["kind"], "Rule");
            assert!(route["match"].as_str().unwrap().starts_with("Host(`"));
            let svc = &route["services"][0];
            assert!(service_port(svc["name"].as_str().unwrap(), &svc["port"]));
            for m in route["middlewares"].as_array().unwrap() {
                assert!(middlewares.iter().any(|n| *n == m["name"]), "{m}");
            }
        }
    }
    let issuers = names(all, "ClusterIssuer");
    for c in of_kind(all, "Certificate") {
        let spec = &c["spec"];
        assert_eq!(spec["secretName"], kubernetes::tls_secret_name(st));
        assert!(!spec["dnsNames"].as_array().unwrap().is_empty());
        assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
        assert!(issuers.iter().any(|i| *i == spec["issuerRef"]["name"]));
    }
    for i in of_kind(all, "ClusterIssuer") {
        let acme = &i["spec"]["acme"];
        assert!(acme["server"].as_str().unwrap().starts_with("https://"));
        assert!(acme["privateKeySecretRef"]["name"].is_string());
        let solvers = acme["solvers"].as_array().unwrap();
        assert_eq!(solvers.len(), 1);
        let s = solvers[0].as_object().unwrap();
        assert_eq!(s.len(), 1, "one challenge type: {s:?}");
        if let Some(dns) = s.get("dns01") {
            assert_eq!(dns.as_object().unwrap().len(), 1, "one provider");
        }
    }
}

#[test]
fn manifests_refer_only_to_what_they_define() {
    let cases = [
        (CONFIG.to_owned(), ENV.to_owned()),
        (
            format!("{CONFIG}platform:\n  ingress: nginx\n"),
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,tempo\nACME_CHALLENGE=http-01\n".to_owned(),
        ),
        (
            format!("{CONFIG}platform:\n  guard_forward_auth: http://guard:8080/check\n  guard_services: [grafana]\n  ingress_allow: [10.0.0.0/8]\n"),
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,prometheus\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=t\n".to_owned(),
        ),
        (
            CONFIG.to_owned(),
            "BASE_DOMAIN=example.com\nDNS_PROVIDER=gcloud\nGCP_PROJECT=p\nGCP_MANAGED_ZONE=z\nGCP_SERVICE_ACCOUNT_FILE=/k.json\nGCP_DNS_ENDPOINT=https://dns.googleapis.com\n".to_owned(),
        ),
    ];
    for (config, env) in &cases {
        let b = build(config, env);
        let st = config_state(&b);
        let all: Vec<serde_json::Value> = kubernetes::objects(&st, &rendered(&b))
            .into_iter()
            .flat_map(|m| m.objects)
            .collect();
        check_references(&st, &all);
    }
}

/// With Traefik and the guard, a guarded service is reachable through the IngressRoute (and
/// its forward-auth) only: the plain Ingress has no rule for it.
#[test]
fn guarded_services_are_routed_through_the_guard_only() {
    let b = build(
        &format!(
            "{CONFIG}platform:\n  guard_forward_auth: http://guard:8080/check\n  guard_services: [grafana]\n"
        ),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\n",
    );
    let m = kubernetes::objects(&config_state(&b), &rendered(&b));
    let file = |n: &str| m.iter().find(|f| f.file == n).unwrap().objects.clone();
    let ingress = &file("ingress.yaml")[0];
    let hosts: Vec<&str> = ingress["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["gitlab.example.com"]);
    assert_eq!(
        ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"],
        "autogit-security-headers@kubernetescrd,autogit-rate-limit@kubernetescrd,autogit-body-limit@kubernetescrd"
    );
    let traefik = file("traefik.yaml");
    let route = of_kind(&traefik, "IngressRoute")[0]["spec"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["match"] == "Host(`grafana.example.com`)")
        .unwrap()
        .clone();
    assert_eq!(route["middlewares"][3]["name"], "guard");
    assert_eq!(
        names(&traefik, "Middleware"),
        ["security-headers", "rate-limit", "body-limit", "guard"]
    );
}

/// The zone as the DNS plan shows it: records still to create are missing, owned records to
/// delete or update are found as the zone has them, a conflicted name has none of ours; and
/// drift lists each record.
#[test]
fn dns_records_found_in_the_zone_and_their_drift() {
    use autogit_core::dns::{Record, RecordType, dns_plan, owner_name, owner_value};
    let b = build(CONFIG, ENV);
    let want = config_state(&b);
    let desired = want.dns.clone();
    assert!(!desired.is_empty());
    // A zone that has everything: nothing found missing, no drift.
    let found = state::dns_found(&desired, &dns_plan(&desired, &desired, "autogit"));
    assert_eq!(found, desired);
    // An empty zone: nothing found; each desired record is drift.
    let empty = state::dns_found(&desired, &dns_plan(&desired, &[], "autogit"));
    assert!(empty.is_empty());
    let mut got = want.clone();
    got.dns = empty;
    let drift = state::drift(&want, &got);
    assert_eq!(drift.len(), desired.len(), "{drift:#?}");
    assert!(
        drift
            .iter()
            .all(|d| d.service.is_none() && d.field == "dns" && d.found == "absent")
    );
    // An owned stale record (another address) and an owned name no longer wanted.
    let wildcard = desired
        .iter()
        .find(|r| r.name == "*.vectorweight.com")
        .unwrap();
    let stale = Record::new(&wildcard.name, RecordType::A, "192.0.2.99", wildcard.ttl);
    let old = Record::new("old.vectorweight.com", RecordType::A, "192.0.2.10", 300);
    let mut zone: Vec<Record> = desired.iter().filter(|r| *r != wildcard).cloned().collect();
    zone.push(stale.clone());
    zone.push(old.clone());
    zone.push(Record::new(
        &owner_name("old.vectorweight.com"),
        RecordType::Txt,
        owner_value("autogit"),
        300,
    ));
    let found = state::dns_found(&desired, &dns_plan(&desired, &zone, "autogit"));
    assert!(found.contains(&stale) && found.contains(&old) && !found.contains(wildcard));
    got.dns = found;
    let fields: Vec<(String, String)> = state::drift(&want, &got)
        .into_iter()
        .map(|d| (d.expected, d.found))
        .collect();
    assert!(
        fields.contains(&(wildcard.to_string(), "absent".to_owned())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("absent".to_owned(), stale.to_string())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("absent".to_owned(), old.to_string())),
        "{fields:?}"
    );
}

const CLOUDFLARE_ENV: &str = "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=cf-token-value\nCLOUDFLARE_ZONE_ID=zone123\n";
const ROUTE53_ENV: &str = "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=route53\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=aws-secret-value\nAWS_HOSTED_ZONE_ID=Z123\nAWS_REGION=eu-west-1\n";

#[test]
fn terraform_files() {
    let b = build(CONFIG, ENV);
    insta::assert_snapshot!(all(&terraform::files(&config_state(&b))));
}

/// The Kubernetes export as Terraform (`kubernetes_manifest`s): a small platform, whole.
#[test]
fn terraform_kubernetes_files() {
    let b = build("", CLOUDFLARE_ENV);
    let files = terraform::kubernetes_files(&config_state(&b), &rendered(&b));
    let text = all(&files);
    assert!(!text.contains("cf-token-value"));
    insta::assert_snapshot!(text);
}

#[test]
fn terraform_dns_records_at_cloudflare_and_route53() {
    let cf = build("", CLOUDFLARE_ENV);
    let cf = terraform::files(&config_state(&cf));
    insta::assert_snapshot!("terraform_cloudflare", all(&cf));
    let r53 = build("", ROUTE53_ENV);
    let r53 = terraform::files(&config_state(&r53));
    insta::assert_snapshot!("terraform_route53", all(&r53));
    // Neither provider's secret reaches the files; Cloudflare's token is a sensitive variable.
    for text in [all(&cf), all(&r53)] {
        assert!(!text.contains("cf-token-value") && !text.contains("aws-secret-value"));
        assert!(
            !text.contains("AKIAEXAMPLE"),
            "AWS credentials come from the environment"
        );
    }
    assert!(all(&cf).contains("variable \"cloudflare_api_token\" {\n  type = string\n  description = \"CLOUDFLARE_API_TOKEN: the Cloudflare API token\"\n  sensitive = true\n}"));
}

#[test]
fn terraform_secrets_are_sensitive_variables_never_inlined() {
    let b = build(CONFIG, ENV);
    let files = terraform::files(&config_state(&b));
    let text = all(&files);
    assert!(!text.contains("c2VjcmV0LXRzaWcta2V5LXZhbHVl"));
    // The secrets of the services: referenced from the environment, declared sensitive.
    assert!(
        text.contains("\"MEILI_MASTER_KEY=${var.meili_master_key}\""),
        "{text}"
    );
    assert!(text.contains("variable \"meili_master_key\" {\n  type = string\n  description = \"MEILI_MASTER_KEY: a secret\"\n  sensitive = true\n}"), "{text}");
    // RFC 2136 has no Terraform resources here: the file says why and lists the records.
    let dns = &files.iter().find(|(n, _)| n == "dns.tf").unwrap().1;
    assert!(dns.contains("# No DNS resources: RFC 2136"), "{dns}");
    assert!(!dns.contains("resource "), "{dns}");
}

#[test]
fn terraform_output_is_deterministic_and_quotes_what_hcl_would_interpolate() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    assert_eq!(terraform::files(&st), terraform::files(&st));
    assert_eq!(
        terraform::quote("a${b}%{c}\"d\\\n"),
        "\"a$${b}%%{c}\\\"d\\\\\\n\""
    );
    assert_eq!(terraform::ident("runner-homelab-cpu"), "runner_homelab_cpu");
    assert_eq!(terraform::ident("1x"), "_1x");
}

#[test]
fn ansible_playbook_and_inventory() {
    let b = build(CONFIG, ENV);
    insta::assert_snapshot!(all(&ansible::files(&config_state(&b))));
}

#[test]
fn ansible_secrets_come_from_vault_variables_never_inlined() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let files = ansible::files(&st);
    let text = all(&files);
    assert!(!text.contains("c2VjcmV0LXRzaWcta2V5LXZhbHVl"));
    assert!(
        text.contains("MEILI_MASTER_KEY: '{{ vault_meili_master_key }}'")
            || text.contains("MEILI_MASTER_KEY: \"{{ vault_meili_master_key }}\""),
        "{text}"
    );
    // The playbook refuses to run without them, and hides the tasks that carry them.
    assert!(
        text.contains("- \"vault_meili_master_key is defined\""),
        "{text}"
    );
    let playbook = ansible::playbook(&st);
    let tasks = playbook[0]["tasks"].as_array().unwrap();
    for t in tasks {
        let Some(c) = t.get("community.docker.docker_container") else {
            continue;
        };
        let secret = c["env"]
            .as_object()
            .is_some_and(|e| e.values().any(|v| v.as_str().unwrap().contains("vault_")));
        assert_eq!(t.get("no_log").is_some(), secret, "{t}");
    }
}

#[test]
fn ansible_starts_each_service_after_what_it_depends_on() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let files = ansible::files(&st);
    let playbook = ansible::playbook(&st);
    let order: Vec<String> = playbook[0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.get("community.docker.docker_container"))
        .map(|c| {
            c["labels"]["io.autogit.service"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(!order.is_empty());
    for (i, name) in order.iter().enumerate() {
        for d in &st.service(name).unwrap().depends_on {
            if let Some(j) = order.iter().position(|o| o == d) {
                assert!(j < i, "{name} starts before {d}: {order:?}");
            }
        }
    }
    assert_eq!(files, ansible::files(&st), "deterministic");
}

#[test]
fn ansible_keeps_plain_values_that_look_like_jinja_literal() {
    let b = build(CONFIG, ENV);
    let mut st = config_state(&b);
    let loki = st.services.iter_mut().find(|s| s.name == "loki").unwrap();
    loki.env.push(state::EnvVar {
        name: "TEMPLATE".into(),
        value: EnvValue::Plain("{{ lookup('pipe', 'id') }}".into()),
    });
    let playbook = ansible::playbook(&st);
    let loki = playbook[0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Service loki")
        .unwrap();
    assert_eq!(
        loki["community.docker.docker_container"]["env"]["TEMPLATE"],
        "{% raw %}{{ lookup('pipe', 'id') }}{% endraw %}"
    );
}

#[test]
fn kustomize_base_names_every_manifest_and_pins_every_image() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let manifests = kubernetes::manifests(&st, &rendered(&b));
    let files = autogit_core::kustomize::files(&st, &rendered(&b));
    // The base is the manifests, unchanged, and its kustomization.yaml last.
    assert_eq!(&files[..files.len() - 1], &manifests[..]);
    let (name, text) = files.last().unwrap();
    assert_eq!(name, "kustomization.yaml");
    insta::assert_snapshot!("kustomization", text);
    for (f, _) in &manifests {
        assert!(text.contains(&format!("- {f}\n")), "{f} not listed");
    }
    for s in st.services.iter().filter(|s| kubernetes::in_cluster(s)) {
        let (image, tag) = autogit_core::kustomize::split_image(&s.image);
        let tag = tag.unwrap();
        assert!(
            text.contains(&format!("- name: {image}\n"))
                && (text.contains(&format!("newTag: {tag}\n"))
                    || text.contains(&format!("newTag: \"{tag}\"\n"))),
            "{} not pinned",
            s.image
        );
    }
}

#[test]
fn kube_target_applies_the_export_in_rank_order() {
    use autogit_core::kube_target::{self, SPEC_HASH};
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let objects = kubernetes::objects(&st, &rendered(&b));
    let plan = kube_target::apply_plan(&st, &objects).unwrap();
    let total: usize = objects.iter().map(|m| m.objects.len()).sum();
    assert_eq!(plan.applies.len(), total, "every object, once");
    let ranks: Vec<u8> = plan.applies.iter().map(|a| a.resource.rank).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    assert_eq!(plan.applies[0].resource.kind, "Namespace");
    // One workload per service in the cluster, each stamped with its file's hash; on-demand
    // runners (0 replicas) are not kept running.
    for s in st.services.iter().filter(|s| kubernetes::in_cluster(s)) {
        let w = plan.workloads.iter().find(|w| w.service == s.name).unwrap();
        let a = plan
            .applies
            .iter()
            .find(|a| a.name == s.name && a.resource.kind == format!("{:?}", w.kind))
            .unwrap();
        assert_eq!(
            a.object["metadata"]["annotations"][SPEC_HASH],
            w.spec_hash.as_str()
        );
        assert_eq!(w.replicas == 0, s.on_demand, "{}", s.name);
        assert_eq!(
            plan.desired().iter().any(|d| d.service == s.name),
            !s.on_demand
        );
    }
    assert_eq!(
        plan.workloads
            .iter()
            .find(|w| w.service == "gitlab")
            .map(|w| w.kind),
        Some(kube_target::WorkloadKind::StatefulSet)
    );
    // A change of one service's configuration changes its hash only.
    let mut st2 = st.clone();
    st2.services
        .iter_mut()
        .find(|s| s.name == "grafana")
        .unwrap()
        .resources
        .cpus += 1.0;
    let plan2 = kube_target::apply_plan(&st2, &kubernetes::objects(&st2, &rendered(&b))).unwrap();
    for (w1, w2) in plan.workloads.iter().zip(&plan2.workloads) {
        assert_eq!(
            w1.spec_hash == w2.spec_hash,
            w1.service != "grafana",
            "{}",
            w1.service
        );
    }
    // A kind autogit cannot place is an error naming the file.
    let mut odd = objects.clone();
    odd[0].objects.push(serde_json::json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"}}));
    let e = kube_target::apply_plan(&st, &odd).unwrap_err();
    assert!(
        e.contains("namespace.yaml") && e.contains("DaemonSet"),
        "{e}"
    );
}

/// The Pulumi program parsed as YAML and checked against what Pulumi documents: the project
/// file's keys (Pulumi's `project.json` schema: `name`, `runtime`, config declarations typed
/// `string`/`integer`/`boolean`/`array` with `secret`), the YAML program's sections, and each
/// resource against Pulumi's Docker provider schema (`tests/fixtures/pulumi/docker-schema.json`,
/// extracted from the provider's `schema.json`: see SOURCES.md): its type token, every
/// property an input of that type (nested objects too), every required input present, the
/// value types, and every `${...}` naming a config key or a resource (and one of its
/// properties).
fn check_pulumi(text: &str) -> serde_json::Value {
    use serde_json::Value;
    let mut sources = autogit_core::source::Sources::new();
    let id = sources.add(
        autogit_core::source::Origin::File("Pulumi.yaml".into()),
        text.to_owned(),
    );
    let node = autogit_core::yaml::parse(text, id, Default::default())
        .expect("Pulumi.yaml is YAML")
        .expect("not empty");
    let doc = autogit_core::yaml::node_to_json(&node);
    let schema: Value =
        serde_json::from_str(include_str!("fixtures/pulumi/docker-schema.json")).unwrap();
    let top = doc.as_object().expect("a mapping");
    for k in top.keys() {
        assert!(
            [
                "name",
                "runtime",
                "description",
                "config",
                "variables",
                "resources",
                "outputs",
                "pulumi"
            ]
            .contains(&k.as_str()),
            "unknown top-level key {k}"
        );
    }
    assert!(doc["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(doc["runtime"], "yaml");
    let config = doc["config"].as_object().cloned().unwrap_or_default();
    for (k, c) in &config {
        let c = c
            .as_object()
            .unwrap_or_else(|| panic!("config {k}: a declaration"));
        for key in c.keys() {
            assert!(
                ["type", "items", "description", "secret", "default"].contains(&key.as_str()),
                "config {k}: {key}"
            );
        }
        assert!(
            ["string", "integer", "boolean", "array"].contains(&c["type"].as_str().unwrap()),
            "config {k}"
        );
        if let Some(s) = c.get("secret") {
            assert!(s.is_boolean(), "config {k}: secret");
        }
    }
    let resources = doc["resources"].as_object().expect("resources");
    fn check_type(schema: &Value, ty: &Value, v: &Value, at: &str) {
        match ty {
            Value::String(t) if t == "string" => {
                assert!(v.is_string(), "{at}: a string, found {v}");
            }
            Value::String(t) if t == "integer" => {
                assert!(
                    v.is_u64() || v.is_i64() || v.as_str().is_some_and(|s| s.starts_with("${")),
                    "{at}: an integer, found {v}"
                );
            }
            Value::String(t) if t == "boolean" => {
                assert!(v.is_boolean(), "{at}: a boolean, found {v}")
            }
            Value::String(t) if t == "number" => assert!(v.is_number(), "{at}: a number"),
            Value::Array(a) if a[0] == "array" => {
                for (i, x) in v
                    .as_array()
                    .unwrap_or_else(|| panic!("{at}: a list, found {v}"))
                    .iter()
                    .enumerate()
                {
                    check_type(schema, &a[1], x, &format!("{at}[{i}]"));
                }
            }
            Value::Array(a) if a[0] == "map" => {
                for (k, x) in v.as_object().unwrap_or_else(|| panic!("{at}: a map")) {
                    check_type(schema, &a[1], x, &format!("{at}.{k}"));
                }
            }
            Value::String(t) => {
                let def = &schema["types"][t.as_str()];
                assert!(def.is_object(), "{at}: unknown type {t}");
                let obj = v
                    .as_object()
                    .unwrap_or_else(|| panic!("{at}: an object of {t}, found {v}"));
                for (k, x) in obj {
                    let pty = def["properties"]
                        .get(k)
                        .unwrap_or_else(|| panic!("{at}: {k} is not a property of {t}"));
                    check_type(schema, pty, x, &format!("{at}.{k}"));
                }
                for r in def["required"].as_array().unwrap() {
                    assert!(
                        obj.contains_key(r.as_str().unwrap()),
                        "{at}: {t} requires {r}"
                    );
                }
            }
            other => panic!("{at}: schema type {other}"),
        }
    }
    for (name, r) in resources {
        let r = r.as_object().unwrap();
        for k in r.keys() {
            assert!(
                ["type", "properties", "options", "get", "defaultProvider"].contains(&k.as_str()),
                "{name}: {k}"
            );
        }
        let token = r["type"].as_str().unwrap();
        let def = &schema["resources"][token];
        assert!(def.is_object(), "{name}: unknown type {token}");
        assert!(autogit_core::pulumi::RESOURCE_TYPES.contains(&token));
        let props = r["properties"].as_object().unwrap();
        for (k, v) in props {
            let ty = def["inputs"]
                .get(k)
                .unwrap_or_else(|| panic!("{name}: {k} is not an input of {token}"));
            check_type(&schema, ty, v, &format!("{name}.{k}"));
        }
        for req in def["required"].as_array().unwrap() {
            assert!(
                props.contains_key(req.as_str().unwrap()),
                "{name}: {token} requires {req}"
            );
        }
        if let Some(o) = r.get("options") {
            for k in o.as_object().unwrap().keys() {
                assert!(
                    [
                        "version",
                        "dependsOn",
                        "protect",
                        "provider",
                        "parent",
                        "ignoreChanges",
                        "replaceOnChanges",
                        "deleteBeforeReplace",
                        "customTimeouts",
                        "retainOnDelete"
                    ]
                    .contains(&k.as_str()),
                    "{name}: option {k}"
                );
            }
            assert_eq!(o["version"], autogit_core::pulumi::DOCKER_PROVIDER_VERSION);
        }
    }
    // Every interpolation names a config key or a resource (and one of its inputs or outputs).
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(m) => m.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&doc["resources"], &mut all);
    let mut refs = 0;
    for s in all {
        // As pulumi-yaml's `parseInterpolate` reads a string: `$$` is one `$`, `${` opens an
        // interpolation.
        let mut rest = s;
        let mut exprs = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("$$") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("${") {
                let end = r.find('}').expect("closed");
                exprs.push(&r[..end]);
                rest = &r[end + 1..];
            } else {
                let n = rest.chars().next().unwrap().len_utf8();
                rest = &rest[n..];
            }
        }
        for expr in exprs {
            let (head, prop) = expr
                .split_once('.')
                .map_or((expr, None), |(h, p)| (h, Some(p)));
            if let Some(r) = resources.get(head) {
                if let Some(p) = prop {
                    let def = &schema["resources"][r["type"].as_str().unwrap()];
                    assert!(
                        def["inputs"].get(p).is_some()
                            || def["outputs"].as_array().unwrap().iter().any(|o| o == p),
                        "${{{expr}}}: {p} is not a property of {head}"
                    );
                }
            } else {
                assert!(
                    prop.is_none() && config.contains_key(head),
                    "${{{expr}}} names nothing"
                );
            }
            refs += 1;
        }
    }
    assert!(refs > 0);
    doc
}

#[test]
fn pulumi_program_follows_the_documented_schemas() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let files = autogit_core::pulumi::files(&st);
    assert_eq!(files.len(), 1);
    insta::assert_snapshot!("pulumi", &files[0].1);
    let doc = check_pulumi(&files[0].1);
    // Secrets are secret config keys, referenced, never inlined.
    for s in &st.services {
        for e in &s.env {
            if matches!(e.value, EnvValue::Secret | EnvValue::Withheld) && s.always_local() {
                assert_eq!(doc["config"][&e.name]["secret"], true, "{}", e.name);
            }
        }
    }
    assert!(!files[0].1.contains("c2VjcmV0LXRzaWcta2V5LXZhbHVl"));
    // One container per service of this host, after what it depends on.
    for s in st.services.iter().filter(|s| s.always_local()) {
        let c = &doc["resources"][autogit_core::pulumi::ident("ctr", &s.name)];
        assert_eq!(c["properties"]["name"], s.container_name.as_str());
        for d in &s.depends_on {
            assert!(
                c["options"]["dependsOn"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| *x == format!("${{{}}}", autogit_core::pulumi::ident("ctr", d))),
                "{} after {d}",
                s.name
            );
        }
    }
}

#[test]
fn pulumi_keeps_values_that_look_like_interpolations_literal() {
    let b = build(CONFIG, ENV);
    let mut st = config_state(&b);
    let s = st
        .services
        .iter_mut()
        .find(|s| s.name == "grafana")
        .unwrap();
    s.env.push(state::EnvVar {
        name: "GF_TEMPLATE".into(),
        value: EnvValue::Plain("${danger} and $${kept}".into()),
    });
    let text = &autogit_core::pulumi::files(&st)[0].1;
    check_pulumi(text);
    assert!(
        text.contains("GF_TEMPLATE=$${danger} and $$$${kept}"),
        "{text}"
    );
}

/// The claims' sizes follow the preset unless `platform.volume_sizes` names the volume, and
/// `platform.storage_class` lands in every claim (GitLab's templated ones too).
#[test]
fn volume_claims_are_sized_by_preset_and_configuration() {
    let claims = |config: &str| -> Vec<(String, String, Option<String>)> {
        let b = build(config, ENV);
        let st = config_state(&b);
        let mut out = Vec::new();
        for v in kubernetes::objects(&st, &rendered(&b))
            .into_iter()
            .flat_map(|m| m.objects)
        {
            let mut add = |c: &serde_json::Value| {
                out.push((
                    c["metadata"]["name"].as_str().unwrap().to_owned(),
                    c["spec"]["resources"]["requests"]["storage"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    c["spec"]["storageClassName"].as_str().map(str::to_owned),
                ));
            };
            if v["kind"] == "PersistentVolumeClaim" {
                add(&v);
            }
            for c in v["spec"]["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten()
            {
                add(c);
            }
        }
        out.sort();
        out
    };
    let size_of = |all: &[(String, String, Option<String>)], name: &str| {
        all.iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no claim {name} in {all:?}"))
            .1
            .clone()
    };
    let homelab = claims(CONFIG);
    assert_eq!(size_of(&homelab, "gitlab-data"), "50Gi");
    assert_eq!(size_of(&homelab, "gitlab-config"), "1Gi");
    assert!(homelab.iter().all(|c| c.2.is_none()), "{homelab:?}");

    let team = CONFIG.replace("preset: homelab", "preset: team");
    assert_eq!(size_of(&claims(&team), "gitlab-data"), "200Gi");

    let sized = format!(
        "{CONFIG}platform:\n  storage_class: longhorn\n  volume_sizes:\n    gitlab-data: 1T\n    grafana-data: 512M\n"
    );
    let sized = claims(&sized);
    assert_eq!(size_of(&sized, "gitlab-data"), "1Ti");
    assert_eq!(size_of(&sized, "grafana-data"), "512Mi");
    assert_eq!(size_of(&sized, "gitlab-logs"), "5Gi");
    assert!(
        sized.iter().all(|c| c.2.as_deref() == Some("longhorn")),
        "{sized:?}"
    );
}

/// A size for a volume no service has is said, with the name it probably meant.
#[test]
fn a_size_for_an_unknown_volume_is_a_warning() {
    let config = format!("{CONFIG}platform:\n  volume_sizes:\n    gitlab-dat: 1T\n");
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", &config)),
        ..Default::default()
    });
    let mut sources = loaded.sources;
    let mut diags = loaded.diagnostics;
    let (env, _) = load_platform(Some((".env", ENV)), &[], &mut sources, &mut diags);
    let (_, d) = plan(&loaded.config, &env, &PlanInput::default());
    let w =
        d.0.iter()
            .find(|d| d.code == "unknown-volume")
            .unwrap_or_else(|| panic!("{d:?}"));
    assert!(
        w.help.as_deref().unwrap_or("").contains("`gitlab-data`"),
        "{w:?}"
    );
}

/// A service behind the guard in proxy mode (here the guard autogit deploys) is not routed in
/// a cluster, where that guard does not run: it fails closed instead of being served
/// unchecked, and the manifests say why.
#[test]
fn services_behind_the_proxy_guard_are_not_routed_in_a_cluster() {
    let b = build(
        &format!("{CONFIG}platform:\n  guard_services: [grafana]\n"),
        ENV,
    );
    let st = config_state(&b);
    let files = kubernetes::manifests(&st, &rendered(&b));
    let text = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for f in ["ingress.yaml", "traefik.yaml"] {
        let t = text(f);
        assert!(t.contains("# Not routed: grafana"), "{t}");
        assert!(!t.contains("Host(`grafana.vectorweight.com`)"), "{t}");
        assert!(!t.contains("host: grafana.vectorweight.com"), "{t}");
        // The others still are.
        assert!(t.contains("gitlab.vectorweight.com"), "{t}");
    }
    // Grafana itself still runs there.
    assert!(files.iter().any(|(n, _)| n == "grafana.yaml"));
}
