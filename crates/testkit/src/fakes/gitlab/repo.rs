//! What a merge through the API reads and asks: branches (`GET /repository/branches/:name`),
//! pipelines by commit (`GET /pipelines?sha=`), the project's "pipelines must succeed" setting,
//! and a hook that lets a test move its real repository when the fake merges.

use std::sync::Arc;

use serde_json::json;

use super::routes::{Out, Params, err};
use super::{FakeGitLab, FakeState};

/// Called on a merge with (target branch, the MR's head, squash); answers the commit the
/// target now points at.
pub(super) type MergeHook = Arc<dyn Fn(&str, &str, bool) -> Option<String> + Send + Sync>;

pub(super) struct PipelineRec {
    pub(super) id: u64,
    pub(super) sha: String,
    pub(super) status: String,
}

impl FakeState {
    pub(super) fn get_branch(&self, name: &str) -> Out {
        match self.branches.get(name) {
            Some(sha) => Out::json(
                200,
                json!({
                    "name": name,
                    "commit": {"id": sha, "short_id": &sha[..sha.len().min(8)]},
                    "protected": name == "main",
                    "default": name == "main",
                    "merged": false,
                }),
            ),
            None => err(404, "404 Branch Not Found"),
        }
    }

    /// Pipelines, newest first, filtered by `sha` and `status` as GitLab does.
    pub(super) fn list_pipelines(&self, p: &Params) -> Out {
        let sha = p.str("sha");
        let status = p.str("status");
        let mut items: Vec<&PipelineRec> = self
            .pipelines
            .iter()
            .filter(|r| sha.as_ref().is_none_or(|s| *s == r.sha))
            .filter(|r| status.as_ref().is_none_or(|s| *s == r.status))
            .collect();
        items.sort_by_key(|r| std::cmp::Reverse(r.id));
        let items = items
            .into_iter()
            .map(|r| {
                json!({"id": r.id, "iid": r.id, "project_id": self.opts.project_id, "sha": r.sha,
                       "status": r.status, "source": "merge_request_event",
                       "web_url": format!("{}/-/pipelines/{}", self.project_web_url(), r.id)})
            })
            .collect();
        self.page(items, p)
    }

    /// Whether `sha`'s newest pipeline succeeded (what "pipelines must succeed" asks).
    pub(super) fn pipeline_passed(&self, sha: &str) -> bool {
        self.pipelines
            .iter()
            .filter(|r| r.sha == sha)
            .max_by_key(|r| r.id)
            .is_some_and(|r| r.status == "success")
    }

    /// The merge hook's commit for an MR merged now, moving the target branch to it.
    pub(super) fn merged_by_hook(&mut self, iid: u64, squash: bool) -> Option<String> {
        let (target, head) = {
            let m = self.mrs.get(&iid)?;
            (m.target_branch.clone(), m.sha.clone())
        };
        let hook = self.on_merge.clone()?;
        let sha = hook(&target, &head, squash)?;
        self.branches.insert(target, sha.clone());
        Some(sha)
    }
}

impl FakeGitLab {
    /// Branch `name` points at `sha`.
    pub fn set_branch(&self, name: &str, sha: &str) {
        self.state().branches.insert(name.into(), sha.into());
    }

    /// Where branch `name` points, if it exists.
    pub fn branch(&self, name: &str) -> Option<String> {
        self.state().branches.get(name).cloned()
    }

    /// A new pipeline for `sha` with `status` (`running`, `success`, `failed`, …); its id.
    pub fn set_pipeline(&self, sha: &str, status: &str) -> u64 {
        let mut s = self.state();
        let id = 5000 + s.pipelines.len() as u64;
        s.pipelines.push(PipelineRec {
            id,
            sha: sha.into(),
            status: status.into(),
        });
        id
    }

    /// The project's "Pipelines must succeed" setting.
    pub fn require_pipeline(&self, on: bool) {
        self.state().pipeline_must_succeed = on;
    }

    /// What a merge does to the test's repository: `(target, head, squash) -> new target sha`.
    pub fn on_merge(
        &self,
        hook: impl Fn(&str, &str, bool) -> Option<String> + Send + Sync + 'static,
    ) {
        self.state().on_merge = Some(Arc::new(hook));
    }

    /// Whether merge request `iid` was squashed when merged.
    pub fn squashed(&self, iid: u64) -> Option<bool> {
        self.state().mrs.get(&iid).and_then(|m| m.squashed)
    }
}
