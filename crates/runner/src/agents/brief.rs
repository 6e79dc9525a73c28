//! What each stage's agent is told: its brief, working directory and the inputs earlier stages
//! left in the store (research notes, the plan, review and triage inputs).

use super::*;

impl AgentPool {
    /// The stage's brief and working directory, or why it cannot run. Earlier outputs (research
    /// notes, the plan, review inputs) come from the store, wherever they were made.
    pub(super) async fn brief(
        &self,
        step: &Step<'_>,
        resumed: bool,
    ) -> Result<Result<(String, PathBuf), String>, RunError> {
        let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
        for name in [&step.state.research_artifact, &step.state.plan_artifact]
            .into_iter()
            .flatten()
        {
            match self.store.artifact(step.job, name).await? {
                Some(kept) => inputs.push((name.clone(), kept.body)),
                None => return Ok(Err(format!("artifact {name} is not in the store"))),
            }
        }
        if step.stage == AgentStage::Review {
            let prefix = review_prefix(step.round);
            for kept in self.store.artifacts(step.job, &prefix).await? {
                inputs.push((kept.name[prefix.len()..].to_string(), kept.body));
            }
        }
        // A build of a refined idea works from the spec that was accepted: the latest one
        // written on the ticket.
        let spec = if step.state.refine.is_none() {
            self.store
                .comments(&step.ticket.key)
                .await?
                .into_iter()
                .rfind(|c| c.marker.as_deref().is_some_and(|m| m.ends_with(":spec")))
                .map(|c| c.body)
        } else {
            None
        };
        Ok(self.brief_with(step, &inputs, spec.as_deref(), resumed))
    }

    pub(super) fn brief_with(
        &self,
        step: &Step<'_>,
        inputs: &[(String, Vec<u8>)],
        spec: Option<&str>,
        resumed: bool,
    ) -> Result<(String, PathBuf), String> {
        let state = step.state;
        let ticket = step.ticket;
        let text = TicketText {
            key: ticket.key.to_string(),
            title: ticket.title.clone(),
            body: match spec {
                Some(spec) => format!("{}\n\n{}", ticket.body.trim_end(), spec.trim()),
                None => ticket.body.clone(),
            },
        };
        if step.stage == AgentStage::Readiness {
            // No workspace exists yet, and none should for a ticket that is not ready.
            let dir = self.home.agent_state(step.job, "readiness-cwd");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok((prompts::readiness(&text), dir));
        }
        let worktree = step
            .worktree
            .clone()
            .ok_or("the ticket's worktree is missing")?;
        let run_dir = worktree.join(RUN_DIR);
        std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
        // Earlier outputs are handed over as files in the worktree's run directory.
        for (name, body) in inputs {
            std::fs::write(run_dir.join(name), body)
                .map_err(|e| format!("artifact {name}: {e}"))?;
        }
        let research_file = format!("{RUN_DIR}/research.md");
        let plan_file = format!("{RUN_DIR}/plan.md");
        let prompt = match step.stage {
            AgentStage::Readiness => prompts::readiness(&text),
            AgentStage::Research => prompts::research(&text),
            AgentStage::Plan if state.refine.is_some() => prompts::refine(&text, &research_file),
            AgentStage::Plan => prompts::plan(&text, &research_file, step.split),
            AgentStage::Implement => prompts::implement(&text, &research_file, &plan_file),
            AgentStage::Review => {
                let plan = state
                    .review_plan
                    .as_ref()
                    .ok_or("no review plan for this round")?;
                let angle = plan
                    .angles
                    .iter()
                    .find(|a| Some(&a.name) == step.angle.as_ref())
                    .ok_or("the review angle is not in this round's plan")?;
                let rereview = state.round > 0;
                let files = ReviewFiles {
                    plan: plan_file,
                    diff: format!("{RUN_DIR}/diff.patch"),
                    delta: rereview.then(|| format!("{RUN_DIR}/delta.patch")),
                    earlier_findings: rereview.then(|| format!("{RUN_DIR}/earlier-findings.md")),
                };
                prompts::review(&text, &angle.name, &angle.checklist, &files, &state.gates)
            }
            AgentStage::Triage => {
                let (merged, made) = self.triage_inputs(state);
                let listed: Vec<_> = merged
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        (
                            i + 1,
                            f,
                            made[i]
                                .as_ref()
                                .map(|(b, r)| format!("{} — {r}", b.as_str())),
                        )
                    })
                    .collect();
                let listed: Vec<_> = listed
                    .iter()
                    .map(|(i, f, d)| (*i, *f, d.as_deref()))
                    .collect();
                prompts::triage(&text, step.round, &listed)
            }
            AgentStage::Fix if state.stage == codemill_core::pipeline::Stage::FeedbackFix => {
                // Gates failing now are from this round's earlier attempt, if any.
                let failing = if state.feedback_attempts > 0 {
                    state.failing_gates()
                } else {
                    Vec::new()
                };
                prompts::fix_feedback(step.round, &state.feedback, &failing)
            }
            AgentStage::Fix => {
                let failing = state.failing_gates();
                // Findings belong in the brief only when the review saw the current code.
                let fix_now = if failing.is_empty() {
                    state.fix_now()
                } else {
                    Vec::new()
                };
                let fix = prompts::fix(step.round, &failing, &fix_now);
                if resumed {
                    fix
                } else {
                    prompts::continued(&text, &research_file, &plan_file, &fix)
                }
            }
        };
        Ok((prompt, worktree))
    }

    /// This round's findings merged across angles, and what policy decides on its own.
    #[allow(clippy::type_complexity)]
    pub(super) fn triage_inputs(
        &self,
        state: &JobState,
    ) -> (
        Vec<codemill_core::findings::Finding>,
        Vec<Option<(codemill_core::triage::Bucket, String)>>,
    ) {
        let round_findings: Vec<_> = state
            .reviews
            .iter()
            .filter(|r| r.round == state.round)
            .flat_map(|r| r.findings.clone())
            .collect();
        let merged = merge_findings(round_findings);
        let default_policy = codemill_core::triage::TriagePolicy::default();
        let plan = state.review_plan.as_ref();
        let policy = plan.map(|p| &p.policy).unwrap_or(&default_policy);
        let changed: &[String] = plan.map(|p| p.changed_files.as_slice()).unwrap_or(&[]);
        let earlier: Vec<_> = state
            .triage
            .iter()
            .filter(|(r, _)| *r < state.round)
            .flat_map(|(_, d)| d.clone())
            .collect();
        let made = policy_decisions(&merged, policy, state.round, changed, &earlier);
        (merged, made)
    }
}
