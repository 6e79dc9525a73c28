//! The per-run raw log: every backend appends what it saw, line by line, as it arrives.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::AgentError;

/// An append-only log file; write errors name the path.
pub(crate) struct RawLog {
    file: tokio::fs::File,
    path: PathBuf,
}

impl RawLog {
    /// Opens (creating parent directories) `path` for appending.
    pub(crate) fn open(path: &Path) -> Result<RawLog, AgentError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::private::create_dir(parent).map_err(AgentError::Log)?;
        }
        let file = crate::private::append(path).map_err(AgentError::Log)?;
        Ok(RawLog {
            file: tokio::fs::File::from_std(file),
            path: path.to_path_buf(),
        })
    }

    /// Appends `bytes` and a newline unless they already end with one.
    pub(crate) async fn line(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        let result = async {
            self.file.write_all(bytes).await?;
            if !bytes.ends_with(b"\n") {
                self.file.write_all(b"\n").await?;
            }
            self.file.flush().await
        }
        .await;
        result.map_err(|e| {
            AgentError::Log(io::Error::new(
                e.kind(),
                format!("{e} writing {}", self.path.display()),
            ))
        })
    }

    /// Appends one value as a JSON line.
    pub(crate) async fn json(&mut self, value: &impl serde::Serialize) -> Result<(), AgentError> {
        let text = serde_json::to_string(value).map_err(|e| AgentError::Log(e.into()))?;
        self.line(text.as_bytes()).await
    }
}
