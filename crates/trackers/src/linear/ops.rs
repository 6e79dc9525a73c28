//! The GraphQL operations codemill sends to Linear, by name. Every value travels as a variable;
//! nothing from a ticket or setting is spliced into the query text.

/// Page size of every paginated connection codemill reads.
pub(crate) const PAGE: u32 = 50;

pub(crate) const TRIGGERED: &str = "CodemillTriggered";
pub(crate) const TRIGGERED_QUERY: &str =
    "query CodemillTriggered($filter: IssueFilter!, $first: Int!, $after: String) {
  issues(filter: $filter, first: $first, after: $after) {
    nodes { identifier }
    pageInfo { hasNextPage endCursor }
  }
}";

pub(crate) const ISSUE: &str = "CodemillIssue";
pub(crate) const ISSUE_QUERY: &str = "query CodemillIssue($id: String!, $first: Int!) {
  issue(id: $id) {
    id
    identifier
    number
    url
    title
    description
    state { name }
    labels(first: 100) { nodes { id name } }
    assignee { id email }
    comments(first: $first) {
      nodes { id body createdAt user { id email name } botActor { name } }
      pageInfo { hasNextPage endCursor }
    }
    relations(first: 100) { nodes { type relatedIssue { identifier title } } }
    inverseRelations(first: 100) { nodes { type issue { identifier title } } }
    children(first: 100) { nodes { identifier title state { name } } }
  }
}";

/// Later pages of an issue's comments (the first page comes with the issue).
pub(crate) const COMMENTS: &str = "CodemillComments";
pub(crate) const COMMENTS_QUERY: &str =
    "query CodemillComments($id: String!, $first: Int!, $after: String) {
  issue(id: $id) {
    id
    comments(first: $first, after: $after) {
      nodes { id body createdAt user { id email name } botActor { name } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";

pub(crate) const COMMENT_CREATE: &str = "CodemillCommentCreate";
pub(crate) const COMMENT_CREATE_MUTATION: &str =
    "mutation CodemillCommentCreate($input: CommentCreateInput!) {
  commentCreate(input: $input) { success comment { id } }
}";

pub(crate) const COMMENT_UPDATE: &str = "CodemillCommentUpdate";
pub(crate) const COMMENT_UPDATE_MUTATION: &str =
    "mutation CodemillCommentUpdate($id: String!, $input: CommentUpdateInput!) {
  commentUpdate(id: $id, input: $input) { success comment { id } }
}";

pub(crate) const ISSUE_LABELS: &str = "CodemillIssueLabels";
pub(crate) const ISSUE_LABELS_QUERY: &str = "query CodemillIssueLabels($id: String!) {
  issue(id: $id) {
    id
    labels(first: 250) { nodes { id name } }
  }
}";

pub(crate) const LABELS: &str = "CodemillLabels";
pub(crate) const LABELS_QUERY: &str =
    "query CodemillLabels($filter: IssueLabelFilter!, $first: Int!, $after: String) {
  issueLabels(filter: $filter, first: $first, after: $after) {
    nodes { id name team { key } }
    pageInfo { hasNextPage endCursor }
  }
}";

pub(crate) const LABEL_CREATE: &str = "CodemillLabelCreate";
pub(crate) const LABEL_CREATE_MUTATION: &str =
    "mutation CodemillLabelCreate($input: IssueLabelCreateInput!) {
  issueLabelCreate(input: $input) { success issueLabel { id name } }
}";

pub(crate) const ADD_LABEL: &str = "CodemillAddLabel";
pub(crate) const ADD_LABEL_MUTATION: &str =
    "mutation CodemillAddLabel($id: String!, $labelId: String!) {
  issueAddLabel(id: $id, labelId: $labelId) { success }
}";

pub(crate) const REMOVE_LABEL: &str = "CodemillRemoveLabel";
pub(crate) const REMOVE_LABEL_MUTATION: &str =
    "mutation CodemillRemoveLabel($id: String!, $labelId: String!) {
  issueRemoveLabel(id: $id, labelId: $labelId) { success }
}";

pub(crate) const ISSUE_STATE: &str = "CodemillIssueState";
pub(crate) const ISSUE_STATE_QUERY: &str = "query CodemillIssueState($id: String!) {
  issue(id: $id) { id state { id name } }
}";

pub(crate) const STATES: &str = "CodemillWorkflowStates";
pub(crate) const STATES_QUERY: &str =
    "query CodemillWorkflowStates($filter: WorkflowStateFilter!, $first: Int!, $after: String) {
  workflowStates(filter: $filter, first: $first, after: $after) {
    nodes { id name type }
    pageInfo { hasNextPage endCursor }
  }
}";

pub(crate) const ISSUE_UPDATE: &str = "CodemillIssueUpdate";
pub(crate) const ISSUE_UPDATE_MUTATION: &str =
    "mutation CodemillIssueUpdate($id: String!, $input: IssueUpdateInput!) {
  issueUpdate(id: $id, input: $input) { success issue { id state { name } } }
}";

pub(crate) const TEAM: &str = "CodemillTeam";
pub(crate) const TEAM_QUERY: &str = "query CodemillTeam($filter: TeamFilter!) {
  teams(filter: $filter, first: 1) { nodes { id key name } }
}";

pub(crate) const ISSUE_REF: &str = "CodemillIssueRef";
pub(crate) const ISSUE_REF_QUERY: &str = "query CodemillIssueRef($id: String!) {
  issue(id: $id) { id identifier }
}";

pub(crate) const FIND_BY_MARKER: &str = "CodemillFindByMarker";
pub(crate) const FIND_BY_MARKER_QUERY: &str =
    "query CodemillFindByMarker($filter: IssueFilter!, $first: Int!, $after: String) {
  issues(filter: $filter, first: $first, after: $after) {
    nodes {
      id
      identifier
      description
      relations(first: 100) { nodes { relatedIssue { id } } }
      inverseRelations(first: 100) { nodes { issue { id } } }
    }
    pageInfo { hasNextPage endCursor }
  }
}";

pub(crate) const ISSUE_CREATE: &str = "CodemillIssueCreate";
pub(crate) const ISSUE_CREATE_MUTATION: &str =
    "mutation CodemillIssueCreate($input: IssueCreateInput!) {
  issueCreate(input: $input) { success issue { id identifier url } }
}";

pub(crate) const RELATION_CREATE: &str = "CodemillRelationCreate";
pub(crate) const RELATION_CREATE_MUTATION: &str =
    "mutation CodemillRelationCreate($input: IssueRelationCreateInput!) {
  issueRelationCreate(input: $input) { success issueRelation { id } }
}";
