//! The one place codemill spawns child processes: own process group, stdin null, killed as a group.
//!
//! Every caller (git, gates, agent CLIs) goes through [`Cmd`] so the rules hold everywhere:
//! stdin is `/dev/null` (an open pipe makes some CLIs wait), the child leads its own process
//! group, and timeouts or a drop kill the whole group, not just the direct child.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop, ProcessGroup};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout};

pub mod sandbox;

pub use sandbox::{Bwrap, ExecPolicy, Forward, Limits, Network, Sandbox};

/// Errors from starting or waiting for a child process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{program}` was not found on PATH (is it installed?)")]
    NotFound { program: String },
    #[error("working directory {dir} does not exist")]
    MissingDir { dir: PathBuf },
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("i/o error while running `{program}`: {source}")]
    Io {
        program: String,
        source: std::io::Error,
    },
    /// The sandbox the policy asks for cannot be set up as described.
    #[error("sandbox: {message}")]
    Sandbox { message: String },
}

/// A command line to run: program, argument list (never a shell string), directory, environment.
#[derive(Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    clear_env: bool,
}

impl fmt::Debug for Cmd {
    // Environment values may hold secrets: show names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("clear_env", &self.clear_env)
            .finish()
    }
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            clear_env: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    /// Start from an empty environment; only variables set with [`Cmd::env`] reach the child.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The command as a human would type it, for messages and logs.
    pub fn display(&self) -> String {
        let mut out = self.program();
        for a in &self.args {
            out.push(' ');
            let a = a.to_string_lossy();
            if a.contains(char::is_whitespace) || a.is_empty() {
                out.push_str(&format!("{a:?}"));
            } else {
                out.push_str(&a);
            }
        }
        out
    }

    fn build(&self) -> Result<CommandWrap, ProcessError> {
        if let Some(dir) = &self.cwd
            && !dir.is_dir()
        {
            return Err(ProcessError::MissingDir { dir: dir.clone() });
        }
        let mut command = tokio::process::Command::new(&self.program);
        command.args(&self.args);
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        if self.clear_env {
            command.env_clear();
        }
        for k in &self.env_remove {
            command.env_remove(k);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut wrapped = CommandWrap::from(command);
        wrapped.wrap(ProcessGroup::leader());
        wrapped.wrap(KillOnDrop);
        Ok(wrapped)
    }

    fn spawn_error(&self, source: std::io::Error) -> ProcessError {
        if source.kind() == std::io::ErrorKind::NotFound {
            ProcessError::NotFound {
                program: self.program(),
            }
        } else {
            ProcessError::Spawn {
                program: self.program(),
                source,
            }
        }
    }

    /// Start the child with piped stdout/stderr for streaming.
    pub fn spawn(&self) -> Result<Running, ProcessError> {
        let mut wrapped = self.build()?;
        let child = wrapped.spawn().map_err(|e| self.spawn_error(e))?;
        Ok(Running {
            program: self.program(),
            child,
        })
    }

    /// Run to completion, capturing output up to `cap` bytes per stream, killing the group on timeout.
    pub async fn output(
        &self,
        timeout: Option<Duration>,
        cap: usize,
    ) -> Result<Output, ProcessError> {
        let started = Instant::now();
        let mut running = self.spawn()?;
        let stdout = running.take_stdout();
        let stderr = running.take_stderr();
        let out_task = tokio::spawn(drain_capped(stdout, cap));
        let err_task = tokio::spawn(drain_capped(stderr, cap));
        let (status, timed_out) = match timeout {
            Some(limit) => match tokio::time::timeout(limit, running.wait()).await {
                Ok(status) => (Some(status?), false),
                Err(_) => {
                    running.kill().await;
                    (None, true)
                }
            },
            None => (Some(running.wait().await?), false),
        };
        // A grandchild that outlives the leader could hold the pipes open; kill the group so the drains end.
        running.kill().await;
        let (stdout, stdout_truncated) = out_task.await.unwrap_or_default();
        let (stderr, stderr_truncated) = err_task.await.unwrap_or_default();
        Ok(Output {
            status,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            timed_out,
            duration: started.elapsed(),
        })
    }
}

/// A running child in its own process group; dropping it kills the group.
#[derive(Debug)]
pub struct Running {
    program: String,
    child: Box<dyn ChildWrapper>,
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout().take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr().take()
    }

    pub async fn wait(&mut self) -> Result<ExitStatus, ProcessError> {
        self.child.wait().await.map_err(|source| ProcessError::Io {
            program: self.program.clone(),
            source,
        })
    }

    /// Kill the whole process group and reap the leader. Safe to call more than once.
    ///
    /// A sandbox's processes live in their own session under bubblewrap's pid-1, a child of the
    /// leader: that child is killed too, and waited for, because the kernel only reports a
    /// pid namespace's init as exited once every process in the namespace is gone. So when this
    /// returns, nothing the command started is still running.
    pub async fn kill(&mut self) {
        let children = self.pid().map(children_of).unwrap_or_default();
        for child in &children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*child as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Err(e) = self.child.start_kill() {
            tracing::debug!(program = %self.program, error = %e, "kill: group already gone");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while children.iter().any(|pid| running(*pid)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The direct children of `pid` (Linux `/proc/PID/task/*/children`; empty elsewhere).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// Whether `pid` is still running (not gone, not a zombie).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The result of [`Cmd::output`].
#[derive(Debug, Clone)]
pub struct Output {
    /// `None` when the command was killed at its timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// stdout and stderr together, labelled, for messages and for the fix stage.
    pub fn combined(&self) -> String {
        let mut out = String::new();
        if !self.stdout.trim().is_empty() {
            out.push_str(self.stdout.trim_end());
            out.push('\n');
        }
        if !self.stderr.trim().is_empty() {
            out.push_str(self.stderr.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Read a stream to its end, keeping the head and the tail within `cap` bytes.
///
/// The stream is always drained so a chatty child never blocks on a full pipe.
pub async fn drain_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> (String, bool) {
    let Some(mut reader) = reader else {
        return (String::new(), false);
    };
    let head_cap = cap / 2;
    let tail_cap = cap - head_cap;
    let mut head = Vec::new();
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut dropped: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if head.len() < head_cap {
            let take = (head_cap - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        tail.extend(chunk);
        while tail.len() > tail_cap {
            let excess = tail.len() - tail_cap;
            tail.drain(..excess);
            dropped += excess as u64;
        }
    }
    let mut text = String::from_utf8_lossy(&head).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n[... {dropped} bytes truncated ...]\n"));
    }
    let tail: Vec<u8> = tail.into_iter().collect();
    text.push_str(&String::from_utf8_lossy(&tail));
    (text, dropped > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn captures_output_and_status() {
        let out = Cmd::new("sh")
            .args(["-c", "echo hello; echo oops >&2; exit 3"])
            .output(None, 1024)
            .await
            .unwrap();
        assert_eq!(out.code(), Some(3));
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "oops\n");
        assert!(!out.success());
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let err = Cmd::new("codemill-no-such-program")
            .output(None, 10)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("codemill-no-such-program"),
            "{err}"
        );
        assert!(matches!(err, ProcessError::NotFound { .. }));
    }

    #[tokio::test]
    async fn stdin_is_null() {
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo done"])
            .output(Some(Duration::from_secs(10)), 1024)
            .await
            .unwrap();
        assert_eq!(out.stdout, "done\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        // The grandchild would write the marker after 2 s if it survived the group kill.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let out = Cmd::new("sh")
            .args(["-c", &script])
            .output(Some(Duration::from_millis(300)), 1024)
            .await
            .unwrap();
        assert!(out.timed_out);
        assert!(out.status.is_none());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "grandchild survived the group kill");
    }

    #[tokio::test]
    async fn output_is_capped_head_and_tail() {
        let out = Cmd::new("sh")
            .args(["-c", "echo START; yes x | head -c 200000; echo; echo END"])
            .output(None, 100)
            .await
            .unwrap();
        assert!(out.stdout_truncated);
        assert!(out.stdout.starts_with("START"));
        assert!(out.stdout.trim_end().ends_with("END"));
        assert!(out.stdout.len() < 200);
    }

    #[test]
    fn debug_hides_env_values() {
        let cmd = Cmd::new("x").env("API_KEY", "sk-secret");
        let shown = format!("{cmd:?}");
        assert!(shown.contains("API_KEY"));
        assert!(!shown.contains("sk-secret"));
    }
}
