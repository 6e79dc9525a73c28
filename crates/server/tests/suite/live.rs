//! The dashboard's live streams over HTTP: a job page's stream sends the agent activity as it is
//! stored (escaped, resumed after `Last-Event-ID` without repeats) and says when the job moved;
//! the board's stream sends the re-rendered columns; neither answers without a session.

use std::time::Duration;

use codemill_core::agent::AgentEvent;
use codemill_core::ids::JobId;
use codemill_store::ActivityStep;
use futures_util::StreamExt;

use crate::dashboard::{client, get_page, session_of};
use crate::harness::{Db, start};

/// One server-sent event: its name, id and data.
#[derive(Debug)]
struct Sse {
    event: String,
    id: String,
    data: String,
}

/// Reads one event stream.
struct Stream {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buf: String,
}

impl Stream {
    async fn open(base: &str, cookie: &str, url: &str, last_id: Option<&str>) -> Stream {
        let mut req = client()
            .get(format!("{base}{url}"))
            .header("cookie", cookie)
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Stream {
            body: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event that is not a keep-alive comment, within 10 s.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut sse = Sse {
                        event: String::new(),
                        id: String::new(),
                        data: String::new(),
                    };
                    let mut lines = Vec::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event: ") {
                            sse.event = v.to_string();
                        } else if let Some(v) = line.strip_prefix("id: ") {
                            sse.id = v.to_string();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            lines.push(v.to_string());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            lines.push(v.to_string());
                        }
                    }
                    sse.data = lines.join("\n");
                    if !sse.event.is_empty() {
                        return sse;
                    }
                }
                let chunk = self.body.next().await.expect("the stream ended").unwrap();
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event within 10 s")
    }
}

/// The live stream's URL as the page gives it (`sse-connect`, attribute-escaped).
fn stream_url(html: &str) -> String {
    let marker = "sse-connect=\"";
    let at = html.find(marker).expect("a live stream on the page") + marker.len();
    html[at..at + html[at..].find('"').unwrap()]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pages_and_the_board_update_live() {
    let server = start(Db::sqlite().await).await;
    let store = &server.db.store;
    let ticket = store
        .create_ticket(&"PROJ".parse().unwrap(), "Add a flag", "", &[])
        .await
        .unwrap();
    let events = codemill_testkit::journal::to_approval(&ticket.key);
    let job = JobId::new();
    store
        .create_job(job, &ticket.key, &events[0])
        .await
        .unwrap();
    let viewer = session_of(&server, "vic", "viewer").await;

    // No session, no stream.
    let r = client()
        .get(format!("{}/tickets/PROJ-1/events", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{}/board/events", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (status, page) = get_page(&server, &viewer, "/tickets/PROJ-1").await;
    assert_eq!(status, 200);
    let url = stream_url(&page);
    assert!(url.contains(&format!("job={job}")), "{url}");
    let mut live = Stream::open(&server.base, &viewer, &url, None).await;
    let (_, board) = get_page(&server, &viewer, "/").await;
    let mut board_live = Stream::open(&server.base, &viewer, &stream_url(&board), None).await;

    // The agent works: its activity reaches the page, escaped.
    let step = ActivityStep {
        job,
        stage: "implement",
        round: 0,
        angle: None,
    };
    let call = |n: u32, summary: &str| AgentEvent::ToolCall {
        id: format!("t{n}"),
        name: "run_command".into(),
        summary: summary.into(),
    };
    store
        .record_activity(
            &step,
            &[(chrono::Utc::now(), call(1, "<img src=x onerror=alert(1)>"))],
        )
        .await
        .unwrap();
    let got = live.next().await;
    assert_eq!(got.event, "activity");
    assert!(got.data.contains("run_command: &#60;img"), "{}", got.data);
    assert!(!got.data.contains("<img"), "{}", got.data);

    // A reconnect after that event gets only what came after it.
    drop(live);
    store
        .record_activity(&step, &[(chrono::Utc::now(), call(2, "cargo test"))])
        .await
        .unwrap();
    let mut live = Stream::open(&server.base, &viewer, &url, Some(&got.id)).await;
    let next = live.next().await;
    assert_eq!(next.event, "activity");
    assert!(next.data.contains("cargo test"), "{}", next.data);
    assert!(!next.data.contains("img"), "repeated: {}", next.data);

    // The job moves: the page hears it, and the board gets its new columns.
    for (i, e) in events.iter().enumerate().skip(1) {
        store.append(job, i as i64, e).await.unwrap();
    }
    let moved = live.next().await;
    assert_eq!(moved.event, "changed");
    // The appends may reach the board in more than one look: it settles on the last state.
    let in_awaiting = |html: &str| {
        html.split("data-column=")
            .find(|c| c.starts_with("\"awaiting_approval\""))
            .is_some_and(|c| c.contains("data-ticket=\"PROJ-1\""))
    };
    let mut seen = Vec::new();
    loop {
        let columns = board_live.next().await;
        assert_eq!(columns.event, "board");
        if in_awaiting(&columns.data) {
            break;
        }
        seen.push(columns.data);
        assert!(
            seen.len() < 10,
            "the board never showed PROJ-1 awaiting approval: {seen:?}"
        );
    }
    let (_, page) = get_page(&server, &viewer, "/tickets/PROJ-1").await;
    assert!(page.contains("data-status=\"awaiting_approval\""));
    assert!(
        page.contains("cargo test"),
        "the page shows the activity so far"
    );
}

/// The board's columns are rendered once per move and shared by this node's viewers: every
/// viewer still gets the columns of the move it heard of (never an older render) and of its
/// own project filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_viewers_share_each_render_and_each_sees_its_own_filter() {
    let server = start(Db::sqlite().await).await;
    let store = &server.db.store;
    let mut keys = Vec::new();
    for project in ["PROJ", "OTHER"] {
        let t = store
            .create_ticket(&project.parse().unwrap(), "A ticket", "", &[])
            .await
            .unwrap();
        keys.push(t.key);
    }
    let viewer = session_of(&server, "vic", "viewer").await;
    let (_, board) = get_page(&server, &viewer, "/").await;
    let (_, other) = get_page(&server, &viewer, "/?project=OTHER").await;
    let other_url = stream_url(&other);
    assert!(other_url.contains("project=OTHER"), "{other_url}");
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(Stream::open(&server.base, &viewer, &stream_url(&board), None).await);
    }
    let mut filtered = Stream::open(&server.base, &viewer, &other_url, None).await;
    let card = |html: &str, key: &str| html.contains(&format!("data-ticket=\"{key}\""));

    // Each move reaches every viewer with the columns as of that move.
    for (moved, key) in keys.iter().enumerate() {
        let key = key.to_string();
        let events = codemill_testkit::journal::to_approval(&keys[moved]);
        store
            .create_job(JobId::new(), &keys[moved], &events[0])
            .await
            .unwrap();
        let mut seen = Vec::new();
        for live in &mut all {
            let got = live.next().await;
            assert_eq!(got.event, "board");
            assert!(card(&got.data, &key), "{key} missing: {}", got.data);
            seen.push(got.data);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "one render for all");
        // The filtered viewer hears every move, and never sees another project's card.
        let got = filtered.next().await;
        assert!(
            !card(&got.data, "PROJ-1"),
            "another project's card: {}",
            got.data
        );
        assert_eq!(card(&got.data, "OTHER-1"), key == "OTHER-1", "{}", got.data);
    }
}
