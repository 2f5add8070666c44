//! Traces: `tracing`'s spans exported to an OpenTelemetry collector (Tempo, the OpenTelemetry
//! Collector, Jaeger) over OTLP/HTTP with protobuf bodies (`POST <endpoint>/v1/traces`,
//! `Content-Type: application/x-protobuf`), switched on by `OTLP_ENDPOINT` (docs/observability.md).
//!
//! The spans are those the code opens: `api.request` (one per API call), the controllers'
//! (`dns.plan`, `dns.sync`, …) and the drivers' (`dns.list`, `dns.apply`, …), so a trace shows
//! an API request, the controller action it ran and the I/O that action did. Spans are batched
//! on the exporter's own thread (at most every [`SCHEDULED_DELAY`], up to 2048 queued; more are
//! dropped, never blocking a request) and flushed by [`Telemetry::shutdown`].
//!
//! No span attribute holds a secret: fields are operation ids, service, provider and record
//! names, request ids and status codes.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use std::time::Duration;
use tracing_subscriber::registry::LookupSpan;

/// How often the batch of finished spans is sent.
pub const SCHEDULED_DELAY: Duration = Duration::from_secs(2);
/// One export's time limit.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "OTLP_ENDPOINT `{endpoint}` is not usable ({reason}): give the collector's OTLP/HTTP base URL, such as http://tempo:4318 (autogit adds /v1/traces)"
    )]
    Endpoint { endpoint: String, reason: String },
}

/// The exporter's HTTP client: reqwest's blocking client, called from the batch processor's
/// own thread (never from the async runtime's).
#[derive(Debug)]
struct Client(reqwest::blocking::Client);

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request: reqwest::blocking::Request = request.try_into()?;
        let response = self.0.execute(request)?;
        let status = response.status();
        let headers = response.headers().clone();
        // A collector's answer is small (a partial-success message at most): 64 KiB.
        let mut body = Vec::new();
        use std::io::Read;
        response.take(64 * 1024).read_to_end(&mut body)?;
        let mut out = Response::builder().status(status).body(Bytes::from(body))?;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

/// The tracer provider behind the layer; [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// The exporter to `endpoint` (the collector's OTLP/HTTP base URL; `/v1/traces` is added)
    /// and the `tracing` layer that feeds it, for service `service` (`service.name`).
    ///
    /// Must be called outside an async runtime: the blocking HTTP client owns one of its own.
    pub fn otlp<S>(
        endpoint: &str,
        service: &str,
    ) -> Result<(Self, impl tracing_subscriber::Layer<S> + use<S>), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let bad = |reason: String| TelemetryError::Endpoint {
            // Credentials in a URL never reach a message.
            endpoint: if endpoint.contains('@') {
                "<a URL with credentials>".to_owned()
            } else {
                endpoint.to_owned()
            },
            reason,
        };
        let base = endpoint.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('@') {
            return Err(bad(
                "not an http:// or https:// URL without credentials".into()
            ));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(Client(client))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(SCHEDULED_DELAY)
                    .with_max_queue_size(2048)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .build(),
            )
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("autogit");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((Self { provider }, layer))
    }

    /// Sends the spans still queued (within [`EXPORT_TIMEOUT`]) and stops the exporter. Call it
    /// outside the async runtime, after the last span ended.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            eprintln!("autogit: traces: the last spans were not all sent: {e}");
        }
    }
}

/// The trace id (32 hex digits) of the current span, when it is part of an exported trace.
pub fn current_trace_id() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The current span as a W3C Trace Context `traceparent` header
/// (`00-<trace id>-<span id>-<flags>`), when it is part of an exported trace: what autogit's
/// HTTP clients send on ([`Traced`]), so a service that continues traces (GitLab, Loki,
/// Kubernetes' API server with tracing on, a collector in front of them) puts its work under
/// autogit's span.
pub fn traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// `traceparent` on an outgoing request ([`traceparent`]), nothing when there is no trace.
/// Used by the clients of services the platform runs or the user points it at (GitLab, the
/// Kubernetes API, Loki, Meilisearch); not by the clients of public SaaS APIs (Cloudflare,
/// Route 53, Cloud DNS, GitHub, chat webhooks), which do nothing with it (docs/observability.md).
pub trait Traced {
    fn traced(self) -> Self;
}

impl Traced for reqwest::RequestBuilder {
    fn traced(self) -> Self {
        match traceparent() {
            Some(tp) => self.header("traceparent", tp),
            None => self,
        }
    }
}

/// Continues the caller's trace: a W3C Trace Context `traceparent` header
/// (`00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`) becomes the remote parent of
/// `span`, which must not have been entered yet. Whether it is sampled follows the caller's
/// flag. An invalid header (or an all-zero id) is ignored: the span starts a trace of its own.
/// Returns whether the header was taken.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(sc) = parse_traceparent(traceparent) else {
        return false;
    };
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    span.set_parent(cx).is_ok()
}

/// The span context of a `traceparent` header (W3C Trace Context, level 1): version `00`, or a
/// later version read as `00` is (its first four fields), never `ff`; lowercase hex only.
fn parse_traceparent(h: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let h = h.trim();
    let parts: Vec<&str> = h.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (version, trace, span, flags) = match parts.as_slice() {
        [v, t, s, f] => (*v, *t, *s, *f),
        [v, t, s, f, ..] if *v != "00" => (*v, *t, *s, *f),
        _ => return None,
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_must_be_a_plain_http_url() {
        type S = tracing_subscriber::Registry;
        for bad in ["tempo:4318", "ftp://x", "http://user:pw@tempo:4318"] {
            let err = Telemetry::otlp::<S>(bad, "autogit").err().unwrap();
            assert!(err.to_string().contains("OTLP_ENDPOINT"), "{err}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
        assert!(current_trace_id().is_none(), "no span, no trace");
    }

    #[test]
    fn traceparent_as_w3c_trace_context_defines_it() {
        let ok =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            ok.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ok.span_id().to_string(), "00f067aa0ba902b7");
        assert!(ok.is_sampled() && ok.is_remote());
        let not_sampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!not_sampled.is_sampled());
        // A later version: its first four fields, more may follow.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
