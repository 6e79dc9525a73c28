//! Liveness and readiness: `GET /health` always answers 200 and says whether the store is
//! reachable; `GET /ready` answers 503 while it is not, so a load balancer sends requests to
//! nodes that can serve them. One probe (a `SELECT 1`, bounded in time) runs at most once per
//! second and its answer is shared, so probes from many balancers cost the store nothing.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// How long one probe may take before the store counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a probe's answer is reused.
const PROBE_TTL: Duration = Duration::from_secs(1);

/// The last probe's time and answer (`Err` says why the store is unreachable).
#[derive(Default)]
pub(crate) struct Probe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Probe {
    /// The store's state, probed again when the last answer is older than a second. Callers
    /// arriving during a probe wait for it instead of starting their own.
    async fn check(&self, state: &AppState) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < PROBE_TTL
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, state.store().ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the store did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            )),
        };
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let backend = state.store().backend();
    let body = match state.probe().check(&state).await {
        Ok(()) => json!({ "status": "ok", "store": backend, "store_reachable": true }),
        Err(e) => json!({
            "status": "degraded",
            "store": backend,
            "store_reachable": false,
            "store_error": e,
        }),
    };
    axum::Json(body).into_response()
}

pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.probe().check(&state).await {
        Ok(()) => axum::Json(json!({ "ready": true })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "store_error": e })),
        )
            .into_response(),
    }
}
