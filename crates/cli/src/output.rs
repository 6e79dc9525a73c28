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

/// An error with its causes, each said once: a cause whose text its context already ends
/// with (many errors print their source themselves) is not repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that prints its source itself, as many library errors do.
    #[derive(Debug)]
    struct Opening {
        path: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for Opening {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "opening {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Opening {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotADirectory, "Not a directory");
        // A source the error already prints: said once.
        let e = anyhow::Error::new(Opening {
            path: "/h/clones",
            source: io(),
        });
        assert_eq!(error_text(&e), "opening /h/clones: Not a directory");
        // Context over an error that does not print its source: every part, in order.
        let e = anyhow::Error::new(io()).context("creating the home");
        assert_eq!(error_text(&e), "creating the home: Not a directory");
        let e = anyhow::Error::new(io())
            .context("creating /h/clones")
            .context("init");
        assert_eq!(error_text(&e), "init: creating /h/clones: Not a directory");
    }
}
