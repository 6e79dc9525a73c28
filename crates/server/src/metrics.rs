//! Prometheus metrics: requests by route and status, webhook deliveries by provider and result,
//! processing of stored outside deliveries, and jobs by queue state (read from the store on each
//! scrape).
//!
//! The registry belongs to the [`crate::AppState`], not to the process-wide `metrics` recorder,
//! so several servers in one process (tests) keep separate counts and nothing here depends on
//! who installed a global recorder.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use codemill_store::QueueState;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::AppState;
use crate::error::ApiError;

const HTTP_REQUESTS: &str = "codemill_http_requests_total";
const HTTP_DURATION: &str = "codemill_http_request_duration_seconds";
const WEBHOOK_DELIVERIES: &str = "codemill_webhook_deliveries_total";
const INBOX_PROCESSED: &str = "codemill_inbox_processed_total";
const JOBS: &str = "codemill_jobs";

const QUEUE_STATES: [QueueState; 6] = [
    QueueState::Queued,
    QueueState::Leased,
    QueueState::Waiting,
    QueueState::Done,
    QueueState::Dead,
    QueueState::Cancelled,
];

/// The server's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            recorder: Arc::new(PrometheusBuilder::new().build_recorder()),
        };
        metrics.with(|| {
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request duration by method and route"
            );
            metrics::describe_counter!(
                WEBHOOK_DELIVERIES,
                "Webhook deliveries by provider and result"
            );
            metrics::describe_counter!(
                INBOX_PROCESSED,
                "Attempts at processing stored outside deliveries, by provider and result"
            );
            metrics::describe_gauge!(JOBS, "Jobs by queue state, as of the last scrape");
        });
        metrics
    }

    /// Everything recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self.recorder.as_ref(), f)
    }

    pub(crate) fn request(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        self.with(|| {
            metrics::counter!(
                HTTP_REQUESTS,
                "method" => method,
                "route" => route.to_string(),
                "status" => status.to_string()
            )
            .increment(1);
            metrics::histogram!(
                HTTP_DURATION,
                "method" => method,
                "route" => route.to_string()
            )
            .record(seconds);
        });
    }

    /// `provider` must be a known provider name (or "unknown"): it becomes a label.
    pub(crate) fn delivery(&self, provider: &'static str, result: &'static str) {
        self.with(|| {
            metrics::counter!(WEBHOOK_DELIVERIES, "provider" => provider, "result" => result)
                .increment(1);
        });
    }

    /// One attempt at processing a stored outside delivery; `provider` as for [`Self::delivery`].
    pub(crate) fn processed(&self, provider: &'static str, result: &'static str) {
        self.with(|| {
            metrics::counter!(INBOX_PROCESSED, "provider" => provider, "result" => result)
                .increment(1);
        });
    }

    fn jobs(&self, counts: &[(QueueState, u64)]) {
        self.with(|| {
            for (state, n) in counts {
                metrics::gauge!(JOBS, "state" => state.as_str()).set(*n as f64);
            }
        });
    }
}

/// Count and time every request, labelled by its route template (never the raw path, whose
/// ticket keys and ids would make a label per ticket).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = standard_method(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.metrics().request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The method as a label; any non-standard method is "other" so callers cannot mint labels.
fn standard_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`: refresh the job gauge from the store, then render.
pub(crate) async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counted = state.store().queue_counts().await?;
    // Every state gets a value, 0 when no row is in it.
    let counts: Vec<(QueueState, u64)> = QUEUE_STATES
        .iter()
        .map(|s| {
            let n = counted.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
            (*s, n)
        })
        .collect();
    state.metrics().jobs(&counts);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response())
}
