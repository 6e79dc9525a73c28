//! Triage: every merged finding goes to fix_now, backlog or ignore, with a reason, under the
//! repository's policy. The policy decides first; the triage agent decides what policy leaves
//! open; a cap on fix_now items per round keeps the loop converging. Pure.

use serde::{Deserialize, Serialize};

use crate::findings::{Finding, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    FixNow,
    Backlog,
    Ignore,
}

impl Bucket {
    pub fn as_str(&self) -> &'static str {
        match self {
            Bucket::FixNow => "fix_now",
            Bucket::Backlog => "backlog",
            Bucket::Ignore => "ignore",
        }
    }
}

/// Who made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    Policy,
    Agent,
    /// A person, rejecting a sub-task's commit with a reason.
    Person,
}

/// `[triage]` of `.codemill/pipeline.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriagePolicy {
    /// Findings at or above this severity are always fixed now.
    pub fix_now_min_severity: Severity,
    /// Findings below this confidence (0..1) are ignored.
    pub ignore_below_confidence: f32,
    /// At most this many findings are fixed per round; the rest go to the backlog.
    pub max_fix_now_per_round: usize,
    /// After the first round, only findings about files changed by the fix may block.
    pub later_rounds_changed_files_only: bool,
}

impl Default for TriagePolicy {
    fn default() -> Self {
        TriagePolicy {
            fix_now_min_severity: Severity::High,
            ignore_below_confidence: 0.3,
            max_fix_now_per_round: 5,
            later_rounds_changed_files_only: true,
        }
    }
}

/// One triage decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub finding: Finding,
    pub bucket: Bucket,
    pub reason: String,
    pub by: DecidedBy,
}

/// What the triage agent answered for finding number `id` (1-based, as listed in its brief).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDecision {
    pub id: usize,
    pub bucket: Bucket,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize)]
struct DecisionsDoc {
    decisions: Vec<AgentDecision>,
}

/// Why the triage agent's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("triage output is not valid decisions JSON: {0}")]
pub struct TriageParseError(pub String);

/// Read `{"decisions": [{"id", "bucket", "reason"}]}` from the triage agent's answer.
pub fn parse_decisions(text: &str) -> Result<Vec<AgentDecision>, TriageParseError> {
    crate::findings::json_candidates(text)
        .iter()
        .rev()
        .find_map(|c| serde_json::from_str::<DecisionsDoc>(c.trim()).ok())
        .map(|d| d.decisions)
        .ok_or_else(|| TriageParseError("no {\"decisions\": [...]} object found".into()))
}

/// The decisions policy makes on its own, by finding index; `None` where the agent decides.
pub fn policy_decisions(
    findings: &[Finding],
    policy: &TriagePolicy,
    round: u32,
    changed_files: &[String],
    earlier: &[Decision],
) -> Vec<Option<(Bucket, String)>> {
    findings
        .iter()
        .map(|f| {
            let repeat = earlier.iter().rev().find(|d| d.finding.same_as(f));
            if let Some(d) = repeat
                && d.bucket != Bucket::FixNow
            {
                return Some((
                    d.bucket,
                    format!("already triaged as {}: {}", d.bucket.as_str(), d.reason),
                ));
            }
            if f.confidence < policy.ignore_below_confidence {
                return Some((
                    Bucket::Ignore,
                    format!(
                        "confidence {:.2} is below the policy threshold {:.2}",
                        f.confidence, policy.ignore_below_confidence
                    ),
                ));
            }
            let unresolved = repeat.is_some_and(|d| d.bucket == Bucket::FixNow);
            let about_changed = f
                .file
                .as_ref()
                .is_some_and(|file| changed_files.contains(file));
            if round > 0 && policy.later_rounds_changed_files_only && !unresolved && !about_changed
            {
                return Some((
                    Bucket::Backlog,
                    "not about code changed in this fix round".into(),
                ));
            }
            if f.severity >= policy.fix_now_min_severity {
                return Some((
                    Bucket::FixNow,
                    format!(
                        "severity {} is at or above the policy's {}",
                        f.severity.as_str(),
                        policy.fix_now_min_severity.as_str()
                    ),
                ));
            }
            None
        })
        .collect()
}

/// Combine policy and agent decisions, then cap fix_now at the policy's limit.
pub fn decide(
    findings: &[Finding],
    policy_made: &[Option<(Bucket, String)>],
    agent: &[AgentDecision],
    policy: &TriagePolicy,
) -> Vec<Decision> {
    let mut out: Vec<Decision> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| match policy_made.get(i).cloned().flatten() {
            Some((bucket, reason)) => Decision {
                finding: f.clone(),
                bucket,
                reason,
                by: DecidedBy::Policy,
            },
            None => match agent.iter().find(|d| d.id == i + 1) {
                Some(d) => Decision {
                    finding: f.clone(),
                    bucket: d.bucket,
                    reason: if d.reason.is_empty() {
                        "triage agent gave no reason".into()
                    } else {
                        d.reason.clone()
                    },
                    by: DecidedBy::Agent,
                },
                None => Decision {
                    finding: f.clone(),
                    bucket: Bucket::Backlog,
                    reason: "the triage agent gave no decision; kept for later".into(),
                    by: DecidedBy::Policy,
                },
            },
        })
        .collect();
    // Keep the most severe fix_now items; the rest wait in the backlog.
    let mut fix_now: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].bucket == Bucket::FixNow)
        .collect();
    fix_now.sort_by(|&a, &b| {
        out[b]
            .finding
            .severity
            .cmp(&out[a].finding.severity)
            .then(a.cmp(&b))
    });
    for &i in fix_now.iter().skip(policy.max_fix_now_per_round) {
        out[i].bucket = Bucket::Backlog;
        out[i].reason = format!(
            "over the policy's limit of {} fix-now items per round ({})",
            policy.max_fix_now_per_round, out[i].reason
        );
        out[i].by = DecidedBy::Policy;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn f(sev: Severity, file: &str, title: &str, confidence: f32) -> Finding {
        Finding {
            angles: vec!["correctness".into()],
            severity: sev,
            file: Some(file.into()),
            line: Some(1),
            title: title.into(),
            detail: String::new(),
            suggestion: None,
            confidence,
            must_fix: false,
        }
    }

    #[test]
    fn policy_then_agent_then_cap() {
        let findings = vec![
            f(Severity::Critical, "a.rs", "panic on empty input", 0.9),
            f(Severity::Low, "a.rs", "rename variable", 0.9),
            f(Severity::Medium, "b.rs", "maybe slow", 0.1),
            f(Severity::Medium, "a.rs", "missing test for errors", 0.8),
        ];
        let policy = TriagePolicy {
            max_fix_now_per_round: 1,
            ..TriagePolicy::default()
        };
        let made = policy_decisions(&findings, &policy, 0, &[], &[]);
        assert_eq!(made[0].as_ref().unwrap().0, Bucket::FixNow);
        assert!(made[1].is_none());
        assert_eq!(made[2].as_ref().unwrap().0, Bucket::Ignore);
        let agent = parse_decisions(r#"{"decisions":[{"id":2,"bucket":"backlog","reason":"style"},{"id":4,"bucket":"fix_now","reason":"cheap"}]}"#).unwrap();
        let d = decide(&findings, &made, &agent, &policy);
        let buckets: Vec<Bucket> = d.iter().map(|d| d.bucket).collect();
        assert_eq!(
            buckets,
            [
                Bucket::FixNow,
                Bucket::Backlog,
                Bucket::Ignore,
                Bucket::Backlog
            ]
        );
        assert!(
            d[3].reason.starts_with("over the policy's limit of 1"),
            "{}",
            d[3].reason
        );
        assert_eq!(d[1].by, DecidedBy::Agent);
    }

    #[test]
    fn later_rounds_block_only_on_changed_files_and_repeats_keep_their_bucket() {
        let earlier = vec![Decision {
            finding: f(Severity::Low, "a.rs", "rename variable", 0.9),
            bucket: Bucket::Backlog,
            reason: "style".into(),
            by: DecidedBy::Agent,
        }];
        let findings = vec![
            f(Severity::Low, "a.rs", "rename the variable", 0.9),
            f(Severity::High, "c.rs", "unchecked index", 0.9),
            f(Severity::High, "a.rs", "new overflow", 0.9),
        ];
        let made = policy_decisions(
            &findings,
            &TriagePolicy::default(),
            1,
            &["a.rs".to_string()],
            &earlier,
        );
        assert_eq!(made[0].as_ref().unwrap().0, Bucket::Backlog);
        assert!(
            made[0]
                .as_ref()
                .unwrap()
                .1
                .starts_with("already triaged as backlog")
        );
        assert_eq!(made[1].as_ref().unwrap().0, Bucket::Backlog);
        assert_eq!(made[2].as_ref().unwrap().0, Bucket::FixNow);
    }

    #[test]
    fn missing_agent_decision_goes_to_backlog() {
        let findings = vec![f(Severity::Low, "a.rs", "x", 0.9)];
        let d = decide(&findings, &[None], &[], &TriagePolicy::default());
        assert_eq!(d[0].bucket, Bucket::Backlog);
        assert!(parse_decisions("no json").is_err());
    }
}
