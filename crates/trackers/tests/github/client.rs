//! What every request shares: rate limits hold the whole client, bad credentials are an error
//! that does not show the token, and unusable settings are refused without echoing secrets.

use std::time::Duration;

use codemill_core::config::vendors::GithubApp;
use codemill_testkit::fakes::github::{FakeGitHub, FakeGitHubOptions};
use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::github::GitHub;
use codemill_trackers::{Error, Forge, Tracker};

use crate::{TOKEN, env, policy, settings, start};

/// Acceptance criterion: after a 429 with `Retry-After: 3`, the next request of the client (any
/// clone) leaves no sooner than 3 s later.
#[tokio::test]
async fn rate_limit_429_retry_after_3s_holds_every_request_for_3s() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    let other = fake.add_issue("u", "b", &[], "alice");
    fake.clear_requests();
    fake.inject(Fault {
        method: "GET".into(),
        path: format!("/repos/o/r/issues/{n}"),
        kind: FaultKind::RateLimit {
            retry_after_secs: 3,
        },
    });

    let clone = gh.clone();
    let first = tokio::spawn(async move { clone.issue(&n.to_string()).await });
    // A second caller sharing the client starts while the first is held back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = gh.issue(&other.to_string()).await.unwrap();
    assert_eq!(second.title, "u");
    assert_eq!(first.await.unwrap().unwrap().title, "t");

    let reqs = fake.requests();
    let limited = &reqs[0];
    assert_eq!(limited.line(), format!("GET /repos/o/r/issues/{n}"));
    for r in &reqs[1..] {
        let gap = r.at.duration_since(limited.at);
        assert!(
            gap >= Duration::from_secs(3),
            "{} arrived {gap:?} after the 429",
            r.line()
        );
    }
    assert_eq!(
        reqs.iter()
            .filter(|r| r.line() == format!("GET /repos/o/r/issues/{n}"))
            .count(),
        2,
        "the limited request was retried once"
    );
}

#[tokio::test]
async fn primary_rate_limit_403_with_remaining_0_waits_for_the_reset() {
    let (fake, gh) = start(100).await;
    let n = fake.add_issue("t", "b", &[], "alice");
    fake.clear_requests();
    fake.inject_primary_rate_limit("GET", &format!("/repos/o/r/issues/{n}"), 2);

    let issue = gh.issue(&n.to_string()).await.unwrap();
    assert_eq!(issue.title, "t");
    let reqs = fake.requests();
    assert_eq!(reqs[0].line(), reqs[1].line());
    // The reset is whole epoch seconds two seconds ahead: at least one full second is waited.
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
}

#[tokio::test]
async fn bad_credentials_are_an_error_that_does_not_show_the_token() {
    let fake = FakeGitHub::start(FakeGitHubOptions {
        token: "ghp_the_right_one".into(),
        ..FakeGitHubOptions::default()
    })
    .await
    .unwrap();
    fake.add_issue("t", "b", &[], "alice");
    let gh = GitHub::new(&settings(&fake.url()), &env, policy()).unwrap();
    let err = gh.issue("1").await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("github") && text.contains("/repos/o/r/issues/1"),
        "{text}"
    );
    assert!(text.contains("Bad credentials"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!format!("{gh:?}").contains(TOKEN));
    assert!(!err.is_transient());
}

#[test]
fn new_refuses_unusable_settings_without_echoing_secrets() {
    let base = settings("http://127.0.0.1:1");
    let no_env = |_: &str| None;
    let err = GitHub::new(&base, &no_env, policy()).unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("GH_TOKEN") && m.contains("github.token_env")),
        "{err}"
    );

    let mut neither = base.clone();
    neither.token_env = None;
    assert!(matches!(
        GitHub::new(&neither, &env, policy()),
        Err(Error::Config(_))
    ));

    let mut both = base.clone();
    both.app = Some(GithubApp {
        app_id: 1,
        installation_id: 2,
        private_key_env: "GH_APP_KEY".into(),
    });
    assert!(matches!(
        GitHub::new(&both, &env, policy()),
        Err(Error::Config(_))
    ));

    let mut bad_repo = base.clone();
    bad_repo.repo = "just-a-name".into();
    assert!(matches!(
        GitHub::new(&bad_repo, &env, policy()),
        Err(Error::Config(_))
    ));

    let mut bad_key = base.clone();
    bad_key.token_env = None;
    bad_key.app = both.app.clone();
    let garbage = |name: &str| {
        (name == "GH_APP_KEY").then(|| {
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LXN0dWZm\n-----END RSA PRIVATE KEY-----"
                .to_string()
        })
    };
    let err = GitHub::new(&bad_key, &garbage, policy()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{text}");
    assert!(
        text.contains("GH_APP_KEY") && !text.contains("c2VjcmV0"),
        "{text}"
    );

    let gh = GitHub::new(&base, &env, policy()).unwrap();
    assert_eq!(Tracker::vendor(&gh), "github");
    assert_eq!(Forge::vendor(&gh), "github");
    let debug = format!("{gh:?}");
    assert!(debug.contains("o/r") && !debug.contains(TOKEN), "{debug}");
}
