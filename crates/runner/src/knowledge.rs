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

/// Ingest `project`'s documentation from its repository `repo` (cloned or fetched into `clone`).
pub async fn ingest(
    store: &Store,
    git: &Git,
    clone: &Path,
    repo: &str,
    project: &str,
) -> Result<IngestReport, String> {
    git.ensure_clone_and_fetch(repo, clone)
        .await
        .map_err(|e| e.to_string())?;
    let branch = git.default_branch(clone).await.map_err(|e| e.to_string())?;
    let commit = git
        .rev_parse(clone, &format!("refs/remotes/origin/{branch}"))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the repository has no branch {branch}"))?;
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
        let mut sources = k.sources.clone();
        let mut why = None;
        let mut pinned = false;
        for s in &mut sources {
            if !files.contains(&s.path) {
                why.get_or_insert_with(|| match &s.commit {
                    Some(_) => format!("{} was deleted in {}", s.path, short(&commit)),
                    None => format!("{} does not exist in {}", s.path, short(&commit)),
                });
                continue;
            }
            let text = match texts.get(&s.path) {
                Some(t) => Some(t.clone()),
                None => git
                    .read_file_at(clone, &commit, &s.path)
                    .await
                    .map_err(|e| e.to_string())?,
            };
            let Some(text) = text else { continue };
            let cited = match s.lines {
                Some((a, b)) => lines_of(&text, a, b),
                None => Some(text.clone()),
            };
            let Some(cited) = cited else {
                why.get_or_insert_with(|| {
                    format!(
                        "{} is shorter than the lines cited in {}",
                        s.path,
                        short(&commit)
                    )
                });
                continue;
            };
            let now = hash(&cited);
            match &s.hash {
                None => {
                    // First seen: tie the citation to this commit, so a later change shows.
                    s.commit = Some(commit.clone());
                    s.hash = Some(now);
                    pinned = true;
                }
                Some(h) if *h != now => {
                    why.get_or_insert_with(|| format!("{} changed in {}", s.path, short(&commit)));
                }
                Some(_) => {}
            }
        }
        if pinned {
            report.pinned += 1;
        }
        let stale = why.or(k.stale.clone());
        if pinned || stale != k.stale {
            store
                .update_knowledge(k.id, &k.title, &k.body, &sources, stale.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(why) = stale.filter(|_| k.stale.is_none()) {
                report.stale.push((k.id, why));
            }
        }
    }
    Ok(report)
}
