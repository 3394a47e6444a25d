//! Everything decided when a run is submitted, before anything runs: the
//! flow parses, every node's profile loads and its capabilities fit inside
//! that profile, and `policy::lint` says which nodes pause at the gate.
use super::{profile_ref, NodeMem, RunMem, Shared, Ws};
use crate::cli::profile::error_chain;
use crate::model::{NodeState, RunState, SubmitRequest};
use aiops_policy::flow::{Confirm, Flow, FlowNode, NodeKind};
use aiops_policy::lint::{lint_argv, lint_shell, LintContext};
use aiops_policy::{AbsPath, NodeCaps, PathVars, Profile};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct Prepared {
    pub flow: Arc<Flow>,
    pub flow_dir: PathBuf,
    pub profiles: HashMap<String, Arc<Profile>>,
    pub findings: HashMap<String, Vec<String>>,
    pub gated: HashMap<String, bool>,
}

/// The node's declared capabilities, with its `timeout` as a limit.
pub(crate) fn node_caps(n: &FlowNode) -> NodeCaps {
    let mut caps = n.caps.clone().unwrap_or_default();
    if let Some(t) = n.timeout {
        caps.limits.get_or_insert_with(Default::default).timeout = Some(t);
    }
    caps
}

/// Parse and check a submitted flow. The error is the message for the user.
pub(crate) fn prepare(
    shared: &Shared,
    run: &str,
    req: &SubmitRequest,
) -> Result<Prepared, String> {
    let origin = Path::new(&req.flow_path);
    if !origin.is_absolute() {
        return Err(format!(
            "flow_path {:?} must be absolute (relative repo and profile paths resolve against it)",
            req.flow_path
        ));
    }
    let flow = Flow::from_toml_str(origin, &req.flow).map_err(|e| error_chain(&e))?;
    let flow_dir = origin.parent().unwrap_or(Path::new("/")).to_path_buf();
    build(shared, run, flow, flow_dir)
}

/// Check a parsed flow (also used when reloading a stored run).
pub(crate) fn build(
    shared: &Shared,
    run: &str,
    flow: Flow,
    flow_dir: PathBuf,
) -> Result<Prepared, String> {
    let loader = crate::locate::profile_loader();
    let ws = shared.workspaces.path().join(&flow.name).join(run);
    let ws = AbsPath::new(&ws).map_err(|e| format!("workspace path: {e}"))?;
    let vars = PathVars {
        workspace: Some(ws.clone()),
        home: std::env::var_os("HOME").and_then(|h| AbsPath::new(PathBuf::from(h)).ok()),
        tmpdir: AbsPath::new("/tmp").ok(),
    };
    let mut profiles: HashMap<String, Arc<Profile>> = HashMap::new();
    let mut findings = HashMap::new();
    let mut gated = HashMap::new();
    for n in &flow.node {
        let key = profile_ref(&flow_dir, &n.profile);
        let profile = match profiles.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(loader.load(&key).map_err(|e| {
                    format!("node {:?}: profile {:?}: {}", n.id, n.profile, error_chain(&e))
                })?);
                profiles.insert(key.clone(), p.clone());
                p
            }
        };
        let eff = aiops_policy::caps::effective(&profile, &node_caps(n), &vars)
            .map_err(|e| format!("node {:?}: {}", n.id, error_chain(&e)))?;
        let ctx = LintContext {
            workspace: Some(&ws),
            readable: &eff.read,
            writable: &eff.write,
        };
        let found = match n.kind {
            NodeKind::Shell => lint_shell(&n.command_text(), &ctx),
            NodeKind::Agent => lint_argv(&n.argv(), &ctx),
        };
        let texts: Vec<String> = found
            .iter()
            .map(|f| format!("{}: {}", f.rule, f.message))
            .collect();
        let gate = match n.confirm {
            Confirm::Always => true,
            Confirm::Never => false,
            Confirm::Auto => !texts.is_empty(),
        };
        findings.insert(n.id.clone(), texts);
        gated.insert(n.id.clone(), gate);
    }
    Ok(Prepared {
        flow: Arc::new(flow),
        flow_dir,
        profiles,
        findings,
        gated,
    })
}

impl Prepared {
    pub(crate) fn into_mem(self, pre_approved: bool) -> RunMem {
        let mut nodes = BTreeMap::new();
        let mut order = vec![];
        for n in &self.flow.node {
            order.push(n.id.clone());
            nodes.insert(
                n.id.clone(),
                NodeMem {
                    state: NodeState::Queued,
                    needs: n.needs.clone(),
                    attempts: 0,
                    retries: n.retries,
                    gated: self.gated.get(&n.id).copied().unwrap_or(true),
                    confirmed: false,
                    findings: self.findings.get(&n.id).cloned().unwrap_or_default(),
                    dispatched: false,
                    pid: None,
                    cancel: false,
                },
            );
        }
        RunMem {
            flow: self.flow,
            flow_dir: self.flow_dir,
            pre_approved,
            ws: Ws::Pending,
            nodes,
            order,
            profiles: self.profiles,
            state: RunState::Queued,
        }
    }
}
