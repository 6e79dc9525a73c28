//! `codemill knowledge` from the terminal: a person adds entries with the places they cite, lists,
//! searches, shows and removes them; bad input is refused with the reason and adds nothing.

use super::harness::{Env, HELLO_GATE, engineer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_keeps_project_knowledge_with_its_sources() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let said = env.ok(&[
        "knowledge",
        "add",
        "P",
        "--title",
        "Running the tests",
        "--body",
        "Run `make check` before pushing; it starts PostgreSQL first.",
        "--source",
        "docs/testing.md:3-9",
        "--source",
        "Makefile",
    ]);
    assert!(said.contains("Added knowledge #1 to P (human)"), "{said}");
    let body = env.dir.path().join("billing.md");
    std::fs::write(
        &body,
        "Invoices are computed nightly by the invoices service.\n",
    )
    .unwrap();
    env.ok(&[
        "knowledge",
        "add",
        "P",
        "--title",
        "Billing",
        "--body-file",
        body.to_str().unwrap(),
    ]);

    // Refused, with the reason: nothing is added.
    for (args, says) in [
        (
            vec!["knowledge", "add", "Q", "--title", "t", "--body", "b"],
            "no project \"Q\"",
        ),
        (
            vec![
                "knowledge",
                "add",
                "P",
                "--title",
                "t",
                "--body",
                "b",
                "--tag",
                "verified",
            ],
            "added by hand are `human`",
        ),
        (
            vec![
                "knowledge",
                "add",
                "P",
                "--title",
                "t",
                "--body",
                "b",
                "--source",
                "../etc/passwd",
            ],
            "a path inside the repository",
        ),
        (
            vec![
                "knowledge",
                "add",
                "P",
                "--title",
                "t",
                "--body",
                "b",
                "--source",
                "a.rs:9-2",
            ],
            "PATH:FIRST-LAST",
        ),
        (
            vec!["knowledge", "add", "P", "--title", "t"],
            "--body TEXT or --body-file",
        ),
    ] {
        let (code, _, err) = env.run(&args);
        assert_ne!(code, Some(0), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let all = env.json(&["knowledge", "list", "P", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    let first = &all[0];
    assert_eq!(first["tag"], "human");
    assert_eq!(first["sources"][0]["path"], "docs/testing.md");
    assert_eq!(first["sources"][0]["lines"], serde_json::json!([3, 9]));
    assert!(first["author"].as_str().unwrap().starts_with("user:"));

    let hits = env.json(&[
        "knowledge",
        "search",
        "P",
        "how do I run the tests",
        "--json",
    ]);
    assert_eq!(hits[0]["entry"]["title"], "Running the tests", "{hits}");
    let shown = env.ok(&["knowledge", "show", "1"]);
    assert!(shown.contains("source: docs/testing.md:3-9"), "{shown}");
    assert!(shown.contains("make check"), "{shown}");
    env.ok(&["knowledge", "remove", "2"]);
    let (code, _, err) = env.run(&["knowledge", "show", "2"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no knowledge entry #2"), "{err}");
    let listed = env.ok(&["knowledge", "list", "P"]);
    assert!(
        listed.contains("#1     human     Running the tests"),
        "{listed}"
    );
    assert!(!listed.contains("Billing"), "{listed}");
}
