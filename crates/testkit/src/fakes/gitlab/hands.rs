//! The test's hands on the fake project: create issues, labels and notes, push to an MR's
//! branch, merge it, and read it all back in the API's shapes.

use serde_json::{Map, Value, json};

use super::{FakeGitLab, Noteable};

impl FakeGitLab {
    /// Create an issue as `author`; returns its iid (1, 2, ...).
    pub fn add_issue(&self, title: &str, description: &str, labels: &[&str], author: &str) -> u64 {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        self.state()
            .create_issue(title, description, labels, author)
    }

    pub fn add_label(&self, iid: u64, label: &str) {
        if let Some(i) = self.state().issues.get_mut(&iid) {
            super::issues::add_all(&mut i.labels, vec![label.to_string()]);
        }
    }

    /// The issue as `GET /projects/:id/issues/:iid` answers it (`Null` if there is none).
    pub fn issue(&self, iid: u64) -> Value {
        let s = self.state();
        s.issues
            .get(&iid)
            .map(|i| s.issue_json(i))
            .unwrap_or_default()
    }

    /// Every note on issue `iid`, oldest first.
    pub fn issue_notes(&self, iid: u64) -> Vec<Value> {
        self.notes_on(Noteable::Issue(iid))
    }

    /// The iids of the issues linked to `iid`, from either side, oldest link first.
    pub fn linked_issues(&self, iid: u64) -> Vec<u64> {
        let s = self.state();
        s.links_of(iid)
            .into_iter()
            .map(|(_, other, _)| other)
            .collect()
    }

    /// The newest MR from `branch`, in any state.
    pub fn mr_by_source(&self, branch: &str) -> Option<Value> {
        let s = self.state();
        s.mrs
            .values()
            .rfind(|m| m.source_branch == branch)
            .map(|m| s.mr_json(m))
    }

    /// The MR as `GET /projects/:id/merge_requests/:iid` answers it (`Null` if there is none).
    pub fn mr(&self, iid: u64) -> Value {
        let s = self.state();
        s.mrs.get(&iid).map(|m| s.mr_json(m)).unwrap_or_default()
    }

    /// Every note on MR `iid` (thread replies and diff notes included), oldest first.
    pub fn mr_notes(&self, iid: u64) -> Vec<Value> {
        self.notes_on(Noteable::Mr(iid))
    }

    fn notes_on(&self, on: Noteable) -> Vec<Value> {
        let s = self.state();
        s.notes
            .iter()
            .filter(|n| n.on == on)
            .map(|n| s.note_json(n))
            .collect()
    }

    /// MR `iid`'s discussions, oldest first, as `GET .../discussions` answers them.
    pub fn discussions(&self, iid: u64) -> Vec<Value> {
        let s = self.state();
        s.discussions
            .iter()
            .filter(|d| d.on == Noteable::Mr(iid))
            .map(|d| s.discussion_json(&d.id))
            .collect()
    }

    /// A note by `author` on MR `mr_iid`, as a single-note discussion; returns (note id,
    /// discussion id), or `(0, "")` if there is no such MR.
    pub fn add_mr_note(&self, mr_iid: u64, author: &str, body: &str) -> (u64, String) {
        let mut s = self.state();
        if !s.mrs.contains_key(&mr_iid) {
            return (0, String::new());
        }
        s.start_discussion(Noteable::Mr(mr_iid), author, body, true, None)
    }

    /// A diff note by `author` on `path` line `line` of MR `mr_iid`'s head, starting a
    /// resolvable thread; returns (note id, discussion id), or `(0, "")` if there is no such MR.
    pub fn add_diff_note(
        &self,
        mr_iid: u64,
        author: &str,
        body: &str,
        path: &str,
        line: u32,
    ) -> (u64, String) {
        let mut s = self.state();
        if !s.mrs.contains_key(&mr_iid) {
            return (0, String::new());
        }
        let on = Noteable::Mr(mr_iid);
        let mut given = Map::new();
        given.insert("new_path".into(), json!(path));
        given.insert("new_line".into(), json!(line));
        let position = s.position(on, &given);
        s.start_discussion(on, author, body, false, Some(position))
    }

    /// A new commit on `branch`: the open MRs from it get `sha` as their head.
    pub fn push(&self, branch: &str, sha: &str) {
        let t = super::now_ms();
        for m in self.state().mrs.values_mut() {
            if m.source_branch == branch && m.state == "opened" {
                m.sha = sha.to_string();
                m.updated_at = t;
            }
        }
    }

    /// Merge open MR `mr_iid` as `by` (drafts too); when `close_issues_on_merge`, the issues
    /// its description closes (`Closes #3`) are closed.
    pub fn merge(&self, mr_iid: u64, by: &str) {
        self.state().merge(mr_iid, by);
    }
}
