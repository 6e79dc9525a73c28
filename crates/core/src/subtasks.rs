//! A plan that splits a ticket into a graph of sub-tasks: the planner's structured answer, and
//! the plain checks it must pass before anything runs (acyclic, at most `max_subtasks`, every
//! sub-task with acceptance criteria, sub-tasks that touch the same files ordered rather than
//! parallel). Pure: the runner turns a valid graph into sub-jobs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, TicketKey};

/// Sub-tasks at most in one graph when the repository's policy names no limit.
pub const DEFAULT_MAX_SUBTASKS: u32 = 8;

/// One sub-task as the planner wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubTask {
    /// Short and unique within the graph (`A`, `api`, `2`); `depends_on` names these.
    pub id: String,
    pub title: String,
    /// What the sub-task achieves, in a sentence or two.
    pub goal: String,
    /// Checkable statements that say when it is done.
    #[serde(default)]
    pub criteria: Vec<String>,
    /// Repository paths it expects to change.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// The planner's graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    pub subtasks: Vec<SubTask>,
}

/// A checked graph: the sub-tasks in an order where every dependency comes first, and the
/// waves that may run at the same time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub graph: Graph,
    /// Indexes into `graph.subtasks`, dependencies first (ties keep the planner's order).
    pub order: Vec<usize>,
    /// Wave `i` holds the sub-tasks whose longest chain of dependencies has `i` links.
    pub waves: Vec<Vec<usize>>,
}

/// A sub-job's place under its parent (carried by its `Created` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskOf {
    pub parent: JobId,
    pub parent_ticket: TicketKey,
    /// The sub-task's id in the graph.
    pub id: String,
    /// Its place in the stack, 1-based.
    pub n: u32,
    /// The commit the parent started from: every sub-task of the graph stacks on it.
    pub base_commit: String,
    /// The sub-tasks it depends on, directly or not, dependencies first: their commits are
    /// stacked on `base_commit` before it starts.
    #[serde(default)]
    pub below: Vec<Below>,
}

/// A finished sub-task whose commit another one starts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Below {
    pub job: JobId,
    pub commit: String,
    /// Where its change starts (the commits below it); `None`: the commit's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// A person sent one sub-task of a proposed stack back for a fix round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rework {
    pub id: String,
    pub reason: String,
    pub by: String,
}

/// A sub-job the parent started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    pub id: String,
    pub ticket: TicketKey,
    pub job: JobId,
    #[serde(default)]
    pub result: Option<ChildResult>,
    /// Times a person sent it back from the proposed stack.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reworks: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How a sub-job ended, as its parent knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ChildResult {
    /// Its proposal is ready: its reviewed change, from `base` (the sub-tasks below it on the
    /// parent's base) to `commit`.
    Ready {
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<String>,
    },
    /// It stopped (needs attention, rejected, cancelled) with the reason.
    Stopped { status: String, reason: String },
}

/// One sub-task's commit in the parent's stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackEntry {
    pub id: String,
    pub title: String,
    pub ticket: TicketKey,
    pub job: JobId,
    /// The commit in the stack (on top of the entry below it).
    pub commit: String,
    /// `codemill/<KEY>/<n>-<slug>`.
    pub branch: String,
    /// The branch its PR is based on: the entry below, or the default branch.
    pub base: String,
}

/// What the parent does next while it waits for its sub-jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Sub-tasks whose dependencies are all ready and that have no job yet.
    Start(Vec<usize>),
    /// Every sub-task is ready: build the stack.
    Stack,
    /// Sub-jobs still run.
    Wait,
    /// Nothing runs and some sub-tasks can never start: why.
    Blocked(String),
}

/// Where the graph stands given its sub-jobs.
pub fn next(checked: &Checked, children: &[Child]) -> Next {
    let tasks = &checked.graph.subtasks;
    let child = |i: usize| children.iter().find(|c| c.id == tasks[i].id);
    let ready = |i: usize| {
        matches!(
            child(i).and_then(|c| c.result.as_ref()),
            Some(ChildResult::Ready { .. })
        )
    };
    if checked.order.iter().all(|&i| ready(i)) {
        return Next::Stack;
    }
    let runnable: Vec<usize> = checked
        .order
        .iter()
        .copied()
        .filter(|&i| child(i).is_none())
        .filter(|&i| {
            tasks[i].depends_on.iter().all(|d| {
                tasks
                    .iter()
                    .position(|t| t.id == d.trim())
                    .is_some_and(ready)
            })
        })
        .collect();
    if !runnable.is_empty() {
        return Next::Start(runnable);
    }
    if children.iter().any(|c| c.result.is_none()) {
        return Next::Wait;
    }
    let stopped: Vec<String> = children
        .iter()
        .filter_map(|c| match &c.result {
            Some(ChildResult::Stopped { status, reason }) => Some(format!(
                "sub-task {} ({}) is {status}: {reason}",
                c.id, c.ticket
            )),
            _ => None,
        })
        .collect();
    let waiting: Vec<&str> = checked
        .order
        .iter()
        .filter(|&&i| child(i).is_none())
        .map(|&i| tasks[i].id.as_str())
        .collect();
    Next::Blocked(format!(
        "{}; not started because they depend on it: {}",
        stopped.join("; "),
        if waiting.is_empty() {
            "none".to_string()
        } else {
            waiting.join(", ")
        }
    ))
}

/// Everything sub-task `i` depends on, directly or not, in the checked order.
pub fn below(checked: &Checked, i: usize) -> Vec<usize> {
    let tasks = &checked.graph.subtasks;
    let index = |id: &str| tasks.iter().position(|t| t.id == id.trim());
    let mut all: BTreeSet<usize> = BTreeSet::new();
    let mut todo: Vec<usize> = tasks[i]
        .depends_on
        .iter()
        .filter_map(|d| index(d))
        .collect();
    while let Some(j) = todo.pop() {
        if all.insert(j) {
            todo.extend(tasks[j].depends_on.iter().filter_map(|d| index(d)));
        }
    }
    checked
        .order
        .iter()
        .copied()
        .filter(|j| all.contains(j))
        .collect()
}

/// The ticket text of a sub-task: its goal and criteria, with where it came from.
pub fn ticket_body(parent: &str, t: &SubTask, n: usize, total: usize) -> String {
    let mut out = format!(
        "Sub-task {n} of {total} of {parent}.\n\n{}\n\nAcceptance criteria:\n",
        t.goal.trim()
    );
    for c in t.criteria.iter().filter(|c| !c.trim().is_empty()) {
        out.push_str(&format!("- {}\n", c.trim()));
    }
    if !t.files.is_empty() {
        out.push_str(&format!("\nExpected to change: {}\n", t.files.join(", ")));
    }
    out
}

/// Why a graph was refused; each names what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The JSON block is not a graph.
    Unreadable(String),
    Empty,
    TooMany {
        count: usize,
        max: u32,
    },
    MissingField {
        id: String,
        field: &'static str,
    },
    DuplicateId(String),
    NoCriteria(String),
    UnknownDependency {
        id: String,
        on: String,
    },
    DependsOnItself(String),
    Cycle(Vec<String>),
    /// Two sub-tasks expected to change the same files with no order between them.
    Overlap {
        a: String,
        b: String,
        files: Vec<String>,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable(e) => write!(f, "{e}"),
            Problem::Empty => write!(f, "the graph has no sub-tasks"),
            Problem::TooMany { count, max } => write!(
                f,
                "{count} sub-tasks, but at most {max} are allowed: merge the smallest ones"
            ),
            Problem::MissingField { id, field } => {
                write!(f, "sub-task {id:?} has no {field}")
            }
            Problem::DuplicateId(id) => write!(f, "two sub-tasks have the id {id:?}"),
            Problem::NoCriteria(id) => write!(
                f,
                "sub-task {id:?} has no acceptance criteria: give checkable statements"
            ),
            Problem::UnknownDependency { id, on } => {
                write!(
                    f,
                    "sub-task {id:?} depends on {on:?}, which is not in the graph"
                )
            }
            Problem::DependsOnItself(id) => write!(f, "sub-task {id:?} depends on itself"),
            Problem::Cycle(ids) => write!(f, "a dependency cycle: {}", ids.join(" -> ")),
            Problem::Overlap { a, b, files } => write!(
                f,
                "sub-tasks {a:?} and {b:?} both change {} but neither depends on the other: \
                 order them with depends_on, or merge them",
                files.join(", ")
            ),
        }
    }
}

/// The graph in a planner's answer, when it gave one: a ```json block holding an object with
/// `subtasks`. `Ok(None)` is a plain plan (the ticket stays a single job); `Err` is a graph
/// that cannot be read, with why.
pub fn parse(answer: &str) -> Result<Option<Graph>, String> {
    for block in json_blocks(answer) {
        let value: serde_json::Value = match serde_json::from_str(block) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if value.get("subtasks").is_none() {
            continue;
        }
        return serde_json::from_value(value)
            .map(Some)
            .map_err(|e| format!("the sub-task graph does not read: {e}"));
    }
    Ok(None)
}

/// The bodies of the ```json (or bare ```) fenced blocks of `text`.
fn json_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let Some(line_end) = after.find('\n') else {
            break;
        };
        let lang = after[..line_end].trim();
        let body = &after[line_end + 1..];
        let Some(end) = body.find("```") else {
            break;
        };
        if lang.is_empty() || lang.eq_ignore_ascii_case("json") {
            blocks.push(body[..end].trim());
        }
        rest = &body[end + 3..];
    }
    blocks
}

/// Checks `graph` against the rules; every problem is reported, not only the first.
pub fn check(graph: Graph, max: u32) -> Result<Checked, Vec<Problem>> {
    let mut problems = Vec::new();
    let tasks = &graph.subtasks;
    if tasks.is_empty() {
        return Err(vec![Problem::Empty]);
    }
    if tasks.len() > max as usize {
        problems.push(Problem::TooMany {
            count: tasks.len(),
            max,
        });
    }
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let id = t.id.trim();
        if id.is_empty() {
            problems.push(Problem::MissingField {
                id: format!("#{}", i + 1),
                field: "id",
            });
            continue;
        }
        if index.insert(id, i).is_some() {
            problems.push(Problem::DuplicateId(id.to_string()));
        }
        for (field, value) in [("title", &t.title), ("goal", &t.goal)] {
            if value.trim().is_empty() {
                problems.push(Problem::MissingField {
                    id: id.to_string(),
                    field,
                });
            }
        }
        if t.criteria.iter().all(|c| c.trim().is_empty()) {
            problems.push(Problem::NoCriteria(id.to_string()));
        }
    }
    // Edges as indexes; unknown and self edges are reported and left out.
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for on in &t.depends_on {
            let on = on.trim();
            match index.get(on) {
                Some(&j) if j == i => problems.push(Problem::DependsOnItself(t.id.clone())),
                Some(&j) => {
                    deps[i].insert(j);
                }
                None => problems.push(Problem::UnknownDependency {
                    id: t.id.clone(),
                    on: on.to_string(),
                }),
            }
        }
    }
    let order = match topological(&deps) {
        Ok(order) => order,
        Err(cycle) => {
            problems.push(Problem::Cycle(
                cycle.iter().map(|&i| tasks[i].id.clone()).collect(),
            ));
            return Err(problems);
        }
    };
    // Everything each sub-task depends on, directly or not.
    let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tasks.len()];
    for &i in &order {
        let mut all = deps[i].clone();
        for &d in &deps[i] {
            all.extend(before[d].iter().copied());
        }
        before[i] = all;
    }
    for a in 0..tasks.len() {
        for b in a + 1..tasks.len() {
            if before[a].contains(&b) || before[b].contains(&a) {
                continue;
            }
            let shared: Vec<String> = files_of(&tasks[a])
                .intersection(&files_of(&tasks[b]))
                .cloned()
                .collect();
            if !shared.is_empty() {
                problems.push(Problem::Overlap {
                    a: tasks[a].id.clone(),
                    b: tasks[b].id.clone(),
                    files: shared,
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut depth = vec![0usize; tasks.len()];
    for &i in &order {
        depth[i] = deps[i].iter().map(|&d| depth[d] + 1).max().unwrap_or(0);
    }
    let mut waves: Vec<Vec<usize>> = vec![Vec::new(); depth.iter().max().map_or(0, |d| d + 1)];
    for &i in &order {
        waves[depth[i]].push(i);
    }
    Ok(Checked {
        graph,
        order,
        waves,
    })
}

/// Paths as compared for overlap: trimmed, without a leading `./`.
fn files_of(t: &SubTask) -> BTreeSet<String> {
    t.files
        .iter()
        .map(|f| f.trim().trim_start_matches("./").to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// Kahn's algorithm, ties broken by the planner's order; `Err` holds one cycle.
fn topological(deps: &[BTreeSet<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => return Err(find_cycle(deps, &placed)),
        }
    }
    Ok(order)
}

/// A cycle among the sub-tasks not yet placed (each has an unplaced dependency).
fn find_cycle(deps: &[BTreeSet<usize>], placed: &[bool]) -> Vec<usize> {
    let Some(start) = (0..deps.len()).find(|&i| !placed[i]) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut at = start;
    loop {
        let Some(&next) = deps[at].iter().find(|&&d| !placed[d]) else {
            return path;
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next);
        at = next;
    }
}

/// The brief asking the planner to fix its graph, naming every problem.
pub fn repair_request(problems: &[Problem], max: u32) -> String {
    let listed: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
    format!(
        "Your sub-task graph cannot be used:\n{}\n\nAnswer again with the whole graph in one \
         ```json block: {{\"subtasks\": [{{\"id\": \"A\", \"title\": \"...\", \"goal\": \"...\", \
         \"criteria\": [\"...\"], \"files\": [\"path\"], \"depends_on\": []}}]}} — at most {max} \
         sub-tasks, no cycles, every sub-task with criteria, and sub-tasks that change the same \
         files ordered with depends_on. Or answer with a single plan and no graph when the \
         ticket is small enough for one change.",
        listed.join("\n")
    )
}

/// The branch of sub-task `n` (1-based, in the checked order) of ticket `key`:
/// `codemill/<KEY>/<n>-<slug of its title>`.
pub fn branch(key: &str, n: usize, title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("codemill/{key}/{n}")
    } else {
        format!("codemill/{key}/{n}-{slug}")
    }
}

/// The graph as Markdown for the ticket and `codemill show`: each sub-task in order with its
/// goal, criteria, files and what it waits for, and which run at the same time.
pub fn render(checked: &Checked) -> String {
    let tasks = &checked.graph.subtasks;
    let mut out = format!(
        "**Plan: {} sub-tasks** (in {} wave{})\n",
        tasks.len(),
        checked.waves.len(),
        if checked.waves.len() == 1 { "" } else { "s" }
    );
    for (n, &i) in checked.order.iter().enumerate() {
        let t = &tasks[i];
        let after = if t.depends_on.is_empty() {
            String::new()
        } else {
            format!(" — after {}", t.depends_on.join(", "))
        };
        out.push_str(&format!(
            "\n{}. **{}** `{}`{after}\n   {}\n",
            n + 1,
            t.title.trim(),
            t.id,
            t.goal.trim()
        ));
        for c in t.criteria.iter().filter(|c| !c.trim().is_empty()) {
            out.push_str(&format!("   - [ ] {}\n", c.trim()));
        }
        if !t.files.is_empty() {
            out.push_str(&format!("   files: {}\n", t.files.join(", ")));
        }
    }
    for (w, wave) in checked
        .waves
        .iter()
        .enumerate()
        .filter(|(_, w)| w.len() > 1)
    {
        let ids: Vec<&str> = wave.iter().map(|&i| tasks[i].id.as_str()).collect();
        out.push_str(&format!(
            "\nWave {}: {} run at the same time.\n",
            w + 1,
            ids.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn task(id: &str, deps: &[&str], files: &[&str]) -> SubTask {
        SubTask {
            id: id.into(),
            title: format!("Task {id}"),
            goal: format!("Do {id}."),
            criteria: vec![format!("{id} works")],
            files: files.iter().map(|f| f.to_string()).collect(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn diamond() -> Graph {
        Graph {
            subtasks: vec![
                task("D", &["B", "C"], &["src/app.rs"]),
                task("A", &[], &["src/model.rs"]),
                task("B", &["A"], &["src/api.rs", "src/app.rs"]),
                task("C", &["A"], &["src/ui.rs"]),
            ],
        }
    }

    #[test]
    fn a_diamond_runs_its_middle_in_parallel() {
        let checked = check(diamond(), 8).unwrap();
        let ids = |v: &[usize]| -> Vec<String> {
            v.iter()
                .map(|&i| checked.graph.subtasks[i].id.clone())
                .collect()
        };
        assert_eq!(ids(&checked.order), ["A", "B", "C", "D"]);
        let waves: Vec<Vec<String>> = checked.waves.iter().map(|w| ids(w)).collect();
        assert_eq!(waves, vec![vec!["A"], vec!["B", "C"], vec!["D"]]);
        let shown = render(&checked);
        assert!(
            shown.contains("**Plan: 4 sub-tasks** (in 3 waves)"),
            "{shown}"
        );
        assert!(
            shown.contains("Wave 2: B, C run at the same time."),
            "{shown}"
        );
        assert!(shown.contains("4. **Task D** `D` — after B, C"), "{shown}");
    }

    #[test]
    fn every_problem_is_named() {
        let mut g = diamond();
        g.subtasks[1].criteria.clear(); // A: no criteria
        g.subtasks[3].depends_on = vec!["Z".into()]; // C: unknown
        g.subtasks[3].files.push("src/api.rs".into()); // C and B share a file, unordered now
        g.subtasks.push(task("B", &[], &[]));
        let problems = check(g, 4).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(
                &"5 sub-tasks, but at most 4 are allowed: merge the smallest ones".to_string()
            ),
            "{text:#?}"
        );
        assert!(
            text.contains(&"two sub-tasks have the id \"B\"".to_string()),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("sub-task \"A\" has no acceptance criteria")),
            "{text:#?}"
        );
        assert!(
            text.contains(
                &"sub-task \"C\" depends on \"Z\", which is not in the graph".to_string()
            ),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("\"B\" and \"C\" both change src/api.rs")),
            "{text:#?}"
        );
        let brief = repair_request(&problems, 4);
        assert!(brief.contains("at most 4 sub-tasks") && brief.contains("- two sub-tasks"));
    }

    #[test]
    fn cycles_and_self_edges_are_refused() {
        let g = Graph {
            subtasks: vec![
                task("A", &["C"], &[]),
                task("B", &["A"], &[]),
                task("C", &["B"], &[]),
            ],
        };
        assert_eq!(
            check(g, 8).unwrap_err(),
            vec![Problem::Cycle(vec![
                "A".into(),
                "C".into(),
                "B".into(),
                "A".into()
            ])]
        );
        let g = Graph {
            subtasks: vec![task("A", &["A"], &[])],
        };
        assert_eq!(
            check(g, 8).unwrap_err(),
            vec![Problem::DependsOnItself("A".into())]
        );
        assert_eq!(
            check(Graph { subtasks: vec![] }, 8).unwrap_err(),
            vec![Problem::Empty]
        );
    }

    #[test]
    fn shared_files_are_fine_when_ordered_even_indirectly() {
        let g = Graph {
            subtasks: vec![
                task("A", &[], &["./src/lib.rs"]),
                task("B", &["A"], &[]),
                task("C", &["B"], &["src/lib.rs"]),
            ],
        };
        assert!(check(g, 8).is_ok());
    }

    #[test]
    fn the_answer_holds_a_graph_or_a_plain_plan() {
        assert_eq!(parse("Plan: add hello.txt.").unwrap(), None);
        assert_eq!(
            parse("Notes\n```json\n{\"findings\": []}\n```").unwrap(),
            None
        );
        let answer = "Split it:\n```json\n{\"subtasks\": [{\"id\": \"A\", \"title\": \"Model\", \"goal\": \"Add the model.\", \"criteria\": [\"it compiles\"], \"files\": [\"src/model.rs\"]}]}\n```\n";
        let g = parse(answer).unwrap().unwrap();
        assert_eq!(g.subtasks[0].id, "A");
        assert!(g.subtasks[0].depends_on.is_empty());
        let err = parse("```json\n{\"subtasks\": [{\"id\": 3}]}\n```").unwrap_err();
        assert!(err.starts_with("the sub-task graph does not read"), "{err}");
    }

    #[test]
    fn branches_are_named_after_the_ticket_and_the_title() {
        assert_eq!(
            branch("WEB-12", 2, "Add the REST API (v2)!"),
            "codemill/WEB-12/2-add-the-rest-api-v2"
        );
        assert_eq!(branch("WEB-12", 3, "—"), "codemill/WEB-12/3");
    }
}
