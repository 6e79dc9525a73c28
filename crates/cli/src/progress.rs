//! Live progress of a running job, the worker loops of `work` and `serve`, and one line per
//! job a worker finished with.

use std::time::Instant;

use anyhow::Result;
use codemill_core::agent::AgentEvent;
use codemill_core::ids::{JobId, TicketKey};
use codemill_core::pipeline::JobState;
use codemill_runner::{Progress, Runner};

use crate::output::err;

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
