//! What an outside webhook delivery asks for, once its vendor module has verified and read it.
//! Payloads are hints: an issue event names the issue, which is then read afresh from the tracker.

use serde::{Deserialize, Serialize};

/// A delivery, read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "hint", rename_all = "snake_case")]
pub enum Hint {
    /// Something changed on an issue; read it and start a job if it is in the trigger state.
    /// `key` is what the tracker's `issue()` reads: the issue's key, or for a Linear comment
    /// that names only its issue's id, that id.
    Issue { key: String, actor: Option<String> },
    /// Feedback on codemill's PR from `head` (review comment, changes requested, failed check,
    /// a comment mentioning codemill). An empty `head` means the delivery did not name the
    /// branch: look PR `pr` up. `pr` is 0 when only the branch is known.
    Feedback {
        head: String,
        pr: u64,
        feedback: codemill_core::pipeline::Feedback,
    },
    /// The PR from `head` was closed, merged or not.
    PrClosed {
        head: String,
        pr: u64,
        merged: bool,
        actor: Option<String>,
    },
    /// Nothing for codemill; the reason is logged.
    Ignored { reason: String },
}

/// Why a delivery was refused before it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("token expired or not yet valid")]
    Expired,
}

/// Constant-time HMAC-SHA256 check of `body` against a hex `signature`.
pub fn verify_hmac_hex(secret: &[u8], body: &[u8], signature_hex: &str) -> Result<(), VerifyError> {
    let tag = hex::decode(signature_hex.trim()).map_err(|_| VerifyError::Malformed("signature"))?;
    verify_hmac(secret, body, &tag)
}

/// Constant-time HMAC-SHA256 check of `body` against the raw `tag` (`verify_slice`; tags are
/// never compared by hand).
pub fn verify_hmac(secret: &[u8], body: &[u8], tag: &[u8]) -> Result<(), VerifyError> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|_| VerifyError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| VerifyError::Mismatch)
}

/// Equal without an early exit: both sides are hashed first, so neither the length nor the
/// first differing byte shows in the timing (for static webhook tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}
