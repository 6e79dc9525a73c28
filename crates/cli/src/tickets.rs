//! `codemill ticket` (the local tracker's tickets) and `codemill idea add` (an idea for the
//! refinement queue, in the project's own tracker).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use codemill_core::ids::ProjectName;
use codemill_runner::Home;
use serde_json::json;

use crate::TicketCommand;
use crate::commands::{Opened, key};
use crate::output::{json as print_json, out};

pub async fn ticket(home: Home, cmd: TicketCommand) -> Result<ExitCode> {
    let opened = Opened::open(home).await?;
    match cmd {
        TicketCommand::Add {
            project,
            title,
            body,
            body_file,
            labels,
        } => {
            let t = add_ticket(&opened, &project, &title, body, body_file, &labels, false).await?;
            out(&format!("Created {}: {}", t.key, t.title));
            Ok(ExitCode::SUCCESS)
        }
        TicketCommand::Edit {
            key: k,
            title,
            body,
            body_file,
        } => {
            let k = key(&k)?;
            let body = read_body(body, body_file)?;
            if title.is_none() && body.is_none() {
                bail!("nothing to change: pass --title, --body or --body-file");
            }
            let title = title.as_deref().map(checked_title).transpose()?;
            let t = opened
                .store
                .edit_ticket(&k, title, body.as_deref())
                .await
                .map_err(|e| match e {
                    codemill_store::StoreError::NoTicket(_) => {
                        anyhow!("no ticket {k} (see `codemill ticket list`)")
                    }
                    other => other.into(),
                })?;
            out(&format!("Updated {}: {}", t.key, t.title));
            Ok(ExitCode::SUCCESS)
        }
        TicketCommand::List { project, json } => {
            let tickets = opened.store.tickets(project.as_deref()).await?;
            if json {
                print_json(&serde_json::to_value(&tickets)?);
            } else if tickets.is_empty() {
                out("No tickets.");
            } else {
                for t in tickets {
                    out(&format!(
                        "{:<10} {:<18} {}",
                        t.key.to_string(),
                        t.status.as_str(),
                        t.title
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketCommand::Comment {
            key: k,
            body,
            body_file,
            author,
        } => {
            let k = key(&k)?;
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading --body-file {}", f.display()))?,
                (None, None) => bail!("nothing to say: pass --body or --body-file"),
            };
            if body.trim().is_empty() {
                bail!("the comment is empty");
            }
            let author = author
                .or_else(|| std::env::var("USER").ok())
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| "human".into());
            opened
                .store
                .add_comment(&k, author.trim(), None, &body)
                .await
                .map_err(|e| match e {
                    codemill_store::StoreError::NoTicket(_) => {
                        anyhow!("no ticket {k} (see `codemill ticket list`)")
                    }
                    other => other.into(),
                })?;
            out(&format!("Commented on {k} as {}", author.trim()));
            Ok(ExitCode::SUCCESS)
        }
        TicketCommand::Show { key: k, json } => {
            let k = key(&k)?;
            let t = opened
                .store
                .ticket(&k)
                .await?
                .ok_or_else(|| anyhow!("no ticket {k} (see `codemill ticket list`)"))?;
            let comments = opened.store.comments(&k).await?;
            let changes = opened.store.status_changes(&k).await?;
            if json {
                print_json(&json!({"ticket": t, "comments": comments, "status_changes": changes}));
                return Ok(ExitCode::SUCCESS);
            }
            out(&format!(
                "{}  {}\nstatus: {}",
                t.key,
                t.title,
                t.status.as_str()
            ));
            if !t.labels.is_empty() {
                out(&format!("labels: {}", t.labels.join(", ")));
            }
            if !t.body.trim().is_empty() {
                out(&format!("\n{}\n", t.body.trim_end()));
            }
            if !changes.is_empty() {
                out("\nStatus changes:");
                for c in &changes {
                    out(&format!(
                        "  {}  {} -> {} (by {})",
                        c.created_at.format("%Y-%m-%d %H:%M:%S"),
                        c.from,
                        c.to,
                        c.actor
                    ));
                }
            }
            if !comments.is_empty() {
                out("\nComments:");
                for c in &comments {
                    out(&format!(
                        "\n--- {} at {}\n{}",
                        c.author,
                        c.created_at.format("%Y-%m-%d %H:%M:%S"),
                        c.body.trim_end()
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A new ticket of the local tracker, from `ticket add` or `idea add` (`local_only`: refused
/// for a project whose tickets live in an outside tracker).
async fn add_ticket(
    opened: &Opened,
    project: &str,
    title: &str,
    body: Option<String>,
    body_file: Option<PathBuf>,
    labels: &[String],
    local_only: bool,
) -> Result<codemill_store::Ticket> {
    let project: ProjectName = project.parse()?;
    let Some(settings) = opened.config.projects.get(project.as_str()) else {
        bail!(
            "no project {project}; register it with `codemill project add {project} --repo PATH_OR_URL`"
        );
    };
    if local_only
        && !matches!(
            settings.tracker,
            codemill_core::config::TrackerSettings::Local
        )
    {
        bail!(
            "project {project} keeps its tickets in an outside tracker; the refinement queue works on the local tracker"
        );
    }
    let title = checked_title(title)?;
    let body = read_body(body, body_file)?.unwrap_or_default();
    let labels = checked_labels(labels)?;
    Ok(opened
        .store
        .create_ticket(&project, title, &body, &labels)
        .await?)
}

/// `codemill idea add`: a ticket labelled for refinement in the local tracker, queued.
pub async fn idea_add(
    home: Home,
    project: String,
    title: String,
    body: Option<String>,
    body_file: Option<PathBuf>,
) -> Result<ExitCode> {
    let opened = Opened::open(home).await?;
    let outside = opened
        .config
        .projects
        .get(&project)
        .is_some_and(|p| !matches!(p.tracker, codemill_core::config::TrackerSettings::Local));
    if outside {
        // The idea goes to the project's own tracker, labelled for refinement, and is queued.
        let body = read_body(body, body_file)?.unwrap_or_default();
        let title = checked_title(&title)?;
        let gateway = codemill_runner::inbound::Gateway::new(
            opened.store.clone(),
            opened.config.clone(),
            opened.outside.clone(),
        );
        let (issue, queued) = gateway.add_idea(&project, title.trim(), &body).await?;
        match queued {
            codemill_runner::inbound::Inbound::Queued { ticket, job, .. } => out(&format!(
                "{ticket}: idea added to the tracker as {issue} and queued for refinement as job {job}; `codemill run {ticket}` refines it here, or a worker picks it up."
            )),
            other => bail!("idea added to the tracker as {issue}, but not queued: {other:?}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let labels = [codemill_core::refine::REFINE_LABEL.to_string()];
    let t = add_ticket(&opened, &project, &title, body, body_file, &labels, true).await?;
    let options =
        codemill_runner::control::JobOptions::for_project(&opened.config, t.key.project());
    let (job, _) = codemill_runner::control::enqueue(&opened.store, &t.key, options).await?;
    out(&format!(
        "{}: idea added and queued for refinement as job {job}; `codemill run {}` refines it here, or a worker picks it up.",
        t.key, t.key
    ));
    Ok(ExitCode::SUCCESS)
}

/// The longest title kept: Jira's summary limit (GitHub allows 256), so a ticket can move to
/// any tracker.
const MAX_TITLE_CHARS: usize = 255;

/// The most text a ticket's body keeps; a description is prose, and every agent prompt and
/// page carries it.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// A title as given, trimmed: one line, not empty, within [`MAX_TITLE_CHARS`].
fn checked_title(title: &str) -> Result<&str> {
    let title = title.trim();
    if title.is_empty() {
        bail!("--title must not be empty");
    }
    if title.chars().any(char::is_control) {
        bail!("--title must be one line of text (it has a line break or control character)");
    }
    let n = title.chars().count();
    if n > MAX_TITLE_CHARS {
        bail!("--title is {n} characters; at most {MAX_TITLE_CHARS}");
    }
    Ok(title)
}

/// The body from `--body` or `--body-file`, within [`MAX_BODY_BYTES`].
fn read_body(body: Option<String>, body_file: Option<PathBuf>) -> Result<Option<String>> {
    let body = match (body, body_file) {
        (Some(b), _) => b,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading --body-file {}", f.display()))?,
        (None, None) => return Ok(None),
    };
    if body.len() > MAX_BODY_BYTES {
        bail!(
            "the body is {} bytes; at most {MAX_BODY_BYTES} are kept (link to longer material instead)",
            body.len()
        );
    }
    Ok(Some(body))
}

/// Labels as given, trimmed, each once; an empty one is refused.
fn checked_labels(labels: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        let label = label.trim();
        if label.is_empty() || label.chars().any(char::is_control) {
            bail!("--label {label:?}: a label is one word or phrase on one line");
        }
        if !out.iter().any(|l| l == label) {
            out.push(label.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn titles_bodies_and_labels_are_checked() {
        assert_eq!(checked_title("  Fix it ").unwrap(), "Fix it");
        for bad in ["", "  ", "two\nlines", "tab\there"] {
            assert!(checked_title(bad).is_err(), "{bad:?}");
        }
        assert!(checked_title(&"é".repeat(255)).is_ok());
        let long = checked_title(&"x".repeat(256)).unwrap_err().to_string();
        assert!(long.contains("256 characters; at most 255"), "{long}");
        assert_eq!(read_body(None, None).unwrap(), None);
        let big = read_body(Some("x".repeat(MAX_BODY_BYTES + 1)), None).unwrap_err();
        assert!(big.to_string().contains("at most 262144"), "{big}");
        assert_eq!(
            checked_labels(&[" codemill".into(), "codemill".into(), "ui".into()]).unwrap(),
            ["codemill", "ui"]
        );
        assert!(checked_labels(&["".into()]).is_err());
    }
}
