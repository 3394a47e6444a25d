//! Flows: a named DAG of nodes, each a shell command or an agent argv run in
//! a jail built from a profile. `FlowFile` is the TOML as written (strict,
//! versioned, with spans for the checks serde cannot do); `Flow` is the
//! validated result the supervisor schedules, stores as JSON and serves.
//! The format is documented in docs/flows.md.
use crate::caps::NodeCaps;
use crate::error::{from_toml, PolicyError};
use crate::lint::{lint_argv, lint_shell, Finding, FindingKind, LintContext};
use crate::units::Dur;
use serde::{Deserialize, Serialize};
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

/// Most nodes a flow may run at once; the daemon's own limit still applies.
pub const MAX_PARALLELISM: u32 = 64;
/// Most times a failed node is re-run.
pub const MAX_RETRIES: u32 = 10;
/// Most nodes in one flow: every node is a row, an audit line and a
/// scheduler entry; past this a flow is several flows.
pub const MAX_NODES: usize = 2000;
/// Longest single argument `execve` takes: the kernel's MAX_ARG_STRLEN
/// (32 pages) less the NUL.
pub const MAX_ARG_BYTES: usize = 32 * 4096 - 1;
/// Most bytes an agent node's argv may take in all, NULs included: half of
/// the 2 MiB ARG_MAX an 8 MiB stack gives, so the environment keeps the rest.
pub const MAX_ARGV_BYTES: usize = 1 << 20;
/// The profile of a node that names none: the shipped default.
pub const DEFAULT_PROFILE: &str = "restrictive";
/// Shell nodes run as `/bin/sh -c RUN`: POSIX sh, present in every profile's read paths.
pub const SHELL: &str = "/bin/sh";

mod check;
mod values;

pub use check::json_schema;
use values::file_url_path;
pub use values::{FlowId, GitRef, Parallelism, RepoSpec, Retries};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Shell,
    Agent,
}

/// When a node pauses for `aiopsctl confirm` before it runs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Confirm {
    /// Pause when the lint reports any finding for the command.
    #[default]
    Auto,
    /// Always pause, even when the lint finds nothing.
    Always,
    /// Never pause, whatever the lint says (the findings are still recorded).
    Never,
}
impl Confirm {
    /// Whether a node with these lint findings pauses at the gate.
    pub fn pauses(self, findings: &[Finding]) -> bool {
        match self {
            Confirm::Auto => !findings.is_empty(),
            Confirm::Always => true,
            Confirm::Never => false,
        }
    }
}

/// What a node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeCommand {
    /// `/bin/sh -c RUN`.
    Shell { run: String },
    /// An agent started with this argv (no shell in between).
    Agent { argv: Vec<String> },
}

/// Where the workspace checkout comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    /// An absolute local path (a `file://` URL decoded).
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub repo: RepoSpec,
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
}

/// A validated flow. Build it with `from_toml_file`/`from_toml_str`; the
/// serde derives are for storing and sending a flow already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub name: FlowId,
    /// The flow file, absolute; relative repo and profile paths resolved against its directory.
    pub source: PathBuf,
    pub parallelism: Option<Parallelism>,
    pub workspace: Workspace,
    /// In file order.
    pub nodes: Vec<FlowNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowNode {
    pub id: FlowId,
    #[serde(flatten)]
    pub command: NodeCommand,
    /// A profile name, or an absolute path to a profile file.
    pub profile: String,
    pub needs: Vec<FlowId>,
    /// Wall-clock limit; also applied as `caps.limits.timeout` (see `caps()`).
    pub timeout: Option<Dur>,
    pub retries: Retries,
    pub confirm: Confirm,
    pub caps: NodeCaps,
}

impl FlowNode {
    pub fn kind(&self) -> NodeKind {
        match self.command {
            NodeCommand::Shell { .. } => NodeKind::Shell,
            NodeCommand::Agent { .. } => NodeKind::Agent,
        }
    }

    /// The argv the jail executes.
    pub fn argv(&self) -> Vec<String> {
        match &self.command {
            NodeCommand::Shell { run } => vec![SHELL.into(), "-c".into(), run.clone()],
            NodeCommand::Agent { argv } => argv.clone(),
        }
    }

    /// The command as a person reads it: the shell text, or the argv quoted for sh.
    pub fn command_text(&self) -> String {
        match &self.command {
            NodeCommand::Shell { run } => run.clone(),
            NodeCommand::Agent { argv } => argv
                .iter()
                .map(|a| sh_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The declared capabilities with `timeout` folded into `limits.timeout`,
    /// so the profile check and the jail see one value.
    pub fn caps(&self) -> NodeCaps {
        let mut caps = self.caps.clone();
        if let Some(t) = self.timeout {
            caps.limits.get_or_insert_with(Default::default).timeout = Some(t);
        }
        caps
    }

    /// The lint findings for this node's command (spans index `command_text`
    /// for shell nodes and the space-joined argv for agent nodes).
    pub fn lint(&self, ctx: &LintContext) -> Vec<Finding> {
        match &self.command {
            NodeCommand::Shell { run } => lint_shell(run, ctx),
            NodeCommand::Agent { argv } => lint_argv(argv, ctx),
        }
    }
}

/// Whether any finding is an attempt to reach past the sandbox (rather than
/// a destructive operation inside it).
pub fn has_escape(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.kind == FindingKind::Escape)
}

fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Flow {
    pub fn from_toml_file(path: &Path) -> Result<Flow, PolicyError> {
        let src = crate::error::read_input(path, "flow")?;
        Flow::from_toml_str(path, &src)
    }

    /// Parse `text` as if read from `origin` (named in errors; relative
    /// paths in the flow resolve against its directory).
    pub fn from_toml_str(origin: &Path, text: &str) -> Result<Flow, PolicyError> {
        let file: check::FlowFile =
            from_toml(origin, text).map_err(|e| crate::profile::name_duplicate_key(text, e))?;
        let source = std::path::absolute(origin).map_err(|source| PolicyError::Read {
            path: origin.into(),
            source,
        })?;
        check::Checker {
            file: origin,
            src: text,
        }
        .build(file, source)
    }

    /// The flow file's directory.
    pub fn dir(&self) -> &Path {
        self.source.parent().unwrap_or(Path::new("/"))
    }

    pub fn node(&self, id: &str) -> Option<&FlowNode> {
        self.nodes.iter().find(|n| n.id.as_str() == id)
    }

    /// Nodes in an order that runs every node after its needs; among nodes
    /// ready at the same time, file order. (A validated flow has no cycle;
    /// nodes on one would be left out.)
    pub fn topo_order(&self) -> Vec<&FlowNode> {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut waiting: Vec<usize> = vec![0; self.nodes.len()];
        let mut dependants: Vec<Vec<usize>> = vec![vec![]; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for need in &n.needs {
                if let Some(&j) = index.get(need.as_str()) {
                    waiting[i] += 1;
                    dependants[j].push(i);
                }
            }
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<usize>> = (0..self.nodes.len())
            .filter(|&i| waiting[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut out = Vec::with_capacity(self.nodes.len());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            out.push(&self.nodes[i]);
            for &d in &dependants[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(std::cmp::Reverse(d));
                }
            }
        }
        out
    }

    /// The repository to check out, as an absolute path.
    pub fn resolve_repo(&self) -> RepoSource {
        let s = self.workspace.repo.as_str();
        if s.contains("://") {
            // RepoSpec admits only file:// URLs that decode; re-decoding cannot fail.
            if let Ok(p) = file_url_path(s) {
                return RepoSource::Path(p);
            }
        }
        RepoSource::Path(self.dir().join(s))
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
