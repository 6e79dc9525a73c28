//! Killing what an unsandboxed agent leaves behind. With `[sandbox] mode = "off"` there is no
//! pid namespace: opencode's bash tool starts every command in a new session, Codex starts its
//! helpers and commands in new sessions, and any agent can `setsid` a daemon, so killing the
//! CLI's process group misses them. Every process of such a run inherits a marker variable
//! (`CODEMILL_AGENT_RUN=<uuid>`); after the group is gone, processes whose environment holds
//! the marker are killed too. A process that clears its environment escapes this — one reason
//! the sandbox is the default. In the sandbox, killing bubblewrap ends every process inside.
//!
//! Linux only (it reads `/proc`); elsewhere nothing is found and only the group kill applies.

use std::time::Duration;

use codemill_process::Cmd;

/// The marker variable's name.
pub(crate) const RUN_MARKER_VAR: &str = "CODEMILL_AGENT_RUN";

/// Scans and kills until no marked process is left (a dying shell may still fork once).
const ROUNDS: usize = 5;

/// This run's marker; reaps on [`Reaper::reap`], or in the background if the run is dropped
/// half-way (the runner cancelled it), since dropping only kills opencode's own group.
pub(crate) struct Reaper {
    entry: Option<String>,
}

impl Reaper {
    pub(crate) fn new(marker: &str) -> Reaper {
        Reaper {
            entry: Some(format!("{RUN_MARKER_VAR}={marker}")),
        }
    }

    pub(crate) async fn reap(mut self) {
        if let Some(entry) = self.entry.take() {
            kill_marked(&entry).await;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { kill_marked(&entry).await });
        }
    }
}

/// Kills every process whose environment holds `entry` (`NAME=value`).
pub(crate) async fn kill_marked(entry: &str) {
    for _ in 0..ROUNDS {
        let wanted = entry.to_string();
        let pids = tokio::task::spawn_blocking(move || marked_pids(&wanted))
            .await
            .unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        tracing::debug!(?pids, "killing processes an agent left behind");
        // The shell's `kill` instead of a signal call: this crate has no unsafe code and no libc.
        let kill = Cmd::new("sh")
            .args(["-c", "kill -s KILL \"$@\"", "sh"])
            .args(pids.iter().map(u32::to_string));
        if let Err(e) = kill.output(Some(Duration::from_secs(5)), 4096).await {
            tracing::warn!(error = %e, "cannot kill processes an agent left behind");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pids (never our own) whose environment contains `entry`. Zombies have an empty environ and
/// are skipped; processes of other users cannot be read and are skipped too.
pub(crate) fn marked_pids(entry: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut found = Vec::new();
    for proc_entry in dir.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(environ) = std::fs::read(proc_entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == entry.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use codemill_process::Running;

    /// Starts a shell with a detached sleeper carrying a fresh marker; returns both.
    async fn detached_sleeper() -> (Running, String, String) {
        let marker = uuid::Uuid::new_v4().to_string();
        let entry = format!("{RUN_MARKER_VAR}={marker}");
        // `setsid` puts the sleeper outside the group, as opencode's bash tool and Codex do; the
        // subshell exits, so it is not even a child of the leader (whose children the kill
        // takes down too).
        let running = Cmd::new("sh")
            .args(["-c", "(setsid sleep 30 &); exec sleep 29"])
            .env(RUN_MARKER_VAR, &marker)
            .spawn()
            .unwrap();
        // Wait until `sleep` itself runs: only then has `setsid` left the group (before that the
        // forked shell, or `setsid` itself — whose command line also holds `sleep 30` — is still
        // in it, and the group kill would take it too).
        for _ in 0..250 {
            let sleeping = marked_pids(&entry).iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with("sleep\u{0}30"))
            });
            if sleeping {
                return (running, marker, entry);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the sleeper did not start");
    }

    #[tokio::test]
    async fn kills_detached_processes_by_marker() {
        let (mut running, marker, entry) = detached_sleeper().await;
        running.kill().await;
        // The group kill missed the sleeper in its own session.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(marked_pids(&entry).len(), 1);
        Reaper::new(&marker).reap().await;
        assert!(marked_pids(&entry).is_empty());
    }

    #[tokio::test]
    async fn a_dropped_run_is_reaped_in_the_background() {
        let (mut running, marker, entry) = detached_sleeper().await;
        running.kill().await;
        drop(Reaper::new(&marker));
        for _ in 0..100 {
            if marked_pids(&entry).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still running: {:?}", marked_pids(&entry));
    }
}
