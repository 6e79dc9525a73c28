//! `codemill knowledge ingest`: the project's documentation on its default branch becomes
//! knowledge, one `human` entry per Markdown section with the file, lines, commit and a hash of
//! the lines as its source. Run again, it updates the sections that changed, removes entries
//! whose section is gone, and marks every other entry that cites a changed or deleted place as
//! stale (its tag stays; the reason names the file and the commit). An unchanged repository
//! changes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use codemill_core::knowledge::{is_knowledge_file, lines_of, sections};
use codemill_git::Git;
use codemill_store::{KnowledgeRow, KnowledgeSource, KnowledgeTag, NewKnowledge, Store};
use sha2::Digest;

/// The author of ingested entries.
const AUTHOR: &str = "ingest";

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    /// The default branch's commit that was read.
    pub commit: String,
    pub files: usize,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Sources of other entries tied to this commit for the first time.
    pub pinned: usize,
    /// Entries found stale now, with why.
    pub stale: Vec<(i64, String)>,
}

fn hash(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// One section as an entry would hold it.
struct Wanted {
    title: String,
    body: String,
    source: KnowledgeSource,
}

/// The repository's default branch and its latest commit, fetched into `clone`.
async fn default_tip(git: &Git, clone: &Path, repo: &str) -> Result<(String, String), String> {
    git.ensure_clone_and_fetch(repo, clone)
        .await
        .map_err(|e| e.to_string())?;
    let branch = git.default_branch(clone).await.map_err(|e| e.to_string())?;
    let commit = git
        .rev_parse(clone, &format!("refs/remotes/origin/{branch}"))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the repository has no branch {branch}"))?;
    Ok((branch, commit))
}

/// Ingest `project`'s documentation from its repository `repo` (cloned or fetched into `clone`).
pub async fn ingest(
    store: &Store,
    git: &Git,
    clone: &Path,
    repo: &str,
    project: &str,
) -> Result<IngestReport, String> {
    let (_, commit) = default_tip(git, clone, repo).await?;
    let files: HashSet<String> = git
        .list_files(clone, &commit)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let mut texts: HashMap<String, String> = HashMap::new();
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut report = IngestReport {
        commit: commit.clone(),
        ..IngestReport::default()
    };
    let mut docs: Vec<&String> = files.iter().filter(|p| is_knowledge_file(p)).collect();
    docs.sort();
    for path in docs {
        let Some(text) = git
            .read_file_at(clone, &commit, path)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        report.files += 1;
        for s in sections(path, &text) {
            let cited = lines_of(&text, s.first_line, s.last_line).unwrap_or_default();
            wanted.insert(
                format!("{path}#{}", s.slug),
                Wanted {
                    title: if s.heading == *path {
                        path.clone()
                    } else {
                        format!("{path} › {}", s.heading)
                    },
                    body: s.body,
                    source: KnowledgeSource {
                        path: path.clone(),
                        lines: Some((s.first_line, s.last_line)),
                        commit: Some(commit.clone()),
                        hash: Some(hash(&cited)),
                    },
                },
            );
        }
        texts.insert(path.clone(), text);
    }
    let existing = store
        .knowledge_of(project)
        .await
        .map_err(|e| e.to_string())?;
    let mut by_origin: HashMap<String, KnowledgeRow> = HashMap::new();
    let mut others = Vec::new();
    for k in existing {
        match k.origin.clone() {
            Some(o) => {
                by_origin.insert(o, k);
            }
            None => others.push(k),
        }
    }
    for (origin, w) in &wanted {
        match by_origin.remove(origin) {
            Some(k) => {
                let same = k.title == w.title
                    && k.body == w.body
                    && k.sources.first().map(|s| (&s.hash, s.lines))
                        == Some((&w.source.hash, w.source.lines));
                if same && k.stale.is_none() {
                    report.unchanged += 1;
                    continue;
                }
                store
                    .update_knowledge(
                        k.id,
                        &w.title,
                        &w.body,
                        std::slice::from_ref(&w.source),
                        None,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                report.updated += 1;
            }
            None => {
                store
                    .add_knowledge(&NewKnowledge {
                        project,
                        title: &w.title,
                        body: &w.body,
                        tag: KnowledgeTag::Human,
                        sources: std::slice::from_ref(&w.source),
                        author: AUTHOR,
                        origin: Some(origin),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                report.added += 1;
            }
        }
    }
    // Ingested sections that are gone from the documentation.
    for k in by_origin.into_values() {
        store
            .remove_knowledge(k.id)
            .await
            .map_err(|e| e.to_string())?;
        report.removed += 1;
    }
    // Everything else is checked against what it cites.
    for k in others {
        let checked = check(store, git, clone, &commit, Some(&files), &texts, &k).await?;
        if checked.pinned {
            report.pinned += 1;
        }
        if let Some(why) = checked.now_stale {
            report.stale.push((k.id, why));
        }
    }
    Ok(report)
}

/// What checking one entry against a commit did.
#[derive(Debug, Default)]
struct Checked {
    /// A source without a hash was tied to the commit for the first time.
    pinned: bool,
    /// The entry became stale now, with why.
    now_stale: Option<String>,
}

/// Checks every source of `k` at `commit`: a deleted file, too few lines, or cited lines whose
/// hash changed make the entry stale (its tag stays); a source never pinned is tied to the
/// commit. `files` is the commit's file list when the caller has it; `texts` caches files read.
async fn check(
    store: &Store,
    git: &Git,
    clone: &Path,
    commit: &str,
    files: Option<&HashSet<String>>,
    texts: &HashMap<String, String>,
    k: &KnowledgeRow,
) -> Result<Checked, String> {
    let mut sources = k.sources.clone();
    let mut why = None;
    let mut pinned = false;
    for s in &mut sources {
        let text = match texts.get(&s.path) {
            Some(t) => Some(t.clone()),
            None if files.is_some_and(|f| !f.contains(&s.path)) => None,
            None => git
                .read_file_at(clone, commit, &s.path)
                .await
                .map_err(|e| e.to_string())?,
        };
        let Some(text) = text else {
            why.get_or_insert_with(|| match &s.commit {
                Some(_) => format!("{} was deleted in {}", s.path, short(commit)),
                None => format!("{} does not exist in {}", s.path, short(commit)),
            });
            continue;
        };
        let cited = match s.lines {
            Some((a, b)) => lines_of(&text, a, b),
            None => Some(text.clone()),
        };
        let Some(cited) = cited else {
            why.get_or_insert_with(|| {
                format!(
                    "{} is shorter than the lines cited in {}",
                    s.path,
                    short(commit)
                )
            });
            continue;
        };
        let now = hash(&cited);
        match &s.hash {
            None => {
                // First seen: tie the citation to this commit, so a later change shows.
                s.commit = Some(commit.to_string());
                s.hash = Some(now);
                pinned = true;
            }
            Some(h) if *h != now => {
                why.get_or_insert_with(|| format!("{} changed in {}", s.path, short(commit)));
            }
            Some(_) => {}
        }
    }
    let stale = why.or(k.stale.clone());
    let mut checked = Checked {
        pinned,
        now_stale: None,
    };
    if pinned || stale != k.stale {
        store
            .update_knowledge(k.id, &k.title, &k.body, &sources, stale.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        checked.now_stale = stale.filter(|_| k.stale.is_none());
    }
    Ok(checked)
}

/// What learning from an approved job's research notes did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Learned {
    /// Entries added (`inferred`).
    pub added: Vec<i64>,
    /// Facts already known from an earlier approval of the same ticket.
    pub known: usize,
    /// Facts refused, with why (no source, or cited lines that do not exist at the commit).
    pub rejected: Vec<(String, String)>,
}

/// One `- fact [PATH:L1-L2, PATH]` line of the notes' `## Facts` section.
fn facts(notes: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in notes.lines() {
        let trimmed = line.trim();
        if let Some(heading) = trimmed.strip_prefix('#') {
            inside = heading
                .trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("facts");
            continue;
        }
        if !inside {
            continue;
        }
        let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        else {
            continue;
        };
        let (text, cited) = match item.rfind('[') {
            Some(open) if item.ends_with(']') => (
                item[..open].trim(),
                item[open + 1..item.len() - 1]
                    .split(',')
                    .map(|c| c.trim().trim_matches('`').to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
            ),
            _ => (item.trim(), Vec::new()),
        };
        if !text.is_empty() {
            out.push((text.to_string(), cited));
        }
    }
    out
}

/// When a proposal is approved: the durable facts of its research notes become `inferred`
/// entries citing their files at the approved `commit`. A fact without a source, or whose
/// cited lines do not exist at the commit, is rejected; a fact learned before is not added
/// twice.
#[allow(clippy::too_many_arguments)]
pub async fn learn(
    store: &Store,
    git: &Git,
    clone: &Path,
    commit: &str,
    project: &str,
    ticket: &str,
    notes: &str,
) -> Result<Learned, String> {
    let mut learned = Learned::default();
    let known: HashSet<String> = store
        .knowledge_of(project)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|k| k.origin)
        .collect();
    let author = format!("agent:research {ticket}");
    for (text, cited) in facts(notes) {
        let origin = format!("learned:{ticket}:{}", &hash(&text)[..16]);
        if known.contains(&origin) {
            learned.known += 1;
            continue;
        }
        if cited.is_empty() {
            learned
                .rejected
                .push((text, "it cites no file".to_string()));
            continue;
        }
        let mut sources = Vec::new();
        let mut refused = None;
        for c in &cited {
            let mut source = match KnowledgeSource::parse(c) {
                Ok(s) => s,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            };
            let file = git
                .read_file_at(clone, commit, &source.path)
                .await
                .map_err(|e| e.to_string())?;
            let Some(file) = file else {
                refused = Some(format!(
                    "{} does not exist at {}",
                    source.path,
                    short(commit)
                ));
                break;
            };
            let lines = match source.lines {
                Some((a, b)) => lines_of(&file, a, b),
                None => Some(file.clone()),
            };
            let Some(lines) = lines else {
                refused = Some(format!(
                    "{} has no lines {} at {}",
                    source.path,
                    c.rsplit_once(':').map_or("", |(_, r)| r),
                    short(commit)
                ));
                break;
            };
            source.commit = Some(commit.to_string());
            source.hash = Some(hash(&lines));
            sources.push(source);
        }
        if let Some(why) = refused {
            learned.rejected.push((text, why));
            continue;
        }
        let title: String = text.chars().take(200).collect();
        let body = format!(
            "{text}\n\nLearned from the research notes of {ticket}, whose proposal was approved at {}.",
            short(commit)
        );
        let row = store
            .add_knowledge(&NewKnowledge {
                project,
                title: &title,
                body: &body,
                tag: KnowledgeTag::Inferred,
                sources: &sources,
                author: &author,
                origin: Some(&origin),
            })
            .await
            .map_err(|e| e.to_string())?;
        learned.added.push(row.id);
    }
    Ok(learned)
}

/// A person's new entry: each source that exists on the default branch is tied to that commit
/// now, so the next change to what it cites makes the entry stale (left untied, the first check
/// after a merge would tie it to the changed text instead). A source that does not exist there
/// (yet) stays untied for the next ingest; returns why, for each such source.
pub async fn pin_sources(
    store: &Store,
    git: &Git,
    clone: &Path,
    repo: &str,
    k: &KnowledgeRow,
) -> Result<Vec<String>, String> {
    if k.sources.is_empty() {
        return Ok(Vec::new());
    }
    let (branch, commit) = default_tip(git, clone, repo).await?;
    let mut sources = k.sources.clone();
    let mut untied = Vec::new();
    for s in &mut sources {
        let at = format!("{branch} ({})", short(&commit));
        let Some(text) = git
            .read_file_at(clone, &commit, &s.path)
            .await
            .map_err(|e| e.to_string())?
        else {
            untied.push(format!("{} does not exist on {at}", s.path));
            continue;
        };
        let cited = match s.lines {
            Some((a, b)) => lines_of(&text, a, b),
            None => Some(text),
        };
        let Some(cited) = cited else {
            untied.push(format!(
                "{} on {at} is shorter than the lines cited",
                s.path
            ));
            continue;
        };
        s.commit = Some(commit.clone());
        s.hash = Some(hash(&cited));
    }
    if untied.len() < sources.len() {
        store
            .update_knowledge(k.id, &k.title, &k.body, &sources, k.stale.as_deref())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(untied)
}

/// After a merge made `commit` the default branch: every entry citing one of `changed` is
/// checked again at `commit`, and becomes stale when what it cites changed. Returns the
/// entries found stale now, with why.
pub async fn recheck(
    store: &Store,
    git: &Git,
    clone: &Path,
    commit: &str,
    project: &str,
    changed: &[String],
) -> Result<Vec<(i64, String)>, String> {
    let changed: HashSet<&str> = changed.iter().map(String::as_str).collect();
    let mut stale = Vec::new();
    for k in store
        .knowledge_of(project)
        .await
        .map_err(|e| e.to_string())?
    {
        if !k.sources.iter().any(|s| changed.contains(s.path.as_str())) {
            continue;
        }
        let checked = check(store, git, clone, commit, None, &HashMap::new(), &k).await?;
        if let Some(why) = checked.now_stale {
            stale.push((k.id, why));
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_their_section_with_their_sources() {
        let notes = "# Notes\n- not a fact [README.md]\n\n## Facts\n- Tests run with make check [Makefile:10-14]\n* Two sources [a.rs, `b.rs:3`]\n- No source here\n\n## Risks\n- not a fact either [x.rs]\n";
        assert_eq!(
            facts(notes),
            vec![
                (
                    "Tests run with make check".to_string(),
                    vec!["Makefile:10-14".to_string()]
                ),
                (
                    "Two sources".to_string(),
                    vec!["a.rs".to_string(), "b.rs:3".to_string()]
                ),
                ("No source here".to_string(), vec![]),
            ]
        );
    }
}
