//! Fault injection (issue 17): what the supervisor does when its state
//! disk fills up (and frees again), its database is locked, deleted or
//! replaced, aiopsctl or the daemon is SIGKILLed at several points of a
//! run, a daemon-less run is interrupted, the reader of `aiopsctl exec`
//! goes away, an optional path is unreadable, and a flow has 2000 nodes.
//! docs/supervisor.md ("Faults") has the table of what the operator sees.
//!
//! Every fault is checked for its outcome and for nothing lost: each node
//! that ran is final in the database, has exactly one final audit line
//! agreeing with it, no node process survives, and no temporary file is
//! left in the state directory.
#![allow(clippy::unwrap_used)]
use aiops_tests::{
    aiopsctl, bin, git, is_root, scratch_dir, skip, skip_needs_root, supervisor_config, unique, GIT,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    repo: PathBuf,
    /// The pid of a process in a private mount namespace where `state`
    /// is a small tmpfs: commands run there (`nsenter`).
    ns: Option<u32>,
    holder: Option<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

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
    std::fs::write(repo.join("hello.txt"), "hello\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "fixture"]);
    std::fs::create_dir(root.join("state")).unwrap();
    let config = supervisor_config(&root);
    Some(Env {
        _dir: dir,
        root,
        config,
        repo,
        ns: None,
        holder: None,
    })
}

/// An env whose state directory is a 2 MiB tmpfs in a private mount
/// namespace (root only: an unprivileged user would need a user namespace,
/// in which the jailer no longer runs as the user the test means).
fn env_on_small_disk(test: &str) -> Option<Env> {
    if !is_root() {
        skip_needs_root(
            test,
            "a tmpfs state disk is mounted in a private mount namespace",
        );
        return None;
    }
    let mut e = env(test)?;
    let state = e.root.join("state");
    let mut holder = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=2m,mode=0711 tmpfs \"$1\" && echo ready && exec sleep 600")
        .arg("sh")
        .arg(&state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the tmpfs was not mounted");
    e.ns = Some(holder.id());
    e.holder = Some(holder);
    Some(e)
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

    /// `program` run where the state disk is (in the namespace, if any).
    fn cmd(&self, program: &Path) -> Command {
        match self.ns {
            Some(pid) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-m", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The state directory as this process reaches it.
    fn state(&self) -> PathBuf {
        let s = self.root.join("state");
        match self.ns {
            Some(pid) => Path::new(&format!("/proc/{pid}/root")).join(s.strip_prefix("/").unwrap()),
            None => s,
        }
    }

    fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd(&aiopsctl());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("AIOPS_PROFILE_PATH", aiops_tests::profiles_dir())
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

    fn audit(&self, run: &str) -> Vec<serde_json::Value> {
        let o = self.ctl(&["audit", "--run", run, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn daemon(&self) -> Daemon {
        let child = self
            .cmd(&bin("aiops-supervisor"))
            .arg("--config")
            .arg(&self.config)
            .env("AIOPS_PROFILE_PATH", aiops_tests::profiles_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let sock = self.root.join("api.sock");
        wait_for("the daemon to come up", || {
            sock.exists() && self.ctl(&["status"]).status.code() == Some(0)
        });
        Daemon(child)
    }

    /// `aiopsctl run` of a one-node flow: an engine start (restart
    /// recovery) that also runs what other runs left queued.
    fn restart_engine(&self) {
        let f = self.flow(
            "poke",
            "[[node]]\nid = \"poke\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"restrictive\"\n",
        );
        let o = self.ctl(&["run", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
}

/// A daemon this test started: killed if the test ends without `stop`.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SIGTERM (a drain), then its log.
fn stop(mut d: Daemon) -> String {
    let _ = Command::new("kill")
        .arg(d.0.id().to_string())
        .status()
        .unwrap();
    let _ = d.0.wait();
    let mut s = String::new();
    if let Some(mut e) = d.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
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
        .unwrap_or_else(|| panic!("no node {id} in {run}"))
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const FINAL: &[&str] = &["succeeded", "failed", "cancelled", "lost"];

/// Nothing lost: the run is final in the database; each node is final and
/// has exactly one `node_end` line whose state is the database's; no
/// process whose command line holds `tag` is left; no temporary file is
/// left in the state directory. The run, for more checks.
fn assert_nothing_lost(e: &Env, run: &str, tag: &str) -> serde_json::Value {
    let r = e.json(&["status", run]);
    assert!(
        FINAL.contains(&r["state"].as_str().unwrap_or("")),
        "run not final: {r}"
    );
    let lines = e.audit(run);
    for n in r["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap();
        let st = n["state"].as_str().unwrap();
        assert!(
            !["queued", "running", "awaiting_confirmation"].contains(&st),
            "node {id} is {st}: {r}"
        );
        let ends: Vec<_> = lines
            .iter()
            .filter(|l| l["kind"] == "node_end" && l["node"] == id)
            .collect();
        assert_eq!(ends.len(), 1, "node {id}: {ends:?}\nrun {r}");
        assert_eq!(ends[0]["state"], st, "node {id}: {ends:?}\nrun {r}");
    }
    assert!(pgrep(tag).is_empty(), "a node process outlived the run");
    let mut stack = vec![e.state()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let name = ent.file_name().to_string_lossy().to_string();
            assert!(
                !name.ends_with(".restoring") && name != "filler",
                "left behind: {}",
                ent.path().display()
            );
            // Workspaces belong to the jail's user; only the state's own dirs.
            if ent.file_type().unwrap().is_dir() && name != "workspaces" {
                stack.push(ent.path());
            }
        }
    }
    r
}

fn shell_node(id: &str, run: &str, extra: &str) -> String {
    format!(
        "[[node]]\nid = \"{id}\"\nkind = \"shell\"\nrun = \"{run}\"\nprofile = \"restrictive\"\n{extra}\n"
    )
}

fn run_id_of(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("r-"))
        .unwrap_or_else(|| panic!("no run id in {line:?}"))
        .to_string()
}

/// `aiopsctl run FLOW` started: the child, its run id (from the first
/// line), and a thread that keeps reading its stdout (a closed pipe would
/// end it early) and returns the rest.
fn spawn_run(e: &Env, flow: &Path) -> (Child, String, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut child = e
        .ctl_cmd(&["run", flow.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let id = run_id_of(&first);
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    (child, id, rest)
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
}

/// Fill the state disk (a file `filler` taking all that is left).
fn fill(e: &Env) {
    let st = e
        .cmd(Path::new("/bin/sh"))
        .arg("-c")
        .arg("dd if=/dev/zero of=\"$1/filler\" bs=64k 2>/dev/null; true")
        .arg("sh")
        .arg(e.root.join("state"))
        .status()
        .unwrap();
    assert!(st.success());
    assert!(e.state().join("filler").exists());
}

fn free(e: &Env) {
    std::fs::remove_file(e.state().join("filler")).unwrap();
}

// ---- the state disk full --------------------------------------------------

/// A node printing 5 MB to a 2 MiB state disk: it is stopped and fails
/// with the reason (ENOSPC and the path), its output file keeps the head
/// only, so the state and the audit line still fit; `aiopsctl run`
/// returns (exit 1) instead of hanging.
#[test]
fn output_larger_than_the_state_disk_fails_the_node_with_the_reason() {
    let test = "output_larger_than_the_state_disk_fails_the_node_with_the_reason";
    let Some(e) = env_on_small_disk(test) else {
        return;
    };
    let tag = unique("loud");
    let f = e.flow(
        "loud",
        &shell_node(
            "loud",
            &format!("echo {tag} >/dev/null; head -c 5000000 /dev/zero | tr '\\\\0' x; sleep 20"),
            "",
        ),
    );
    let t = Instant::now();
    let o = e.ctl(&["run", f.to_str().unwrap()]);
    assert!(t.elapsed() < Duration::from_secs(15), "{}", text(&o));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let id = run_id_of(&String::from_utf8_lossy(&o.stdout));
    let r = assert_nothing_lost(&e, &id, &tag);
    let n = node(&r, "loud");
    assert_eq!(n["state"], "failed", "{r}");
    let reason = n["reason"].as_str().unwrap();
    assert!(
        reason.contains("state disk full writing output: ENOSPC at")
            && reason.contains("loud.stdout")
            && reason.contains("the node was stopped"),
        "{reason}"
    );
    let out = e.state().join("runs").join(&id).join("loud.stdout");
    let kept = std::fs::metadata(&out).unwrap().len();
    assert!(kept <= 64 * 1024, "{kept} bytes kept");
}

/// The disk fills while a run is going (another file takes the space): the
/// node's state and audit line wait in memory and are retried; the daemon
/// shows the run as it is and can cancel the node still running; once the
/// space is freed, everything is stored and the run is final and whole.
#[test]
fn a_full_state_disk_freed_again_loses_nothing_and_cancel_works() {
    let test = "a_full_state_disk_freed_again_loses_nothing_and_cancel_works";
    let Some(e) = env_on_small_disk(test) else {
        return;
    };
    let tag = unique("full");
    let f = e.flow(
        "full",
        &format!(
            "{}{}",
            shell_node("quick", &format!("sleep 1 # {tag}"), ""),
            shell_node("long", &format!("sleep 30 # {tag}"), "")
        ),
    );
    let d = e.daemon();
    let o = e.ctl(&["submit", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("both nodes to run", || pgrep(&tag).len() >= 2);
    fill(&e);
    // `quick` ends while the disk is full; the daemon knows it.
    wait_for("quick to end", || {
        node(&e.json(&["status", &id]), "quick")["state"] == "succeeded"
    });
    let t = Instant::now();
    let o = e.ctl(&["cancel", &id, "long"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(10), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("node long cancelled"), "{said}");
    let r = e.json(&["status", &id]);
    assert_eq!(r["state"], "cancelled", "{r}");
    free(&e);
    let log = {
        // Stored once the space is back: stop the daemon, read the database.
        std::thread::sleep(Duration::from_secs(3));
        stop(d)
    };
    let r = assert_nothing_lost(&e, &id, &tag);
    assert_eq!(r["state"], "cancelled", "{r}\n{log}");
    assert_eq!(node(&r, "quick")["state"], "succeeded", "{r}");
    assert_eq!(node(&r, "long")["state"], "cancelled", "{r}");
    assert!(log.contains("retried until the store takes it"), "{log}");
}

/// With no daemon and a state disk that stays full, `aiopsctl run` still
/// returns: it waits 10 s for the disk, then exits 74 saying what was not
/// written, and prints the audit lines it could not write on stderr.
#[test]
fn a_daemonless_run_on_a_disk_that_stays_full_exits_74_with_its_audit_lines() {
    let test = "a_daemonless_run_on_a_disk_that_stays_full_exits_74_with_its_audit_lines";
    let Some(e) = env_on_small_disk(test) else {
        return;
    };
    let tag = unique("stays");
    let f = e.flow("stays", &shell_node("a", &format!("sleep 2 # {tag}"), ""));
    let child = e
        .ctl_cmd(&["run", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    fill(&e);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(74), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("state not saved"), "{err}");
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("aiopsctl: audit line not written: "))
        .unwrap_or_else(|| panic!("{err}"));
    let rec: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["kind"], "node_end");
    assert_eq!(rec["node"], "a");
    free(&e);
    assert!(pgrep(&tag).is_empty());
}

// ---- the database locked, deleted, replaced -------------------------------

/// Another process holds the database's write lock for 8 s while a node
/// ends: the writes wait (SQLITE_BUSY, retried) and the run finishes
/// `succeeded`, whole.
#[test]
fn a_database_locked_by_another_process_delays_but_loses_nothing() {
    let test = "a_database_locked_by_another_process_delays_but_loses_nothing";
    let Some(e) = env(test) else {
        return;
    };
    if !Path::new("/usr/bin/sqlite3").exists() {
        skip(test, "the sqlite3 command is not installed");
        return;
    }
    let tag = unique("locked");
    let f = e.flow(
        "locked",
        &format!(
            "{}{}",
            shell_node("a", &format!("sleep 1 # {tag}"), ""),
            shell_node("b", "true", "needs = [\"a\"]")
        ),
    );
    let child = e
        .ctl_cmd(&["run", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    let db = e.state().join("state.db");
    let mut locker = Command::new("sqlite3")
        .arg(&db)
        .args(["BEGIN EXCLUSIVE;", ".shell sleep 8", "COMMIT;"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let _ = locker.wait();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = run_id_of(&String::from_utf8_lossy(&o.stdout));
    let r = assert_nothing_lost(&e, &id, &tag);
    assert_eq!(r["state"], "succeeded", "{r}");
}

/// `rm state.db` under the daemon: it notices, restores the file from the
/// copy it has open (with the history) and goes on; new runs work.
#[test]
fn a_state_db_deleted_under_the_daemon_is_restored() {
    let Some(e) = env("a_state_db_deleted_under_the_daemon_is_restored") else {
        return;
    };
    let tag = unique("deleted");
    let f = e.flow("deleted", &shell_node("a", &format!("echo {tag}"), ""));
    let d = e.daemon();
    let o = e.ctl(&["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = run_id_of(&String::from_utf8_lossy(&o.stdout));
    std::fs::remove_file(e.state().join("state.db")).unwrap();
    wait_for("state.db to be restored", || {
        e.state().join("state.db").exists()
    });
    let o = e.ctl(&["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let second = run_id_of(&String::from_utf8_lossy(&o.stdout));
    let log = stop(d);
    assert!(log.contains("state.db was deleted"), "{log}");
    // From the file alone, with no daemon: both runs are there.
    for id in [&first, &second] {
        let r = assert_nothing_lost(&e, id, &tag);
        assert_eq!(r["state"], "succeeded", "{r}");
    }
}

/// Another file moved over state.db under the daemon: it is left alone,
/// the daemon goes on in its own database (moved to state.db.engine-*),
/// refuses new runs saying why; `logs` still finds a run's output by its
/// id, and `gc` removes the output and workspace no database row names.
#[test]
fn a_state_db_replaced_under_the_daemon_is_left_alone_and_runs_are_refused() {
    let test = "a_state_db_replaced_under_the_daemon_is_left_alone_and_runs_are_refused";
    let Some(e) = env(test) else {
        return;
    };
    if !Path::new("/usr/bin/sqlite3").exists() {
        skip(test, "the sqlite3 command is not installed");
        return;
    }
    let tag = unique("replaced");
    let f = e.flow("replaced", &shell_node("a", &format!("echo {tag}"), ""));
    let d = e.daemon();
    let o = e.ctl(&["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = run_id_of(&String::from_utf8_lossy(&o.stdout));
    let other = e.root.join("other.db");
    let st = Command::new("sqlite3")
        .arg(&other)
        .arg("CREATE TABLE mine (x); INSERT INTO mine VALUES (42);")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::rename(&other, e.state().join("state.db")).unwrap();
    let mut refused = String::new();
    wait_for("new runs to be refused", || {
        let o = e.ctl(&["submit", f.to_str().unwrap()]);
        refused = String::from_utf8_lossy(&o.stderr).to_string();
        !o.status.success()
    });
    assert!(
        refused.contains("was replaced by another file"),
        "{refused}"
    );
    let log = stop(d);
    assert!(log.contains("was replaced by another file"), "{log}");
    // The other file is intact (its WAL never met ours).
    let o = Command::new("sqlite3")
        .arg(e.state().join("state.db"))
        .arg("SELECT x FROM mine;")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "42",
        "{}",
        text(&o)
    );
    // Ours holds the run.
    let ours: Vec<_> = std::fs::read_dir(e.state())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("state.db.engine-") && !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let o = Command::new("sqlite3")
        .arg(&ours[0])
        .arg(format!("SELECT state FROM runs WHERE id = '{id}';"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "succeeded");
    // `logs` by run id, from the output directory.
    let o = e.ctl(&["logs", &id, "a"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), tag);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no record of this run"),
        "{}",
        text(&o)
    );
    // `gc` removes the orphans (no row in this database).
    let out_dir = e.state().join("runs").join(&id);
    let ws = e.state().join("workspaces").join("replaced").join(&id);
    assert!(out_dir.is_dir() && ws.is_dir());
    let o = e.ctl(&["gc", "--older-than", "0s"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!out_dir.exists(), "{}", text(&o));
    assert!(!ws.exists(), "{}", text(&o));
}

// ---- SIGKILL at several points ----------------------------------------------

/// `kill -9` of a daemon-less `aiopsctl run` at three points: before its
/// node started, while it runs, and while node ends are being written
/// (many short nodes). The next engine start settles everything: the node
/// that was running is `lost` (one line), queued ones run, and a line
/// already written before the kill is not written again.
#[test]
fn sigkill_of_aiopsctl_at_several_points_loses_nothing() {
    let Some(e) = env("sigkill_of_aiopsctl_at_several_points_loses_nothing") else {
        return;
    };
    let tag = unique("k9");
    let one = e.flow("one", &shell_node("slow", &format!("sleep 2 # {tag}"), ""));
    let mut many = String::new();
    for i in 0..40 {
        many += &shell_node(&format!("n{i}"), &format!("true # {tag}"), "");
    }
    let many = e.flow("many", &many);
    let audit_lines = |e: &Env| -> usize {
        std::fs::read_dir(e.state().join("audit"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
                    .map(|s| s.lines().count())
                    .sum()
            })
            .unwrap_or(0)
    };
    for point in ["before start", "while running", "during audit writes"] {
        let flow = if point == "during audit writes" {
            &many
        } else {
            &one
        };
        let before = audit_lines(&e);
        let (mut child, id, _rest) = spawn_run(&e, flow);
        match point {
            "before start" => {}
            "while running" => wait_for("the node to run", || !pgrep(&tag).is_empty()),
            _ => wait_for("some node ends to be written", || {
                audit_lines(&e) >= before + 5
            }),
        }
        child.kill().unwrap();
        let _ = child.wait();
        wait_for("the jail to die with aiopsctl", || pgrep(&tag).is_empty());
        e.restart_engine();
        let r = assert_nothing_lost(&e, &id, &tag);
        if point == "while running" {
            assert_eq!(node(&r, "slow")["state"], "lost", "{point}: {r}");
        }
    }
}

/// `kill -9` of the daemon while nodes run and end: after a restart every
/// node is final with one line, and no jail survived the daemon.
#[test]
fn sigkill_of_the_daemon_mid_run_loses_nothing() {
    let Some(e) = env("sigkill_of_the_daemon_mid_run_loses_nothing") else {
        return;
    };
    let tag = unique("d9");
    let mut body = shell_node("slow", &format!("sleep 5 # {tag}"), "");
    for i in 0..30 {
        body += &shell_node(&format!("n{i}"), &format!("true # {tag}"), "");
    }
    let f = e.flow("d9", &body);
    let mut d = e.daemon();
    let o = e.ctl(&["submit", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("nodes to end", || {
        let r = e.json(&["status", &id]);
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "succeeded")
            .count()
            >= 3
    });
    d.0.kill().unwrap();
    let _ = d.0.wait();
    wait_for("the jails to die with the daemon", || {
        pgrep(&tag).is_empty()
    });
    let d = e.daemon();
    wait_for("the run to end after the restart", || {
        FINAL.contains(&e.json(&["status", &id])["state"].as_str().unwrap_or(""))
    });
    stop(d);
    assert_nothing_lost(&e, &id, &tag);
}

// ---- signals to aiopsctl ------------------------------------------------------

/// SIGINT to a daemon-less `aiopsctl run` drains: the node is cancelled
/// and recorded, aiopsctl exits 130. (More in supervisor.rs.)
#[test]
fn sigint_of_a_daemonless_run_cancels_and_records_its_nodes() {
    let Some(e) = env("sigint_of_a_daemonless_run_cancels_and_records_its_nodes") else {
        return;
    };
    let tag = unique("int");
    let f = e.flow("int", &shell_node("slow", &format!("sleep 20 # {tag}"), ""));
    let (mut child, id, rest) = spawn_run(&e, &f);
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let st = child.wait().unwrap();
    let said = format!("{}\n{}", rest.join().unwrap(), stderr_of(&mut child));
    assert_eq!(st.code(), Some(130), "{said}");
    let r = assert_nothing_lost(&e, &id, &tag);
    assert_eq!(node(&r, "slow")["state"], "cancelled", "{r}");
}

/// Ctrl-C on `aiopsctl run` attached to a daemon says it detached, that
/// the run goes on and how to follow or cancel it; the run goes on.
#[test]
fn sigint_of_an_attached_run_detaches_and_says_so() {
    let Some(e) = env("sigint_of_an_attached_run_detaches_and_says_so") else {
        return;
    };
    let tag = unique("att");
    let f = e.flow("att", &shell_node("slow", &format!("sleep 3 # {tag}"), ""));
    let d = e.daemon();
    let (mut child, id, _rest) = spawn_run(&e, &f);
    wait_for("the node to run", || !pgrep(&tag).is_empty());
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let st = child.wait().unwrap();
    let err = stderr_of(&mut child);
    assert_eq!(st.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!("detached from run {id}"))
            && err.contains("goes on in the daemon")
            && err.contains(&format!("aiopsctl cancel {id}")),
        "{err}"
    );
    assert!(!pgrep(&tag).is_empty(), "the run must go on");
    wait_for("the run to end in the daemon", || {
        e.json(&["status", &id])["state"] == "succeeded"
    });
    stop(d);
    assert_nothing_lost(&e, &id, &tag);
}

/// `cancel RUN NODE` returns once that node is cancelled, while another
/// node of the run goes on, and says which node it cancelled.
#[test]
fn cancel_of_one_node_returns_at_once_and_names_it() {
    let Some(e) = env("cancel_of_one_node_returns_at_once_and_names_it") else {
        return;
    };
    let tag = unique("one");
    let f = e.flow(
        "cancelone",
        &format!(
            "{}{}",
            shell_node("a", &format!("sleep 20 # {tag}"), ""),
            shell_node("b", &format!("sleep 3 # {tag}"), "")
        ),
    );
    let d = e.daemon();
    let o = e.ctl(&["submit", f.to_str().unwrap()]);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    wait_for("both nodes to run", || pgrep(&tag).len() >= 2);
    let t = Instant::now();
    let o = e.ctl(&["cancel", &id, "a"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("node a cancelled"),
        "{}",
        text(&o)
    );
    wait_for("the run to end", || {
        FINAL.contains(&e.json(&["status", &id])["state"].as_str().unwrap_or(""))
    });
    stop(d);
    let r = assert_nothing_lost(&e, &id, &tag);
    assert_eq!(node(&r, "b")["state"], "succeeded", "{r}");
    assert_eq!(r["state"], "cancelled", "{r}");
}

/// A run that failed while another node waits at the gate exits 1 (the
/// failed code), not 75 (paused).
#[test]
fn a_failed_run_paused_at_the_gate_exits_failed() {
    let Some(e) = env("a_failed_run_paused_at_the_gate_exits_failed") else {
        return;
    };
    let f = e.flow(
        "failgate",
        &format!(
            "{}{}",
            shell_node("bad", "false", ""),
            shell_node("gated", "true", "confirm = \"always\"")
        ),
    );
    let o = e.ctl(&["run", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let id = run_id_of(&String::from_utf8_lossy(&o.stdout));
    let r = e.json(&["status", &id]);
    assert_eq!(node(&r, "bad")["state"], "failed", "{r}");
    assert_eq!(node(&r, "gated")["state"], "awaiting_confirmation", "{r}");
    let o = e.ctl(&["cancel", &id]);
    assert!(o.status.success(), "{}", text(&o));
}

// ---- exec: the reader goes away; an unreadable optional path ---------------

/// `aiopsctl exec -- yes | head -2`: SIGPIPE reaches the node (141).
#[test]
fn exec_whose_reader_closes_early_ends_with_sigpipe() {
    let o = aiops_tests::Jail::new("restrictive")
        .timeout("60s")
        .pipe_into("head -2")
        .run_argv(&["/usr/bin/yes".into()]);
    assert_eq!(o.stdout, "y\ny\nPIPESTATUS 141", "{}", o.describe());
    assert_eq!(o.assert_report()["exit"]["signal"], 13, "{}", o.describe());
}

/// An optional read path the jail's user cannot read is skipped and
/// named; the node runs and cannot read it.
#[test]
fn an_unreadable_optional_path_is_skipped_and_named() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch_dir(None);
    let sub = d.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    aiops_tests::host_file(&sub.join("file"), "SECRET-FAULTS", None);
    // Root's 0700 is out of nobody's reach; our own 0000 out of ours.
    let mode = if is_root() { 0o700 } else { 0o000 };
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(mode)).unwrap();
    let pd = scratch_dir(None);
    let p = aiops_tests::write_profile(
        pd.path(),
        "faults-read",
        &format!(
            "schema = 1\nname = \"faults-read\"\ndescription = \"faults\"\nextends = \"restrictive\"\n\n[fs]\nread = [\"/usr\", \"/bin\", \"/sbin\", \"/lib\", \"/lib32\", \"/lib64\", \"/etc\", \"{}\"]\n",
            sub.display()
        ),
    );
    let o = aiops_tests::Jail::new(p.to_str().unwrap())
        .run_sh_args("cat \"$1/file\" 2>&1; echo done", &[sub.to_str().unwrap()]);
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    o.assert_ran();
    assert_eq!(o.code, 0, "{}", o.describe());
    assert!(!o.stdout.contains("SECRET-FAULTS"), "{}", o.describe());
    let layers = o.assert_report()["exit"]["layers"].to_string();
    assert!(
        layers.contains(&format!("skipped unreadable: {}", sub.display())),
        "{layers}"
    );
}

// ---- size -------------------------------------------------------------------

/// The largest flow allowed (2000 nodes) runs to the end, with one line
/// per node; one more node is refused before anything is stored. What is
/// under test is the supervisor's bookkeeping (scheduler, store, audit)
/// at that size, not the jails: the nodes are `unconfined` (a jailer and
/// agentd each, no namespaces) and 8 run at a time, which keeps this
/// under half a minute in a debug build.
#[test]
fn a_2000_node_flow_runs_and_2001_is_refused() {
    let Some(e) = env("a_2000_node_flow_runs_and_2001_is_refused") else {
        return;
    };
    let cfg = std::fs::read_to_string(&e.config).unwrap();
    std::fs::write(
        &e.config,
        cfg.replacen("schema = 1\n", "schema = 1\nparallelism = 8\n", 1),
    )
    .unwrap();
    let tag = unique("big");
    let mut body = String::new();
    for i in 0..2000 {
        body += &format!(
            "[[node]]\nid = \"n{i}\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"unconfined\"\nconfirm = \"never\"\n"
        );
    }
    let f = e.flow("big", &body);
    let o = e.ctl(&["run", "--json", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let r = assert_nothing_lost(&e, &id, &tag);
    assert_eq!(r["state"], "succeeded");
    assert_eq!(r["nodes"].as_array().unwrap().len(), 2000);
    body +=
        "[[node]]\nid = \"n2000\"\nkind = \"shell\"\nrun = \"true\"\nprofile = \"restrictive\"\n";
    let f = e.flow("big", &body);
    let o = e.ctl(&["run", f.to_str().unwrap()]);
    // Refused (64 or 65 while the exit codes are reworked, i17-codes).
    assert!(matches!(o.status.code(), Some(64 | 65)), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("at most 2000"),
        "{}",
        text(&o)
    );
    assert_eq!(e.json(&["status"]).as_array().unwrap().len(), 1);
}
