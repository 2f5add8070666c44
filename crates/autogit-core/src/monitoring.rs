//! Monitoring configuration, pure: Prometheus's scrape configuration (autogit's own
//! `/metrics` with a bearer token file, node-exporter, the platform's services), the alert
//! rules over autogit's metrics, and Alertmanager's configuration routing to the webhooks of
//! `health.notify`. Snapshot-tested; checked by `promtool` and `amtool` in the binary's tests.
//!
//! The metric names used here are the ones `autogit_app::metrics` exposes; a rename there
//! must be made here too (`crates/autogit/tests/prometheus.rs` scrapes the real exposition and
//! evaluates every rule's expression against it).

use crate::config::{Config, Notify};
use crate::emit::to_yaml;
use serde_json::{Value, json};

/// Where autogit's own `/metrics` is scraped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutogitTarget {
    /// `host:port` of `autogit serve` or `autogit daemon --api-listen`.
    pub address: String,
    /// `http` or `https`.
    pub scheme: String,
    /// A file holding an API key (viewer role; the `metrics` scope is enough), read by
    /// Prometheus at every scrape (`authorization.credentials_file`): the key is never in the
    /// configuration itself.
    pub token_file: String,
}

/// Everything a Prometheus configuration names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusSetup {
    pub scrape_interval_s: u64,
    pub evaluation_interval_s: u64,
    /// Prometheus's own address, scraped as job `prometheus`.
    pub prometheus: String,
    pub autogit: Option<AutogitTarget>,
    /// node-exporter's `host:port` (job `node`): the host's disks, memory, CPU.
    pub node_exporter: Option<String>,
    /// Alertmanager's `host:port`.
    pub alertmanager: Option<String>,
    /// Rule files, as Prometheus sees their paths.
    pub rule_files: Vec<String>,
    /// Other jobs: (job name, `host:port`, metrics path); entries with the same name are one
    /// job with several targets.
    pub jobs: Vec<(String, String, String)>,
}

/// The file holding the API key Prometheus scrapes autogit with, beside `prometheus.yml` (the
/// rendered `prometheus/` directory is mounted at `/etc/prometheus`; relative paths are the
/// configuration file's directory). `app::metrics::ensure_scrape_key` writes it.
pub const AUTOGIT_TOKEN_FILE: &str = "autogit.token";
/// The alert rules, beside `prometheus.yml`.
pub const ALERTS_FILE: &str = "alerts.yml";

/// Prometheus's configuration for `setup`.
pub fn prometheus_config(setup: &PrometheusSetup) -> String {
    let job = |name: &str, target: &str| json!({"job_name": name, "static_configs": [{"targets": [target]}]});
    let mut jobs = vec![job("prometheus", &setup.prometheus)];
    if let Some(a) = &setup.autogit {
        jobs.push(json!({
            "job_name": "autogit",
            "scheme": a.scheme,
            "metrics_path": "/metrics",
            "authorization": {"type": "Bearer", "credentials_file": a.token_file},
            "static_configs": [{"targets": [a.address]}],
        }));
    }
    if let Some(n) = &setup.node_exporter {
        jobs.push(job("node", n));
    }
    // Entries with the same job name are one job with several targets (Prometheus refuses a
    // job name twice).
    let mut seen: Vec<&str> = Vec::new();
    for (name, _, path) in &setup.jobs {
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let targets: Vec<&str> = setup
            .jobs
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, t, _)| t.as_str())
            .collect();
        let mut j = json!({"job_name": name, "static_configs": [{"targets": targets}]});
        if path != "/metrics" {
            j["metrics_path"] = json!(path);
        }
        jobs.push(j);
    }
    let mut doc = json!({
        "global": {
            "scrape_interval": format!("{}s", setup.scrape_interval_s),
            "evaluation_interval": format!("{}s", setup.evaluation_interval_s),
        },
    });
    if !setup.rule_files.is_empty() {
        doc["rule_files"] = json!(setup.rule_files);
    }
    if let Some(am) = &setup.alertmanager {
        doc["alerting"] = json!({"alertmanagers": [{"static_configs": [{"targets": [am]}]}]});
    }
    doc["scrape_configs"] = Value::Array(jobs);
    format!("# Rendered by autogit.\n{}", to_yaml(&doc))
}

/// Thresholds of the alert rules.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertThresholds {
    /// Repairs of one service within 15 minutes that make a storm (more than this many).
    pub repair_storm: u32,
    /// Days before the certificate's end.
    pub certificate_days: u32,
    /// Failed runs in a row of one mirror.
    pub mirror_failures: u32,
    /// Used fraction of a file system.
    pub disk_used: f64,
    /// Used fraction of a GPU's memory.
    pub gpu_memory_used: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            repair_storm: 3,
            certificate_days: 14,
            mirror_failures: 3,
            disk_used: 0.85,
            gpu_memory_used: 0.95,
        }
    }
}

/// One alert rule: name, PromQL, `for`, severity, summary (a Go template over `$labels` and
/// `$value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRule {
    pub name: &'static str,
    pub expr: String,
    pub for_: &'static str,
    pub severity: &'static str,
    pub summary: String,
}

/// The alert rules over autogit's metrics and node-exporter's.
pub fn alert_rules(t: &AlertThresholds) -> Vec<AlertRule> {
    let pct = |f: f64| format!("{:.0}", f * 100.0);
    vec![
        AlertRule {
            name: "AutogitServiceFailed",
            expr: r#"autogit_service_state{state="FAILED"} == 1"#.into(),
            for_: "1m",
            severity: "critical",
            summary: "{{ $labels.service }} is FAILED".into(),
        },
        AlertRule {
            name: "AutogitFlagRaised",
            expr: "autogit_service_flagged == 1".into(),
            for_: "0m",
            severity: "critical",
            summary: "{{ $labels.service }} needs attention: no automatic repair until `autogit reconcile --clear {{ $labels.service }}`".into(),
        },
        AlertRule {
            name: "AutogitRepairStorm",
            expr: format!(
                "sum by (service) (increase(autogit_service_repairs_total[15m])) > {}",
                t.repair_storm
            ),
            for_: "0m",
            severity: "warning",
            summary: format!(
                "{{{{ $labels.service }}}} was repaired more than {} times in 15 minutes",
                t.repair_storm
            ),
        },
        AlertRule {
            name: "AutogitCertificateExpiring",
            expr: format!(
                "autogit_certificate_expiry_timestamp_seconds - time() < {} * 86400",
                t.certificate_days
            ),
            for_: "0m",
            severity: "warning",
            summary: format!(
                "the TLS certificate ends within {} days and was not renewed",
                t.certificate_days
            ),
        },
        AlertRule {
            name: "AutogitMirrorFailing",
            expr: format!(
                "autogit_mirror_consecutive_failures >= {}",
                t.mirror_failures
            ),
            for_: "0m",
            severity: "warning",
            summary: "mirror {{ $labels.mirror }} failed {{ $value }} runs in a row".into(),
        },
        AlertRule {
            name: "HostDiskAlmostFull",
            expr: format!(
                r#"1 - node_filesystem_avail_bytes{{fstype!~"tmpfs|ramfs|squashfs|overlay"}} / node_filesystem_size_bytes{{fstype!~"tmpfs|ramfs|squashfs|overlay"}} > {}"#,
                t.disk_used
            ),
            for_: "5m",
            severity: "warning",
            summary: format!(
                "{{{{ $labels.mountpoint }}}} on {{{{ $labels.instance }}}} is more than {}% full",
                pct(t.disk_used)
            ),
        },
        AlertRule {
            name: "AutogitGpuMemoryPressure",
            expr: format!(
                "1 - autogit_gpu_memory_free_bytes / autogit_gpu_memory_total_bytes > {}",
                t.gpu_memory_used
            ),
            for_: "10m",
            severity: "warning",
            summary: format!(
                "GPU {{{{ $labels.gpu }}}} on {{{{ $labels.host }}}} has more than {}% of its memory in use",
                pct(t.gpu_memory_used)
            ),
        },
    ]
}

/// The rule file (Prometheus's format) of [`alert_rules`].
pub fn alert_rules_file(t: &AlertThresholds) -> String {
    let rules: Vec<Value> = alert_rules(t)
        .into_iter()
        .map(|r| {
            json!({
                "alert": r.name,
                "expr": r.expr,
                "for": r.for_,
                "labels": {"severity": r.severity},
                "annotations": {"summary": r.summary},
            })
        })
        .collect();
    let doc = json!({"groups": [{"name": "autogit", "rules": rules}]});
    format!("# Rendered by autogit.\n{}", to_yaml(&doc))
}

/// Alertmanager's configuration: every alert goes to the webhooks of `health.notify` (grouped
/// by alert and service, resolved ones too). Alertmanager posts its own JSON (webhook payload
/// version 4), unsigned; with no webhook configured alerts stay in Alertmanager's UI.
pub fn alertmanager_config(notify: &[Notify]) -> String {
    let webhooks: Vec<Value> = notify
        .iter()
        .filter_map(|n| match n {
            Notify::Webhook { url, .. } => Some(json!({"url": url, "send_resolved": true})),
            // Alertmanager routes to webhooks only; the chat notifiers get autogit's events.
            Notify::Log
            | Notify::Slack { .. }
            | Notify::Discord { .. }
            | Notify::Ntfy { .. }
            | Notify::Matrix { .. }
            | Notify::Email { .. }
            | Notify::Extension { .. } => None,
        })
        .collect();
    let receiver = if webhooks.is_empty() {
        json!({"name": "autogit"})
    } else {
        json!({"name": "autogit", "webhook_configs": webhooks})
    };
    let doc = json!({
        "route": {
            "receiver": "autogit",
            "group_by": ["alertname", "service", "mirror"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    });
    format!("# Rendered by autogit.\n{}", to_yaml(&doc))
}

/// The setup for the compose deployment: autogit's `api` service when enabled, the services
/// with a metrics endpoint, GitLab's when its Prometheus is on, the rendered alert rules.
pub fn compose_setup(plan: &crate::plan::Plan, config: &Config) -> PrometheusSetup {
    let has = |n: &str| plan.local().any(|s| s.name == n);
    let mut jobs = Vec::new();
    for s in plan.local() {
        let target = match s.name.as_str() {
            "loki" => Some("loki:3100"),
            "tempo" => Some("tempo:3200"),
            "grafana" => Some("grafana:3000"),
            _ => None,
        };
        if let Some(t) = target {
            jobs.push((s.name.clone(), t.to_owned(), "/metrics".to_owned()));
        }
    }
    if config.gitlab_tuning().prometheus {
        jobs.push(("gitlab".into(), "gitlab:80".into(), "/-/metrics".into()));
    }
    if has("cadvisor") {
        jobs.push(("cadvisor".into(), "cadvisor:8080".into(), "/metrics".into()));
    }
    if has("alertmanager") {
        jobs.push((
            "alertmanager".into(),
            "alertmanager:9093".into(),
            "/metrics".into(),
        ));
    }
    for target in dcgm_targets(config) {
        jobs.push(("dcgm".into(), target, "/metrics".into()));
    }
    let api = plan.local().find(|s| s.name == "api");
    PrometheusSetup {
        scrape_interval_s: config.health.check_interval.as_secs().clamp(5, 300),
        evaluation_interval_s: 60,
        prometheus: "127.0.0.1:9090".into(),
        autogit: api.map(|s| AutogitTarget {
            address: format!("api:{}", s.internal_port.unwrap_or(8000)),
            scheme: "http".into(),
            token_file: AUTOGIT_TOKEN_FILE.into(),
        }),
        node_exporter: has("node-exporter").then(|| "node-exporter:9100".into()),
        alertmanager: has("alertmanager").then(|| "alertmanager:9093".into()),
        rule_files: if has("prometheus") {
            vec![ALERTS_FILE.into()]
        } else {
            Vec::new()
        },
        jobs,
    }
}

/// The setup for a Kubernetes cluster ([`crate::kubernetes`]): the compose setup without what
/// the cluster does not run. The host exporters (node-exporter, cAdvisor) are per-node
/// DaemonSets of the cluster's own monitoring there, and autogit's API is the host's binary
/// driving the host's engine: scraping their compose names would only make targets that are
/// always down. The DCGM exporters of the GPU hosts stay (they are hosts, not pods).
pub fn cluster_setup(plan: &crate::plan::Plan, config: &Config) -> PrometheusSetup {
    let mut s = compose_setup(plan, config);
    s.node_exporter = None;
    s.autogit = None;
    s.jobs
        .retain(|(name, _, _)| !CLUSTER_EXCLUDED_JOBS.contains(&name.as_str()));
    s
}

/// The compose scrape jobs that have no target in a cluster ([`cluster_setup`]).
const CLUSTER_EXCLUDED_JOBS: [&str; 1] = ["cadvisor"];

/// The port NVIDIA's DCGM exporter listens on.
pub const DCGM_PORT: u16 = 9400;

/// The GPU runner hosts Prometheus scrapes the DCGM exporter on (`host:9400`): NVIDIA runners
/// on a named host. Not `auto` (no address until discovery), not `local` (the platform's own
/// host: run the exporter there and add it by hand), not WSL2 (DCGM does not support it;
/// autogit's own GPU inventory covers those hosts).
pub fn dcgm_targets(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = config
        .runners
        .gpu
        .iter()
        .filter(|r| {
            r.gpu == Some(crate::config::GpuVendor::Nvidia)
                && !r.wsl2
                && r.host != "auto"
                && r.host != "local"
        })
        .map(|r| {
            if r.host.contains(':') && !r.host.starts_with('[') {
                format!("[{}]:{DCGM_PORT}", r.host)
            } else {
                format!("{}:{DCGM_PORT}", r.host)
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A compose file that runs NVIDIA's DCGM exporter on a GPU runner host (rendered, not
/// deployed: autogit does not run services on runner hosts). Needs the NVIDIA Container
/// Toolkit; publishes [`DCGM_PORT`] for the platform's Prometheus (job `dcgm`).
pub fn dcgm_exporter_compose() -> String {
    let (image, tag) = crate::plan::images::DCGM_EXPORTER;
    let doc = json!({
        "services": {
            "dcgm-exporter": {
                "image": format!("{image}:{tag}"),
                "container_name": "dcgm-exporter",
                "restart": "unless-stopped",
                "cap_add": ["SYS_ADMIN"],
                "ports": [format!("{DCGM_PORT}:{DCGM_PORT}")],
                "deploy": {"resources": {"reservations": {"devices": [
                    {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
                ]}}},
            },
        },
    });
    format!(
        "# Rendered by autogit: NVIDIA's DCGM exporter for a GPU runner host (not WSL2).\n\
         # On each GPU host: docker compose -f docker-compose.yml up -d\n\
         # Prometheus scrapes it as job `dcgm` on port {DCGM_PORT}.\n{}",
        to_yaml(&doc)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_name_an_expression_and_a_severity() {
        let rules = alert_rules(&AlertThresholds::default());
        assert_eq!(rules.len(), 7);
        let mut names: Vec<_> = rules.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 7, "names are unique");
        for r in &rules {
            assert!(!r.expr.is_empty() && matches!(r.severity, "warning" | "critical"));
        }
    }

    #[test]
    fn thresholds_reach_the_expressions() {
        let t = AlertThresholds {
            certificate_days: 7,
            mirror_failures: 5,
            ..AlertThresholds::default()
        };
        let file = alert_rules_file(&t);
        assert!(file.contains("< 7 * 86400"), "{file}");
        assert!(file.contains(">= 5"), "{file}");
    }

    #[test]
    fn the_token_is_a_file_never_a_value() {
        let s = PrometheusSetup {
            scrape_interval_s: 15,
            evaluation_interval_s: 15,
            prometheus: "127.0.0.1:9090".into(),
            autogit: Some(AutogitTarget {
                address: "api:8000".into(),
                scheme: "http".into(),
                token_file: "/t".into(),
            }),
            node_exporter: None,
            alertmanager: None,
            rule_files: vec![],
            jobs: vec![],
        };
        let c = prometheus_config(&s);
        assert!(c.contains("credentials_file: \"/t\""), "{c}");
        assert!(!c.contains("credentials:"), "{c}");
    }
}
