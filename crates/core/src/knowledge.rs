//! Which files of a repository are project knowledge, and how a Markdown file splits into the
//! sections that become entries (plain text work, so it is tested here without git or a store).

/// Whether `path` (repository-relative) is documentation knowledge is read from: the README,
/// CONTRIBUTING and ARCHITECTURE files at the root, Markdown under `docs/`, `doc/` and `adr/`,
/// and `.codemill/knowledge/`.
pub fn is_knowledge_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if !lower.ends_with(".md") {
        return false;
    }
    let root = !lower.contains('/');
    (root
        && ["readme", "contributing", "architecture"]
            .iter()
            .any(|n| lower.starts_with(n)))
        || ["docs/", "doc/", "adr/", ".codemill/knowledge/"]
            .iter()
            .any(|d| lower.starts_with(d))
}

/// One section of a Markdown file: its heading (or the file's name for the text before the first
/// heading), a slug unique in the file, the 1-based lines it spans and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub heading: String,
    pub slug: String,
    pub first_line: u32,
    pub last_line: u32,
    pub body: String,
}

fn slug(text: &str) -> String {
    let mut s = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            s.extend(c.to_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() { "section".into() } else { s }
}

/// The ATX heading of `line` (`## Title`), if it is one.
fn heading(line: &str) -> Option<String> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    let hashes = t.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &t[hashes..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    (!title.is_empty()).then(|| title.to_string())
}

/// The sections of Markdown `text` from file `name`, split at headings outside fenced code;
/// sections with no text under their heading are left out.
pub fn sections(name: &str, text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut current: Option<(String, u32, Vec<&str>, usize)> = None;
    let mut fence: Option<&str> = None;
    let mut seen = std::collections::HashMap::<String, u32>::new();
    let mut close = |cur: Option<(String, u32, Vec<&str>, usize)>, out: &mut Vec<Section>| {
        let Some((h, first, lines, skip)) = cur else {
            return;
        };
        // The heading line itself is not text under it.
        let body = lines[skip.min(lines.len())..].join("\n").trim().to_string();
        if body.is_empty() {
            return;
        }
        let base = slug(&h);
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        let slug = if *n == 1 { base } else { format!("{base}-{n}") };
        let last = first
            + u32::try_from(lines.len())
                .unwrap_or(u32::MAX)
                .saturating_sub(1);
        out.push(Section {
            heading: h,
            slug,
            first_line: first,
            last_line: last,
            body,
        });
    };
    for (i, line) in text.lines().enumerate() {
        let no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let t = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        if let Some(m) = marker {
            fence = match fence {
                Some(open) if open == m => None,
                None => Some(m),
                other => other,
            };
        } else if fence.is_none()
            && let Some(h) = heading(line)
        {
            close(current.take(), &mut out);
            current = Some((h, no, vec![line], 1));
            continue;
        }
        match &mut current {
            Some((_, _, lines, _)) => lines.push(line),
            None => current = Some((name.to_string(), no, vec![line], 0)),
        }
    }
    close(current.take(), &mut out);
    out
}

/// A place in a repository as people and agents write it: `PATH`, `PATH:L` or `PATH:L1-L2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// As written, without a leading `./`.
    pub path: String,
    /// First and last line (1-based, inclusive); the whole file when absent.
    pub lines: Option<(u32, u32)>,
}

impl Place {
    /// `None` when a line part is there but is not `L` or `L1-L2` with `1 <= L1 <= L2`.
    pub fn parse(text: &str) -> Option<Place> {
        let (path, lines) = match text.rsplit_once(':') {
            Some((path, range)) if range.chars().all(|c| c.is_ascii_digit() || c == '-') => {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if a == 0 || b < a {
                    return None;
                }
                (path, Some((a, b)))
            }
            _ => (text, None),
        };
        Some(Place {
            path: path.trim().trim_start_matches("./").to_string(),
            lines,
        })
    }

    /// Whether the path stays inside the repository: not empty, not absolute, no `..`.
    pub fn inside(&self) -> bool {
        !self.path.is_empty()
            && !self.path.starts_with('/')
            && !self.path.split('/').any(|p| p == "..")
    }
}

/// Lines `first..=last` (1-based) of `text`, or `None` when the text is shorter.
pub fn lines_of(text: &str, first: u32, last: u32) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (usize::try_from(first).ok()?, usize::try_from(last).ok()?);
    if a == 0 || b < a || b > lines.len() {
        return None;
    }
    Some(lines[a - 1..b].join("\n"))
}

/// Where the gateway answers the knowledge tools: `POST {ROUTE}{tool}`, the arguments as the
/// JSON body, the step's pass as Bearer token.
pub const ROUTE: &str = "/codemill/knowledge/";

/// One knowledge tool as offered to a model: name, description, JSON Schema of its arguments.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: serde_json::Value,
}

/// The knowledge tools every agent is offered: the MCP server lists them, the built-in agent
/// offers them natively, the gateway answers them.
pub fn tools() -> Vec<ToolSpec> {
    use serde_json::json;
    vec![
        ToolSpec {
            name: "search_knowledge",
            description: "Search this project's knowledge (architecture, conventions, how to test, \
                          past decisions). Each result has its provenance: tag verified (checked \
                          against the code), human (written by a person) or inferred (concluded \
                          by an agent), the sources it cites, and whether it is stale (a cited \
                          file changed since) and why.",
            schema: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for, in plain words."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20,
                              "description": "At most this many results (default 5)."}
                },
                "required": ["query"]
            }),
        },
        ToolSpec {
            name: "read_knowledge",
            description: "Read one knowledge entry in full, with its provenance.",
            schema: json!({
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "description": "The entry's id, from search_knowledge."}
                },
                "required": ["id"]
            }),
        },
        ToolSpec {
            name: "record_knowledge",
            description: "Record a durable finding about this project for later work, citing the \
                          files it is based on. It is stored as inferred (an agent's conclusion) \
                          until a person verifies it.",
            schema: json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string", "description": "A short statement of the finding."},
                    "body": {"type": "string", "description": "The finding, with what it is based on."},
                    "sources": {"type": "array", "items": {"type": "string"},
                                "description": "The files it is based on: \"PATH\" or \"PATH:FIRST-LAST\" (at least one)."}
                },
                "required": ["title", "body", "sources"]
            }),
        },
        ToolSpec {
            name: "ticket_context",
            description: "A ticket of this project: its text (which holds its acceptance \
                          criteria), status, and the tickets linked to it with how their work \
                          ended.",
            schema: json!({
                "type": "object",
                "properties": {
                    "key": {"type": "string", "description": "The ticket's key, like PROJ-12."}
                },
                "required": ["key"]
            }),
        },
    ]
}

/// Whether `name` is one of the knowledge tools.
pub fn is_tool(name: &str) -> bool {
    tools().iter().any(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_place_is_a_path_with_an_optional_line_range() {
        let place = |t: &str| Place::parse(t).map(|p| (p.path.clone(), p.lines, p.inside()));
        assert_eq!(
            place("./src/a.rs:3-9"),
            Some(("src/a.rs".into(), Some((3, 9)), true))
        );
        assert_eq!(place("a.rs:7"), Some(("a.rs".into(), Some((7, 7)), true)));
        assert_eq!(place("ns:name"), Some(("ns:name".into(), None, true)));
        assert_eq!(place("../x.rs"), Some(("../x.rs".into(), None, false)));
        assert_eq!(place("/etc/passwd").map(|p| p.2), Some(false));
        for bad in ["a.rs:0", "a.rs:9-3", "a.rs:", "a.rs:1-2-3"] {
            assert_eq!(place(bad), None, "{bad}");
        }
    }

    #[test]
    fn knowledge_files_are_the_docs() {
        for yes in [
            "README.md",
            "CONTRIBUTING.md",
            "docs/setup.md",
            "docs/adr/0001-db.md",
            ".codemill/knowledge/testing.md",
        ] {
            assert!(is_knowledge_file(yes), "{yes}");
        }
        for no in [
            "src/main.rs",
            "vendor/x/README.md",
            "docs/logo.png",
            "notes.md",
        ] {
            assert!(!is_knowledge_file(no), "{no}");
        }
    }

    #[test]
    fn markdown_splits_into_sections_with_their_lines() {
        let text = "Intro text.\n\n# Setup\nRun make.\n\n```sh\n# not a heading\n```\n## Setup\nAgain.\n## Empty\n\n### Tests #\nmake check\n";
        let s = sections("README.md", text);
        let heads: Vec<_> = s
            .iter()
            .map(|x| (x.heading.as_str(), x.slug.as_str()))
            .collect();
        assert_eq!(
            heads,
            [
                ("README.md", "readme-md"),
                ("Setup", "setup"),
                ("Setup", "setup-2"),
                ("Tests", "tests"),
            ]
        );
        assert_eq!((s[1].first_line, s[1].last_line), (3, 8));
        assert!(s[1].body.contains("# not a heading"));
        assert_eq!(lines_of(text, 3, 4).unwrap(), "# Setup\nRun make.");
        assert_eq!(lines_of(text, 3, 400), None);
        assert!(heading("#hashtag").is_none());
        assert!(heading("    # code").is_none());
    }
}
