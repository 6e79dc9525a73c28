//! Identifiers: project names, ticket keys (`<PROJECT>-<n>`) and job ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid project name {0:?}: use 1-32 ASCII letters, digits or '_', starting with a letter (it becomes the ticket key prefix)"
    )]
    Project(String),
    #[error("invalid ticket key {0:?}: expected <PROJECT>-<number>, for example DEMO-1")]
    TicketKey(String),
}

/// A registered project's name; also the prefix of its local ticket keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectName(String);

impl ProjectName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProjectName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(ProjectName(s.to_string()))
        } else {
            Err(IdError::Project(s.to_string()))
        }
    }
}

impl TryFrom<String> for ProjectName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<ProjectName> for String {
    fn from(p: ProjectName) -> String {
        p.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket key such as `DEMO-3`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TicketKey {
    project: String,
    number: u64,
}

impl TicketKey {
    pub fn new(project: &ProjectName, number: u64) -> Self {
        TicketKey {
            project: project.0.clone(),
            number,
        }
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    /// The branch codemill works on for this ticket.
    pub fn branch(&self) -> String {
        format!("codemill/{self}")
    }

    /// The ref that keeps partial work when a job stops.
    pub fn wip_ref(&self) -> String {
        format!("refs/codemill/wip/{self}")
    }
}

impl FromStr for TicketKey {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let err = || IdError::TicketKey(s.to_string());
        let (project, number) = s.rsplit_once('-').ok_or_else(err)?;
        let project: ProjectName = project.parse().map_err(|_| err())?;
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        let number: u64 = number.parse().map_err(|_| err())?;
        if number == 0 {
            return Err(err());
        }
        Ok(TicketKey::new(&project, number))
    }
}

impl TryFrom<String> for TicketKey {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<TicketKey> for String {
    fn from(k: TicketKey) -> String {
        k.to_string()
    }
}

impl fmt::Display for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.project, self.number)
    }
}

/// A job's id: one attempt at carrying one ticket through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7())
    }

    /// The job's id as a W3C trace id (32 lowercase hex digits): one trace per job, the same
    /// in every log line and span of it.
    pub fn trace_id(&self) -> String {
        self.0.simple().to_string()
    }

    /// Last eight hex digits (the random part of a v7 id), for display.
    pub fn short(&self) -> String {
        let hex = self.0.simple().to_string();
        hex[hex.len() - 8..].to_string()
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, uuid::Error> {
        Ok(JobId(s.parse()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ticket_keys_round_trip() {
        let k: TicketKey = "DEMO-12".parse().unwrap();
        assert_eq!(k.project(), "DEMO");
        assert_eq!(k.number(), 12);
        assert_eq!(k.to_string(), "DEMO-12");
        assert_eq!(k.branch(), "codemill/DEMO-12");
        assert_eq!(k.wip_ref(), "refs/codemill/wip/DEMO-12");
    }

    #[test]
    fn bad_ticket_keys_are_refused() {
        for bad in [
            "", "DEMO", "DEMO-", "-1", "DEMO-x", "DEMO-0", "1AB-2", "A B-1",
        ] {
            assert!(bad.parse::<TicketKey>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn project_names() {
        assert!("web_app2".parse::<ProjectName>().is_ok());
        assert!("2web".parse::<ProjectName>().is_err());
        assert!("we-b".parse::<ProjectName>().is_err());
    }
}
