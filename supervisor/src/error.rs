//! The one error enum of the supervisor crate. Each variant names the step
//! that failed; `exit_code` keeps the policy crate's codes so scripts see
//! the same number whichever front end reported the failure.
use aiops_policy::PolicyError;
use aiops_proto::exit;
use std::path::PathBuf;

// The numbers and their meanings are `aiops_proto::exit`'s (one table).
pub use aiops_proto::exit::{
    IOERR as EXIT_IOERR, OSERR as EXIT_OSERR, SOFTWARE as EXIT_SOFTWARE,
    UNAVAILABLE as EXIT_UNAVAILABLE, USAGE as EXIT_USAGE,
};

/// An error and its sources on one line, for logs, audit lines and API
/// answers (proto's, so every binary words it the same).
pub use aiops_proto::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("read the current directory")]
    CurrentDir { source: std::io::Error },
    #[error("{what}: {reason}")]
    Usage { what: String, reason: String },
    /// Invalid input that is not a profile or flow (the configuration).
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The daemon's (or the in-process engine's) answer, with the exit
    /// status of its class (`cli::runs::api_err`).
    #[error("{what}: {reason}")]
    Api {
        what: &'static str,
        reason: String,
        code: i32,
    },
    #[error("encode {what} as JSON")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("write output")]
    Output { source: std::io::Error },
    #[error("workspace {}", .path.display())]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} is {kind}, not a directory", .path.display())]
    NotADirectory {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("read {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `aiopsctl exec` will not run the node (policy, layers, caps).
    #[error("refused: {reason}")]
    Refused { reason: String },
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
    #[error("send the request to the jailer at {}", .path.display())]
    JailerSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read reports from the jail")]
    ReadReport { source: nix::Error },
    #[error("wait for the jailer")]
    Wait { source: std::io::Error },
    #[error("start the egress proxy thread")]
    EgressThread { source: std::io::Error },
    #[cfg(target_os = "linux")]
    #[error("state store: {what}")]
    Store {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("state directory {}", .path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another user's state directory (the daemon's): never used as ours.
    #[error(
        "state directory {} belongs to uid {owner}, not to you (uid {us}): it is another user's, \
         such as the daemon's; talk to that daemon, or use a state directory of your own \
         (state_dir in a configuration of yours, or --local with the system configuration)",
        .path.display()
    )]
    StateDirNotOurs { path: PathBuf, owner: u32, us: u32 },
    #[error("{} has schema version {have}; this aiops knows up to {known} (downgrade refused)", .path.display())]
    SchemaTooNew {
        path: PathBuf,
        have: i64,
        known: i64,
    },
    #[error("run {run} has no node {node:?}")]
    NoSuchNode { run: String, node: String },
    /// State writes or audit lines an exiting aiopsctl could not write.
    #[error("state not saved: {detail}")]
    StateNotSaved { detail: String },
    #[error("audit log {}", .path.display())]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SupervisorError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SupervisorError::Policy(e) => e.exit_code(),
            SupervisorError::CurrentDir { .. } => EXIT_OSERR,
            SupervisorError::Usage { .. } => EXIT_USAGE,
            SupervisorError::Api { code, .. } => *code,
            SupervisorError::Invalid { .. } => exit::DATAERR,
            SupervisorError::Json { .. } => EXIT_SOFTWARE,
            SupervisorError::Output { .. } => EXIT_IOERR,
            SupervisorError::Read { .. }
            | SupervisorError::Workspace { .. }
            | SupervisorError::NotADirectory { .. } => exit::NOINPUT,
            SupervisorError::Refused { .. } => exit::REFUSED,
            SupervisorError::Channel { .. }
            | SupervisorError::Spawn { .. }
            | SupervisorError::JailerSocket { .. }
            | SupervisorError::ReadReport { .. }
            | SupervisorError::Wait { .. }
            | SupervisorError::EgressThread { .. } => exit::INTERNAL,
            #[cfg(target_os = "linux")]
            SupervisorError::Store { .. } => EXIT_IOERR,
            SupervisorError::StateDir { .. } | SupervisorError::Audit { .. } => EXIT_IOERR,
            SupervisorError::SchemaTooNew { .. } => EXIT_SOFTWARE,
            SupervisorError::StateNotSaved { .. } => EXIT_IOERR,
            SupervisorError::StateDirNotOurs { .. } => exit::NOPERM,
            SupervisorError::NoSuchNode { .. } => exit::NOINPUT,
        }
    }

    /// True when stdout's reader went away (`aiopsctl ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, SupervisorError::Output { source } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Map an output write failure.
pub fn out_err(source: std::io::Error) -> SupervisorError {
    SupervisorError::Output { source }
}
