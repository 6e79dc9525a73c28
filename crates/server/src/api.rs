//! The JSON API under `/api` (bearer token required, see `auth`). Reads come straight from the
//! store — job state from the job views written with each journal entry, never replayed per
//! request — and followers read the event stream from a cursor; the four state changes go
//! through [`crate::Control`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{Proposal, Stage, TicketStatus};
use codemill_core::text::log_safe;
use codemill_store::{JobView, QueueEntry, QueueState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// What a dashboard needs to show a job at a glance.
#[derive(Debug, Serialize)]
pub(crate) struct JobSummary {
    id: JobId,
    ticket: TicketKey,
    project: String,
    /// The user-facing state: queued, running, awaiting_approval, shipping, done,
    /// needs_attention, ...
    status: &'static str,
    stage: Stage,
    round: u32,
    max_rounds: u32,
    branch: Option<String>,
    commit: Option<String>,
    pr: Option<i64>,
    approved_by: Option<String>,
    reason: Option<String>,
    cost_usd: f64,
    /// Where the job stands in the queue; absent for jobs run in the foreground (`codemill run`).
    queue: Option<QueueView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    events: usize,
}

#[derive(Debug, Serialize)]
struct QueueView {
    state: QueueState,
    attempts: u32,
    max_attempts: u32,
    run_after: DateTime<Utc>,
    lease_owner: Option<String>,
    last_error: Option<String>,
}

impl From<QueueEntry> for QueueView {
    fn from(q: QueueEntry) -> Self {
        QueueView {
            state: q.state,
            attempts: q.attempts,
            max_attempts: q.max_attempts,
            run_after: q.run_after,
            lease_owner: q.lease_owner,
            last_error: q.last_error,
        }
    }
}

/// A job's summary from its view (written with its latest journal entry).
async fn summarize(app: &AppState, view: JobView) -> Result<JobSummary, ApiError> {
    let id = view.job;
    let Some(state) = view.state else {
        return Err(ApiError::Internal(format!(
            "job {id}: journal cannot be replayed: {}",
            view.error.unwrap_or_default()
        )));
    };
    let queue = app.store().queue_entry(id).await?.map(QueueView::from);
    let summary = JobSummary {
        id,
        ticket: state.ticket.clone(),
        project: state.project.to_string(),
        status: state.shown_status(
            queue
                .as_ref()
                .is_some_and(|q| q.state == QueueState::Queued),
        ),
        stage: state.stage,
        round: state.round,
        max_rounds: state.max_rounds,
        branch: state.branch.clone(),
        commit: state.commit.clone(),
        pr: state.pr,
        approved_by: state.approved_by.clone(),
        reason: state.reason.clone(),
        cost_usd: state.cost_usd,
        queue,
        created_at: view.created_at,
        updated_at: view.updated_at,
        events: usize::try_from(view.seq + 1).unwrap_or(0),
    };
    Ok(summary)
}

async fn load_job(app: &AppState, id: JobId) -> Result<Option<JobSummary>, ApiError> {
    match app.store().job_view(id).await? {
        Some(view) => Ok(Some(summarize(app, view).await?)),
        None => Ok(None),
    }
}

fn parse_key(key: &str) -> Result<TicketKey, ApiError> {
    key.parse()
        .map_err(|e| ApiError::BadRequest(format!("{e}")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TicketQuery {
    project: Option<String>,
    /// Comma-separated ticket statuses (`todo,needs_input`).
    status: Option<String>,
}

/// The statuses of `?status=`, or the error naming the one that is not a status.
fn statuses(list: &str) -> Result<Vec<TicketStatus>, ApiError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            TicketStatus::parse(s).ok_or_else(|| {
                let known: Vec<&str> = TicketStatus::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::BadRequest(format!(
                    "status {s:?} is not a ticket status (one of {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// `GET /api/tickets[?project=NAME][&status=S1,S2]`: a status filter reads only the tickets
/// in those statuses (through an index), not every ticket ever done.
pub(crate) async fn tickets(
    State(app): State<AppState>,
    Query(query): Query<TicketQuery>,
) -> Result<Json<Value>, ApiError> {
    let tickets = match query.status.as_deref() {
        None => app.store().tickets(query.project.as_deref()).await?,
        Some(list) => {
            let statuses = statuses(list)?;
            if statuses.is_empty() {
                return Err(ApiError::BadRequest(
                    "status is empty: name one or more ticket statuses, comma-separated".into(),
                ));
            }
            let mut tickets = app.store().tickets_in_status(&statuses).await?;
            if let Some(project) = query.project.as_deref() {
                tickets.retain(|t| t.project == project);
            }
            tickets
        }
    };
    Ok(Json(json!({ "tickets": tickets })))
}

/// `GET /api/tickets/{key}`: the ticket, its comments and its latest job.
pub(crate) async fn ticket(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&key)?;
    let ticket = app
        .store()
        .ticket(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no ticket {key}")))?;
    let comments = app.store().comments(&key).await?;
    let job = match app.store().latest_view(&key).await? {
        Some(view) => Some(summarize(&app, view).await?),
        None => None,
    };
    Ok(Json(
        json!({ "ticket": ticket, "comments": comments, "job": job }),
    ))
}

/// The job a path names, by its whole id or the short form the CLI prints.
async fn find_job(app: &AppState, text: &str) -> Result<JobId, ApiError> {
    match app.store().find_job(text).await {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(ApiError::NotFound(format!("no job {text}"))),
        Err(codemill_store::StoreError::Invalid(why)) => Err(ApiError::BadRequest(why)),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/jobs/{id}` (the whole id or the short form the CLI prints): the job's summary and
/// its whole journal.
pub(crate) async fn job(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = find_job(&app, &id).await?;
    let job = load_job(&app, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let journal = app.store().journal(id).await?;
    Ok(Json(json!({ "job": job, "journal": journal })))
}

#[derive(Debug, Serialize)]
struct ProposalView {
    job: JobId,
    ticket: TicketKey,
    title: Option<String>,
    proposal: Proposal,
    cost_usd: f64,
}

/// `GET /api/proposals`: every job awaiting approval, with what would be shipped.
pub(crate) async fn proposals(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for view in app
        .store()
        .job_views(Some("awaiting_approval"), None)
        .await?
    {
        let Some(state) = view.state else { continue };
        if state.stage != Stage::AwaitingApproval {
            continue;
        }
        let Some(proposal) = state.proposal.clone() else {
            continue;
        };
        // Only the waiting few tickets are read, not every ticket with its body.
        let title = app.store().ticket(&state.ticket).await?.map(|t| t.title);
        out.push(ProposalView {
            job: view.job,
            title,
            ticket: state.ticket,
            proposal,
            cost_usd: state.cost_usd,
        });
    }
    Ok(Json(json!({ "proposals": out })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// The last position the caller has read; 0 (the default) reads from the start.
    #[serde(default)]
    after: i64,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// `GET /api/events?after=POS&limit=N`: journal entries of every job after stream position
/// `after`, in order, and the cursor to ask with next time. Resuming from `next` misses nothing.
pub(crate) async fn events(
    State(app): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    if query.after < 0 {
        return Err(ApiError::BadRequest("after must be 0 or more".into()));
    }
    let limit = page_limit(query.limit, 100)?;
    let events = app.store().events_since(query.after, limit).await?;
    let next = events.last().map_or(query.after, |e| e.pos);
    Ok(Json(json!({ "events": events, "next": next })))
}

/// A page size asked for: `default` when not given, at most 1000; 0 is refused (it would
/// answer one item, or none, and neither is what was asked).
fn page_limit(asked: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match asked {
        Some(0) => Err(ApiError::BadRequest("limit must be 1 or more".into())),
        Some(n) => Ok(n.min(1000)),
        None => Ok(default),
    }
}

fn done(job: JobId, ticket: &TicketKey, action: &str) -> Json<Value> {
    Json(json!({ "job": job, "ticket": ticket, "action": action }))
}

/// Who made a decision, for the journal: the API token's name.
fn by(caller: &Caller) -> String {
    format!("api-token:{}", caller.name)
}

#[derive(Debug, Deserialize)]
struct ApproveBody {
    /// The proposal's commit as the approver saw it; refused if the proposal changed since.
    commit: Option<String>,
}

/// `POST /api/tickets/{key}/approve`, optionally with `{"commit": "<sha>"}` (whole or at least 7
/// hex digits): the commit the approver looked at. A proposal that changed since is refused
/// with 409.
pub(crate) async fn approve(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&key)?;
    let seen = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let json_body = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json_body {
            return Err(ApiError::UnsupportedMediaType(
                "send {\"commit\": \"<sha>\"} as application/json, or no body".into(),
            ));
        }
        let ApproveBody { commit } = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!("expected {{\"commit\": \"<sha>\"}}: {e}"))
        })?;
        commit
    };
    if let Some(commit) = &seen
        && (!(7..=64).contains(&commit.len()) || !commit.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(ApiError::BadRequest(format!(
            "commit {:?} is not a commit id: 7 to 64 hex digits",
            codemill_core::text::clip(commit, 80)
        )));
    }
    let job = app
        .control()
        .approve(&key, &by(&caller), seen.as_deref())
        .await?;
    Ok(done(job, &key, "approved"))
}

#[derive(Debug, Deserialize)]
struct RejectBody {
    reason: String,
}

/// `POST /api/tickets/{key}/reject` with `{"reason": "..."}` (required, non-empty).
pub(crate) async fn reject(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&key)?;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_body {
        return Err(ApiError::UnsupportedMediaType(
            "send {\"reason\": \"...\"} as application/json".into(),
        ));
    }
    let RejectBody { reason } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"reason\": \"...\"}}: {e}")))?;
    let reason = codemill_core::text::reason(&reason).map_err(ApiError::BadRequest)?;
    let job = app.control().reject(&key, reason, &by(&caller)).await?;
    Ok(done(job, &key, "rejected"))
}

/// `POST /api/tickets/{key}/cancel`
pub(crate) async fn cancel(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&key)?;
    let job = app.control().cancel(&key, &by(&caller)).await?;
    tracing::info!(ticket = %key, by = %log_safe(by(&caller)), "job cancelled");
    Ok(done(job, &key, "cancelled"))
}

/// `POST /api/tickets/{key}/retry`
pub(crate) async fn retry(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&key)?;
    let job = app.control().retry(&key).await?;
    tracing::info!(ticket = %key, by = %log_safe(by(&caller)), "job retried");
    Ok(done(job, &key, "retried"))
}

/// `POST /api/tickets/{key}/accept`: accept a refined spec (a worker moves it to the build
/// queue, or makes its proposed split into tickets).
pub(crate) async fn accept(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&key)?;
    let job = app.control().accept(&key, &by(&caller)).await?;
    tracing::info!(ticket = %key, by = %log_safe(by(&caller)), "spec accepted");
    Ok(done(job, &key, "accepted"))
}

/// `POST /api/tickets/{key}/merge`: queue the ticket's approved pull request to land through
/// the merge queue (202; a worker tests and lands it). Asked again while queued, the same entry
/// is answered; a PR merged before answers `already`.
pub(crate) async fn merge(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = parse_key(&key)?;
    let queued = app.control().merge(&key, &by(&caller)).await?;
    tracing::info!(ticket = %key, by = %log_safe(by(&caller)), "merge queued");
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// `GET /api/jobs/{id}/activity?after=ID&limit=N`: what the job's agents did (tool calls, text,
/// turns), oldest first, after cursor `after`; `next` is the cursor to ask with next time. Kept
/// for some days; the journal is the record.
pub(crate) async fn activity(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = find_job(&app, &id).await?;
    if query.after < 0 {
        return Err(ApiError::BadRequest("after must be 0 or more".into()));
    }
    if app.store().job_view(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no job {id}")));
    }
    let limit = page_limit(query.limit, 200)?;
    let activity = app.store().activity_since(id, query.after, limit).await?;
    let next = activity.last().map_or(query.after, |a| a.id);
    Ok(Json(json!({ "activity": activity, "next": next })))
}
