//! Why a run could not proceed. Job-level failures are not errors (they end the job as
//! needs_attention); these are about the request itself or codemill's own infrastructure.

use std::path::PathBuf;

use codemill_core::ids::{JobId, TicketKey};
use codemill_store::StoreError;

/// Why a run could not proceed. Job-level failures are not errors: they end the job as
/// needs_attention. These are about the request itself or our own infrastructure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no ticket {0} (see `codemill ticket list`)")]
    NoTicket(TicketKey),
    #[error(
        "ticket {ticket} belongs to project {project}, which is not registered (see `codemill project add`)"
    )]
    NoProject { ticket: TicketKey, project: String },
    #[error("{ticket} has no job yet; run `codemill run {ticket}` first")]
    NoJob { ticket: TicketKey },
    #[error("{ticket} is not awaiting approval (its job is {status})")]
    NotAwaitingApproval { ticket: TicketKey, status: String },
    #[error("{ticket}: {message}")]
    WrongState { ticket: TicketKey, message: String },
    #[error(
        "a worker is running {0} right now (see `codemill show {0}`), or its job changed while this request was made; try again"
    )]
    Busy(TicketKey),
    #[error(
        "provider {provider:?}: environment variable {var} is not set (codemill reads the API key from it)"
    )]
    MissingKey { provider: String, var: String },
    #[error(
        "the demo provider needs the embedded demo model, which is not running in this process"
    )]
    NoDemoModel,
    /// Untrusted code cannot be run safely here (bubblewrap missing or unable to sandbox).
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The project's outside tracker or forge could not be reached or refused a request.
    #[error("project {project}: {message}")]
    Outside { project: String, message: String },
    /// A request to the product-owner assistant that cannot be served as asked.
    #[error("assistant: {0}")]
    Assistant(String),
    /// A decision on a learning proposal that cannot be made as asked.
    #[error("learn: {0}")]
    Learn(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job {job}: {message}")]
    Journal { job: JobId, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
