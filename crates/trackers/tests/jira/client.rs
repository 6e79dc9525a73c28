//! What every request shares: rate limits hold the next request, Data Center signs in with a
//! bearer token, and wrong or missing credentials are errors that name the variable, not the
//! secret.

use std::time::Duration;

use codemill_core::config::vendors::JiraAuth;
use codemill_testkit::fakes::jira::{FakeJira, FakeJiraAuth, FakeJiraOptions};
use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::jira::Jira;
use codemill_trackers::{Error, Tracker};
use serde_json::Value;

use crate::{EMAIL, TOKEN, env, policy, settings, setup};

#[tokio::test]
async fn rate_limit_holds_the_next_request() {
    let (fake, jira) = setup().await;
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    fake.inject(Fault {
        method: "GET".into(),
        path: "/rest/api/3/issue/PROJ-1".into(),
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
    });
    let issue = jira.issue("PROJ-1").await.unwrap();
    assert_eq!(issue.title, "t");
    let reqs = fake.requests();
    assert_eq!(reqs[0].line(), "GET /rest/api/3/issue/PROJ-1");
    assert_eq!(reqs[1].line(), "GET /rest/api/3/issue/PROJ-1");
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
}

#[tokio::test]
async fn data_center_sends_a_bearer_token() {
    let fake = FakeJira::start(FakeJiraOptions {
        auth: FakeJiraAuth::Bearer("dc-token".into()),
        ..FakeJiraOptions::default()
    })
    .await
    .unwrap();
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let mut s = settings(&fake.url());
    s.auth = JiraAuth::DataCenter;
    s.email_env = None;
    s.token_env = "JIRA_DC_TOKEN".into();
    let jira = Jira::new(&s, &env, policy()).unwrap();
    jira.issue("PROJ-1").await.unwrap();
    for req in fake.requests() {
        assert_eq!(req.header("authorization"), Some("Bearer dc-token"));
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_401_that_names_the_request_not_the_token() {
    let fake = FakeJira::start(FakeJiraOptions::default()).await.unwrap();
    fake.add_issue("PROJ-1", "t", Value::Null, "To Do", &[]);
    let wrong = |name: &str| match name {
        "JIRA_EMAIL" => Some(EMAIL.to_string()),
        "JIRA_TOKEN" => Some("wrong-secret-token".to_string()),
        _ => None,
    };
    let jira = Jira::new(&settings(&fake.url()), &wrong, policy()).unwrap();
    let err = jira.issue("PROJ-1").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err:?}");
    assert!(
        text.contains("jira GET /rest/api/3/issue/PROJ-1: HTTP 401"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-token"), "{text}");
    assert!(!format!("{jira:?}").contains("wrong-secret-token"));
    assert!(!format!("{jira:?}").contains(EMAIL));
}

#[test]
fn missing_credentials_name_the_variable() {
    let none = |_: &str| -> Option<String> { None };
    let err = Jira::new(&settings("https://x.atlassian.net"), &none, policy()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("JIRA_TOKEN"), "{err}");
    assert!(err.to_string().contains("jira.token_env"), "{err}");

    let token_only = |name: &str| (name == "JIRA_TOKEN").then(|| TOKEN.to_string());
    let err = Jira::new(&settings("https://x.atlassian.net"), &token_only, policy()).unwrap_err();
    assert!(err.to_string().contains("JIRA_EMAIL"), "{err}");

    let mut s = settings("https://x.atlassian.net");
    s.email_env = None;
    let err = Jira::new(&s, &env, policy()).unwrap_err();
    assert!(err.to_string().contains("jira.email_env"), "{err}");

    let err = Jira::new(&settings("x.atlassian.net"), &env, policy()).unwrap_err();
    assert!(err.to_string().contains("base_url"), "{err}");
    assert_eq!(
        Jira::new(&settings("https://x.atlassian.net"), &env, policy())
            .unwrap()
            .vendor(),
        "jira"
    );
}
