//! Landing tested entries on an outside forge (GitHub): through its merge API rather than a
//! push, pinned to the head SHA the candidate was built from, with the project's merge method,
//! and only once the status checks the target's protection requires have passed on that head.

use std::time::{Duration, Instant};

use codemill_core::config::MergeQueueSettings;
use codemill_core::ids::TicketKey;
use codemill_core::pipeline::JobEvent;
use codemill_store::MergeEntry;
use codemill_trackers::github::{CheckState, MergeAnswer};
use tokio_util::sync::CancellationToken;

use super::short;
use crate::engine::Runner;
use crate::error::RunError;
use crate::outside::AnyForge;
use crate::progress::Progress;
use crate::{inbound, jobs};

/// What became of one entry on the forge.
enum Landed {
    /// Merged as this commit of the target (`None`: it had been merged already).
    Merged(Option<String>),
    /// Taken out: the reason, and whether a fix round on the branch can help.
    Out { reason: String, fixable: bool },
    /// Another process took the queue over while this one waited: nothing more is done here.
    Lost,
}

impl Runner {
    /// Merge each entry of the green `prefix` through the forge, in order, once the target is
    /// still at `tip`: the number settled (fewer than the prefix when one is taken out, and the
    /// rest are rebuilt), or `None` when the target moved since the candidate was built.
    pub(super) async fn land_on_forge(
        &self,
        forge: &AnyForge,
        (project, target, tip): (&str, &str, &str),
        prefix: &[(MergeEntry, String)],
        gates: &[String],
        (by, lost): (&str, &CancellationToken),
    ) -> Result<Option<u32>, RunError> {
        let outside = |e: codemill_trackers::Error| RunError::Outside {
            project: project.to_string(),
            message: e.to_string(),
        };
        let taken_over = || RunError::Outside {
            project: project.to_string(),
            message: format!("another process took over the merge queue of {target}"),
        };
        self.crash_point("tested").await;
        let branch = forge.branch_tip(target).await.map_err(outside)?;
        if branch.sha != tip {
            return Ok(None);
        }
        let settings = self
            .config
            .projects
            .get(project)
            .map(|p| p.merge_queue)
            .unwrap_or_default();
        let mut settled = 0;
        for (entry, _) in prefix {
            if lost.is_cancelled() {
                return Err(taken_over());
            }
            let number = self.forge_pr_number(entry).await?;
            let landed = self
                .land_one(
                    forge,
                    entry,
                    number,
                    &branch.required_checks,
                    &settings,
                    lost,
                )
                .await
                .map_err(outside)?;
            match landed {
                Landed::Merged(sha) => {
                    self.crash_point("pushed").await;
                    // The job follows its PR: it announces the merge and finishes. Told before
                    // the entry is settled, so a crash between the two tells it on the retry.
                    if let Ok(key) = entry.ticket.parse::<TicketKey>() {
                        inbound::record(
                            &self.store,
                            &key,
                            JobEvent::PrClosed {
                                merged: true,
                                by: by.to_string(),
                            },
                        )
                        .await?;
                    }
                    self.settle_merged(entry, sha.as_deref(), gates, by).await?;
                    settled += 1;
                }
                Landed::Out { reason, fixable } => {
                    let fix = fixable.then(|| {
                        format!(
                            "The merge queue could not land this pull request: {reason}\n\nMake \
                             the change pass the checks `{target}` requires."
                        )
                    });
                    self.eject(entry, &reason, fix).await?;
                    settled += 1;
                    // The entries behind it were tested with it: build them again.
                    return Ok(Some(settled));
                }
                Landed::Lost => return Err(taken_over()),
            }
        }
        Ok(Some(settled))
    }

    /// The forge's number of an entry's pull request, from its job.
    pub(super) async fn forge_pr_number(&self, entry: &MergeEntry) -> Result<u64, RunError> {
        let key: TicketKey = entry.ticket.parse().map_err(|_| RunError::Outside {
            project: entry.project.clone(),
            message: format!("merge queue entry {} names no ticket", entry.id),
        })?;
        let latest = jobs::require(&self.store, &key).await?;
        latest.state.pr_number.ok_or_else(|| RunError::WrongState {
            ticket: key,
            message: "its job has no pull request on the forge".into(),
        })
    }

    /// One entry: the PR still open at the tested head, its required checks passed, merged
    /// with that head pinned.
    async fn land_one(
        &self,
        forge: &AnyForge,
        entry: &MergeEntry,
        number: u64,
        required: &[String],
        settings: &MergeQueueSettings,
        lost: &CancellationToken,
    ) -> Result<Landed, codemill_trackers::Error> {
        let out = |reason: String, fixable: bool| Ok(Landed::Out { reason, fixable });
        let pr = forge.pr(number).await?;
        match pr.state.as_str() {
            "merged" => return Ok(Landed::Merged(None)),
            "open" => {}
            other => return out(format!("pull request #{number} is {other}"), false),
        }
        if pr.head_sha != entry.commit {
            return out(
                format!(
                    "the head of pull request #{number} moved to {} after {} was queued and \
                     tested",
                    short(&pr.head_sha),
                    short(&entry.commit)
                ),
                false,
            );
        }
        if pr.draft {
            // Queued by a person to merge: the draft codemill opened is ready now.
            forge.mark_ready(number).await?;
            self.emit(Progress::Info {
                message: format!(
                    "{}: marked pull request #{number} ready for review to merge it",
                    entry.ticket
                ),
            });
        }
        let checked = self
            .await_checks(forge, &entry.commit, required, settings, lost)
            .await?;
        if let Some(stop) = checked {
            return Ok(stop);
        }
        let method = settings.method.as_str();
        match forge.merge_pr(number, &entry.commit, method).await? {
            MergeAnswer::Merged(sha) => Ok(Landed::Merged(Some(sha))),
            MergeAnswer::HeadMoved(message) => out(
                format!("pull request #{number} moved before it merged: {message}"),
                false,
            ),
            MergeAnswer::Refused(message) => {
                // A merge that went through but whose answer was lost is refused when asked
                // again: the PR says which.
                if forge.pr(number).await?.state == "merged" {
                    return Ok(Landed::Merged(None));
                }
                out(
                    format!(
                        "{} refused to merge pull request #{number}: {message}",
                        forge.name()
                    ),
                    false,
                )
            }
        }
    }

    /// Wait until every required check passed on `sha` (`None`), or say why not: one failed,
    /// they did not finish in time, or the queue was taken over meanwhile.
    async fn await_checks(
        &self,
        forge: &AnyForge,
        sha: &str,
        required: &[String],
        settings: &MergeQueueSettings,
        lost: &CancellationToken,
    ) -> Result<Option<Landed>, codemill_trackers::Error> {
        if required.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let timeout = Duration::from_secs(settings.checks_timeout_secs);
        let poll = Duration::from_secs(settings.checks_poll_secs);
        let mut told = false;
        loop {
            let states = forge.check_states(sha).await?;
            let state = |name: &String| states.get(name).copied().unwrap_or(CheckState::Pending);
            if let Some(failed) = required.iter().find(|r| state(r) == CheckState::Failed) {
                return Ok(Some(Landed::Out {
                    reason: format!("the required check `{failed}` failed on {}", short(sha)),
                    fixable: true,
                }));
            }
            let pending: Vec<&str> = required
                .iter()
                .filter(|r| state(r) == CheckState::Pending)
                .map(String::as_str)
                .collect();
            if pending.is_empty() {
                return Ok(None);
            }
            if started.elapsed() >= timeout {
                return Ok(Some(Landed::Out {
                    reason: format!(
                        "the required checks {} did not finish on {} within {} s",
                        pending.join(", "),
                        short(sha),
                        settings.checks_timeout_secs
                    ),
                    fixable: false,
                }));
            }
            if !told {
                told = true;
                self.emit(Progress::Info {
                    message: format!(
                        "merge queue: waiting for the required checks {} on {}",
                        pending.join(", "),
                        short(sha)
                    ),
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = lost.cancelled() => return Ok(Some(Landed::Lost)),
            }
        }
    }
}
