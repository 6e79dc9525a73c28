//! The GitHub tracker and forge against the fake GitHub: every request asserted field by field,
//! pagination, idempotent writes after faults, rate limits, App authentication, and webhook
//! verification and parsing on payloads shaped like GitHub's documented examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod client;
mod forge;
mod tracker;
mod webhooks;

use std::time::Duration;

use codemill_core::config::vendors::GithubSettings;
use codemill_testkit::fakes::RecordedRequest;
use codemill_testkit::fakes::github::{FakeGitHub, FakeGitHubOptions};
use codemill_trackers::github::GitHub;
use codemill_trackers::{PrRequest, RetryPolicy};

const TOKEN: &str = "ghp_test_token_123";
const PRIVATE_KEY: &str = include_str!("../fixtures/github/test-app-key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/github/test-app-key.pub.pem");

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_wait: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    }
}

fn settings(api_url: &str) -> GithubSettings {
    GithubSettings {
        repo: "o/r".into(),
        api_url: api_url.into(),
        token_env: Some("GH_TOKEN".into()),
        app: None,
        trigger_label: "codemill".into(),
        refine_label: "codemill:refine".into(),
        trigger_assignee: None,
        bot_login: Some("codemill-bot".into()),
        draft: true,
        webhook: None,
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "GH_TOKEN" => Some(TOKEN.into()),
        "GH_APP_KEY" => Some(PRIVATE_KEY.into()),
        _ => None,
    }
}

async fn start(page_size: usize) -> (FakeGitHub, GitHub) {
    let fake = FakeGitHub::start(FakeGitHubOptions {
        token: TOKEN.into(),
        app: None,
        page_size,
        owner: "o".into(),
        repo: "r".into(),
    })
    .await
    .unwrap();
    let gh = GitHub::new(&settings(&fake.url()), &env, policy()).unwrap();
    (fake, gh)
}

/// Decoded query pairs, in order.
fn query(r: &RecordedRequest) -> Vec<(String, String)> {
    if r.query.is_empty() {
        return Vec::new();
    }
    r.query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// GitHub's documented headers and the credential on a request.
fn assert_github_headers(r: &RecordedRequest, bearer: &str) {
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {bearer}").as_str()),
        "{}",
        r.line()
    );
    assert_eq!(
        r.header("accept"),
        Some("application/vnd.github+json"),
        "{}",
        r.line()
    );
    assert_eq!(
        r.header("x-github-api-version"),
        Some("2022-11-28"),
        "{}",
        r.line()
    );
    assert!(
        r.header("user-agent")
            .unwrap_or_default()
            .starts_with("codemill/"),
        "{}",
        r.line()
    );
}

fn lines(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter().map(|r| r.line()).collect()
}

fn pr_request<'a>(head: &'a str) -> PrRequest<'a> {
    PrRequest {
        head,
        base: "main",
        title: "codemill: crash on empty input",
        body: "Closes #1\n\nWhat changed.",
        draft: true,
    }
}
