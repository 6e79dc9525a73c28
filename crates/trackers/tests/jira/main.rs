//! The Jira Cloud client against the fake Jira site: every `Tracker` method with its requests
//! checked field by field, pagination, idempotent writes under injected faults, rate limits,
//! Data Center (auth, REST v2, wiki markup), configuration errors, and webhook verification and parsing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod data_center;
mod fake;
mod tracker;
mod webhooks;

use std::time::Duration;

use codemill_core::config::vendors::{JiraAuth, JiraSettings, StatusMap};
use codemill_testkit::fakes::RecordedRequest;
use codemill_testkit::fakes::jira::{FakeJira, FakeJiraOptions};
use codemill_trackers::RetryPolicy;
use codemill_trackers::jira::Jira;

const EMAIL: &str = "codemill@example.com";
const TOKEN: &str = "jira-api-token";
const BASIC: &str = "Basic Y29kZW1pbGxAZXhhbXBsZS5jb206amlyYS1hcGktdG9rZW4=";
const ACCEPTANCE: &str = "customfield_10042";

fn env(name: &str) -> Option<String> {
    match name {
        "JIRA_EMAIL" => Some(EMAIL.into()),
        "JIRA_TOKEN" => Some(TOKEN.into()),
        "JIRA_DC_TOKEN" => Some("dc-token".into()),
        _ => None,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

fn settings(base: &str) -> JiraSettings {
    JiraSettings {
        base_url: base.to_string(),
        auth: JiraAuth::Cloud,
        email_env: Some("JIRA_EMAIL".into()),
        token_env: "JIRA_TOKEN".into(),
        project_key: "PROJ".into(),
        trigger_status: "To Do".into(),
        trigger_label: "codemill".into(),
        refine_label: "codemill:refine".into(),
        jql: None,
        acceptance_criteria_field: Some(ACCEPTANCE.into()),
        backlog_issue_type: "Task".into(),
        link_type: "Relates".into(),
        transitions: StatusMap {
            in_progress: Some("In Progress".into()),
            in_review: Some("in review".into()),
            done: Some("Done".into()),
            rejected: Some("Blocked".into()),
            ..StatusMap::default()
        },
        webhook: None,
    }
}

async fn setup() -> (FakeJira, Jira) {
    let fake = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    let jira = Jira::new(&settings(&fake.url()), &env, policy()).unwrap();
    (fake, jira)
}

fn query(req: &RecordedRequest) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", req.query))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Method, path, the Cloud credentials, and for writes the JSON content type.
fn assert_request(req: &RecordedRequest, method: &str, path: &str) {
    assert_eq!(req.method, method, "{}", req.line());
    assert_eq!(req.path, path, "{}", req.line());
    assert_eq!(req.header("authorization"), Some(BASIC), "{}", req.line());
    if method == "POST" || method == "PUT" {
        assert_eq!(
            req.header("content-type"),
            Some("application/json"),
            "{}",
            req.line()
        );
    }
}

fn lines(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter().map(|r| r.line()).collect()
}

fn comment_query(start: &str) -> Vec<(String, String)> {
    q(&[
        ("startAt", start),
        ("maxResults", "50"),
        ("orderBy", "created"),
    ])
}
