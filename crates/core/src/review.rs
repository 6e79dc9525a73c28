//! Review angles: which angles review a change, and the checklist each one follows.
//!
//! Four angles always run; more are chosen from the diff. A repository adds or replaces angles
//! with `.codemill/review/<angle>.md` checklists.

use serde::{Deserialize, Serialize};

/// One angle of a review round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Angle {
    pub name: String,
    /// Why this angle runs: "always", "diff touches Cargo.toml", "repository checklist".
    pub why: String,
    pub checklist: String,
}

const CORRECTNESS: &str = "- Does the change do what the ticket and plan ask, for every acceptance criterion?\n- Edge cases: empty input, boundaries, Unicode, large input, concurrency.\n- Off-by-one errors, wrong conditions, unhandled branches.\n- Do the tests prove the behaviour, or only run the code?";
const SECURITY: &str = "- Injection (SQL, shell, path traversal, template), unsafe deserialisation.\n- Secrets in code, logs or errors; credentials handled safely.\n- Authorisation and input validation at trust boundaries.\n- Panics or crashes an attacker can trigger (denial of service).";
const TESTS: &str = "- Are there tests for the new behaviour and its failure modes?\n- Would the tests fail if the change were wrong (no tests that cannot fail)?\n- Are tests deterministic (no sleeps, no network, no order dependence)?";
const ARCHITECTURE: &str = "- Does the change follow the codebase's existing patterns, names and layout?\n- Is logic in the right module; is anything duplicated that already exists?\n- Is it as simple as the ticket allows?";
const DATA_INTEGRITY: &str = "- Migrations: reversible or safe to run twice; no data loss; locks on large tables.\n- Constraints, defaults and NULL handling; transactions around multi-step writes.";
const PERFORMANCE: &str = "- Work inside loops that could move out; N+1 queries; unbounded collections.\n- Needless copies or allocations on hot paths; missing indexes for new queries.";
const ERROR_HANDLING: &str = "- Errors propagated with context, not swallowed; no panics/unwraps on input-dependent paths.\n- Messages name the problem; resources released on failure.";
const PUBLIC_API: &str = "- Breaking changes to public functions, types, endpoints or formats; are they intended and versioned?\n- Documentation of new public items; backwards compatibility.";
const DEPENDENCIES: &str = "- New dependencies: needed, maintained, licence-compatible, pinned?\n- Lockfile changes match manifest changes; no unexpected upgrades.";

/// The built-in checklist of an angle, if it has one.
pub fn default_checklist(angle: &str) -> Option<&'static str> {
    Some(match angle {
        "correctness" => CORRECTNESS,
        "security" => SECURITY,
        "tests" => TESTS,
        "architecture" => ARCHITECTURE,
        "data-integrity" => DATA_INTEGRITY,
        "performance" => PERFORMANCE,
        "error-handling" => ERROR_HANDLING,
        "public-api" => PUBLIC_API,
        "dependencies" => DEPENDENCIES,
        _ => return None,
    })
}

fn is_dependency_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "Cargo.toml"
            | "Cargo.lock"
            | "package.json"
            | "package-lock.json"
            | "pnpm-lock.yaml"
            | "yarn.lock"
            | "go.mod"
            | "go.sum"
            | "pyproject.toml"
            | "poetry.lock"
            | "Gemfile"
            | "Gemfile.lock"
            | "pom.xml"
            | "build.gradle"
    ) || (name.starts_with("requirements") && name.ends_with(".txt"))
}

/// Added lines of a unified diff, without the `+` marker.
fn added_lines(diff: &str) -> impl Iterator<Item = &str> {
    diff.lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| &l[1..])
}

/// Choose the angles for a change: the four default ones, those the diff calls for, and every
/// repository checklist (which also replaces a default checklist of the same name).
pub fn choose_angles(
    changed_files: &[String],
    diff: &str,
    repo_checklists: &[(String, String)],
) -> Vec<Angle> {
    let mut angles: Vec<Angle> = ["correctness", "security", "tests", "architecture"]
        .iter()
        .map(|a| Angle {
            name: a.to_string(),
            why: "always".into(),
            checklist: default_checklist(a).unwrap_or_default().to_string(),
        })
        .collect();
    let mut add = |name: &str, why: String| {
        if !angles.iter().any(|a| a.name == name) {
            angles.push(Angle {
                name: name.into(),
                why,
                checklist: default_checklist(name).unwrap_or_default().to_string(),
            });
        }
    };
    if let Some(f) = changed_files
        .iter()
        .find(|f| f.contains("migration") || f.ends_with(".sql") || f.contains("schema"))
    {
        add("data-integrity", format!("diff touches {f}"));
    }
    if let Some(f) = changed_files.iter().find(|f| is_dependency_file(f)) {
        add("dependencies", format!("diff touches {f}"));
    }
    let added: Vec<&str> = added_lines(diff).collect();
    let has = |needles: &[&str]| {
        added
            .iter()
            .find(|l| needles.iter().any(|n| l.contains(n)))
            .copied()
    };
    if let Some(l) = has(&[
        "unwrap()",
        "expect(",
        "panic!",
        "catch",
        "except",
        "raise ",
        "throw ",
        "Result<",
        "err != nil",
    ]) {
        add(
            "error-handling",
            format!("diff adds error handling: `{}`", l.trim()),
        );
    }
    if let Some(l) = has(&[
        "pub fn ",
        "pub struct ",
        "pub enum ",
        "pub trait ",
        "export ",
        "@app.",
        "router.",
    ]) {
        add(
            "public-api",
            format!("diff changes public items: `{}`", l.trim()),
        );
    }
    if added.len() > 300 {
        add(
            "performance",
            format!("large change ({} added lines)", added.len()),
        );
    } else if let Some(l) = has(&["SELECT ", "JOIN "]) {
        add("performance", format!("diff adds queries: `{}`", l.trim()));
    }
    for (name, text) in repo_checklists {
        match angles.iter_mut().find(|a| &a.name == name) {
            Some(a) => {
                a.checklist = text.clone();
                a.why = format!("{} (repository checklist)", a.why);
            }
            None => angles.push(Angle {
                name: name.clone(),
                why: "repository checklist".into(),
                checklist: text.clone(),
            }),
        }
    }
    angles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: &[Angle]) -> Vec<&str> {
        a.iter().map(|a| a.name.as_str()).collect()
    }

    #[test]
    fn defaults_always_run() {
        let a = choose_angles(&["README.md".into()], "+hello\n", &[]);
        assert_eq!(
            names(&a),
            ["correctness", "security", "tests", "architecture"]
        );
    }

    #[test]
    fn the_diff_adds_angles() {
        let files = vec![
            "migrations/0002.sql".to_string(),
            "Cargo.toml".into(),
            "src/lib.rs".into(),
        ];
        let diff = "+++ b/src/lib.rs\n+pub fn load() -> Result<(), E> {\n+    let x = q.unwrap();\n+    db.query(\"SELECT * FROM t JOIN u\")\n";
        let a = choose_angles(&files, diff, &[]);
        assert_eq!(
            names(&a),
            [
                "correctness",
                "security",
                "tests",
                "architecture",
                "data-integrity",
                "dependencies",
                "error-handling",
                "public-api",
                "performance"
            ]
        );
        assert_eq!(a[4].why, "diff touches migrations/0002.sql");
    }

    #[test]
    fn repository_checklists_add_and_replace() {
        let repo = vec![
            (
                "security".to_string(),
                "- our own security list".to_string(),
            ),
            ("accessibility".to_string(), "- alt texts".to_string()),
        ];
        let a = choose_angles(&[], "", &repo);
        assert_eq!(a[1].checklist, "- our own security list");
        assert_eq!(a.last().map(|a| a.name.as_str()), Some("accessibility"));
    }
}
