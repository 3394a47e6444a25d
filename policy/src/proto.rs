//! The closed, versioned, bounded protocols across the privilege boundaries:
//! supervisor/aiopsctl → jailer (`JailRequest`), jailer → agentd
//! (`AgentSpec`), and agentd/jailer → supervisor (`Report`, one JSON object
//! per SOCK_SEQPACKET message).
use crate::path::AbsPath;
use crate::plan::JailPlan;
use crate::PolicyError;
use serde::{Deserialize, Serialize};
use std::fmt;

pub const PROTO_VERSION: u32 = 1;
/// A longer report frame is a protocol error.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;
/// A longer request is refused before parsing.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// In agentd: the sealed memfd holding its `AgentSpec`.
pub const AGENT_SPEC_FD: i32 = 3;
/// In agentd: the SOCK_SEQPACKET report socket to the supervisor.
pub const AGENT_REPORT_FD: i32 = 4;

/// Exit codes of `aiopsctl exec` (and of the jailer/agentd for their own
/// failures), documented in docs/operations.md. A node's own exit code
/// passes through; a node killed by signal N gives 128+N.
pub mod exit {
    /// Bad command-line usage (EX_USAGE).
    pub const USAGE: i32 = 64;
    /// Internal or protocol error between aiops processes.
    pub const INTERNAL: i32 = 121;
    /// Refused before anything ran: bad profile, caps outside the profile,
    /// a required layer missing on this host.
    pub const REFUSED: i32 = 122;
    /// The node produced more output than its cap; the jail was killed.
    pub const OUTPUT_CAP: i32 = 123;
    /// The node ran past its timeout; the jail was killed.
    pub const TIMEOUT: i32 = 124;
    /// Building the jail failed at a step (see the report); nothing ran.
    pub const SETUP_FAILED: i32 = 125;
    /// The command was found but could not be executed.
    pub const CANNOT_EXEC: i32 = 126;
    /// The command was not found inside the jail.
    pub const NOT_FOUND: i32 = 127;
}

/// supervisor → jailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailRequest {
    pub proto_version: u32,
    pub node: NodeSpec,
    pub plan: JailPlan,
}

/// What to run; shell nodes arrive as `["/bin/sh", "-c", cmd]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    pub argv: Vec<String>,
}

impl JailRequest {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.proto_version != PROTO_VERSION {
            return Err(protocol(format!(
                "request proto_version {} (this jailer speaks {PROTO_VERSION})",
                self.proto_version
            )));
        }
        if self.node.argv.is_empty() {
            return Err(protocol("node.argv is empty".into()));
        }
        if self.node.argv.iter().any(|a| a.contains('\0')) {
            return Err(protocol("node.argv contains a NUL byte".into()));
        }
        self.plan.validate()
    }

    pub fn decode(bytes: &[u8]) -> Result<JailRequest, PolicyError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(protocol(format!(
                "request of {} bytes exceeds {MAX_REQUEST_BYTES}",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| protocol(format!("request: {e}")))
    }
}

/// A secret value: serialised (it must cross into agentd) but never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// jailer → agentd, through a sealed memfd: never argv, which the node could read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub proto_version: u32,
    pub argv: Vec<String>,
    pub cwd: AbsPath,
    pub env: Vec<(String, String)>,
    /// Injected secrets: set in the node's env and redacted from its output.
    pub secrets: Vec<(String, Secret)>,
    pub timeout_ms: u64,
    pub output_bytes: u64,
    /// Send `Output` progress reports while the node runs.
    pub stream_reports: bool,
    /// The layers the jailer applied, echoed in `Exited`.
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The jailer's numbered steps (docs/jailer.md) plus agentd's, for `SetupFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    ReadRequest,
    Validate,
    CloseFds,
    DropRoot,
    Unshare,
    IdMaps,
    Fork,
    Mounts,
    PivotRoot,
    Hostname,
    Loopback,
    Rlimits,
    Cgroup,
    Secrets,
    Setsid,
    DropCaps,
    NoNewPrivs,
    Landlock,
    Seccomp,
    ExecAgentd,
    AgentSpec,
    SpawnNode,
}

impl Step {
    /// Distinct process exit codes of the jailer/agentd for set-up failures:
    /// 80 + step index (80-101), clear of sysexits (64-78), the
    /// `aiopsctl exec` codes (121-127) and signal deaths (128+).
    pub fn exit_code(self) -> i32 {
        80 + self as i32
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitReport {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub output_capped: bool,
    /// Largest resident set of the node's process tree, KiB (getrusage).
    pub peak_rss_kib: u64,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Report {
    Started {
        pid: u32,
    },
    Output {
        stream: Stream,
        bytes: u64,
    },
    Exited(ExitReport),
    SetupFailed {
        step: Step,
        errno: i32,
        message: String,
    },
}

impl Report {
    pub fn encode(&self) -> Result<Vec<u8>, PolicyError> {
        let v = serde_json::to_vec(self).map_err(|e| protocol(format!("encode: {e}")))?;
        if v.len() > MAX_REPORT_BYTES {
            return Err(protocol(format!(
                "report of {} bytes exceeds {MAX_REPORT_BYTES}",
                v.len()
            )));
        }
        Ok(v)
    }

    pub fn decode(frame: &[u8]) -> Result<Report, PolicyError> {
        if frame.len() > MAX_REPORT_BYTES {
            return Err(protocol(format!(
                "frame of {} bytes exceeds {MAX_REPORT_BYTES}",
                frame.len()
            )));
        }
        serde_json::from_slice(frame).map_err(|e| protocol(format!("bad report frame: {e}")))
    }
}

fn protocol(reason: String) -> PolicyError {
    PolicyError::Protocol { reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reports_round_trip() {
        let r = Report::SetupFailed {
            step: Step::Landlock,
            errno: 38,
            message: "x".into(),
        };
        assert_eq!(Report::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn garbage_and_oversize_frames_are_protocol_errors() {
        assert!(matches!(
            Report::decode(b"\xff\x00garbage"),
            Err(PolicyError::Protocol { .. })
        ));
        assert!(matches!(
            Report::decode(br#"{"kind":"started","pid":1,"extra":2}"#),
            Err(PolicyError::Protocol { .. })
        ));
        let big = vec![b' '; MAX_REPORT_BYTES + 1];
        assert!(matches!(
            Report::decode(&big),
            Err(PolicyError::Protocol { .. })
        ));
    }

    #[test]
    fn step_exit_codes_stay_clear_of_the_documented_ones() {
        let last = Step::SpawnNode.exit_code();
        assert_eq!(Step::ReadRequest.exit_code(), 80);
        assert!(last < 121 && last > 78, "{last}");
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }
}
