//! Traces: a real `autogit serve` with `OTLP_ENDPOINT` set exports its spans over OTLP/HTTP,
//! and one API request (`GET /api/v1/dns/plan`, DNS by dnsmasq's file) arrives as one trace
//! whose tree is request → controller → driver: `GET /api/v1/dns/plan` (the request, kind
//! server) → `dns.plan` → `dns.list` (kind client), with the request id on the root and
//! `service.name` autogit.
//!
//! The collector is a FAKE (Tempo and the OpenTelemetry Collector do not run here): an HTTP
//! server in this test that takes `POST /v1/traces` as OTLP/HTTP documents it
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>: `Content-Type:
//! application/x-protobuf`, the body an `ExportTraceServiceRequest`), decodes the body with the
//! OpenTelemetry project's generated protobuf types (`opentelemetry-proto`) and answers 200
//! with an empty `ExportTraceServiceResponse`.
//!
//! Work an API request starts in the background (`POST /api/v1/mirrors/sync`, 202, sent with a
//! W3C `traceparent` that the request continues) stays in its trace: the request → `task mirrors.sync` → `mirror.sync` → `mirror.repo` (kind client; the
//! mirror's source refuses connections, so its result is `failed`).
//!
//! The trace id also reaches the log store's correlation ids: the server's log line for the
//! request carries `request_id` and `trace_id`; stored in the real log store as the daemon
//! stores an API container's lines (scrubbed and enriched), `trace:<id>` finds it with the
//! request's id. The daemon's engine follower is not involved (no engine here).
//!
//! The container engine's calls are client spans of the same tree: on the real engine, a
//! service's logs asked through the API (no platform runs, so it answers 503) holds an
//! `engine.list` span with the project. With `tempo` enabled and no OTLP_ENDPOINT, the spans
//! go to the platform's Tempo on this host (its published OTLP port).
//!
//! autogit's log: `target/test-logs/traces-autogit.log`.

mod common;
#[path = "../../autogit-drivers/tests/kube_support/mod.rs"]
mod kube_support;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake collector received: every span with its resource's `service.name`, and the
/// content types it was sent.
#[derive(Default)]
struct Received {
    spans: Vec<(String, Span)>,
    content_types: Vec<String>,
}

fn text(v: &Option<AnyValue>) -> Option<String> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(&kv.value))
}

/// The fake OTLP/HTTP collector on a loopback port, on its own runtime thread.
fn fake_collector() -> (u16, Arc<Mutex<Received>>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, header};
    let got = Arc::new(Mutex::new(Received::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = got.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let state = state.clone();
                    async move {
                        let ct = headers
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                            return (StatusCode::BAD_REQUEST, Vec::new());
                        };
                        let mut g = state.lock().unwrap();
                        g.content_types.push(ct);
                        for rs in req.resource_spans {
                            let service = rs
                                .resource
                                .as_ref()
                                .and_then(|r| attr(&r.attributes, "service.name"))
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    g.spans.push((service.clone(), span));
                                }
                            }
                        }
                        (
                            StatusCode::OK,
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (port, got)
}

fn free_port() -> u16 {
    autogit_drivers::testing::bind::free_port()
}

/// An operator key, then `autogit serve` on a free port of loopback with the platform of
/// `dir` (its log in `target/test-logs/<log>`; OTLP_ENDPOINT only as `dir`'s .env says), once
/// it answers: the server, the key, a client, the API's base URL and the log's path.
fn start_serve(
    dir: &std::path::Path,
    log: &str,
) -> (
    KillOnDrop,
    String,
    reqwest::blocking::Client,
    String,
    std::path::PathBuf,
) {
    let r = run_platform(
        dir,
        &["api-key", "create", "ops", "--role", "operator", "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The state store exists before the server starts, as after any install. (Created by the
    // mirror sync and the event recorder at the same moment, a fresh store can fail with
    // "disk I/O error" on its init file: a race of its own, not this test's subject.)
    drop(autogit_drivers::state::Store::open(&dir.join("data/state.db")).unwrap());
    let log = test_log_dir().join(log);
    let api_port = free_port();
    let mut c = cmd(dir);
    c.args(["serve", "--listen", &format!("127.0.0.1:{api_port}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in platform_env(dir) {
        c.env(k, v);
    }
    c.env_remove("OTLP_ENDPOINT");
    let serve = KillOnDrop(c.spawn().unwrap());
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let api = format!("http://127.0.0.1:{api_port}");
    let start = Instant::now();
    while http
        .get(format!("{api}/healthz"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "autogit serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (serve, key, http, api, log)
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn an_api_request_is_one_trace_request_controller_driver() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (otlp_port, got) = fake_collector();
    let zone_file = dir.join("dnsmasq-autogit.conf");
    std::fs::write(
        &zone_file,
        "host-record=gitlab.example.test,192.0.2.10,300\n",
    )
    .unwrap();
    // A mirror whose source and target refuse connections (port 1: nothing listens there,
    // and no port picked for this test can be it): its background sync fails at once.
    let closed = 1;
    std::fs::write(
        dir.join("autogit.yml"),
        format!(
            "platform:\n  socket: /nonexistent/autogit-test/docker.sock\n\
             mirroring:\n  allow_private: true\n  retries: 0\n\
             \x20 target_url_template: \"git://127.0.0.1:{closed}/{{path}}.git\"\n\
             \x20 sources:\n    git:\n      - git://127.0.0.1:{closed}/hello.git\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        format!(
            "BASE_DOMAIN=example.test\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=dnsmasq\nDNSMASQ_CONFIG_PATH={}\nOTLP_ENDPOINT=http://127.0.0.1:{otlp_port}\n",
            zone_file.display()
        ),
    )
    .unwrap();
    let (mut serve, key, http, api, log) = start_serve(dir, "traces-autogit.log");
    let rid = "trace-test-0001";
    let resp = http
        .get(format!("{api}/api/v1/dns/plan"))
        .bearer_auth(&key)
        .header("x-request-id", rid)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap());
    // Work the API starts in the background (202) stays in the request's trace.
    let rid2 = "trace-test-0002";
    let resp = http
        .post(format!("{api}/api/v1/mirrors/sync"))
        .bearer_auth(&key)
        .header("x-request-id", rid2)
        // The caller's trace (W3C Trace Context): the request continues it.
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&serde_json::json!({}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().unwrap());

    // The batch goes out within the exporter's delay (2 s); at the latest when serve stops.
    let root_of = |g: &Received| {
        g.spans
            .iter()
            .find(|(_, s)| {
                s.name == "GET /api/v1/dns/plan"
                    && attr(&s.attributes, "request_id").as_deref() == Some(rid)
            })
            .cloned()
    };
    let repo_done = |g: &Received| {
        g.spans
            .iter()
            .any(|(_, s)| s.name == "mirror.repo" && attr(&s.attributes, "result").is_some())
    };
    let start = Instant::now();
    while !(root_of(&got.lock().unwrap()).is_some() && repo_done(&got.lock().unwrap()))
        && start.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM: the last spans are flushed before it exits.
    sigterm(&serve.0);
    let _ = serve.0.wait();
    let g = got.lock().unwrap();
    assert!(
        g.content_types
            .iter()
            .all(|c| c == "application/x-protobuf"),
        "{:?}",
        g.content_types
    );
    let (service, root) = root_of(&g).unwrap_or_else(|| {
        panic!(
            "no request span for {rid}; received: {:?}",
            g.spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        )
    });
    assert_eq!(service, "autogit");
    // Health checks are not traced (one per check interval, nothing to see).
    assert!(!g.spans.iter().any(|(_, s)| s.name.contains("healthz")));
    assert!(root.parent_span_id.is_empty(), "the request is the root");
    assert_eq!(root.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attr(&root.attributes, "operation").as_deref(),
        Some("dns.plan")
    );
    assert_eq!(
        attr(&root.attributes, "http.route").as_deref(),
        Some("/api/v1/dns/plan")
    );
    assert_eq!(
        attr(&root.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    let in_trace: Vec<&Span> = g
        .spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let child = |parent: &Span, name: &str| -> Span {
        in_trace
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .map(|s| (*s).clone())
            .unwrap_or_else(|| {
                panic!(
                    "no {name} under {}; the trace: {:?}",
                    parent.name,
                    in_trace
                        .iter()
                        .map(|s| (&s.name, hex(&s.span_id), hex(&s.parent_span_id)))
                        .collect::<Vec<_>>()
                )
            })
    };
    let controller = child(&root, "dns.plan");
    assert_eq!(
        attr(&controller.attributes, "provider").as_deref(),
        Some("dnsmasq")
    );
    let driver = child(&controller, "dns.list");
    assert_eq!(driver.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(attr(&driver.attributes, "records").as_deref(), Some("1"));
    for s in [&root, &controller, &driver] {
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    assert!(
        controller.start_time_unix_nano >= root.start_time_unix_nano
            && driver.end_time_unix_nano <= root.end_time_unix_nano,
        "children within the request"
    );
    let trace_id = hex(&root.trace_id);

    // The background sync: request → task → controller → one span per repository.
    let sync_root = g
        .spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| {
            s.name == "POST /api/v1/mirrors/sync"
                && attr(&s.attributes, "request_id").as_deref() == Some(rid2)
        })
        .expect("the sync request's span")
        .clone();
    assert_eq!(
        attr(&sync_root.attributes, "http.response.status_code").as_deref(),
        Some("202")
    );
    assert_eq!(hex(&sync_root.trace_id), CALLER_TRACE, "the caller's trace");
    assert_eq!(
        hex(&sync_root.parent_span_id),
        CALLER_SPAN,
        "under the caller's span"
    );
    let in_sync: Vec<&Span> = g
        .spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.trace_id == sync_root.trace_id)
        .collect();
    let under = |parent: &Span, name: &str| -> Span {
        in_sync
            .iter()
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .map(|s| (*s).clone())
            .unwrap_or_else(|| {
                panic!(
                    "no {name} under {}: {:?}",
                    parent.name,
                    in_sync.iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    };
    let task = under(&sync_root, "task mirrors.sync");
    assert_eq!(attr(&task.attributes, "ok").as_deref(), Some("false"));
    let sync = under(&task, "mirror.sync");
    let repo = under(&sync, "mirror.repo");
    assert_eq!(repo.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(attr(&repo.attributes, "mirror").as_deref(), Some("hello"));
    assert_eq!(attr(&repo.attributes, "result").as_deref(), Some("failed"));

    // The request's log line links its request id and its trace id, and the log store keeps
    // both as correlation ids: `trace:<id>` finds the request.
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("\"request_id\":\"{rid}\"")))
        .unwrap_or_else(|| panic!("no log line for {rid}: {text}"));
    assert!(
        line.contains(&format!("\"trace_id\":\"{trace_id}\"")),
        "{line}"
    );
    let mut store = autogit_drivers::logstore::LogStore::open(&dir.join("logs.db")).unwrap();
    let lines: Vec<autogit_drivers::logstore::Line> = text
        .lines()
        .enumerate()
        .map(|(i, l)| autogit_drivers::logstore::Line {
            at_ns: 1_000 + i as i64,
            service: "api".into(),
            enriched: autogit_core::logs::enrich(l, &[]),
        })
        .collect();
    store.insert(&lines).unwrap();
    let q = autogit_core::logs::parse_query(&format!("trace:{trace_id}")).unwrap();
    let hits = store.search(&q, 0, i64::MAX, 10).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].request_id.as_deref(), Some(rid));
    assert_eq!(hits[0].trace_id.as_deref(), Some(trace_id.as_str()));
}

/// SIGTERM to the child (its graceful stop).
fn sigterm(child: &Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// With Tempo in SERVICES_ENABLED and OTLP_ENDPOINT unset, autogit sends its traces to the
/// platform's Tempo on this host: its OTLP/HTTP receiver published on loopback at
/// PORT_TEMPO_OTLP (here the fake collector's port; dynamic when unset, remembered as
/// `tempo-otlp`). Without Tempo, no trace leaves (the first test sets OTLP_ENDPOINT).
#[test]
fn the_platforms_tempo_is_the_default_trace_endpoint() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (otlp_port, got) = fake_collector();
    std::fs::write(
        dir.join("autogit.yml"),
        "platform:\n  socket: /nonexistent/autogit-test/docker.sock\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("SERVICES_ENABLED=gitlab,tempo\nPORT_TEMPO_OTLP={otlp_port}\n"),
    )
    .unwrap();
    let (mut serve, key, http, api, log) = start_serve(dir, "traces-tempo-default.log");
    let resp = http
        .get(format!("{api}/api/v1/dns/plan"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let seen = |g: &Received| {
        g.spans
            .iter()
            .any(|(svc, s)| svc == "autogit" && s.name == "GET /api/v1/dns/plan")
    };
    let start = Instant::now();
    while !seen(&got.lock().unwrap()) && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&serve.0);
    let _ = serve.0.wait();
    let g = got.lock().unwrap();
    assert!(
        seen(&g),
        "no span of the request (answered {status}) reached Tempo's port; received: {:?}\n{}",
        g.spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// The container engine is a traced driver too: an API request that reads the engine (the
/// services' state, a service's logs) has `engine.*` client spans under its controller's
/// span, on the real engine (no platform runs: the engine answers "none" and "not found").
#[test]
fn engine_calls_are_client_spans_in_the_requests_trace() {
    if !have_engine() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (otlp_port, got) = fake_collector();
    let project = format!("agt-traces-{}", std::process::id());
    std::fs::write(
        dir.join("autogit.yml"),
        format!("platform:\n  project: {project}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("OTLP_ENDPOINT=http://127.0.0.1:{otlp_port}\n"),
    )
    .unwrap();
    let (mut serve, key, http, api, log) = start_serve(dir, "traces-engine.log");
    let r = http
        .get(format!("{api}/api/v1/services/gitlab/logs"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let root_name = "GET /api/v1/services/{service}/logs";
    let found = |g: &Received| -> Option<(Span, Span)> {
        let root = g
            .spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == root_name)?;
        // An engine span whose chain of parents reaches the request.
        g.spans.iter().map(|(_, s)| s).find_map(|s| {
            if !s.name.starts_with("engine.") || s.trace_id != root.trace_id {
                return None;
            }
            let mut at = s;
            for _ in 0..16 {
                if at.parent_span_id == root.span_id {
                    return Some((root.clone(), s.clone()));
                }
                at = g
                    .spans
                    .iter()
                    .map(|(_, p)| p)
                    .find(|p| p.span_id == at.parent_span_id)?;
            }
            None
        })
    };
    let start = Instant::now();
    while found(&got.lock().unwrap()).is_none() && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm(&serve.0);
    let _ = serve.0.wait();
    let g = got.lock().unwrap();
    let (_, engine) = found(&g).unwrap_or_else(|| {
        panic!(
            "no engine span under the request (answered {status}); received: {:?}\n{}",
            g.spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(engine.kind, 3, "SPAN_KIND_CLIENT: {}", engine.name);
    assert_eq!(engine.name, "engine.list");
    assert_eq!(
        attr(&engine.attributes, "project").as_deref(),
        Some(project.as_str())
    );
}

/// autogit's HTTP clients carry the trace on: the daemon reconciling a Kubernetes target (the
/// in-process fake API server of `kube_support`: no cluster runs here) sends W3C `traceparent`
/// headers, and each names a trace and a span that autogit exported to the collector, so the
/// server's work would sit under autogit's span. (GitLab's, Loki's and Meilisearch's clients
/// send it the same way, `drivers::telemetry::Traced`.)
#[test]
fn outgoing_requests_carry_the_trace_to_the_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(kube_support::Fake::start());
    fake.state().auto_rollout = true;
    let (otlp_port, got) = fake_collector();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("autogit.yml"),
        "gitlab:\n  resources:\n    preset: minimal\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\nGF_SECURITY_ADMIN_PASSWORD=grafana-secret-value\nOTLP_ENDPOINT=http://127.0.0.1:{otlp_port}\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join(".env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(dir.join("kubeconfig"), fake.kubeconfig()).unwrap();
    let data = dir.join("data");
    let kc = dir.join("kubeconfig");
    let r = run_env(
        dir,
        &[
            "install",
            "--target",
            "kubernetes",
            "--wait",
            "60s",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("KUBECONFIG", kc.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = test_log_dir().join("traces-kube-daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let before = fake.state().traceparents.len();
    let mut daemon = KillOnDrop(
        cmd(dir)
            .args([
                "daemon",
                "--target",
                "kubernetes",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .env("KUBECONFIG", &kc)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while fake.state().traceparents.len() == before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no request carried a traceparent:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&daemon.0);
    let status = daemon.0.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let sent: Vec<String> = fake.state().traceparents[before..].to_vec();
    // W3C form, sampled.
    let ids: Vec<(String, String)> = sent
        .iter()
        .map(|tp| {
            let p: Vec<&str> = tp.split('-').collect();
            assert_eq!(p.len(), 4, "{tp}");
            assert_eq!((p[0], p[3]), ("00", "01"), "{tp}");
            assert!(p[1].len() == 32 && p[2].len() == 16, "{tp}");
            (p[1].to_owned(), p[2].to_owned())
        })
        .collect();
    // The exporter sends what is left at shutdown; each parent is a span autogit exported.
    let start = Instant::now();
    loop {
        let g = got.lock().unwrap();
        let exported: std::collections::BTreeSet<(String, String)> = g
            .spans
            .iter()
            .map(|(_, s)| (hex(&s.trace_id), hex(&s.span_id)))
            .collect();
        let missing: Vec<_> = ids.iter().filter(|i| !exported.contains(*i)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} of {} traceparents name no exported span (e.g. {:?}); {} spans exported",
            missing.len(),
            ids.len(),
            missing.first(),
            exported.len()
        );
        drop(g);
        std::thread::sleep(Duration::from_millis(200));
    }
}
