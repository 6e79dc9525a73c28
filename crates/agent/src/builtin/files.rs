//! The builtin file tools (read, write, edit, list, search), confined to the worktree.
//!
//! Every path the model gives goes through [`Worktree::resolve`]: absolute paths outside the
//! worktree, `..` escapes and symlinks that resolve outside are refused. Errors are plain strings
//! because they go back to the model as tool errors.

use std::fs;
use std::path::{Component, Path, PathBuf};

use regex::Regex;

use crate::text::truncate;

/// Cap on what one tool result sends back to the model.
pub(crate) const OUTPUT_MAX: usize = 32 * 1024;
const DEFAULT_READ_LINES: usize = 2000;
const LIST_MAX: usize = 500;
const SEARCH_MATCHES_MAX: usize = 200;
const SEARCH_FILE_MAX_BYTES: u64 = 1024 * 1024;
const SEARCH_LINE_MAX: usize = 300;

/// The worktree root (canonical), the only place file tools may touch.
#[derive(Debug, Clone)]
pub(crate) struct Worktree {
    root: PathBuf,
}

impl Worktree {
    pub(crate) fn new(dir: &Path) -> std::io::Result<Worktree> {
        Ok(Worktree {
            root: fs_err::canonicalize(dir)?,
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a model-supplied path to a real path inside the worktree, or explains why not.
    pub(crate) fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let given = Path::new(path);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.root.join(given)
        };
        // Lexical first, so `a/../../x` is refused even when `a` does not exist; IO then uses
        // the normalised path, which has no `..` left for a symlink to redirect.
        let mut normal = PathBuf::new();
        for component in joined.components() {
            match component {
                Component::ParentDir => {
                    normal.pop();
                }
                Component::CurDir => {}
                other => normal.push(other),
            }
        }
        if !normal.starts_with(&self.root) {
            return Err(format!("`{path}` is outside the worktree"));
        }
        // Symlinks: the deepest part that exists must resolve inside the worktree too.
        let mut existing = normal.as_path();
        let mut rest = Vec::new();
        while fs::symlink_metadata(existing).is_err() {
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => break,
            }
        }
        let real =
            fs::canonicalize(existing).map_err(|e| format!("`{path}`: cannot resolve ({e})"))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "`{path}` resolves outside the worktree (through a symlink)"
            ));
        }
        let mut resolved = real;
        for name in rest.into_iter().rev() {
            resolved.push(name);
        }
        Ok(resolved)
    }

    /// Like [`Worktree::resolve`], and also refuses git's own metadata (hooks would run later).
    fn resolve_for_write(&self, path: &str) -> Result<PathBuf, String> {
        let resolved = self.resolve(path)?;
        let inside = resolved.strip_prefix(&self.root).unwrap_or(&resolved);
        if inside.components().any(|c| c.as_os_str() == ".git") {
            return Err(format!(
                "`{path}` is inside .git; git metadata is not writable"
            ));
        }
        if inside.as_os_str().is_empty() {
            return Err("the worktree root itself is not a file".to_string());
        }
        Ok(resolved)
    }

    /// A path relative to the root, for messages.
    fn show(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// `read_file{path, offset?, limit?}`: lines `offset..offset+limit` (1-based).
    pub(crate) fn read_file(
        &self,
        path: &str,
        offset: Option<usize>,
        limit: Option<usize>,
    ) -> Result<String, String> {
        let resolved = self.resolve(path)?;
        let bytes = fs::read(&resolved).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let text =
            String::from_utf8(bytes).map_err(|_| format!("`{path}` is not a UTF-8 text file"))?;
        let total = text.lines().count();
        let start = offset.unwrap_or(1).max(1);
        let limit = limit.unwrap_or(DEFAULT_READ_LINES).max(1);
        if start == 1 && total <= limit {
            return Ok(truncate(&text, OUTPUT_MAX));
        }
        let selected: Vec<&str> = text.lines().skip(start - 1).take(limit).collect();
        let end = start + selected.len().saturating_sub(1);
        let mut out = format!("[lines {start}-{end} of {total}]\n");
        out.push_str(&selected.join("\n"));
        Ok(truncate(&out, OUTPUT_MAX))
    }

    /// `write_file{path, content}`: creates parent directories, replaces the file.
    pub(crate) fn write_file(&self, path: &str, content: &str) -> Result<String, String> {
        let resolved = self.resolve_for_write(path)?;
        if resolved.is_dir() {
            return Err(format!("`{path}` is a directory"));
        }
        if let Some(parent) = resolved.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("cannot create `{path}`: {e}"))?;
        }
        fs::write(&resolved, content).map_err(|e| format!("cannot write `{path}`: {e}"))?;
        Ok(format!(
            "wrote {} bytes to {}",
            content.len(),
            self.show(&resolved)
        ))
    }

    /// `edit_file{path, old_text, new_text}`: `old_text` must occur exactly once.
    pub(crate) fn edit_file(
        &self,
        path: &str,
        old_text: &str,
        new_text: &str,
    ) -> Result<String, String> {
        if old_text.is_empty() {
            return Err("old_text is empty; use write_file to create a file".to_string());
        }
        let resolved = self.resolve_for_write(path)?;
        let text =
            fs::read_to_string(&resolved).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        match text.matches(old_text).count() {
            0 => Err(format!("old_text was not found in `{path}`")),
            1 => {
                let updated = text.replacen(old_text, new_text, 1);
                fs::write(&resolved, updated).map_err(|e| format!("cannot write `{path}`: {e}"))?;
                Ok(format!("edited {}", self.show(&resolved)))
            }
            n => Err(format!(
                "old_text occurs {n} times in `{path}`; include more context so it is unique"
            )),
        }
    }

    /// `list_dir{path?}`: sorted entries, directories with a trailing `/`.
    pub(crate) fn list_dir(&self, path: Option<&str>) -> Result<String, String> {
        let path = path.unwrap_or(".");
        let resolved = self.resolve(path)?;
        let entries = fs::read_dir(&resolved).map_err(|e| format!("cannot list `{path}`: {e}"))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => format!("{name}/"),
                    _ => name,
                }
            })
            .collect();
        names.sort();
        let total = names.len();
        names.truncate(LIST_MAX);
        let mut out = names.join("\n");
        if total > LIST_MAX {
            out.push_str(&format!("\n[... {} more entries]", total - LIST_MAX));
        }
        if total == 0 {
            out = "(empty directory)".to_string();
        }
        Ok(out)
    }

    /// `search{pattern, path?}`: regex over text files, `path:line: text` per match.
    pub(crate) fn search(&self, pattern: &str, path: Option<&str>) -> Result<String, String> {
        let regex = Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
        let path = path.unwrap_or(".");
        let start = self.resolve(path)?;
        let mut matches = Vec::new();
        let mut more = false;
        let mut stack = vec![start];
        while let Some(current) = stack.pop() {
            // symlink_metadata: never follow links during the walk, they may point outside.
            let Ok(meta) = fs::symlink_metadata(&current) else {
                continue;
            };
            if meta.is_dir() {
                if current.file_name().is_some_and(|n| n == ".git") {
                    continue;
                }
                let Ok(entries) = fs::read_dir(&current) else {
                    continue;
                };
                let mut children: Vec<PathBuf> =
                    entries.filter_map(Result::ok).map(|e| e.path()).collect();
                children.sort();
                // Reverse so the walk pops them in name order.
                stack.extend(children.into_iter().rev());
                continue;
            }
            if !meta.is_file() || meta.len() > SEARCH_FILE_MAX_BYTES {
                continue;
            }
            let Ok(text) = fs::read_to_string(&current) else {
                continue;
            };
            for (number, line) in text.lines().enumerate() {
                if regex.is_match(line) {
                    if matches.len() == SEARCH_MATCHES_MAX {
                        more = true;
                        break;
                    }
                    matches.push(format!(
                        "{}:{}: {}",
                        self.show(&current),
                        number + 1,
                        crate::text::one_line(line.trim_end(), SEARCH_LINE_MAX)
                    ));
                }
            }
            if more {
                break;
            }
        }
        if matches.is_empty() {
            return Ok("no matches".to_string());
        }
        let mut out = matches.join("\n");
        if more {
            out.push_str(&format!(
                "\n[stopped after {SEARCH_MATCHES_MAX} matches; narrow the pattern or path]"
            ));
        }
        Ok(truncate(&out, OUTPUT_MAX))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn worktree() -> (tempfile::TempDir, Worktree) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("wt")).unwrap();
        let wt = Worktree::new(&dir.path().join("wt")).unwrap();
        (dir, wt)
    }

    #[test]
    fn paths_inside_resolve() {
        let (_dir, wt) = worktree();
        let root = wt.root().to_path_buf();
        assert_eq!(wt.resolve("a/b.txt").unwrap(), root.join("a/b.txt"));
        assert_eq!(wt.resolve("./a/../c").unwrap(), root.join("c"));
        assert_eq!(wt.resolve("").unwrap(), root);
        let absolute = root.join("x.txt");
        assert_eq!(wt.resolve(absolute.to_str().unwrap()).unwrap(), absolute);
    }

    #[test]
    fn escapes_are_refused() {
        let (dir, wt) = worktree();
        assert!(wt.resolve("../outside.txt").is_err());
        assert!(wt.resolve("a/../../outside.txt").is_err());
        assert!(wt.resolve("/etc/passwd").is_err());
        let sibling = dir.path().join("wt-other/x");
        assert!(wt.resolve(sibling.to_str().unwrap()).is_err());
    }

    #[test]
    fn symlinks_pointing_outside_are_refused() {
        let (dir, wt) = worktree();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&outside, wt.root().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), wt.root().join("file")).unwrap();
        assert!(wt.resolve("link/secret").is_err());
        assert!(wt.resolve("link/new.txt").is_err());
        assert!(wt.resolve("file").is_err());
        assert!(wt.write_file("link/new.txt", "x").is_err());
        assert!(!outside.join("new.txt").exists());
        // An inside link is fine.
        fs::create_dir(wt.root().join("real")).unwrap();
        std::os::unix::fs::symlink(wt.root().join("real"), wt.root().join("alias")).unwrap();
        assert_eq!(
            wt.resolve("alias/f").unwrap(),
            wt.root().join("real").join("f")
        );
    }

    #[test]
    fn git_metadata_is_not_writable() {
        let (_dir, wt) = worktree();
        assert!(wt.write_file(".git/hooks/pre-commit", "x").is_err());
        assert!(!wt.root().join(".git").exists());
    }

    #[test]
    fn write_read_edit() {
        let (_dir, wt) = worktree();
        wt.write_file("src/a.txt", "one\ntwo\ntwo\n").unwrap();
        assert_eq!(
            wt.read_file("src/a.txt", None, None).unwrap(),
            "one\ntwo\ntwo\n"
        );
        assert_eq!(
            wt.read_file("src/a.txt", Some(2), Some(1)).unwrap(),
            "[lines 2-2 of 3]\ntwo"
        );
        let err = wt.edit_file("src/a.txt", "two", "2").unwrap_err();
        assert!(err.contains("occurs 2 times"), "{err}");
        let err = wt.edit_file("src/a.txt", "three", "3").unwrap_err();
        assert!(err.contains("not found"), "{err}");
        wt.edit_file("src/a.txt", "one\n", "1\n").unwrap();
        assert_eq!(
            fs::read_to_string(wt.root().join("src/a.txt")).unwrap(),
            "1\ntwo\ntwo\n"
        );
    }

    #[test]
    fn list_and_search() {
        let (_dir, wt) = worktree();
        wt.write_file("b.txt", "hello world\n").unwrap();
        wt.write_file("sub/c.rs", "fn hello() {}\n").unwrap();
        fs::create_dir_all(wt.root().join(".git")).unwrap();
        fs::write(wt.root().join(".git/config"), "hello").unwrap();
        assert_eq!(wt.list_dir(None).unwrap(), ".git/\nb.txt\nsub/");
        assert_eq!(
            wt.search("hel+o", None).unwrap(),
            "b.txt:1: hello world\nsub/c.rs:1: fn hello() {}"
        );
        assert_eq!(wt.search("zzz", Some("sub")).unwrap(), "no matches");
        assert!(wt.search("(", None).unwrap_err().contains("invalid regex"));
    }
}
