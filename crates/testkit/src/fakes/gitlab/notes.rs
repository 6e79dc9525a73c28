//! Notes and discussions, alike on issues and merge requests: list and add notes, edit one,
//! list and start discussions (diff notes with a `position` included), reply in a thread and
//! resolve it.

use serde_json::{Map, Value, json};

use super::routes::{Out, Params, err, missing, not_found, sort_by_params};
use super::{FakeState, NoteRec, Noteable, now_ms};

impl FakeState {
    pub(super) fn notes_route(
        &mut self,
        method: &axum::http::Method,
        on: Noteable,
        sub: &str,
        more: &[&str],
        p: &Params,
    ) -> Out {
        use axum::http::Method;
        let bot = self.opts.bot_username.clone();
        let num = |s: &str| s.parse::<u64>().ok();
        match (method.clone(), sub, more) {
            (Method::GET, "notes", []) => {
                let mut notes: Vec<&NoteRec> = self.notes.iter().filter(|n| n.on == on).collect();
                sort_by_params(&mut notes, p, |n| (n.created_at, n.updated_at, n.id));
                let items = notes.into_iter().map(|n| self.note_json(n)).collect();
                self.page(items, p)
            }
            (Method::POST, "notes", []) => {
                let Some(body) = p.str("body") else {
                    return missing(&["body"]);
                };
                let (id, _) = self.start_discussion(on, &bot, &body, true, None);
                self.note_out(201, id)
            }
            (Method::GET, "notes", [id]) => match num(id) {
                Some(id) if self.notes.iter().any(|n| n.id == id && n.on == on) => {
                    self.note_out(200, id)
                }
                _ => not_found(),
            },
            (Method::PUT, "notes", [id]) | (Method::PUT, "discussions", [_, "notes", id]) => {
                let Some(body) = p.str("body") else {
                    return missing(&["body"]);
                };
                let Some(n) =
                    num(id).and_then(|id| self.notes.iter_mut().find(|n| n.id == id && n.on == on))
                else {
                    return not_found();
                };
                n.body = body;
                n.updated_at = now_ms();
                let id = n.id;
                self.note_out(200, id)
            }
            (Method::GET, "discussions", []) => {
                let items = self
                    .discussions
                    .iter()
                    .filter(|d| d.on == on)
                    .map(|d| self.discussion_json(&d.id))
                    .collect();
                self.page(items, p)
            }
            (Method::POST, "discussions", []) => {
                let Some(body) = p.str("body") else {
                    return missing(&["body"]);
                };
                let position = match p.body.get("position") {
                    Some(Value::Object(pos)) => Some(self.position(on, pos)),
                    Some(Value::Null) | None => None,
                    Some(_) => return err(400, "position is invalid"),
                };
                let (_, discussion) = self.start_discussion(on, &bot, &body, false, position);
                Out::json(201, self.discussion_json(&discussion))
            }
            (Method::GET, "discussions", [d]) => match self.discussion_on(on, d) {
                Some(d) => Out::json(200, self.discussion_json(&d)),
                None => not_found(),
            },
            (Method::PUT, "discussions", [d]) => {
                let Some(resolved) = p.str("resolved") else {
                    return missing(&["resolved"]);
                };
                let Some(rec) = self
                    .discussions
                    .iter_mut()
                    .find(|x| x.on == on && x.id == *d && !x.individual)
                else {
                    return not_found();
                };
                rec.resolved = resolved == "true";
                let id = rec.id.clone();
                Out::json(200, self.discussion_json(&id))
            }
            (Method::POST, "discussions", [d, "notes"]) => {
                let Some(body) = p.str("body") else {
                    return missing(&["body"]);
                };
                match self.reply(on, d, &bot, &body) {
                    Some(id) => self.note_out(201, id),
                    None => not_found(),
                }
            }
            _ => err(404, "404 Not Found"),
        }
    }

    fn discussion_on(&self, on: Noteable, id: &str) -> Option<String> {
        self.discussions
            .iter()
            .find(|d| d.on == on && d.id == id)
            .map(|d| d.id.clone())
    }

    fn note_out(&self, status: u16, id: u64) -> Out {
        match self.notes.iter().find(|n| n.id == id) {
            Some(n) => Out::json(status, self.note_json(n)),
            None => not_found(),
        }
    }

    /// A diff note's `position` as GitLab stores it: what the client sent, with the MR's diff
    /// refs, `position_type` and `old_path` filled in when absent.
    pub(super) fn position(&self, on: Noteable, given: &Map<String, Value>) -> Value {
        let (base, head) = match on {
            Noteable::Mr(iid) => self
                .mrs
                .get(&iid)
                .map(|m| (self.base_sha(m), m.sha.clone()))
                .unwrap_or_default(),
            Noteable::Issue(_) => Default::default(),
        };
        let mut pos = json!({
            "base_sha": base,
            "start_sha": base,
            "head_sha": head,
            "position_type": "text",
            "old_path": given.get("new_path").cloned().unwrap_or(Value::Null),
            "new_path": Value::Null,
            "old_line": Value::Null,
            "new_line": Value::Null,
        });
        if let Some(obj) = pos.as_object_mut() {
            obj.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        pos
    }
}
