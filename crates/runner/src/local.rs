//! The local tracker and forge — tickets, comments and PR records in codemill's own store — as
//! implementations of the same seams the outside trackers and forges implement.

use codemill_core::ids::{ProjectName, TicketKey};
use codemill_core::pipeline::TicketStatus;
use codemill_store::{NewPr, Store, StoreError};
use codemill_trackers::{
    Error, Forge, Issue, IssueComment, PrRequest, PullRequest, ReplyTo, Result, Tracker,
};

/// A store failure is worth retrying later (the queue does); a missing ticket is not.
fn store_error(e: StoreError) -> Error {
    match e {
        StoreError::NoTicket(k) => Error::NotFound(format!("no ticket {k} in the local tracker")),
        other => Error::Transport {
            vendor: "local",
            method: "store".into(),
            path: String::new(),
            message: other.to_string(),
        },
    }
}

fn parse_key(key: &str) -> Result<TicketKey> {
    key.parse()
        .map_err(|e| Error::NotFound(format!("local tracker: {e}")))
}

/// Tickets of the local tracker; keys are codemill's own (`P-1`).
#[derive(Clone)]
pub struct LocalTracker {
    store: Store,
    /// Where new standalone tickets go; every other call names its ticket by key.
    project: Option<ProjectName>,
}

impl LocalTracker {
    pub fn new(store: Store) -> LocalTracker {
        LocalTracker {
            store,
            project: None,
        }
    }

    /// The local tracker of one project, which can also create standalone tickets.
    pub fn for_project(store: Store, project: ProjectName) -> LocalTracker {
        LocalTracker {
            store,
            project: Some(project),
        }
    }
}

impl Tracker for LocalTracker {
    fn vendor(&self) -> &'static str {
        "local"
    }

    /// Tickets labelled for codemill that are still to do.
    async fn triggered(&self) -> Result<Vec<String>> {
        let tickets = self
            .store
            .tickets_in_status(&[TicketStatus::Todo])
            .await
            .map_err(store_error)?;
        Ok(tickets
            .into_iter()
            .filter(|t| {
                t.external.is_none()
                    && t.status == TicketStatus::Todo
                    && t.labels.iter().any(|l| l == crate::control::TRIGGER_LABEL)
            })
            .map(|t| t.key.to_string())
            .collect())
    }

    async fn issue(&self, key: &str) -> Result<Issue> {
        let k = parse_key(key)?;
        let t = self
            .store
            .ticket(&k)
            .await
            .map_err(store_error)?
            .ok_or_else(|| Error::NotFound(format!("no ticket {k} in the local tracker")))?;
        let comments = self.store.comments(&k).await.map_err(store_error)?;
        Ok(Issue {
            key: k.to_string(),
            number: k.number(),
            url: t.url.clone().unwrap_or_default(),
            title: t.title,
            body: t.body,
            acceptance_criteria: None,
            status: t.status.as_str().to_string(),
            labels: t.labels,
            assignees: Vec::new(),
            comments: comments
                .into_iter()
                .enumerate()
                .map(|(i, c)| IssueComment {
                    id: (i + 1).to_string(),
                    by_codemill: c.marker.is_some(),
                    author: c.author,
                    body: c.body,
                })
                .collect(),
            links: Vec::new(),
            subtasks: Vec::new(),
        })
    }

    /// Local comments are a log: one per marker, never edited.
    async fn upsert_comment(&self, key: &str, marker: &str, markdown: &str) -> Result<()> {
        self.store
            .add_comment(&parse_key(key)?, "codemill", Some(marker), markdown)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn set_labels(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        let k = parse_key(key)?;
        for (labels, present) in [(add, true), (remove, false)] {
            for label in labels {
                self.store
                    .set_label(&k, label, present)
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(())
    }

    async fn transition(&self, key: &str, status: TicketStatus) -> Result<()> {
        self.store
            .set_ticket_status(&parse_key(key)?, status, "codemill")
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// One transaction makes the ticket, so no answer is ever lost and no retry repeats it:
    /// the marker is not needed to find it again.
    async fn create_issue(
        &self,
        _marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> Result<String> {
        let Some(project) = &self.project else {
            return Err(Error::NotFound(
                "local tracker: a new ticket needs its project".into(),
            ));
        };
        let t = self
            .store
            .create_ticket(project, title, markdown, &[label.to_string()])
            .await
            .map_err(store_error)?;
        Ok(t.key.to_string())
    }

    async fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let (t, _) = self
            .store
            .create_linked_ticket(
                &parse_key(key)?,
                "backlog_of",
                marker,
                title,
                markdown,
                &["codemill:backlog".to_string()],
            )
            .await
            .map_err(store_error)?;
        Ok(t.key.to_string())
    }
}

/// PR records of the local forge for one ticket's commit (a record per project and branch).
pub struct LocalForge {
    store: Store,
    ticket: TicketKey,
    commit: String,
}

impl LocalForge {
    pub fn new(store: Store, ticket: TicketKey, commit: String) -> LocalForge {
        LocalForge {
            store,
            ticket,
            commit,
        }
    }
}

fn record(pr: codemill_store::PrRecord) -> PullRequest {
    PullRequest {
        number: pr.id as u64,
        url: String::new(),
        head: pr.branch,
        head_sha: pr.commit,
        state: pr.state,
        draft: false,
    }
}

impl Forge for LocalForge {
    fn vendor(&self) -> &'static str {
        "local"
    }

    async fn open_pr(&self, pr: &PrRequest<'_>) -> Result<PullRequest> {
        let row = self
            .store
            .upsert_pr(&NewPr {
                project: self.ticket.project(),
                ticket: &self.ticket.to_string(),
                branch: pr.head,
                base: pr.base,
                commit: &self.commit,
                title: pr.title,
                body: pr.body,
            })
            .await
            .map_err(store_error)?;
        Ok(record(row))
    }

    async fn pr(&self, number: u64) -> Result<PullRequest> {
        let prs = self.store.prs().await.map_err(store_error)?;
        prs.into_iter()
            .find(|p| p.id as u64 == number)
            .map(record)
            .ok_or_else(|| Error::NotFound(format!("no local PR record {number}")))
    }

    /// The local forge has no review threads; feedback never arrives there.
    async fn reply(
        &self,
        _number: u64,
        _to: ReplyTo<'_>,
        _marker: &str,
        _markdown: &str,
    ) -> Result<()> {
        Ok(())
    }
}
