//! GitHub App authentication: the JWT the client signs and the fake verifies, installation
//! tokens reused, refreshed near expiry or after a revocation, and the token git gets.

use codemill_core::config::vendors::GithubApp;
use codemill_testkit::fakes::RecordedRequest;
use codemill_testkit::fakes::github::{FakeGitHub, FakeGitHubOptions};
use codemill_trackers::github::GitHub;
use codemill_trackers::{Error, Forge, Tracker};
use serde_json::{Value, json};

use crate::{
    PRIVATE_KEY, PUBLIC_KEY, TOKEN, assert_github_headers, env, lines, policy, settings, start,
};

async fn start_app() -> (FakeGitHub, GitHub) {
    let fake = FakeGitHub::start(FakeGitHubOptions {
        token: String::new(),
        app: Some((4242, 99, PUBLIC_KEY.into())),
        page_size: 100,
        owner: "o".into(),
        repo: "r".into(),
    })
    .await
    .unwrap();
    let mut s = settings(&fake.url());
    s.token_env = None;
    s.app = Some(GithubApp {
        app_id: 4242,
        installation_id: 99,
        private_key_env: "GH_APP_KEY".into(),
    });
    let gh = GitHub::new(&s, &env, policy()).unwrap();
    (fake, gh)
}

#[tokio::test]
async fn app_auth_signs_a_jwt_the_fake_verifies_and_reuses_the_installation_token() {
    let (fake, gh) = start_app().await;
    let n = fake.add_issue("t", "b", &["codemill"], "alice");

    gh.issue(&n.to_string()).await.unwrap();
    gh.clone().triggered().await.unwrap();
    gh.upsert_comment(&n.to_string(), "codemill:status", "hi")
        .await
        .unwrap();

    let reqs = fake.requests();
    let token_reqs: Vec<&RecordedRequest> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/app/"))
        .collect();
    assert_eq!(
        token_reqs.len(),
        1,
        "one token for several calls (and clones)"
    );
    let t = token_reqs[0];
    assert_eq!(t.line(), "POST /app/installations/99/access_tokens");
    assert_eq!(t.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(t.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(reqs[0].line(), t.line(), "the token comes first");

    // The JWT's claims, verified with the public key.
    let jwt = t
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&["4242"]);
    let data = jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let iat = data.claims["iat"].as_i64().unwrap();
    let exp = data.claims["exp"].as_i64().unwrap();
    assert!((now - 60 - iat).abs() <= 5, "iat {iat} vs now {now}");
    assert!((now + 540 - exp).abs() <= 5, "exp {exp} vs now {now}");
    assert_eq!(data.claims["iss"], "4242");

    // Every API request carries the installation token the fake issued.
    let issued = reqs
        .iter()
        .find(|r| !r.path.starts_with("/app/"))
        .and_then(|r| r.header("authorization"))
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    assert!(issued.starts_with("ghs_"), "{issued}");
    for r in reqs.iter().filter(|r| !r.path.starts_with("/app/")) {
        assert_github_headers(r, &issued);
    }
    assert_eq!(fake.comments(n)[0]["user"]["login"], "codemill-bot");
}

#[tokio::test]
async fn app_auth_refreshes_a_token_within_60s_of_expiry_and_after_a_revocation() {
    let (fake, gh) = start_app().await;
    let n = fake.add_issue("t", "b", &[], "alice").to_string();

    // Tokens that live 30 s are never worth caching (60 s margin): each request gets a new one.
    fake.set_installation_token_ttl(30);
    gh.pr(1).await.unwrap_err();
    gh.pr(1).await.unwrap_err();
    let count = |fake: &FakeGitHub| {
        fake.requests()
            .iter()
            .filter(|r| r.path.starts_with("/app/"))
            .count()
    };
    assert_eq!(count(&fake), 2);

    // A token GitHub revokes early: the 401 drops it and one fresh token is fetched.
    fake.set_installation_token_ttl(3600);
    gh.issue(&n).await.unwrap();
    assert_eq!(count(&fake), 3);
    fake.revoke_tokens();
    fake.clear_requests();
    gh.issue(&n).await.unwrap();
    assert_eq!(
        lines(&fake.requests()),
        vec![
            format!("GET /repos/o/r/issues/{n}"),
            "POST /app/installations/99/access_tokens".to_string(),
            format!("GET /repos/o/r/issues/{n}"),
            format!("GET /repos/o/r/issues/{n}/comments"),
        ]
    );
}

#[tokio::test]
async fn app_auth_with_the_wrong_app_id_is_refused_by_the_fake() {
    let (fake, _) = start_app().await;
    let mut s = settings(&fake.url());
    s.token_env = None;
    s.app = Some(GithubApp {
        app_id: 1,
        installation_id: 99,
        private_key_env: "GH_APP_KEY".into(),
    });
    let gh = GitHub::new(&s, &env, policy()).unwrap();
    let err = gh.issue("1").await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/app/installations/99/access_tokens")
    );
}

#[tokio::test]
async fn the_fake_checks_the_app_jwt_signature_and_claims() {
    let (fake, _) = start_app().await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(PRIVATE_KEY.as_bytes()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let jwt = |iat: i64, exp: i64, iss: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &json!({"iat": iat, "exp": exp, "iss": iss}),
            &key,
        )
        .unwrap()
    };
    let exchange = |token: String| {
        let url = format!("{}/app/installations/99/access_tokens", fake.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = exchange(jwt(now - 60, now + 540, json!(4242))).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["token"].as_str().unwrap().starts_with("ghs_"));
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));

    let (status, body) = exchange(jwt(now - 60, now + 660, json!("4242"))).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("too far"),
        "{body}"
    );
    let (status, _) = exchange(jwt(now - 700, now - 100, json!("4242"))).await;
    assert_eq!(status, 401, "expired");

    // Another payload under the first token's signature.
    let good = jwt(now - 60, now + 540, json!("4242"));
    let forged_claims = jwt(now - 60, now + 540, json!("4243"));
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = forged_claims.split('.').nth(1).unwrap();
    let (status, body) = exchange(parts.join(".")).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
}

#[tokio::test]
async fn git_token_is_the_configured_token_or_the_apps_installation_token() {
    use secrecy::ExposeSecret;
    let (_fake, gh) = start(10).await;
    assert_eq!(gh.git_token().await.unwrap().expose_secret(), TOKEN);

    let (fake, gh) = start_app().await;
    let n = fake.add_issue("t", "b", &[], "alice");
    let git = gh.git_token().await.unwrap();
    assert!(
        git.expose_secret().starts_with("ghs_"),
        "an installation token"
    );
    // The API calls use the same cached token: one exchange in all.
    gh.issue(&n.to_string()).await.unwrap();
    let exchanges = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/"))
        .count();
    assert_eq!(exchanges, 1);
    let issue_call = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(&format!("/issues/{n}")))
        .unwrap();
    assert_eq!(
        issue_call.header("authorization"),
        Some(format!("Bearer {}", git.expose_secret()).as_str())
    );
}
