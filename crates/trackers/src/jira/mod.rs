//! jira client (in progress).
