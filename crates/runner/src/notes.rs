//! The comments codemill writes on a ticket, rendered from job state. Pure.

use codemill_core::ids::JobId;
use codemill_core::pipeline::{JobState, NoteKind, StopKind, note_name};
use codemill_core::triage::{Bucket, Decision};

/// The marker that makes a note idempotent: one per job and kind.
pub fn marker(job: JobId, kind: NoteKind) -> String {
    format!("codemill:{job}:{}", note_name(kind))
}

fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn decision_line(d: &Decision) -> String {
    format!(
        "- [{}] {} ({}; {}) — {}\n",
        d.finding.severity.as_str(),
        d.finding.title,
        d.finding.location(),
        d.finding.angles.join(", "),
        d.reason
    )
}

/// Triage decisions grouped by bucket, for the proposal and the PR body.
pub fn triage_summary(state: &JobState) -> String {
    let mut out = String::new();
    let gates = state.fixed_gates();
    if !gates.is_empty() {
        out.push_str("\nGates fixed by the fix rounds:\n");
        for (round, g) in &gates {
            out.push_str(&format!(
                "- `{}` ({}) failed in round {round}: {}\n",
                g.name,
                g.command,
                g.outcome()
            ));
        }
    }
    let fixed = state.fixed();
    if !fixed.is_empty() {
        out.push_str("\nFixed during review:\n");
        for (round, d) in &fixed {
            out.push_str(&format!(
                "- [{}] {} ({}), raised in round {round}\n",
                d.finding.severity.as_str(),
                d.finding.title,
                d.finding.location()
            ));
        }
    }
    let backlog = state.backlog();
    if !backlog.is_empty() {
        out.push_str("\nBacklog (become tickets after approval):\n");
        for d in backlog {
            out.push_str(&decision_line(d));
        }
    }
    let ignored: Vec<&Decision> = state
        .current_triage()
        .unwrap_or_default()
        .iter()
        .filter(|d| d.bucket == Bucket::Ignore)
        .collect();
    if !ignored.is_empty() {
        out.push_str("\nIgnored:\n");
        for d in ignored {
            out.push_str(&decision_line(d));
        }
    }
    out
}

/// Render the note of `kind`; `plan` is the plan text for the plan note.
pub fn render(kind: NoteKind, job: JobId, state: &JobState, plan: Option<&str>) -> String {
    match kind {
        NoteKind::Spec => match &state.spec {
            Some(spec) => {
                let next = if !state.questions.is_empty() {
                    "It waits for answers: edit the ticket and it is refined again.".to_string()
                } else if spec.queues_itself(state.refine.unwrap_or_default().auto_queue) {
                    "It goes to the build queue now.".to_string()
                } else {
                    format!(
                        "Accept it with `codemill refine accept {}` (or edit the ticket to refine it again).",
                        state.ticket
                    )
                };
                format!(
                    "{}\n_Refined by codemill (job {}). {next}_",
                    spec.render(),
                    job.short()
                )
            }
            None => "codemill refined this ticket.".into(),
        },
        NoteKind::Acknowledged => format!(
            "codemill picked up {} (job {}) and is checking whether it is ready to build.",
            state.ticket,
            job.short()
        ),
        NoteKind::Merged if !state.stack.is_empty() => {
            let listed: Vec<String> = state.stack.iter().map(|e| e.ticket.to_string()).collect();
            format!(
                "**Merged** — every sub-task of the stack landed, in order: {}; codemill is done with {}.",
                listed.join(", "),
                state.ticket
            )
        }
        NoteKind::Merged => format!(
            "**Merged** — the pull request{} was merged; codemill is done with {}.",
            pr_ref(state),
            state.ticket
        ),
        NoteKind::Closed => format!(
            "**Closed** — the pull request{} was closed without merging; codemill cleaned up and stopped on {}.",
            pr_ref(state),
            state.ticket
        ),
        NoteKind::NeedsInput => {
            let mut out = format!(
                "**codemill needs more input before it can start** (job {}). Please answer these questions in the ticket, then run it again:\n\n",
                job.short()
            );
            for (i, q) in state.questions.iter().enumerate() {
                out.push_str(&format!("{}. {q}\n", i + 1));
            }
            out
        }
        NoteKind::Started => format!(
            "codemill started working on {} (job {}).",
            state.ticket,
            job.short()
        ),
        NoteKind::Plan => format!(
            "**Plan** (codemill job {})\n\n{}",
            job.short(),
            plan.unwrap_or("(no plan text)").trim()
        ),
        NoteKind::Proposal => {
            let Some(p) = &state.proposal else {
                return "codemill: proposal ready.".into();
            };
            let mut out = format!(
                "**Proposal ready for approval** — commit `{}` on `{}` (base `{}`), {} fix round(s), {} tokens, ${:.4}.\n\n{}\n\n```\n{}\n```\n",
                short(&p.commit),
                p.branch,
                p.base,
                p.rounds,
                p.usage.total(),
                p.cost_usd,
                p.summary.trim(),
                p.diff_stat.trim_end()
            );
            out.push_str(&triage_summary(state));
            if !p.stack.is_empty() {
                out.push('\n');
                out.push_str(&stack_drawing(&p.stack, None));
                out.push_str(&format!(
                    "\nApproving `{}` approves the whole stack: one PR per sub-task, each based on the one below it.\n",
                    short(&p.commit)
                ));
            }
            match &state.subtask {
                Some(sub) => out.push_str(&format!(
                    "\nThis is sub-task {} of {}: it ships in {}'s stack, approved there; `codemill reject {}` \
                     sends this sub-task alone back for a fix round.",
                    sub.n, sub.parent_ticket, sub.parent_ticket, state.ticket
                )),
                None => out.push_str(&format!(
                    "\nApprove with `codemill approve {0}` or reject with `codemill reject {0} --reason ...`.",
                    state.ticket
                )),
            }
            out
        }
        NoteKind::Shipped => {
            let pr = match (&state.pr_url, state.pr_number) {
                (Some(url), Some(n)) => format!("draft PR [#{n}]({url}) opened"),
                _ => format!(
                    "PR #{} recorded",
                    state
                        .pr
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into())
                ),
            };
            let mut out = if state.stack.is_empty() {
                format!(
                    "**Shipped** — branch `{}` at `{}` pushed; {pr}. Approved by {}.",
                    state.branch.as_deref().unwrap_or("-"),
                    state.commit.as_deref().map(short).unwrap_or("-"),
                    state.approved_by.as_deref().unwrap_or("-"),
                )
            } else {
                format!(
                    "**Shipped** — the stack of {} sub-tasks pushed, one PR each (the top one {pr}). \
                     Approved by {}. Land it with `codemill merge {}`.\n\n{}",
                    state.stack.len(),
                    state.approved_by.as_deref().unwrap_or("-"),
                    state.ticket,
                    stack_drawing(&state.stack, None)
                )
            };
            if !state.backlog_tickets.is_empty() {
                out.push_str(&format!(
                    "\nBacklog tickets: {}.",
                    state.backlog_tickets.join(", ")
                ));
            }
            out
        }
        NoteKind::Stopped => stopped(job, state),
    }
}

fn stopped(job: JobId, state: &JobState) -> String {
    let rejected = matches!(state.stop, Some(StopKind::Rejected | StopKind::Cancelled));
    let mut out = if rejected {
        let title = if state.stop == Some(StopKind::Cancelled) {
            "Cancelled"
        } else {
            "Rejected"
        };
        format!(
            "**{title}** (codemill job {}): {}\n",
            job.short(),
            state.reason.as_deref().unwrap_or("-")
        )
    } else {
        format!(
            "**Needs attention** (codemill job {}): {}\n",
            job.short(),
            state.reason.as_deref().unwrap_or("unknown reason")
        )
    };
    if !rejected {
        let failing = state.failing_gates();
        if !failing.is_empty() {
            out.push_str("\nFailing gates:\n");
            for g in failing {
                out.push_str(&format!(
                    "\n`{}` ({}):\n```\n{}\n```\n",
                    g.command,
                    g.outcome(),
                    g.error.clone().unwrap_or_else(|| tail(&g.output, 30))
                ));
            }
        }
        let open = state.fix_now();
        if !open.is_empty() {
            out.push_str("\nOpen findings (fix now):\n");
            for d in open {
                out.push_str(&decision_line(d));
            }
        }
    }
    out.push_str(&format!(
        "\nFix rounds: {}. Tokens: {}. Cost: ${:.4}.\n",
        state.round,
        state.usage.total(),
        state.cost_usd
    ));
    match &state.wip {
        Some((r, c)) => out.push_str(&format!(
            "Partial work is kept on `{r}` (`{}`).\n",
            short(c)
        )),
        None => out.push_str("There was no partial work to keep.\n"),
    }
    if !rejected {
        out.push_str(&format!(
            "Run `codemill run {}` to start a new attempt after editing the ticket.",
            state.ticket
        ));
    }
    out
}

fn pr_ref(state: &JobState) -> String {
    match (&state.pr_url, state.pr_number) {
        (Some(url), Some(n)) => format!(" [#{n}]({url})"),
        _ => String::new(),
    }
}

/// The one progress comment of an outside ticket, edited in place at every step: where the job
/// stands, the latest note, and the plan once there is one.
pub fn progress(
    kind: NoteKind,
    job: JobId,
    state: &JobState,
    plan: Option<&str>,
    status: codemill_core::pipeline::TicketStatus,
) -> String {
    let mut out = format!(
        "**codemill** · job `{}` · {} · cost so far ${:.4}\n\n",
        job.short(),
        status.as_str().replace('_', " "),
        state.cost_usd
    );
    if kind == NoteKind::Spec {
        // The spec has a comment of its own, which outlives this one.
        out.push_str("codemill refined this idea: the spec is in its own comment on this ticket.");
    } else {
        out.push_str(render(kind, job, state, plan).trim());
    }
    if !matches!(kind, NoteKind::Plan | NoteKind::Spec)
        && let Some(plan) = plan.filter(|p| !p.trim().is_empty())
    {
        out.push_str(&format!("\n\n**Plan**\n\n{}", plan.trim()));
    }
    out.push('\n');
    out
}

/// The reply on the PR after a feedback round.
pub fn feedback_reply(state: &JobState, summary: Option<&str>) -> String {
    use codemill_core::pipeline::FeedbackResult;
    let what = match &state.feedback_result {
        Some(FeedbackResult::Pushed { commit }) => format!(
            "Addressed in `{}`, pushed to `{}`.",
            short(commit),
            state.branch.as_deref().unwrap_or("this branch")
        ),
        Some(FeedbackResult::NoChange) => {
            "Looked at this but made no change to the code.".to_string()
        }
        Some(FeedbackResult::Failed { reason }) => {
            format!("Could not address this automatically: {reason}. Nothing was pushed.")
        }
        None => "No result.".to_string(),
    };
    let mut out = format!("**codemill** (round {}): {what}", state.feedback_round);
    if let Some(s) = summary.map(str::trim).filter(|s| !s.is_empty()) {
        out.push_str(&format!("\n\n> {}", s.replace('\n', "\n> ")));
    }
    let failing: Vec<&str> = state
        .failing_gates()
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    if !failing.is_empty() {
        out.push_str(&format!("\n\nFailing gates: {}.", failing.join(", ")));
    }
    out
}

/// A stack as a numbered list, bottom first, marking entry `this` when given.
pub(crate) fn stack_drawing(
    stack: &[codemill_core::subtasks::StackEntry],
    this: Option<usize>,
) -> String {
    let mut out = String::from(
        "**Stack**, bottom first (each PR is based on the branch of the one before it; the first on the default branch):\n\n",
    );
    for (i, e) in stack.iter().enumerate() {
        let mark = if this == Some(i) { " ← this PR" } else { "" };
        out.push_str(&format!(
            "{}. `{}` — {} ({}) `{}`{mark}\n",
            i + 1,
            e.branch,
            e.title,
            e.ticket,
            e.commit.get(..12).unwrap_or(&e.commit)
        ));
    }
    out
}
