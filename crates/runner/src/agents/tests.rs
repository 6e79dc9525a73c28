//! The agent pool: where each provider's endpoint and key come from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use secrecy::ExposeSecret;

use super::*;
use crate::testing::TestHome;

fn pool(t: &TestHome, demo_base_url: Option<&str>) -> AgentPool {
    let projects = crate::outside::Projects::new(t.config.projects.clone(), Default::default());
    let boundary = Boundary::new(
        t.home.clone(),
        t.store.clone(),
        t.config.sandbox.clone(),
        projects,
        Default::default(),
    );
    AgentPool::new(
        t.home.clone(),
        t.store.clone(),
        Arc::new(t.config.clone()),
        boundary,
        reqwest::Client::new(),
        demo_base_url.map(Into::into),
        Default::default(),
        Emitter::default(),
    )
}

fn provider(api: ProviderApi, key_env: Option<&str>) -> ProviderConfig {
    ProviderConfig {
        name: "p".into(),
        api,
        base_url: "https://models.example".into(),
        api_key_env: key_env.map(Into::into),
    }
}

#[tokio::test]
async fn endpoints_come_from_the_provider_and_its_key_variable() {
    let t = TestHome::new("/nowhere/shop.git", "").await;
    let demo = provider(ProviderApi::Demo, None);
    assert!(matches!(
        pool(&t, None).endpoint_for(&demo),
        Err(RunError::NoDemoModel)
    ));
    let e = pool(&t, Some("http://127.0.0.1:9"))
        .endpoint_for(&demo)
        .unwrap();
    assert_eq!(e.base_url, "http://127.0.0.1:9");
    assert!(matches!(e.api, Api::Anthropic));
    assert_eq!(e.api_key.expose_secret(), "codemill-demo-key");

    let pool = pool(&t, None);
    let chat = pool
        .endpoint_for(&provider(ProviderApi::OpenaiChat, None))
        .unwrap();
    assert!(matches!(chat.api, Api::OpenAiChat));
    assert_eq!(chat.base_url, "https://models.example");
    assert_eq!(chat.api_key.expose_secret(), "");
    // A named variable that is not set is the request's error, naming the variable.
    let unset = "CODEMILL_TEST_KEY_THAT_IS_NEVER_SET";
    match pool.endpoint_for(&provider(ProviderApi::Anthropic, Some(unset))) {
        Err(RunError::MissingKey { provider, var }) => {
            assert_eq!((provider.as_str(), var.as_str()), ("p", unset));
        }
        other => panic!("{other:?}"),
    }
}
