//! Every `aiopsctl` subcommand's characteristic failures, provoked for
//! real: each exits with the status `aiops_proto::exit` gives that class
//! (which docs/operations.md's table is checked against), the status is
//! one the subcommand's `--help` lists (`cli::codes`), and the message
//! says what is wrong without internals (serde's private field names,
//! Rust type names, libgit2's `class=`, `errno 0`).
#![allow(clippy::unwrap_used)]
use aiops_proto::exit;
use aiops_supervisor::cli::codes;
use aiops_tests::{
    aiopsctl, as_nobody, bin, is_root, scratch_dir, skip, skip_needs_root, supervisor_config, GIT,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Text no message may show.
const INTERNALS: &[&str] = &[
    "$__serde",
    "FlowId(",
    "class=",
    "(errno 0)",
    "/oldroot",
    "Patterns",
];

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

fn env() -> Env {
    let dir = scratch_dir(None);
    let root = dir.path().to_path_buf();
    let config = supervisor_config(&root);
    Env {
        _dir: dir,
        root,
        config,
    }
}

impl Env {
    fn file(&self, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    /// A flow whose workspace cannot be made (its repository is missing):
    /// it fails at once, before any jail.
    fn failing_flow(&self) -> PathBuf {
        self.file(
            "failing.toml",
            format!(
                "schema = 1\nname = \"failing\"\n[workspace]\nrepo = \"{}/no-repo\"\n\
                 [[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"true\"\n",
                self.root.display()
            ),
        )
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(aiopsctl());
        c.args(args)
            .env("AIOPS_PROFILE_PATH", aiops_tests::profiles_dir())
            .env_remove("AIOPS_API_SOCKET")
            .env_remove("AIOPS_LOG")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        c
    }

    /// `aiopsctl ARGS` (with `--config` for the commands that take one).
    fn ctl(&self, args: &[&str]) -> Output {
        let mut c = self.cmd(args);
        c.arg("--config").arg(&self.config);
        c.output().unwrap()
    }

    fn daemon(&self) -> Daemon {
        let child = Command::new(bin("aiops-supervisor"))
            .arg("--config")
            .arg(&self.config)
            .env("AIOPS_PROFILE_PATH", aiops_tests::profiles_dir())
            .env_remove("AIOPS_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ctl(&["status"]).status.code() != Some(0) || !self.root.join("api.sock").exists()
        {
            assert!(Instant::now() < deadline, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Daemon { child: Some(child) }
    }
}

struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    /// SIGTERM, then what the daemon wrote to stderr.
    fn stop(mut self) -> String {
        let mut c = self.child.take().unwrap();
        term(&mut c);
        let mut err = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
        err
    }
}

fn term(c: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = c.wait();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            term(c);
        }
    }
}

/// `o` exited `want`, a status of the table and of `listed` (the
/// subcommand's `--help`), and its output (stderr, or stdout for the
/// commands that report there: lint, validate) contains each of `says`
/// and no internals.
#[track_caller]
fn expect(what: &str, o: &Output, want: i32, listed: &[i32], says: &[&str]) {
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(o.status.code(), Some(want), "{what}: {err}");
    assert!(
        exit::lookup(want).is_some(),
        "{what}: {want} not in the table"
    );
    assert!(
        listed.contains(&want),
        "{what}: {want} not in the command's --help {listed:?}"
    );
    for s in says {
        assert!(err.contains(s), "{what}: {s:?} not in {err}");
    }
    for bad in INTERNALS {
        assert!(!err.contains(bad), "{what}: {bad:?} in {err}");
    }
}

/// The help of `aiopsctl ARGS --help` lists each status of `listed`.
#[track_caller]
fn help_lists(e: &Env, args: &[&str], listed: &[i32]) {
    let mut a = args.to_vec();
    a.push("--help");
    let o = e.cmd(&a).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{args:?}");
    let help = String::from_utf8_lossy(&o.stdout);
    for c in listed {
        let meaning = exit::lookup(*c).unwrap().meaning;
        assert!(
            help.contains(&format!("  {c:<4} {meaning}")),
            "{args:?} --help lacks {c}: {help}"
        );
    }
}

const TOO_BIG: usize = (1 << 20) + 1;

#[test]
fn profile_subcommands() {
    let e = env();
    for sub in ["list", "show", "validate", "explain"] {
        help_lists(&e, &["profile", sub], codes::PROFILE);
    }
    let p = &["profile"];
    let run = |args: &[&str]| e.cmd(&[p, args].concat()).output().unwrap();
    expect(
        "list --bogus",
        &run(&["list", "--bogus"]),
        exit::USAGE,
        codes::PROFILE,
        &[],
    );
    expect(
        "show of a missing profile",
        &run(&["show", "no-such-profile"]),
        exit::NOINPUT,
        codes::PROFILE,
        &["no-such-profile", "not found"],
    );
    let bad = e.file("bad.toml", b"schema = 1\nname = \"\xff\"\n");
    expect(
        "validate of a non-UTF-8 file",
        &run(&["validate", bad.to_str().unwrap()]),
        exit::DATAERR,
        codes::PROFILE,
        &["bad.toml", "not UTF-8"],
    );
    let mut big = b"schema = 1\nname = \"big\"\n".to_vec();
    big.resize(TOO_BIG, b'\n');
    let big = e.file("big.toml", big);
    expect(
        "validate of a 1 MiB + 1 file",
        &run(&["validate", big.to_str().unwrap()]),
        exit::DATAERR,
        codes::PROFILE,
        &["big.toml", "1048576-byte cap"],
    );
    expect(
        "show of a 1 MiB + 1 file",
        &run(&["show", big.to_str().unwrap()]),
        exit::DATAERR,
        codes::PROFILE,
        &["big.toml", "cap"],
    );
    let caps = e.file("caps.toml", "net = \"host\"\n");
    expect(
        "explain with caps outside the profile",
        &run(&[
            "explain",
            "restrictive",
            "--node-caps",
            caps.to_str().unwrap(),
        ]),
        exit::NOPERM,
        codes::PROFILE,
        &["outside profile"],
    );
    expect(
        "explain needing Landlock on a host without it",
        &run(&["explain", "restrictive", "--abi", "0"]),
        exit::UNAVAILABLE,
        codes::PROFILE,
        &["landlock"],
    );
}

#[test]
fn lint_subcommand() {
    let e = env();
    help_lists(&e, &["lint"], codes::LINT);
    let lint = |f: &Path| e.cmd(&["lint", f.to_str().unwrap()]).output().unwrap();
    expect(
        "a missing flow",
        &lint(&e.root.join("none.toml")),
        exit::NOINPUT,
        codes::LINT,
        &["none.toml"],
    );
    let head = "schema = 1\nname = \"f\"\n[workspace]\nrepo = \".\"\n";
    let bad_id = e.file(
        "id.toml",
        format!("{head}[[node]]\nid = \"A\"\nkind = \"shell\"\nrun = \"true\"\n"),
    );
    expect(
        "a bad node id",
        &lint(&bad_id),
        exit::DATAERR,
        codes::LINT,
        &["node[0].id: \"A\""],
    );
    let bad_kind = e.file(
        "kind.toml",
        format!("{head}[[node]]\nid = \"a\"\nkind = \"bogus\"\nrun = \"true\"\n"),
    );
    expect(
        "a bad node kind",
        &lint(&bad_kind),
        exit::DATAERR,
        codes::LINT,
        &["node[0].kind: unknown variant"],
    );
    let not_utf8 = e.file("nu.toml", b"schema = 1\nname = \"\xfe\"\n");
    expect(
        "a non-UTF-8 flow",
        &lint(&not_utf8),
        exit::DATAERR,
        codes::LINT,
        &["nu.toml", "not UTF-8"],
    );
    let mut big = head.as_bytes().to_vec();
    big.resize(TOO_BIG, b'\n');
    expect(
        "a flow over 1 MiB",
        &lint(&e.file("bigflow.toml", big)),
        exit::DATAERR,
        codes::LINT,
        &["bigflow.toml", "cap"],
    );
    let escape = e.file(
        "esc.toml",
        format!("{head}[[node]]\nid = \"a\"\nkind = \"shell\"\nrun = \"cat ~/.ssh/id_rsa\"\n"),
    );
    // Lint checks the repository as a run would: "." is none yet.
    expect(
        "a flow whose repository does not exist",
        &lint(&escape),
        exit::NOINPUT,
        codes::LINT,
        &["open git repository", "not found"],
    );
    if !Path::new(GIT).exists() {
        return skip("lint_subcommand", "git is not installed (the escape part)");
    }
    let init = std::process::Command::new(GIT)
        .args(["init", "-q"])
        .arg(&e.root)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let commit = std::process::Command::new(GIT)
        .arg("-C")
        .arg(&e.root)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["commit", "-q", "--allow-empty", "-m", "i"])
        .output()
        .unwrap();
    assert!(commit.status.success(), "{commit:?}");
    let o = lint(&escape);
    assert_eq!(o.status.code(), Some(exit::ESCAPE), "{o:?}");
}

#[test]
fn doctor_completions_and_man() {
    let e = env();
    help_lists(&e, &["doctor"], codes::DOCTOR);
    help_lists(&e, &["completions"], codes::OUTPUT);
    help_lists(&e, &["man"], codes::OUTPUT);
    let o = e.cmd(&["doctor", "--bogus"]).output().unwrap();
    expect("doctor --bogus", &o, exit::USAGE, codes::DOCTOR, &[]);
    let o = e.cmd(&["completions", "tcsh"]).output().unwrap();
    expect(
        "completions tcsh",
        &o,
        exit::USAGE,
        codes::OUTPUT,
        &["tcsh"],
    );
    let o = e.cmd(&["man", "extra"]).output().unwrap();
    expect("man extra", &o, exit::USAGE, codes::OUTPUT, &[]);
}

/// Started as root, a jail runs as nobody: doctor says when nobody cannot
/// reach agentd (a 0700 directory on the way) and which directory, and
/// exec refuses with the same words instead of "cannot enter".
#[test]
fn an_agentd_the_jail_user_cannot_reach_is_named_with_its_directory() {
    let test = "an_agentd_the_jail_user_cannot_reach_is_named_with_its_directory";
    if !is_root() {
        skip_needs_root(test, "only root's jails change uid");
        return;
    }
    let e = env();
    let private = e.root.join("private");
    std::fs::create_dir(&private).unwrap();
    let agentd = private.join("aiops-agentd");
    std::fs::copy(bin("aiops-agentd"), &agentd).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = e
        .cmd(&["doctor"])
        .env("AIOPS_AGENTD", &agentd)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).replace('\n', " ");
    assert_eq!(o.status.code(), Some(exit::UNAVAILABLE), "{out}");
    assert!(codes::DOCTOR.contains(&exit::UNAVAILABLE));
    assert!(
        out.contains("not reachable") && out.contains(&private.display().to_string()),
        "{out}"
    );
    let ws = e.root.join("ws");
    std::fs::create_dir(&ws).unwrap();
    let o = e
        .cmd(&[
            "exec",
            "--profile",
            "restrictive",
            "--workspace",
            ws.to_str().unwrap(),
            "--",
            "true",
        ])
        .env("AIOPS_AGENTD", &agentd)
        .output()
        .unwrap();
    expect(
        "exec with an unreachable agentd",
        &o,
        exit::SETUP_FAILED,
        codes::EXEC,
        &[
            "aiops-agentd at",
            "is not reachable by the jail user",
            &format!("directory {} is mode 0700", private.display()),
        ],
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains("cannot enter"));
}

#[test]
fn exec_subcommand() {
    let e = env();
    help_lists(&e, &["exec"], codes::EXEC);
    let file = e.file("afile", "x");
    let o = e
        .cmd(&[
            "exec",
            "--profile",
            "restrictive",
            "--workspace",
            file.to_str().unwrap(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    expect(
        "exec with a file as workspace",
        &o,
        exit::REFUSED,
        codes::EXEC,
        &[&format!(
            "workspace {} is a file, not a directory",
            file.display()
        )],
    );
    let o = e
        .cmd(&["exec", "--profile", "no-such-profile", "--", "true"])
        .output()
        .unwrap();
    expect(
        "exec of a missing profile",
        &o,
        exit::REFUSED,
        codes::EXEC,
        &["no-such-profile"],
    );
    let o = e.cmd(&["exec", "--bogus", "--", "true"]).output().unwrap();
    expect("exec --bogus", &o, exit::USAGE, codes::EXEC, &[]);
}

/// run, submit, status, logs, confirm, cancel, audit and gc: without a
/// daemon, then against one (its HTTP answers mapped by class).
#[test]
fn run_and_the_commands_that_talk_to_the_daemon() {
    let test = "run_and_the_commands_that_talk_to_the_daemon";
    let e = env();
    help_lists(&e, &["run"], codes::RUN);
    help_lists(&e, &["confirm"], codes::RUN);
    help_lists(&e, &["submit"], codes::SUBMIT);
    help_lists(&e, &["cancel"], codes::CANCEL);
    for sub in ["status", "logs", "audit", "gc", "why"] {
        help_lists(&e, &[sub], codes::RECORDS);
    }
    let missing = e.root.join("none.toml");
    let missing = missing.to_str().unwrap();
    expect(
        "run of a missing flow",
        &e.ctl(&["run", missing]),
        exit::NOINPUT,
        codes::RUN,
        &["none.toml"],
    );
    let nu = e.file("nu.toml", b"schema = 1\nname = \"\xfe\"\n");
    expect(
        "run of a non-UTF-8 flow",
        &e.ctl(&["run", nu.to_str().unwrap()]),
        exit::DATAERR,
        codes::RUN,
        &["not UTF-8"],
    );
    expect(
        "submit with no daemon",
        &e.ctl(&["submit", missing]),
        exit::UNAVAILABLE,
        codes::SUBMIT,
        &["no daemon answers"],
    );
    expect(
        "status of no run",
        &e.ctl(&["status", "r-none"]),
        exit::NOINPUT,
        codes::RECORDS,
        &["no run \"r-none\""],
    );
    expect(
        "logs of no run",
        &e.ctl(&["logs", "r-none", "a"]),
        exit::NOINPUT,
        codes::RECORDS,
        &["r-none"],
    );
    expect(
        "logs of a bad name",
        &e.ctl(&["logs", "../x", "a"]),
        exit::DATAERR,
        codes::RECORDS,
        &["plain names"],
    );
    expect(
        "cancel of no run",
        &e.ctl(&["cancel", "r-none"]),
        exit::NOINPUT,
        codes::CANCEL,
        &["r-none"],
    );
    expect(
        "confirm of no run",
        &e.ctl(&["confirm", "r-none", "a"]),
        exit::NOINPUT,
        codes::RUN,
        &["r-none"],
    );
    expect(
        "gc --older-than zz",
        &e.ctl(&["gc", "--older-than", "zz"]),
        exit::USAGE,
        codes::RECORDS,
        &["--older-than"],
    );
    expect(
        "audit --since zz",
        &e.ctl(&["audit", "--since", "zz"]),
        exit::USAGE,
        codes::RECORDS,
        &["--since"],
    );
    expect(
        "why of a run that has no line for the node",
        &e.ctl(&["why", "r-none", "a"]),
        exit::NOINPUT,
        codes::RECORDS,
        &["r-none", "\"a\""],
    );
    expect(
        "why without its node",
        &e.ctl(&["why", "r-none"]),
        exit::USAGE,
        codes::RECORDS,
        &["NODE"],
    );
    if !Path::new(GIT).exists() {
        skip(test, "git is not installed (the daemon's part)");
        return;
    }
    let failing = e.failing_flow();
    let o = e.ctl(&["run", failing.to_str().unwrap()]);
    expect("a run whose node fails", &o, exit::FAILED, codes::RUN, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("open git repository") && !out.contains("class="),
        "{out}"
    );
    let _d = e.daemon();
    expect(
        "run --local next to the daemon on its state",
        &e.ctl(&["run", "--local", failing.to_str().unwrap()]),
        exit::CONFLICT,
        codes::RUN,
        &["another aiops engine", "is held"],
    );
    let o = e.ctl(&["submit", failing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let run = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&e.ctl(&["status", &run]).stdout).contains("failed") {
        assert!(Instant::now() < deadline, "run {run} did not fail");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 409: the run has ended.
    expect(
        "cancel of an ended run",
        &e.ctl(&["cancel", &run]),
        exit::CONFLICT,
        codes::CANCEL,
        &["conflict", &run],
    );
    expect(
        "confirm of an ended run",
        &e.ctl(&["confirm", &run, "a"]),
        exit::CONFLICT,
        codes::RUN,
        &["conflict"],
    );
    // 404
    expect(
        "status of no run (daemon)",
        &e.ctl(&["status", "r-none"]),
        exit::NOINPUT,
        codes::RECORDS,
        &["not found"],
    );
    expect(
        "logs of no node (daemon)",
        &e.ctl(&["logs", &run, "zz"]),
        exit::NOINPUT,
        codes::RECORDS,
        &["\"zz\""],
    );
    // 400
    let bad_id = e.file(
        "id.toml",
        "schema = 1\nname = \"f\"\n[workspace]\nrepo = \".\"\n[[node]]\nid = \"A\"\nkind = \"shell\"\nrun = \"true\"\n",
    );
    expect(
        "submit of an invalid flow (daemon)",
        &e.ctl(&["submit", bad_id.to_str().unwrap()]),
        exit::DATAERR,
        codes::SUBMIT,
        &["node[0].id"],
    );
    // Audit lines carry no enum tags.
    let o = e.ctl(&["audit", "--run", &run, "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        !text.contains("\"by\"") && !text.contains("Patterns"),
        "{text}"
    );
}

/// A user the daemon's socket refuses (EACCES) is told so, with the
/// socket, the admin group and how to join it, and exits 77: no silent
/// engine of their own. `--local` is the explicit way to run without it.
#[test]
fn a_user_the_daemon_s_socket_refuses_is_told_why_and_how_to_join() {
    let test = "a_user_the_daemon_s_socket_refuses_is_told_why_and_how_to_join";
    if !is_root() {
        skip_needs_root(test, "needs a daemon of root's next to a plain user");
        return;
    }
    let e = env();
    let _d = e.daemon();
    let sock = e.root.join("api.sock");
    let flow = e.failing_flow();
    let flow = flow.to_str().unwrap();
    for args in [
        &["status"][..],
        &["run", flow],
        &["submit", flow],
        &["cancel", "r-x"],
        &["confirm", "r-x", "a"],
        &["logs", "r-x", "a"],
        &["audit"],
        &["gc"],
    ] {
        let o = as_nobody(aiopsctl())
            .args(args)
            .arg("--config")
            .arg(&e.config)
            .current_dir(&e.root)
            .env("USER", "nobody")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let listed: Vec<i32> = [codes::RUN, codes::SUBMIT, codes::RECORDS, codes::CANCEL].concat();
        expect(
            &format!("{args:?} as nobody"),
            &o,
            exit::NOPERM,
            &listed,
            &[
                &sock.display().to_string(),
                "permission denied",
                "aiops-admin",
                "usermod -aG aiops-admin nobody",
                "--local",
            ],
        );
        // Not the old complaint about another user's state directory.
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("belongs to uid"),
            "{o:?}"
        );
    }
    // --local: no daemon; the configured state is root's, and says so.
    let o = as_nobody(aiopsctl())
        .args(["run", flow, "--local", "--config"])
        .arg(&e.config)
        .current_dir(&e.root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    expect(
        "run --local on root's state",
        &o,
        exit::NOPERM,
        codes::RUN,
        &["belongs to uid 0, not to you (uid 65534)"],
    );
}

/// One seccomp rule count: `profile explain` says the number the jailer's
/// layer line gives for the same profile on this host.
#[test]
fn explain_and_the_jail_count_the_same_seccomp_rules() {
    let test = "explain_and_the_jail_count_the_same_seccomp_rules";
    let e = env();
    let ws = e.root.join("ws");
    std::fs::create_dir(&ws).unwrap();
    let ws = ws.to_str().unwrap();
    let o = e
        .cmd(&["profile", "explain", "restrictive", "--workspace", ws])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let explained: usize = out
        .split_once("default allow; ")
        .and_then(|(_, r)| r.split_once(" rules deny"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule count in {out}"));
    let exec_out = e
        .cmd(&[
            "exec",
            "--profile",
            "restrictive",
            "--workspace",
            ws,
            "--report",
            "json",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    // `profile show` quotes the same number for a profile that adds none.
    let o = e.cmd(&["profile", "show", "restrictive"]).output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains(&format!("baseline table of {explained} rules")),
        "{explained} rules not in {shown}"
    );
    let o = exec_out;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(0) {
        skip(test, &format!("no jail here: {err}"));
        return;
    }
    let layer = format!("seccomp({explained} rules");
    assert!(err.contains(&layer), "{layer:?} not in {err}");
}

/// aiops-supervisor: `--help` with its exit codes, 64 for a bad flag, and
/// at the default log level the line that says it is ready and where.
#[test]
fn the_daemon_has_help_and_says_where_it_listens() {
    let e = env();
    let daemon = || {
        let mut c = Command::new(bin("aiops-supervisor"));
        c.env_remove("AIOPS_LOG").stdin(Stdio::null());
        c
    };
    let o = daemon().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{help}");
    for c in aiops_supervisor::daemon::EXIT_CODES {
        let meaning = exit::lookup(*c).unwrap().meaning;
        assert!(help.contains(&format!("  {c:<4} {meaning}")), "{c}: {help}");
    }
    let o = daemon().arg("--bogus").output().unwrap();
    assert_eq!(o.status.code(), Some(exit::USAGE), "{o:?}");
    let bad = e.file("bad.toml", "schema = 1\nparallelism = 0\n");
    let o = daemon().arg("--config").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(exit::DATAERR), "{o:?}");
    let d = e.daemon();
    let err = d.stop();
    let want = format!(
        "aiops-supervisor ready: listening on {}, state dir {}, 2 parallel",
        e.root.join("api.sock").display(),
        e.root.join("state").display()
    );
    assert!(err.contains(&want), "{want:?} not in {err}");
    assert!(err.contains("stopped"), "{err}");
}
