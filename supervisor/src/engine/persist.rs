//! State writes that survive a full or locked state disk. Every state
//! change the scheduler makes goes through `Persist::write`: it is applied
//! to the store at once when nothing is waiting; a write that fails with
//! SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY or SQLITE_LOCKED (the disk is
//! full, the database is locked by another process) is queued, and every
//! later write queues behind it, so the store sees them in order. A thread
//! of its own (`aiops-persist`) retries the queue with backoff (0.1 s,
//! doubling to 2 s) until it drains, then publishes the events it stored.
//!
//! Meanwhile the in-memory state is the truth: a run keeps its place in
//! memory until its final state is stored (so `cancel` still finds it),
//! and readers see the store's record with the queued writes laid over it
//! (`overlay`). Why not give up after a while: the node really did end the
//! way memory says, and a restart would otherwise record it `lost` with a
//! false reason next to its `node_end` audit line.
//!
//! The same thread checks, every `CHECK_EVERY` and before each write,
//! that `state.db` is still the file the store opened (device and inode):
//! one deleted under the engine is restored from the open copy; one
//! replaced by another file is left alone, the engine moves its own
//! database next to it (`state.db.engine-<ms>`, where it goes on writing,
//! so that its WAL is never replayed into the other file) and refuses new
//! runs (`refusal`), loudly.
use super::attempt::Attempt;
use super::{lock, Shared};
use crate::error::SupervisorError;
use crate::model::{Event, NodeState, RunRecord, RunState};
use crate::store::Store;
use aiops_proto::ExitReport;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// State writes that had to wait for the store, for /metrics.
pub(super) static DEFERRED: AtomicU64 = AtomicU64::new(0);

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One state change for the store.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    NodeState {
        run: String,
        node: String,
        state: NodeState,
        reason: Option<String>,
        /// The attempt waiting for this `running` record before it sends
        /// its request (`Attempt::wait_recorded`).
        recorded: Option<Arc<Attempt>>,
    },
    RunState {
        run: String,
        state: RunState,
    },
    Outcome {
        run: String,
        node: String,
        report: Option<ExitReport>,
    },
    Workspace {
        run: String,
        path: String,
        commit: String,
    },
    /// These nodes' final audit lines are on disk (`Store::mark_audited`).
    Audited(Vec<crate::audit::Settled>),
}

impl Write {
    fn run(&self) -> &str {
        match self {
            Write::NodeState { run, .. }
            | Write::RunState { run, .. }
            | Write::Outcome { run, .. }
            | Write::Workspace { run, .. } => run,
            Write::Audited(_) => "",
        }
    }

    fn apply(&self, store: &mut Store) -> Result<Option<Event>, SupervisorError> {
        match self {
            Write::NodeState {
                run,
                node,
                state,
                reason,
                ..
            } => store
                .set_node_state(run, node, *state, reason.as_deref())
                .map(Some),
            Write::RunState { run, state } => store.set_run_state(run, *state).map(Some),
            Write::Outcome { run, node, report } => store
                .record_outcome(run, node, report.as_ref())
                .map(|()| None),
            Write::Workspace { run, path, commit } => {
                store.set_run_workspace(run, path, commit).map(|()| None)
            }
            Write::Audited(keys) => store.mark_audited(keys).map(|()| None),
        }
    }

    /// Stored (`ok`), or refused for good: whoever waits is told.
    fn settle(&self, ok: bool) {
        if let Write::NodeState {
            recorded: Some(a), ..
        } = self
        {
            a.set_recorded(ok);
        }
    }
}

/// Whether a failed write may succeed later: the disk was full, the
/// database was locked by another process, I/O failed, or the file was
/// moved (read-only until `check_identity` acts).
pub(crate) fn retriable(e: &SupervisorError) -> bool {
    use rusqlite::ErrorCode as C;
    match e {
        SupervisorError::Store {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } => matches!(
            f.code,
            C::DiskFull
                | C::SystemIoFailure
                | C::DatabaseBusy
                | C::DatabaseLocked
                // SQLITE_READONLY_DBMOVED: state.db was deleted or moved;
                // `check_identity` acts before the retry.
                | C::ReadOnly
        ),
        _ => false,
    }
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Write>,
    last_error: Option<String>,
}

#[derive(Default)]
pub(crate) struct Persist {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Why new runs are refused (state.db was replaced under the engine).
    refusal: Mutex<Option<String>>,
}

impl Persist {
    /// Writes waiting for the store.
    pub fn pending(&self) -> usize {
        lock(&self.queue).pending.len()
    }

    /// Whether a write of `run` waits for the store.
    pub fn pending_for(&self, run: &str) -> bool {
        lock(&self.queue).pending.iter().any(|w| w.run() == run)
    }

    /// The last error that made a write wait, while any waits.
    pub fn waiting_because(&self) -> Option<String> {
        let q = lock(&self.queue);
        (!q.pending.is_empty())
            .then(|| q.last_error.clone())
            .flatten()
    }

    /// Why new runs are refused, if they are.
    pub fn refusal(&self) -> Option<String> {
        lock(&self.refusal).clone()
    }

    /// `rec` as memory has it: the stored record with the writes still
    /// waiting for the store applied over it.
    pub fn overlay(&self, rec: &mut RunRecord) {
        let q = lock(&self.queue);
        for w in q.pending.iter().filter(|w| w.run() == rec.id) {
            match w {
                Write::NodeState {
                    node,
                    state,
                    reason,
                    ..
                } => {
                    if let Some(n) = rec.nodes.iter_mut().find(|n| n.id == *node) {
                        if *state == NodeState::Running {
                            n.attempts += 1;
                        }
                        n.state = *state;
                        n.reason.clone_from(reason);
                    }
                }
                Write::RunState { state, .. } => rec.state = *state,
                Write::Outcome { node, report, .. } => {
                    if let Some(n) = rec.nodes.iter_mut().find(|n| n.id == *node) {
                        let o = report.clone().unwrap_or_default();
                        n.exit_code = o.code;
                        n.signal = o.signal;
                        n.stdout_bytes = o.stdout_bytes;
                        n.stderr_bytes = o.stderr_bytes;
                        n.duration_ms = report.as_ref().map(|o| o.duration_ms);
                        n.timed_out = o.timed_out;
                        n.output_capped = o.output_capped;
                        n.layers = o.layers;
                    }
                }
                Write::Workspace { path, commit, .. } => {
                    rec.workspace = Some(path.clone());
                    rec.commit = Some(commit.clone());
                }
                Write::Audited(_) => {}
            }
        }
    }
}

impl Shared {
    /// Store `w` now, or queue it for the retry thread (see the module
    /// doc). True when it was stored now.
    pub(crate) fn write(&self, w: Write) -> bool {
        let mut q = lock(&self.persist.queue);
        if !q.pending.is_empty() {
            q.pending.push_back(w);
            DEFERRED.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut store = self.store();
        check_identity(self, &mut store);
        let result = w.apply(&mut store);
        drop(store);
        match result {
            Ok(ev) => {
                drop(q);
                if let Some(ev) = ev {
                    self.publish(ev);
                }
                w.settle(true);
                true
            }
            Err(e) if retriable(&e) => {
                super::record::log_store_error(&e);
                tracing::warn!(
                    "the state write is kept in memory and retried until the store takes it"
                );
                q.last_error = Some(crate::error::error_chain(&e));
                q.pending.push_back(w);
                DEFERRED.fetch_add(1, Ordering::Relaxed);
                drop(q);
                self.persist.wake.notify_all();
                false
            }
            Err(e) => {
                drop(q);
                super::record::log_store_error(&e);
                w.settle(false);
                false
            }
        }
    }

    /// Wait up to `limit` for every queued write to be stored; the number
    /// still waiting.
    pub(crate) fn wait_stored(&self, limit: Duration) -> usize {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let n = self.persist.pending();
            if n == 0 || std::time::Instant::now() >= deadline {
                return n;
            }
            self.persist.wake.notify_all();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The retry thread: drains the queue with backoff and watches state.db.
pub(super) fn start(shared: Weak<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("aiops-persist".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let Some(sh) = shared.upgrade() else { return };
                let idle = {
                    let q = lock(&sh.persist.queue);
                    let wait = if q.pending.is_empty() {
                        CHECK_EVERY
                    } else {
                        backoff
                    };
                    let (q, _) = sh
                        .persist
                        .wake
                        .wait_timeout(q, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    q.pending.is_empty()
                };
                if idle {
                    check_identity(&sh, &mut sh.store());
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                if retry(&sh) {
                    backoff = FIRST_BACKOFF;
                } else {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the state retry thread; failed state writes will not be retried");
    }
}

/// Apply queued writes in order until one fails; true if the queue drained.
fn retry(sh: &Shared) -> bool {
    let mut done = vec![];
    let drained = {
        let mut q = lock(&sh.persist.queue);
        let mut store = sh.store();
        check_identity(sh, &mut store);
        loop {
            let Some(w) = q.pending.front() else {
                break true;
            };
            match w.apply(&mut store) {
                Ok(ev) => {
                    if let Some(w) = q.pending.pop_front() {
                        done.push((w, ev, true));
                    }
                }
                Err(e) if retriable(&e) => {
                    q.last_error = Some(crate::error::error_chain(&e));
                    break false;
                }
                Err(e) => {
                    // It will never be taken: drop it rather than block the rest.
                    super::record::log_store_error(&e);
                    if let Some(w) = q.pending.pop_front() {
                        done.push((w, None, false));
                    }
                }
            }
        }
    };
    if drained && !done.is_empty() {
        tracing::info!(
            writes = done.len(),
            "the state store took the writes that had waited"
        );
    }
    let mut finals = vec![];
    for (w, ev, ok) in done {
        if let Some(ev) = ev {
            sh.publish(ev);
        }
        w.settle(ok);
        if let Write::RunState { run, state } = &w {
            if state.is_final() {
                finals.push(run.clone());
            }
        }
    }
    if !finals.is_empty() {
        // A final run stays in memory until its state is stored.
        let mut inner = sh.inner();
        for run in finals {
            let stored = inner
                .runs
                .get(&run)
                .is_some_and(|r| r.state.is_final() && !sh.persist.pending_for(&run));
            if stored {
                inner.runs.remove(&run);
            }
        }
    }
    drained
}

/// Whether `state.db` is still the file the store has open; if not, say
/// so loudly and act (module doc). Called with the queue lock held or
/// from the retry thread only, so two callers never restore at once.
fn check_identity(sh: &Shared, store: &mut Store) {
    let Some(what) = store.identity_changed() else {
        return;
    };
    let path = store.path().to_path_buf();
    if what.deleted {
        tracing::error!(path = %path.display(), "state.db was deleted while the engine had it open; restoring it from the open copy");
        match store.restore_at_path() {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "state.db restored: the history it held is back");
            }
            Err(e) => {
                let why = format!(
                    "{} was deleted under the engine and could not be restored ({}); new runs are refused until the engine restarts",
                    path.display(),
                    crate::error::error_chain(&e)
                );
                tracing::error!("{why}");
                *lock(&sh.persist.refusal) = Some(why);
            }
        }
        return;
    }
    if lock(&sh.persist.refusal).is_some() {
        return;
    }
    let saved = store.move_aside();
    let why = match saved {
        Ok(copy) => format!(
            "{} was replaced by another file while the engine had it open; the engine goes on in its own database, moved to {}; new runs are refused until the engine restarts (first keep the file you want as state.db)",
            path.display(),
            copy.display()
        ),
        Err(e) => format!(
            "{} was replaced by another file while the engine had it open, and saving the engine's own copy failed ({}); new runs are refused until the engine restarts",
            path.display(),
            crate::error::error_chain(&e)
        ),
    };
    tracing::error!("{why}");
    *lock(&sh.persist.refusal) = Some(why);
}
