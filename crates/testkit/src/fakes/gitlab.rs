//! A fake GitLab REST API (v4) for tests: one project's issues, issue links, merge requests,
//! notes and discussions (diff notes included), GitLab's `X-*` and `Link` pagination and
//! `RateLimit-*` headers, plus builders for webhook deliveries shaped like GitLab's documented
//! payloads (`Issue Hook`, `Note Hook`, `Merge Request Hook`, `Pipeline Hook`).
//!
//! Every request goes through a [`Recorder`]: it is recorded (rejected ones too), and an
//! injected [`Fault`] is honoured (`AfterApply` applies the request and answers the status
//! anyway; `Before` answers it without applying; `RateLimit` answers GitLab's `429`).
//!
//! Authentication is `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>`, else
//! `401 Unauthorized`. The project is addressed by its numeric id or its URL-encoded path.
//!
//! Differences from GitLab worth knowing: there is no git behind it (an MR's head SHA is made
//! up; move it with [`FakeGitLab::push`]); everything written through the API is authored by
//! the bot user; merging closes the issues the MR description names with a closing keyword
//! (`Closes #3`), whatever the target branch.

mod hands;
mod issues;
mod mrs;
mod notes;
mod render;
mod repo;
mod routes;
#[cfg(test)]
mod tests;
mod webhooks;

pub use webhooks::webhook_headers;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;
use sha2::Digest;

use super::{Fault, RecordedRequest, Recorder, serve};

/// How to start a [`FakeGitLab`].
#[derive(Debug, Clone)]
pub struct FakeGitLabOptions {
    /// The token accepted as `PRIVATE-TOKEN` or `Bearer`.
    pub token: String,
    /// The project's path with namespace, e.g. `acme/web`.
    pub project: String,
    pub project_id: u64,
    /// The default `per_page` (GitLab's is 20); `per_page` may ask for up to 100.
    pub page_size: usize,
    /// The user the token belongs to: `GET /user` and every write through the API.
    pub bot_username: String,
    /// Whether a merge closes the issues named in the MR description (`Closes #3`).
    pub close_issues_on_merge: bool,
}

impl Default for FakeGitLabOptions {
    fn default() -> Self {
        FakeGitLabOptions {
            token: "glpat-test-token".into(),
            project: "acme/web".into(),
            project_id: 42,
            page_size: 20,
            bot_username: "codemill-bot".into(),
            close_issues_on_merge: true,
        }
    }
}

/// A running fake; the server stops when this is dropped.
pub struct FakeGitLab {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

struct Shared {
    state: Mutex<FakeState>,
    recorder: Recorder,
    /// Requests answered so far, for `RateLimit-Remaining`.
    served: AtomicU64,
}

/// What a note hangs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noteable {
    Issue(u64),
    Mr(u64),
}

struct IssueRec {
    iid: u64,
    title: String,
    description: String,
    state: String,
    labels: Vec<String>,
    assignees: Vec<String>,
    author: String,
    created_at: i64,
    updated_at: i64,
    closed_at: Option<i64>,
}

struct MrRec {
    iid: u64,
    title: String,
    description: String,
    state: String,
    labels: Vec<String>,
    source_branch: String,
    target_branch: String,
    sha: String,
    merge_commit_sha: Option<String>,
    author: String,
    created_at: i64,
    updated_at: i64,
    merged_at: Option<i64>,
    merged_by: Option<String>,
    closed_at: Option<i64>,
    /// Whether the merge squashed (set when merged through the API).
    squashed: Option<bool>,
}

struct DiscussionRec {
    id: String,
    on: Noteable,
    individual: bool,
    resolved: bool,
}

struct NoteRec {
    id: u64,
    on: Noteable,
    discussion: String,
    author: String,
    body: String,
    /// `None`, `DiscussionNote` or `DiffNote`, as GitLab's `type`.
    kind: Option<&'static str>,
    position: Option<Value>,
    created_at: i64,
    updated_at: i64,
}

struct LinkRec {
    id: u64,
    source: u64,
    target: u64,
    link_type: String,
}

struct FakeState {
    opts: FakeGitLabOptions,
    base: String,
    next_issue: u64,
    next_mr: u64,
    next_id: u64,
    issues: BTreeMap<u64, IssueRec>,
    mrs: BTreeMap<u64, MrRec>,
    discussions: Vec<DiscussionRec>,
    notes: Vec<NoteRec>,
    links: Vec<LinkRec>,
    branches: BTreeMap<String, String>,
    pipelines: Vec<repo::PipelineRec>,
    pipeline_must_succeed: bool,
    on_merge: Option<repo::MergeHook>,
}

impl FakeGitLab {
    /// Start the fake on 127.0.0.1 on a free port.
    pub async fn start(opts: FakeGitLabOptions) -> std::io::Result<FakeGitLab> {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                opts,
                base: String::new(),
                next_issue: 1,
                next_mr: 1,
                next_id: 0,
                issues: BTreeMap::new(),
                mrs: BTreeMap::new(),
                discussions: Vec::new(),
                notes: Vec::new(),
                links: Vec::new(),
                branches: BTreeMap::new(),
                pipelines: Vec::new(),
                pipeline_must_succeed: false,
                on_merge: None,
            }),
            recorder: Recorder::default(),
            served: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .fallback(routes::handle)
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        let url = format!("http://{addr}");
        lock(&shared).base = url.clone();
        Ok(FakeGitLab {
            shared,
            url,
            handle,
        })
    }

    /// The instance's base URL, e.g. `http://127.0.0.1:41234`; the API is under `/api/v4`.
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
}

fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    // A panicking test thread must not wedge every later request.
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeState {
    /// The next note or link id (one counter, as GitLab's ids are global).
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn exists(&self, on: Noteable) -> bool {
        match on {
            Noteable::Issue(iid) => self.issues.contains_key(&iid),
            Noteable::Mr(iid) => self.mrs.contains_key(&iid),
        }
    }

    fn create_issue(
        &mut self,
        title: &str,
        description: &str,
        labels: Vec<String>,
        author: &str,
    ) -> u64 {
        let iid = self.next_issue;
        self.next_issue += 1;
        let t = now_ms();
        self.issues.insert(
            iid,
            IssueRec {
                iid,
                title: title.to_string(),
                description: description.to_string(),
                state: "opened".into(),
                labels,
                assignees: Vec::new(),
                author: author.to_string(),
                created_at: t,
                updated_at: t,
                closed_at: None,
            },
        );
        iid
    }

    /// Start a discussion on `on` with its first note; returns (note id, discussion id).
    fn start_discussion(
        &mut self,
        on: Noteable,
        author: &str,
        body: &str,
        individual: bool,
        position: Option<Value>,
    ) -> (u64, String) {
        let seed = format!("discussion:{}:{}", self.discussions.len(), now_nanos());
        let discussion = fake_sha(&seed);
        self.discussions.push(DiscussionRec {
            id: discussion.clone(),
            on,
            individual,
            resolved: false,
        });
        let kind = match (&position, individual) {
            (Some(_), _) => Some("DiffNote"),
            (None, true) => None,
            (None, false) => Some("DiscussionNote"),
        };
        let id = self.push_note(on, &discussion, author, body, kind, position);
        (id, discussion)
    }

    /// A reply in an existing discussion; `None` if there is no such discussion on `on`.
    fn reply(&mut self, on: Noteable, discussion: &str, author: &str, body: &str) -> Option<u64> {
        let d = self
            .discussions
            .iter_mut()
            .find(|d| d.on == on && d.id == discussion)?;
        // Replying to a single note turns it into a thread, as on GitLab.
        d.individual = false;
        let discussion = d.id.clone();
        Some(self.push_note(on, &discussion, author, body, Some("DiscussionNote"), None))
    }

    /// Add a note to `discussion`; returns its id.
    fn push_note(
        &mut self,
        on: Noteable,
        discussion: &str,
        author: &str,
        body: &str,
        kind: Option<&'static str>,
        position: Option<Value>,
    ) -> u64 {
        let id = self.id();
        let t = now_ms();
        self.notes.push(NoteRec {
            id,
            on,
            discussion: discussion.to_string(),
            author: author.to_string(),
            body: body.to_string(),
            kind,
            position,
            created_at: t,
            updated_at: t,
        });
        self.touch(on, t);
        id
    }

    fn touch(&mut self, on: Noteable, t: i64) {
        match on {
            Noteable::Issue(iid) => {
                if let Some(i) = self.issues.get_mut(&iid) {
                    i.updated_at = t;
                }
            }
            Noteable::Mr(iid) => {
                if let Some(m) = self.mrs.get_mut(&iid) {
                    m.updated_at = t;
                }
            }
        }
    }

    fn close_issue(&mut self, iid: u64, t: i64) {
        if let Some(i) = self.issues.get_mut(&iid)
            && i.state != "closed"
        {
            i.state = "closed".into();
            i.closed_at = Some(t);
            i.updated_at = t;
        }
    }

    /// Merge an open MR as `by`, closing the issues its description names when configured.
    fn merge(&mut self, iid: u64, by: &str) -> bool {
        let t = now_ms();
        let Some(m) = self.mrs.get_mut(&iid).filter(|m| m.state == "opened") else {
            return false;
        };
        m.state = "merged".into();
        m.merged_at = Some(t);
        m.merged_by = Some(by.to_string());
        m.merge_commit_sha = Some(fake_sha(&format!("merge:{iid}:{}", m.sha)));
        m.updated_at = t;
        let closes = closing_references(&m.description, &self.opts.project);
        if self.opts.close_issues_on_merge {
            for n in closes {
                self.close_issue(n, t);
            }
        }
        true
    }
}

/// GitLab's draft rule: a title starting with `Draft:`, `[Draft]`, `(Draft)` or `Draft - `, or
/// just `Draft`, in any case.
fn is_draft(title: &str) -> bool {
    let t = title.trim_start().to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)", "draft - "]
        .iter()
        .any(|p| t.starts_with(p))
        || t.trim_end() == "draft"
}

/// Issue iids an MR description closes, after GitLab's default closing pattern: a keyword
/// (`close(s|d)`, `closing`, `fix(es|ed|ing)`, `resolve(s|d)`, `resolving`,
/// `implement(s|ed|ing)`), an optional `:`, then references (`#3`, `acme/web#3`) joined by
/// commas or `and`.
fn closing_references(text: &str, project: &str) -> Vec<u64> {
    const KEYWORDS: &str = "close closes closed closing fix fixes fixed fixing resolve resolves \
                            resolved resolving implement implements implemented implementing";
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let kw = w.trim_end_matches(':').to_ascii_lowercase();
        if !KEYWORDS.split_whitespace().any(|k| k == kw) {
            continue;
        }
        for w in &words[i + 1..] {
            let w = w.trim_end_matches([',', '.', ';', ')']);
            let filler = matches!(w.to_ascii_lowercase().as_str(), "and" | "issue" | "issues");
            if w.is_empty() || filler {
                continue;
            }
            let local = w.strip_prefix(project).unwrap_or(w);
            let Some(n) = local.strip_prefix('#').and_then(|n| n.parse::<u64>().ok()) else {
                break;
            };
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

fn small_hash(s: &str) -> u64 {
    // FNV-1a: stable ids for users and labels.
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

fn to_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap_or_default()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// Unix milliseconds as GitLab writes times: `2016-01-04T15:31:51.081Z`.
fn iso(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
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
