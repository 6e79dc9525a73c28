//! A fake GitHub REST API (`2022-11-28`) for tests: issues, issue comments, labels, pull requests
//! (sharing the issue number space), review comments and their replies, GitHub App installation
//! tokens, `Link` pagination, GitHub's validation errors, plus builders for signed webhook
//! deliveries shaped like GitHub's documented payloads.
//!
//! Every request goes through a [`Recorder`]: it is recorded, and an injected [`Fault`] is
//! honoured (`AfterApply` applies the request and answers the status anyway; `Before` and
//! `RateLimit` answer without applying). [`FakeGitHub::inject_response`] queues any canned answer
//! (such as GitHub's primary rate limit, a `403` with `x-ratelimit-remaining: 0`).
//!
//! Authentication is checked like GitHub does: `Authorization: Bearer <token>` (or `token
//! <token>`) must be the configured token or an unexpired installation token this fake issued,
//! else `401 Bad credentials`. `POST /app/installations/{id}/access_tokens` takes the App's RS256
//! JWT, verified against the configured public key (signature, `alg`, `iss`, `iat`, `exp` at most
//! ten minutes ahead).
//!
//! Differences from GitHub worth knowing: there is no git behind it (head SHAs are made up; move
//! them with [`FakeGitHub::push`], and branch tips with [`FakeGitHub::set_branch`]); everything the API writes is authored by one login
//! ([`FakeGitHub::set_viewer`], default `codemill-bot`); merging a PR into the default branch
//! closes the issues its body names with a closing keyword (`Closes #3`), as GitHub does.

mod app;
mod checks;
mod data;
mod issues;
mod pulls;
mod render;
mod routes;
mod webhooks;

pub use webhooks::{sign, webhook_headers};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::Digest;

use super::{Fault, RecordedRequest, Recorder, serve};
use routes::handle;

const DOCS: &str = "https://docs.github.com/rest";

/// How to start a [`FakeGitHub`].
#[derive(Debug, Clone)]
pub struct FakeGitHubOptions {
    /// The token accepted as `Bearer`; empty accepts none (App auth only).
    pub token: String,
    /// `(app_id, installation_id, public key PEM)`: enables App auth. The PEM may be
    /// `BEGIN PUBLIC KEY` (SPKI) or `BEGIN RSA PUBLIC KEY` (PKCS#1).
    pub app: Option<(u64, u64, String)>,
    /// The largest page served, whatever `per_page` asks (GitHub's own cap is 100); small values
    /// make tests page.
    pub page_size: usize,
    pub owner: String,
    pub repo: String,
}

impl Default for FakeGitHubOptions {
    fn default() -> Self {
        FakeGitHubOptions {
            token: "ghp_fake_token".into(),
            app: None,
            page_size: 100,
            owner: "o".into(),
            repo: "r".into(),
        }
    }
}

/// A running fake; the server stops when this is dropped.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

struct Shared {
    state: Mutex<FakeState>,
    recorder: Recorder,
}

/// A canned answer queued by [`FakeGitHub::inject_response`].
struct Canned {
    method: String,
    path: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

struct IssueRec {
    number: u64,
    id: u64,
    title: String,
    body: Option<String>,
    state: String,
    state_reason: Option<String>,
    labels: Vec<String>,
    assignees: Vec<String>,
    user: String,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
    pr: Option<PrRec>,
}

struct PrRec {
    head_ref: String,
    head_sha: String,
    base_ref: String,
    draft: bool,
    merged_at: Option<i64>,
    merged_by: Option<String>,
    merge_sha: Option<String>,
    /// How the API merged it (`merge`, `squash`, `rebase`); `None` when merged by hand.
    merge_method: Option<String>,
}

struct CommentRec {
    id: u64,
    issue: u64,
    user: String,
    body: String,
    created_at: i64,
    updated_at: i64,
}

struct ReviewCommentRec {
    id: u64,
    pr: u64,
    user: String,
    body: String,
    path: String,
    line: u32,
    commit_id: String,
    in_reply_to_id: Option<u64>,
    review_id: u64,
    created_at: i64,
}

struct FakeState {
    opts: FakeGitHubOptions,
    base: String,
    viewer: String,
    token_ttl_secs: i64,
    default_branch: String,
    auto_close: bool,
    next_number: u64,
    next_id: u64,
    issues: BTreeMap<u64, IssueRec>,
    comments: Vec<CommentRec>,
    review_comments: Vec<ReviewCommentRec>,
    /// Installation tokens issued, with their expiry (unix seconds).
    tokens: Vec<(String, i64)>,
    canned: Vec<Canned>,
    /// Branch tips (the fake has no git: tests set them; API merges move the base).
    branches: BTreeMap<String, String>,
    /// Protected branches and the status checks they require.
    required_checks: BTreeMap<String, Vec<String>>,
    checks: Vec<checks::CheckRec>,
    /// Called on an API merge with (base, head sha, method): the commit the base is at after
    /// it, for a test that keeps a real repository in step.
    on_merge: Option<MergeHook>,
}

/// See [`FakeGitHub::on_merge`].
pub type MergeHook = Box<dyn Fn(&str, &str, &str) -> Option<String> + Send>;

impl FakeGitHub {
    /// Start the fake on 127.0.0.1 on a free port.
    pub async fn start(opts: FakeGitHubOptions) -> std::io::Result<FakeGitHub> {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                opts,
                base: String::new(),
                viewer: "codemill-bot".into(),
                token_ttl_secs: 3600,
                default_branch: "main".into(),
                auto_close: true,
                next_number: 1,
                next_id: 1000,
                issues: BTreeMap::new(),
                comments: Vec::new(),
                review_comments: Vec::new(),
                tokens: Vec::new(),
                canned: Vec::new(),
                branches: BTreeMap::new(),
                required_checks: BTreeMap::new(),
                checks: Vec::new(),
                on_merge: None,
            }),
            recorder: Recorder::default(),
        });
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        let url = format!("http://{addr}");
        if let Ok(mut s) = shared.state.lock() {
            s.base = url.clone();
        }
        Ok(FakeGitHub {
            shared,
            url,
            handle,
        })
    }

    /// The API base URL (`api_url` of the settings), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.shared)
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.recorder.clear();
    }

    /// Queue a fault for the next request matching its method and path prefix.
    pub fn inject(&self, fault: Fault) {
        self.shared.recorder.inject(fault);
    }

    /// Answer the next request matching `method` and a path starting with `path` with this
    /// status, headers and JSON body, without applying it.
    pub fn inject_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: Value,
    ) {
        self.state().canned.push(Canned {
            method: method.to_string(),
            path: path.to_string(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        });
    }

    /// GitHub's primary rate limit on the next matching request: `403` with
    /// `x-ratelimit-remaining: 0` and `x-ratelimit-reset` `reset_in_secs` from now.
    pub fn inject_primary_rate_limit(&self, method: &str, path: &str, reset_in_secs: u64) {
        let reset = (now() + reset_in_secs as i64).to_string();
        self.inject_response(
            method,
            path,
            403,
            &[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-used", "5000"),
                ("x-ratelimit-reset", &reset),
                ("x-ratelimit-resource", "core"),
            ],
            json!({
                "message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403"
            }),
        );
    }

    /// Lifetime of installation tokens issued from now on (GitHub: one hour).
    pub fn set_installation_token_ttl(&self, secs: i64) {
        self.state().token_ttl_secs = secs;
    }

    /// Revoke every installation token issued so far (the next request with one gets a 401).
    pub fn revoke_tokens(&self) {
        self.state().tokens.clear();
    }

    /// The login everything written through the API is authored by (default `codemill-bot`).
    pub fn set_viewer(&self, login: &str) {
        self.state().viewer = login.to_string();
    }

    /// The repository's default branch (default `main`): merges into it close linked issues.
    pub fn set_default_branch(&self, branch: &str) {
        self.state().default_branch = branch.to_string();
    }

    /// Whether a merge closes the issues named with a closing keyword in the PR body (default
    /// true, as on GitHub).
    pub fn set_auto_close_on_merge(&self, on: bool) {
        self.state().auto_close = on;
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    // A panicking test thread must not wedge every later request.
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    x.as_str()
                        .or_else(|| x.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn to_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Issue numbers a PR body closes: `close(s|d)`, `fix(es|ed)`, `resolve(s|d)` then `#N`.
fn closing_references(body: &str) -> Vec<u64> {
    const KEYWORDS: [&str; 9] = [
        "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
    ];
    let words: Vec<&str> = body.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| {
            let kw = w[0].trim_end_matches(':').to_ascii_lowercase();
            KEYWORDS.contains(&kw.as_str())
        })
        .filter_map(|w| {
            let rest = w[1].strip_prefix('#')?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn small_hash(s: &str) -> u64 {
    // FNV-1a: stable ids for logins and labels.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h % 100_000_000
}

fn fake_sha(seed: &str) -> String {
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..40].to_string()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Unix seconds as `2011-04-14T16:00:49Z`.
fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything but ASCII alphanumerics and `-._~` (RFC 3986 unreserved) is escaped.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_302_796_849), "2011-04-14T16:00:49Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a b/c:é"), "a%20b%2Fc%3A%C3%A9");
        assert_eq!(percent_decode("codemill%3Arunning"), "codemill:running");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%C3%A9"), "%zzé");
    }

    #[test]
    fn closing_keywords_are_found() {
        assert_eq!(
            closing_references("Closes #3. Also fixes: #12 and see #4"),
            vec![3, 12]
        );
    }
}
