//! `codemill assistant PROJECT`: the product-owner assistant in the terminal. Each line read is
//! a question in one conversation; `/save N` saves draft N of the last answer to the project's
//! tracker. `--ask` asks one question (in `--conversation`, to go on with one), `--save TURN.N`
//! saves a draft, `--list` shows the project's conversations.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Result, bail};
use codemill_store::AssistantTurn;

use crate::commands::{Opened, whoami};
use crate::output::{err, json, out};

/// What `codemill assistant` was asked to do.
pub struct Request {
    pub project: String,
    pub ask: Option<String>,
    pub conversation: Option<String>,
    pub save: Option<String>,
    pub list: bool,
    pub json: bool,
}

pub async fn run(opened: &mut Opened, request: Request) -> Result<ExitCode> {
    let Some(settings) = opened.config.projects.get(&request.project) else {
        bail!(
            "no project {}; register it with `codemill project add {} --repo PATH_OR_URL`",
            request.project,
            request.project
        );
    };
    let budget = settings.assistant.budget_usd;
    let project = request.project.clone();
    if request.list {
        let list = opened.store.assistant_conversations(Some(&project)).await?;
        if request.json {
            json(&serde_json::to_value(&list)?);
        } else if list.is_empty() {
            out(&format!(
                "no assistant conversations on project {project} yet"
            ));
        }
        for c in list.iter().filter(|_| !request.json) {
            out(&format!(
                "{}  {} question(s)  ${:.4}  {}  {}",
                c.conversation,
                c.turns,
                c.cost_usd,
                c.last_at.format("%Y-%m-%d %H:%M"),
                first_line(&c.first_question)
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runner = opened.runner().await?;
    if let Some(spec) = &request.save {
        let (turn, n) = parse_save(spec)?;
        let key = runner.save_assistant_draft(turn, n, &whoami()).await?;
        if request.json {
            json(&serde_json::json!({"turn": turn, "draft": n, "ticket": key}));
        } else {
            out(&format!("draft {n} of turn {turn} is ticket {key}"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(question) = &request.ask {
        let turn = runner
            .ask_assistant(
                &project,
                request.conversation.as_deref(),
                question,
                &whoami(),
            )
            .await?;
        if request.json {
            json(&serde_json::to_value(&turn)?);
        } else {
            show(&project, &turn, budget, opened).await?;
        }
        return Ok(if turn.error.is_some() {
            ExitCode::from(4)
        } else {
            ExitCode::SUCCESS
        });
    }
    // A conversation: one question per line until an empty line, `/quit` or the end of input.
    let mut conversation = request.conversation.clone();
    let mut last: Option<AssistantTurn> = None;
    err(&format!(
        "codemill assistant · project {project} · budget ${budget:.2} per conversation\nAsk a question (one line). `/save N` saves draft N of the last answer; an empty line or `/quit` ends."
    ));
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() || line == "/quit" {
            break;
        }
        if let Some(n) = line.strip_prefix("/save") {
            let Some(turn) = &last else {
                err("nothing to save yet: ask for a draft first");
                continue;
            };
            match n.trim().parse::<i64>() {
                Ok(n) => match runner.save_assistant_draft(turn.id, n, &whoami()).await {
                    Ok(key) => out(&format!("draft {n} saved as ticket {key}")),
                    Err(e) => err(&format!("error: {e}")),
                },
                Err(_) => err("`/save N` takes the number of a draft, e.g. `/save 1`"),
            }
            continue;
        }
        let turn = runner
            .ask_assistant(&project, conversation.as_deref(), line, &whoami())
            .await?;
        conversation = Some(turn.conversation.clone());
        show(&project, &turn, budget, opened).await?;
        last = Some(turn);
    }
    Ok(ExitCode::SUCCESS)
}

/// An answer as a person reads it: the text, its drafts with how to save them, and the spend.
async fn show(project: &str, turn: &AssistantTurn, budget: f64, opened: &Opened) -> Result<()> {
    let shown = codemill_core::assistant::shown(&turn.answer);
    if !shown.is_empty() {
        out(&shown);
    }
    if !turn.drafts.is_empty() {
        out("\nDrafts:");
        for d in &turn.drafts {
            let state = match &d.ticket {
                Some(k) => format!("saved as {k}"),
                None => format!(
                    "save: `/save {}` or `codemill assistant {project} --save {}.{}`",
                    d.n, turn.id, d.n
                ),
            };
            out(&format!("  {}. {} ({state})", d.n, d.title));
        }
    }
    if let Some(e) = &turn.error {
        err(&format!("error: {e}"));
    }
    let total = codemill_core::cost::sum_usd(
        opened
            .store
            .assistant_turns(&turn.conversation)
            .await?
            .iter()
            .map(|t| t.cost_usd),
    );
    err(&format!(
        "turn {} · ${:.4} · conversation {} · ${total:.4} of ${budget:.2}",
        turn.id, turn.cost_usd, turn.conversation
    ));
    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// `TURN.N`, e.g. `12.1`.
fn parse_save(spec: &str) -> Result<(i64, i64)> {
    let parsed = spec
        .split_once('.')
        .and_then(|(t, n)| Some((t.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some(p) => Ok(p),
        None => bail!(
            "--save takes TURN.N (the turn's number, a dot, the draft's number), e.g. 12.1; found {spec:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_takes_turn_dot_draft() {
        assert_eq!(parse_save("12.1").ok(), Some((12, 1)));
        let e = parse_save("12")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("TURN.N") && e.contains("\"12\""), "{e}");
    }
}
