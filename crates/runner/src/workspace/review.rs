//! Planning a review round in the workspace: a snapshot of what is reviewed, the diff (and the
//! delta since the previous round) in the run directory, the angles and the triage policy.

use chrono::Utc;
use codemill_core::ids::JobId;
use codemill_core::pipeline::{Effect, JobEvent, JobState, ReviewPlan};
use codemill_core::review::choose_angles;
use codemill_store::{Lease, StoreError};

use super::Workspace;
use crate::effects::{failed, review_prefix};

/// Checklists a repository adds or overrides: `.codemill/review/<angle>.md`.
const CHECKLIST_DIR: &str = ".codemill/review/";

/// Files named in a unified diff's `+++ b/...` / `--- a/...` headers.
fn diff_files(diff: &str) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for line in diff.lines() {
        let path = line
            .strip_prefix("+++ b/")
            .or_else(|| line.strip_prefix("--- a/"))
            .map(str::trim);
        if let Some(p) = path
            && !files.iter().any(|f| f == p)
        {
            files.push(p.to_string());
        }
    }
    files
}

impl Workspace {
    /// Plan a review round: snapshot what is reviewed, write the diff (and the delta since the
    /// previous round), choose the angles and record the triage policy.
    pub(crate) async fn plan_review(
        &self,
        job: JobId,
        lease: &Lease,
        state: &JobState,
        effect: &Effect,
        round: u32,
    ) -> Result<JobEvent, StoreError> {
        let Some(worktree) = self.worktree(state) else {
            return Ok(failed(effect, "the ticket's worktree is missing"));
        };
        let mut inputs: Vec<(&str, String)> = Vec::new();
        let key = &state.ticket;
        let base = state.base_commit.clone().unwrap_or_default();
        let head = state.commit.clone().unwrap_or_else(|| base.clone());
        let identity = &self.identity;
        let refname = format!("refs/codemill/review/{key}/{round}");
        let message = format!("codemill review snapshot of {key}, round {round} (job {job})");
        let snapshot = match self
            .git
            .snapshot_wip_since(&worktree, &refname, &base, &message, identity)
            .await
        {
            Ok(s) => s,
            Err(e) => return Ok(failed(effect, e)),
        };
        // The snapshot holds exactly the reviewed files: diffing it saves staging them again.
        let diffed = match &snapshot {
            Some(sha) => self.git.diff(&worktree, &base, Some(sha)).await,
            None => self.git.diff(&worktree, &base, None).await,
        };
        let diff = match diffed {
            Ok(d) => d,
            Err(e) => return Ok(failed(effect, e)),
        };
        inputs.push(("diff.patch", diff.clone()));
        let mut changed = diff_files(&diff);
        if round > 0 {
            // The previous round's snapshot: what the reviewers saw last time.
            let previous = state
                .review_plan
                .as_ref()
                .and_then(|p| p.snapshot.clone())
                .unwrap_or_else(|| base.clone());
            let delta = match self.git.diff(&worktree, &previous, None).await {
                Ok(d) => d,
                Err(e) => return Ok(failed(effect, e)),
            };
            changed = diff_files(&delta);
            let mut earlier = String::from("# Findings of earlier review rounds\n");
            for (r, decisions) in &state.triage {
                for d in decisions {
                    earlier.push_str(&format!(
                        "\n- round {r} [{}] {} at {} — triage: {} ({})",
                        d.finding.severity.as_str(),
                        d.finding.title,
                        d.finding.location(),
                        d.bucket.as_str(),
                        d.reason
                    ));
                }
            }
            inputs.push(("delta.patch", delta));
            inputs.push(("earlier-findings.md", earlier));
        }
        let policy = match self.policy(state).await {
            Ok(p) => p,
            Err(e) => return Ok(failed(effect, e)),
        };
        let clone = self.home.clone_dir(key.project());
        let trusted = state.policy_base().unwrap_or_default();
        let files = match self.git.list_files(&clone, &trusted).await {
            Ok(f) => f,
            Err(e) => return Ok(failed(effect, e)),
        };
        let mut checklists = Vec::new();
        for file in files
            .iter()
            .filter(|f| f.starts_with(CHECKLIST_DIR) && f.ends_with(".md"))
        {
            let name = file[CHECKLIST_DIR.len()..file.len() - 3].to_string();
            if name.contains('/') {
                continue;
            }
            match self.git.read_file_at(&clone, &trusted, file).await {
                Ok(Some(text)) => checklists.push((name, text)),
                Ok(None) => {}
                Err(e) => return Ok(failed(effect, e)),
            }
        }
        let mut angles = choose_angles(&diff_files(&diff), &diff, &checklists);
        if !state.stack.is_empty() {
            // Each sub-task was reviewed alone; the whole stack gets the architecture angle.
            angles.retain(|a| a.name == "architecture");
        }
        // The reviewers' inputs and the snapshot are kept with the job: the review sessions, and
        // the next round's delta, may run on another worker.
        let prefix = review_prefix(round);
        for (name, text) in &inputs {
            self.store
                .put_artifact(
                    lease,
                    &format!("{prefix}{name}"),
                    text.as_bytes(),
                    None,
                    Utc::now(),
                )
                .await?;
        }
        if let Some(sha) = snapshot.as_ref().filter(|s| **s != head) {
            let refname = format!("refs/codemill/jobs/{job}/review-{round}");
            let clone = self.home.clone_dir(key.project());
            let body = match self.git.bundle(&clone, &refname, sha, &head).await {
                Ok(b) => b,
                Err(e) => return Ok(failed(effect, e)),
            };
            self.store
                .put_artifact(
                    lease,
                    &format!("git/review-{round}"),
                    &body,
                    Some(sha),
                    Utc::now(),
                )
                .await?;
        }
        Ok(JobEvent::ReviewPlanned {
            plan: ReviewPlan {
                round,
                angles,
                policy: policy.map(|p| p.triage).unwrap_or_default(),
                changed_files: changed,
                snapshot,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_a_diff() {
        let diff = "diff --git a/src/a.rs b/src/a.rs\n--- a/src/a.rs\n+++ b/src/a.rs\n@@\n+x\ndiff --git a/new.txt b/new.txt\n--- /dev/null\n+++ b/new.txt\n+y\n";
        assert_eq!(diff_files(diff), vec!["src/a.rs", "new.txt"]);
    }
}
