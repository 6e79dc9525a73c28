//! Refining an idea into a buildable ticket: the drafted spec a refinement job's agent answers
//! with (problem, proposed behaviour, checkable acceptance criteria, out of scope, open
//! questions, affected areas, a size with its reason, and for large work a proposed split), the
//! checks it must pass, and how it is written back to the ticket. Pure.

use serde::{Deserialize, Serialize};

/// The label that asks for refinement instead of a build.
pub const REFINE_LABEL: &str = "codemill:refine";
/// The label a ticket gets once its spec is written.
pub const REFINED_LABEL: &str = "codemill:refined";

/// A refinement job: what it may do once its spec is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mode {
    /// `[projects.NAME.refinement] auto_queue`.
    #[serde(default)]
    pub auto_queue: bool,
}

/// How big the work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Size {
    S,
    M,
    L,
}

/// A ticket a large idea may be split into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub title: String,
    #[serde(default)]
    pub goal: String,
    #[serde(default)]
    pub criteria: Vec<String>,
}

/// The drafted spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub problem: String,
    pub behaviour: String,
    /// Checkable statements.
    pub criteria: Vec<String>,
    #[serde(default)]
    pub out_of_scope: Vec<String>,
    #[serde(default)]
    pub questions: Vec<String>,
    #[serde(default)]
    pub areas: Vec<String>,
    pub size: Size,
    #[serde(default)]
    pub size_reason: String,
    /// Proposed tickets when the work is too large for one.
    #[serde(default)]
    pub split: Vec<Part>,
}

impl Spec {
    /// Read the spec from an agent's answer (the last JSON object holding `criteria` and
    /// `size`), checked: a problem, at least one criterion, parts with titles and criteria.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let spec = crate::findings::json_candidates(text)
            .iter()
            .rev()
            .find_map(|c| serde_json::from_str::<Spec>(c.trim()).ok())
            .ok_or_else(|| {
                "no {\"problem\", \"behaviour\", \"criteria\", \"size\", ...} object found"
                    .to_string()
            })?;
        let mut problems = Vec::new();
        if spec.problem.trim().is_empty() {
            problems.push("`problem` is empty".to_string());
        }
        if spec.criteria.iter().all(|c| c.trim().is_empty()) {
            problems.push("`criteria` needs at least one checkable statement".to_string());
        }
        for (i, p) in spec.split.iter().enumerate() {
            if p.title.trim().is_empty() || p.criteria.iter().all(|c| c.trim().is_empty()) {
                problems.push(format!("split part {} needs a title and criteria", i + 1));
            }
        }
        if problems.is_empty() {
            let mut spec = spec;
            spec.questions.retain(|q| !q.trim().is_empty());
            spec.questions.truncate(5);
            Ok(spec)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Whether it may go to the build queue without a person accepting it.
    pub fn queues_itself(&self, auto_queue: bool) -> bool {
        auto_queue && self.questions.is_empty() && self.size != Size::L && self.split.is_empty()
    }

    /// The spec as the marked section written back to the ticket (the ticket's text is kept).
    pub fn render(&self) -> String {
        let list = |items: &[String], check: bool| -> String {
            items
                .iter()
                .filter(|i| !i.trim().is_empty())
                .map(|i| {
                    if check {
                        format!("- [ ] {}\n", i.trim())
                    } else {
                        format!("- {}\n", i.trim())
                    }
                })
                .collect()
        };
        let mut out = format!(
            "## Refined spec (codemill)\n\n**Problem.** {}\n\n**Proposed behaviour.** {}\n\n**Acceptance criteria**\n{}",
            self.problem.trim(),
            self.behaviour.trim(),
            list(&self.criteria, true)
        );
        if !self.out_of_scope.is_empty() {
            out.push_str(&format!(
                "\n**Out of scope**\n{}",
                list(&self.out_of_scope, false)
            ));
        }
        if !self.areas.is_empty() {
            out.push_str(&format!(
                "\n**Affected areas**\n{}",
                list(&self.areas, false)
            ));
        }
        out.push_str(&format!(
            "\n**Size:** {:?} — {}\n",
            self.size,
            self.size_reason.trim()
        ));
        if !self.split.is_empty() {
            out.push_str("\n**Proposed split** (made into tickets once accepted)\n");
            for (i, p) in self.split.iter().enumerate() {
                out.push_str(&format!("{}. {}\n", i + 1, p.title.trim()));
                for c in p.criteria.iter().filter(|c| !c.trim().is_empty()) {
                    out.push_str(&format!("   - [ ] {}\n", c.trim()));
                }
            }
        }
        if !self.questions.is_empty() {
            out.push_str(&format!(
                "\n**Open questions** (edit the ticket to answer; it is refined again)\n{}",
                list(&self.questions, false)
            ));
        }
        out
    }
}

/// The ticket text of one part of an accepted split.
pub fn part_body(parent: &str, part: &Part) -> String {
    let mut out = format!(
        "Part of {parent}.\n\n{}\n\nAcceptance criteria:\n",
        part.goal.trim()
    );
    for c in part.criteria.iter().filter(|c| !c.trim().is_empty()) {
        out.push_str(&format!("- {}\n", c.trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SPEC: &str = "Here it is.\n```json\n{\"problem\": \"Slow export\", \"behaviour\": \"Stream it\", \"criteria\": [\"a 1 GB export starts within 1 s\"], \"questions\": [\"CSV or JSON?\", \" \"], \"size\": \"M\", \"size_reason\": \"one module\"}\n```";

    #[test]
    fn a_spec_reads_and_renders_with_its_questions() {
        let spec = Spec::parse(SPEC).unwrap();
        assert_eq!(spec.questions, ["CSV or JSON?"]);
        assert!(
            !spec.queues_itself(true),
            "open questions wait for the author"
        );
        let text = spec.render();
        assert!(
            text.contains("- [ ] a 1 GB export starts within 1 s"),
            "{text}"
        );
        assert!(text.contains("**Open questions**"), "{text}");
        assert!(text.contains("**Size:** M — one module"), "{text}");
    }

    #[test]
    fn a_spec_without_criteria_or_with_untitled_parts_is_refused() {
        let none = SPEC.replace("[\"a 1 GB export starts within 1 s\"]", "[]");
        assert!(Spec::parse(&none).unwrap_err().contains("criteria"));
        let part = SPEC.replace(
            "\"size\": \"M\"",
            "\"size\": \"L\", \"split\": [{\"title\": \"\", \"criteria\": []}]",
        );
        assert!(Spec::parse(&part).unwrap_err().contains("split part 1"));
        assert!(Spec::parse("no json").is_err());
    }

    #[test]
    fn only_a_small_clear_spec_queues_itself_and_only_when_allowed() {
        let mut spec = Spec::parse(SPEC).unwrap();
        spec.questions.clear();
        assert!(spec.queues_itself(true));
        assert!(!spec.queues_itself(false));
        spec.size = Size::L;
        assert!(!spec.queues_itself(true));
    }
}
