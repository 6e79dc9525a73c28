//! Linear's filter inputs (`IssueFilter`, `WorkflowStateFilter`, `IssueLabelFilter`,
//! `TeamFilter`) as far as codemill uses them; an unknown field or comparator is refused.

use serde_json::{Map, Value};

use super::world::{LabelRec, StateRec, World};
use super::{GqlError, Res};

pub(super) fn obj_of<'a>(v: &'a Value, ty: &str) -> Res<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| GqlError::invalid(format!("Expected type \"{ty}\" to be an object.")))
}

pub(super) fn undefined(field: &str, ty: &str) -> GqlError {
    GqlError::validation(format!(
        "Field \"{field}\" is not defined by type \"{ty}\"."
    ))
}

fn str_cmp(value: Option<&str>, comp: &Value, ty: &str) -> Res<bool> {
    let mut ok = true;
    for (op, arg) in obj_of(comp, ty)? {
        let a = arg.as_str();
        let lower = |s: &str| s.to_lowercase();
        let list = || -> Vec<&str> {
            arg.as_array()
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        ok &= match op.as_str() {
            "eq" => value == a,
            "neq" => value != a,
            "in" => value.is_some_and(|v| list().contains(&v)),
            "nin" => !value.is_some_and(|v| list().contains(&v)),
            "eqIgnoreCase" => value.map(lower) == a.map(lower),
            "neqIgnoreCase" => value.map(lower) != a.map(lower),
            "contains" => value.zip(a).is_some_and(|(v, a)| v.contains(a)),
            "containsIgnoreCase" => value
                .zip(a)
                .is_some_and(|(v, a)| lower(v).contains(&lower(a))),
            "notContains" => !value.zip(a).is_some_and(|(v, a)| v.contains(a)),
            "startsWith" => value.zip(a).is_some_and(|(v, a)| v.starts_with(a)),
            "endsWith" => value.zip(a).is_some_and(|(v, a)| v.ends_with(a)),
            "null" => value.is_none() == arg.as_bool().unwrap_or(false),
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

/// `and` / `or` of a filter, applied with `each`.
fn logic(v: &Value, ty: &str, any: bool, each: &dyn Fn(&Value) -> Res<bool>) -> Res<bool> {
    let list = v
        .as_array()
        .ok_or_else(|| GqlError::invalid(format!("Expected a list of \"{ty}\".")))?;
    let mut results = Vec::new();
    for f in list {
        results.push(each(f)?);
    }
    Ok(if any {
        results.iter().any(|r| *r)
    } else {
        results.iter().all(|r| *r)
    })
}

pub(super) fn team_matches(w: &World, filter: &Value) -> Res<bool> {
    let ty = "TeamFilter";
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&w.team.id), v, "IDComparator")?,
            "key" => str_cmp(Some(&w.team.key), v, "StringComparator")?,
            "name" => str_cmp(Some(&w.team.name), v, "StringComparator")?,
            "and" => logic(v, ty, false, &|f| team_matches(w, f))?,
            "or" => logic(v, ty, true, &|f| team_matches(w, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

pub(super) fn state_matches(w: &World, s: &StateRec, filter: &Value) -> Res<bool> {
    let ty = "WorkflowStateFilter";
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&s.id), v, "IDComparator")?,
            "name" => str_cmp(Some(&s.name), v, "StringComparator")?,
            "type" => str_cmp(Some(&s.kind), v, "StringComparator")?,
            "team" => team_matches(w, v)?,
            "and" => logic(v, ty, false, &|f| state_matches(w, s, f))?,
            "or" => logic(v, ty, true, &|f| state_matches(w, s, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

pub(super) fn label_matches(w: &World, l: &LabelRec, filter: &Value) -> Res<bool> {
    let ty = "IssueLabelFilter";
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&l.id), v, "IDComparator")?,
            "name" => str_cmp(Some(&l.name), v, "StringComparator")?,
            "team" => {
                let nullable = obj_of(v, "NullableTeamFilter")?;
                match nullable.get("null") {
                    Some(n) if nullable.len() == 1 => l.team != n.as_bool().unwrap_or(false),
                    _ => l.team && team_matches(w, v)?,
                }
            }
            "and" => logic(v, ty, false, &|f| label_matches(w, l, f))?,
            "or" => logic(v, ty, true, &|f| label_matches(w, l, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}

pub(super) fn issue_matches(w: &World, idx: usize, filter: &Value) -> Res<bool> {
    let ty = "IssueFilter";
    let issue = &w.issues[idx];
    let labels: Vec<&LabelRec> = issue
        .label_ids
        .iter()
        .filter_map(|id| w.label_by_id(id))
        .collect();
    let mut ok = true;
    for (k, v) in obj_of(filter, ty)? {
        ok &= match k.as_str() {
            "id" => str_cmp(Some(&issue.id), v, "IDComparator")?,
            "title" => str_cmp(Some(&issue.title), v, "StringComparator")?,
            "description" => str_cmp(issue.description.as_deref(), v, "NullableStringComparator")?,
            "number" => {
                let eq = obj_of(v, "NumberComparator")?
                    .get("eq")
                    .and_then(Value::as_f64);
                eq.is_none_or(|n| n as u64 == issue.number)
            }
            "team" => team_matches(w, v)?,
            "state" => match w.states.iter().find(|s| s.id == issue.state_id) {
                Some(s) => state_matches(w, s, v)?,
                None => false,
            },
            "labels" => {
                let ty = "IssueLabelCollectionFilter";
                let mut all = true;
                for (lk, lv) in obj_of(v, ty)? {
                    all &= match lk.as_str() {
                        // A field straight on a collection filter means "some".
                        "id" | "name" => {
                            let mut one = Map::new();
                            one.insert(lk.clone(), lv.clone());
                            let one = Value::Object(one);
                            let mut any = false;
                            for l in &labels {
                                any |= label_matches(w, l, &one)?;
                            }
                            any
                        }
                        "some" => {
                            let mut any = false;
                            for l in &labels {
                                any |= label_matches(w, l, lv)?;
                            }
                            any
                        }
                        "every" => {
                            let mut every = true;
                            for l in &labels {
                                every &= label_matches(w, l, lv)?;
                            }
                            every
                        }
                        "length" => {
                            let eq = obj_of(lv, "NumberComparator")?
                                .get("eq")
                                .and_then(Value::as_f64);
                            eq.is_none_or(|n| n as usize == labels.len())
                        }
                        other => return Err(undefined(other, ty)),
                    };
                }
                all
            }
            "assignee" => {
                let ty = "NullableUserFilter";
                let user = issue
                    .assignee_id
                    .as_deref()
                    .and_then(|a| w.users.iter().find(|u| u.id == a));
                let mut m = true;
                for (uk, uv) in obj_of(v, ty)? {
                    m &= match uk.as_str() {
                        "null" => user.is_none() == uv.as_bool().unwrap_or(false),
                        "id" => str_cmp(user.map(|u| u.id.as_str()), uv, "IDComparator")?,
                        "email" => str_cmp(user.map(|u| u.email.as_str()), uv, "StringComparator")?,
                        "name" => str_cmp(user.map(|u| u.name.as_str()), uv, "StringComparator")?,
                        other => return Err(undefined(other, ty)),
                    };
                }
                m
            }
            "and" => logic(v, ty, false, &|f| issue_matches(w, idx, f))?,
            "or" => logic(v, ty, true, &|f| issue_matches(w, idx, f))?,
            other => return Err(undefined(other, ty)),
        };
    }
    Ok(ok)
}
