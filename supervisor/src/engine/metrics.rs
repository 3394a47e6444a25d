//! `GET /metrics`: Prometheus text from the scheduler's counters, the
//! store's write failures, the audit writer's health and the egress
//! proxies' connection and refusal counters.
use super::Shared;
use crate::model::NodeState;
use std::sync::atomic::{AtomicU64, Ordering};

/// Failed state writes (a full disk, a broken database), for /metrics:
/// the in-memory state went on without them.
pub(super) static STORE_ERRORS: AtomicU64 = AtomicU64::new(0);

pub(super) fn metrics(shared: &Shared) -> String {
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
    let _ = writeln!(
        s,
        "# HELP aiops_state_writes_deferred_total State writes that waited for the store (full or locked disk)\n# TYPE aiops_state_writes_deferred_total counter\naiops_state_writes_deferred_total {}\n# HELP aiops_state_pending_writes State writes kept in memory, retried until the store takes them\n# TYPE aiops_state_pending_writes gauge\naiops_state_pending_writes {}",
        super::persist::DEFERRED.load(Ordering::Relaxed),
        shared.persist.pending()
    );
    crate::egress::TOTALS.render(&mut s);
    s
}
