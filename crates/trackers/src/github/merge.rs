//! Landing a pull request through GitHub's API for the merge queue: the target branch's tip and
//! the status checks its protection requires, the check runs and commit statuses of a head
//! commit, and the merge itself — pinned to the head SHA that was tested, with the project's
//! merge method.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{GitHub, VENDOR, encode_segment, not_found, str_at};
use crate::http::Req;
use crate::landing::{BranchTip, CheckState, MergeAnswer};
use crate::{Error, Result};

impl GitHub {
    /// The tip of `branch` and the status checks its protection requires.
    pub async fn branch_tip(&self, branch: &str) -> Result<BranchTip> {
        let path = self.repo_path(&format!("/branches/{}", encode_segment(branch)));
        let answer = self.send(Req::get(&path)).await.map_err(|e| {
            not_found(e, || {
                format!(
                    "github: branch {branch} not found in {}/{}",
                    self.owner, self.repo
                )
            })
        })?;
        let v = &answer.body;
        let Some(sha) = str_at(v, &["commit", "sha"]) else {
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("{path}: a branch without `commit.sha`"),
            });
        };
        let checks = &v["protection"]["required_status_checks"];
        let mut required: Vec<String> = checks["contexts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        for c in checks["checks"].as_array().into_iter().flatten() {
            if let Some(context) = c["context"].as_str()
                && !required.iter().any(|r| r == context)
            {
                required.push(context.to_string());
            }
        }
        Ok(BranchTip {
            sha: sha.to_string(),
            required_checks: required,
        })
    }

    /// Every check run and commit status on `sha`, by name; a name reported by both counts as
    /// failed if either failed and passed only if both passed.
    pub async fn check_states(&self, sha: &str) -> Result<BTreeMap<String, CheckState>> {
        let mut states: BTreeMap<String, CheckState> = BTreeMap::new();
        let mut note = |name: &str, state: CheckState| {
            let merged = match (states.get(name), state) {
                (Some(CheckState::Failed), _) | (_, CheckState::Failed) => CheckState::Failed,
                (Some(CheckState::Pending), _) | (_, CheckState::Pending) => CheckState::Pending,
                _ => CheckState::Passed,
            };
            states.insert(name.to_string(), merged);
        };
        let runs = self
            .send(
                Req::get(self.repo_path(&format!("/commits/{sha}/check-runs")))
                    .query("per_page", "100"),
            )
            .await?;
        for run in runs.body["check_runs"].as_array().into_iter().flatten() {
            let Some(name) = run["name"].as_str() else {
                continue;
            };
            let state = match (run["status"].as_str(), run["conclusion"].as_str()) {
                (Some("completed"), Some("success" | "neutral" | "skipped")) => CheckState::Passed,
                (Some("completed"), _) => CheckState::Failed,
                _ => CheckState::Pending,
            };
            note(name, state);
        }
        let status = self
            .send(
                Req::get(self.repo_path(&format!("/commits/{sha}/status")))
                    .query("per_page", "100"),
            )
            .await?;
        for s in status.body["statuses"].as_array().into_iter().flatten() {
            let Some(context) = s["context"].as_str() else {
                continue;
            };
            let state = match s["state"].as_str() {
                Some("success") => CheckState::Passed,
                Some("failure" | "error") => CheckState::Failed,
                _ => CheckState::Pending,
            };
            note(context, state);
        }
        Ok(states)
    }

    /// Mark draft PR `number` ready for review (GitHub's REST API cannot; its GraphQL mutation
    /// `markPullRequestReadyForReview` does). Asking again for a ready PR changes nothing.
    pub async fn mark_ready(&self, number: u64) -> Result<()> {
        let path = self.repo_path(&format!("/pulls/{number}"));
        let pr = self.send(Req::get(&path)).await?;
        let Some(node) = str_at(&pr.body, &["node_id"]) else {
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("{path}: a pull request without `node_id`"),
            });
        };
        // GitHub Enterprise serves GraphQL beside its REST root: `/api/v3` → `/api/graphql`.
        let base = self.http.base().trim_end_matches('/');
        let graphql = match base.strip_suffix("/api/v3") {
            Some(host) => format!("{host}/api/graphql"),
            None => format!("{base}/graphql"),
        };
        let query = "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }";
        let answer = self
            .send(
                Req::post(graphql, json!({"query": query, "variables": {"id": node}})).idempotent(),
            )
            .await?;
        if let Some(errors) = answer.body["errors"].as_array().filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!(
                    "marking pull request #{number} ready for review: {}",
                    messages.join("; ")
                ),
            });
        }
        Ok(())
    }

    /// Merge PR `number` only if its head is still `sha`, with `method` (`merge`, `squash` or
    /// `rebase`). Not retried: a merge that timed out may have happened, and the queue looks at
    /// the PR again before it asks twice.
    pub async fn merge_pr(&self, number: u64, sha: &str, method: &str) -> Result<MergeAnswer> {
        let path = self.repo_path(&format!("/pulls/{number}/merge"));
        let mut req = Req::put(&path, json!({"sha": sha, "merge_method": method}));
        req.idempotent = false;
        match self.send(req).await {
            Ok(answer) => match str_at(&answer.body, &["sha"]) {
                Some(merged) => Ok(MergeAnswer::Merged(merged.to_string())),
                None => Err(Error::Protocol {
                    vendor: VENDOR,
                    message: format!("{path}: a merge answer without `sha`"),
                }),
            },
            Err(Error::Status {
                status: 409, body, ..
            }) => Ok(MergeAnswer::HeadMoved(message_of(&body))),
            Err(Error::Status {
                status: 405 | 422,
                body,
                ..
            }) => Ok(MergeAnswer::Refused(message_of(&body))),
            Err(e) => Err(e),
        }
    }
}

/// GitHub's `message` from an error body, or the body itself.
fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}
