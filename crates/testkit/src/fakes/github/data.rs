//! The test's hands on the fake repository: create issues, comments, labels, assignees and
//! review comments, push to a PR's branch, mark it ready, merge or close it, and read it all back.

use serde_json::Value;

use super::{FakeGitHub, IssueRec, ReviewCommentRec, now};

impl FakeGitHub {
    /// Create an issue as `author`; returns its number.
    pub fn add_issue(&self, title: &str, body: &str, labels: &[&str], author: &str) -> u64 {
        let mut s = self.state();
        s.create_issue(
            title,
            Some(body.to_string()),
            labels.iter().map(|l| l.to_string()).collect(),
            Vec::new(),
            author,
        )
    }

    /// A comment by `author` on issue or PR `number`; returns its id (0 if there is none).
    pub fn add_comment(&self, number: u64, author: &str, body: &str) -> u64 {
        let mut s = self.state();
        if !s.issues.contains_key(&number) {
            return 0;
        }
        s.add_comment(number, author, body)
    }

    pub fn add_label(&self, number: u64, label: &str) {
        if let Some(i) = self.state().issues.get_mut(&number)
            && !i.labels.iter().any(|l| l.eq_ignore_ascii_case(label))
        {
            i.labels.push(label.to_string());
        }
    }

    pub fn assign(&self, number: u64, login: &str) {
        if let Some(i) = self.state().issues.get_mut(&number)
            && !i.assignees.iter().any(|a| a.eq_ignore_ascii_case(login))
        {
            i.assignees.push(login.to_string());
        }
    }

    /// The issue (or PR-as-issue) JSON as `GET /repos/{o}/{r}/issues/{n}` answers it.
    pub fn issue(&self, number: u64) -> Option<Value> {
        let s = self.state();
        s.issues.get(&number).map(|i| s.issue_json(i))
    }

    /// The issue comments of issue or PR `number`, oldest first.
    pub fn comments(&self, number: u64) -> Vec<Value> {
        let s = self.state();
        s.comments
            .iter()
            .filter(|c| c.issue == number)
            .map(|c| s.comment_json(c))
            .collect()
    }

    pub fn labels(&self, number: u64) -> Vec<String> {
        self.state()
            .issues
            .get(&number)
            .map(|i| i.labels.clone())
            .unwrap_or_default()
    }

    /// Every PR, oldest first, as `GET /repos/{o}/{r}/pulls/{n}` answers it.
    pub fn prs(&self) -> Vec<Value> {
        let s = self.state();
        s.issues
            .values()
            .filter(|i| i.pr.is_some())
            .map(|i| s.pr_json(i, true))
            .collect()
    }

    pub fn pr(&self, number: u64) -> Option<Value> {
        let s = self.state();
        s.issues
            .get(&number)
            .filter(|i| i.pr.is_some())
            .map(|i| s.pr_json(i, true))
    }

    /// The open PR from branch `head`, else the newest PR from it.
    pub fn pr_by_head(&self, head: &str) -> Option<Value> {
        let s = self.state();
        let from_head: Vec<&IssueRec> = s
            .issues
            .values()
            .filter(|i| i.pr.as_ref().is_some_and(|p| p.head_ref == head))
            .collect();
        from_head
            .iter()
            .find(|i| i.state == "open")
            .or(from_head.last())
            .map(|i| s.pr_json(i, true))
    }

    /// A review comment by `author` on `path` line `line` of PR `pr`; returns its id (0 if the PR
    /// does not exist).
    pub fn add_review_comment(
        &self,
        pr: u64,
        author: &str,
        body: &str,
        path: &str,
        line: u32,
    ) -> u64 {
        let mut s = self.state();
        let Some(sha) = s
            .issues
            .get(&pr)
            .and_then(|i| i.pr.as_ref())
            .map(|p| p.head_sha.clone())
        else {
            return 0;
        };
        let id = s.id();
        let review_id = s.id();
        s.review_comments.push(ReviewCommentRec {
            id,
            pr,
            user: author.to_string(),
            body: body.to_string(),
            path: path.to_string(),
            line,
            commit_id: sha,
            in_reply_to_id: None,
            review_id,
            created_at: now(),
        });
        id
    }

    /// Every review comment of PR `pr`, oldest first.
    pub fn review_comments(&self, pr: u64) -> Vec<Value> {
        let s = self.state();
        s.review_comments
            .iter()
            .filter(|c| c.pr == pr)
            .map(|c| s.review_comment_json(c))
            .collect()
    }

    /// The review comments of PR `pr` that are replies (`in_reply_to_id` set), oldest first.
    pub fn review_comment_replies(&self, pr: u64) -> Vec<Value> {
        self.review_comments(pr)
            .into_iter()
            .filter(|c| c.get("in_reply_to_id").is_some())
            .collect()
    }

    /// A new commit on branch `head`: the open PRs from it get `sha` as their head.
    pub fn push(&self, head: &str, sha: &str) {
        for i in self.state().issues.values_mut() {
            if let Some(p) = i.pr.as_mut()
                && p.head_ref == head
                && i.state == "open"
            {
                p.head_sha = sha.to_string();
            }
        }
    }

    /// Mark a draft PR ready for review.
    pub fn ready(&self, pr: u64) {
        if let Some(p) = self.state().issues.get_mut(&pr).and_then(|i| i.pr.as_mut()) {
            p.draft = false;
        }
    }

    /// Merge an open PR as `octocat` (drafts too, as if marked ready first). False if it is not
    /// an open PR.
    pub fn merge(&self, pr: u64) -> bool {
        self.state().merge(pr, "octocat")
    }

    /// Close an open PR without merging. False if it is not an open PR.
    pub fn close(&self, pr: u64) -> bool {
        let mut s = self.state();
        let t = now();
        match s.issues.get_mut(&pr) {
            Some(i) if i.pr.is_some() && i.state == "open" => {
                i.state = "closed".into();
                i.closed_at = Some(t);
                i.updated_at = t;
                true
            }
            _ => false,
        }
    }
}
