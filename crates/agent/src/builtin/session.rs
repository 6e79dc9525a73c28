//! Builtin sessions: the provider-neutral conversation, saved after every turn so a fix round resumes it.
//!
//! Stored as `<state_dir>/builtin-sessions/<uuid>.json`. The format is neutral (not Anthropic or
//! OpenAI wire JSON), so a session can be continued on either API.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Directory under the state dir that holds the session files.
pub(crate) const SESSIONS_DIR: &str = "builtin-sessions";
const FORMAT_VERSION: u32 = 1;

/// One message of the conversation. The system prompt is not stored: it is rebuilt every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub(crate) enum Message {
    User { content: Vec<Block> },
    Assistant { content: Vec<Block> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    Text {
        text: String,
    },
    /// `input` is the parsed arguments, or a JSON string holding arguments that did not parse.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
}

/// A conversation with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub version: u32,
    pub id: String,
    pub messages: Vec<Message>,
}

/// Why a session could not be resumed; becomes a `Failed` outcome.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("`{0}` is not a builtin session id (expected a UUID)")]
    BadId(String),
    #[error("no builtin session `{id}` in {dir}")]
    Missing { id: String, dir: PathBuf },
    #[error("cannot read builtin session: {0}")]
    Io(#[from] io::Error),
    #[error("builtin session {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Session {
    pub(crate) fn new(id: String) -> Session {
        Session {
            version: FORMAT_VERSION,
            id,
            messages: Vec::new(),
        }
    }

    /// Loads session `id` from `dir`. The id must be a UUID, so it cannot name a path elsewhere.
    pub(crate) fn load(dir: &Path, id: &str) -> Result<Session, LoadError> {
        let path = file_for(dir, id).ok_or_else(|| LoadError::BadId(id.to_string()))?;
        if !path.is_file() {
            return Err(LoadError::Missing {
                id: id.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        let text = fs_err::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|source| LoadError::Corrupt { path, source })
    }

    /// Writes the session atomically (temp file, then rename) so a kill never leaves half a file.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let path = file_for(dir, &self.id).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "session id is not a UUID")
        })?;
        crate::private::create_dir(dir)?;
        let text = serde_json::to_string_pretty(self)?;
        let tmp = path.with_extension("json.tmp");
        crate::private::write(&tmp, text)?;
        fs_err::rename(&tmp, &path)
    }

    /// Adds the user's prompt. After a turn limit the history can end with tool results (a user
    /// message); the prompt joins that message so roles keep alternating.
    pub(crate) fn push_user_text(&mut self, text: &str) {
        let block = Block::Text {
            text: text.to_string(),
        };
        match self.messages.last_mut() {
            Some(Message::User { content }) => content.push(block),
            _ => self.messages.push(Message::User {
                content: vec![block],
            }),
        }
    }
}

fn file_for(dir: &Path, id: &str) -> Option<PathBuf> {
    let id = uuid::Uuid::parse_str(id).ok()?;
    Some(dir.join(format!("{}.json", id.hyphenated())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn saves_and_loads_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        let mut session = Session::new(id.clone());
        session.push_user_text("hi");
        session.messages.push(Message::Assistant {
            content: vec![Block::ToolUse {
                id: "t1".into(),
                name: "read_file".into(),
                input: serde_json::json!({"path": "a"}),
            }],
        });
        session.messages.push(Message::User {
            content: vec![Block::ToolResult {
                tool_use_id: "t1".into(),
                content: "x".into(),
                is_error: false,
            }],
        });
        session.save(dir.path()).unwrap();
        let mut loaded = Session::load(dir.path(), &id).unwrap();
        assert_eq!(loaded, session);
        // The prompt of the next round joins the trailing tool results.
        loaded.push_user_text("again");
        assert_eq!(loaded.messages.len(), 3);
    }

    #[test]
    fn ids_that_are_not_uuids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Session::load(dir.path(), "../../etc/passwd"),
            Err(LoadError::BadId(_))
        ));
        let missing = uuid::Uuid::new_v4().to_string();
        assert!(matches!(
            Session::load(dir.path(), &missing),
            Err(LoadError::Missing { .. })
        ));
    }
}
