//! `GET /settings/tokens`: an admin creates and revokes API tokens in the browser. A new token
//! is shown once, on the page that created it; only its hash is stored.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::{SignedIn, admin, render};
use crate::AppState;

struct TokenLine {
    id: i64,
    name: String,
    created: String,
    state: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    user: String,
    role: String,
    csrf: String,
    problem: Option<String>,
    /// (name, token) of the token just created.
    created: Option<(String, String)>,
    tokens: Vec<TokenLine>,
}

async fn show(
    app: &AppState,
    me: SignedIn,
    problem: Option<String>,
    created: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    let tokens = match app.store().api_tokens().await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "API tokens could not be read");
            return super::store_down();
        }
    };
    let tokens = tokens
        .iter()
        .map(|t| TokenLine {
            id: t.id,
            name: t.name.clone(),
            created: t.created_at.format("%Y-%m-%d %H:%M").to_string(),
            state: match t.revoked_at {
                Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                None => "active".into(),
            },
            active: t.revoked_at.is_none(),
        })
        .collect();
    render(
        TokensPage {
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            problem,
            created,
            tokens,
        },
        status,
    )
}

pub(super) async fn page(State(app): State<AppState>, session: Session) -> Response {
    match admin(&session, "/settings/tokens", "API tokens").await {
        Ok(me) => show(&app, me, None, None, StatusCode::OK).await,
        Err(refused) => refused,
    }
}

#[derive(Deserialize)]
pub(super) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub(super) async fn create(
    State(app): State<AppState>,
    session: Session,
    Form(form): Form<CreateForm>,
) -> Response {
    let me = match admin(&session, "/settings/tokens", "API tokens").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = super::refuse_forged(&me, &form.csrf) {
        return refused;
    }
    let name = match crate::auth::token_name(&form.name) {
        Ok(name) => name.to_string(),
        Err(why) => {
            return show(
                &app,
                me,
                Some(format!("{why}.")),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let token = crate::auth::new_token();
    match app
        .store()
        .create_api_token(&name, &crate::auth::hash_token(&token))
        .await
    {
        Ok(_) => show(&app, me, None, Some((name, token)), StatusCode::OK).await,
        Err(codemill_store::StoreError::TokenNameTaken(n)) => {
            show(
                &app,
                me,
                Some(format!(
                    "An active token named {n:?} exists; revoke it first."
                )),
                None,
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "an API token could not be created");
            show(
                &app,
                me,
                Some("The token could not be created; try again shortly.".into()),
                None,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn revoke(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let me = match admin(&session, "/settings/tokens", "API tokens").await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = super::refuse_forged(&me, &form.csrf) {
        return refused;
    }
    match app.store().revoke_api_token(id).await {
        Ok(_) => Redirect::to("/settings/tokens").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "an API token could not be revoked");
            show(
                &app,
                me,
                Some("The token could not be revoked; try again shortly.".into()),
                None,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await
        }
    }
}
