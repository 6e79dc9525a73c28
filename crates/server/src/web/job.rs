//! A ticket's job page (`GET /tickets/{KEY}`) and the decisions taken from it (`POST
//! /tickets/{KEY}/approve|reject|cancel|retry`): what the job did, what it proposes and what it
//! cost, all escaped; decisions only for approvers and admins, with the session's CSRF token,
//! and an approval names the commit the page showed.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use codemill_core::ids::TicketKey;
use codemill_core::pipeline::JobEvent;
use serde::Deserialize;
use tower_sessions::Session;

use super::live::{ActivityLine, activity_line};
use super::{SignedIn, render, signed_in};
use crate::AppState;
use crate::control::ControlError;

struct Step {
    name: String,
    at: String,
    took: String,
}

struct Gate {
    command: String,
    passed: bool,
    outcome: String,
    output: String,
}

struct GateRound {
    round: u32,
    gates: Vec<Gate>,
}

struct FindingLine {
    severity: String,
    title: String,
    location: String,
    detail: String,
}

struct Review {
    round: u32,
    angle: String,
    findings: Vec<FindingLine>,
}

struct DecisionLine {
    bucket: String,
    title: String,
    reason: String,
}

struct Triage {
    round: u32,
    decisions: Vec<DecisionLine>,
}

/// One line of the proposal's patch, with how it reads.
pub(super) struct DiffLine {
    pub(super) kind: &'static str,
    pub(super) text: String,
}

pub(super) fn diff_lines(patch: &str) -> Vec<DiffLine> {
    patch
        .lines()
        .map(|l| DiffLine {
            kind: if l.starts_with("+++") || l.starts_with("---") || l.starts_with("diff ") {
                "file"
            } else if l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            },
            text: l.to_string(),
        })
        .collect()
}

/// One sub-task of a split ticket, in the graph's order.
struct SubtaskLine {
    n: usize,
    id: String,
    title: String,
    after: String,
    ticket: String,
    /// `waiting` (not started), `running`, `ready`, or how it stopped.
    state: String,
    tokens: u64,
    cost: String,
}

/// One commit of a split ticket's stack, bottom first.
struct StackLine {
    branch: String,
    base: String,
    ticket: String,
    commit: String,
    /// Its PR: `not pushed`, `open`, `queued`, `merged`.
    pr: String,
}

/// A sub-task's parent.
struct ParentLine {
    key: String,
    n: u32,
}

struct CostLine {
    step: String,
    agent: String,
    model: String,
    tokens: u64,
    cost: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    user: String,
    role: String,
    csrf: String,
    key: String,
    title: String,
    body: String,
    problem: Option<String>,
    status: String,
    stage: String,
    reason: Option<String>,
    rounds: u32,
    tokens: u64,
    cost: String,
    commit: Option<String>,
    short_commit: String,
    branch: String,
    pr_url: Option<String>,
    diff_stat: String,
    diff: Vec<DiffLine>,
    can_decide: bool,
    awaiting: bool,
    cancellable: bool,
    retryable: bool,
    /// Its open PR may be queued to merge.
    mergeable: bool,
    /// The branch its PR is queued to merge into.
    merge_queued: Option<String>,
    /// The branch its PR was merged into.
    merged_into: Option<String>,
    timeline: Vec<Step>,
    gate_rounds: Vec<GateRound>,
    reviews: Vec<Review>,
    triage: Vec<Triage>,
    costs: Vec<CostLine>,
    attempts: Vec<String>,
    activity: Vec<ActivityLine>,
    events_url: String,
    /// The job's trace in the tracing backend (`[telemetry] trace_url`).
    trace_url: Option<String>,
    subtasks: Vec<SubtaskLine>,
    /// A refinement's spec, as written to the ticket.
    spec: Option<String>,
    /// A refined spec waits for a person to accept it.
    acceptable: bool,
    /// A split ticket's whole spend: this job's and its sub-jobs'.
    total_tokens: u64,
    total_cost: String,
    stack: Vec<StackLine>,
    parent: Option<ParentLine>,
}

/// Activity lines a page shows at most (the newest); the stream adds what comes after.
const SHOWN_ACTIVITY: usize = 300;

/// Roles that may decide (approve, reject, cancel, retry).
pub(super) fn may_decide(role: &str) -> bool {
    matches!(role, "approver" | "admin")
}

fn not_found(key: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no ticket {key}")).into_response()
}

pub(super) async fn page(
    State(app): State<AppState>,
    session: Session,
    Path(key): Path<String>,
) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to(&format!("/login?next=/tickets/{key}")).into_response();
    };
    show(&app, me, &key, None, StatusCode::OK).await
}

/// The page of ticket `key`, with `problem` said at the top.
async fn show(
    app: &AppState,
    me: SignedIn,
    key: &str,
    problem: Option<String>,
    status_code: StatusCode,
) -> Response {
    let Ok(ticket_key) = key.parse::<TicketKey>() else {
        return not_found(key);
    };
    let store = app.store();
    // The stream position first: whatever moves after it reaches the page live.
    let loaded = async {
        let pos = store.last_event_pos().await?;
        let ticket = store.ticket(&ticket_key).await?;
        let view = store.latest_view(&ticket_key).await?;
        let journal = match &view {
            Some(v) => store.journal(v.job).await?,
            None => Vec::new(),
        };
        let jobs = store.jobs_for_ticket(&ticket_key).await?;
        let diff = match &view {
            Some(v) => store.artifact(v.job, codemill_store::PROPOSAL_DIFF).await?,
            None => None,
        };
        let activity = match &view {
            Some(v) => latest_activity(store, v.job).await?,
            None => Vec::new(),
        };
        let pr = store
            .find_pr(ticket_key.project(), &ticket_key.branch())
            .await?;
        let queued = store
            .merge_entries(Some(ticket_key.project()))
            .await?
            .into_iter()
            .find(|e| e.ticket == key && e.state == codemill_store::MergeState::Queued);
        let merge = (pr, queued);
        Ok::<_, codemill_store::StoreError>((
            pos, ticket, view, journal, jobs, diff, activity, merge,
        ))
    };
    let (pos, ticket, view, journal, jobs, diff, activity, (pr, queued)) = match loaded.await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "a job page could not be read");
            return super::store_down();
        }
    };
    let Some(ticket) = ticket else {
        return not_found(key);
    };
    let state = view.as_ref().and_then(|v| v.state.clone());
    let status = view
        .as_ref()
        .map(|v| v.status.clone())
        .unwrap_or_else(|| "no job yet".into());
    let stage = view.as_ref().map(|v| v.stage.clone()).unwrap_or_default();
    // Each step with when it started and how long it took (until the next step started).
    let started: Vec<(&str, chrono::DateTime<chrono::Utc>)> = journal
        .iter()
        .filter_map(|e| match &e.event {
            JobEvent::EffectStarted { effect } => Some((effect.as_str(), e.at)),
            _ => None,
        })
        .collect();
    let last_at = journal.last().map(|e| e.at);
    let timeline = started
        .iter()
        .enumerate()
        .map(|(i, (name, at))| {
            let next = started.get(i + 1).map(|(_, t)| *t);
            // The last step of a job that is still at work has not ended yet.
            let took = match next.or(last_at) {
                _ if next.is_none() && status == "running" => "running".to_string(),
                Some(e) => format!("{:.1} s", (e - *at).num_milliseconds() as f64 / 1000.0),
                None => String::new(),
            };
            Step {
                name: (*name).to_string(),
                at: at.format("%H:%M:%S").to_string(),
                took,
            }
        })
        .collect();
    let s = state.as_ref();
    let gate_rounds = s
        .map(|s| {
            s.gate_rounds
                .iter()
                .map(|(round, gates)| GateRound {
                    round: *round,
                    gates: gates
                        .iter()
                        .map(|g| Gate {
                            command: g.command.clone(),
                            passed: g.passed,
                            outcome: g.outcome(),
                            output: if g.passed {
                                String::new()
                            } else {
                                g.error.clone().unwrap_or_else(|| g.output.clone())
                            },
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let reviews = s
        .map(|s| {
            s.reviews
                .iter()
                .map(|r| Review {
                    round: r.round,
                    angle: r.angle.clone(),
                    findings: r
                        .findings
                        .iter()
                        .map(|f| FindingLine {
                            severity: f.severity.as_str().to_string(),
                            title: f.title.clone(),
                            location: f.location(),
                            detail: f.detail.clone(),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let triage = s
        .map(|s| {
            s.triage
                .iter()
                .map(|(round, decisions)| Triage {
                    round: *round,
                    decisions: decisions
                        .iter()
                        .map(|d| DecisionLine {
                            bucket: d.bucket.as_str().to_string(),
                            title: d.finding.title.clone(),
                            reason: d.reason.clone(),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let costs = s
        .map(|s| {
            s.costs
                .iter()
                .map(|c| CostLine {
                    step: match &c.angle {
                        Some(a) => format!("{} {} ({a})", c.stage.as_str(), c.round),
                        None => format!("{} {}", c.stage.as_str(), c.round),
                    },
                    agent: c.agent.clone(),
                    model: c.model.clone(),
                    tokens: c.usage.total(),
                    cost: format!("{:.4}", c.cost_usd),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut subtasks = s.map(subtask_lines).unwrap_or_default();
    // What each sub-job spent, from its own job view.
    let (mut total_tokens, mut total_cost) = s.map_or((0, 0.0), |s| (s.usage.total(), s.cost_usd));
    for line in subtasks.iter_mut().filter(|l| !l.ticket.is_empty()) {
        let Ok(key) = line.ticket.parse::<TicketKey>() else {
            continue;
        };
        if let Ok(Some(view)) = store.latest_view(&key).await
            && let Some(child) = view.state
        {
            line.tokens = child.usage.total();
            line.cost = format!("{:.4}", child.cost_usd);
            total_tokens += child.usage.total();
            total_cost += child.cost_usd;
        }
    }
    let stack = match s {
        Some(s) if !s.stack.is_empty() => match stack_lines(store, s).await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::error!(error = %e, "a job page could not be read");
                return super::store_down();
            }
        },
        _ => Vec::new(),
    };
    let parent = s.and_then(|s| s.subtask.as_ref()).map(|sub| ParentLine {
        key: sub.parent_ticket.to_string(),
        n: sub.n,
    });
    let awaiting = status == "awaiting_approval";
    let ended = matches!(
        status.as_str(),
        "done" | "rejected" | "cancelled" | "needs_attention" | "needs_input" | "no job yet"
    );
    let retryable = matches!(
        status.as_str(),
        "needs_attention" | "rejected" | "cancelled"
    );
    // An open PR of a shipped job may be put on the merge queue, once.
    let merge_queued = queued.map(|e| e.target);
    let merged_into = pr
        .as_ref()
        .filter(|p| p.state == "merged")
        .map(|p| p.base.clone());
    // A stack is merged once every sub-task's PR is, and may be queued while one is open.
    let stack_merged = !stack.is_empty() && stack.iter().all(|e| e.pr == "merged");
    let merged_into = match (stack_merged, s.and_then(|s| s.default_branch.clone())) {
        (true, Some(target)) => Some(target),
        _ => merged_into,
    };
    let stack_open = stack.iter().any(|e| e.pr == "open");
    let mergeable = merge_queued.is_none()
        && matches!(status.as_str(), "done" | "in_review")
        && (pr.as_ref().is_some_and(|p| p.state == "open") || stack_open);
    let commit = s.and_then(|s| s.commit.clone());
    // The patch of the commit the page shows, not of an earlier proposal.
    let diff = diff
        .filter(|a| a.meta.is_some() && a.meta == commit)
        .map(|a| diff_lines(&String::from_utf8_lossy(&a.body)))
        .unwrap_or_default();
    let last_activity = activity.last().map_or(0, |a| a.id);
    let events_url = match &view {
        Some(v) => format!(
            "/tickets/{}/events?after={pos}&job={}&activity={last_activity}",
            ticket.key, v.job
        ),
        None => format!("/tickets/{}/events?after={pos}", ticket.key),
    };
    let page = JobPage {
        spec: s.and_then(|s| s.spec.as_ref()).map(|spec| spec.render()),
        acceptable: status == "awaiting_acceptance",
        subtasks,
        total_tokens,
        total_cost: format!("{total_cost:.4}"),
        stack,
        parent,
        trace_url: view.as_ref().and_then(|v| app.trace_link(v.job)),
        activity,
        events_url,
        can_decide: may_decide(&me.role),
        user: me.user,
        role: me.role,
        csrf: me.csrf,
        key: ticket.key.to_string(),
        title: ticket.title.clone(),
        body: ticket.body.clone(),
        problem,
        status,
        stage,
        reason: s.and_then(|s| s.reason.clone()),
        rounds: s.map(|s| s.round).unwrap_or_default(),
        tokens: s.map(|s| s.usage.total()).unwrap_or_default(),
        cost: format!("{:.4}", s.map(|s| s.cost_usd).unwrap_or_default()),
        short_commit: commit
            .as_deref()
            .map(|c| c[..c.len().min(12)].to_string())
            .unwrap_or_default(),
        commit,
        branch: ticket.key.branch(),
        pr_url: s.and_then(|s| s.pr_url.clone()),
        diff_stat: s
            .and_then(|s| s.proposal.as_ref())
            .map(|p| p.diff_stat.clone())
            .unwrap_or_default(),
        diff,
        awaiting,
        cancellable: !ended,
        retryable,
        mergeable,
        merge_queued,
        merged_into,
        timeline,
        gate_rounds,
        reviews,
        triage,
        costs,
        attempts: jobs
            .iter()
            .map(|j| {
                format!(
                    "job {} started {}",
                    j.id.short(),
                    j.created_at.format("%Y-%m-%d %H:%M")
                )
            })
            .collect(),
    };
    render(page, status_code)
}

/// The newest [`SHOWN_ACTIVITY`] lines of `job`'s agent activity, oldest first.
async fn latest_activity(
    store: &codemill_store::Store,
    job: codemill_core::ids::JobId,
) -> Result<Vec<ActivityLine>, codemill_store::StoreError> {
    let mut lines = std::collections::VecDeque::new();
    let mut after = 0;
    loop {
        let rows = store.activity_since(job, after, 1000).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            if lines.len() == SHOWN_ACTIVITY {
                lines.pop_front();
            }
            lines.push_back(activity_line(row));
        }
        if rows.len() < 1000 {
            break;
        }
    }
    Ok(lines.into())
}

#[derive(Deserialize)]
pub(super) struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /tickets/{KEY}/{action}`: a decision from the page.
pub(super) async fn decide(
    State(app): State<AppState>,
    session: Session,
    Path((key, action)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to(&format!("/login?next=/tickets/{key}")).into_response();
    };
    if let Some(refused) = super::refuse_forged(&me, &form.csrf) {
        return refused;
    }
    if !may_decide(&me.role) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {}: only approvers and admins decide",
                me.user, me.role
            ),
        )
            .into_response();
    }
    let Ok(ticket) = key.parse::<TicketKey>() else {
        return not_found(&key);
    };
    let by = format!("user:{}", me.user);
    let control = app.control();
    let done: Result<(), ControlError> = match action.as_str() {
        "approve" => {
            let Some(commit) = form.commit.filter(|c| !c.is_empty()) else {
                return show(
                    &app,
                    me,
                    &key,
                    Some("The page showed no commit to approve; reload it.".into()),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            };
            control.approve(&ticket, &by, Some(&commit)).await.map(drop)
        }
        "reject" => {
            let reason = form.reason.unwrap_or_default();
            let reason = match codemill_core::text::reason(&reason) {
                Ok(reason) => reason,
                Err(why) => {
                    return show(&app, me, &key, Some(why), StatusCode::BAD_REQUEST).await;
                }
            };
            control.reject(&ticket, reason, &by).await.map(drop)
        }
        "cancel" => control.cancel(&ticket, &by).await.map(drop),
        "retry" => control.retry(&ticket).await.map(drop),
        "merge" => control.merge(&ticket, &by).await.map(drop),
        "accept" => control.accept(&ticket, &by).await.map(drop),
        _ => return not_found(&key),
    };
    match done {
        Ok(_) => Redirect::to(&format!("/tickets/{key}")).into_response(),
        Err(ControlError::NotFound(m)) => {
            show(&app, me, &key, Some(m), StatusCode::NOT_FOUND).await
        }
        Err(ControlError::Conflict(m)) => show(&app, me, &key, Some(m), StatusCode::CONFLICT).await,
        Err(ControlError::Failed(m)) => {
            show(&app, me, &key, Some(m), StatusCode::SERVICE_UNAVAILABLE).await
        }
    }
}

/// A split ticket's sub-tasks in the graph's order, each with its ticket and where it stands.
fn subtask_lines(s: &codemill_core::pipeline::JobState) -> Vec<SubtaskLine> {
    use codemill_core::subtasks::ChildResult;
    let Some(checked) = s.checked_graph() else {
        return Vec::new();
    };
    checked
        .order
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let task = &checked.graph.subtasks[i];
            let child = s.children.iter().find(|c| c.id == task.id);
            let state = match (child, child.and_then(|c| c.result.as_ref())) {
                (None, _) => "waiting".to_string(),
                (Some(_), None) => "running".to_string(),
                (Some(_), Some(ChildResult::Ready { .. })) => "ready".to_string(),
                (Some(_), Some(ChildResult::Stopped { status, .. })) => status.clone(),
            };
            SubtaskLine {
                n: n + 1,
                id: task.id.clone(),
                title: task.title.clone(),
                after: task.depends_on.join(", "),
                ticket: child.map(|c| c.ticket.to_string()).unwrap_or_default(),
                state,
                tokens: 0,
                cost: String::new(),
            }
        })
        .collect()
}

/// A stack's commits, bottom first, with where each one's PR stands.
async fn stack_lines(
    store: &codemill_store::Store,
    s: &codemill_core::pipeline::JobState,
) -> Result<Vec<StackLine>, codemill_store::StoreError> {
    let project = s.ticket.project();
    let queued = store.merge_entries(Some(project)).await?;
    let mut lines = Vec::new();
    for e in &s.stack {
        let ticket = e.ticket.to_string();
        let pr = match store.find_pr(project, &e.branch).await? {
            None => "not pushed".to_string(),
            Some(pr) if pr.state == "merged" => "merged".to_string(),
            Some(_)
                if queued.iter().any(|q| {
                    q.ticket == ticket && q.state == codemill_store::MergeState::Queued
                }) =>
            {
                "queued".to_string()
            }
            Some(pr) => pr.state,
        };
        lines.push(StackLine {
            branch: e.branch.clone(),
            base: e.base.clone(),
            ticket,
            commit: e.commit.get(..12).unwrap_or(&e.commit).to_string(),
            pr,
        });
    }
    Ok(lines)
}
