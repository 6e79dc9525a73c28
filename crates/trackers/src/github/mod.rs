//! github client (in progress).
