//! `GET /metrics`: autogit's metrics in the Prometheus/OpenMetrics text exposition
//! (`autogit_app::metrics`). It passes the same gate as every operation: a credential with
//! the viewer role whose scopes include `metrics` (`autogit api-key create prometheus --role
//! viewer --scope metrics`: that key reaches nothing else). Prometheus sends it from a file
//! (`authorization.credentials_file`, as `core::monitoring` renders it).

use crate::op::Operation;
use crate::ops::ScrapeMetrics;
use crate::server::Api;
use autogit_app::metrics::{CONTENT_TYPE, StateSnapshot};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Whether `O` is served by [`scrape`] rather than as a JSON operation.
pub fn is_scrape<O: Operation>() -> bool {
    O::INFO.id == ScrapeMetrics::INFO.id
}

/// The route of [`ScrapeMetrics`]: the gate's authorization, then (off the async workers)
/// what the store recorded since the last scrape is counted, its state read, and the
/// exposition written.
pub async fn scrape(State(api): State<Arc<Api>>, req: Request) -> Response {
    let started = Instant::now();
    let (mut parts, _) = req.into_parts();
    let rid = crate::server::request_id_of(&parts.headers);
    let resp = match crate::server::authorize::<ScrapeMetrics>(&api, &mut parts, &rid).await {
        Err(resp) => resp,
        Ok(_) => {
            let a = api.clone();
            match tokio::task::spawn_blocking(move || text(&a)).await {
                Ok(Ok(body)) => {
                    let mut r = (StatusCode::OK, body).into_response();
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                    r
                }
                Ok(Err(p)) => p.with_instance(&rid).into_response(),
                Err(e) => crate::problem::Problem::internal(e.to_string())
                    .with_instance(&rid)
                    .into_response(),
            }
        }
    };
    api.metrics.api_request(
        ScrapeMetrics::INFO.id,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

fn text(api: &Api) -> Result<String, crate::problem::Problem> {
    let now = api.clock.now();
    let mut snap = crate::handlers::with_store(api, |s| {
        api.metrics.catch_up(s)?;
        StateSnapshot::read(s, &api.settings, now)
    })?
    .unwrap_or_default();
    let tls = crate::handlers::tls(api);
    if tls.configured() {
        snap.certificate_not_after = tls.current().ok().flatten().map(|c| c.info.not_after);
    }
    Ok(api.metrics.render(&snap, now))
}
