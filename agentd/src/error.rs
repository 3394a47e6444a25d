//! One error per step agentd can fail at. Set-up errors map to a protocol
//! `Step`, an errno and a distinct exit code; the rest are reported as
//! internal errors after the node has started.
use aiops_proto::{exit, Step};
use nix::errno::Errno;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("read agent spec from fd {fd}")]
    ReadSpec { fd: i32, source: Errno },
    #[error("agent spec of {len} bytes exceeds {max}")]
    SpecTooLarge { len: usize, max: usize },
    /// Not JSON of the right shape, another version, or a rule broken
    /// (`AgentSpec::decode`, the one definition of a valid spec).
    #[error("agent spec")]
    Spec { source: aiops_proto::ProtoError },
    #[error("agent spec {field}: {reason}")]
    InvalidSpec { field: &'static str, reason: String },
    #[error("block signals and open signalfd")]
    Signals { source: Errno },
    #[error("become child subreaper")]
    Subreaper { source: Errno },
    #[error("create pipe for node {what}")]
    Pipe { what: &'static str, source: Errno },
    #[error("allocate the node's pty: {what}")]
    Pty { what: &'static str, source: Errno },
    #[error("fork node")]
    Fork { source: Errno },
    #[error("chdir node to {path}")]
    Chdir { path: String, source: Errno },
    #[error("set up node stdio")]
    NodeStdio { source: Errno },
    #[error("node executable {name:?} not found in PATH")]
    NotFound { name: String },
    #[error("exec node {path}")]
    Exec { path: String, source: Errno },
    #[error("read exec status pipe")]
    ExecStatus { source: Errno },
    #[error("poll node pipes")]
    Poll { source: Errno },
    #[error("copy node {stream}")]
    Pump {
        stream: &'static str,
        source: io::Error,
    },
    #[error("wait for children")]
    Wait { source: Errno },
}

impl AgentError {
    /// The protocol step of a set-up failure.
    pub fn step(&self) -> Step {
        match self {
            AgentError::ReadSpec { .. }
            | AgentError::SpecTooLarge { .. }
            | AgentError::Spec { .. }
            | AgentError::InvalidSpec { .. } => Step::AgentSpec,
            _ => Step::SpawnNode,
        }
    }

    pub fn errno(&self) -> i32 {
        match self {
            AgentError::ReadSpec { source, .. }
            | AgentError::Signals { source }
            | AgentError::Subreaper { source }
            | AgentError::Pipe { source, .. }
            | AgentError::Fork { source }
            | AgentError::Pty { source, .. }
            | AgentError::Chdir { source, .. }
            | AgentError::NodeStdio { source }
            | AgentError::Exec { source, .. }
            | AgentError::ExecStatus { source }
            | AgentError::Poll { source }
            | AgentError::Wait { source } => *source as i32,
            AgentError::NotFound { .. } => Errno::ENOENT as i32,
            AgentError::Pump { source, .. } => source.raw_os_error().unwrap_or(0),
            AgentError::SpecTooLarge { .. } => Errno::E2BIG as i32,
            AgentError::Spec { .. } | AgentError::InvalidSpec { .. } => Errno::EINVAL as i32,
        }
    }

    /// Like a shell: 127 when the command is missing, 126 when it exists
    /// but cannot be executed, else the step's own code.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::NotFound { .. } => exit::NOT_FOUND,
            AgentError::Exec { source, .. } if *source == Errno::ENOENT => exit::NOT_FOUND,
            AgentError::Exec { .. } => exit::CANNOT_EXEC,
            AgentError::Poll { .. } | AgentError::Pump { .. } | AgentError::Wait { .. } => {
                exit::INTERNAL
            }
            _ => self.step().exit_code(),
        }
    }

    /// The chain as one line, for the report and the single stderr line.
    pub fn chain(&self) -> String {
        aiops_proto::error_chain(self)
    }
}
