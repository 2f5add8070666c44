//! Grafana's provisioning, pure: the datasources (Prometheus, Loki, Tempo, as enabled), the
//! dashboard provider and the dashboards as JSON (platform overview, GitLab, runners and GPUs,
//! mirrors, security and the guard), rendered from the plan and the configuration. The
//! rendered `grafana/provisioning/` directory is mounted at `/etc/grafana/provisioning` and
//! `grafana/dashboards/` at [`DASHBOARDS_DIR`] (`crate::plan`).
//!
//! The formats are Grafana's documented provisioning files
//! (<https://grafana.com/docs/grafana/latest/administration/provisioning/>): `apiVersion: 1`
//! with `datasources:` or `providers:`, and dashboards in the JSON model
//! (<https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/>).
//! Every PromQL expression here is evaluated by the real Prometheus in
//! `crates/autogit/tests/prometheus.rs`; the metric names are those of `autogit_app::metrics`,
//! node-exporter, cAdvisor, GitLab, gitlab-runner and NVIDIA's DCGM exporter.

use crate::config::Config;
use crate::emit::to_yaml;
use crate::plan::Plan;
use serde_json::{Value, json};

/// Where the grafana container reads the dashboards' JSON files.
pub const DASHBOARDS_DIR: &str = "/etc/grafana/dashboards";
/// Where the grafana container reads its provisioning files.
pub const PROVISIONING_DIR: &str = "/etc/grafana/provisioning";
/// The datasources' uids, which the dashboards' panels name.
pub const PROMETHEUS_UID: &str = "prometheus";
pub const LOKI_UID: &str = "loki";
pub const TEMPO_UID: &str = "tempo";
/// How Grafana finds a trace id in a Loki line (a derived field linking it to Tempo):
/// `trace_id=<32 hex>` or JSON's `"trace_id":"<32 hex>"` (autogit's request lines).
pub const TRACE_ID_IN_LINE: &str = r#"trace_id(?:=|":\s*")([0-9a-f]{32})"#;
/// The dashboards' folder in Grafana.
pub const FOLDER: &str = "autogit";

/// What Grafana is provisioned with: the datasources' URLs as the grafana container reaches
/// them (absent: not enabled), and what the dashboards show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrafanaSetup {
    pub prometheus: Option<String>,
    pub loki: Option<String>,
    pub tempo: Option<String>,
    /// The prefix of the platform's container names (`<project>-`), for cAdvisor's `name`.
    pub container_prefix: String,
    /// Whether GitLab's own Prometheus metrics are scraped (job `gitlab`).
    pub gitlab_metrics: bool,
    /// Whether Prometheus scrapes a DCGM exporter on a GPU runner host (its panels).
    pub gpu_runners: bool,
}

impl GrafanaSetup {
    /// The setup for the compose deployment: each datasource when its service is enabled,
    /// reached by its service name on the platform's network.
    pub fn for_plan(plan: &Plan, config: &Config) -> Self {
        let has = |n: &str| plan.local().any(|s| s.name == n);
        let url = |n: &str, port: u16| has(n).then(|| format!("http://{n}:{port}"));
        Self {
            prometheus: url("prometheus", 9090),
            loki: url("loki", 3100),
            tempo: url("tempo", 3200),
            container_prefix: format!("{}-", plan.project),
            gitlab_metrics: has("prometheus") && config.gitlab_tuning().prometheus,
            gpu_runners: !crate::monitoring::dcgm_targets(config).is_empty(),
        }
    }
}

/// One provisioned dashboard: its file name under `grafana/dashboards/` and its JSON model.
#[derive(Clone, Debug, PartialEq)]
pub struct Dashboard {
    pub file: String,
    pub model: Value,
}

/// The datasources file (`provisioning/datasources/autogit.yml`) as a value.
pub fn datasources_doc(setup: &GrafanaSetup) -> Value {
    let mut list = Vec::new();
    if let Some(url) = &setup.prometheus {
        let mut jd = json!({"httpMethod": "POST", "timeInterval": "15s"});
        if setup.tempo.is_some() {
            jd["exemplarTraceIdDestinations"] =
                json!([{"name": "trace_id", "datasourceUid": TEMPO_UID}]);
        }
        list.push(json!({
            "name": "Prometheus",
            "type": "prometheus",
            "uid": PROMETHEUS_UID,
            "access": "proxy",
            "url": url,
            "isDefault": true,
            "editable": false,
            "jsonData": jd,
        }));
    }
    if let Some(url) = &setup.loki {
        let mut jd = json!({"maxLines": 1000});
        if setup.tempo.is_some() {
            // A trace id in a line links to the trace: `trace_id=…`, or JSON's
            // `"trace_id":"…"` as autogit's own request lines carry it.
            jd["derivedFields"] = json!([{
                "name": "trace_id",
                "matcherRegex": TRACE_ID_IN_LINE,
                "url": "${__value.raw}",
                "datasourceUid": TEMPO_UID,
            }]);
        }
        list.push(json!({
            "name": "Loki",
            "type": "loki",
            "uid": LOKI_UID,
            "access": "proxy",
            "url": url,
            "isDefault": setup.prometheus.is_none(),
            "editable": false,
            "jsonData": jd,
        }));
    }
    if let Some(url) = &setup.tempo {
        let mut jd = json!({"nodeGraph": {"enabled": true}});
        if setup.loki.is_some() {
            jd["tracesToLogsV2"] = json!({
                "datasourceUid": LOKI_UID,
                "filterByTraceID": true,
                "spanStartTimeShift": "-5m",
                "spanEndTimeShift": "5m",
            });
        }
        if setup.prometheus.is_some() {
            jd["serviceMap"] = json!({"datasourceUid": PROMETHEUS_UID});
        }
        list.push(json!({
            "name": "Tempo",
            "type": "tempo",
            "uid": TEMPO_UID,
            "access": "proxy",
            "url": url,
            "isDefault": setup.prometheus.is_none() && setup.loki.is_none(),
            "editable": false,
            "jsonData": jd,
        }));
    }
    json!({"apiVersion": 1, "datasources": list})
}

/// The dashboard provider file (`provisioning/dashboards/autogit.yml`) as a value: the JSON
/// files under [`DASHBOARDS_DIR`], in the `autogit` folder, not editable in the UI (they are
/// rendered again at every deploy).
pub fn provider_doc() -> Value {
    json!({
        "apiVersion": 1,
        "providers": [{
            "name": "autogit",
            "orgId": 1,
            "folder": FOLDER,
            "type": "file",
            "disableDeletion": true,
            "allowUiUpdates": false,
            "updateIntervalSeconds": 60,
            "options": {"path": DASHBOARDS_DIR, "foldersFromFilesStructure": false},
        }],
    })
}

/// What a panel shows.
struct P {
    title: &'static str,
    kind: &'static str,
    unit: &'static str,
    /// (expression, legend); LogQL for a `logs` panel.
    targets: Vec<(String, &'static str)>,
    w: u32,
    h: u32,
}

fn p(title: &'static str, kind: &'static str, unit: &'static str, w: u32) -> P {
    P {
        title,
        kind,
        unit,
        targets: Vec::new(),
        w,
        h: if kind == "stat" { 4 } else { 8 },
    }
}

impl P {
    fn q(mut self, expr: impl Into<String>, legend: &'static str) -> Self {
        self.targets.push((expr.into(), legend));
        self
    }
}

/// A dashboard's JSON model: panels laid out left to right, wrapping at Grafana's 24 columns.
fn dashboard(uid: &str, title: &str, description: &str, panels: Vec<P>) -> Value {
    let (mut x, mut y, mut row_h) = (0u32, 0u32, 0u32);
    let mut out = Vec::new();
    for (i, panel) in panels.into_iter().enumerate() {
        if x + panel.w > 24 {
            x = 0;
            y += row_h;
            row_h = 0;
        }
        let ds = if panel.kind == "logs" {
            json!({"type": "loki", "uid": LOKI_UID})
        } else {
            json!({"type": "prometheus", "uid": PROMETHEUS_UID})
        };
        let targets: Vec<Value> = panel
            .targets
            .iter()
            .enumerate()
            .map(|(j, (expr, legend))| {
                let mut t = json!({
                    "refId": ((b'A' + j as u8) as char).to_string(),
                    "datasource": ds,
                    "expr": expr,
                });
                if !legend.is_empty() {
                    t["legendFormat"] = json!(legend);
                }
                if panel.kind == "table" {
                    t["instant"] = json!(true);
                    t["format"] = json!("table");
                }
                t
            })
            .collect();
        let mut defaults = json!({});
        if !panel.unit.is_empty() {
            defaults["unit"] = json!(panel.unit);
        }
        let options = match panel.kind {
            "logs" => json!({"showTime": true, "wrapLogMessage": true, "sortOrder": "Descending"}),
            "stat" => {
                json!({"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false}, "colorMode": "value", "graphMode": "none"})
            }
            "timeseries" => {
                json!({"legend": {"displayMode": "list", "placement": "bottom", "showLegend": true}, "tooltip": {"mode": "multi", "sort": "desc"}})
            }
            _ => json!({}),
        };
        out.push(json!({
            "id": i + 1,
            "type": panel.kind,
            "title": panel.title,
            "datasource": ds,
            "gridPos": {"x": x, "y": y, "w": panel.w, "h": panel.h},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": targets,
        }));
        x += panel.w;
        row_h = row_h.max(panel.h);
    }
    json!({
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["autogit"],
        "timezone": "browser",
        "editable": false,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [{"type": "dashboards", "tags": ["autogit"], "asDropdown": true, "title": "autogit"}],
        "panels": out,
    })
}

fn overview(s: &GrafanaSetup) -> Value {
    let c = &s.container_prefix;
    let mut panels = vec![
        p("Services healthy", "stat", "none", 6).q("sum(autogit_service_healthy)", ""),
        p("Services FAILED", "stat", "none", 6).q(
            r#"count(autogit_service_state{state="FAILED"} == 1) or vector(0)"#,
            "",
        ),
        p("Flags up", "stat", "none", 6).q("sum(autogit_service_flagged) or vector(0)", ""),
        p("Certificate days left", "stat", "d", 6).q(
            "(autogit_certificate_expiry_timestamp_seconds - time()) / 86400",
            "",
        ),
        p("Service states", "table", "none", 12).q(
            "max by (service, state) (autogit_service_state == 1)",
            "",
        ),
        p("Alerts firing", "table", "none", 12).q(r#"ALERTS{alertstate="firing"}"#, ""),
        p("Repairs per hour", "timeseries", "none", 12).q(
            "sum by (service, how) (increase(autogit_service_repairs_total[1h]))",
            "{{service}} {{how}}",
        ),
        p("Repair duration (p90)", "timeseries", "s", 12).q(
            "histogram_quantile(0.9, sum by (le, service) (rate(autogit_service_repair_duration_seconds_bucket[1h])))",
            "{{service}}",
        ),
        p("Restart budget used", "timeseries", "none", 12)
            .q("autogit_service_restart_budget_used", "{{service}}")
            .q("autogit_restart_budget_max", "budget"),
        p("DNS syncs and drift fixed", "timeseries", "none", 12)
            .q(
                "sum by (provider, result) (increase(autogit_dns_syncs_total[1h]))",
                "syncs {{provider}} {{result}}",
            )
            .q(
                "sum by (provider, change) (increase(autogit_dns_record_changes_total[1h]))",
                "records {{change}}",
            ),
        p("Host CPU busy", "timeseries", "percentunit", 8).q(
            r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))"#,
            "{{instance}}",
        ),
        p("Host memory used", "timeseries", "percentunit", 8).q(
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
            "{{instance}}",
        ),
        p("Disk used", "timeseries", "percentunit", 8).q(
            r#"1 - node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|squashfs|overlay"} / node_filesystem_size_bytes{fstype!~"tmpfs|ramfs|squashfs|overlay"}"#,
            "{{mountpoint}}",
        ),
        p("Container CPU (cores)", "timeseries", "none", 12).q(
            format!(r#"sum by (name) (rate(container_cpu_usage_seconds_total{{name=~"{c}.+"}}[5m]))"#),
            "{{name}}",
        ),
        p("Container memory", "timeseries", "bytes", 12).q(
            format!(r#"sum by (name) (container_memory_working_set_bytes{{name=~"{c}.+"}})"#),
            "{{name}}",
        ),
        p("API requests by status", "timeseries", "reqps", 12).q(
            "sum by (status) (rate(autogit_api_requests_total[5m]))",
            "{{status}}",
        ),
        p("API latency (p99)", "timeseries", "s", 12).q(
            "histogram_quantile(0.99, sum by (le, operation) (rate(autogit_api_request_duration_seconds_bucket[5m])))",
            "{{operation}}",
        ),
    ];
    if s.loki.is_some() {
        panels.push(
            p("Errors in the logs", "logs", "", 24).q(r#"{service=~".+", level="error"}"#, ""),
        );
    }
    dashboard(
        "autogit-overview",
        "autogit: platform overview",
        "Every service's state, repairs, the host and its containers, the API.",
        panels,
    )
}

fn gitlab(s: &GrafanaSetup) -> Value {
    let c = &s.container_prefix;
    let mut panels = vec![
        p("GitLab state", "table", "none", 12).q(
            r#"max by (state) (autogit_service_state{service="gitlab"} == 1)"#,
            "",
        ),
        p("Repairs of GitLab", "stat", "none", 6).q(
            r#"sum(increase(autogit_service_repairs_total{service="gitlab"}[24h])) or vector(0)"#,
            "",
        ),
        p("GitLab scraped", "stat", "none", 6).q(r#"up{job="gitlab"}"#, ""),
        p("GitLab container CPU (cores)", "timeseries", "none", 12).q(
            format!(r#"sum(rate(container_cpu_usage_seconds_total{{name="{c}gitlab"}}[5m]))"#),
            "cpu",
        ),
        p("GitLab container memory", "timeseries", "bytes", 12).q(
            format!(r#"sum(container_memory_working_set_bytes{{name="{c}gitlab"}})"#),
            "working set",
        ),
    ];
    if s.gitlab_metrics {
        panels.extend([
            p("Rails requests by status", "timeseries", "reqps", 12).q(
                r#"sum by (status) (rate(http_requests_total{job="gitlab"}[5m]))"#,
                "{{status}}",
            ),
            p("Rails latency (p95)", "timeseries", "s", 12).q(
                r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="gitlab"}[5m])))"#,
                "p95",
            ),
            p("Puma", "timeseries", "none", 12)
                .q(r#"sum(puma_active_connections{job="gitlab"})"#, "active")
                .q(r#"sum(puma_queued_connections{job="gitlab"})"#, "queued"),
            p("Sidekiq jobs", "timeseries", "none", 12)
                .q(r#"sum(sidekiq_running_jobs{job="gitlab"})"#, "running")
                .q(
                    r#"sum(rate(sidekiq_jobs_failed_total{job="gitlab"}[5m]))"#,
                    "failed/s",
                ),
        ]);
    }
    dashboard(
        "autogit-gitlab",
        "autogit: GitLab",
        "GitLab's state as autogit sees it, its container, and its own metrics when GitLab's Prometheus is on.",
        panels,
    )
}

fn runners(s: &GrafanaSetup) -> Value {
    let mut panels = vec![
        p("Runner hosts up", "table", "none", 12).q("autogit_runner_host_up", ""),
        p("Compute jobs", "stat", "none", 12)
            .q("sum by (state) (autogit_compute_jobs)", "{{state}}"),
        p("Jobs per on-demand runner", "timeseries", "none", 12)
            .q("autogit_runner_jobs", "{{runner}}"),
        p("On-demand starts and stops", "timeseries", "none", 12).q(
            "sum by (runner, action) (increase(autogit_runner_scaling_total[1h]))",
            "{{runner}} {{action}}",
        ),
        p("GPU memory used", "timeseries", "percentunit", 12).q(
            "1 - autogit_gpu_memory_free_bytes / autogit_gpu_memory_total_bytes",
            "{{host}} {{gpu}}",
        ),
        p("GPU memory free", "timeseries", "bytes", 12)
            .q("autogit_gpu_memory_free_bytes", "{{host}} {{gpu}}"),
        p("Compute job changes", "timeseries", "none", 12).q(
            "sum by (to) (increase(autogit_compute_job_transitions_total[1h]))",
            "{{to}}",
        ),
        p("Runner containers repaired", "timeseries", "none", 12).q(
            "sum by (runner, result) (increase(autogit_runner_repairs_total[1h]))",
            "{{runner}} {{result}}",
        ),
    ];
    if s.gpu_runners {
        // NVIDIA's DCGM exporter on the GPU runner hosts: live figures.
        panels.extend([
            p("GPU utilisation (DCGM)", "timeseries", "percent", 12).q(
                "avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)",
                "{{Hostname}} {{gpu}}",
            ),
            p("GPU framebuffer used (DCGM)", "timeseries", "decmbytes", 12).q(
                "sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)",
                "{{Hostname}} {{gpu}}",
            ),
            p("GPU temperature (DCGM)", "timeseries", "celsius", 12).q(
                "max by (Hostname, gpu) (DCGM_FI_DEV_GPU_TEMP)",
                "{{Hostname}} {{gpu}}",
            ),
            p("GPU power (DCGM)", "timeseries", "watt", 12).q(
                "sum by (Hostname, gpu) (DCGM_FI_DEV_POWER_USAGE)",
                "{{Hostname}} {{gpu}}",
            ),
        ]);
    }
    dashboard(
        "autogit-runners",
        "autogit: runners and GPUs",
        "Runner hosts, on-demand scaling, the compute queue and GPU memory.",
        panels,
    )
}

fn mirrors() -> Value {
    dashboard(
        "autogit-mirrors",
        "autogit: mirrors",
        "Lag, failures and run times of every mirrored repository.",
        vec![
            p("Mirrors failing", "stat", "none", 8).q(
                "count(autogit_mirror_consecutive_failures > 0) or vector(0)",
                "",
            ),
            p("Largest lag", "stat", "s", 8).q("max(autogit_mirror_lag_seconds)", ""),
            p("Runs in 24 h", "stat", "none", 8).q(
                "sum(increase(autogit_mirror_runs_total[24h]))",
                "",
            ),
            p("Lag per mirror", "timeseries", "s", 12)
                .q("autogit_mirror_lag_seconds", "{{mirror}}"),
            p("Failures in a row", "table", "none", 12)
                .q("autogit_mirror_consecutive_failures > 0", ""),
            p("Runs by result", "timeseries", "none", 12).q(
                "sum by (result) (increase(autogit_mirror_runs_total[1h]))",
                "{{result}}",
            ),
            p("Run duration (p90)", "timeseries", "s", 12).q(
                "histogram_quantile(0.9, sum by (le, mirror) (rate(autogit_mirror_run_duration_seconds_bucket[1h])))",
                "{{mirror}}",
            ),
            p("Whole sync duration (p90)", "timeseries", "s", 24).q(
                "histogram_quantile(0.9, sum by (le) (rate(autogit_mirror_sync_duration_seconds_bucket[6h])))",
                "p90",
            ),
        ],
    )
}

fn security() -> Value {
    dashboard(
        "autogit-security",
        "autogit: security and the guard",
        "The guard's verdicts and latency, refused API requests, raised flags.",
        vec![
            p("Blocked in 24 h", "stat", "none", 8).q(
                r#"sum(increase(autogit_guard_decisions_total{verdict="blocked"}[24h])) or vector(0)"#,
                "",
            ),
            p("Suspicious in 24 h", "stat", "none", 8).q(
                r#"sum(increase(autogit_guard_decisions_total{verdict="suspicious"}[24h])) or vector(0)"#,
                "",
            ),
            p("Flags raised in 24 h", "stat", "none", 8).q(
                "sum(increase(autogit_service_flags_raised_total[24h])) or vector(0)",
                "",
            ),
            p("Guard verdicts", "timeseries", "reqps", 12).q(
                "sum by (verdict) (rate(autogit_guard_decisions_total[5m]))",
                "{{verdict}}",
            ),
            p("Guard analysis latency", "timeseries", "s", 12)
                .q(
                    "histogram_quantile(0.5, sum by (le) (rate(autogit_guard_analysis_duration_seconds_bucket[5m])))",
                    "p50",
                )
                .q(
                    "histogram_quantile(0.99, sum by (le) (rate(autogit_guard_analysis_duration_seconds_bucket[5m])))",
                    "p99",
                ),
            p("API refusals (401, 403)", "timeseries", "reqps", 12).q(
                r#"sum by (operation, status) (rate(autogit_api_requests_total{status=~"401|403"}[5m]))"#,
                "{{operation}} {{status}}",
            ),
            p("API rate limited (429)", "timeseries", "reqps", 12).q(
                r#"sum by (operation) (rate(autogit_api_requests_total{status="429"}[5m]))"#,
                "{{operation}}",
            ),
            p("Warnings and errors by kind", "timeseries", "none", 24).q(
                r#"sum by (kind, severity) (increase(autogit_events_total{severity=~"warning|error"}[1h]))"#,
                "{{kind}} {{severity}}",
            ),
        ],
    )
}

/// The dashboards, by file name. Empty without Prometheus (every one reads it).
pub fn dashboards(setup: &GrafanaSetup) -> Vec<Dashboard> {
    if setup.prometheus.is_none() {
        return Vec::new();
    }
    [
        ("overview.json", overview(setup)),
        ("gitlab.json", gitlab(setup)),
        ("runners.json", runners(setup)),
        ("mirrors.json", mirrors()),
        ("security.json", security()),
    ]
    .into_iter()
    .map(|(f, model)| Dashboard {
        file: f.to_owned(),
        model,
    })
    .collect()
}

/// Every (datasource type, expression) of a dashboard's panels: PromQL for `prometheus`,
/// LogQL for `loki`.
pub fn queries(model: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in model["panels"].as_array().into_iter().flatten() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let (Some(ty), Some(expr)) = (t["datasource"]["type"].as_str(), t["expr"].as_str()) {
                out.push((ty.to_owned(), expr.to_owned()));
            }
        }
    }
    out
}

/// Every file of Grafana's provisioning, relative to `rendered/`.
pub fn files(setup: &GrafanaSetup) -> Vec<(String, String)> {
    let head = "# Rendered by autogit.\n";
    let mut files = vec![(
        "grafana/provisioning/datasources/autogit.yml".to_owned(),
        format!("{head}{}", to_yaml(&datasources_doc(setup))),
    )];
    let dashboards = dashboards(setup);
    if !dashboards.is_empty() {
        files.push((
            "grafana/provisioning/dashboards/autogit.yml".to_owned(),
            format!("{head}{}", to_yaml(&provider_doc())),
        ));
    }
    for d in dashboards {
        files.push((
            format!("grafana/dashboards/{}", d.file),
            format!("{:#}\n", d.model),
        ));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(prom: bool, loki: bool, tempo: bool) -> GrafanaSetup {
        GrafanaSetup {
            prometheus: prom.then(|| "http://prometheus:9090".into()),
            loki: loki.then(|| "http://loki:3100".into()),
            tempo: tempo.then(|| "http://tempo:3200".into()),
            container_prefix: "autogit-".into(),
            gitlab_metrics: true,
            gpu_runners: true,
        }
    }

    #[test]
    fn datasources_follow_what_is_enabled_with_one_default() {
        for (pr, lo, te) in [
            (true, true, true),
            (true, false, false),
            (false, true, true),
            (false, false, true),
        ] {
            let doc = datasources_doc(&setup(pr, lo, te));
            let ds = doc["datasources"].as_array().unwrap();
            assert_eq!(ds.len(), [pr, lo, te].iter().filter(|b| **b).count());
            assert_eq!(
                ds.iter().filter(|d| d["isDefault"] == true).count(),
                1,
                "{doc}"
            );
        }
    }

    #[test]
    fn the_derived_field_finds_trace_ids_in_both_spellings() {
        let re = regex::Regex::new(TRACE_ID_IN_LINE).unwrap();
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        for line in [
            format!(r#"{{"message":"request","trace_id":"{id}","request_id":"r"}}"#),
            format!("level=info trace_id={id} msg=ok"),
        ] {
            assert_eq!(&re.captures(&line).unwrap()[1], id, "{line}");
        }
        assert!(!re.is_match("trace_id=short"));
    }

    #[test]
    fn loki_panel_only_with_loki_and_no_dashboards_without_prometheus() {
        let with = dashboards(&setup(true, true, false));
        assert!(queries(&with[0].model).iter().any(|(t, _)| t == "loki"));
        let without = dashboards(&setup(true, false, false));
        assert!(
            queries(&without[0].model)
                .iter()
                .all(|(t, _)| t == "prometheus")
        );
        assert!(dashboards(&setup(false, true, true)).is_empty());
    }
}
