//! `GET /knowledge?project=P&tag=T&stale=1&q=WORDS`: a project's knowledge for anyone signed in,
//! each entry with its provenance (tag, sources, author) and, when stale, why; filtered by tag
//! and staleness, or searched.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use codemill_store::{KnowledgeRow, KnowledgeTag};
use serde::Deserialize;
use tower_sessions::Session;

use super::{render, signed_in};
use crate::AppState;

struct Entry {
    id: i64,
    title: String,
    body: String,
    tag: &'static str,
    sources: Vec<String>,
    author: String,
    stale: Option<String>,
    updated: String,
}

fn entry(k: &KnowledgeRow, body: String) -> Entry {
    Entry {
        id: k.id,
        title: k.title.clone(),
        body,
        tag: k.tag.as_str(),
        sources: k.sources.iter().map(ToString::to_string).collect(),
        author: k.author.clone(),
        stale: k.stale.clone(),
        updated: k.updated_at.format("%Y-%m-%d %H:%M").to_string(),
    }
}

#[derive(Template)]
#[template(path = "knowledge.html")]
struct KnowledgePage {
    user: String,
    role: String,
    csrf: String,
    projects: Vec<String>,
    project: String,
    tag: String,
    stale: bool,
    q: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct KnowledgeQuery {
    #[serde(default)]
    project: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    stale: Option<String>,
    #[serde(default)]
    q: String,
}

pub(super) async fn page(
    State(app): State<AppState>,
    session: Session,
    Query(query): Query<KnowledgeQuery>,
) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to("/login?next=/knowledge").into_response();
    };
    let store = app.store();
    let tag = KnowledgeTag::parse(&query.tag);
    let stale = query.stale.is_some_and(|s| !s.is_empty());
    let loaded = async {
        let mut projects = store.ticket_projects().await?;
        projects.extend(app.projects());
        projects.sort();
        projects.dedup();
        // A project is known by its tickets, its configuration or its knowledge (which stays
        // after the project is unregistered).
        if !query.project.is_empty()
            && !projects.contains(&query.project)
            && store.knowledge_of(&query.project).await?.is_empty()
        {
            return Ok(Err(projects));
        }
        let project = if query.project.is_empty() {
            projects.first().cloned().unwrap_or_default()
        } else {
            query.project.clone()
        };
        let entries: Vec<Entry> = if query.q.trim().is_empty() {
            store
                .knowledge_of(&project)
                .await?
                .iter()
                .map(|k| entry(k, k.body.clone()))
                .collect()
        } else {
            store
                .search_knowledge(&project, &query.q, 50)
                .await?
                .iter()
                .map(|h| entry(&h.entry, h.excerpt.clone()))
                .collect()
        };
        Ok::<_, codemill_store::StoreError>(Ok((projects, project, entries)))
    };
    let (projects, project, entries) = match loaded.await {
        Ok(Ok(all)) => all,
        Ok(Err(known)) => return super::unknown_project(&query.project, &known),
        Err(e) => {
            tracing::error!(error = %e, "knowledge could not be read");
            return super::store_down();
        }
    };
    let entries = entries
        .into_iter()
        .filter(|e| tag.is_none_or(|t| t.as_str() == e.tag) && (!stale || e.stale.is_some()))
        .collect();
    render(
        KnowledgePage {
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            projects,
            project,
            tag: tag.map(|t| t.as_str().to_string()).unwrap_or_default(),
            stale,
            q: query.q,
            entries,
        },
        StatusCode::OK,
    )
}
