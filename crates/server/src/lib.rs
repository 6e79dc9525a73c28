//! The HTTP side of `codemill serve`: signed webhooks, a bearer-token JSON API, health and
//! Prometheus metrics.
//!
//! **Invariant: the server never writes job state itself.** A local webhook only records the
//! delivery and enqueues a job (one store transaction) and answers 202 at once; an outside
//! tracker's webhook only stores the verified delivery and answers 202 at once, and the inbox
//! processor hands it to [`Control`] afterwards (the tracker is never called inside the request).
//! Approvals, rejections, cancellations and retries go through [`Control`] too, which the runner
//! implements. Everything else is read-only.
//!
//! Routes and their protection:
//!
//! | route | auth |
//! |---|---|
//! | `GET /health`, `GET /metrics` | none (no ticket data; keep the port off the internet or scrape through a proxy) |
//! | `POST /webhooks/{provider}` | HMAC-SHA256 of `"<timestamp>.<raw body>"` with the provider's secret, timestamp within 5 minutes, see [`webhook`] |
//! | `POST /webhooks/{jira,github,linear}/{project}` | the vendor's own signature with the project's secret, see [`outside`] |
//! | `GET /api/tickets`, `GET /api/tickets/{key}`, `GET /api/jobs/{id}`, `GET /api/proposals`, `GET /api/events?after=POS`, `GET /api/jobs/{id}/activity?after=ID` | `Authorization: Bearer <token>` |
//! | `POST /api/tickets/{key}/approve`, `/reject`, `/cancel`, `/retry`, `/merge`, `/accept` | `Authorization: Bearer <token>` |
//! | `GET /login`, `POST /login`, `POST /logout`, `GET /assets/{app.css,htmx.min.js,htmx-ext-sse.min.js}` | none (posts: same-origin only) |
//! | `GET /login/oidc`, `GET /login/oidc/callback` | single sign-on (`[web.oidc]`): state, nonce and PKCE verifier kept in the store under a short-lived cookie, taken once |
//! | `GET /` (the board), `GET /tickets/{KEY}`, `GET /costs`, `GET /knowledge` | a dashboard session cookie, else a redirect to `/login` |
//! | `GET /board/events`, `GET /tickets/{KEY}/events` (server-sent events) | a dashboard session cookie, else 401 |
//! | `POST /tickets/{KEY}/approve`, `/reject`, `/cancel`, `/retry`, `/merge`, `/accept` | a session of an approver or admin, the session's CSRF token, same-origin |
//! | `GET /settings/tokens`, `POST /settings/tokens`, `POST /settings/tokens/{id}/revoke` | an admin's session (posts: its CSRF token, same-origin) |
//! | `GET /settings/users`, `POST /settings/users`, `POST /settings/users/{name}/remove` | an admin's session (posts: its CSRF token, same-origin) |
//!
//! API tokens are stored as SHA-256 hashes only ([`hash_token`]); a request's token is hashed and
//! looked up, so the plaintext is never compared, stored or logged. Bearer tokens are not sent
//! automatically by browsers, so the API needs no CSRF protection; the dashboard's cookie login
//! has it (module `web`).
//!
//! While serving, [`serve`] also prunes the webhook inbox every
//! [`ServerConfig::inbox_prune_every`]: processed deliveries lose their bodies at once and their
//! rows after [`ServerConfig::inbox_window`] (`Store::prune_deliveries`); agent activity older
//! than that window goes too.
//!
//! Every request passes, outermost first: sensitive headers masked (`Authorization`, `Cookie`,
//! the webhook signature) → tracing → request metrics → catch-panic (500) → timeout (408) →
//! body limit (413 from `Content-Length` before reading, or once a chunked body passes it).

mod api;
mod auth;
mod control;
mod error;
mod health;
mod inbox;
mod metrics;
pub mod outside;
pub mod users;
mod web;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::{get, post};
use codemill_core::text::log_safe;
use codemill_store::Store;
use secrecy::{ExposeSecret, SecretString};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use auth::{hash_token, new_token, token_name};
pub use control::{Control, ControlError, ControlFuture, OutsideEvent};
pub use error::ConfigError;
pub use metrics::Metrics;
pub use outside::OutsideHook;
pub use web::OidcSettings;

/// The webhook providers this server understands; each needs its own secret.
pub const PROVIDERS: &[&str] = &["local", "generic"];

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// (provider, secret) for each provider whose webhooks are accepted; see [`PROVIDERS`]. A
    /// provider without a secret has no webhook endpoint (404).
    pub webhook_secrets: Vec<(String, SecretString)>,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit: usize,
    /// Whole-request deadline (reading the body included); 408 after it.
    pub request_timeout: Duration,
    /// `max_rounds` of jobs created by webhooks (the config's `max_fix_rounds`).
    pub max_rounds: u32,
    /// Attempts before a job created by a webhook is dead-lettered.
    pub max_attempts: u32,
    /// Per-project webhooks of Jira, GitHub and Linear (`/webhooks/{vendor}/{project}`).
    pub outside_hooks: Vec<OutsideHook>,
    /// How long a delivery id is remembered, so that a redelivery is answered as a duplicate.
    /// Longer than any vendor retries or redelivers (Linear retries for hours, GitHub lets a
    /// person redeliver for days); a local delivery is refused after 5 minutes anyway. At least
    /// 10 minutes.
    pub inbox_window: Duration,
    /// Between passes that prune the inbox; zero turns pruning off.
    pub inbox_prune_every: Duration,
    /// Between looks for outside deliveries to process that this node was not told about
    /// (retries, and deliveries accepted by other nodes); zero: this node processes none.
    pub inbox_poll: Duration,
    /// The wait before the first retry of a delivery the tracker could not take; it doubles
    /// with each attempt, up to 10 minutes.
    pub inbox_retry: Duration,
    /// Attempts at processing a delivery before it is given up (`failed` in `codemill inbox`).
    pub inbox_max_attempts: u32,
    /// Where people reach the dashboard (`https://codemill.example.com`), when it is behind a
    /// proxy or TLS: its origin is trusted for form posts, and an `https` one makes the session
    /// cookie `Secure`.
    pub public_url: Option<String>,
    /// Budgets the costs page compares with: the default, and each project's where it has its
    /// own (the config's `[budgets]` and `[projects.NAME.budgets]`).
    pub budgets: codemill_core::config::Budgets,
    pub project_budgets: HashMap<String, codemill_core::config::Budgets>,
    /// What one assistant conversation may spend, per project (`[projects.NAME.assistant]`).
    pub assistant_budgets: HashMap<String, f64>,
    /// Single sign-on to the dashboard (`[web.oidc]`); needs `public_url`.
    pub oidc: Option<web::OidcSettings>,
    /// A dashboard session not used for this long ends.
    pub session_idle: Duration,
    /// The tracing backend's link to a job's trace, `{trace_id}` for its id
    /// (`[telemetry] trace_url`).
    pub trace_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            webhook_secrets: Vec::new(),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_rounds: 3,
            max_attempts: 3,
            outside_hooks: Vec::new(),
            inbox_window: Duration::from_secs(7 * 24 * 3600),
            inbox_prune_every: Duration::from_secs(10 * 60),
            inbox_poll: Duration::from_secs(2),
            inbox_retry: Duration::from_secs(5),
            // With 5 s doubling to 10 minutes: about two and a half hours of trying.
            inbox_max_attempts: 20,
            public_url: None,
            budgets: codemill_core::config::Budgets::default(),
            project_budgets: HashMap::new(),
            assistant_budgets: HashMap::new(),
            oidc: None,
            session_idle: Duration::from_secs(12 * 3600),
            trace_url: None,
        }
    }
}

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    control: Arc<dyn Control>,
    secrets: HashMap<String, SecretString>,
    body_limit: usize,
    request_timeout: Duration,
    max_rounds: u32,
    max_attempts: u32,
    metrics: Metrics,
    outside_hooks: Vec<OutsideHook>,
    inbox_window: chrono::TimeDelta,
    inbox_prune_every: Duration,
    inbox_poll: Duration,
    inbox_retry: Duration,
    inbox_max_attempts: u32,
    /// Told when this node accepted an outside delivery, so it is processed at once.
    inbox_wake: tokio::sync::Notify,
    probe: health::Probe,
    /// Wrong sign-in passwords, per account and address.
    throttle: web::Throttle,
    /// The live board's columns, rendered once per move for every viewer of this node.
    board: web::BoardCache,
    /// The dashboard's public origin (`https://host[:port]`), from `public_url`.
    public_origin: Option<String>,
    budgets: codemill_core::config::Budgets,
    project_budgets: HashMap<String, codemill_core::config::Budgets>,
    assistant_budgets: HashMap<String, f64>,
    oidc: Option<Arc<web::Oidc>>,
    session_idle: Duration,
    trace_url: Option<String>,
}

impl AppState {
    /// Check `config` and build the state. `control` carries out approvals and the other state
    /// changes (the runner's implementation in `codemill serve`).
    pub fn new(
        store: Store,
        control: Arc<dyn Control>,
        config: ServerConfig,
    ) -> Result<AppState, ConfigError> {
        let mut secrets = HashMap::new();
        for (provider, secret) in config.webhook_secrets {
            if !PROVIDERS.contains(&provider.as_str()) {
                return Err(ConfigError::UnknownProvider(provider));
            }
            if secret.expose_secret().is_empty() {
                return Err(ConfigError::EmptySecret(provider));
            }
            if secrets.insert(provider.clone(), secret).is_some() {
                return Err(ConfigError::DuplicateProvider(provider));
            }
        }
        for hook in &config.outside_hooks {
            if !outside::VENDORS.contains(&hook.vendor.as_str()) {
                return Err(ConfigError::UnknownProvider(hook.vendor.clone()));
            }
            if hook.secret.expose_secret().is_empty() {
                return Err(ConfigError::EmptySecret(format!(
                    "{}/{}",
                    hook.vendor, hook.project
                )));
            }
        }
        if config.body_limit == 0 {
            return Err(ConfigError::Invalid(
                "body_limit must be at least 1 byte".into(),
            ));
        }
        if config.request_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "request_timeout must not be zero".into(),
            ));
        }
        if config.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "max_attempts must be at least 1".into(),
            ));
        }
        let public_origin = config
            .public_url
            .as_deref()
            .map(web::origin_of)
            .transpose()
            .map_err(ConfigError::Invalid)?;
        let oidc = match (config.oidc, public_origin.as_deref()) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "single sign-on ([web.oidc]) needs the dashboard's public URL \
                     (codemill serve --public-url https://…): the provider sends people back there"
                        .into(),
                ));
            }
            (Some(settings), Some(origin)) => Some(Arc::new(
                web::Oidc::new(settings, origin).map_err(ConfigError::Invalid)?,
            )),
        };
        // A local request is accepted while its timestamp is within MAX_SKEW_SECS either way
        // of the clock: its id must be remembered at least that long or it could be replayed.
        let least = 2 * webhook::MAX_SKEW_SECS;
        let inbox_window = chrono::TimeDelta::from_std(config.inbox_window)
            .ok()
            .filter(|w| chrono::Utc::now().checked_sub_signed(*w).is_some())
            .ok_or_else(|| ConfigError::Invalid("inbox_window is too long".into()))?;
        if inbox_window.num_seconds() < least {
            return Err(ConfigError::Invalid(format!(
                "inbox_window must be at least {least} s (twice the webhook timestamp tolerance)"
            )));
        }
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                control,
                secrets,
                body_limit: config.body_limit,
                request_timeout: config.request_timeout,
                max_rounds: config.max_rounds,
                max_attempts: config.max_attempts,
                metrics: Metrics::new(),
                outside_hooks: config.outside_hooks,
                inbox_window,
                inbox_prune_every: config.inbox_prune_every,
                inbox_poll: config.inbox_poll,
                inbox_retry: config.inbox_retry,
                inbox_max_attempts: config.inbox_max_attempts.max(1),
                inbox_wake: tokio::sync::Notify::new(),
                probe: health::Probe::default(),
                throttle: web::Throttle::default(),
                board: web::BoardCache::default(),
                public_origin,
                oidc,
                session_idle: config.session_idle,
                trace_url: config.trace_url,
                budgets: config.budgets,
                project_budgets: config.project_budgets,
                assistant_budgets: config.assistant_budgets,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The server's own metrics registry (also rendered by `GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn control(&self) -> &dyn Control {
        self.inner.control.as_ref()
    }

    pub(crate) fn secret(&self, provider: &str) -> Option<&SecretString> {
        self.inner.secrets.get(provider)
    }

    pub(crate) fn outside_hook(&self, vendor: &str, project: &str) -> Option<&OutsideHook> {
        self.inner
            .outside_hooks
            .iter()
            .find(|h| h.vendor == vendor && h.project == project)
    }

    /// Process the outside deliveries just accepted now rather than at the next poll.
    pub(crate) fn wake_inbox(&self) {
        self.inner.inbox_wake.notify_one();
    }

    pub(crate) fn probe(&self) -> &health::Probe {
        &self.inner.probe
    }

    pub(crate) fn throttle(&self) -> &web::Throttle {
        &self.inner.throttle
    }

    pub(crate) fn board_cache(&self) -> &web::BoardCache {
        &self.inner.board
    }

    pub(crate) fn session_idle(&self) -> Duration {
        self.inner.session_idle
    }

    /// The single sign-on provider, when one is configured.
    pub(crate) fn oidc(&self) -> Option<Arc<web::Oidc>> {
        self.inner.oidc.clone()
    }

    pub(crate) fn public_origin(&self) -> Option<&str> {
        self.inner.public_origin.as_deref()
    }

    /// The link to the trace of `job` in the tracing backend, when one is configured.
    pub(crate) fn trace_link(&self, job: codemill_core::ids::JobId) -> Option<String> {
        self.inner
            .trace_url
            .as_deref()
            .map(|t| t.replace("{trace_id}", &job.trace_id()))
    }

    /// The registered projects, by name.
    pub(crate) fn projects(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.project_budgets.keys().cloned().collect();
        names.sort();
        names
    }

    /// What one assistant conversation of `project` may spend.
    pub(crate) fn assistant_budget(&self, project: &str) -> f64 {
        self.inner
            .assistant_budgets
            .get(project)
            .copied()
            .unwrap_or_default()
    }

    /// The budgets that apply to `project`.
    pub(crate) fn budgets(&self, project: &str) -> codemill_core::config::Budgets {
        self.inner
            .project_budgets
            .get(project)
            .copied()
            .unwrap_or(self.inner.budgets)
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    pub(crate) fn max_rounds(&self) -> u32 {
        self.inner.max_rounds
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }
}

/// All routes with their middleware.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit();
    let timeout = state.inner.request_timeout;
    let api = Router::new()
        .route("/api/tickets", get(api::tickets))
        .route("/api/tickets/{key}", get(api::ticket))
        .route("/api/tickets/{key}/approve", post(api::approve))
        .route("/api/tickets/{key}/reject", post(api::reject))
        .route("/api/tickets/{key}/cancel", post(api::cancel))
        .route("/api/tickets/{key}/retry", post(api::retry))
        .route("/api/tickets/{key}/merge", post(api::merge))
        .route("/api/tickets/{key}/accept", post(api::accept))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/activity", get(api::activity))
        .route("/api/proposals", get(api::proposals))
        .route("/api/events", get(api::events))
        // route_layer: unknown /api paths stay 404 rather than 401.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let sensitive: Arc<[HeaderName]> = Arc::new([
        header::AUTHORIZATION,
        header::COOKIE,
        header::SET_COOKIE,
        HeaderName::from_static(webhook::SIGNATURE_HEADER),
        HeaderName::from_static("x-hub-signature-256"),
        HeaderName::from_static("x-hub-signature"),
        HeaderName::from_static("linear-signature"),
        HeaderName::from_static("x-codemill-token"),
    ]);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/webhooks/{provider}", post(webhook::receive))
        .route("/webhooks/{provider}/{project}", post(outside::receive))
        .merge(api)
        .merge(web::routes(state.clone()))
        .fallback(error::not_found)
        // Innermost first. Both limits agree: the tower-http one refuses by Content-Length before
        // reading and caps streamed bodies; axum's keeps its extractors from assuming 2 MB.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(CatchPanicLayer::custom(error::panicked))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // Headers are logged (at debug) to help debug senders; the layer below masks the
        // sensitive ones before this one sees them.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().include_headers(true)),
        )
        .layer(SetSensitiveHeadersLayer::from_shared(sensitive))
        .with_state(state)
}

/// The span of one request, as tower-http's default with headers, but with the URI escaped: the
/// path may carry raw UTF-8 (a U+202E would turn the log line around). Header values need
/// nothing: their `Debug` already escapes every byte that is not visible ASCII.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        uri = %log_safe(request.uri()),
        version = ?request.version(),
        headers = ?request.headers(),
    )
}

/// Serve `router(state)` on `listener` until `shutdown` resolves, then stop accepting and finish
/// the requests in flight (each bounded by the request timeout). Meanwhile outside deliveries are
/// processed ([`inbox`]) and the inbox is pruned (see the crate docs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pruning = tokio::spawn(prune_inbox(state.clone()));
    // Stopped with the server: a delivery it was processing is held, then claimed again.
    let processing = tokio::spawn(inbox::process(state.clone()));
    // The peer's address, for the sign-in throttle.
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    pruning.abort();
    processing.abort();
    served
}

/// Prune the inbox now and then every `inbox_prune_every`. A failed pass is logged and tried
/// again next time: pruning late costs only disk space.
async fn prune_inbox(state: AppState) {
    let every = state.inner.inbox_prune_every;
    if every.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(cutoff) = chrono::Utc::now().checked_sub_signed(state.inner.inbox_window) else {
            continue;
        };
        // Live agent activity is for watching a job, not its record: kept as long as ids are.
        match state.store().prune_activity(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned agent activity"),
            Err(e) => tracing::warn!(error = %e, "could not prune agent activity"),
        }
        match state.store().prune_deliveries(cutoff).await {
            Ok(pruned) if pruned != codemill_store::InboxPruned::default() => {
                tracing::info!(
                    cleared = pruned.cleared,
                    deleted = pruned.deleted,
                    "pruned the webhook inbox"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune the webhook inbox"),
        }
    }
}
