//! Runs the real aiops-agentd binary with a memfd spec at fd 3 and a
//! SOCK_SEQPACKET report socket at fd 4, as the jailer does.
#![allow(clippy::unwrap_used)]

use aiops_proto::AbsPath;
use aiops_proto::{exit, AgentSpec, ExitReport, Report, Secret, Step};
use aiops_testkit::{queued_frames, require, scratch_dir_named, seqpacket_pair, userns_with_pidns};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const AGENTD: &str = env!("CARGO_BIN_EXE_aiops-agentd");

fn spec(argv: &[&str]) -> AgentSpec {
    AgentSpec {
        proto_version: aiops_proto::PROTO_VERSION,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: AbsPath::new("/").unwrap(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        secrets: vec![],
        timeout_ms: 20_000,
        output_bytes: 1 << 40,
        stream_reports: false,
        layers: vec!["test-layer".into()],
        tty: false,
    }
}

fn sh(script: &str) -> AgentSpec {
    spec(&["sh", "-c", script])
}

fn memfd(bytes: &[u8]) -> OwnedFd {
    // SAFETY: a 'static C string; memfd_create returns a new fd we own.
    let fd = unsafe {
        libc::memfd_create(
            c"agent-spec".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0);
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).unwrap();
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own, no pointers.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    assert_eq!(rc, 0);
    f.into()
}

struct Outcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    reports: Vec<Report>,
    elapsed: Duration,
}

impl Outcome {
    fn exited(&self) -> &ExitReport {
        match self.reports.last() {
            Some(Report::Exited(e)) => e,
            other => panic!(
                "last report is not Exited: {other:?} (all: {:?})",
                self.reports
            ),
        }
    }
    fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("agentd died of a signal: {:?}", self.status))
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Put `spec` at fd 3 and the report socket at fd 4 of `cmd` (dup'd via
/// high numbers first, so a source already at 3 or 4 cannot be clobbered).
fn wire(cmd: &mut Command, spec_fd: RawFd, sock_fd: RawFd) {
    // SAFETY: only async-signal-safe dup/dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let a = libc::fcntl(spec_fd, libc::F_DUPFD, 10);
            let b = libc::fcntl(sock_fd, libc::F_DUPFD, 10);
            if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(a);
            libc::close(b);
            Ok(())
        });
    }
}

fn read_reports(sock: &OwnedFd) -> Vec<Report> {
    queued_frames(sock)
        .iter()
        .map(|f| Report::decode(f).unwrap())
        .collect()
}

fn run_raw(
    spec_bytes: &[u8],
    stdin: &[u8],
    prefix: &[&str],
    tweak: impl FnOnce(&mut Command),
) -> Outcome {
    let spec_fd = memfd(spec_bytes);
    let (ours, theirs) = seqpacket_pair();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(AGENTD);
            c
        }
        None => Command::new(AGENTD),
    };
    cmd.env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wire(&mut cmd, spec_fd.as_raw_fd(), theirs.as_raw_fd());
    tweak(&mut cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    drop((spec_fd, theirs));
    // Read both pipes in threads so a full pipe cannot stall agentd.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    // None when `tweak` gave agentd another stdin.
    let input = child.stdin.take();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(mut input) = input {
            let _ = input.write_all(&stdin);
        }
    });
    let status = wait_or_kill(&mut child, WATCHDOG);
    let elapsed = start.elapsed();
    let stdout = stdout.map(|h| h.join().unwrap()).unwrap_or_default();
    let stderr = stderr.map(|h| h.join().unwrap()).unwrap_or_default();
    feeder.join().unwrap();
    Outcome {
        status,
        stdout,
        stderr,
        reports: read_reports(&ours),
        elapsed,
    }
}

fn drain<R: std::io::Read + Send + 'static>(
    r: Option<R>,
) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    })
}

/// No test run may take longer; a hang is a failure, not a stuck CI job.
const WATCHDOG: Duration = Duration::from_secs(30);

fn wait_or_kill(child: &mut std::process::Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agentd still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run(spec: &AgentSpec) -> Outcome {
    run_raw(&serde_json::to_vec(spec).unwrap(), b"", &[], |_| {})
}

fn alive(pid: i32) -> bool {
    // A zombie would still count as alive here; the test process is not the
    // parent of these pids, so one existing means nobody reaped or killed it.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn passes_exit_code_and_counts_each_stream() {
    let o = run(&sh("printf hello; printf err >&2; exit 3"));
    assert_eq!(o.code(), 3);
    assert_eq!(o.stdout, b"hello");
    assert_eq!(o.stderr, b"err");
    assert!(matches!(o.reports[0], Report::Started { pid } if pid > 1));
    assert_eq!(o.reports.len(), 2, "{:?}", o.reports);
    let e = o.exited();
    assert_eq!((e.code, e.signal), (Some(3), None));
    assert_eq!((e.stdout_bytes, e.stderr_bytes), (5, 3));
    assert!(!e.timed_out && !e.output_capped);
    assert_eq!(e.layers, vec!["test-layer".to_string()]);
    assert!(e.peak_rss_kib > 0);
}

#[test]
fn node_reads_agentds_stdin() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let o = run_raw(
        &serde_json::to_vec(&spec(&["cat"])).unwrap(),
        &data,
        &[],
        |_| {},
    );
    assert_eq!(o.code(), 0);
    assert_eq!(o.stdout, data);
    assert_eq!(o.exited().stdout_bytes, data.len() as u64);
}

#[test]
fn argv_reaches_the_node_unchanged() {
    let args = ["a b", "it's", "\"q\"", "", "$HOME `x`", "tab\there"];
    let mut argv = vec![
        "sh",
        "-c",
        r#"for a in "$@"; do printf '[%s]' "$a"; done"#,
        "sh",
    ];
    argv.extend(args);
    let o = run(&spec(&argv));
    let want: String = args.iter().map(|a| format!("[{a}]")).collect();
    assert_eq!(o.stdout(), want);
}

#[test]
fn node_gets_exactly_spec_env_and_secrets() {
    let mut s = sh("env | sort");
    s.secrets = vec![("TOKEN".into(), Secret("s3cr3t-value".into()))];
    let o = run(&s);
    assert_eq!(o.code(), 0);
    // The secret is in the env but redacted from what the node prints.
    let out = o.stdout();
    assert!(out.contains("PATH=/usr/bin:/bin\n"), "{out}");
    assert!(out.contains("TOKEN=[REDACTED]\n"), "{out}");
    assert!(!out.contains("s3cr3t"), "{out}");
}

#[test]
fn signal_death_is_128_plus_signal() {
    let o = run(&sh("kill -TERM $$"));
    assert_eq!(o.code(), 128 + libc::SIGTERM);
    let e = o.exited();
    assert_eq!((e.code, e.signal), (None, Some(libc::SIGTERM)));
}

#[test]
fn forwards_sigterm_to_the_node() {
    let spec_fd = memfd(&serde_json::to_vec(&sh("exec sleep 100")).unwrap());
    let (ours, theirs) = seqpacket_pair();
    let mut cmd = Command::new(AGENTD);
    cmd.env_clear().stdin(Stdio::null()).stdout(Stdio::null());
    wire(&mut cmd, spec_fd.as_raw_fd(), theirs.as_raw_fd());
    let mut child = cmd.spawn().unwrap();
    drop((spec_fd, theirs));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_or_kill(&mut child, WATCHDOG);
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let reports = read_reports(&ours);
    assert!(matches!(reports.last(), Some(Report::Exited(e)) if e.signal == Some(libc::SIGTERM)));
}

#[test]
fn timeout_kills_node_and_a_grandchild_that_ignores_sigterm() {
    let tmp = scratch_dir_named("agentd-", None);
    let dir = tmp.path().display();
    let pidfile = format!("{dir}/grandchild.pid");
    let mut s = sh(&format!(
        "sh -c 'trap \"\" TERM; echo $$ > {pidfile}; exec sleep 100' & exec sleep 100"
    ));
    s.timeout_ms = 500;
    let o = run(&s);
    assert!(o.elapsed < Duration::from_secs(5), "took {:?}", o.elapsed);
    assert_eq!(o.code(), exit::TIMEOUT);
    let e = o.exited();
    assert!(e.timed_out);
    assert_eq!(e.signal, Some(libc::SIGKILL));
    let gc: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(gc), "grandchild {gc} outlived the jail");
}

#[test]
fn leftovers_die_when_the_node_exits() {
    let tmp = scratch_dir_named("agentd-", None);
    let dir = tmp.path().display();
    let pidfile = format!("{dir}/daemon.pid");
    // setsid: the daemon leaves the node's process group; it is still killed.
    let o = run(&sh(&format!(
        "setsid sh -c 'trap \"\" TERM HUP; echo $$ > {pidfile}; exec sleep 100' </dev/null >/dev/null 2>&1 & \
         while [ ! -s {pidfile} ]; do sleep 0.01; done; echo done"
    )));
    assert_eq!(o.code(), 0);
    assert!(o.elapsed < Duration::from_secs(5), "took {:?}", o.elapsed);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "daemon {pid} outlived the node");
}

#[test]
fn output_cap_stops_yes_and_forwards_exactly_the_cap() {
    let mut s = spec(&["yes"]);
    s.output_bytes = 100_000;
    let o = run(&s);
    assert_eq!(o.code(), exit::OUTPUT_CAP);
    assert_eq!(o.stdout.len(), 100_000);
    let e = o.exited();
    assert!(e.output_capped && !e.timed_out);
    assert_eq!(e.stdout_bytes + e.stderr_bytes, 100_000);
}

#[test]
fn output_of_exactly_the_cap_is_not_capped() {
    let mut s = sh("printf hello; sleep 0.1; printf '' >&2");
    s.output_bytes = 5;
    let o = run(&s);
    assert_eq!((o.code(), o.stdout()), (0, "hello".into()));
    assert!(!o.exited().output_capped);
    s.output_bytes = 4;
    let o = run(&s);
    assert_eq!((o.code(), o.stdout()), (exit::OUTPUT_CAP, "hell".into()));
    assert!(o.exited().output_capped);
    assert_eq!(o.exited().stdout_bytes, 4);
    // With redaction, the held-back tail is flushed at the cap too.
    let mut s = sh("printf 'abcdef'; sleep 0.1; printf x");
    s.secrets = vec![("PW".into(), Secret("zzzzzz".into()))];
    s.output_bytes = 6;
    let o = run(&s);
    assert_eq!((o.code(), o.stdout()), (exit::OUTPUT_CAP, "abcdef".into()));
}

#[test]
fn output_cap_counts_both_streams() {
    let mut s = sh("while :; do echo out; echo err >&2; done");
    s.output_bytes = 10_000;
    let o = run(&s);
    assert_eq!(o.code(), exit::OUTPUT_CAP);
    assert_eq!(o.stdout.len() + o.stderr.len(), 10_000);
}

#[test]
fn redacts_a_secret_split_across_writes_on_both_streams() {
    let mut s = sh("printf 'a hun'; sleep 0.2; printf 'ter2 b\\n'; printf 'x%sy' \"$PW\" >&2; printf 'hunter' >&2");
    s.secrets = vec![
        ("PW".into(), Secret("hunter2".into())),
        ("EMPTY".into(), Secret(String::new())),
    ];
    let o = run(&s);
    assert_eq!(o.code(), 0);
    assert_eq!(o.stdout(), "a [REDACTED] b\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "x[REDACTED]yhunter");
    let e = o.exited();
    // Counts are of what the node wrote, before redaction.
    assert_eq!((e.stdout_bytes, e.stderr_bytes), (12, 15));
}

#[test]
fn not_found_is_127_and_setup_failed() {
    let o = run(&spec(&["no-such-command-aiops"]));
    assert_eq!(o.code(), exit::NOT_FOUND);
    assert!(
        matches!(
            o.reports.as_slice(),
            [Report::SetupFailed { step: Step::SpawnNode, errno, .. }] if *errno == libc::ENOENT
        ),
        "{:?}",
        o.reports
    );
}

#[test]
fn not_executable_is_126() {
    let tmp = scratch_dir_named("agentd-", None);
    let dir = tmp.path().display();
    let path = format!("{dir}/script");
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let o = run(&spec(&[&path]));
    assert_eq!(o.code(), exit::CANNOT_EXEC);
    assert!(
        matches!(
            o.reports.as_slice(),
            [Report::SetupFailed { step: Step::SpawnNode, errno, .. }] if *errno == libc::EACCES
        ),
        "{:?}",
        o.reports
    );
}

#[test]
fn bad_cwd_fails_spawn_step() {
    let mut s = spec(&["true"]);
    s.cwd = AbsPath::new("/nonexistent-aiops-dir").unwrap();
    let o = run(&s);
    assert_eq!(o.code(), Step::SpawnNode.exit_code());
    assert!(matches!(
        o.reports.as_slice(),
        [Report::SetupFailed {
            step: Step::SpawnNode,
            ..
        }]
    ));
}

#[test]
fn garbage_spec_is_setup_failed_not_a_panic() {
    for bytes in [&b"\xff\x00garbage"[..], br#"{"proto_version":1}"#, b""] {
        let o = run_raw(bytes, b"", &[], |_| {});
        assert_eq!(o.code(), Step::AgentSpec.exit_code());
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
        assert!(matches!(
            o.reports.as_slice(),
            [Report::SetupFailed {
                step: Step::AgentSpec,
                ..
            }]
        ));
    }
    let mut v = serde_json::to_value(spec(&["true"])).unwrap();
    v["proto_version"] = 99.into();
    let o = run_raw(&serde_json::to_vec(&v).unwrap(), b"", &[], |_| {});
    assert_eq!(o.code(), Step::AgentSpec.exit_code());
    v["proto_version"] = 1.into();
    v["extra"] = 1.into();
    let o = run_raw(&serde_json::to_vec(&v).unwrap(), b"", &[], |_| {});
    assert_eq!(o.code(), Step::AgentSpec.exit_code());
}

#[test]
fn missing_spec_fd_is_setup_failed() {
    let (ours, theirs) = seqpacket_pair();
    let sock = theirs.as_raw_fd();
    let mut cmd = Command::new(AGENTD);
    cmd.env_clear().stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: async-signal-safe dup2/close between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let b = libc::fcntl(sock, libc::F_DUPFD, 10);
            libc::dup2(b, 4);
            libc::close(3);
            Ok(())
        });
    }
    let status = cmd.status().unwrap();
    drop(theirs);
    assert_eq!(status.code(), Some(Step::AgentSpec.exit_code()));
    assert!(
        matches!(read_reports(&ours).as_slice(), [Report::SetupFailed { step: Step::AgentSpec, errno, .. }] if *errno == libc::EBADF)
    );
}

#[test]
fn orphans_are_reaped_while_the_node_runs() {
    // Orphans reparent to agentd (a subreaper here); once reaped, agentd's
    // only child is the node itself.
    let o = run(&sh(
        "(true &); (true &); (sleep 0.1 &); sleep 0.5; echo $$; cat /proc/$PPID/task/$PPID/children",
    ));
    assert_eq!(o.code(), 0);
    let out = o.stdout();
    let mut lines = out.lines();
    let me = lines.next().unwrap().trim().to_string();
    assert_eq!(
        lines.next().unwrap().trim(),
        me,
        "agentd has unreaped children: {out}"
    );
}

#[test]
fn report_socket_is_not_inherited_by_the_node() {
    let o = run(&sh("ls /proc/self/fd | sort -n | tr '\\n' ' '"));
    // fd 3 is ls's own directory fd; 4 must not exist.
    assert!(!o.stdout().split(' ').any(|f| f == "4"), "{}", o.stdout());
}

#[test]
fn progress_reports_while_streaming() {
    let mut s = sh("printf a; sleep 0.4; printf b; sleep 0.4; printf c");
    s.stream_reports = true;
    let o = run(&s);
    let outputs = o
        .reports
        .iter()
        .filter(|r| matches!(r, Report::Output { .. }))
        .count();
    assert!(outputs >= 1, "{:?}", o.reports);
    assert_eq!(o.exited().stdout_bytes, 3);
}

#[test]
fn a_stdout_reader_that_stops_reading_cannot_hold_off_the_timeout() {
    for secret in [None, Some("hunter2")] {
        // Keep the read end open but never read from it.
        let (_r, w) = nix::unistd::pipe().unwrap();
        let mut s = spec(&["head", "-c", "50000000", "/dev/zero"]);
        s.timeout_ms = 700;
        if let Some(v) = secret {
            s.secrets = vec![("PW".into(), Secret(v.into()))];
        }
        let o = run_raw(&serde_json::to_vec(&s).unwrap(), b"", &[], |c| {
            c.stdout(Stdio::from(w));
        });
        assert!(o.elapsed < Duration::from_secs(4), "took {:?}", o.elapsed);
        assert_eq!(o.code(), exit::TIMEOUT, "secret {secret:?}");
        assert!(o.exited().timed_out);
    }
}

/// A reader of fd 1 that went away reaches the node: agentd closes the
/// node's stdout pipe, `yes` dies of SIGPIPE (141) at once, and agentd
/// reports `reader_closed`, not a cap (it used to drain into nothing until
/// the cap or the timeout). By splice and, with a secret, by read/write;
/// stderr is unaffected.
#[test]
fn a_stdout_reader_that_went_away_gives_the_node_sigpipe() {
    for secret in [None, Some("hunter2")] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut s = sh("echo before >&2; yes; echo after >&2");
        s.timeout_ms = 20_000;
        if let Some(v) = secret {
            s.secrets = vec![("PW".into(), Secret(v.into()))];
        }
        let o = run_raw(&serde_json::to_vec(&s).unwrap(), b"", &[], |c| {
            c.stdout(Stdio::from(w));
        });
        assert!(o.elapsed < Duration::from_secs(5), "took {:?}", o.elapsed);
        // sh reports its child's SIGPIPE as 128 + 13, then goes on.
        assert_eq!(o.code(), 0, "secret {secret:?}");
        let e = o.exited();
        assert!(!e.output_capped && !e.timed_out, "{e:?}");
        assert_eq!(e.reader_closed, vec![aiops_proto::Stream::Stdout]);
        assert!(e.stdout_bytes < 8 << 20, "{e:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "before\nafter\n",
            "secret {secret:?}"
        );
        // The node itself, not a shell: killed by SIGPIPE.
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut y = spec(&["yes"]);
        if let Some(v) = secret {
            y.secrets = vec![("PW".into(), Secret(v.into()))];
        }
        let o = run_raw(&serde_json::to_vec(&y).unwrap(), b"", &[], |c| {
            c.stdout(Stdio::from(w));
        });
        assert_eq!(o.code(), 128 + libc::SIGPIPE);
        assert_eq!(o.exited().signal, Some(libc::SIGPIPE));
    }
}

#[test]
fn closed_stdio_is_filled_with_dev_null() {
    let o = run_raw(
        &serde_json::to_vec(&sh("echo hi; echo err >&2")).unwrap(),
        b"",
        &[],
        |c| {
            // SAFETY: close(2) between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    libc::close(1);
                    Ok(())
                });
            }
        },
    );
    assert_eq!(o.code(), 0);
    assert_eq!(o.stderr, b"err\n");
    assert_eq!((o.exited().stdout_bytes, o.exited().stderr_bytes), (3, 4));
}

#[test]
fn append_only_stdout_falls_back_from_splice() {
    let tmp = scratch_dir_named("agentd-", None);
    let dir = tmp.path().display();
    let path = format!("{dir}/out");
    std::fs::write(&path, "start\n").unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let o = run_raw(
        &serde_json::to_vec(&sh("echo one; echo two")).unwrap(),
        b"",
        &[],
        |c| {
            c.stdout(Stdio::from(f));
        },
    );
    assert_eq!(o.code(), 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "start\none\ntwo\n");
}

#[test]
fn as_pid1_in_a_pid_namespace_kills_leftovers_and_exits() {
    let test = "as_pid1_in_a_pid_namespace_kills_leftovers_and_exits";
    if require(test, userns_with_pidns()).is_none() {
        return;
    }
    let marker = format!("{}.{}", 100, std::process::id());
    let o = run_raw(
        &serde_json::to_vec(&sh(&format!(
            "setsid sh -c 'trap \"\" TERM; exec sleep {marker}' </dev/null >/dev/null 2>&1 & \
             sh -c 'trap \"\" TERM; exec sleep {marker}' & echo pid1=$PPID"
        )))
        .unwrap(),
        b"",
        &["unshare", "-Upf", "--map-current-user", "--"],
        |_| {},
    );
    assert_eq!(
        o.code(),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout(), "pid1=1\n");
    assert!(o.elapsed < Duration::from_secs(5), "took {:?}", o.elapsed);
    assert!(
        matches!(o.reports[0], Report::Started { pid: 2 }),
        "{:?}",
        o.reports
    );
    std::thread::sleep(Duration::from_millis(100));
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&marker))
        .collect();
    assert!(left.is_empty(), "{} process(es) outlived PID 1", left.len());
}

/// `tty`: the node's fds 0-2 are a pty (its own session's controlling
/// terminal, so /dev/tty works), agentd's stdin is relayed to it and the
/// end of that stdin is the terminal's EOF, and everything the master reads
/// (the echo included) is stdout, counted exactly.
#[test]
fn a_tty_node_runs_on_a_pty_whose_output_is_counted() {
    if !std::path::Path::new("/dev/ptmx").exists() {
        aiops_testkit::skip(
            "a_tty_node_runs_on_a_pty_whose_output_is_counted",
            "no /dev/ptmx",
        );
        return;
    }
    let mut s = sh(
        "tty; [ -t 1 ] && [ -t 2 ] && echo ALL-TTY; echo via-dev-tty > /dev/tty; \
                    read line; echo \"got=$line\"; cat; echo CAT-DONE",
    );
    s.tty = true;
    let o = run_raw(&serde_json::to_vec(&s).unwrap(), b"hello\n", &[], |_| {});
    assert_eq!(o.code(), 0, "{}", o.stdout());
    let out = o.stdout();
    // The input's echo may come first: it is relayed at once.
    assert!(
        out.contains("\n/dev/pts/") || out.starts_with("/dev/pts/"),
        "{out}"
    );
    for want in [
        "ALL-TTY\r\n",
        "via-dev-tty\r\n",
        "got=hello\r\n",
        "CAT-DONE\r\n",
    ] {
        assert!(out.contains(want), "{want:?} missing in {out:?}");
    }
    let e = o.exited();
    assert!(e.pty);
    assert_eq!(e.stdout_bytes, o.stdout.len() as u64);
    assert_eq!(e.stderr_bytes, 0);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Without `tty`, a terminal on agentd's stdin is not handed to the node:
/// it gets an empty pipe instead.
#[test]
fn a_terminal_stdin_is_not_passed_to_the_node() {
    let test = "a_terminal_stdin_is_not_passed_to_the_node";
    let Ok(pair) = nix::pty::openpty(None, None) else {
        aiops_testkit::skip(test, "openpty failed");
        return;
    };
    let slave = pair.slave;
    let o = run_raw(
        &serde_json::to_vec(&sh(
            "[ -t 0 ] && echo TTY; readlink /proc/self/fd/0; cat; echo EOF",
        ))
        .unwrap(),
        b"",
        &[],
        |c| {
            c.stdin(Stdio::from(slave));
        },
    );
    drop(pair.master);
    assert_eq!(o.code(), 0);
    let out = o.stdout();
    assert!(!out.contains("TTY"), "{out}");
    assert!(out.starts_with("pipe:"), "{out}");
    assert!(out.ends_with("EOF\n"), "{out}");
    assert!(!o.exited().pty);
}

/// A stdin that hung up (a `-t` pipe at its end, a closed terminal) must
/// not make agentd's poll loop spin while the node runs. `times` in the
/// wrapping shell gives agentd's CPU time; the node sleeps 1.5 s.
#[test]
fn a_hung_up_stdin_does_not_spin_the_loop() {
    if !std::path::Path::new("/dev/ptmx").exists() {
        aiops_testkit::skip("a_hung_up_stdin_does_not_spin_the_loop", "no /dev/ptmx");
        return;
    }
    for tty in [false, true] {
        let mut s = sh("exec sleep 1.5");
        s.tty = tty;
        let wrap = ["sh", "-c", "\"$0\"; st=$?; times >&2; exit $st"];
        let o = run_raw(&serde_json::to_vec(&s).unwrap(), b"", &wrap, |_| {});
        assert_eq!(o.code(), 0);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        // `times`: the shell's own line, then its children's (agentd's).
        let secs = |t: &str| -> f64 {
            let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        };
        let children = err.lines().last().unwrap_or_default();
        let cpu: f64 = children.split_whitespace().map(secs).sum();
        assert!(
            cpu < 0.5,
            "tty={tty}: agentd used {cpu} s of CPU in 1.5 s: {err}"
        );
    }
}
