//! `confirm` and `cancel`: an operator's answer to a node paused at the
//! destructive-operation gate, and stopping nodes (a running one through
//! `stop`).
use super::record::{node_audit, set_state, Out};
use super::sched::advance;
use super::stop::stop_jail;
use super::{RunMem, Shared};
use crate::model::{ApiFailure, NodeState};
use std::sync::Arc;

pub(super) fn confirm(shared: &Shared, run_id: &str, node: &str) -> Result<(), ApiFailure> {
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
    let r = inner
        .runs
        .get_mut(run_id)
        .ok_or_else(|| ApiFailure::NotFound(format!("no run {run_id:?}")))?;
    if r.state.is_final() {
        // Over in memory; its final state still waits for the store.
        return Err(ApiFailure::Conflict(format!(
            "run {run_id} already ended {}; its state is still being written to the store ({})",
            r.state,
            shared
                .persist
                .waiting_because()
                .unwrap_or_else(|| "retrying".into())
        )));
    }
    Ok(r)
}

/// The process that runs the engine was interrupted (a daemon-less
/// `aiopsctl run` got SIGINT/SIGTERM): every unfinished node of `run_id`
/// ends `cancelled` with `why` as its reason, a running one once its jail
/// is stopped. Unlike an operator's cancel there is no `cancel` audit line:
/// each node's one line is its `node_end`.
pub(super) fn interrupt(shared: &Arc<Shared>, run_id: &str, why: &str) {
    let mut out = Out::default();
    let mut inner = shared.inner();
    let Some(r) = inner.runs.get_mut(run_id) else {
        return; // already final
    };
    let targets: Vec<String> = r
        .order
        .iter()
        .filter(|id| r.nodes.get(*id).is_some_and(|n| !n.state.is_final()))
        .cloned()
        .collect();
    for id in targets {
        let Some(n) = r.nodes.get_mut(&id) else {
            continue;
        };
        n.cancel = true;
        n.cancel_reason = Some(why.to_string());
        if n.state == NodeState::Running {
            if let Some(stop) = n.attempt.as_ref().and_then(|a| a.cancel()) {
                stop_jail(shared, stop);
            }
        } else {
            n.dispatched = false;
            set_state(shared, run_id, r, &id, NodeState::Cancelled, Some(why));
        }
    }
    advance(shared, &mut inner, run_id, &mut out);
    drop(inner);
    out.flush(shared);
}

pub(super) fn cancel(
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
