//! The Linear tracker against the fake Linear GraphQL server: every operation's request checked
//! field by field, pagination, idempotent writes under injected faults, rate limits, and webhook
//! verification and parsing on payloads shaped like Linear's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod fake;
mod tracker;
mod webhooks;

use std::time::Duration;

use codemill_core::config::vendors::{LinearSettings, StatusMap};
use codemill_testkit::fakes::RecordedRequest;
use codemill_testkit::fakes::linear::{FakeLinear, FakeLinearOptions};
use codemill_trackers::RetryPolicy;
use codemill_trackers::linear::Linear;
use serde_json::Value;

const KEY: &str = "lin_api_test_key_0123456789";
const MARKER_LINE: &str = "\n\n---\n_codemill · [codemill:status]_";

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

fn settings(url: &str) -> LinearSettings {
    LinearSettings {
        api_url: url.to_string(),
        token_env: "LINEAR_API_KEY".into(),
        team_key: "ENG".into(),
        trigger_state: "Todo".into(),
        trigger_label: "codemill".into(),
        refine_label: "codemill:refine".into(),
        states: StatusMap {
            in_progress: Some("In Progress".into()),
            in_review: Some("In Review".into()),
            done: Some("Done".into()),
            rejected: Some("Shipped to the moon".into()),
            ..StatusMap::default()
        },
        webhook: None,
    }
}

fn env(name: &str) -> Option<String> {
    (name == "LINEAR_API_KEY").then(|| KEY.to_string())
}

async fn setup_with(page_size: usize, policy: RetryPolicy) -> (FakeLinear, Linear) {
    let fake = FakeLinear::start(FakeLinearOptions {
        api_key: KEY.into(),
        page_size,
        labels: vec!["bug".into(), "old".into()],
        workspace_labels: vec!["codemill".into()],
        ..FakeLinearOptions::default()
    })
    .await
    .unwrap();
    let linear = Linear::new(&settings(&fake.url()), &env, policy).unwrap();
    (fake, linear)
}

async fn setup() -> (FakeLinear, Linear) {
    setup_with(2, policy()).await
}

fn op(r: &RecordedRequest) -> &str {
    r.body["operationName"].as_str().unwrap_or_default()
}

fn query(r: &RecordedRequest) -> &str {
    r.body["query"].as_str().unwrap_or_default()
}

fn vars(r: &RecordedRequest) -> &Value {
    &r.body["variables"]
}

/// Every request: POST /graphql, the API key as is, JSON, a named operation whose name is in
/// the query text, and no value spliced into the text.
fn assert_wire(requests: &[RecordedRequest]) {
    for r in requests {
        assert_eq!(r.line(), "POST /graphql");
        assert_eq!(r.header("authorization"), Some(KEY), "no Bearer prefix");
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json")
        );
        let name = op(r);
        assert!(name.starts_with("Codemill"), "{name}");
        let q = query(r);
        assert!(
            q.starts_with(&format!("query {name}(")) || q.starts_with(&format!("mutation {name}(")),
            "{q}"
        );
        assert!(!q.contains('"'), "values travel as variables: {q}");
    }
}

fn selects(r: &RecordedRequest, fields: &[&str]) {
    let q = query(r);
    for f in fields {
        assert!(q.contains(f), "{} does not select {f}: {q}", op(r));
    }
}
