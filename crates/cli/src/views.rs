//! The `status`, `show` and `budget` views of the store.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobEvent;
use codemill_store::{JobView, QueueState};
use serde_json::json;

use crate::commands::{Opened, latest_state};
use crate::output::{json as print_json, out};

fn money(x: f64) -> String {
    format!("${x:.4}")
}

/// `codemill status`: every ticket and its latest job, from the job views (the journals'
/// replays, written with each entry), so a store of thousands of jobs replays none of them.
pub async fn status(opened: &Opened, as_json: bool) -> Result<()> {
    let tickets = opened.store.tickets(None).await?;
    let today = codemill_store::day_of(chrono::Utc::now());
    let today_usd = codemill_core::cost::sum_usd(
        opened
            .store
            .spend_by_project(&today)
            .await?
            .iter()
            .map(|p| p.usd),
    );
    let mut latest: HashMap<TicketKey, JobView> = opened
        .store
        .latest_views()
        .await?
        .into_iter()
        .map(|v| (v.ticket.clone(), v))
        .collect();
    let queued: HashSet<JobId> = opened
        .store
        .queue_entries(Some(QueueState::Queued))
        .await?
        .iter()
        .map(|e| e.job)
        .collect();
    let rows: Vec<_> = tickets.iter().map(|t| (t, latest.remove(&t.key))).collect();
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|(t, latest)| {
                let job = latest.as_ref().map(|v| match &v.state {
                    Some(s) => json!({"id": v.job.to_string(), "state": s.shown_status(queued.contains(&v.job)), "stage": s.stage.as_str(), "rounds": s.round,
                           "tokens": s.usage.total(), "cost_usd": s.cost_usd, "branch": s.branch, "commit": s.commit, "reason": s.reason}),
                    // A journal that does not replay: say so, and why.
                    None => json!({"id": v.job.to_string(), "state": v.status, "stage": v.stage, "rounds": null,
                           "tokens": null, "cost_usd": null, "branch": null, "commit": null, "reason": v.error}),
                });
                json!({"key": t.key.to_string(), "title": t.title, "ticket_status": t.status.as_str(), "job": job})
            })
            .collect();
        print_json(
            &json!({"tickets": items, "today": {"day": today, "usd": today_usd,
                                                         "day_usd": opened.config.budgets.day_usd}}),
        );
        return Ok(());
    }
    if rows.is_empty() {
        out("No tickets. Add one with `codemill ticket add PROJECT --title ...`.");
        return Ok(());
    }
    out(&format!(
        "{:<10} {:<18} {:<18} {:>6} {:>9} {:>10}  TITLE",
        "TICKET", "JOB", "STAGE", "ROUNDS", "TOKENS", "COST"
    ));
    for (t, latest) in rows {
        let line = match latest.as_ref().map(|v| (v, v.state.as_ref())) {
            Some((v, Some(s))) => [
                s.shown_status(queued.contains(&v.job)).to_string(),
                s.stage.as_str().to_string(),
                s.round.to_string(),
                s.usage.total().to_string(),
                money(s.cost_usd),
            ],
            Some((v, None)) => [
                v.status.clone(),
                v.stage.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
            None => [
                "no job".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        };
        let [job, stage, rounds, tokens, cost] = line;
        out(&format!(
            "{:<10} {:<18} {:<18} {:>6} {:>9} {:>10}  {}",
            t.key.to_string(),
            job,
            stage,
            rounds,
            tokens,
            cost,
            t.title
        ));
    }
    out(&format!(
        "\nSpent today ({today} UTC): {}{}",
        money(today_usd),
        opened
            .config
            .budgets
            .day_usd
            .map_or(String::new(), |l| format!(
                " of the {} day budget",
                money(l)
            ))
    ));
    Ok(())
}

/// Spend next to each budget that is set: `job $1.20 of $20.00, ticket $3.10 of $50.00, ...`.
pub fn spend_against_budgets(
    spend: &codemill_store::Spend,
    budgets: &codemill_core::config::Budgets,
) -> String {
    let mut parts = Vec::new();
    for (name, spent, limit) in [
        ("job", spend.job_usd, budgets.job_usd),
        ("ticket", spend.ticket_usd, budgets.ticket_usd),
        (
            "project today",
            spend.project_day_usd,
            budgets.project_day_usd,
        ),
        ("all today", spend.day_usd, budgets.day_usd),
    ] {
        match limit {
            Some(limit) => parts.push(format!("{name} {} of {}", money(spent), money(limit))),
            None if name == "job" => parts.push(format!("{name} {} (no budget)", money(spent))),
            None => {}
        }
    }
    if let Some(limit) = budgets.job_tokens {
        parts.push(format!("job tokens {} of {limit}", spend.job_tokens));
    }
    parts.join(", ")
}

/// `codemill budget`: what each project spent on one UTC day, against its budgets.
pub async fn budget(opened: &Opened, day: Option<String>, as_json: bool) -> Result<()> {
    let day = day.unwrap_or_else(|| codemill_store::day_of(chrono::Utc::now()));
    if chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d").is_err() {
        anyhow::bail!("--day {day:?}: expected a date as YYYY-MM-DD (UTC)");
    }
    let per_project = opened.store.spend_by_project(&day).await?;
    let total = codemill_core::cost::sum_usd(per_project.iter().map(|p| p.usd));
    let config = &opened.config;
    if as_json {
        let projects: Vec<_> = per_project
            .iter()
            .map(|p| {
                json!({"project": p.project, "usd": p.usd, "tokens": p.tokens, "calls": p.calls,
                       "project_day_usd": config.budgets_for(&p.project).project_day_usd})
            })
            .collect();
        print_json(
            &json!({"day": day, "total_usd": total, "day_usd": config.budgets.day_usd,
                           "projects": projects}),
        );
        return Ok(());
    }
    out(&format!(
        "Model spend on {day} (UTC), metered by the gateway"
    ));
    out(&format!(
        "{:<14} {:>10} {:>12} {:>7}  BUDGET",
        "PROJECT", "SPENT", "TOKENS", "CALLS"
    ));
    for p in &per_project {
        let limit = config
            .budgets_for(&p.project)
            .project_day_usd
            .map_or("-".to_string(), |l| {
                format!(
                    "{} ({:.0}%)",
                    money(l),
                    100.0 * p.usd / l.max(f64::MIN_POSITIVE)
                )
            });
        out(&format!(
            "{:<14} {:>10} {:>12} {:>7}  {limit}",
            p.project,
            money(p.usd),
            p.tokens,
            p.calls
        ));
    }
    if per_project.is_empty() {
        out("(no model requests)");
    }
    let day_limit = config
        .budgets
        .day_usd
        .map_or("no day_usd budget".to_string(), |l| {
            format!("of {} day_usd", money(l))
        });
    out(&format!("total {} {day_limit}", money(total)));
    Ok(())
}

/// `codemill show KEY`: the latest job of a ticket in detail.
pub async fn show(opened: &Opened, key: &TicketKey, as_json: bool) -> Result<()> {
    let ticket = opened
        .store
        .ticket(key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no ticket {key} (see `codemill ticket list`)"))?;
    let Some((job, state, journal)) = latest_state(opened, key).await? else {
        if as_json {
            print_json(&json!({"ticket": ticket, "job": null}));
        } else {
            out(&format!(
                "{key}  {}\nNo job yet: run `codemill run {key}`.",
                ticket.title
            ));
        }
        return Ok(());
    };
    // A sub-task's PR is on its stack branch.
    let pr_branch = match (&state.subtask, &state.branch) {
        (Some(_), Some(b)) => b.clone(),
        _ => key.branch(),
    };
    let pr = opened.store.find_pr(key.project(), &pr_branch).await?;
    let today = codemill_store::day_of(chrono::Utc::now());
    let job_id = job.to_string();
    let spend = opened
        .store
        .spend(codemill_store::SpendScope {
            job: &job_id,
            ticket: &key.to_string(),
            project: key.project(),
            day: &today,
        })
        .await?;
    let budgets = opened.config.budgets_for(key.project());
    let calls = opened.store.model_calls(&job_id).await?;
    let entry = opened
        .store
        .queue_entry(job)
        .await?
        .filter(|e| e.state == QueueState::Queued);
    let shown = state.shown_status(entry.is_some());
    if as_json {
        let timeline: Vec<_> = journal
            .iter()
            .map(|e| json!({"seq": e.seq, "at": e.at.to_rfc3339(), "event": e.event}))
            .collect();
        print_json(&json!({
            "ticket": ticket,
            "job": {"id": job.to_string(), "trace_id": job.trace_id(),
                    "trace_url": opened.config.telemetry.trace_link(&job.trace_id()),
                    "state": shown, "stage": state.stage.as_str(), "rounds": state.round,
                    "branch": state.branch, "base_commit": state.base_commit, "commit": state.commit,
                    "reason": state.reason, "wip": state.wip, "tokens": state.usage, "cost_usd": state.cost_usd,
                    "costs": state.costs, "reviews": state.reviews, "triage": state.triage,
                    "fixed": state.fixed_gates().iter().map(|(r, g)| json!({"round": r, "gate": {"name": g.name, "command": g.command, "outcome": g.outcome()}}))
                        .chain(state.fixed().iter().map(|(r, d)| json!({"round": r, "finding": d.finding})))
                        .collect::<Vec<_>>(),
                    "gate_rounds": state.gate_rounds.iter().map(|(r, gates)| json!({"round": r, "gates": gates.iter().map(|g| json!({"name": g.name, "command": g.command, "passed": g.passed, "outcome": g.outcome(), "duration_ms": g.duration_ms})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                    "backlog_tickets": state.backlog_tickets, "questions": state.questions, "gates": state.gates,
                    "diff_stat": state.proposal.as_ref().map(|p| p.diff_stat.clone()),
                    "subtask": state.subtask, "graph": state.graph, "children": state.children,
                    "stack": state.stack},
            "pr": pr,
            "spend": {"day": today, "job_usd": spend.job_usd, "job_tokens": spend.job_tokens,
                      "ticket_usd": spend.ticket_usd, "project_day_usd": spend.project_day_usd,
                      "day_usd": spend.day_usd},
            "budgets": budgets,
            "model_calls": calls,
            "timeline": timeline,
        }));
        return Ok(());
    }
    out(&format!("{key}  {}", ticket.title));
    out(&format!(
        "job {}  state {}  stage {}  fix rounds {}",
        job,
        shown,
        state.stage.as_str(),
        state.round
    ));
    if let Some(e) = &entry {
        let retry = match &e.last_error {
            Some(error) if e.attempts > 0 => format!(
                "; attempt {} of {} from {} (the last failed: {error})",
                e.attempts + 1,
                e.max_attempts,
                e.run_after.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            _ => String::new(),
        };
        out(&format!(
            "waits for a worker (`codemill worker` or `codemill serve`; `codemill run {key}` runs it here){retry}"
        ));
    }
    match opened.config.telemetry.trace_link(&job.trace_id()) {
        Some(url) => out(&format!("trace {}  {url}", job.trace_id())),
        None => out(&format!("trace {}", job.trace_id())),
    }
    if let Some(sub) = &state.subtask {
        out(&format!(
            "sub-task {} ({}) of {}: ships in its stack",
            sub.n, sub.id, sub.parent_ticket
        ));
    }
    if let Some(checked) = state.checked_graph() {
        out(&codemill_core::subtasks::render(&checked));
        for c in &state.children {
            let result = match &c.result {
                None => "running".to_string(),
                Some(codemill_core::subtasks::ChildResult::Ready { commit, .. }) => {
                    format!("ready {}", commit.get(..12).unwrap_or(commit))
                }
                Some(codemill_core::subtasks::ChildResult::Stopped { status, reason }) => {
                    format!("{status}: {reason}")
                }
            };
            out(&format!(
                "  sub-task {} → {} (job {})  {result}",
                c.id,
                c.ticket,
                c.job.short()
            ));
        }
    }
    for (i, e) in state.stack.iter().enumerate() {
        out(&format!(
            "stack {}. {}  {}  on {}  ({})",
            i + 1,
            e.commit.get(..12).unwrap_or(&e.commit),
            e.branch,
            e.base,
            e.ticket
        ));
    }
    if let Some(b) = &state.branch {
        out(&format!(
            "branch {b}  base {}",
            state.base_commit.as_deref().unwrap_or("-")
        ));
    }
    if let Some(c) = &state.commit {
        out(&format!("commit {c}"));
    }
    if let Some(pr) = &pr {
        out(&format!(
            "PR #{} {} → {} ({}) at {}",
            pr.id, pr.branch, pr.base, pr.state, pr.commit
        ));
    }
    if let Some(r) = &state.reason {
        out(&format!("reason: {r}"));
    }
    if let Some((r, c)) = &state.wip {
        out(&format!("partial work: {r} at {c}"));
    }
    out(&format!(
        "tokens {} (in {}, out {})  cost {}",
        state.usage.total(),
        state.usage.input_tokens,
        state.usage.output_tokens,
        money(state.cost_usd)
    ));
    let mut unpriced: Vec<&str> = calls
        .iter()
        .filter(|c| c.refused.is_none() && opened.config.prices.price(&c.model).is_none())
        .map(|c| c.model.as_str())
        .collect();
    unpriced.sort_unstable();
    unpriced.dedup();
    if !unpriced.is_empty() {
        out(&format!(
            "note: no price for {} in [prices] of codemill.toml: those tokens count as $0",
            unpriced
                .iter()
                .map(|m| format!("model `{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let against = spend_against_budgets(&spend, &budgets);
    if !against.is_empty() {
        out(&format!(
            "spend (gateway metering, UTC day {today}): {against}"
        ));
    }
    let refused = calls.iter().filter(|c| c.refused.is_some()).count();
    out(&format!(
        "model requests: {} through the gateway{}",
        calls.len(),
        if refused > 0 {
            format!(", {refused} refused by a budget")
        } else {
            String::new()
        }
    ));
    if !state.costs.is_empty() {
        out("\nCost by stage:");
        for c in &state.costs {
            out(&format!(
                "  {:<10} round {}  {:<16} {:<12} {:<22} {:>8} tokens  {}",
                c.stage.as_str(),
                c.round,
                c.angle.as_deref().unwrap_or(""),
                c.agent,
                c.model,
                c.usage.total(),
                money(c.cost_usd)
            ));
        }
    }
    if !state.questions.is_empty() {
        out("\nQuestions for the ticket's author:");
        for q in &state.questions {
            out(&format!("  - {q}"));
        }
    }
    let rounds: std::collections::BTreeSet<u32> = state.reviews.iter().map(|r| r.round).collect();
    for round in rounds {
        out(&format!("\nReview round {round}:"));
        for r in state.reviews.iter().filter(|r| r.round == round) {
            let cost: f64 = state
                .costs
                .iter()
                .filter(|c| c.round == round && c.angle.as_deref() == Some(r.angle.as_str()))
                .map(|c| c.cost_usd)
                .sum();
            let tokens: u64 = state
                .costs
                .iter()
                .filter(|c| c.round == round && c.angle.as_deref() == Some(r.angle.as_str()))
                .map(|c| c.usage.total())
                .sum();
            out(&format!(
                "  {:<16} {} finding(s), {tokens} tokens, {}",
                r.angle,
                r.findings.len(),
                money(cost)
            ));
            for f in &r.findings {
                out(&format!(
                    "    [{}] {} ({}) — {}",
                    f.severity.as_str(),
                    f.title,
                    f.location(),
                    f.detail
                ));
            }
        }
        if let Some((_, decisions)) = state.triage.iter().find(|(r, _)| *r == round) {
            out("  triage:");
            if decisions.is_empty() {
                out("    nothing to triage");
            }
            for d in decisions {
                out(&format!(
                    "    {:<8} [{}] {} ({}) — {} ({:?})",
                    d.bucket.as_str(),
                    d.finding.severity.as_str(),
                    d.finding.title,
                    d.finding.location(),
                    d.reason,
                    d.by
                ));
            }
        }
    }
    let fixed_gates = state.fixed_gates();
    if !fixed_gates.is_empty() {
        out("\nGates fixed by the fix rounds:");
        for (round, g) in fixed_gates {
            out(&format!(
                "  {} ({}) failed in round {round}: {}",
                g.name,
                g.command,
                g.outcome()
            ));
        }
    }
    let fixed = state.fixed();
    if !fixed.is_empty() {
        out("\nFixed during review:");
        for (round, d) in fixed {
            out(&format!(
                "  [{}] {} ({}), raised in round {round}",
                d.finding.severity.as_str(),
                d.finding.title,
                d.finding.location()
            ));
        }
    }
    if !state.backlog_tickets.is_empty() {
        out(&format!(
            "\nBacklog tickets: {}",
            state.backlog_tickets.join(", ")
        ));
    }
    if !state.gates.is_empty() {
        out("\nLatest gates:");
        for g in &state.gates {
            out(&format!(
                "  {:<10} {:<7} {} ({} ms)",
                g.name,
                if g.passed {
                    "passed".to_string()
                } else {
                    g.outcome().to_uppercase()
                },
                g.command,
                g.duration_ms
            ));
        }
    }
    if let Some(p) = &state.proposal {
        out(&format!("\nDiff stat:\n{}", p.diff_stat.trim_end()));
    }
    out("\nTimeline:");
    for e in &journal {
        let what = match &e.event {
            JobEvent::EffectStarted { effect } => format!("start {effect}"),
            JobEvent::AgentFinished { stage, round, run } => format!(
                "{} (round {round}) by {}: {} — {} turns, {} tokens, {}",
                stage.as_str(),
                run.agent,
                run.outcome.describe(),
                run.turns,
                run.usage.total(),
                money(run.cost_usd)
            ),
            JobEvent::GatesFinished { round, gates } => format!(
                "gates (round {round}): {}",
                gates
                    .iter()
                    .map(|g| format!("{} {}", g.name, if g.passed { "passed" } else { "failed" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            JobEvent::EffectFailed { effect, error } => format!("FAILED {effect}: {error}"),
            other => other.name().replace('_', " "),
        };
        out(&format!("  {}  {}", e.at.format("%H:%M:%S%.3f"), what));
    }
    Ok(())
}
