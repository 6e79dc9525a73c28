//! The comment endpoints: `GET|POST /issue/{key}/comment` and `GET|PUT
//! /issue/{key}/comment/{id}`, paged, with bodies checked (ADF on v3, wiki strings on v2).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::adf::{TOO_LONG, too_long};
use super::adf_plain_text;
use super::render::render_comment;
use super::{Answer, Api, FComment, Shared, field_error, issue_not_found, jira_error};

impl Shared {
    pub(super) fn list_comments(&self, key: &str, query: &[(String, String)]) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let num = |name: &str, default: usize| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let start = num("startAt", 0);
        let max = num("maxResults", 5000).clamp(1, self.options.page_size.max(1));
        let issue = &db.issues[i];
        let base = self.base();
        let comments: Vec<Value> = issue
            .comments
            .iter()
            .skip(start)
            .take(max)
            .map(|c| render_comment(&db, &base, issue, c))
            .collect();
        (
            StatusCode::OK,
            json!({"startAt": start, "maxResults": max, "total": issue.comments.len(), "comments": comments}),
        )
    }

    fn comment_body(api: Api, body: &Value) -> Result<Value, Answer> {
        let Some(doc) = body.get("body") else {
            return Err(field_error("comment", "Comment body can not be empty!"));
        };
        if let Err(e) = api.check_text(doc) {
            return Err(field_error("comment", &e));
        }
        if adf_plain_text(doc).trim().is_empty() {
            return Err(field_error("comment", "Comment body can not be empty!"));
        }
        if too_long(doc) {
            return Err(field_error("comment", TOO_LONG));
        }
        Ok(doc.clone())
    }

    pub(super) fn add_comment(&self, api: Api, key: &str, body: &Value) -> Answer {
        let doc = match Self::comment_body(api, body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let now = db.tick();
        db.next_comment_id += 1;
        let comment = FComment {
            id: db.next_comment_id,
            author: self.options.bot_account_id.clone(),
            update_author: self.options.bot_account_id.clone(),
            body: doc,
            created: now,
            updated: now,
        };
        db.issues[i].comments.push(comment.clone());
        db.issues[i].updated = now;
        let rendered = render_comment(&db, &self.base(), &db.issues[i], &comment);
        (StatusCode::CREATED, rendered)
    }

    pub(super) fn get_comment(&self, key: &str, id: &str) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let issue = &db.issues[i];
        match issue.comments.iter().find(|c| c.id.to_string() == id) {
            Some(c) => (StatusCode::OK, render_comment(&db, &self.base(), issue, c)),
            None => comment_not_found(id),
        }
    }

    pub(super) fn edit_comment(&self, api: Api, key: &str, id: &str, body: &Value) -> Answer {
        let doc = match Self::comment_body(api, body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let now = db.tick();
        let Some(c) = db.issues[i]
            .comments
            .iter_mut()
            .find(|c| c.id.to_string() == id)
        else {
            return comment_not_found(id);
        };
        c.body = doc;
        c.updated = now;
        c.update_author = self.options.bot_account_id.clone();
        let comment = c.clone();
        let rendered = render_comment(&db, &self.base(), &db.issues[i], &comment);
        (StatusCode::OK, rendered)
    }
}

fn comment_not_found(id: &str) -> Answer {
    jira_error(
        StatusCode::NOT_FOUND,
        &[&format!("Can not find a comment for the id: {id}.")],
        Value::Null,
    )
}
