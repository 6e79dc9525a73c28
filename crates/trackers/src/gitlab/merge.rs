//! Landing a merge request through GitLab's API for the merge queue: the target branch's tip
//! and whether pipelines must succeed, the newest pipeline of a head commit, marking a draft
//! ready (its title), and the merge itself — pinned to the head SHA that was tested (`sha`),
//! squashed when the project's method says so.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{GitLab, SEGMENT, VENDOR, is_draft_title, not_found, str_at};
use crate::http::Req;
use crate::landing::{BranchTip, CheckState, MergeAnswer};
use crate::{Error, Result};

/// The one check GitLab gates a merge on: the head's pipeline.
pub const PIPELINE_CHECK: &str = "pipeline";

impl GitLab {
    /// The tip of `branch`, and `pipeline` as its required check when the project's merge
    /// requests can merge only once their pipeline succeeded.
    pub async fn branch_tip(&self, branch: &str) -> Result<BranchTip> {
        let encoded = percent_encoding::utf8_percent_encode(branch, SEGMENT).to_string();
        let path = self.path(&format!("/repository/branches/{encoded}"));
        let answer = self.send(Req::get(&path)).await.map_err(|e| {
            not_found(e, || {
                format!(
                    "gitlab: branch {branch} not found in {}",
                    self.settings.project
                )
            })
        })?;
        let Some(sha) = str_at(&answer.body, &["commit", "id"]) else {
            return Err(Error::Protocol {
                vendor: VENDOR,
                message: format!("{path}: a branch without `commit.id`"),
            });
        };
        let project = self.send(Req::get(self.path(""))).await?;
        let gated = project
            .body
            .get("only_allow_merge_if_pipeline_succeeds")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(BranchTip {
            sha: sha.to_string(),
            required_checks: if gated {
                vec![PIPELINE_CHECK.to_string()]
            } else {
                Vec::new()
            },
        })
    }

    /// Where the newest pipeline of `sha` stands, as the check `pipeline` (absent: none ran).
    pub async fn check_states(&self, sha: &str) -> Result<BTreeMap<String, CheckState>> {
        let answer = self
            .send(
                Req::get(self.path("/pipelines"))
                    .query("sha", sha)
                    .query("order_by", "id")
                    .query("sort", "desc")
                    .query("per_page", "1"),
            )
            .await?;
        let mut states = BTreeMap::new();
        if let Some(newest) = answer.body.as_array().and_then(|a| a.first()) {
            let state = match str_at(newest, &["status"]).unwrap_or_default() {
                "success" => CheckState::Passed,
                "failed" | "canceled" => CheckState::Failed,
                _ => CheckState::Pending,
            };
            states.insert(PIPELINE_CHECK.to_string(), state);
        }
        Ok(states)
    }

    /// Take a draft merge request out of draft: GitLab reads that from its title.
    pub async fn mark_ready(&self, iid: u64) -> Result<()> {
        let path = self.path(&format!("/merge_requests/{iid}"));
        let mr = self.send(Req::get(&path)).await?;
        let title = str_at(&mr.body, &["title"]).unwrap_or_default();
        if !is_draft_title(title) {
            return Ok(());
        }
        self.send(Req::put(&path, json!({ "title": without_draft(title) })))
            .await?;
        Ok(())
    }

    /// Merge `iid` if its head is still `sha`; `method` is `merge` or `squash` (GitLab's
    /// rebase is a project setting, not a request).
    pub async fn merge_pr(&self, iid: u64, sha: &str, method: &str) -> Result<MergeAnswer> {
        let squash = match method {
            "merge" => false,
            "squash" => true,
            other => {
                return Err(Error::Config(format!(
                    "gitlab: merge_queue.method {other:?} is not a merge request option; use \"merge\" or \"squash\" (GitLab rebases by the project's merge method setting)"
                )));
            }
        };
        let path = self.path(&format!("/merge_requests/{iid}/merge"));
        // Not repeated by the HTTP layer after a 5xx: the queue reads the MR again instead.
        let mut req = Req::put(
            &path,
            json!({ "sha": sha, "squash": squash, "should_remove_source_branch": false }),
        );
        req.idempotent = false;
        match self.send(req).await {
            Ok(answer) => {
                let merged = ["merge_commit_sha", "squash_commit_sha", "sha"]
                    .iter()
                    .find_map(|k| str_at(&answer.body, &[k]))
                    .unwrap_or(sha);
                Ok(MergeAnswer::Merged(merged.to_string()))
            }
            Err(Error::Status {
                status: 409, body, ..
            }) => Ok(MergeAnswer::HeadMoved(body)),
            Err(Error::Status {
                status: 405 | 406 | 422,
                body,
                ..
            }) => Ok(MergeAnswer::Refused(body)),
            Err(e) => Err(e),
        }
    }
}

/// `Draft: Add hello` → `Add hello` (each of GitLab's draft prefixes).
fn without_draft(title: &str) -> String {
    let t = title.trim_start();
    let lower = t.to_ascii_lowercase();
    for prefix in ["draft:", "[draft]", "(draft)"] {
        if lower.starts_with(prefix) {
            return t[prefix.len()..].trim_start().to_string();
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_prefix_is_taken_off_the_title() {
        assert_eq!(without_draft("Draft: web-1: Add hello"), "web-1: Add hello");
        assert_eq!(without_draft("[Draft] x"), "x");
        assert_eq!(without_draft("(draft)x"), "x");
        assert_eq!(without_draft("Ready"), "Ready");
    }
}
