//! The dashboard's pages: sign-in (`GET|POST /login`, `POST /logout`, single sign-on in module
//! `oidc`), the board (`GET /`), each ticket's job page with its decisions (module `job`), costs,
//! and the admin's users and API tokens, server-rendered with askama (every value escaped),
//! behind a session cookie kept in the store (`HttpOnly`, `SameSite=Lax`). Pages work without
//! JavaScript; vendored htmx and its SSE extension only add live updates (module `live`). Every
//! POST passes the Fetch-metadata/Origin check (a cross-site one gets 403) and the session's
//! CSRF token, and every page carries a Content-Security-Policy without inline scripts.

mod accounts;
mod assistant;
mod board_cache;
mod costs;
mod job;
mod knowledge;
mod learn;
mod live;
mod oidc;
mod sessions;
mod throttle;
mod tokens;

pub(crate) use board_cache::BoardCache;
pub(crate) use oidc::Oidc;
pub use oidc::OidcSettings;
pub(crate) use throttle::Throttle;

use std::collections::BTreeSet;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::Utc;
use codemill_store::QueueState;
use secrecy::SecretString;
use serde::Deserialize;
use tower_http::csrf::CsrfLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::AppState;
use sessions::{StoreSessions, USER};

/// The session cookie's name.
pub const COOKIE: &str = "codemill_session";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The dashboard's routes with their session, CSRF and header layers.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let https = state
        .public_origin()
        .is_some_and(|o| o.starts_with("https://"));
    let sessions = SessionManagerLayer::new(StoreSessions::new(state.store().clone()))
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(https)
        .with_expiry(Expiry::OnInactivity(
            time::Duration::try_from(state.session_idle()).unwrap_or(time::Duration::hours(12)),
        ));
    // Behind a proxy the Host codemill sees may not be the one people use: their origin is
    // trusted as given (it was checked when the state was built).
    let csrf = match state.public_origin() {
        Some(origin) => CsrfLayer::new()
            .add_trusted_origin(origin)
            .unwrap_or_else(|_| CsrfLayer::new()),
        None => CsrfLayer::new(),
    };
    Router::new()
        .route("/", get(board))
        .route("/login", get(login_page).post(login))
        .route("/login/oidc", get(oidc::start))
        .route("/login/oidc/callback", get(oidc::callback))
        .route("/logout", axum::routing::post(logout))
        .route("/tickets/{key}", get(job::page))
        .route("/tickets/{key}/{action}", axum::routing::post(job::decide))
        .route("/costs", get(costs::page))
        .route("/knowledge", get(knowledge::page))
        .route("/assistant", get(assistant::page).post(assistant::ask))
        .route("/assistant/save", axum::routing::post(assistant::save))
        .route("/learn", get(learn::page))
        .route("/learn/{id}/{action}", axum::routing::post(learn::decide))
        .route("/settings/tokens", get(tokens::page).post(tokens::create))
        .route(
            "/settings/tokens/{id}/revoke",
            axum::routing::post(tokens::revoke),
        )
        .route("/board/events", get(live::board))
        .route("/tickets/{key}/events", get(live::job))
        .route(
            "/settings/users",
            get(accounts::page).post(accounts::create),
        )
        .route(
            "/settings/users/{name}/remove",
            axum::routing::post(accounts::remove),
        )
        .route("/assets/app.css", get(css))
        .route("/assets/htmx.min.js", get(htmx))
        .route("/assets/htmx-ext-sse.min.js", get(htmx_sse))
        .layer(sessions)
        .layer(csrf)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/app.css"),
    )
        .into_response()
}

/// htmx and its SSE extension (BSD Zero Clause, `assets/vendor/`), embedded: no CDN.
async fn htmx() -> Response {
    script(include_str!("../../assets/vendor/htmx-2.0.11.min.js"))
}

async fn htmx_sse() -> Response {
    script(include_str!(
        "../../assets/vendor/htmx-ext-sse-2.2.4.min.js"
    ))
}

fn script(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Who is signed in: the user, their role as the store has it now, and the session's CSRF
/// token that every form posts back.
pub(crate) struct SignedIn {
    pub user: String,
    pub role: String,
    pub csrf: String,
}

pub(crate) async fn signed_in(session: &Session) -> Option<SignedIn> {
    let user = session.get::<String>(USER).await.ok().flatten()?;
    let role = session
        .get::<String>("role")
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "viewer".into());
    let csrf = session
        .get::<String>("csrf")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Some(SignedIn { user, role, csrf })
}

/// The admin signed in, or the response that refuses anyone else: to sign in (coming back to
/// `page`), or 403 saying only admins manage `what`.
pub(crate) async fn admin(session: &Session, page: &str, what: &str) -> Result<SignedIn, Response> {
    let Some(me) = signed_in(session).await else {
        return Err(Redirect::to(&format!("/login?next={page}")).into_response());
    };
    if me.role != "admin" {
        return Err((
            StatusCode::FORBIDDEN,
            format!("{} is a {}: only admins manage {what}", me.user, me.role),
        )
            .into_response());
    }
    Ok(me)
}

/// An approver or admin signed in who posted the session's CSRF token, or the response that
/// refuses the post: to sign in (coming back to `page`), 403 for a stale or forged form, or 403
/// saying only approvers and admins `what`.
pub(crate) async fn decider(
    session: &Session,
    page: &str,
    csrf: &str,
    what: &str,
) -> Result<SignedIn, Response> {
    let Some(me) = signed_in(session).await else {
        return Err(Redirect::to(&format!("/login?next={page}")).into_response());
    };
    if let Some(refused) = refuse_forged(&me, csrf) {
        return Err(refused);
    }
    if !job::may_decide(&me.role) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {}: only approvers and admins {what}",
                me.user, me.role
            ),
        )
            .into_response());
    }
    Ok(me)
}

/// The answer while the store cannot be reached.
/// The 404 of a page asked about a project codemill does not know, naming those it does.
pub(crate) fn unknown_project(project: &str, known: &[String]) -> Response {
    let known = if known.is_empty() {
        "none yet".to_string()
    } else {
        known.join(", ")
    };
    (
        StatusCode::NOT_FOUND,
        format!("No project {project} (projects: {known})."),
    )
        .into_response()
}

pub(crate) fn store_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The store cannot be reached right now; reload shortly.",
    )
        .into_response()
}

/// The 403 a form post gets when its CSRF token is not the session's; `None` when it is.
pub(crate) fn refuse_forged(me: &SignedIn, posted: &str) -> Option<Response> {
    (!same_token(&me.csrf, posted)).then(|| {
        (
            StatusCode::FORBIDDEN,
            "the form is stale or forged: reload the page",
        )
            .into_response()
    })
}

/// Whether a posted CSRF token is the session's, compared in constant time.
pub(crate) fn same_token(session: &str, posted: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests: the comparison's time says nothing about where they differ.
    let (a, b) = (
        Sha256::digest(session.as_bytes()),
        Sha256::digest(posted.as_bytes()),
    );
    !session.is_empty() && a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn render(page: impl Template, status: StatusCode) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The origin (`scheme://host[:port]`) of the dashboard's public URL, or why it is not one.
pub(crate) fn origin_of(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| matches!(*s, "http" | "https"))
        .ok_or_else(|| format!("public_url {url:?} must start with https:// or http://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return Err(format!("public_url {url:?} has no host"));
    }
    Ok(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Where to go after signing in: a path of this site only (never `//host` or a URL).
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    next: &'a str,
    username: &'a str,
    problem: Option<&'a str>,
    /// The single sign-on provider's name, for its button.
    provider: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = local_path(q.next.as_deref().unwrap_or("/"));
    if signed_in(&session).await.is_some() {
        return Redirect::to(next).into_response();
    }
    let oidc = app.oidc();
    render(
        LoginPage {
            next,
            username: "",
            problem: None,
            provider: oidc.as_ref().map(|o| o.provider()),
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_path(&form.next).to_string();
    let now = std::time::Instant::now();
    if let Some(wait) = app.throttle().wait(&form.username, peer.ip(), now) {
        let secs = wait.as_secs().max(1);
        let mut page = render(
            LoginPage {
                next: &next,
                username: &form.username,
                problem: Some("Too many wrong passwords: wait a while before trying again."),
                provider: None,
            },
            StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return page;
    }
    let refused = |problem: &'static str, status: StatusCode| {
        render(
            LoginPage {
                next: &next,
                username: &form.username,
                problem: Some(problem),
                provider: None,
            },
            status,
        )
    };
    let user = match app.store().user(&form.username).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "looking up a user failed");
            return refused(
                "The store cannot be reached right now; try again shortly.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let password = SecretString::from(form.password.clone());
    // argon2 is deliberately slow: off the request threads. An unknown user is checked against
    // a fixed hash so the answer takes as long as for a known one.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.clone());
    let ok = tokio::task::spawn_blocking(move || crate::users::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        app.throttle().failed(&form.username, peer.ip(), now);
        return refused("Wrong user name or password.", StatusCode::UNAUTHORIZED);
    };
    app.throttle().succeeded(&form.username, peer.ip());
    if let Err(e) = begin_session(&session, &user.name, &user.role).await {
        tracing::error!(error = %e, "a session could not be started");
        return refused(
            "Signing in failed on our side; try again shortly.",
            StatusCode::SERVICE_UNAVAILABLE,
        );
    }
    Redirect::to(&next).into_response()
}

/// Start a session of `user` with `role` and a fresh CSRF token. A new id at sign-in: a session
/// id planted before it is worth nothing after.
pub(crate) async fn begin_session(
    session: &Session,
    user: &str,
    role: &str,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(USER, user).await?;
    session.insert("role", role).await?;
    session.insert("csrf", crate::auth::new_token()).await?;
    session.save().await
}

/// An argon2id hash of a random password nobody knows, for timing parity on unknown users.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let unknown = SecretString::from(crate::auth::new_token());
    crate::users::hash_password(&unknown).unwrap_or_default()
});

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(session: Session, Form(form): Form<LogoutForm>) -> Response {
    if let Some(me) = signed_in(&session).await
        && let Some(refused) = refuse_forged(&me, &form.csrf)
    {
        return refused;
    }
    if let Err(e) = session.flush().await {
        tracing::error!(error = %e, "a session could not be ended");
    }
    Redirect::to("/login").into_response()
}

/// One card on the board.
struct Card {
    key: String,
    title: String,
    project: String,
    stage: String,
    round: u32,
    age: String,
    cost: String,
}

struct Column {
    id: &'static str,
    title: &'static str,
    cards: Vec<Card>,
    /// Cards in the column, shown or not.
    total: usize,
}

impl Column {
    /// Cards of the column not shown ([`DONE_SHOWN`]).
    fn hidden(&self) -> usize {
        self.total.saturating_sub(self.cards.len())
    }
}

/// The "Done / stopped" column's place in [`column_of`]'s order.
const DONE_COLUMN: usize = 5;

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPage {
    user: String,
    role: String,
    csrf: String,
    projects: Vec<String>,
    project: Option<String>,
    columns: Vec<Column>,
    events_url: String,
}

#[derive(Debug, Deserialize)]
struct BoardQuery {
    project: Option<String>,
}

/// The board's column of a job: by its status, and queued while its queue row waits.
fn column_of(status: &str, queued: bool) -> usize {
    match status {
        _ if queued => 0,
        "awaiting_approval" | "awaiting_acceptance" => 2,
        "needs_attention" | "needs_input" => 3,
        "in_review" | "fixing_feedback" => 4,
        "done" | "rejected" | "cancelled" => DONE_COLUMN,
        _ => 1,
    }
}

fn age(since: chrono::DateTime<Utc>) -> String {
    let secs = (Utc::now() - since).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[derive(Template)]
#[template(path = "columns.html")]
struct Columns<'a> {
    columns: &'a [Column],
}

/// The board's columns as HTML, for the live stream.
fn columns_html(columns: &[Column]) -> String {
    Columns { columns }.render().unwrap_or_default()
}

/// Cards the "Done / stopped" column shows, most recently finished first; its count still says
/// how many there are. The column only grows, and the board is rebuilt for every viewer at every
/// move of any job.
const DONE_SHOWN: usize = 50;

/// Every project with tickets, and the board's columns (of `project` only, when given): each
/// ticket's latest job as a card, read with its title and no ticket body or job state.
async fn board_columns(
    app: &AppState,
    project: Option<&str>,
) -> Result<(Vec<String>, Vec<Column>), codemill_store::StoreError> {
    let store = app.store();
    let projects = store.ticket_projects().await?;
    let cards = store.job_cards().await?;
    let queued = store.queue_entries(Some(QueueState::Queued)).await?;
    let queued: BTreeSet<_> = queued.iter().map(|e| e.job).collect();
    Ok((projects, arrange(cards, &queued, project)))
}

/// The board's columns from every ticket's latest job (of `project` only, when given).
fn arrange(
    mut cards: Vec<codemill_store::JobCard>,
    queued: &BTreeSet<codemill_core::ids::JobId>,
    project: Option<&str>,
) -> Vec<Column> {
    let mut columns = vec![
        ("queued", "Queued"),
        ("running", "Running"),
        ("awaiting_approval", "Awaiting approval"),
        ("attention", "Needs attention / input"),
        ("shipped", "Shipped"),
        ("done", "Done / stopped"),
    ]
    .into_iter()
    .map(|(id, title)| Column {
        id,
        title,
        cards: Vec::new(),
        total: 0,
    })
    .collect::<Vec<_>>();
    // By ticket, as before; the done column then takes its latest few.
    cards.sort_by_cached_key(|c| c.ticket.to_string());
    let mut done = Vec::new();
    for c in cards {
        if project.is_some_and(|p| p != c.project) {
            continue;
        }
        let card = Card {
            key: c.ticket.to_string(),
            title: c.title,
            project: c.project,
            stage: c.stage,
            round: c.round,
            age: age(c.created_at),
            cost: format!("{:.4}", c.cost_usd),
        };
        let column = column_of(&c.status, queued.contains(&c.job));
        if column == DONE_COLUMN {
            done.push((c.updated_at, card));
        } else {
            columns[column].cards.push(card);
        }
    }
    done.sort_by_key(|(finished, _)| std::cmp::Reverse(*finished));
    columns[DONE_COLUMN].total = done.len();
    columns[DONE_COLUMN].cards = done
        .into_iter()
        .take(DONE_SHOWN)
        .map(|(_, card)| card)
        .collect();
    for column in &mut columns {
        column.total = column.total.max(column.cards.len());
    }
    columns
}

async fn board(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<BoardQuery>,
) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to("/login?next=/").into_response();
    };
    let project = q.project.filter(|p| !p.is_empty());
    // The stream position first: whatever moves after it reaches the page live.
    let loaded = async {
        let pos = app.store().last_event_pos().await?;
        let (projects, columns) = board_columns(&app, project.as_deref()).await?;
        Ok::<_, codemill_store::StoreError>((pos, projects, columns))
    };
    let (pos, projects, columns) = match loaded.await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "the board could not be read");
            return store_down();
        }
    };
    let events_url = match &project {
        Some(p) => format!("/board/events?after={pos}&project={}", query_escape(p)),
        None => format!("/board/events?after={pos}"),
    };
    render(
        BoardPage {
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            projects,
            project,
            columns,
            events_url,
        },
        StatusCode::OK,
    )
}

/// `text` for a URL's query: everything but unreserved characters percent-encoded.
pub(crate) fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path("/tickets/P-1"), "/tickets/P-1");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("https://evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path(""), "/");
    }

    #[test]
    fn the_public_url_gives_the_trusted_origin() {
        assert_eq!(
            origin_of("https://Codemill.example.com/dashboard/").as_deref(),
            Ok("https://codemill.example.com")
        );
        assert_eq!(
            origin_of("http://10.0.0.5:8080").as_deref(),
            Ok("http://10.0.0.5:8080")
        );
        assert!(origin_of("codemill.example.com").is_err());
        assert!(origin_of("ftp://x").is_err());
        assert!(origin_of("https://user@host").is_err());
        assert!(origin_of("https:///path").is_err());
    }

    #[test]
    fn jobs_go_to_the_column_of_their_status() {
        assert_eq!(column_of("running", true), 0);
        assert_eq!(column_of("running", false), 1);
        assert_eq!(column_of("awaiting_approval", false), 2);
        assert_eq!(column_of("awaiting_acceptance", false), 2);
        assert_eq!(column_of("needs_input", false), 3);
        assert_eq!(column_of("in_review", false), 4);
        assert_eq!(column_of("cancelled", false), 5);
    }

    /// The done column shows its latest cards and counts them all; the others show every card,
    /// by ticket; another project's cards are left out.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_done_column_shows_its_latest_cards_and_counts_the_rest() {
        let at = |n: i64| chrono::DateTime::<Utc>::from_timestamp(1_800_000_000 + n, 0).unwrap();
        let card = |n: i64, project: &str, status: &str| codemill_store::JobCard {
            job: codemill_core::ids::JobId::new(),
            ticket: format!("{project}-{n}").parse().unwrap(),
            title: format!("ticket {n}"),
            project: project.into(),
            status: status.into(),
            stage: "x".into(),
            round: 1,
            cost_usd: 0.5,
            created_at: at(n),
            updated_at: at(n),
        };
        let mut cards: Vec<_> = (1..=53).map(|n| card(n, "P", "done")).collect();
        cards.extend([card(60, "P", "running"), card(61, "P", "in_review")]);
        cards.push(card(1, "Q", "done"));
        let columns = arrange(cards.clone(), &BTreeSet::new(), Some("P"));
        let done = &columns[DONE_COLUMN];
        assert_eq!((done.total, done.cards.len(), done.hidden()), (53, 50, 3));
        let keys: Vec<&str> = done.cards.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys[..2], ["P-53", "P-52"]);
        assert_eq!(keys[49], "P-4");
        assert_eq!(done.cards[0].title, "ticket 53");
        assert_eq!((columns[1].total, columns[1].hidden()), (1, 0));
        assert_eq!(columns[4].cards[0].key, "P-61");
        let html = columns_html(&columns);
        assert!(html.contains("3 older not shown"), "{html}");
        assert!(html.contains(r#"<span class="count">53</span>"#), "{html}");
        // Every project: Q's card joins the done column.
        let all = arrange(cards, &BTreeSet::new(), None);
        assert_eq!(all[DONE_COLUMN].total, 54);
    }
}
