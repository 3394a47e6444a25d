//! The caller's terminal (the node gets a pty of the jail's own, never the
//! caller's) and signal hygiene (an ignored SIGCHLD or a SIGINT from a
//! harness). Judged on the host: what reaches the harness pty's master, the
//! report's counts, the exit status, and the processes left.
//!
//! The pty tests drive `aiopsctl exec` on a pty pair this test opens
//! (`openpty`), with `setsid -c` making its slave aiopsctl's controlling
//! terminal, as a login shell's would be; aiopsctl's stderr is a pipe, so
//! the master carries only what the node's terminal output became. As root,
//! aiopsctl runs as nobody (a jail with secrets must run as its caller).
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
const SECRET_NAME: &str = "AIOPS_TEST_TOKEN";
/// The harness terminal's size, which the node must see.
const ROWS: u16 = 33;
const COLS: u16 = 111;

/// A clean environment for aiopsctl, keeping the helpers under test (CI's
/// second pass points these at the static builds).
fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", PATH)
        .env("AIOPS_PROFILE_PATH", profiles_dir());
    for k in ["AIOPS_JAILER", "AIOPS_AGENTD"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

fn caller_owner() -> Option<u32> {
    is_root().then_some(NOBODY)
}

/// A profile with a small output cap and one secret, a secrets dir holding
/// it, and node caps asking for it.
struct Fixture {
    dir: tempfile::TempDir,
    secrets: tempfile::TempDir,
    secret: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = scratch_dir(None);
        write_profile(
            dir.path(),
            "tty-test",
            &format!(
                "schema = 1\nname = \"tty-test\"\ndescription = \"restrictive, 64 KiB of output, one secret\"\n\
                 extends = \"restrictive\"\n[env]\nallow = [\"PATH\", \"TERM\"]\nsecrets = [\"{SECRET_NAME}\"]\n\
                 [limits]\noutput = \"64KiB\"\n"
            ),
        );
        host_file(
            &dir.path().join("caps.toml"),
            &format!("secrets = [\"{SECRET_NAME}\"]\n"),
            None,
        );
        let secrets = scratch_dir(caller_owner());
        std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let secret = unique("ttysecret");
        let f = secrets.path().join(SECRET_NAME);
        std::fs::write(&f, &secret).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown_to(&f, caller_owner());
        Fixture {
            dir,
            secrets,
            secret,
        }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("tty-test.toml")
    }

    /// `aiopsctl exec` of `argv` (as nobody when root), with `extra` flags.
    fn aiopsctl(&self, ws: &Path, extra: &[&str], argv: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = if is_root() {
            SETPRIV_NOBODY.iter().map(OsString::from).collect()
        } else {
            vec![]
        };
        v.push(aiopsctl().into());
        v.extend(["exec", "--profile"].map(OsString::from));
        v.push(self.profile().into());
        v.push("--node-caps".into());
        v.push(self.dir.path().join("caps.toml").into());
        v.push("--workspace".into());
        v.push(ws.into());
        v.extend(["--timeout", "60s", "--report", "json"].map(OsString::from));
        v.extend(extra.iter().map(OsString::from));
        v.push("--".into());
        v.extend(argv.iter().map(OsString::from));
        v
    }
}

/// A process on a pty pair of ours: its master is read into `out` by a thread.
struct OnPty {
    child: Child,
    master: OwnedFd,
    /// Kept open so the master never reads EIO and its settings can be read.
    slave: OwnedFd,
    slave_path: PathBuf,
    /// The harness terminal's local flags before anything ran on it.
    flags_before: LocalFlags,
    out: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    started: Instant,
}

/// What one run on the pty did.
struct PtyRun {
    code: i32,
    /// Everything the master read.
    master: Vec<u8>,
    stderr: String,
    report: Option<serde_json::Value>,
    elapsed: Duration,
    /// The harness terminal's local flags once the run was over.
    flags_after: LocalFlags,
}

impl PtyRun {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.master).into_owned()
    }

    fn describe(&self) -> String {
        let t = self.text();
        let shown: String = t.chars().take(2000).collect();
        format!(
            "exit {} after {:?}\n--- master ({} bytes)\n{shown}\n--- stderr\n{}",
            self.code,
            self.elapsed,
            self.master.len(),
            self.stderr
        )
    }

    fn exit_u64(&self, field: &str) -> u64 {
        self.report
            .as_ref()
            .and_then(|r| r["exit"][field].as_u64())
            .unwrap_or_else(|| panic!("report lacks exit.{field}\n{}", self.describe()))
    }
}

impl OnPty {
    /// Run `argv` with the slave as its controlling terminal and stdin;
    /// stdout too when `stdout_tty`, else /dev/null. stderr is a pipe.
    fn spawn(argv: &[OsString], stdout_tty: bool, env: &[(&str, &Path)]) -> OnPty {
        let ws = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pair = openpty(Some(&ws), None).unwrap();
        let slave_path = nix::unistd::ttyname(&pair.slave).unwrap();
        let flags_before = tcgetattr(pair.slave.as_fd()).unwrap().local_flags;
        // As root, aiopsctl runs as nobody and opens nothing by path; the
        // node must not be able to either (it does not need to).
        let mut cmd = Command::new("setsid");
        clean_env(&mut cmd)
            .arg("-c")
            .args(argv)
            .env("TERM", "xterm")
            .stdin(Stdio::from(pair.slave.try_clone().unwrap()))
            .stdout(if stdout_tty {
                Stdio::from(pair.slave.try_clone().unwrap())
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (m, out, done) = (pair.master.try_clone().unwrap(), out.clone(), done.clone());
            std::thread::spawn(move || read_master(&m, &out, &done))
        };
        OnPty {
            child,
            master: pair.master,
            slave: pair.slave,
            slave_path,
            flags_before,
            out,
            done,
            reader: Some(reader),
            stderr: Some(stderr),
            started,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait until the master has shown `needle`; false after `limit`.
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Type `bytes` on the harness terminal.
    fn type_bytes(&self, bytes: &[u8]) {
        assert_eq!(
            nix::unistd::write(&self.master, bytes).unwrap(),
            bytes.len()
        );
    }

    /// Resize the harness terminal (the kernel signals its foreground group).
    fn resize(&self, rows: u16, cols: u16) {
        let ok = Command::new("stty")
            .arg("-F")
            .arg(&self.slave_path)
            .args(["rows", &rows.to_string(), "cols", &cols.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "stty -F {} failed", self.slave_path.display());
    }

    fn local_flags(&self) -> LocalFlags {
        tcgetattr(self.slave.as_fd()).unwrap().local_flags
    }

    fn finish(mut self, limit: Duration) -> PtyRun {
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "did not return within {limit:?}\n--- master\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        // Whatever is still in the pty's buffer is read before the reader stops.
        std::thread::sleep(Duration::from_millis(300));
        self.done.store(true, Ordering::SeqCst);
        self.reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        let flags_after = self.local_flags();
        let report = stderr
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .and_then(|l| serde_json::from_str(l.trim()).ok());
        use std::os::unix::process::ExitStatusExt;
        PtyRun {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            master: std::mem::take(&mut *self.out.lock().unwrap()),
            stderr,
            report,
            elapsed,
            flags_after,
        }
    }
}

fn read_master(m: &OwnedFd, out: &Mutex<Vec<u8>>, done: &AtomicBool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = [0u8; 65536];
    loop {
        let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0);
        if n == 0 {
            if done.load(Ordering::SeqCst) {
                return;
            }
            continue;
        }
        match nix::unistd::read(m, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => out.lock().unwrap().extend_from_slice(&buf[..k]),
        }
    }
}

fn have_tools(test: &str) -> bool {
    have_program(test, "/usr/bin/setsid") && have_program(test, "/usr/bin/stty")
}

/// The attack: the node writes far past the output cap, and a secret, to
/// fd 0 and /dev/tty, which used to be the caller's terminal opened
/// read-write, bypassing counting, the cap and redaction. Stopped by: the
/// node's own pty, whose master agentd pumps like stdout. Judged on the
/// harness master: exactly the report's `stdout_bytes` arrive (capped at
/// 64 KiB), with the secret redacted. Control: the same script on the
/// harness pty without the jail delivers everything, secret included.
#[test]
fn writes_to_the_terminal_are_counted_capped_and_redacted() {
    let test = "writes_to_the_terminal_are_counted_capped_and_redacted";
    if !have_tools(test) {
        return;
    }
    let fx = Fixture::new();
    // In a pipeline fd 0 is the pipe, so fd 3 carries fd 0's open file.
    let script = "printf 'tty-secret=%s\\n' \"$AIOPS_TEST_TOKEN\" > /dev/tty; \
                  printf 'fd0-secret=%s\\n' \"$AIOPS_TEST_TOKEN\" >&0; \
                  exec 3<&0; head -c 300000 /dev/zero | tr '\\0' x >&3";

    // Control: no jail, the secret in the environment as the jail puts it.
    let control = OnPty::spawn(&["sh", "-c", script].map(OsString::from), true, &[]);
    let mut c = control.finish(Duration::from_secs(30));
    c.master.retain(|b| *b == b'x');
    assert!(
        c.master.len() >= 300_000,
        "control: the terminal should get all 300000 bytes, got {}",
        c.master.len()
    );
    let secret_env = OnPty::spawn(
        &[
            "env".into(),
            format!("{SECRET_NAME}={}", fx.secret).into(),
            "sh".into(),
            "-c".into(),
            "printf 'tty-secret=%s\\n' \"$AIOPS_TEST_TOKEN\" > /dev/tty".into(),
        ],
        true,
        &[],
    )
    .finish(Duration::from_secs(30));
    assert!(
        secret_env.text().contains(&fx.secret),
        "control: the secret should reach the terminal\n{}",
        secret_env.describe()
    );

    let ws = Workspace::owned_by(caller_owner());
    let argv = fx.aiopsctl(ws.path(), &[], &["sh", "-c", script]);
    let r = OnPty::spawn(&argv, true, &[("AIOPS_SECRETS_DIR", fx.secrets.path())])
        .finish(Duration::from_secs(60));
    assert_eq!(
        r.code,
        123,
        "the output cap should stop it\n{}",
        r.describe()
    );
    let report = r.report.clone().unwrap_or_default();
    assert_eq!(report["exit"]["pty"], true, "{}", r.describe());
    assert_eq!(report["exit"]["output_capped"], true, "{}", r.describe());
    let counted = r.exit_u64("stdout_bytes") + r.exit_u64("stderr_bytes");
    assert_eq!(counted, 64 * 1024, "{}", r.describe());
    let text = r.text();
    assert!(
        !text.contains(&fx.secret),
        "secret leaked\n{}",
        r.describe()
    );
    assert!(
        text.contains("tty-secret=[REDACTED]") && text.contains("fd0-secret=[REDACTED]"),
        "{}",
        r.describe()
    );
    // Redaction replaced 2 secrets by markers; everything else arrived as
    // counted, and nothing more.
    let marker = "[REDACTED]".len() as i64;
    let delta = 2 * (fx.secret.len() as i64 - marker);
    assert_eq!(
        r.master.len() as i64 + delta,
        counted as i64,
        "bytes on the terminal vs counted\n{}",
        r.describe()
    );
}

/// The node's terminal is the jail's own pty: `tty` names /dev/pts, fd 0
/// is not the harness's terminal (another devpts), agentd's fds (the
/// caller's terminal) cannot be opened through /proc/1/fd, the window size
/// is the harness's and follows a resize, and the harness terminal is raw
/// while the node runs and restored after. Ctrl-C typed on the harness (a
/// 0x03 byte) reaches the node as SIGINT from its own terminal.
#[test]
fn the_node_gets_its_own_pty_with_size_and_ctrl_c() {
    let test = "the_node_gets_its_own_pty_with_size_and_ctrl_c";
    if !have_tools(test) {
        return;
    }
    let fx = Fixture::new();
    let ws = Workspace::owned_by(caller_owner());
    let script = "tty; echo \"dev=$(stat -L -c %d /proc/self/fd/0)\"; echo \"size=$(stty size)\"; \
                  if (: 3<>/proc/1/fd/0) 2>/dev/null; then echo PROC1=opened; else echo PROC1=denied; fi; \
                  echo READY; \
                  while [ \"$(stty size)\" != '44 122' ]; do sleep 0.05; done; echo RESIZED; \
                  trap 'echo GOT-INT; exit 7' INT; echo ARMED; sleep 100 & wait";
    let argv = fx.aiopsctl(ws.path(), &[], &["sh", "-c", script]);
    let p = OnPty::spawn(&argv, true, &[("AIOPS_SECRETS_DIR", fx.secrets.path())]);
    let before = p.flags_before;
    assert!(p.wait_for("READY", Duration::from_secs(30)), "{}", p.text());
    let during = p.local_flags();
    assert!(
        !during.intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG),
        "the caller's terminal should be raw while the node runs: {during:?}"
    );
    p.resize(44, 122);
    assert!(
        p.wait_for("RESIZED", Duration::from_secs(20)),
        "{}",
        p.text()
    );
    assert!(p.wait_for("ARMED", Duration::from_secs(20)), "{}", p.text());
    std::thread::sleep(Duration::from_millis(200));
    p.type_bytes(b"\x03");
    let host_dev = std::fs::metadata(&p.slave_path).unwrap().dev();
    let r = p.finish(Duration::from_secs(30));
    let text = r.text();
    assert_eq!(
        r.flags_after,
        before,
        "the caller's terminal should be restored
{}",
        r.describe()
    );
    assert_eq!(
        r.code,
        7,
        "Ctrl-C should run the node's INT trap\n{}",
        r.describe()
    );
    assert!(text.contains("GOT-INT"), "{}", r.describe());
    assert!(
        text.lines().any(|l| l.trim_end() == "/dev/pts/0"),
        "`tty` should name the jail's first pty\n{}",
        r.describe()
    );
    assert!(
        text.contains(&format!("size={ROWS} {COLS}")),
        "{}",
        r.describe()
    );
    assert!(text.contains("PROC1=denied"), "{}", r.describe());
    let node_dev: u64 = text
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("dev="))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no dev= line\n{}", r.describe()));
    assert_ne!(
        node_dev,
        host_dev,
        "the node's fd 0 is on the harness's devpts\n{}",
        r.describe()
    );
    assert_eq!(r.report.as_ref().unwrap()["exit"]["pty"], true);
}

/// aiopsctl terminated (`kill -TERM`, as a harness or a closing session
/// would) while the node runs on its pty: the jail is stopped, aiopsctl
/// exits non-zero, and the caller's terminal is back as it was.
#[test]
fn the_terminal_is_restored_when_aiopsctl_is_terminated() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let test = "the_terminal_is_restored_when_aiopsctl_is_terminated";
    if !have_tools(test) {
        return;
    }
    let fx = Fixture::new();
    let ws = Workspace::owned_by(caller_owner());
    let argv = fx.aiopsctl(ws.path(), &[], &["sh", "-c", "echo READY; sleep 100"]);
    let p = OnPty::spawn(&argv, true, &[("AIOPS_SECRETS_DIR", fx.secrets.path())]);
    let before = p.flags_before;
    assert!(p.wait_for("READY", Duration::from_secs(30)), "{}", p.text());
    assert_ne!(
        p.local_flags(),
        before,
        "the terminal should be raw meanwhile"
    );
    // setsid and setpriv exec: the child's pid is aiopsctl's.
    kill(Pid::from_raw(p.child.id() as i32), Signal::SIGTERM).unwrap();
    let r = p.finish(Duration::from_secs(20));
    assert_ne!(r.code, 0, "{}", r.describe());
    assert!(r.elapsed < Duration::from_secs(15), "{}", r.describe());
    assert_eq!(
        r.flags_after,
        before,
        "terminal not restored\n{}",
        r.describe()
    );
}

/// Job control under the node's pty, as under `ssh -t`: an interactive
/// bash starts a background job, lists it, stops a foreground one with
/// Ctrl-Z (0x1a typed on the harness), and kills both.
#[test]
fn job_control_and_ctrl_z_work_in_an_interactive_shell() {
    let test = "job_control_and_ctrl_z_work_in_an_interactive_shell";
    if !have_tools(test) || !have_program(test, "/usr/bin/bash") {
        return;
    }
    let fx = Fixture::new();
    let ws = Workspace::owned_by(caller_owner());
    let argv = fx.aiopsctl(
        ws.path(),
        &[],
        &["/usr/bin/bash", "--norc", "--noprofile", "-i"],
    );
    let p = OnPty::spawn(&argv, true, &[("AIOPS_SECRETS_DIR", fx.secrets.path())]);
    p.type_bytes(b"PS1='$ '; sleep 100 &\njobs; echo JOBS-$((1+1))\n");
    assert!(
        p.wait_for("JOBS-2", Duration::from_secs(30)),
        "{}",
        p.text()
    );
    // Ctrl-Z once the job runs (its line is only printed then).
    p.type_bytes(b"sh -c 'echo STARTED-$((2+3)); exec sleep 200'\n");
    assert!(
        p.wait_for("STARTED-5", Duration::from_secs(30)),
        "{}",
        p.text()
    );
    std::thread::sleep(Duration::from_millis(100));
    p.type_bytes(b"\x1a");
    assert!(
        p.wait_for("Stopped", Duration::from_secs(20)),
        "Ctrl-Z should stop the foreground job\n{}",
        p.text()
    );
    p.type_bytes(b"kill %1 %2; wait; jobs; exit 5\n");
    let r = p.finish(Duration::from_secs(30));
    let text = r.text();
    assert_eq!(r.code, 5, "{}", r.describe());
    assert!(
        text.lines()
            .any(|l| l.contains("Running") && l.contains("sleep 100")),
        "`jobs` should list the background job\n{}",
        r.describe()
    );
    assert!(!text.contains("no job control"), "{}", r.describe());
}

/// With a terminal on stdin but not on stdout there is no pty (unless -t),
/// and the node must not get the caller's terminal: its stdin is an empty
/// pipe, and /proc/1/fd/0 (agentd's, the terminal) cannot be opened.
/// Control: a process started on the harness directly does hold it.
#[test]
fn without_a_pty_the_node_never_gets_the_callers_terminal() {
    let test = "without_a_pty_the_node_never_gets_the_callers_terminal";
    if !have_tools(test) {
        return;
    }
    let probe = "if [ -t 0 ]; then echo STDIN=tty; else echo STDIN=notty; fi; \
                 echo \"fd0=$(readlink /proc/self/fd/0)\"; \
                 if (: 3<>/proc/1/fd/0) 2>/dev/null; then echo PROC1=opened; else echo PROC1=denied; fi; \
                 cat; echo CAT-DONE";
    let control = OnPty::spawn(
        &["sh", "-c", "[ -t 0 ] && echo STDIN=tty"].map(OsString::from),
        true,
        &[],
    )
    .finish(Duration::from_secs(30));
    assert!(
        control.text().contains("STDIN=tty"),
        "{}",
        control.describe()
    );

    let fx = Fixture::new();
    let ws = Workspace::owned_by(caller_owner());
    let out = ws.path().join("out");
    let script = format!("({probe}) > {} 2>&1", out.display());
    let argv = fx.aiopsctl(ws.path(), &[], &["sh", "-c", &script]);
    let r = OnPty::spawn(&argv, false, &[("AIOPS_SECRETS_DIR", fx.secrets.path())])
        .finish(Duration::from_secs(30));
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(r.code, 0, "{}\n{seen}", r.describe());
    assert!(seen.contains("STDIN=notty"), "{seen}\n{}", r.describe());
    assert!(seen.contains("fd0=pipe:"), "{seen}");
    assert!(seen.contains("PROC1=denied"), "{seen}");
    // cat read end of input at once instead of waiting on the terminal.
    assert!(seen.contains("CAT-DONE"), "{seen}");
    assert_eq!(r.report.as_ref().unwrap()["exit"]["pty"], false);
}

/// `-t` forces a pty even when stdin is a pipe: the node's stdin is then a
/// terminal, what was piped in reaches it, and end of input becomes the
/// terminal's EOF. Without `-t`, stdin stays a pipe and data flows, and the
/// jail has no devpts: the node cannot open a pty at all.
#[test]
fn dash_t_forces_a_pty_and_pipes_stay_pipes_without_it() {
    each_mode(&attacks(), |m| {
        let script = "if [ -t 0 ]; then echo STDIN=tty; else echo STDIN=pipe; fi; \
                      if [ -e /dev/ptmx ]; then echo PTMX=yes; else echo PTMX=no; fi; \
                      echo \"fd0=$(readlink /proc/self/fd/0)\"; cat";
        let o = m.jail().stdin(b"hello from the pipe\n").run_sh(script);
        o.assert_ran().assert_code(0);
        assert!(o.stdout.contains("STDIN=pipe"), "{}", o.describe());
        assert!(o.stdout.contains("PTMX=no"), "{}", o.describe());
        assert!(o.stdout.contains("fd0=pipe:"), "{}", o.describe());
        assert!(o.stdout.contains("hello from the pipe"), "{}", o.describe());
        assert_eq!(o.exit_field("pty"), Some(&serde_json::Value::Bool(false)));

        let o = m
            .jail()
            .flag("-t")
            .stdin(b"hello from the pipe\n")
            .run_sh(script);
        o.assert_ran().assert_code(0);
        assert!(o.stdout.contains("STDIN=tty"), "{}", o.describe());
        assert!(o.stdout.contains("PTMX=yes"), "{}", o.describe());
        assert!(o.stdout.contains("fd0=/dev/pts/0"), "{}", o.describe());
        assert!(o.stdout.contains("hello from the pipe"), "{}", o.describe());
        assert_eq!(o.exit_field("pty"), Some(&serde_json::Value::Bool(true)));
    });
}

/// The node's `SigIgn` and `SigBlk` from /proc/self/status, as numbers.
fn sig_masks(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some((field("SigIgn:")?, field("SigBlk:")?))
}

/// SIGCHLD's bit in a /proc mask (signal 17).
const SIGCHLD_BIT: u64 = 1 << 16;

/// A harness that starts aiopsctl with SIGCHLD ignored (and SIGINT
/// blocked): `aiopsctl exec --timeout 5s -- true` used to never return
/// (the jailer's parent waited for a SIGCHLD the kernel never sent). Now
/// every binary resets what it inherited: the run ends at once and the
/// node sees nothing ignored or blocked. Control: the same wrapper really
/// leaves SIGCHLD ignored in what it starts.
#[test]
fn an_ignored_sigchld_neither_hangs_exec_nor_reaches_the_node() {
    if !have_python("an_ignored_sigchld_neither_hangs_exec_nor_reaches_the_node") {
        return;
    }
    let wrapper = |rest: &[OsString]| {
        let mut cmd = Command::new(PYTHON);
        clean_env(&mut cmd)
            .arg("-c")
            .arg(
                "import os, signal, sys\n\
                 signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n\
                 signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])\n\
                 os.execvp(sys.argv[1], sys.argv[1:])",
            )
            .args(rest)
            .stdin(Stdio::null());
        cmd
    };
    // grep itself, not a shell, which would reset SIGCHLD on its own.
    let status = ["grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"];
    let control = wrapper(&status.map(OsString::from)).output().unwrap();
    let (ign, blk) = sig_masks(&String::from_utf8_lossy(&control.stdout)).unwrap();
    assert!(
        ign & SIGCHLD_BIT != 0,
        "control: SIGCHLD not ignored: {ign:x}"
    );
    assert!(blk != 0, "control: nothing blocked: {blk:x}");
    // The mechanism of the hang: a parent that inherited the ignored
    // SIGCHLD and does not reset it gets no SIGCHLD and no status; the
    // kernel reaps the child itself (waitpid fails with ECHILD).
    let lost = wrapper(
        &[
            PYTHON,
            "-c",
            "import os\n\
             pid = os.fork()\n\
             if pid == 0:\n    os._exit(3)\n\
             try:\n    os.waitpid(pid, 0); print('STATUS')\n\
             except ChildProcessError:\n    print('ECHILD')",
        ]
        .map(OsString::from),
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&lost.stdout).trim(), "ECHILD");

    each_mode(&attacks(), |m| {
        let ws = Workspace::owned_by(m.owner());
        let mut argv: Vec<OsString> = if m.nobody() {
            SETPRIV_NOBODY.iter().map(OsString::from).collect()
        } else {
            vec![]
        };
        argv.push(aiopsctl().into());
        argv.extend(
            [
                "exec",
                "--profile",
                "restrictive",
                "--workspace",
                ws.path().to_str().unwrap(),
                "--timeout",
                "5s",
                "--",
            ]
            .map(OsString::from),
        );
        for node in [&["true"][..], &status[..]] {
            let mut a = argv.clone();
            a.extend(node.iter().map(OsString::from));
            let start = Instant::now();
            let mut child = wrapper(&a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let code = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break s.code();
                }
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("[{m:?}] {node:?} with SIGCHLD ignored did not return in 20 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert_eq!(code, Some(0), "[{m:?}] {node:?}: {out}\n{err}");
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "[{m:?}] took {:?}",
                start.elapsed()
            );
            if node.len() > 1 {
                let (ign, blk) = sig_masks(&out).unwrap_or_else(|| panic!("{out}\n{err}"));
                assert_eq!((ign, blk), (0, 0), "[{m:?}] the node inherited {out}");
            }
        }
    });
}

/// Processes (any uid) whose command line contains `marker`.
fn count_marked(marker: &str) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .count()
}

/// A harness interrupts `aiopsctl exec` with `kill -INT` (to aiopsctl
/// alone, not its group): the node is stopped, aiopsctl exits non-zero, and
/// nothing of the jail is left. A node that ignores SIGINT is killed after
/// the grace (`STOP_GRACE`, 5 s). Control: the nodes were running (and
/// holding on) when the signal came.
#[test]
fn sigint_to_aiopsctl_stops_the_node() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    each_mode(&attacks(), |m| {
        for (ignores, script) in [
            (false, ": > up; echo up; sleep 100; echo survived"),
            (
                true,
                "trap '' INT; : > up; echo up; sleep 100; echo survived",
            ),
        ] {
            let marker = unique("sigint-node");
            let j = m.jail().deadline(Duration::from_secs(60));
            // The node says it runs by a file in the workspace; then the
            // harness interrupts aiopsctl, and only aiopsctl.
            let up = j.ws().join("up");
            let sent = Arc::new(Mutex::new(None));
            let sent_at = sent.clone();
            let o = j
                .on_spawn(move |pid| {
                    std::thread::spawn(move || {
                        let until = Instant::now() + Duration::from_secs(30);
                        while !up.exists() && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        *sent_at.lock().unwrap() = Some(Instant::now());
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
                    });
                })
                .run_sh_args(&format!("{script} # $1"), &[&marker]);
            let took = sent.lock().unwrap().map(|t| t.elapsed());
            o.assert_ran();
            assert!(o.stdout.contains("up"), "{}", o.describe());
            assert!(!o.stdout.contains("survived"), "{}", o.describe());
            assert_ne!(o.code, 0, "{}", o.describe());
            // Ignored: the 5 s grace, then the kill.
            let limit = Duration::from_secs(if ignores { 12 } else { 4 });
            assert!(
                took.is_some_and(|t| t < limit),
                "returned {took:?} after SIGINT\n{}",
                o.describe()
            );
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(
                count_marked(&marker),
                0,
                "a jail process is left\n{}",
                o.describe()
            );
        }
    });
}
