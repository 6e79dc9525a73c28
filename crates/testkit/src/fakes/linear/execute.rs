//! Running a checked operation: root queries and mutation payloads rendered against the
//! selection, so the answer holds exactly the fields asked for; connections paged by cursor.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::filters::{issue_matches, label_matches, state_matches, team_matches};
use super::graphql::{self, Field, Operation};
use super::mutations::mutate;
use super::world::{World, iso, slug};
use super::{GqlError, MAX_FIRST, Res};

/// An object to render against a selection.
#[derive(Debug, Clone)]
pub(super) enum Obj {
    Issue(usize),
    Comment(usize, usize),
    User(String),
    Bot,
    State(usize),
    Team,
    Label(usize),
    Relation(usize),
    Payload(&'static str, Option<Box<Obj>>),
}

struct Ctx<'a> {
    w: &'a World,
    op: &'a Operation,
    vars: &'a Map<String, Value>,
}

impl Ctx<'_> {
    fn args(&self, f: &Field) -> Map<String, Value> {
        f.args
            .iter()
            .map(|(k, a)| (k.clone(), graphql::resolve(a, self.op, self.vars)))
            .collect()
    }

    fn render(&self, obj: &Obj, fields: &[Field]) -> Res<Value> {
        let mut out = Map::new();
        for f in fields {
            let v = self.field(obj, f)?;
            out.insert(f.key().to_string(), v);
        }
        Ok(Value::Object(out))
    }

    fn opt(&self, obj: Option<Obj>, f: &Field) -> Res<Value> {
        match obj {
            Some(o) => self.render(&o, &f.selection),
            None => Ok(Value::Null),
        }
    }

    fn field(&self, obj: &Obj, f: &Field) -> Res<Value> {
        let w = self.w;
        let name = f.name.as_str();
        let unknown = || {
            Err(GqlError::validation(format!(
                "Cannot query field \"{name}\" on {obj:?}."
            )))
        };
        match obj {
            Obj::Issue(i) => {
                let issue = &w.issues[*i];
                match name {
                    "id" => Ok(json!(issue.id)),
                    "identifier" => Ok(json!(w.identifier(issue))),
                    "number" => Ok(json!(issue.number)),
                    "title" => Ok(json!(issue.title)),
                    "description" => Ok(json!(issue.description)),
                    "url" => Ok(json!(w.url(issue))),
                    "branchName" => Ok(json!(format!(
                        "{}-{}",
                        w.identifier(issue).to_lowercase(),
                        slug(&issue.title)
                    ))),
                    "priority" => Ok(json!(0)),
                    "priorityLabel" => Ok(json!("No priority")),
                    "createdAt" => Ok(json!(iso(issue.created_ms))),
                    "updatedAt" => Ok(json!(iso(issue.updated_ms))),
                    "state" => self.opt(
                        w.states
                            .iter()
                            .position(|s| s.id == issue.state_id)
                            .map(Obj::State),
                        f,
                    ),
                    "team" => self.render(&Obj::Team, &f.selection),
                    "assignee" => self.opt(issue.assignee_id.clone().map(Obj::User), f),
                    "creator" => self.opt(Some(Obj::User(issue.creator_id.clone())), f),
                    "parent" => self.opt(
                        issue
                            .parent_id
                            .as_deref()
                            .and_then(|p| w.find_issue(p))
                            .map(Obj::Issue),
                        f,
                    ),
                    "labels" => {
                        let items = issue
                            .label_ids
                            .iter()
                            .filter_map(|id| w.labels.iter().position(|l| &l.id == id))
                            .map(Obj::Label)
                            .collect();
                        self.connection(items, f, false)
                    }
                    "comments" => {
                        let mut order: Vec<usize> = (0..issue.comments.len()).collect();
                        // Linear lists newest first unless asked otherwise.
                        order.reverse();
                        let items = order.into_iter().map(|c| Obj::Comment(*i, c)).collect();
                        self.connection(items, f, true)
                    }
                    "relations" | "inverseRelations" => {
                        let items = w
                            .relations
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| {
                                if name == "relations" {
                                    r.issue_id == issue.id
                                } else {
                                    r.related_id == issue.id
                                }
                            })
                            .map(|(n, _)| Obj::Relation(n))
                            .collect();
                        self.connection(items, f, false)
                    }
                    "children" => {
                        let items = w
                            .issues
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.parent_id.as_deref() == Some(issue.id.as_str()))
                            .map(|(n, _)| Obj::Issue(n))
                            .collect();
                        self.connection(items, f, false)
                    }
                    _ => unknown(),
                }
            }
            Obj::Comment(i, c) => {
                let comment = &w.issues[*i].comments[*c];
                match name {
                    "id" => Ok(json!(comment.id)),
                    "body" => Ok(json!(comment.body)),
                    "url" => Ok(json!(format!(
                        "{}#comment-{}",
                        w.url(&w.issues[*i]),
                        &comment.id[comment.id.len() - 8..]
                    ))),
                    "createdAt" => Ok(json!(iso(comment.created_ms))),
                    "updatedAt" => Ok(json!(iso(comment.updated_ms))),
                    "user" => self.opt(Some(Obj::User(comment.user_id.clone())), f),
                    "botActor" => {
                        let bot = (comment.user_id == w.viewer_id).then_some(Obj::Bot);
                        self.opt(bot, f)
                    }
                    "issue" => self.render(&Obj::Issue(*i), &f.selection),
                    _ => unknown(),
                }
            }
            Obj::User(id) => {
                let Some(u) = w.users.iter().find(|u| &u.id == id) else {
                    return Ok(Value::Null);
                };
                match name {
                    "id" => Ok(json!(u.id)),
                    "name" | "displayName" => Ok(json!(u.name)),
                    "email" => Ok(json!(u.email)),
                    "url" => Ok(json!(format!(
                        "https://linear.app/{}/profiles/{}",
                        w.org,
                        slug(&u.name)
                    ))),
                    _ => unknown(),
                }
            }
            Obj::Bot => match name {
                "id" => Ok(json!(w.viewer_id)),
                "name" => Ok(json!("codemill")),
                "type" => Ok(json!("apiKey")),
                _ => unknown(),
            },
            Obj::State(s) => {
                let st = &w.states[*s];
                match name {
                    "id" => Ok(json!(st.id)),
                    "name" => Ok(json!(st.name)),
                    "type" => Ok(json!(st.kind)),
                    "color" => Ok(json!("#e2e2e2")),
                    "position" => Ok(json!(st.position)),
                    "team" => self.render(&Obj::Team, &f.selection),
                    _ => unknown(),
                }
            }
            Obj::Team => match name {
                "id" => Ok(json!(w.team.id)),
                "key" => Ok(json!(w.team.key)),
                "name" => Ok(json!(w.team.name)),
                "labels" => {
                    let items = (0..w.labels.len())
                        .filter(|&l| w.labels[l].team)
                        .map(Obj::Label)
                        .collect();
                    self.connection(items, f, false)
                }
                "states" => {
                    let items = (0..w.states.len()).map(Obj::State).collect();
                    self.connection(items, f, false)
                }
                _ => unknown(),
            },
            Obj::Label(l) => {
                let label = &w.labels[*l];
                match name {
                    "id" => Ok(json!(label.id)),
                    "name" => Ok(json!(label.name)),
                    "color" => Ok(json!("#bec2c8")),
                    "team" => self.opt(label.team.then_some(Obj::Team), f),
                    _ => unknown(),
                }
            }
            Obj::Relation(r) => {
                let rel = &w.relations[*r];
                match name {
                    "id" => Ok(json!(rel.id)),
                    "type" => Ok(json!(rel.kind)),
                    "issue" => self.opt(w.find_issue(&rel.issue_id).map(Obj::Issue), f),
                    "relatedIssue" => self.opt(w.find_issue(&rel.related_id).map(Obj::Issue), f),
                    _ => unknown(),
                }
            }
            Obj::Payload(entity, inner) => match name {
                "success" => Ok(json!(true)),
                "lastSyncId" => Ok(json!(w.seq)),
                n if n == *entity => self.opt(inner.as_deref().cloned(), f),
                _ => unknown(),
            },
        }
    }

    fn cursor(&self, obj: &Obj) -> String {
        let w = self.w;
        match obj {
            Obj::Issue(i) => w.issues[*i].id.clone(),
            Obj::Comment(i, c) => w.issues[*i].comments[*c].id.clone(),
            Obj::State(s) => w.states[*s].id.clone(),
            Obj::Label(l) => w.labels[*l].id.clone(),
            Obj::Relation(r) => w.relations[*r].id.clone(),
            Obj::User(id) => id.clone(),
            Obj::Team => w.team.id.clone(),
            Obj::Bot | Obj::Payload(..) => String::new(),
        }
    }

    /// A page of `items` per the field's `first`/`after` (cursors are node ids).
    fn connection(&self, items: Vec<Obj>, f: &Field, paged: bool) -> Res<Value> {
        let args = self.args(f);
        if args.get("last").is_some_and(|v| !v.is_null())
            || args.get("before").is_some_and(|v| !v.is_null())
        {
            return Err(GqlError::invalid(
                "fake Linear: backward pagination is not supported",
            ));
        }
        let first = match args.get("first") {
            None | Some(Value::Null) => 50,
            Some(v) => v.as_i64().unwrap_or(50),
        };
        if !(0..=MAX_FIRST).contains(&first) {
            return Err(GqlError::invalid(format!(
                "first must be between 0 and {MAX_FIRST}"
            )));
        }
        let mut limit = first as usize;
        if paged {
            limit = limit.min(self.w.page_size);
        }
        let start = match args.get("after").and_then(Value::as_str) {
            None => 0,
            Some(after) => match items.iter().position(|o| self.cursor(o) == after) {
                Some(p) => p + 1,
                None => return Err(GqlError::invalid(format!("Invalid cursor: {after}"))),
            },
        };
        let end = (start + limit).min(items.len());
        let page = &items[start.min(items.len())..end];
        let mut out = Map::new();
        for sel in &f.selection {
            let v = match sel.name.as_str() {
                "nodes" => Value::Array(
                    page.iter()
                        .map(|o| self.render(o, &sel.selection))
                        .collect::<Res<_>>()?,
                ),
                "edges" => {
                    let mut edges = Vec::new();
                    for o in page {
                        let mut e = Map::new();
                        for ef in &sel.selection {
                            let v = match ef.name.as_str() {
                                "cursor" => json!(self.cursor(o)),
                                _ => self.render(o, &ef.selection)?,
                            };
                            e.insert(ef.key().to_string(), v);
                        }
                        edges.push(Value::Object(e));
                    }
                    Value::Array(edges)
                }
                "pageInfo" => {
                    let mut p = Map::new();
                    for pf in &sel.selection {
                        let v = match pf.name.as_str() {
                            "hasNextPage" => json!(end < items.len()),
                            "hasPreviousPage" => json!(start > 0),
                            "startCursor" => json!(page.first().map(|o| self.cursor(o))),
                            _ => json!(page.last().map(|o| self.cursor(o))),
                        };
                        p.insert(pf.key().to_string(), v);
                    }
                    Value::Object(p)
                }
                other => {
                    return Err(GqlError::validation(format!(
                        "Cannot query field \"{other}\" on a connection."
                    )));
                }
            };
            out.insert(sel.key().to_string(), v);
        }
        Ok(Value::Object(out))
    }
}

pub(super) fn execute(
    w: &mut World,
    op: &Operation,
    vars: &Map<String, Value>,
) -> (StatusCode, Value) {
    let mut data = Map::new();
    let mut errors = Vec::new();
    for f in &op.selection {
        let args: Map<String, Value> = f
            .args
            .iter()
            .map(|(k, a)| (k.clone(), graphql::resolve(a, op, vars)))
            .collect();
        let result = if op.mutation {
            match mutate(w, &f.name, &args) {
                Ok(obj) => Ctx { w: &*w, op, vars }.render(&obj, &f.selection),
                Err(e) => Err(e),
            }
        } else {
            query(&*w, op, vars, f, &args)
        };
        match result {
            Ok(v) => {
                data.insert(f.key().to_string(), v);
            }
            Err(e) => {
                errors.push(e.to_json(Some(f.key())));
                data.insert(f.key().to_string(), Value::Null);
            }
        }
    }
    if errors.is_empty() {
        (StatusCode::OK, json!({ "data": data }))
    } else {
        // Root fields are non-null in Linear's schema: one failure nulls the whole answer.
        (StatusCode::OK, json!({ "data": null, "errors": errors }))
    }
}

fn query(
    w: &World,
    op: &Operation,
    vars: &Map<String, Value>,
    f: &Field,
    args: &Map<String, Value>,
) -> Res<Value> {
    let ctx = Ctx { w, op, vars };
    let filter = args.get("filter").filter(|v| !v.is_null());
    match f.name.as_str() {
        "issue" => {
            let id = args.get("id").and_then(Value::as_str).unwrap_or_default();
            let idx = w
                .find_issue(id)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            ctx.render(&Obj::Issue(idx), &f.selection)
        }
        "issues" => {
            let mut items = Vec::new();
            for (n, _) in w.issues.iter().enumerate() {
                if filter.map_or(Ok(true), |flt| issue_matches(w, n, flt))? {
                    items.push(Obj::Issue(n));
                }
            }
            ctx.connection(items, f, true)
        }
        "workflowStates" => {
            let mut items = Vec::new();
            for (n, s) in w.states.iter().enumerate() {
                if filter.map_or(Ok(true), |flt| state_matches(w, s, flt))? {
                    items.push(Obj::State(n));
                }
            }
            ctx.connection(items, f, true)
        }
        "issueLabels" => {
            let mut items = Vec::new();
            for (n, l) in w.labels.iter().enumerate() {
                if filter.map_or(Ok(true), |flt| label_matches(w, l, flt))? {
                    items.push(Obj::Label(n));
                }
            }
            ctx.connection(items, f, true)
        }
        "teams" => {
            let keep = filter.map_or(Ok(true), |flt| team_matches(w, flt))?;
            let items = if keep { vec![Obj::Team] } else { Vec::new() };
            ctx.connection(items, f, true)
        }
        "team" => {
            let id = args.get("id").and_then(Value::as_str).unwrap_or_default();
            if id == w.team.id || id.eq_ignore_ascii_case(&w.team.key) {
                ctx.render(&Obj::Team, &f.selection)
            } else {
                Err(GqlError::not_found("Team"))
            }
        }
        "viewer" => ctx.render(&Obj::User(w.viewer_id.clone()), &f.selection),
        other => Err(GqlError::validation(format!(
            "Cannot query field \"{other}\" on type \"Query\"."
        ))),
    }
}
