//! The issue endpoints: list (filtered, sorted, paginated), create, edit (labels, state events)
//! and issue links.

use serde_json::{Value, json};

use super::routes::{Out, Params, err, missing, not_found, sort_by_params};
use super::{FakeState, IssueRec, LinkRec, now_ms};

const LINK_TYPES: [&str; 3] = ["relates_to", "blocks", "is_blocked_by"];

impl FakeState {
    pub(super) fn list_issues(&self, p: &Params) -> Out {
        let state = p.str("state").unwrap_or_else(|| "all".into());
        let labels = p.list("labels").unwrap_or_default();
        let search = p.str("search").map(|s| s.to_lowercase());
        let within = p.str("in").unwrap_or_else(|| "title,description".into());
        let mut items: Vec<&IssueRec> = self
            .issues
            .values()
            .filter(|i| state == "all" || i.state == state)
            .filter(|i| has_labels(&i.labels, &labels))
            .filter(|i| {
                let Some(needle) = &search else {
                    return true;
                };
                (within.contains("title") && i.title.to_lowercase().contains(needle))
                    || (within.contains("description")
                        && i.description.to_lowercase().contains(needle))
            })
            .filter(|i| {
                p.str("author_username")
                    .is_none_or(|a| i.author.eq_ignore_ascii_case(&a))
            })
            .collect();
        sort_by_params(&mut items, p, |i| (i.created_at, i.updated_at, i.iid));
        let items = items.into_iter().map(|i| self.issue_json(i)).collect();
        self.page(items, p)
    }

    pub(super) fn post_issue(&mut self, p: &Params) -> Out {
        let Some(title) = p.str("title").filter(|t| !t.trim().is_empty()) else {
            return missing(&["title"]);
        };
        let bot = self.opts.bot_username.clone();
        let description = p.str("description").unwrap_or_default();
        let iid = self.create_issue(
            &title,
            &description,
            p.list("labels").unwrap_or_default(),
            &bot,
        );
        match self.issues.get(&iid) {
            Some(i) => Out::json(201, self.issue_json(i)),
            None => not_found(),
        }
    }

    pub(super) fn put_issue(&mut self, iid: Option<u64>, p: &Params) -> Out {
        let Some(i) = iid.and_then(|n| self.issues.get_mut(&n)) else {
            return not_found();
        };
        let t = now_ms();
        match p.str("state_event").as_deref() {
            Some("close") if i.state != "closed" => {
                i.state = "closed".into();
                i.closed_at = Some(t);
            }
            Some("reopen") if i.state != "opened" => {
                i.state = "opened".into();
                i.closed_at = None;
            }
            Some("close" | "reopen") | None => {}
            Some(_) => return err(400, "state_event does not have a valid value"),
        }
        if let Some(title) = p.str("title") {
            i.title = title;
        }
        if let Some(d) = p.str("description") {
            i.description = d;
        }
        edit_labels(&mut i.labels, p);
        i.updated_at = t;
        let iid = i.iid;
        match self.issues.get(&iid) {
            Some(i) => Out::json(200, self.issue_json(i)),
            None => not_found(),
        }
    }

    /// The issues linked to `iid`, from either side, oldest link first.
    pub(super) fn links_of(&self, iid: u64) -> Vec<(&LinkRec, u64, String)> {
        self.links
            .iter()
            .filter_map(|l| {
                if l.source == iid {
                    Some((l, l.target, l.link_type.clone()))
                } else if l.target == iid {
                    let seen_from_target = match l.link_type.as_str() {
                        "blocks" => "is_blocked_by",
                        "is_blocked_by" => "blocks",
                        other => other,
                    };
                    Some((l, l.source, seen_from_target.to_string()))
                } else {
                    None
                }
            })
            .collect()
    }

    pub(super) fn list_links(&self, iid: Option<u64>, p: &Params) -> Out {
        let Some(iid) = iid.filter(|n| self.issues.contains_key(n)) else {
            return not_found();
        };
        let items = self
            .links_of(iid)
            .into_iter()
            .filter_map(|(l, other, link_type)| {
                let mut v = self.issue_json(self.issues.get(&other)?);
                let obj = v.as_object_mut()?;
                obj.insert("issue_link_id".into(), json!(l.id));
                obj.insert("link_type".into(), json!(link_type));
                Some(v)
            })
            .collect();
        self.page(items, p)
    }

    pub(super) fn post_link(&mut self, iid: Option<u64>, p: &Params) -> Out {
        let Some(source) = iid.filter(|n| self.issues.contains_key(n)) else {
            return not_found();
        };
        let (Some(project), Some(target)) = (p.str("target_project_id"), p.str("target_issue_iid"))
        else {
            let absent: Vec<&str> = ["target_project_id", "target_issue_iid"]
                .into_iter()
                .filter(|k| p.str(k).is_none())
                .collect();
            return missing(&absent);
        };
        if !self.is_project(&project) {
            return err(404, "404 Project Not Found");
        }
        let Some(target) = target
            .parse::<u64>()
            .ok()
            .filter(|n| self.issues.contains_key(n))
        else {
            return not_found();
        };
        let link_type = p.str("link_type").unwrap_or_else(|| "relates_to".into());
        if !LINK_TYPES.contains(&link_type.as_str()) {
            return err(400, "link_type does not have a valid value");
        }
        if source == target || self.links_of(source).iter().any(|(_, o, _)| *o == target) {
            return err(409, "Issue(s) already assigned");
        }
        let id = self.id();
        self.links.push(LinkRec {
            id,
            source,
            target,
            link_type: link_type.clone(),
        });
        let issue = |n: u64| {
            self.issues
                .get(&n)
                .map(|i| self.issue_json(i))
                .unwrap_or(Value::Null)
        };
        Out::json(
            201,
            json!({
                "source_issue": issue(source),
                "target_issue": issue(target),
                "link_type": link_type,
            }),
        )
    }
}

/// GitLab's `labels` filter: all must be present; `None` means no labels, `Any` at least one.
pub(super) fn has_labels(have: &[String], wanted: &[String]) -> bool {
    match wanted {
        [one] if one.eq_ignore_ascii_case("none") => have.is_empty(),
        [one] if one.eq_ignore_ascii_case("any") => !have.is_empty(),
        _ => wanted
            .iter()
            .all(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w))),
    }
}

/// `labels` replaces the set; `add_labels` and `remove_labels` edit it.
pub(super) fn edit_labels(labels: &mut Vec<String>, p: &Params) {
    if let Some(new) = p.list("labels") {
        labels.clear();
        add_all(labels, new);
    }
    add_all(labels, p.list("add_labels").unwrap_or_default());
    let remove = p.list("remove_labels").unwrap_or_default();
    labels.retain(|l| !remove.iter().any(|r| r.eq_ignore_ascii_case(l)));
}

pub(super) fn add_all(labels: &mut Vec<String>, new: Vec<String>) {
    for name in new {
        if !labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
            labels.push(name);
        }
    }
}
