//! `codemill knowledge add|list|show|remove|search`: a project's knowledge from the terminal,
//! every entry shown with its provenance (tag, sources, author) and, when stale, why.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use codemill_store::{KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge};

use crate::commands::Opened;
use crate::output::{err, json, out};

/// The longest title and body accepted.
const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 20_000;

fn registered(opened: &Opened, project: &str) -> Result<()> {
    if opened.config.projects.contains_key(project) {
        Ok(())
    } else {
        Err(anyhow!(
            "no project {project:?} (see `codemill project list`)"
        ))
    }
}

/// `codemill knowledge ingest PROJECT`.
pub async fn ingest(opened: &Opened, project: &str, as_json: bool) -> Result<ExitCode> {
    registered(opened, project)?;
    let repo = &opened.config.projects[project].repo;
    let report = codemill_runner::knowledge::ingest(
        &opened.store,
        &codemill_git::Git::new(),
        &opened.home.clone_dir(project),
        repo,
        project,
    )
    .await
    .map_err(|e| anyhow!("ingesting {project}: {e}"))?;
    if as_json {
        json(&serde_json::to_value(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    out(&format!(
        "Read {} file(s) at {}: {} added, {} updated, {} removed, {} unchanged",
        report.files,
        &report.commit[..report.commit.len().min(12)],
        report.added,
        report.updated,
        report.removed,
        report.unchanged
    ));
    for (id, why) in &report.stale {
        out(&format!("#{id} is stale: {why}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `knowledge add` was given.
pub struct Add {
    pub project: String,
    pub title: String,
    pub body: Option<String>,
    pub body_file: Option<PathBuf>,
    pub tag: String,
    pub sources: Vec<String>,
}

pub async fn add(opened: &Opened, add: Add) -> Result<ExitCode> {
    registered(opened, &add.project)?;
    let title = add.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        bail!("--title must be 1–{MAX_TITLE} characters");
    }
    let body = match (add.body, add.body_file) {
        (Some(b), None) => b,
        (None, Some(f)) => {
            std::fs::read_to_string(&f).map_err(|e| anyhow!("--body-file {}: {e}", f.display()))?
        }
        _ => bail!("give the entry's text with --body TEXT or --body-file FILE"),
    };
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_BODY {
        bail!("the body must be 1–{MAX_BODY} characters");
    }
    // People write human entries; `verified` comes from a check against the code, `inferred`
    // from agents.
    let tag = match KnowledgeTag::parse(&add.tag) {
        Some(KnowledgeTag::Human) => KnowledgeTag::Human,
        Some(other) => bail!(
            "--tag {}: entries added by hand are `human` (verified ones come from a check \
             against the code, inferred ones from agents)",
            other.as_str()
        ),
        None => bail!("--tag {:?}: use human", add.tag),
    };
    let sources = add
        .sources
        .iter()
        .map(|s| KnowledgeSource::parse(s).map_err(|e| anyhow!("--source {e}")))
        .collect::<Result<Vec<_>>>()?;
    let author = person();
    let row = opened
        .store
        .add_knowledge(&NewKnowledge {
            project: &add.project,
            title,
            body,
            tag,
            sources: &sources,
            author: &author,
            origin: None,
        })
        .await?;
    out(&format!(
        "Added knowledge #{} to {} ({})",
        row.id,
        row.project,
        row.tag.as_str()
    ));
    // Tie the cited places to the default branch now, so a later change to them shows.
    let repo = &opened.config.projects[&add.project].repo;
    match codemill_runner::knowledge::pin_sources(
        &opened.store,
        &codemill_git::Git::new(),
        &opened.home.clone_dir(&add.project),
        repo,
        &row,
    )
    .await
    {
        Ok(untied) => {
            for why in untied {
                err(&format!(
                    "warning: --source {why}: it is checked at the next `codemill knowledge ingest`"
                ));
            }
        }
        Err(e) => err(&format!(
            "warning: the cited places could not be read now ({e}); the next `codemill knowledge ingest` ties them to a commit"
        )),
    }
    Ok(ExitCode::SUCCESS)
}

fn line(k: &KnowledgeRow) -> String {
    let stale = if k.stale.is_some() { " [stale]" } else { "" };
    format!("#{:<5} {:<9} {}{stale}", k.id, k.tag.as_str(), k.title)
}

pub async fn list(
    opened: &Opened,
    project: &str,
    tag: Option<&str>,
    stale: bool,
    as_json: bool,
) -> Result<ExitCode> {
    registered(opened, project)?;
    let tag = tag
        .map(|t| {
            KnowledgeTag::parse(t)
                .ok_or_else(|| anyhow!("--tag {t:?}: use verified, inferred or human"))
        })
        .transpose()?;
    let entries: Vec<_> = opened
        .store
        .knowledge_of(project)
        .await?
        .into_iter()
        .filter(|k| tag.is_none_or(|t| k.tag == t) && (!stale || k.stale.is_some()))
        .collect();
    if as_json {
        json(&serde_json::to_value(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() && (tag.is_some() || stale) {
        out("No knowledge entries match.");
    } else if entries.is_empty() {
        out(&format!(
            "No knowledge in {project} yet. Add some with `codemill knowledge add {project} --title T --body B`."
        ));
    }
    for k in &entries {
        out(&line(k));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(opened: &Opened, id: i64, as_json: bool) -> Result<ExitCode> {
    let Some(k) = opened.store.knowledge(id).await? else {
        bail!("no knowledge entry #{id} (see `codemill knowledge list PROJECT`)");
    };
    if as_json {
        json(&serde_json::to_value(&k)?);
        return Ok(ExitCode::SUCCESS);
    }
    out(&format!("#{} {} ({})", k.id, k.title, k.project));
    out(&format!(
        "tag: {} · by {} · updated {}",
        k.tag.as_str(),
        k.author,
        k.updated_at.format("%Y-%m-%d %H:%M")
    ));
    for s in &k.sources {
        out(&format!("source: {s}"));
    }
    if let Some(why) = &k.stale {
        out(&format!("STALE: {why}"));
    }
    out("");
    out(&k.body);
    Ok(ExitCode::SUCCESS)
}

/// Who a person at this terminal is, for an entry's author.
fn person() -> String {
    format!(
        "user:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

pub async fn edit(
    opened: &Opened,
    id: i64,
    title: Option<String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
    tag: Option<String>,
) -> Result<ExitCode> {
    let Some(k) = opened.store.knowledge(id).await? else {
        bail!("no knowledge entry #{id} (see `codemill knowledge list PROJECT`)");
    };
    let body = match (body, body_file) {
        (Some(b), None) => Some(b),
        (None, Some(f)) => Some(
            std::fs::read_to_string(&f).map_err(|e| anyhow!("--body-file {}: {e}", f.display()))?,
        ),
        _ => None,
    };
    if title.is_none() && body.is_none() && tag.is_none() {
        bail!("say what changes: --title, --body/--body-file or --tag human|verified");
    }
    let new_title = title
        .as_deref()
        .map(str::trim)
        .unwrap_or(&k.title)
        .to_string();
    let new_body = body
        .as_deref()
        .map(str::trim)
        .unwrap_or(&k.body)
        .to_string();
    if new_title.is_empty() || new_title.chars().count() > MAX_TITLE {
        bail!("--title must be 1–{MAX_TITLE} characters");
    }
    if new_body.is_empty() || new_body.chars().count() > MAX_BODY {
        bail!("the body must be 1–{MAX_BODY} characters");
    }
    let rewritten = title.is_some() || body.is_some();
    // A person who rewrote or checked an entry vouches for it now: it is current again.
    opened
        .store
        .update_knowledge(id, &new_title, &new_body, &k.sources, None)
        .await?;
    let tag = match tag.as_deref() {
        Some("verified") => KnowledgeTag::Verified,
        Some(_) => KnowledgeTag::Human,
        None if rewritten => KnowledgeTag::Human,
        None => k.tag,
    };
    opened.store.set_knowledge_tag(id, tag, &person()).await?;
    out(&format!(
        "Knowledge #{id} is now {} and current",
        tag.as_str()
    ));
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(opened: &Opened, id: i64) -> Result<ExitCode> {
    if opened.store.remove_knowledge(id).await? {
        out(&format!("Removed knowledge #{id}"));
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!("no knowledge entry #{id}"))
    }
}

pub async fn search(
    opened: &Opened,
    project: &str,
    query: &str,
    limit: u32,
    as_json: bool,
) -> Result<ExitCode> {
    registered(opened, project)?;
    let hits = opened.store.search_knowledge(project, query, limit).await?;
    if as_json {
        json(&serde_json::to_value(&hits)?);
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        out("Nothing found.");
    }
    for h in &hits {
        out(&line(&h.entry));
        out(&format!("        {}", h.excerpt.replace('\n', " ")));
    }
    Ok(ExitCode::SUCCESS)
}
