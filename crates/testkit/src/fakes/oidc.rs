//! A fake OpenID Connect identity provider on 127.0.0.1: discovery
//! (`/.well-known/openid-configuration`), its signing key (`/jwks`), `/authorize` (which signs
//! the configured person in at once and sends the browser back with a code) and `/token` (which
//! checks the client's secret, the redirect URI and the PKCE verifier, then answers with an
//! RS256-signed ID token carrying the nonce). It can be told to misbehave as an attacker or a
//! broken provider would: a wrong `state`, a wrong `nonce`, an expired ID token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::Digest;

use super::{RecordedRequest, Recorder, serve};

/// The key the fake signs with: made for these tests, it protects nothing.
const TEST_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIIEogIBAAKCAQEAshBu5fPoLSHilgE2VJAhEiwbftR1GXmU6KFc4Tq2WKfa3eVE\n\
CoNdu4NrFJehVxM7xW94JW3SvUSTfCrmfPkQpHh9hmrXjHs6jYw8CnNYKuf/yNuU\n\
LYspGRJ8sqfJVttSgYBV+OZIt4VVd6eHk2MstXLDJncleoQ+sH64NZBgIqcricF0\n\
ZmfH4bSURvv+fsousDVJ2oZpPTEY7ROX2ZLawoez9UAXO2wI1cjw8jiKEqoFKK2t\n\
GMGf2qMZjRViMAwkCAhZKFXW5Ilkz5J8Zw26BP7vSgrsB25R8/01SFzoeh6YY/Df\n\
zkzKf8HluBB4pLWUspHsloxYJV5BFysGXIRmWQIDAQABAoIBABfQWFCDJfQxQbEv\n\
kNFO5Eleoj+8ULvbNYXGHNqXZE8nhb8i3A5u4rCDAyViIQb48Me3IHGbBjHfU70p\n\
rKEemzHv1lPNgq3MRjirflUkd3Bnjh8R9LeBkrnCbfBjvarS0q40mGrc+3El0Rgb\n\
TOeyfgZ3Rm+kxBumR48Jp3+sYxsHGD5h4zh0uo9ph2syU9jDA4mtbzKOyCgQU3Zy\n\
NVnDM9CcfaLiuQyjNyOU5+jHboLJ9fjC8cc5gXGw+gCy2XoOd+gFN3XnmbGOgCNb\n\
QNuLYpEa4FSvpYvFhuNss/Nrpc6MZbPFEjHjaopaagbw1u5USvYh9Sj4E9rMxVYt\n\
z9FXPs0CgYEA9fjO4JYzU0BHX+4INt8p/edtl8C6lsrr1KRTwwCr5/tBfWzFGS9W\n\
Uv3M/DeQX6GoCSh6u/2qzHV2sM/8IBfs5aaywNduzsUHwAMzjBKUZVGSFrS2tPA5\n\
DG7mv9Yqvf/tjmB5JqhJllWQgQR1tBpTOFVAHFnjhXu1TFdiHILEx/UCgYEAuVLg\n\
fqRjIR0elOyTkVLMZTE6dQyWZt7waOGLpm/Pf9uo5jjoWUKhUOg3Fm/cLxQ8qaoc\n\
c1ii8/xIa9Ciwa81dvTNLhVUxw7Q0/dJqXDkuZ8tr5D4aHCW5tCNDca8QRfV1IHQ\n\
JrViMn/YsURc4yGDlWcGudgLv3gruv/RnhaOulUCgYBKp4iKq6vKQcEoAYPmu5bw\n\
JDSkEW/QYqhvMqzli6ehUiYPXlr4COEHcVas2mRsUhFBLlMKCbS0N5adlZKtXvWc\n\
whqQ4xITmcN/aLlVczItCjPvxkuJ4Ts/Zc2NPgBdCHdedjNvIzaqdS/VqLfcwPyv\n\
JVi/Ah1HH0PodsElbB8znQKBgARdt3xEUzGMhhPsHu3ljXs01bO8QC7cQb220ptx\n\
NupEOo5x+MdhkntdfS7CI+XYDDXTFCiDhhNJdktT9wGpJxFOYycayYyHBNR5lvqu\n\
9jSJU4I3YCLVxDhb4XbZn8XI0fjXthezXkTiTjCe87FGMNtsOfRW6q/wHNei/0VC\n\
MsqhAoGAXFYZnupXcnH+5KrVhjESr8dTZMSNuszVGQlisfDgMJ2yU8DLwCi1Pfda\n\
AnMsWdNayA37fzfSNZO16rp57keHD7muR0OkCGrZptVmEWqKKMs2seIuVWaMZBpU\n\
ZVIHaeQx+q5+qwowqlrIk9WRzgVsCozdwmf53XtcuOkTnzPfzWQ=\n\
-----END RSA PRIVATE KEY-----\n";
/// Its modulus (base64url), as the JWKS publishes it; the exponent is 65537 (`AQAB`).
const TEST_KEY_N: &str = "shBu5fPoLSHilgE2VJAhEiwbftR1GXmU6KFc4Tq2WKfa3eVECoNdu4NrFJehVxM7xW94JW3SvUSTfCrmfPkQpHh9hmrXjHs6jYw8CnNYKuf_yNuULYspGRJ8sqfJVttSgYBV-OZIt4VVd6eHk2MstXLDJncleoQ-sH64NZBgIqcricF0ZmfH4bSURvv-fsousDVJ2oZpPTEY7ROX2ZLawoez9UAXO2wI1cjw8jiKEqoFKK2tGMGf2qMZjRViMAwkCAhZKFXW5Ilkz5J8Zw26BP7vSgrsB25R8_01SFzoeh6YY_DfzkzKf8HluBB4pLWUspHsloxYJV5BFysGXIRmWQ";
const KID: &str = "codemill-test-key";

/// Who the provider signs in.
#[derive(Debug, Clone)]
pub struct Person {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// The `groups` claim.
    pub groups: Vec<String>,
}

/// How the provider misbehaves on the next sign-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tamper {
    #[default]
    Nothing,
    /// Sends the browser back with another `state` than it was given.
    WrongState,
    /// Puts another nonce in the ID token.
    WrongNonce,
    /// Issues an ID token that expired ten minutes ago.
    Expired,
}

#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
    person: Person,
}

struct Shared {
    issuer: Mutex<String>,
    client_id: String,
    client_secret: String,
    person: Mutex<Person>,
    tamper: Mutex<Tamper>,
    grants: Mutex<HashMap<String, Grant>>,
    recorder: Recorder,
}

pub struct FakeIdp {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl FakeIdp {
    /// A provider for one client (`client_id` with `client_secret`) that signs `person` in.
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        person: Person,
    ) -> std::io::Result<FakeIdp> {
        let shared = Arc::new(Shared {
            issuer: Mutex::new(String::new()),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            person: Mutex::new(person),
            tamper: Mutex::new(Tamper::Nothing),
            grants: Mutex::new(HashMap::new()),
            recorder: Recorder::default(),
        });
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        let url = format!("http://{addr}");
        if let Ok(mut issuer) = shared.issuer.lock() {
            *issuer = url.clone();
        }
        Ok(FakeIdp {
            shared,
            url,
            handle,
        })
    }

    /// The issuer URL (also the base of every endpoint).
    pub fn issuer(&self) -> &str {
        &self.url
    }

    /// Sign `person` in from now on.
    pub fn set_person(&self, person: Person) {
        if let Ok(mut p) = self.shared.person.lock() {
            *p = person;
        }
    }

    pub fn tamper(&self, tamper: Tamper) {
        if let Ok(mut t) = self.shared.tamper.lock() {
            *t = tamper;
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }
}

fn issuer(s: &Shared) -> String {
    s.issuer.lock().map(|i| i.clone()).unwrap_or_default()
}

fn tamper(s: &Shared) -> Tamper {
    s.tamper.lock().map(|t| *t).unwrap_or_default()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn discovery(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.recorder.record(&method, &uri, &headers, &Bytes::new());
    let i = issuer(&s);
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "email", "email_verified", "groups"],
    }))
    .into_response()
}

async fn jwks(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.recorder.record(&method, &uri, &headers, &Bytes::new());
    axum::Json(json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID, "n": TEST_KEY_N, "e": "AQAB",
    }]}))
    .into_response()
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.recorder.record(&method, &uri, &headers, &Bytes::new());
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("response_type") != "code" {
        return (StatusCode::BAD_REQUEST, "response_type must be code").into_response();
    }
    if field("client_id") != s.client_id {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    if !field("scope").split(' ').any(|x| x == "openid") {
        return (StatusCode::BAD_REQUEST, "scope must include openid").into_response();
    }
    if field("code_challenge_method") != "S256" || field("code_challenge").is_empty() {
        return (StatusCode::BAD_REQUEST, "PKCE with S256 is required").into_response();
    }
    let redirect_uri = field("redirect_uri");
    if redirect_uri.is_empty() {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    }
    let code = format!(
        "code-{}",
        hex::encode(sha2::Sha256::digest(uri.to_string().as_bytes()))
    );
    let person = s.person.lock().map(|p| p.clone());
    let Ok(person) = person else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Ok(mut grants) = s.grants.lock() {
        grants.insert(
            code.clone(),
            Grant {
                client_id: field("client_id"),
                redirect_uri: redirect_uri.clone(),
                nonce: q.get("nonce").cloned(),
                challenge: field("code_challenge"),
                person,
            },
        );
    }
    let state = match tamper(&s) {
        Tamper::WrongState => "not-the-state-it-was-given".to_string(),
        _ => field("state"),
    };
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let to = format!(
        "{redirect_uri}{sep}code={}&state={}",
        percent_encoding::utf8_percent_encode(&code, percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(&state, percent_encoding::NON_ALPHANUMERIC),
    );
    Redirect::to(&to).into_response()
}

/// The client's id and secret from HTTP Basic (`client_secret_basic`) or the form.
fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        return Some((unescape(id), unescape(secret)));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

async fn token(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.recorder.record(&method, &uri, &headers, &body);
    let form: HashMap<String, String> = url_form(&body);
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    match client_auth(&headers, &form) {
        Some((id, secret)) if id == s.client_id && secret == s.client_secret => {}
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "wrong client credentials",
            );
        }
    }
    if field("grant_type") != "authorization_code" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    let grant = s
        .grants
        .lock()
        .ok()
        .and_then(|mut g| g.remove(&field("code")));
    let Some(grant) = grant else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "unknown or used code",
        );
    };
    if grant.client_id != s.client_id || grant.redirect_uri != field("redirect_uri") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match",
        );
    }
    let verifier = field("code_verifier");
    if URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "PKCE verification failed",
        );
    }
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = match tamper(&s) {
        Tamper::Expired => (now - 1200, now - 600),
        _ => (now, now + 300),
    };
    let nonce = match tamper(&s) {
        Tamper::WrongNonce => Some("a-nonce-from-another-sign-in".to_string()),
        _ => grant.nonce.clone(),
    };
    let mut claims = json!({
        "iss": issuer(&s),
        "sub": grant.person.subject,
        "aud": s.client_id,
        "iat": iat,
        "exp": exp,
        "groups": grant.person.groups,
    });
    if let Some(n) = nonce {
        claims["nonce"] = Value::String(n);
    }
    if let Some(e) = &grant.person.email {
        claims["email"] = Value::String(e.clone());
        claims["email_verified"] = Value::Bool(grant.person.email_verified);
    }
    let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    head.kid = Some(KID.into());
    let key = match jsonwebtoken::EncodingKey::from_rsa_pem(TEST_KEY_PEM.as_bytes()) {
        Ok(k) => k,
        Err(e) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &e.to_string(),
            );
        }
    };
    let id_token = match jsonwebtoken::encode(&head, &claims, &key) {
        Ok(t) => t,
        Err(e) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &e.to_string(),
            );
        }
    };
    axum::Json(json!({
        "access_token": format!("at-{}", hex::encode(sha2::Sha256::digest(id_token.as_bytes()))),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}
