//! `GET /costs`: what the models cost, per project and UTC day for the last days (metered by
//! the gateway), per stage and per ticket (from the jobs), each against its budget.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::{render, signed_in};
use crate::AppState;

/// Days shown, today included.
const WINDOW: i64 = 7;
/// Tickets listed by cost.
const TOP: u32 = 10;

struct DayRow {
    day: String,
    project: String,
    calls: u64,
    tokens: u64,
    cost: String,
    budget: String,
    over: bool,
}

struct StageRow {
    name: String,
    tokens: u64,
    cost: String,
}

struct TicketRow {
    key: String,
    title: String,
    jobs: u64,
    cost: String,
    budget: String,
    over: bool,
}

#[derive(Template)]
#[template(path = "costs.html")]
struct CostsPage {
    user: String,
    role: String,
    csrf: String,
    window: i64,
    days: Vec<DayRow>,
    stages: Vec<StageRow>,
    top: Vec<TicketRow>,
}

fn budget_text(limit: Option<f64>) -> String {
    limit.map_or_else(|| "-".into(), |l| format!("${l:.2}"))
}

pub(super) async fn page(State(app): State<AppState>, session: Session) -> Response {
    let Some(me) = signed_in(&session).await else {
        return Redirect::to("/login?next=/costs").into_response();
    };
    let store = app.store();
    let today = chrono::Utc::now();
    let loaded = async {
        let mut days = Vec::new();
        for back in 0..WINDOW {
            let day = codemill_store::day_of(today - chrono::TimeDelta::days(back));
            for p in store.spend_by_project(&day).await? {
                days.push((day.clone(), p));
            }
        }
        let stages = store.stage_spend().await?;
        let top = store.top_ticket_spend(TOP).await?;
        Ok::<_, codemill_store::StoreError>((days, stages, top))
    };
    let (days, stages, top) = match loaded.await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "the costs could not be read");
            return super::store_down();
        }
    };
    let budgets = |project: &str| app.budgets(project);
    let days = days
        .into_iter()
        .map(|(day, p)| {
            let limit = budgets(&p.project).project_day_usd;
            DayRow {
                over: limit.is_some_and(|l| p.usd > l),
                budget: budget_text(limit),
                cost: format!("{:.4}", p.usd),
                day,
                project: p.project,
                calls: p.calls,
                tokens: p.tokens,
            }
        })
        .collect();
    let top = top
        .into_iter()
        .map(|t| {
            let limit = budgets(&t.project).ticket_usd;
            TicketRow {
                key: t.ticket.to_string(),
                title: t.title,
                jobs: t.jobs,
                cost: format!("{:.4}", t.cost_usd),
                over: limit.is_some_and(|l| t.cost_usd > l),
                budget: budget_text(limit),
            }
        })
        .collect();
    render(
        CostsPage {
            user: me.user,
            role: me.role,
            csrf: me.csrf,
            window: WINDOW,
            days,
            stages: stages
                .into_iter()
                .map(|s| StageRow {
                    name: s.stage,
                    tokens: s.tokens,
                    cost: format!("{:.4}", s.cost_usd),
                })
                .collect(),
            top,
        },
        StatusCode::OK,
    )
}
