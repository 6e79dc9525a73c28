//! `GET /settings/users`: an admin adds dashboard users (name, role, a first password) and
//! removes them, which ends their sessions at once. An admin cannot remove themself, so a
//! dashboard always keeps the admin who is using it.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use super::{SignedIn, admin, render};
use crate::AppState;
use crate::users::{MIN_PASSWORD, ROLES, hash_password, parse_role, valid_name};

const PAGE: &str = "/settings/users";
const WHAT: &str = "users";

struct UserLine {
    name: String,
    role: String,
    added: String,
    sign_in: &'static str,
    is_me: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    user: String,
    role: String,
    csrf: String,
    problem: Option<String>,
    done: Option<String>,
    roles: [&'static str; 3],
    min_password: usize,
    users: Vec<UserLine>,
}

async fn show(
    app: &AppState,
    me: SignedIn,
    problem: Option<String>,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    let users = match app.store().users().await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "users could not be read");
            return super::store_down();
        }
    };
    let users = users
        .into_iter()
        .map(|u| UserLine {
            is_me: u.name == me.user,
            sign_in: if u.password_hash == super::oidc::NO_PASSWORD {
                "single sign-on"
            } else {
                "password"
            },
            added: u.created_at.format("%Y-%m-%d %H:%M").to_string(),
            name: u.name,
            role: u.role,
        })
        .collect();
    render(
        UsersPage {
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            problem,
            done,
            roles: ROLES,
            min_password: MIN_PASSWORD,
            users,
        },
        status,
    )
}

pub(super) async fn page(State(app): State<AppState>, session: Session) -> Response {
    match admin(&session, PAGE, WHAT).await {
        Ok(me) => show(&app, me, None, None, StatusCode::OK).await,
        Err(refused) => refused,
    }
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn create(
    State(app): State<AppState>,
    session: Session,
    Form(form): Form<AddForm>,
) -> Response {
    let me = match admin(&session, PAGE, WHAT).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = super::refuse_forged(&me, &form.csrf) {
        return refused;
    }
    let name = form.name.trim().to_string();
    let checked = async {
        if !valid_name(&name) {
            return Err("A user name is 1–64 letters, digits, '.', '_', '-' or '@'.".to_string());
        }
        let role = parse_role(&form.role)
            .ok_or_else(|| "Choose a role: viewer, approver or admin.".to_string())?;
        let password = SecretString::from(form.password);
        // argon2 is deliberately slow: off the request threads.
        match tokio::task::spawn_blocking(move || hash_password(&password)).await {
            Ok(Ok(hash)) => Ok((role, hash)),
            Ok(Err(e)) => Err(format!("The password cannot be used: {e}.")),
            Err(_) => Err("The password could not be hashed.".to_string()),
        }
    };
    let (role, hash) = match checked.await {
        Ok(ok) => ok,
        Err(problem) => return show(&app, me, Some(problem), None, StatusCode::BAD_REQUEST).await,
    };
    match app.store().create_user(&name, role, &hash).await {
        Ok(u) => {
            tracing::info!(user = %u.name, role = %u.role, by = %me.user, "dashboard user added");
            let done = format!("Added {} ({}).", u.name, u.role);
            show(&app, me, None, Some(done), StatusCode::OK).await
        }
        Err(codemill_store::StoreError::UserExists(n)) => {
            let problem = format!("There is a user named {n:?} already.");
            show(&app, me, Some(problem), None, StatusCode::CONFLICT).await
        }
        Err(e) => {
            tracing::error!(error = %e, "a user could not be added");
            let problem = "The user could not be added; try again shortly.".to_string();
            show(
                &app,
                me,
                Some(problem),
                None,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RemoveForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn remove(
    State(app): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Response {
    let me = match admin(&session, PAGE, WHAT).await {
        Ok(me) => me,
        Err(refused) => return refused,
    };
    if let Some(refused) = super::refuse_forged(&me, &form.csrf) {
        return refused;
    }
    if name == me.user {
        let problem = "You cannot remove yourself; another admin can.".to_string();
        return show(&app, me, Some(problem), None, StatusCode::CONFLICT).await;
    }
    match app.store().remove_user(&name).await {
        Ok(true) => {
            tracing::info!(user = %codemill_core::text::log_safe(&name), by = %me.user, "dashboard user removed");
            Redirect::to(PAGE).into_response()
        }
        Ok(false) => {
            let problem = format!("There is no user named {name:?}.");
            show(&app, me, Some(problem), None, StatusCode::NOT_FOUND).await
        }
        Err(e) => {
            tracing::error!(error = %e, "a user could not be removed");
            let problem = "The user could not be removed; try again shortly.".to_string();
            show(
                &app,
                me,
                Some(problem),
                None,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await
        }
    }
}
