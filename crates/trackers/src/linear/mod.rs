//! Linear as a ticket tracker: its GraphQL API (issues by team, workflow state and label;
//! comments, labels, state moves, related backlog issues) and its signed webhooks.
//!
//! Every write looks before it acts and runs inside [`retry_op`], so a retry after an error that
//! had in fact succeeded (a 5xx after `commentCreate` was applied) finds the object and creates
//! nothing twice. Labels are changed one at a time with `issueAddLabel` / `issueRemoveLabel`:
//! they touch only the label named, so a label a person sets at the same moment is not lost (an
//! `issueUpdate(labelIds)` computed from a read would overwrite it).
//!
//! Markers: Linear stores comments and descriptions as Markdown it re-renders, and HTML comments
//! do not survive, so codemill's marker is a visible quiet last line
//! (`---` then `_codemill · [<marker>]_`). Linear may escape the brackets on the way back
//! (`\[...\]`), so look-ups compare with backslashes removed.

mod gql;
mod ops;
mod read;
mod webhook;

use std::sync::{Arc, Mutex};

use codemill_core::config::vendors::{LinearSettings, StatusMap};
use codemill_core::pipeline::TicketStatus;
use serde_json::{Value, json};

use crate::http::{Auth, HttpClient, RetryPolicy, retry_op};
use crate::{Env, Error, Issue, IssueComment, Result, Tracker, has_codemill_marker, secret_from};
use gql::{Gql, Kind, VENDOR, array_at, at, check_success, str_at};
use read::*;

pub use webhook::{parse_webhook, verify_webhook};

/// Pages read before a listing is declared runaway (50 per page).
const MAX_PAGES: usize = 200;

/// A Linear workspace's team, as codemill's tracker.
#[derive(Clone)]
pub struct Linear {
    gql: Gql,
    policy: RetryPolicy,
    team_key: String,
    trigger_state: String,
    trigger_label: String,
    refine_label: String,
    states: StatusMap,
    /// The team's id, looked up once.
    team_id: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linear")
            .field("endpoint", &self.gql)
            .field("team_key", &self.team_key)
            .field("trigger_state", &self.trigger_state)
            .field("trigger_label", &self.trigger_label)
            .field("refine_label", &self.refine_label)
            .finish_non_exhaustive()
    }
}

/// The quiet last line that carries `marker` in a Markdown body.
pub fn marker_line(marker: &str) -> String {
    format!("\n\n---\n_codemill · [{marker}]_")
}

/// Whether `body` carries `marker` (in the form [`marker_line`] writes, escaped or not).
pub fn carries_marker(body: &str, marker: &str) -> bool {
    body.replace('\\', "").contains(&format!("[{marker}]"))
}

impl Linear {
    /// API key from settings.token_env, sent as `Authorization: <key>` (Linear's personal API
    /// key format; no Bearer).
    pub fn new(settings: &LinearSettings, env: Env<'_>, policy: RetryPolicy) -> Result<Linear> {
        let key = secret_from(env, VENDOR, "linear.token_env", &settings.token_env)?;
        if settings.team_key.trim().is_empty() {
            return Err(Error::Config(format!("{VENDOR}: linear.team_key is empty")));
        }
        let (base, path) = gql::split_endpoint(&settings.api_url)?;
        let http = HttpClient::new(VENDOR, &base, policy)?;
        Ok(Linear {
            gql: Gql::new(http, Auth::Header("authorization", key), path),
            policy,
            team_key: settings.team_key.trim().to_string(),
            trigger_state: settings.trigger_state.clone(),
            trigger_label: settings.trigger_label.clone(),
            refine_label: settings.refine_label.clone(),
            states: settings.states.clone(),
            team_id: Arc::new(Mutex::new(None)),
        })
    }

    fn team_filter(&self) -> Value {
        json!({"key": {"eq": self.team_key}})
    }

    /// Every node of a paginated connection at `conn` (a JSON pointer into `data`).
    async fn all_pages(
        &self,
        op: &'static str,
        query: &str,
        mut variables: Value,
        conn: &str,
    ) -> Result<Vec<Value>> {
        let mut nodes = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            variables["first"] = json!(ops::PAGE);
            variables["after"] = json!(after);
            let data = self
                .gql
                .run(Kind::Query, op, query, variables.clone())
                .await?;
            let page = at(op, &data, conn)?;
            nodes.extend(array_at(op, page, "/nodes")?.iter().cloned());
            match next_cursor(op, page, after.as_deref())? {
                Some(cursor) => after = Some(cursor),
                None => return Ok(nodes),
            }
        }
        Err(Error::Protocol {
            vendor: VENDOR,
            message: format!("{op}: more than {MAX_PAGES} pages; giving up"),
        })
    }

    async fn team_id(&self) -> Result<String> {
        if let Some(id) = self.team_id.lock().ok().and_then(|g| g.clone()) {
            return Ok(id);
        }
        let data = self
            .gql
            .run(
                Kind::Query,
                ops::TEAM,
                ops::TEAM_QUERY,
                json!({"filter": self.team_filter()}),
            )
            .await?;
        let nodes = array_at(ops::TEAM, &data, "/teams/nodes")?;
        let Some(team) = nodes.first() else {
            return Err(Error::NotFound(format!(
                "{VENDOR}: no team with key {} (or the API key may not see it)",
                self.team_key
            )));
        };
        let id = str_at(ops::TEAM, team, "/id")?.to_string();
        if let Ok(mut g) = self.team_id.lock() {
            *g = Some(id.clone());
        }
        Ok(id)
    }

    /// An issue's comments, oldest first: the first page given, then the rest.
    async fn comments(&self, key: &str, first_page: &Value) -> Result<Vec<Value>> {
        let op = ops::COMMENTS;
        let mut nodes: Vec<Value> = array_at(op, first_page, "/nodes")?.clone();
        let mut after = next_cursor(op, first_page, None)?;
        let mut pages = 1;
        while let Some(cursor) = after {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::Protocol {
                    vendor: VENDOR,
                    message: format!("{op}: more than {MAX_PAGES} pages of comments on {key}"),
                });
            }
            let data = self
                .gql
                .run(
                    Kind::Query,
                    op,
                    ops::COMMENTS_QUERY,
                    json!({"id": key, "first": ops::PAGE, "after": cursor}),
                )
                .await?;
            let page = at(op, &data, "/issue/comments")?;
            nodes.extend(array_at(op, page, "/nodes")?.iter().cloned());
            after = next_cursor(op, page, Some(&cursor))?;
        }
        // Linear lists newest first by default; a conversation reads oldest first.
        nodes.sort_by(|a, b| {
            let at = |v: &Value| {
                v.get("createdAt")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            at(a).cmp(&at(b))
        });
        Ok(nodes)
    }

    /// The issue's id and its comments (id, body), for a comment upsert.
    async fn comments_of(&self, key: &str) -> Result<(String, Vec<Value>)> {
        let op = ops::COMMENTS;
        let data = self
            .gql
            .run(
                Kind::Query,
                op,
                ops::COMMENTS_QUERY,
                json!({"id": key, "first": ops::PAGE, "after": null}),
            )
            .await?;
        let id = str_at(op, &data, "/issue/id")?.to_string();
        let first_page = at(op, &data, "/issue/comments")?;
        let comments = self.comments(key, first_page).await?;
        Ok((id, comments))
    }

    async fn upsert_comment_once(&self, key: &str, marker: &str, body: &str) -> Result<()> {
        let (issue_id, comments) = self.comments_of(key).await?;
        let existing = comments.iter().find(|c| {
            c.get("body")
                .and_then(Value::as_str)
                .is_some_and(|b| carries_marker(b, marker))
        });
        if let Some(comment) = existing {
            let current = comment.get("body").and_then(Value::as_str).unwrap_or("");
            if same_markdown(current, body) {
                return Ok(());
            }
            let id = str_at(ops::COMMENT_UPDATE, comment, "/id")?;
            let data = self
                .gql
                .run(
                    Kind::Mutation,
                    ops::COMMENT_UPDATE,
                    ops::COMMENT_UPDATE_MUTATION,
                    json!({"id": id, "input": {"body": body}}),
                )
                .await?;
            return check_success(ops::COMMENT_UPDATE, &data, "commentUpdate");
        }
        let data = self
            .gql
            .run(
                Kind::Mutation,
                ops::COMMENT_CREATE,
                ops::COMMENT_CREATE_MUTATION,
                json!({"input": {"issueId": issue_id, "body": body}}),
            )
            .await?;
        check_success(ops::COMMENT_CREATE, &data, "commentCreate")
    }

    async fn set_labels_once(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        let op = ops::ISSUE_LABELS;
        let data = self
            .gql
            .run(Kind::Query, op, ops::ISSUE_LABELS_QUERY, json!({"id": key}))
            .await?;
        let issue_id = str_at(op, &data, "/issue/id")?.to_string();
        let mut current: Vec<(String, String)> = Vec::new();
        for label in array_at(op, &data, "/issue/labels/nodes")? {
            current.push((
                str_at(op, label, "/id")?.to_string(),
                str_at(op, label, "/name")?.to_string(),
            ));
        }
        // Linear label names are unique regardless of case.
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let has = |name: &str| current.iter().any(|(_, n)| same(n, name));
        let mut to_add: Vec<&str> = Vec::new();
        for name in add.iter().copied().filter(|n| !has(n)) {
            if !to_add.iter().any(|a| same(a, name)) {
                to_add.push(name);
            }
        }
        let to_remove: Vec<&String> = current
            .iter()
            .filter(|(_, n)| remove.iter().any(|r| same(r, n)) && !add.iter().any(|a| same(a, n)))
            .map(|(id, _)| id)
            .collect();

        if !to_add.is_empty() {
            let ids = self.label_ids(&to_add).await?;
            for id in ids {
                let data = self
                    .gql
                    .run(
                        Kind::Mutation,
                        ops::ADD_LABEL,
                        ops::ADD_LABEL_MUTATION,
                        json!({"id": issue_id, "labelId": id}),
                    )
                    .await?;
                check_success(ops::ADD_LABEL, &data, "issueAddLabel")?;
            }
        }
        for id in to_remove {
            let data = self
                .gql
                .run(
                    Kind::Mutation,
                    ops::REMOVE_LABEL,
                    ops::REMOVE_LABEL_MUTATION,
                    json!({"id": issue_id, "labelId": id}),
                )
                .await?;
            check_success(ops::REMOVE_LABEL, &data, "issueRemoveLabel")?;
        }
        Ok(())
    }

    /// Ids of the labels named, usable on the team's issues (team labels first, then workspace
    /// labels); a missing one is created in the team.
    async fn label_ids(&self, names: &[&str]) -> Result<Vec<String>> {
        let op = ops::LABELS;
        let found = self
            .all_pages(
                op,
                ops::LABELS_QUERY,
                json!({"filter": {"or": names
                    .iter()
                    .map(|n| json!({"name": {"eqIgnoreCase": n}}))
                    .collect::<Vec<_>>()}}),
                "/issueLabels",
            )
            .await?;
        let mut ids = Vec::new();
        for name in names {
            let team_of = |l: &Value| {
                l.pointer("/team/key")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let named = |l: &&Value| {
                l.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            };
            // Usable on the team's issues: the team's own label first, else a workspace label.
            let team_label = found
                .iter()
                .filter(named)
                .find(|l| team_of(l).as_deref() == Some(self.team_key.as_str()));
            let workspace_label = found.iter().filter(named).find(|l| team_of(l).is_none());
            match team_label.or(workspace_label) {
                Some(label) => ids.push(str_at(op, label, "/id")?.to_string()),
                None => {
                    let team_id = self.team_id().await?;
                    let data = self
                        .gql
                        .run(
                            Kind::Mutation,
                            ops::LABEL_CREATE,
                            ops::LABEL_CREATE_MUTATION,
                            json!({"input": {"name": name, "teamId": team_id}}),
                        )
                        .await?;
                    check_success(ops::LABEL_CREATE, &data, "issueLabelCreate")?;
                    ids.push(
                        str_at(ops::LABEL_CREATE, &data, "/issueLabelCreate/issueLabel/id")?
                            .to_string(),
                    );
                }
            }
        }
        Ok(ids)
    }

    async fn transition_once(&self, key: &str, target: &str) -> Result<()> {
        let op = ops::ISSUE_STATE;
        let data = self
            .gql
            .run(Kind::Query, op, ops::ISSUE_STATE_QUERY, json!({"id": key}))
            .await?;
        let issue_id = str_at(op, &data, "/issue/id")?.to_string();
        if str_at(op, &data, "/issue/state/name")?.eq_ignore_ascii_case(target) {
            return Ok(());
        }
        let states = self
            .all_pages(
                ops::STATES,
                ops::STATES_QUERY,
                json!({"filter": {"team": self.team_filter()}}),
                "/workflowStates",
            )
            .await?;
        let name_of = |s: &Value| {
            s.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let state = states.iter().find(|s| name_of(s) == target).or_else(|| {
            states
                .iter()
                .find(|s| name_of(s).eq_ignore_ascii_case(target))
        });
        let Some(state) = state else {
            let names: Vec<String> = states.iter().map(name_of).collect();
            return Err(Error::NotFound(format!(
                "{VENDOR}: workflow state {target:?} (mapped for this status) does not exist in team {}; its states are: {}",
                self.team_key,
                names.join(", ")
            )));
        };
        let state_id = str_at(ops::STATES, state, "/id")?;
        let data = self
            .gql
            .run(
                Kind::Mutation,
                ops::ISSUE_UPDATE,
                ops::ISSUE_UPDATE_MUTATION,
                json!({"id": issue_id, "input": {"stateId": state_id}}),
            )
            .await?;
        check_success(ops::ISSUE_UPDATE, &data, "issueUpdate")
    }

    async fn create_linked_once(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        let data = self
            .gql
            .run(
                Kind::Query,
                ops::ISSUE_REF,
                ops::ISSUE_REF_QUERY,
                json!({"id": key}),
            )
            .await?;
        let parent_id = str_at(ops::ISSUE_REF, &data, "/issue/id")?.to_string();

        // Search by the bare marker text: Linear may store the brackets escaped.
        let candidates = self
            .all_pages(
                ops::FIND_BY_MARKER,
                ops::FIND_BY_MARKER_QUERY,
                json!({"filter": {"team": self.team_filter(), "description": {"contains": marker}}}),
                "/issues",
            )
            .await?;
        let existing = candidates.iter().find(|i| {
            i.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| carries_marker(d, marker))
        });
        if let Some(issue) = existing {
            let op = ops::FIND_BY_MARKER;
            let id = str_at(op, issue, "/id")?.to_string();
            let identifier = str_at(op, issue, "/identifier")?.to_string();
            let linked = array_at(op, issue, "/relations/nodes")?
                .iter()
                .any(|r| r.pointer("/relatedIssue/id").and_then(Value::as_str) == Some(&parent_id))
                || array_at(op, issue, "/inverseRelations/nodes")?
                    .iter()
                    .any(|r| r.pointer("/issue/id").and_then(Value::as_str) == Some(&parent_id));
            if !linked {
                self.relate(&id, &parent_id).await?;
            }
            return Ok(identifier);
        }

        let (id, identifier) = self.create_once(marker, title, markdown).await?;
        self.relate(&id, &parent_id).await?;
        Ok(identifier)
    }

    /// Create an issue whose description ends with `marker`; returns its id and identifier.
    async fn create_once(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<(String, String)> {
        let team_id = self.team_id().await?;
        let description = format!("{}{}", markdown.trim_end(), marker_line(marker));
        let data = self
            .gql
            .run(
                Kind::Mutation,
                ops::ISSUE_CREATE,
                ops::ISSUE_CREATE_MUTATION,
                json!({"input": {"teamId": team_id, "title": title, "description": description}}),
            )
            .await?;
        check_success(ops::ISSUE_CREATE, &data, "issueCreate")?;
        let id = str_at(ops::ISSUE_CREATE, &data, "/issueCreate/issue/id")?.to_string();
        let identifier =
            str_at(ops::ISSUE_CREATE, &data, "/issueCreate/issue/identifier")?.to_string();
        Ok((id, identifier))
    }

    /// The issue of the team whose description carries `marker`, if any.
    async fn find_by_marker(&self, marker: &str) -> Result<Option<String>> {
        let candidates = self
            .all_pages(
                ops::FIND_BY_MARKER,
                ops::FIND_BY_MARKER_QUERY,
                json!({"filter": {"team": self.team_filter(), "description": {"contains": marker}}}),
                "/issues",
            )
            .await?;
        candidates
            .iter()
            .find(|i| {
                i.get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| carries_marker(d, marker))
            })
            .map(|i| str_at(ops::FIND_BY_MARKER, i, "/identifier").map(str::to_string))
            .transpose()
    }

    async fn create_issue_once(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> Result<String> {
        let identifier = match self.find_by_marker(marker).await? {
            Some(found) => found,
            None => self.create_once(marker, title, markdown).await?.1,
        };
        // Labels by name through the same path as every other label change.
        self.set_labels_once(&identifier, &[label], &[]).await?;
        Ok(identifier)
    }

    async fn relate(&self, issue_id: &str, parent_id: &str) -> Result<()> {
        let data = self
            .gql
            .run(
                Kind::Mutation,
                ops::RELATION_CREATE,
                ops::RELATION_CREATE_MUTATION,
                json!({"input": {"issueId": issue_id, "relatedIssueId": parent_id, "type": "related"}}),
            )
            .await?;
        check_success(ops::RELATION_CREATE, &data, "issueRelationCreate")
    }
}

impl Tracker for Linear {
    fn vendor(&self) -> &'static str {
        VENDOR
    }

    async fn triggered(&self) -> Result<Vec<String>> {
        let filter = json!({
            "team": self.team_filter(),
            "state": {"name": {"eq": self.trigger_state}},
            "labels": {"name": {"in": [self.trigger_label, self.refine_label]}},
        });
        let nodes = self
            .all_pages(
                ops::TRIGGERED,
                ops::TRIGGERED_QUERY,
                json!({"filter": filter}),
                "/issues",
            )
            .await?;
        nodes
            .iter()
            .map(|n| str_at(ops::TRIGGERED, n, "/identifier").map(str::to_string))
            .collect()
    }

    async fn issue(&self, key: &str) -> Result<Issue> {
        let op = ops::ISSUE;
        let data = self
            .gql
            .run(
                Kind::Query,
                op,
                ops::ISSUE_QUERY,
                json!({"id": key, "first": ops::PAGE}),
            )
            .await?;
        let issue = at(op, &data, "/issue")?;
        let comments = self.comments(key, at(op, issue, "/comments")?).await?;
        to_issue(issue, &comments)
    }

    async fn upsert_comment(&self, key: &str, marker: &str, markdown: &str) -> Result<()> {
        let body = format!("{}{}", markdown.trim_end(), marker_line(marker));
        retry_op(self.policy, || self.upsert_comment_once(key, marker, &body)).await
    }

    async fn set_labels(&self, key: &str, add: &[&str], remove: &[&str]) -> Result<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        retry_op(self.policy, || self.set_labels_once(key, add, remove)).await
    }

    async fn transition(&self, key: &str, status: TicketStatus) -> Result<()> {
        // Back to the to-do state is back to the trigger state (a refined idea going to its
        // build); the other statuses move only where mapped.
        let target = match status {
            TicketStatus::Todo => Some(self.trigger_state.clone()),
            s => self.states.get(s).map(str::to_string),
        };
        let Some(target) = target else {
            return Ok(());
        };
        retry_op(self.policy, || self.transition_once(key, &target)).await
    }

    async fn create_issue(
        &self,
        marker: &str,
        title: &str,
        markdown: &str,
        label: &str,
    ) -> Result<String> {
        retry_op(self.policy, || {
            self.create_issue_once(marker, title, markdown, label)
        })
        .await
    }

    async fn create_linked(
        &self,
        key: &str,
        marker: &str,
        title: &str,
        markdown: &str,
    ) -> Result<String> {
        retry_op(self.policy, || {
            self.create_linked_once(key, marker, title, markdown)
        })
        .await
    }
}
