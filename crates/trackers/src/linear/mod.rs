//! linear client (in progress).
