//! Single sign-on through an OpenID Connect provider (`[web.oidc]`): `GET /login/oidc` sends the
//! browser to the provider with a state, a nonce and a PKCE challenge (kept in the store under a
//! short-lived cookie, so any node can take the callback); `GET /login/oidc/callback` takes them
//! back once, checks the state, exchanges the code with the PKCE verifier, verifies the ID token
//! (signature, issuer, audience, expiry, nonce) with `openidconnect`, admits the person by e-mail
//! domain or group and starts a session with the role their claim maps to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use codemill_core::config::OidcConfig;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tower_sessions::Session;

use super::{LoginPage, local_path, render, same_token};
use crate::AppState;

/// The cookie that ties a sign-in under way to this browser.
const COOKIE: &str = "codemill_sign_in";
/// How long a person has at the provider.
const PENDING: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Discovery (endpoints and signing keys) is read again after this long.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The password hash of users made by single sign-on: no password matches it.
pub(crate) const NO_PASSWORD: &str = "!single-sign-on";

/// `[web.oidc]` with its client secret read from the environment.
#[derive(Clone)]
pub struct OidcSettings {
    pub config: OidcConfig,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("config", &self.config)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// The provider as this server talks to it.
pub(crate) struct Oidc {
    settings: OidcSettings,
    redirect: RedirectUrl,
    /// No redirects followed: a provider's answer is taken as it is (no SSRF through them).
    http: reqwest::Client,
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
    https: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

impl Oidc {
    /// `origin` is the dashboard's public origin: the provider sends people back there.
    pub(crate) fn new(settings: OidcSettings, origin: &str) -> Result<Oidc, String> {
        let redirect = RedirectUrl::new(format!("{origin}/login/oidc/callback"))
            .map_err(|e| format!("public_url {origin:?}: {e}"))?;
        IssuerUrl::new(settings.config.issuer.clone())
            .map_err(|e| format!("web.oidc.issuer: {e}"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client for the sign-in provider: {e}"))?;
        Ok(Oidc {
            settings,
            redirect,
            http,
            metadata: tokio::sync::Mutex::new(None),
            https: origin.starts_with("https://"),
        })
    }

    pub(crate) fn provider(&self) -> &str {
        &self.settings.config.provider
    }

    /// openidconnect's HTTP client: reqwest, as the rest of codemill uses it.
    fn http(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send>,
    > + use<> {
        let client = self.http.clone();
        move |request: openidconnect::HttpRequest| {
            let client = client.clone();
            Box::pin(async move {
                let request = reqwest::Request::try_from(request)
                    .map_err(|e| HttpError(format!("request: {e}")))?;
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| HttpError(e.to_string()))?;
                let mut answer = openidconnect::http::Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    answer = answer.header(name, value);
                }
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| HttpError(e.to_string()))?;
                answer
                    .body(body.to_vec())
                    .map_err(|e| HttpError(e.to_string()))
            })
        }
    }

    /// The client for the provider's current metadata (discovered, then cached for an hour).
    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        String,
    > {
        let mut cached = self.metadata.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < METADATA_TTL);
        if !fresh {
            let issuer =
                IssuerUrl::new(self.settings.config.issuer.clone()).map_err(|e| e.to_string())?;
            let http = self.http();
            let metadata = CoreProviderMetadata::discover_async(issuer, &http)
                .await
                .map_err(|e| format!("discovery failed: {}", error_chain(&e)))?;
            *cached = Some((metadata, Instant::now()));
        }
        let Some((metadata, _)) = cached.as_ref() else {
            return Err("no provider metadata".into());
        };
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.config.client_id.clone()),
            Some(ClientSecret::new(
                self.settings.client_secret.expose_secret().to_string(),
            )),
        )
        .set_redirect_uri(self.redirect.clone()))
    }

    fn cookie(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.https { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// An error and its sources, in one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn id_hash(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

fn refused(problem: &str, status: StatusCode) -> Response {
    render(
        LoginPage {
            next: "/",
            username: "",
            problem: Some(problem),
            provider: None,
        },
        status,
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct StartQuery {
    next: Option<String>,
}

/// `GET /login/oidc?next=PATH`: off to the provider.
pub(super) async fn start(State(app): State<AppState>, Query(q): Query<StartQuery>) -> Response {
    let Some(oidc) = app.oidc() else {
        return (StatusCode::NOT_FOUND, "single sign-on is not configured").into_response();
    };
    let client = match oidc.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the sign-in provider cannot be reached");
            return refused(
                &format!(
                    "{} cannot be reached right now; try again shortly.",
                    oidc.provider()
                ),
                StatusCode::BAD_GATEWAY,
            );
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let id = crate::auth::new_token();
    let next = local_path(q.next.as_deref().unwrap_or("/")).to_string();
    let pending = json!({
        "state": state.secret(),
        "nonce": nonce.secret(),
        "verifier": verifier.secret(),
        "next": next,
    });
    if let Err(e) = app
        .store()
        .put_sign_in(&id_hash(&id), &pending, chrono::Utc::now() + PENDING)
        .await
    {
        tracing::error!(error = %e, "a sign-in could not be started");
        return refused(
            "Signing in failed on our side; try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, oidc.cookie(&id, PENDING.num_seconds()));
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The values of claim `name` in a verified ID token's payload: a string or a list of strings.
fn claim_values(id_token: &str, name: &str) -> Vec<String> {
    let payload = id_token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok());
    match payload.as_ref().and_then(|p| p.get(name)) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// `GET /login/oidc/callback?code=…&state=…`: back from the provider.
pub(super) async fn callback(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(oidc) = app.oidc() else {
        return (StatusCode::NOT_FOUND, "single sign-on is not configured").into_response();
    };
    let mut response = signed_in_by(&app, &oidc, &session, &headers, q).await;
    // The sign-in under way is over, whatever came of it.
    response
        .headers_mut()
        .append(header::SET_COOKIE, oidc.cookie("", 0));
    response
}

async fn signed_in_by(
    app: &AppState,
    oidc: &Arc<Oidc>,
    session: &Session,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    let forbidden = |problem: &str| refused(problem, StatusCode::FORBIDDEN);
    let provider = oidc.provider();
    let pending = match cookie_value(headers, COOKIE) {
        Some(id) => app.store().take_sign_in(&id_hash(id)).await,
        None => Ok(None),
    };
    let pending = match pending {
        Ok(Some(p)) => serde_json::from_value::<Pending>(p).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "a sign-in could not be read");
            return refused(
                "Signing in failed on our side; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let Some(pending) = pending else {
        return forbidden("This sign-in expired or was already used: sign in again.");
    };
    if let Some(error) = q.error {
        return forbidden(&format!(
            "{provider} did not sign you in ({}).",
            codemill_core::text::log_safe(&error)
        ));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return forbidden(&format!(
            "{provider} sent no code or state back: sign in again."
        ));
    };
    if !same_token(&pending.state, &state) {
        tracing::warn!("a single sign-on came back with a state that is not the one sent");
        return forbidden("The sign-in's state does not match the one sent: sign in again.");
    }
    let client = match oidc.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the sign-in provider cannot be reached");
            return refused(
                &format!("{provider} cannot be reached right now; try again shortly."),
                StatusCode::BAD_GATEWAY,
            );
        }
    };
    let http = oidc.http();
    let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(request) => {
            request
                .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
                .request_async(&http)
                .await
        }
        Err(e) => {
            tracing::error!(error = %e, "the provider has no token endpoint");
            return refused(
                &format!("{provider} has no token endpoint."),
                StatusCode::BAD_GATEWAY,
            );
        }
    };
    let tokens = match exchange {
        Ok(t) => t,
        Err(e) => {
            let e = error_chain(&e);
            tracing::warn!(error = %codemill_core::text::log_safe(&e), "a code exchange failed");
            return forbidden(&format!("{provider} did not accept the sign-in: {e}"));
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return forbidden(&format!("{provider} sent no ID token."));
    };
    let verifier = client.id_token_verifier();
    let claims = match id_token.claims(&verifier, &Nonce::new(pending.nonce)) {
        Ok(c) => c,
        Err(e) => {
            let e = error_chain(&e);
            tracing::warn!(error = %codemill_core::text::log_safe(&e), "an ID token was refused");
            return forbidden(&format!("The ID token from {provider} was refused: {e}"));
        }
    };
    if let Some(expected) = claims.access_token_hash() {
        let matches = match (id_token.signing_alg(), id_token.signing_key(&verifier)) {
            (Ok(alg), Ok(key)) => {
                AccessTokenHash::from_token(tokens.access_token(), alg, key).ok()
                    == Some(expected.clone())
            }
            _ => false,
        };
        if !matches {
            return forbidden(&format!(
                "The access token from {provider} does not match its ID token."
            ));
        }
    }
    // An e-mail the provider says is unverified proves nothing about its domain.
    let email = claims
        .email()
        .filter(|_| claims.email_verified() != Some(false))
        .map(|e| e.as_str().to_ascii_lowercase());
    let config = &oidc.settings.config;
    let values = claim_values(&id_token.to_string(), &config.role_claim);
    let role = match config.admit(email.as_deref(), &values) {
        Ok(role) => role.to_string(),
        Err(why) => {
            tracing::warn!(why = %codemill_core::text::log_safe(&why), "a single sign-on was not admitted");
            return forbidden(&format!("{why}."));
        }
    };
    let name = email.unwrap_or_else(|| format!("{}@{}", claims.subject().as_str(), provider));
    if let Err(e) = app.store().ensure_user(&name, &role, NO_PASSWORD).await {
        tracing::error!(error = %e, "a single sign-on user could not be recorded");
        return refused(
            "Signing in failed on our side; try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    if let Err(e) = super::begin_session(session, &name, &role).await {
        tracing::error!(error = %e, "a session could not be started");
        return refused(
            "Signing in failed on our side; try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    tracing::info!(user = %codemill_core::text::log_safe(&name), role = %role, "signed in through {provider}");
    Redirect::to(local_path(&pending.next)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn claims_are_read_as_a_string_or_a_list() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let token = format!(
            "h.{}.s",
            b64(json!({"groups": ["eng", 7, "ops"], "role": "admin"}))
        );
        assert_eq!(claim_values(&token, "groups"), ["eng", "ops"]);
        assert_eq!(claim_values(&token, "role"), ["admin"]);
        assert!(claim_values(&token, "missing").is_empty());
        assert!(claim_values("not a token", "groups").is_empty());
    }

    #[test]
    fn the_pending_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; codemill_sign_in=abc; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
