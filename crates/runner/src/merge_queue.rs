//! The merge queue: `codemill merge KEY…` queues approved pull requests per project and target
//! branch, and they land one candidate at a time — the target's latest tip with the queued
//! entries stacked on it, tested with the target's own gates in a fresh sandboxed worktree. On
//! the local forge the target is pushed to exactly the tested commit, only while it is still
//! where the candidate was built; on GitHub each PR merges through the API with its tested head
//! pinned, once the target's required checks passed ([`forge`]). A conflicting or red entry is
//! taken out with the reason on its ticket (and PR), starts a fix round on its branch, and the
//! entries behind it are rebuilt without it; a red batch is bisected.
//!
//! Crash safety: nothing is settled before the push it depends on, every announcement is by
//! marker, and an entry the target already contains is settled as merged without another push —
//! so a process killed at any point resumes without merging twice or landing an untested commit.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use codemill_core::config::{Config, ForgeSettings};
use codemill_core::ids::TicketKey;
use codemill_core::merge_queue::Bisect;
use codemill_core::pipeline::GateResult;
use codemill_git::{Git, Merged};
use codemill_store::{MergeEntry, MergeState, NewMergeEntry, Store};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::{Runner, crash_now};
use crate::error::RunError;
use crate::progress::Progress;
use crate::worker::{owner_here, owner_is_gone};
use crate::workspace::QueueChecks;

mod forge;
mod settle;
use crate::jobs;

/// How long a process holds a queue without renewing; renewed every third of it.
const RUN_LEASE: Duration = Duration::from_secs(30);
/// How often a process waits for entries another process is landing.
const WAIT: Duration = Duration::from_millis(500);
/// The target's side of at most this many conflicting files goes to the fix round…
const MAX_CONFLICT_FILES: usize = 5;
/// …each clipped to this many characters.
const CONFLICT_FILE_CHARS: usize = 4000;

/// What became of one ticket asked to merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeOutcome {
    pub ticket: String,
    /// The branch it lands on.
    pub target: String,
    /// `merged` or `ejected`.
    pub state: MergeState,
    /// Its pull request was merged before it was asked again: nothing was queued.
    pub already: bool,
    /// The target's commit that contains it (`None`: the target contained it already).
    pub merged_as: Option<String>,
    /// Why it was taken out of the queue.
    pub reason: Option<String>,
    /// Its merge queue entry.
    pub entry: Option<i64>,
}

/// What `codemill merge` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    pub outcomes: Vec<MergeOutcome>,
    /// Gate runs this process made on candidates (each runs every gate of the target).
    pub gate_runs: u32,
    /// Entries this process settled, its own and others queued before them.
    pub settled: u32,
}

/// The lease renewal of a queue being worked: stopped when the work ends, or is dropped (a
/// worker shutting down mid-drain), so an abandoned lease runs out.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A candidate's test: green, or why not.
struct Tested {
    passed: bool,
    reason: String,
}

impl Runner {
    /// Queue the approved pull requests of `keys` (in that order) and land them through the
    /// merge queue, here or in the process that works the queue now; returns once each is
    /// merged or taken out.
    pub async fn merge_queued(
        &self,
        keys: &[TicketKey],
        by: &str,
    ) -> Result<MergeReport, RunError> {
        let mut outcomes: Vec<Option<MergeOutcome>> = Vec::new();
        let mut waiting: Vec<(usize, i64)> = Vec::new();
        let mut queues = BTreeSet::new();
        // A split ticket lands as its stack: each sub-task's PR in order, bottom first.
        let mut expanded = Vec::new();
        for key in keys {
            expanded.extend(stack_or_self(&self.store, key).await?);
        }
        for key in &expanded {
            match self.queue_one(key, by).await? {
                Ok(entry) => {
                    waiting.push((outcomes.len(), entry.id));
                    queues.insert((entry.project.clone(), entry.target.clone()));
                    outcomes.push(None);
                }
                Err(already) => outcomes.push(Some(already)),
            }
        }
        let mut report = MergeReport {
            outcomes: Vec::new(),
            gate_runs: 0,
            settled: 0,
        };
        loop {
            for (project, target) in &queues {
                if let Some((runs, settled)) = self
                    .work_queue(project, target, by, &CancellationToken::new())
                    .await?
                {
                    report.gate_runs += runs;
                    report.settled += settled;
                }
            }
            let mut open = false;
            for (index, id) in &waiting {
                let entry = self.store.merge_entry(*id).await?.ok_or_else(|| {
                    RunError::Store(codemill_store::StoreError::Corrupt(format!(
                        "merge queue entry {id} vanished"
                    )))
                })?;
                if entry.state == MergeState::Queued {
                    open = true;
                } else {
                    outcomes[*index] = Some(outcome_of(&entry));
                }
            }
            if !open {
                break;
            }
            // Another process works the queue: wait for it (or for its lease to run out).
            tokio::time::sleep(WAIT).await;
        }
        report.outcomes = outcomes.into_iter().flatten().collect();
        Ok(report)
    }

    /// Queue one ticket's approved pull request, or say it was merged before.
    async fn queue_one(
        &self,
        key: &TicketKey,
        by: &str,
    ) -> Result<Result<MergeEntry, MergeOutcome>, RunError> {
        let queued = enqueue(&self.store, &self.config, key, by).await?;
        if let Ok((entry, true)) = &queued {
            let position = self
                .store
                .merge_queue(&entry.project, &entry.target)
                .await?
                .len();
            self.emit(Progress::Info {
                message: format!(
                    "{key}: queued to merge into {} (position {position})",
                    entry.target
                ),
            });
        }
        Ok(queued.map(|(entry, _)| entry))
    }

    /// Work every queue that has entries, one after another (each under its lease; a queue
    /// another process works is left to it): what a worker does between jobs.
    pub async fn work_merge_queues(&self, by: &str) -> Result<(u32, u32), RunError> {
        self.work_merge_queues_until(by, &CancellationToken::new())
            .await
    }

    /// [`Self::work_merge_queues`] until `stop` fires (a service shutting down): a queue being
    /// worked then stops between steps or while waiting for checks, hands its lease back, and
    /// leaves its entries queued for the next run — nothing is settled that did not land.
    pub async fn work_merge_queues_until(
        &self,
        by: &str,
        stop: &CancellationToken,
    ) -> Result<(u32, u32), RunError> {
        let (mut runs, mut settled) = (0, 0);
        for (project, target) in self.store.merge_queues_waiting().await? {
            if stop.is_cancelled() {
                break;
            }
            if let Some((r, s)) = self.work_queue(&project, &target, by, stop).await? {
                runs += r;
                settled += s;
            }
        }
        Ok((runs, settled))
    }

    /// Work the queue of (`project`, `target`) until it is empty, holding its lease: the gate
    /// runs made and entries settled, or `None` when another live process holds it.
    async fn work_queue(
        &self,
        project: &str,
        target: &str,
        by: &str,
        stop: &CancellationToken,
    ) -> Result<Option<(u32, u32)>, RunError> {
        let owner = owner_here();
        if !self.claim_queue(project, target, &owner).await? {
            return Ok(None);
        }
        // Fired when the lease is gone or when this process stops; only the first hands the
        // queue to someone else.
        let lost = stop.child_token();
        let lease_lost = Arc::new(AtomicBool::new(false));
        let heartbeat = Heartbeat({
            let (store, lost, lease_lost) = (self.store.clone(), lost.clone(), lease_lost.clone());
            let (project, target, owner) = (project.to_string(), target.to_string(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RUN_LEASE / 3).await;
                    let now = Utc::now();
                    let until = now + chrono::Duration::from_std(RUN_LEASE).unwrap_or_default();
                    match store
                        .claim_merge_run(&project, &target, &owner, until, now)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            lease_lost.store(true, Ordering::SeqCst);
                            lost.cancel();
                            return;
                        }
                        // A store hiccup: try again; the lease outlives a few of them.
                        Err(e) => tracing::warn!(error = %e, "merge queue lease not renewed"),
                    }
                }
            })
        });
        let drained = self.drain(project, target, by, &lost).await;
        drop(heartbeat);
        if !lease_lost.load(Ordering::SeqCst) {
            self.store
                .release_merge_run(project, target, &owner)
                .await?;
        }
        if stop.is_cancelled() && drained.is_err() {
            // Stopped part-way: what landed is settled, the rest waits for the next run.
            return Ok(None);
        }
        drained.map(Some)
    }

    /// Take the lease on a queue; one left by a process of this host that is gone is taken over.
    async fn claim_queue(
        &self,
        project: &str,
        target: &str,
        owner: &str,
    ) -> Result<bool, RunError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(RUN_LEASE).unwrap_or_default();
        if self
            .store
            .claim_merge_run(project, target, owner, until, now)
            .await?
        {
            return Ok(true);
        }
        let Some((holder, _)) = self.store.merge_run_holder(project, target).await? else {
            return Ok(false);
        };
        if !owner_is_gone(&holder) {
            return Ok(false);
        }
        self.store
            .release_merge_run(project, target, &holder)
            .await?;
        Ok(self
            .store
            .claim_merge_run(project, target, owner, until, now)
            .await?)
    }

    /// Land the queued entries in order: build a candidate of up to `batch` entries on the
    /// target's tip, test it, land what is green, take out what broke it, and go on.
    async fn drain(
        &self,
        project: &str,
        target: &str,
        by: &str,
        lost: &CancellationToken,
    ) -> Result<(u32, u32), RunError> {
        let outside = |message: String| RunError::Outside {
            project: project.to_string(),
            message,
        };
        let batch = self
            .config
            .projects
            .get(project)
            .map(|p| p.merge_queue.batch.max(1) as usize)
            .unwrap_or(1);
        let git = self
            .workspace
            .remote_git(project)
            .await
            .map_err(|e| outside(e.to_string()))?;
        let forge = self.workspace.forge(project).map_err(outside)?;
        let (mut runs, mut settled) = (0u32, 0u32);
        loop {
            if lost.is_cancelled() {
                return Err(outside(format!(
                    "another process took over the merge queue of {target}"
                )));
            }
            let entries = self.store.merge_queue(project, target).await?;
            if entries.is_empty() {
                return Ok((runs, settled));
            }
            let (clone, tip) = self
                .workspace
                .queue_tip(&git, project, target)
                .await
                .map_err(outside)?;
            // The candidate chain: each entry stacked on the ones ahead of it.
            let mut chain: Vec<(MergeEntry, String)> = Vec::new();
            let mut onto = tip.clone();
            for entry in entries.into_iter().take(batch) {
                let message = format!("Merge {} ({})\n", entry.branch, entry.ticket);
                match self
                    .workspace
                    .stack(&clone, &onto, &entry.commit, &message)
                    .await
                {
                    Err(why) => {
                        let reason = format!("{} cannot be merged: {why}", entry.branch);
                        self.eject(&entry, &reason, None).await?;
                        settled += 1;
                    }
                    Ok(Merged::UpToDate) if onto == tip => {
                        // The target has it already (landed before a crash, or by hand).
                        self.settle_merged(&entry, None, &[], by).await?;
                        settled += 1;
                    }
                    Ok(Merged::UpToDate) => chain.push((entry, onto.clone())),
                    Ok(Merged::FastForward(sha) | Merged::Commit(sha)) => {
                        onto = sha.clone();
                        chain.push((entry, sha));
                    }
                    Ok(Merged::Conflicts(files)) => {
                        let reason = format!(
                            "{} conflicts with {target} in {}{}",
                            entry.branch,
                            files.join(", "),
                            if chain.is_empty() {
                                String::new()
                            } else {
                                format!(" once {} are merged", tickets_of(&chain))
                            }
                        );
                        let fix = self
                            .conflict_feedback(&clone, &onto, target, &reason, &files)
                            .await;
                        self.eject(&entry, &reason, Some(fix)).await?;
                        settled += 1;
                    }
                }
            }
            if chain.is_empty() {
                continue;
            }
            let checks = self
                .workspace
                .queue_checks(&clone, &tip)
                .await
                .map_err(outside)?;
            let n = chain.len();
            let full = self
                .test_candidate(project, &clone, &tip, &chain, &checks)
                .await?;
            runs += 1;
            let (green, culprit) = if full.passed {
                (n, None)
            } else if n == 1 {
                (0, Some((0, full.reason)))
            } else {
                let mut search = Bisect::new(n);
                let mut red = full.reason;
                while let Some(k) = search.next() {
                    let tested = self
                        .test_candidate(project, &clone, &tip, &chain[..k], &checks)
                        .await?;
                    runs += 1;
                    if !tested.passed {
                        red = tested.reason;
                    }
                    search.record(k, tested.passed);
                }
                self.emit(Progress::Info {
                    message: format!(
                        "merge queue {project}/{target}: bisected a batch of {n} to {} in {runs} \
                         gate runs so far",
                        chain[search.culprit()].0.ticket
                    ),
                });
                (search.green(), Some((search.culprit(), red)))
            };
            if green > 0 {
                let gates: Vec<String> = checks.gates.iter().map(|g| g.name.clone()).collect();
                let landed = match &forge {
                    None => self
                        .land_prefix(
                            &git,
                            &clone,
                            (target, &tip),
                            &chain[..green],
                            &gates,
                            by,
                            lost,
                        )
                        .await?
                        .then_some(green as u32),
                    Some(forge) => {
                        self.land_on_forge(
                            forge,
                            (project, target, &tip),
                            &chain[..green],
                            &gates,
                            (by, lost),
                        )
                        .await?
                    }
                };
                let Some(landed) = landed else {
                    // The target moved since the candidate was built: build it again.
                    continue;
                };
                settled += landed;
                if landed as usize != green {
                    // The forge took one out: what was tested with it is built again.
                    continue;
                }
            }
            if let Some((index, reason)) = culprit {
                let fix = format!(
                    "The merge queue could not land this branch: {reason}\n\nMake the change \
                     pass the project's gates on top of the latest `{target}`."
                );
                self.eject(&chain[index].0, &reason, Some(fix)).await?;
                settled += 1;
            }
        }
    }

    /// Test the candidate holding `chain` (its last commit) in a fresh worktree with the
    /// target's prepare steps and gates, sandboxed like every gate.
    async fn test_candidate(
        &self,
        project: &str,
        clone: &Path,
        tip: &str,
        chain: &[(MergeEntry, String)],
        checks: &QueueChecks,
    ) -> Result<Tested, RunError> {
        let Some((top, candidate)) = chain.last() else {
            return Ok(Tested {
                passed: true,
                reason: String::new(),
            });
        };
        let outside = |message: String| RunError::Outside {
            project: project.to_string(),
            message,
        };
        let what = format!(
            "the candidate {} ({} on {} at {})",
            short(candidate),
            tickets_of(chain),
            top.target,
            short(tip)
        );
        let worktree = self
            .workspace
            .candidate_worktree(clone, project, &top.target.replace('/', "-"), candidate)
            .await
            .map_err(outside)?;
        let tested = match self
            .gates
            .prepare(top.job, &worktree, &checks.prepare)
            .await
        {
            Err(e) => Ok(Tested {
                passed: false,
                reason: format!("on {what}: {e}"),
            }),
            Ok(()) => self
                .gates
                .check(top.job, project, &worktree, &checks.gates)
                .await
                .map(|results| judged(&results, &what))
                .map_err(outside),
        };
        self.workspace.remove_candidate(clone, &worktree).await;
        let tested = tested?;
        self.emit(Progress::Info {
            message: format!(
                "merge queue: {what}: {}",
                if tested.passed { "gates passed" } else { "red" }
            ),
        });
        Ok(tested)
    }

    /// Push the tested candidate of `prefix` over the target's tip it was built on, then
    /// settle its entries as merged. `false`, with nothing settled, when the target moved.
    #[allow(clippy::too_many_arguments)]
    async fn land_prefix(
        &self,
        git: &Git,
        clone: &Path,
        (target, tip): (&str, &str),
        prefix: &[(MergeEntry, String)],
        gates: &[String],
        by: &str,
        lost: &CancellationToken,
    ) -> Result<bool, RunError> {
        let Some((top, candidate)) = prefix.last() else {
            return Ok(true);
        };
        self.crash_point("tested").await;
        if lost.is_cancelled() {
            return Err(RunError::Outside {
                project: top.project.clone(),
                message: format!("another process took over the merge queue of {target}"),
            });
        }
        let pushed = self
            .workspace
            .land(git, clone, candidate, target, tip)
            .await
            .map_err(|message| RunError::Outside {
                project: top.project.clone(),
                message,
            })?;
        if !pushed {
            return Ok(false);
        }
        self.crash_point("pushed").await;
        for (entry, _) in prefix {
            self.settle_merged(entry, Some(candidate), gates, by)
                .await?;
        }
        self.workspace
            .recheck_landed(clone, tip, candidate, &top.project)
            .await;
        Ok(true)
    }

    /// Fault injection for crash tests: SIGKILL this process at `point`.
    async fn crash_point(&self, point: &str) {
        if self.options.crash_in_merge.as_deref() == Some(point) {
            crash_now().await;
        }
    }
}

/// A candidate's gate results as a verdict: green, or the first red gate with its output.
fn judged(results: &[GateResult], what: &str) -> Tested {
    match results.iter().find(|r| !r.passed) {
        None => Tested {
            passed: true,
            reason: String::new(),
        },
        Some(r) => {
            let detail = r.error.clone().unwrap_or_else(|| {
                let code = r
                    .exit_code
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| "no exit code".into());
                let output = codemill_core::text::clip(r.output.trim(), 1500);
                if output.is_empty() {
                    code
                } else {
                    format!("{code}: {output}")
                }
            });
            Tested {
                passed: false,
                reason: format!("gate `{}` failed on {what} ({detail})", r.name),
            }
        }
    }
}

fn outcome_of(entry: &MergeEntry) -> MergeOutcome {
    MergeOutcome {
        ticket: entry.ticket.clone(),
        target: entry.target.clone(),
        state: entry.state,
        already: false,
        merged_as: entry.merged_as.clone(),
        reason: entry.reason.clone(),
        entry: Some(entry.id),
    }
}

fn tickets_of(chain: &[(MergeEntry, String)]) -> String {
    chain
        .iter()
        .map(|(e, _)| e.ticket.as_str())
        .collect::<Vec<_>>()
        .join(" + ")
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Queue the approved pull request of `key` on its project's merge queue (once: asked again,
/// the queued entry is answered, with `false`), or say it was merged before. Refused with the
/// reason while it has no pull request or a fix round runs on its branch.
/// The tickets `key` lands as: its stack's sub-tasks bottom first when it is a split ticket
/// with a proposed or shipped stack, else itself.
pub async fn stack_or_self(store: &Store, key: &TicketKey) -> Result<Vec<TicketKey>, RunError> {
    Ok(match jobs::latest(store, key).await? {
        Some(latest) if !latest.state.stack.is_empty() => {
            crate::split::stack_tickets(&latest.state)
        }
        _ => vec![key.clone()],
    })
}

pub async fn enqueue(
    store: &Store,
    config: &Config,
    key: &TicketKey,
    by: &str,
) -> Result<Result<(MergeEntry, bool), MergeOutcome>, RunError> {
    let latest = jobs::require(store, key).await?;
    let project = key.project();
    let wrong = |message: String| RunError::WrongState {
        ticket: key.clone(),
        message,
    };
    let forge = config.projects.get(project).and_then(|p| match &p.forge {
        ForgeSettings::Local => None,
        ForgeSettings::Github(_) => Some("GitHub"),
        ForgeSettings::Gitlab(_) => Some("GitLab"),
    });
    // A sub-task's PR is on its stack branch, and lands on the default branch.
    let stacked = latest
        .state
        .subtask
        .as_ref()
        .and(latest.state.pr)
        .and(latest.state.branch.clone());
    if let (Some(branch), Some(forge)) = (&stacked, forge) {
        // Its PR is based on the sub-task below it; the forge would merge it there.
        return Err(wrong(format!(
            "its PR ({branch}) is stacked on the sub-task below it: on {forge}, merge the stack \
             bottom first there (merging each PR retargets the next); the merge queue lands \
             stacks on the local forge"
        )));
    }
    if let Some(forge) = forge
        && latest.state.pr_number.is_none()
    {
        return Err(wrong(format!(
            "it has no pull request on {forge} yet (its job is {}); approve its proposal first",
            latest.state.status()
        )));
    }
    if latest.state.stage.is_feedback() {
        return Err(wrong(format!(
            "a fix round runs on its branch ({}); queue it once the round ends",
            latest.state.stage.as_str()
        )));
    }
    let branch = stacked.clone().unwrap_or_else(|| key.branch());
    let Some(pr) = store.find_pr(project, &branch).await? else {
        return Err(wrong(format!(
            "it has no pull request yet (its job is {}); approve its proposal first",
            latest.state.status()
        )));
    };
    if pr.state == "merged" {
        return Ok(Err(MergeOutcome {
            ticket: key.to_string(),
            target: pr.base,
            state: MergeState::Merged,
            already: true,
            merged_as: None,
            reason: None,
            entry: None,
        }));
    }
    let ticket = key.to_string();
    let queued = store
        .enqueue_merge(
            &NewMergeEntry {
                project,
                target: match (&stacked, &latest.state.default_branch) {
                    (Some(_), Some(default)) => default,
                    _ => &pr.base,
                },
                ticket: &ticket,
                branch: &branch,
                commit: &pr.commit,
                job: latest.job,
                by,
            },
            Utc::now(),
        )
        .await?;
    Ok(Ok(queued))
}
