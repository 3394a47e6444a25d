//! The scheduler: which node runs next, at most `parallelism` at a time,
//! and what a node's end means for the nodes that need it. Its task waits
//! for a wake-up (a submit, confirm or cancel), a workspace made
//! (`workspace_prep`) or a `RunnerEvent` from a node's runner.
use super::attempt::Attempt;
use super::persist::Write;
use super::record::{log_store_error, node_audit, set_state, Out};
use super::runner::{self, NodeJob, NodeResult, RunnerEvent};
use super::workspace_prep::{start_workspaces, workspace_done, WorkspaceDone};
use super::{lock, RunMem, Shared, Ws};
use crate::model::{NodeState, RunState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

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
/// settle the run's state; a run that is final is removed.
pub(super) fn advance(shared: &Shared, inner: &mut super::Inner, run_id: &str, out: &mut Out) {
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
        shared.write(Write::RunState {
            run: run_id.to_string(),
            state: st,
        });
    }
    // A final run leaves memory once its state is stored (else the retry
    // thread removes it then): until then `cancel` and readers find it.
    if st.is_final() && !shared.persist.pending_for(run_id) {
        inner.runs.remove(run_id);
    }
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
/// it is `settling`, which a drain still waits for.
fn free_slot(shared: &Shared, run: &str, node: &str, early: bool) {
    let mut inner = shared.inner();
    let n = inner.runs.get_mut(run).and_then(|r| r.nodes.get_mut(node));
    match n {
        Some(n) if n.slot_freed => return,
        Some(n) => n.slot_freed = true,
        // Untracked: only the task's end, which always comes, frees it.
        None if early => return,
        None => {}
    }
    inner.running = inner.running.saturating_sub(1);
    inner.settling += 1;
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
        runner::spawn(job);
        // Stored while the runner claims its jailer and compiles the plan;
        // it sends no request before this (see `Attempt::wait_recorded`).
        // When the store cannot take it yet (a full or locked disk), the
        // runner waits until the retry thread stores it, or a cancel.
        shared.write(Write::NodeState {
            run,
            node,
            state: NodeState::Running,
            reason: None,
            recorded: Some(attempt),
        });
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
    let admitted = r
        .nodes
        .get(node)?
        .effective
        .clone()
        .map(|effective| runner::AdmittedCaps {
            vars: r.vars.clone(),
            effective,
        });
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
        admitted,
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
        let why = match &n.cancel_reason {
            Some(why) => why.clone(),
            None if draining => "the supervisor is shutting down".into(),
            None => "cancelled on request".into(),
        };
        res.reason = Some(match res.reason {
            Some(r) => format!("{why} ({r})"),
            None => why,
        });
    }
    let retry = res.state == NodeState::Failed && attempts <= retries && !cancelled;
    shared.write(Write::Outcome {
        run: run_id.to_string(),
        node: node.to_string(),
        report: res.outcome.clone(),
    });
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
    rec.denials = res.denials.clone();
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
