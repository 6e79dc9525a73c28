//! Journals of jobs as the runner writes them, for tests that need a job in a given state
//! without running one.

use codemill_core::agent::AgentOutcome;
use codemill_core::cost::Usage;
use codemill_core::ids::{ProjectName, TicketKey};
use codemill_core::pipeline::{
    AgentStage, GateResult, JobEvent, Proposal, Readiness, ReviewPlan, StageRun,
};
use codemill_core::review::Angle;
use codemill_core::triage::TriagePolicy;

/// The key's project (a key's project part is always a valid project name).
fn project_of(key: &TicketKey) -> ProjectName {
    match key.project().parse() {
        Ok(p) => p,
        Err(e) => panic!("{key}: {e}"),
    }
}

/// A successful agent step with nothing in it.
pub fn stage_run() -> StageRun {
    StageRun {
        agent: "builtin".into(),
        model: "m".into(),
        outcome: AgentOutcome::Success,
        session_id: Some("s".into()),
        usage: Usage::default(),
        cost_usd: 0.25,
        turns: 1,
        duration_ms: 1,
        artifact: None,
        angle: None,
        findings: None,
        decisions: None,
        readiness: None,
        parse_error: None,
        repaired: false,
        changed: None,
        summary: String::new(),
        subtasks: None,
        spec: None,
    }
}

/// The journal of a job from `created` to awaiting approval of commit `c1`.
pub fn to_approval(key: &TicketKey) -> Vec<JobEvent> {
    let agent = |stage, configure: fn(&mut StageRun)| {
        let mut run = stage_run();
        configure(&mut run);
        JobEvent::AgentFinished {
            stage,
            round: 0,
            run,
        }
    };
    let updated = || JobEvent::TicketUpdated { marker: "m".into() };
    vec![
        JobEvent::Created {
            ticket: key.clone(),
            project: project_of(key),
            max_rounds: 3,
            acknowledge: false,
            follow_pr: false,
            subtask: None,
            refine: None,
        },
        agent(AgentStage::Readiness, |r| {
            r.readiness = Some(Readiness {
                ready: true,
                questions: vec![],
            })
        }),
        updated(),
        JobEvent::WorkspaceReady {
            worktree: "/w".into(),
            branch: key.branch(),
            base_commit: "base".into(),
            default_branch: "main".into(),
        },
        agent(AgentStage::Research, |_| {}),
        agent(AgentStage::Plan, |_| {}),
        updated(),
        agent(AgentStage::Implement, |_| {}),
        JobEvent::GatesFinished {
            round: 0,
            gates: vec![GateResult {
                name: "test".into(),
                command: "true".into(),
                passed: true,
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 1,
                output: String::new(),
                error: None,
                fix_on_timeout: false,
            }],
        },
        JobEvent::ReviewPlanned {
            plan: ReviewPlan {
                round: 0,
                angles: vec![Angle {
                    name: "correctness".into(),
                    why: "always".into(),
                    checklist: String::new(),
                }],
                policy: TriagePolicy::default(),
                changed_files: vec!["src/lib.rs".into()],
                snapshot: None,
            },
        },
        agent(AgentStage::Review, |r| {
            r.angle = Some("correctness".into());
            r.findings = Some(vec![]);
        }),
        agent(AgentStage::Triage, |r| r.decisions = Some(vec![])),
        JobEvent::Committed {
            commit: "c1".into(),
        },
        JobEvent::Proposed {
            proposal: Proposal {
                commit: "c1".into(),
                branch: key.branch(),
                base: "main".into(),
                title: format!("{key}: the change"),
                summary: "what changed".into(),
                diff_stat: "1 file changed".into(),
                findings: vec![],
                decisions: vec![],
                rounds: 0,
                usage: Usage::default(),
                cost_usd: 1.5,
                stack: Vec::new(),
            },
        },
        updated(),
    ]
}
