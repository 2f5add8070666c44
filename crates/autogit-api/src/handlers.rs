//! One handler per operation: call the application layer, map its result to the wire type.
//! Work that takes minutes (deploy, mirror sync, backup, restore) runs in the background and
//! answers `202 Accepted`; its progress is on the event stream (`task_started`,
//! `task_finished`, and the controllers' own events).

use crate::model::*;
use crate::op::{NoBody, NoParams, Operation};
use crate::ops::*;
use crate::problem::Problem;
use crate::server::{Api, Cx, Reply, check_if_match, etag_of};
use autogit_app::Event;
use axum::http::StatusCode;
use std::future::Future;
use std::sync::Arc;

/// The server side of an operation.
pub trait Handle: Operation {
    fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        path: Self::Path,
        query: Self::Query,
        body: Self::Body,
    ) -> impl Future<Output = Result<Reply<Self::Response>, Problem>> + Send;
}

/// A page: the total before paging, the offset and the limit.
type Page = (usize, usize, usize);

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

/// One page of `items` as the reply's body (`wrap` makes the list type) with its paging
/// headers.
fn paged<T, B>(
    items: Vec<T>,
    limit: Option<u32>,
    offset: Option<u32>,
    wrap: impl FnOnce(Vec<T>) -> B,
) -> Result<Reply<B>, Problem> {
    let (items, p) = page(items, limit, offset)?;
    let mut r = Reply::new(wrap(items));
    r.page = Some(p);
    Ok(r)
}

fn page<T>(
    items: Vec<T>,
    limit: Option<u32>,
    offset: Option<u32>,
) -> Result<(Vec<T>, Page), Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::invalid(
            "query.limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset > 1_000_000 {
        return Err(Problem::invalid("query.offset", "at most 1000000"));
    }
    let (limit, offset) = (limit as usize, offset as usize);
    let total = items.len();
    let items = items.into_iter().skip(offset).take(limit).collect();
    Ok((items, (total, offset, limit)))
}

fn state_problem(e: impl std::fmt::Display) -> Problem {
    Problem::internal(format!("the state database could not be read: {e}"))
}

/// Runs `f` on the server's connection to the state store (`None`: no store yet). The
/// connection is opened once and kept (opening checks the file's integrity and runs the
/// migrations, far more work than a read); it is reopened when the file was replaced (a
/// restore) or a query failed.
pub(crate) fn with_store<T>(
    api: &Api,
    f: impl FnOnce(&autogit_drivers::state::Store) -> Result<T, autogit_drivers::state::StateError>,
) -> Result<Option<T>, Problem> {
    let db = api.settings.state_db();
    let mut cached = api.state.lock().unwrap_or_else(|p| p.into_inner());
    if cached.as_ref().is_some_and(|s| !s.is_same_file()) {
        *cached = None;
    }
    if cached.is_none() {
        if !db.exists() {
            return Ok(None);
        }
        *cached = Some(autogit_drivers::state::Store::open(&db).map_err(state_problem)?);
    }
    let store = cached.as_ref().expect("opened above");
    match f(store) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            *cached = None;
            Err(state_problem(e))
        }
    }
}

/// Starts background work: publishes `task_started`, runs `work` on a thread of its own
/// (some controllers' futures hold a SQLite connection across awaits and are not `Send`),
/// publishes `task_finished`.
fn spawn_task<M, F>(api: &Arc<Api>, cx: &Cx, operation: &str, target: &str, work: M) -> Accepted
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = Result<String, String>> + 'static,
{
    let (id, operation, target) = (
        cx.request_id.clone(),
        operation.to_owned(),
        target.to_owned(),
    );
    api.bus.publish(Event::TaskStarted {
        id: id.clone(),
        operation: operation.clone(),
        target: target.clone(),
        actor: cx.actor(),
    });
    let bus = api.bus.clone();
    let accepted = Accepted {
        id: id.clone(),
        operation: operation.clone(),
        target: target.clone(),
        events: "/api/v1/events".into(),
    };
    // The work's span, a child of the request's (its trace goes on after the 202).
    let span = tracing::info_span!(
        "task",
        otel.name = %format!("task {operation}"),
        operation = %operation,
        target = %target,
        request_id = %id,
        ok = tracing::field::Empty,
    );
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        use tracing::Instrument;
        let result = rt.block_on(work().instrument(span.clone()));
        span.record("ok", result.is_ok());
        bus.publish(Event::TaskFinished {
            id,
            operation,
            target,
            ok: result.is_ok(),
            detail: result.unwrap_or_else(|e| e),
        });
    });
    accepted
}

// ---- meta ----------------------------------------------------------------------------------

impl Handle for Healthz {
    async fn handle(
        _: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Health>, Problem> {
        Ok(Reply::new(Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }
}

// ---- services ------------------------------------------------------------------------------

fn services(api: &Api) -> Result<Vec<Service>, Problem> {
    let rows = with_store(api, |s| s.services())?.unwrap_or_default();
    let base = api.plan.base_domain.as_deref();
    Ok(api
        .plan
        .services
        .iter()
        .filter(|s| s.placement == autogit_core::plan::Placement::Local)
        .map(|s| {
            let row = rows.iter().find(|r| r.service == s.name);
            Service {
                name: s.name.clone(),
                subdomain: s.subdomain.clone(),
                status: ServiceStatus::from_state(row.map(|r| r.state.as_str())),
                ports: Ports {
                    internal: s.internal_port,
                    external: s.ports.first().map(|p| p.host),
                },
                state: row.map(|r| r.state.clone()),
                since: row.map(|r| r.since),
                restarts: row.map_or(0, |r| r.restarts),
                flagged: row.is_some_and(|r| r.flagged),
                flag_reason: row.and_then(|r| r.flag_reason.clone()),
                url: match (&s.subdomain, base) {
                    (Some(sub), Some(d)) => Some(format!("https://{sub}.{d}")),
                    _ => None,
                },
            }
        })
        .collect())
}

fn service(api: &Api, name: &str) -> Result<Service, Problem> {
    services(api)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no service `{name}` in the plan; GET /api/v1/services lists them"
            ))
        })
}

impl Handle for ListServices {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: ServiceQuery,
        _: NoBody,
    ) -> Result<Reply<ServiceList>, Problem> {
        let all: Vec<Service> = services(api)?
            .into_iter()
            .filter(|s| q.status.is_none_or(|st| s.status == st))
            .collect();
        paged(all, q.limit, q.offset, ServiceList)
    }
}

impl Handle for GetService {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        p: ServicePath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Service>, Problem> {
        Ok(Reply::new(service(api, &p.service)?))
    }
}

impl Handle for DeployService {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: ServicePath,
        _: NoParams,
        body: DeployRequest,
    ) -> Result<Reply<Accepted>, Problem> {
        let current = service(api, &p.service)?;
        check_if_match(cx, &etag_of(&current))?;
        let wait = body.wait_seconds.unwrap_or(600);
        if wait > 3600 {
            return Err(Problem::invalid("body.wait_seconds", "at most 3600"));
        }
        let settings = api.settings.clone();
        let bus = api.bus.clone();
        let accepted = spawn_task(api, cx, Self::INFO.id, &p.service, move || async move {
            let outcome = autogit_app::platform::deploy(
                settings,
                &bus,
                std::time::Duration::from_secs(u64::from(wait)),
                &|_| {},
                |_| {},
            )
            .await?;
            match outcome {
                autogit_app::platform::InstallOutcome::Healthy { services, after } => Ok(format!(
                    "{services} services healthy after {} s",
                    after.as_secs()
                )),
                autogit_app::platform::InstallOutcome::Started => Ok("started".into()),
                autogit_app::platform::InstallOutcome::GaveUp { service, error } => {
                    Err(format!("{service}: {error}"))
                }
                autogit_app::platform::InstallOutcome::NotHealthy { states, .. } => Err(format!(
                    "not healthy in time: {}",
                    states
                        .iter()
                        .map(|(s, st)| format!("{s} {st}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        });
        Ok(Reply::new(accepted))
    }
}

impl Handle for ClearFlag {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: ServicePath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<FlagCleared>, Problem> {
        let current = service(api, &p.service)?;
        check_if_match(cx, &etag_of(&current))?;
        let cleared = with_store(api, |s| s.clear_flag(&p.service))?.unwrap_or(false);
        Ok(Reply::new(FlagCleared {
            service: p.service,
            cleared,
        }))
    }
}

impl Handle for ServiceLogs {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        p: ServicePath,
        q: ServiceLogQuery,
        _: NoBody,
    ) -> Result<Reply<LogLines>, Problem> {
        service(api, &p.service)?;
        let tail = q.tail.unwrap_or(200);
        if !(1..=5000).contains(&tail) {
            return Err(Problem::invalid("query.tail", "between 1 and 5000"));
        }
        if q.since.is_some_and(|s| s < 0) {
            return Err(Problem::invalid("query.since", "Unix seconds, at least 0"));
        }
        let mut lines = Vec::new();
        autogit_app::platform::logs(
            &api.settings,
            std::slice::from_ref(&p.service),
            q.since,
            Some(tail as usize),
            false,
            std::future::pending::<()>(),
            |svc, line| {
                lines.push(LogLine {
                    service: svc.trim().to_owned(),
                    line: line.to_owned(),
                });
            },
        )
        .await
        .map_err(|e| Problem::unavailable("engine-unavailable", e))?;
        Ok(Reply::new(LogLines(lines)))
    }
}

impl Handle for ListTransitions {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: TransitionQuery,
        _: NoBody,
    ) -> Result<Reply<TransitionList>, Problem> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Problem::invalid(
                "query.limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let rows = with_store(api, |s| s.transitions(q.service.as_deref(), limit as usize))?
            .unwrap_or_default();
        Ok(Reply::new(TransitionList(
            rows.into_iter()
                .map(|t| Transition {
                    service: t.service,
                    at: t.at,
                    from: t.from.unwrap_or_default(),
                    to: t.to,
                    reason: t.reason,
                })
                .collect(),
        )))
    }
}

// ---- dns -----------------------------------------------------------------------------------

fn dns(api: &Api) -> autogit_app::dns::DnsController {
    autogit_app::dns::DnsController::new(api.settings.clone(), api.bus.clone())
}

fn name_of<T: serde::Serialize>(t: &T) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(ToOwned::to_owned))
        .unwrap_or_default()
}

fn wire_record(r: &autogit_core::dns::Record) -> DnsRecord {
    DnsRecord {
        name: r.name.clone(),
        kind: r.kind.as_str().to_owned(),
        value: r.value.clone(),
        ttl: Some(r.ttl),
    }
}

impl Handle for ListDnsRecords {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<DnsRecordList>, Problem> {
        let records = dns(api)
            .desired_records(&api.plan)
            .map_err(|e| Problem::conflict(e.to_string()))?;
        Ok(Reply::new(DnsRecordList(
            records
                .iter()
                .map(|r| ZoneRecord {
                    name: r.name.clone(),
                    kind: r.kind.as_str().to_owned(),
                    value: r.value.clone(),
                    ttl: r.ttl,
                    proxied: r.proxied,
                })
                .collect(),
        )))
    }
}

impl Handle for CreateDnsRecord {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        body: DnsRecord,
    ) -> Result<Reply<DnsRecord>, Problem> {
        let created = dns(api)
            .add_record(
                &api.plan,
                &body.name,
                &body.kind,
                &body.value,
                body.ttl.unwrap_or(300),
            )
            .await
            .map_err(dns_problem)?;
        let mut r = Reply::new(wire_record(&created));
        r.target = Some(format!("{} {}", created.name, created.kind.as_str()));
        Ok(r)
    }
}

fn dns_problem(e: autogit_app::dns::DnsError) -> Problem {
    use autogit_app::dns::DnsError;
    match e {
        DnsError::Provider(m) => Problem::upstream(m),
        DnsError::NotFound(m) => Problem::not_found(m),
        DnsError::Invalid { field, message } => Problem::invalid(&format!("body.{field}"), message),
        other => Problem::conflict(other.to_string()),
    }
}

fn drift_of(
    r: &autogit_core::dns::Record,
    action: &str,
    current: Option<&autogit_core::dns::Record>,
) -> DnsDrift {
    DnsDrift {
        action: action.into(),
        name: r.name.clone(),
        kind: r.kind.as_str().to_owned(),
        value: r.value.clone(),
        current: current.map(|c| c.value.clone()),
        proxied: r.proxied,
        current_proxied: current.map(|c| c.proxied),
    }
}

impl Handle for GetDnsPlan {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<DnsPlanView>, Problem> {
        use autogit_core::dns::Change;
        let c = dns(api);
        let view = c.plan(&api.plan).await.map_err(|e| match e {
            autogit_app::dns::DnsError::Provider(m) => Problem::upstream(m),
            other => Problem::conflict(other.to_string()),
        })?;
        let mut drift: Vec<DnsDrift> = view
            .plan
            .changes
            .iter()
            .map(|ch| match ch {
                Change::Create { record } => drift_of(record, "create", None),
                Change::Update { from, to } => drift_of(to, "update", Some(from)),
                Change::Delete { record } => drift_of(record, "delete", None),
            })
            .collect();
        for conflict in &view.plan.conflicts {
            let wanted = view.desired.iter().find(|r| r.name == conflict.name);
            let found = conflict
                .found
                .iter()
                .map(|r| format!("{} {}", r.kind.as_str(), r.value))
                .collect::<Vec<_>>()
                .join(", ");
            drift.push(DnsDrift {
                action: "conflict".into(),
                name: conflict.name.clone(),
                kind: wanted.map_or_else(String::new, |r| r.kind.as_str().to_owned()),
                value: wanted.map_or_else(String::new, |r| r.value.clone()),
                current: Some(found),
                proxied: wanted.is_some_and(|r| r.proxied),
                current_proxied: None,
            });
        }
        Ok(Reply::new(DnsPlanView {
            readable: c.manages_records(),
            in_sync: view.plan.is_empty(),
            provider: view.provider,
            target: view.target,
            zone: view.zone,
            drift,
        }))
    }
}

// ---- tls -----------------------------------------------------------------------------------

pub(crate) fn tls(api: &Api) -> autogit_app::tls::TlsController {
    autogit_app::tls::TlsController::new(api.settings.clone(), api.bus.clone(), api.clock.clone())
}

impl Handle for GetTls {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<TlsStatus>, Problem> {
        let c = tls(api);
        let mut status = TlsStatus {
            configured: c.configured(),
            wanted: Vec::new(),
            certificate: None,
            problem: None,
        };
        match c
            .acme_settings()
            .and_then(|(_, domain)| c.wanted_names(&domain))
        {
            Ok(w) => status.wanted = w,
            Err(e) => status.problem = Some(e),
        }
        if status.problem.is_none() {
            match c.current() {
                Ok(cert) => {
                    status.certificate = cert.map(|st| Certificate {
                        names: st.info.names,
                        not_before: st.info.not_before,
                        not_after: st.info.not_after,
                        due: st.due,
                    });
                }
                Err(e) => status.problem = Some(e),
            }
        }
        if status.problem.is_none() && !status.configured {
            status.problem = Some("ACME_EMAIL is not set in .env".into());
        }
        Ok(Reply::new(status))
    }
}

impl Handle for RenewTls {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        body: RenewRequest,
    ) -> Result<Reply<Accepted>, Problem> {
        let c = tls(api);
        if !c.configured() {
            return Err(Problem::conflict(
                "TLS is not configured: set BASE_DOMAIN (and ACME_EMAIL, unless TLS_SOURCE is internal, file or extension:<name>) in .env",
            ));
        }
        let force = body.force.unwrap_or(false);
        let accepted = spawn_task(api, cx, Self::INFO.id, "certificate", move || async move {
            match c.renew(force, &|_| {}).await? {
                Some(r) => Ok(match r.ingress_error {
                    None => format!("renewed until {}", r.info.not_after),
                    Some(e) => format!(
                        "renewed until {}; the ingress was not refreshed: {e}",
                        r.info.not_after
                    ),
                }),
                None => Ok("not due; nothing renewed".into()),
            }
        });
        Ok(Reply::new(accepted))
    }
}

impl Handle for DeleteDnsRecord {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        p: DnsRecordPath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Deleted>, Problem> {
        let gone = dns(api)
            .remove_record(&api.plan, &p.name, &p.kind)
            .await
            .map_err(dns_problem)?;
        Ok(Reply::new(Deleted {
            id: format!("{} {} ({} values)", p.name, p.kind, gone.len()),
            deleted: true,
        }))
    }
}

// ---- security ------------------------------------------------------------------------------

fn guard(api: &Api) -> autogit_app::guard::GuardController {
    autogit_app::guard::GuardController::new(&api.settings.data_dir)
}

fn guard_problem(e: autogit_guard_service::ServiceError) -> Problem {
    use autogit_guard_service::ServiceError as E;
    match e {
        E::NotFound(id) => {
            Problem::not_found(format!("no quarantine record `{}`", id.escape_default()))
        }
        other => Problem::internal(other.to_string()),
    }
}

impl Handle for ListScans {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: PageQuery,
        _: NoBody,
    ) -> Result<Reply<RepoScanList>, Problem> {
        let g = guard(api);
        let scans =
            blocking(move || g.scans().map_err(|e| Problem::internal(e.to_string()))).await?;
        let all: Vec<RepoScan> = scans
            .into_iter()
            .map(|s| RepoScan {
                findings: s
                    .findings
                    .into_iter()
                    .map(|f| ScanFinding {
                        path: f.path,
                        line: f.finding.line,
                        column: f.finding.column,
                        kind: serde_json::to_value(f.finding.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        message: f.finding.message,
                    })
                    .collect(),
                id: s.id,
                path: s.path,
                at: s.at,
                files_scanned: s.files_scanned,
                files_skipped: s.files_skipped,
                total: s.total,
            })
            .collect();
        paged(all, q.limit, q.offset, RepoScanList)
    }
}

impl Handle for Analyze {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        body: AnalyzeRequest,
    ) -> Result<Reply<AnalyzeResult>, Problem> {
        let source = body.source.unwrap_or_else(|| "api-request".into());
        if source.is_empty() || source.chars().count() > 200 || source.chars().any(char::is_control)
        {
            return Err(Problem::invalid(
                "body.source",
                "at most 200 characters, no control characters",
            ));
        }
        let api2 = api.clone();
        let text = body.text;
        let quarantine = body.quarantine.unwrap_or(true);
        let analysis = if text.len() > 64 * 1024 {
            // Long texts off the async workers.
            tokio::task::spawn_blocking(move || {
                let t0 = std::time::Instant::now();
                let a = api2.guard.analyze(&text);
                (a, text, t0.elapsed())
            })
            .await
            .map_err(|e| Problem::internal(e.to_string()))?
        } else {
            let t0 = std::time::Instant::now();
            (api.guard.analyze(&text), text, t0.elapsed())
        };
        let (a, text, took) = analysis;
        api.metrics.guard_analysis(
            match a.verdict {
                autogit_guard::Verdict::Clean => "clean",
                autogit_guard::Verdict::Suspicious => "suspicious",
                autogit_guard::Verdict::Blocked => "blocked",
            },
            took.as_secs_f64(),
        );
        let mut quarantine_id = None;
        let flagged = a.verdict != autogit_guard::Verdict::Clean;
        if quarantine && flagged {
            let g = guard(api);
            let src = source.clone();
            let a2 = a.clone();
            quarantine_id = tokio::task::spawn_blocking(move || {
                g.store()
                    .and_then(|mut s| s.insert(&src, &text, &a2))
                    .map(|r| r.id)
            })
            .await
            .map_err(|e| Problem::internal(e.to_string()))?
            .map_err(guard_problem)
            .map(Some)?;
        }
        if flagged {
            // A security decision: recorded like a mutation (the text itself is not).
            api.record(autogit_app::audit::AuditEntry {
                actor: cx.actor(),
                role: cx.principal.as_ref().map(|p| p.role),
                action: "security.analyze".into(),
                target: quarantine_id.clone().unwrap_or_else(|| source.clone()),
                outcome: name_of(&a.verdict),
                status: Some(200),
                request_id: cx.request_id.clone(),
                source: Some(cx.client.to_string()),
            })
            .await;
        }
        let mut patterns: Vec<String> =
            a.detected_patterns.iter().map(|f| f.rule.clone()).collect();
        patterns.dedup();
        Ok(Reply::new(AnalyzeResult {
            verdict: name_of(&a.verdict),
            risk_score: a.risk_score,
            clean_text: a.clean_text,
            quarantined: a.quarantined.iter().map(|f| f.text.clone()).collect(),
            detected_patterns: patterns,
            findings: a
                .detected_patterns
                .iter()
                .map(|f| Finding {
                    rule: f.rule.clone(),
                    stage: name_of(&f.stage),
                    start: f.span.start,
                    end: f.span.end,
                    weight: f64::from(f.weight),
                })
                .collect(),
            quarantine_id,
        }))
    }
}

fn wire_quarantine(r: autogit_guard_service::store::QuarantineRecord) -> QuarantineRecord {
    QuarantineRecord {
        id: r.id,
        timestamp: r.timestamp,
        source: r.source,
        original_text: r.original_text,
        detected_patterns: r.detected_patterns,
        risk_score: r.risk_score,
        sanitized_text: r.sanitized_text,
        analysis_status: r.analysis_status.as_str().to_owned(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
}

impl Handle for ListQuarantine {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: QuarantineQuery,
        _: NoBody,
    ) -> Result<Reply<QuarantineList>, Problem> {
        use autogit_guard_service::store::AnalysisStatus;
        let status = q.status.map(|s| match s {
            QuarantineStatus::Pending => AnalysisStatus::Pending,
            QuarantineStatus::Released => AnalysisStatus::Released,
            QuarantineStatus::Confirmed => AnalysisStatus::Confirmed,
        });
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Problem::invalid(
                "query.limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let g = guard(api);
        if !g.store_path().exists() {
            return Ok(Reply::new(QuarantineList(Vec::new())));
        }
        let rows = blocking(move || g.list(status, limit as usize).map_err(guard_problem)).await?;
        Ok(Reply::new(QuarantineList(
            rows.into_iter().map(wire_quarantine).collect(),
        )))
    }
}

fn quarantine_id(id: &str) -> Result<(), Problem> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Problem::not_found(format!(
            "no quarantine record `{}`",
            id.escape_default()
        )));
    }
    Ok(())
}

async fn quarantine_record(api: &Api, id: &str) -> Result<QuarantineRecord, Problem> {
    quarantine_id(id)?;
    let g = guard(api);
    if !g.store_path().exists() {
        return Err(Problem::not_found(format!("no quarantine record `{id}`")));
    }
    let id = id.to_owned();
    blocking(move || g.show(&id).map(wire_quarantine).map_err(guard_problem)).await
}

impl Handle for GetQuarantine {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        p: QuarantinePath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<QuarantineRecord>, Problem> {
        Ok(Reply::new(quarantine_record(api, &p.id).await?))
    }
}

impl Handle for ReleaseQuarantine {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: QuarantinePath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<QuarantineRecord>, Problem> {
        let current = quarantine_record(api, &p.id).await?;
        check_if_match(cx, &etag_of(&current))?;
        let g = guard(api);
        let rec =
            blocking(move || g.release(&p.id).map(wire_quarantine).map_err(guard_problem)).await?;
        let mut r = Reply::new(rec);
        r.etag = Some(etag_of(&r.body));
        Ok(r)
    }
}

impl Handle for DeleteQuarantine {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: QuarantinePath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Deleted>, Problem> {
        let current = quarantine_record(api, &p.id).await?;
        check_if_match(cx, &etag_of(&current))?;
        let g = guard(api);
        let id = p.id.clone();
        blocking(move || g.delete(&id).map_err(guard_problem)).await?;
        Ok(Reply::new(Deleted {
            id: p.id,
            deleted: true,
        }))
    }
}

// ---- logs ----------------------------------------------------------------------------------

impl Handle for SearchLogs {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: LogSearchQuery,
        _: NoBody,
    ) -> Result<Reply<LogSearchResult>, Problem> {
        use autogit_app::logs::LogError;
        if q.q.trim().is_empty() {
            return Err(Problem::invalid("query.q", "say what to look for"));
        }
        if q.time_range.as_deref() == Some("") {
            return Err(Problem::invalid(
                "query.timeRange",
                "leave it out for everything kept, or give a number and a unit (90s, 15m, 24h, 7d, 2w)",
            ));
        }
        let mode = match q.mode.as_deref() {
            None => None,
            Some(m) => Some(autogit_core::logs::SearchMode::parse(m).ok_or_else(|| {
                Problem::invalid("query.mode", "one of hybrid, lexical, semantic")
            })?),
        };
        let logs = api.logs.clone();
        let found = tokio::task::spawn_blocking(move || {
            logs.search_mode(&q.q, q.time_range.as_deref(), 100, mode)
        })
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(|e| match e {
            LogError::Query(q) => Problem::invalid("query.q", q.to_string()),
            LogError::Range(_) => Problem::invalid("query.timeRange", e.to_string()),
            LogError::SemanticOff(_) => Problem::invalid("query.mode", e.to_string()),
            other => Problem::internal(other.to_string()),
        })?;
        Ok(Reply::new(LogSearchResult {
            indexed: found.indexed,
            hits: found
                .hits
                .into_iter()
                .map(|h| LogHit {
                    at: rfc3339_nanos(h.at_ns),
                    service: h.service,
                    message: h.message,
                    score: h.score,
                    level: h.level,
                    error_class: h.error_class,
                    http_status: h.http_status,
                    request_id: h.request_id,
                    trace_id: h.trace_id,
                    job_id: h.job_id,
                })
                .collect(),
        }))
    }
}

/// Unix nanoseconds as RFC 3339 with nanoseconds (`2026-12-06T20:42:31.123456789Z`).
fn rfc3339_nanos(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let base = autogit_core::civil::rfc3339_utc(secs.max(0) as u64);
    format!("{}.{frac:09}Z", base.trim_end_matches('Z'))
}

// ---- mirrors -------------------------------------------------------------------------------

fn mirrors(api: &Api) -> autogit_app::mirror::MirrorController {
    autogit_app::mirror::MirrorController::new(
        api.settings.clone(),
        api.bus.clone(),
        api.clock.clone(),
    )
}

impl Handle for ListMirrors {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: PageQuery,
        _: NoBody,
    ) -> Result<Reply<MirrorList>, Problem> {
        let m = mirrors(api);
        let rows = blocking(move || m.list().map_err(|e| Problem::internal(e.to_string()))).await?;
        let all: Vec<Mirror> = rows
            .into_iter()
            .map(|r| Mirror {
                name: r.name,
                kind: r.kind.to_owned(),
                source: r.source,
                target: r.target,
                last_result: r.last_result,
                last_success: r.last_success,
                last_error_at: r.last_error_at,
                last_error: r.last_error,
                lag_seconds: r.lag_s,
                lfs_bytes: r.lfs_bytes,
                problem: r.problem,
            })
            .collect();
        paged(all, q.limit, q.offset, MirrorList)
    }
}

impl Handle for SyncMirrors {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        body: SyncRequest,
    ) -> Result<Reply<Accepted>, Problem> {
        if body.repos.len() > 1000 {
            return Err(Problem::invalid("body.repos", "at most 1000 names"));
        }
        let configured: Vec<String> = {
            let m = mirrors(api);
            blocking(move || m.list().map_err(|e| Problem::internal(e.to_string())))
                .await?
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        if configured.is_empty() {
            return Err(Problem::conflict(
                "no mirrors are configured (mirroring.sources in autogit.yml)",
            ));
        }
        let target = if body.repos.is_empty() {
            "all".to_owned()
        } else {
            body.repos.join(",")
        };
        let m = mirrors(api);
        let only = body.repos;
        let accepted = spawn_task(api, cx, Self::INFO.id, &target, move || async move {
            match m.sync(&only, |_| {}, std::future::pending()).await {
                Ok(Some(r)) if r.failed == 0 => Ok(format!("{} mirrors synced", r.reports.len())),
                Ok(Some(r)) => Err(format!(
                    "{} of {} mirrors failed",
                    r.failed,
                    r.reports.len()
                )),
                Ok(None) => Ok("cancelled".into()),
                Err(e) => Err(e.to_string()),
            }
        });
        Ok(Reply::new(accepted))
    }
}

// ---- runners and compute -------------------------------------------------------------------

impl Handle for ListRunners {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: PageQuery,
        _: NoBody,
    ) -> Result<Reply<RunnerHostList>, Problem> {
        let rows = with_store(api, |s| s.hosts())?.unwrap_or_default();
        let all: Vec<RunnerHost> = rows
            .into_iter()
            .map(|h| RunnerHost {
                host: h.host,
                reachable: h.reachable,
                checked_at: h.checked_at,
                error: h.error,
                inventory: h.inventory.and_then(|i| serde_json::from_str(&i).ok()),
            })
            .collect();
        paged(all, q.limit, q.offset, RunnerHostList)
    }
}

/// Every running job's lease (none when the state database cannot say).
fn leases(api: &Api) -> std::collections::BTreeMap<String, autogit_app::compute::LeaseInfo> {
    compute(api).leases().unwrap_or_default()
}

fn wire_job(
    r: autogit_drivers::state::JobRow,
    leases: &std::collections::BTreeMap<String, autogit_app::compute::LeaseInfo>,
) -> Job {
    Job {
        lease: leases.get(&r.id).map(|l| JobLease {
            host: l.host.clone(),
            state: l.state.as_str().to_owned(),
            expires_at: l.expires_at,
            missed: l.missed,
            on_lost: l.on_lost.as_str().to_owned(),
        }),
        spec: serde_json::from_str(&r.spec).unwrap_or(serde_json::Value::Null),
        gpus: r.gpus.as_deref().and_then(|g| serde_json::from_str(g).ok()),
        id: r.id,
        user: r.user,
        state: r.state,
        submitted_at: r.submitted_at,
        host: r.host,
        started_at: r.started_at,
        finished_at: r.finished_at,
        exit_code: r.exit_code,
        message: r.message,
    }
}

fn compute(api: &Api) -> autogit_app::compute::ComputeController {
    autogit_app::compute::ComputeController::new(
        api.settings.clone(),
        api.bus.clone(),
        api.clock.clone(),
    )
}

fn compute_problem(e: autogit_app::compute::ComputeError) -> Problem {
    use autogit_app::compute::ComputeError as E;
    match e {
        E::Request(m) => Problem::invalid("body", m),
        E::NoSuchJob(id) => Problem::not_found(format!("no job `{}`", id.escape_default())),
        E::QueueFull(_) => Problem::new(StatusCode::TOO_MANY_REQUESTS, "queue-full", e.to_string())
            .retry_after(std::time::Duration::from_secs(30)),
        E::State(m) => Problem::internal(m),
    }
}

impl Handle for ListRunnerStates {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<RunnerStateList>, Problem> {
        let c = autogit_app::runners::RunnerController::new(
            api.settings.clone(),
            api.bus.clone(),
            api.clock.clone(),
        );
        let rows = c.on_demand().map_err(state_problem)?;
        Ok(Reply::new(RunnerStateList(
            rows.into_iter()
                .map(|r| RunnerState {
                    kind: if r.gpu { "gpu" } else { "cpu" }.into(),
                    mode: if r.on_demand { "on-demand" } else { "always" }.into(),
                    runner: r.runner,
                    host: r.host,
                    idle_since: r.idle_since,
                    stops_at: r.stops_at,
                })
                .collect(),
        )))
    }
}

impl Handle for ListJobs {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: JobQuery,
        _: NoBody,
    ) -> Result<Reply<JobList>, Problem> {
        let rows = with_store(api, |s| s.jobs())?.unwrap_or_default();
        let leases = leases(api);
        let all: Vec<Job> = rows
            .into_iter()
            .filter(|r| {
                q.state.is_none_or(|s| {
                    serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(|v| v == r.state))
                        .unwrap_or(false)
                })
            })
            .map(|r| wire_job(r, &leases))
            .collect();
        paged(all, q.limit, q.offset, JobList)
    }
}

fn job_row(api: &Api, id: &str) -> Result<autogit_drivers::state::JobRow, Problem> {
    let missing = || Problem::not_found(format!("no job `{}`", id.escape_default()));
    with_store(api, |s| s.job(id))?
        .flatten()
        .ok_or_else(missing)
}

impl Handle for GetJob {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        p: JobPath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Job>, Problem> {
        Ok(Reply::new(wire_job(job_row(api, &p.id)?, &leases(api))))
    }
}

impl Handle for SubmitJobOp {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        body: SubmitJob,
    ) -> Result<Reply<Job>, Problem> {
        if body.priority.is_some_and(|p| !(-1000..=1000).contains(&p)) {
            return Err(Problem::invalid("body.priority", "between -1000 and 1000"));
        }
        if body.gpus.is_some_and(|g| !(1..=64).contains(&g)) {
            return Err(Problem::invalid("body.gpus", "between 1 and 64"));
        }
        if let Some(c) = &body.capability
            && autogit_core::config::Capability::parse(c).is_none()
        {
            return Err(Problem::invalid(
                "body.capability",
                "the job's kind: inference, render or train",
            ));
        }
        if body.port == Some(0) {
            return Err(Problem::invalid("body.port", "a port between 1 and 65535"));
        }
        // The documented shapes hold whether or not the field is used (a service's fields
        // without `port` are ignored, but never accepted malformed).
        for (field, v) in [
            ("body.health_interval", &body.health_interval),
            ("body.start_period", &body.start_period),
            ("body.timeout", &body.timeout),
        ] {
            if let Some(v) = v
                && !duration_shape(v)
            {
                return Err(Problem::invalid(
                    field,
                    "a duration: 1 to 6 digits, then ms, s, m, h or d (`10s`, `2m`)",
                ));
            }
        }
        if let Some(h) = &body.health
            && !(h.starts_with('/')
                && h.len() <= 256
                && h.bytes().all(|b| (0x21..=0x7e).contains(&b)))
        {
            return Err(Problem::invalid(
                "body.health",
                "an absolute path of printable ASCII without spaces (`/health`)",
            ));
        }
        if let Some(r) = &body.route
            && !route_shape(r)
        {
            return Err(Problem::invalid(
                "body.route",
                "one DNS label: 1 to 63 of a-z, 0-9 and `-`, not starting or ending with `-`",
            ));
        }
        let on_lost = match body.on_lost.as_deref() {
            None => None,
            Some(o) => Some(
                autogit_core::lease::OnLost::parse(o)
                    .ok_or_else(|| Problem::invalid("body.on_lost", "resume or reschedule"))?,
            ),
        };
        let mut job = vec![body.image];
        job.extend(body.command);
        let row = compute(api)
            .submit(autogit_app::compute::Submit {
                gpus: body.gpus.unwrap_or(1),
                vram: body.vram,
                capability: body.capability,
                priority: body.priority.unwrap_or(0),
                user: cx.actor(),
                job,
                on_lost,
                port: body.port,
                health: body.health,
                health_interval: body.health_interval,
                start_period: body.start_period,
                timeout: body.timeout,
                route: body.route,
                guard: body.guard,
                hosts: body.hosts,
            })
            .await
            .map_err(compute_problem)?;
        let mut r = Reply::new(wire_job(row, &leases(api)));
        r.target = Some(r.body.id.clone());
        Ok(r)
    }
}

/// `^[0-9]{1,6}(ms|s|m|h|d)?$`, the schema's pattern of a job's durations.
fn duration_shape(v: &str) -> bool {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    (1..=6).contains(&digits) && matches!(&v[digits..], "" | "ms" | "s" | "m" | "h" | "d")
}

/// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, the schema's pattern of a route.
fn route_shape(v: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = v.as_bytes();
    (1..=63).contains(&b.len())
        && ok(b[0])
        && ok(b[b.len() - 1])
        && b.iter().all(|&c| ok(c) || c == b'-')
}

#[cfg(test)]
mod shape_tests {
    #[test]
    fn durations_and_routes_follow_the_schema_patterns() {
        for ok in ["7m", "10s", "250ms", "0", "123456d"] {
            assert!(super::duration_shape(ok), "{ok}");
        }
        for bad in ["7m*", "", "m", "1234567s", "10 s", "-1s", "1y"] {
            assert!(!super::duration_shape(bad), "{bad}");
        }
        for ok in ["llm", "a", "a-b", "x9"] {
            assert!(super::route_shape(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", &"a".repeat(64)] {
            assert!(!super::route_shape(bad), "{bad}");
        }
    }
}

impl Handle for CancelJob {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: JobPath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Job>, Problem> {
        let current = wire_job(job_row(api, &p.id)?, &leases(api));
        check_if_match(cx, &etag_of(&current))?;
        let row = compute(api).cancel(&p.id).await.map_err(|e| match e {
            autogit_app::compute::ComputeError::Request(m) => Problem::conflict(m),
            other => compute_problem(other),
        })?;
        Ok(Reply::new(wire_job(row, &leases(api))))
    }
}

// ---- backups -------------------------------------------------------------------------------

fn backups(api: &Api) -> autogit_app::backup::BackupController {
    autogit_app::backup::BackupController::new(
        api.settings.clone(),
        api.bus.clone(),
        api.clock.clone(),
    )
}

fn archives(api: &Api) -> Result<Vec<Backup>, Problem> {
    let dir = api.settings.backup_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut v: Vec<Backup> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let meta = e.metadata().ok()?;
            (meta.is_file() && autogit_core::backup::is_archive_name(&name)).then(|| Backup {
                bytes: meta.len(),
                modified: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64),
                name,
            })
        })
        .collect();
    v.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(v)
}

impl Handle for ListBackups {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: PageQuery,
        _: NoBody,
    ) -> Result<Reply<BackupList>, Problem> {
        let api2 = api.clone();
        let all = blocking(move || archives(&api2)).await?;
        paged(all, q.limit, q.offset, BackupList)
    }
}

impl Handle for CreateBackup {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Accepted>, Problem> {
        let b = backups(api);
        let accepted = spawn_task(api, cx, Self::INFO.id, "gitlab", move || async move {
            b.create(&|_| {})
                .await
                .map(|t| t.report.archive.display().to_string())
        });
        Ok(Reply::new(accepted))
    }
}

impl Handle for RestoreBackup {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: BackupPath,
        _: NoParams,
        body: RestoreRequest,
    ) -> Result<Reply<Accepted>, Problem> {
        if !autogit_core::backup::is_archive_name(&p.name) {
            return Err(Problem::not_found(format!(
                "no backup `{}`",
                p.name.escape_default()
            )));
        }
        let path = api.settings.backup_dir().join(&p.name);
        if !path.is_file() {
            return Err(Problem::not_found(format!(
                "no backup `{}`; GET /api/v1/backups lists them",
                p.name
            )));
        }
        if p.name.ends_with(autogit_core::backup::AGE_SUFFIX) {
            return Err(Problem::conflict(
                "this archive is encrypted: restore it on the server with `autogit restore --identity FILE` (the API never receives an age identity or passphrase)",
            ));
        }
        if body.confirm != p.name {
            return Err(Problem::invalid(
                "body.confirm",
                "restoring replaces GitLab's data: repeat the archive's name here to confirm",
            ));
        }
        let b = backups(api);
        let accepted = spawn_task(api, cx, Self::INFO.id, &p.name, move || async move {
            b.restore(
                &path,
                &autogit_drivers::backup::Decryption::None,
                std::time::Duration::from_secs(900),
                &|_| {},
            )
            .await
            .map(|r| format!("{} secrets restored", r.secrets_restored.len()))
        });
        Ok(Reply::new(accepted))
    }
}

// ---- auth and audit ------------------------------------------------------------------------

fn access_problem(e: impl std::fmt::Display) -> Problem {
    Problem::conflict(e.to_string())
}

impl Handle for IssueToken {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        body: TokenRequest,
    ) -> Result<Reply<Token>, Problem> {
        use secrecy::ExposeSecret;
        let ttl = body.ttl_seconds.unwrap_or(900);
        if !(60..=86_400).contains(&ttl) {
            return Err(Problem::invalid("body.ttl_seconds", "between 60 and 86400"));
        }
        if let Some(user) = &body.username
            && (user.is_empty() || user.chars().count() > 128)
        {
            return Err(Problem::invalid("body.username", "1 to 128 characters"));
        }
        let denied = |e: autogit_app::access::AuthError| crate::server::auth_problem(&e);
        let principal = match (&cx.bearer, &body.username, &body.password) {
            (_, Some(user), Some(password)) => {
                let password = secrecy::SecretString::from(password.clone());
                api.access
                    .login(body.provider.as_deref(), user, &password)
                    .await
                    .map_err(denied)?
            }
            (Some(key), _, _) => api
                .access
                .authenticate(key.expose_secret())
                .map_err(denied)?,
            (None, _, _) => {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "send an API key in `Authorization: Bearer`, or a username and a password",
                ));
            }
        };
        let issued = api
            .access
            .issue_token(
                &principal,
                Some(std::time::Duration::from_secs(u64::from(ttl))),
            )
            .map_err(|e| Problem::internal(e.to_string()))?;
        let mut r = Reply::new(Token {
            access_token: issued.token.expose_secret().to_owned(),
            token_type: "Bearer".into(),
            expires_at: issued.expires_at,
            token_id: issued.token_id,
        });
        r.target = Some(principal.subject);
        Ok(r)
    }
}

impl Handle for WhoAmIOp {
    async fn handle(
        _: &Arc<Api>,
        cx: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<WhoAmI>, Problem> {
        let p = cx
            .principal
            .as_ref()
            .ok_or_else(|| Problem::internal("no principal"))?;
        Ok(Reply::new(WhoAmI {
            subject: p.subject.clone(),
            role: p.role.into(),
            scopes: p.scopes.clone(),
            expires_at: p.expires_at,
        }))
    }
}

impl Handle for RevokeTokenOp {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        body: RevokeToken,
    ) -> Result<Reply<Done>, Problem> {
        if body.token_id.is_empty() || body.token_id.chars().count() > 128 {
            return Err(Problem::invalid("body.token_id", "a token id as issued"));
        }
        api.access
            .revoke_token(&body.token_id)
            .map_err(access_problem)?;
        let mut r = Reply::new(Done {
            ok: true,
            detail: format!("token {} revoked", body.token_id),
        });
        r.target = Some(body.token_id);
        Ok(r)
    }
}

fn wire_key(k: autogit_app::access::KeyInfo) -> ApiKey {
    ApiKey {
        prefix: k.prefix,
        name: k.name,
        role: k.role.into(),
        scopes: k.scopes.iter().filter_map(|s| Area::parse(s)).collect(),
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
    }
}

impl Handle for ListKeys {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: PageQuery,
        _: NoBody,
    ) -> Result<Reply<ApiKeyList>, Problem> {
        let keys = api
            .access
            .list_keys()
            .map_err(|e| Problem::internal(e.to_string()))?;
        paged(
            keys.into_iter().map(wire_key).collect(),
            q.limit,
            q.offset,
            ApiKeyList,
        )
    }
}

impl Handle for CreateKeyOp {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        body: CreateKey,
    ) -> Result<Reply<CreatedKey>, Problem> {
        use secrecy::ExposeSecret;
        let name_ok = body.name.len() <= 100
            && body
                .name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && body
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" ._@-".contains(&b));
        if !name_ok {
            return Err(Problem::invalid(
                "body.name",
                "1 to 100 of letters, digits, space, `.`, `_`, `@`, `-`, starting with a letter or digit",
            ));
        }
        if body.expires_in_days == Some(0) || body.expires_in_days.is_some_and(|d| d > 3650) {
            return Err(Problem::invalid(
                "body.expires_in_days",
                "between 1 and 3650",
            ));
        }
        let created = api
            .access
            .create_key(autogit_app::access::NewKey {
                name: body.name,
                role: body.role.into(),
                scopes: body.scopes.iter().map(|a| a.as_str().to_owned()).collect(),
                ttl: body
                    .expires_in_days
                    .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400)),
            })
            .map_err(access_problem)?;
        let key = created.secret.expose_secret().to_owned();
        let info = wire_key(created.info);
        let mut r = Reply::new(CreatedKey { key, info });
        r.target = Some(r.body.info.prefix.clone());
        Ok(r)
    }
}

impl Handle for RevokeKey {
    async fn handle(
        api: &Arc<Api>,
        cx: &Cx,
        p: KeyPath,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<ApiKey>, Problem> {
        let Some(prefix) = autogit_core::access::parse_key_prefix(&p.prefix) else {
            return Err(Problem::not_found(format!(
                "no key `{}`",
                p.prefix.escape_default()
            )));
        };
        if cx
            .principal
            .as_ref()
            .is_some_and(|me| me.subject == format!("key:{}", autogit_core::access::key_id(prefix)))
        {
            return Err(Problem::conflict(
                "this request authenticated with that key: revoke it with another admin key (or `autogit api-key revoke` on the server), so that nobody locks themselves out",
            ));
        }
        let info = api
            .access
            .revoke_key(prefix)
            .map_err(|e| Problem::not_found(e.to_string()))?;
        Ok(Reply::new(wire_key(info)))
    }
}

impl Handle for RotateSigningKey {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<Done>, Problem> {
        let kid = api.access.rotate_signing_key().map_err(access_problem)?;
        let mut r = Reply::new(Done {
            ok: true,
            detail: format!("tokens are now signed with key {kid}"),
        });
        r.target = Some(kid);
        Ok(r)
    }
}

impl Handle for ListAudit {
    async fn handle(
        api: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        q: AuditQuery,
        _: NoBody,
    ) -> Result<Reply<AuditList>, Problem> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Problem::invalid(
                "query.limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        if q.after.is_some_and(|a| a > 9_007_199_254_740_991) {
            return Err(Problem::invalid("query.after", "at most 9007199254740991"));
        }
        let audit = api.audit.clone();
        let query = autogit_app::audit::AuditQuery {
            after: q.after,
            limit: limit as usize,
            actor: q.actor,
            action: q.action,
        };
        let rows = blocking(move || {
            audit
                .list(&query)
                .map_err(|e| Problem::internal(e.to_string()))
        })
        .await?;
        Ok(Reply::new(AuditList(
            rows.into_iter()
                .map(|r| AuditRecord {
                    seq: r.seq,
                    at: r.at,
                    actor: r.entry.actor,
                    role: r.entry.role.map(Into::into),
                    action: r.entry.action,
                    target: r.entry.target,
                    outcome: r.entry.outcome,
                    status: r.entry.status,
                    request_id: r.entry.request_id,
                    source: r.entry.source,
                    prev: r.prev,
                    hash: r.hash,
                })
                .collect(),
        )))
    }
}

impl Handle for ScrapeMetrics {
    async fn handle(
        _: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<String>, Problem> {
        // Routed to `metrics::scrape` (see `server::route`); this answers only if it is not.
        Err(Problem::internal("the metrics route is not wired"))
    }
}

impl Handle for Events {
    async fn handle(
        _: &Arc<Api>,
        _: &Cx,
        _: NoParams,
        _: NoParams,
        _: NoBody,
    ) -> Result<Reply<EventEnvelope>, Problem> {
        // Routed to `events::stream` (see `server::route`); this answers only if it is not.
        Err(Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-acceptable",
            "this operation is a stream: send `Accept: text/event-stream`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job's wire form carries its lease as `compute status` shows it; a job without one has
    /// `lease: null`.
    #[test]
    fn jobs_carry_their_lease() {
        let row = |id: &str| autogit_drivers::state::JobRow {
            id: id.into(),
            user: "ann".into(),
            state: "running".into(),
            spec: r#"{"image":"x","gpus":1,"vram":"8G"}"#.into(),
            submitted_at: 1,
            host: Some("gpu1".into()),
            gpus: Some("[0]".into()),
            container: None,
            started_at: Some(2),
            finished_at: None,
            exit_code: None,
            message: String::new(),
            host_port: None,
        };
        let leases = std::collections::BTreeMap::from([(
            "job-1".to_owned(),
            autogit_app::compute::LeaseInfo {
                host: "gpu1".into(),
                state: autogit_core::lease::LeaseState::Unreachable,
                expires_at: 120,
                missed: 2,
                on_lost: autogit_core::lease::OnLost::Resume,
            },
        )]);
        let v = serde_json::to_value(wire_job(row("job-1"), &leases)).unwrap();
        assert_eq!(
            v["lease"],
            serde_json::json!({
                "host": "gpu1", "state": "unreachable", "expires_at": 120, "missed": 2,
                "on_lost": "resume"
            })
        );
        let v = serde_json::to_value(wire_job(row("job-2"), &leases)).unwrap();
        assert!(v["lease"].is_null(), "{v}");
    }
}
