//! `codemill demo`: three tickets end to end; branches in the remote; the sample's tests pass on each.

use super::harness::git;

#[test]
fn demo_json_reports_three_shipped_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("demo-home");
    let out = assert_cmd::Command::cargo_bin("codemill")
        .unwrap()
        .args(["demo", "--json", "--home"])
        .arg(&home)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["home"],
        std::fs::canonicalize(&home).unwrap().display().to_string()
    );
    let remote = std::path::PathBuf::from(v["remote"].as_str().unwrap());
    let tickets = v["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 3);
    let rounds: Vec<u64> = tickets
        .iter()
        .map(|t| t["rounds"].as_u64().unwrap())
        .collect();
    assert_eq!(rounds, [0, 1, 1]);
    for t in tickets {
        assert_eq!(t["state"], "done");
        for field in ["key", "branch", "commit", "pr", "tokens", "cost_usd"] {
            assert!(!t[field].is_null(), "{field} missing in {t}");
        }
        assert!(t["tokens"].as_u64().unwrap() > 0);
        assert!(t["cost_usd"].as_f64().unwrap() > 0.0);
    }
    // Each branch is in the remote at the reported commit, with the expected change, and the
    // sample's own tests pass on it.
    let checkout = dir.path().join("check");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    let expect = [
        ("codemill/DEMO-1", "src/slug.rs", "pub fn slugify"),
        ("codemill/DEMO-2", "src/count.rs", "split_whitespace"),
        (
            "codemill/DEMO-3",
            "src/truncate.rs",
            "chars().take(max_chars)",
        ),
    ];
    for (t, (branch, file, needle)) in tickets.iter().zip(expect) {
        assert_eq!(t["branch"], branch);
        let tip = git(&checkout, &["rev-parse", &format!("origin/{branch}")]);
        assert_eq!(t["commit"], tip.as_str());
        git(&checkout, &["checkout", "-q", &tip]);
        let text = std::fs::read_to_string(checkout.join(file)).unwrap();
        assert!(text.contains(needle), "{branch}: {file} lacks {needle}");
        let test = std::process::Command::new("cargo")
            .args(["test", "--quiet", "--offline"])
            .current_dir(&checkout)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "{branch}: {}",
            String::from_utf8_lossy(&test.stderr)
        );
    }
    // The hint at the end: a shipped ticket merges into the demo repository's main.
    let merged = assert_cmd::Command::cargo_bin("codemill")
        .unwrap()
        .args(["--home"])
        .arg(&home)
        .args(["merge", "DEMO-1"])
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    git(&checkout, &["fetch", "-q", "origin"]);
    let main = git(&checkout, &["show", "origin/main:src/slug.rs"]);
    assert!(main.contains("pub fn slugify"), "{main}");
}
