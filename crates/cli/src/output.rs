//! Writing to the terminal: the one place the binary prints.
//!
//! Not `println!`: it panics when stdout is a pipe whose reader has gone (`codemill show KEY |
//! head`). The workspace forbids the unsafe call that would restore SIGPIPE's default, so a
//! broken stdout ends the process here instead, quietly and successfully, as `head` intended.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};

pub fn out(text: &str) {
    stdout(format_args!("{text}\n"));
}

/// A line for people on stderr (progress, worker lines); a JSON log line in JSON mode.
pub fn err(text: &str) {
    if crate::logs::json() {
        tracing::info!(target: crate::logs::SAID, "{text}");
    } else {
        stderr(format_args!("{text}\n"));
    }
}

pub fn error(text: &str) {
    if crate::logs::json() {
        tracing::error!(target: crate::logs::SAID, "{text}");
    } else {
        stderr(format_args!("error: {text}\n"));
    }
}

pub fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => out(&s),
        Err(e) => error(&format!("cannot render JSON: {e}")),
    }
}

fn stdout(args: Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        // Nobody reads what is left; whatever the command was doing is safe to stop at any
        // point (the journal replays), like a process killed by SIGPIPE.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            error(&format!("cannot write to stdout: {e}"));
            std::process::exit(1);
        }
    }
}

fn stderr(args: Arguments<'_>) {
    // Nowhere left to report a failure to write the report.
    let _ = std::io::stderr().lock().write_fmt(args);
}
