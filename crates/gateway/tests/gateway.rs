//! The gateway between an agent and a (scripted, real-wire-format) provider: the real key
//! reaches the provider while the agent only ever holds its per-step token; metered usage equals
//! what the provider reported, streamed and not, for each API; budgets refuse in the provider's
//! shape; passes expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use codemill_core::config::{Budgets, ProviderApi};
use codemill_core::cost::{Price, PriceTable, Usage};
use codemill_gateway::{Gateway, Grant, Pass, Scope, Upstream};
use codemill_store::Store;
use codemill_testkit::{Match, ModelServer, Reply, Rule, Script};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const REAL_KEY: &str = "sk-real-provider-key-CANARY-0042";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    gateway: Gateway,
    provider: ModelServer,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("codemill.db")).await.unwrap();
    let gateway = Gateway::start(&dir.path().join("run/gateway.sock"), store.clone())
        .await
        .unwrap();
    let usage = |input, output| {
        Some(codemill_testkit::Usage {
            input_tokens: input,
            output_tokens: output,
        })
    };
    let provider = ModelServer::start(Script::new(vec![Rule::new(
        "answer",
        Match::default(),
        Reply::Message {
            text: Some("hello".into()),
            tool_calls: Vec::new(),
            usage: usage(1200, 340),
        },
    )]))
    .await
    .unwrap();
    Fixture {
        _dir: dir,
        store,
        gateway,
        provider,
    }
}

fn prices() -> PriceTable {
    let mut table = BTreeMap::new();
    table.insert(
        "model-a".to_string(),
        Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cache_read_per_mtok: 0.0,
            cache_write_per_mtok: 0.0,
        },
    );
    PriceTable(table)
}

fn grant(fx: &Fixture, api: ProviderApi, budgets: Budgets) -> Pass {
    fx.gateway.grant(Grant {
        scope: Scope {
            job: "job-1".into(),
            ticket: "WEB-1".into(),
            project: "WEB".into(),
            stage: "implement".into(),
            round: 0,
            angle: None,
        },
        upstream: Upstream {
            api,
            base_url: fx.provider.base_url(),
            key: SecretString::from(REAL_KEY),
        },
        model: "model-a".into(),
        prices: prices(),
        budgets,
    })
}

/// A request as each agent CLI sends it, with the token where its key would go.
fn request(
    api: ProviderApi,
    stream: bool,
    token: &str,
) -> (String, Vec<(&'static str, String)>, Value) {
    let messages = json!([{"role": "user", "content": "say hello"}]);
    match api {
        ProviderApi::Anthropic | ProviderApi::Demo => (
            "/v1/messages".into(),
            vec![
                ("x-api-key", token.into()),
                ("anthropic-version", "2023-06-01".into()),
            ],
            json!({"model": "model-a", "max_tokens": 100, "stream": stream, "messages": messages}),
        ),
        ProviderApi::OpenaiChat => (
            "/v1/chat/completions".into(),
            vec![("authorization", format!("Bearer {token}"))],
            json!({"model": "model-a", "stream": stream, "messages": messages}),
        ),
        ProviderApi::OpenaiResponses => (
            "/v1/responses".into(),
            vec![("authorization", format!("Bearer {token}"))],
            json!({"model": "model-a", "stream": stream, "input": [{"role": "user", "content": [{"type": "input_text", "text": "say hello"}]}]}),
        ),
        ProviderApi::Gemini => (
            if stream {
                "/v1beta/models/model-a:streamGenerateContent?alt=sse".into()
            } else {
                "/v1beta/models/model-a:generateContent".into()
            },
            vec![("x-goog-api-key", token.into())],
            json!({"contents": [{"role": "user", "parts": [{"text": "say hello"}]}]}),
        ),
    }
}

async fn send(base: &str, api: ProviderApi, stream: bool, token: &str) -> (u16, String) {
    let (path, headers, body) = request(api, stream, token);
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn the_real_key_reaches_the_provider_and_usage_is_metered_for_every_api() {
    let fx = fixture().await;
    let cases = [
        (ProviderApi::Anthropic, false),
        (ProviderApi::Anthropic, true),
        (ProviderApi::OpenaiChat, false),
        (ProviderApi::OpenaiChat, true),
        (ProviderApi::OpenaiResponses, false),
        (ProviderApi::OpenaiResponses, true),
        (ProviderApi::Gemini, false),
        (ProviderApi::Gemini, true),
    ];
    for (api, stream) in cases {
        let pass = grant(&fx, api, Budgets::default());
        let token = pass.token().expose_secret().to_string();
        let before = fx.provider.requests().len();
        let (status, text) = send(fx.gateway.url(), api, stream, &token).await;
        assert_eq!(status, 200, "{api:?} stream={stream}: {text}");
        assert!(text.contains("hello"), "{api:?}: {text}");
        let seen = &fx.provider.requests()[before];
        let all_headers = format!("{:?}", seen.headers);
        assert!(
            all_headers.contains(REAL_KEY),
            "{api:?}: the provider did not get the key"
        );
        assert!(
            !all_headers.contains(&token),
            "{api:?}: the token leaked upstream"
        );
        assert!(!seen.body.to_string().contains(&token));
        let metered = pass.metered().await;
        assert_eq!(metered.calls, 1, "{api:?} stream={stream}");
        assert_eq!(
            metered.usage,
            Usage {
                input_tokens: 1200,
                output_tokens: 340,
                ..Usage::default()
            },
            "{api:?} stream={stream}"
        );
        let expected = (1200.0 * 3.0 + 340.0 * 15.0) / 1e6;
        assert!(
            (metered.cost_usd - expected).abs() < 1e-12,
            "{api:?}: {}",
            metered.cost_usd
        );
    }
    // Every request is in the store with its stage, model, tokens and status.
    let calls = fx.store.model_calls("job-1").await.unwrap();
    assert_eq!(calls.len(), cases.len());
    assert!(calls.iter().all(|c| c.status == 200
        && c.stage == "implement"
        && c.model == "model-a"
        && c.usage.output_tokens == 340
        && c.refused.is_none()));
    assert_eq!(calls.iter().filter(|c| c.streamed).count(), 4);
}

#[tokio::test]
async fn tokens_are_checked_and_revoked_with_their_pass() {
    let fx = fixture().await;
    let (status, text) = send(fx.gateway.url(), ProviderApi::Anthropic, false, "guess").await;
    assert_eq!(status, 401);
    assert!(text.contains("authentication_error"), "{text}");
    // The real key itself is not a credential of the gateway either.
    let (status, _) = send(fx.gateway.url(), ProviderApi::Anthropic, false, REAL_KEY).await;
    assert_eq!(status, 401);
    let pass = grant(&fx, ProviderApi::Anthropic, Budgets::default());
    let token = pass.token().expose_secret().to_string();
    assert_eq!(
        send(fx.gateway.url(), ProviderApi::Anthropic, false, &token)
            .await
            .0,
        200
    );
    assert_eq!(fx.gateway.live_passes(), 1);
    drop(pass);
    assert_eq!(fx.gateway.live_passes(), 0);
    let (status, _) = send(fx.gateway.url(), ProviderApi::Anthropic, false, &token).await;
    assert_eq!(status, 401, "a revoked token still worked");
    assert_eq!(fx.provider.requests().len(), 1);
}

#[tokio::test]
async fn the_unix_socket_serves_the_same_gateway() {
    let fx = fixture().await;
    let pass = grant(&fx, ProviderApi::OpenaiResponses, Budgets::default());
    let (path, headers, body) = request(
        ProviderApi::OpenaiResponses,
        true,
        pass.token().expose_secret(),
    );
    let client = reqwest::Client::builder()
        .unix_socket(fx.gateway.socket())
        .build()
        .unwrap();
    let mut req = client.post(format!("http://gateway{path}")).json(&body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("response.completed"));
    assert_eq!(pass.metered().await.usage.output_tokens, 340);
}

#[tokio::test]
async fn a_spent_budget_refuses_in_the_providers_shape_and_signals_the_step() {
    let fx = fixture().await;
    // One answer costs 0.0087 USD: the first passes (spend 0), the second finds 0.0087 >= 0.005.
    let budgets = Budgets {
        job_usd: Some(0.005),
        ..Budgets::default()
    };
    for api in [
        ProviderApi::Anthropic,
        ProviderApi::OpenaiChat,
        ProviderApi::OpenaiResponses,
        ProviderApi::Gemini,
    ] {
        let fx = fixture().await;
        let pass = grant(&fx, api, budgets);
        let token = pass.token().expose_secret().to_string();
        assert_eq!(send(fx.gateway.url(), api, true, &token).await.0, 200);
        let signal = pass.refused_signal();
        assert!(!signal.is_cancelled());
        let (status, text) = send(fx.gateway.url(), api, true, &token).await;
        assert_eq!(status, 400, "{api:?}: {text}");
        assert!(
            text.contains("budget exceeded: job_usd 0.01, spent 0.01")
                || text.contains("budget exceeded: job_usd 0.00, spent 0.01"),
            "{api:?}: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(body["error"].is_object(), "{api:?}: {text}");
        assert!(signal.is_cancelled());
        // Only the first request reached the provider.
        assert_eq!(fx.provider.requests().len(), 1, "{api:?}");
        let refusal = pass.metered().await.refused.unwrap();
        assert_eq!(refusal.budget, "job_usd");
        assert!((refusal.spent - 0.0087).abs() < 1e-9);
        let calls = fx.store.model_calls("job-1").await.unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].refused.as_deref(), Some("job_usd"));
    }
    drop(fx);
}

#[tokio::test]
async fn spend_of_other_jobs_counts_for_ticket_and_day_budgets() {
    let fx = fixture().await;
    let first = grant(&fx, ProviderApi::Anthropic, Budgets::default());
    let token = first.token().expose_secret().to_string();
    assert_eq!(
        send(fx.gateway.url(), ProviderApi::Anthropic, false, &token)
            .await
            .0,
        200
    );
    first.metered().await;
    // A later job of the same ticket is over the ticket budget before it starts.
    let mut later = Grant {
        scope: Scope {
            job: "job-2".into(),
            ticket: "WEB-1".into(),
            project: "WEB".into(),
            stage: "research".into(),
            round: 0,
            angle: None,
        },
        upstream: Upstream {
            api: ProviderApi::Anthropic,
            base_url: fx.provider.base_url(),
            key: SecretString::from(REAL_KEY),
        },
        model: "model-a".into(),
        prices: prices(),
        budgets: Budgets {
            ticket_usd: Some(0.008),
            ..Budgets::default()
        },
    };
    let pass = fx.gateway.grant(later.clone());
    let (status, text) = send(
        fx.gateway.url(),
        ProviderApi::Anthropic,
        false,
        pass.token().expose_secret(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("ticket_usd"), "{text}");
    // Another ticket of the project is stopped by the project's day budget.
    later.scope.ticket = "WEB-2".into();
    later.budgets = Budgets {
        project_day_usd: Some(0.008),
        ..Budgets::default()
    };
    let pass = fx.gateway.grant(later);
    let (status, text) = send(
        fx.gateway.url(),
        ProviderApi::Anthropic,
        false,
        pass.token().expose_secret(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("project_day_usd"), "{text}");
}

/// The knowledge route: the pass decides the project and the author; an agent cannot read
/// another project's entries, record anything but `inferred`, or call without a live pass.
#[tokio::test]
async fn knowledge_tools_answer_under_a_pass_for_its_project_only() {
    use codemill_store::{KnowledgeTag, NewKnowledge};
    let fx = fixture().await;
    let add = |project: &'static str, title: &'static str| {
        let store = fx.store.clone();
        async move {
            store
                .add_knowledge(&NewKnowledge {
                    project,
                    title,
                    body: "Releases are cut with scripts/release.sh.",
                    tag: KnowledgeTag::Human,
                    sources: &[],
                    author: "user:ann",
                    origin: None,
                })
                .await
                .unwrap()
        }
    };
    let ours = add("WEB", "Releasing").await;
    let theirs = add("API", "Releasing the API").await;
    let pass = grant(&fx, ProviderApi::Anthropic, Budgets::default());
    let http = reqwest::Client::new();
    let call = |tool: &str, token: &str, args: Value| {
        let req = http
            .post(format!("{}/codemill/knowledge/{tool}", fx.gateway.url()))
            .bearer_auth(token.to_string())
            .json(&args);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let token = pass.token().expose_secret().to_string();

    let (status, found) = call("search_knowledge", &token, json!({"query": "release"})).await;
    assert_eq!(status, 200, "{found}");
    let results = found["result"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only the pass's project: {found}");
    assert_eq!(results[0]["id"], ours.id);
    assert_eq!(results[0]["tag"], "human");

    let (status, other) = call("read_knowledge", &token, json!({"id": theirs.id})).await;
    assert_eq!(status, 400, "{other}");
    assert!(
        other["error"]
            .as_str()
            .unwrap()
            .contains("no knowledge entry")
    );

    let (status, recorded) = call(
        "record_knowledge",
        &token,
        json!({"title": "Tags", "body": "Tags are signed.", "sources": ["scripts/release.sh:3-9"]}),
    )
    .await;
    assert_eq!(status, 200, "{recorded}");
    assert_eq!(recorded["result"]["tag"], "inferred");
    let row = fx
        .store
        .knowledge(recorded["result"]["id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.project.as_str(), row.author.as_str(), row.tag),
        ("WEB", "agent:implement WEB-1", KnowledgeTag::Inferred)
    );

    let (status, unknown) = call("drop_tables", &token, json!({})).await;
    assert_eq!(status, 404, "{unknown}");
    let (status, bad) = call("search_knowledge", &token, json!({"query": 7})).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("query"), "{bad}");

    let (status, _) = call("search_knowledge", "cmgw-forged", json!({"query": "x"})).await;
    assert_eq!(status, 401);
    drop(pass);
    let (status, _) = call("search_knowledge", &token, json!({"query": "x"})).await;
    assert_eq!(status, 401, "a revoked pass answers nothing");
}
