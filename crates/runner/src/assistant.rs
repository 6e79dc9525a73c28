//! The product-owner assistant: a question about a project answered by an agent reading its
//! repository (a fresh read-only checkout of the default branch) and its backlog, in the
//! sandbox, through the model gateway, under the conversation's own budget; and a drafted
//! ticket saved to the project's tracker (local, Jira, GitHub, GitLab or Linear) at most once.
//! A question is recorded pending; the process that asked it answers it (the terminal), or a
//! worker does (the dashboard), and a claim that runs out lets another process answer.

use chrono::Utc;
use codemill_core::agent::AgentOutcome;
use codemill_core::assistant::{self, BacklogItem};
use codemill_core::config::Config;
use codemill_core::ids::{JobId, ProjectName};
use codemill_core::pipeline::AgentStage;
use codemill_store::{Answer, AssistantTurn, DraftClaim, NewAssistantTurn, NewQuestion, Store};
use codemill_trackers::Tracker;

use crate::agents::Metering;
use crate::engine::Runner;
use crate::error::RunError;
use crate::gates::POLICY_FILE;
use crate::local::LocalTracker;
use crate::outside::OutsideCache;
use crate::worker::owner_here;

/// The label a saved draft carries: a person decides whether it is refined or built.
pub const DRAFTED_LABEL: &str = "codemill:drafted";

/// The budget scope of a conversation (what its `ticket` budget counts).
pub fn budget_scope(conversation: &str) -> String {
    format!("assistant:{conversation}")
}

fn fail(message: impl Into<String>) -> RunError {
    RunError::Assistant(message.into())
}

/// Record a question for `project` in `conversation` (a new one when `None`): pending, and
/// claimed by `claim`'s owner when the asker answers it itself; workers answer the others. A
/// conversation whose budget is spent gets its answer at once: the refusal.
pub async fn ask(
    store: &Store,
    config: &Config,
    project: &str,
    conversation: Option<&str>,
    question: &str,
    by: &str,
    claim: Option<&str>,
) -> Result<AssistantTurn, RunError> {
    let Some(settings) = config.projects.get(project) else {
        return Err(fail(format!(
            "no project {project}; register it with `codemill project add`"
        )));
    };
    if question.trim().is_empty() {
        return Err(fail("the question is empty"));
    }
    let conversation = conversation
        .map(str::to_string)
        .unwrap_or_else(|| JobId::new().to_string());
    let earlier = store.assistant_turns(&conversation).await?;
    if let Some(first) = earlier.first()
        && first.project != project
    {
        return Err(fail(format!(
            "conversation {conversation} is about project {}, not {project}",
            first.project
        )));
    }
    let budget = settings.assistant.budget_usd;
    let spent = codemill_core::cost::sum_usd(earlier.iter().map(|t| t.cost_usd));
    let now = Utc::now();
    if spent >= budget {
        let why = format!(
            "this conversation spent ${spent:.4} of its ${budget:.2} budget; start a new one"
        );
        return Ok(store
            .add_assistant_turn(
                &NewAssistantTurn {
                    conversation: &conversation,
                    project,
                    asked_by: by,
                    question: question.trim(),
                    answer: "",
                    cost_usd: 0.0,
                    error: Some(&why),
                    drafts: &[],
                },
                now,
            )
            .await?);
    }
    Ok(store
        .ask_assistant(
            &NewQuestion {
                conversation: &conversation,
                project,
                asked_by: by,
                question: question.trim(),
                claim: claim.map(|owner| (owner, now + claim_for(config))),
            },
            now,
        )
        .await?)
}

/// How long a claim on a question holds: the agent's wall-clock limit and some slack.
fn claim_for(config: &Config) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(config.agent.limits.wall_clock)
        .unwrap_or(chrono::TimeDelta::hours(1))
        + chrono::TimeDelta::minutes(5)
}

impl Runner {
    /// Save a drafted ticket to its project's tracker (see [`save`]).
    pub async fn save_assistant_draft(
        &self,
        turn: i64,
        n: i64,
        by: &str,
    ) -> Result<String, RunError> {
        save(
            &self.store,
            &self.config,
            &self.outside_cache(),
            turn,
            n,
            by,
        )
        .await
    }

    /// Ask and answer here, in this process: the question is claimed by it, so no worker
    /// takes it unless this process dies first.
    pub async fn ask_assistant(
        &self,
        project: &str,
        conversation: Option<&str>,
        question: &str,
        by: &str,
    ) -> Result<AssistantTurn, RunError> {
        let owner = owner_here();
        let turn = ask(
            &self.store,
            &self.config,
            project,
            conversation,
            question,
            by,
            Some(&owner),
        )
        .await?;
        if !turn.pending {
            return Ok(turn);
        }
        let id = turn.id;
        match self.answer_assistant(turn, &owner).await? {
            Some(answered) => Ok(answered),
            None => Err(fail(format!(
                "question {id} was taken over by another process; see `codemill assistant {project} --list`"
            ))),
        }
    }

    /// Answer one pending question nobody holds, if there is one (what workers do between
    /// jobs).
    pub async fn assistant_once(&self) -> Result<Option<AssistantTurn>, RunError> {
        let owner = owner_here();
        let now = Utc::now();
        let Some(turn) = self
            .store
            .claim_assistant_turn(&owner, now + claim_for(&self.config), now)
            .await?
        else {
            return Ok(None);
        };
        self.answer_assistant(turn, &owner).await
    }

    /// Answer a question `owner` holds: a fresh read-only checkout, one agent run, the answer
    /// and its drafts recorded. `None` when the claim was lost meanwhile.
    async fn answer_assistant(
        &self,
        turn: AssistantTurn,
        owner: &str,
    ) -> Result<Option<AssistantTurn>, RunError> {
        let project = turn.project.as_str();
        let earlier: Vec<AssistantTurn> = self
            .store
            .assistant_turns(&turn.conversation)
            .await?
            .into_iter()
            .filter(|t| t.id < turn.id && !t.pending)
            .collect();
        let job = JobId::new();
        let ran = match self.workspace.default_checkout(project, job).await {
            Ok((checkout, _tip)) => {
                let mut ran = self
                    .answer_in(project, &turn, job, &checkout, &earlier)
                    .await;
                // Checked while the checkout the agent read is still there; a check that cannot
                // run leaves the answer as it is.
                if let Ok(Ok(answered)) = &mut ran {
                    match self.check_citations(project, &checkout, answered).await {
                        Ok(Some(note)) => {
                            let text = answered.run.final_text.trim_end();
                            answered.run.final_text = format!("{text}\n\n{note}");
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "checking an answer's citations"),
                    }
                }
                self.workspace.drop_checkout(project, job, &checkout).await;
                ran?
            }
            Err(e) => Err(format!("checkout: {e}")),
        };
        let (answer, cost, error) = match ran {
            Ok(ran) => {
                let error = match &ran.run.outcome {
                    AgentOutcome::Success => None,
                    AgentOutcome::BudgetExceeded { limit, spent, .. } => Some(format!(
                        "stopped at this conversation's budget: ${spent:.4} of ${limit:.2}"
                    )),
                    other => Some(format!("the agent stopped: {}", other.describe())),
                };
                (ran.run.final_text, ran.cost_usd, error)
            }
            Err(why) => (String::new(), 0.0, Some(why)),
        };
        let drafts: Vec<(String, String)> = assistant::drafts(&answer)
            .into_iter()
            .map(|d| (d.title, d.body))
            .collect();
        Ok(self
            .store
            .answer_assistant(
                turn.id,
                owner,
                &Answer {
                    answer: &answer,
                    cost_usd: cost,
                    error: error.as_deref(),
                    drafts: &drafts,
                },
            )
            .await?)
    }

    /// What a finished answer cites and could not be found: files of the checkout it was given
    /// (and their lines) and tickets of the project's backlog. `None` when everything was found.
    async fn check_citations(
        &self,
        project: &str,
        checkout: &std::path::Path,
        ran: &crate::agents::Ran,
    ) -> Result<Option<String>, RunError> {
        if ran.run.outcome != AgentOutcome::Success {
            return Ok(None);
        }
        let keys: Vec<String> = self
            .store
            .tickets(Some(project))
            .await?
            .into_iter()
            .map(|t| t.key.to_string())
            .collect();
        let mut prefixes: Vec<String> = keys
            .iter()
            .filter_map(|k| k.rsplit_once('-').map(|(p, _)| p.to_string()))
            .collect();
        prefixes.push(project.to_string());
        prefixes.sort();
        prefixes.dedup();
        let cited = assistant::citations(&ran.run.final_text, &prefixes);
        let mut missing: Vec<String> = cited
            .files
            .iter()
            .filter_map(|f| file_missing(checkout, f).map(|why| format!("`{}` ({why})", f.text)))
            .collect();
        missing.extend(
            cited
                .tickets
                .iter()
                .filter(|t| !keys.contains(t))
                .map(|t| format!("{t} (no such ticket in the backlog)")),
        );
        Ok(assistant::unverified_note(&missing))
    }

    /// One agent run answering `question` in `checkout`, with the backlog handed over as a file.
    async fn answer_in(
        &self,
        project: &str,
        asked: &AssistantTurn,
        job: JobId,
        checkout: &std::path::Path,
        earlier: &[AssistantTurn],
    ) -> Result<Result<crate::agents::Ran, String>, RunError> {
        let items: Vec<BacklogItem> = self
            .store
            .tickets(Some(project))
            .await?
            .into_iter()
            .map(|t| BacklogItem {
                key: t.key.to_string(),
                title: t.title,
                status: t.status.as_str().to_string(),
                labels: t.labels,
                body: t.body,
            })
            .collect();
        let file = checkout.join(assistant::BACKLOG_FILE);
        if let Some(dir) = file.parent()
            && let Err(e) = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&file, assistant::backlog(project, &items)))
        {
            return Ok(Err(format!("{}: {e}", file.display())));
        }
        let resolved = match self
            .config
            .agent_for(None, POLICY_FILE, AgentStage::Research)
        {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let backend = self.agents.backend(resolved.backend);
        let history: Vec<(String, String)> = earlier
            .iter()
            .filter(|t| t.error.is_none())
            .map(|t| (t.question.clone(), assistant::shown(&t.answer)))
            .collect();
        let mut budgets = self.config.budgets_for(project);
        budgets.job_usd = None;
        budgets.job_tokens = None;
        budgets.ticket_usd = self
            .config
            .projects
            .get(project)
            .map(|p| p.assistant.budget_usd);
        // Research's mode and tools: read-only, in the sandbox, through the gateway.
        let metering = Metering {
            job,
            ticket: budget_scope(&asked.conversation),
            project: project.to_string(),
            stage: AgentStage::Research,
            label: "assistant",
            round: 0,
            angle: None,
            budgets,
            live: false,
        };
        self.agents
            .run_once(
                &metering,
                &resolved,
                backend.as_ref(),
                checkout,
                assistant::brief(project, &asked.question, &history),
                None,
                "",
            )
            .await
    }
}

/// Files larger than this are only checked for being there, not for their lines.
const LINES_CHECKED_UP_TO: u64 = 4 << 20;

/// Why a cited file is not in `checkout` as cited, or `None` when it is. Only what lies inside
/// the checkout counts: a path out of it, or a link leading out, is not followed.
fn file_missing(checkout: &std::path::Path, cited: &assistant::CitedFile) -> Option<String> {
    if !cited.place.inside() {
        return Some("outside the repository".into());
    }
    let (Ok(root), Ok(found)) = (
        checkout.canonicalize(),
        checkout.join(&cited.place.path).canonicalize(),
    ) else {
        return Some("no such file on the default branch".into());
    };
    if !found.starts_with(&root) {
        return Some("outside the repository".into());
    }
    let (_, last) = cited.place.lines?;
    let meta = std::fs::metadata(&found).ok()?;
    if !meta.is_file() || meta.len() > LINES_CHECKED_UP_TO {
        return None;
    }
    let text = String::from_utf8_lossy(&std::fs::read(&found).ok()?).into_owned();
    let lines = text.lines().count();
    (usize::try_from(last).is_ok_and(|last| last > lines))
        .then(|| format!("the file has {lines} lines"))
}

/// Save draft `n` of turn `turn` as a ticket in its project's tracker; saved before, the
/// same ticket is returned. Returns the ticket's key as the tracker names it.
pub async fn save(
    store: &Store,
    config: &Config,
    outside: &OutsideCache,
    turn: i64,
    n: i64,
    by: &str,
) -> Result<String, RunError> {
    let Some(asked) = store.assistant_turn(turn).await? else {
        return Err(fail(format!("no assistant turn {turn}")));
    };
    let draft = match store.claim_assistant_draft(turn, n, Utc::now()).await? {
        None => {
            return Err(fail(format!(
                "turn {turn} has no draft {n} (it has {})",
                asked.drafts.len()
            )));
        }
        Some(DraftClaim::Saved(key)) => return Ok(key),
        Some(DraftClaim::Busy) => {
            return Err(fail(format!(
                "draft {n} of turn {turn} is being saved right now; look again in a moment"
            )));
        }
        Some(DraftClaim::Claimed(d)) => d,
    };
    let project = asked.project.as_str();
    let body = format!(
        "{}\n\n_Drafted with codemill's assistant; saved by {by}._",
        draft.body.trim()
    );
    let marker = format!("codemill:assistant:{turn}:{n}");
    let outside = match config.projects.get(project) {
        Some(p) => {
            outside
                .get(p)
                .map_err(|e| RunError::Outside {
                    project: project.to_string(),
                    message: e,
                })?
                .tracker
        }
        None => None,
    };
    let created = match outside {
        Some(tracker) => {
            tracker
                .create_issue(&marker, &draft.title, &body, DRAFTED_LABEL)
                .await
        }
        None => {
            let name: ProjectName = project
                .parse()
                .map_err(|e| fail(format!("project {project}: {e}")))?;
            LocalTracker::for_project(store.clone(), name)
                .create_issue(&marker, &draft.title, &body, DRAFTED_LABEL)
                .await
        }
    };
    let key = created.map_err(|e| RunError::Outside {
        project: project.to_string(),
        message: e.to_string(),
    })?;
    store.saved_assistant_draft(turn, n, &key).await?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cited(text: &str) -> assistant::CitedFile {
        assistant::citations(&format!("`{text}`"), &[])
            .files
            .remove(0)
    }

    #[test]
    fn a_cited_file_counts_only_inside_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(checkout.join("src")).unwrap();
        std::fs::write(checkout.join("src/lib.rs"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "a\nb\nc\nd\ne\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), checkout.join("link.txt"))
            .unwrap();
        assert_eq!(file_missing(&checkout, &cited("src/lib.rs:3")), None);
        assert_eq!(file_missing(&checkout, &cited("src/")), None);
        assert_eq!(
            file_missing(&checkout, &cited("src/lib.rs:4")).as_deref(),
            Some("the file has 3 lines")
        );
        assert_eq!(
            file_missing(&checkout, &cited("src/main.rs")).as_deref(),
            Some("no such file on the default branch")
        );
        for out in ["../secret.txt", "/etc/passwd", "link.txt:5"] {
            assert_eq!(
                file_missing(&checkout, &cited(out)).as_deref(),
                Some("outside the repository"),
                "{out}"
            );
        }
    }
}
