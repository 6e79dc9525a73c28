//! The per-project pages (knowledge, assistant, learning) as a signed-in person sees them, and
//! what they answer for a project codemill does not know.

use crate::dashboard::{client, get_page, session_of};
use crate::harness::{Db, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knowledge_page_shows_provenance_filters_and_searches() {
    use codemill_store::{KnowledgeSource, KnowledgeTag, NewKnowledge};
    let server = start(Db::sqlite().await).await;
    let store = &server.db.store;
    store
        .create_ticket(&"PROJ".parse().unwrap(), "t", "", &[])
        .await
        .unwrap();
    let source = KnowledgeSource::parse("docs/testing.md:1-4").unwrap();
    let add = |title: &'static str, body: &'static str, tag| NewKnowledge {
        project: "PROJ",
        title,
        body,
        tag,
        sources: std::slice::from_ref(&source),
        author: "user:amy",
        origin: None,
    };
    let human = store
        .add_knowledge(&add(
            "Tests <script>x()</script>",
            "Run make check.",
            KnowledgeTag::Human,
        ))
        .await
        .unwrap();
    let inferred = store
        .add_knowledge(&add(
            "Billing",
            "Invoices run nightly.",
            KnowledgeTag::Inferred,
        ))
        .await
        .unwrap();
    store
        .mark_knowledge_stale(inferred.id, Some("docs/testing.md changed in abc"))
        .await
        .unwrap();
    let r = client()
        .get(format!("{}/knowledge", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/login?next=/knowledge");
    let viewer = session_of(&server, "vic", "viewer").await;
    let (status, page) = get_page(&server, &viewer, "/knowledge?project=PROJ").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("data-entry=\"{}\" data-tag=\"human\"", human.id)),
        "{page}"
    );
    assert!(page.contains("Tests &#60;script&#62;"), "{page}");
    assert!(!page.contains("<script>x()"), "{page}");
    assert!(page.contains("<code>docs/testing.md:1-4</code>"), "{page}");
    assert!(
        page.contains("Stale: docs/testing.md changed in abc"),
        "{page}"
    );
    let (_, stale) = get_page(&server, &viewer, "/knowledge?project=PROJ&stale=1").await;
    assert!(
        stale.contains("Billing") && !stale.contains("Run make check"),
        "{stale}"
    );
    let (_, tagged) = get_page(&server, &viewer, "/knowledge?project=PROJ&tag=human").await;
    assert!(
        !tagged.contains("Billing") && tagged.contains("Run make check"),
        "{tagged}"
    );
    let (_, found) = get_page(&server, &viewer, "/knowledge?project=PROJ&q=invoices").await;
    assert!(
        found.contains("Billing") && !found.contains("Run make check"),
        "{found}"
    );
    // A project codemill does not know is a 404 that names it, on every per-project page.
    for page in ["/knowledge", "/assistant", "/learn"] {
        let (status, body) = get_page(&server, &viewer, &format!("{page}?project=NOPE")).await;
        assert_eq!(status, 404, "{page}: {body}");
        assert!(
            body.starts_with("No project NOPE (projects: "),
            "{page}: {body}"
        );
    }
}
