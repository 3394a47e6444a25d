//! aiops policy: pure data and functions. Profiles and node capabilities go
//! in, a `JailPlan` (Linux) or `SbplPlan` (macOS) comes out; no syscalls, no
//! async, no I/O beyond reading the policy files it is pointed at. The plan
//! and the wire types are `aiops-proto`'s.
//!
//! The jailer, the most trusted binary, links only the profile compiler
//! (profile, caps, compile): it depends on this crate with
//! `default-features = false`. The default feature `full` adds the shell
//! linter, flows, the macOS SBPL compiler and (`schema`) the JSON Schemas
//! with schemars; docs/jailer.md explains why.
#![forbid(unsafe_code)]

pub mod caps;
pub mod compile;
pub mod error;
#[cfg(feature = "full")]
pub mod flow;
#[cfg(feature = "full")]
pub mod lint;
pub mod path;
pub mod profile;
#[cfg(feature = "full")]
pub mod sbpl;
#[cfg(feature = "schema")]
pub(crate) mod schema;
pub mod syscalls;
pub mod units;

// What crosses a process boundary lives in aiops-proto (the jailer and
// agentd link only that); policy compiles into those types. The plan's
// parts are re-exported because profiles and capabilities are written in
// them; the wire messages are only `aiops_proto`'s.
pub use aiops_proto::{facts, net, plan, EnvName};

pub use caps::{Effective, NodeCaps};
pub use compile::{compile, CompileContext};
pub use error::PolicyError;
pub use facts::{HostFacts, LayerReq};
#[cfg(feature = "full")]
pub use flow::{Flow, FlowNode, RepoSource};
pub use net::{HostPort, NetMode};
pub use path::{AbsPath, PathSpec, PathVars, RelPath};
pub use plan::JailPlan;
pub use profile::{Profile, ProfileFile, ProfileLoader};

use serde::{Deserialize, Serialize};

/// An env allow-list entry: a name, or a glob with `*` (`LC_*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvPattern(String);

impl EnvPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'*');
        if !ok {
            return Err(format!(
                "{s:?} is not an environment variable name or glob (letters, digits, '_', '*')"
            ));
        }
        if s == "*" {
            return Err("\"*\" would pass the whole host environment; list names".into());
        }
        Ok(EnvPattern(s.into()))
    }
    pub fn matches(&self, name: &str) -> bool {
        wildmatch::WildMatch::new(&self.0).matches(name)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for EnvPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        EnvPattern::parse(&s)
    }
}
impl From<EnvPattern> for String {
    fn from(n: EnvPattern) -> String {
        n.0
    }
}
#[cfg(feature = "schema")]
path::string_schema!(
    EnvPattern,
    "EnvPattern",
    "A variable name or a glob such as LC_*"
);

/// Why an allow/deny entry exists; must say something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);
impl Reason {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Reason {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.trim().len() < 3 {
            Err("reason must say why (at least a few words)".into())
        } else {
            Ok(Reason(s))
        }
    }
}
impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.0
    }
}
#[cfg(feature = "schema")]
path::string_schema!(Reason, "Reason", "Why this entry exists");
