//! Kubernetes manifests from the platform model ([`crate::state::PlatformState`]): a pure
//! function, deterministic (services by name, keys in a fixed order), snapshot-tested and
//! validated against the Kubernetes OpenAPI schemas by `kubernetes-validate` in the binary's
//! tests.
//!
//! What maps to what:
//! - the project → a `Namespace`;
//! - GitLab → a `StatefulSet` with one `volumeClaimTemplate` per volume, a headless
//!   `Service` and a `LoadBalancer` `Service` for Git over SSH;
//! - every other local service but the ingress and the API → a `Deployment` (`Recreate`
//!   when it has volumes), its `PersistentVolumeClaim`s and a `Service`; rendered
//!   configuration files → a `ConfigMap` mounted with `subPath`;
//! - runners → `Deployment`s (0 replicas when on demand), GPU runners requesting
//!   `nvidia.com/gpu` and selecting GPU nodes;
//! - the ingress container → an `Ingress` (`networking.k8s.io/v1`) for the cluster's
//!   ingress controller, with ExternalDNS annotations, plus a Traefik `IngressRoute` and its
//!   `Middleware`s when the ingress is Traefik;
//! - the certificate → cert-manager's `ClusterIssuer` (ACME, DNS-01 through the same DNS
//!   provider, or HTTP-01) and `Certificate`;
//! - runner isolation → `NetworkPolicy`s.
//!
//! Secrets are referenced (`secretKeyRef` into `<project>-secrets`, and the DNS provider's
//! into `<project>-dns`), never inlined: no `Secret` object is emitted.

use crate::config::GpuVendor;
use crate::dns::canonical_name;
use crate::emit::to_yaml;
use crate::plan::{Mount, Probe, Protocol, Role};
use crate::platform::DnsProvider;
use crate::preset::Preset;
use crate::state::{
    AcmeState, Challenge, EnvValue, HealthState, IngressClass, PlatformState, ServiceState,
};
use crate::units::Bytes;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The kinds emitted that are not part of Kubernetes itself (custom resources): what a
/// schema validator of Kubernetes' own API cannot check.
pub const CUSTOM_KINDS: [(&str, &str); 4] = [
    ("cert-manager.io/v1", "ClusterIssuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("traefik.io/v1alpha1", "IngressRoute"),
    ("traefik.io/v1alpha1", "Middleware"),
];

/// The Secret holding the services' secret variables (one key per variable name).
pub fn secrets_name(st: &PlatformState) -> String {
    format!("{}-secrets", st.project)
}

/// The Secret holding the DNS provider's credentials (one key per variable name).
pub fn dns_secret_name(st: &PlatformState) -> String {
    format!("{}-dns", st.project)
}

/// The Secret cert-manager writes the platform certificate into.
pub fn tls_secret_name(st: &PlatformState) -> String {
    format!("{}-wildcard-tls", st.project)
}

fn meta(st: &PlatformState, name: &str, component: Option<&str>) -> Value {
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/name".into(), json!(name));
    labels.insert("app.kubernetes.io/instance".into(), json!(st.project));
    if let Some(c) = component {
        labels.insert("app.kubernetes.io/component".into(), json!(c));
    }
    labels.insert("app.kubernetes.io/managed-by".into(), json!("autogit"));
    json!({"name": name, "namespace": st.project, "labels": labels})
}

fn selector(st: &PlatformState, name: &str) -> Value {
    json!({"app.kubernetes.io/name": name, "app.kubernetes.io/instance": st.project})
}

fn role_name(r: Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A CPU quantity: whole CPUs, or millicores.
pub fn cpu_quantity(cpus: f64) -> String {
    let milli = (cpus * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// A memory quantity in binary units (`6Gi`, `512Mi`), or bytes.
pub fn memory_quantity(b: Bytes) -> String {
    const KIB: u64 = 1024;
    for (unit, len) in [
        ("Ti", KIB * KIB * KIB * KIB),
        ("Gi", KIB * KIB * KIB),
        ("Mi", KIB * KIB),
        ("Ki", KIB),
    ] {
        if b.0 >= len && b.0.is_multiple_of(len) {
            return format!("{}{unit}", b.0 / len);
        }
    }
    b.0.to_string()
}

/// A volume's claim size when the configuration names none: GitLab's repositories,
/// uploads and database grow with the preset; its configuration and logs, and every other
/// service's data, are small; a runner's volume holds only its `config.toml`.
pub fn default_volume_size(preset: Preset, volume: &str) -> Bytes {
    const GI: u64 = 1 << 30;
    let gi = match volume {
        "gitlab-data" => match preset {
            Preset::Minimal => 20,
            Preset::Homelab => 50,
            Preset::Team => 200,
            Preset::Beast => 500,
        },
        "gitlab-logs" => match preset {
            Preset::Minimal | Preset::Homelab => 5,
            Preset::Team | Preset::Beast => 20,
        },
        "gitlab-config" => 1,
        v if v.starts_with("runner-") => 1,
        _ => 10,
    };
    Bytes(gi * GI)
}

/// The size a volume's claim asks for: `platform.volume_sizes`, else its preset's.
pub fn volume_size(st: &PlatformState, volume: &str) -> String {
    memory_quantity(
        st.storage
            .sizes
            .get(volume)
            .copied()
            .unwrap_or_else(|| default_volume_size(st.preset, volume)),
    )
}

/// A DNS-1123 label from a path (`tempo/tempo.yaml` → `tempo-tempo-yaml`).
fn dns_label(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').chars().take(63).collect()
}

fn probe_action(h: &HealthState, path: Option<&str>) -> Value {
    match (&h.probe, path) {
        (Some(Probe::Http { port, .. }), Some(p)) => json!({"httpGet": {"path": p, "port": port}}),
        (Some(Probe::Http { port, path, .. }), None) => {
            json!({"httpGet": {"path": path, "port": port}})
        }
        (Some(Probe::Tcp { port }), _) => json!({"tcpSocket": {"port": port}}),
        (Some(Probe::Command { argv }), _) => json!({"exec": {"command": argv}}),
        // Captured: only the engine's test is known.
        (None, _) => {
            let command: Vec<String> = match h.test.split_first() {
                Some((first, rest)) if first == "CMD-SHELL" => {
                    vec!["sh".into(), "-c".into(), rest.join(" ")]
                }
                Some((first, rest)) if first == "CMD" => rest.to_vec(),
                _ => h.test.clone(),
            };
            json!({"exec": {"command": command}})
        }
    }
}

fn probes(s: &ServiceState, c: &mut Map<String, Value>) {
    let Some(h) = &s.health else { return };
    let period = h.interval.as_secs().max(1);
    let timeout = h.timeout.as_secs().max(1);
    let with = |mut action: Value, failures: u64| {
        action["periodSeconds"] = json!(period);
        action["timeoutSeconds"] = json!(timeout);
        action["failureThreshold"] = json!(failures.max(1));
        action
    };
    // The start period becomes a startup probe: liveness only counts once it has passed.
    let startup_failures = h.start_period.as_secs().div_ceil(period).max(1);
    c.insert(
        "startupProbe".into(),
        with(probe_action(h, None), startup_failures),
    );
    c.insert(
        "livenessProbe".into(),
        with(probe_action(h, None), u64::from(h.retries)),
    );
    if let Some(ready) = &h.ready_path {
        c.insert(
            "readinessProbe".into(),
            with(probe_action(h, Some(ready)), u64::from(h.retries)),
        );
    }
}

struct Pod {
    volumes: Vec<Value>,
    claims: Vec<(String, String)>,
    config_files: BTreeMap<String, String>,
}

fn container(
    st: &PlatformState,
    s: &ServiceState,
    files: &BTreeMap<String, String>,
) -> (Value, Pod) {
    let mut c = Map::new();
    c.insert("name".into(), json!(s.name));
    c.insert("image".into(), json!(s.image));
    if !s.command.is_empty() {
        c.insert("args".into(), json!(s.command));
    }
    let mut ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({"containerPort": p.container, "protocol": if p.protocol == Protocol::Udp { "UDP" } else { "TCP" }});
            if let Some(n) = &p.name {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    if let Some(r) = &s.route
        && !s.ports.iter().any(|p| p.container == r.port)
    {
        ports.push(json!({"containerPort": r.port, "protocol": "TCP", "name": "http"}));
    }
    if !ports.is_empty() {
        c.insert("ports".into(), Value::Array(ports));
    }
    let env: Vec<Value> = s
        .env
        .iter()
        .filter_map(|e| match &e.value {
            EnvValue::Plain(v) => Some(json!({"name": e.name, "value": v})),
            EnvValue::Secret | EnvValue::Withheld => Some(json!({
                "name": e.name,
                "valueFrom": {"secretKeyRef": {"name": secrets_name(st), "key": e.name}},
            })),
            // Host paths of the deploying host mean nothing in a cluster.
            EnvValue::HostPath(_) => None,
        })
        .collect();
    if !env.is_empty() {
        c.insert("env".into(), Value::Array(env));
    }
    let mut limits = Map::new();
    limits.insert("cpu".into(), json!(cpu_quantity(s.resources.cpus)));
    limits.insert("memory".into(), json!(memory_quantity(s.resources.memory)));
    if let Some(g) = &s.gpu {
        match g.vendor {
            GpuVendor::Nvidia => limits.insert("nvidia.com/gpu".into(), json!(g.count.to_string())),
        };
    }
    // Requests equal limits: the preset's sizes are reserved, as on the engine (Guaranteed QoS).
    c.insert(
        "resources".into(),
        json!({"requests": limits.clone(), "limits": limits}),
    );
    probes(s, &mut c);
    let mut pod = Pod {
        volumes: Vec::new(),
        claims: Vec::new(),
        config_files: BTreeMap::new(),
    };
    let mut mounts = Vec::new();
    for m in &s.mounts {
        match m {
            Mount::Volume { name, target } => {
                mounts.push(json!({"name": name, "mountPath": target}));
                pod.claims.push((name.clone(), target.clone()));
            }
            Mount::Rendered { file, target } => {
                if let Some(text) = files.get(file) {
                    let key = dns_label(file);
                    mounts.push(json!({"name": "config", "mountPath": target, "subPath": key, "readOnly": true}));
                    pod.config_files.insert(key, text.clone());
                } else {
                    // A rendered directory (Prometheus's configuration and rules): each of
                    // its files at its place under the target.
                    let prefix = format!("{}/", file.trim_end_matches('/'));
                    for (path, text) in files.range(prefix.clone()..) {
                        let Some(rel) = path.strip_prefix(&prefix) else {
                            break;
                        };
                        let key = dns_label(path);
                        mounts.push(json!({
                            "name": "config",
                            "mountPath": format!("{}/{rel}", target.trim_end_matches('/')),
                            "subPath": key,
                            "readOnly": true,
                        }));
                        pod.config_files.insert(key, text.clone());
                    }
                }
            }
            // Host paths (the engine socket) have no place in a cluster.
            Mount::Host { .. } | Mount::HostPath { .. } => {}
        }
    }
    if !pod.config_files.is_empty() {
        pod.volumes
            .push(json!({"name": "config", "configMap": {"name": format!("{}-config", s.name)}}));
    }
    if let Some(shm) = s.resources.shm_size {
        mounts.push(json!({"name": "dshm", "mountPath": "/dev/shm"}));
        pod.volumes.push(json!({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": memory_quantity(shm)}}));
    }
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), Value::Array(mounts));
    }
    (Value::Object(c), pod)
}

fn pod_spec(s: &ServiceState, c: Value, pod: &Pod, claims_inline: bool) -> Value {
    let mut spec = Map::new();
    spec.insert("enableServiceLinks".into(), json!(false));
    spec.insert("automountServiceAccountToken".into(), json!(false));
    spec.insert("containers".into(), json!([c]));
    let mut volumes = pod.volumes.clone();
    if claims_inline {
        for (name, _) in &pod.claims {
            volumes.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
        }
    }
    if !volumes.is_empty() {
        spec.insert("volumes".into(), Value::Array(volumes));
    }
    if s.gpu.is_some() {
        spec.insert(
            "nodeSelector".into(),
            json!({"nvidia.com/gpu.present": "true"}),
        );
        spec.insert(
            "tolerations".into(),
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        );
    }
    Value::Object(spec)
}

fn template(st: &PlatformState, s: &ServiceState, spec: Value) -> Value {
    let mut labels = meta(st, &s.name, Some(&role_name(s.role)))["labels"].clone();
    if s.role == Role::Runner {
        labels["autogit.io/runner"] = json!("true");
    }
    json!({"metadata": {"labels": labels}, "spec": spec})
}

/// The claim of a volume: a `PersistentVolumeClaim` object, or (`templated`) the entry of a
/// StatefulSet's `volumeClaimTemplates` (no namespace: the StatefulSet's).
fn claim(st: &PlatformState, name: &str, component: &str, templated: bool) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": volume_size(st, name)}},
    });
    if let Some(class) = &st.storage.class {
        spec["storageClassName"] = json!(class);
    }
    let m = meta(st, name, Some(component));
    if templated {
        json!({"metadata": {"name": name, "labels": m["labels"]}, "spec": spec})
    } else {
        object("v1", "PersistentVolumeClaim", m, spec)
    }
}

fn service_ports(s: &ServiceState) -> Vec<Value> {
    let mut ports: Vec<Value> = Vec::new();
    let mut seen = Vec::new();
    for p in &s.ports {
        if seen.contains(&p.container) {
            continue;
        }
        seen.push(p.container);
        let name = p
            .name
            .clone()
            .unwrap_or_else(|| format!("port-{}", p.container));
        ports.push(json!({"name": name, "port": p.container, "targetPort": p.container, "protocol": if p.protocol == Protocol::Udp { "UDP" } else { "TCP" }}));
    }
    if let Some(r) = &s.route
        && !seen.contains(&r.port)
    {
        ports
            .push(json!({"name": "http", "port": r.port, "targetPort": r.port, "protocol": "TCP"}));
    }
    ports
}

/// A Service's ports: the service's own, and for GitLab the registry's when it is routed (CI
/// jobs push images to it, so the runners' egress to GitLab includes it too).
fn k8s_service_ports(st: &PlatformState, s: &ServiceState) -> Vec<Value> {
    let mut ports = service_ports(s);
    if s.role == Role::Gitlab && registry_routed(st) {
        ports.push(json!({"name": "registry", "port": crate::registry::PORT, "targetPort": crate::registry::PORT, "protocol": "TCP"}));
    }
    ports
}

fn registry_routed(st: &PlatformState) -> bool {
    st.ingress.as_ref().is_some_and(|i| i.registry) && st.base_domain.is_some()
}

/// The registry's route: its host and GitLab's route middlewares without the body limit
/// (layers are pushed in one request) and without the guard.
fn registry_route(st: &PlatformState) -> Option<(String, &ServiceState, Vec<String>)> {
    let domain = st.base_domain.as_ref().filter(|_| registry_routed(st))?;
    let gitlab = st.services.iter().find(|s| s.role == Role::Gitlab)?;
    let middlewares = gitlab
        .route
        .as_ref()
        .map(|r| {
            r.middlewares
                .iter()
                .filter(|m| !matches!(m.as_str(), "body-limit" | "guard" | "guard-headers"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Some((
        format!("{}.{domain}", crate::registry::SUBDOMAIN),
        gitlab,
        middlewares,
    ))
}

/// The registry's own `Ingress`: the annotations that differ from the other routes' (no body
/// limit, no buffering, long pauses) apply to a whole `Ingress` object.
fn registry_ingress(st: &PlatformState) -> Option<Value> {
    let ing = st.ingress.as_ref()?;
    let (host, gitlab, middlewares) = registry_route(st)?;
    let mut annotations = Map::new();
    annotations.insert(
        "external-dns.alpha.kubernetes.io/hostname".into(),
        json!(host),
    );
    match ing.class {
        IngressClass::Nginx => {
            let t = crate::registry::TIMEOUT_SECS.to_string();
            for (k, v) in [
                ("proxy-body-size", "0"),
                ("proxy-request-buffering", "off"),
                ("proxy-buffering", "off"),
                ("proxy-read-timeout", t.as_str()),
                ("proxy-send-timeout", t.as_str()),
            ] {
                annotations.insert(format!("nginx.ingress.kubernetes.io/{k}"), json!(v));
            }
            if !ing.allow.is_empty() {
                annotations.insert(
                    "nginx.ingress.kubernetes.io/whitelist-source-range".into(),
                    json!(ing.allow.join(",")),
                );
            }
        }
        IngressClass::Traefik => {
            traefik_router_annotations(st, &middlewares, &mut annotations);
        }
    }
    let mut m = meta(st, &format!("{}-registry", st.project), Some("ingress"));
    m["annotations"] = Value::Object(annotations);
    Some(object(
        "networking.k8s.io/v1",
        "Ingress",
        m,
        json!({
            "ingressClassName": match ing.class { IngressClass::Traefik => "traefik", IngressClass::Nginx => "nginx" },
            "tls": [{"hosts": [host], "secretName": tls_secret_name(st)}],
            "rules": [{
                "host": host,
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": gitlab.name, "port": {"number": crate::registry::PORT}}},
                }]},
            }],
        }),
    ))
}

/// An `Ingress`'s Traefik router: the `websecure` entry point and `middlewares` (the
/// `Middleware` objects of traefik.yaml, in the project's namespace).
fn traefik_router_annotations(
    st: &PlatformState,
    middlewares: &[String],
    annotations: &mut Map<String, Value>,
) {
    annotations.insert(
        "traefik.ingress.kubernetes.io/router.entrypoints".into(),
        json!("websecure"),
    );
    annotations.insert(
        "traefik.ingress.kubernetes.io/router.middlewares".into(),
        json!(
            middlewares
                .iter()
                .map(|m| format!("{}-{m}@kubernetescrd", st.project))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
}

fn object(api: &str, kind: &str, metadata: Value, spec: Value) -> Value {
    let mut o = Map::new();
    o.insert("apiVersion".into(), json!(api));
    o.insert("kind".into(), json!(kind));
    o.insert("metadata".into(), metadata);
    o.insert("spec".into(), spec);
    Value::Object(o)
}

/// One file of the export: its objects and the comment above them.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The file name (`gitlab.yaml`).
    pub file: String,
    /// The comment at the top (lines after the first start with `# `).
    pub head: String,
    pub objects: Vec<Value>,
}

impl Manifest {
    fn new(file: impl Into<String>, head: impl Into<String>, objects: Vec<Value>) -> Self {
        Self {
            file: file.into(),
            head: head.into(),
            objects,
        }
    }

    /// The file's text: the comment, then the objects as YAML documents.
    pub fn text(&self) -> String {
        let mut out = format!("# Rendered by autogit: {}\n", self.head);
        for (i, d) in self.objects.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&to_yaml(d));
        }
        out
    }
}

/// `KEY=...` for a literal, `KEY=<path>` from a file for the `_FILE` settings.
fn secret_args(keys: &[String]) -> String {
    keys.iter()
        .map(|k| match k.strip_suffix("_FILE") {
            Some(_) => format!(" --from-file={k}=<path>"),
            None => format!(" --from-literal={k}=..."),
        })
        .collect()
}

/// Whether the service has a place in the cluster: the ingress container is replaced by the
/// cluster's ingress controller, the API (the host's own binary driving the host's engine),
/// the guard autogit deploys (the host's binary too: a cluster's guard is named by
/// `platform.guard_forward_auth`) and the host's exporters have no meaning there.
pub fn in_cluster(s: &ServiceState) -> bool {
    !matches!(s.role, Role::Ingress | Role::Api | Role::Guard)
        && !HOST_EXPORTERS.contains(&s.name.as_str())
}

/// Whether the service's requests go through the guard in proxy mode (`guard-headers`: the
/// guard autogit deploys, or `platform.guard_proxy`). That guard runs beside the Docker
/// host's ingress and has no place in a cluster, so such a service is not routed there: it
/// fails closed, as the host's ingress does while the guard is down, instead of being
/// served unchecked.
pub fn behind_proxy_guard(s: &ServiceState) -> bool {
    s.route
        .as_ref()
        .is_some_and(|r| r.middlewares.iter().any(|m| m == "guard-headers"))
}

/// The exporters that read the Docker host itself (its root file system, the engine's
/// socket): in a cluster they are per-node DaemonSets of the cluster's own monitoring
/// (kube-prometheus, the kubelet's cAdvisor), not one Deployment of the platform.
const HOST_EXPORTERS: [&str; 2] = ["node-exporter", "cadvisor"];

fn workload(st: &PlatformState, s: &ServiceState, files: &BTreeMap<String, String>) -> Vec<Value> {
    let (c, pod) = container(st, s, files);
    let component = role_name(s.role);
    let mut docs = Vec::new();
    if !pod.config_files.is_empty() {
        let mut o = Map::new();
        o.insert("apiVersion".into(), json!("v1"));
        o.insert("kind".into(), json!("ConfigMap"));
        o.insert(
            "metadata".into(),
            meta(st, &format!("{}-config", s.name), Some(&component)),
        );
        o.insert("data".into(), json!(pod.config_files));
        docs.push(Value::Object(o));
    }
    if s.role == Role::Gitlab {
        let claims: Vec<Value> = pod
            .claims
            .iter()
            .map(|(n, _)| claim(st, n, &component, true))
            .collect();
        let spec = pod_spec(s, c, &pod, false);
        docs.push(object(
            "apps/v1",
            "StatefulSet",
            meta(st, &s.name, Some(&component)),
            json!({
                "serviceName": s.name,
                "replicas": 1,
                "selector": {"matchLabels": selector(st, &s.name)},
                "template": template(st, s, spec),
                "volumeClaimTemplates": claims,
            }),
        ));
    } else {
        for (n, _) in &pod.claims {
            docs.push(claim(st, n, &component, false));
        }
        let spec = pod_spec(s, c, &pod, true);
        let replicas = i32::from(!s.on_demand);
        let mut d = json!({
            "replicas": replicas,
            "selector": {"matchLabels": selector(st, &s.name)},
            "template": template(st, s, spec),
        });
        if !pod.claims.is_empty() {
            // A ReadWriteOnce claim cannot be held by the old and the new pod at once.
            d["strategy"] = json!({"type": "Recreate"});
        }
        let mut m = meta(st, &s.name, Some(&component));
        let mut annotations = Map::new();
        // Kubernetes starts everything at once; the order compose keeps is recorded here, and
        // the startup probes and restarts do the waiting.
        let deps: Vec<&str> = s
            .depends_on
            .iter()
            .filter(|d| st.service(d).is_some_and(in_cluster))
            .map(String::as_str)
            .collect();
        if !deps.is_empty() {
            annotations.insert("autogit.io/depends-on".into(), json!(deps.join(",")));
        }
        if s.on_demand {
            // Scaled up by autogit when jobs wait for the runner's tags.
            annotations.insert("autogit.io/on-demand".into(), json!("true"));
        }
        if !annotations.is_empty() {
            m["annotations"] = Value::Object(annotations);
        }
        docs.push(object("apps/v1", "Deployment", m, d));
    }
    let ports = k8s_service_ports(st, s);
    if !ports.is_empty() {
        let mut spec = json!({
            "selector": selector(st, &s.name),
            "ports": ports,
        });
        if s.role == Role::Gitlab {
            spec["clusterIP"] = json!("None");
        }
        docs.push(object(
            "v1",
            "Service",
            meta(st, &s.name, Some(&component)),
            spec,
        ));
    }
    if s.role == Role::Gitlab
        && let Some(ssh) = s.ports.iter().find(|p| p.container == 22)
    {
        let mut m = meta(st, &format!("{}-ssh", s.name), Some(&component));
        if let Some(r) = &s.route {
            m["annotations"] =
                json!({"external-dns.alpha.kubernetes.io/hostname": format!("ssh.{}", r.host)});
        }
        docs.push(object(
            "v1",
            "Service",
            m,
            json!({
                "type": "LoadBalancer",
                "selector": selector(st, &s.name),
                "ports": [{"name": "ssh", "port": ssh.host, "targetPort": 22, "protocol": "TCP"}],
            }),
        ));
    }
    docs
}

fn ingress(st: &PlatformState, routed: &[&ServiceState]) -> Option<Vec<Value>> {
    let ing = st.ingress.as_ref()?;
    // With Traefik, a service behind the guard is routed by the IngressRoute only: a plain
    // Ingress rule beside it would be a way around the guard.
    let routed: Vec<&ServiceState> = routed
        .iter()
        .copied()
        .filter(|s| {
            ing.class != IngressClass::Traefik
                || !s
                    .route
                    .as_ref()
                    .is_some_and(|r| r.middlewares.iter().any(|m| m == "guard"))
        })
        .collect();
    if routed.is_empty() {
        return None;
    }
    let hosts: Vec<String> = routed
        .iter()
        .filter_map(|s| s.route.as_ref())
        .flat_map(|r| std::iter::once(r.host.clone()).chain(r.aliases.iter().cloned()))
        .collect();
    let class = match ing.class {
        IngressClass::Traefik => "traefik",
        IngressClass::Nginx => "nginx",
    };
    let mut annotations = Map::new();
    annotations.insert(
        "external-dns.alpha.kubernetes.io/hostname".into(),
        json!(hosts.join(",")),
    );
    if !ing.allow.is_empty() && ing.class == IngressClass::Nginx {
        annotations.insert(
            "nginx.ingress.kubernetes.io/whitelist-source-range".into(),
            json!(ing.allow.join(",")),
        );
    }
    if ing.class == IngressClass::Traefik {
        // The middlewares every route has (traefik.yaml defines them; the guard is per
        // service, on the IngressRoute only).
        let common: Vec<String> = routed
            .iter()
            .filter_map(|s| s.route.as_ref())
            .map(|r| r.middlewares.clone())
            .reduce(|a, b| a.into_iter().filter(|m| b.contains(m)).collect())
            .unwrap_or_default();
        traefik_router_annotations(st, &common, &mut annotations);
    }
    let mut m = meta(st, &st.project, Some("ingress"));
    m["annotations"] = Value::Object(annotations);
    let rules: Vec<Value> = routed
        .iter()
        .filter_map(|s| s.route.as_ref().map(|r| (s, r)))
        .flat_map(|(s, r)| {
            std::iter::once(&r.host).chain(&r.aliases).map(move |host| {
                json!({
                    "host": host,
                    "http": {"paths": [{
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": s.name, "port": {"number": r.port}}},
                    }]},
                })
            })
        })
        .collect();
    let mut docs = vec![object(
        "networking.k8s.io/v1",
        "Ingress",
        m,
        json!({
            "ingressClassName": class,
            "tls": [{"hosts": hosts, "secretName": tls_secret_name(st)}],
            "rules": rules,
        }),
    )];
    docs.extend(registry_ingress(st));
    Some(docs)
}

fn traefik(st: &PlatformState, routed: &[&ServiceState]) -> Option<Vec<Value>> {
    let ing = st.ingress.as_ref()?;
    if ing.class != IngressClass::Traefik || routed.is_empty() {
        return None;
    }
    let mw = |name: &str, spec: Value| {
        object(
            "traefik.io/v1alpha1",
            "Middleware",
            meta(st, name, Some("ingress")),
            spec,
        )
    };
    let mut docs: Vec<Value> = crate::ingress::traefik_middlewares(
        &ing.allow,
        ing.guard.as_deref(),
        routed.iter().any(|s| {
            s.route.as_ref().is_some_and(|r| {
                r.middlewares
                    .iter()
                    .any(|m| m == crate::ingress::CLOUDFLARE_RATE_LIMIT)
            })
        }),
    )
    .into_iter()
    .map(|(name, spec)| mw(name, spec))
    .collect();
    let routes: Vec<Value> = routed
        .iter()
        .filter_map(|s| {
            let r = s.route.as_ref()?;
            Some(json!({
                "kind": "Rule",
                "match": std::iter::once(&r.host)
                    .chain(&r.aliases)
                    .map(|h| format!("Host(`{h}`)"))
                    .collect::<Vec<_>>()
                    .join(" || "),
                "middlewares": r.middlewares.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
                "services": [{"name": s.name, "port": r.port}],
            }))
        })
        .collect();
    docs.push(object(
        "traefik.io/v1alpha1",
        "IngressRoute",
        meta(st, &st.project, Some("ingress")),
        json!({
            "entryPoints": ["websecure"],
            "routes": routes,
            "tls": {"secretName": tls_secret_name(st)},
        }),
    ));
    Some(docs)
}

fn solver(st: &PlatformState, acme: &AcmeState) -> Result<Value, String> {
    let secret = |key: &str| json!({"name": dns_secret_name(st), "key": key});
    let setting =
        |settings: &BTreeMap<String, String>, k: &str| settings.get(k).cloned().unwrap_or_default();
    match &acme.challenge {
        Challenge::Http01 => {
            let class = match st.ingress.as_ref().map(|i| i.class) {
                Some(IngressClass::Nginx) => "nginx",
                _ => "traefik",
            };
            Ok(json!({"http01": {"ingress": {"ingressClassName": class}}}))
        }
        Challenge::Dns01 {
            provider, settings, ..
        } => Ok(match provider {
            DnsProvider::Cloudflare => {
                json!({"dns01": {"cloudflare": {"apiTokenSecretRef": secret("CLOUDFLARE_API_TOKEN")}}})
            }
            DnsProvider::Route53 => {
                let mut r = json!({
                    "region": settings.get("AWS_REGION").cloned().unwrap_or_else(|| "us-east-1".into()),
                    "accessKeyIDSecretRef": secret("AWS_ACCESS_KEY_ID"),
                    "secretAccessKeySecretRef": secret("AWS_SECRET_ACCESS_KEY"),
                });
                if let Some(z) = settings.get("AWS_HOSTED_ZONE_ID") {
                    r["hostedZoneID"] = json!(z);
                }
                json!({"dns01": {"route53": r}})
            }
            DnsProvider::Rfc2136 => json!({"dns01": {"rfc2136": {
                "nameserver": setting(settings, "RFC2136_SERVER"),
                "tsigKeyName": setting(settings, "RFC2136_TSIG_KEY_NAME"),
                "tsigAlgorithm": settings.get("RFC2136_TSIG_ALGORITHM").map_or_else(|| "HMACSHA256".to_owned(), |a| a.replace('-', "").to_ascii_uppercase()),
                "tsigSecretSecretRef": secret("RFC2136_TSIG_SECRET"),
            }}}),
            DnsProvider::Gcloud => json!({"dns01": {"cloudDNS": {
                "project": setting(settings, "GCP_PROJECT"),
                "serviceAccountSecretRef": secret("GCP_SERVICE_ACCOUNT_FILE"),
            }}}),
            DnsProvider::None
            | DnsProvider::Dnsmasq
            | DnsProvider::Manual
            | DnsProvider::Extension => {
                return Err(format!(
                    "DNS_PROVIDER={} has no cert-manager DNS-01 solver: create the Secret {} yourself, or use ACME_CHALLENGE=http-01",
                    serde_json::to_value(provider)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    tls_secret_name(st)
                ));
            }
        }),
    }
}

fn certificates(st: &PlatformState) -> Option<Manifest> {
    let acme = st.acme.as_ref()?;
    let cert = st.certificates.first()?;
    let issuer = format!("{}-acme", st.project);
    let solver = match solver(st, acme) {
        Ok(s) => s,
        Err(why) => {
            return Some(Manifest {
                file: "certificate.yaml".to_owned(),
                head: format!("no certificate issuer.\n# {why}"),
                objects: Vec::new(),
            });
        }
    };
    let mut acme_spec = Map::new();
    acme_spec.insert("server".into(), json!(acme.directory));
    if let Some(e) = &acme.email {
        acme_spec.insert("email".into(), json!(e));
    }
    acme_spec.insert(
        "privateKeySecretRef".into(),
        json!({"name": format!("{}-acme-account", st.project)}),
    );
    acme_spec.insert("solvers".into(), json!([solver]));
    let mut issuer_meta = meta(st, &issuer, Some("tls"));
    // A ClusterIssuer is cluster-scoped.
    if let Some(m) = issuer_meta.as_object_mut() {
        m.remove("namespace");
    }
    let dns_names: Vec<String> = cert.dns_names.iter().map(|n| canonical_name(n)).collect();
    let docs = [
        object(
            "cert-manager.io/v1",
            "ClusterIssuer",
            issuer_meta,
            json!({"acme": acme_spec}),
        ),
        object(
            "cert-manager.io/v1",
            "Certificate",
            meta(st, &format!("{}-{}", st.project, cert.name), Some("tls")),
            json!({
                "secretName": tls_secret_name(st),
                "dnsNames": dns_names,
                "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
            }),
        ),
    ];
    Some(Manifest {
        file: "certificate.yaml".to_owned(),
        head: "cert-manager issuer and certificate (custom resources: install cert-manager first)."
            .to_owned(),
        objects: docs.to_vec(),
    })
}

/// Runners take no connection, and reach only GitLab, the cluster's DNS and the internet
/// (never private ranges: the rest of the platform, the nodes, cloud metadata); the other
/// services take none from runners.
fn network_policies(st: &PlatformState, runners: &[&ServiceState]) -> Vec<Value> {
    if runners.is_empty() {
        return Vec::new();
    }
    let runner_sel = json!({"matchLabels": {"autogit.io/runner": "true"}});
    let gitlab_ports: Vec<Value> = st
        .service("gitlab")
        .map(|g| {
            k8s_service_ports(st, g)
                .iter()
                .map(|p| json!({"port": p["targetPort"], "protocol": p["protocol"]}))
                .collect()
        })
        .unwrap_or_default();
    let private = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
    ];
    vec![
        object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            meta(st, "runners-isolated", Some("runner")),
            json!({
                "podSelector": runner_sel,
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": selector(st, "gitlab")}}], "ports": gitlab_ports},
                    {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": private}}]},
                ],
            }),
        ),
        object(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            meta(st, "platform-not-from-runners", Some("runner")),
            json!({
                "podSelector": {"matchExpressions": [
                    {"key": "autogit.io/runner", "operator": "DoesNotExist"},
                    {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["gitlab"]},
                ]},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [
                    {"podSelector": {"matchExpressions": [{"key": "autogit.io/runner", "operator": "DoesNotExist"}]}},
                    {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [st.project]}]}},
                ]}],
            }),
        ),
    ]
}

/// On one host the ingress publishes GitLab's SSH port (its `ssh` entry point, container port
/// [`crate::ingress::SSH_ENTRY_PORT`]); the cluster has no such ingress container (its routes are
/// `Ingress` objects, which carry HTTP only), so the port goes back to GitLab: its pod port 22,
/// its Service, the `-ssh` LoadBalancer and the network policy.
fn gitlab_ssh_to_gitlab(st: &PlatformState) -> PlatformState {
    let mut st = st.clone();
    let ssh = st
        .services
        .iter_mut()
        .filter(|s| s.role == Role::Ingress)
        .find_map(|s| {
            let i = s
                .ports
                .iter()
                .position(|p| p.container == crate::ingress::SSH_ENTRY_PORT)?;
            Some(s.ports.remove(i))
        });
    if let (Some(ssh), Some(gitlab)) =
        (ssh, st.services.iter_mut().find(|s| s.role == Role::Gitlab))
        && !gitlab.ports.iter().any(|p| p.container == 22)
    {
        gitlab.ports.push(crate::state::Port {
            bind: None,
            container: 22,
            ..ssh
        });
    }
    st
}

/// The manifests, as (file name, text), in a fixed order: [`objects`] as YAML.
pub fn manifests(st: &PlatformState, files: &BTreeMap<String, String>) -> Vec<(String, String)> {
    objects(st, files)
        .into_iter()
        .map(|m| {
            let text = m.text();
            (m.file, text)
        })
        .collect()
}

/// The objects of every file, in a fixed order. `files` are the rendered configuration files
/// (path under `rendered/` → text) that services mount; a mount whose file is not given is
/// left out.
pub fn objects(st: &PlatformState, files: &BTreeMap<String, String>) -> Vec<Manifest> {
    let st = &gitlab_ssh_to_gitlab(st);
    let mut out = Vec::new();
    let ns_meta = json!({"name": st.project, "labels": {"app.kubernetes.io/instance": st.project, "app.kubernetes.io/managed-by": "autogit"}});
    let mut ns = Map::new();
    ns.insert("apiVersion".into(), json!("v1"));
    ns.insert("kind".into(), json!("Namespace"));
    ns.insert("metadata".into(), ns_meta);
    let secret_keys: Vec<String> = {
        let mut v: Vec<String> = st
            .services
            .iter()
            .filter(|s| in_cluster(s))
            .flat_map(|s| s.env.iter())
            .filter(|e| matches!(e.value, EnvValue::Secret | EnvValue::Withheld))
            .map(|e| e.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut head = String::from(
        "namespace.\n# Secrets are referenced, never written here. Create them before applying:\n",
    );
    if !secret_keys.is_empty() {
        head.push_str(&format!(
            "#   kubectl -n {} create secret generic {}{}\n",
            st.project,
            secrets_name(st),
            secret_args(&secret_keys)
        ));
    }
    if let Some(AcmeState {
        challenge: Challenge::Dns01 { secrets, .. },
        ..
    }) = &st.acme
        && !secrets.is_empty()
    {
        head.push_str(&format!(
            "#   kubectl -n cert-manager create secret generic {}{}\n",
            dns_secret_name(st),
            secret_args(secrets)
        ));
    }
    out.push(Manifest::new(
        "namespace.yaml",
        head.trim_end(),
        vec![Value::Object(ns)],
    ));
    let placed: Vec<&ServiceState> = st.services.iter().filter(|s| in_cluster(s)).collect();
    for s in &placed {
        out.push(Manifest::new(
            format!("{}.yaml", s.name),
            format!("{} ({}).", s.name, role_name(s.role)),
            workload(st, s, files),
        ));
    }
    let routed: Vec<&ServiceState> = placed
        .iter()
        .copied()
        .filter(|s| s.route.is_some() && !behind_proxy_guard(s))
        .collect();
    let unguarded: Vec<&str> = placed
        .iter()
        .filter(|s| behind_proxy_guard(s))
        .map(|s| s.name.as_str())
        .collect();
    let left_out = (!unguarded.is_empty()).then(|| {
        format!(
            "\n# Not routed: {} (behind the guard in proxy mode, which runs beside a Docker host's\n# ingress and has no place here; a guard the cluster reaches can check them through\n# Traefik's forward-auth: platform.guard_forward_auth).",
            unguarded.join(", ")
        )
    });
    if let Some(docs) = ingress(st, &routed) {
        let mut head = "ingress (networking.k8s.io/v1) with ExternalDNS annotations.".to_owned();
        head.push_str(left_out.as_deref().unwrap_or(""));
        out.push(Manifest::new("ingress.yaml", head, docs));
    }
    if let Some(docs) = traefik(st, &routed) {
        let mut head =
            "Traefik IngressRoute and middlewares (custom resources: Traefik's CRDs).".to_owned();
        head.push_str(left_out.as_deref().unwrap_or(""));
        if st.ingress.as_ref().is_some_and(|i| i.guard.is_some()) {
            head.push_str(
                "\n# Services behind the guard are routed here only, through its forward-auth.",
            );
        }
        out.push(Manifest::new("traefik.yaml", head, docs));
    }
    if let Some(m) = certificates(st) {
        out.push(m);
    }
    let runners: Vec<&ServiceState> = placed
        .iter()
        .copied()
        .filter(|s| s.role == Role::Runner)
        .collect();
    let policies = network_policies(st, &runners);
    if !policies.is_empty() {
        out.push(Manifest::new(
            "network-policies.yaml",
            "network policies isolating the runners.",
            policies,
        ));
    }
    out
}
