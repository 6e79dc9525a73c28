//! The announcer alone: what it writes on the local tracker and forge (the store) and on a fake
//! GitHub for each status and note, and that a retry writes nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use codemill_core::config::vendors::GithubSettings;
use codemill_core::config::{ForgeSettings, TrackerSettings};
use codemill_core::findings::{Finding, Severity};
use codemill_core::ids::JobId;
use codemill_core::pipeline::{
    Effect, JobEvent, JobState, NEEDS_INPUT_LABEL, NoteKind, TicketStatus,
};
use codemill_core::triage::{Bucket, DecidedBy, Decision};
use codemill_testkit::fakes::github::{FakeGitHub, FakeGitHubOptions};
use codemill_trackers::RetryPolicy;

use super::{Announcer, note_labels, status_labels};
use crate::notes;
use crate::outside::{OutsideCache, PROGRESS_MARKER, Projects, STATUS_LABELS};
use crate::progress::Emitter;
use crate::testing::{PROJECT, TestHome, created, job, state_of};

fn local(t: &TestHome) -> Announcer {
    Announcer::new(
        t.store.clone(),
        Projects::new(t.config.projects.clone(), Default::default()),
        Emitter::default(),
    )
}

/// An announcer whose project tracks issues and opens PRs on `fake`.
fn on_github(t: &mut TestHome, fake: &FakeGitHub) -> Announcer {
    let settings = GithubSettings {
        repo: "o/r".into(),
        api_url: fake.url(),
        token_env: Some("GH_TOKEN".into()),
        app: None,
        trigger_label: "codemill".into(),
        refine_label: "codemill:refine".into(),
        trigger_assignee: None,
        bot_login: Some("codemill-bot".into()),
        draft: true,
        webhook: None,
    };
    let project = t.config.projects.get_mut(PROJECT).unwrap();
    project.tracker = TrackerSettings::Github(settings.clone());
    project.forge = ForgeSettings::Github(settings);
    let env = |name: &str| (name == "GH_TOKEN").then(|| "ghp_fake_token".to_string());
    let policy = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_wait: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
    };
    let outside = crate::outside::Outside::build(project, &env, policy).unwrap();
    Announcer::new(
        t.store.clone(),
        Projects::new(
            t.config.projects.clone(),
            OutsideCache::holding(PROJECT, outside),
        ),
        Emitter::default(),
    )
}

fn local_home() -> impl std::future::Future<Output = TestHome> {
    TestHome::new("/nowhere/shop.git", "")
}

fn finding(title: &str, line: u32) -> Finding {
    Finding {
        angles: vec!["correctness".into()],
        severity: Severity::Medium,
        file: Some("src/lib.rs".into()),
        line: Some(line),
        title: title.into(),
        detail: "details".into(),
        suggestion: None,
        confidence: 1.0,
        must_fix: false,
    }
}

fn decision(f: Finding, bucket: Bucket) -> Decision {
    Decision {
        finding: f,
        bucket,
        reason: "later".into(),
        by: DecidedBy::Agent,
    }
}

#[test]
fn the_needs_input_label_is_there_exactly_while_codemill_waits_for_answers() {
    let plain = state_of(&[created(&"P-1".parse().unwrap())]);
    for note in [
        NoteKind::Acknowledged,
        NoteKind::NeedsInput,
        NoteKind::Started,
        NoteKind::Plan,
        NoteKind::Proposal,
        NoteKind::Shipped,
        NoteKind::Stopped,
        NoteKind::Merged,
        NoteKind::Closed,
    ] {
        let (add, remove) = note_labels(note, &plain);
        let (want_add, want_remove): (&[&str], &[&str]) = match note {
            NoteKind::NeedsInput => (&[NEEDS_INPUT_LABEL], &[]),
            NoteKind::Started => (&[], &[NEEDS_INPUT_LABEL]),
            _ => (&[], &[]),
        };
        assert_eq!((add, remove), (want_add, want_remove), "{note:?}");
    }
}

#[test]
fn an_outside_ticket_carries_exactly_one_status_label() {
    assert_eq!(status_labels(TicketStatus::Todo), None);
    for status in TicketStatus::ALL {
        let Some((label, remove)) = status_labels(status) else {
            continue;
        };
        assert!(!remove.contains(&label), "{status:?}");
        assert_eq!(remove.len() + 1, STATUS_LABELS.len(), "{status:?}");
        assert!(
            STATUS_LABELS
                .iter()
                .all(|l| *l == label || remove.contains(l))
        );
    }
    assert_eq!(
        status_labels(TicketStatus::NeedsAttention).unwrap().0,
        "codemill:blocked"
    );
    assert_eq!(
        status_labels(TicketStatus::InReview).unwrap().0,
        "codemill:awaiting-review"
    );
}

#[tokio::test]
async fn a_local_ticket_gets_its_note_status_and_labels_once() {
    let t = local_home().await;
    let ticket = t.ticket("Add a flag").await;
    let announcer = local(&t);
    let id = job();
    let state = state_of(&[created(&ticket.key)]);

    for _ in 0..2 {
        let event = announcer
            .update_ticket(
                id,
                &state,
                TicketStatus::NeedsInput,
                NoteKind::NeedsInput,
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            event,
            JobEvent::TicketUpdated {
                marker: notes::marker(id, NoteKind::NeedsInput)
            }
        );
    }
    let comments = t.store.comments(&ticket.key).await.unwrap();
    assert_eq!(comments.len(), 1, "posted twice: {comments:?}");
    assert_eq!(
        comments[0].marker.as_deref(),
        Some(notes::marker(id, NoteKind::NeedsInput).as_str())
    );
    let now = t.store.ticket(&ticket.key).await.unwrap().unwrap();
    assert_eq!(now.status, TicketStatus::NeedsInput);
    assert!(now.labels.iter().any(|l| l == NEEDS_INPUT_LABEL));

    announcer
        .update_ticket(
            id,
            &state,
            TicketStatus::InProgress,
            NoteKind::Started,
            None,
        )
        .await
        .unwrap();
    let now = t.store.ticket(&ticket.key).await.unwrap().unwrap();
    assert_eq!(now.status, TicketStatus::InProgress);
    assert!(!now.labels.iter().any(|l| l == NEEDS_INPUT_LABEL));
    assert_eq!(t.store.comments(&ticket.key).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_outside_ticket_gets_one_progress_comment_and_the_status_label() {
    let fake = FakeGitHub::start(FakeGitHubOptions::default())
        .await
        .unwrap();
    let mut t = local_home().await;
    let ticket = t.ticket("Add a flag").await;
    let issue = fake.add_issue("Add a flag", "body", &["codemill"], "alice");
    assert_eq!(issue, ticket.key.number());
    let announcer = on_github(&mut t, &fake);
    let id = job();
    let state = state_of(&[created(&ticket.key)]);

    announcer
        .update_ticket(
            id,
            &state,
            TicketStatus::InProgress,
            NoteKind::Started,
            None,
        )
        .await
        .unwrap();
    assert!(fake.labels(issue).iter().any(|l| l == "codemill:running"));

    announcer
        .update_ticket(
            id,
            &state,
            TicketStatus::AwaitingApproval,
            NoteKind::Proposal,
            None,
        )
        .await
        .unwrap();
    let labels = fake.labels(issue);
    assert!(
        labels.iter().any(|l| l == "codemill:awaiting-review"),
        "{labels:?}"
    );
    assert!(
        !labels.iter().any(|l| l == "codemill:running"),
        "{labels:?}"
    );
    // One progress comment, edited in place; the local record has both notes.
    let comments = fake.comments(issue);
    let progress: Vec<_> = comments
        .iter()
        .filter(|c| c["body"].as_str().unwrap_or("").contains(PROGRESS_MARKER))
        .collect();
    assert_eq!(progress.len(), 1, "{comments:?}");
    assert_eq!(t.store.comments(&ticket.key).await.unwrap().len(), 2);
    let local = t.store.ticket(&ticket.key).await.unwrap().unwrap();
    assert_eq!(local.status, TicketStatus::AwaitingApproval);
}

/// A state awaiting approval of `commit`, with a proposal, ready to ship.
fn approved(key: &codemill_core::ids::TicketKey) -> JobState {
    let mut events = codemill_testkit::journal::to_approval(key);
    events.push(JobEvent::Approved {
        commit: "c1".into(),
        by: "alice".into(),
    });
    state_of(&events)
}

#[tokio::test]
async fn a_pr_is_recorded_once_per_branch() {
    let t = local_home().await;
    let ticket = t.ticket("Add a flag").await;
    let announcer = local(&t);
    let state = approved(&ticket.key);

    let first = announcer.record_pr(&state, &ticket, "c1").await.unwrap();
    let again = announcer.record_pr(&state, &ticket, "c1").await.unwrap();
    assert_eq!(first, again);
    let JobEvent::PrRecorded { pr, number, url } = first else {
        panic!("{first:?}");
    };
    assert_eq!(
        (number, url),
        (None, None),
        "a local project has no outside PR"
    );
    let prs = t.store.prs().await.unwrap();
    assert_eq!(prs.len(), 1);
    assert_eq!(prs[0].id, pr);
    assert_eq!(prs[0].branch, ticket.key.branch());
    assert_eq!(prs[0].title, format!("{}: the change", ticket.key));
    assert!(
        prs[0].body.contains(&format!("Ticket: {}", ticket.key)),
        "{}",
        prs[0].body
    );
}

#[tokio::test]
async fn an_outside_pr_is_opened_as_a_draft_once_and_recorded_locally() {
    let fake = FakeGitHub::start(FakeGitHubOptions::default())
        .await
        .unwrap();
    let mut t = local_home().await;
    let ticket = t.ticket("Add a flag").await;
    let announcer = on_github(&mut t, &fake);
    let state = approved(&ticket.key);

    let first = announcer.record_pr(&state, &ticket, "c1").await.unwrap();
    let again = announcer.record_pr(&state, &ticket, "c1").await.unwrap();
    assert_eq!(first, again);
    let JobEvent::PrRecorded {
        number: Some(number),
        url: Some(_),
        ..
    } = first
    else {
        panic!("no outside PR: {first:?}");
    };
    assert_eq!(fake.prs().len(), 1);
    let pr = fake.pr_by_head(&ticket.key.branch()).unwrap();
    assert_eq!(pr["number"].as_u64(), Some(number));
    assert_eq!(pr["draft"].as_bool(), Some(true));
    assert_eq!(t.store.prs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn each_backlog_finding_becomes_one_linked_ticket() {
    let t = local_home().await;
    let ticket = t.ticket("Add a flag").await;
    let announcer = local(&t);
    let mut state = approved(&ticket.key);
    state.triage.push((
        0,
        vec![
            decision(finding("Slow loop", 3), Bucket::Backlog),
            decision(finding("Missing docs", 9), Bucket::Backlog),
            decision(finding("Off by one", 12), Bucket::FixNow),
        ],
    ));
    let id = JobId::new();

    let first = announcer.create_backlog(id, &state, &ticket).await.unwrap();
    let again = announcer.create_backlog(id, &state, &ticket).await.unwrap();
    assert_eq!(first, again, "created twice");
    let JobEvent::BacklogCreated { tickets } = first else {
        panic!("{first:?}");
    };
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let all = t.store.tickets(Some(PROJECT)).await.unwrap();
    assert_eq!(all.len(), 3);
    let slow = all
        .iter()
        .find(|x| x.title.starts_with("Slow loop"))
        .unwrap();
    assert_eq!(slow.title, "Slow loop (src/lib.rs:3)");
    assert!(
        slow.body.contains("Triage: backlog — later"),
        "{}",
        slow.body
    );
    assert!(slow.labels.iter().any(|l| l == "codemill:backlog"));
}

#[tokio::test]
async fn feedback_replies_go_to_each_thread_and_once_to_the_conversation() {
    use codemill_core::pipeline::{Feedback, FeedbackKind};
    let fake = FakeGitHub::start(FakeGitHubOptions::default())
        .await
        .unwrap();
    let mut t = local_home().await;
    let ticket = t.ticket("Add a flag").await;
    let announcer = on_github(&mut t, &fake);
    let JobEvent::PrRecorded { number, .. } = announcer
        .record_pr(&approved(&ticket.key), &ticket, "c1")
        .await
        .unwrap()
    else {
        panic!("no PR");
    };
    let number = number.unwrap();
    let comment = fake.add_review_comment(number, "bob", "rename this", "src/lib.rs", 3);
    let mut state = approved(&ticket.key);
    state.pr_number = Some(number);
    let item = |id: &str, kind, reply_to: Option<String>| Feedback {
        id: id.into(),
        kind,
        author: "bob".into(),
        body: "please".into(),
        path: None,
        line: None,
        reply_to,
    };
    state.feedback = vec![
        item(
            "review-comment:1",
            FeedbackKind::ReviewComment,
            Some(comment.to_string()),
        ),
        item("comment:2", FeedbackKind::Comment, None),
        item("comment:3", FeedbackKind::Comment, None),
    ];
    let id = job();
    let effect = Effect::ReplyFeedback { round: 1 };
    for _ in 0..2 {
        let event = announcer
            .reply_feedback(id, &state, Some("renamed it"), &effect, 1)
            .await
            .unwrap();
        assert_eq!(event, JobEvent::FeedbackReplied { round: 1 });
    }
    assert_eq!(fake.review_comment_replies(number).len(), 1);
    let conversation: Vec<_> = fake
        .comments(number)
        .into_iter()
        .filter(|c| c["body"].as_str().unwrap_or("").contains("renamed it"))
        .collect();
    assert_eq!(conversation.len(), 1, "{conversation:?}");

    // A local project has no forge to answer on: nothing is written, the round goes on.
    let plain = local(&local_home().await);
    assert_eq!(
        plain
            .reply_feedback(id, &state, None, &effect, 1)
            .await
            .unwrap(),
        JobEvent::FeedbackReplied { round: 1 }
    );
}
