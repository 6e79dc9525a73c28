//! How the GitHub client authenticates: a token from the environment, or a GitHub App whose
//! RS256 JWT is exchanged for an installation token that is cached until shortly before it
//! expires and shared by every clone of the client.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use codemill_core::config::vendors::GithubApp;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::http::{Auth, HttpClient, Req};
use crate::{Env, Error, Result, secret_from};

use super::{API_VERSION, MEDIA_TYPE, VENDOR};

/// A cached installation token is dropped this long before GitHub's `expires_at`, so a request
/// never leaves with a token that expires in flight.
const REFRESH_MARGIN_SECS: i64 = 60;

#[derive(Clone)]
pub(crate) enum Credentials {
    Token(SecretString),
    App(Arc<AppAuth>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(..)"),
            Credentials::App(app) => f
                .debug_struct("App")
                .field("app_id", &app.app_id)
                .field("installation_id", &app.installation_id)
                .finish_non_exhaustive(),
        }
    }
}

pub(crate) struct AppAuth {
    app_id: u64,
    installation_id: u64,
    key: jsonwebtoken::EncodingKey,
    /// The installation token and when GitHub says it expires. The async mutex makes concurrent
    /// callers wait for one exchange instead of each starting their own.
    cached: tokio::sync::Mutex<Option<(SecretString, DateTime<Utc>)>>,
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

impl AppAuth {
    pub(crate) fn new(app: &GithubApp, env: Env<'_>) -> Result<AppAuth> {
        let pem = secret_from(
            env,
            VENDOR,
            "github.app.private_key_env",
            &app.private_key_env,
        )?;
        // Keys pasted into one-line variables often carry `\n` escapes instead of newlines.
        let text = pem.expose_secret();
        let text = if text.contains('\n') {
            text.to_string()
        } else {
            text.replace("\\n", "\n")
        };
        let unusable = || {
            Error::Config(format!(
                "github: the App private key in {} (named by github.app.private_key_env) is not a usable RSA PEM key",
                app.private_key_env
            ))
        };
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(text.as_bytes()).map_err(|_| unusable())?;
        let auth = AppAuth {
            app_id: app.app_id,
            installation_id: app.installation_id,
            key,
            cached: tokio::sync::Mutex::new(None),
        };
        // Sign once now so a bad key fails at start-up, not on the first webhook.
        auth.jwt(Utc::now()).map_err(|_| unusable())?;
        Ok(auth)
    }

    /// The App's JWT: issued a minute in the past against clock drift, valid for nine minutes
    /// (GitHub refuses more than ten).
    fn jwt(&self, now: DateTime<Utc>) -> std::result::Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            iat: now.timestamp() - 60,
            exp: now.timestamp() + 9 * 60,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
    }

    /// A valid installation token, from the cache or a fresh exchange.
    pub(crate) async fn token(&self, http: &HttpClient) -> Result<SecretString> {
        let mut cached = self.cached.lock().await;
        let now = Utc::now();
        if let Some((token, expires)) = cached.as_ref()
            && now.timestamp() < expires.timestamp() - REFRESH_MARGIN_SECS
        {
            return Ok(token.clone());
        }
        let path = format!("/app/installations/{}/access_tokens", self.installation_id);
        let jwt = self.jwt(now).map_err(|e| {
            Error::Config(format!("github POST {path}: cannot sign the App JWT: {e}"))
        })?;
        // Minting a second token is harmless, so a 5xx may be retried.
        let req = Req::new(reqwest::Method::POST, path.clone())
            .idempotent()
            .header("accept", MEDIA_TYPE)
            .header("x-github-api-version", API_VERSION);
        let answer = http
            .send(&req, &Auth::Bearer(SecretString::from(jwt)))
            .await?;
        let token = answer.body.get("token").and_then(|v| v.as_str());
        let expires = answer
            .body
            .get("expires_at")
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        let (Some(token), Some(expires)) = (token, expires) else {
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!(
                    "POST {path}: the answer has no `token` and RFC 3339 `expires_at`"
                ),
            });
        };
        let token = SecretString::from(token.to_string());
        *cached = Some((token.clone(), expires));
        Ok(token)
    }

    /// Forget the cached token (GitHub refused it before its time, e.g. after a revocation).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

impl Credentials {
    pub(crate) async fn auth(&self, http: &HttpClient) -> Result<Auth> {
        match self {
            Credentials::Token(token) => Ok(Auth::Bearer(token.clone())),
            Credentials::App(app) => Ok(Auth::Bearer(app.token(http).await?)),
        }
    }
}
