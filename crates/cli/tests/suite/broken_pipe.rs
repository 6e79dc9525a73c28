//! Output into a pipe nobody reads any more (`codemill show KEY | head`) ends the command
//! quietly instead of panicking.

use std::process::{Command, Stdio};

use super::harness::{Env, HELLO_GATE, KEY_VAR, engineer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_pipe_ends_the_command_quietly() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&["run", "P-1"]);
    for args in [
        &["show", "P-1"][..],
        &["show", "P-1", "--json"],
        &["status"],
        &["status", "--json"],
        &["ticket", "list", "--json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        // Closed before the binary starts, so its first write fails (EPIPE) every time rather
        // than landing in the pipe's buffer.
        drop(reader);
        let child = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
            .arg("--home")
            .arg(&env.home)
            .args(args)
            .env(KEY_VAR, "test-key-123")
            .env_remove("CODEMILL_HOME")
            .env_remove("CODEMILL_CRASH_AFTER_EFFECT")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "codemill {args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "codemill {args:?}: {stderr}");
        assert_eq!(stderr, "", "codemill {args:?}");
    }
}
