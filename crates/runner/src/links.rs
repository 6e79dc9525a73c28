//! Symlinks an agent left in the worktree that point outside it: never committed, because a
//! link to `/etc/passwd` or `~/.ssh` in a pushed branch would be followed by whoever checks it
//! out and builds it.

use std::path::{Component, Path, PathBuf};

/// `(link, target)` for every symlink under `root` whose target (resolved lexically from the
/// link's directory) lies outside `root`. `.git` and codemill's run directory are skipped.
pub(crate) fn outside_links(root: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    walk(root, root, &mut found);
    found.sort();
    found
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if dir == root && (name == ".git" || name == codemill_core::prompts::RUN_DIR) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            let resolved = normalize(&dir.join(&target));
            if !resolved.starts_with(root) {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                found.push((rel.display().to_string(), target.display().to_string()));
            }
        } else if meta.is_dir() {
            walk(root, &path, found);
        }
    }
}

/// `path` with `.` and `..` resolved without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_leaving_the_tree_are_found_and_others_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("wt");
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        symlink("/etc/passwd", root.join("passwd")).unwrap();
        symlink("../../../outside", root.join("src/deep/up")).unwrap();
        symlink("../lib.rs", root.join("src/deep/ok")).unwrap();
        symlink(root.join("src"), root.join("abs-inside")).unwrap();
        symlink("/etc", root.join(".git/ignored")).unwrap();
        assert_eq!(
            outside_links(&root),
            [
                ("passwd".to_string(), "/etc/passwd".to_string()),
                ("src/deep/up".to_string(), "../../../outside".to_string()),
            ]
        );
    }
}
