//! Recording a state change: the store first, then the event (published
//! at once, under the lock that assigned its sequence number, so live
//! readers see events in order), then the audit line, handed to the writer
//! once the in-memory lock is released (an fsync must not stall the API).
use super::metrics::STORE_ERRORS;
use super::{RunMem, Shared};
use crate::audit::AuditRecord;
use crate::error::SupervisorError;
use crate::model::NodeState;
use std::sync::atomic::Ordering;

/// Audit lines a state change produced, handed to the writer once the
/// lock is released. Events are published at once, under the lock that
/// assigned their sequence numbers, so live readers see them in order.
#[derive(Default)]
pub(crate) struct Out {
    pub audit: Vec<AuditRecord>,
}

impl Out {
    pub fn flush(self, shared: &Shared) {
        for rec in self.audit {
            shared.audit(rec);
        }
    }
}

pub(super) fn log_store_error(e: &SupervisorError) {
    STORE_ERRORS.fetch_add(1, Ordering::Relaxed);
    tracing::error!(error = %crate::error::error_chain(e), "state store write failed");
}

/// A node's record for the audit, with what the run knows about it.
pub(super) fn node_audit(run_id: &str, r: &RunMem, node: &str, kind: &str) -> AuditRecord {
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
pub(super) fn set_state(
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
    shared.write(super::persist::Write::NodeState {
        run: run_id.to_string(),
        node: node.to_string(),
        state,
        reason: reason.map(str::to_string),
        recorded: None,
    });
}
