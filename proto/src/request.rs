//! supervisor/aiopsctl → jailer: the `JailRequest` (what to run and the
//! plan to run it in), read from `--request-fd` or, socket-activated, from
//! the connection after a 4-byte length (`frame`).
use crate::error::{protocol, ProtoError};
use crate::plan::JailPlan;
use crate::PROTO_VERSION;
use serde::{Deserialize, Serialize};

/// A longer request is refused before parsing.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

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
    /// Run the node on its own pseudo-terminal, allocated by agentd inside
    /// the jail and relayed to agentd's stdio (docs/security-model.md,
    /// "The caller's terminal"). Absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

impl JailRequest {
    pub fn validate(&self) -> Result<(), ProtoError> {
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

    pub fn decode(bytes: &[u8]) -> Result<JailRequest, ProtoError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(protocol(format!(
                "request of {} bytes exceeds {MAX_REQUEST_BYTES}",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| protocol(format!("request: {e}")))
    }
}

/// The socket-activated jailer's framing (docs/jailer.md, "Socket-activated
/// mode"), for both ends: a 4-byte little-endian length, then the request;
/// the first `sendmsg` carries `PASSED_FDS` fds (report socket, stdin,
/// stdout, stderr) and optionally the egress socket. At the end the jailer
/// writes the jail's wait status as a 4-byte little-endian `i32`.
pub mod frame {
    use super::MAX_REQUEST_BYTES;
    use crate::error::{protocol, ProtoError};

    /// The fds the first message always carries.
    pub const PASSED_FDS: usize = 4;
    /// And at most one more: the egress socket.
    pub const MAX_PASSED_FDS: usize = PASSED_FDS + 1;

    /// The length header for a request body of `len` bytes.
    pub fn encode_len(len: usize) -> Result<[u8; 4], ProtoError> {
        u32::try_from(len)
            .ok()
            .filter(|_| len <= MAX_REQUEST_BYTES)
            .map(u32::to_le_bytes)
            .ok_or_else(|| {
                protocol(format!(
                    "jail request of {len} bytes exceeds {MAX_REQUEST_BYTES}"
                ))
            })
    }

    /// The body length a header announces, refused above the bound.
    pub fn decode_len(head: [u8; 4]) -> Result<usize, ProtoError> {
        let len = usize::try_from(u32::from_le_bytes(head)).unwrap_or(usize::MAX);
        if len > MAX_REQUEST_BYTES {
            return Err(protocol(format!(
                "request of {len} bytes exceeds {MAX_REQUEST_BYTES}"
            )));
        }
        Ok(len)
    }

    /// The jail's wait status, as waitpid(2) encodes it.
    pub fn encode_status(raw: i32) -> [u8; 4] {
        raw.to_le_bytes()
    }

    pub fn decode_status(b: [u8; 4]) -> i32 {
        i32::from_le_bytes(b)
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        #[test]
        fn lengths_round_trip_up_to_the_bound() {
            for n in [0, 7, MAX_REQUEST_BYTES] {
                assert_eq!(decode_len(encode_len(n).unwrap()).unwrap(), n);
            }
            assert!(encode_len(MAX_REQUEST_BYTES + 1).is_err());
            assert!(decode_len(u32::MAX.to_le_bytes()).is_err());
            assert_eq!(decode_status(encode_status(-3)), -3);
        }
    }
}
