//! The engine's decisions: which part carries out each effect, what is journalled around an
//! effect that succeeds or fails, and that a lost lease stops the loop before any write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use codemill_core::ids::JobId;
use codemill_core::pipeline::{
    AgentStage, Effect, JobEvent, JobState, NoteKind, Stage, TicketStatus,
};
use codemill_store::{JournalEntry, Lease, Ticket};

use super::{Runner, RunnerOptions};
use crate::control::{self, JobOptions};
use crate::error::RunError;
use crate::jobs::replay;
use crate::testing::{TestHome, git, origin};

fn runner(t: &TestHome) -> Runner {
    Runner::new(
        t.home.clone(),
        t.config.clone(),
        t.store.clone(),
        RunnerOptions::default(),
    )
}

/// A queued job of `ticket` whose journal continues with `events` after `Created`, claimed.
async fn claimed(t: &TestHome, ticket: &Ticket, events: &[JobEvent]) -> (JobId, Lease) {
    let (job, _) = control::enqueue(&t.store, &ticket.key, JobOptions::local(3))
        .await
        .unwrap();
    for (i, event) in events.iter().enumerate() {
        t.store.append(job, i as i64 + 1, event).await.unwrap();
    }
    let lease = t
        .store
        .claim_job(job, "test", Duration::from_secs(60), Utc::now())
        .await
        .unwrap()
        .unwrap();
    (job, lease)
}

/// A lease for a job the store has not queued: enough for effects that write nothing under it.
fn unleased(job: JobId) -> Lease {
    Lease {
        job,
        ticket: "SHOP-1".parse().unwrap(),
        project: "SHOP".into(),
        owner: "test".into(),
        token: 1,
        attempt: 1,
        max_attempts: 3,
        until: Utc::now(),
        ttl: Duration::from_secs(60),
    }
}

/// The events after `Created` of a job that waits for approval of commit `c1`.
fn to_approval(ticket: &Ticket) -> Vec<JobEvent> {
    codemill_testkit::journal::to_approval(&ticket.key)[1..].to_vec()
}

/// Each effect's name with the event that ended it, from `from` on.
fn effects(journal: &[JournalEntry], from: usize) -> Vec<(String, JobEvent)> {
    let mut out = Vec::new();
    let events: Vec<&JobEvent> = journal[from..].iter().map(|e| &e.event).collect();
    for pair in events.windows(2) {
        if let JobEvent::EffectStarted { effect } = pair[0] {
            out.push((effect.clone(), pair[1].clone()));
        }
    }
    out
}

#[tokio::test]
async fn each_effect_is_journalled_between_its_start_and_its_result() {
    let t = TestHome::new("/nowhere/shop.git", "").await;
    let ticket = t.ticket("Add a flag").await;
    let mut events = to_approval(&ticket);
    events.push(JobEvent::Rejected {
        reason: "not now".into(),
        by: "alice".into(),
    });
    let (job, lease) = claimed(&t, &ticket, &events).await;

    let state = runner(&t).drive(job, &ticket, &lease).await.unwrap();
    assert_eq!(state.stage, Stage::Rejected);
    let journal = t.store.journal(job).await.unwrap();
    assert_eq!(
        replay(job, &journal).unwrap(),
        state,
        "memory and journal agree"
    );
    // The worktree of the journal is gone: nothing to snapshot, nothing to remove.
    let ran = effects(&journal, events.len() + 1);
    let names: Vec<&str> = ran.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["snapshot_wip", "update_ticket:stopped", "cleanup"],
        "{ran:?}"
    );
    assert_eq!(
        ran[0].1,
        JobEvent::Snapshotted {
            wip_ref: None,
            commit: None
        }
    );
    assert!(matches!(ran[1].1, JobEvent::TicketUpdated { .. }));
    assert_eq!(
        ran[2].1,
        JobEvent::CleanedUp {
            worktree_removed: false
        }
    );
    let now = t.store.ticket(&ticket.key).await.unwrap().unwrap();
    assert_eq!(now.status, TicketStatus::Rejected);
}

#[tokio::test]
async fn a_failed_effect_is_journalled_and_the_job_stops_for_attention() {
    let dir = tempfile::tempdir().unwrap();
    let repo = origin(dir.path(), &[("README.md", "shop\n")]).await;
    let t = TestHome::inside(dir, repo.to_str().unwrap(), "").await;
    let ticket = t.ticket("Add a flag").await;
    let mut events = to_approval(&ticket);
    events.push(JobEvent::Approved {
        commit: "c1".into(),
        by: "alice".into(),
    });
    let (job, lease) = claimed(&t, &ticket, &events).await;

    // The clone was never made and `c1` is no commit: the push cannot succeed.
    let state = runner(&t).drive(job, &ticket, &lease).await.unwrap();
    assert_eq!(state.stage, Stage::NeedsAttention);
    let journal = t.store.journal(job).await.unwrap();
    let ran = effects(&journal, events.len() + 1);
    let push = ran.iter().find(|(n, _)| n == "push").expect("no push");
    let JobEvent::EffectFailed { effect, error } = &push.1 else {
        panic!("the push did not fail: {push:?}");
    };
    assert_eq!(effect, "push");
    assert!(
        state
            .reason
            .as_deref()
            .unwrap_or("")
            .contains(error.as_str())
    );
    // Nothing after the failure ships: no PR is recorded, the ticket needs attention.
    assert!(!ran.iter().any(|(n, _)| n == "record_pr"), "{ran:?}");
    assert!(t.store.prs().await.unwrap().is_empty());
    let now = t.store.ticket(&ticket.key).await.unwrap().unwrap();
    assert_eq!(now.status, TicketStatus::NeedsAttention);
}

#[tokio::test]
async fn a_lost_lease_stops_the_loop_before_any_write() {
    let t = TestHome::new("/nowhere/shop.git", "").await;
    let ticket = t.ticket("Add a flag").await;
    let mut events = to_approval(&ticket);
    events.push(JobEvent::Rejected {
        reason: "not now".into(),
        by: "alice".into(),
    });
    let (job, lease) = claimed(&t, &ticket, &events).await;
    let before = t.store.journal(job).await.unwrap().len();
    assert!(
        t.store
            .expire_lease(job, lease.token, Utc::now())
            .await
            .unwrap()
    );

    let err = runner(&t).drive(job, &ticket, &lease).await.unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Store(codemill_store::StoreError::Fenced { .. })
        ),
        "{err}"
    );
    assert_eq!(t.store.journal(job).await.unwrap().len(), before);
    assert!(t.store.comments(&ticket.key).await.unwrap().is_empty());
}

/// A job's state that has a worktree path which does not exist.
fn without_worktree(ticket: &Ticket) -> JobState {
    let mut events = codemill_testkit::journal::to_approval(&ticket.key);
    events.truncate(8);
    let state = crate::testing::state_of(&events);
    assert_eq!(state.worktree.as_deref(), Some("/w"));
    state
}

#[tokio::test]
async fn each_effect_goes_to_the_part_that_owns_it() {
    let t = TestHome::new("/nowhere/shop.git", "").await;
    let ticket = t.ticket("Add a flag").await;
    let runner = runner(&t);
    let job = JobId::new();
    let state = without_worktree(&ticket);
    let run = |effect: Effect| {
        let (runner, state, ticket) = (&runner, &state, &ticket);
        async move {
            runner
                .execute(job, state, &[], ticket, &effect, &unleased(job))
                .await
                .unwrap()
        }
    };
    let failed = |effect: &str, error: &str| JobEvent::EffectFailed {
        effect: effect.into(),
        error: error.into(),
    };

    // A step that works in the worktree rebuilds it when this worker's is missing: from the
    // project's remote (unreachable here), so the attempt is retried, not the job stopped.
    for effect in [
        Effect::RunGates { round: 0 },
        Effect::Commit,
        Effect::PlanReview { round: 0 },
    ] {
        let err = runner
            .execute(job, &state, &[], &ticket, &effect, &unleased(job))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RunError::Outside { message, .. } if message.contains("rebuilding the worktree of SHOP-1")),
            "{effect:?}: {err}"
        );
    }
    // The proposal needs the commit: none yet; then one this clone lacks and the remote
    // (unreachable) cannot provide.
    assert_eq!(
        run(Effect::Propose).await,
        failed("propose", "the job has no commit to propose")
    );
    let mut committed = state.clone();
    committed.commit = Some("c1".into());
    let JobEvent::EffectFailed { effect, error } = runner
        .execute(
            job,
            &committed,
            &[],
            &ticket,
            &Effect::Propose,
            &unleased(job),
        )
        .await
        .unwrap()
    else {
        panic!("proposed a commit nobody has");
    };
    assert_eq!(effect, "propose");
    assert!(error.contains("/nowhere/shop.git"), "{error}");
    let mut early = state.clone();
    early.base_commit = None;
    assert_eq!(
        runner
            .execute(
                job,
                &early,
                &[],
                &ticket,
                &Effect::SnapshotWip,
                &unleased(job)
            )
            .await
            .unwrap(),
        JobEvent::Snapshotted {
            wip_ref: None,
            commit: None
        }
    );
    assert_eq!(
        run(Effect::Cleanup { stopped: true }).await,
        JobEvent::CleanedUp {
            worktree_removed: false
        }
    );
    // The first model call (readiness) checks the repository's policy on the remote first:
    // unreachable here, so no agent runs.
    let agent = Effect::RunAgent {
        stage: AgentStage::Readiness,
        round: 0,
        resume: None,
        angle: None,
    };
    let JobEvent::EffectFailed { effect, error } = run(agent.clone()).await else {
        panic!("an agent ran without its policy checked");
    };
    assert_eq!(effect, "agent:readiness:0");
    assert!(error.contains("/nowhere/shop.git"), "{error}");
    // With a reachable remote, the agent pool runs it: the demo provider needs the demo
    // model, which this process does not serve.
    let dir = tempfile::tempdir().unwrap();
    let repo = origin(dir.path(), &[("README.md", "shop\n")]).await;
    let reachable = TestHome::inside(dir, repo.to_str().unwrap(), "").await;
    let ticket2 = reachable.ticket("Add a flag").await;
    let fresh = crate::testing::state_of(&[crate::testing::created(&ticket2.key)]);
    let JobEvent::EffectFailed { effect, error } = super::tests::runner(&reachable)
        .execute(job, &fresh, &[], &ticket2, &agent, &unleased(job))
        .await
        .unwrap()
    else {
        panic!("an agent ran");
    };
    assert_eq!(effect, "agent:readiness:0");
    assert!(error.contains("demo model"), "{error}");
    // The announcer.
    assert!(matches!(
        run(Effect::UpdateTicket {
            status: TicketStatus::InProgress,
            note: NoteKind::Started
        })
        .await,
        JobEvent::TicketUpdated { .. }
    ));
    assert_eq!(t.store.comments(&ticket.key).await.unwrap().len(), 1);
    assert_eq!(
        run(Effect::CreateBacklogTickets).await,
        JobEvent::BacklogCreated { tickets: vec![] }
    );
    assert_eq!(
        run(Effect::ReplyFeedback { round: 1 }).await,
        JobEvent::FeedbackReplied { round: 1 }
    );
    assert!(matches!(
        run(Effect::RecordPr {
            commit: "c1".into()
        })
        .await,
        JobEvent::PrRecorded { number: None, .. }
    ));
    assert_eq!(t.store.prs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_plan_note_shows_the_plan_the_agent_wrote() {
    let t = TestHome::new("/nowhere/shop.git", "").await;
    let ticket = t.ticket("Add a flag").await;
    let runner = runner(&t);
    let (job, lease) = claimed(&t, &ticket, &[]).await;
    let mut state = without_worktree(&ticket);
    state.plan_artifact = Some("plan.md".into());
    t.store
        .put_artifact(
            &lease,
            "plan.md",
            b"1. add the flag\n2. test it\n",
            None,
            Utc::now(),
        )
        .await
        .unwrap();

    let effect = Effect::UpdateTicket {
        status: TicketStatus::InProgress,
        note: NoteKind::Plan,
    };
    runner
        .execute(job, &state, &[], &ticket, &effect, &unleased(job))
        .await
        .unwrap();
    let comments = t.store.comments(&ticket.key).await.unwrap();
    assert!(
        comments[0].body.contains("1. add the flag"),
        "{}",
        comments[0].body
    );
}

#[tokio::test]
async fn a_push_goes_to_the_remote_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = origin(dir.path(), &[("README.md", "shop\n")]).await;
    let t = TestHome::inside(dir, repo.to_str().unwrap(), "").await;
    let ticket = t.ticket("Add a flag").await;
    let runner = runner(&t);
    let job = JobId::new();
    let JobEvent::WorkspaceReady {
        worktree,
        branch,
        base_commit,
        default_branch,
    } = runner
        .execute(
            job,
            &crate::testing::state_of(&[crate::testing::created(&ticket.key)]),
            &[],
            &ticket,
            &Effect::PrepareWorkspace,
            &unleased(job),
        )
        .await
        .unwrap()
    else {
        panic!("no workspace");
    };
    assert_eq!(branch, ticket.key.branch());
    assert_eq!(default_branch, "main");
    assert_eq!(
        worktree, "worktrees/SHOP/SHOP-1",
        "no worker's absolute path is journalled"
    );
    let worktree = t.home.worktree(&ticket.key);
    std::fs::write(worktree.join("flag.txt"), "on\n").unwrap();
    git(&worktree, &["add", "-A"]).await;
    git(&worktree, &["commit", "-q", "-m", "flag"]).await;
    let commit = git(&worktree, &["rev-parse", "HEAD"]).await;
    assert_ne!(commit, base_commit);

    let mut state = without_worktree(&ticket);
    state.worktree = Some(worktree.display().to_string());
    let effect = Effect::Push {
        commit: commit.clone(),
    };
    for _ in 0..2 {
        let pushed = runner
            .execute(job, &state, &[], &ticket, &effect, &unleased(job))
            .await
            .unwrap();
        assert_eq!(
            pushed,
            JobEvent::Pushed {
                commit: commit.clone(),
                branch: ticket.key.branch()
            }
        );
    }
    let remote = git(&repo, &["rev-parse", &ticket.key.branch()]).await;
    assert_eq!(remote, commit);
}
