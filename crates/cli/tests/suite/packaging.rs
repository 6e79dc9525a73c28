//! The deployment files: the Helm chart renders (its values substituted for the expressions it
//! uses, as Helm would) to valid Kubernetes objects — web and worker deployments on PostgreSQL
//! from a secret, probes on the service's real health routes, Prometheus annotations, non-root —
//! whose container arguments parse as codemill's own CLI; the systemd unit passes
//! `systemd-analyze verify` without a warning; the Dockerfile is multi-stage, non-root, with
//! bubblewrap and git, and is built when a Docker engine answers (none runs on every machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart() -> PathBuf {
    root().join("deploy/helm/codemill")
}

fn load(text: &str, what: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}\n{text}"))
}

/// A scalar as Helm prints it.
fn scalar(v: &Yaml, what: &str) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Real(r) => r.clone(),
        other => panic!("{what} is not a scalar: {other:?}"),
    }
}

/// Render one template: `{{ .Values.a.b }}`, `.Release.Name`, `.Chart.Name`,
/// `.Chart.AppVersion`, optionally piped through `indent N`. Anything else fails the test, so
/// the chart stays within what this check understands.
fn render(template: &str, values: &Yaml, chart: &Yaml, file: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("{file}: unclosed {{{{"))
            + start;
        let expr = rest[start + 2..end].trim();
        let (path, filter) = match expr.split_once('|') {
            Some((p, f)) => (p.trim(), Some(f.trim())),
            None => (expr, None),
        };
        let value = if let Some(keys) = path.strip_prefix(".Values.") {
            let v = keys.split('.').fold(values, |v, k| &v[k]);
            assert!(!v.is_badvalue(), "{file}: no value {path}");
            scalar(v, path)
        } else {
            match path {
                ".Release.Name" => "rel".to_string(),
                ".Chart.Name" => scalar(&chart["name"], "name"),
                ".Chart.AppVersion" => scalar(&chart["appVersion"], "appVersion"),
                other => panic!("{file}: an expression this check does not render: {other}"),
            }
        };
        let value = match filter {
            None => value,
            Some(f) => {
                let n: usize = f
                    .strip_prefix("indent ")
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{file}: a filter this check does not know: {f}"));
                value
                    .lines()
                    .map(|l| format!("{}{l}", " ".repeat(n)))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The chart's objects by `kind/name`.
fn rendered() -> (BTreeMap<String, Yaml>, Yaml) {
    let chart_yaml = load(
        &std::fs::read_to_string(chart().join("Chart.yaml")).unwrap(),
        "Chart.yaml",
    )
    .remove(0);
    assert_eq!(scalar(&chart_yaml["apiVersion"], "apiVersion"), "v2");
    assert_eq!(scalar(&chart_yaml["name"], "name"), "codemill");
    let values = load(
        &std::fs::read_to_string(chart().join("values.yaml")).unwrap(),
        "values.yaml",
    )
    .remove(0);
    let mut objects = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = render(
            &std::fs::read_to_string(&file).unwrap(),
            &values,
            &chart_yaml,
            &name,
        );
        for doc in load(&text, &name) {
            let kind = scalar(&doc["kind"], "kind");
            let id = format!(
                "{kind}/{}",
                scalar(&doc["metadata"]["name"], "metadata.name")
            );
            for key in ["apiVersion", "kind", "metadata"] {
                assert!(!doc[key].is_badvalue(), "{id}: no {key}");
            }
            objects.insert(id, doc);
        }
    }
    (objects, values)
}

/// The container arguments parse as codemill's CLI (clap stops at `--help` only after every
/// argument before it was accepted).
fn assert_cli_accepts(args: &[Yaml], what: &str) {
    let mut args: Vec<String> = args.iter().map(|a| scalar(a, what)).collect();
    args.push("--help".into());
    let out = Command::new(assert_cmd::cargo::cargo_bin("codemill"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: codemill {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_helm_chart_renders_web_and_worker_deployments_on_postgres() {
    let (objects, values) = rendered();
    let ids: Vec<&String> = objects.keys().collect();
    assert_eq!(
        ids,
        [
            "ConfigMap/rel-config",
            "Deployment/rel-web",
            "Deployment/rel-worker",
            "Service/rel-web"
        ]
    );
    let port = scalar(&values["web"]["port"], "web.port");
    let web = &objects["Deployment/rel-web"];
    let pod = &web["spec"]["template"];
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(
        scalar(&annotations["prometheus.io/scrape"], "scrape"),
        "true"
    );
    assert_eq!(scalar(&annotations["prometheus.io/port"], "port"), port);
    assert_eq!(
        scalar(&annotations["prometheus.io/path"], "path"),
        "/metrics"
    );
    for (id, deployment) in [("web", web), ("worker", &objects["Deployment/rel-worker"])] {
        let spec = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            spec["securityContext"]["runAsNonRoot"],
            Yaml::Boolean(true),
            "{id}"
        );
        let container = &spec["containers"][0];
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            Yaml::Boolean(false),
            "{id}"
        );
        let env = container["env"].as_vec().unwrap();
        let pg = env
            .iter()
            .find(|e| e["name"].as_str() == Some("CODEMILL_PG_URL"))
            .unwrap_or_else(|| panic!("{id}: no CODEMILL_PG_URL"));
        assert_eq!(
            scalar(&pg["valueFrom"]["secretKeyRef"]["name"], "secret"),
            scalar(&values["postgres"]["secretName"], "postgres.secretName"),
            "{id}: the PostgreSQL URL comes from the secret"
        );
        assert_cli_accepts(container["args"].as_vec().unwrap(), id);
        assert!(
            scalar(&container["image"], "image").ends_with(&scalar(&values["image"]["tag"], "tag"))
        );
    }
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        scalar(&container["livenessProbe"]["httpGet"]["path"], "liveness"),
        "/health"
    );
    assert_eq!(
        scalar(&container["readinessProbe"]["httpGet"]["path"], "readiness"),
        "/ready"
    );
    assert_eq!(
        container["args"][1].as_str(),
        Some("--role"),
        "web nodes serve HTTP only"
    );
    // Workers run the sandbox: bubblewrap needs namespaces the default profiles forbid.
    let worker = &objects["Deployment/rel-worker"]["spec"]["template"]["spec"];
    assert_eq!(
        scalar(
            &worker["securityContext"]["seccompProfile"]["type"],
            "seccomp"
        ),
        "Unconfined"
    );
    // The configuration every node reads names the PostgreSQL variable the pods set.
    let toml_text = scalar(
        &objects["ConfigMap/rel-config"]["data"]["codemill.toml"],
        "codemill.toml",
    );
    let config: toml::Value = toml::from_str(&toml_text).unwrap();
    assert_eq!(
        config["store"]["postgres_url_env"].as_str(),
        Some("CODEMILL_PG_URL")
    );
    // The routes the probes and the scraper use are the server's.
    let routes = std::fs::read_to_string(root().join("crates/server/src/lib.rs")).unwrap();
    for route in ["\"/health\"", "\"/ready\"", "\"/metrics\""] {
        assert!(routes.contains(route), "the server has no {route} route");
    }
}

#[test]
fn the_systemd_unit_verifies_without_warnings() {
    let tool = Path::new("/usr/bin/systemd-analyze");
    assert!(
        tool.is_file(),
        "systemd-analyze not found: ./scripts/test installs systemd (never skipped)"
    );
    let unit = std::fs::read_to_string(root().join("deploy/codemill.service")).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("codemill");
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        let path = dir.path().join("codemill.service");
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/codemill", bin.to_str().unwrap()),
        )
        .unwrap();
        let out = Command::new(tool)
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, warnings) = verify(&unit);
    assert!(ok && warnings.trim().is_empty(), "{warnings}");
    // The check bites: a mistyped hardening option is reported.
    let (_, warnings) = verify(&unit.replace("ProtectSystem=strict", "ProtectSystem=sometimes"));
    assert!(warnings.contains("sometimes"), "{warnings}");
    // Hardening that would break the sandbox is not there.
    for key in [
        "PrivateUsers=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictNamespaces=yes",
    ] {
        assert!(
            !unit.contains(key),
            "{key} breaks bubblewrap or the agent CLIs"
        );
    }
    assert!(unit.contains("RestrictNamespaces=user mnt pid net ipc uts"));
}

#[test]
fn the_dockerfile_builds_a_non_root_image_with_the_sandbox() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage");
    assert!(text.contains("USER 10001"), "runs as a non-root user");
    let install = text
        .lines()
        .find(|l| l.contains("apt-get install"))
        .unwrap();
    for pkg in ["bubblewrap", "git", "ca-certificates"] {
        assert!(install.contains(pkg), "{pkg} in the image");
    }
    assert!(text.contains("ARG AGENT_CLIS=false"), "agent CLIs optional");
    assert!(
        text.contains("seccomp=unconfined"),
        "the run flags are documented"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
    // Built only where a Docker engine answers.
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if engine {
        let out = Command::new("docker")
            .args(["build", "-q", "-t", "codemill-test", "."])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let version = Command::new("docker")
            .args(["run", "--rm", "codemill-test", "--version"])
            .output()
            .unwrap();
        assert!(
            version.status.success(),
            "{}",
            String::from_utf8_lossy(&version.stderr)
        );
    }
}
