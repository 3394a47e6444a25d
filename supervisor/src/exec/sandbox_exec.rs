//! macOS: one node under `sandbox-exec` with the SBPL `policy::sbpl`
//! compiles from the same profile and node caps. Paths reach Seatbelt only
//! as `-D NAME=VALUE` parameters (realpath'd: Seatbelt matches resolved
//! paths, `/tmp` is `/private/tmp`), and each run gets a fresh `TMPDIR`.
//!
//! agentd is Linux-only (memfd, signalfd, splice, PID 1 duties), so here
//! aiopsctl itself counts stdout/stderr, caps output, enforces the timeout
//! and kills the node's process group when it ends. Linux-only layers
//! (namespaces, Landlock, seccomp, rlimits) are absent and reported so; a
//! profile that requires one is refused before this runs. Std-only, so the
//! mechanics are tested on Linux with a stand-in for `sandbox-exec`.
use super::ExecReport;
use crate::error::SupervisorError;
use aiops_policy::sbpl::{SandboxExecPlan, SbplPlan};
use aiops_proto::{exit, ExitReport};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The real one; tests pass a stand-in.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";
/// How often the wait loop looks at the output cap.
const CAP_POLL: Duration = Duration::from_millis(20);

/// One node to run: `plan` is what `aiops_policy::sbpl::compile_sbpl_for`
/// compiled for it.
pub struct Run<'a> {
    pub program: &'a Path,
    pub plan: &'a SandboxExecPlan,
    pub argv: &'a [String],
    pub cwd: &'a Path,
}

fn refused(reason: impl Into<String>) -> SupervisorError {
    SupervisorError::Refused {
        reason: reason.into(),
    }
}

/// `-D NAME=VALUE` values resolved as Seatbelt sees them; a path that does
/// not exist yet is passed as written.
fn realpath_params(params: &[(String, String)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| {
            let r =
                std::fs::canonicalize(v).map_or_else(|_| v.clone(), |p| p.display().to_string());
            (k.clone(), r)
        })
        .collect()
}

/// A private directory for this run, removed afterwards.
struct RunTmp(PathBuf);
impl RunTmp {
    fn create() -> Result<RunTmp, SupervisorError> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("aiops-{}-{nanos}", std::process::id()));
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir)
            .map_err(|source| SupervisorError::Workspace {
                path: dir.clone(),
                source,
            })?;
        Ok(RunTmp(dir))
    }
}
impl Drop for RunTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy `from` to `to`, counting into `count` and `total`; stop forwarding
/// at `cap` bytes in all and raise `capped`.
fn pump(
    mut from: impl Read,
    mut to: impl Write,
    total: &AtomicU64,
    cap: u64,
    capped: &AtomicBool,
) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let before = total.fetch_add(n as u64, Ordering::SeqCst);
        let room = usize::try_from(cap.saturating_sub(before)).unwrap_or(usize::MAX);
        let take = n.min(room);
        count += take as u64;
        // A reader that went away is not the node's failure: keep draining.
        let _ = to.write_all(&buf[..take]);
        if take < n {
            capped.store(true, Ordering::SeqCst);
            break;
        }
    }
    count
}

pub fn run(r: &Run) -> Result<ExecReport, SupervisorError> {
    let first = r.argv.first().ok_or_else(|| refused("empty command"))?;
    if first.starts_with('-') {
        // sandbox-exec takes options until the command; it has no `--`.
        return Err(refused(format!(
            "the command {first:?} starts with '-'; give a path"
        )));
    }
    let tmp = RunTmp::create()?;
    let timeout = Duration::from_millis(r.plan.run.timeout_ms);
    let mut params = realpath_params(&r.plan.sbpl.params);
    for (k, v) in params.iter_mut() {
        if k == "TMPDIR" {
            *v = tmp.0.display().to_string();
        }
    }
    let mut env = r.plan.env.clone();
    env.insert("TMPDIR".into(), tmp.0.display().to_string());
    let plan = SbplPlan {
        text: r.plan.sbpl.text.clone(),
        params,
    };
    let before = super::stamps_of(&r.plan.protected);
    // The node never holds the caller's terminal (it could write past the
    // count and the cap): no pty here, so a terminal stdin becomes empty.
    let stdin = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        Stdio::null()
    } else {
        Stdio::inherit()
    };
    let start = Instant::now();
    let mut child = Command::new(r.program)
        .args(plan.sandbox_exec_args())
        .args(r.argv)
        .env_clear()
        .envs(&env)
        .current_dir(r.cwd)
        .process_group(0)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            path: r.program.to_path_buf(),
            source,
        })?;
    let pgid = nix::unistd::Pid::from_raw(-i32::try_from(child.id()).unwrap_or(i32::MAX));
    let kill_group = || {
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    let total = Arc::new(AtomicU64::new(0));
    let capped = Arc::new(AtomicBool::new(false));
    let spawn_pump = |from: Box<dyn Read + Send>, to: Box<dyn Write + Send>| {
        let (total, capped, cap) = (total.clone(), capped.clone(), r.plan.run.output_bytes);
        std::thread::spawn(move || pump(from, to, &total, cap, &capped))
    };
    let out = child
        .stdout
        .take()
        .map(|o| spawn_pump(Box::new(o), Box::new(std::io::stdout())));
    let err = child
        .stderr
        .take()
        .map(|e| spawn_pump(Box::new(e), Box::new(std::io::stderr())));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        let now = Instant::now();
        if capped.load(Ordering::SeqCst) {
            kill_group();
        } else if now >= deadline && !timed_out {
            timed_out = true;
            kill_group();
        }
        match rx.recv_timeout(
            CAP_POLL.min(
                deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            ),
        ) {
            Ok(s) => break s.map_err(|source| SupervisorError::Wait { source })?,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SupervisorError::Wait {
                    source: std::io::Error::other(format!("waiter for pid {pid} vanished")),
                })
            }
        }
    };
    // Nothing outlives the node (agentd's rule on Linux).
    kill_group();
    let stdout_bytes = out.and_then(|h| h.join().ok()).unwrap_or(0);
    let stderr_bytes = err.and_then(|h| h.join().ok()).unwrap_or(0);
    let (protected_created, protected_changed) = super::protected_diff(&r.plan.protected, before);
    let output_capped = capped.load(Ordering::SeqCst);
    let report = ExitReport {
        code: status.code(),
        signal: status.signal(),
        stdout_bytes,
        stderr_bytes,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        timed_out,
        output_capped,
        peak_rss_kib: 0,
        layers: vec![
            format!(
                "sandbox-exec: SBPL deny-default ({} params)",
                plan.params.len()
            ),
            "env allow-list".into(),
            "private TMPDIR".into(),
            "absent on macOS: namespaces, landlock, seccomp, rlimits".into(),
        ],
        pty: false,
        reader_closed: Vec::new(),
        tmpfs_full: Vec::new(),
    };
    let status = if timed_out {
        exit::TIMEOUT
    } else if output_capped {
        exit::OUTPUT_CAP
    } else {
        match (report.code, report.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => exit::INTERNAL,
        }
    };
    Ok(ExecReport {
        profile: r.plan.profile.clone(),
        cwd: r.cwd.display().to_string(),
        net: r.plan.net,
        output_cap: r.plan.run.output_bytes,
        // Seatbelt's refusals reach the system log, not us.
        denials: crate::denials::Denials::build(
            &r.plan.profile,
            r.plan.net,
            &Default::default(),
            None,
            Some(&report),
            r.plan.run.output_bytes,
            r.plan.run.timeout_ms,
        ),
        setup_failed: None,
        exit: Some(report),
        protected_created,
        protected_changed,
        protocol_error: None,
        egress: None,
        status,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Stands in for sandbox-exec: records its arguments, skips the options
    /// and execs the command, as the real one does after applying the profile.
    fn stand_in(dir: &Path) -> PathBuf {
        let p = dir.join("sandbox-exec");
        std::fs::write(
            &p,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n\
             while [ $# -gt 0 ]; do case \"$1\" in -D|-p) shift 2;; *) break;; esac; done\n\
             exec \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn plan(ws: &Path, env: &[(&str, &str)], timeout: Duration, cap: u64) -> SandboxExecPlan {
        SandboxExecPlan {
            sbpl: SbplPlan {
                text:
                    "(version 1)\n(deny default)\n(allow file-write* (subpath (param \"WRITE_0\")))\n"
                        .into(),
                params: vec![
                    ("WRITE_0".into(), ws.display().to_string()),
                    ("TMPDIR".into(), "/tmp".into()),
                ],
            },
            profile: "test".into(),
            net: aiops_policy::NetMode::None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            protected: vec![],
            run: aiops_policy::plan::RunLimits {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap(),
                output_bytes: cap,
            },
            secrets: vec![],
            require: vec![],
        }
    }

    fn go(dir: &Path, argv: &[&str], timeout: Duration, cap: u64) -> ExecReport {
        let prog = stand_in(dir);
        let plan = plan(dir, &[("PATH", "/usr/bin:/bin")], timeout, cap);
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        run(&Run {
            program: &prog,
            plan: &plan,
            argv: &argv,
            cwd: dir,
        })
        .unwrap()
    }

    #[test]
    fn paths_go_as_parameters_and_the_node_runs_with_a_private_tmpdir() {
        let d = tempfile::tempdir().unwrap();
        let r = go(
            d.path(),
            &[
                "sh",
                "-c",
                "printf abc; printf de >&2; test -d \"$TMPDIR\"; exit 3",
            ],
            Duration::from_secs(20),
            1 << 20,
        );
        let e = r.exit.unwrap();
        assert_eq!((r.status, e.stdout_bytes, e.stderr_bytes), (3, 3, 2));
        let args = std::fs::read_to_string(d.path().join("args")).unwrap();
        let lines: Vec<&str> = args.lines().collect();
        let real = d.path().canonicalize().unwrap();
        assert_eq!(lines[0..2], ["-D", &format!("WRITE_0={}", real.display())]);
        assert!(
            lines[3].starts_with("TMPDIR=") && lines[3] != "TMPDIR=/tmp",
            "{args}"
        );
        // The policy text never carries a path.
        let text_at = lines.iter().position(|l| *l == "-p").unwrap() + 1;
        assert!(!lines[text_at..text_at + 3]
            .join("\n")
            .contains(&real.display().to_string()));
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let d = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let r = go(
            d.path(),
            &["sh", "-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
            1 << 20,
        );
        assert_eq!(r.status, exit::TIMEOUT);
        assert!(r.exit.unwrap().timed_out);
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_cap_stops_forwarding_and_kills() {
        let d = tempfile::tempdir().unwrap();
        let r = go(
            d.path(),
            &["sh", "-c", "yes"],
            Duration::from_secs(20),
            10_000,
        );
        let e = r.exit.unwrap();
        assert_eq!(r.status, exit::OUTPUT_CAP);
        assert_eq!(e.stdout_bytes, 10_000);
    }

    #[test]
    fn a_command_that_looks_like_an_option_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let prog = stand_in(d.path());
        let plan = plan(d.path(), &[], Duration::from_secs(1), 1);
        let argv = vec!["-p".to_string()];
        let r = run(&Run {
            program: &prog,
            plan: &plan,
            argv: &argv,
            cwd: d.path(),
        });
        assert!(matches!(r, Err(SupervisorError::Refused { .. })));
    }
}
