//! The part of Linear's GraphQL schema codemill reads and writes: every type's fields and
//! arguments, and the check of a request's selection against them before anything runs.

use serde_json::json;

use super::graphql::{self, Arg, Field, Operation};
use super::{GqlError, Res};

const CONNECTION_ARGS: &[(&str, &str)] = &[
    ("first", "Int"),
    ("after", "String"),
    ("last", "Int"),
    ("before", "String"),
    ("orderBy", "PaginationOrderBy"),
    ("includeArchived", "Boolean"),
];

fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "String" | "ID" | "Float" | "Int" | "Boolean" | "DateTime" | "JSONObject"
    )
}

/// A field's type and arguments: `(type, args, extra args besides the connection ones)`.
fn field_type(ty: &str, field: &str) -> Option<(String, Vec<(&'static str, &'static str)>)> {
    if let Some(node) = ty.strip_suffix("Connection") {
        return match field {
            "nodes" => Some((node.to_string(), vec![])),
            "edges" => Some((format!("{node}Edge"), vec![])),
            "pageInfo" => Some(("PageInfo".into(), vec![])),
            _ => None,
        };
    }
    if let Some(node) = ty.strip_suffix("Edge") {
        return match field {
            "node" => Some((node.to_string(), vec![])),
            "cursor" => Some(("String".into(), vec![])),
            _ => None,
        };
    }
    let conn = |node: &str, filter: &'static str| {
        let mut args = CONNECTION_ARGS.to_vec();
        if !filter.is_empty() {
            args.push(("filter", filter));
        }
        Some((format!("{node}Connection"), args))
    };
    let plain = |t: &str| Some((t.to_string(), vec![]));
    match (ty, field) {
        ("Query", "issues") => conn("Issue", "IssueFilter"),
        ("Query", "issue") | ("Query", "team") => Some((
            if field == "issue" { "Issue" } else { "Team" }.into(),
            vec![("id", "String!")],
        )),
        ("Query", "workflowStates") => conn("WorkflowState", "WorkflowStateFilter"),
        ("Query", "issueLabels") => conn("IssueLabel", "IssueLabelFilter"),
        ("Query", "teams") => conn("Team", "TeamFilter"),
        ("Query", "viewer") => plain("User"),
        ("Mutation", "commentCreate") => Some((
            "CommentPayload".into(),
            vec![("input", "CommentCreateInput!")],
        )),
        ("Mutation", "commentUpdate") => Some((
            "CommentPayload".into(),
            vec![("id", "String!"), ("input", "CommentUpdateInput!")],
        )),
        ("Mutation", "issueUpdate") => Some((
            "IssuePayload".into(),
            vec![("id", "String!"), ("input", "IssueUpdateInput!")],
        )),
        ("Mutation", "issueAddLabel") | ("Mutation", "issueRemoveLabel") => Some((
            "IssuePayload".into(),
            vec![("id", "String!"), ("labelId", "String!")],
        )),
        ("Mutation", "issueLabelCreate") => Some((
            "IssueLabelPayload".into(),
            vec![
                ("input", "IssueLabelCreateInput!"),
                ("replaceTeamLabels", "Boolean"),
            ],
        )),
        ("Mutation", "issueCreate") => {
            Some(("IssuePayload".into(), vec![("input", "IssueCreateInput!")]))
        }
        ("Mutation", "issueRelationCreate") => Some((
            "IssueRelationPayload".into(),
            vec![("input", "IssueRelationCreateInput!")],
        )),
        ("Issue", "id") => plain("ID"),
        ("Issue", "identifier" | "title" | "url" | "branchName" | "priorityLabel") => {
            plain("String")
        }
        ("Issue", "description") => plain("String"),
        ("Issue", "number" | "priority") => plain("Float"),
        ("Issue", "createdAt" | "updatedAt") => plain("DateTime"),
        ("Issue", "state") => plain("WorkflowState"),
        ("Issue", "team") => plain("Team"),
        ("Issue", "assignee" | "creator") => plain("User"),
        ("Issue", "parent") => plain("Issue"),
        ("Issue", "labels") => conn("IssueLabel", "IssueLabelFilter"),
        ("Issue", "comments") => conn("Comment", "CommentFilter"),
        ("Issue", "relations" | "inverseRelations") => conn("IssueRelation", ""),
        ("Issue", "children") => conn("Issue", "IssueFilter"),
        ("Comment", "id") => plain("ID"),
        ("Comment", "body" | "url") => plain("String"),
        ("Comment", "createdAt" | "updatedAt") => plain("DateTime"),
        ("Comment", "user") => plain("User"),
        ("Comment", "botActor") => plain("ActorBot"),
        ("Comment", "issue") => plain("Issue"),
        ("User", "id") => plain("ID"),
        ("User", "name" | "email" | "displayName" | "url") => plain("String"),
        ("ActorBot", "id" | "name" | "type") => plain("String"),
        ("WorkflowState", "id") => plain("ID"),
        ("WorkflowState", "name" | "type" | "color") => plain("String"),
        ("WorkflowState", "position") => plain("Float"),
        ("WorkflowState", "team") => plain("Team"),
        ("Team", "id") => plain("ID"),
        ("Team", "key" | "name") => plain("String"),
        ("Team", "labels") => conn("IssueLabel", "IssueLabelFilter"),
        ("Team", "states") => conn("WorkflowState", "WorkflowStateFilter"),
        ("IssueLabel", "id") => plain("ID"),
        ("IssueLabel", "name" | "color") => plain("String"),
        ("IssueLabel", "team") => plain("Team"),
        ("IssueRelation", "id") => plain("ID"),
        ("IssueRelation", "type") => plain("String"),
        ("IssueRelation", "issue" | "relatedIssue") => plain("Issue"),
        ("PageInfo", "hasNextPage" | "hasPreviousPage") => plain("Boolean"),
        ("PageInfo", "startCursor" | "endCursor") => plain("String"),
        (p, "success") if p.ends_with("Payload") => plain("Boolean"),
        (p, "lastSyncId") if p.ends_with("Payload") => plain("Float"),
        ("CommentPayload", "comment") => plain("Comment"),
        ("IssuePayload", "issue") => plain("Issue"),
        ("IssueLabelPayload", "issueLabel") => plain("IssueLabel"),
        ("IssueRelationPayload", "issueRelation") => plain("IssueRelation"),
        _ => None,
    }
}

/// Whether a connection field pages by the fake's page size.
fn paged(parent: &str, field: &str) -> bool {
    parent == "Query" || (parent == "Issue" && field == "comments")
}

/// Every field exists on its type, scalars have no selection and objects have one, arguments
/// exist, required ones are given, variables fit them, and paginated reads select `pageInfo`.
pub(super) fn check_selection(ty: &str, fields: &[Field], op: &Operation, top: bool) -> Res<()> {
    for f in fields {
        let Some((fty, args)) = field_type(ty, &f.name) else {
            return Err(GqlError::validation(format!(
                "Cannot query field \"{}\" on type \"{ty}\".",
                f.name
            )));
        };
        if top && op.mutation != (ty == "Mutation") {
            return Err(GqlError::validation("fake Linear: wrong operation type"));
        }
        for (name, arg) in &f.args {
            let Some((_, expected)) = args.iter().find(|(n, _)| n == name) else {
                return Err(GqlError::validation(format!(
                    "Unknown argument \"{name}\" on field \"{ty}.{}\".",
                    f.name
                )));
            };
            if let Arg::Var(v) = arg
                && let Some(def) = op.vars.iter().find(|d| &d.name == v)
                && !graphql::assignable(&def.ty, expected)
            {
                return Err(GqlError::validation(format!(
                    "Variable \"${v}\" of type \"{}\" used in position expecting type \"{expected}\".",
                    def.ty
                )));
            }
        }
        for (name, expected) in &args {
            if expected.ends_with('!') && !f.args.iter().any(|(n, _)| n == name) {
                return Err(GqlError::validation(format!(
                    "Field \"{}\" argument \"{name}\" of type \"{expected}\" is required, but it was not provided.",
                    f.name
                )));
            }
        }
        if is_scalar(&fty) {
            if !f.selection.is_empty() {
                return Err(GqlError::validation(format!(
                    "Field \"{}\" must not have a selection since type \"{fty}\" has no subfields.",
                    f.name
                )));
            }
            continue;
        }
        if f.selection.is_empty() {
            return Err(GqlError::validation(format!(
                "Field \"{}\" of type \"{fty}\" must have a selection of subfields.",
                f.name
            )));
        }
        if fty.ends_with("Connection") && paged(ty, &f.name) {
            let single = f
                .args
                .iter()
                .any(|(n, a)| n == "first" && *a == Arg::Lit(json!(1)));
            let reads = f.has("nodes") || f.has("edges");
            let paginates = f
                .child("pageInfo")
                .is_some_and(|p| p.has("hasNextPage") && p.has("endCursor"));
            if reads && !single && !paginates {
                return Err(GqlError::validation(format!(
                    "fake Linear: \"{}\" is paginated (pages of at most the page size); select pageInfo {{ hasNextPage endCursor }} and follow it",
                    f.name
                )));
            }
        }
        check_selection(&fty, &f.selection, op, false)?;
    }
    Ok(())
}
