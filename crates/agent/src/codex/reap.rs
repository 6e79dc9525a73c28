//! Killing what Codex leaves behind when its process group is killed.
//!
//! Codex starts its sandbox helper (`codex-linux-sandbox`, then bubblewrap) in a NEW session,
//! and without its sandbox it starts commands in new sessions too, so the group kill misses
//! them. Normally they die with Codex, but measured on 0.169.0: a sandbox helper caught
//! mid-setup survived (stuck for minutes, parented to init), and without the sandbox a daemon
//! the agent started (`setsid ...`) outlives Codex. Every process of a run inherits a marker
//! variable (`CODEMILL_CODEX_RUN=<uuid>`); after the group kill, processes whose environment
//! holds the marker are killed too.
//!
//! Linux only (it reads `/proc`); elsewhere nothing is found and only the group kill applies.

use std::time::Duration;

use codemill_process::Cmd;

/// The marker variable's name.
pub(crate) const RUN_MARKER_VAR: &str = "CODEMILL_CODEX_RUN";

/// Scans and kills until no marked process is left (a dying shell may still fork once).
const ROUNDS: usize = 5;

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
        tracing::debug!(?pids, "killing processes Codex left behind");
        // `kill` instead of a signal call: this crate has no unsafe code and no libc.
        let kill = Cmd::new("kill")
            .arg("-KILL")
            .arg("--")
            .args(pids.iter().map(u32::to_string));
        if let Err(e) = kill.output(Some(Duration::from_secs(5)), 4096).await {
            tracing::warn!(error = %e, "cannot kill processes Codex left behind");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pids (never our own) whose environment contains `entry`. Zombies have an empty environ and
/// are skipped, as are processes of other users (unreadable).
fn marked_pids(entry: &str) -> Vec<u32> {
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

    #[tokio::test]
    async fn kills_processes_outside_the_group_by_marker() {
        let entry = format!("{RUN_MARKER_VAR}={}", uuid::Uuid::new_v4());
        let (name, value) = entry.split_once('=').unwrap();
        // `setsid` puts the sleeper in its own session, as Codex does with its sandbox helper.
        let mut running = Cmd::new("setsid")
            .args(["sleep", "30"])
            .env(name, value)
            .spawn()
            .unwrap();
        let mut found = Vec::new();
        for _ in 0..50 {
            found = marked_pids(&entry);
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!found.is_empty(), "the marked sleeper never showed");
        kill_marked(&entry).await;
        // Dying takes a moment on a loaded machine; a zombie's environment is empty.
        let mut left = marked_pids(&entry);
        for _ in 0..40 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = marked_pids(&entry);
        }
        assert!(left.is_empty(), "still running: {left:?}");
        running.kill().await;
    }
}
