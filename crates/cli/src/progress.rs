//! Live progress of a running job, and the `status` and `show` views.

use std::time::Instant;

use anyhow::Result;
use codemill_core::agent::AgentEvent;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::{JobEvent, JobState};
use codemill_runner::{Progress, Runner};
use serde_json::json;

use crate::commands::{Opened, latest_state};
use crate::output::{err, json as print_json, out};

/// What to do with the ticket.
pub enum Op {
    Run,
    Approve(String),
    Reject(String, String),
    Cancel(String),
    Accept(String),
}

/// Print a job's progress lines to stderr until the returned sink is dropped: elapsed time,
/// stage (with its review angle), what the agent does, tokens and cost, and the job's total so
/// far (counted from what it had spent before, when it was resumed or taken over).
fn printer() -> (codemill_runner::ProgressSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let printer = tokio::spawn(async move {
        let started = Instant::now();
        let mut tokens = 0u64;
        let mut cost = 0.0f64;
        let mut ticket = String::new();
        let mut announced: Option<JobId> = None;
        let mut stage = String::from("-");
        while let Some(p) = rx.recv().await {
            let t = started.elapsed().as_secs();
            let clock = format!("[{:02}:{:02}]", t / 60, t % 60);
            let line = match p {
                Progress::Job {
                    job,
                    ticket: k,
                    resumed,
                } => {
                    ticket = k.to_string();
                    announced = Some(job);
                    Some(format!(
                        "{clock} {ticket} job {} {}",
                        job.short(),
                        if resumed { "continues" } else { "started" }
                    ))
                }
                Progress::Began {
                    job,
                    ticket: k,
                    fresh,
                    tokens: spent_tokens,
                    cost_usd,
                } => {
                    ticket = k.to_string();
                    tokens = spent_tokens;
                    cost = cost_usd;
                    let said = announced == Some(job);
                    announced = Some(job);
                    (!said).then(|| {
                        format!(
                            "{clock} {ticket} job {} {}",
                            job.short(),
                            if fresh { "started" } else { "continues" }
                        )
                    })
                }
                Progress::Step { effect, round } => {
                    stage = step_name(&effect);
                    let r = if round > 0 {
                        format!(" (fix round {round})")
                    } else {
                        String::new()
                    };
                    Some(format!("{clock} {ticket} ▶ {stage}{r}"))
                }
                Progress::Agent { event, .. } => match event {
                    AgentEvent::ToolCall { name, summary, .. } => {
                        Some(format!("{clock} {ticket}   {stage} · {name} {summary}"))
                    }
                    AgentEvent::SessionStarted { session_id, model } => Some(format!(
                        "{clock} {ticket}   {stage} · session {session_id}{}",
                        model.map(|m| format!(" ({m})")).unwrap_or_default()
                    )),
                    AgentEvent::Notice { message } => {
                        Some(format!("{clock} {ticket}   {stage} · note: {message}"))
                    }
                    AgentEvent::TurnCompleted { .. }
                    | AgentEvent::Text { .. }
                    | AgentEvent::ToolResult { .. } => None,
                },
                Progress::AgentDone { run, .. } => {
                    // What the gateway metered for the step, added to the job's total.
                    tokens += run.usage.total();
                    cost += run.cost_usd;
                    Some(format!(
                        "{clock} {ticket}   {stage} done: {} · {} turns · {} tokens · ${:.4} (job so far: {tokens} tokens, ${cost:.4})",
                        run.outcome.describe(),
                        run.turns,
                        run.usage.total(),
                        run.cost_usd,
                    ))
                }
                Progress::Gates { results, .. } => {
                    let parts: Vec<String> = results
                        .iter()
                        .map(|g| format!("{} {}", g.name, gate_word(g)))
                        .collect();
                    Some(format!(
                        "{clock} {ticket}   gates: {}",
                        if parts.is_empty() {
                            "none".to_string()
                        } else {
                            parts.join(", ")
                        }
                    ))
                }
                Progress::Info { message } => Some(format!("{clock} {ticket}   {message}")),
            };
            if let Some(line) = line {
                err(&line);
            }
        }
    });
    (tx, printer)
}

/// How a gate ended, in a word.
fn gate_word(g: &codemill_core::pipeline::GateResult) -> &'static str {
    if g.passed {
        "passed"
    } else if g.timed_out {
        "TIMED OUT"
    } else {
        "FAILED"
    }
}

/// A step's name for progress lines: `implement`, `review (security)`, `gates`.
fn step_name(effect: &str) -> String {
    let parts: Vec<&str> = effect.split(':').collect();
    match parts.as_slice() {
        ["agent", stage, _, angle] => format!("{stage} ({angle})"),
        ["agent", stage, ..] => (*stage).to_string(),
        [name, ..] => (*name).to_string(),
        [] => effect.to_string(),
    }
}

/// Run `op` while printing progress lines to stderr (see [`printer`]).
pub async fn run_with_progress(
    runner: &Runner,
    key: &TicketKey,
    op: Op,
) -> Result<(JobId, JobState)> {
    let (tx, printer) = printer();
    let runner = runner_with(runner, tx);
    let result = match op {
        Op::Run => runner.run_ticket(key).await,
        Op::Approve(by) => runner.approve(key, &by).await,
        Op::Reject(reason, by) => runner.reject(key, &reason, &by).await,
        Op::Cancel(by) => runner.cancel(key, &by).await,
        Op::Accept(by) => runner.accept(key, &by).await,
    };
    drop(runner);
    let _ = printer.await;
    Ok(result?)
}

/// `codemill merge`: land `keys` through the merge queue, printing what it does to stderr.
pub async fn merge_with_progress(
    runner: &Runner,
    keys: &[TicketKey],
    by: &str,
) -> Result<codemill_runner::MergeReport> {
    let (tx, printer) = printer();
    let runner = runner_with(runner, tx);
    let result = runner.merge_queued(keys, by).await;
    drop(runner);
    let _ = printer.await;
    Ok(result?)
}

/// `codemill worker`: `concurrency` work loops, each printing what it claims and how it ends;
/// Ctrl-C or SIGTERM stops claiming and lets running jobs finish.
pub async fn work(
    runner: &Runner,
    options: &codemill_runner::worker::WorkerOptions,
    once: bool,
    concurrency: usize,
) -> Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            err("worker: stopping after the running job(s); a second signal stops at once");
            crate::service::exit_on_second_signal();
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let mut tasks = tokio::task::JoinSet::new();
    if !once {
        // Queued merges land beside the job loops, so a merge waiting for checks holds no job.
        let runner = runner.clone_with_progress(tokio::sync::mpsc::unbounded_channel().0);
        let (stop, poll) = (stop.clone(), options.poll);
        tasks.spawn(async move {
            merge_loop(&runner, stop, poll).await;
            Ok(())
        });
    }
    for _ in 0..concurrency {
        // Each loop prints what it does as it goes, as `codemill run` does.
        let (sink, printer) = printer();
        let runner = runner.clone_with_progress(sink);
        let options = options.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let result = async {
                loop {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return Ok::<(), codemill_runner::RunError>(());
                    }
                    match runner.work_once(&options).await {
                        Ok(Some(worked)) => err(&describe(&worked)),
                        // No job: a question for the assistant, if one waits.
                        Ok(None) if answer_one(&runner).await => {}
                        Ok(None) if once => return Ok(()),
                        Ok(None) => tokio::time::sleep(options.poll).await,
                        // The store is down (or another passing failure): say so and go on;
                        // the job this worker held is taken back by lease once the store is back.
                        Err(e) if !once => {
                            err(&format!("worker: {e}"));
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e),
                    }
                    if once {
                        return Ok(());
                    }
                }
            }
            .await;
            // Every progress line is out before the loop says it ended.
            drop(runner);
            let _ = printer.await;
            result
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| anyhow::anyhow!("worker task failed: {e}"))??;
    }
    Ok(())
}

/// Work that is not a job, done when no job waits: one pending question for the assistant,
/// and the guidance people approved on the dashboard. Whether there was any.
pub(crate) async fn answer_one(runner: &Runner) -> bool {
    let applied = match runner.apply_approved_guidance().await {
        Ok(rows) => {
            for g in &rows {
                err(&format!(
                    "worker: applied proposal {} on {}: {}",
                    g.id,
                    g.project,
                    g.result.as_deref().unwrap_or("done")
                ));
            }
            !rows.is_empty()
        }
        Err(e) => {
            err(&format!("worker: guidance: {e}"));
            false
        }
    };
    applied
        | match runner.assistant_once().await {
            Ok(Some(turn)) => {
                err(&format!(
                    "worker: answered assistant question {} on {}{}",
                    turn.id,
                    turn.project,
                    turn.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
                true
            }
            Ok(None) => false,
            Err(e) => {
                err(&format!("worker: assistant: {e}"));
                false
            }
        }
}

/// Land queued merges until `stop` (a queue another process works is left to it; one that
/// cannot be worked now is tried again after `poll`). A stop request ends a wait for checks at
/// once: the queue's entries stay queued for the next run.
pub(crate) async fn merge_loop(
    runner: &Runner,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    poll: std::time::Duration,
) {
    let stopping = tokio_util::sync::CancellationToken::new();
    let watch = {
        let (stop, stopping) = (stop.clone(), stopping.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            stopping.cancel();
        })
    };
    while !stopping.is_cancelled() {
        match runner.work_merge_queues_until("a worker", &stopping).await {
            Ok((_, 0)) => {}
            Ok((runs, settled)) => err(&format!(
                "worker: merge queue: {settled} entries settled with {runs} gate runs"
            )),
            Err(e) => err(&format!("worker: merge queue: {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stopping.cancelled() => {}
        }
    }
    watch.abort();
}

fn runner_with(runner: &Runner, tx: codemill_runner::ProgressSink) -> Runner {
    runner.clone_with_progress(tx)
}

fn money(x: f64) -> String {
    format!("${x:.4}")
}

/// `codemill status`: every ticket and its latest job.
pub async fn status(opened: &Opened, as_json: bool) -> Result<()> {
    let tickets = opened.store.tickets(None).await?;
    let today = codemill_store::day_of(chrono::Utc::now());
    let today_usd: f64 = opened
        .store
        .spend_by_project(&today)
        .await?
        .iter()
        .map(|p| p.usd)
        .sum();
    let mut rows = Vec::new();
    for t in &tickets {
        let latest = latest_state(opened, &t.key).await?;
        rows.push((t, latest));
    }
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|(t, latest)| {
                let job = latest.as_ref().map(|(id, s, _)| {
                    json!({"id": id.to_string(), "state": s.status(), "stage": s.stage.as_str(), "rounds": s.round,
                           "tokens": s.usage.total(), "cost_usd": s.cost_usd, "branch": s.branch, "commit": s.commit, "reason": s.reason})
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
        match latest {
            Some((_, s, _)) => out(&format!(
                "{:<10} {:<18} {:<18} {:>6} {:>9} {:>10}  {}",
                t.key.to_string(),
                s.status(),
                s.stage.as_str(),
                s.round,
                s.usage.total(),
                money(s.cost_usd),
                t.title
            )),
            None => out(&format!(
                "{:<10} {:<18} {:<18} {:>6} {:>9} {:>10}  {}",
                t.key.to_string(),
                "no job",
                "-",
                "-",
                "-",
                "-",
                t.title
            )),
        }
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
    let total: f64 = per_project.iter().map(|p| p.usd).sum();
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
    if as_json {
        let timeline: Vec<_> = journal
            .iter()
            .map(|e| json!({"seq": e.seq, "at": e.at.to_rfc3339(), "event": e.event}))
            .collect();
        print_json(&json!({
            "ticket": ticket,
            "job": {"id": job.to_string(), "trace_id": job.trace_id(),
                    "trace_url": opened.config.telemetry.trace_link(&job.trace_id()),
                    "state": state.status(), "stage": state.stage.as_str(), "rounds": state.round,
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
        state.status(),
        state.stage.as_str(),
        state.round
    ));
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

/// One line for a job a worker finished with: the ticket, the short job id and what happened.
pub fn describe(worked: &codemill_runner::worker::Worked) -> String {
    use codemill_runner::worker::Worked;
    match worked {
        Worked::Released { job, status, state } => {
            format!("{} (job {}): {status}", state.ticket, job.short())
        }
        Worked::Fenced { job, reason } => format!(
            "job {}: another worker owns it now ({reason}); stopped without further writes",
            job.short()
        ),
        Worked::Retried { job, error } => {
            format!("job {}: will be retried: {error}", job.short())
        }
    }
}
