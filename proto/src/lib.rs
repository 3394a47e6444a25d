//! Everything that crosses a process boundary in aiops, defined once with
//! its validation and its bounds:
//! - supervisor/aiopsctl → jailer: `request::JailRequest` carrying a
//!   `plan::JailPlan`, framed by `request::frame` when socket-activated;
//! - jailer → agentd: `agent::AgentSpec`;
//! - agentd/jailer → supervisor: `report::Report`;
//! - `aiops-jailer probe` → `aiopsctl doctor`: `probe::ProbeReport`;
//! - every binary's exit status: `exit`;
//! - who a jail runs as: `ids`.
//!
//! agentd links this crate (and memtrim), not the policy compiler; the
//! jailer adds only policy's profile compiler (no shell lint, flows, SBPL
//! or schemars) to compile each plan again. Pure data and functions: no
//! syscalls, no I/O.
#![forbid(unsafe_code)]

pub mod agent;
pub mod env;
pub mod error;
pub mod exit;
pub mod facts;
pub mod ids;
pub mod locate;
pub mod net;
pub mod path;
pub mod plan;
pub mod probe;
pub mod report;
pub mod request;
pub mod syscalls;

pub use agent::{AgentSpec, Secret, AGENT_REPORT_FD, AGENT_SPEC_FD};
pub use env::EnvName;
pub use error::{error_chain, ProtoError};
pub use facts::{HostFacts, LayerReq};
pub use net::NetMode;
pub use path::AbsPath;
pub use plan::JailPlan;
pub use report::{ExitReport, Report, Step, Stream, MAX_REPORT_BYTES};
pub use request::{JailRequest, NodeSpec, MAX_REQUEST_BYTES};

/// The version of `JailRequest` and `AgentSpec`; a peer speaking another is refused.
pub const PROTO_VERSION: u32 = 1;
