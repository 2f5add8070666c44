//! The API's conventions on a server over a temporary data dir: the event stream (live,
//! resumable), ETags (`If-None-Match` → 304, a stale `If-Match` → 412), pagination headers,
//! background work seen through its events, compute jobs submitted and cancelled, tokens from
//! keys, and the rate limit's 429 with `Retry-After`.

#[path = "../../autogit-drivers/tests/cloudflare_fake/mod.rs"]
mod cloudflare_fake;
mod support;

use autogit_api::server::ServeOptions;
use std::time::Duration;
use support::{Server, unlimited};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Reads server-sent events until `want` returns true for one (its `data` as JSON) or 20 s pass.
async fn wait_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    want: impl Fn(&serde_json::Value) -> bool,
) -> (String, serde_json::Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                let v: serde_json::Value = serde_json::from_str(&data).unwrap();
                if want(&v) {
                    return (id, v);
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("the event arrives within 20 s")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Sends `method url` with a bearer token and extra headers.
async fn call(
    c: &reqwest::Client,
    method: &str,
    url: String,
    bearer: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = c.request(method.parse().unwrap(), url).bearer_auth(bearer);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_live_and_resume_after_last_event_id() {
    let s = Server::start(unlimited());
    let c = client();
    let mut resp = call(&c, "GET", s.url("/api/v1/events"), &s.viewer, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    // A deploy started through the API fails at once (no engine at the configured socket):
    // its task events arrive on the stream.
    let accepted: serde_json::Value = c
        .post(s.url("/api/v1/services/gitlab/deploy"))
        .bearer_auth(&s.operator)
        .json(&serde_json::json!({"wait_seconds": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    let mut buf = String::new();
    let (started_at, started) = wait_event(&mut resp, &mut buf, |v| {
        v["kind"] == "task_started" && v["event"]["id"] == id.as_str()
    })
    .await;
    assert_eq!(started["event"]["operation"], "services.deploy");
    let (_, finished) = wait_event(&mut resp, &mut buf, |v| {
        v["kind"] == "task_finished" && v["event"]["id"] == id.as_str()
    })
    .await;
    assert_eq!(finished["event"]["ok"], false);
    assert_eq!(finished["severity"], "error");
    assert!(
        finished["summary"].as_str().unwrap().contains("failed"),
        "{finished}"
    );
    drop(resp);
    // Reconnecting after `task_started` replays what came next, `task_finished` included.
    let mut again = call(
        &c,
        "GET",
        s.url("/api/v1/events"),
        &s.viewer,
        &[("last-event-id", &started_at)],
    )
    .await;
    let mut buf = String::new();
    let (_, replayed) = wait_event(&mut again, &mut buf, |v| v["kind"] == "task_finished").await;
    assert_eq!(replayed["event"]["id"], id.as_str());
    // Without credentials: a problem, not a stream.
    let r = c.get(s.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn etags_pagination_jobs_and_tokens() {
    let s = Server::start(unlimited());
    let c = client();
    // ETag and If-None-Match.
    let r = call(&c, "GET", s.url("/api/v1/services/gitlab"), &s.viewer, &[]).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = call(
        &c,
        "GET",
        s.url("/api/v1/services/gitlab"),
        &s.viewer,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(r.status(), 304);
    // A stale If-Match is refused; the current one passes.
    let r = call(
        &c,
        "POST",
        s.url("/api/v1/services/gitlab/clear-flag"),
        &s.operator,
        &[("if-match", "\"0000\"")],
    )
    .await;
    assert_eq!(r.status(), 412);
    let r = call(
        &c,
        "POST",
        s.url("/api/v1/services/gitlab/clear-flag"),
        &s.operator,
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status(), 200);
    // Pagination: a total and a next link while there is more.
    let r = call(&c, "GET", s.url("/api/v1/services?limit=1"), &s.viewer, &[]).await;
    let total: usize = r.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(total > 1);
    assert_eq!(
        r.headers()["link"].to_str().unwrap(),
        "</api/v1/services?offset=1&limit=1>; rel=\"next\""
    );
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);
    // No configured host can run it: the scheduler rejects it at once.
    let r = c
        .post(s.url("/api/v1/compute/jobs"))
        .bearer_auth(&s.operator)
        .json(&serde_json::json!({"image": "registry.example/train:1.0", "vram": "8G"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rejected: serde_json::Value = r.json().await.unwrap();
    assert_eq!(rejected["state"], "failed", "{rejected}");
    assert!(
        rejected["message"]
            .as_str()
            .unwrap()
            .contains("no configured host")
    );
    // The job's kind and an inference service, as `compute run --capability inference
    // --port 8000` gives them: the kind's VRAM when none is given, the service in the spec.
    let r = c
        .post(s.url("/api/v1/compute/jobs"))
        .bearer_auth(&s.operator)
        .json(
            &serde_json::json!({"image": "registry.example/vllm:1.0", "capability": "inference",
            "port": 8000, "health": "/v1/models", "start_period": "2m", "on_lost": "reschedule"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let service: serde_json::Value = r.json().await.unwrap();
    assert_eq!(service["spec"]["capability"], "inference", "{service}");
    assert_eq!(service["spec"]["service"]["port"], 8000, "{service}");
    assert_eq!(
        service["spec"]["service"]["health"], "/v1/models",
        "{service}"
    );
    assert_eq!(service["spec"]["service"]["start_period"], 120, "{service}");
    assert!(
        !service["spec"]["vram"].is_null(),
        "the kind's VRAM: {service}"
    );
    // A CUDA compute capability is not a kind (what this field meant before), nor is a
    // made-up lease policy: each refused, naming the field.
    for (body, field) in [
        (
            serde_json::json!({"image": "registry.example/train:1.0", "capability": "8.6"}),
            "body.capability",
        ),
        (
            serde_json::json!({"image": "registry.example/train:1.0", "on_lost": "later"}),
            "body.on_lost",
        ),
    ] {
        let r = c
            .post(s.url("/api/v1/compute/jobs"))
            .bearer_auth(&s.operator)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let p: serde_json::Value = r.json().await.unwrap();
        assert!(p.to_string().contains(field), "{p}");
    }
    // A queued job (recorded as the CLI would, while its host is away) can be cancelled, once.
    let store = autogit_drivers::state::Store::open(&s.api.settings.state_db()).unwrap();
    let queued = store
        .add_job("alice", r#"{"image":"registry.example/train:1.0","command":[],"gpus":1,"vram":"8G","capability":null,"priority":0}"#, 1)
        .unwrap();
    drop(store);
    let job = serde_json::json!({ "id": queued });
    let id = job["id"].as_str().unwrap();
    let r = call(
        &c,
        "POST",
        s.url(&format!("/api/v1/compute/jobs/{id}/cancel")),
        &s.operator,
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let cancelled: serde_json::Value = r.json().await.unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    let r = call(
        &c,
        "POST",
        s.url(&format!("/api/v1/compute/jobs/{id}/cancel")),
        &s.operator,
        &[],
    )
    .await;
    assert_eq!(r.status(), 409, "a finished job cannot be cancelled");
    // A token from a key carries its role.
    let t: serde_json::Value = c
        .post(s.url("/api/v1/auth/token"))
        .bearer_auth(&s.operator)
        .json(&serde_json::json!({"ttl_seconds": 120}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: serde_json::Value = c
        .get(s.url("/api/v1/auth/whoami"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "operator");
    // The audit log has the cancel, by the operator key.
    let audit: serde_json::Value = c
        .get(s.url("/api/v1/audit?action=compute.cancel"))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = audit.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{audit}");
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["role"], "operator");
    assert_eq!(rows[1]["status"], 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_requests_get_429_with_retry_after() {
    let s = Server::start(ServeOptions {
        rate_per_addr: (1000.0, 1000.0),
        rate_per_principal: (1.0, 3.0),
        ..Default::default()
    });
    let c = client();
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..6 {
        let r = call(&c, "GET", s.url("/api/v1/services"), &s.viewer, &[]).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                r.headers()["content-type"].to_str().unwrap(),
                "application/problem+json"
            );
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    // Another key has its own budget.
    let r = call(&c, "GET", s.url("/api/v1/services"), &s.admin, &[]).await;
    assert_eq!(r.status(), 200);
}

/// Cloudflare's proxy through the API: the listing and the plan say which records are proxied,
/// and a proxy turned off by hand is drift with both sides. Against the fake Cloudflare API of
/// the drivers' tests (Cloudflare cannot run here; the production client talks HTTP to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_and_drift_say_what_cloudflare_proxies() {
    let fake = cloudflare_fake::Fake::start(&["example.test"]).await;
    let env = format!(
        "BASE_DOMAIN=example.test\nINGRESS_IP=192.0.2.10\nSERVICES_ENABLED=gitlab,grafana\n\
         DNS_PROVIDER=cloudflare\nCLOUDFLARE_API_URL={}\nCLOUDFLARE_API_TOKEN={}\n\
         CLOUDFLARE_PROXIED=grafana\n",
        fake.url,
        cloudflare_fake::TOKEN
    );
    let s = Server::start_env(unlimited(), &env);
    let c = client();
    let r = call(&c, "GET", s.url("/api/v1/dns/records"), &s.viewer, &[]).await;
    assert_eq!(r.status(), 200);
    let records: serde_json::Value = r.json().await.unwrap();
    let a_of = |name: &str| {
        records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name && r["type"] == "A")
            .cloned()
            .unwrap_or_else(|| panic!("no A record for {name}: {records:#}"))
    };
    assert_eq!(a_of("grafana.example.test")["proxied"], true, "{records:#}");
    assert_eq!(a_of("grafana.example.test")["ttl"], 1, "{records:#}");
    assert_eq!(a_of("*.example.test")["proxied"], false, "{records:#}");

    // Synced (as `autogit dns sync` does), then the proxy is turned off by hand in
    // Cloudflare's dashboard: an update, with both sides.
    autogit_app::dns::DnsController::new(s.api.settings.clone(), s.api.bus.clone())
        .sync(&s.api.plan)
        .await
        .expect("sync");
    for r in fake
        .state()
        .records
        .iter_mut()
        .filter(|r| r.name == "grafana.example.test" && r.kind == "A")
    {
        assert!(r.proxied, "synced proxied");
        r.proxied = false;
        r.ttl = 300;
    }
    let r = call(&c, "GET", s.url("/api/v1/dns/plan"), &s.viewer, &[]).await;
    assert_eq!(r.status(), 200);
    let plan: serde_json::Value = r.json().await.unwrap();
    let update = plan["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "grafana.example.test" && d["type"] == "A")
        .cloned()
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(update["action"], "update", "{plan:#}");
    assert_eq!(update["proxied"], true, "{plan:#}");
    assert_eq!(update["current_proxied"], false, "{plan:#}");
    assert_eq!(update["current"], "192.0.2.10", "{plan:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_drift_and_tls_status() {
    let s = Server::start(unlimited());
    let c = client();
    // Manual DNS: the zone cannot be read, so every record the platform needs is to create.
    let r = call(&c, "GET", s.url("/api/v1/dns/plan"), &s.viewer, &[]).await;
    assert_eq!(r.status(), 200);
    let plan: serde_json::Value = r.json().await.unwrap();
    assert_eq!(plan["provider"], "manual");
    assert_eq!(plan["readable"], false);
    assert_eq!(plan["in_sync"], false);
    let drift = plan["drift"].as_array().unwrap();
    assert!(!drift.is_empty());
    assert!(drift.iter().all(|d| d["action"] == "create"), "{plan:#}");
    assert!(
        drift.iter().any(|d| d["name"] == "*.example.test"
            && d["type"] == "A"
            && d["value"] == "192.0.2.10"),
        "{plan:#}"
    );
    // TLS without ACME_EMAIL: not configured, said in words; renewing is refused.
    let r = call(&c, "GET", s.url("/api/v1/tls"), &s.viewer, &[]).await;
    assert_eq!(r.status(), 200);
    let tls: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tls["configured"], false);
    assert!(tls["certificate"].is_null());
    assert!(
        tls["problem"].as_str().unwrap().contains("ACME_EMAIL"),
        "{tls:#}"
    );
    let r = c
        .post(s.url("/api/v1/tls/renew"))
        .bearer_auth(&s.operator)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_search_reads_the_store_the_daemon_fills() {
    use autogit_core::logs::enrich;
    use autogit_drivers::logstore::{Line, LogStore};
    let s = Server::start(unlimited());
    let c = client();
    // Before the daemon indexed anything: an empty answer that says so.
    let r = call(
        &c,
        "GET",
        s.url("/api/v1/search/logs?q=error"),
        &s.viewer,
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["indexed"], 0);
    // As the daemon stores them: enriched and scrubbed.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut store = LogStore::open(&s.api.settings.data_dir.join("logs.db")).unwrap();
    store
        .insert(&[
            Line {
                at_ns: now_ns - 7_200_000_000_000,
                service: "gitlab".into(),
                enriched: enrich("ERROR Gitlab::Git::CommandError: fatal request_id=old", &[]),
            },
            Line {
                at_ns: now_ns - 1_000_000_000,
                service: "gitlab".into(),
                enriched: enrich(
                    "ERROR Gitlab::Git::CommandError: timeout for carol@example.com request_id=r-9",
                    &[],
                ),
            },
        ])
        .unwrap();
    drop(store);
    let r = call(
        &c,
        "GET",
        s.url("/api/v1/search/logs?q=class%3ACommandError&timeRange=1h"),
        &s.viewer,
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["indexed"], 2);
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{v:#}");
    assert_eq!(hits[0]["request_id"], "r-9");
    assert_eq!(hits[0]["error_class"], "Gitlab::Git::CommandError");
    assert_eq!(hits[0]["level"], "error");
    assert!(hits[0]["message"].as_str().unwrap().contains("<email>"));
    assert!(hits[0]["at"].as_str().unwrap().ends_with('Z'));
    // Lexical is the default while semantic search is off; asking for it is the same.
    let r = call(
        &c,
        "GET",
        s.url("/api/v1/search/logs?q=class%3ACommandError&timeRange=1h&mode=lexical"),
        &s.viewer,
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let w: serde_json::Value = r.json().await.unwrap();
    assert_eq!(w["hits"], v["hits"]);
    // Mistakes are 422s naming the field.
    for (q, field) in [
        ("q=colour%3Ared", "query.q"),
        ("q=x&timeRange=soon", "query.timeRange"),
        ("q=x&timeRange=", "query.timeRange"),
        // Semantic search is off unless logs.semantic.enabled: asking for it says so.
        ("q=x&mode=semantic", "query.mode"),
        ("q=x&mode=hybrid", "query.mode"),
        ("q=x&mode=fuzzy", "query.mode"),
    ] {
        let r = call(
            &c,
            "GET",
            s.url(&format!("/api/v1/search/logs?{q}")),
            &s.viewer,
            &[],
        )
        .await;
        assert_eq!(r.status(), 422);
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], field, "{p:#}");
    }
}

/// The correlation id: an API request's `X-Request-Id` finds, in the log store, the work the
/// request started and how it ended (the daemon's log pass indexes autogit's own events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_links_the_api_request_to_the_controller_work() {
    let s = Server::start(unlimited());
    let c = client();
    let r = call(
        &c,
        "GET",
        s.url("/api/v1/services/gitlab"),
        &s.operator,
        &[],
    )
    .await;
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = c
        .post(s.url("/api/v1/services/gitlab/deploy"))
        .bearer_auth(&s.operator)
        .header("x-request-id", "req-link-42")
        .header("if-match", &etag)
        .json(&serde_json::json!({"wait_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The deploy fails at once (no engine here); both task events reach the state store.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        s.api.logs.feed_pass().unwrap();
        let found = s.api.logs.search("request:req-link-42", None, 10).unwrap();
        let texts: Vec<&str> = found.hits.iter().map(|h| h.message.as_str()).collect();
        if texts.iter().any(|t| t.starts_with("task_finished"))
            && texts.iter().any(|t| t.starts_with("task_started"))
        {
            assert!(found.hits.iter().all(|h| h.service == "autogit"));
            let finished = found
                .hits
                .iter()
                .find(|h| h.message.starts_with("task_finished"))
                .unwrap();
            assert!(finished.message.contains("services.deploy"), "{texts:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{texts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Indexed once: another pass adds nothing.
    assert_eq!(s.api.logs.feed_pass().unwrap(), 0);
}
