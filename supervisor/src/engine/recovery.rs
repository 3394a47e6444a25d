//! Restart recovery: the nodes that were running when the supervisor
//! stopped are `lost` (never re-run silently), audit lines owed from
//! before a crash are written, and unfinished runs are reloaded.
use super::admission;
use super::record::Out;
use super::sched::advance;
use super::{Shared, Ws};
use crate::audit::AuditRecord;
use crate::error::SupervisorError;
use crate::model::{NodeState, RunState};
use std::path::PathBuf;

/// Nodes stored as `running` whose `node_end` line for that attempt is in
/// the audit log: the store is brought to what the line says (state,
/// reason, exit status, counts), and the line is not owed again.
pub(super) fn settle_from_audit(
    store: &mut crate::store::Store,
    audit_dir: &std::path::Path,
) -> Result<usize, SupervisorError> {
    let running = store.running_nodes()?;
    let Some(first) = running.iter().map(|r| r.3).min() else {
        return Ok(0);
    };
    let since = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(first).unwrap_or(0))
        - std::time::Duration::from_secs(1);
    let q = crate::audit::Query {
        since: Some(since),
        run: None,
    };
    let lines = match crate::audit::read(audit_dir, &q) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "reading the audit log for nodes that ended; they are recorded lost");
            return Ok(0);
        }
    };
    let mut settled = 0;
    for (run, node, attempts, _) in running {
        let Some(line) = lines.iter().rev().find(|l| {
            l.kind == "node_end"
                && l.run.as_deref() == Some(run.as_str())
                && l.node.as_deref() == Some(node.as_str())
                && l.attempt == Some(attempts)
        }) else {
            continue;
        };
        let Some(state) = line
            .state
            .as_deref()
            .and_then(NodeState::parse)
            .filter(|s| s.is_final())
        else {
            continue;
        };
        let report = line.duration_ms.map(|d| aiops_proto::ExitReport {
            code: line.exit_code,
            signal: line.signal,
            stdout_bytes: line.stdout_bytes,
            stderr_bytes: line.stderr_bytes,
            duration_ms: d,
            timed_out: line.limit_hits.iter().any(|h| h == "timeout"),
            output_capped: line.limit_hits.iter().any(|h| h == "output_cap"),
            layers: line.layers.clone(),
            ..aiops_proto::ExitReport::default()
        });
        store.record_outcome(&run, &node, report.as_ref())?;
        store.set_node_state(&run, &node, state, line.reason.as_deref())?;
        store.mark_audited(&[(
            run.clone(),
            node.clone(),
            state.as_str().to_string(),
            Some(attempts),
        )])?;
        tracing::warn!(run = %run, node = %node, state = %state, "a node's end was in the audit log but not in the store; recorded from the line");
        settled += 1;
    }
    Ok(settled)
}

/// The final-state lines of `owed` nodes already in the audit log (read
/// from the earliest owed node's end on; only after a crash).
fn already_written(
    shared: &Shared,
    owed: &[(crate::model::RunRecord, crate::model::NodeRecord)],
) -> std::collections::HashSet<crate::audit::Settled> {
    let Some(first) = owed.iter().filter_map(|(_, n)| n.ended_at).min() else {
        return Default::default();
    };
    let since = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(first).unwrap_or(0))
        - std::time::Duration::from_secs(1);
    let q = crate::audit::Query {
        since: Some(since),
        run: None,
    };
    match crate::audit::read(&shared.cfg.state_dir.join("audit"), &q) {
        Ok(lines) => lines
            .iter()
            .filter(|l| l.kind == "node_end")
            .filter_map(crate::audit::settles)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "reading the audit log for owed lines; they are written again");
            Default::default()
        }
    }
}

/// Restart recovery: audit the nodes `mark_lost` found, reload unfinished
/// runs, and let queued work continue.
pub(super) fn recover(shared: &Shared, lost: &[(String, String)]) -> Result<(), SupervisorError> {
    let unfinished = shared.store().unfinished_runs()?;
    let mut out = Out::default();
    // Lines owed from before a crash: the node reached its final state in
    // the store, but its line may not have reached the disk. (The lost
    // nodes get theirs below.) A line that did make it (the process died
    // between its fsync and the store's mark) is found in the log and not
    // written again, so each node keeps exactly one final line.
    let owed = shared.store().unaudited()?;
    let written = already_written(shared, &owed);
    for (run, n) in owed {
        if lost.iter().any(|(r, id)| *r == run.id && *id == n.id) {
            continue;
        }
        let key = (
            run.id.clone(),
            n.id.clone(),
            n.state.as_str().to_string(),
            Some(n.attempts),
        );
        if written.contains(&key) {
            shared.write(super::persist::Write::Audited(vec![key]));
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
                    shared.write(super::persist::Write::NodeState {
                        run: rec.id.clone(),
                        node: n.id.clone(),
                        state: NodeState::Refused,
                        reason: Some(reason.clone()),
                        recorded: None,
                    });
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
                shared.write(super::persist::Write::RunState {
                    run: rec.id.clone(),
                    state: st,
                });
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
