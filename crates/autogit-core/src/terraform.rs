//! Terraform (HCL) from the platform model ([`crate::state::PlatformState`]): a pure,
//! deterministic function for one Docker host through the `kreuzwerker/docker` provider,
//! plus the DNS records where the DNS provider has a well-known Terraform provider
//! (Cloudflare, Route 53).
//!
//! What maps to what:
//! - the platform network → `docker_network`; each named volume → `docker_volume`
//!   (`<project>_<volume>`, the engine's name of it, so an export adopts nothing by surprise);
//! - every service of this host created with the platform (as in the compose file) → a
//!   `docker_image` and a `docker_container` with the preset's limits (`cpus`, `memory`,
//!   `shm_size`), ports, mounts, environment, health check, autogit's labels and
//!   `depends_on` by reference to the other containers;
//! - the DNS records → `cloudflare_dns_record`s or `aws_route53_record`s (one per name and
//!   type: Route 53 holds record sets); other providers get a comment saying why not.
//!
//! **Secrets are never inlined.** A secret (or a withheld) variable is a `sensitive`
//! Terraform variable (`TF_VAR_<name>` or a `.tfvars` file the deployer keeps), referenced
//! from the container's environment; the DNS providers' credentials likewise (Route 53's are
//! read by the AWS provider from its usual environment, never from these files).

use crate::container::{network_name, volume_name};
use crate::dns::{Record, RecordType};
use crate::plan::{HostPath, Mount, Protocol};
use crate::platform::DnsProvider;
use crate::state::{Challenge, EnvValue, PlatformState, ServiceState};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The `kreuzwerker/docker` provider version the export is written for (pinned: its
/// resource schemas change between releases).
pub const DOCKER_PROVIDER: (&str, &str) = ("kreuzwerker/docker", "3.6.2");
/// Cloudflare's provider, v5 (`cloudflare_dns_record`).
pub const CLOUDFLARE_PROVIDER: (&str, &str) = ("cloudflare/cloudflare", "5.8.2");
/// The AWS provider (`aws_route53_record`).
pub const AWS_PROVIDER: (&str, &str) = ("hashicorp/aws", "6.14.1");

/// HashiCorp's Kubernetes provider (`kubernetes_manifest`, server-side apply), for
/// [`kubernetes_files`].
pub const KUBERNETES_PROVIDER: (&str, &str) = ("hashicorp/kubernetes", "2.36.0");

/// The resource types the export can write (what a checker should expect and no more).
pub const RESOURCE_TYPES: [&str; 7] = [
    "kubernetes_manifest",
    "docker_network",
    "docker_volume",
    "docker_image",
    "docker_container",
    "cloudflare_dns_record",
    "aws_route53_record",
];

/// A quoted HCL string: escapes, and `${`/`%{` doubled so nothing is interpolated.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An HCL identifier (resource and variable names): lowercase, `_` for anything else, never
/// starting with a digit.
pub fn ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// An indenting HCL writer.
#[derive(Default)]
struct Hcl {
    out: String,
    depth: usize,
}

impl Hcl {
    fn line(&mut self, text: &str) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }
    fn open(&mut self, header: &str) {
        self.line(&format!("{header} {{"));
        self.depth += 1;
    }
    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }
    fn attr(&mut self, key: &str, expr: &str) {
        self.line(&format!("{key} = {expr}"));
    }
    fn comment(&mut self, text: &str) {
        for l in text.lines() {
            self.line(&format!("# {l}"));
        }
    }
    fn blank(&mut self) {
        self.out.push('\n');
    }
}

/// Megabytes, rounded up (the provider's unit for `memory` and `shm_size`).
fn megabytes(b: crate::units::Bytes) -> u64 {
    b.0.div_ceil(1024 * 1024)
}

fn cpus(c: f64) -> String {
    let milli = (c * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{}", milli as f64 / 1000.0)
    }
}

fn host_path_var(p: HostPath) -> String {
    ident(p.compose_var())
}

fn host_path_doc(p: HostPath) -> Var {
    Var::plain(format!(
        "The host path autogit calls {} on the deploying host",
        p.compose_var()
    ))
}

/// The services the export creates: those of this host made with the platform (the compose
/// file's); remote and on-demand runners are autogit's to manage.
fn exported(st: &PlatformState) -> impl Iterator<Item = &ServiceState> {
    st.services.iter().filter(|s| s.always_local())
}

/// A Terraform variable of the export.
struct Var {
    description: String,
    sensitive: bool,
    /// A non-secret setting the configuration knows.
    default: Option<String>,
}

impl Var {
    fn plain(description: String) -> Self {
        Self {
            description,
            sensitive: false,
            default: None,
        }
    }
    fn secret(description: String) -> Self {
        Self {
            description,
            sensitive: true,
            default: None,
        }
    }
}

/// The variables, by name.
type Vars = BTreeMap<String, Var>;

/// The Terraform files for `st`: `main.tf`, `variables.tf`, `services.tf` and `dns.tf`,
/// in that order. The configuration files the services mount are expected next to them
/// (the caller writes them, as for compose).
pub fn files(st: &PlatformState) -> Vec<(String, String)> {
    let mut vars: Vars = BTreeMap::new();
    let services = services_tf(st, &mut vars);
    let (dns, providers) = dns_tf(st, &mut vars);
    let main = main_tf(st, &providers);
    let mut v = Hcl::default();
    v.comment(&format!(
        "Variables of the autogit platform `{}`. Sensitive ones are secrets: set them as\nTF_VAR_<name> in the environment or in a .tfvars file kept out of version control.",
        st.project
    ));
    for (name, var) in &vars {
        v.blank();
        v.open(&format!("variable {}", quote(name)));
        v.attr("type", "string");
        v.attr("description", &quote(&var.description));
        if let Some(d) = &var.default {
            v.attr("default", &quote(d));
        }
        if var.sensitive {
            v.attr("sensitive", "true");
        }
        v.close();
    }
    vec![
        ("main.tf".to_owned(), main),
        ("variables.tf".to_owned(), v.out),
        ("services.tf".to_owned(), services),
        ("dns.tf".to_owned(), dns),
    ]
}

fn main_tf(st: &PlatformState, extra: &[(&str, (&str, &str))]) -> String {
    let mut h = Hcl::default();
    h.comment(&format!(
        "Rendered by autogit for project `{}` (preset {}). Run with:\n  terraform init && terraform apply\nThe docker provider reaches the engine at DOCKER_HOST (default: the local socket).",
        st.project, st.preset
    ));
    h.open("terraform");
    h.attr("required_version", &quote(">= 1.3.0"));
    h.open("required_providers");
    let mut providers = vec![("docker", DOCKER_PROVIDER)];
    providers.extend_from_slice(extra);
    for (name, (source, version)) in &providers {
        h.open(&format!("{name} ="));
        h.attr("source", &quote(source));
        h.attr("version", &quote(version));
        h.close();
    }
    h.close();
    h.close();
    h.blank();
    h.open("provider \"docker\"");
    h.close();
    let networks: BTreeSet<&str> = exported(st)
        .flat_map(|s| s.networks.iter().map(String::as_str))
        .chain(std::iter::once(st.network.as_str()))
        .collect();
    for n in networks {
        h.blank();
        h.open(&format!("resource \"docker_network\" {}", quote(&ident(n))));
        h.attr("name", &quote(&network_name(&st.project, n)));
        h.close();
    }
    let volumes = crate::state::named_volumes(exported(st));
    for v in volumes {
        h.blank();
        h.open(&format!("resource \"docker_volume\" {}", quote(&ident(v))));
        h.attr("name", &quote(&volume_name(&st.project, v)));
        h.open("labels");
        h.attr("label", &quote("io.autogit.project"));
        h.attr("value", &quote(&st.project));
        h.close();
        h.close();
    }
    h.out
}

/// The expression of one environment entry (`NAME=value`), adding the variables it needs.
fn env_entry(s: &ServiceState, name: &str, value: &EnvValue, vars: &mut Vars) -> String {
    let text = match value {
        EnvValue::Plain(v) => {
            return quote(&format!("{name}={v}"));
        }
        EnvValue::HostPath(p) => {
            let var = host_path_var(*p);
            vars.entry(var.clone()).or_insert_with(|| host_path_doc(*p));
            var
        }
        EnvValue::Secret => {
            let var = ident(name);
            vars.entry(var.clone())
                .or_insert_with(|| Var::secret(format!("{name}: a secret")));
            var
        }
        EnvValue::Withheld => {
            let var = ident(name);
            vars.entry(var.clone()).or_insert_with(|| {
                Var::secret(format!(
                    "{name} of {}: found on the running container, its value not captured",
                    s.name
                ))
            });
            var
        }
    };
    format!("\"{}=${{var.{text}}}\"", quote(name).trim_matches('"'))
}

fn services_tf(st: &PlatformState, vars: &mut Vars) -> String {
    let mut h = Hcl::default();
    h.comment(&format!(
        "The services of `{}` on this host. Secret variables come from sensitive Terraform\nvariables (variables.tf), never from this file.",
        st.project
    ));
    let left: Vec<&str> = st
        .services
        .iter()
        .filter(|s| !s.always_local())
        .map(|s| s.name.as_str())
        .collect();
    if !left.is_empty() {
        h.comment(&format!(
            "Not here (autogit manages them: remote or on-demand runners): {}",
            left.join(", ")
        ));
    }
    let local: BTreeSet<&str> = exported(st).map(|s| s.name.as_str()).collect();
    for s in exported(st) {
        let id = ident(&s.name);
        h.blank();
        h.open(&format!("resource \"docker_image\" {}", quote(&id)));
        h.attr("name", &quote(&s.image));
        h.attr("keep_locally", "true");
        h.close();
        h.blank();
        h.open(&format!("resource \"docker_container\" {}", quote(&id)));
        h.attr("name", &quote(&s.container_name));
        h.attr("image", &format!("docker_image.{id}.image_id"));
        if let Some(host) = &s.hostname {
            h.attr("hostname", &quote(host));
        }
        h.attr("restart", &quote("unless-stopped"));
        h.attr("cpus", &quote(&cpus(s.resources.cpus)));
        h.attr("memory", &megabytes(s.resources.memory).to_string());
        if let Some(shm) = s.resources.shm_size {
            h.attr("shm_size", &megabytes(shm).to_string());
        }
        if !s.command.is_empty() {
            h.attr("command", &list(s.command.iter().map(|c| quote(c))));
        }
        if !s.env.is_empty() {
            let entries: Vec<String> = s
                .env
                .iter()
                .map(|e| env_entry(s, &e.name, &e.value, vars))
                .collect();
            h.attr("env", &list(entries));
        }
        for p in &s.ports {
            h.open("ports");
            h.attr("internal", &p.container.to_string());
            h.attr("external", &p.host.to_string());
            if let Some(ip) = &p.bind {
                h.attr("ip", &quote(ip));
            }
            h.attr(
                "protocol",
                &quote(if p.protocol == Protocol::Udp {
                    "udp"
                } else {
                    "tcp"
                }),
            );
            h.close();
        }
        for m in &s.mounts {
            h.open("mounts");
            let (kind, source, target, read_only) = match m {
                Mount::Volume { name, target } => (
                    "volume",
                    format!("docker_volume.{}.name", ident(name)),
                    target.clone(),
                    false,
                ),
                // The rendered configuration files, next to these files.
                Mount::Rendered { file, target } => (
                    "bind",
                    format!(
                        "\"${{abspath(path.module)}}/{}\"",
                        quote(file).trim_matches('"')
                    ),
                    target.clone(),
                    true,
                ),
                Mount::Host {
                    path,
                    target,
                    read_only,
                } => ("bind", quote(path), target.clone(), *read_only),
                Mount::HostPath {
                    of,
                    target,
                    read_only,
                } => {
                    let var = host_path_var(*of);
                    vars.entry(var.clone())
                        .or_insert_with(|| host_path_doc(*of));
                    let src = format!("var.{var}");
                    // Mounted at the same absolute path when no target is given.
                    let target = target.clone().unwrap_or_default();
                    ("bind", src, target, *read_only)
                }
            };
            h.attr("type", &quote(kind));
            h.attr("source", &source);
            if target.is_empty() {
                h.attr("target", &source);
            } else {
                h.attr("target", &quote(&target));
            }
            if read_only {
                h.attr("read_only", "true");
            }
            h.close();
        }
        if let Some(hc) = &s.health {
            h.open("healthcheck");
            h.attr("test", &list(hc.test.iter().map(|t| quote(t))));
            h.attr("interval", &quote(&format!("{}s", hc.interval.as_secs())));
            h.attr("timeout", &quote(&format!("{}s", hc.timeout.as_secs())));
            h.attr("retries", &hc.retries.to_string());
            h.attr(
                "start_period",
                &quote(&format!("{}s", hc.start_period.as_secs())),
            );
            h.close();
            // Created healthy before what depends on it is created (like compose's
            // `condition: service_healthy`): the provider waits for the health check, up to its start
            // period and every retry.
            let wait = hc.start_period.as_secs()
                + (hc.interval.as_secs() + hc.timeout.as_secs()) * u64::from(hc.retries.max(1));
            h.attr("wait", "true");
            h.attr("wait_timeout", &wait.max(60).to_string());
        }
        for n in &s.networks {
            h.open("networks_advanced");
            h.attr("name", &format!("docker_network.{}.name", ident(n)));
            h.attr("aliases", &list([quote(&s.name)]));
            h.close();
        }
        let mut labels = vec![
            ("io.autogit.project", st.project.clone()),
            ("io.autogit.service", s.name.clone()),
            (
                "io.autogit.role",
                serde_json::to_value(s.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            ),
        ];
        if let Some(r) = &s.route {
            labels.push(("io.autogit.host", r.host.clone()));
        }
        for (k, v) in labels {
            h.open("labels");
            h.attr("label", &quote(k));
            h.attr("value", &quote(&v));
            h.close();
        }
        if !s.devices.is_empty() {
            h.comment(&format!(
                "Devices for the runner's job containers (its config.toml passes them): {}",
                s.devices.join(", ")
            ));
        }
        let deps: Vec<String> = s
            .depends_on
            .iter()
            .filter(|d| local.contains(d.as_str()))
            .map(|d| format!("docker_container.{}", ident(d)))
            .collect();
        if !deps.is_empty() {
            h.attr("depends_on", &list(deps));
        }
        h.close();
    }
    h.out
}

/// A record's resource name: its name and type (and a counter when several share them).
fn record_ident(r: &Record, seen: &mut BTreeMap<String, usize>) -> String {
    let base = ident(&format!(
        "{}_{}",
        r.name.replace('*', "wildcard"),
        record_type(r.kind).unwrap_or("other")
    ));
    let n = seen.entry(base.clone()).or_insert(0);
    *n += 1;
    if *n == 1 { base } else { format!("{base}_{n}") }
}

fn record_type(k: RecordType) -> Option<&'static str> {
    match k {
        RecordType::A => Some("A"),
        RecordType::Aaaa => Some("AAAA"),
        RecordType::Txt => Some("TXT"),
        RecordType::Cname => Some("CNAME"),
        RecordType::Other => None,
    }
}

/// A non-secret provider setting known from the configuration (the DNS-01 settings).
fn setting(st: &PlatformState, key: &str) -> Option<String> {
    match st.acme.as_ref().map(|a| &a.challenge) {
        Some(Challenge::Dns01 { settings, .. }) => settings.get(key).cloned(),
        _ => None,
    }
}

fn var_with_default(vars: &mut Vars, name: &str, description: String, default: Option<String>) {
    vars.insert(
        name.to_owned(),
        Var {
            description,
            sensitive: false,
            default,
        },
    );
}

type Providers = Vec<(&'static str, (&'static str, &'static str))>;

fn dns_tf(st: &PlatformState, vars: &mut Vars) -> (String, Providers) {
    let mut h = Hcl::default();
    let records: Vec<&Record> = st
        .dns
        .iter()
        .filter(|r| record_type(r.kind).is_some())
        .collect();
    let provider = st.dns_provider;
    let mut providers: Providers = Vec::new();
    if records.is_empty() {
        h.comment("No DNS records: the platform has no base domain, or its provider takes none.");
        return (h.out, providers);
    }
    let mut seen = BTreeMap::new();
    match provider {
        DnsProvider::Cloudflare => {
            providers.push(("cloudflare", CLOUDFLARE_PROVIDER));
            h.comment("The platform's DNS records at Cloudflare (ownership TXT records included).");
            h.open("provider \"cloudflare\"");
            h.attr("api_token", "var.cloudflare_api_token");
            h.close();
            vars.insert(
                "cloudflare_api_token".into(),
                Var::secret("CLOUDFLARE_API_TOKEN: the Cloudflare API token".into()),
            );
            var_with_default(
                vars,
                "cloudflare_zone_id",
                "CLOUDFLARE_ZONE_ID: the zone holding the base domain".into(),
                setting(st, "CLOUDFLARE_ZONE_ID"),
            );
            for r in &records {
                h.blank();
                h.open(&format!(
                    "resource \"cloudflare_dns_record\" {}",
                    quote(&record_ident(r, &mut seen))
                ));
                h.attr("zone_id", "var.cloudflare_zone_id");
                h.attr("name", &quote(&r.name));
                h.attr("type", &quote(record_type(r.kind).unwrap_or("A")));
                h.attr("content", &quote(&r.value));
                h.attr("ttl", &r.ttl.to_string());
                h.close();
            }
        }
        DnsProvider::Route53 => {
            providers.push(("aws", AWS_PROVIDER));
            h.comment("The platform's DNS records in Route 53 (ownership TXT records included). The AWS\nprovider reads its credentials from its usual environment (AWS_ACCESS_KEY_ID,\nAWS_SECRET_ACCESS_KEY), never from these files.");
            h.open("provider \"aws\"");
            h.attr("region", "var.aws_region");
            h.close();
            var_with_default(
                vars,
                "aws_region",
                "AWS_REGION".into(),
                Some(setting(st, "AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned())),
            );
            var_with_default(
                vars,
                "aws_hosted_zone_id",
                "AWS_HOSTED_ZONE_ID: the hosted zone holding the base domain".into(),
                setting(st, "AWS_HOSTED_ZONE_ID"),
            );
            // Route 53 holds record sets: one resource per name and type.
            let mut sets: BTreeMap<(&str, &str), (u32, Vec<&Record>)> = BTreeMap::new();
            for r in &records {
                let e = sets
                    .entry((r.name.as_str(), record_type(r.kind).unwrap_or("A")))
                    .or_insert((r.ttl, Vec::new()));
                e.1.push(r);
            }
            for ((name, kind), (ttl, rs)) in sets {
                h.blank();
                h.open(&format!(
                    "resource \"aws_route53_record\" {}",
                    quote(&record_ident(rs[0], &mut seen))
                ));
                h.attr("zone_id", "var.aws_hosted_zone_id");
                h.attr("name", &quote(name));
                h.attr("type", &quote(kind));
                h.attr("ttl", &ttl.to_string());
                let values = rs.iter().map(|r| {
                    if kind == "TXT" {
                        quote(&format!("\"{}\"", r.value))
                    } else {
                        quote(&r.value)
                    }
                });
                h.attr("records", &list(values));
                h.close();
            }
        }
        other => {
            let why = match other {
                DnsProvider::Rfc2136 => {
                    "RFC 2136 servers are not exported yet (hashicorp/dns could write them); `autogit dns sync` keeps them"
                }
                DnsProvider::Gcloud => {
                    "Google Cloud DNS is not exported yet; `autogit dns sync` keeps them"
                }
                DnsProvider::Dnsmasq => {
                    "dnsmasq is a local file autogit writes, with no Terraform provider"
                }
                DnsProvider::Manual => "DNS_PROVIDER=manual: the records are made by hand",
                DnsProvider::Extension => {
                    "an extension provides the records; it has no Terraform provider"
                }
                DnsProvider::None => "no DNS provider is configured",
                _ => "no Terraform provider",
            };
            h.comment(&format!(
                "No DNS resources: {why}. The records the platform wants:"
            ));
            for r in &records {
                h.comment(&format!(
                    "  {} {} {} (ttl {})",
                    r.name,
                    record_type(r.kind).unwrap_or("?"),
                    r.value,
                    r.ttl
                ));
            }
        }
    }
    (h.out, providers)
}

/// A JSON value as an HCL expression (objects with quoted keys, strings through [`quote`], so
/// nothing in a manifest is interpolated), indented from `depth`.
fn hcl_value(v: &serde_json::Value, depth: usize) -> String {
    use serde_json::Value;
    let pad = "  ".repeat(depth + 1);
    let end = "  ".repeat(depth);
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(a) if a.is_empty() => "[]".to_owned(),
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| format!("{pad}{},\n", hcl_value(x, depth + 1)))
                .collect();
            format!("[\n{}{end}]", items.concat())
        }
        Value::Object(o) if o.is_empty() => "{}".to_owned(),
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, x)| format!("{pad}{} = {}\n", quote(k), hcl_value(x, depth + 1)))
                .collect();
            format!("{{\n{}{end}}}", items.concat())
        }
    }
}

/// Terraform for a Kubernetes cluster: the objects of the Kubernetes export
/// ([`crate::kubernetes::objects`], the same Secrets referenced, never inlined) as
/// `kubernetes_manifest` resources of HashiCorp's provider, which applies them server-side
/// as `kubectl apply --server-side` does. `main.tf` (provider and pins), `variables.tf` (the
/// kubeconfig and its context) and `manifests.tf`, every object after the Namespace depending
/// on it. The cert-manager and Traefik objects need those CRDs installed before `plan`, as
/// `kubernetes_manifest` reads each object's schema from the cluster.
pub fn kubernetes_files(
    st: &PlatformState,
    rendered: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let objects: Vec<serde_json::Value> = crate::kubernetes::objects(st, rendered)
        .into_iter()
        .flat_map(|m| m.objects)
        .collect();
    let mut m = Hcl::default();
    m.comment(&format!(
        "Rendered by autogit for project `{}` (preset {}): the Kubernetes export as Terraform.\nRun with:\n  terraform init && terraform apply\nCreate the Secrets the manifests name first (docs/export.md), and install cert-manager\nand, with Traefik, its CRDs: kubernetes_manifest reads every object's schema at plan time.",
        st.project, st.preset
    ));
    m.open("terraform");
    m.attr("required_version", &quote(">= 1.5"));
    m.open("required_providers");
    m.open("kubernetes =");
    m.attr("source", &quote(KUBERNETES_PROVIDER.0));
    m.attr("version", &quote(KUBERNETES_PROVIDER.1));
    m.close();
    m.close();
    m.close();
    m.blank();
    m.open(&format!("provider {}", quote("kubernetes")));
    m.attr("config_path", "var.kubeconfig");
    m.attr("config_context", "var.kube_context");
    m.close();
    let mut v = Hcl::default();
    v.comment("The cluster: a kubeconfig file and one of its contexts.");
    for (name, description, default) in [
        (
            "kubeconfig",
            "Path of the kubeconfig file.",
            quote("~/.kube/config"),
        ),
        (
            "kube_context",
            "The kubeconfig context of the cluster (null: its current context).",
            "null".to_owned(),
        ),
    ] {
        v.blank();
        v.open(&format!("variable {}", quote(name)));
        v.attr("type", "string");
        v.attr("description", &quote(description));
        v.attr("default", &default);
        v.close();
    }
    let mut r = Hcl::default();
    r.comment("One kubernetes_manifest per object of `autogit export kubernetes`.");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut namespace: Option<String> = None;
    for o in &objects {
        let kind = o["kind"].as_str().unwrap_or("object");
        let name = o["metadata"]["name"].as_str().unwrap_or("unnamed");
        let base = ident(&format!("{kind}_{name}"));
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        let id = if *n == 1 { base } else { format!("{base}_{n}") };
        r.blank();
        r.open(&format!(
            "resource {} {}",
            quote("kubernetes_manifest"),
            quote(&id)
        ));
        let body = hcl_value(o, r.depth);
        r.line(&format!("manifest = {body}"));
        match &namespace {
            Some(ns) => r.attr("depends_on", &list([format!("kubernetes_manifest.{ns}")])),
            None if kind == "Namespace" => namespace = Some(id.clone()),
            None => {}
        }
        r.close();
    }
    vec![
        ("main.tf".to_owned(), m.out),
        ("variables.tf".to_owned(), v.out),
        ("manifests.tf".to_owned(), r.out),
    ]
}
