//! The scheduler: which node runs next, what a node's end means for the
//! nodes that need it, the gate, cancellation and restart recovery.
//! State changes are written to the store first, then published and
//! audited (after the in-memory lock is released: an fsync must not stall
//! the API).
use super::attempt::Attempt;
use super::runner::{self, NodeJob, NodeResult, RunnerEvent};
use super::{admission, lock, RunMem, Shared, Ws};
use crate::audit::AuditRecord;
use crate::error::SupervisorError;
use crate::exec::JailStop;
use crate::model::{ApiFailure, NodeState, RunState};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

/// Audit lines a state change produced, handed to the writer once the
/// lock is released. Events are published at once, under the lock that
/// assigned their sequence numbers, so live readers see them in order.
#[derive(Default)]
pub(crate) struct Out {
    audit: Vec<AuditRecord>,
}

impl Out {
    fn flush(self, shared: &Shared) {
        for rec in self.audit {
            shared.audit(rec);
        }
    }
}

/// A workspace made (or not) for a run.
struct WorkspaceDone {
    run: String,
    result: Result<PathBuf, String>,
}

fn log_store_error(e: &SupervisorError) {
    STORE_ERRORS.fetch_add(1, Ordering::Relaxed);
    tracing::error!(error = %crate::error::error_chain(e), "state store write failed");
}

/// Failed state writes (a full disk, a broken database), for /metrics:
/// the in-memory state went on without them.
static STORE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A node's record for the audit, with what the run knows about it.
fn node_audit(run_id: &str, r: &RunMem, node: &str, kind: &str) -> AuditRecord {
    let fnode = r.flow.node(node);
    let mem = r.nodes.get(node);
    AuditRecord {
        kind: kind.into(),
        run: Some(run_id.into()),
        flow: Some(r.flow.name.to_string()),
        node: Some(node.into()),
        state: mem.map(|m| m.state.as_str().to_string()),
        argv: fnode.map(|n| n.argv()).unwrap_or_default(),
        profile: fnode.map(|n| n.profile.clone()),
        attempt: mem.map(|m| m.attempts),
        findings: mem.map(|m| m.findings.clone()).unwrap_or_default(),
        pre_approved: r.pre_approved,
        ..AuditRecord::default()
    }
}

/// Set a node's state in memory and store, and publish its event.
fn set_state(
    shared: &Shared,
    run_id: &str,
    r: &mut RunMem,
    node: &str,
    state: NodeState,
    reason: Option<&str>,
) {
    if let Some(n) = r.nodes.get_mut(node) {
        n.state = state;
        if state == NodeState::Running {
            n.attempts += 1;
        }
    }
    match shared.store().set_node_state(run_id, node, state, reason) {
        Ok(ev) => shared.publish(ev),
        Err(e) => log_store_error(&e),
    }
}

fn derive_run_state(r: &RunMem) -> RunState {
    let states: Vec<NodeState> = r.nodes.values().map(|n| n.state).collect();
    if states.iter().all(|s| s.is_final()) {
        return if states.iter().all(|s| *s == NodeState::Succeeded) {
            RunState::Succeeded
        } else if states.contains(&NodeState::Cancelled) {
            RunState::Cancelled
        } else if states.contains(&NodeState::Lost) {
            RunState::Lost
        } else {
            RunState::Failed
        };
    }
    let active = r
        .nodes
        .values()
        .any(|n| n.state == NodeState::Running || n.dispatched);
    if active {
        RunState::Running
    } else if states.contains(&NodeState::AwaitingConfirmation) {
        RunState::AwaitingConfirmation
    } else if r
        .nodes
        .values()
        .any(|n| n.attempts > 0 || n.state.is_final())
    {
        RunState::Running
    } else {
        RunState::Queued
    }
}

/// Move a run forward: skip what cannot run, gate or queue what can, and
/// settle the run's state. Returns true if the run is final (and removed).
fn advance(shared: &Shared, inner: &mut super::Inner, run_id: &str, out: &mut Out) {
    let Some(r) = inner.runs.get_mut(run_id) else {
        return;
    };
    let ws_ready = matches!(r.ws, Ws::Ready(_));
    let mut ready = vec![];
    loop {
        let mut changed = false;
        // The nodes still waiting, in the run's order. This runs after every
        // node's end: walking the order with a map lookup per node was the
        // scheduler's largest cost in a 1,000-node flow.
        let mut waiting: Vec<(usize, String)> = r
            .nodes
            .iter()
            .filter(|(_, n)| n.state == NodeState::Queued && !n.dispatched)
            .map(|(id, n)| (n.pos, id.clone()))
            .collect();
        waiting.sort_unstable();
        for (_, id) in waiting {
            let Some(n) = r.nodes.get(&id) else { continue };
            let blocked = n.needs.iter().find_map(|need| {
                let s = r.nodes.get(need).map_or(NodeState::Skipped, |m| m.state);
                (s.is_final() && s != NodeState::Succeeded)
                    .then(|| format!("needs {need}, which ended {s}"))
            });
            if let Some(reason) = blocked {
                set_state(shared, run_id, r, &id, NodeState::Skipped, Some(&reason));
                let mut rec = node_audit(run_id, r, &id, "node_end");
                rec.reason = Some(reason);
                out.audit.push(rec);
                changed = true;
                continue;
            }
            let all_done = n.needs.iter().all(|need| {
                r.nodes
                    .get(need)
                    .is_some_and(|m| m.state == NodeState::Succeeded)
            });
            if !all_done || !ws_ready {
                continue;
            }
            if n.gated && !n.confirmed {
                if r.pre_approved {
                    let mut rec = node_audit(run_id, r, &id, "gate");
                    rec.state = Some("pre_approved".into());
                    rec.reason =
                        Some("approved in advance when the run was submitted (--yes)".into());
                    out.audit.push(rec);
                } else {
                    let reason = if n.findings.is_empty() {
                        "confirm = \"always\"".to_string()
                    } else {
                        n.findings.join("; ")
                    };
                    set_state(
                        shared,
                        run_id,
                        r,
                        &id,
                        NodeState::AwaitingConfirmation,
                        Some(&reason),
                    );
                    let mut rec = node_audit(run_id, r, &id, "gate");
                    rec.reason = Some(reason);
                    out.audit.push(rec);
                    changed = true;
                    continue;
                }
            }
            if let Some(n) = r.nodes.get_mut(&id) {
                n.confirmed = true;
                n.dispatched = true;
            }
            ready.push(id);
            changed = true;
        }
        if !changed {
            break;
        }
    }
    for id in ready {
        inner.ready.push_back((run_id.to_string(), id));
    }
    let Some(r) = inner.runs.get_mut(run_id) else {
        return;
    };
    let st = derive_run_state(r);
    if st != r.state {
        r.state = st;
        match shared.store().set_run_state(run_id, st) {
            Ok(ev) => shared.publish(ev),
            Err(e) => log_store_error(&e),
        }
    }
    if st.is_final() {
        inner.runs.remove(run_id);
    }
}

/// Restart recovery: audit the nodes `mark_lost` found, reload unfinished
/// runs, and let queued work continue.
pub(crate) fn recover(shared: &Shared, lost: &[(String, String)]) -> Result<(), SupervisorError> {
    let unfinished = shared.store().unfinished_runs()?;
    let mut out = Out::default();
    // Lines owed from before a crash: the node reached its final state in
    // the store, but its line may not have reached the disk. (The lost
    // nodes get theirs below.) A line that did make it appears twice;
    // better than none.
    for (run, n) in shared.store().unaudited()? {
        if lost.iter().any(|(r, id)| *r == run.id && *id == n.id) {
            continue;
        }
        out.audit.push(AuditRecord {
            kind: "node_end".into(),
            run: Some(run.id.clone()),
            flow: Some(run.flow.clone()),
            node: Some(n.id.clone()),
            state: Some(n.state.as_str().into()),
            reason: Some(match &n.reason {
                Some(r) => format!("{r} (line written after a restart)"),
                None => "line written after a restart".into(),
            }),
            argv: n.argv.clone(),
            profile: Some(n.profile.clone()),
            layers: n.layers.clone(),
            exit_code: n.exit_code,
            signal: n.signal,
            stdout_bytes: n.stdout_bytes,
            stderr_bytes: n.stderr_bytes,
            duration_ms: n.duration_ms,
            attempt: Some(n.attempts),
            findings: n.findings.clone(),
            pre_approved: run.pre_approved,
            ..AuditRecord::default()
        });
    }
    let mut inner = shared.inner();
    for (rec, flow_json) in unfinished {
        // First, whatever else happens to the run: a line for each lost node.
        for (_, node) in lost.iter().filter(|(r, _)| *r == rec.id) {
            let n = rec.nodes.iter().find(|n| n.id == *node);
            out.audit.push(AuditRecord {
                kind: "node_end".into(),
                run: Some(rec.id.clone()),
                flow: Some(rec.flow.clone()),
                node: Some(node.clone()),
                state: Some("lost".into()),
                reason: Some("the supervisor stopped while it was running; not re-run".into()),
                argv: n.map(|n| n.argv.clone()).unwrap_or_default(),
                profile: n.map(|n| n.profile.clone()),
                attempt: n.map(|n| n.attempts),
                pre_approved: rec.pre_approved,
                ..AuditRecord::default()
            });
        }
        let flow: Result<aiops_policy::flow::Flow, String> =
            serde_json::from_str(&flow_json).map_err(|e| format!("stored flow: {e}"));
        let admitted = flow.and_then(|f| admission::check_flow(shared, &rec.id, f));
        let mut mem = match admitted {
            Ok(p) => p.into_mem(rec.pre_approved),
            Err(reason) => {
                // The flow no longer checks out (a profile was removed or
                // narrowed): refuse what has not run, rather than guess.
                let reason = format!("after restart: {reason}");
                for n in rec.nodes.iter().filter(|n| !n.state.is_final()) {
                    match shared.store().set_node_state(
                        &rec.id,
                        &n.id,
                        NodeState::Refused,
                        Some(&reason),
                    ) {
                        Ok(ev) => shared.publish(ev),
                        Err(e) => log_store_error(&e),
                    }
                    out.audit.push(AuditRecord {
                        kind: "refusal".into(),
                        run: Some(rec.id.clone()),
                        flow: Some(rec.flow.clone()),
                        node: Some(n.id.clone()),
                        state: Some("refused".into()),
                        reason: Some(reason.clone()),
                        argv: n.argv.clone(),
                        profile: Some(n.profile.clone()),
                        ..AuditRecord::default()
                    });
                }
                let any_lost = rec.nodes.iter().any(|n| n.state == NodeState::Lost);
                let st = if any_lost {
                    RunState::Lost
                } else {
                    RunState::Failed
                };
                if let Ok(ev) = shared.store().set_run_state(&rec.id, st) {
                    shared.publish(ev);
                }
                continue;
            }
        };
        for n in &rec.nodes {
            if let Some(m) = mem.nodes.get_mut(&n.id) {
                m.attempts = n.attempts;
                // A node still at the gate waits there; one confirmed but not
                // yet started is queued again and asked again.
                m.state = n.state;
            }
        }
        mem.state = rec.state;
        mem.ws = match &rec.workspace {
            Some(p) if std::path::Path::new(p).is_dir() => Ws::Ready(PathBuf::from(p)),
            _ => Ws::Pending,
        };
        let pending = matches!(mem.ws, Ws::Pending);
        inner.runs.insert(rec.id.clone(), mem);
        if pending {
            inner.ws_queue.push_back(rec.id.clone());
        }
        advance(shared, &mut inner, &rec.id, &mut out);
    }
    drop(inner);
    out.flush(shared);
    Ok(())
}

pub(crate) async fn scheduler(shared: Arc<Shared>) {
    let mut workspaces: JoinSet<WorkspaceDone> = JoinSet::new();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    loop {
        start_workspaces(&shared, &mut workspaces);
        dispatch(&shared, &events_tx);
        tokio::select! {
            () = shared.wake.notified() => {}
            Some(done) = workspaces.join_next(), if !workspaces.is_empty() => match done {
                Ok(WorkspaceDone { run, result }) => workspace_done(&shared, &run, result),
                Err(e) => tracing::error!(error = %e, "a scheduler task failed"),
            },
            Some(ev) = events.recv() => match ev {
                // The node has ended: its slot goes to the next ready node
                // while this jail is torn down.
                RunnerEvent::Exited { run, node } => {
                    free_slot(&shared, &run, &node, true);
                }
                RunnerEvent::Done { run, node, result } => {
                    // Free the slot (unless the node's end already did) and
                    // start the next ready node before this one's
                    // bookkeeping: its jailer starts while we write.
                    free_slot(&shared, &run, &node, false);
                    dispatch(&shared, &events_tx);
                    node_done(&shared, &run, &node, *result);
                    shared.inner().settling -= 1;
                }
            },
        }
    }
}

/// Give back a running node's slot, once: at agentd's report of the node's
/// end, or when its task completes without one. Until the node is recorded
/// it is `settling`, which a drain still waits for. True if this call freed it.
fn free_slot(shared: &Shared, run: &str, node: &str, early: bool) -> bool {
    let mut inner = shared.inner();
    let n = inner.runs.get_mut(run).and_then(|r| r.nodes.get_mut(node));
    match n {
        Some(n) if n.slot_freed => return false,
        Some(n) => n.slot_freed = true,
        // Untracked: only the task's end, which always comes, frees it.
        None if early => return false,
        None => {}
    }
    inner.running = inner.running.saturating_sub(1);
    inner.settling += 1;
    true
}

fn start_workspaces(shared: &Arc<Shared>, tasks: &mut JoinSet<WorkspaceDone>) {
    if shared.draining.load(Ordering::SeqCst) {
        return;
    }
    let mut inner = shared.inner();
    while let Some(run) = inner.ws_queue.pop_front() {
        let Some(r) = inner.runs.get_mut(&run) else {
            continue;
        };
        if !matches!(r.ws, Ws::Pending) {
            continue;
        }
        r.ws = Ws::Creating;
        let flow = r.flow.clone();
        let sh = shared.clone();
        tasks.spawn(async move {
            let run2 = run.clone();
            let result = tokio::task::spawn_blocking(move || make_workspace(&sh, &flow, &run2))
                .await
                .unwrap_or_else(|e| Err(format!("workspace task: {e}")));
            WorkspaceDone { run, result }
        });
    }
}

/// The run's git workspace; as root, handed to nobody (a jail is never root).
fn make_workspace(
    shared: &Shared,
    flow: &aiops_policy::flow::Flow,
    run: &str,
) -> Result<PathBuf, String> {
    let aiops_policy::flow::RepoSource::Path(repo) = flow.resolve_repo();
    let chain = |e: &dyn std::error::Error| crate::error::error_chain(e);
    // Only called for a run with no recorded workspace: anything already
    // at its path is a half-made one from a crash, so start again.
    let path = shared
        .workspaces
        .workspace_path(flow.name.as_str(), run)
        .map_err(|e| chain(&e))?;
    if std::fs::symlink_metadata(&path).is_ok() {
        shared
            .workspaces
            .remove(flow.name.as_str(), run)
            .map_err(|e| chain(&e))?;
    }
    let ws = shared
        .workspaces
        .create(
            flow.name.as_str(),
            run,
            &repo,
            flow.workspace.git_ref.as_str(),
        )
        .map_err(|e| chain(&e))?;
    if nix::unistd::geteuid().is_root() {
        if let Some(flow_dir) = ws.path.parent() {
            super::set_mode(flow_dir, 0o711).map_err(|e| chain(&e))?;
        }
        super::chown_tree(&ws.path, super::JAIL_NOBODY)
            .map_err(|e| format!("hand the workspace to uid {}: {e}", super::JAIL_NOBODY))?;
        // Its owner (the jail's uid) only: not readable by other users.
        super::set_mode(&ws.path, 0o700).map_err(|e| chain(&e))?;
    }
    if !nix::unistd::geteuid().is_root()
        && matches!(shared.cfg.jailer, super::JailerTarget::Socket(_))
    {
        // The jail is another user in the root's group (system mode; as
        // root the tree was handed to the jail's uid above instead).
        if let Some(flow_dir) = ws.path.parent() {
            super::set_mode(flow_dir, 0o2770).map_err(|e| chain(&e))?;
        }
        super::share_with_group(&ws.path)
            .map_err(|e| format!("share the workspace with the jail's group: {e}"))?;
    }
    // Recorded once it is complete: a restart reuses only a finished one.
    if let Err(e) =
        shared
            .store()
            .set_run_workspace(run, &ws.path.display().to_string(), &ws.commit)
    {
        log_store_error(&e);
    }
    Ok(ws.path)
}

fn workspace_done(shared: &Shared, run_id: &str, result: Result<PathBuf, String>) {
    let mut out = Out::default();
    let mut inner = shared.inner();
    let Some(r) = inner.runs.get_mut(run_id) else {
        return;
    };
    match result {
        Ok(p) => r.ws = Ws::Ready(p),
        Err(reason) => {
            r.ws = Ws::Pending;
            let reason = format!("workspace_failed: {reason}");
            for id in r.order.clone() {
                if r.nodes.get(&id).is_some_and(|n| !n.state.is_final()) {
                    set_state(
                        shared,
                        run_id,
                        r,
                        &id,
                        NodeState::WorkspaceFailed,
                        Some(&reason),
                    );
                    let mut rec = node_audit(run_id, r, &id, "node_end");
                    rec.reason = Some(reason.clone());
                    out.audit.push(rec);
                }
            }
        }
    }
    advance(shared, &mut inner, run_id, &mut out);
    drop(inner);
    out.flush(shared);
}

fn dispatch(shared: &Arc<Shared>, events: &UnboundedSender<RunnerEvent>) {
    if shared.draining.load(Ordering::SeqCst) {
        return;
    }
    loop {
        let job = {
            let mut inner = shared.inner();
            if inner.running >= shared.cfg.parallelism.max(1) {
                return;
            }
            // FIFO, except that a run at its own `parallelism` lets the
            // next run's nodes go first.
            let at_cap = |inner: &super::Inner, run: &str| {
                inner.runs.get(run).is_some_and(|r| {
                    r.flow.parallelism.is_some_and(|p| {
                        let running = r
                            .nodes
                            .values()
                            .filter(|n| n.state == NodeState::Running)
                            .count();
                        running >= p.get() as usize
                    })
                })
            };
            let Some(pos) = inner.ready.iter().position(|(r, _)| !at_cap(&inner, r)) else {
                return;
            };
            let Some((run_id, node)) = inner.ready.remove(pos) else {
                return;
            };
            let Some(job) = make_job(shared, &mut inner, &run_id, &node, events) else {
                continue;
            };
            inner.running += 1;
            job
        };
        let attempt = job.attempt.clone();
        let (run, node) = (job.run.clone(), job.node.clone());
        let events = events.clone();
        tokio::spawn(async move {
            let (run, node) = (job.run.clone(), job.node.clone());
            let events = job.events.clone();
            let result = tokio::task::spawn_blocking(move || runner::run_node(&job))
                .await
                .unwrap_or_else(|e| NodeResult {
                    state: NodeState::Failed,
                    reason: Some(format!("supervisor: node task: {e}")),
                    outcome: None,
                    cwd: None,
                    capabilities: None,
                    limit_hits: vec![],
                    egress: None,
                });
            let _ = events.send(RunnerEvent::Done {
                run,
                node,
                result: Box::new(result),
            });
        });
        drop(events);
        // Stored while the runner claims its jailer and compiles the plan;
        // it sends no request before this (see `Attempt::wait_recorded`).
        attempt.set_recorded(record_running(shared, &run, &node));
    }
}

/// The store's half of `make_job`'s move to `running`. False if the store
/// refused it: the runner then sends no request and the node fails.
fn record_running(shared: &Shared, run_id: &str, node: &str) -> bool {
    match shared
        .store()
        .set_node_state(run_id, node, NodeState::Running, None)
    {
        Ok(ev) => {
            shared.publish(ev);
            true
        }
        Err(e) => {
            log_store_error(&e);
            false
        }
    }
}

/// Mark the node running and build its job; None if it is no longer runnable.
fn make_job(
    shared: &Shared,
    inner: &mut super::Inner,
    run_id: &str,
    node: &str,
    events: &UnboundedSender<RunnerEvent>,
) -> Option<NodeJob> {
    let r = inner.runs.get_mut(run_id)?;
    let n = r.nodes.get(node)?;
    if n.state != NodeState::Queued || !n.dispatched || n.cancel {
        return None;
    }
    let Ws::Ready(ws) = r.ws.clone() else {
        return None;
    };
    let fnode = r.flow.node(node)?.clone();
    let profile = r.profiles.get(&fnode.profile)?.clone();
    let facts = {
        let cg = profile
            .require
            .iter()
            .any(|q| q.to_string().starts_with("cgroup"));
        let mut cache = lock(&shared.facts);
        cache
            .entry(cg)
            .or_insert_with(|| crate::facts::facts_for(&profile))
            .clone()
    };
    let dir = shared.run_dir(run_id);
    if !r.dir_ready {
        match crate::store::private_dir(&dir) {
            Ok(()) => r.dir_ready = true,
            // The node then fails storing its output, and says so.
            Err(e) => log_store_error(&e),
        }
    }
    let attempt = Arc::new(Attempt::default());
    if let Some(n) = r.nodes.get_mut(node) {
        n.attempt = Some(attempt.clone());
        // A retry runs in a slot of its own.
        n.slot_freed = false;
        // Stored by `dispatch` once the job is on its way (`record_running`).
        n.state = NodeState::Running;
        n.attempts += 1;
    }
    Some(NodeJob {
        run: run_id.to_string(),
        node: node.to_string(),
        argv: fnode.argv(),
        profile,
        caps: fnode.caps(),
        workspace: ws,
        jailer: shared.cfg.jailer.clone(),
        warm: shared.warm.clone(),
        plans: shared.plans.clone(),
        facts,
        out: dir.join(node),
        attempt,
        events: events.clone(),
    })
}

fn node_done(shared: &Shared, run_id: &str, node: &str, mut res: NodeResult) {
    let mut out = Out::default();
    let mut inner = shared.inner();
    let draining = shared.draining.load(Ordering::SeqCst);
    let Some(r) = inner.runs.get_mut(run_id) else {
        return;
    };
    let Some(n) = r.nodes.get_mut(node) else {
        return;
    };
    n.attempt = None;
    n.dispatched = false;
    let (cancelled, attempts, retries) = (n.cancel, n.attempts, n.retries);
    if cancelled && res.state != NodeState::Succeeded {
        res.state = NodeState::Cancelled;
        let why = if draining {
            "the supervisor is shutting down"
        } else {
            "cancelled on request"
        };
        res.reason = Some(match res.reason {
            Some(r) => format!("{why} ({r})"),
            None => why.to_string(),
        });
    }
    let retry = res.state == NodeState::Failed && attempts <= retries && !cancelled;
    if let Err(e) = shared
        .store()
        .record_outcome(run_id, node, res.outcome.as_ref())
    {
        log_store_error(&e);
    }
    let mut rec = node_audit(run_id, r, node, "node_end");
    rec.state = Some(res.state.as_str().to_string());
    rec.reason = res.reason.clone();
    rec.cwd = res.cwd.clone();
    rec.capabilities = res.capabilities.clone();
    if let Some(o) = &res.outcome {
        rec.layers = o.layers.clone();
        rec.exit_code = o.code;
        rec.signal = o.signal;
        rec.stdout_bytes = o.stdout_bytes;
        rec.stderr_bytes = o.stderr_bytes;
        rec.duration_ms = Some(o.duration_ms);
    }
    rec.limit_hits = res.limit_hits.clone();
    rec.egress = res.egress.clone();
    out.audit.push(rec);
    if retry {
        let reason = format!(
            "attempt {attempts} failed ({}); retrying",
            res.reason.as_deref().unwrap_or("failed")
        );
        if let Some(n) = r.nodes.get_mut(node) {
            n.dispatched = true;
        }
        set_state(shared, run_id, r, node, NodeState::Queued, Some(&reason));
        inner
            .ready
            .push_back((run_id.to_string(), node.to_string()));
    } else {
        set_state(shared, run_id, r, node, res.state, res.reason.as_deref());
        *inner.finished.entry(res.state.as_str()).or_default() += 1;
    }
    advance(shared, &mut inner, run_id, &mut out);
    drop(inner);
    out.flush(shared);
}

pub(crate) fn confirm(shared: &Shared, run_id: &str, node: &str) -> Result<(), ApiFailure> {
    let mut out = Out::default();
    let mut inner = shared.inner();
    let r = runnable(shared, &mut inner, run_id)?;
    let n = r
        .nodes
        .get_mut(node)
        .ok_or_else(|| ApiFailure::NotFound(format!("run {run_id} has no node {node:?}")))?;
    if n.state != NodeState::AwaitingConfirmation {
        return Err(ApiFailure::Conflict(format!(
            "node {node} is {}, not awaiting_confirmation",
            n.state
        )));
    }
    n.confirmed = true;
    set_state(
        shared,
        run_id,
        r,
        node,
        NodeState::Queued,
        Some("confirmed"),
    );
    let mut rec = node_audit(run_id, r, node, "gate");
    rec.state = Some("confirmed".into());
    out.audit.push(rec);
    advance(shared, &mut inner, run_id, &mut out);
    drop(inner);
    out.flush(shared);
    Ok(())
}

/// The in-memory run, or why it cannot be acted on.
fn runnable<'a>(
    shared: &Shared,
    inner: &'a mut super::Inner,
    run_id: &str,
) -> Result<&'a mut RunMem, ApiFailure> {
    if !inner.runs.contains_key(run_id) {
        return Err(match shared.store().run(run_id) {
            Ok(Some(r)) => ApiFailure::Conflict(format!("run {run_id} is already {}", r.state)),
            Ok(None) => ApiFailure::NotFound(format!("no run {run_id:?}")),
            Err(e) => ApiFailure::Internal(crate::error::error_chain(&e)),
        });
    }
    inner
        .runs
        .get_mut(run_id)
        .ok_or_else(|| ApiFailure::NotFound(format!("no run {run_id:?}")))
}

pub(crate) fn cancel(
    shared: &Arc<Shared>,
    run_id: &str,
    node: Option<&str>,
) -> Result<(), ApiFailure> {
    let mut out = Out::default();
    let mut inner = shared.inner();
    let r = runnable(shared, &mut inner, run_id)?;
    let targets: Vec<String> = match node {
        Some(id) => {
            let n = r
                .nodes
                .get(id)
                .ok_or_else(|| ApiFailure::NotFound(format!("run {run_id} has no node {id:?}")))?;
            if n.state.is_final() {
                return Err(ApiFailure::Conflict(format!(
                    "node {id} is already {}",
                    n.state
                )));
            }
            vec![id.to_string()]
        }
        None => r
            .order
            .iter()
            .filter(|id| r.nodes.get(*id).is_some_and(|n| !n.state.is_final()))
            .cloned()
            .collect(),
    };
    for id in targets {
        let Some(n) = r.nodes.get_mut(&id) else {
            continue;
        };
        n.cancel = true;
        if n.state == NodeState::Running {
            if let Some(stop) = n.attempt.as_ref().and_then(|a| a.cancel()) {
                stop_jail(shared, stop);
            }
        } else {
            n.dispatched = false;
            set_state(
                shared,
                run_id,
                r,
                &id,
                NodeState::Cancelled,
                Some("cancelled on request"),
            );
        }
        let mut rec = node_audit(run_id, r, &id, "cancel");
        rec.reason = Some("cancelled on request".into());
        out.audit.push(rec);
    }
    advance(shared, &mut inner, run_id, &mut out);
    drop(inner);
    out.flush(shared);
    Ok(())
}

/// SIGTERM to the jailer (it passes it to agentd and the node), SIGKILL
/// after the grace period (the jail dies with the jailer through
/// PR_SET_PDEATHSIG). `JailStop` signals only a jailer not yet reaped, so
/// the late SIGKILL never reaches a reused pid.
fn stop_jail(shared: &Shared, stop: JailStop) {
    if !stop.stop() {
        return;
    }
    let Ok(h) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let grace = shared.cfg.kill_grace;
    h.spawn(async move {
        tokio::time::sleep(grace).await;
        stop.kill();
    });
}

pub(crate) fn kill_running(shared: &Arc<Shared>, why: &str) {
    let mut inner = shared.inner();
    for (run_id, r) in &mut inner.runs {
        for (id, n) in &mut r.nodes {
            if n.state == NodeState::Running {
                n.cancel = true;
                if let Some(stop) = n.attempt.as_ref().and_then(|a| a.cancel()) {
                    tracing::warn!(run = %run_id, node = %id, why, "stopping a running jail");
                    stop_jail(shared, stop);
                }
            }
        }
    }
}

pub(crate) fn metrics(shared: &Shared) -> String {
    use std::fmt::Write;
    let inner = shared.inner();
    let mut s = String::new();
    let mut gauge = |name: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    let count = |st: NodeState| {
        inner
            .runs
            .values()
            .flat_map(|r| r.nodes.values())
            .filter(|n| n.state == st)
            .count() as u64
    };
    gauge(
        "aiops_ready",
        "1 when the supervisor accepts work",
        u64::from(shared.ready.load(Ordering::SeqCst)),
    );
    gauge(
        "aiops_nodes_running",
        "Nodes in a jail now",
        inner.running as u64,
    );
    gauge(
        "aiops_nodes_queued",
        "Nodes waiting to run",
        count(NodeState::Queued),
    );
    gauge(
        "aiops_nodes_awaiting_confirmation",
        "Nodes paused at the destructive-operation gate",
        count(NodeState::AwaitingConfirmation),
    );
    gauge(
        "aiops_runs_active",
        "Runs not yet final",
        inner.runs.len() as u64,
    );
    gauge(
        "aiops_uptime_seconds",
        "Seconds since the engine started",
        shared.started_at.elapsed().as_secs(),
    );
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096);
    gauge(
        "aiops_resident_bytes",
        "Resident memory of the supervisor",
        rss,
    );
    let _ = writeln!(
        s,
        "# HELP aiops_runs_submitted_total Runs accepted since start\n# TYPE aiops_runs_submitted_total counter\naiops_runs_submitted_total {}",
        inner.submitted
    );
    let _ = writeln!(s, "# HELP aiops_nodes_finished_total Nodes that reached a final state since start\n# TYPE aiops_nodes_finished_total counter");
    let mut fin: Vec<_> = inner.finished.iter().collect();
    fin.sort();
    for (state, n) in fin {
        let _ = writeln!(s, "aiops_nodes_finished_total{{state=\"{state}\"}} {n}");
    }
    drop(inner);
    let (write_errors, pending) = shared.audit.health();
    let _ = writeln!(
        s,
        "# HELP aiops_store_write_errors_total Failed state database writes\n# TYPE aiops_store_write_errors_total counter\naiops_store_write_errors_total {}",
        STORE_ERRORS.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        s,
        "# HELP aiops_audit_write_errors_total Failed audit appends (lines are kept and retried)\n# TYPE aiops_audit_write_errors_total counter\naiops_audit_write_errors_total {}\n# HELP aiops_audit_pending_lines Audit lines not yet on disk\n# TYPE aiops_audit_pending_lines gauge\naiops_audit_pending_lines {}",
        write_errors,
        pending
    );
    s
}
