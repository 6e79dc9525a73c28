//! The fake Linear answers as Linear would: unknown fields, undeclared or mistyped variables, a
//! paginated read without `pageInfo`, a `Bearer` key and a body that is not JSON are refused, and
//! only the selected fields come back.

use serde_json::{Value, json};

use crate::{KEY, setup};

#[tokio::test]
async fn the_fake_refuses_what_linear_would() {
    let (fake, _linear) = setup().await;
    fake.add_issue("t", "", "Todo", &[]);
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(fake.url())
            .header("authorization", KEY)
            .json(&body)
            .send()
    };
    let code = |v: &Value| {
        v["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    // An unknown field, an undeclared variable, a wrongly typed one, a missing pageInfo.
    for (query, variables) in [
        (
            "query A($id: String!) { issue(id: $id) { id colour } }",
            json!({"id": "ENG-1"}),
        ),
        ("query A { issue(id: $id) { id } }", json!({"id": "ENG-1"})),
        (
            "query A($id: String!) { issue(id: $id) { id } }",
            json!({"id": 1}),
        ),
        (
            "query A($id: ID!) { issue(id: $id) { id } }",
            json!({"id": "ENG-1"}),
        ),
        ("query A { issues(first: 50) { nodes { id } } }", json!({})),
        (
            "query A($id: String!) { issue(id: $id) { state } }",
            json!({"id": "ENG-1"}),
        ),
    ] {
        let r = post(json!({"query": query, "variables": variables, "operationName": "A"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), "GRAPHQL_VALIDATION_FAILED", "{query}: {v}");
    }

    // Only what is selected comes back.
    let r = post(json!({"query": "query A($id: String!) { issue(id: $id) { identifier t: title } }", "variables": {"id": "eng-1"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-ratelimit-requests-limit"].to_str().unwrap(),
        "2500"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"data": {"issue": {"identifier": "ENG-1", "t": "t"}}})
    );

    // Bearer is OAuth's form, not an API key's.
    let r = client
        .post(fake.url())
        .header("authorization", format!("Bearer {KEY}"))
        .json(&json!({"query": "query { viewer { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "AUTHENTICATION_ERROR");

    // Not JSON.
    let r = client
        .post(fake.url())
        .header("authorization", KEY)
        .header("content-type", "text/plain")
        .body("query { viewer { id } }")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
