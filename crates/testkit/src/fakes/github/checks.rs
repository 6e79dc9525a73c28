//! Branches with protection, check runs and commit statuses: `GET /branches/{b}` (with the
//! `protection.required_status_checks` GitHub shows readers), `GET /commits/{sha}/check-runs`,
//! `GET /commits/{sha}/status`, the GraphQL mutation that marks a draft ready, and the test's
//! hands on them. A merge into a protected branch is
//! refused (405, GitHub's message) until every required check passed on the PR's head.

use serde_json::{Value, json};

use super::routes::{Out, not_found};
use super::{FakeGitHub, FakeState, rfc3339, small_hash};

/// One check run (or commit status) on a commit.
#[derive(Debug, Clone)]
pub(super) struct CheckRec {
    pub sha: String,
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// With `completed`: `success`, `failure`, `neutral`, `cancelled`, `skipped`, `timed_out`.
    pub conclusion: Option<String>,
    /// A commit status (`POST /statuses`) rather than a check run.
    pub legacy: bool,
}

impl FakeState {
    pub(super) fn get_branch(&self, name: &str) -> Out {
        let Some(sha) = self.branches.get(name) else {
            return not_found();
        };
        let required = self.required_checks.get(name);
        let (o, r, base) = (&self.opts.owner, &self.opts.repo, &self.base);
        let protection = match required {
            Some(contexts) => json!({
                "enabled": true,
                "required_status_checks": {
                    "enforcement_level": "non_admins",
                    "contexts": contexts,
                    "checks": contexts.iter().map(|c| json!({"context": c, "app_id": null})).collect::<Vec<_>>(),
                }
            }),
            None => json!({
                "enabled": false,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}
            }),
        };
        Out::json(
            200,
            json!({
                "name": name,
                "commit": {"sha": sha, "url": format!("{base}/repos/{o}/{r}/commits/{sha}")},
                "_links": {"self": format!("{base}/repos/{o}/{r}/branches/{name}"), "html": format!("https://github.com/{o}/{r}/tree/{name}")},
                "protected": required.is_some(),
                "protection": protection,
                "protection_url": format!("{base}/repos/{o}/{r}/branches/{name}/protection"),
            }),
        )
    }

    pub(super) fn get_check_runs(&self, sha: &str) -> Out {
        let (o, r, base) = (&self.opts.owner, &self.opts.repo, &self.base);
        let runs: Vec<Value> = self
            .checks
            .iter()
            .filter(|c| c.sha == sha && !c.legacy)
            .map(|c| {
                let id = small_hash(&format!("{}:{}", c.sha, c.name));
                json!({
                    "id": id,
                    "name": c.name,
                    "head_sha": c.sha,
                    "status": c.status,
                    "conclusion": c.conclusion,
                    "started_at": rfc3339(0),
                    "url": format!("{base}/repos/{o}/{r}/check-runs/{id}"),
                    "app": {"slug": "ci"},
                })
            })
            .collect();
        Out::json(200, json!({"total_count": runs.len(), "check_runs": runs}))
    }

    pub(super) fn get_combined_status(&self, sha: &str) -> Out {
        let statuses: Vec<Value> = self
            .checks
            .iter()
            .filter(|c| c.sha == sha && c.legacy)
            .map(|c| {
                json!({
                    "context": c.name,
                    "state": c.conclusion.as_deref().unwrap_or("pending"),
                    "description": null,
                    "target_url": null,
                })
            })
            .collect();
        let state = if statuses
            .iter()
            .any(|s| s["state"] != "success" && s["state"] != "pending")
        {
            "failure"
        } else if statuses.iter().all(|s| s["state"] == "success") {
            "success"
        } else {
            "pending"
        };
        Out::json(
            200,
            json!({"state": state, "sha": sha, "total_count": statuses.len(), "statuses": statuses}),
        )
    }

    /// `POST /graphql`: only the mutation `markPullRequestReadyForReview` (the REST API cannot
    /// un-draft a PR), by the PR's `node_id` in `variables.id`; answers GraphQL errors (200)
    /// like GitHub for anything else.
    pub(super) fn graphql(&mut self, json: &Value) -> Out {
        let query = json
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !query.contains("markPullRequestReadyForReview") {
            return Out::json(
                200,
                json!({"errors": [{"message": "this fake answers only markPullRequestReadyForReview"}]}),
            );
        }
        let id = json["variables"]["id"].as_str().unwrap_or_default();
        let found = self
            .issues
            .values_mut()
            .find(|i| i.pr.is_some() && format!("PR_{}", i.id) == id);
        match found.and_then(|i| i.pr.as_mut().map(|p| (i.number, p))) {
            Some((number, p)) => {
                p.draft = false;
                Out::json(
                    200,
                    json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false, "number": number}}}}),
                )
            }
            None => Out::json(
                200,
                json!({"data": {"markPullRequestReadyForReview": null}, "errors": [{"type": "NOT_FOUND", "path": ["markPullRequestReadyForReview"], "message": format!("Could not resolve to a node with the global id of '{id}'")}]}),
            ),
        }
    }

    /// The first required check of `base` that has not passed on `sha`, as GitHub words it.
    pub(super) fn unmet_check(&self, base: &str, sha: &str) -> Option<String> {
        let required = self.required_checks.get(base)?;
        required
            .iter()
            .find(|name| {
                !self.checks.iter().any(|c| {
                    c.sha == sha
                        && &c.name == *name
                        && c.conclusion.as_deref() == Some("success")
                        && (c.legacy || c.status == "completed")
                })
            })
            .map(|name| format!("Required status check \"{name}\" is expected."))
    }
}

impl FakeGitHub {
    /// Set branch `name` to `sha` (the fake has no git; the test keeps it in step).
    pub fn set_branch(&self, name: &str, sha: &str) {
        self.state()
            .branches
            .insert(name.to_string(), sha.to_string());
    }

    /// The sha branch `name` is at.
    pub fn branch(&self, name: &str) -> Option<String> {
        self.state().branches.get(name).cloned()
    }

    /// Protect `branch`: these status checks must pass on a PR's head before it merges.
    pub fn require_checks(&self, branch: &str, contexts: &[&str]) {
        self.state().required_checks.insert(
            branch.to_string(),
            contexts.iter().map(|c| c.to_string()).collect(),
        );
    }

    /// Report check run `name` on `sha` (replacing an earlier report of it): `status` is
    /// `queued`, `in_progress` or `completed` (then with a `conclusion`).
    pub fn set_check(&self, sha: &str, name: &str, status: &str, conclusion: Option<&str>) {
        self.record_check(sha, name, status, conclusion, false);
    }

    /// Report commit status `context` on `sha`: `pending`, `success`, `failure` or `error`.
    pub fn set_status(&self, sha: &str, context: &str, state: &str) {
        let conclusion = (state != "pending").then_some(state);
        self.record_check(sha, context, "completed", conclusion, true);
    }

    fn record_check(
        &self,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
        legacy: bool,
    ) {
        let mut s = self.state();
        s.checks
            .retain(|c| !(c.sha == sha && c.name == name && c.legacy == legacy));
        s.checks.push(CheckRec {
            sha: sha.to_string(),
            name: name.to_string(),
            status: status.to_string(),
            conclusion: conclusion.map(str::to_string),
            legacy,
        });
    }

    /// Run `hook` on each API merge with (base branch, head sha, merge method); the commit it
    /// returns becomes the merge's `sha` and the base branch's tip (the fake has no git: a test
    /// merges in its real repository there).
    pub fn on_merge(&self, hook: impl Fn(&str, &str, &str) -> Option<String> + Send + 'static) {
        self.state().on_merge = Some(Box::new(hook));
    }

    /// The merge method a PR was merged with through the API.
    pub fn merge_method(&self, pr: u64) -> Option<String> {
        self.state()
            .issues
            .get(&pr)
            .and_then(|i| i.pr.as_ref())
            .and_then(|p| p.merge_method.clone())
    }
}
