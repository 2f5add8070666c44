//! The platform-state model and its generators: Kubernetes manifests (snapshot), the compose
//! file from a captured state, and drift between the configuration and what runs.

use autogit_core::container::container_spec;
use autogit_core::kubernetes;
use autogit_core::load::{LoadInput, load};
use autogit_core::plan::{HostPaths, Plan, PlanInput, plan, resolve};
use autogit_core::platform::{PlatformEnv, load_platform};
use autogit_core::render;
use autogit_core::state::{self, Drift, EnvValue, Origin, PlatformState};
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
    render::all_files(&b.plan, &b.config).into_iter().collect()
}

#[test]
fn kubernetes_manifests() {
    let b = build(CONFIG, ENV);
    let st = config_state(&b);
    let files = kubernetes::manifests(&st, &rendered(&b));
    insta::assert_snapshot!(all(&files));
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
