//! Project knowledge as the store keeps it: an entry's provenance (its tag, the sources it
//! cites, its author) travels with it, so whoever reads it can weigh it; a stale entry says why.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How far an entry can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnowledgeTag {
    /// Checked against the code.
    Verified,
    /// Concluded by an agent.
    Inferred,
    /// Written by a person.
    Human,
}

impl KnowledgeTag {
    pub fn as_str(self) -> &'static str {
        match self {
            KnowledgeTag::Verified => "verified",
            KnowledgeTag::Inferred => "inferred",
            KnowledgeTag::Human => "human",
        }
    }

    pub fn parse(text: &str) -> Option<KnowledgeTag> {
        match text {
            "verified" => Some(KnowledgeTag::Verified),
            "inferred" => Some(KnowledgeTag::Inferred),
            "human" => Some(KnowledgeTag::Human),
            _ => None,
        }
    }
}

/// A place in the project's repository that an entry cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnowledgeSource {
    /// Path in the repository.
    pub path: String,
    /// First and last line cited (1-based, inclusive); the whole file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<(u32, u32)>,
    /// The commit the lines were read at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// SHA-256 of the cited lines at that commit, to tell when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl KnowledgeSource {
    /// `PATH` or `PATH:L1-L2` (or `PATH:L`), as people write it.
    pub fn parse(text: &str) -> Result<KnowledgeSource, String> {
        let Some(place) = codemill_core::knowledge::Place::parse(text) else {
            return Err(format!(
                "source {text:?}: write PATH or PATH:FIRST-LAST (lines from 1)"
            ));
        };
        if !place.inside() {
            return Err(format!(
                "source {text:?}: a path inside the repository, like docs/setup.md"
            ));
        }
        let codemill_core::knowledge::Place { path, lines } = place;
        Ok(KnowledgeSource {
            path,
            lines,
            commit: None,
            hash: None,
        })
    }
}

impl std::fmt::Display for KnowledgeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some((a, b)) = self.lines {
            write!(f, ":{a}-{b}")?;
        }
        if let Some(c) = &self.commit {
            write!(f, " @{}", &c[..c.len().min(12)])?;
        }
        Ok(())
    }
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewKnowledge<'a> {
    pub project: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub tag: KnowledgeTag,
    pub sources: &'a [KnowledgeSource],
    /// Who wrote it: `user:NAME`, or the stage and ticket of an agent.
    pub author: &'a str,
    /// What an ingest made it from (file and section), so a re-ingest finds it again.
    pub origin: Option<&'a str>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeRow {
    pub id: i64,
    pub project: String,
    pub title: String,
    pub body: String,
    pub tag: KnowledgeTag,
    pub sources: Vec<KnowledgeSource>,
    pub author: String,
    pub origin: Option<String>,
    /// Why the entry may no longer hold (a cited source changed); `None` while it is current.
    pub stale: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A search result: the entry and the part of it that matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeHit {
    pub entry: KnowledgeRow,
    pub excerpt: String,
}

/// The words of a search query: letters and digits only, so nothing in it is query syntax.
pub(crate) fn query_words(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(32)
        .collect()
}

impl crate::Store {
    /// Add an entry (its tag, sources and author with it).
    pub async fn add_knowledge(
        &self,
        new: &NewKnowledge<'_>,
    ) -> Result<KnowledgeRow, crate::StoreError> {
        self.db
            .add_knowledge(new, crate::queue::micros(Utc::now()))
            .await
    }

    pub async fn knowledge(&self, id: i64) -> Result<Option<KnowledgeRow>, crate::StoreError> {
        self.db.knowledge(id).await
    }

    /// Every entry of `project`, oldest first.
    pub async fn knowledge_of(
        &self,
        project: &str,
    ) -> Result<Vec<KnowledgeRow>, crate::StoreError> {
        self.db.knowledge_of(project).await
    }

    /// Replace an entry's text, sources and stale reason (its tag, author and origin stay);
    /// false when it is gone.
    pub async fn update_knowledge(
        &self,
        id: i64,
        title: &str,
        body: &str,
        sources: &[KnowledgeSource],
        stale: Option<&str>,
    ) -> Result<bool, crate::StoreError> {
        self.db
            .update_knowledge(
                id,
                title,
                body,
                sources,
                stale,
                crate::queue::micros(Utc::now()),
            )
            .await
    }

    /// Give an entry a new tag and the person who gave it (a person verifying or rewriting an
    /// agent's entry); false when it is gone.
    pub async fn set_knowledge_tag(
        &self,
        id: i64,
        tag: KnowledgeTag,
        author: &str,
    ) -> Result<bool, crate::StoreError> {
        self.db
            .set_knowledge_tag(id, tag, author, crate::queue::micros(Utc::now()))
            .await
    }

    /// Remove an entry; false when there was none with that id.
    pub async fn remove_knowledge(&self, id: i64) -> Result<bool, crate::StoreError> {
        self.db.remove_knowledge(id).await
    }

    /// Say why an entry may no longer hold (`None`: it holds again); false when it is gone.
    pub async fn mark_knowledge_stale(
        &self,
        id: i64,
        reason: Option<&str>,
    ) -> Result<bool, crate::StoreError> {
        self.db
            .mark_knowledge_stale(id, reason, crate::queue::micros(Utc::now()))
            .await
    }

    /// The entries of `project` that best match `query` (any of its words), best first, at
    /// most `limit`, each with the part that matched. Query syntax is not passed through.
    pub async fn search_knowledge(
        &self,
        project: &str,
        query: &str,
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>, crate::StoreError> {
        self.db
            .search_knowledge(project, &query_words(query), limit.clamp(1, 100))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sources_are_read_as_people_write_them() {
        let s = KnowledgeSource::parse("docs/setup.md:10-20").unwrap();
        assert_eq!(
            (s.path.as_str(), s.lines),
            ("docs/setup.md", Some((10, 20)))
        );
        assert_eq!(
            KnowledgeSource::parse("./README.md").unwrap().path,
            "README.md"
        );
        assert_eq!(
            KnowledgeSource::parse("a.rs:7").unwrap().lines,
            Some((7, 7))
        );
        for bad in ["", "/etc/passwd", "../x", "a.rs:0-2", "a.rs:5-2", "a.rs:-"] {
            assert!(KnowledgeSource::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(s.to_string(), "docs/setup.md:10-20");
    }

    #[test]
    fn query_words_carry_no_syntax() {
        assert_eq!(
            query_words("how do I run \"tests\" OR* NEAR(x)"),
            ["how", "do", "i", "run", "tests", "or", "near", "x"]
        );
        assert!(query_words("*** --").is_empty());
    }
}
