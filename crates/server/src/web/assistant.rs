//! `/assistant`: the product-owner assistant for signed-in users. `GET` shows a project's
//! conversation (a pending question polls until a worker answered it) and its other
//! conversations; `POST /assistant` asks; `POST /assistant/save` saves a draft as a ticket in
//! the project's tracker. Viewers read; approvers and admins ask and save.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use codemill_store::AssistantTurn;
use serde::Deserialize;
use tower_sessions::Session;

use super::job::may_decide;
use super::{SignedIn, render, signed_in};
use crate::AppState;

struct Turn {
    id: i64,
    asked_by: String,
    question: String,
    shown: String,
    error: Option<String>,
    pending: bool,
    cost: String,
    drafts: Vec<codemill_store::AssistantDraft>,
}

struct Listed {
    conversation: String,
    first_question: String,
    turns: i64,
    cost: String,
    last: String,
}

#[derive(Template)]
#[template(path = "assistant.html")]
struct AssistantPage {
    user: String,
    role: String,
    csrf: String,
    projects: Vec<String>,
    project: String,
    budget: String,
    conversation: String,
    self_url: String,
    turns: Vec<Turn>,
    pending: bool,
    may_write: bool,
    conversations: Vec<Listed>,
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AssistantQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    c: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct AskForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    conversation: String,
    #[serde(default)]
    question: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct SaveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    conversation: String,
    turn: i64,
    n: i64,
}

fn url(project: &str, conversation: &str) -> String {
    let mut u = format!("/assistant?project={}", super::query_escape(project));
    if !conversation.is_empty() {
        u.push_str(&format!("&c={}", super::query_escape(conversation)));
    }
    u
}

fn turn(t: AssistantTurn) -> Turn {
    Turn {
        id: t.id,
        shown: codemill_core::assistant::shown(&t.answer),
        asked_by: t.asked_by,
        question: t.question,
        error: t.error,
        pending: t.pending,
        cost: format!("{:.4}", t.cost_usd),
        drafts: t.drafts,
    }
}

pub(super) async fn page(
    State(app): State<AppState>,
    session: Session,
    Query(query): Query<AssistantQuery>,
) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to("/login?next=/assistant").into_response();
    };
    show(&app, me, &query.project, &query.c, None, StatusCode::OK).await
}

async fn show(
    app: &AppState,
    me: SignedIn,
    project: &str,
    conversation: &str,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
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
        let turns = if conversation.is_empty() {
            Vec::new()
        } else {
            store.assistant_turns(conversation).await?
        };
        let listed = store.assistant_conversations(Some(&project)).await?;
        Ok::<_, codemill_store::StoreError>((turns, listed))
    };
    let (turns, listed) = match loaded.await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "assistant conversations could not be read");
            return super::store_down();
        }
    };
    let pending = turns.iter().any(|t| t.pending);
    render(
        AssistantPage {
            may_write: may_decide(&me.role),
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            budget: format!("{:.2}", app.assistant_budget(&project)),
            self_url: url(&project, conversation),
            conversation: conversation.to_string(),
            turns: turns.into_iter().map(turn).collect(),
            pending,
            conversations: listed
                .into_iter()
                .map(|c| Listed {
                    conversation: c.conversation,
                    first_question: c.first_question,
                    turns: c.turns,
                    cost: format!("{:.4}", c.cost_usd),
                    last: c.last_at.format("%Y-%m-%d %H:%M").to_string(),
                })
                .collect(),
            projects,
            project,
            problem,
        },
        status,
    )
}

/// `POST /assistant`: record the question; a worker answers it while the page polls.
pub(super) async fn ask(
    State(app): State<AppState>,
    session: Session,
    Form(form): Form<AskForm>,
) -> Response {
    let me = match super::decider(&session, "/assistant", &form.csrf, "ask the assistant").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let conversation = Some(form.conversation.as_str()).filter(|c| !c.is_empty());
    let by = format!("user:{}", me.user);
    match app
        .control()
        .ask_assistant(&form.project, conversation, &form.question, &by)
        .await
    {
        Ok(turn) => Redirect::to(&url(&form.project, &turn.conversation)).into_response(),
        Err(e) => {
            let status = e.status();
            show(
                &app,
                me,
                &form.project,
                &form.conversation,
                Some(e.to_string()),
                status,
            )
            .await
        }
    }
}

/// `POST /assistant/save`: a draft becomes a ticket in the project's tracker, once.
pub(super) async fn save(
    State(app): State<AppState>,
    session: Session,
    Form(form): Form<SaveForm>,
) -> Response {
    let me = match super::decider(&session, "/assistant", &form.csrf, "ask the assistant").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    let by = format!("user:{}", me.user);
    match app
        .control()
        .save_assistant_draft(form.turn, form.n, &by)
        .await
    {
        Ok(_) => Redirect::to(&url(&form.project, &form.conversation)).into_response(),
        Err(e) => {
            let status = e.status();
            show(
                &app,
                me,
                &form.project,
                &form.conversation,
                Some(e.to_string()),
                status,
            )
            .await
        }
    }
}
