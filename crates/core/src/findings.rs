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
    /// The review angles that raised it (several after merging duplicates).
    #[serde(default)]
    pub angles: Vec<String>,
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
    /// How sure the reviewer is, 0 to 1 (words high/medium/low are accepted).
    #[serde(default = "full_confidence", deserialize_with = "confidence")]
    pub confidence: f32,
    /// The reviewer's own call that this blocks the proposal.
    #[serde(default)]
    pub must_fix: bool,
}

fn full_confidence() -> f32 {
    1.0
}

fn confidence<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f32),
        Word(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Number(n) if n > 1.0 => (n / 100.0).clamp(0.0, 1.0),
        Raw::Number(n) => n.clamp(0.0, 1.0),
        Raw::Word(w) => match w.to_ascii_lowercase().as_str() {
            "high" => 0.9,
            "medium" => 0.6,
            "low" => 0.3,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "confidence {other:?}: expected a number 0..1 or high/medium/low"
                )));
            }
        },
    })
}

impl Finding {
    /// Blocks the proposal: the reviewer said so, or the severity is high or critical.
    pub fn is_must_fix(&self) -> bool {
        self.must_fix || self.severity >= Severity::High
    }

    /// A key that stays the same when a later round reports the same problem again.
    pub fn fingerprint(&self) -> String {
        let mut words: Vec<String> = title_words(&self.title).into_iter().collect();
        words.sort();
        format!(
            "{}|{}",
            self.file.as_deref().unwrap_or("-"),
            words.join(" ")
        )
    }

    /// Whether two findings are about the same thing: same file, nearby lines, similar titles.
    pub fn same_as(&self, other: &Finding) -> bool {
        if self.file != other.file {
            return false;
        }
        let near = match (self.line, other.line) {
            (Some(a), Some(b)) => a.abs_diff(b) <= 3,
            _ => true,
        };
        if !near {
            return false;
        }
        let a = title_words(&self.title);
        let b = title_words(&other.title);
        if a.is_empty() || b.is_empty() {
            return a == b;
        }
        let common = a.intersection(&b).count() as f32;
        let union = a.union(&b).count() as f32;
        common / union >= 0.5
    }

    pub fn location(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.clone(),
            _ => "-".into(),
        }
    }
}

fn title_words(title: &str) -> std::collections::BTreeSet<String> {
    const STOP: [&str; 12] = [
        "a", "an", "the", "of", "in", "on", "is", "to", "and", "for", "with", "not",
    ];
    title
        .split(|c: char| !c.is_alphanumeric())
        .map(|w| w.to_lowercase())
        .filter(|w| !w.is_empty() && !STOP.contains(&w.as_str()))
        .collect()
}

/// Merge findings from several angles that are about the same thing: the highest severity and
/// confidence win, angles are united, details kept once each.
pub fn merge_findings(findings: Vec<Finding>) -> Vec<Finding> {
    let mut merged: Vec<Finding> = Vec::new();
    for f in findings {
        match merged.iter_mut().find(|m| m.same_as(&f)) {
            Some(m) => {
                if f.severity > m.severity {
                    m.severity = f.severity;
                    m.title = f.title.clone();
                }
                m.confidence = m.confidence.max(f.confidence);
                m.must_fix |= f.must_fix;
                for a in f.angles {
                    if !m.angles.contains(&a) {
                        m.angles.push(a);
                    }
                }
                if !f.detail.is_empty() && !m.detail.contains(&f.detail) {
                    m.detail = format!("{}\n{}", m.detail, f.detail).trim().to_string();
                }
                if m.suggestion.is_none() {
                    m.suggestion = f.suggestion;
                }
                if m.line.is_none() {
                    m.line = f.line;
                }
            }
            None => merged.push(f),
        }
    }
    merged
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
    let mut last_err = String::from("no JSON object found");
    for candidate in json_candidates(text).iter().rev() {
        match serde_json::from_str::<FindingsDoc>(candidate.trim()) {
            Ok(doc) => return Ok(doc.findings),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(FindingsParseError(last_err))
}

/// The places in an agent's answer that may hold a JSON object: fenced blocks in order, then
/// the span from the first `{` to the last `}`. Callers try them from the last one back.
pub fn json_candidates(text: &str) -> Vec<&str> {
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
    candidates
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
    fn confidence_accepts_numbers_percent_and_words() {
        let f = parse_findings(r#"{"findings":[{"severity":"low","title":"a","confidence":"low"},{"severity":"low","title":"b","confidence":80},{"severity":"low","title":"c"}]}"#).unwrap();
        assert!((f[0].confidence - 0.3).abs() < 1e-6);
        assert!((f[1].confidence - 0.8).abs() < 1e-6);
        assert!((f[2].confidence - 1.0).abs() < 1e-6);
        assert!(
            parse_findings(r#"{"findings":[{"severity":"low","title":"a","confidence":"sure"}]}"#)
                .is_err()
        );
    }

    #[test]
    fn duplicates_from_two_angles_merge() {
        let mut a = parse_findings(r#"{"findings":[{"severity":"medium","file":"src/a.rs","line":10,"title":"SQL injection in the user query","detail":"x"}]}"#).unwrap();
        a[0].angles = vec!["security".into()];
        let mut b = parse_findings(r#"{"findings":[{"severity":"high","file":"src/a.rs","line":12,"title":"User query open to SQL injection","detail":"y"},{"severity":"low","file":"src/b.rs","title":"naming"}]}"#).unwrap();
        for f in &mut b {
            f.angles = vec!["correctness".into()];
        }
        a.extend(b);
        let m = merge_findings(a);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].severity, Severity::High);
        assert_eq!(m[0].angles, vec!["security", "correctness"]);
        assert_eq!(m[0].detail, "x\ny");
        assert_eq!(m[0].fingerprint(), "src/a.rs|injection open query sql user");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_findings("I reviewed it, all good!").is_err());
        assert!(parse_findings(r#"{"findings": [{"severity": "bad"}]}"#).is_err());
    }
}
