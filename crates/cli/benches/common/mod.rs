//! What the hand-run CLI benchmarks share: the built binary on a home, a fresh project whose
//! remote holds a policy, and commands that must succeed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The provider key's variable in the benchmarks' homes.
pub const KEY_VAR: &str = "CODEMILL_BENCH_MODEL_KEY";

/// `codemill --home HOME …` of the binary cargo built for the bench.
pub fn codemill(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_codemill"));
    c.arg("--home").arg(home);
    c.env(KEY_VAR, "bench-key");
    c.env_remove("CODEMILL_HOME");
    c
}

/// Run `c`; it must succeed; its stdout.
pub fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn git(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .args(["-c", "user.name=b", "-c", "user.email=b@b"])
            .args(args)
            .current_dir(dir),
    );
}

/// Under `dir`: a remote whose main holds a README and `policy` as `.codemill/pipeline.toml`,
/// and a home with `project` registered on it, every agent step on the scripted model at
/// `model`, and `extra` appended to its config.
pub fn home_with_project(
    dir: &Path,
    model: &str,
    project: &str,
    policy: &str,
    extra: &str,
) -> PathBuf {
    let seed = dir.join("seed");
    std::fs::create_dir_all(seed.join(".codemill")).unwrap();
    std::fs::write(seed.join("README.md"), "# bench\n").unwrap();
    std::fs::write(seed.join(".codemill/pipeline.toml"), policy).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "first"]);
    git(dir, &["clone", "-q", "--bare", "seed", "remote.git"]);
    let home = dir.join("home");
    run_ok(codemill(&home).arg("init"));
    let remote = dir.join("remote.git");
    run_ok(codemill(&home).args([
        "project",
        "add",
        project,
        "--repo",
        remote.to_str().unwrap(),
    ]));
    let config = home.join("codemill.toml");
    let projects = std::fs::read_to_string(&config).unwrap();
    let projects = &projects[projects.find("\n[projects.").unwrap()..];
    std::fs::write(
        &config,
        format!(
            "[agent]\nbackend = \"builtin\"\nprovider = \"scripted\"\nmodel = \"bench-model\"\nmax_turns = 10\n\n[providers.scripted]\napi = \"anthropic\"\nbase_url = \"{model}\"\napi_key_env = \"{KEY_VAR}\"\n{projects}\n{extra}"
        ),
    )
    .unwrap();
    home
}
