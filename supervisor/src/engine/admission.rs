//! Admission: everything decided when a run is submitted (or reloaded
//! after a restart), before anything runs: the flow parses, every node's
//! profile loads and its capabilities fit inside that profile, and
//! `policy::lint` says which nodes pause at the destructive-operation gate.
use super::{NodeMem, RunMem, Shared, Ws};
use crate::error::error_chain;
use crate::model::{NodeState, RunState, SubmitRequest};
use aiops_policy::flow::Flow;
use aiops_policy::lint::LintContext;
use aiops_policy::{AbsPath, Effective, NodeCaps, PathVars, Profile};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use std::sync::Arc;

pub(crate) struct Admitted {
    pub flow: Arc<Flow>,
    pub profiles: HashMap<String, Arc<Profile>>,
    pub findings: HashMap<String, Vec<String>>,
    pub gated: HashMap<String, bool>,
    /// Each node's effective capabilities, computed here for the lint and
    /// reused by its runner when its context has these same `vars`.
    pub effective: HashMap<String, Arc<Effective>>,
    pub vars: Arc<PathVars>,
}

/// Parse and check a submitted flow. The error is the message for the user.
pub(crate) fn admit(shared: &Shared, run: &str, req: &SubmitRequest) -> Result<Admitted, String> {
    let origin = Path::new(&req.flow_path);
    if !origin.is_absolute() {
        return Err(format!(
            "flow_path {:?} must be absolute (relative repo and profile paths resolve against it)",
            req.flow_path
        ));
    }
    let flow = Flow::from_toml_str(origin, &req.flow).map_err(|e| error_chain(&e))?;
    check_flow(shared, run, flow)
}

/// Check a parsed flow (also used when reloading a stored run).
pub(crate) fn check_flow(shared: &Shared, run: &str, flow: Flow) -> Result<Admitted, String> {
    if flow.nodes.len() > super::MAX_NODES {
        return Err(format!(
            "flow {} has {} nodes; at most {} are allowed",
            flow.name,
            flow.nodes.len(),
            super::MAX_NODES
        ));
    }
    let loader = crate::locate::profile_loader();
    let ws = shared.workspaces.path().join(flow.name.as_str()).join(run);
    let ws = AbsPath::new(&ws).map_err(|e| format!("workspace path: {e}"))?;
    let vars = PathVars {
        workspace: Some(ws.clone()),
        home: std::env::var_os("HOME").and_then(|h| AbsPath::new(PathBuf::from(h)).ok()),
        tmpdir: AbsPath::new("/tmp").ok(),
    };
    let mut profiles: HashMap<String, Arc<Profile>> = HashMap::new();
    let mut findings = HashMap::new();
    let mut gated = HashMap::new();
    let mut effective = HashMap::new();
    // Nodes in a row mostly share a profile and capabilities: one result.
    let mut last: Option<(Arc<Profile>, NodeCaps, Arc<Effective>)> = None;
    for n in &flow.nodes {
        // Relative profile paths were made absolute when the flow was parsed.
        let key = n.profile.clone();
        if !shared.cfg.profile_paths && (key.contains('/') || key.ends_with(".toml")) {
            return Err(format!(
                "node {:?}: profile {:?}: the supervisor takes profiles by name from its \
                 search path (/etc/aiops/profiles, /usr/share/aiops/profiles), not by path: \
                 a profile is the operator's ceiling",
                n.id, n.profile
            ));
        }
        let profile = match profiles.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(loader.load(&key).map_err(|e| {
                    format!(
                        "node {:?}: profile {:?}: {}",
                        n.id,
                        n.profile,
                        error_chain(&e)
                    )
                })?);
                profiles.insert(key.clone(), p.clone());
                p
            }
        };
        if profile.unconfined && !shared.cfg.allow_unconfined {
            return Err(format!(
                "node {:?}: profile {:?} is unconfined (no jail); the supervisor refuses it \
                 unless supervisor.toml sets allow_unconfined = true",
                n.id, n.profile
            ));
        }
        let caps = n.caps();
        let eff = match &last {
            Some((p, c, e)) if Arc::ptr_eq(p, &profile) && *c == caps => e.clone(),
            _ => {
                let e = aiops_policy::caps::effective(&profile, &caps, &vars)
                    .map_err(|e| format!("node {:?}: {}", n.id, error_chain(&e)))?;
                let e = Arc::new(e);
                last = Some((profile.clone(), caps, e.clone()));
                e
            }
        };
        let ctx = LintContext {
            workspace: Some(&ws),
            readable: &eff.read,
            writable: &eff.write,
        };
        let found = n.lint(&ctx);
        let texts: Vec<String> = found
            .iter()
            .map(|f| format!("{}: {}", f.rule, f.message))
            .collect();
        gated.insert(n.id.to_string(), n.confirm.pauses(&found));
        findings.insert(n.id.to_string(), texts);
        effective.insert(n.id.to_string(), eff);
    }
    Ok(Admitted {
        flow: Arc::new(flow),
        profiles,
        findings,
        gated,
        effective,
        vars: Arc::new(vars),
    })
}

impl Admitted {
    pub(crate) fn into_mem(self, pre_approved: bool) -> RunMem {
        let mut nodes = BTreeMap::new();
        let mut order = vec![];
        // Needs before dependants: one pass of `advance` settles a chain.
        for n in self.flow.topo_order() {
            let id = n.id.to_string();
            let pos = order.len();
            order.push(id.clone());
            nodes.insert(
                id.clone(),
                NodeMem {
                    state: NodeState::Queued,
                    needs: n.needs.iter().map(ToString::to_string).collect(),
                    attempts: 0,
                    retries: n.retries.get(),
                    gated: self.gated.get(&id).copied().unwrap_or(true),
                    confirmed: false,
                    findings: self.findings.get(&id).cloned().unwrap_or_default(),
                    effective: self.effective.get(&id).cloned(),
                    dispatched: false,
                    attempt: None,
                    cancel: false,
                    cancel_reason: None,
                    slot_freed: false,
                    pos,
                },
            );
        }
        RunMem {
            flow: self.flow,
            pre_approved,
            ws: Ws::Pending,
            nodes,
            order,
            profiles: self.profiles,
            vars: self.vars,
            state: RunState::Queued,
            dir_ready: false,
        }
    }
}
