//! The workflow endpoints: `GET|POST /issue/{key}/transitions`. Every transition is global:
//! available from every status but its target.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::render::status_json;
use super::{Answer, FakeTransition, Shared, bad_request, issue_not_found};

impl Shared {
    fn available(&self, status: &str) -> Vec<&FakeTransition> {
        self.options
            .workflow
            .iter()
            .filter(|t| !t.to.eq_ignore_ascii_case(status))
            .collect()
    }

    pub(super) fn transitions(&self, key: &str) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let base = self.base();
        let list: Vec<Value> = self
            .available(&db.issues[i].status)
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "name": t.name,
                    "to": status_json(&base, &self.options.workflow, &t.to),
                    "hasScreen": false,
                    "isGlobal": true,
                    "isInitial": false,
                    "isAvailable": true,
                    "isConditional": false,
                    "isLooped": false,
                })
            })
            .collect();
        (
            StatusCode::OK,
            json!({"expand": "transitions", "transitions": list}),
        )
    }

    pub(super) fn do_transition(&self, key: &str, body: &Value) -> Answer {
        let id = match body.pointer("/transition/id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return bad_request("Missing 'transition' identifier"),
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let Some(to) = self
            .available(&db.issues[i].status)
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.to.clone())
        else {
            return bad_request(&format!(
                "Transition id '{id}' is not valid for this issue."
            ));
        };
        let now = db.tick();
        db.issues[i].status = to;
        db.issues[i].updated = now;
        (StatusCode::NO_CONTENT, Value::Null)
    }
}
