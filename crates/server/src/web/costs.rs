//! `GET /costs`: what the models cost, per project and UTC day for the last days (metered by
//! the gateway), per stage and per ticket (from the jobs), each against its budget.

use std::collections::BTreeMap;

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
const TOP: usize = 10;

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
    jobs: usize,
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
        let views = store.job_views(None, None).await?;
        let tickets = store.tickets(None).await?;
        Ok::<_, codemill_store::StoreError>((days, views, tickets))
    };
    let (days, views, tickets) = match loaded.await {
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
    let mut stages: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut per_ticket: BTreeMap<String, (String, usize, f64)> = BTreeMap::new();
    for v in &views {
        let Some(state) = &v.state else { continue };
        for c in &state.costs {
            let e = stages.entry(c.stage.as_str().to_string()).or_default();
            e.0 += c.usage.total();
            e.1 += c.cost_usd;
        }
        let e = per_ticket
            .entry(v.ticket.to_string())
            .or_insert_with(|| (v.project.clone(), 0, 0.0));
        e.1 += 1;
        e.2 += state.cost_usd;
    }
    let titles: BTreeMap<String, String> = tickets
        .iter()
        .map(|t| (t.key.to_string(), t.title.clone()))
        .collect();
    let mut top: Vec<(String, (String, usize, f64))> = per_ticket.into_iter().collect();
    top.sort_by(|a, b| b.1.2.total_cmp(&a.1.2));
    let top = top
        .into_iter()
        .take(TOP)
        .map(|(key, (project, jobs, usd))| {
            let limit = budgets(&project).ticket_usd;
            TicketRow {
                title: titles.get(&key).cloned().unwrap_or_default(),
                key,
                jobs,
                cost: format!("{usd:.4}"),
                over: limit.is_some_and(|l| usd > l),
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
                .map(|(name, (tokens, usd))| StageRow {
                    name,
                    tokens,
                    cost: format!("{usd:.4}"),
                })
                .collect(),
            top,
        },
        StatusCode::OK,
    )
}
