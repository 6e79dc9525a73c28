//! What the server's benchmarks share: a `Control` that refuses everything (the benchmarks do
//! not exercise state changes) and sizes read from the environment.

use codemill_core::ids::{JobId, TicketKey};
use codemill_server::{Control, ControlError, ControlFuture};

/// State changes are not exercised here.
pub struct NoControl;

impl Control for NoControl {
    fn approve<'a>(
        &'a self,
        _: &'a TicketKey,
        _: &'a str,
        _: Option<&'a str>,
    ) -> ControlFuture<'a, JobId> {
        Box::pin(async { Err(ControlError::Failed("not in this benchmark".into())) })
    }
    fn reject<'a>(&'a self, _: &'a TicketKey, _: &'a str, _: &'a str) -> ControlFuture<'a, JobId> {
        Box::pin(async { Err(ControlError::Failed("not in this benchmark".into())) })
    }
    fn cancel<'a>(&'a self, _: &'a TicketKey, _: &'a str) -> ControlFuture<'a, JobId> {
        Box::pin(async { Err(ControlError::Failed("not in this benchmark".into())) })
    }
    fn retry<'a>(&'a self, _: &'a TicketKey) -> ControlFuture<'a, JobId> {
        Box::pin(async { Err(ControlError::Failed("not in this benchmark".into())) })
    }
}

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
