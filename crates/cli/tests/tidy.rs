//! Tidy checks of the workspace's written rules (ARCHITECTURE.md): each test walks the sources
//! from this crate's manifest directory and fails with the list of offending paths.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// The workspace root: this crate lives in `crates/cli`.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every crate directory under `crates/` (each has a `Cargo.toml`).
fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() > 5, "found too few crates: {dirs:?}");
    dirs
}

/// All `.rs` files below `dir`, skipping build output and hidden directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn assert_none(rule: &str, offenders: Vec<String>) {
    assert!(
        offenders.is_empty(),
        "{rule}; offending paths:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let offenders = rust_files(&root().join("crates"))
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| shown(&p))
        .collect();
    assert_none(
        "every .rs file opens with a `//!` line saying what it is for",
        offenders,
    );
}

/// Whether `source` names `std::process::Command` or `tokio::process::Command`, directly, through
/// a `use` group (`process::{Command, Stdio}`) or through an imported `process` module.
fn names_process_command(source: &str) -> bool {
    for line in source.lines() {
        // Line comments may talk about commands; only code counts.
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("process::") {
            // `codemill_process::...` is the sanctioned way; only a bare `process::` path counts.
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = code[at + "process::".len()..].trim_start();
            let named = match rest.strip_prefix('{') {
                Some(group) => {
                    let group = group.split('}').next().unwrap_or_default();
                    group
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .any(|word| word == "Command")
                }
                None => {
                    rest.starts_with("Command")
                        && !rest["Command".len()..]
                            .starts_with(|c: char| c.is_alphanumeric() || c == '_')
                }
            };
            if named {
                return true;
            }
        }
    }
    false
}

#[test]
fn only_the_process_crate_spawns_child_processes() {
    // The rule is about what codemill ships: each crate's `src/` and build script. Exceptions:
    // - `crates/process` itself, including its build script (it compiles the sandbox relay with
    //   rustc) and the relay (std only, it cannot depend on anything);
    // - `tests/` and `benches/` of every crate: they start the binary under test and set up
    //   fixtures (git repositories, `kill` for crash tests) from outside codemill, as an operator
    //   would, so they must not go through codemill's own process module.
    let mut offenders = Vec::new();
    for dir in crate_dirs() {
        if dir.file_name().is_some_and(|n| n == "process") {
            continue;
        }
        let mut files = rust_files(&dir.join("src"));
        let build = dir.join("build.rs");
        if build.is_file() {
            files.push(build);
        }
        for file in files {
            if names_process_command(&std::fs::read_to_string(&file).unwrap()) {
                offenders.push(shown(&file));
            }
        }
    }
    assert_none(
        "child processes are spawned only through codemill-process (`Cmd`, `ExecPolicy`), not \
         std::process::Command or tokio::process::Command",
        offenders,
    );
}

#[test]
fn the_command_check_sees_the_usual_spellings() {
    for yes in [
        "let c = std::process::Command::new(\"git\");",
        "use tokio::process::Command;",
        "use std::process::{Command, Stdio};",
        "use std::process::{ExitCode, Command as Std};",
        "use std::{io, process::{Stdio, Command}};",
        "let c = process::Command::new(\"sh\");",
    ] {
        assert!(names_process_command(yes), "{yes}");
    }
    for no in [
        "use std::process::ExitCode;",
        "use std::process::{ExitCode, Stdio};",
        "use codemill_process::{Cmd, Command};",
        "let c = Cmd::new(\"git\"); // not std::process::Command",
        "use std::process::CommandExt;",
    ] {
        assert!(!names_process_command(no), "{no}");
    }
}

/// The names of the crates a manifest depends on in `section` (`dependencies`,
/// `dev-dependencies`, `build-dependencies`), including `[target.'cfg(..)'.section]` tables and
/// renamed packages (`alias = { package = "..." }`).
fn dependency_names(manifest: &toml::Table, section: &str) -> Vec<String> {
    let mut tables: Vec<&toml::Table> = manifest
        .get(section)
        .and_then(toml::Value::as_table)
        .into_iter()
        .collect();
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        tables.extend(
            targets
                .values()
                .filter_map(|t| t.get(section).and_then(toml::Value::as_table)),
        );
    }
    tables
        .into_iter()
        .flat_map(|t| t.iter())
        .map(|(name, spec)| {
            spec.get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

fn manifest(dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", shown(&dir.join("Cargo.toml"))))
}

#[test]
fn anyhow_only_in_the_binary() {
    // Libraries return `thiserror` enums. Their tests are held to the same rule (dev-dependencies
    // included): tests may unwrap, so anyhow would add nothing but a second error style.
    let mut offenders = Vec::new();
    for dir in crate_dirs() {
        if dir.file_name().is_some_and(|n| n == "cli") {
            continue;
        }
        let manifest = manifest(&dir);
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if dependency_names(&manifest, section)
                .iter()
                .any(|d| d == "anyhow")
            {
                offenders.push(format!("{} [{section}]", shown(&dir.join("Cargo.toml"))));
            }
        }
    }
    assert_none("anyhow is a dependency of crates/cli only", offenders);
}

#[test]
fn testkit_is_only_a_dev_dependency() {
    // The fakes and their dependencies must not reach the release binary; the demo model comes
    // from codemill-scripted-model.
    let mut offenders = Vec::new();
    for dir in crate_dirs() {
        let manifest = manifest(&dir);
        for section in ["dependencies", "build-dependencies"] {
            if dependency_names(&manifest, section)
                .iter()
                .any(|d| d == "codemill-testkit")
            {
                offenders.push(format!("{} [{section}]", shown(&dir.join("Cargo.toml"))));
            }
        }
    }
    assert_none(
        "codemill-testkit appears only in [dev-dependencies]",
        offenders,
    );
}

#[test]
fn core_does_no_io_so_it_has_no_tokio() {
    // What core ships (normal and build dependencies); its tests may use anything.
    let dir = root().join("crates/core");
    let manifest = manifest(&dir);
    let offenders = ["dependencies", "build-dependencies"]
        .into_iter()
        .filter(|section| {
            dependency_names(&manifest, section)
                .iter()
                .any(|d| d == "tokio" || d.starts_with("tokio-"))
        })
        .map(|section| format!("{} [{section}]", shown(&dir.join("Cargo.toml"))))
        .collect();
    assert_none("codemill-core has no tokio dependency", offenders);
}
