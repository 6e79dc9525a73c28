//! `codemill learn PROJECT`: learn from what people changed in codemill's work now, and show,
//! apply or reject the guidance proposed (`--list`, `--apply ID`, `--reject ID`), or the
//! week-by-week metrics (`--metrics`).

use std::process::ExitCode;

use anyhow::{Result, bail};
use codemill_store::GuidanceRow;

use crate::commands::{Opened, whoami};
use crate::output::{json, out};

/// What `codemill learn` was asked to do.
pub struct Request {
    pub project: String,
    pub list: bool,
    pub apply: Option<i64>,
    pub reject: Option<i64>,
    pub metrics: bool,
    pub json: bool,
}

fn show(g: &GuidanceRow) {
    out(&format!(
        "#{} [{}] {}{}",
        g.id,
        g.state.as_str(),
        g.summary,
        g.result
            .as_deref()
            .map(|r| format!(" → {r}"))
            .unwrap_or_default()
    ));
    if let Ok(p) = serde_json::from_str::<codemill_core::learn::Guidance>(&g.proposal) {
        out(&format!("  why: {}", p.why()));
        out(&format!("  from: {}", p.cites().join(", ")));
    }
    for line in g.diff.lines() {
        out(&format!("  {line}"));
    }
}

pub async fn run(opened: &mut Opened, request: Request) -> Result<ExitCode> {
    let project = request.project.clone();
    if !opened.config.projects.contains_key(&project) {
        bail!(
            "no project {project}; register it with `codemill project add {project} --repo PATH_OR_URL`"
        );
    }
    if request.metrics {
        let weeks = codemill_runner::learn::metrics(&opened.store, &project).await?;
        if request.json {
            json(&serde_json::to_value(&weeks)?);
        } else if weeks.is_empty() {
            out(&format!(
                "no merged or rejected work on project {project} in the last 90 days"
            ));
        } else {
            out("week      merged  unchanged  human lines/merged  rejected  fix rounds/ticket");
            for w in &weeks {
                out(&format!(
                    "{:<9} {:>6}  {:>8.0}%  {:>18.1}  {:>8}  {:>17.2}",
                    w.week,
                    w.merged,
                    w.unchanged_share * 100.0,
                    w.human_lines_per_merged,
                    w.rejected,
                    w.fix_rounds_per_ticket
                ));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if request.list {
        let rows = opened.store.guidance(Some(&project)).await?;
        if request.json {
            json(&serde_json::to_value(&rows)?);
        } else if rows.is_empty() {
            out(&format!(
                "no guidance proposed for project {project} yet; run `codemill learn {project}`"
            ));
        }
        for g in rows.iter().filter(|_| !request.json) {
            show(g);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(id) = request.reject {
        codemill_runner::learn::reject(&opened.store, id, &whoami()).await?;
        out(&format!("proposal {id} rejected; nothing was changed"));
        return Ok(ExitCode::SUCCESS);
    }
    let runner = opened.runner().await?;
    if let Some(id) = request.apply {
        let row = runner.apply_guidance(id, Some(&whoami())).await?;
        if request.json {
            json(&serde_json::to_value(&row)?);
        } else {
            out(&format!(
                "proposal {id} applied: {}",
                row.result.as_deref().unwrap_or("done")
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let learned = runner.learn(&project).await?;
    if request.json {
        json(&serde_json::to_value(&learned)?);
        return Ok(ExitCode::SUCCESS);
    }
    out(&format!(
        "looked at {} outcome(s), {} changed by people; {} new proposal(s){}; ${:.4}",
        learned.outcomes,
        learned.changed,
        learned.proposals.len(),
        if learned.repeated > 0 {
            format!(", {} already known", learned.repeated)
        } else {
            String::new()
        },
        learned.cost_usd
    ));
    if let Some(note) = &learned.note {
        out(note);
    }
    for g in &learned.proposals {
        show(g);
    }
    if !learned.proposals.is_empty() {
        out(&format!(
            "apply one with `codemill learn {project} --apply ID`, or reject it with `--reject ID`"
        ));
    }
    Ok(ExitCode::SUCCESS)
}
