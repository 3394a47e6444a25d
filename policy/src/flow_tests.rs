#![allow(clippy::unwrap_used)]
use super::*;

const ORIGIN: &str = "/flows/demo/flow.toml";

fn parse(src: &str) -> Result<Flow, PolicyError> {
    Flow::from_toml_str(Path::new(ORIGIN), src)
}

/// The error's one-line message; fails the test when the flow was accepted.
fn refusal(src: &str) -> String {
    match parse(src) {
        Ok(f) => panic!("accepted:\n{src}\n{f:#?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = r#"schema = 1
name = "demo"
[workspace]
repo = "repo"
"#;

fn with_nodes(nodes: &str) -> String {
    format!("{HEAD}{nodes}")
}

const GOOD: &str = r#"schema = 1
name = "quickstart"
parallelism = 2
[workspace]
repo = "repo"
ref = "main"

[[node]]
id = "build"
kind = "shell"
run = "sh build.sh"
profile = "restrictive"
timeout = "60s"

[[node]]
id = "test"
kind = "shell"
run = "sh test.sh"
needs = ["build"]
retries = 2

[[node]]
id = "agent"
kind = "agent"
argv = ["my-agent", "--task", "fix it"]
profile = "../profiles/agent.toml"
needs = ["build"]
confirm = "always"
[node.caps]
net = "none"
write_paths = ["$WORKSPACE/src"]

[[node]]
id = "clean"
kind = "shell"
run = "git clean -fdx"
needs = ["test", "agent"]
"#;

#[test]
fn parses_a_whole_flow_with_defaults_applied() {
    let f = parse(GOOD).unwrap();
    assert_eq!(f.name.as_str(), "quickstart");
    assert_eq!(f.source, PathBuf::from(ORIGIN));
    assert_eq!(f.dir(), Path::new("/flows/demo"));
    assert_eq!(f.parallelism.map(Parallelism::get), Some(2));
    assert_eq!(f.workspace.git_ref.as_str(), "main");
    let ids: Vec<&str> = f.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["build", "test", "agent", "clean"]);
    let build = &f.nodes[0];
    assert_eq!(build.argv(), ["/bin/sh", "-c", "sh build.sh"]);
    assert_eq!(build.command_text(), "sh build.sh");
    assert_eq!(build.timeout, Some(Dur(60_000)));
    assert_eq!(
        build.caps().limits.unwrap().timeout,
        Some(Dur(60_000)),
        "timeout is folded into the caps the profile is checked against"
    );
    assert_eq!(build.retries.get(), 0);
    assert_eq!(build.confirm, Confirm::Auto);
    let test = &f.nodes[1];
    assert_eq!(test.profile, DEFAULT_PROFILE);
    assert_eq!(test.retries.get(), 2);
    let agent = &f.nodes[2];
    assert_eq!(agent.kind(), NodeKind::Agent);
    assert_eq!(agent.argv(), ["my-agent", "--task", "fix it"]);
    assert_eq!(agent.command_text(), "my-agent --task 'fix it'");
    assert_eq!(agent.profile, "/flows/demo/../profiles/agent.toml");
    assert_eq!(agent.confirm, Confirm::Always);
    assert_eq!(agent.caps.net, Some(crate::NetMode::None));
    assert_eq!(
        f.resolve_repo(),
        RepoSource::Path("/flows/demo/repo".into())
    );
}

#[test]
fn the_ref_defaults_to_head_and_the_profile_to_restrictive() {
    let f = parse(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n",
    ))
    .unwrap();
    assert_eq!(f.workspace.git_ref.as_str(), "HEAD");
    assert_eq!(f.nodes[0].profile, "restrictive");
    assert_eq!(f.parallelism, None);
}

#[test]
fn a_flow_round_trips_through_json() {
    let f = parse(GOOD).unwrap();
    let json = serde_json::to_string(&f).unwrap();
    assert!(json.contains(r#""kind":"agent""#), "{json}");
    let back: Flow = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f);
}

#[test]
fn json_with_an_out_of_range_value_is_refused() {
    let f = parse(GOOD).unwrap();
    let json = serde_json::to_string(&f)
        .unwrap()
        .replace(r#""retries":2"#, r#""retries":11"#);
    assert!(serde_json::from_str::<Flow>(&json).is_err());
}

fn ids(order: Vec<&FlowNode>) -> Vec<&str> {
    order.into_iter().map(|n| n.id.as_str()).collect()
}

#[test]
fn topo_order_runs_needs_first_and_keeps_file_order_among_ready_nodes() {
    let f = parse(GOOD).unwrap();
    assert_eq!(ids(f.topo_order()), ["build", "test", "agent", "clean"]);
    let src = with_nodes(
        r#"
[[node]]
id = "d"
kind = "shell"
run = "true"
needs = ["c"]
[[node]]
id = "c"
kind = "shell"
run = "true"
needs = ["a"]
[[node]]
id = "b"
kind = "shell"
run = "true"
[[node]]
id = "a"
kind = "shell"
run = "true"
"#,
    );
    assert_eq!(ids(parse(&src).unwrap().topo_order()), ["b", "a", "c", "d"]);
}

#[test]
fn a_long_chain_is_checked_without_deep_recursion() {
    let mut src = with_nodes("[[node]]\nid = \"n0\"\nkind = \"shell\"\nrun = \"true\"\n");
    for i in 1..MAX_NODES {
        src.push_str(&format!(
            "[[node]]\nid = \"n{i}\"\nkind = \"shell\"\nrun = \"true\"\nneeds = [\"n{}\"]\n",
            i - 1
        ));
    }
    let f = parse(&src).unwrap();
    assert_eq!(f.topo_order().len(), MAX_NODES);
    // One more is refused at the extra node, naming the limit.
    let n = MAX_NODES;
    src.push_str(&format!(
        "[[node]]\nid = \"n{n}\"\nkind = \"shell\"\nrun = \"true\"\n"
    ));
    let e = refusal(&src);
    assert!(
        e.contains(&format!("node[{n}]")) && e.contains("at most 2000 nodes"),
        "{e}"
    );
}

#[test]
fn refuses_commands_execve_cannot_take() {
    let node = |cmd: &str| format!("[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"{cmd}\"\n");
    // The longest single argument passes; one byte more is refused.
    let fits = format!("echo {}", "x".repeat(MAX_ARG_BYTES - 5));
    parse(&with_nodes(&node(&fits))).unwrap();
    let e = refusal(&with_nodes(&node(&format!("{fits}x"))));
    assert!(
        e.contains("node[0].run") && e.contains("MAX_ARG_STRLEN") && e.contains(":8:7:"),
        "{e}"
    );
    let e = refusal(&with_nodes(&node("echo a\\u0000b")));
    assert!(e.contains("node[0].run") && e.contains("NUL"), "{e}");
    // An agent's argv: each argument, then the whole.
    let arg = "y".repeat(MAX_ARG_BYTES);
    let argv = |n: usize| {
        let args: Vec<String> = (0..n).map(|_| format!("\"{arg}\"")).collect();
        format!(
            "[[node]]\nid = \"a\"\nkind = \"agent\"\nargv = [\"agent\", {}]\n",
            args.join(", ")
        )
    };
    parse(&with_nodes(&argv(7))).unwrap();
    let e = refusal(&with_nodes(&argv(9)));
    assert!(e.contains("node[0].argv") && e.contains("ARG_MAX"), "{e}");
    let e = refusal(&with_nodes(&format!(
        "[[node]]\nid = \"a\"\nkind = \"agent\"\nargv = [\"agent\", \"{arg}z\"]\n"
    )));
    assert!(
        e.contains("argument 1") && e.contains("MAX_ARG_STRLEN"),
        "{e}"
    );
}

// ---- refusals: each names the position and the field ----

#[test]
fn refuses_an_unknown_key_naming_it_and_its_line() {
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nrunn = \"x\"\n",
    ));
    assert!(e.starts_with(&format!("{ORIGIN}:9:")), "{e}");
    assert!(e.contains("unknown field `runn`"), "{e}");
    let e = refusal(&format!(
        "{HEAD}colour = 1\n[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n"
    ));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n[node.caps]\nnett = \"none\"\n",
    ));
    assert!(
        e.contains("node[0].caps") && e.contains("unknown field `nett`"),
        "{e}"
    );
}

#[test]
fn refuses_a_missing_or_unsupported_schema() {
    let e = refusal("name = \"demo\"\n[workspace]\nrepo = \"r\"\n");
    assert!(e.contains("missing field `schema`"), "{e}");
    let e = refusal(&HEAD.replace("schema = 1", "schema = 2"));
    assert!(e.starts_with(&format!("{ORIGIN}:1:")), "{e}");
    assert!(e.contains("schema: unsupported schema version 2"), "{e}");
}

#[test]
fn refuses_a_duplicate_key_naming_it() {
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nrun = \"false\"\n",
    ));
    assert!(e.starts_with(&format!("{ORIGIN}:9:")), "{e}");
    assert!(e.contains("duplicate key `run`"), "{e}");
}

#[test]
fn refuses_bad_names_and_ids() {
    for bad in ["Build", "-x", "a b", "", "é", &"x".repeat(65)] {
        let e = refusal(&with_nodes(&format!(
            "[[node]]\nid = {bad:?}\nkind = \"shell\"\nrun = \"true\"\n"
        )));
        assert!(e.starts_with(&format!("{ORIGIN}:6:")), "{bad:?}: {e}");
        assert!(e.contains("node[0].id") || e.contains("node.id"), "{e}");
    }
    let e = refusal(&HEAD.replace("\"demo\"", "\"Demo\""));
    assert!(
        e.starts_with(&format!("{ORIGIN}:2:")) && e.contains("name"),
        "{e}"
    );
    assert!(FlowId::parse("a_b-9").is_ok() && FlowId::parse(&"x".repeat(64)).is_ok());
}

#[test]
fn refuses_a_duplicate_node_id_naming_both_lines() {
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n\
         [[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n",
    ));
    assert_eq!(
        e,
        format!("{ORIGIN}:10:6: node[1].id: duplicate node id \"a\" (first on line 6)")
    );
}

#[test]
fn refuses_an_unknown_or_repeated_need() {
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nneeds = [\"zz\"]\n",
    ));
    assert_eq!(
        e,
        format!("{ORIGIN}:9:10: node[0].needs[0]: unknown node id \"zz\"")
    );
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n\
         [[node]]\nid = \"b\"\nkind = \"shell\"\nrun = \"true\"\nneeds = [\"a\", \"a\"]\n",
    ));
    assert!(e.contains("node[1].needs[1]: \"a\" is listed twice"), "{e}");
}

fn shell(id: &str, needs: &str) -> String {
    format!("[[node]]\nid = \"{id}\"\nkind = \"shell\"\nrun = \"true\"\nneeds = [{needs}]\n")
}

#[test]
fn refuses_a_two_node_cycle_naming_it() {
    let e = refusal(&with_nodes(&(shell("a", "\"b\"") + &shell("b", "\"a\""))));
    assert_eq!(
        e,
        format!("{ORIGIN}:14:10: node[1].needs[0]: needs cycle: a -> b -> a")
    );
}

#[test]
fn refuses_a_three_node_cycle_behind_a_good_node_naming_it() {
    let src = shell("ok", "")
        + &shell("a", "\"ok\", \"b\"")
        + &shell("b", "\"c\"")
        + &shell("c", "\"a\"");
    let e = refusal(&with_nodes(&src));
    assert!(
        e.ends_with("node[3].needs[0]: needs cycle: a -> b -> c -> a"),
        "{e}"
    );
    assert!(e.starts_with(&format!("{ORIGIN}:24:")), "{e}");
}

#[test]
fn refuses_a_node_needing_itself() {
    let e = refusal(&with_nodes(&shell("a", "\"a\"")));
    assert!(e.ends_with("node[0].needs[0]: needs cycle: a -> a"), "{e}");
}

#[test]
fn refuses_commands_that_do_not_fit_the_kind() {
    let e = refusal(&with_nodes("[[node]]\nid = \"a\"\nkind = \"shell\"\n"));
    assert_eq!(
        e,
        format!("{ORIGIN}:7:8: node[0].run: a shell node needs `run`")
    );
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"agent\"\nrun = \"claude\"\n",
    ));
    assert_eq!(
        e,
        format!("{ORIGIN}:8:7: node[0].run: an agent node takes `argv`, not `run` (use kind = \"shell\")")
    );
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nargv = [\"ls\"]\n",
    ));
    assert!(
        e.contains(":8:8: node[0].argv: a shell node takes `run`"),
        "{e}"
    );
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"agent\"\nargv = []\n",
    ));
    assert!(
        e.contains(":8:8: node[0].argv: needs a program name"),
        "{e}"
    );
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"  \"\n",
    ));
    assert!(e.contains(":8:7: node[0].run: empty command"), "{e}");
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"python\"\nrun = \"x\"\n",
    ));
    assert!(
        e.contains(":7:") && e.contains("unknown variant `python`"),
        "{e}"
    );
}

#[test]
fn refuses_remote_repos_and_bad_file_urls() {
    for (repo, says) in [
        ("https://example.com/r.git", "https:// is refused"),
        ("ssh://git@host/r", "ssh:// is refused"),
        ("git@github.com:o/r.git", "looks like a remote"),
        ("file://host/r", "absolute local path"),
        ("file:///a%zz", "bad %-escape"),
        ("", "give a path"),
    ] {
        let e = refusal(&format!(
            "schema = 1\nname = \"d\"\n[workspace]\nrepo = {repo:?}\n{}",
            shell("a", "")
        ));
        assert!(e.starts_with(&format!("{ORIGIN}:4:")), "{repo}: {e}");
        assert!(
            e.contains("workspace.repo") && e.contains(says),
            "{repo}: {e}"
        );
    }
}

#[test]
fn file_urls_and_absolute_paths_resolve_to_absolute_paths() {
    for (repo, want) in [
        ("file:///srv/git/my%20repo", "/srv/git/my repo"),
        ("file://localhost/srv/r", "/srv/r"),
        ("/srv/r", "/srv/r"),
        ("../r", "/flows/demo/../r"),
    ] {
        let f = parse(&format!(
            "schema = 1\nname = \"d\"\n[workspace]\nrepo = {repo:?}\n{}",
            shell("a", "")
        ))
        .unwrap();
        assert_eq!(f.resolve_repo(), RepoSource::Path(want.into()), "{repo}");
    }
}

#[test]
fn refuses_retries_and_parallelism_out_of_range() {
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nretries = 11\n",
    ));
    assert!(e.starts_with(&format!("{ORIGIN}:9:")), "{e}");
    assert!(
        e.contains("retries") && e.contains("must be 0 to 10"),
        "{e}"
    );
    for p in ["0", "65", "-1"] {
        let src = format!(
            "schema = 1\nname = \"d\"\nparallelism = {p}\n[workspace]\nrepo = \"r\"\n{}",
            shell("a", "")
        );
        let e = refusal(&src);
        assert!(e.contains(":3:") && e.contains("parallelism"), "{p}: {e}");
    }
}

#[test]
fn refuses_bad_refs_timeouts_confirm_and_profile_names() {
    let src = HEAD.replace("repo = \"repo\"", "repo = \"r\"\nref = \"--upload-pack=x\"");
    let e = refusal(&(src + &shell("a", "")));
    assert!(e.contains(":5:") && e.contains("workspace.ref"), "{e}");
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"x\"\ntimeout = \"60\"\n",
    ));
    assert!(e.contains(":9:") && e.contains("missing unit"), "{e}");
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"x\"\nconfirm = \"maybe\"\n",
    ));
    assert!(
        e.contains(":9:") && e.contains("unknown variant `maybe`"),
        "{e}"
    );
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"x\"\nprofile = \"Bad Name\"\n",
    ));
    assert!(e.contains(":9:11: node[0].profile: profile name"), "{e}");
}

#[test]
fn refuses_a_timeout_given_twice() {
    let e = refusal(&with_nodes(
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"x\"\ntimeout = \"1m\"\n[node.caps.limits]\ntimeout = \"2m\"\n",
    ));
    assert!(
        e.contains(":9:11: node[0].timeout: set the timeout once"),
        "{e}"
    );
}

#[test]
fn refuses_a_flow_without_nodes() {
    let e = refusal(HEAD);
    assert!(
        e.contains("node: a flow needs at least one [[node]]"),
        "{e}"
    );
}

#[test]
fn the_gate_pauses_by_confirm_mode_and_findings() {
    let f = parse(GOOD).unwrap();
    let ws = crate::AbsPath::new("/ws").unwrap();
    let ctx = LintContext {
        workspace: Some(&ws),
        readable: &[],
        writable: &[],
    };
    let clean = &f.nodes[3];
    let findings = clean.lint(&ctx);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].rule, "git_clean_force");
    assert!(!has_escape(&findings));
    assert!(Confirm::Auto.pauses(&findings));
    assert!(!Confirm::Auto.pauses(&f.nodes[0].lint(&ctx)));
    assert!(Confirm::Always.pauses(&[]));
    assert!(!Confirm::Never.pauses(&findings));
}

/// Every one-character deletion of a good flow, and a quote or bracket
/// inserted at every position: each either parses to an acyclic flow or is
/// refused with a position inside the text; none panics.
#[test]
fn mangled_flows_are_refused_with_a_position_or_parse_cleanly() {
    let chars: Vec<char> = GOOD.chars().collect();
    let lines = GOOD.lines().count() + 1;
    let mut variants = vec![];
    for i in 0..chars.len() {
        let mut v = chars.clone();
        v.remove(i);
        variants.push(v.into_iter().collect::<String>());
        for c in ['"', '[', '\n'] {
            let mut v = chars.clone();
            v.insert(i, c);
            variants.push(v.into_iter().collect());
        }
    }
    for v in &variants {
        match parse(v) {
            Ok(f) => assert_eq!(f.topo_order().len(), f.nodes.len(), "{v}"),
            Err(PolicyError::Parse { line, .. })
            | Err(PolicyError::FlowInvalid { line, .. })
            | Err(PolicyError::NeedsCycle { line, .. }) => {
                assert!((1..=lines + 1).contains(&line), "line {line} in\n{v}")
            }
            Err(e) => panic!("unexpected error kind {e}\n{v}"),
        }
    }
}

/// Messages name the user's field and value, never serde's or Rust's
/// internals (`$__serde_spanned_private_value`, `FlowId("a")`).
#[test]
fn messages_name_fields_and_ids_without_internals() {
    for (node, field) in [
        (
            "id = \"A\"\nkind = \"shell\"\nrun = \"true\"\n",
            "node[0].id: ",
        ),
        (
            "id = \"a\"\nkind = \"bogus\"\nrun = \"true\"\n",
            "node[0].kind: ",
        ),
        ("id = \"a\"\nkind = \"shell\"\nrun = 3\n", "node[0].run: "),
        (
            "id = \"a\"\nkind = \"shell\"\nrun = \"x\"\ntimeout = \"zz\"\n",
            "node[0].timeout: ",
        ),
    ] {
        let e = refusal(&with_nodes(&format!("[[node]]\n{node}")));
        assert!(e.contains(field), "{field}: {e}");
        assert!(!e.contains("$__"), "{e}");
    }
    let id = FlowId::parse("a").unwrap();
    assert_eq!(format!("node {id:?}"), "node \"a\"");
}

/// A flow file must be UTF-8 and at most 1 MiB: either error names the
/// file (and the cap) and exits 65, as invalid input.
#[test]
fn a_flow_file_not_utf8_or_over_the_cap_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let mut text = with_nodes("[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n");
    text.push_str(&"# padding\n".repeat(120_000));
    std::fs::write(&big, &text).unwrap();
    let e = Flow::from_toml_file(&big).unwrap_err();
    assert_eq!(e.exit_code(), aiops_proto::exit::DATAERR, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&big.display().to_string()) && msg.contains("1048576-byte cap"),
        "{msg}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"schema = 1\nname = \"\xff\"\n").unwrap();
    let e = Flow::from_toml_file(&bad).unwrap_err();
    assert_eq!(e.exit_code(), aiops_proto::exit::DATAERR, "{e}");
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    // Just under the cap is read.
    text.truncate(usize::try_from(crate::error::MAX_INPUT_BYTES).unwrap() - 10);
    let end = text.rfind('\n').unwrap() + 1;
    std::fs::write(&big, &text[..end]).unwrap();
    Flow::from_toml_file(&big).unwrap();
}
