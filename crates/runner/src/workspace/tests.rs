//! The workspace alone, against real git: where a job's worktree and branch go, what is kept
//! when a worktree is replaced, when a commit is made or reused, and what cleanup keeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use codemill_core::config::Retention;
use codemill_core::ids::TicketKey;
use codemill_core::pipeline::{Effect, JobEvent, JobState, Stage};
use codemill_git::{Git, Identity};

use super::{Workspace, commit_message, http_prefix, keeps_worktree};
use crate::outside::Projects;
use crate::progress::Emitter;
use crate::testing::{TestHome, created, git, job, origin, state_of};

const POLICY: &str = "[[gates]]\nname = \"unit\"\ncommand = [\"make\", \"unit\"]\n\n\
                      [[prepare]]\nname = \"fetch\"\ncommand = [\"make\", \"fetch\"]\n";

fn workspace(t: &TestHome, retention: Retention) -> Workspace {
    Workspace::new(
        t.home.clone(),
        t.store.clone(),
        Git::new(),
        Projects::new(t.config.projects.clone(), Default::default()),
        Identity {
            name: "codemill".into(),
            email: "codemill@localhost".into(),
        },
        retention,
        Default::default(),
        Emitter::default(),
    )
}

/// A home whose project's remote holds a Cargo project and, with `policy`, a policy file.
async fn home_with_remote(policy: bool) -> TestHome {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![("Cargo.toml", "[package]\n"), ("src/lib.rs", "")];
    if policy {
        files.push((".codemill/pipeline.toml", POLICY));
    }
    let repo = origin(dir.path(), &files).await;
    TestHome::inside(dir, repo.to_str().unwrap(), "").await
}

/// The state of `key`'s job once its workspace is ready as `ready` says.
fn prepared_state(key: &TicketKey, ready: JobEvent) -> JobState {
    let mut state = state_of(&[created(key)]);
    if let JobEvent::WorkspaceReady {
        worktree,
        branch,
        base_commit,
        default_branch,
    } = ready
    {
        state.worktree = Some(worktree);
        state.branch = Some(branch);
        state.base_commit = Some(base_commit);
        state.default_branch = Some(default_branch);
    }
    state.stage = Stage::Implement;
    state
}

#[tokio::test]
async fn a_new_job_gets_the_ticket_branch_at_the_remote_default_branch() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let git = ws.remote_git("SHOP").await.unwrap();
    let prepared = ws.prepare(&git, &ticket.key).await.unwrap();

    assert_eq!(prepared.worktree, t.home.worktree(&ticket.key));
    assert_eq!(prepared.clone, t.home.clone_dir("SHOP"));
    assert_eq!(prepared.branch, ticket.key.branch());
    assert_eq!(prepared.default_branch, "main");
    let remote_main = git_at(&t, "origin.git", &["rev-parse", "main"]).await;
    assert_eq!(prepared.base, remote_main);
    let head = git_at_path(&prepared.worktree, &["rev-parse", "--abbrev-ref", "HEAD"]).await;
    assert_eq!(head, ticket.key.branch());
    // codemill's run directory never reaches a commit of any worktree of the clone.
    let exclude = std::fs::read_to_string(prepared.clone.join("info/exclude")).unwrap();
    let line = format!("/{}/", codemill_core::prompts::RUN_DIR);
    assert!(exclude.lines().any(|l| l == line), "{exclude}");
    assert!(matches!(
        prepared.event(&ticket.key),
        JobEvent::WorkspaceReady { .. }
    ));
}

#[tokio::test]
async fn work_left_in_an_old_worktree_is_kept_on_the_wip_ref_before_it_is_replaced() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let git = ws.remote_git("SHOP").await.unwrap();
    let first = ws.prepare(&git, &ticket.key).await.unwrap();
    std::fs::write(first.worktree.join("left.txt"), "half done").unwrap();

    let second = ws.prepare(&git, &ticket.key).await.unwrap();
    assert_eq!(second.worktree, first.worktree);
    assert!(
        !second.worktree.join("left.txt").exists(),
        "a fresh worktree"
    );
    let wip = ticket.key.wip_ref();
    let kept = git_at_path(&second.clone, &["show", &format!("{wip}:left.txt")]).await;
    assert_eq!(kept, "half done");
}

#[tokio::test]
async fn a_commit_is_made_once_and_an_empty_change_is_refused() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let git = ws.remote_git("SHOP").await.unwrap();
    let state = prepared_state(
        &ticket.key,
        ws.prepare(&git, &ticket.key)
            .await
            .unwrap()
            .event(&ticket.key),
    );
    let id = job();

    let none = ws.commit(id, &state, &ticket, &Effect::Commit).await;
    assert_eq!(
        none,
        JobEvent::EffectFailed {
            effect: "commit".into(),
            error: "the agent made no changes to commit".into()
        }
    );

    let worktree = ws.worktree(&state).unwrap();
    std::fs::write(
        worktree.join("src/flag.rs"),
        "pub const FLAG: bool = true;\n",
    )
    .unwrap();
    let JobEvent::Committed { commit } = ws.commit(id, &state, &ticket, &Effect::Commit).await
    else {
        panic!("no commit");
    };
    // Run again (as after a crash before journalling): the commit is found, not made twice.
    let again = ws.commit(id, &state, &ticket, &Effect::Commit).await;
    assert_eq!(
        again,
        JobEvent::Committed {
            commit: commit.clone()
        }
    );
    let message = git_at_path(&worktree, &["log", "-1", "--format=%B"]).await;
    assert!(
        message.starts_with(&format!("{}: Add a flag", ticket.key)),
        "{message}"
    );
    assert!(
        message.contains(&format!("Codemill-Job: {id}")),
        "{message}"
    );
}

#[tokio::test]
async fn symlinks_leaving_the_worktree_are_refused_at_commit() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let git = ws.remote_git("SHOP").await.unwrap();
    let state = prepared_state(
        &ticket.key,
        ws.prepare(&git, &ticket.key)
            .await
            .unwrap()
            .event(&ticket.key),
    );
    let worktree = ws.worktree(&state).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", worktree.join("passwd")).unwrap();

    let JobEvent::EffectFailed { error, .. } =
        ws.commit(job(), &state, &ticket, &Effect::Commit).await
    else {
        panic!("the symlink was committed");
    };
    assert!(
        error.contains("symlinks that point outside the worktree"),
        "{error}"
    );
    assert!(error.contains("passwd -> /etc/passwd"), "{error}");
}

#[test]
fn a_feedback_commit_names_its_round() {
    let key: TicketKey = "SHOP-4".parse().unwrap();
    let mut state = state_of(&[created(&key)]);
    let ticket = codemill_store::Ticket {
        key: key.clone(),
        project: "SHOP".into(),
        title: "Add a flag".into(),
        body: String::new(),
        labels: vec![],
        status: codemill_core::pipeline::TicketStatus::InProgress,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        edited_at: None,
        external: None,
        url: None,
    };
    let id = job();
    assert_eq!(
        commit_message(id, &state, &ticket),
        format!("SHOP-4: Add a flag\n\nCodemill-Job: {id}\n")
    );
    state.stage = Stage::FeedbackCommit;
    state.feedback_round = 2;
    assert_eq!(
        commit_message(id, &state, &ticket),
        format!("SHOP-4: address pull request feedback (round 2)\n\nCodemill-Job: {id}\n")
    );
}

#[test]
fn retention_decides_which_worktrees_cleanup_keeps() {
    for (retention, stopped, kept) in [
        (Retention::Remove, false, false),
        (Retention::Remove, true, false),
        (Retention::KeepFailed, false, false),
        (Retention::KeepFailed, true, true),
        (Retention::Keep, false, true),
        (Retention::Keep, true, true),
    ] {
        assert_eq!(
            keeps_worktree(retention, stopped),
            kept,
            "{retention:?}, stopped: {stopped}"
        );
    }
}

#[tokio::test]
async fn cleanup_removes_a_shipped_worktree_and_keeps_a_failed_one_when_asked() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::KeepFailed);
    let git = ws.remote_git("SHOP").await.unwrap();
    let state = prepared_state(
        &ticket.key,
        ws.prepare(&git, &ticket.key)
            .await
            .unwrap()
            .event(&ticket.key),
    );
    let worktree = ws.worktree(&state).unwrap();

    let stopped = ws.cleanup(&state, true).await;
    assert_eq!(
        stopped,
        JobEvent::CleanedUp {
            worktree_removed: false
        }
    );
    assert!(worktree.is_dir());

    let shipped = ws.cleanup(&state, false).await;
    assert_eq!(
        shipped,
        JobEvent::CleanedUp {
            worktree_removed: true
        }
    );
    assert!(!worktree.exists());
    // Gone already: nothing to remove, nothing fails.
    assert_eq!(
        ws.cleanup(&state, false).await,
        JobEvent::CleanedUp {
            worktree_removed: false
        }
    );
}

#[tokio::test]
async fn a_stop_snapshots_work_only_when_there_is_some() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let nowhere = state_of(&[created(&ticket.key)]);
    assert_eq!(
        ws.snapshot(job(), &nowhere, &Effect::SnapshotWip)
            .await
            .unwrap(),
        JobEvent::Snapshotted {
            wip_ref: None,
            commit: None
        }
    );

    let git = ws.remote_git("SHOP").await.unwrap();
    let prepared = ws.prepare(&git, &ticket.key).await.unwrap();
    let j = job();
    ws.mark(j, &ticket.key, &prepared.base).unwrap();
    let state = prepared_state(&ticket.key, prepared.event(&ticket.key));
    std::fs::write(ws.worktree(&state).unwrap().join("wip.txt"), "x").unwrap();
    let JobEvent::Snapshotted {
        wip_ref: Some(wip_ref),
        commit: Some(_),
    } = ws.snapshot(j, &state, &Effect::SnapshotWip).await.unwrap()
    else {
        panic!("no snapshot of the work");
    };
    assert_eq!(wip_ref, ticket.key.wip_ref());
    // A worktree this worker does not know to be the job's latest is not the job's work: with
    // nothing kept in the store there is nothing to name.
    ws.forget(&ticket.key);
    assert_eq!(
        ws.snapshot(j, &state, &Effect::SnapshotWip).await.unwrap(),
        JobEvent::Snapshotted {
            wip_ref: None,
            commit: None
        }
    );
}

#[tokio::test]
async fn the_policy_is_read_at_the_base_commit_once() {
    let t = home_with_remote(true).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let git = ws.remote_git("SHOP").await.unwrap();
    let prepared = ws.prepare(&git, &ticket.key).await.unwrap();
    let steps = ws
        .prepare_steps(&prepared.clone, &prepared.base)
        .await
        .unwrap();
    assert_eq!(steps[0].name, "fetch");
    let state = prepared_state(&ticket.key, prepared.event(&ticket.key));
    // Before a workspace exists there is no policy to read.
    let early = state_of(&[created(&ticket.key)]);
    assert_eq!(ws.policy_if_prepared(&early).await.unwrap(), None);

    let specs = ws.gate_specs(&state).await.unwrap();
    assert_eq!(
        specs.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["unit"]
    );
    // The agent editing the policy in its worktree changes nothing: it is read at the base
    // commit, and cached, so even a clone gone since answers the same.
    std::fs::write(
        ws.worktree(&state).unwrap().join(".codemill/pipeline.toml"),
        "[[gates]]\nname = \"none\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    std::fs::remove_dir_all(t.home.clone_dir("SHOP")).unwrap();
    let again = ws.policy(&state).await.unwrap().unwrap();
    assert_eq!(again.gates[0].name, "unit");
}

#[tokio::test]
async fn gates_are_detected_from_the_base_commit_without_a_policy() {
    let t = home_with_remote(false).await;
    let ticket = t.ticket("Add a flag").await;
    let ws = workspace(&t, Retention::Remove);
    let git = ws.remote_git("SHOP").await.unwrap();
    let prepared = ws.prepare(&git, &ticket.key).await.unwrap();
    assert!(
        ws.prepare_steps(&prepared.clone, &prepared.base)
            .await
            .unwrap()
            .is_empty()
    );
    let state = prepared_state(&ticket.key, prepared.event(&ticket.key));
    let specs = ws.gate_specs(&state).await.unwrap();
    assert_eq!(specs[0].command[0], "cargo", "{specs:?}");
}

#[test]
fn http_prefixes_of_remotes() {
    assert_eq!(
        http_prefix("https://github.com/acme/shop.git").as_deref(),
        Some("https://github.com/")
    );
    assert_eq!(
        http_prefix("http://127.0.0.1:8080/r.git").as_deref(),
        Some("http://127.0.0.1:8080/")
    );
    assert_eq!(http_prefix("git@github.com:acme/shop.git"), None);
    assert_eq!(http_prefix("/srv/git/shop.git"), None);
    assert_eq!(
        http_prefix("https://user:pw@github.com/acme/shop.git"),
        None
    );
}

async fn git_at(t: &TestHome, name: &str, args: &[&str]) -> String {
    git(&t.dir.path().join(name), args).await
}

async fn git_at_path(dir: &std::path::Path, args: &[&str]) -> String {
    git(dir, args).await
}
