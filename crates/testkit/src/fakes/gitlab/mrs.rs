//! The merge request endpoints: list (filtered, sorted, paginated), create (one open MR per
//! source branch), edit (title, description, labels, state events) and merge.

use serde_json::json;

use super::issues::edit_labels;
use super::routes::{Out, Params, err, missing, not_found, sort_by_params};
use super::{FakeState, MrRec, fake_sha, is_draft, now_ms};

impl FakeState {
    pub(super) fn list_mrs(&self, p: &Params) -> Out {
        let state = p.str("state").unwrap_or_else(|| "all".into());
        let source = p.str("source_branch");
        let target = p.str("target_branch");
        let mut items: Vec<&MrRec> = self
            .mrs
            .values()
            .filter(|m| state == "all" || m.state == state)
            .filter(|m| source.as_ref().is_none_or(|b| *b == m.source_branch))
            .filter(|m| target.as_ref().is_none_or(|b| *b == m.target_branch))
            .collect();
        sort_by_params(&mut items, p, |m| (m.created_at, m.updated_at, m.iid));
        let items = items.into_iter().map(|m| self.mr_json(m)).collect();
        self.page(items, p)
    }

    pub(super) fn post_mr(&mut self, p: &Params) -> Out {
        let source = p.str("source_branch").filter(|s| !s.is_empty());
        let target = p.str("target_branch").filter(|s| !s.is_empty());
        let title = p.str("title").filter(|s| !s.trim().is_empty());
        let (Some(source), Some(target), Some(title)) = (&source, &target, &title) else {
            let absent: Vec<&str> = [
                ("source_branch", source.is_none()),
                ("target_branch", target.is_none()),
                ("title", title.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, gone)| gone.then_some(k))
            .collect();
            return missing(&absent);
        };
        if let Some(open) = self
            .mrs
            .values()
            .find(|m| m.state == "opened" && m.source_branch == *source)
        {
            let message = format!(
                "Another open merge request already exists for this source branch: !{}",
                open.iid
            );
            // GitLab answers this one with a list of messages.
            return Out::json(409, json!({ "message": [message] }));
        }
        let iid = self.next_mr;
        self.next_mr += 1;
        let t = now_ms();
        let mut labels = Vec::new();
        edit_labels(&mut labels, p);
        let rec = MrRec {
            iid,
            title: title.clone(),
            description: p.str("description").unwrap_or_default(),
            state: "opened".into(),
            labels,
            source_branch: source.clone(),
            target_branch: target.clone(),
            sha: fake_sha(&format!("{source}:{iid}")),
            merge_commit_sha: None,
            author: self.opts.bot_username.clone(),
            created_at: t,
            updated_at: t,
            merged_at: None,
            merged_by: None,
            closed_at: None,
            squashed: None,
        };
        let out = Out::json(201, self.mr_json(&rec));
        self.mrs.insert(iid, rec);
        out
    }

    pub(super) fn put_mr(&mut self, iid: Option<u64>, p: &Params) -> Out {
        let Some(m) = iid.and_then(|n| self.mrs.get_mut(&n)) else {
            return not_found();
        };
        let t = now_ms();
        match p.str("state_event").as_deref() {
            // A merged MR can be neither closed nor reopened.
            Some("close") if m.state == "opened" => {
                m.state = "closed".into();
                m.closed_at = Some(t);
            }
            Some("reopen") if m.state == "closed" => {
                m.state = "opened".into();
                m.closed_at = None;
            }
            Some("close" | "reopen") | None => {}
            Some(_) => return err(400, "state_event does not have a valid value"),
        }
        if let Some(title) = p.str("title") {
            m.title = title;
        }
        if let Some(d) = p.str("description") {
            m.description = d;
        }
        if let Some(b) = p.str("target_branch") {
            m.target_branch = b;
        }
        edit_labels(&mut m.labels, p);
        m.updated_at = t;
        let iid = m.iid;
        match self.mrs.get(&iid) {
            Some(m) => Out::json(200, self.mr_json(m)),
            None => not_found(),
        }
    }

    /// `PUT .../merge_requests/:iid/merge`: merges an open, non-draft MR as the bot; `sha`, when
    /// given, must be the MR's head.
    pub(super) fn put_merge(&mut self, iid: Option<u64>, p: &Params) -> Out {
        let Some(m) = iid.and_then(|n| self.mrs.get(&n)) else {
            return not_found();
        };
        if m.state != "opened" || is_draft(&m.title) {
            return err(405, "405 Method Not Allowed");
        }
        if p.str("sha").is_some_and(|s| s != m.sha) {
            let message = format!("SHA does not match HEAD of source branch: {}", m.sha);
            return err(409, &message);
        }
        if self.pipeline_must_succeed && !self.pipeline_passed(&m.sha) {
            return err(405, "405 Method Not Allowed");
        }
        let squash = p.str("squash").as_deref() == Some("true");
        let (iid, bot) = (m.iid, self.opts.bot_username.clone());
        let landed = self.merged_by_hook(iid, squash);
        self.merge(iid, &bot);
        if let Some(m) = self.mrs.get_mut(&iid) {
            m.squashed = Some(squash);
            if landed.is_some() {
                m.merge_commit_sha = landed;
            }
        }
        match self.mrs.get(&iid) {
            Some(m) => Out::json(200, self.mr_json(m)),
            None => not_found(),
        }
    }
}
