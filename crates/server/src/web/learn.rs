//! `/learn`: what codemill learned from people's changes, for signed-in users. `GET` shows a
//! project's week-by-week metrics (share of PRs merged unchanged, human lines per merged PR,
//! fix rounds per ticket) and the proposed guidance as diffs; approvers and admins apply a
//! proposal (a worker carries it out) or reject it with `POST /learn/{id}/{approve|reject}`.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::job::{DiffLine, diff_lines, may_decide};
use super::{SignedIn, render, signed_in};
use crate::AppState;

struct WeekRow {
    week: String,
    merged: u32,
    unchanged: String,
    lines: String,
    rejected: u32,
    rounds: String,
}

struct Proposal {
    id: i64,
    summary: String,
    state: &'static str,
    why: String,
    cites: String,
    diff: Vec<DiffLine>,
    result: Option<String>,
    decided_by: Option<String>,
}

#[derive(Template)]
#[template(path = "learn.html")]
struct LearnPage {
    user: String,
    role: String,
    csrf: String,
    projects: Vec<String>,
    project: String,
    weeks: Vec<WeekRow>,
    proposals: Vec<Proposal>,
    may_decide: bool,
    /// A proposal waits for a worker to apply it: the list polls.
    approved: bool,
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LearnQuery {
    #[serde(default)]
    project: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    project: String,
}

pub(super) async fn page(
    State(app): State<AppState>,
    session: Session,
    Query(query): Query<LearnQuery>,
) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to("/login?next=/learn").into_response();
    };
    show(&app, me, &query.project, None, StatusCode::OK).await
}

async fn show(
    app: &AppState,
    me: SignedIn,
    project: &str,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    use chrono::Datelike;
    let projects = app.projects();
    if !project.is_empty() && !projects.iter().any(|p| p == project) {
        return super::unknown_project(project, &projects);
    }
    let project = if project.is_empty() {
        projects.first().cloned().unwrap_or_default()
    } else {
        project.to_string()
    };
    let store = app.store();
    let loaded = async {
        let outcomes = store
            .outcomes(&project, chrono::Utc::now() - chrono::TimeDelta::days(90))
            .await?;
        let rows = store.guidance(Some(&project)).await?;
        Ok::<_, codemill_store::StoreError>((outcomes, rows))
    };
    let (outcomes, rows) = match loaded.await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "learning could not be read");
            return super::store_down();
        }
    };
    let counted: Vec<codemill_core::learn::Counted> = outcomes
        .iter()
        .map(|o| {
            let w = o.at.iso_week();
            codemill_core::learn::Counted {
                week: format!("{}-W{:02}", w.year(), w.week()),
                merged: o.kind == "merged",
                human_lines: o.human_lines.max(0) as u64,
                fix_rounds: o.fix_rounds.max(0) as u32,
            }
        })
        .collect();
    let weeks = codemill_core::learn::metrics(&counted)
        .into_iter()
        .map(|w| WeekRow {
            unchanged: format!("{} ({:.0}%)", w.merged_unchanged, w.unchanged_share * 100.0),
            lines: format!("{:.1}", w.human_lines_per_merged),
            rounds: format!("{:.2}", w.fix_rounds_per_ticket),
            week: w.week,
            merged: w.merged,
            rejected: w.rejected,
        })
        .collect();
    let proposals: Vec<Proposal> = rows
        .into_iter()
        .map(|g| {
            let parsed = serde_json::from_str::<codemill_core::learn::Guidance>(&g.proposal).ok();
            Proposal {
                id: g.id,
                summary: g.summary,
                state: g.state.as_str(),
                why: parsed
                    .as_ref()
                    .map(|p| p.why().to_string())
                    .unwrap_or_default(),
                cites: parsed.map(|p| p.cites().join(", ")).unwrap_or_default(),
                diff: diff_lines(&g.diff),
                result: g.result,
                decided_by: g.decided_by,
            }
        })
        .collect();
    let approved = proposals.iter().any(|p: &Proposal| p.state == "approved");
    render(
        LearnPage {
            approved,
            may_decide: may_decide(&me.role),
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            projects,
            project,
            weeks,
            proposals,
            problem,
        },
        status,
    )
}

/// `POST /learn/{id}/{approve|reject}`.
pub(super) async fn decide(
    State(app): State<AppState>,
    session: Session,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<DecideForm>,
) -> Response {
    let me = match super::decider(&session, "/learn", &form.csrf, "decide").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let approve = match action.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return (StatusCode::NOT_FOUND, format!("no action {action}")).into_response(),
    };
    let by = format!("user:{}", me.user);
    match app.control().decide_guidance(id, approve, &by).await {
        Ok(()) => Redirect::to(&format!(
            "/learn?project={}",
            super::query_escape(&form.project)
        ))
        .into_response(),
        Err(e) => {
            let status = e.status();
            show(&app, me, &form.project, Some(e.to_string()), status).await
        }
    }
}
