//! jailer → agentd: the `AgentSpec`, through a sealed memfd at
//! `AGENT_SPEC_FD` (never argv, which the node could read).
use crate::error::{protocol, ProtoError};
use crate::path::AbsPath;
use serde::{Deserialize, Serialize};
use std::fmt;

/// In agentd: the sealed memfd holding its `AgentSpec`.
pub const AGENT_SPEC_FD: i32 = 3;
/// In agentd: the SOCK_SEQPACKET report socket to the supervisor.
pub const AGENT_REPORT_FD: i32 = 4;
/// A longer spec is refused before parsing (as long as a request may be).
pub const MAX_SPEC_BYTES: usize = crate::request::MAX_REQUEST_BYTES;

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
    /// `NodeSpec::tty`: the node gets a pty of the jail's own devpts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

fn invalid(field: &str, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

impl AgentSpec {
    /// What agentd checks before it forks anything: the version, positive
    /// limits, a command, and variables it can put in an environment.
    pub fn validate(&self) -> Result<(), ProtoError> {
        if self.proto_version != crate::PROTO_VERSION {
            return Err(protocol(format!(
                "agent spec proto_version {} (this agentd speaks {})",
                self.proto_version,
                crate::PROTO_VERSION
            )));
        }
        if self.timeout_ms == 0 || self.output_bytes == 0 {
            return Err(invalid("timeout_ms/output_bytes", "must be positive"));
        }
        if self.argv.first().is_none_or(|a| a.is_empty()) {
            return Err(invalid("argv", "empty command"));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(invalid("argv", "contains a NUL byte"));
        }
        let vars = self.env.iter().map(|(k, v)| (k, v.as_str()));
        let secrets = self.secrets.iter().map(|(k, v)| (k, v.0.as_str()));
        for (k, v) in vars.chain(secrets) {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(invalid("env", format!("bad variable name {k:?}")));
            }
            if v.contains('\0') {
                return Err(invalid("env", format!("{k} contains a NUL byte")));
            }
        }
        Ok(())
    }

    /// Decode and validate the memfd's bytes.
    pub fn decode(bytes: &[u8]) -> Result<AgentSpec, ProtoError> {
        if bytes.len() > MAX_SPEC_BYTES {
            return Err(protocol(format!(
                "agent spec of {} bytes exceeds {MAX_SPEC_BYTES}",
                bytes.len()
            )));
        }
        let spec: AgentSpec = serde_json::from_slice(bytes)
            .map_err(|e| protocol(format!("parse agent spec: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec() -> AgentSpec {
        AgentSpec {
            proto_version: crate::PROTO_VERSION,
            argv: vec!["true".into()],
            cwd: AbsPath::new("/").unwrap(),
            env: vec![("PATH".into(), "/bin".into())],
            secrets: vec![],
            timeout_ms: 1,
            output_bytes: 1,
            stream_reports: false,
            layers: vec![],
            tty: false,
        }
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }

    #[test]
    fn a_spec_round_trips_and_bad_ones_name_their_field() {
        let ok = spec();
        let bytes = serde_json::to_vec(&ok).unwrap();
        assert_eq!(AgentSpec::decode(&bytes).unwrap(), ok);
        let bad = |f: fn(&mut AgentSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(bad(|s| s.proto_version = 9).contains("proto_version 9"));
        assert!(bad(|s| s.timeout_ms = 0).contains("must be positive"));
        assert!(bad(|s| s.argv.clear()).contains("argv: empty command"));
        assert!(bad(|s| s.env.push(("A=B".into(), "x".into()))).contains("bad variable name"));
        assert!(bad(|s| s.secrets.push(("K".into(), Secret("a\0b".into())))).contains("NUL"));
        let big = vec![b' '; MAX_SPEC_BYTES + 1];
        assert!(AgentSpec::decode(&big)
            .unwrap_err()
            .to_string()
            .contains("exceeds"));
    }
}
