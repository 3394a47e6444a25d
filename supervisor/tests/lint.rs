//! `aiopsctl lint FLOW` and the quickstart example, through the real binaries.
#![allow(clippy::unwrap_used)]
use aiops_policy::Flow;
use aiops_testkit::skip;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{aiopsctl, repo_root};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn lint_json(flow: &Path) -> (Option<i32>, Value) {
    let o = aiopsctl(&["lint", "--json", flow.to_str().unwrap()]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (o.status.code(), v)
}

/// A flow file in a fresh directory, beside a one-commit repository
/// `repo` (lint checks it as a run would); returns both so the directory lives on.
fn flow_file(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    git_repo(&dir.path().join("repo"));
    let p = dir.path().join("flow.toml");
    let src = format!("schema = 1\nname = \"t\"\n[workspace]\nrepo = \"repo\"\n{body}");
    std::fs::write(&p, src).unwrap();
    (dir, p)
}

fn git_repo(at: &Path) {
    sh(Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(at));
    sh(Command::new("git")
        .arg("-C")
        .arg(at)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["commit", "-q", "--allow-empty", "-m", "init"]));
}

/// The quickstart flow in a fresh directory with its repository made by
/// make-repo.sh, as the quickstart README does.
fn quickstart_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("flow.toml");
    std::fs::copy(repo_root().join(QUICKSTART), &flow).unwrap();
    let make = repo_root().join("examples/quickstart/make-repo.sh");
    sh(Command::new(make).arg(dir.path().join("repo")));
    (dir, flow)
}

fn node(id: &str, run: &str, extra: &str) -> String {
    format!("[[node]]\nid = \"{id}\"\nkind = \"shell\"\nrun = {run:?}\n{extra}\n")
}

const QUICKSTART: &str = "examples/quickstart/flow.toml";

#[test]
fn the_quickstart_flow_is_valid_and_only_its_clean_step_pauses() {
    let (dir, flow) = quickstart_copy();
    let (code, v) = lint_json(&flow);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["name"], "quickstart");
    assert_eq!(v["ref"], "main");
    let repo = dir.path().join("repo");
    assert_eq!(v["repo"], repo.to_str().unwrap());
    assert_eq!(v["commit"].as_str().map(str::len), Some(40), "{v:#}");
    assert_eq!(v["order"], serde_json::json!(["build", "test", "clean"]));
    let nodes = v["nodes"].as_array().unwrap();
    let pauses: Vec<bool> = nodes
        .iter()
        .map(|n| n["pauses"].as_bool().unwrap())
        .collect();
    assert_eq!(pauses, [false, false, true]);
    assert_eq!(nodes[2]["findings"][0]["rule"], "git_clean_force");
    assert_eq!(nodes[2]["findings"][0]["kind"], "destructive");
    assert!(nodes[..2]
        .iter()
        .all(|n| n["findings"] == serde_json::json!([])));

    let o = aiopsctl(&["lint", flow.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("order: build -> test -> clean"), "{out}");
    assert!(
        out.contains("warning: git_clean_force (destructive)"),
        "{out}"
    );
    assert!(
        out.contains("will pause for confirmation (confirm = \"auto\")"),
        "{out}"
    );
    assert!(
        out.contains("\nvalid; 1 node(s) will pause for confirmation\n(the gate reads"),
        "{out}"
    );
}

/// What `run` would refuse or fail on, lint reports first: a repository or
/// ref that does not exist, too many nodes, a command execve cannot take.
#[test]
fn lint_refuses_what_run_cannot_run() {
    let (d, p) = flow_file(&node("a", "true", ""));
    std::fs::remove_dir_all(d.path().join("repo")).unwrap();
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(66), "{v:#}");
    assert_eq!(v["valid"], false);
    let e = v["workspace_error"].as_str().unwrap();
    assert!(
        e.contains("open git repository") && e.contains("/repo"),
        "{e}"
    );

    let (_d, p) = flow_file(&node("a", "true", ""));
    let src = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        src.replace("repo = \"repo\"", "repo = \"repo\"\nref = \"nosuch\""),
    )
    .unwrap();
    let o = aiopsctl(&["lint", p.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(66), "{out}");
    assert!(out.contains("resolve ref \"nosuch\""), "{out}");
    assert!(out.contains("invalid (exit 66)"), "{out}");

    let many: String = (0..=aiops_policy::flow::MAX_NODES)
        .map(|i| node(&format!("n{i}"), "true", ""))
        .collect();
    let (_d, p) = flow_file(&many);
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(65), "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("at most 2000 nodes"));

    let big = format!("echo {}", "x".repeat(200 * 1024));
    let (_d, p) = flow_file(&node("a", &big, ""));
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(65), "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("MAX_ARG_STRLEN"));
}

/// A profile by path passes a local lint, with a note that a system daemon refuses it.
#[test]
fn lint_notes_what_a_system_daemon_refuses() {
    let (d, p) = flow_file(
        &(node("a", "true", "profile = \"mine.toml\"")
            + &node("b", "true", "profile = \"unconfined\"")),
    );
    std::fs::write(
        d.path().join("mine.toml"),
        "schema = 1\nname = \"mine\"\ndescription = \"d\"\nextends = \"restrictive\"\n",
    )
    .unwrap();
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(0), "{v:#}");
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("node \\\"a\\\": profile by path") && notes.contains("unconfined"),
        "{notes}"
    );
}

#[test]
fn an_invalid_flow_exits_65_naming_the_file_line_and_field() {
    let (_d, p) =
        flow_file(&(node("a", "true", "needs = [\"b\"]") + &node("b", "true", "needs = [\"a\"]")));
    let o = aiopsctl(&["lint", p.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(65), "{out}");
    let want = format!(
        "error: {}:14:10: node[1].needs[0]: needs cycle: a -> b -> a",
        p.display()
    );
    assert_eq!(out.trim_end(), want);

    let (_d, p) = flow_file(&node("a", "true", "colour = \"red\""));
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(65));
    assert_eq!(v["valid"], false);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains(":9:") && e.contains("unknown field `colour`"),
        "{e}"
    );
}

#[test]
fn an_escape_finding_exits_3_even_when_the_node_would_not_pause() {
    let (_d, p) = flow_file(&node(
        "peek",
        "cat ~/.ssh/id_ed25519",
        "confirm = \"never\"",
    ));
    let o = aiopsctl(&["lint", p.to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("escape: sensitive_path (sandbox escape)"),
        "{out}"
    );
    assert!(out.contains("will NOT pause: confirm = \"never\""), "{out}");
    assert!(
        out.contains("try to reach past the sandbox (exit 3)"),
        "{out}"
    );
}

#[test]
fn a_node_asking_more_than_its_profile_exits_77_naming_node_and_field() {
    let (_d, p) = flow_file(&node("net", "true", "[node.caps]\nnet = \"host\""));
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(77), "{v:#}");
    let e = v["nodes"][0]["error"].as_str().unwrap();
    assert!(
        e.contains("node \"net\": caps.net") && e.contains("restrictive"),
        "{e}"
    );
    // A timeout above the profile's limit is the same refusal.
    let (_d, p) = flow_file(&node("slow", "true", "timeout = \"2h\""));
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(77), "{v:#}");
    assert!(v["nodes"][0]["error"]
        .as_str()
        .unwrap()
        .contains("caps.limits.timeout"));
}

#[test]
fn profiles_resolve_by_name_or_relative_to_the_flow_file() {
    let (d, p) = flow_file(
        &(node("a", "true", "profile = \"nosuch\"")
            + &node("b", "true", "profile = \"mine.toml\"")),
    );
    std::fs::write(
        d.path().join("mine.toml"),
        "schema = 1\nname = \"mine\"\ndescription = \"restrictive, say\"\nextends = \"restrictive\"\n",
    )
    .unwrap();
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(66), "{v:#}");
    assert!(v["nodes"][0]["error"]
        .as_str()
        .unwrap()
        .contains("profile \"nosuch\" not found"));
    assert_eq!(v["nodes"][1]["error"], Value::Null, "{v:#}");
    assert_eq!(
        v["nodes"][1]["profile"],
        d.path().join("mine.toml").to_str().unwrap()
    );
}

#[test]
fn confirm_always_pauses_a_clean_command_and_auto_pauses_a_flagged_one() {
    let (_d, p) = flow_file(
        &(node("a", "echo hi", "confirm = \"always\"") + &node("b", "git reset --hard", "")),
    );
    let (code, v) = lint_json(&p);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["nodes"][0]["pauses"], true);
    assert_eq!(v["nodes"][1]["pauses"], true);
    assert_eq!(v["nodes"][1]["findings"][0]["text"], "--hard");
}

// ---- the quickstart through real jails ----

fn jail_helpers_built() -> bool {
    let dir = Path::new(env!("CARGO_BIN_EXE_aiopsctl")).parent().unwrap();
    let ok = ["aiops-jailer", "aiops-agentd"]
        .iter()
        .all(|b| dir.join(b).exists());
    if !ok {
        skip(
            "quickstart jail test",
            "jailer/agentd not built (cargo build --workspace)",
        );
    }
    ok
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
}

#[test]
fn the_quickstart_nodes_pass_in_jails_in_order_and_test_fails_without_build() {
    if !jail_helpers_built() {
        return;
    }
    let flow = Flow::from_toml_file(&repo_root().join(QUICKSTART)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let ws = tmp.path().join("ws");
    let make = repo_root().join("examples/quickstart/make-repo.sh");
    sh(Command::new(&make).arg(&repo));
    sh(Command::new(&make).arg(&repo)); // idempotent
    sh(Command::new("git")
        .args(["clone", "-q", "--branch", flow.workspace.git_ref.as_str()])
        .arg(&repo)
        .arg(&ws));
    // As root a jail runs as the workspace owner, and as nobody for a root-owned one.
    if nix::unistd::geteuid().is_root() {
        sh(Command::new("chown").args(["-R", "65534:65534"]).arg(&ws));
    }
    let run = |node: &aiops_policy::FlowNode| {
        let caps = tmp.path().join(format!("{}.caps.toml", node.id));
        std::fs::write(&caps, toml::to_string(&node.caps()).unwrap()).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
            .args(["exec", "--profile", &node.profile, "--node-caps"])
            .arg(&caps)
            .arg("--workspace")
            .arg(&ws)
            .arg("--")
            .args(node.argv())
            .env_remove("AIOPS_PROFILE_PATH")
            .output()
            .unwrap();
        (o.status.code(), text(&o))
    };
    let test = flow.node("test").unwrap();
    let (code, out) = run(test);
    if code == Some(69) {
        return skip(
            "quickstart jail test",
            &format!("restrictive cannot run on this host: {out}"),
        );
    }
    assert_eq!(
        (code, out.trim_end()),
        (
            Some(1),
            "test failed: out/message.txt missing (did build run?)"
        )
    );
    let mut outputs = vec![];
    for node in flow.topo_order() {
        let (code, out) = run(node);
        assert_eq!(code, Some(0), "{}: {out}", node.id);
        outputs.push(out.trim_end().to_string());
    }
    assert_eq!(
        outputs,
        [
            "built out/message.txt (2 lines)",
            "tests passed",
            "Removing out/"
        ]
    );
    assert!(!ws.join("out").exists());
}
