//! From `FlowFile` (the TOML as written) to `Flow`: the checks serde cannot
//! make, each naming the position and field: a command that does not fit
//! the node's kind, duplicate ids, unknown needs, cycles.
use super::FlowId;
use super::{
    Confirm, Flow, FlowNode, GitRef, NodeCommand, NodeKind, Parallelism, RepoSpec, Retries,
    Workspace, DEFAULT_PROFILE,
};
use crate::caps::NodeCaps;
use crate::error::{line_col, PolicyError};
use crate::profile::{ProfileName, SchemaVersion};
use crate::units::Dur;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
/// `flow.toml` as written (docs/flows.md; JSON Schema in docs/flow.schema.json).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "aiops flow")]
pub(super) struct FlowFile {
    /// Must be 1.
    #[allow(dead_code)] // checked by deserialising it
    schema: SchemaVersion,
    /// Names the run's worktree and branch.
    name: FlowId,
    /// At most this many of the flow's nodes run at once (1 to 64).
    parallelism: Option<Parallelism>,
    /// Where the code comes from.
    workspace: WorkspaceFile,
    /// The nodes; file order breaks ties between nodes ready together.
    #[serde(default)]
    node: Vec<NodeFile>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WorkspaceFile {
    /// A path relative to the flow file's directory, an absolute path, or a file:// URL.
    repo: RepoSpec,
    /// The branch, tag or commit to check out (default HEAD).
    #[serde(rename = "ref", default)]
    git_ref: GitRef,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    /// Unique within the flow.
    #[schemars(with = "FlowId")]
    id: Spanned<FlowId>,
    /// shell (needs `run`) or agent (needs `argv`).
    #[schemars(with = "NodeKind")]
    kind: Spanned<NodeKind>,
    /// Shell nodes: the command, run as /bin/sh -c RUN.
    #[schemars(with = "Option<String>")]
    run: Option<Spanned<String>>,
    /// Agent nodes: the program and its arguments, executed without a shell.
    #[schemars(with = "Option<Vec<String>>")]
    argv: Option<Spanned<Vec<String>>>,
    /// A profile name, or a path to a profile file (relative to the flow file's directory).
    #[schemars(with = "Option<String>")]
    profile: Option<Spanned<String>>,
    /// Ids of nodes that must succeed first.
    #[serde(default)]
    #[schemars(with = "Vec<FlowId>")]
    needs: Vec<Spanned<FlowId>>,
    /// Wall-clock limit, at most the profile's (same as caps.limits.timeout; set one).
    #[schemars(with = "Option<Dur>")]
    timeout: Option<Spanned<Dur>>,
    /// How many times a failed node is run again (0 to 10).
    #[serde(default)]
    retries: Retries,
    /// When the run pauses before this node: auto (on lint findings), always or never.
    #[serde(default)]
    confirm: Confirm,
    /// Capabilities within the node's profile (docs/profiles.md#node-capabilities).
    caps: Option<NodeCaps>,
}

/// The JSON Schema of a flow file, for editors (checked in as docs/flow.schema.json).
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(FlowFile)
}

/// The checks serde cannot make, each naming the position and field.
pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) src: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, field: String, reason: String) -> PolicyError {
        let (line, column) = line_col(self.src, span.start);
        PolicyError::FlowInvalid {
            file: self.file.into(),
            line,
            column,
            field,
            reason,
        }
    }

    pub(super) fn build(&self, f: FlowFile, source: PathBuf) -> Result<Flow, PolicyError> {
        if f.node.is_empty() {
            let at = self.src.len();
            return Err(self.err(
                at..at,
                "node".into(),
                "a flow needs at least one [[node]]".into(),
            ));
        }
        if let Some(n) = f.node.get(super::MAX_NODES) {
            let why = format!(
                "a flow has at most {} nodes; this is node {} of {} (split the flow)",
                super::MAX_NODES,
                super::MAX_NODES + 1,
                f.node.len()
            );
            return Err(self.err(n.id.span(), format!("node[{}]", super::MAX_NODES), why));
        }
        let dir = source.parent().unwrap_or(Path::new("/"));
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, n) in f.node.iter().enumerate() {
            if let Some(&j) = first.get(n.id.get_ref().as_str()) {
                let (line, _) = line_col(self.src, f.node[j].id.span().start);
                let why = format!(
                    "duplicate node id {:?} (first on line {line})",
                    n.id.get_ref().as_str()
                );
                return Err(self.err(n.id.span(), format!("node[{i}].id"), why));
            }
            first.insert(n.id.get_ref().as_str(), i);
        }
        let mut nodes = Vec::with_capacity(f.node.len());
        for (i, n) in f.node.iter().enumerate() {
            let mut seen = BTreeSet::new();
            for (j, need) in n.needs.iter().enumerate() {
                let id = need.get_ref().as_str();
                if !first.contains_key(id) {
                    let why = format!("unknown node id {id:?}");
                    return Err(self.err(need.span(), format!("node[{i}].needs[{j}]"), why));
                }
                if !seen.insert(id) {
                    let why = format!("{id:?} is listed twice");
                    return Err(self.err(need.span(), format!("node[{i}].needs[{j}]"), why));
                }
            }
            nodes.push(self.node(i, n, dir)?);
        }
        self.check_acyclic(&f.node, &first)?;
        Ok(Flow {
            name: f.name,
            source: source.clone(),
            parallelism: f.parallelism,
            workspace: Workspace {
                repo: f.workspace.repo,
                git_ref: f.workspace.git_ref,
            },
            nodes,
        })
    }

    fn node(&self, i: usize, n: &NodeFile, dir: &Path) -> Result<FlowNode, PolicyError> {
        let field = |f: &str| format!("node[{i}].{f}");
        let command = match (n.kind.get_ref(), &n.run, &n.argv) {
            (NodeKind::Shell, Some(run), None) => {
                if run.get_ref().trim().is_empty() {
                    return Err(self.err(run.span(), field("run"), "empty command".into()));
                }
                if let Some(why) = arg_unfit(run.get_ref()) {
                    return Err(self.err(run.span(), field("run"), why));
                }
                NodeCommand::Shell {
                    run: run.get_ref().clone(),
                }
            }
            (NodeKind::Agent, None, Some(argv)) => {
                if argv.get_ref().first().is_none_or(|a| a.is_empty()) {
                    let why = "needs a program name and its arguments".into();
                    return Err(self.err(argv.span(), field("argv"), why));
                }
                if let Some(why) = argv_unfit(argv.get_ref()) {
                    return Err(self.err(argv.span(), field("argv"), why));
                }
                NodeCommand::Agent {
                    argv: argv.get_ref().clone(),
                }
            }
            (NodeKind::Shell, _, Some(argv)) => {
                let why = "a shell node takes `run`, not `argv` (use kind = \"agent\")".into();
                return Err(self.err(argv.span(), field("argv"), why));
            }
            (NodeKind::Agent, Some(run), _) => {
                let why = "an agent node takes `argv`, not `run` (use kind = \"shell\")".into();
                return Err(self.err(run.span(), field("run"), why));
            }
            (NodeKind::Shell, None, None) => {
                let why = "a shell node needs `run`".into();
                return Err(self.err(n.kind.span(), field("run"), why));
            }
            (NodeKind::Agent, None, None) => {
                let why = "an agent node needs `argv`".into();
                return Err(self.err(n.kind.span(), field("argv"), why));
            }
        };
        let profile = match &n.profile {
            None => DEFAULT_PROFILE.to_string(),
            Some(p) => self.profile(p, dir, field("profile"))?,
        };
        let caps = n.caps.clone().unwrap_or_default();
        if let (Some(t), Some(_)) = (&n.timeout, caps.limits.as_ref().and_then(|l| l.timeout)) {
            let why = "set the timeout once: `timeout` or `caps.limits.timeout`".into();
            return Err(self.err(t.span(), field("timeout"), why));
        }
        Ok(FlowNode {
            id: n.id.get_ref().clone(),
            command,
            profile,
            needs: n.needs.iter().map(|s| s.get_ref().clone()).collect(),
            timeout: n.timeout.as_ref().map(|t| *t.get_ref()),
            retries: n.retries,
            confirm: n.confirm,
            caps,
        })
    }

    /// A name as `ProfileLoader::locate` reads it, or a path made absolute.
    fn profile(
        &self,
        p: &Spanned<String>,
        dir: &Path,
        field: String,
    ) -> Result<String, PolicyError> {
        let s = p.get_ref();
        if !(s.contains('/') || s.ends_with(".toml")) {
            ProfileName::parse(s).map_err(|why| self.err(p.span(), field, why))?;
            return Ok(s.clone());
        }
        let path = dir.join(s);
        match path.to_str() {
            Some(abs) => Ok(abs.to_string()),
            None => Err(self.err(p.span(), field, "the flow's directory is not UTF-8".into())),
        }
    }

    /// Depth-first over `needs` in file order; the first back edge found is
    /// reported at the `needs` entry that closes it, naming the whole cycle.
    fn check_acyclic(
        &self,
        nodes: &[NodeFile],
        index: &HashMap<&str, usize>,
    ) -> Result<(), PolicyError> {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut colour = vec![WHITE; nodes.len()];
        for root in 0..nodes.len() {
            if colour[root] != WHITE {
                continue;
            }
            // (node, next need to follow); the stack is the current path.
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            colour[root] = GREY;
            while let Some(&mut (u, ref mut next)) = stack.last_mut() {
                let Some(need) = nodes[u].needs.get(*next) else {
                    colour[u] = BLACK;
                    stack.pop();
                    continue;
                };
                let j = *next;
                *next += 1;
                let v = index.get(need.get_ref().as_str()).copied().unwrap_or(u);
                match colour[v] {
                    WHITE => {
                        colour[v] = GREY;
                        stack.push((v, 0));
                    }
                    GREY => {
                        let from = stack.iter().position(|&(w, _)| w == v).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(w, _)| nodes[w].id.get_ref().to_string())
                            .collect();
                        cycle.push(nodes[v].id.get_ref().to_string());
                        let (line, column) = line_col(self.src, need.span().start);
                        return Err(PolicyError::NeedsCycle {
                            file: self.file.into(),
                            line,
                            column,
                            field: format!("node[{u}].needs[{j}]"),
                            cycle,
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Why one argument cannot reach `execve`, if it cannot: a NUL ends a C
/// string, and the kernel refuses a single argument longer than
/// MAX_ARG_STRLEN (a shell node's `run` is one: `/bin/sh -c RUN`).
fn arg_unfit(a: &str) -> Option<String> {
    if a.contains('\0') {
        return Some("contains a NUL byte, which cannot be passed to a program".into());
    }
    (a.len() > super::MAX_ARG_BYTES).then(|| {
        format!(
            "{} bytes; the kernel takes at most {} bytes in one argument \
             (MAX_ARG_STRLEN): put the script in a file in the repository and run that",
            a.len(),
            super::MAX_ARG_BYTES
        )
    })
}

/// `arg_unfit` for each argument, and the whole argv within `MAX_ARGV_BYTES`.
fn argv_unfit(argv: &[String]) -> Option<String> {
    if let Some((i, why)) = argv
        .iter()
        .enumerate()
        .find_map(|(i, a)| arg_unfit(a).map(|w| (i, w)))
    {
        return Some(format!("argument {i}: {why}"));
    }
    let total: usize = argv.iter().map(|a| a.len() + 1).sum();
    (total > super::MAX_ARGV_BYTES).then(|| {
        format!(
            "the arguments take {total} bytes; at most {} fit beside the environment \
             under the kernel's ARG_MAX: pass large input in a file",
            super::MAX_ARGV_BYTES
        )
    })
}
