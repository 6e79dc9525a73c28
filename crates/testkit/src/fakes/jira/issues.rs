//! The issue endpoints: `POST /search/jql` (v3) or `GET|POST /search` (v2), `GET|PUT
//! /issue/{key}`, `POST /issue` and `POST /issueLink`, validated the way Jira validates them.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::adf::{TOO_LONG, too_long};
use super::jql::{Query, parse_jql};
use super::render::{Fields, render_issue};
use super::{
    API, Answer, Api, Db, FIssue, FakeLink, ISSUE_TYPES, LINK_TYPES, Shared, bad_request,
    field_error, issue_not_found, jira_error,
};

/// A checked search request.
struct Search {
    jql: String,
    query: Query,
    page: usize,
    fields: Fields,
}

impl Shared {
    /// A search request's JQL, page size and fields, checked as Jira checks them.
    fn search_request(&self, body: &Value, default_fields: Fields) -> Result<Search, Answer> {
        let Some(jql) = body
            .get("jql")
            .and_then(Value::as_str)
            .filter(|j| !j.trim().is_empty())
        else {
            return Err(bad_request(
                "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.",
            ));
        };
        let query = match parse_jql(jql) {
            Ok(q) => q,
            Err(e) => return Err(bad_request(&format!("Error in the JQL Query: {e}"))),
        };
        let max = match body.get("maxResults") {
            None | Some(Value::Null) => 50,
            Some(v) => match v.as_u64() {
                Some(n) => n as usize,
                None => return Err(bad_request("maxResults must be a non-negative integer.")),
            },
        };
        let page = max.clamp(1, self.options.page_size.max(1));
        let fields = match body.get("fields") {
            None | Some(Value::Null) => default_fields,
            Some(Value::Array(list)) => Fields::from_list(
                &list
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
            Some(_) => return Err(bad_request("fields must be a list of field names.")),
        };
        Ok(Search {
            jql: jql.to_string(),
            query,
            page,
            fields,
        })
    }

    /// The issues `query` finds, in its order.
    fn hits<'a>(&self, db: &'a Db, query: &Query) -> Vec<&'a FIssue> {
        let mut hits: Vec<&FIssue> = db
            .issues
            .iter()
            .filter(|i| query.matches(i, &self.options.bot_account_id))
            .collect();
        if let Some((field, asc)) = &query.order {
            if field == "key" {
                hits.sort_by_key(|i| {
                    (
                        i.project.clone(),
                        i.key
                            .rsplit('-')
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0),
                    )
                });
            }
            if !asc {
                hits.reverse();
            }
        }
        hits
    }

    /// v3's enhanced search: pages chained by `nextPageToken`.
    pub(super) fn search(&self, body: &Value) -> Answer {
        let search = match self.search_request(body, Fields::IdOnly) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let (jql, page) = (search.jql.as_str(), search.page);
        let mut db = self.db();
        let offset = match body.get("nextPageToken").and_then(Value::as_str) {
            None => 0,
            Some(token) => match db.tokens.get(token) {
                Some((q, offset)) if q == jql => *offset,
                _ => {
                    return bad_request("The provided next page token is invalid or expired.");
                }
            },
        };
        let hits = self.hits(&db, &search.query);
        let total = hits.len();
        let base = self.base();
        let issues: Vec<Value> = hits
            .iter()
            .skip(offset)
            .take(page)
            .map(|i| render_issue(&db, &base, i, &search.fields, &self.options.workflow))
            .collect();
        let more = offset + page < total;
        if more {
            db.next_token += 1;
            let token = format!("CAEaAggB-{}", db.next_token);
            db.tokens
                .insert(token.clone(), (jql.to_string(), offset + page));
            (
                StatusCode::OK,
                json!({"issues": issues, "nextPageToken": token, "isLast": false}),
            )
        } else {
            (StatusCode::OK, json!({"issues": issues, "isLast": true}))
        }
    }

    /// v2's search: pages by `startAt`, answered with `total`; every navigable field unless
    /// `fields` says otherwise.
    pub(super) fn search_v2(&self, body: &Value) -> Answer {
        let search = match self.search_request(body, Fields::All) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let start = match body.get("startAt") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_u64() {
                Some(n) => n as usize,
                None => return bad_request("startAt must be a non-negative integer."),
            },
        };
        let db = self.db();
        let hits = self.hits(&db, &search.query);
        let base = self.base();
        let issues: Vec<Value> = hits
            .iter()
            .skip(start)
            .take(search.page)
            .map(|i| render_issue(&db, &base, i, &search.fields, &self.options.workflow))
            .collect();
        (
            StatusCode::OK,
            json!({"startAt": start, "maxResults": search.page, "total": hits.len(), "issues": issues}),
        )
    }

    pub(super) fn get_issue(&self, key: &str, query: &[(String, String)]) -> Answer {
        let db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let fields = match query.iter().find(|(k, _)| k == "fields") {
            Some((_, list)) => Fields::from_list(
                &list
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect::<Vec<_>>(),
            ),
            None => Fields::All,
        };
        (
            StatusCode::OK,
            render_issue(
                &db,
                &self.base(),
                &db.issues[i],
                &fields,
                &self.options.workflow,
            ),
        )
    }

    pub(super) fn edit_issue(&self, api: Api, key: &str, body: &Value) -> Answer {
        let Some(obj) = body.as_object() else {
            return bad_request("The request body must be a JSON object.");
        };
        let mut db = self.db();
        let Some(i) = db.find(key) else {
            return issue_not_found();
        };
        let mut issue = db.issues[i].clone();
        if let Some(fields) = obj.get("fields") {
            let Some(fields) = fields.as_object() else {
                return field_error("fields", "fields must be an object.");
            };
            for (name, value) in fields {
                match name.as_str() {
                    "summary" => match value.as_str().filter(|s| !s.trim().is_empty()) {
                        Some(s) => issue.summary = s.to_string(),
                        None => {
                            return field_error(
                                "summary",
                                "You must specify a summary of the issue.",
                            );
                        }
                    },
                    "description" => {
                        if !value.is_null()
                            && let Err(e) = api.check_text(value)
                        {
                            return field_error("description", &e);
                        }
                        issue.description = value.clone();
                    }
                    "labels" => match labels_of(value) {
                        Ok(l) => issue.labels = l,
                        Err(e) => return e,
                    },
                    "assignee" => {
                        issue.assignee = value
                            .get("accountId")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    }
                    n if n.starts_with("customfield_") => {
                        issue.custom.insert(n.to_string(), value.clone());
                    }
                    n => return field_error(n, &unknown_field(n)),
                }
            }
        }
        if let Some(update) = obj.get("update") {
            let Some(update) = update.as_object() else {
                return field_error("update", "update must be an object.");
            };
            for (name, ops) in update {
                if name != "labels" {
                    return field_error(name, &unknown_field(name));
                }
                let Some(ops) = ops.as_array() else {
                    return field_error("labels", "Operations must be a list.");
                };
                for op in ops {
                    let Some((verb, value)) = op.as_object().and_then(|o| o.iter().next()) else {
                        return field_error("labels", "Each operation must be an object.");
                    };
                    match verb.as_str() {
                        "add" | "remove" => {
                            let Some(label) = value.as_str() else {
                                return field_error("labels", "A label must be a string.");
                            };
                            if let Err(e) = check_label(label) {
                                return e;
                            }
                            issue.labels.retain(|l| l != label);
                            if verb == "add" {
                                issue.labels.push(label.to_string());
                            }
                        }
                        "set" => match labels_of(value) {
                            Ok(l) => issue.labels = l,
                            Err(e) => return e,
                        },
                        other => {
                            return field_error(
                                "labels",
                                &format!("Operation '{other}' is not supported for labels."),
                            );
                        }
                    }
                }
            }
        }
        issue.updated = db.tick();
        db.issues[i] = issue;
        (StatusCode::NO_CONTENT, Value::Null)
    }

    pub(super) fn create_issue(&self, api: Api, body: &Value) -> Answer {
        let Some(fields) = body.get("fields").and_then(Value::as_object) else {
            return bad_request("The request must have a fields object.");
        };
        let mut errors = Map::new();
        let project = fields
            .get("project")
            .and_then(|p| p.get("key").or_else(|| p.get("id")))
            .and_then(Value::as_str)
            .map(str::to_string);
        let known_project = |db: &Db, p: &str| {
            p.eq_ignore_ascii_case(&self.options.project_key)
                || db.issues.iter().any(|i| i.project.eq_ignore_ascii_case(p))
        };
        let summary = fields
            .get("summary")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty());
        if summary.is_none() {
            errors.insert(
                "summary".into(),
                json!("You must specify a summary of the issue."),
            );
        } else if summary.is_some_and(|s| s.chars().count() > 255) {
            errors.insert(
                "summary".into(),
                json!("Summary must be less than 255 characters."),
            );
        }
        let issuetype = fields
            .get("issuetype")
            .and_then(|t| t.get("name").or_else(|| t.get("id")))
            .and_then(Value::as_str)
            .and_then(|t| {
                ISSUE_TYPES
                    .iter()
                    .find(|(id, name, _)| name.eq_ignore_ascii_case(t) || *id == t)
            })
            .map(|(_, name, _)| name.to_string());
        if issuetype.is_none() {
            errors.insert("issuetype".into(), json!("Specify a valid issue type"));
        }
        let description = fields.get("description").cloned().unwrap_or(Value::Null);
        if !description.is_null()
            && let Err(e) = api.check_text(&description)
        {
            errors.insert("description".into(), json!(e));
        }
        if too_long(&description) {
            errors.insert("description".into(), json!(TOO_LONG));
        }
        let labels = match fields.get("labels") {
            None => Vec::new(),
            Some(v) => match labels_of(v) {
                Ok(l) => l,
                Err(e) => return e,
            },
        };
        let mut db = self.db();
        match &project {
            Some(p) if known_project(&db, p) => {}
            _ => {
                errors.insert("project".into(), json!("Specify a valid project ID or key"));
            }
        }
        if !errors.is_empty() {
            return jira_error(StatusCode::BAD_REQUEST, &[], Value::Object(errors));
        }
        let project = project.unwrap_or_default().to_ascii_uppercase();
        let number = db
            .issues
            .iter()
            .filter(|i| i.project == project)
            .filter_map(|i| i.key.rsplit('-').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let now = db.tick();
        db.next_issue_id += 1;
        let id = db.next_issue_id;
        let key = format!("{project}-{number}");
        let custom = fields
            .iter()
            .filter(|(k, _)| k.starts_with("customfield_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let parent = fields
            .get("parent")
            .and_then(|p| p.get("key"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let first_status = self
            .options
            .workflow
            .first()
            .map_or("To Do".to_string(), |t| t.to.clone());
        db.issues.push(FIssue {
            id,
            key: key.clone(),
            project,
            summary: summary.unwrap_or_default().to_string(),
            description,
            status: first_status,
            labels,
            assignee: None,
            issuetype: issuetype.unwrap_or_default(),
            parent,
            custom,
            comments: Vec::new(),
            created: now,
            updated: now,
        });
        (
            StatusCode::CREATED,
            json!({"id": id.to_string(), "key": key, "self": format!("{}{API}/issue/{id}", self.base())}),
        )
    }

    pub(super) fn create_link(&self, body: &Value) -> Answer {
        let type_name = body
            .pointer("/type/name")
            .or_else(|| body.pointer("/type/id"))
            .and_then(Value::as_str);
        let Some(link_type) = type_name.and_then(|t| {
            LINK_TYPES
                .iter()
                .find(|(id, name, _, _)| name.eq_ignore_ascii_case(t) || *id == t)
        }) else {
            return jira_error(
                StatusCode::NOT_FOUND,
                &[&format!(
                    "No issue link type with name '{}' found.",
                    type_name.unwrap_or("")
                )],
                Value::Null,
            );
        };
        let side = |name: &str| {
            body.get(name)
                .and_then(|i| i.get("key").or_else(|| i.get("id")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let (Some(inward), Some(outward)) = (side("inwardIssue"), side("outwardIssue")) else {
            return bad_request("Both inwardIssue and outwardIssue are required.");
        };
        let mut db = self.db();
        let (Some(a), Some(b)) = (db.find(&inward), db.find(&outward)) else {
            return jira_error(
                StatusCode::NOT_FOUND,
                &["Issue Does Not Exist"],
                Value::Null,
            );
        };
        let (inward, outward) = (db.issues[a].key.clone(), db.issues[b].key.clone());
        let exists = db.links.iter().any(|l| {
            l.link_type.eq_ignore_ascii_case(link_type.1)
                && l.inward == inward
                && l.outward == outward
        });
        if !exists {
            db.next_link_id += 1;
            let id = db.next_link_id.to_string();
            db.links.push(FakeLink {
                id,
                link_type: link_type.1.to_string(),
                inward,
                outward,
            });
        }
        (StatusCode::CREATED, Value::Null)
    }
}

fn unknown_field(name: &str) -> String {
    format!("Field '{name}' cannot be set. It is not on the appropriate screen, or unknown.")
}

fn check_label(label: &str) -> Result<(), Answer> {
    if label.is_empty() || label.contains(char::is_whitespace) {
        return Err(field_error(
            "labels",
            &format!("The label '{label}' contains spaces which is invalid."),
        ));
    }
    if label.chars().count() > 255 {
        return Err(field_error(
            "labels",
            "A label must be at most 255 characters.",
        ));
    }
    Ok(())
}

fn labels_of(value: &Value) -> Result<Vec<String>, Answer> {
    let Some(list) = value.as_array() else {
        return Err(field_error("labels", "labels must be a list of strings."));
    };
    let mut out: Vec<String> = Vec::new();
    for l in list {
        let Some(l) = l.as_str() else {
            return Err(field_error("labels", "labels must be a list of strings."));
        };
        check_label(l)?;
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}
