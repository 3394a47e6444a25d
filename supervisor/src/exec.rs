//! `aiopsctl exec`: one node in one jail, no daemon, no database. Compiles
//! the plan here (unprivileged, holding no secrets), hands it to
//! `aiops-jailer` over a pipe, and reads agentd's reports from a
//! SOCK_SEQPACKET socket. stdin/stdout/stderr are inherited untouched.
use aiops_policy::proto::{
    exit, ExitReport, JailRequest, NodeSpec, Report, Step, MAX_REPORT_BYTES, PROTO_VERSION,
};
use aiops_policy::{
    AbsPath, CompileContext, HostFacts, JailPlan, NetMode, NodeCaps, PathVars, PolicyError, Profile,
};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{recv, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::Serialize;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// What the caller asked for, after flag parsing.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub profile: Profile,
    pub node_caps: NodeCaps,
    pub workspace: PathBuf,
    pub cwd: Option<PathBuf>,
    pub argv: Vec<String>,
    pub jailer: PathBuf,
    pub agentd: PathBuf,
}

/// Everything known about one exec once it is over, for `--report`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    pub profile: String,
    pub workspace: String,
    pub cwd: String,
    pub net: NetMode,
    /// Set when the jail could not be built; nothing ran.
    pub setup_failed: Option<SetupFailure>,
    pub exit: Option<ExitReport>,
    /// Protected paths (hooks, git config, rc files) the node created.
    pub protected_created: Vec<String>,
    /// Protected paths that existed and were replaced or changed anyway
    /// (should never happen: they are read-only; an alarm if it does).
    pub protected_changed: Vec<String>,
    /// The exit status `aiopsctl exec` returns.
    pub status: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupFailure {
    pub step: Step,
    pub errno: i32,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("workspace {}", .path.display())]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("working directory {}", .path.display())]
    Cwd {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("create the {what} to the jailer")]
    Channel {
        what: &'static str,
        source: nix::Error,
    },
    #[error("start {}", .path.display())]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("send the jail request")]
    SendRequest(#[source] std::io::Error),
    #[error("read reports from the jail")]
    ReadReport(#[source] nix::Error),
    #[error("wait for the jailer")]
    Wait(#[source] std::io::Error),
}

impl ExecError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::Policy(_) | ExecError::Refused(_) => exit::REFUSED,
            ExecError::Workspace { .. } | ExecError::Cwd { .. } => exit::REFUSED,
            _ => exit::INTERNAL,
        }
    }
}

fn abs(p: &Path) -> Result<AbsPath, ExecError> {
    AbsPath::new(p).map_err(|e| ExecError::Refused(e.to_string()))
}

fn env_path(name: &str) -> Option<AbsPath> {
    std::env::var_os(name).and_then(|v| AbsPath::new(PathBuf::from(v)).ok())
}

/// Compile the plan for this request on this host.
pub fn plan_for(req: &ExecRequest, facts: &HostFacts) -> Result<JailPlan, ExecError> {
    let workspace = req
        .workspace
        .canonicalize()
        .map_err(|source| ExecError::Workspace {
            path: req.workspace.clone(),
            source,
        })?;
    let cwd_in = req.cwd.clone().unwrap_or_else(|| workspace.clone());
    let cwd = cwd_in.canonicalize().map_err(|source| ExecError::Cwd {
        path: cwd_in.clone(),
        source,
    })?;
    let ctx = CompileContext {
        vars: PathVars {
            workspace: Some(abs(&workspace)?),
            home: env_path("HOME"),
            tmpdir: env_path("TMPDIR").or_else(|| AbsPath::new("/tmp").ok()),
        },
        cwd: abs(&cwd)?,
        host_env: std::env::vars().collect(),
        agentd: abs(&req.agentd)?,
    };
    let plan = aiops_policy::compile(&req.profile, &req.node_caps, facts, &ctx)?;
    if plan.net.mode == NetMode::Allowlist {
        // Fail closed: without the egress proxy the allow-list cannot be honoured.
        return Err(ExecError::Refused(format!(
            "profile {:?} asks for net = \"allowlist\", and the egress proxy is not implemented yet; \
             use a node-caps file with net = \"none\" or \"loopback\"",
            plan.profile
        )));
    }
    Ok(plan)
}

/// Inherit `fd` across exec (std creates every fd close-on-exec).
fn inheritable(fd: &OwnedFd, what: &'static str) -> Result<(), ExecError> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
        .map(|_| ())
        .map_err(|source| ExecError::Channel { what, source })
}

/// Run the plan through the jailer. Returns the report; never panics on a
/// misbehaving jail.
pub fn run(req: &ExecRequest, plan: JailPlan) -> Result<ExecReport, ExecError> {
    let before: Vec<Option<Stamp>> = plan.protected.iter().map(|p| stamp(p.as_path())).collect();
    let (req_r, req_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|source| ExecError::Channel {
            what: "request pipe",
            source,
        })?;
    let (rep_parent, rep_child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| ExecError::Channel {
        what: "report socket",
        source,
    })?;
    inheritable(&req_r, "request pipe")?;
    inheritable(&rep_child, "report socket")?;

    let mut child = Command::new(&req.jailer)
        .arg("--request-fd")
        .arg(req_r.as_raw_fd().to_string())
        .arg("--report-fd")
        .arg(rep_child.as_raw_fd().to_string())
        .spawn()
        .map_err(|source| ExecError::Spawn {
            path: req.jailer.clone(),
            source,
        })?;
    drop(req_r);
    drop(rep_child);
    let _forward = crate::signals::forward_to(child.id());

    let jail_req = JailRequest {
        proto_version: PROTO_VERSION,
        node: NodeSpec {
            id: "exec".into(),
            argv: req.argv.clone(),
        },
        plan: plan.clone(),
    };
    let body = serde_json::to_vec(&jail_req).map_err(|e| ExecError::SendRequest(e.into()))?;
    let mut w = std::fs::File::from(req_w);
    // EPIPE here means the jailer died early; its report or status says why.
    let _ = w.write_all(&body);
    drop(w);

    let (exit_report, setup_failed, protocol_error) = read_reports(&rep_parent)?;
    let status = child.wait().map_err(ExecError::Wait)?;

    let (mut protected_created, mut protected_changed) = (vec![], vec![]);
    for (p, was) in plan.protected.iter().zip(before) {
        match (was, stamp(p.as_path())) {
            (None, Some(_)) => protected_created.push(p.to_string()),
            (Some(a), now) if now.as_ref() != Some(&a) => protected_changed.push(p.to_string()),
            _ => {}
        }
    }
    let code = status_code(&status, exit_report.as_ref(), setup_failed.as_ref());
    if let Some(reason) = protocol_error {
        eprintln!("aiopsctl: {reason}");
    }
    Ok(ExecReport {
        profile: plan.profile.clone(),
        workspace: req.workspace.display().to_string(),
        cwd: plan.cwd.to_string(),
        net: plan.net.mode,
        setup_failed,
        exit: exit_report,
        protected_created,
        protected_changed,
        status: code,
    })
}

/// Identity and content stamp of a path, to notice creation or replacement.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp(p: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = p.symlink_metadata().ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

type Reports = (Option<ExitReport>, Option<SetupFailure>, Option<String>);

fn read_reports(sock: &OwnedFd) -> Result<Reports, ExecError> {
    let mut buf = vec![0u8; MAX_REPORT_BYTES + 1];
    let (mut exited, mut failed, mut proto_err) = (None, None, None);
    loop {
        let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ExecError::ReadReport(e)),
        };
        let frame = &buf[..n.min(buf.len())];
        match Report::decode(if n > buf.len() { &buf } else { frame }) {
            Ok(Report::Exited(r)) => exited = Some(r),
            Ok(Report::SetupFailed {
                step,
                errno,
                message,
            }) => {
                failed = Some(SetupFailure {
                    step,
                    errno,
                    message,
                })
            }
            Ok(Report::Started { .. } | Report::Output { .. }) => {}
            Err(e) => {
                // A jail that speaks garbage is not trusted further.
                proto_err = Some(e.to_string());
                break;
            }
        }
    }
    Ok((exited, failed, proto_err))
}

/// The documented exit status of `aiopsctl exec`.
fn status_code(
    status: &ExitStatus,
    exited: Option<&ExitReport>,
    failed: Option<&SetupFailure>,
) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(f) = failed {
        return match (f.step, status.code()) {
            (Step::SpawnNode, Some(c)) if c == exit::NOT_FOUND || c == exit::CANNOT_EXEC => c,
            _ => exit::SETUP_FAILED,
        };
    }
    match exited {
        Some(r) if r.timed_out => exit::TIMEOUT,
        Some(r) if r.output_capped => exit::OUTPUT_CAP,
        Some(r) => match (r.code, r.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => exit::INTERNAL,
        },
        // No report at all: the jail died without saying why.
        None => match status.signal() {
            Some(s) => 128 + s,
            None => exit::INTERNAL,
        },
    }
}

impl ExecReport {
    /// One short block for `--report text`, written to stderr.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "aiops: profile {} · net {} · cwd {}\n",
            self.profile, self.net, self.cwd
        );
        if let Some(f) = &self.setup_failed {
            s += &format!(
                "aiops: jail set-up failed at {}: {} (errno {})\n",
                f.step, f.message, f.errno
            );
        }
        if let Some(e) = &self.exit {
            let how = match (e.code, e.signal) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "unknown".into(),
            };
            s += &format!(
                "aiops: {how} · {} ms · stdout {} B · stderr {} B · peak rss {} KiB{}{}\n",
                e.duration_ms,
                e.stdout_bytes,
                e.stderr_bytes,
                e.peak_rss_kib,
                if e.timed_out { " · TIMED OUT" } else { "" },
                if e.output_capped {
                    " · OUTPUT CAPPED"
                } else {
                    ""
                },
            );
            s += &format!("aiops: layers: {}\n", e.layers.join(", "));
        }
        if !self.protected_changed.is_empty() {
            s += &format!(
                "aiops: ALARM: protected paths changed despite being read-only: {}\n",
                self.protected_changed.join(", ")
            );
        }
        if !self.protected_created.is_empty() {
            s += &format!(
                "aiops: WARNING: the node created protected paths the host may execute: {}\n",
                self.protected_created.join(", ")
            );
        }
        s
    }

    /// The one line explaining a failure, printed even with `--report none`.
    pub fn failure_line(&self) -> Option<String> {
        if let Some(f) = &self.setup_failed {
            return Some(match f.step {
                Step::SpawnNode => format!("aiopsctl: {}", f.message),
                _ => format!(
                    "aiopsctl: jail set-up failed at step {}: {}",
                    f.step, f.message
                ),
            });
        }
        let e = self.exit.as_ref()?;
        if e.timed_out {
            Some(format!(
                "aiopsctl: timed out after {} ms; the jail was killed",
                e.duration_ms
            ))
        } else if e.output_capped {
            Some(format!(
                "aiopsctl: output cap reached ({} bytes); the jail was killed",
                e.stdout_bytes + e.stderr_bytes
            ))
        } else {
            None
        }
    }
}
