//! What every request shares: the key is required and never shown, and Linear's rate limits
//! (a `RATELIMITED` 400, a 429, a spent budget) hold the next request until they lift.

use std::time::Duration;

use codemill_testkit::fakes::linear::{FakeLinear, FakeLinearOptions};
use codemill_testkit::fakes::{Fault, FaultKind};
use codemill_trackers::linear::Linear;
use codemill_trackers::{Error, Tracker};

use crate::{KEY, env, policy, settings, setup_with};

#[tokio::test]
async fn new_needs_the_key_and_debug_hides_it() {
    let s = settings("https://api.linear.app/graphql");
    let none = |_: &str| None;
    let err = Linear::new(&s, &none, policy()).unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert!(err.to_string().contains("LINEAR_API_KEY"), "{err}");
    let linear = Linear::new(&s, &env, policy()).unwrap();
    assert_eq!(linear.vendor(), "linear");
    let debug = format!("{linear:?}");
    assert!(!debug.contains(KEY), "{debug}");
    let mut bad = s.clone();
    bad.api_url = "api.linear.app/graphql".into();
    assert!(matches!(
        Linear::new(&bad, &env, policy()),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn a_wrong_key_is_refused_without_showing_it() {
    let fake = FakeLinear::start(FakeLinearOptions::default())
        .await
        .unwrap();
    let linear = Linear::new(&settings(&fake.url()), &env, policy()).unwrap();
    let err = linear.triggered().await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("CodemillTriggered") && text.contains("AUTHENTICATION_ERROR"),
        "{text}"
    );
    assert!(!text.contains(KEY));
}

#[tokio::test]
async fn linear_ratelimited_400_is_waited_out_then_retried() {
    let mut p = policy();
    p.base_delay = Duration::from_millis(200);
    p.max_delay = Duration::from_millis(400);
    let (fake, linear) = setup_with(50, p).await;
    fake.add_issue("ready", "", "Todo", &["codemill"]);
    fake.ratelimit_next(1);
    let keys = linear.triggered().await.unwrap();
    assert_eq!(keys, vec!["ENG-1"]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "refused once, then answered");
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(190), "{gap:?}");
    assert_eq!(requests[0].body, requests[1].body);
}

#[tokio::test]
async fn linear_ratelimited_that_never_lifts_is_a_transient_error() {
    let mut p = policy();
    p.attempts = 2;
    let (fake, linear) = setup_with(50, p).await;
    let key = fake.add_issue("t", "", "Todo", &[]);
    fake.ratelimit_next(5);
    let err = linear
        .upsert_comment(&key, "codemill:status", "x")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("RATELIMITED"), "{err}");
    assert!(fake.comments(&key).is_empty());
}

#[tokio::test]
async fn http_429_retry_after_holds_the_next_request() {
    let (fake, linear) = setup_with(50, policy()).await;
    fake.add_issue("ready", "", "Todo", &["codemill"]);
    fake.inject(Fault {
        method: "POST".into(),
        path: "/graphql".into(),
        kind: FaultKind::RateLimit {
            retry_after_secs: 1,
        },
    });
    assert_eq!(linear.triggered().await.unwrap(), vec!["ENG-1"]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
}

#[tokio::test]
async fn a_spent_budget_holds_the_next_request_until_the_reset() {
    let (fake, linear) = setup_with(50, policy()).await;
    let key = fake.add_issue("ready", "", "Todo", &["codemill"]);
    fake.exhaust_budget(Duration::from_millis(800));
    linear.triggered().await.unwrap();
    linear.issue(&key).await.unwrap();
    let requests = fake.requests();
    assert_eq!(
        requests.len(),
        2,
        "the client waited for the reset instead of being refused"
    );
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(600), "{gap:?}");
}
