//! The supervisor end to end, as an operator drives it: `aiopsctl run` of a
//! flow through real jails (the in-process engine), the gate, confirm,
//! the audit log, failure propagation, a repo that cannot be checked out,
//! and the daemon: kill -9 mid-run, cancel, and the API's peer check.
#![allow(clippy::unwrap_used)]
use aiops_tests::{
    aiopsctl, as_nobody, bin, curl_status, git, is_root, must_work, scratch_dir, skip,
    supervisor_config, GIT,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    repo: PathBuf,
    /// `AIOPS_PROFILE_PATH` for aiopsctl and the daemon.
    profile_path: String,
}

/// A state dir, an API socket path and a one-commit repo, all private to
/// this test.
fn env(test: &str) -> Option<Env> {
    if !Path::new(GIT).exists() {
        skip(test, "git is not installed");
        return None;
    }
    let dir = scratch_dir(None);
    let root = dir.path().to_path_buf();
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("hello.txt"), "hello from the fixture\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "fixture"]);
    let config = supervisor_config(&root);
    Some(Env {
        _dir: dir,
        root,
        config,
        repo,
        profile_path: aiops_tests::profiles_dir().display().to_string(),
    })
}

impl Env {
    fn flow(&self, name: &str, body: &str) -> PathBuf {
        let p = self.root.join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "schema = 1\nname = \"{name}\"\n[workspace]\nrepo = \"{}\"\nref = \"main\"\n\n{body}",
                self.repo.display()
            ),
        )
        .unwrap();
        p
    }

    /// `aiopsctl ARGS --config C` against this env's state, no daemon socket.
    fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(aiopsctl());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("AIOPS_PROFILE_PATH", &self.profile_path)
            .env_remove("AIOPS_API_SOCKET")
            .stdin(Stdio::null());
        c
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_cmd(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let o = self.ctl(&a);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn daemon(&self) -> Daemon {
        self.daemon_with(&mut Command::new(bin("aiops-supervisor")))
    }

    fn daemon_without_tmpdir(&self) -> Daemon {
        self.daemon_with(Command::new(bin("aiops-supervisor")).env_remove("TMPDIR"))
    }

    fn daemon_with(&self, cmd: &mut Command) -> Daemon {
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env("AIOPS_PROFILE_PATH", &self.profile_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let sock = self.root.join("api.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() || self.ctl(&["status"]).status.code() != Some(0) {
            assert!(Instant::now() < deadline, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Daemon { child }
    }
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn node<'a>(run: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap()
}

fn run_id(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stdout);
    s.split_whitespace()
        .find(|w| w.starts_with("r-"))
        .unwrap_or_else(|| panic!("no run id in {}", text(o)))
        .to_string()
}

#[test]
fn a_flow_runs_pauses_at_the_gate_and_confirm_finishes_it() {
    let Some(e) = env("a_flow_runs_pauses_at_the_gate_and_confirm_finishes_it") else {
        return;
    };
    let flow = e.flow(
        "gated",
        r#"
[[node]]
id = "build"
kind = "shell"
run = "mkdir -p out && cp hello.txt out/ && echo built"
profile = "restrictive"

[[node]]
id = "test"
kind = "shell"
run = "grep -q fixture out/hello.txt && echo tested"
profile = "restrictive"
needs = ["build"]

[[node]]
id = "publish"
kind = "shell"
run = "echo would publish"
profile = "restrictive"
needs = ["test"]
confirm = "always"
"#,
    );
    let o = e.ctl(&["run", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(text(&o).contains("paused: node publish"), "{}", text(&o));
    let id = run_id(&o);
    let run = e.json(&["status", &id]);
    assert_eq!(run["state"], "awaiting_confirmation");
    assert_eq!(node(&run, "build")["state"], "succeeded");
    assert_eq!(node(&run, "test")["state"], "succeeded");
    assert_eq!(node(&run, "publish")["state"], "awaiting_confirmation");
    assert_eq!(node(&run, "build")["stdout_bytes"], 6);
    let layers = node(&run, "build")["layers"].as_array().unwrap().len();
    assert!(layers > 5, "{run}");

    // The node's output is kept, and `logs` shows it.
    let o = e.ctl(&["logs", &id, "test"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "tested\n",
        "{}",
        text(&o)
    );

    let o = e.ctl(&["confirm", &id, "publish"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run = e.json(&["status", &id]);
    assert_eq!(run["state"], "succeeded", "{run}");

    // The audit has every node with byte counts and layers, and the gate.
    let o = e.ctl(&["audit", "--run", &id, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ends: Vec<_> = lines.iter().filter(|l| l["kind"] == "node_end").collect();
    assert_eq!(ends.len(), 3, "{lines:?}");
    for l in &ends {
        assert_eq!(l["state"], "succeeded");
        assert!(!l["layers"].as_array().unwrap().is_empty(), "{l}");
        assert!(l["stdout_bytes"].as_u64().unwrap() > 0, "{l}");
        assert!(l["capabilities"]["write"].is_array(), "{l}");
    }
    let gates: Vec<_> = lines.iter().filter(|l| l["kind"] == "gate").collect();
    assert!(gates.iter().any(|g| g["state"] == "confirmed"), "{lines:?}");

    // The state DB is 0600 and holds no env values.
    let db = e.root.join("state/state.db");
    assert_eq!(std::fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
    let audit_dir = e.root.join("state/audit");
    for f in std::fs::read_dir(audit_dir).unwrap() {
        let m = f.unwrap().metadata().unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
    }
}

#[test]
fn a_failure_skips_dependants_after_its_retries() {
    let Some(e) = env("a_failure_skips_dependants_after_its_retries") else {
        return;
    };
    let flow = e.flow(
        "failing",
        r#"
[[node]]
id = "flaky"
kind = "shell"
run = "echo trying; exit 3"
profile = "restrictive"
retries = 1

[[node]]
id = "after"
kind = "shell"
run = "echo never"
profile = "restrictive"
needs = ["flaky"]

[[node]]
id = "independent"
kind = "agent"
argv = ["/bin/echo", "still runs"]
profile = "restrictive"
"#,
    );
    let o = e.ctl(&["run", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let id = run_id(&o);
    let run = e.json(&["status", &id]);
    assert_eq!(run["state"], "failed");
    let flaky = node(&run, "flaky");
    assert_eq!(flaky["state"], "failed");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["exit_code"], 3);
    assert_eq!(node(&run, "after")["state"], "skipped");
    assert!(node(&run, "after")["reason"]
        .as_str()
        .unwrap()
        .contains("flaky"));
    assert_eq!(node(&run, "independent")["state"], "succeeded");
}

#[test]
fn a_repo_that_cannot_be_checked_out_fails_closed() {
    let Some(e) = env("a_repo_that_cannot_be_checked_out_fails_closed") else {
        return;
    };
    let marker = e.root.join("ran-somewhere");
    let flow = e.root.join("broken.toml");
    std::fs::write(
        &flow,
        format!(
            "schema = 1\nname = \"broken\"\n[workspace]\nrepo = \"{}\"\nref = \"no-such-branch\"\n\n[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"touch {}\"\nprofile = \"restrictive\"\n",
            e.repo.display(),
            marker.display()
        ),
    )
    .unwrap();
    let o = e.ctl(&["run", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let id = run_id(&o);
    let run = e.json(&["status", &id]);
    let a = node(&run, "a");
    assert_eq!(a["state"], "workspace_failed", "{run}");
    assert!(
        a["reason"].as_str().unwrap().contains("no-such-branch"),
        "{run}"
    );
    assert!(!marker.exists());
}

#[test]
fn a_malformed_flow_names_the_line_and_runs_nothing() {
    let Some(e) = env("a_malformed_flow_names_the_line_and_runs_nothing") else {
        return;
    };
    let flow = e.flow(
        "bad",
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"restrictive\"\nsurprise = 1\n",
    );
    let o = e.ctl(&["run", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml:") && err.contains("surprise"),
        "{err}"
    );
    // Nothing was stored.
    let runs = e.json(&["status"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");
}

fn pgrep(pattern: &str) -> Vec<String> {
    let o = Command::new("pgrep")
        .arg("-f")
        .arg(pattern)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_9_of_the_daemon_mid_run_leaves_lost_nodes_and_no_orphan_jail() {
    let Some(e) = env("kill_9_of_the_daemon_mid_run_leaves_lost_nodes_and_no_orphan_jail") else {
        return;
    };
    let tag = format!("sleep 4{}", std::process::id() % 1000);
    let flow = e.flow(
        "long",
        &format!(
            "[[node]]\nid = \"slow\"\nkind = \"shell\"\nrun = \"head -c 3000 /dev/zero; {tag}\"\nprofile = \"restrictive\"\n\n[[node]]\nid = \"next\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"restrictive\"\nneeds = [\"slow\"]\n"
        ),
    );
    let mut d = e.daemon();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("the node to run", || {
        e.json(&["status", &id])["nodes"][0]["state"] == "running" && !pgrep(&tag).is_empty()
    });
    let _ = d.child.kill();
    let _ = d.child.wait();
    wait_for("the jail to die with the supervisor", || {
        pgrep(&tag).is_empty()
    });
    drop(d);
    // Restarted: the node that was running is lost, its dependant skipped.
    let _d = e.daemon();
    wait_for("recovery", || e.json(&["status", &id])["state"] == "lost");
    let run = e.json(&["status", &id]);
    assert_eq!(node(&run, "slow")["state"], "lost");
    assert_eq!(node(&run, "next")["state"], "skipped");
    // A lost node has no recorded count; `status` reads its output file.
    assert_eq!(node(&run, "slow")["stdout_bytes"], 0);
    let o = e.ctl(&["status", &id]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("slow "))
        .unwrap_or("");
    assert!(line.contains(" 2.9 KiB "), "{out}");
    let o = e.ctl(&["audit", "--run", &id, "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().any(|l| l.contains("\"state\":\"lost\"")),
        "{out}"
    );
}

#[test]
fn cancel_stops_a_running_jail() {
    let Some(e) = env("cancel_stops_a_running_jail") else {
        return;
    };
    let tag = format!("sleep 5{}", std::process::id() % 1000);
    // 3000 bytes of output first: a cancelled node has no final report, so
    // `status` reads them from its output file.
    let flow = e.flow(
        "cancelme",
        &format!("[[node]]\nid = \"slow\"\nkind = \"shell\"\nrun = \"head -c 3000 /dev/zero; {tag}\"\nprofile = \"restrictive\"\n"),
    );
    let _d = e.daemon();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    let o = e.ctl(&["cancel", &id]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("the run to end", || {
        e.json(&["status", &id])["state"] == "cancelled"
    });
    assert!(pgrep(&tag).is_empty());
    let run = e.json(&["status", &id]);
    assert_eq!(node(&run, "slow")["state"], "cancelled");
    // In human units, from the output file when the store has no count.
    let o = e.ctl(&["status", &id]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("slow "))
        .unwrap_or("");
    assert!(line.contains(" 2.9 KiB "), "{out}");
    assert!(!line.contains("3000"), "{out}");
}

#[test]
fn the_api_answers_its_owner_and_refuses_another_user() {
    let test = "the_api_answers_its_owner_and_refuses_another_user";
    if !is_root() {
        aiops_tests::skip_needs_root(test, "switching to another uid needs root");
        return;
    }
    if !Path::new("/usr/bin/curl").exists() {
        skip(test, "curl is not installed");
        return;
    }
    let Some(e) = env(test) else { return };
    let _d = e.daemon();
    let sock = e.root.join("api.sock");
    let curl = |setpriv: bool, path: &str| {
        let c = if setpriv {
            as_nobody("/usr/bin/curl")
        } else {
            Command::new("/usr/bin/curl")
        };
        curl_status(c, &sock, &format!("http://aiops{path}"))
    };
    assert_eq!(curl(false, "/api/v1/state"), "200");
    assert_eq!(curl(false, "/readyz"), "200");
    // Let nobody reach the socket file, so the peer check is what refuses.
    std::fs::set_permissions(&e.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(curl(true, "/api/v1/state"), "403");
    if must_work() {
        assert_eq!(curl(false, "/metrics"), "200");
    }
}

#[test]
fn a_node_over_its_limits_and_a_killed_jailer_are_recorded_failures() {
    let Some(e) = env("a_node_over_its_limits_and_a_killed_jailer_are_recorded_failures") else {
        return;
    };
    let tag = format!("sleep 6{}", std::process::id() % 1000);
    let flow = e.flow(
        "limits",
        &format!(
            r#"
[[node]]
id = "slow"
kind = "shell"
run = "sleep 30"
profile = "restrictive"
timeout = "1s"

[[node]]
id = "victim"
kind = "shell"
run = "{tag}"
profile = "restrictive"
"#
        ),
    );
    let _d = e.daemon();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("the victim to run", || !pgrep(&tag).is_empty());
    // Kill the victim's jailer (the parent of its agentd) from outside.
    let jailers = pgrep("aiops-jailer --request-fd");
    assert!(!jailers.is_empty());
    for pid in &jailers {
        let cmd =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let holds_victim = cmd.split_whitespace().any(|child| {
            descendants(child).iter().any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.contains(&tag.replace(' ', "\0")))
            })
        });
        if holds_victim {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    wait_for("the run to end", || {
        e.json(&["status", &id])["state"] == "failed"
    });
    let run = e.json(&["status", &id]);
    let slow = node(&run, "slow");
    assert_eq!(slow["state"], "failed", "{run}");
    assert_eq!(slow["timed_out"], true, "{run}");
    let victim = node(&run, "victim");
    assert_eq!(victim["state"], "failed", "{run}");
    assert!(
        victim["reason"]
            .as_str()
            .unwrap()
            .contains("without a report"),
        "{run}"
    );
    assert!(
        pgrep(&tag).is_empty(),
        "the killed jailer's jail outlived it"
    );
    let o = e.ctl(&["audit", "--run", &id, "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"limit_hits\":[\"timeout\"]"), "{out}");
}

fn descendants(pid: &str) -> Vec<String> {
    let mut out = vec![pid.to_string()];
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for k in kids.split_whitespace() {
        out.extend(descendants(k));
    }
    out
}

#[test]
fn sigterm_drains_and_queued_work_continues_after_a_restart() {
    let Some(e) = env("sigterm_drains_and_queued_work_continues_after_a_restart") else {
        return;
    };
    std::fs::write(
        &e.config,
        format!(
            "schema = 1\nstate_dir = \"{0}/state\"\nparallelism = 1\ndrain_grace = \"1s\"\n[api]\nsocket = \"{0}/api.sock\"\n",
            e.root.display()
        ),
    )
    .unwrap();
    let tag = format!("sleep 7{}", std::process::id() % 1000);
    let flow = e.flow(
        "drain",
        &format!(
            "[[node]]\nid = \"slow\"\nkind = \"shell\"\nrun = \"{tag}\"\nprofile = \"restrictive\"\n\n[[node]]\nid = \"later\"\nkind = \"shell\"\nrun = \"echo later\"\nprofile = \"restrictive\"\n"
        ),
    );
    let mut d = e.daemon();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("the slow node to run", || !pgrep(&tag).is_empty());
    let _ = Command::new("kill").arg(d.child.id().to_string()).status();
    let st = d.child.wait().unwrap();
    assert!(st.success(), "the daemon did not exit cleanly: {st:?}");
    assert!(pgrep(&tag).is_empty());
    drop(d);
    let run = e.json(&["status", &id]);
    assert_eq!(node(&run, "slow")["state"], "cancelled", "{run}");
    assert!(node(&run, "slow")["reason"]
        .as_str()
        .unwrap()
        .contains("shutting down"));
    // parallelism 1: `later` had not started, and runs after the restart.
    assert_eq!(node(&run, "later")["state"], "queued", "{run}");
    let _d = e.daemon();
    wait_for("the queued node", || {
        node(&e.json(&["status", &id]), "later")["state"] == "succeeded"
    });
}

#[test]
fn a_flows_own_parallelism_is_respected() {
    let Some(e) = env("a_flows_own_parallelism_is_respected") else {
        return;
    };
    let mut body = String::from("parallelism = 1\n");
    for i in 0..3 {
        body += &format!(
            "\n[[node]]\nid = \"n{i}\"\nkind = \"shell\"\nrun = \"sleep 0.3\"\nprofile = \"restrictive\"\n"
        );
    }
    // `parallelism` is a top-level key: it must come before [workspace].
    let p = e.root.join("serial.toml");
    std::fs::write(
        &p,
        format!("schema = 1\nname = \"serial\"\n{body}",).replacen(
            "parallelism = 1\n",
            &format!(
                "parallelism = 1\n[workspace]\nrepo = \"{}\"\nref = \"main\"\n",
                e.repo.display()
            ),
            1,
        ),
    )
    .unwrap();
    let o = e.ctl(&["run", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let run = e.json(&["status", &run_id(&o)]);
    let mut spans: Vec<(i64, i64)> = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["started_at"].as_i64().unwrap(),
                n["ended_at"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "nodes overlapped: {spans:?}");
    }
}

#[test]
fn the_daemon_takes_profiles_by_name_only() {
    let Some(e) = env("the_daemon_takes_profiles_by_name_only") else {
        return;
    };
    // A client-supplied profile file (here a copy of `unconfined`) must
    // not become the ceiling of a daemon's node.
    let own = e.root.join("mine.toml");
    std::fs::copy(aiops_tests::profiles_dir().join("unconfined.toml"), &own).unwrap();
    let flow = e.flow(
        "byname",
        &format!(
            "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"{}\"\n",
            own.display()
        ),
    );
    let _d = e.daemon();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("by name"), "{}", text(&o));
    // By name, `unconfined` needs the operator's allow_unconfined.
    let flow = e.flow(
        "unjailed",
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"unconfined\"\n",
    );
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("allow_unconfined"), "{}", text(&o));
    let runs = e.json(&["status"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs}");
}

#[test]
fn yes_pre_approves_the_gate_and_cancel_at_the_gate_skips_dependants() {
    let Some(e) = env("yes_pre_approves_the_gate_and_cancel_at_the_gate_skips_dependants") else {
        return;
    };
    let body = "[[node]]\nid = \"risky\"\nkind = \"shell\"\nrun = \"echo risky\"\nprofile = \"restrictive\"\nconfirm = \"always\"\n\n[[node]]\nid = \"after\"\nkind = \"shell\"\nrun = \"echo after\"\nprofile = \"restrictive\"\nneeds = [\"risky\"]\n";
    let flow = e.flow("gates", body);
    // --yes: no pause, and the audit says it was approved in advance.
    let o = e.ctl(&["run", "--yes", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = run_id(&o);
    let o = e.ctl(&["audit", "--run", &id, "--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.contains("\"kind\":\"gate\"") && l.contains("\"state\":\"pre_approved\"")),
        "{out}"
    );
    // Without it: pause, then cancel the gated node; its dependant is skipped.
    let o = e.ctl(&["run", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let id = run_id(&o);
    let o = e.ctl(&["cancel", &id, "risky"]);
    assert!(o.status.success(), "{}", text(&o));
    let run = e.json(&["status", &id]);
    assert_eq!(run["state"], "cancelled", "{run}");
    assert_eq!(node(&run, "risky")["state"], "cancelled");
    assert_eq!(node(&run, "after")["state"], "skipped");
    // Nothing ran: no output files for either node.
    assert_eq!(node(&run, "risky")["attempts"], 0);
}

/// systemd's part for `aiops-jailer.socket` (`Accept=yes`): every
/// connection gets a fresh jailer with it as fd 3 and LISTEN_* set.
fn socket_activator(
    path: &Path,
    ceiling: &aiops_tests::SystemCeiling,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let config = ceiling.config.clone();
    use std::os::unix::net::UnixListener;
    let listener = UnixListener::bind(path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    // The helpers the daemon is told to use (CI reruns this suite with the
    // static builds): the jailer refuses a plan naming another agentd.
    let jailer = std::env::var_os("AIOPS_JAILER")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("aiops-jailer"));
    let agentd = std::env::var_os("AIOPS_AGENTD");
    std::thread::spawn(move || {
        let mut kids: Vec<Child> = vec![];
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    let mut cmd = Command::new("/bin/sh");
                    cmd.env_clear();
                    if let Some(a) = &agentd {
                        cmd.env("AIOPS_AGENTD", a);
                    }
                    let child = cmd
                        .arg("-c")
                        .arg(r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" --socket-activated"#)
                        .arg(&jailer)
                        .env("PATH", "/usr/bin:/bin")
                        .env("AIOPS_SUPERVISOR_USER", aiops_tests::euid().to_string())
                        .env("AIOPS_JAILER_CONFIG", &config)
                        .stdin(Stdio::from(std::os::fd::OwnedFd::from(conn)))
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap();
                    kids.push(child);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            kids.retain_mut(|k| matches!(k.try_wait(), Ok(None)));
        }
    });
    stop
}

#[test]
fn in_system_mode_the_daemon_asks_the_socket_activated_jailer() {
    let test = "in_system_mode_the_daemon_asks_the_socket_activated_jailer";
    let Some(e) = env(test) else {
        return;
    };
    // The jailer's ceiling must be root's (docs/jailer.md, "The ceiling").
    let Some(ceiling) = aiops_tests::SystemCeiling::new(&["restrictive"], "") else {
        aiops_tests::skip_needs_root(test, "system mode's jailer.toml must be owned by root");
        return;
    };
    let jsock = e.root.join("jailer.sock");
    let stop = socket_activator(&jsock, &ceiling);
    std::fs::write(
        &e.config,
        format!(
            "schema = 1\nstate_dir = \"{0}/state\"\n[api]\nsocket = \"{0}/api.sock\"\n[jailer]\nmode = \"socket\"\nsocket = \"{1}\"\n",
            e.root.display(),
            jsock.display()
        ),
    )
    .unwrap();
    let tag = format!("sleep 8{}", std::process::id() % 1000);
    let flow = e.flow(
        "sysmode",
        &format!(
            "[[node]]\nid = \"write\"\nkind = \"shell\"\nrun = \"echo via-socket > marker && cat marker\"\nprofile = \"restrictive\"\n\n\
             [[node]]\nid = \"slow\"\nkind = \"shell\"\nrun = \"{tag}\"\nprofile = \"restrictive\"\nneeds = [\"write\"]\n"
        ),
    );
    // As under systemd, no TMPDIR: system-mode jails use their own /tmp.
    let _d = e.daemon_without_tmpdir();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("the slow node to run", || !pgrep(&tag).is_empty());
    let run = e.json(&["status", &id]);
    let w = node(&run, "write");
    assert_eq!(w["state"], "succeeded", "{run}");
    assert_eq!(w["stdout_bytes"], 11, "{run}");
    assert!(
        w["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("landlock")),
        "{run}"
    );
    // Cancelling closes the connection; the jailer kills the jail.
    let o = e.ctl(&["cancel", &id]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("the run to end", || {
        e.json(&["status", &id])["state"] == "cancelled"
    });
    wait_for("the jail to die", || pgrep(&tag).is_empty());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn gc_removes_workspaces_of_finished_runs_only() {
    let Some(e) = env("gc_removes_workspaces_of_finished_runs_only") else {
        return;
    };
    let done = e.flow(
        "done",
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"echo done\"\nprofile = \"restrictive\"\n",
    );
    let paused = e.flow(
        "paused",
        "[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"echo later\"\nprofile = \"restrictive\"\nconfirm = \"always\"\n",
    );
    let o = e.ctl(&["run", done.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let finished = e.json(&["status", &run_id(&o)]);
    let o = e.ctl(&["run", paused.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let waiting = e.json(&["status", &run_id(&o)]);
    let ws = |r: &serde_json::Value| PathBuf::from(r["workspace"].as_str().unwrap());
    assert!(ws(&finished).is_dir() && ws(&waiting).is_dir());
    std::thread::sleep(Duration::from_millis(20));
    let o = e.ctl(&["gc", "--older-than", "1ms", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["result"], "removed");
    assert!(!ws(&finished).exists());
    // The run waiting at the gate keeps its workspace.
    assert!(ws(&waiting).is_dir());
}

/// The flooding node: `PROCS` processes connect to the egress proxy as
/// fast as they can for `argv[1]` seconds, never sending a byte, each
/// holding up to `HOLD` sockets (closing only those the proxy closed).
const FLOOD_PY: &str = r#"import os, select, socket, sys, time
T = float(sys.argv[1]); PROCS = 4; HOLD = 200
def flood():
    held = []; made = 0; closed = 0; failed = 0
    end = time.time() + T
    while time.time() < end:
        try:
            s = socket.socket(); s.settimeout(1); s.connect(('127.0.0.1', 3128))
            made += 1; held.append(s)
        except OSError:
            failed += 1; time.sleep(0.001)
        if len(held) >= HOLD:
            r, _, _ = select.select(held, [], [], 0)
            for s in r:
                held.remove(s); s.close(); closed += 1
            if len(held) >= HOLD:
                time.sleep(0.01)
    print('PROBE flood made=%d closed=%d failed=%d' % (made, closed, failed), flush=True)
pids = []
for _ in range(PROCS):
    pid = os.fork()
    if pid == 0:
        flood(); os._exit(0)
    pids.append(pid)
for p in pids:
    os.waitpid(p, 0)
"#;

/// What one flood run left on the host.
struct FloodRun {
    run: serde_json::Value,
    /// The flooder's egress summary from its audit line.
    egress: serde_json::Value,
    fetch_log: String,
    api_polls: usize,
    api_failures: usize,
    /// The slowest API answer (informational: timing is not judged).
    api_slowest: Duration,
    metrics: String,
    /// `Max open files` of the daemon, from /proc.
    nofile: String,
}

impl FloodRun {
    /// The run's node states and the flooder's counters (not its records).
    fn describe(&self) -> String {
        let mut egress = self.egress.clone();
        if let Some(o) = egress.as_object_mut() {
            o.remove("records");
        }
        let nodes: Vec<String> = self.run["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| format!("{}={} ({})", n["id"], n["state"], n["reason"]))
            .collect();
        format!(
            "nodes {nodes:?}\nflooder egress {egress}\nfetch log {:?}\napi {}/{} failed, slowest {:?}",
            self.fetch_log, self.api_failures, self.api_polls, self.api_slowest
        )
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// A daemon started with RLIMIT_NOFILE soft 128, hard 256 (it raises the
/// soft one itself); a flow with the flooder (profile `flooder`) and
/// `fetch`, which asks the loopback upstream three times through its own
/// proxy while the flood runs; the API asked every 250 ms throughout.
fn flood_run(e: &Env, flooder: &str, port: u16) -> FloodRun {
    let mut sh = Command::new("/bin/sh");
    sh.args([
        "-c",
        "ulimit -Sn 128 && ulimit -Hn 256 && exec \"$0\" \"$@\"",
    ])
    .arg(bin("aiops-supervisor"));
    let d = e.daemon_with(&mut sh);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.child.id())).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let flow = e.root.join(format!("{flooder}.flow.toml"));
    std::fs::write(
        &flow,
        format!(
            "schema = 1\nname = \"{flooder}\"\nparallelism = 2\n[workspace]\nrepo = \"{}\"\nref = \"main\"\n\n\
             [[node]]\nid = \"flood\"\nkind = \"shell\"\nprofile = \"{flooder}\"\nconfirm = \"never\"\n\
             run = \"python3 flood.py 6\"\n\n\
             [[node]]\nid = \"fetch\"\nkind = \"shell\"\nprofile = \"egress-bounded\"\nconfirm = \"never\"\n\
             run = \"sleep 1.5; for i in 1 2 3; do curl -sSf -m 20 http://up.test:{port}/hello || exit 1; sleep 1; done\"\n",
            e.repo.display()
        ),
    )
    .unwrap();
    let o = e.ctl(&["submit", flow.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (mut api_polls, mut api_failures, mut api_slowest) = (0, 0, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let asked = Instant::now();
        let o = e.ctl(&["status", &id, "--json"]);
        api_slowest = api_slowest.max(asked.elapsed());
        api_polls += 1;
        match serde_json::from_slice::<serde_json::Value>(&o.stdout) {
            Ok(run) if o.status.success() => {
                if ["succeeded", "failed"].contains(&run["state"].as_str().unwrap_or("")) {
                    break run;
                }
            }
            _ => api_failures += 1,
        }
        assert!(Instant::now() < deadline, "the flood run did not end");
        std::thread::sleep(Duration::from_millis(250));
    };
    let fetch_log = String::from_utf8_lossy(&e.ctl(&["logs", &id, "fetch"]).stdout).into_owned();
    let o = e.ctl(&["audit", "--run", &id, "--json"]);
    let egress = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["kind"] == "node_end" && l["node"] == "flood")
        .map(|l| l["egress"].clone())
        .unwrap_or_else(|| panic!("no node_end line for the flooder: {}", text(&o)));
    let metrics = Command::new("/usr/bin/curl")
        .args(["-sS", "--unix-socket"])
        .arg(e.root.join("api.sock"))
        .arg("http://aiops/metrics")
        .output()
        .unwrap();
    drop(d);
    FloodRun {
        run,
        egress,
        fetch_log,
        api_polls,
        api_failures,
        api_slowest,
        metrics: String::from_utf8_lossy(&metrics.stdout).into_owned(),
        nofile,
    }
}

/// One allowlist node opening connections to its egress proxy as fast as
/// it can, far past its profile's `connections` and past the daemon's
/// descriptor limit, fails neither another node's egress nor the API: the
/// proxy closes accepts over the bound at once. Judged on the host: the
/// upstream's own count, the other node's state and log, the API's
/// answers, the flooder's audited counters. Control: the same flood with
/// a bound above the daemon's limit runs the daemon out of descriptors.
#[test]
fn one_flooding_allowlist_node_fails_neither_another_node_nor_the_api() {
    let test = "one_flooding_allowlist_node_fails_neither_another_node_nor_the_api";
    if !aiops_tests::have_python(test) || !aiops_tests::have_program(test, "/usr/bin/curl") {
        return;
    }
    let Some(mut e) = env(test) else { return };
    // The upstream, on host loopback: counts the requests it answered.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = served.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let body = "hello from upstream\n";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let profiles = e.root.join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    for (name, connections) in [("egress-bounded", 16), ("egress-unbounded", 100_000)] {
        std::fs::write(
            profiles.join(format!("{name}.toml")),
            format!(
                "schema = 1\nname = \"{name}\"\ndescription = \"egress flood test\"\nextends = \"agent\"\n\
                 [net]\nmode = \"allowlist\"\nallow = [\"up.test:{port}\"]\n\
                 allow_private = [{{ cidr = \"127.0.0.0/8\", reason = \"the test's upstream\" }}]\n\
                 hosts = {{ \"up.test\" = \"127.0.0.1\" }}\n\
                 egress = {{ connections = {connections} }}\n\
                 # The jail cannot be given more than the daemon's hard limit.\n\
                 [limits]\nopen_files = 256\n"
            ),
        )
        .unwrap();
    }
    e.profile_path = format!("{}:{}", profiles.display(), e.profile_path);
    std::fs::write(e.repo.join("flood.py"), FLOOD_PY).unwrap();
    git(&e.repo, &["add", "flood.py"]);
    git(&e.repo, &["commit", "-q", "-m", "flood"]);

    let f = flood_run(&e, "egress-bounded", port);
    let why = f.describe();
    // The daemon raised its soft limit to the hard one, and no further.
    assert_eq!(f.nofile, "256 256", "{why}");
    // The flood went far past the bound and the daemon's limit ...
    let over = f.egress["over_limit"].as_u64().unwrap();
    assert!(over > 256, "{why}");
    assert!(f.egress["connections"].as_u64().unwrap() > 256, "{why}");
    // ... yet the proxy never held more than the bound, nor ran out.
    assert!(f.egress["peak_open"].as_u64().unwrap() <= 16, "{why}");
    assert_eq!(f.egress["accept_errors"], 0, "{why}");
    assert!(
        metric(
            &f.metrics,
            "aiops_egress_refused_total{cause=\"over_limit\"}"
        ) >= over
    );
    assert_eq!(metric(&f.metrics, "aiops_egress_accept_errors_total"), 0);
    // Both nodes ran to success (the daemon stored all they wrote) ...
    assert_eq!(f.run["state"], "succeeded", "{why}");
    // ... the other node's egress worked, seen by the upstream itself ...
    assert_eq!(node(&f.run, "fetch")["state"], "succeeded", "{why}");
    assert_eq!(
        f.fetch_log.matches("hello from upstream").count(),
        3,
        "{why}"
    );
    assert!(
        served.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "{why}"
    );
    // ... and the API answered every time it was asked during the flood.
    assert!(f.api_polls >= 8 && f.api_failures == 0, "{why}");

    eprintln!("{test}: with the bound: {why}");

    // Control: the same flood with a bound above the daemon's limit.
    let c = flood_run(&e, "egress-unbounded", port);
    let why = c.describe();
    assert!(c.egress["accept_errors"].as_u64().unwrap() > 0, "{why}");
    assert!(c.egress["peak_open"].as_u64().unwrap() > 16, "{why}");
    assert!(
        metric(&c.metrics, "aiops_egress_accept_errors_total") > 0,
        "{why}"
    );
    // What else failed while the daemon was out of descriptors varies with
    // timing (typically the flooder's own output could not be stored).
    eprintln!("{test}: without the bound: {why}");
}

/// SIGTERM or SIGINT (`kill -INT`) to a daemon-less `aiopsctl run`
/// drains: its running jail is stopped, the node is recorded `cancelled`
/// (one audit line, the signal named), the run is final, and aiopsctl
/// exits 128 + the signal. Before, it died at once and left the node
/// `running` until a later start marked it `lost`.
fn interrupting_a_daemonless_run_cancels_its_nodes(test: &str, signal: &str, signo: i32) {
    use std::io::BufRead;
    let Some(e) = env(test) else {
        return;
    };
    let tag = format!("sleep 10{}{signo}", std::process::id() % 1000);
    let flow = e.flow(
        "interrupted",
        &format!(
            "[[node]]\nid = \"slow\"\nkind = \"shell\"\nrun = \"{tag}\"\nprofile = \"restrictive\"\n\n[[node]]\nid = \"after\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"restrictive\"\nneeds = [\"slow\"]\n"
        ),
    );
    let mut child = e
        .ctl_cmd(&["run", flow.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let id = first
        .split_whitespace()
        .find(|w| w.starts_with("r-"))
        .unwrap_or_else(|| panic!("no run id in {first:?}"))
        .to_string();
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    // Really running: the node's process exists and the store says so.
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    assert_eq!(node(&e.json(&["status", &id]), "slow")["state"], "running");
    assert!(matches!(child.try_wait(), Ok(None)), "aiopsctl ended early");
    let sent = Instant::now();
    let st = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(&pid)
        .status()
        .unwrap();
    assert!(st.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("aiopsctl run did not exit within 15 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = sent.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let progress = rest.join().unwrap().join("\n");
    let said = format!("took {took:?}\nstdout:\n{first}\n{progress}\nstderr:\n{stderr}");
    assert_eq!(status.code(), Some(128 + signo), "{said}");
    assert!(took < Duration::from_secs(8), "{said}");
    assert!(pgrep(&tag).is_empty(), "the node outlived aiopsctl\n{said}");
    let run = e.json(&["status", &id]);
    assert_eq!(run["state"], "cancelled", "{run}\n{said}");
    let slow = node(&run, "slow");
    assert_eq!(slow["state"], "cancelled", "{run}");
    let why = format!("aiopsctl run interrupted (SIG{signal})");
    assert!(
        slow["reason"].as_str().unwrap_or("").contains(&why),
        "{run}"
    );
    assert_eq!(node(&run, "after")["state"], "cancelled", "{run}");
    // Exactly one audit line for the node: its end, cancelled, with why.
    let o = e.ctl(&["audit", "--run", &id, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mine: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["node"] == "slow")
        .collect();
    assert_eq!(mine.len(), 1, "{out}");
    assert_eq!(mine[0]["state"], "cancelled", "{out}");
    assert!(
        mine[0]["reason"].as_str().unwrap_or("").contains(&why),
        "{out}"
    );
}

#[test]
fn sigterm_of_a_daemonless_run_cancels_its_nodes() {
    interrupting_a_daemonless_run_cancels_its_nodes(
        "sigterm_of_a_daemonless_run_cancels_its_nodes",
        "TERM",
        15,
    );
}

#[test]
fn sigint_of_a_daemonless_run_cancels_its_nodes() {
    interrupting_a_daemonless_run_cancels_its_nodes(
        "sigint_of_a_daemonless_run_cancels_its_nodes",
        "INT",
        2,
    );
}

/// A second SIGTERM exits at once (143) without waiting for a jail that
/// ignores the first: the jail still dies with aiopsctl (PR_SET_PDEATHSIG)
/// and the node stays `running` in the store until the next start (the
/// documented escape hatch).
#[test]
fn a_second_sigterm_of_a_daemonless_run_exits_at_once() {
    let Some(e) = env("a_second_sigterm_of_a_daemonless_run_exits_at_once") else {
        return;
    };
    let tag = format!("sleep 11{}", std::process::id() % 1000);
    let flow = e.flow(
        "stubborn",
        &format!("[[node]]\nid = \"slow\"\nkind = \"shell\"\nrun = \"trap '' TERM; {tag}\"\nprofile = \"restrictive\"\n"),
    );
    let mut child = e
        .ctl_cmd(&["run", flow.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    let term = || {
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    };
    term();
    // The first is being acted on (the node ignores it, so the jail lives
    // until kill_grace's SIGKILL, 5 s); the second cuts that short.
    std::thread::sleep(Duration::from_millis(500));
    assert!(matches!(child.try_wait(), Ok(None)), "exited on the first");
    assert!(!pgrep(&tag).is_empty(), "the node ignores SIGTERM");
    let sent = Instant::now();
    term();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "not at once after the second SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("again: exiting without waiting"),
        "{stderr}"
    );
    wait_for("the jail to die with aiopsctl", || pgrep(&tag).is_empty());
}

/// `aiopsctl why RUN NODE` names what the jail refused a flow node, by
/// layer, from its audit line: the denied system call with its count and
/// the limit reached, each with what would allow it; the audit line
/// carries the same. A node that never ran is said not to have run.
#[test]
fn why_names_each_denial_of_a_flow_node() {
    let Some(e) = env("why_names_each_denial_of_a_flow_node") else {
        return;
    };
    let profile = e.root.join("small-output.toml");
    std::fs::write(
        &profile,
        "schema = 1\nname = \"small-output\"\ndescription = \"a 64KiB output cap\"\nextends = \"restrictive\"\n[limits]\noutput = \"64KiB\"\n",
    )
    .unwrap();
    let flow = e.flow(
        "why",
        &format!(
            "[[node]]\nid = \"build\"\nkind = \"shell\"\nrun = \"unshare -U true; unshare -U true; head -c 100000 /dev/zero\"\nprofile = \"{}\"\nconfirm = \"never\"\n\n[[node]]\nid = \"after\"\nkind = \"shell\"\nrun = \"true\"\nneeds = [\"build\"]\n",
            profile.display()
        ),
    );
    let o = e.ctl(&["run", flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let run = run_id(&o);
    let o = e.ctl(&["why", &run, "build"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        out.contains("denied by seccomp: unshare ×2 (EPERM)")
            && out.contains("the baseline table applies to every profile"),
        "{out}"
    );
    assert!(
        out.contains("denied by limits: output 64KiB reached")
            && out.contains("profile small-output"),
        "{out}"
    );
    let audit = e.json(&["why", &run, "build"]);
    assert_eq!(audit["denials"]["seccomp"][0]["count"], 2, "{audit:#}");
    // The dependant was skipped: it never ran, so nothing was denied to it.
    let o = e.ctl(&["why", &run, "after"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    if o.status.code() == Some(0) {
        assert!(out.contains("has not run"), "{out}");
    } else {
        assert_eq!(o.status.code(), Some(66), "{}", text(&o));
    }
    // A node the run does not have.
    let o = e.ctl(&["why", &run, "nosuch"]);
    assert_eq!(o.status.code(), Some(66), "{}", text(&o));
}
