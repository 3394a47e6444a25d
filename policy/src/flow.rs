//! Flows: a named DAG of nodes, each a shell command or an agent argv run in
//! a jail built from a profile. `FlowFile` is the TOML as written (strict,
//! versioned, with spans for the checks serde cannot do); `Flow` is the
//! validated result the supervisor schedules, stores as JSON and serves.
//! The format is documented in docs/flows.md.
use crate::caps::NodeCaps;
use crate::error::{from_toml, line_col, PolicyError};
use crate::lint::{lint_argv, lint_shell, Finding, FindingKind, LintContext};
use crate::profile::{ProfileName, SchemaVersion};
use crate::units::Dur;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Most nodes a flow may run at once; the daemon's own limit still applies.
pub const MAX_PARALLELISM: u32 = 64;
/// Most times a failed node is re-run.
pub const MAX_RETRIES: u32 = 10;
/// The profile of a node that names none: the shipped default.
pub const DEFAULT_PROFILE: &str = "restrictive";
/// Shell nodes run as `/bin/sh -c RUN`: POSIX sh, present in every profile's read paths.
pub const SHELL: &str = "/bin/sh";

/// A flow name or node id: `[a-z0-9][a-z0-9_-]{0,63}`, safe in paths, URLs and branch names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FlowId(String);
impl FlowId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut b = s.bytes();
        let ok = s.len() <= 64
            && matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if ok {
            Ok(FlowId(s.into()))
        } else {
            Err(format!(
                "{s:?}: use 1 to 64 lower-case letters, digits, '_' and '-', starting with a letter or digit"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for FlowId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        FlowId::parse(&s)
    }
}
impl From<FlowId> for String {
    fn from(n: FlowId) -> String {
        n.0
    }
}
impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A count with an inclusive range, refused with a message when outside it.
macro_rules! bounded {
    ($name:ident, $lo:expr, $hi:expr, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u32", into = "u32")]
        pub struct $name(u32);
        impl $name {
            pub fn get(self) -> u32 {
                self.0
            }
        }
        impl TryFrom<u32> for $name {
            type Error = String;
            fn try_from(v: u32) -> Result<Self, String> {
                if ($lo..=$hi).contains(&v) {
                    Ok($name(v))
                } else {
                    Err(format!("{} {v}: must be {} to {}", $what, $lo, $hi))
                }
            }
        }
        impl From<$name> for u32 {
            fn from(v: $name) -> u32 {
                v.0
            }
        }
    };
}
bounded!(Parallelism, 1, MAX_PARALLELISM, "parallelism");
bounded!(Retries, 0, MAX_RETRIES, "retries");
// Not derived in the macro: a default Parallelism of 0 would be out of range.
#[allow(clippy::derivable_impls)]
impl Default for Retries {
    fn default() -> Self {
        Retries(0)
    }
}

/// Where the workspace comes from: a local path (relative to the flow file's
/// directory, or absolute) or a `file://` URL. Remote URLs are refused: a
/// node never runs against code the supervisor did not already have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoSpec(String);
impl RepoSpec {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.contains('\0') {
            return Err("repo: give a path or a file:// URL".into());
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.eq_ignore_ascii_case("file") {
                return Err(format!(
                    "{s:?}: {scheme}:// is refused; use a local path or a file:// URL"
                ));
            }
            file_url_path(s)?;
        } else if s.split('/').next().is_some_and(|first| first.contains(':')) {
            return Err(format!(
                "{s:?} looks like a remote (host:path) address; use a local path or a file:// URL"
            ));
        }
        Ok(RepoSpec(s.into()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for RepoSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RepoSpec::parse(&s)
    }
}
impl From<RepoSpec> for String {
    fn from(r: RepoSpec) -> String {
        r.0
    }
}

/// The absolute path of a `file://` URL (`file:///x` or `file://localhost/x`), percent-decoded.
fn file_url_path(url: &str) -> Result<PathBuf, String> {
    let rest = &url["file://".len()..];
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err(format!(
            "{url:?}: a file:// URL names an absolute local path (file:///path)"
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("{url:?}: a query or fragment has no meaning here"));
    }
    let b = rest.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = rest
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(0) | None => return Err(format!("{url:?}: bad %-escape")),
                Some(c) => out.push(c),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(PathBuf::from)
        .map_err(|_| format!("{url:?}: decodes to a path that is not UTF-8"))
}

/// A git revision to check out: a branch, tag or commit. Refuses what git
/// itself refuses in ref names, and a leading '-' (it would read as an option).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GitRef(String);
impl GitRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = s.is_empty()
            || s.len() > 255
            || s.starts_with(['-', '/'])
            || s.ends_with(['/', '.'])
            || s.contains("..")
            || s.contains("@{")
            || s.contains("//")
            || s.ends_with(".lock")
            || s.chars()
                .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
        if bad {
            Err(format!("{s:?} is not a valid git branch, tag or commit"))
        } else {
            Ok(GitRef(s.into()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl Default for GitRef {
    fn default() -> Self {
        GitRef("HEAD".into())
    }
}
impl TryFrom<String> for GitRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        GitRef::parse(&s)
    }
}
impl From<GitRef> for String {
    fn from(r: GitRef) -> String {
        r.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Shell,
    Agent,
}

/// When a node pauses for `aiopsctl confirm` before it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirm {
    /// Pause when the lint reports any finding for the command.
    #[default]
    Auto,
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
        let src = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.into(),
            source,
        })?;
        Flow::from_toml_str(path, &src)
    }

    /// Parse `text` as if read from `origin` (named in errors; relative
    /// paths in the flow resolve against its directory).
    pub fn from_toml_str(origin: &Path, text: &str) -> Result<Flow, PolicyError> {
        let file: FlowFile =
            from_toml(origin, text).map_err(|e| crate::profile::name_duplicate_key(text, e))?;
        let source = std::path::absolute(origin).map_err(|source| PolicyError::Read {
            path: origin.into(),
            source,
        })?;
        Checker {
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

/// `flow.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowFile {
    #[allow(dead_code)] // checked by deserialising it
    schema: SchemaVersion,
    name: FlowId,
    parallelism: Option<Parallelism>,
    workspace: WorkspaceFile,
    #[serde(default)]
    node: Vec<NodeFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceFile {
    repo: RepoSpec,
    #[serde(rename = "ref", default)]
    git_ref: GitRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    id: Spanned<FlowId>,
    kind: Spanned<NodeKind>,
    run: Option<Spanned<String>>,
    argv: Option<Spanned<Vec<String>>>,
    profile: Option<Spanned<String>>,
    #[serde(default)]
    needs: Vec<Spanned<FlowId>>,
    timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    retries: Retries,
    #[serde(default)]
    confirm: Confirm,
    caps: Option<NodeCaps>,
}

/// The checks serde cannot make, each naming the position and field.
struct Checker<'a> {
    file: &'a Path,
    src: &'a str,
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

    fn build(&self, f: FlowFile, source: PathBuf) -> Result<Flow, PolicyError> {
        if f.node.is_empty() {
            let at = self.src.len();
            return Err(self.err(
                at..at,
                "node".into(),
                "a flow needs at least one [[node]]".into(),
            ));
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
                NodeCommand::Shell {
                    run: run.get_ref().clone(),
                }
            }
            (NodeKind::Agent, None, Some(argv)) => {
                if argv.get_ref().first().is_none_or(|a| a.is_empty()) {
                    let why = "needs a program name and its arguments".into();
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

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
