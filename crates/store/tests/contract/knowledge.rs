//! Project knowledge: entries keep their provenance, are found by full-text search within their
//! project (best match first, query syntax inert), can be marked stale and removed.

use codemill_store::{KnowledgeSource, KnowledgeTag, NewKnowledge};

use crate::harness::Db;

pub async fn knowledge_keeps_provenance_and_is_searchable(db: Db) {
    let s = &db.store;
    let source = KnowledgeSource::parse("docs/testing.md:3-9").unwrap();
    let entry = |title: &'static str, body: &'static str| NewKnowledge {
        project: "WEB",
        title,
        body,
        tag: KnowledgeTag::Human,
        sources: std::slice::from_ref(&source),
        author: "user:amy",
        origin: None,
    };
    let tests = s
        .add_knowledge(&entry(
            "Running the tests",
            "Run `make check` before pushing; it starts PostgreSQL and runs the whole suite.",
        ))
        .await
        .unwrap();
    assert_eq!(tests.tag, KnowledgeTag::Human);
    assert_eq!(tests.sources, vec![source.clone()]);
    assert_eq!(tests.author, "user:amy");
    assert_eq!(tests.stale, None);
    let billing = s
        .add_knowledge(&NewKnowledge {
            tag: KnowledgeTag::Inferred,
            author: "agent:research WEB-7",
            ..entry(
                "Billing lives in the invoices service",
                "Invoices are computed nightly by the invoices service; prices come from plans.",
            )
        })
        .await
        .unwrap();
    s.add_knowledge(&NewKnowledge {
        project: "OPS",
        ..entry("Running the tests elsewhere", "Tests of another project.")
    })
    .await
    .unwrap();

    let hits = s
        .search_knowledge("WEB", "how do I run the tests?", 5)
        .await
        .unwrap();
    assert_eq!(hits.first().map(|h| h.entry.id), Some(tests.id), "{hits:?}");
    assert!(hits.iter().all(|h| h.entry.project == "WEB"));
    assert!(
        hits[0].excerpt.contains("make check"),
        "{}",
        hits[0].excerpt
    );
    let hits = s
        .search_knowledge("WEB", "invoices billing", 5)
        .await
        .unwrap();
    assert_eq!(hits.first().map(|h| h.entry.id), Some(billing.id));
    assert_eq!(hits[0].entry.tag, KnowledgeTag::Inferred);
    // A path in a title splits into its words on both backends (ingested titles start with
    // the file's path).
    let guide = s
        .add_knowledge(&NewKnowledge {
            project: "DOCS",
            ..entry(
                "docs/adr/0005-rest-instead-of-graphql.md › Decision",
                "We keep the API plain.",
            )
        })
        .await
        .unwrap();
    let hits = s.search_knowledge("DOCS", "graphql", 5).await.unwrap();
    assert_eq!(hits.first().map(|h| h.entry.id), Some(guide.id), "{hits:?}");
    // Query syntax is words like any other; nothing matches nothing.
    assert!(
        s.search_knowledge("WEB", "\"NEAR(*\" OR -", 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.search_knowledge("WEB", "kubernetes", 5)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        s.mark_knowledge_stale(tests.id, Some("docs/testing.md changed in abc123"))
            .await
            .unwrap()
    );
    let stale = s.knowledge(tests.id).await.unwrap().unwrap();
    assert_eq!(
        stale.stale.as_deref(),
        Some("docs/testing.md changed in abc123")
    );
    assert_eq!(s.knowledge_of("WEB").await.unwrap().len(), 2);
    assert!(s.remove_knowledge(billing.id).await.unwrap());
    assert!(!s.remove_knowledge(billing.id).await.unwrap());
    assert!(
        s.search_knowledge("WEB", "invoices", 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.knowledge_of("WEB").await.unwrap().len(), 1);
}
