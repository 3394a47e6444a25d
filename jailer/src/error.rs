//! One error enum for the jailer; every variant names the step that failed
//! and maps to the `Step` sent in `Report::SetupFailed`.
use aiops_proto::ProtoError;
use aiops_proto::Step;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("read request from fd {fd}")]
    ReadRequest { fd: i32, source: io::Error },
    #[error("decode request")]
    DecodeRequest { source: ProtoError },
    #[error("validate request")]
    Validate { source: ProtoError },
    #[error("refuse request: {reason}")]
    Refused { reason: String },
    #[error("refuse request: outside the ceiling: {field}: {reason}")]
    Ceiling { field: String, reason: String },
    #[error("jailer config {}: {reason}", .path.display())]
    Config { path: PathBuf, reason: String },
    #[error("socket activation: {what}")]
    Activation {
        what: &'static str,
        source: io::Error,
    },
    #[error("refuse connection from uid {uid}: only {allowed} may ask for a jail")]
    Peer { uid: u32, allowed: String },
    #[error("report fd {fd} is not a SOCK_SEQPACKET socket")]
    ReportFd { fd: i32, source: io::Error },
    #[error("egress fd {fd} is not a SOCK_SEQPACKET socket")]
    EgressFd { fd: i32, source: io::Error },
    #[error("close inherited fds")]
    CloseFds { source: io::Error },
    #[error("secret {name}: {reason}")]
    Secrets { name: String, reason: String },
    #[error("secrets dir {}", .path.display())]
    SecretsIo { path: PathBuf, source: io::Error },
    #[error("drop root: {what}")]
    DropRoot {
        what: &'static str,
        source: io::Error,
    },
    /// `why` says what is in the way: a file where a directory should be,
    /// or the first directory on the way the uid may not search, with its mode.
    #[error(
        "{what} {} is not reachable by the jail user (uid {uid}): {why}; a jail never runs as host root, so use paths that user can reach",
        .path.display()
    )]
    Unreachable {
        what: &'static str,
        uid: u32,
        path: PathBuf,
        why: String,
        source: io::Error,
    },
    #[error(
        "uid {uid} cannot reach the bind source {}: it is not optional (writable, or the jail's own), so the jail is refused; make it reachable by that user or drop it from the profile",
        .path.display()
    )]
    BindUnreachable {
        uid: u32,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unshare {flags}")]
    Unshare { flags: String, source: io::Error },
    #[error("write {}", .path)]
    IdMaps {
        path: &'static str,
        source: io::Error,
    },
    #[error("fork into the pid namespace: {what}")]
    Fork {
        what: &'static str,
        source: io::Error,
    },
    /// `path` as the host or the jail knows it (`mounts::shown`), never the
    /// jailer's staging spelling (`/oldroot/...`, `/newroot/...`).
    #[error("{what} {}", crate::mounts::shown(.path))]
    Mount {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("search the writable roots")]
    Guard { source: aiops_guard::GuardError },
    #[error("pivot_root: {what}")]
    PivotRoot {
        what: &'static str,
        source: io::Error,
    },
    #[error("sethostname")]
    Hostname { source: io::Error },
    #[error("bring lo up")]
    Loopback { source: io::Error },
    #[error("egress listener: {what}")]
    EgressListener {
        what: &'static str,
        source: io::Error,
    },
    #[error("setrlimit {resource}")]
    Rlimit { resource: String, source: io::Error },
    #[error("cgroup: {reason}")]
    Cgroup { reason: String },
    #[error("setsid")]
    Setsid { source: io::Error },
    #[error("drop capabilities ({set})")]
    DropCaps {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("set no_new_privs")]
    NoNewPrivs { source: io::Error },
    #[error("landlock: {what}")]
    Landlock { what: String, errno: i32 },
    #[error("seccomp: {what}")]
    Seccomp { what: String, errno: i32 },
    #[error("agent spec memfd: {what}")]
    AgentSpec {
        what: &'static str,
        source: io::Error,
    },
    #[error("execve {}", .path.display())]
    ExecAgentd { path: PathBuf, source: io::Error },
}

impl JailError {
    pub fn step(&self) -> Step {
        use JailError::*;
        match self {
            ReadRequest { .. }
            | DecodeRequest { .. }
            | ReportFd { .. }
            | EgressFd { .. }
            | Activation { .. }
            | Peer { .. } => Step::ReadRequest,
            Validate { .. } | Refused { .. } | Ceiling { .. } | Config { .. } => Step::Validate,
            CloseFds { .. } => Step::CloseFds,
            Secrets { .. } | SecretsIo { .. } => Step::Secrets,
            DropRoot { .. } | Unreachable { .. } => Step::DropRoot,
            Unshare { .. } => Step::Unshare,
            IdMaps { .. } => Step::IdMaps,
            Fork { .. } => Step::Fork,
            Mount { .. } | BindUnreachable { .. } | Guard { .. } => Step::Mounts,
            PivotRoot { .. } => Step::PivotRoot,
            Hostname { .. } => Step::Hostname,
            Loopback { .. } | EgressListener { .. } => Step::Loopback,
            Rlimit { .. } => Step::Rlimits,
            Cgroup { .. } => Step::Cgroup,
            Setsid { .. } => Step::Setsid,
            DropCaps { .. } => Step::DropCaps,
            NoNewPrivs { .. } => Step::NoNewPrivs,
            Landlock { .. } => Step::Landlock,
            Seccomp { .. } => Step::Seccomp,
            AgentSpec { .. } | ExecAgentd { .. } => Step::ExecAgentd,
        }
    }

    /// The errno behind the failure, 0 when it was a refusal, not a syscall.
    pub fn errno(&self) -> i32 {
        use JailError::*;
        match self {
            ReadRequest { source, .. }
            | Activation { source, .. }
            | ReportFd { source, .. }
            | EgressFd { source, .. }
            | CloseFds { source }
            | SecretsIo { source, .. }
            | DropRoot { source, .. }
            | Unreachable { source, .. }
            | Unshare { source, .. }
            | IdMaps { source, .. }
            | Fork { source, .. }
            | Mount { source, .. }
            | BindUnreachable { source, .. }
            | PivotRoot { source, .. }
            | Hostname { source }
            | Loopback { source }
            | EgressListener { source, .. }
            | Rlimit { source, .. }
            | Setsid { source }
            | NoNewPrivs { source }
            | AgentSpec { source, .. }
            | ExecAgentd { source, .. } => source.raw_os_error().unwrap_or(0),
            Landlock { errno, .. } | Seccomp { errno, .. } => *errno,
            Guard { source } => match source {
                aiops_guard::GuardError::Io { source, .. } => source.raw_os_error().unwrap_or(0),
                _ => 0,
            },
            Peer { .. } => libc::EACCES,
            DecodeRequest { .. }
            | Validate { .. }
            | Refused { .. }
            | Ceiling { .. }
            | Config { .. }
            | Secrets { .. }
            | Cgroup { .. }
            | DropCaps { .. } => 0,
        }
    }

    /// The message and its sources, joined as `a: b: c`.
    pub fn chain(&self) -> String {
        aiops_proto::error_chain(self)
    }
}
