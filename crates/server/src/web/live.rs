//! Live updates over server-sent events, read from the store from a cursor so any node serves
//! them and a reconnect (`Last-Event-ID`) misses nothing: the board's columns re-rendered when
//! the event stream moves (`GET /board/events`), and a job page's agent activity as it is stored
//! plus a `changed` signal when the ticket's job moves (`GET /tickets/{KEY}/events`).

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use codemill_core::agent::AgentEvent;
use codemill_core::ids::{JobId, TicketKey};
use codemill_store::ActivityRow;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tower_sessions::Session;

use super::signed_in;
use crate::AppState;

/// How often a stream looks at the store.
const POLL: Duration = Duration::from_millis(500);
/// A stream ends after this long; the browser reconnects, and its session is checked again
/// (a signed-out or removed user stops getting updates within this time).
const LIFETIME: Duration = Duration::from_secs(300);
/// Activity events sent in one look, at most.
const BATCH: u32 = 200;

/// One line of a step's agent activity, as the job page shows it.
pub(super) struct ActivityLine {
    pub id: i64,
    pub step: String,
    pub kind: &'static str,
    pub text: String,
}

/// The longest text shown for one activity line; the rest is on the job's log.
const LINE_TEXT: usize = 400;

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(LINE_TEXT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

pub(super) fn activity_line(row: &ActivityRow) -> ActivityLine {
    let step = match &row.angle {
        Some(angle) => format!("{} {} ({angle})", row.stage, row.round),
        None => format!("{} {}", row.stage, row.round),
    };
    let (kind, text) = match &row.event {
        AgentEvent::SessionStarted { model, .. } => (
            "session",
            format!(
                "session started{}",
                model
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
        ),
        AgentEvent::Text { text } => ("text", clip(text)),
        AgentEvent::ToolCall { name, summary, .. } => ("tool", clip(&format!("{name}: {summary}"))),
        AgentEvent::ToolResult {
            is_error, output, ..
        } => (
            if *is_error {
                "tool-error"
            } else {
                "tool-result"
            },
            clip(output.lines().next().unwrap_or_default()),
        ),
        AgentEvent::TurnCompleted { turn, usage } => (
            "turn",
            format!("turn {turn} done · {} tokens", usage.total()),
        ),
        AgentEvent::Notice { message } => ("notice", clip(message)),
    };
    ActivityLine {
        id: row.id,
        step,
        kind,
        text,
    }
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityLines<'a> {
    activity: &'a [ActivityLine],
}

/// The `<li>` lines of `activity`, escaped.
fn activity_html(activity: &[ActivityLine]) -> String {
    ActivityLines { activity }.render().unwrap_or_default()
}

/// A cursor from `Last-Event-ID` (what the browser last received) or else the page's query.
fn resume(headers: &HeaderMap) -> Option<(i64, i64)> {
    let id = headers.get("last-event-id")?.to_str().ok()?;
    let (pos, activity) = id.split_once('.').unwrap_or((id, "0"));
    Some((pos.parse().ok()?, activity.parse().ok()?))
}

fn event_id(pos: i64, activity: i64) -> String {
    format!("{pos}.{activity}")
}

/// Polls `step` every [`POLL`] until [`LIFETIME`] passes; each look yields the events it found.
fn polled<S, F, Fut>(state: S, step: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn(S) -> Fut + Clone,
    Fut: Future<Output = (S, Vec<Event>)>,
{
    let until = tokio::time::Instant::now() + LIFETIME;
    stream::unfold(state, move |state| {
        let step = step.clone();
        async move {
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(POLL).await;
            let (state, events) = step(state).await;
            Some((stream::iter(events.into_iter().map(Ok)), state))
        }
    })
    .flatten()
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "sign in first").into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct BoardEventsQuery {
    #[serde(default)]
    after: i64,
    project: Option<String>,
}

/// `GET /board/events?after=POS&project=P`: a `board` event with the columns' HTML whenever a
/// job moved after `after`.
pub(super) async fn board(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<BoardEventsQuery>,
) -> Response {
    if signed_in(&session).await.is_none() {
        return unauthorized();
    }
    let after = resume(&headers).map_or(q.after, |(pos, _)| pos);
    let project = q.project.filter(|p| !p.is_empty());
    sse(polled((app, after), move |(app, after)| {
        let project = project.clone();
        async move {
            let moved = match app.store().events_since(after, 1000).await {
                Ok(rows) => rows.last().map(|r| r.pos),
                Err(e) => {
                    tracing::warn!(error = %e, "the board's stream could not read the store");
                    None
                }
            };
            let Some(pos) = moved else {
                return ((app, after), Vec::new());
            };
            let html = match app
                .board_cache()
                .columns(&app, project.as_deref(), pos)
                .await
            {
                Ok(html) => html.to_string(),
                Err(e) => {
                    tracing::warn!(error = %e, "the board's stream could not read the store");
                    return ((app, after), Vec::new());
                }
            };
            let event = Event::default()
                .event("board")
                .id(event_id(pos, 0))
                .data(html);
            ((app, pos), vec![event])
        }
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct JobEventsQuery {
    #[serde(default)]
    after: i64,
    job: Option<String>,
    #[serde(default)]
    activity: i64,
}

struct JobStream {
    app: AppState,
    ticket: TicketKey,
    job: Option<JobId>,
    after: i64,
    activity: i64,
}

/// `GET /tickets/{KEY}/events?after=POS&job=ID&activity=A`: `activity` events with the `<li>`
/// lines of what the job's agents did after `A`, and a `changed` event when the ticket's job
/// moved after stream position `POS` (the page then reloads its content).
pub(super) async fn job(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<JobEventsQuery>,
) -> Response {
    if signed_in(&session).await.is_none() {
        return unauthorized();
    }
    let Ok(ticket) = key.parse::<TicketKey>() else {
        return (StatusCode::NOT_FOUND, format!("no ticket {key}")).into_response();
    };
    let (after, activity) = resume(&headers).unwrap_or((q.after, q.activity));
    let job = q.job.as_deref().and_then(|j| j.parse::<JobId>().ok());
    let state = JobStream {
        app,
        ticket,
        job,
        after,
        activity,
    };
    sse(polled(state, |mut s: JobStream| async move {
        let mut events = Vec::new();
        if let Some(job) = s.job {
            match s.app.store().activity_since(job, s.activity, BATCH).await {
                Ok(rows) if !rows.is_empty() => {
                    s.activity = rows.last().map_or(s.activity, |r| r.id);
                    let lines: Vec<_> = rows.iter().map(activity_line).collect();
                    events.push(
                        Event::default()
                            .event("activity")
                            .id(event_id(s.after, s.activity))
                            .data(activity_html(&lines)),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a job page's stream could not read the store")
                }
            }
        }
        match s.app.store().events_since(s.after, 1000).await {
            Ok(rows) => {
                let mine = rows.iter().any(|r| r.ticket == s.ticket);
                s.after = rows.last().map_or(s.after, |r| r.pos);
                if mine {
                    events.push(
                        Event::default()
                            .event("changed")
                            .id(event_id(s.after, s.activity))
                            .data("changed"),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "a job page's stream could not read the store"),
        }
        (s, events)
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_reconnect_resumes_from_the_last_event_id() {
        let mut h = HeaderMap::new();
        assert_eq!(resume(&h), None);
        h.insert("last-event-id", "42.7".parse().unwrap());
        assert_eq!(resume(&h), Some((42, 7)));
        h.insert("last-event-id", "42".parse().unwrap());
        assert_eq!(resume(&h), Some((42, 0)));
        h.insert("last-event-id", "x.1".parse().unwrap());
        assert_eq!(resume(&h), None);
        assert_eq!(event_id(5, 9), "5.9");
    }

    #[test]
    fn activity_lines_are_clipped_and_escaped() {
        let row = |event| ActivityRow {
            id: 3,
            job: JobId::new(),
            stage: "implement".into(),
            round: 1,
            angle: None,
            at: chrono::Utc::now(),
            event,
        };
        let long = "x".repeat(1000);
        let line = activity_line(&row(AgentEvent::Text { text: long }));
        assert_eq!(line.text.chars().count(), LINE_TEXT + 1);
        let hostile = activity_line(&row(AgentEvent::ToolCall {
            id: "t".into(),
            name: "bash".into(),
            summary: "<script>alert(1)</script>".into(),
        }));
        assert_eq!(hostile.kind, "tool");
        let html = activity_html(&[hostile]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
