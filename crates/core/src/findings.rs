//! Review findings: their shape, how a reviewer's answer is parsed, and which ones must be fixed.

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One thing a reviewer found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    pub title: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub suggestion: Option<String>,
    /// The reviewer's own call that this blocks the proposal.
    #[serde(default)]
    pub must_fix: bool,
}

impl Finding {
    /// Blocks the proposal: the reviewer said so, or the severity is high or critical.
    pub fn is_must_fix(&self) -> bool {
        self.must_fix || self.severity >= Severity::High
    }

    pub fn location(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.clone(),
            _ => "-".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct FindingsDoc {
    findings: Vec<Finding>,
}

/// Why a reviewer's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("review output is not valid findings JSON: {0}")]
pub struct FindingsParseError(pub String);

/// Read `{"findings": [...]}` from a reviewer's final answer.
///
/// Reviewers wrap JSON in prose or a fenced block; the last fenced ```json block wins, then the
/// last top-level object in the text.
pub fn parse_findings(text: &str) -> Result<Vec<Finding>, FindingsParseError> {
    let mut candidates: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
        let body = &after[body_start..];
        match body.find("```") {
            Some(end) => {
                candidates.push(&body[..end]);
                rest = &body[end + 3..];
            }
            None => break,
        }
    }
    if let (Some(open), Some(close)) = (text.find('{'), text.rfind('}'))
        && open < close
    {
        candidates.push(&text[open..=close]);
    }
    let mut last_err = String::from("no JSON object found");
    for candidate in candidates.iter().rev() {
        match serde_json::from_str::<FindingsDoc>(candidate.trim()) {
            Ok(doc) => return Ok(doc.findings),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(FindingsParseError(last_err))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_fenced_json() {
        let text = "Looks fine mostly.\n```json\n{\"findings\":[{\"severity\":\"high\",\"file\":\"src/lib.rs\",\"line\":3,\"title\":\"panics\",\"detail\":\"unwrap on empty\"}]}\n```\n";
        let f = parse_findings(text).unwrap();
        assert_eq!(f.len(), 1);
        assert!(f[0].is_must_fix());
        assert_eq!(f[0].location(), "src/lib.rs:3");
    }

    #[test]
    fn parses_bare_object_and_empty_list() {
        assert!(
            parse_findings("ok {\"findings\": []} done")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn low_severity_is_not_blocking() {
        let f = parse_findings(r#"{"findings":[{"severity":"low","title":"naming"}]}"#).unwrap();
        assert!(!f[0].is_must_fix());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_findings("I reviewed it, all good!").is_err());
        assert!(parse_findings(r#"{"findings": [{"severity": "bad"}]}"#).is_err());
    }
}
