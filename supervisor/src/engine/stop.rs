//! Stopping running jails: SIGTERM, then SIGKILL after `kill_grace`, for
//! a cancel or a drain. Which pid may still be signalled is `JailStop`'s
//! to know (exec/jail.rs): it forgets the jailer before it is reaped.
use super::Shared;
use crate::exec::JailStop;
use crate::model::NodeState;
use std::sync::Arc;

/// SIGTERM to the jailer (it passes it to agentd and the node), SIGKILL
/// after the grace period (the jail dies with the jailer through
/// PR_SET_PDEATHSIG). `JailStop` signals only a jailer not yet reaped, so
/// the late SIGKILL never reaches a reused pid.
pub(super) fn stop_jail(shared: &Shared, stop: JailStop) {
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

/// Stop every running jail; `reason`, if given, is what the nodes' records
/// say (else the drain's or a cancel's default), and a node already
/// cancelled (its jail being stopped) is left alone rather than sent a
/// second SIGTERM.
pub(super) fn kill_running(shared: &Arc<Shared>, why: &str, reason: Option<&str>) {
    let mut inner = shared.inner();
    for (run_id, r) in &mut inner.runs {
        for (id, n) in &mut r.nodes {
            if n.state == NodeState::Running && !(n.cancel && reason.is_some()) {
                n.cancel = true;
                if let Some(reason) = reason {
                    n.cancel_reason.get_or_insert_with(|| reason.to_string());
                }
                if let Some(stop) = n.attempt.as_ref().and_then(|a| a.cancel()) {
                    tracing::warn!(run = %run_id, node = %id, why, "stopping a running jail");
                    stop_jail(shared, stop);
                }
            }
        }
    }
}
