//! What the runner's unit tests share: a temporary home with a SQLite store and a config, a
//! bare "remote" repository made with real git, tickets, and job states built from journals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use codemill_core::config::Config;
use codemill_core::ids::{JobId, ProjectName, TicketKey};
use codemill_core::pipeline::{JobEvent, JobState};
use codemill_store::{Store, Ticket};

use crate::home::Home;

/// The project every test home registers.
pub(crate) const PROJECT: &str = "SHOP";

/// Run git in `dir` without hooks or signing, failing the test when it fails; its stdout.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> String {
    let out = codemill_process::Cmd::new("git")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .cwd(dir)
        .output(None, 1 << 20)
        .await
        .unwrap();
    assert!(out.success(), "git {args:?}: {}", out.combined());
    out.stdout.trim().to_string()
}

/// A bare repository at `<dir>/origin.git` whose `main` holds `files`; returns its path.
pub(crate) async fn origin(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let work = dir.join("seed");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]).await;
    for (name, text) in files {
        let path = work.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&work, &["add", "-A"]).await;
    git(&work, &["commit", "-q", "-m", "seed"]).await;
    let bare = dir.join("origin.git");
    git(
        dir,
        &["clone", "-q", "--bare", "seed", bare.to_str().unwrap()],
    )
    .await;
    bare
}

/// A temporary codemill home: its store, its config (sandbox off, project `SHOP` at `repo`,
/// plus `extra` TOML) and the directory that holds it all.
pub(crate) struct TestHome {
    pub dir: tempfile::TempDir,
    pub home: Home,
    pub config: Config,
    pub store: Store,
}

impl TestHome {
    pub(crate) async fn new(repo: &str, extra: &str) -> TestHome {
        let dir = tempfile::tempdir().unwrap();
        TestHome::inside(dir, repo, extra).await
    }

    /// A home in `dir`, whose repository is already there.
    pub(crate) async fn inside(dir: tempfile::TempDir, repo: &str, extra: &str) -> TestHome {
        let home = Home::new(dir.path().join("home"));
        home.init().unwrap();
        let text = format!(
            "[sandbox]\nmode = \"off\"\n{extra}\n[projects.{PROJECT}]\nrepo = \"{repo}\"\n"
        );
        let config = Config::parse(&text, home.config_file()).unwrap();
        let store = Store::open(&home.database()).await.unwrap();
        TestHome {
            dir,
            home,
            config,
            store,
        }
    }

    /// A new local ticket of the project.
    pub(crate) async fn ticket(&self, title: &str) -> Ticket {
        let project: ProjectName = PROJECT.parse().unwrap();
        self.store
            .create_ticket(&project, title, "the body", &[])
            .await
            .unwrap()
    }
}

/// The `Created` event of a local job of `key`.
pub(crate) fn created(key: &TicketKey) -> JobEvent {
    JobEvent::Created {
        ticket: key.clone(),
        project: key.project().parse().unwrap(),
        max_rounds: 3,
        acknowledge: false,
        follow_pr: false,
        subtask: None,
        refine: None,
    }
}

/// The state a journal of `events` folds into.
pub(crate) fn state_of(events: &[JobEvent]) -> JobState {
    JobState::replay(events.iter()).unwrap()
}

/// A fresh job id (tests that need one without a stored job).
pub(crate) fn job() -> JobId {
    JobId::new()
}
