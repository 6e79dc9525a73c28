//! `codemill mcp` as an agent's MCP client sees it, spoken by a plain JSON-RPC client over stdio
//! (not the SDK): `initialize`, `tools/list`, each tool, and bad calls that get clear errors
//! while the server keeps answering.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{Env, HELLO_GATE, KEY_VAR, engineer};

struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    next: u64,
}

impl Client {
    fn start(env: &Env) -> Client {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
            .arg("--home")
            .arg(&env.home)
            .args(["mcp", "--project", "P"])
            .env(KEY_VAR, "test-key-123")
            .env_remove("CODEMILL_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            stdin,
            lines,
            next: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// A request and its response (notifications in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("an answer within 20 s");
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON-RPC on stdout ({e}): {line}"));
            assert_eq!(message["jsonrpc"], "2.0", "{message}");
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    fn tool(&mut self, name: &str, arguments: Value) -> Value {
        self.call("tools/call", json!({"name": name, "arguments": arguments}))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON a tool answered with (its first text content).
fn answer(response: &Value) -> Value {
    assert!(response["error"].is_null(), "{response}");
    let result = &response["result"];
    assert_ne!(result["isError"], json!(true), "{response}");
    serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap()
}

/// A clear refusal: a JSON-RPC error, or a tool result marked as an error, saying `says`.
fn refused(response: &Value, says: &str) {
    let text = if response["error"].is_null() {
        assert_eq!(response["result"]["isError"], json!(true), "{response}");
        response["result"]["content"].to_string()
    } else {
        response["error"]["message"].to_string()
    };
    assert!(text.contains(says), "expected {says:?} in {response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_server_speaks_json_rpc_on_stdio_and_survives_bad_calls() {
    let env = Env::new(engineer(), HELLO_GATE, "").await;
    env.ok(&[
        "knowledge",
        "add",
        "P",
        "--title",
        "Running the tests",
        "--body",
        "Run `make check` before pushing.",
        "--source",
        "docs/testing.md:3-9",
    ]);
    let mut c = Client::start(&env);

    let init = c.call(
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "plain-json-rpc", "version": "1"},
        }),
    );
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");
    c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));

    let list = c.call("tools/list", json!({}));
    let mut names: Vec<String> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "read_knowledge",
            "record_knowledge",
            "search_knowledge",
            "ticket_context"
        ]
    );
    let search_schema = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "search_knowledge")
        .unwrap()["inputSchema"]
        .clone();
    assert_eq!(
        search_schema["required"],
        json!(["query"]),
        "{search_schema}"
    );

    let found = answer(&c.tool("search_knowledge", json!({"query": "how to run tests"})));
    let first = &found["results"][0];
    assert_eq!(first["title"], "Running the tests", "{found}");
    assert_eq!(first["tag"], "human");
    assert_eq!(first["sources"], json!(["docs/testing.md:3-9"]));
    assert_eq!(first["stale"], false);
    let id = first["id"].as_i64().unwrap();
    let entry = answer(&c.tool("read_knowledge", json!({"id": id})));
    assert_eq!(entry["body"], "Run `make check` before pushing.");

    let recorded = answer(&c.tool(
        "record_knowledge",
        json!({"title": "Fixtures", "body": "Fixtures live in tests/data.", "sources": ["tests/data/README.md"]}),
    ));
    assert_eq!(
        recorded["tag"], "inferred",
        "an agent's finding is never verified"
    );
    let ticket = answer(&c.tool("ticket_context", json!({"key": "P-1"})));
    assert_eq!(ticket["title"], "Say hello");
    assert!(ticket["body"].as_str().unwrap().contains("Acceptance"));

    // Bad calls: clear errors, and the server keeps answering.
    refused(&c.tool("search_knowledge", json!({})), "query");
    refused(
        &c.tool("search_knowledge", json!({"query": "  "})),
        "query is empty",
    );
    refused(
        &c.tool("read_knowledge", json!({"id": 999})),
        "no knowledge entry 999",
    );
    refused(&c.tool("read_knowledge", json!({"id": "x"})), "id");
    refused(
        &c.tool(
            "record_knowledge",
            json!({"title": "t", "body": "b", "sources": []}),
        ),
        "cite at least one file",
    );
    refused(
        &c.tool(
            "record_knowledge",
            json!({"title": "t", "body": "b", "sources": ["../x"]}),
        ),
        "inside the repository",
    );
    refused(
        &c.tool("ticket_context", json!({"key": "Q-9"})),
        "no ticket Q-9",
    );
    refused(&c.tool("no_such_tool", json!({})), "no knowledge tool");
    let unknown = c.call("no/such/method", json!({}));
    assert!(!unknown["error"].is_null(), "{unknown}");
    let again = answer(&c.tool("search_knowledge", json!({"query": "fixtures"})));
    assert_eq!(again["results"][0]["tag"], "inferred", "{again}");
    let listed = env.json(&["knowledge", "list", "P", "--json"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "only the good record was kept"
    );
}

/// Inside a sandbox the server only asks the gateway, and only with the step's pass: without
/// one it refuses to start and says what is missing (it never falls back to a store).
#[test]
fn the_gateway_mode_needs_the_steps_pass() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .args(["mcp", "--gateway", "http://127.0.0.1:9"])
        .env_remove("CODEMILL_PASS")
        .env("CODEMILL_HOME", "/nonexistent/codemill-home")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CODEMILL_PASS"), "{err}");
    let out = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .args(["mcp", "--gateway", "http://127.0.0.1:9", "--project", "P"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "--gateway and --project exclude each other"
    );
}
