//! `aiopsctl lint FLOW`: check a flow without running it. The file is
//! parsed strictly, each node's profile loaded, its capabilities checked
//! against that profile, and its command linted, saying which nodes will
//! pause at the destructive-operation gate.
use super::print_json;
use crate::context::neutral_context;
use crate::error::error_chain;
use crate::error::{out_err, SupervisorError};
use crate::locate;
use aiops_policy::flow::{Confirm, Flow, FlowNode, NodeKind, RepoSource};
use aiops_policy::lint::{Finding, FindingKind, LintContext};
use aiops_policy::{PolicyError, ProfileLoader};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Exit status when the flow is valid but a command tries to reach past the
/// sandbox (secrets, host sockets, privileges): distinct from data errors
/// (64-78) so CI can refuse such flows outright.
pub const EXIT_ESCAPE: i32 = aiops_proto::exit::ESCAPE;

#[derive(Debug, Serialize)]
pub struct LintReport {
    pub flow: PathBuf,
    /// The flow's name; absent when the file did not parse.
    pub name: Option<String>,
    pub valid: bool,
    pub exit_code: i32,
    /// Why the file itself is invalid (nodes carry their own errors).
    pub error: Option<String>,
    pub repo: Option<PathBuf>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The commit `ref` names in `repo`, as a run would check it out.
    pub commit: Option<String>,
    /// Why the run's workspace cannot be made from `repo` at `ref`.
    pub workspace_error: Option<String>,
    /// What a system daemon refuses although a local run accepts it.
    pub notes: Vec<String>,
    /// Node ids in the order they can run.
    pub order: Vec<String>,
    pub nodes: Vec<NodeLint>,
}

#[derive(Debug, Serialize)]
pub struct NodeLint {
    pub id: String,
    pub kind: NodeKind,
    pub profile: String,
    pub command: String,
    pub confirm: Confirm,
    /// The profile did not load or the node asks for more than it allows.
    pub error: Option<String>,
    pub findings: Vec<FindingOut>,
    /// Whether the run will stop in `awaiting_confirmation` before this node.
    pub pauses: bool,
}

#[derive(Debug, Serialize)]
pub struct FindingOut {
    #[serde(flatten)]
    pub finding: Finding,
    /// The words the span covers.
    pub text: String,
}

pub fn run(flow: &Path, json: bool, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let report = lint_flow(flow, &locate::profile_loader())?;
    if json {
        print_json(out, "lint report", &report)?;
    } else {
        out.write_all(render(&report).as_bytes()).map_err(out_err)?;
    }
    Ok(report.exit_code)
}

/// Check `path` with profiles from `loader`; never fails for a bad flow (that is the report).
pub fn lint_flow(path: &Path, loader: &ProfileLoader) -> Result<LintReport, SupervisorError> {
    let mut report = LintReport {
        flow: path.to_path_buf(),
        name: None,
        valid: false,
        exit_code: 0,
        error: None,
        repo: None,
        git_ref: None,
        commit: None,
        workspace_error: None,
        notes: vec![],
        order: vec![],
        nodes: vec![],
    };
    let flow = match Flow::from_toml_file(path) {
        Ok(f) => f,
        Err(e) => {
            report.exit_code = e.exit_code();
            report.error = Some(error_chain(&e));
            return Ok(report);
        }
    };
    // Capabilities resolve against a placeholder workspace: the run's checkout does not exist yet.
    let ctx = neutral_context()?;
    let mut first_error: Option<i32> = None;
    for node in &flow.nodes {
        let (n, code) = lint_node(node, loader, &ctx);
        if first_error.is_none() {
            first_error = code;
        }
        report.nodes.push(n);
    }
    let RepoSource::Path(repo) = flow.resolve_repo();
    match check_workspace(&repo, flow.workspace.git_ref.as_str()) {
        Ok(commit) => report.commit = commit,
        Err((code, why)) => {
            report.workspace_error = Some(why);
            first_error = first_error.or(Some(code));
        }
    }
    report.notes = system_notes(&flow, loader);
    let escape = report.nodes.iter().any(|n| has_escape_out(&n.findings));
    report.valid = first_error.is_none();
    report.exit_code = match first_error {
        Some(code) => code,
        None if escape => EXIT_ESCAPE,
        None => 0,
    };
    report.repo = Some(repo);
    report.git_ref = Some(flow.workspace.git_ref.as_str().into());
    report.order = flow.topo_order().iter().map(|n| n.id.to_string()).collect();
    report.name = Some(flow.name.to_string());
    Ok(report)
}

/// What `aiopsctl run` checks when it makes the workspace, done here
/// reading only: the repository opens, the ref names a commit, no symlink
/// in its tree leaves it. The commit, or the exit code and why not.
#[cfg(target_os = "linux")]
fn check_workspace(repo: &Path, git_ref: &str) -> Result<Option<String>, (i32, String)> {
    use crate::workspace::WorkspaceError as W;
    use aiops_proto::exit;
    crate::workspace::check_source(repo, git_ref)
        .map(Some)
        .map_err(|e| {
            let code = match &e {
                W::OpenRepo { .. } | W::ResolveRef { .. } => exit::NOINPUT,
                W::EscapingSymlink { .. } => exit::DATAERR,
                _ => exit::OSERR,
            };
            (code, error_chain(&e))
        })
}

/// Workspaces are made on Linux only (the engine is Linux-only).
#[cfg(not(target_os = "linux"))]
fn check_workspace(_repo: &Path, _git_ref: &str) -> Result<Option<String>, (i32, String)> {
    Ok(None)
}

/// A local run takes profiles by path and unconfined profiles; a system
/// daemon refuses both (docs/supervisor.md). Said here, not refused: lint
/// cannot know where the flow will be submitted.
fn system_notes(flow: &Flow, loader: &ProfileLoader) -> Vec<String> {
    let mut notes = vec![];
    for n in &flow.nodes {
        if n.profile.contains('/') || n.profile.ends_with(".toml") {
            notes.push(format!(
                "node {:?}: profile by path ({}): a system daemon takes profiles by name only \
                 and refuses this node",
                n.id.as_str(),
                n.profile
            ));
        } else if loader.load(&n.profile).is_ok_and(|p| p.unconfined) {
            notes.push(format!(
                "node {:?}: profile {:?} is unconfined: a system daemon refuses it unless \
                 supervisor.toml sets allow_unconfined = true",
                n.id.as_str(),
                n.profile
            ));
        }
    }
    notes
}

fn lint_node(
    node: &FlowNode,
    loader: &ProfileLoader,
    ctx: &aiops_policy::CompileContext,
) -> (NodeLint, Option<i32>) {
    let mut n = NodeLint {
        id: node.id.to_string(),
        kind: node.kind(),
        profile: node.profile.clone(),
        command: node.command_text(),
        confirm: node.confirm,
        error: None,
        findings: vec![],
        pauses: false,
    };
    let checked = loader.load(&node.profile).and_then(|profile| {
        aiops_policy::caps::effective(&profile, &node.caps(), &ctx.vars)
            .map_err(|e| in_node(e, node))
    });
    let eff = match checked {
        Ok(e) => e,
        Err(e) => {
            n.error = Some(error_chain(&e));
            return (n, Some(e.exit_code()));
        }
    };
    let lctx = LintContext {
        workspace: ctx.vars.workspace.as_ref(),
        readable: &eff.read,
        writable: &eff.write,
    };
    let findings = node.lint(&lctx);
    // lint_argv's spans index the space-joined argv, not the quoted command text.
    let spanned = match &node.command {
        aiops_policy::flow::NodeCommand::Shell { run } => run.clone(),
        aiops_policy::flow::NodeCommand::Agent { argv } => argv.join(" "),
    };
    n.pauses = node.confirm.pauses(&findings);
    n.findings = findings
        .into_iter()
        .map(|f| FindingOut {
            text: spanned.get(f.span.clone()).unwrap_or("").to_string(),
            finding: f,
        })
        .collect();
    (n, None)
}

/// Caps errors name a field of the node's caps; say which node's.
fn in_node(e: PolicyError, node: &FlowNode) -> PolicyError {
    match e {
        PolicyError::OutsideProfile {
            field,
            entry,
            profile,
        } => PolicyError::OutsideProfile {
            field: format!("node {:?}: caps.{field}", node.id.as_str()),
            entry,
            profile,
        },
        other => other,
    }
}

fn kind_word(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Destructive => "destructive",
        FindingKind::Escape => "sandbox escape",
        FindingKind::Unparsed => "unparsed",
    }
}

pub fn render(r: &LintReport) -> String {
    let mut s = String::new();
    let flow = r.flow.display();
    if let Some(e) = &r.error {
        s.push_str(&format!("error: {e}\n"));
        return s;
    }
    let name = r.name.as_deref().unwrap_or("?");
    s.push_str(&format!("flow {name} ({flow}): {} nodes\n", r.nodes.len()));
    if let (Some(repo), Some(git_ref)) = (&r.repo, &r.git_ref) {
        let at = match (&r.commit, &r.workspace_error) {
            (_, Some(e)) => format!(" (error: {e})"),
            (Some(c), None) => format!(" (commit {})", c.get(..12).unwrap_or(c)),
            (None, None) => String::new(),
        };
        s.push_str(&format!("workspace: {} at {git_ref}{at}\n", repo.display()));
    }
    s.push_str(&format!("order: {}\n", r.order.join(" -> ")));
    let mut pausing = 0;
    for n in &r.nodes {
        let kind = match n.kind {
            NodeKind::Shell => "shell",
            NodeKind::Agent => "agent",
        };
        s.push_str(&format!(
            "\n{} ({kind}, profile {})\n  $ {}\n",
            n.id, n.profile, n.command
        ));
        if let Some(e) = &n.error {
            s.push_str(&format!("  error: {e}\n"));
            continue;
        }
        for f in &n.findings {
            let level = if f.finding.kind == FindingKind::Escape {
                "escape"
            } else {
                "warning"
            };
            s.push_str(&format!(
                "  {level}: {} ({}): {} [at {:?}]\n",
                f.finding.rule,
                kind_word(f.finding.kind),
                f.finding.message,
                f.text
            ));
        }
        let confirm = match n.confirm {
            Confirm::Auto => "auto",
            Confirm::Always => "always",
            Confirm::Never => "never",
        };
        let gate = match (n.pauses, n.findings.is_empty()) {
            (true, _) => {
                pausing += 1;
                format!("will pause for confirmation (confirm = \"{confirm}\")")
            }
            (false, true) => "no findings; runs without confirmation".into(),
            (false, false) => "will NOT pause: confirm = \"never\" overrides these findings".into(),
        };
        s.push_str(&format!("  {gate}\n"));
    }
    let escapes = r
        .nodes
        .iter()
        .filter(|n| has_escape_out(&n.findings))
        .count();
    let verdict = if !r.valid {
        format!("invalid (exit {})", r.exit_code)
    } else if escapes > 0 {
        format!("valid, but {escapes} node(s) try to reach past the sandbox (exit {EXIT_ESCAPE})")
    } else {
        "valid".into()
    };
    for note in &r.notes {
        s.push_str(&format!("\nnote: {note}"));
    }
    s.push_str(&format!(
        "\n{verdict}; {pausing} node(s) will pause for confirmation\n"
    ));
    s.push_str(GATE_CAVEAT);
    s
}

/// The gate reads the command as written; say so wherever it speaks.
pub const GATE_CAVEAT: &str = "(the gate reads each command as written: a command built at run \
time, through a variable, an alias, eval or a decoded script, is not seen; \
confirm = \"always\" pauses a node whatever it runs)\n";

fn has_escape_out(f: &[FindingOut]) -> bool {
    f.iter().any(|f| f.finding.kind == FindingKind::Escape)
}
