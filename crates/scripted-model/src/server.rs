//! The HTTP side: routes requests to a protocol, picks the rule, answers, records everything.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::reply::{Answer, Endless, FALLBACK_MODEL, Rendered};
use crate::script::{Api, Reply, Script};
use crate::view::{self, RequestView};
use crate::{anthropic, gemini, openai};

/// Request bodies above this are refused (Claude Code requests run to a few MB).
const BODY_LIMIT: usize = 256 * 1024 * 1024;
/// How often an endless stream sends a keep-alive.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(500);
/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Recorded status of a request that was never answered (`Reply::Hang`).
pub const NO_ANSWER: u16 = 0;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// None for non-model requests (`HEAD /`, unknown paths).
    pub api: Option<Api>,
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Header names in lower case, values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// The body as JSON; a non-JSON body is kept as a JSON string, an empty one as null.
    pub body: Value,
    pub view: RequestView,
    /// Name of the rule that answered; None if no rule matched (or not a model request).
    pub matched_rule: Option<String>,
    /// HTTP status sent; [`NO_ANSWER`] (0) while a `Hang` reply holds the request.
    pub status: u16,
}

impl RecordedRequest {
    /// The whole normalised conversation text (see [`RequestView::text`]).
    pub fn text(&self) -> String {
        self.view.text()
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A model request that no rule answered.
    pub fn is_unmatched(&self) -> bool {
        self.api.is_some() && self.matched_rule.is_none()
    }
}

/// A running scripted model server on 127.0.0.1. Stops on [`ModelServer::shutdown`] or drop.
#[derive(Debug)]
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<ServerState>,
    stop: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
struct ServerState {
    script: Script,
    /// Uses of each rule, by index into `script.rules`.
    used: Vec<usize>,
    requests: Vec<RecordedRequest>,
}

impl Shared {
    /// A poisoned lock only means a test panicked elsewhere; the data is still usable.
    fn state(&self) -> MutexGuard<'_, ServerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Picks the rule for `view` and counts the use, in one step so `times` holds under
    /// concurrent requests.
    fn choose(&self, view: &RequestView) -> Option<(String, Reply, Option<u64>)> {
        let mut state = self.state();
        let index = state.script.select(view, &state.used)?;
        if state.used.len() <= index {
            state.used.resize(index + 1, 0);
        }
        state.used[index] += 1;
        let rule = state.script.rules.get(index)?;
        Some((rule.name.clone(), rule.reply.clone(), rule.delay_ms))
    }

    fn record(&self, request: RecordedRequest) {
        self.state().requests.push(request);
    }

    async fn stopped(&self) {
        let mut stop = self.stop.clone();
        // An error means the server handle is gone: stop as well.
        let _ = stop.wait_for(|stop| *stop).await;
    }
}

impl ModelServer {
    /// Binds 127.0.0.1 on a free port and serves `script` on the current tokio runtime.
    pub async fn start(script: Script) -> std::io::Result<ModelServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        ModelServer::start_on(listener, script)
    }

    /// Serves `script` on an already bound listener (e.g. a fixed port for a demo).
    pub fn start_on(listener: TcpListener, script: Script) -> std::io::Result<ModelServer> {
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState {
                script,
                ..ServerState::default()
            }),
            stop: stop_rx,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let signal_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let signal = async move { signal_shared.stopped().await };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(%error, "scripted model server stopped with an error");
            }
        });
        Ok(ModelServer {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash or `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// The requests answered by rule `name`.
    pub fn requests_for_rule(&self, name: &str) -> Vec<RecordedRequest> {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|request| request.matched_rule.as_deref() == Some(name))
            .cloned()
            .collect()
    }

    /// How many requests rule `name` answered.
    pub fn hits(&self, name: &str) -> usize {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|request| request.matched_rule.as_deref() == Some(name))
            .count()
    }

    /// Model requests that no rule matched.
    pub fn unmatched(&self) -> Vec<RecordedRequest> {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|request| request.is_unmatched())
            .cloned()
            .collect()
    }

    /// Replaces the rules; use counters start again from zero. Recorded requests are kept.
    pub fn set_script(&self, script: Script) {
        let mut state = self.shared.state();
        state.script = script;
        state.used.clear();
    }

    /// Stops accepting, ends hanging and endless answers, and waits (briefly) for open
    /// connections to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Which protocol a request speaks, from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Root,
    Model {
        api: Api,
        model: Option<String>,
        stream: bool,
    },
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let model = |api| Route::Model {
        api,
        model: None,
        stream: false,
    };
    match (method.as_str(), path) {
        ("GET" | "HEAD", "" | "/") => Route::Root,
        ("POST", "/v1/messages") => model(Api::Anthropic),
        ("POST", "/v1/chat/completions" | "/chat/completions") => model(Api::OpenAiChat),
        ("POST", "/v1/responses" | "/responses") => model(Api::OpenAiResponses),
        ("POST", _) => gemini_route(path).unwrap_or(Route::NotFound),
        _ => Route::NotFound,
    }
}

/// `/v1beta/models/{model}:streamGenerateContent` or `:generateContent` (any version prefix).
fn gemini_route(path: &str) -> Option<Route> {
    let (_, rest) = path.split_once("/models/")?;
    let (model, action) = rest.split_once(':')?;
    let stream = match action {
        "streamGenerateContent" => true,
        "generateContent" => false,
        _ => return None,
    };
    Some(Route::Model {
        api: Api::Gemini,
        model: Some(model.to_owned()),
        stream,
    })
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut record = RecordedRequest {
        api: None,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: Value::Null,
        view: RequestView::default(),
        matched_rule: None,
        status: 200,
    };
    let bytes = match to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(error) => {
            record.status = 400;
            shared.record(record);
            let body = json!({"error": {"type": "bad_request", "message": error.to_string()}});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    record.body = parse_body(&bytes);
    match route(&parts.method, parts.uri.path()) {
        Route::Root => {
            shared.record(record);
            Json(json!({"server": "codemill scripted model server (demo model)"})).into_response()
        }
        Route::NotFound => {
            record.status = 404;
            let message = format!(
                "scripted model server: no endpoint {} {}",
                record.method, record.path
            );
            shared.record(record);
            let body = json!({"error": {"type": "not_found_error", "message": message}});
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
        Route::Model { api, model, stream } => {
            record.api = Some(api);
            record.view = view::normalise(api, &record.body, model.as_deref(), stream);
            answer(&shared, record).await
        }
    }
}

fn parse_body(bytes: &Bytes) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Answers a model request by its rule and records it.
async fn answer(shared: &Shared, mut record: RecordedRequest) -> Response {
    let view = record.view.clone();
    let view = &view;
    let api = record.api.unwrap_or(Api::Anthropic);
    let Some((name, reply, delay_ms)) = shared.choose(view) else {
        let message = no_match_message(api, view);
        tracing::warn!("{message}");
        let response = error_response(api, 400, &message, None);
        record.status = 400;
        shared.record(record);
        return response;
    };
    record.matched_rule = Some(name);
    if let Some(ms) = delay_ms {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => {}
            () = shared.stopped() => {}
        }
    }
    let model = view
        .model
        .clone()
        .unwrap_or_else(|| FALLBACK_MODEL.to_owned());
    let response = match &reply {
        Reply::Message {
            text,
            tool_calls,
            usage,
        } => {
            let id_prefix = if api == Api::Anthropic {
                "toolu_"
            } else {
                "call_"
            };
            let answer = Answer::new(view, text.as_deref(), tool_calls, *usage, id_prefix);
            let include_usage = record.body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false);
            let rendered = match api {
                Api::Anthropic => anthropic::render(&answer, view.stream),
                Api::OpenAiChat => openai::render_chat(&answer, view.stream, include_usage),
                Api::OpenAiResponses => openai::render_responses(&answer, view.stream),
                Api::Gemini => gemini::render(&answer, view.stream),
            };
            match rendered {
                Rendered::Json(body) => Json(body).into_response(),
                Rendered::Sse(text) => sse_response(Body::from(text)),
            }
        }
        Reply::Error {
            status,
            message,
            retry_after,
        } => error_response(api, *status, message, *retry_after),
        Reply::EndlessStream if view.stream => {
            let endless = match api {
                Api::Anthropic => anthropic::endless(&model, view.input_tokens()),
                Api::OpenAiChat => openai::chat_endless(&model),
                Api::OpenAiResponses => openai::responses_endless(&model),
                Api::Gemini => gemini::endless(),
            };
            sse_response(endless_body(endless, shared.stop.clone()))
        }
        Reply::Hang | Reply::EndlessStream => {
            record.status = NO_ANSWER;
            shared.record(record);
            shared.stopped().await;
            return error_response(api, 503, "scripted model server: shutting down", None);
        }
    };
    record.status = response.status().as_u16();
    shared.record(record);
    response
}

fn no_match_message(api: Api, view: &RequestView) -> String {
    // The end of the latest input: clients put their reminders first and the prompt last.
    let full = view.last_text();
    let count = full.chars().count();
    let mut last: String = full.chars().skip(count.saturating_sub(200)).collect();
    if count > 200 {
        last.insert_str(0, "...");
    }
    format!(
        "scripted model server: no rule matched {} request (model {}, turn {}, tools {}, \
         tool_results {}, last message {last:?})",
        api.as_str(),
        view.model.as_deref().unwrap_or("none"),
        view.turn(),
        view.tools,
        view.tool_results,
    )
}

fn error_response(api: Api, status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let body = match api {
        Api::Anthropic => anthropic::error_body(status, message),
        Api::OpenAiChat | Api::OpenAiResponses => openai::error_body(status, message),
        Api::Gemini => gemini::error_body(status, message),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The head, then a keep-alive every [`KEEP_ALIVE_EVERY`] until the server stops.
fn endless_body(endless: Endless, stop: watch::Receiver<bool>) -> Body {
    let head = stream::once(async move { Ok::<Bytes, Infallible>(Bytes::from(endless.head)) });
    let keep_alive = Bytes::from(endless.keep_alive);
    let pings = stream::unfold(stop, move |mut stop| {
        let keep_alive = keep_alive.clone();
        async move {
            let stopped = tokio::select! {
                () = tokio::time::sleep(KEEP_ALIVE_EVERY) => false,
                _ = stop.wait_for(|stop| *stop) => true,
            };
            (!stopped).then_some((Ok(keep_alive), stop))
        }
    });
    Body::from_stream(head.chain(pings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = Method::POST;
        assert_eq!(route(&Method::HEAD, "/"), Route::Root);
        assert!(matches!(
            route(&post, "/v1/messages"),
            Route::Model {
                api: Api::Anthropic,
                ..
            }
        ));
        assert!(matches!(
            route(&post, "/responses"),
            Route::Model {
                api: Api::OpenAiResponses,
                ..
            }
        ));
        assert_eq!(
            route(&post, "/v1beta/models/gemini-2.5-pro:streamGenerateContent"),
            Route::Model {
                api: Api::Gemini,
                model: Some("gemini-2.5-pro".into()),
                stream: true
            }
        );
        assert_eq!(route(&post, "/v1/models/x:countTokens"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/messages"), Route::NotFound);
    }
}
