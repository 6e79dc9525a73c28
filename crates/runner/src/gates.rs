//! Gates (the repository's checks run after every change) and prepare steps (run once per job
//! with network before any agent), as argument lists under a sandbox policy.

use std::path::Path;
use std::time::Duration;

use codemill_core::config::{ConfigError, GateSpec, RepoPolicy, detect_gates};
use codemill_core::ids::JobId;
use codemill_core::pipeline::{Effect, GateResult, JobEvent};
use codemill_process::{ExecPolicy, ProcessError};
use tracing::Instrument;

use crate::effects::failed;
use crate::guard::Boundary;
use crate::progress::{Emitter, Progress};

/// Where a repository keeps its codemill policy.
pub const POLICY_FILE: &str = ".codemill/pipeline.toml";

/// Parse the policy file's text; `None` text means the repository has no policy file.
pub fn parse_policy(text: Option<&str>) -> Result<Option<RepoPolicy>, ConfigError> {
    text.map(|t| RepoPolicy::parse(t, POLICY_FILE)).transpose()
}

/// The gates of a repository: from its policy, else detected from the files at its root.
pub fn gates_from(policy: Option<&RepoPolicy>, files: &[String]) -> Vec<GateSpec> {
    if let Some(policy) = policy
        && !policy.gates.is_empty()
    {
        return policy.gates.clone();
    }
    // Only top-level files decide the toolchain.
    let root: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !f.contains('/'))
        .collect();
    detect_gates(&root)
}

/// Run every gate in order; all run even when one fails, so the fix stage sees everything.
/// A gate runs the agent's code: it runs under `policy` (the sandbox, an environment built
/// from nothing), never with codemill's own environment.
pub async fn run_gates(
    worktree: &Path,
    gates: &[GateSpec],
    default_timeout: Duration,
    output_cap: usize,
    policy: &ExecPolicy,
) -> Vec<GateResult> {
    let mut results = Vec::with_capacity(gates.len());
    for gate in gates {
        let span = tracing::info_span!(
            "gate",
            otel.name = %format!("gate {}", gate.name),
            gate = %gate.name,
            passed = tracing::field::Empty,
            exit_code = tracing::field::Empty,
            timed_out = tracing::field::Empty,
        );
        let result = run_gate(worktree, gate, default_timeout, output_cap, policy)
            .instrument(span.clone())
            .await;
        span.record("passed", result.passed);
        span.record("timed_out", result.timed_out);
        if let Some(code) = result.exit_code {
            span.record("exit_code", code);
        }
        results.push(result);
    }
    results
}

async fn run_gate(
    worktree: &Path,
    gate: &GateSpec,
    default_timeout: Duration,
    cap: usize,
    policy: &ExecPolicy,
) -> GateResult {
    let dir = match &gate.workdir {
        Some(d) => worktree.join(d),
        None => worktree.to_path_buf(),
    };
    let timeout = gate
        .timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(default_timeout);
    let command = gate.command.join(" ");
    let ran = match policy
        .hand_over()
        .and_then(|()| policy.command(&gate.command[0], &gate.command[1..], &dir))
    {
        Ok(cmd) => cmd.output(Some(timeout), cap).await,
        Err(e) => Err(e),
    };
    match ran {
        Ok(out) => {
            let mut output = out.combined();
            if out.timed_out {
                output.push_str(&format!(
                    "\n[codemill: killed after the {} s gate timeout]\n",
                    timeout.as_secs()
                ));
            }
            GateResult {
                name: gate.name.clone(),
                command,
                passed: out.success(),
                exit_code: out.code(),
                timed_out: out.timed_out,
                duration_ms: out.duration.as_millis() as u64,
                output,
                error: None,
                fix_on_timeout: gate.fix_on_timeout,
            }
        }
        Err(e) => {
            let error = match &e {
                ProcessError::NotFound { program } => {
                    format!(
                        "gate `{}`: command `{program}` not found on PATH",
                        gate.name
                    )
                }
                ProcessError::MissingDir { dir } => {
                    format!(
                        "gate `{}`: working directory {} does not exist",
                        gate.name,
                        dir.display()
                    )
                }
                other => format!("gate `{}`: {other}", gate.name),
            };
            GateResult {
                name: gate.name.clone(),
                command,
                passed: false,
                exit_code: None,
                timed_out: false,
                duration_ms: 0,
                output: String::new(),
                error: Some(error),
                fix_on_timeout: gate.fix_on_timeout,
            }
        }
    }
}

/// Runs gates and prepare steps through the sandboxed exec path. Knows nothing of git or the
/// job's journal: it is handed the worktree and the commands, and answers with their results.
#[derive(Clone)]
pub(crate) struct Gates {
    boundary: Boundary,
    /// A gate's timeout when it sets none.
    timeout: Duration,
    /// Output kept per gate (head and tail).
    output_cap: usize,
    progress: Emitter,
}

impl Gates {
    pub(crate) fn new(
        boundary: Boundary,
        timeout: Duration,
        output_cap: usize,
        progress: Emitter,
    ) -> Gates {
        Gates {
            boundary,
            timeout,
            output_cap,
            progress,
        }
    }

    /// Run `specs` in the job's worktree, sandboxed (they run the agent's code, so they get
    /// their own HOME and nothing of ours), and report them as the round's gate results.
    pub(crate) async fn run(
        &self,
        job: JobId,
        project: &str,
        worktree: &Path,
        specs: &[GateSpec],
        effect: &Effect,
        round: u32,
    ) -> JobEvent {
        if specs.is_empty() {
            self.progress.emit(Progress::Info {
                message: "no gates configured or detected; add .codemill/pipeline.toml".into(),
            });
        }
        let results = match self.check(job, project, worktree, specs).await {
            Ok(results) => results,
            Err(e) => return failed(effect, e),
        };
        self.progress.emit(Progress::Gates {
            round,
            results: results.clone(),
        });
        JobEvent::GatesFinished {
            round,
            gates: results,
        }
    }

    /// Run `specs` in `worktree` under the gate sandbox of `job` (its cache, the project's
    /// egress): the results, or why nothing could run.
    pub(crate) async fn check(
        &self,
        job: JobId,
        project: &str,
        worktree: &Path,
        specs: &[GateSpec],
    ) -> Result<Vec<GateResult>, String> {
        let guard = self
            .boundary
            .guard()
            .await
            .map_err(|e| format!("sandbox: {e}"))?;
        let cache = self.boundary.job_cache(job)?;
        let egress = self
            .boundary
            .egress(guard, project, job)
            .map_err(|e| format!("sandbox: {e}"))?;
        let policy = self
            .boundary
            .gate_policy(
                guard,
                worktree,
                &cache,
                egress.as_ref().map(codemill_gateway::Egress::socket),
                false,
            )
            .map_err(|e| format!("sandbox: {e}"))?;
        Ok(run_gates(worktree, specs, self.timeout, self.output_cap, &policy).await)
    }

    /// The repository's `[[prepare]]` steps (e.g. `cargo fetch`, `npm ci`), read from its
    /// policy at the trusted base commit, run before any agent touches the worktree: sandboxed
    /// like a gate, but with the host's network. A failing step stops the job with its output.
    pub(crate) async fn prepare(
        &self,
        job: JobId,
        worktree: &Path,
        steps: &[GateSpec],
    ) -> Result<(), String> {
        if steps.is_empty() {
            return Ok(());
        }
        let guard = self
            .boundary
            .guard()
            .await
            .map_err(|e| format!("sandbox: {e}"))?;
        let cache = self.boundary.job_cache(job)?;
        let policy = self
            .boundary
            .gate_policy(guard, worktree, &cache, None, true)
            .map_err(|e| format!("sandbox: {e}"))?;
        let results = run_gates(worktree, steps, self.timeout, self.output_cap, &policy).await;
        for r in &results {
            self.progress.emit(Progress::Info {
                message: format!(
                    "prepare {}: {} ({} ms)",
                    r.name,
                    if r.passed { "done" } else { "FAILED" },
                    r.duration_ms
                ),
            });
        }
        match prepare_failure(&results) {
            None => Ok(()),
            Some(message) => Err(message),
        }
    }
}

/// Why prepare steps stop the job: the first failed step with its exit code and output.
fn prepare_failure(results: &[GateResult]) -> Option<String> {
    let r = results.iter().find(|r| !r.passed)?;
    Some(format!(
        "prepare step `{}` ({}) failed{}: {}",
        r.name,
        r.command,
        r.exit_code
            .map(|c| format!(" with exit {c}"))
            .unwrap_or_default(),
        codemill_core::text::clip(r.error.as_deref().unwrap_or(r.output.trim()), 2000)
    ))
}

/// The prepare steps of a policy file's text at the base commit (none without a policy).
pub(crate) fn prepare_steps(text: Option<&str>) -> Result<Vec<GateSpec>, String> {
    match parse_policy(text).map_err(|e| e.to_string())? {
        Some(policy) => Ok(policy.prepare),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use codemill_process::{Limits, Sandbox};

    /// Unsandboxed, with the host's PATH: the sandboxed path is tested end to end.
    fn plain() -> ExecPolicy {
        ExecPolicy::new(Sandbox::Off, Limits::default())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    }

    fn spec(name: &str, cmd: &[&str]) -> GateSpec {
        GateSpec {
            name: name.into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            workdir: None,
            timeout_secs: None,
            fix_on_timeout: false,
        }
    }

    #[tokio::test]
    async fn runs_all_gates_and_reports_each() {
        let dir = tempfile::tempdir().unwrap();
        let gates = [
            spec("ok", &["true"]),
            spec("fails", &["sh", "-c", "echo broken; exit 2"]),
            spec("missing", &["codemill-no-such-gate"]),
        ];
        let r = run_gates(dir.path(), &gates, Duration::from_secs(10), 1000, &plain()).await;
        assert!(r[0].passed);
        assert!(!r[1].passed);
        assert_eq!(r[1].exit_code, Some(2));
        assert_eq!(r[1].output, "broken\n");
        assert!(!r[2].passed);
        assert_eq!(
            r[2].error.as_deref(),
            Some("gate `missing`: command `codemill-no-such-gate` not found on PATH")
        );
    }

    #[tokio::test]
    async fn gate_timeout_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = spec("slow", &["sleep", "5"]);
        g.timeout_secs = Some(1);
        let r = run_gates(dir.path(), &[g], Duration::from_secs(10), 1000, &plain()).await;
        assert!(r[0].timed_out && !r[0].passed);
        assert!(r[0].output.contains("1 s gate timeout"));
    }

    /// Gates of a test home's project, unsandboxed, reporting to the returned receiver.
    fn gates(
        t: &crate::testing::TestHome,
    ) -> (Gates, tokio::sync::mpsc::UnboundedReceiver<Progress>) {
        let boundary = Boundary::new(
            t.home.clone(),
            t.store.clone(),
            t.config.sandbox.clone(),
            crate::outside::Projects::new(t.config.projects.clone(), Default::default()),
            Default::default(),
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let gates = Gates::new(
            boundary,
            Duration::from_secs(10),
            1000,
            Emitter::new(Some(tx)),
        );
        (gates, rx)
    }

    #[tokio::test]
    async fn gates_run_in_the_worktree_with_the_job_cache_as_home() {
        let t = crate::testing::TestHome::new("/nowhere/shop.git", "").await;
        let (gates, mut progress) = gates(&t);
        let worktree = t.dir.path().join("worktree");
        std::fs::create_dir_all(&worktree).unwrap();
        let job = crate::testing::job();
        let specs = [
            spec("where", &["sh", "-c", "pwd; echo \"$HOME\""]),
            spec("fails", &["sh", "-c", "exit 3"]),
        ];
        let effect = Effect::RunGates { round: 2 };
        let event = gates.run(job, "SHOP", &worktree, &specs, &effect, 2).await;
        let JobEvent::GatesFinished {
            round: 2,
            gates: results,
        } = event
        else {
            panic!("{event:?}");
        };
        let cache = t.home.agent_state(job, "cache");
        assert_eq!(
            results[0].output,
            format!("{}\n{}\n", worktree.display(), cache.display())
        );
        assert!(results[0].passed && !results[1].passed);
        assert_eq!(results[1].exit_code, Some(3));
        let Ok(Progress::Gates {
            round: 2,
            results: reported,
        }) = progress.try_recv()
        else {
            panic!("the results were not reported");
        };
        assert_eq!(reported, results);
    }

    #[tokio::test]
    async fn a_repository_without_gates_is_told_how_to_add_them() {
        let t = crate::testing::TestHome::new("/nowhere/shop.git", "").await;
        let (gates, mut progress) = gates(&t);
        let event = gates
            .run(
                crate::testing::job(),
                "SHOP",
                t.dir.path(),
                &[],
                &Effect::RunGates { round: 0 },
                0,
            )
            .await;
        assert_eq!(
            event,
            JobEvent::GatesFinished {
                round: 0,
                gates: vec![]
            }
        );
        let Ok(Progress::Info { message }) = progress.try_recv() else {
            panic!("nothing said");
        };
        assert!(message.contains(".codemill/pipeline.toml"), "{message}");
    }

    #[tokio::test]
    async fn a_failing_prepare_step_stops_the_job_with_its_output() {
        let t = crate::testing::TestHome::new("/nowhere/shop.git", "").await;
        let (gates, _progress) = gates(&t);
        let job = crate::testing::job();
        assert_eq!(gates.prepare(job, t.dir.path(), &[]).await, Ok(()));
        let steps = [
            spec("fetch", &["true"]),
            spec("install", &["sh", "-c", "echo no network; exit 7"]),
            spec("never", &["sh", "-c", "exit 9"]),
        ];
        let err = gates.prepare(job, t.dir.path(), &steps).await.unwrap_err();
        assert_eq!(
            err,
            "prepare step `install` (sh -c echo no network; exit 7) failed with exit 7: no network"
        );
    }

    #[test]
    fn prepare_steps_come_from_the_policy_only() {
        assert!(prepare_steps(None).unwrap().is_empty());
        assert!(
            prepare_steps(Some("max_fix_rounds = 1\n"))
                .unwrap()
                .is_empty()
        );
        let steps = prepare_steps(Some(
            "[[prepare]]\nname = \"fetch\"\ncommand = [\"cargo\", \"fetch\"]\n",
        ))
        .unwrap();
        assert_eq!(steps[0].command, ["cargo", "fetch"]);
        assert!(prepare_steps(Some("[[prepare]]\nname = 1\n")).is_err());
    }

    #[test]
    fn policy_file_wins_over_detection() {
        let files = vec![
            "Cargo.toml".to_string(),
            "src/lib.rs".to_string(),
            "sub/go.mod".to_string(),
        ];
        assert_eq!(gates_from(None, &files)[0].name, "build");
        let policy = parse_policy(Some(
            "[[gates]]\nname = \"unit\"\ncommand = [\"make\", \"unit\"]\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(gates_from(Some(&policy), &files)[0].name, "unit");
        let empty = parse_policy(Some("max_fix_rounds = 1\n")).unwrap().unwrap();
        assert_eq!(gates_from(Some(&empty), &files)[0].name, "build");
        let err = parse_policy(Some("[[gates]]\nname = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(".codemill/pipeline.toml:"), "{err}");
        assert!(parse_policy(None).unwrap().is_none());
    }
}
