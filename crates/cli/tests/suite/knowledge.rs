//! `codemill knowledge` from the terminal: a person adds entries with the places they cite, lists,
//! searches, shows and removes them; bad input is refused with the reason and adds nothing.

use super::harness::{Env, HELLO_GATE, engineer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_keeps_project_knowledge_with_its_sources() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    let (code, said, err) = env.run(&[
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
    assert_eq!(code, Some(0), "{err}");
    assert!(said.contains("Added knowledge #1 to P (human)"), "{said}");
    // Places that do not exist on main (yet) are said, and left for the next ingest.
    for path in ["docs/testing.md", "Makefile"] {
        assert!(
            err.contains(&format!(
                "warning: --source {path} does not exist on main ("
            )) && err.contains("checked at the next `codemill knowledge ingest`"),
            "{err}"
        );
    }
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

/// Write `files` (path, text; `None` deletes) on the remote's main branch, as a person pushing.
pub(super) fn push_docs(env: &Env, files: &[(&str, Option<&str>)]) {
    use super::harness::git;
    let work = env.dir.path().join("docs-work");
    if !work.exists() {
        git(
            env.dir.path(),
            &["clone", "-q", env.remote.to_str().unwrap(), "docs-work"],
        );
    }
    git(&work, &["pull", "-q"]);
    for (path, text) in files {
        let file = work.join(path);
        match text {
            Some(t) => {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, t).unwrap();
            }
            None => std::fs::remove_file(&file).unwrap(),
        }
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "docs"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_follows_the_documentation_and_marks_what_went_stale() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    push_docs(
        &env,
        &[
            (
                "docs/testing.md",
                Some(
                    "# Testing\n\nRun `make check`.\n\n## Fixtures\n\nFixtures live in tests/data.\n",
                ),
            ),
            ("docs/old.md", Some("# Old\n\nThe old way.\n")),
            ("src/lib.rs", Some("// not documentation\n")),
        ],
    );
    // A person's entries, before any ingest: what they cite is tied to main at once.
    let (code, _, err) = env.run(&[
        "knowledge",
        "add",
        "P",
        "--title",
        "Old way",
        "--body",
        "We used to do it the old way.",
        "--source",
        "docs/old.md:1-3",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let old = env.json(&["knowledge", "show", "1", "--json"]);
    assert_eq!(
        old["sources"][0]["commit"],
        serde_json::json!(env.remote_branch("main").unwrap()),
        "{old}"
    );
    env.ok(&[
        "knowledge",
        "add",
        "P",
        "--title",
        "Where fixtures are",
        "--body",
        "tests/data",
        "--source",
        "docs/testing.md:5-7",
    ]);
    let first = env.json(&["knowledge", "ingest", "P", "--json"]);
    // README (a heading with nothing under it: no entry), testing.md (two), old.md (one).
    assert_eq!(first["files"], 3, "{first}");
    assert_eq!(first["added"], 3, "{first}");
    assert_eq!(first["pinned"], 0, "tied when they were added: {first}");
    let all = env.json(&["knowledge", "list", "P", "--json"]);
    let fixtures = all
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["title"] == "docs/testing.md › Fixtures")
        .unwrap();
    assert_eq!(fixtures["tag"], "human");
    assert_eq!(fixtures["sources"][0]["path"], "docs/testing.md");
    assert_eq!(fixtures["sources"][0]["lines"], serde_json::json!([5, 7]));
    assert_eq!(
        fixtures["sources"][0]["commit"],
        serde_json::json!(env.remote_branch("main").unwrap())
    );

    // Nothing changed: nothing changes.
    let again = env.json(&["knowledge", "ingest", "P", "--json"]);
    assert_eq!(
        (
            &again["added"],
            &again["updated"],
            &again["removed"],
            &again["unchanged"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(3)
        ),
        "{again}"
    );
    assert_eq!(again["stale"], serde_json::json!([]));

    // A section edited, a file deleted.
    push_docs(
        &env,
        &[
            (
                "docs/testing.md",
                Some(
                    "# Testing\n\nRun `make check`.\n\n## Fixtures\n\nFixtures moved to tests/fixtures.\n",
                ),
            ),
            ("docs/old.md", None),
        ],
    );
    let tip = env.remote_branch("main").unwrap();
    let third = env.json(&["knowledge", "ingest", "P", "--json"]);
    assert_eq!(third["updated"], 1, "{third}");
    assert_eq!(third["removed"], 1, "{third}");
    let stale: Vec<String> = third["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        stale,
        [
            format!("docs/old.md was deleted in {}", &tip[..12]),
            format!("docs/testing.md changed in {}", &tip[..12]),
        ],
        "{third}"
    );
    let listed = env.ok(&["knowledge", "list", "P", "--stale"]);
    assert!(listed.contains("Old way [stale]"), "{listed}");
    assert!(listed.contains("Where fixtures are [stale]"), "{listed}");
    let entry = env.json(&["knowledge", "search", "P", "fixtures moved", "--json"]);
    assert_eq!(
        entry[0]["entry"]["title"], "docs/testing.md › Fixtures",
        "{entry}"
    );
    assert_eq!(entry[0]["entry"]["tag"], "human");

    // A person rewrites one stale entry and checks the other against the code.
    env.ok(&[
        "knowledge",
        "edit",
        "2",
        "--body",
        "Fixtures live in tests/fixtures.",
    ]);
    env.ok(&["knowledge", "edit", "1", "--tag", "verified"]);
    let (code, _, err) = env.run(&["knowledge", "edit", "1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("say what changes"), "{err}");
    let fixed = env.json(&["knowledge", "show", "2", "--json"]);
    assert_eq!(
        (&fixed["tag"], &fixed["stale"]),
        (&serde_json::json!("human"), &serde_json::Value::Null)
    );
    let checked = env.json(&["knowledge", "show", "1", "--json"]);
    assert_eq!(
        (&checked["tag"], &checked["stale"]),
        (&serde_json::json!("verified"), &serde_json::Value::Null)
    );
    assert!(
        env.ok(&["knowledge", "list", "P", "--stale"])
            .contains("No knowledge")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_teaches_the_research_facts_and_a_merge_rechecks_what_it_changed() {
    use super::harness::{at_turn, ready, write_call};
    use codemill_testkit::{Reply, Rule};
    let notes = "Notes.\n\n## Facts\n\
                 - The guide tells people to say hello [docs/guide.md:1-3]\n\
                 - Settings live in config/app.toml [config/app.toml:1-3]\n\
                 - The guide is long [docs/guide.md:400-410]\n\
                 - Nothing cited here\n";
    let mut rules = vec![
        ready(),
        Rule::new("research", at_turn("research", 0), Reply::text(notes)),
        Rule::new(
            "implement: hello",
            at_turn("implement", 0),
            write_call("hello.txt", "hello\n"),
        ),
        Rule::new(
            "implement: guide",
            at_turn("implement", 1),
            write_call("docs/guide.md", "# Guide\n\nSay hello, then wave.\n"),
        ),
        Rule::new(
            "implement: done",
            at_turn("implement", 2),
            Reply::text("Added hello.txt and updated the guide."),
        ),
    ];
    rules.extend(engineer());
    let env = Env::new(rules, HELLO_GATE, "").await;
    push_docs(&env, &[("docs/guide.md", Some("# Guide\n\nSay hello.\n"))]);
    let ingested = env.json(&["knowledge", "ingest", "P", "--json"]);
    assert_eq!(ingested["added"], 1, "{ingested}");

    env.ok(&["run", "P-1"]);
    // Nothing is learned before a person approves.
    let before = env.json(&["knowledge", "list", "P", "--tag", "inferred", "--json"]);
    assert_eq!(before, serde_json::json!([]), "{before}");
    env.ok(&["approve", "P-1"]);
    let pushed = env.remote_branch("codemill/P-1").unwrap();

    let learned = env.json(&["knowledge", "list", "P", "--tag", "inferred", "--json"]);
    let learned = learned.as_array().unwrap();
    assert_eq!(
        learned.len(),
        1,
        "only the fact whose cited lines exist at the approved commit is kept: {learned:#?}"
    );
    let fact = &learned[0];
    assert_eq!(
        fact["title"], "The guide tells people to say hello",
        "{fact:#}"
    );
    assert_eq!(fact["author"], "agent:research P-1");
    assert_eq!(fact["sources"][0]["path"], "docs/guide.md");
    assert_eq!(fact["sources"][0]["lines"], serde_json::json!([1, 3]));
    assert_eq!(fact["sources"][0]["commit"], serde_json::json!(pushed));
    assert!(fact["sources"][0]["hash"].is_string(), "{fact:#}");
    assert!(fact["stale"].is_null());

    // The merge changed the guide: the ingested section citing it is stale now, with why;
    // the learned fact, checked at the merged content, still holds.
    env.ok(&["merge", "P-1"]);
    let all = env.json(&["knowledge", "list", "P", "--json"]);
    let section = all
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["title"] == "docs/guide.md › Guide")
        .unwrap_or_else(|| panic!("{all:#}"));
    let why = section["stale"]
        .as_str()
        .unwrap_or_else(|| panic!("{section:#}"));
    assert!(why.starts_with("docs/guide.md changed in "), "{why}");
    assert_eq!(section["tag"], "human", "a stale entry keeps its tag");
    let fact = all
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["tag"] == "inferred")
        .unwrap();
    assert!(fact["stale"].is_null(), "{fact:#}");
}
