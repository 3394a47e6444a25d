//! Shared helpers for the cross-binary tests: run one command through
//! `aiopsctl exec` the way an operator would, and read back what happened.
//!
//! Every escape test runs a technique in several [`Mode`]s: the control
//! under `unconfined` (which must show the technique works, so a test cannot
//! pass by everything failing), then the attack under `restrictive` as the
//! current user and, when we are root, again as `nobody`.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod probes;

// The helpers every test crate shares; re-exported so the escape tests keep
// importing `aiops_tests::*`.
pub use aiops_testkit::{
    as_nobody, bin, chown_to, chown_tree, curl_status, euid, have_program, host_file, is_root,
    must_work, note, repo_root, scratch_dir, skip, skip_needs_root, test_tmp, unique,
    SystemCeiling, NOBODY, SETPRIV_NOBODY,
};

/// Printed first by every script, so a test can tell the node really ran.
const BEGIN: &str = "__AIOPS_BEGIN__";
/// Fixed so that the jail and the host agree on where tools are.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
/// The interpreter used by probes; under /usr, so it runs in the jail too.
pub const PYTHON: &str = "/usr/bin/python3";
/// Under /usr, unlike /usr/local/bin/git which some hosts also have.
pub const GIT: &str = "/usr/bin/git";

/// `git -C repo ARGS` with a fixed author, failing the test when git does.
pub fn git(repo: &Path, args: &[&str]) {
    let st = Command::new(GIT)
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(st.success(), "git {args:?}");
}

/// `root/supervisor.toml` with the state dir and API socket under `root`.
pub fn supervisor_config(root: &Path) -> PathBuf {
    let config = root.join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "schema = 1\nstate_dir = \"{0}/state\"\n[api]\nsocket = \"{0}/api.sock\"\n",
            root.display()
        ),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
    config
}

/// True when python3 can run probes; otherwise prints the skip.
pub fn have_python(test: &str) -> bool {
    if Path::new(PYTHON).exists() {
        true
    } else {
        skip(
            test,
            &format!("{PYTHON} is missing; the probe is a python snippet"),
        );
        false
    }
}

/// The `aiopsctl` under test: `$AIOPS_TEST_AIOPSCTL` when set (CI's second
/// pass runs the static build the package ships, packaging/static-build.sh),
/// else the debug build.
pub fn aiopsctl() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("AIOPS_TEST_AIOPSCTL") {
                let p = PathBuf::from(p);
                assert!(
                    p.is_file(),
                    "AIOPS_TEST_AIOPSCTL={} is not a file",
                    p.display()
                );
                return p;
            }
            // The helpers must exist next to aiopsctl; check all three once.
            bin("aiops-jailer");
            bin("aiops-agentd");
            bin("aiopsctl")
        })
        .clone()
}

pub fn profiles_dir() -> PathBuf {
    repo_root().join("profiles")
}

/// Who runs `aiopsctl`, and under which profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `unconfined` as the current user: the technique must work here.
    Control,
    /// `unconfined` as nobody (only when root).
    ControlNobody,
    /// `restrictive` as the current user.
    Jail,
    /// `restrictive` as nobody (only when root).
    JailNobody,
    /// Plain host execution as the current user, no aiops at all: the
    /// control for techniques that need root, since `unconfined` run by
    /// root drops the node to nobody.
    Host,
}

impl Mode {
    pub fn profile(self) -> &'static str {
        match self {
            Mode::Control | Mode::ControlNobody | Mode::Host => "unconfined",
            Mode::Jail | Mode::JailNobody => "restrictive",
        }
    }

    pub fn nobody(self) -> bool {
        matches!(self, Mode::ControlNobody | Mode::JailNobody)
    }

    pub fn is_control(self) -> bool {
        matches!(self, Mode::Control | Mode::ControlNobody | Mode::Host)
    }

    /// The uid `aiopsctl` runs as.
    pub fn caller_uid(self) -> u32 {
        if self.nobody() {
            NOBODY
        } else {
            euid()
        }
    }

    /// The owner to give host-side fixtures so this mode's caller may use them.
    pub fn owner(self) -> Option<u32> {
        is_root().then_some(if self.nobody() { NOBODY } else { 0 })
    }

    /// A jail for this mode with a fresh workspace.
    pub fn jail(self) -> Jail {
        let mut j = Jail::new(self.profile());
        j.host = self == Mode::Host;
        if self.nobody() {
            j.as_nobody()
        } else {
            j
        }
    }

    /// Like [`Mode::jail`] with another profile (for the jailed modes).
    pub fn jail_with(self, profile: &str) -> Jail {
        let mut j = Jail::new(if self.is_control() {
            "unconfined"
        } else {
            profile
        });
        j.host = self == Mode::Host;
        if self.nobody() {
            j.as_nobody()
        } else {
            j
        }
    }
}

/// For controls that need root on the host: `Mode::Host` when root (with a
/// note), else a skip; then the attacks.
pub fn root_control_modes(test: &str) -> Vec<Mode> {
    if is_root() {
        note(test, "control runs on the host as root: unconfined drops root, and the host refuses nobody too");
        [vec![Mode::Host], attacks()].concat()
    } else {
        skip_needs_root(test, "the control needs root");
        attacks()
    }
}

/// Controls where the node must run as the same host uid as aiopsctl
/// (signalling it, reading its environ). As root, `unconfined` drops the
/// node to nobody, so only the control run by nobody qualifies.
pub fn same_uid_controls() -> Vec<Mode> {
    if is_root() {
        vec![Mode::ControlNobody]
    } else {
        vec![Mode::Control]
    }
}

/// The controls to run here: as the current user, and as nobody when root.
pub fn controls() -> Vec<Mode> {
    if is_root() {
        vec![Mode::Control, Mode::ControlNobody]
    } else {
        vec![Mode::Control]
    }
}

/// The attacks to run here: as the current user, and as nobody when root.
pub fn attacks() -> Vec<Mode> {
    if is_root() {
        vec![Mode::Jail, Mode::JailNobody]
    } else {
        vec![Mode::Jail]
    }
}

/// Controls then attacks.
pub fn all_modes() -> Vec<Mode> {
    let mut v = controls();
    v.extend(attacks());
    v
}

/// Run `f` for each mode on its own thread (jails are independent), and
/// re-raise the first panic with the mode named.
pub fn each_mode<F>(modes: &[Mode], f: F)
where
    F: Fn(Mode) + Sync,
{
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = modes.iter().map(|&m| (m, s.spawn(move || f(m)))).collect();
        let mut failures = Vec::new();
        for (m, h) in handles {
            if let Err(e) = h.join() {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                failures.push(format!("[{m:?}] {msg}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

/// A workspace: a fresh temp dir, owned by nobody when we are root (as root
/// the jail runs as the workspace owner or nobody, never as host root).
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Shared with the [`Outcome`], so the tree outlives the run for checks.
    dir: std::sync::Arc<tempfile::TempDir>,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace::owned_by(is_root().then_some(NOBODY))
    }

    pub fn owned_by(owner: Option<u32>) -> Self {
        let dir = std::sync::Arc::new(scratch_dir(owner));
        Workspace { dir }
    }

    /// A workspace directly under the system /tmp (which the jail replaces
    /// with a private tmpfs and binds the workspace over).
    pub fn in_system_tmp() -> Self {
        let d = tempfile::Builder::new()
            .prefix("aiops-escape-ws-")
            .tempdir_in("/tmp")
            .expect("create a workspace in /tmp");
        chown_to(d.path(), is_root().then_some(NOBODY));
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod workspace");
        Workspace {
            dir: std::sync::Arc::new(d),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn owner(&self) -> Option<u32> {
        is_root().then(|| std::fs::metadata(self.path()).map(|m| m.uid()).unwrap_or(0))
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

type SpawnHook = Box<dyn FnOnce(u32) + Send>;

/// One `aiopsctl exec` invocation, built up then run once.
pub struct Jail {
    profile: String,
    workspace: Workspace,
    nobody: bool,
    env: Vec<(OsString, OsString)>,
    timeout: Option<String>,
    cwd: Option<PathBuf>,
    fd7: Option<PathBuf>,
    pty: bool,
    deadline: Duration,
    on_spawn: Option<SpawnHook>,
    stdin: Option<Vec<u8>>,
    /// Extra `aiopsctl exec` flags, before `--`.
    flags: Vec<String>,
    /// Run the command directly on the host instead (see [`Mode::Host`]).
    host: bool,
    /// A shell command reading aiopsctl's stdout (see [`Jail::pipe_into`]).
    pipe_into: Option<String>,
}

impl Jail {
    /// `profile` is a shipped profile name or a path to a `.toml`.
    pub fn new(profile: &str) -> Self {
        Jail {
            profile: profile.into(),
            workspace: Workspace::new(),
            nobody: false,
            env: vec![],
            timeout: None,
            cwd: None,
            fd7: None,
            pty: false,
            deadline: Duration::from_secs(90),
            on_spawn: None,
            stdin: None,
            flags: vec![],
            host: false,
            pipe_into: None,
        }
    }

    /// Pipe aiopsctl's stdout into `consumer` (a bash command line, e.g.
    /// `head -2`): `bash -c 'aiopsctl ... | consumer'`. The outcome's stdout
    /// is the consumer's, then a line `PIPESTATUS <aiopsctl's status>`; its
    /// code is bash's. The report stays aiopsctl's last stderr line.
    pub fn pipe_into(mut self, consumer: &str) -> Self {
        self.pipe_into = Some(consumer.into());
        self
    }

    /// Pass `flag` to `aiopsctl exec` (e.g. `-t`).
    pub fn flag(mut self, flag: &str) -> Self {
        self.flags.push(flag.into());
        self
    }

    /// Run `aiopsctl` as uid/gid 65534 through `setpriv` (root only).
    pub fn as_nobody(mut self) -> Self {
        assert!(is_root(), "as_nobody needs root (setpriv)");
        self.nobody = true;
        self
    }

    pub fn workspace(mut self, ws: Workspace) -> Self {
        self.workspace = ws;
        self
    }

    pub fn ws(&self) -> &Path {
        self.workspace.path()
    }

    pub fn ws_owner(&self) -> Option<u32> {
        self.workspace.owner()
    }

    /// Set a variable in aiopsctl's own environment.
    pub fn env(mut self, k: &str, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn timeout(mut self, t: &str) -> Self {
        self.timeout = Some(t.into());
        self
    }

    pub fn cwd(mut self, p: impl Into<PathBuf>) -> Self {
        self.cwd = Some(p.into());
        self
    }

    /// Open `path` read-only on fd 7 of aiopsctl (as an inherited fd would be).
    pub fn fd7(mut self, path: &Path) -> Self {
        self.fd7 = Some(path.into());
        self
    }

    /// Run aiopsctl on a pseudo-terminal (`script`), so fd 0 is a tty.
    pub fn pty(mut self) -> Self {
        self.pty = true;
        self
    }

    /// How long aiopsctl may take before the test kills it and fails.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// Feed these bytes to aiopsctl's stdin (else stdin is /dev/null).
    pub fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }

    /// Called with aiopsctl's pid right after it starts.
    pub fn on_spawn(mut self, f: impl FnOnce(u32) + Send + 'static) -> Self {
        self.on_spawn = Some(Box::new(f));
        self
    }

    /// `sh -c script`, with `args` as `$1...`.
    pub fn run_sh_args(self, script: &str, args: &[&str]) -> Outcome {
        let mut argv: Vec<String> = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo {BEGIN}; {script}"),
            "aiops-probe".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        self.run_argv(&argv)
    }

    pub fn run_sh(self, script: &str) -> Outcome {
        self.run_sh_args(script, &[])
    }

    /// A python probe (see [`probes::PRELUDE`]); `args` are `sys.argv[1:]`.
    pub fn run_py(self, code: &str, args: &[&str]) -> Outcome {
        let src = format!("{}\n{}", probes::PRELUDE, code);
        let mut a: Vec<&str> = vec![&src];
        a.extend_from_slice(args);
        self.run_sh_args(&format!("exec {PYTHON} -c \"$@\""), &a)
    }

    /// Run `argv` in the jail as is.
    pub fn run_argv(self, argv: &[String]) -> Outcome {
        let mut cmd_line: Vec<OsString> = vec![aiopsctl().into(), "exec".into()];
        cmd_line.push("--profile".into());
        cmd_line.push(self.profile.clone().into());
        cmd_line.push("--workspace".into());
        cmd_line.push(self.ws().into());
        if let Some(c) = &self.cwd {
            cmd_line.push("--cwd".into());
            cmd_line.push(c.into());
        }
        if let Some(t) = &self.timeout {
            cmd_line.push("--timeout".into());
            cmd_line.push(t.into());
        }
        cmd_line.push("--report".into());
        cmd_line.push("json".into());
        cmd_line.extend(self.flags.iter().map(OsString::from));
        cmd_line.push("--".into());
        cmd_line.extend(argv.iter().map(OsString::from));
        if self.host {
            cmd_line = argv.iter().map(OsString::from).collect();
        }

        if let Some(p) = &self.fd7 {
            let mut w: Vec<OsString> = vec![
                "/bin/sh".into(),
                "-c".into(),
                "exec 7<\"$0\" && exec \"$@\"".into(),
                p.into(),
            ];
            w.append(&mut cmd_line);
            cmd_line = w;
        }
        if self.nobody {
            let mut w: Vec<OsString> = SETPRIV_NOBODY.iter().map(OsString::from).collect();
            w.append(&mut cmd_line);
            cmd_line = w;
        }
        if let Some(consumer) = &self.pipe_into {
            let mut w: Vec<OsString> = vec![
                "/bin/bash".into(),
                "-c".into(),
                format!("\"$@\" | {consumer}; echo \"PIPESTATUS ${{PIPESTATUS[0]}}\"").into(),
                "aiops-pipe".into(),
            ];
            w.append(&mut cmd_line);
            cmd_line = w;
        }
        if self.pty {
            let quoted: Vec<String> = cmd_line
                .iter()
                .map(|a| shell_quote(&a.to_string_lossy()))
                .collect();
            cmd_line = vec![
                "script".into(),
                "-qec".into(),
                quoted.join(" ").into(),
                "/dev/null".into(),
            ];
        }

        let mut cmd = Command::new(&cmd_line[0]);
        cmd.args(&cmd_line[1..])
            .current_dir(self.ws())
            .env("PATH", PATH)
            .env("AIOPS_PROFILE_PATH", profiles_dir())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let described = cmd_line
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {described}: {e}"));
        if let (Some(data), Some(mut w)) = (self.stdin, child.stdin.take()) {
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = w.write_all(&data);
            });
        }
        let pid = child.id();
        if let Some(f) = self.on_spawn {
            f(pid);
        }
        let (code, stdout, stderr) = wait_bounded(child, self.deadline, &described);
        let mut o = Outcome::parse(code, stdout, stderr, start.elapsed(), described);
        o.workspace = Some(self.workspace);
        o
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Wait for `child`, reading its output; kill it (and fail) past `deadline`.
fn wait_bounded(mut child: Child, deadline: Duration, what: &str) -> (i32, String, String) {
    use std::os::unix::process::ExitStatusExt;
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for aiopsctl") {
            Some(s) => break s,
            None if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aiopsctl did not return within {deadline:?}: {what}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // A descendant that outlives aiopsctl may hold the pipes open: read
    // what is there, but do not wait for it forever.
    let until = Instant::now() + Duration::from_secs(10);
    while !(t_out.is_finished() && t_err.is_finished()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let take = |t: std::thread::JoinHandle<Vec<u8>>| {
        if t.is_finished() {
            String::from_utf8_lossy(&t.join().unwrap_or_default()).into_owned()
        } else {
            "<output still open 10 s after aiopsctl exited>".to_string()
        }
    };
    let (stdout, stderr) = (take(t_out), take(t_err));
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (code, stdout, stderr)
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    /// The node's stderr (and aiopsctl's), without the JSON report line.
    pub stderr: String,
    pub report: Option<serde_json::Value>,
    pub elapsed: Duration,
    /// The script printed its first line: the node really started.
    pub ran: bool,
    pub command: String,
    /// Keeps the workspace on disk while the test inspects it.
    pub workspace: Option<Workspace>,
}

impl Outcome {
    fn parse(
        code: i32,
        stdout: String,
        stderr: String,
        elapsed: Duration,
        command: String,
    ) -> Outcome {
        let mut lines: Vec<&str> = stderr.lines().collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        let report = lines
            .last()
            .filter(|l| l.trim_start().starts_with('{'))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
            .filter(serde_json::Value::is_object);
        if report.is_some() {
            lines.pop();
        }
        let stderr = lines.join("\n");
        // On a pty, input echoed by the node's terminal can precede the
        // marker on its line (with `script` and stdin at EOF, a ^D that
        // became a NUL when aiopsctl made the terminal raw: "^@").
        let is_begin = |l: &str| l.trim_end_matches('\r').ends_with(BEGIN);
        let ran = stdout.lines().any(is_begin);
        let stdout = stdout
            .lines()
            .filter(|l| !is_begin(l))
            .map(|l| l.trim_end_matches('\r'))
            .collect::<Vec<_>>()
            .join("\n");
        Outcome {
            code,
            stdout,
            stderr,
            report,
            elapsed,
            ran,
            command,
            workspace: None,
        }
    }

    /// For assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit: {}  elapsed: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- report\n{}",
            self.command,
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr,
            self.report
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "(none)".into())
        )
    }

    /// The node started (its first line came out); fails otherwise.
    pub fn assert_ran(&self) -> &Self {
        assert!(self.ran, "the node never ran\n{}", self.describe());
        self
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "unexpected exit status\n{}",
            self.describe()
        );
        self
    }

    /// The value a probe printed as `PROBE name value`.
    pub fn probe(&self, name: &str) -> Option<String> {
        // On a pty, echoed input can precede the probe's line.
        self.stdout.lines().find_map(|l| {
            let l = &l[l.find("PROBE ")?..];
            let mut it = l.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("PROBE"), Some(n), Some(v)) if n == name => Some(v.to_string()),
                _ => None,
            }
        })
    }

    /// The probe's value, failing the test if it was not printed.
    pub fn probe_value(&self, name: &str) -> String {
        self.probe(name)
            .unwrap_or_else(|| panic!("probe {name} printed nothing\n{}", self.describe()))
    }

    /// Assert probe `name` reported success.
    pub fn assert_probe_ok(&self, name: &str) -> &Self {
        let v = self.probe_value(name);
        assert!(
            v == "ok" || v.starts_with("ok "),
            "{name}: expected ok, got {v}\n{}",
            self.describe()
        );
        self
    }

    /// Assert probe `name` failed with one of `errnos` (names like "EPERM").
    pub fn assert_probe_err(&self, name: &str, errnos: &[&str]) -> &Self {
        let v = self.probe_value(name);
        assert!(
            errnos.iter().any(|e| v == *e),
            "{name}: expected one of {errnos:?}, got {v}\n{}",
            self.describe()
        );
        self
    }

    /// `report.exit.<field>`.
    pub fn exit_field(&self, field: &str) -> Option<&serde_json::Value> {
        self.report.as_ref()?.get("exit")?.get(field)
    }

    pub fn protected_created(&self) -> Vec<String> {
        self.report
            .as_ref()
            .and_then(|r| r.get("protected_created"))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Assert the JSON report is there with the contract's fields.
    pub fn assert_report(&self) -> &serde_json::Value {
        let r = self.report.as_ref().unwrap_or_else(|| {
            panic!(
                "no JSON report as the last stderr line\n{}",
                self.describe()
            )
        });
        for k in ["exit", "protected_created", "profile"] {
            assert!(r.get(k).is_some(), "report lacks {k}\n{}", self.describe());
        }
        r
    }
}

/// Write a test profile `name.toml` into `dir` (the name must match the stem).
pub fn write_profile(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).expect("write test profile");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod profile");
    p
}

/// The host uid a jailed node ends up as: ours, or nobody when we are root
/// (as root the jail runs as the workspace owner, which is nobody here).
/// Host-side victims and files use it so that only the jail, not plain
/// uid checks, stands between the node and them.
pub fn node_uid() -> u32 {
    if is_root() {
        NOBODY
    } else {
        euid()
    }
}

/// A host process that lives until dropped, running as `uid` (via setpriv
/// when that differs from ours). `marker` is in its argv.
pub struct Victim {
    child: Child,
    pub marker: String,
}

impl Victim {
    pub fn spawn(uid: u32) -> Victim {
        // A unique duration makes the victim's cmdline recognisable.
        let n = unique("v")
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 1_000_000;
        let marker = format!("600.{n:06}");
        let script = format!("exec sleep {marker}");
        let mut cmd = if uid != euid() {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "/bin/sh",
                "-c",
                &script,
            ]);
            c
        } else {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", &script]);
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn victim");
        // Wait for the exec so /proc/PID shows sleep, not setpriv.
        let pid = child.id();
        for _ in 0..200 {
            if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sleep")
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Victim { child, marker }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not exited, not a zombie).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `sh -c script` directly on the host (no aiops at all), as nobody when
/// asked: the control for techniques that `unconfined` deliberately filters
/// (environment, inherited fds) or that would harm the host under it.
pub fn host_sh(nobody: bool, script: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut argv: Vec<String> = vec![];
    if nobody {
        argv.extend(SETPRIV_NOBODY.map(String::from));
    }
    argv.extend([
        "/bin/sh".into(),
        "-c".into(),
        format!("echo {BEGIN}; {script}"),
        "aiops-probe".into(),
    ]);
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir("/")
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let described = argv.join(" ");
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {described}: {e}"));
    let (code, stdout, stderr) = wait_bounded(child, Duration::from_secs(60), &described);
    Outcome::parse(code, stdout, stderr, start.elapsed(), described)
}

/// A python probe run directly on the host (see [`host_sh`]).
pub fn host_py(nobody: bool, code: &str, args: &[&str]) -> Outcome {
    let src = format!("{}\n{}", probes::PRELUDE, code);
    let mut a: Vec<&str> = vec![&src];
    a.extend_from_slice(args);
    host_sh(nobody, &format!("exec {PYTHON} -c \"$@\""), &a, &[])
}

/// A directory outside every workspace that anyone may write (mode 0777),
/// so that only the jail, not file permissions, stands in the way.
pub fn open_dir() -> tempfile::TempDir {
    let d = scratch_dir(None);
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod 0777");
    d
}

/// Messages the shell and coreutils print when the jail says no.
pub const DENIED: &[&str] = &[
    "Permission denied",
    "Read-only file system",
    "No such file or directory",
    "Operation not permitted",
    "Device or resource busy",
    "Invalid cross-device link",
    "cannot create",
    "can't create",
    "nonexistent directory",
];

/// Assert `text` carries one of the [`DENIED`] messages.
pub fn assert_denied(text: &str, o: &Outcome) {
    assert!(
        DENIED.iter().any(|d| text.contains(d)),
        "expected a permission/absence error, got {text:?}\n{}",
        o.describe()
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn report_is_taken_from_the_last_stderr_line_only() {
        let o = Outcome::parse(
            3,
            format!("{BEGIN}\nPROBE x ok 5\nPROBE y EPERM\r\n"),
            "node says {\"not\":\"json\"\n{\"exit\":{\"code\":3},\"protected_created\":[\".git/hooks\"],\"profile\":\"p\"}\n"
                .into(),
            Duration::ZERO,
            "t".into(),
        );
        assert!(o.ran);
        assert_eq!(o.stderr, "node says {\"not\":\"json\"");
        assert_eq!(o.protected_created(), vec![".git/hooks".to_string()]);
        assert_eq!(o.exit_field("code").and_then(|v| v.as_i64()), Some(3));
        assert_eq!(o.probe("x").as_deref(), Some("ok 5"));
        o.assert_probe_err("y", &["EPERM"]);
        o.assert_report();
    }

    #[test]
    fn a_node_that_never_started_is_noticed() {
        let o = Outcome::parse(
            125,
            String::new(),
            "aiopsctl: set-up failed\n".into(),
            Duration::ZERO,
            "t".into(),
        );
        assert!(!o.ran);
        assert!(o.report.is_none());
        assert!(std::panic::catch_unwind(|| o.assert_ran()).is_err());
    }

    #[test]
    fn host_controls_run_probes() {
        if !have_python("host_controls_run_probes") {
            return;
        }
        let o = host_py(false, r#"probe("uname", lambda: os.uname().sysname)"#, &[]);
        o.assert_ran();
        assert_eq!(o.probe_value("uname"), "ok Linux", "{}", o.describe());
    }
}
