//! The mutations codemill sends (comments, issue updates and labels, label, issue and relation
//! creation), applied to the workspace with Linear's input validation.

use serde_json::{Map, Value};

use super::execute::Obj;
use super::filters::{obj_of, undefined};
use super::world::{CommentRec, RelationRec, World};
use super::{GqlError, Res};

/// An input object's fields, refusing unknown ones as GraphQL does.
fn input<'a>(
    args: &'a Map<String, Value>,
    ty: &str,
    allowed: &[&str],
) -> Res<&'a Map<String, Value>> {
    let v = args
        .get("input")
        .ok_or_else(|| GqlError::invalid("input is required"))?;
    let m = obj_of(v, ty)?;
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(undefined(k, ty));
    }
    Ok(m)
}

fn req_str<'a>(m: &'a Map<String, Value>, key: &str, ty: &str) -> Res<&'a str> {
    m.get(key).and_then(Value::as_str).ok_or_else(|| {
        GqlError::invalid(format!(
            "Field \"{ty}.{key}\" of required type \"String!\" was not provided."
        ))
    })
}

pub(super) fn mutate(w: &mut World, name: &str, args: &Map<String, Value>) -> Res<Obj> {
    let arg_str = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match name {
        "commentCreate" => {
            let ty = "CommentCreateInput";
            let m = input(
                args,
                ty,
                &["issueId", "body", "parentId", "id", "createAsUser"],
            )?;
            let issue_id = req_str(m, "issueId", ty)?;
            let body = req_str(m, "body", ty)?.to_string();
            let idx = w
                .find_issue(issue_id)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let id = w.new_id(0xc0e);
            let now = w.tick();
            let user_id = w.viewer_id.clone();
            w.issues[idx].comments.push(CommentRec {
                id,
                body,
                user_id,
                created_ms: now,
                updated_ms: now,
            });
            let c = w.issues[idx].comments.len() - 1;
            Ok(Obj::Payload(
                "comment",
                Some(Box::new(Obj::Comment(idx, c))),
            ))
        }
        "commentUpdate" => {
            let ty = "CommentUpdateInput";
            let m = input(args, ty, &["body"])?;
            let body = req_str(m, "body", ty)?.to_string();
            let id = arg_str("id");
            let found = w.issues.iter().enumerate().find_map(|(i, issue)| {
                issue
                    .comments
                    .iter()
                    .position(|c| c.id == id)
                    .map(|c| (i, c))
            });
            let (i, c) = found.ok_or_else(|| GqlError::not_found("Comment"))?;
            let now = w.tick();
            let comment = &mut w.issues[i].comments[c];
            comment.body = body;
            comment.updated_ms = now;
            Ok(Obj::Payload("comment", Some(Box::new(Obj::Comment(i, c)))))
        }
        "issueUpdate" => {
            let ty = "IssueUpdateInput";
            let m = input(
                args,
                ty,
                &[
                    "stateId",
                    "labelIds",
                    "title",
                    "description",
                    "assigneeId",
                    "parentId",
                ],
            )?
            .clone();
            let idx = w
                .find_issue(&arg_str("id"))
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            if let Some(state) = m.get("stateId") {
                let state = state.as_str().unwrap_or_default();
                if !w.states.iter().any(|s| s.id == state) {
                    return Err(GqlError::not_found("WorkflowState"));
                }
                w.issues[idx].state_id = state.to_string();
            }
            if let Some(labels) = m.get("labelIds") {
                let ids: Vec<String> = labels
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(bad) = ids.iter().find(|id| w.label_by_id(id).is_none()) {
                    return Err(GqlError::invalid(format!(
                        "Entity not found: IssueLabel {bad}"
                    )));
                }
                w.issues[idx].label_ids = ids;
            }
            if let Some(t) = m.get("title").and_then(Value::as_str) {
                w.issues[idx].title = t.to_string();
            }
            if let Some(d) = m.get("description") {
                w.issues[idx].description = d.as_str().map(str::to_string);
            }
            if let Some(a) = m.get("assigneeId") {
                w.issues[idx].assignee_id = a.as_str().map(str::to_string);
            }
            let now = w.tick();
            w.issues[idx].updated_ms = now;
            Ok(Obj::Payload("issue", Some(Box::new(Obj::Issue(idx)))))
        }
        "issueAddLabel" | "issueRemoveLabel" => {
            let idx = w
                .find_issue(&arg_str("id"))
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let label = arg_str("labelId");
            if w.label_by_id(&label).is_none() {
                return Err(GqlError::not_found("IssueLabel"));
            }
            let ids = &mut w.issues[idx].label_ids;
            if name == "issueAddLabel" {
                if !ids.contains(&label) {
                    ids.push(label);
                }
            } else {
                ids.retain(|l| l != &label);
            }
            let now = w.tick();
            w.issues[idx].updated_ms = now;
            Ok(Obj::Payload("issue", Some(Box::new(Obj::Issue(idx)))))
        }
        "issueLabelCreate" => {
            let ty = "IssueLabelCreateInput";
            let m = input(
                args,
                ty,
                &["name", "teamId", "color", "description", "parentId", "id"],
            )?;
            let label_name = req_str(m, "name", ty)?.to_string();
            let team = match m.get("teamId") {
                None | Some(Value::Null) => false,
                Some(t) if t.as_str() == Some(w.team.id.as_str()) => true,
                Some(_) => return Err(GqlError::not_found("Team")),
            };
            let clash = w
                .labels
                .iter()
                .any(|l| l.name.eq_ignore_ascii_case(&label_name) && (l.team == team || !l.team));
            if clash {
                return Err(GqlError::invalid(format!(
                    "Duplicate label name: a label named \"{label_name}\" already exists"
                )));
            }
            w.add_label(&label_name, team);
            let l = w.labels.len() - 1;
            Ok(Obj::Payload("issueLabel", Some(Box::new(Obj::Label(l)))))
        }
        "issueCreate" => {
            let ty = "IssueCreateInput";
            let m = input(
                args,
                ty,
                &[
                    "teamId",
                    "title",
                    "description",
                    "stateId",
                    "labelIds",
                    "parentId",
                    "assigneeId",
                    "priority",
                ],
            )?
            .clone();
            if req_str(&m, "teamId", ty)? != w.team.id {
                return Err(GqlError::not_found("Team"));
            }
            let title = req_str(&m, "title", ty)?.to_string();
            let state_id = match m.get("stateId").and_then(Value::as_str) {
                Some(s) if w.states.iter().any(|st| st.id == s) => s.to_string(),
                Some(_) => return Err(GqlError::not_found("WorkflowState")),
                None => w
                    .states
                    .iter()
                    .find(|s| s.kind == "backlog")
                    .or_else(|| w.states.iter().find(|s| s.kind == "unstarted"))
                    .or(w.states.first())
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
            };
            let label_ids: Vec<String> = m
                .get("labelIds")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let description = m
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string);
            let viewer = w.viewer_id.clone();
            let idx = w.create_issue(&title, description, state_id, label_ids, viewer);
            if let Some(parent) = m.get("parentId").and_then(Value::as_str) {
                let pid = w.find_issue(parent).map(|p| w.issues[p].id.clone());
                w.issues[idx].parent_id = pid;
            }
            Ok(Obj::Payload("issue", Some(Box::new(Obj::Issue(idx)))))
        }
        "issueRelationCreate" => {
            let ty = "IssueRelationCreateInput";
            let m = input(args, ty, &["issueId", "relatedIssueId", "type", "id"])?;
            let kind = req_str(m, "type", ty)?.to_string();
            if !matches!(
                kind.as_str(),
                "blocks" | "duplicate" | "related" | "similar"
            ) {
                return Err(GqlError::invalid(format!(
                    "Value \"{kind}\" does not exist in \"IssueRelationType\" enum."
                )));
            }
            let a = w
                .find_issue(req_str(m, "issueId", ty)?)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let b = w
                .find_issue(req_str(m, "relatedIssueId", ty)?)
                .ok_or_else(|| GqlError::not_found("Issue"))?;
            let (issue_id, related_id) = (w.issues[a].id.clone(), w.issues[b].id.clone());
            let id = w.new_id(0x4e1);
            w.relations.push(RelationRec {
                id,
                kind,
                issue_id,
                related_id,
            });
            let r = w.relations.len() - 1;
            Ok(Obj::Payload(
                "issueRelation",
                Some(Box::new(Obj::Relation(r))),
            ))
        }
        other => Err(GqlError::validation(format!(
            "Cannot query field \"{other}\" on type \"Mutation\"."
        ))),
    }
}
