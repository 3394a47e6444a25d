//! agentd/jailer → supervisor: one JSON `Report` per SOCK_SEQPACKET
//! message, at most `MAX_REPORT_BYTES` each.
use crate::error::{protocol, ProtoError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A longer report frame is a protocol error.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

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
    /// Every step, in order.
    pub const ALL: [Step; 22] = [
        Step::ReadRequest,
        Step::Validate,
        Step::CloseFds,
        Step::DropRoot,
        Step::Unshare,
        Step::IdMaps,
        Step::Fork,
        Step::Mounts,
        Step::PivotRoot,
        Step::Hostname,
        Step::Loopback,
        Step::Rlimits,
        Step::Cgroup,
        Step::Secrets,
        Step::Setsid,
        Step::DropCaps,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Seccomp,
        Step::ExecAgentd,
        Step::AgentSpec,
        Step::SpawnNode,
    ];

    /// Distinct process exit codes of the jailer/agentd for set-up failures:
    /// 80 + step index (80-101), clear of sysexits (64-78), the
    /// `aiopsctl exec` codes (121-127) and signal deaths (128+).
    pub fn exit_code(self) -> i32 {
        crate::exit::STEP_BASE + self as i32
    }

    /// The step whose set-up failure exits with `code`.
    pub fn from_exit_code(code: i32) -> Option<Step> {
        let i = usize::try_from(code.checked_sub(crate::exit::STEP_BASE)?).ok()?;
        Step::ALL.get(i).copied()
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
    /// Peak memory of the jail, KiB: in a jail, the largest sum of the
    /// resident sets of all its processes, which agentd samples every 100 ms
    /// (a sample: a shorter spike can be missed), or the largest single
    /// process (getrusage) if that is more; unconfined, only the latter.
    pub peak_rss_kib: u64,
    pub layers: Vec<String>,
    /// The node ran on a pty of the jail's own (agentd relayed it); its
    /// output was counted as `stdout_bytes`.
    #[serde(default)]
    pub pty: bool,
    /// The streams whose reader went away (EPIPE writing agentd's fd 1/2):
    /// agentd closed the node's pipe, so the node's next write to it got
    /// EPIPE or SIGPIPE, as without the jail. Not an output cap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reader_closed: Vec<Stream>,
    /// The jail's tmpfs mounts (`/tmp`, `/dev/shm`) that had no block or
    /// inode left when the node ended: `[limits] tmpfs` / `tmpfs_inodes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_full: Vec<String>,
}

/// Most distinct system calls a `SeccompDenials` names; the rest are counted.
pub const MAX_DENIED_CALLS: usize = 96;
/// Most distinct connection attempts it lists; the rest are counted.
pub const MAX_CONNECTS: usize = 48;

/// A connection attempt the jailer saw (`connect`, or `sendto` with an
/// address): what the node asked for, not whether it worked. The
/// supervisor knows the plan's network and says which were refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// `connect` or `sendto`.
    pub syscall: String,
    /// `inet` or `inet6`.
    pub family: String,
    pub addr: String,
    pub port: u16,
    pub count: u64,
}

/// One system call the seccomp filter denied, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeniedCall {
    /// Its name on this architecture (`x32` for any x32 number).
    pub syscall: String,
    /// The errno the node got.
    pub errno: i32,
    pub count: u64,
}

/// What the jailer's waiting parent counted: every call the seccomp filter
/// denied, answered there with the filter's errno (the filter decides; the
/// parent only counts). Sent once, after the node's `Exited`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompDenials {
    /// Most frequent first, at most `MAX_DENIED_CALLS`.
    pub calls: Vec<DeniedCall>,
    /// Denials of further distinct calls, counted only.
    pub others: u64,
    /// Network connection attempts (inet and inet6), most frequent first.
    #[serde(default)]
    pub connects: Vec<Attempt>,
    /// Attempts to further distinct addresses, counted only.
    #[serde(default)]
    pub connects_others: u64,
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
    SeccompDenials(SeccompDenials),
}

impl Report {
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let v = serde_json::to_vec(self).map_err(|e| protocol(format!("encode: {e}")))?;
        if v.len() > MAX_REPORT_BYTES {
            return Err(protocol(format!(
                "report of {} bytes exceeds {MAX_REPORT_BYTES}",
                v.len()
            )));
        }
        Ok(v)
    }

    pub fn decode(frame: &[u8]) -> Result<Report, ProtoError> {
        if frame.len() > MAX_REPORT_BYTES {
            return Err(protocol(format!(
                "frame of {} bytes exceeds {MAX_REPORT_BYTES}",
                frame.len()
            )));
        }
        serde_json::from_slice(frame).map_err(|e| protocol(format!("bad report frame: {e}")))
    }
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

    /// The largest denial report the jailer can send fits in one frame.
    #[test]
    fn a_full_denial_report_fits_a_frame() {
        let r = Report::SeccompDenials(SeccompDenials {
            calls: (0..MAX_DENIED_CALLS)
                .map(|i| DeniedCall {
                    syscall: format!("a_long_syscall_name_{i:04}"),
                    errno: 38,
                    count: u64::MAX,
                })
                .collect(),
            others: u64::MAX,
            connects: (0..MAX_CONNECTS)
                .map(|_| Attempt {
                    syscall: "sendto".into(),
                    family: "inet6".into(),
                    addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".into(),
                    port: u16::MAX,
                    count: u64::MAX,
                })
                .collect(),
            connects_others: u64::MAX,
        });
        assert_eq!(Report::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn garbage_and_oversize_frames_are_protocol_errors() {
        assert!(matches!(
            Report::decode(b"\xff\x00garbage"),
            Err(ProtoError::Protocol { .. })
        ));
        assert!(matches!(
            Report::decode(br#"{"kind":"started","pid":1,"extra":2}"#),
            Err(ProtoError::Protocol { .. })
        ));
        let big = vec![b' '; MAX_REPORT_BYTES + 1];
        assert!(matches!(
            Report::decode(&big),
            Err(ProtoError::Protocol { .. })
        ));
    }

    #[test]
    fn step_exit_codes_stay_clear_of_the_documented_ones() {
        let last = Step::SpawnNode.exit_code();
        assert_eq!(Step::ReadRequest.exit_code(), 80);
        assert!(last < 121 && last > 78, "{last}");
    }

    #[test]
    fn every_step_maps_back_from_its_exit_code() {
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Step::from_exit_code(s.exit_code()), Some(*s));
        }
        assert_eq!(Step::from_exit_code(79), None);
        assert_eq!(Step::from_exit_code(102), None);
    }
}
