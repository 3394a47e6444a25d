//! One node attempt, start to end, on a blocking thread: take a spare
//! jailer (`warm`) or start one, compile the plan meanwhile, send the
//! request, follow the jail. A jailer's PR_SET_PDEATHSIG follows the
//! thread that started it: a spare's is the starter thread, which lives
//! as long as the process; one started here is waited for by this same
//! thread. Either way it fires only if the supervisor itself dies.
use super::attempt::Attempt;
use crate::error::SupervisorError;
use crate::exec::{self, ExecReport, JailStdio};
use crate::model::NodeState;
use aiops_policy::{HostFacts, NodeCaps, PathVars, Profile};
use aiops_proto::ExitReport;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// SIGTERM to SIGKILL for a node stopped because its output could not be
/// stored (the engine's `kill_grace`).
const OUTPUT_KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct NodeJob {
    pub run: String,
    pub node: String,
    pub argv: Vec<String>,
    pub profile: Arc<Profile>,
    pub caps: NodeCaps,
    /// What admission computed from `profile` and `caps`, if anything.
    pub admitted: Option<AdmittedCaps>,
    pub workspace: PathBuf,
    pub jailer: super::JailerTarget,
    /// Where a started jailer may be waiting (`JailerTarget::Exec`).
    pub warm: Option<Arc<super::warm::Warm>>,
    /// The engine's memo of the last plan compiled.
    pub plans: Arc<PlanMemo>,
    pub facts: HostFacts,
    /// Where stdout/stderr go: `<out>.stdout`, `<out>.stderr`.
    pub out: PathBuf,
    /// Shared with the scheduler: the `running` record, cancellation.
    pub attempt: Arc<Attempt>,
    /// Where the runner reports to the scheduler.
    pub events: UnboundedSender<RunnerEvent>,
}

/// A node's effective capabilities as admission computed them, and the
/// path variables it used: the runner reuses them when its own context
/// has the same variables (it does unless `$TMPDIR` is set, or the
/// workspace root's path resolves to another).
pub struct AdmittedCaps {
    pub vars: Arc<PathVars>,
    pub effective: Arc<aiops_policy::caps::Effective>,
}

/// What a runner tells the scheduler, in this order.
pub(crate) enum RunnerEvent {
    /// agentd reported the node's end: its slot may go to the next ready
    /// node while this jail is torn down.
    Exited { run: String, node: String },
    /// The attempt is over.
    Done {
        run: String,
        node: String,
        result: Box<NodeResult>,
    },
}

/// What the scheduler records about an attempt.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub state: NodeState,
    pub reason: Option<String>,
    /// What agentd reported; `None` when the node never ran or the jail
    /// ended without a report.
    pub outcome: Option<ExitReport>,
    pub cwd: Option<String>,
    /// The effective capabilities (names and paths, never values) for the audit.
    pub capabilities: Option<serde_json::Value>,
    pub limit_hits: Vec<String>,
    /// Every connection attempt through the egress proxy (allowlist nodes).
    pub egress: Option<serde_json::Value>,
    /// What the jail refused, by layer, when the node ran.
    pub denials: Option<serde_json::Value>,
}

impl NodeResult {
    fn not_run(state: NodeState, reason: String) -> NodeResult {
        NodeResult {
            state,
            reason: Some(reason),
            outcome: None,
            cwd: None,
            capabilities: None,
            limit_hits: vec![],
            egress: None,
            denials: None,
        }
    }
}

/// Names, paths and numbers from the effective capabilities.
fn caps_summary(eff: &aiops_policy::caps::Effective) -> serde_json::Value {
    serde_json::json!({
        "net": eff.net,
        "net_allow": eff.net_allow,
        "read": eff.read,
        "write": eff.write,
        "exec": eff.exec,
        "env": eff.env,
        "secrets": eff.secrets,
        "limits": eff.limits,
        "unconfined": eff.unconfined,
    })
}

/// Run `job` on a blocking thread; its events, then `RunnerEvent::Done`,
/// go to the scheduler on `job.events`.
pub(crate) fn spawn(job: NodeJob) {
    tokio::spawn(async move {
        let (run, node, events) = (job.run.clone(), job.node.clone(), job.events.clone());
        let result = tokio::task::spawn_blocking(move || run_node(&job))
            .await
            .unwrap_or_else(|e| {
                NodeResult::not_run(NodeState::Failed, format!("supervisor: node task: {e}"))
            });
        let _ = events.send(RunnerEvent::Done {
            run,
            node,
            result: Box::new(result),
        });
    });
}

/// Run `job`: the jail is attached to the attempt once it exists (a cancel
/// before that keeps it from running), and `RunnerEvent::Exited` is sent
/// when agentd reports the node's end.
fn run_node(job: &NodeJob) -> NodeResult {
    // Output that can no longer be stored (the state disk is full) stops
    // the node: it is failed anyway, and it must not run on unseen.
    let attempt = job.attempt.clone();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let said = stopped.clone();
    let on_fail: super::output::OnFail = Arc::new(move || {
        if let Some(stop) = attempt.stopper() {
            said.store(true, std::sync::atomic::Ordering::SeqCst);
            if stop.stop() {
                let _ = std::thread::Builder::new()
                    .name("aiops-output-kill".into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        std::thread::sleep(OUTPUT_KILL_GRACE);
                        stop.kill();
                    });
            }
        }
    });
    // Only `JailerTarget::Exec` has spares (`warm` is None otherwise).
    let (ready, capture) = match job.warm.as_ref().and_then(|w| w.claim()) {
        Some(s) => match s.output.bind(&job.out, on_fail) {
            Ok(c) => (Ready::Spare(s.pending, s.egress), c),
            Err(e) => return Failure::Internal(e).into_result(),
        },
        None => match super::output::capture(&job.out, on_fail) {
            Ok((ends, c)) => (Ready::Fresh(ends), c),
            Err(e) => return Failure::Internal(e).into_result(),
        },
    };
    let result = try_run(job, ready);
    job.attempt.detach();
    // Every process of the jail is gone once the jailer is reaped, so the
    // pipes are at EOF, unless a set-up error left no jail at all.
    let failures = capture.finish();
    let mut result = match result {
        Ok(r) => r,
        Err(f) => return f.into_result(),
    };
    if !failures.is_empty() {
        // The node ran, but what it printed is not all there: fail it, so
        // nothing downstream proceeds on output no one can read. It was
        // stopped at the first byte that could not be stored.
        let lost = failures.iter().map(ToString::to_string).collect::<Vec<_>>();
        let ran = result
            .reason
            .take()
            .unwrap_or_else(|| "it succeeded".into());
        let full = failures.iter().any(super::output::StoreFailure::disk_full);
        let stop = if stopped.load(std::sync::atomic::Ordering::SeqCst) {
            "; the node was stopped"
        } else {
            ""
        };
        result.state = NodeState::Failed;
        result.reason = Some(format!(
            "{}{}{stop}; the node itself: {ran}",
            if full { "" } else { "supervisor: " },
            lost.join("; ")
        ));
    }
    result
}

impl Failure {
    fn into_result(self) -> NodeResult {
        match self {
            Failure::Refused(reason) => NodeResult::not_run(NodeState::Refused, reason),
            Failure::Cancelled => {
                NodeResult::not_run(NodeState::Cancelled, "cancelled before it started".into())
            }
            Failure::NotRecorded => NodeResult::not_run(
                NodeState::Failed,
                "supervisor: its running state could not be stored, so it was not started".into(),
            ),
            Failure::CancelledAtStart => NodeResult::not_run(
                NodeState::Cancelled,
                "cancelled as it started (its request had reached the jailer)".into(),
            ),
            Failure::Internal(e) => NodeResult::not_run(
                NodeState::Failed,
                format!("supervisor: {}", crate::error::error_chain(&e)),
            ),
        }
    }
}

/// The last plan compiled and what it was compiled from. Compiling is a
/// pure function of these (`aiops_policy::compile`), the nodes of a flow
/// mostly share a profile and capabilities, and it took ~0.1 ms of every
/// node's start. The profile is compared by identity: a run holds its
/// profiles loaded once, and a reload makes a new one.
#[derive(Default)]
pub struct PlanMemo {
    last: std::sync::Mutex<Option<Memo>>,
}

struct Memo {
    profile: Arc<Profile>,
    caps: NodeCaps,
    facts: HostFacts,
    ctx: aiops_policy::CompileContext,
    eff: Arc<aiops_policy::caps::Effective>,
    plan: Arc<aiops_policy::JailPlan>,
}

type Compiled = (
    Arc<aiops_policy::caps::Effective>,
    Arc<aiops_policy::JailPlan>,
);

impl PlanMemo {
    /// The plan for these inputs: the memo's, else one compile from the
    /// effective capabilities (admission's when `admitted` fits `ctx`).
    fn get_or_compile(
        &self,
        profile: &Arc<Profile>,
        caps: &NodeCaps,
        facts: &HostFacts,
        ctx: aiops_policy::CompileContext,
        admitted: Option<&AdmittedCaps>,
    ) -> Result<Compiled, Failure> {
        let lock = || {
            self.last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(m) = lock().as_ref().filter(|m| {
            Arc::ptr_eq(&m.profile, profile) && m.caps == *caps && m.facts == *facts && m.ctx == ctx
        }) {
            return Ok((m.eff.clone(), m.plan.clone()));
        }
        let refuse = |e: &dyn std::error::Error| Failure::Refused(crate::error::error_chain(e));
        let eff = match admitted.filter(|a| *a.vars == ctx.vars) {
            Some(a) => a.effective.clone(),
            None => Arc::new(
                aiops_policy::caps::effective(profile, caps, &ctx.vars).map_err(|e| refuse(&e))?,
            ),
        };
        let plan = Arc::new(
            aiops_policy::compile::compile_effective(&eff, facts, &ctx).map_err(|e| refuse(&e))?,
        );
        *lock() = Some(Memo {
            profile: profile.clone(),
            caps: caps.clone(),
            facts: facts.clone(),
            ctx,
            eff: eff.clone(),
            plan: plan.clone(),
        });
        Ok((eff, plan))
    }
}

/// A jailer already started (a spare, see `warm`), or the output ends
/// for one to start now.
enum Ready {
    Spare(exec::PendingJail, crate::egress::EgressChannel),
    Fresh(super::output::JailEnds),
}

enum Launch<'a> {
    Child(exec::PendingJail),
    Socket(&'a std::path::Path, JailStdio, exec::JailerFds),
}

enum Failure {
    Refused(String),
    /// The store did not take the node's `running` state: nothing was sent.
    NotRecorded,
    Cancelled,
    CancelledAtStart,
    Internal(SupervisorError),
}

impl From<SupervisorError> for Failure {
    fn from(e: SupervisorError) -> Self {
        Failure::Internal(e)
    }
}

fn try_run(job: &NodeJob, ready: Ready) -> Result<NodeResult, Failure> {
    // Local mode starts the jailer first (or found one started), so its
    // start-up overlaps the compile.
    let (egress, launch) = match ready {
        Ready::Spare(pending, egress) => (egress, Launch::Child(pending)),
        Ready::Fresh(output) => {
            // Every jail is offered the egress socket; only an allowlist plan keeps it.
            let (egress, jail_end) = crate::egress::channel()?;
            let fds = exec::JailerFds {
                egress: Some(jail_end),
            };
            let stdio = JailStdio::Files {
                stdout: output.stdout,
                stderr: output.stderr,
            };
            let launch = match &job.jailer {
                super::JailerTarget::Exec(path) => {
                    Launch::Child(exec::spawn_jailer_with_fds(path, stdio, fds)?)
                }
                super::JailerTarget::Socket(socket) => Launch::Socket(socket, stdio, fds),
            };
            (egress, launch)
        }
    };
    // A local jailer run by root runs the node as the workspace owner, whose
    // home `$HOME` is; the socket's jailer.toml fixes it.
    let home = match &job.jailer {
        super::JailerTarget::Exec(_) => crate::context::Home::JailUser,
        super::JailerTarget::Socket(_) => crate::context::Home::Invoker,
    };
    let ctx = crate::context::host_context(Some(&job.workspace), Some(&job.workspace), home)?;
    let (eff, plan) = job.plans.get_or_compile(
        &job.profile,
        &job.caps,
        &job.facts,
        ctx,
        job.admitted.as_ref(),
    )?;
    if !job.attempt.wait_recorded() {
        if job.attempt.cancelled() {
            return Err(Failure::Cancelled);
        }
        return Err(Failure::NotRecorded);
    }
    // The egress proxy runs in the supervisor's process tree, outside the jail.
    let (jail, proxy) = match launch {
        Launch::Child(pending) => {
            // Attached before the request is sent: a cancel from here on
            // stops the jailer, one before it leaves the jail unrun.
            if !job.attempt.attach(pending.stopper()) {
                return Err(Failure::Cancelled);
            }
            let proxy = egress.start_for(&plan)?;
            (pending.start(&job.node, &job.argv, &plan)?, proxy)
        }
        Launch::Socket(socket, stdio, fds) => {
            let jail = exec::socket::start_with(socket, &stdio, &fds, &job.node, &job.argv, &plan)?;
            // The jailer has its copies now.
            drop((stdio, fds));
            if !job.attempt.attach(jail.stopper()) {
                jail.kill();
                return Err(Failure::CancelledAtStart);
            }
            match egress.start_for(&plan) {
                Ok(proxy) => (jail, proxy),
                Err(e) => {
                    jail.kill();
                    return Err(e.into());
                }
            }
        }
    };
    let mut report = jail.wait_with(|exec::JailEvent::Exited| {
        let _ = job.events.send(RunnerEvent::Exited {
            run: job.run.clone(),
            node: job.node.clone(),
        });
    })?;
    report.egress = proxy.map(crate::egress::EgressHandle::finish);
    report.cwd = plan.cwd.to_string();
    Ok(classify(&report, caps_summary(&eff)))
}

fn classify(r: &ExecReport, capabilities: serde_json::Value) -> NodeResult {
    let mut res = NodeResult {
        state: NodeState::Failed,
        reason: None,
        outcome: None,
        cwd: Some(r.cwd.clone()),
        capabilities: Some(capabilities),
        limit_hits: vec![],
        egress: r.egress.as_ref().and_then(|e| serde_json::to_value(e).ok()),
        denials: r
            .exit
            .as_ref()
            .and_then(|_| serde_json::to_value(&r.denials).ok()),
    };
    if let Some(p) = &r.protocol_error {
        res.reason = Some(format!("protocol error from the jail: {p}"));
        return res;
    }
    if let Some(f) = &r.setup_failed {
        // A layer the host cannot give is a refusal; anything later is a failure.
        if f.step == aiops_proto::Step::Validate {
            res.state = NodeState::Refused;
        }
        res.reason = Some(format!(
            "jail set-up failed at {}: {}",
            f.step,
            f.message_with_errno()
        ));
        return res;
    }
    let Some(e) = &r.exit else {
        res.reason = Some(format!(
            "the jail ended without a report (status {})",
            r.status
        ));
        return res;
    };
    res.outcome = Some(e.clone());
    if e.timed_out {
        res.limit_hits.push("timeout".into());
    }
    if e.output_capped {
        res.limit_hits.push("output_cap".into());
    }
    let mut notes = r.protected_notes();
    let verdict = match (e.code, e.signal) {
        _ if e.timed_out => Some(format!("timed out after {} ms", e.duration_ms)),
        _ if e.output_capped => Some(r.output_cap_text()),
        (Some(0), _) => None,
        (Some(c), _) => Some(format!("exit code {c}")),
        (None, Some(s)) => Some(format!("killed by signal {s}")),
        (None, None) => Some("no exit status".to_string()),
    };
    match verdict {
        None => res.state = NodeState::Succeeded,
        Some(v) => notes.insert(0, v),
    }
    if !notes.is_empty() {
        res.reason = Some(notes.join("; "));
    }
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Same inputs: the very same plan; any input changed: a fresh compile.
    #[test]
    fn the_plan_memo_reuses_only_for_identical_inputs() {
        let loader = aiops_policy::ProfileLoader::standard(
            None,
            crate::locate::dev_profiles_dir().as_deref(),
        );
        let profile = Arc::new(loader.load("restrictive").unwrap());
        let facts = HostFacts::linux(7);
        let ctx = crate::context::neutral_context().unwrap();
        let memo = PlanMemo::default();
        let caps = NodeCaps::default();
        let get = |p: &Arc<Profile>, c: &NodeCaps, f: &HostFacts| match memo.get_or_compile(
            p,
            c,
            f,
            ctx.clone(),
            None,
        ) {
            Ok((_, plan)) => plan,
            Err(_) => panic!("compile failed"),
        };
        let a = get(&profile, &caps, &facts);
        assert!(Arc::ptr_eq(&a, &get(&profile, &caps, &facts)));
        // The same profile loaded again is another profile.
        let reloaded = Arc::new(loader.load("restrictive").unwrap());
        assert!(!Arc::ptr_eq(&a, &get(&reloaded, &caps, &facts)));
        let older = HostFacts::linux(6);
        let b = get(&reloaded, &caps, &older);
        assert_ne!(b.landlock.as_ref().unwrap().abi, 7);
        let mut other = ctx.clone();
        other.host_env.insert("AIOPS_MEMO_TEST".into(), "1".into());
        let c = match memo.get_or_compile(&reloaded, &caps, &older, other, None) {
            Ok((_, plan)) => plan,
            Err(_) => panic!("compile failed"),
        };
        assert!(!Arc::ptr_eq(&b, &c));
    }

    /// Admission's effective capabilities are compiled from when the
    /// runner's path variables are the ones admission used, else
    /// recomputed from the runner's.
    #[test]
    fn the_runner_compiles_from_admissions_capabilities_only_for_the_same_vars() {
        let loader = aiops_policy::ProfileLoader::standard(
            None,
            crate::locate::dev_profiles_dir().as_deref(),
        );
        let profile = Arc::new(loader.load("restrictive").unwrap());
        let caps = NodeCaps::default();
        let facts = HostFacts::linux(7);
        let ctx = crate::context::neutral_context().unwrap();
        let admitted = AdmittedCaps {
            vars: Arc::new(ctx.vars.clone()),
            effective: Arc::new(aiops_policy::caps::effective(&profile, &caps, &ctx.vars).unwrap()),
        };
        let eff = |ctx: &aiops_policy::CompileContext| match PlanMemo::default().get_or_compile(
            &profile,
            &caps,
            &facts,
            ctx.clone(),
            Some(&admitted),
        ) {
            Ok((eff, _)) => eff,
            Err(_) => panic!("compile failed"),
        };
        assert!(Arc::ptr_eq(&eff(&ctx), &admitted.effective));
        let mut elsewhere = ctx.clone();
        elsewhere.vars.tmpdir = Some(aiops_policy::AbsPath::new("/var/tmp").unwrap());
        let fresh = eff(&elsewhere);
        assert!(!Arc::ptr_eq(&fresh, &admitted.effective));
        assert_eq!(
            *fresh,
            aiops_policy::caps::effective(&profile, &caps, &elsewhere.vars).unwrap()
        );
    }
}
