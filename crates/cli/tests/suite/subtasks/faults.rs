//! Sub-tasks under faults and stops: a kill at each split step, cancelling the parent, and a
//! sub-task retried after a failure.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_each_split_step_then_rerun_makes_nothing_twice() {
    for effect in [
        "start_subtasks",
        "report_to_parent",
        "build_stack",
        "record_pr",
    ] {
        let env = Env::new(rules(CHAIN), GATE, "").await;
        let (run_args, approve_first): (&[&str], bool) = if effect == "record_pr" {
            (&["approve", "P-1"], true)
        } else {
            (&["run", "P-1"], false)
        };
        if approve_first {
            env.ok(&["run", "P-1"]);
        }
        let out = env
            .cmd()
            .env("CODEMILL_CRASH_AFTER_EFFECT", effect)
            .args(run_args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "{effect}: codemill should have died"
        );
        // Running again resumes wherever the kill left each job.
        let out = env.ok(&["run", "P-1"]);
        if approve_first {
            assert!(out.contains("shipped"), "{effect}: {out}");
        } else {
            assert!(out.contains("proposal ready"), "{effect}: {out}");
            env.ok(&["approve", "P-1"]);
        }
        assert_eq!(
            subtask_tickets(&env).len(),
            2,
            "{effect}: one ticket per sub-task"
        );
        let stack = env.json(&["show", "P-1", "--json"])["job"]["stack"].clone();
        for entry in stack.as_array().unwrap() {
            let key = entry["ticket"].as_str().unwrap();
            let kinds = env.event_kinds(key);
            assert_eq!(
                kinds.iter().filter(|k| *k == "shipped_with_parent").count(),
                1,
                "{effect}: {key}: {kinds:?}"
            );
        }
        let parent = env.event_kinds("P-1");
        assert_eq!(
            parent.iter().filter(|k| *k == "subtask_finished").count(),
            2,
            "{effect}: {parent:?}"
        );
        land_chain(&env);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_cancels_its_sub_jobs() {
    let env = Env::new(rules(CHAIN), GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
    // One claimed job: the parent plans, makes sub-task A's ticket and job, and waits.
    let once = env.cmd().args(["worker", "--once"]).output().unwrap();
    assert!(once.status.success(), "{once:?}");
    let parent = env.json(&["show", "P-1", "--json"]);
    assert_eq!(parent["job"]["state"], "awaiting_children", "{parent}");
    let a = parent["job"]["children"][0]["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    // Its job waits for a worker.
    assert_eq!(env.json(&["show", &a, "--json"])["job"]["state"], "queued");

    env.ok(&["cancel", "P-1"]);
    assert_eq!(
        env.json(&["show", "P-1", "--json"])["job"]["state"],
        "cancelled"
    );
    // The sub-job stops the way a cancel does, when it next runs.
    let once = env.cmd().args(["worker", "--once"]).output().unwrap();
    assert!(once.status.success(), "{once:?}");
    let child = env.json(&["show", &a, "--json"]);
    assert_eq!(child["job"]["state"], "cancelled", "{child}");
    assert!(
        child["job"]["reason"]
            .as_str()
            .unwrap()
            .contains("cancelled by codemill (P-1)"),
        "{child}"
    );
    // Nothing else was started.
    assert_eq!(subtask_tickets(&env).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_sub_task_rejoins_its_waiting_parent() {
    // B's research fails once; C takes long enough (8 s, under the agents' 10 s idle limit) that
    // the parent still waits for it when B is tried again.
    let mut rules = vec![
        Rule::new(
            "research B fails",
            Match {
                contains: Some("Goal-B".into()),
                ..at_turn("research", 0)
            },
            Reply::error(500, "the model is down"),
        )
        .times(1),
        Rule::new(
            "implement C: slow",
            Match {
                contains: Some("Goal-C".into()),
                ..at_turn("implement", 0)
            },
            write_call("c.txt", "c\n"),
        )
        .after(Duration::from_secs(8)),
    ];
    rules.extend(super::rules(GRAPH));
    let env = Env::new(rules, GATE, "").await;
    env.ok(&["enqueue", "P-1"]);
    let mut running = workers(&env, 2);
    let deadline = Instant::now() + Duration::from_secs(120);
    let b = loop {
        let parent = env.json(&["show", "P-1", "--json"]);
        let b = parent["job"]["children"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == "B"))
            .and_then(|c| c["ticket"].as_str())
            .map(str::to_string);
        if let Some(b) = b
            && env.json(&["show", &b, "--json"])["job"]["state"] == "needs_attention"
        {
            break b;
        }
        assert!(Instant::now() < deadline, "B never stopped: {parent}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        env.json(&["show", "P-1", "--json"])["job"]["state"],
        "awaiting_children",
        "the parent waits for C"
    );
    env.ok(&["retry", &b]);
    let parent = wait_for(&env, "P-1", "awaiting_approval");
    let _ = running.kill();
    let _ = running.wait();
    let stack = parent["job"]["stack"].as_array().unwrap();
    assert_eq!(stack.len(), 4, "{parent}");
    let retried = env.json(&["show", &b, "--json"]);
    assert_eq!(retried["job"]["subtask"]["id"], "B", "{retried}");
    let in_parent = parent["job"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "B")
        .unwrap()
        .clone();
    assert_eq!(in_parent["job"], retried["job"]["id"], "{in_parent}");
    assert_eq!(stack[1]["job"], retried["job"]["id"]);
}
