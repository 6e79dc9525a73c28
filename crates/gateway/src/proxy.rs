//! One request through the gateway: token, budgets, key swap, forwarding, metering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use codemill_core::config::ProviderApi;
use codemill_store::{ModelCall, SpendScope, day_of};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::refuse::{self, Kind};
use crate::usage::UsageReader;
use crate::{Inner, Live, Refusal};

/// Requests are JSON conversations; anything larger is refused before it is read.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// How long a budget check waits for earlier answers of the same pass to be recorded.
const SETTLE: Duration = Duration::from_secs(2);

/// Headers never passed on: the agent's credentials, and hop-by-hop ones.
const DROPPED: &[&str] = &[
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    // Usage is read from the answer, so it must arrive uncompressed.
    "accept-encoding",
];

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner)
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    // Claude Code's preconnect check carries no credentials and needs no provider.
    if request.method() == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let guessed = guess_api(request.uri().path());
    let Some(token) = token_of(request.headers(), request.uri().query()) else {
        return error(
            guessed,
            StatusCode::UNAUTHORIZED,
            Kind::Unauthorized,
            "codemill gateway: no per-step token in the request",
        );
    };
    let Some(live) = inner.pass(&token) else {
        return error(
            guessed,
            StatusCode::UNAUTHORIZED,
            Kind::Unauthorized,
            "codemill gateway: unknown or expired per-step token",
        );
    };
    if let Some(tool) = request.uri().path().strip_prefix(KNOWLEDGE_PREFIX) {
        let tool = tool.to_string();
        return knowledge(&inner, &live, &tool, request).await;
    }
    let api = live.grant.upstream.api;
    let started = Instant::now();
    // The model request in the job's trace (GenAI conventions); named once the model is known.
    let span = tracing::info_span!(
        parent: &live.span,
        "model_request",
        otel.name = %format!("{} {}", api.gen_ai_operation(), live.grant.model),
        otel.kind = "client",
        gen_ai.operation.name = api.gen_ai_operation(),
        gen_ai.provider.name = api.gen_ai_provider(),
        gen_ai.request.model = %live.grant.model,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.usage.cache_read.input_tokens = tracing::field::Empty,
        gen_ai.usage.cache_creation.input_tokens = tracing::field::Empty,
        cost_usd = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.r#type = tracing::field::Empty,
        refused = tracing::field::Empty,
    );
    if let Some(refusal) = over_budget(&inner, &live).await {
        let refusal = match refusal {
            Ok(r) => r,
            Err(message) => {
                return error(
                    api,
                    StatusCode::SERVICE_UNAVAILABLE,
                    Kind::Unavailable,
                    &message,
                );
            }
        };
        let message = format!("codemill: {}", refusal.message());
        tracing::info!(job = %live.grant.scope.job, %message, "model request refused");
        record(
            &inner,
            &live,
            Recorded {
                model: live.grant.model.clone(),
                usage: Default::default(),
                status: 400,
                streamed: false,
                latency: started.elapsed(),
                refused: Some(refusal.budget.clone()),
                span,
            },
        )
        .await;
        live.lock().refused = Some(refusal);
        live.refused.cancel();
        return error(api, StatusCode::BAD_REQUEST, Kind::Budget, &message);
    }
    live.begin();
    let response = forward(&inner, &live, request, started, span).await;
    // `forward` hands the in-flight mark to the answer's body when there is one.
    match response {
        Ok(response) => response,
        Err(response) => {
            live.end();
            response
        }
    }
}

/// Where the knowledge tools are answered (`codemill_core::knowledge::ROUTE`).
pub const KNOWLEDGE_PREFIX: &str = codemill_core::knowledge::ROUTE;

/// Arguments of a knowledge call are small; a larger body is refused before it is read.
const KNOWLEDGE_BODY_LIMIT: usize = 256 * 1024;

/// One knowledge tool call under a pass: the pass fixes the project and who records. Answers
/// `{"result": ...}`, or `{"error": "..."}` with 400 (bad arguments) / 404 (no such tool).
async fn knowledge(inner: &Inner, live: &Live, tool: &str, request: Request) -> Response {
    let answer = |status: StatusCode, body: Value| (status, axum::Json(body)).into_response();
    if request.method() != Method::POST {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "knowledge tools are called with POST"}),
        );
    }
    let bytes = match axum::body::to_bytes(request.into_body(), KNOWLEDGE_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                serde_json::json!({"error": format!("cannot read the arguments: {e}")}),
            );
        }
    };
    let args: Value = if bytes.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("the arguments are not JSON: {e}")}),
                );
            }
        }
    };
    let scope = &live.grant.scope;
    let tools = crate::knowledge::Knowledge::new(
        inner.store.clone(),
        scope.project.clone(),
        format!("agent:{} {}", scope.stage, scope.ticket),
    );
    match tools.call(tool, &args).await {
        Ok(result) => answer(StatusCode::OK, serde_json::json!({ "result": result })),
        Err(e) => {
            let status = match e {
                crate::knowledge::ToolError::Invalid(_) => StatusCode::BAD_REQUEST,
                crate::knowledge::ToolError::Unknown(_) => StatusCode::NOT_FOUND,
                crate::knowledge::ToolError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            answer(status, serde_json::json!({ "error": e.to_string() }))
        }
    }
}

/// The API a request without a valid token was meant for, to answer in its shape.
fn guess_api(path: &str) -> ProviderApi {
    if path.contains("/messages") {
        ProviderApi::Anthropic
    } else if path.contains("generateContent") {
        ProviderApi::Gemini
    } else if path.contains("/responses") {
        ProviderApi::OpenaiResponses
    } else {
        ProviderApi::OpenaiChat
    }
}

/// The token, wherever the agent's provider would put a key.
fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(v) = header("x-api-key").or_else(|| header("x-goog-api-key")) {
        return Some(v.to_string());
    }
    if let Some(v) = header("authorization") {
        let v = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(v.trim().to_string());
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .map(str::to_string)
}

/// `Some(Ok)` when a budget is spent, `Some(Err)` when spend cannot be read (fail closed).
async fn over_budget(inner: &Inner, live: &Live) -> Option<Result<Refusal, String>> {
    if let Some(refusal) = live.lock().refused.clone() {
        return Some(Ok(refusal));
    }
    let budgets = live.grant.budgets;
    if budgets.is_empty() {
        return None;
    }
    live.settle(SETTLE).await;
    let scope = &live.grant.scope;
    let day = day_of(Utc::now());
    let spend = match inner
        .store
        .spend(SpendScope {
            job: &scope.job,
            ticket: &scope.ticket,
            project: &scope.project,
            day: &day,
        })
        .await
    {
        Ok(spend) => spend,
        Err(e) => {
            return Some(Err(format!(
                "codemill gateway: cannot read spend to check budgets: {e}"
            )));
        }
    };
    let checks = [
        ("job_usd", budgets.job_usd, spend.job_usd),
        ("ticket_usd", budgets.ticket_usd, spend.ticket_usd),
        (
            "project_day_usd",
            budgets.project_day_usd,
            spend.project_day_usd,
        ),
        ("day_usd", budgets.day_usd, spend.day_usd),
        (
            "job_tokens",
            budgets.job_tokens.map(|t| t as f64),
            spend.job_tokens as f64,
        ),
    ];
    checks
        .into_iter()
        .find_map(|(budget, limit, spent)| {
            let limit = limit?;
            (spent >= limit).then(|| Refusal {
                budget: budget.to_string(),
                limit,
                spent,
            })
        })
        .map(Ok)
}

fn error(api: ProviderApi, status: StatusCode, kind: Kind, message: &str) -> Response {
    let body = refuse::body(api, status.as_u16(), kind, message);
    (status, axum::Json(body)).into_response()
}

/// Sends the request on with the real key; `Err` is an answer of the gateway's own.
async fn forward(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    request: Request,
    started: Instant,
    span: tracing::Span,
) -> Result<Response, Response> {
    let upstream = &live.grant.upstream;
    let api = upstream.api;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        error(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Unavailable,
            &format!("codemill gateway: cannot read the request: {e}"),
        )
    })?;
    let (bytes, model) = prepare_body(api, parts.uri.path(), bytes);
    let model = model.unwrap_or_else(|| live.grant.model.clone());
    if model != live.grant.model {
        span.record("gen_ai.request.model", model.as_str());
        span.record("otel.name", format!("{} {model}", api.gen_ai_operation()));
    }
    let path_and_query = match parts.uri.query() {
        Some(q) => {
            let kept: Vec<&str> = q.split('&').filter(|p| !p.starts_with("key=")).collect();
            if kept.is_empty() {
                parts.uri.path().to_string()
            } else {
                format!("{}?{}", parts.uri.path(), kept.join("&"))
            }
        }
        None => parts.uri.path().to_string(),
    };
    let url = format!(
        "{}{path_and_query}",
        upstream.base_url.trim_end_matches('/')
    );
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !DROPPED.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let key = upstream.key.expose_secret();
    if !key.is_empty() {
        let (name, value) = match api {
            ProviderApi::Anthropic | ProviderApi::Demo => ("x-api-key", key.to_string()),
            ProviderApi::OpenaiChat | ProviderApi::OpenaiResponses => {
                ("authorization", format!("Bearer {key}"))
            }
            ProviderApi::Gemini => ("x-goog-api-key", key.to_string()),
        };
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let sent = inner
        .http
        .request(parts.method.clone(), &url)
        .headers(headers)
        .body(bytes)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            let message = format!(
                "codemill gateway: the provider could not be reached: {}",
                without_url(&e)
            );
            record(
                inner,
                live,
                Recorded {
                    model,
                    usage: Default::default(),
                    status: 502,
                    streamed: false,
                    latency: started.elapsed(),
                    refused: None,
                    span,
                },
            )
            .await;
            return Err(error(
                api,
                StatusCode::BAD_GATEWAY,
                Kind::Unavailable,
                &message,
            ));
        }
    };
    let status = answer.status();
    let streamed = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in answer.headers() {
        if !DROPPED.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let meter = Meter {
        inner: inner.clone(),
        live: live.clone(),
        reader: Some(UsageReader::new(api, streamed)),
        model,
        status: status.as_u16(),
        streamed,
        started,
        span,
    };
    let stream =
        futures_util::stream::unfold(Some((answer.bytes_stream(), meter)), |state| async move {
            let (mut upstream, mut meter) = state?;
            match upstream.next().await {
                Some(Ok(chunk)) => {
                    meter.feed(&chunk);
                    Some((Ok::<Bytes, std::io::Error>(chunk), Some((upstream, meter))))
                }
                Some(Err(e)) => {
                    meter.finish().await;
                    Some((Err(std::io::Error::other(without_url(&e))), None))
                }
                None => {
                    meter.finish().await;
                    None
                }
            }
        });
    builder.body(Body::from_stream(stream)).map_err(|e| {
        error(
            api,
            StatusCode::BAD_GATEWAY,
            Kind::Unavailable,
            &format!("codemill gateway: {e}"),
        )
    })
}

/// The request body as sent on, and the model it names. A streamed Chat Completions request is
/// asked to report usage in its last chunk (it does not by default).
fn prepare_body(api: ProviderApi, path: &str, bytes: Bytes) -> (Bytes, Option<String>) {
    let gemini_model = || {
        path.split("/models/")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .map(str::to_string)
    };
    let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) else {
        return (
            bytes,
            (api == ProviderApi::Gemini).then(gemini_model).flatten(),
        );
    };
    let model = match api {
        ProviderApi::Gemini => gemini_model(),
        _ => json
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    if api == ProviderApi::OpenaiChat
        && json.get("stream").and_then(Value::as_bool) == Some(true)
        && let Some(object) = json.as_object_mut()
    {
        let options = object
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".into(), Value::Bool(true));
        }
        if let Ok(text) = serde_json::to_vec(&json) {
            return (Bytes::from(text), model);
        }
    }
    (bytes, model)
}

/// A reqwest error without the URL (which names the provider's host, harmless, but keep
/// messages short and free of query strings).
fn without_url(e: &reqwest::Error) -> String {
    // reqwest's own text names the URL; its causes say what happened.
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        if e.is_timeout() {
            "timed out".into()
        } else {
            "request failed".into()
        }
    } else {
        causes.join(": ")
    }
}

/// Reads usage from an answer on its way to the agent; records it when the answer ends (or is
/// dropped half-way, when the agent hung up).
struct Meter {
    inner: Arc<Inner>,
    live: Arc<Live>,
    reader: Option<UsageReader>,
    model: String,
    status: u16,
    streamed: bool,
    started: Instant,
    span: tracing::Span,
}

impl Meter {
    fn feed(&mut self, bytes: &[u8]) {
        if let Some(reader) = &mut self.reader {
            reader.feed(bytes);
        }
    }

    fn take(&mut self) -> Option<Recorded> {
        let (usage, model) = self.reader.take()?.finish();
        Some(Recorded {
            model: model.unwrap_or_else(|| self.model.clone()),
            usage,
            status: self.status,
            streamed: self.streamed,
            latency: self.started.elapsed(),
            refused: None,
            span: self.span.clone(),
        })
    }

    async fn finish(&mut self) {
        if let Some(recorded) = self.take() {
            record(&self.inner, &self.live, recorded).await;
            self.live.end();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(recorded) = self.take() {
            let (inner, live) = (self.inner.clone(), self.live.clone());
            let call = account(&live, &recorded);
            live.end();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = inner.store.record_model_call(&call).await {
                        tracing::warn!(error = %e, "cannot record a model call");
                    }
                });
            }
        }
    }
}

/// One finished request, before it is priced.
struct Recorded {
    model: String,
    usage: codemill_core::cost::Usage,
    status: u16,
    streamed: bool,
    latency: Duration,
    refused: Option<String>,
    /// The request's span; the usage and cost are recorded on it.
    span: tracing::Span,
}

/// Prices a request, adds it to the pass's metering, and returns its row.
fn account(live: &Live, r: &Recorded) -> ModelCall {
    let grant = &live.grant;
    let price = grant
        .prices
        .price(&r.model)
        .or_else(|| grant.prices.price(&grant.model));
    let cost_usd = price.map_or(0.0, |p| p.cost(&r.usage));
    r.span.record("gen_ai.response.model", r.model.as_str());
    r.span
        .record("gen_ai.usage.input_tokens", r.usage.input_tokens as i64);
    r.span
        .record("gen_ai.usage.output_tokens", r.usage.output_tokens as i64);
    r.span.record(
        "gen_ai.usage.cache_read.input_tokens",
        r.usage.cache_read_tokens as i64,
    );
    r.span.record(
        "gen_ai.usage.cache_creation.input_tokens",
        r.usage.cache_write_tokens as i64,
    );
    r.span.record("cost_usd", cost_usd);
    r.span
        .record("http.response.status_code", i64::from(r.status));
    if let Some(budget) = &r.refused {
        r.span.record("refused", budget.as_str());
        r.span.record("error.type", "budget_exceeded");
    } else if r.status >= 400 {
        r.span.record("error.type", r.status.to_string());
    }
    if r.refused.is_none() {
        let mut metered = live.lock();
        metered.usage += r.usage;
        metered.cost_usd += cost_usd;
        metered.calls += 1;
    }
    let scope = &grant.scope;
    ModelCall {
        at: Utc::now(),
        job: scope.job.clone(),
        ticket: scope.ticket.clone(),
        project: scope.project.clone(),
        stage: scope.stage.clone(),
        round: scope.round,
        angle: scope.angle.clone(),
        api: grant.upstream.api.as_str().to_string(),
        model: r.model.clone(),
        usage: r.usage,
        cost_usd,
        latency_ms: r.latency.as_millis() as u64,
        status: r.status,
        streamed: r.streamed,
        refused: r.refused.clone(),
    }
}

async fn record(inner: &Inner, live: &Live, r: Recorded) {
    let call = account(live, &r);
    if let Err(e) = inner.store.record_model_call(&call).await {
        tracing::warn!(error = %e, "cannot record a model call");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_where_each_provider_puts_its_key() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("t1"));
        assert_eq!(token_of(&h, None).as_deref(), Some("t1"));
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t2"));
        assert_eq!(token_of(&h, None).as_deref(), Some("t2"));
        let mut h = HeaderMap::new();
        h.insert("x-goog-api-key", HeaderValue::from_static("t3"));
        assert_eq!(token_of(&h, None).as_deref(), Some("t3"));
        assert_eq!(
            token_of(&HeaderMap::new(), Some("alt=sse&key=t4")).as_deref(),
            Some("t4")
        );
        assert_eq!(token_of(&HeaderMap::new(), None), None);
    }

    #[test]
    fn streamed_chat_requests_ask_for_usage() {
        let (body, model) = prepare_body(
            ProviderApi::OpenaiChat,
            "/v1/chat/completions",
            Bytes::from_static(br#"{"model":"gpt-x","stream":true,"messages":[]}"#),
        );
        let json: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(json["stream_options"]["include_usage"], true);
        assert_eq!(model.as_deref(), Some("gpt-x"));
        let (_, model) = prepare_body(
            ProviderApi::Gemini,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            Bytes::from_static(b"{}"),
        );
        assert_eq!(model.as_deref(), Some("gemini-2.5-pro"));
    }
}
