//! The model gateway: the one place model requests leave codemill, and the only holder of the
//! providers' keys.
//!
//! Every agent step gets a [`Pass`]: a random per-step token, valid until the pass is dropped.
//! Agents use the gateway as their provider's base URL — over a unix socket bound into their
//! sandbox (through the sandbox relay), or over 127.0.0.1 for the built-in loop and unsandboxed
//! runs — and send the token where the provider's key would go. The gateway checks the token,
//! checks the budgets against the store's metering (refusing in the provider's own error shape
//! once spend is at or over one, so the overshoot is at most the request in flight), swaps in the
//! real key, forwards the request with streaming passed through, reads the usage out of the
//! answer ([`usage`]), prices it, and records every request in the store (`model_calls`).
//!
//! The same listeners answer the knowledge tools ([`knowledge`]) at `/codemill/knowledge/{tool}`
//! under a pass, so an agent's MCP server inside a sandbox reads the project's knowledge
//! through codemill, never by opening the store.
//!
//! Invariant: a provider key never leaves this crate except in the request to that provider.

pub mod egress;
pub mod knowledge;
mod proxy;
mod refuse;
mod usage;

pub use egress::Egress;
pub use proxy::KNOWLEDGE_PREFIX;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use codemill_core::config::{Budgets, ProviderApi};
use codemill_core::cost::{PriceTable, Usage};
use codemill_store::Store;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

/// Who a pass is for: what each request is recorded under and what budgets count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub job: String,
    pub ticket: String,
    pub project: String,
    pub stage: String,
    pub round: u32,
    pub angle: Option<String>,
}

/// The real provider behind a pass.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub api: ProviderApi,
    /// Scheme, host and port (and any path prefix), without `/v1`.
    pub base_url: String,
    /// Empty for providers without a key (a local model server).
    pub key: SecretString,
}

/// What one pass allows.
#[derive(Debug, Clone)]
pub struct Grant {
    pub scope: Scope,
    pub upstream: Upstream,
    /// The model the step was configured with: prices a request whose own model is unpriced.
    pub model: String,
    pub prices: PriceTable,
    pub budgets: Budgets,
}

/// A budget that refused a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// `job_usd`, `ticket_usd`, `project_day_usd`, `day_usd` or `job_tokens`.
    pub budget: String,
    pub limit: f64,
    pub spent: f64,
}

impl Refusal {
    pub fn message(&self) -> String {
        codemill_core::agent::AgentOutcome::BudgetExceeded {
            budget: self.budget.clone(),
            limit: self.limit,
            spent: self.spent,
        }
        .describe()
    }
}

/// What the gateway metered for one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metered {
    pub usage: Usage,
    pub cost_usd: f64,
    /// Requests forwarded (refused ones not included).
    pub calls: u32,
    pub refused: Option<Refusal>,
}

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("model gateway: cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One live pass, shared by the gateway's table and the [`Pass`] handle.
struct Live {
    grant: Grant,
    metered: Mutex<Metered>,
    /// Requests not yet recorded; a budget check waits for them (briefly) so spend is current.
    inflight: Mutex<u32>,
    settled: tokio::sync::Notify,
    /// Fired when a budget refuses a request, so the step can stop its agent.
    refused: CancellationToken,
    /// The span of the step the pass was granted in: each model request's span hangs under
    /// it, so a request shows in its job's trace.
    span: tracing::Span,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, Metered> {
        self.metered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(&self) {
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    fn end(&self) {
        let mut n = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.settled.notify_waiters();
        }
    }

    /// Waits until every request of this pass is recorded, or `limit` passes.
    async fn settle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.settled.notified();
            if *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

struct Inner {
    passes: Mutex<HashMap<String, Arc<Live>>>,
    http: reqwest::Client,
    store: Store,
}

impl Inner {
    fn pass(&self, token: &str) -> Option<Arc<Live>> {
        self.passes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

/// A running gateway; dropping it stops the listeners.
pub struct Gateway {
    inner: Arc<Inner>,
    socket: PathBuf,
    url: String,
    stop: CancellationToken,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("socket", &self.socket)
            .field("url", &self.url)
            .finish()
    }
}

impl Gateway {
    /// Listens on the unix socket `socket` (replacing a stale one; mode 0666, so a sandbox
    /// running as another uid can connect — keep its directory private) and on an ephemeral
    /// port of 127.0.0.1.
    pub async fn start(socket: &Path, store: Store) -> Result<Gateway, GatewayError> {
        use std::os::unix::fs::PermissionsExt;
        let listen_err = |source| GatewayError::Listen {
            path: socket.to_path_buf(),
            source,
        };
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(listen_err)?;
        }
        let _ = std::fs::remove_file(socket);
        let unix = tokio::net::UnixListener::bind(socket).map_err(listen_err)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
            .map_err(listen_err)?;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(listen_err)?;
        let url = format!("http://{}", tcp.local_addr().map_err(listen_err)?);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let inner = Arc::new(Inner {
            passes: Mutex::new(HashMap::new()),
            http,
            store,
        });
        let stop = CancellationToken::new();
        let router = proxy::router(inner.clone());
        for serve in [
            tokio::spawn(
                axum::serve(unix, router.clone())
                    .with_graceful_shutdown(stop.clone().cancelled_owned())
                    .into_future(),
            ),
            tokio::spawn(
                // Small SSE writes must not wait for delayed ACKs (40 ms each on loopback).
                axum::serve(
                    axum::serve::ListenerExt::tap_io(tcp, |stream| {
                        let _ = stream.set_nodelay(true);
                    }),
                    router,
                )
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
            ),
        ] {
            drop(serve);
        }
        Ok(Gateway {
            inner,
            socket: socket.to_path_buf(),
            url,
            stop,
        })
    }

    /// The unix socket sandboxes reach the gateway through.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `http://127.0.0.1:PORT`, for the built-in loop and unsandboxed agents.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new pass for one step, whose requests are traced under the current span. Its token
    /// works until the pass is dropped.
    pub fn grant(&self, grant: Grant) -> Pass {
        let bytes: [u8; 32] = rand::random();
        let token = format!("cmgw-{}", hex::encode(bytes));
        let live = Arc::new(Live {
            grant,
            metered: Mutex::new(Metered::default()),
            inflight: Mutex::new(0),
            settled: tokio::sync::Notify::new(),
            refused: CancellationToken::new(),
            span: tracing::Span::current(),
        });
        self.inner
            .passes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), live.clone());
        Pass {
            token: SecretString::from(token),
            live,
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Passes currently valid (for tests and metrics).
    pub fn live_passes(&self) -> usize {
        self.inner
            .passes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One step's access to the gateway; revoked when dropped.
pub struct Pass {
    token: SecretString,
    live: Arc<Live>,
    inner: Weak<Inner>,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass")
            .field("scope", &self.live.grant.scope)
            .finish_non_exhaustive()
    }
}

impl Pass {
    /// The per-step token the agent sends instead of a provider key.
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// Fires when a budget refused a request of this pass.
    pub fn refused_signal(&self) -> CancellationToken {
        self.live.refused.clone()
    }

    /// What was metered so far, after waiting (up to 5 s) for answers still being recorded.
    pub async fn metered(&self) -> Metered {
        self.live.settle(Duration::from_secs(5)).await;
        self.live.lock().clone()
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner
                .passes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(self.token.expose_secret());
        }
    }
}
