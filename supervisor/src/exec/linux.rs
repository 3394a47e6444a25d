//! Running one compiled plan through `aiops-jailer`: the request goes over a
//! pipe, agentd's reports come back on a SOCK_SEQPACKET socket, and
//! stdin/stdout/stderr are inherited untouched (`aiopsctl exec`) or go to
//! the node's output files (the engine). The running jail is a `jail::Jail`.
use super::jail::{Jail, JailStop, PlanSummary, Via};
use super::{ExecReport, SetupFailure};
use crate::error::SupervisorError;
use crate::signals::Forwarder;
use aiops_policy::JailPlan;
use aiops_proto::{
    exit, ExitReport, JailRequest, NodeSpec, Report, Step, MAX_REPORT_BYTES, PROTO_VERSION,
};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};

/// Inherit `fd` across exec (std and nix create fds close-on-exec).
fn inheritable(fd: &OwnedFd, what: &'static str) -> Result<(), SupervisorError> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
        .map(|_| ())
        .map_err(|source| SupervisorError::Channel { what, source })
}

/// Run `argv` in the jail `plan` describes, using the jailer at `jailer`.
pub fn run(jailer: &Path, argv: &[String], plan: &JailPlan) -> Result<ExecReport, SupervisorError> {
    spawn_jailer(jailer)?.run(argv, plan)
}

/// A jailer started before its plan is known, so that its start-up (exec,
/// dynamic linking, runtime set-up) overlaps loading and compiling the
/// profile. Until `start` writes the request it only blocks reading it, so
/// a `PendingJail` dropped unused is killed and reaped having done nothing.
pub struct PendingJail {
    /// Taken by `start`.
    child: Option<Child>,
    req_w: Option<OwnedFd>,
    rep_parent: Option<OwnedFd>,
    /// `aiopsctl exec` passes its own termination signals on; the daemon
    /// does not (it cancels jails itself).
    forward: Option<Forwarder>,
    stop: JailStop,
    /// Ask for the node's own pty (`with_tty`).
    tty: bool,
}

/// Where a jail's stdio goes: inherited (`aiopsctl exec`) or, for the
/// daemon, stdin from /dev/null and output into the node's files.
pub enum JailStdio {
    Inherit,
    Files {
        stdout: std::fs::File,
        stderr: std::fs::File,
    },
}

/// Start the jailer at `jailer`, inheriting stdio and forwarding signals;
/// see `PendingJail`.
pub fn spawn_jailer(jailer: &Path) -> Result<PendingJail, SupervisorError> {
    spawn_jailer_with(jailer, JailStdio::Inherit)
}

/// Start the jailer with `stdio`; only `Inherit` forwards our signals.
pub fn spawn_jailer_with(jailer: &Path, stdio: JailStdio) -> Result<PendingJail, SupervisorError> {
    spawn_jailer_with_fds(jailer, stdio, JailerFds::default())
}

/// Optional fds handed to the jailer besides the request and report channels.
#[derive(Debug, Default)]
pub struct JailerFds {
    /// The jail's end of the egress socket (`egress::channel`), passed as
    /// `--egress-fd`; the jailer uses it only for a confined allowlist plan.
    pub egress: Option<OwnedFd>,
}

/// `spawn_jailer_with` plus extra fds (`JailerFds`).
pub fn spawn_jailer_with_fds(
    jailer: &Path,
    stdio: JailStdio,
    fds: JailerFds,
) -> Result<PendingJail, SupervisorError> {
    // From clearing close-on-exec to closing our copies, no other jailer
    // may be started: it would inherit these too. A jailer waiting for its
    // request (a spare, see engine::warm) holding another jail's report
    // socket would keep that socket from ever reaching EOF. Taken first, and
    // `fds` moved into a local after it, so that on every early return the
    // fds are closed before it is released (locals drop in reverse order,
    // parameters after all locals).
    let _one_at_a_time = super::lock_spawns();
    let fds = fds;
    let (req_r, req_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| SupervisorError::Channel {
            what: "request pipe",
            source,
        })?;
    let (rep_parent, rep_child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| SupervisorError::Channel {
        what: "report socket",
        source,
    })?;
    inheritable(&req_r, "request pipe")?;
    inheritable(&rep_child, "report socket")?;

    let mut cmd = Command::new(jailer);
    cmd.arg("--request-fd")
        .arg(req_r.as_raw_fd().to_string())
        .arg("--report-fd")
        .arg(rep_child.as_raw_fd().to_string());
    if let Some(e) = &fds.egress {
        inheritable(e, "egress socket")?;
        cmd.arg("--egress-fd").arg(e.as_raw_fd().to_string());
    }
    let forwarding = matches!(stdio, JailStdio::Inherit);
    if let JailStdio::Files { stdout, stderr } = stdio {
        // An engine's jail: its own process group, so a Ctrl-C typed at
        // the terminal of a daemon-less `aiopsctl run` reaches only
        // aiopsctl, which cancels its nodes and stops their jails itself
        // (`cli::runs`) rather than racing the jailers to it.
        cmd.stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
    }
    let child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
        path: jailer.to_path_buf(),
        source,
    })?;
    drop(req_r);
    drop(rep_child);
    // Only the jailer holds the jail's end now: when it is gone, the proxy sees EOF.
    drop(fds);
    let forward = forwarding.then(|| crate::signals::forward_to(child.id()));
    Ok(PendingJail {
        stop: JailStop::pid(child.id()),
        child: Some(child),
        req_w: Some(req_w),
        rep_parent: Some(rep_parent),
        forward,
        tty: false,
    })
}

impl Drop for PendingJail {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.stop.detach();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl PendingJail {
    /// The waiting jailer's pid (`None` once `start` took it): signal it to
    /// stop the jail (it forwards SIGTERM to agentd; SIGKILL takes the whole
    /// jail down through PR_SET_PDEATHSIG). Never 0, which would signal our
    /// own process group.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Still waiting for its request (a spare may have been killed meanwhile).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the jail this becomes, from before its request is sent.
    pub fn stopper(&self) -> JailStop {
        self.stop.clone()
    }

    /// Run the node on a pty of the jail's own, relayed by agentd to the
    /// jailer's stdio (`aiopsctl exec -t`; docs/security-model.md).
    pub fn with_tty(mut self, tty: bool) -> PendingJail {
        self.tty = tty;
        self
    }

    /// Send the request for `argv` in `plan` and follow the jail to its end.
    pub fn run(self, argv: &[String], plan: &JailPlan) -> Result<ExecReport, SupervisorError> {
        self.start("exec", argv, plan)?.wait()
    }

    /// Send the request for node `node_id` running `argv` in `plan`.
    pub fn start(
        mut self,
        node_id: &str,
        argv: &[String],
        plan: &JailPlan,
    ) -> Result<Jail, SupervisorError> {
        let body = request_body(node_id, argv, plan, self.tty)?;
        // Nothing runs in the jail before the request is written.
        let before = super::Watch::before(plan);
        let (Some(child), Some(reports)) = (self.child.take(), self.rep_parent.take()) else {
            return Err(SupervisorError::Wait {
                source: std::io::Error::other("the jailer was already started"),
            });
        };
        if let Some(req_w) = self.req_w.take() {
            let mut w = std::fs::File::from(req_w);
            // EPIPE means the jailer died early; its report or exit status says why.
            let _ = w.write_all(&body);
        }
        let via = Via::Child {
            child,
            forward: self.forward.take(),
        };
        Ok(Jail::new(
            via,
            reports,
            PlanSummary::of(plan),
            before,
            self.stop.clone(),
        ))
    }
}

/// The `JailRequest` for node `node_id` running `argv` in `plan`, as JSON.
pub(super) fn request_body(
    node_id: &str,
    argv: &[String],
    plan: &JailPlan,
    tty: bool,
) -> Result<Vec<u8>, SupervisorError> {
    let request = JailRequest {
        proto_version: PROTO_VERSION,
        node: NodeSpec {
            id: node_id.into(),
            argv: argv.to_vec(),
            tty,
        },
        plan: plan.clone(),
    };
    serde_json::to_vec(&request).map_err(|source| SupervisorError::Json {
        what: "jail request",
        source,
    })
}

pub(super) fn finish(
    plan: &PlanSummary,
    before: Option<super::Watch>,
    status: &ExitStatus,
    reports: Reports,
) -> ExecReport {
    // A node that never started created nothing (and the search that
    // refused it need not be repeated).
    let started = reports.exited.is_some() || reports.failed.is_none();
    let (protected_created, protected_changed) = before
        .filter(|_| started)
        .map(super::Watch::diff)
        .unwrap_or_default();
    let status_code = status_code(status, &reports);
    ExecReport {
        profile: plan.profile.clone(),
        cwd: plan.cwd.clone(),
        net: plan.net,
        output_cap: plan.output_cap,
        denials: crate::denials::Denials::build(
            &plan.profile,
            plan.net,
            &plan.seccomp_rules,
            reports.denials.as_ref(),
            reports.exited.as_ref(),
            plan.output_cap,
            plan.timeout_ms,
        ),
        setup_failed: reports.failed,
        exit: reports.exited,
        protected_created,
        protected_changed,
        protocol_error: reports.protocol_error,
        egress: None,
        status: status_code,
    }
}

#[derive(Debug, Default)]
pub(super) struct Reports {
    exited: Option<ExitReport>,
    failed: Option<SetupFailure>,
    protocol_error: Option<String>,
    /// The jailer's count of seccomp denials (after `exited`).
    denials: Option<aiops_proto::report::SeccompDenials>,
}

/// Read report frames until EOF; `forward` (aiopsctl) passes caught
/// signals on; `on_exited` runs when the `Exited` frame arrives.
pub(super) fn read_reports(
    sock: &OwnedFd,
    forward: Option<&Forwarder>,
    on_exited: &mut dyn FnMut(),
) -> Result<Reports, SupervisorError> {
    // One byte more than the largest legal frame: MSG_TRUNC tells a longer one.
    let mut buf = vec![0u8; MAX_REPORT_BYTES + 1];
    let mut r = Reports::default();
    loop {
        if let Some((forward, sig_fd)) = forward.and_then(|f| f.as_fd().map(|fd| (f, fd))) {
            // Caught signals are forwarded between frames; recv below only
            // runs once the socket is readable (a frame or EOF).
            let mut fds = [
                PollFd::new(sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(sig_fd, PollFlags::POLLIN),
            ];
            // After a forwarded stop, wake when its grace is over.
            let timeout = forward.until_overdue().map_or(PollTimeout::NONE, |d| {
                PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX)
            });
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(source) => return Err(SupervisorError::ReadReport { source }),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|e| !e.is_empty());
            if ready(&fds[1]) {
                forward.forward_pending();
            }
            forward.kill_if_overdue();
            if !ready(&fds[0]) {
                continue;
            }
        }
        let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(source) => return Err(SupervisorError::ReadReport { source }),
        };
        let decoded = if n > MAX_REPORT_BYTES {
            Report::decode(&buf) // oversize: decode refuses it by length
        } else {
            Report::decode(&buf[..n])
        };
        match decoded {
            Ok(Report::Exited(e)) => {
                r.exited = Some(e);
                on_exited();
            }
            Ok(Report::SetupFailed {
                step,
                errno,
                message,
            }) => {
                r.failed = Some(SetupFailure {
                    step,
                    errno,
                    message,
                })
            }
            Ok(Report::SeccompDenials(d)) => r.denials = Some(d),
            Ok(Report::Started { .. } | Report::Output { .. }) => {}
            Err(e) => {
                r.protocol_error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(r)
}

/// The documented exit status of `aiopsctl exec` (docs/operations.md).
fn status_code(status: &ExitStatus, r: &Reports) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if r.protocol_error.is_some() {
        return exit::INTERNAL;
    }
    if let Some(f) = &r.failed {
        return match (f.step, status.code()) {
            (Step::SpawnNode, Some(c)) if c == exit::NOT_FOUND || c == exit::CANNOT_EXEC => c,
            _ => exit::SETUP_FAILED,
        };
    }
    match &r.exited {
        Some(e) if e.timed_out => exit::TIMEOUT,
        Some(e) if e.output_capped => exit::OUTPUT_CAP,
        Some(e) => match (e.code, e.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => exit::INTERNAL,
        },
        // No report at all: the jail died without saying why.
        None => status.signal().map_or(exit::INTERNAL, |s| 128 + s),
    }
}
