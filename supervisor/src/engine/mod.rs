//! The engine: runs flows. It owns the in-memory view of unfinished runs,
//! the SQLite store and the audit log, and a scheduler task that starts
//! nodes FIFO in each flow's DAG order, at most `parallelism` at a time,
//! one jailer each. Used by the daemon (`aiops-supervisor`) and in-process
//! by `aiopsctl run` when no daemon answers.
//!
//! Locks: `inner`, then `store`, then `audit`, never held across an await.
//!
//! - `bootstrap`: lock, config and runtime; the daemon and aiopsctl open it there.
//! - `backend`: the API's `Backend`; `admission` checks a submitted flow.
//! - `sched`: the scheduler task (dispatch, a node's end, the DAG moving on);
//!   `workspace_prep` makes each run's workspace; `recovery` reloads after a
//!   restart; `confirm_cancel` and `stop` answer the operator and drains.
//! - `runner` runs one attempt on a blocking thread (`warm` spares, `output`
//!   capture) and reports back as `RunnerEvent`s; `attempt` is what the two share.
//! - `record` writes a state change (store, event, audit); `metrics` reads.
mod admission;
mod attempt;
mod backend;
mod bootstrap;
mod confirm_cancel;
mod metrics;
pub(crate) mod output;
mod persist;
mod record;
mod recovery;
pub(crate) mod runner;
mod sched;
mod stop;
mod warm;
mod workspace_prep;

pub use bootstrap::{BootedEngine, Caller, LocalEngine};

use crate::audit::{AuditLog, AuditRecord, AuditSink};
use crate::error::SupervisorError;
use crate::model::{Backend, Event, NodeState, RunId, RunState};
use crate::store::Store;
use crate::workspace::WorkspaceRoot;
use aiops_policy::flow::Flow;
use aiops_policy::{HostFacts, Profile};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

pub struct EngineConfig {
    /// `state.db`, `audit/`, `runs/<run>/<node>.{stdout,stderr}`.
    pub state_dir: PathBuf,
    pub workspace_root: PathBuf,
    pub parallelism: usize,
    pub jailer: JailerTarget,
    /// SIGTERM to SIGKILL when a running node is cancelled.
    pub kill_grace: Duration,
    /// Profiles given by path, not by name. The in-process engine of
    /// `aiopsctl run` allows them (its user is the operator); the daemon
    /// does not: an API client must not bring its own ceiling.
    pub profile_paths: bool,
    /// Nodes under an `unconfined` profile. The daemon refuses them unless
    /// supervisor.toml says `allow_unconfined = true`: in system mode such
    /// a node would run, unjailed, as the jailer's user.
    pub allow_unconfined: bool,
}

/// The most nodes one flow may have (the flow parser refuses more; the
/// scheduler's bookkeeping is linear in them and runs under its lock).
pub const MAX_NODES: usize = aiops_policy::flow::MAX_NODES;

/// How jails are made: our own child `aiops-jailer` (local mode), or the
/// socket-activated jailer service (system mode: the service user cannot
/// create namespaces, and only the jailer unit gets credentials).
#[derive(Debug, Clone)]
pub enum JailerTarget {
    Exec(PathBuf),
    Socket(PathBuf),
}

/// A node as the scheduler tracks it.
#[derive(Debug, Clone)]
pub(crate) struct NodeMem {
    pub state: NodeState,
    pub needs: Vec<String>,
    pub attempts: u32,
    pub retries: u32,
    /// The gate: it must be confirmed (or pre-approved) before it runs.
    pub gated: bool,
    pub confirmed: bool,
    pub findings: Vec<String>,
    /// Computed at admission (see `admission::Admitted::effective`).
    pub effective: Option<Arc<aiops_policy::Effective>>,
    /// Set while it is in the ready queue, so it is queued once.
    pub dispatched: bool,
    /// The attempt running now (from `make_job` to its `Done`).
    pub attempt: Option<Arc<attempt::Attempt>>,
    pub cancel: bool,
    /// Why it was cancelled, when not on request (an interrupted
    /// `aiopsctl run`); recorded as its reason.
    pub cancel_reason: Option<String>,
    /// Its slot was given back when agentd reported its end, before the
    /// jail was torn down (so the next node's set-up overlaps that).
    pub slot_freed: bool,
    /// Its index in `RunMem::order` (needs before dependants).
    pub pos: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Ws {
    Pending,
    Creating,
    Ready(PathBuf),
}

pub(crate) struct RunMem {
    pub flow: Arc<Flow>,
    pub pre_approved: bool,
    pub ws: Ws,
    pub nodes: BTreeMap<String, NodeMem>,
    pub order: Vec<String>,
    pub profiles: HashMap<String, Arc<Profile>>,
    /// The path variables admission computed `NodeMem::effective` with.
    pub vars: Arc<aiops_policy::PathVars>,
    pub state: RunState,
    /// Its output directory was made (once per run, not per node).
    pub dir_ready: bool,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub runs: HashMap<RunId, RunMem>,
    /// FIFO across runs: (run, node) in the order they became ready.
    pub ready: VecDeque<(RunId, String)>,
    /// Runs waiting for their workspace, oldest first.
    pub ws_queue: VecDeque<RunId>,
    pub running: usize,
    /// Nodes that ended and are being recorded (their slot already freed).
    pub settling: usize,
    pub finished: HashMap<&'static str, u64>,
    pub submitted: u64,
}

pub(crate) struct Shared {
    pub cfg: EngineConfig,
    pub inner: Mutex<Inner>,
    pub store: Mutex<Store>,
    pub audit: AuditSink,
    pub events: broadcast::Sender<Event>,
    pub wake: Notify,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    pub workspaces: WorkspaceRoot,
    pub facts: Mutex<HashMap<bool, HostFacts>>,
    pub started_at: std::time::Instant,
    /// Spare jailers (`JailerTarget::Exec` only): see `warm`.
    pub warm: Option<Arc<warm::Warm>>,
    pub plans: Arc<runner::PlanMemo>,
    /// State writes waiting for the store (a full or locked disk).
    pub persist: persist::Persist,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not wedge every later request.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What an engine could not write before it stopped (`Engine::settle`).
#[derive(Debug, Default)]
pub struct Unsaved {
    pub writes: usize,
    pub why: Option<String>,
    pub audit_lines: Vec<String>,
}

#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Shared {
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }
    pub(crate) fn publish(&self, ev: Event) {
        // No subscribers is fine; the store has the event.
        let _ = self.events.send(ev);
    }
    /// Hand an audit line to the writer thread (see audit.rs): a failure
    /// is logged and the line retried with the next one, never dropped.
    pub(crate) fn audit(&self, rec: AuditRecord) {
        self.audit.send(rec);
    }
    pub(crate) fn run_dir(&self, run: &str) -> PathBuf {
        self.cfg.state_dir.join("runs").join(run)
    }
}

fn new_run_id() -> RunId {
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    // 2026-11-22T06:57:01Z → 20261122T065701Z
    let compact: String = stamp.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut rnd = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut rnd))
        .is_err()
    {
        let n = std::time::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id();
        rnd = n.to_le_bytes();
    }
    format!("r-{compact}-{:08x}", u32::from_le_bytes(rnd))
}

impl Engine {
    /// Open the store and audit log, mark what was running as `lost`, and
    /// reload unfinished runs. Does not start anything yet.
    pub fn open(cfg: EngineConfig) -> Result<Engine, SupervisorError> {
        crate::store::private_dir(&cfg.state_dir)?;
        let mut store = Store::open(&cfg.state_dir)?;
        let audit = AuditLog::open(&cfg.state_dir.join("audit"))?;
        crate::store::private_dir(&cfg.state_dir.join("runs"))?;
        crate::sys::isolate_libgit2();
        let workspaces =
            WorkspaceRoot::open(&cfg.workspace_root).map_err(|e| SupervisorError::StateDir {
                path: cfg.workspace_root.clone(),
                source: std::io::Error::other(crate::error::error_chain(&e)),
            })?;
        if nix::unistd::geteuid().is_root() {
            // Jails never run as root: the nobody-owned workspaces below
            // must be reachable, so these two are searchable (not listable).
            for d in [&cfg.state_dir, &cfg.workspace_root] {
                workspace_prep::set_mode(d, 0o711)?;
            }
        }
        // A node whose end reached the audit log but not the store (the
        // disk was full, then the process died) ends as its line says,
        // not `lost` with a reason that is not true.
        recovery::settle_from_audit(&mut store, &cfg.state_dir.join("audit"))?;
        let lost = store.mark_lost("the supervisor stopped while it was running; not re-run")?;
        let (events, _) = broadcast::channel(4096);
        let warm = match &cfg.jailer {
            JailerTarget::Exec(path) => Some(warm::Warm::new(path.clone(), cfg.parallelism)),
            // A socket-activated jailer is started by systemd per connection.
            JailerTarget::Socket(_) => None,
        };
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let weak = weak.clone();
            let on_synced: crate::audit::OnSynced = Box::new(move |keys| {
                if let Some(sh) = weak.upgrade() {
                    sh.write(persist::Write::Audited(keys.to_vec()));
                }
            });
            Shared {
                cfg,
                inner: Mutex::new(Inner::default()),
                store: Mutex::new(store),
                audit: AuditSink::start(audit, on_synced),
                events,
                wake: Notify::new(),
                ready: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                workspaces,
                facts: Mutex::new(HashMap::new()),
                started_at: std::time::Instant::now(),
                warm,
                plans: Arc::default(),
                persist: persist::Persist::default(),
            }
        });
        persist::start(Arc::downgrade(&shared));
        recovery::recover(&shared, &lost)?;
        Ok(Engine { shared })
    }

    /// Start the scheduler on the current tokio runtime; ready from here.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        let h = tokio::spawn(sched::scheduler(shared));
        self.shared.ready.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        h
    }

    /// Stop starting nodes; wait up to `grace` for running ones, then
    /// cancel them. Queued nodes stay queued for the next start.
    pub async fn drain(&self, grace: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.ready.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        let busy = |s: &Shared| {
            let inner = s.inner();
            inner.running > 0 || inner.settling > 0
        };
        while busy(&self.shared) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if busy(&self.shared) {
            stop::kill_running(&self.shared, "the supervisor is shutting down", None);
            // SIGKILL follows after kill_grace; past that, stop waiting.
            let hard = tokio::time::Instant::now() + self.shared.cfg.kill_grace * 2;
            while busy(&self.shared) && tokio::time::Instant::now() < hard {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.flush_audit();
    }

    /// This process was interrupted (`aiopsctl run` without a daemon got
    /// SIGINT/SIGTERM): start nothing more, end `run` `cancelled` with
    /// `why` (its running jails stopped: SIGTERM, SIGKILL after
    /// `kill_grace`), and stop every other running jail of this engine
    /// too, since they would die with the process; other runs' queued
    /// nodes stay queued for the next start.
    pub fn interrupt(&self, run: &str, why: &str) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.ready.store(false, Ordering::SeqCst);
        confirm_cancel::interrupt(&self.shared, run, why);
        stop::kill_running(&self.shared, "this process was interrupted", Some(why));
        self.shared.wake.notify_one();
    }

    /// Wait up to `limit` for the state writes and audit lines still in
    /// memory (a full or locked disk) to be written; what is left.
    pub fn settle(&self, limit: Duration) -> Unsaved {
        let deadline = std::time::Instant::now() + limit;
        let writes = self.shared.wait_stored(limit);
        while self.shared.audit.health().1 > 0 && std::time::Instant::now() < deadline {
            self.shared.audit.flush();
            std::thread::sleep(Duration::from_millis(100));
        }
        Unsaved {
            writes,
            why: self.shared.persist.waiting_because(),
            audit_lines: self.shared.audit.unwritten(),
        }
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.shared.cfg.state_dir
    }

    /// Wait until every audit line so far is on disk.
    pub fn flush_audit(&self) {
        self.shared.audit.flush();
    }

    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.clone())
    }

    /// Until every run in `ids` is final (for `aiopsctl run` in-process).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.shared.cfg.state_dir.join("audit")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{NewNode, NewRun};

    #[test]
    fn a_final_node_whose_line_was_not_written_gets_it_after_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let cfg = || EngineConfig {
            state_dir: d.path().join("state"),
            workspace_root: d.path().join("ws"),
            parallelism: 1,
            jailer: JailerTarget::Exec(PathBuf::from("/nonexistent")),
            kill_grace: Duration::from_secs(1),
            profile_paths: false,
            allow_unconfined: false,
        };
        // What a crash leaves: the final state committed, no line yet.
        {
            let mut st = Store::open(&d.path().join("state")).unwrap();
            st.insert_run(&NewRun {
                id: "r1".into(),
                flow: "f".into(),
                flow_path: "/f.toml".into(),
                flow_json: "{}".into(),
                pre_approved: false,
                nodes: vec![NewNode {
                    id: "a".into(),
                    needs: vec![],
                    profile: "restrictive".into(),
                    argv: vec!["true".into()],
                    findings: vec![],
                }],
            })
            .unwrap();
            st.set_node_state("r1", "a", NodeState::Running, None)
                .unwrap();
            st.set_node_state("r1", "a", NodeState::Succeeded, None)
                .unwrap();
        }
        let e = Engine::open(cfg()).unwrap();
        e.flush_audit();
        let lines = crate::audit::read(&e.audit_dir(), &crate::audit::Query::default()).unwrap();
        let owed: Vec<_> = lines
            .iter()
            .filter(|l| l.node.as_deref() == Some("a"))
            .collect();
        assert_eq!(owed.len(), 1, "{lines:?}");
        assert_eq!(owed[0].state.as_deref(), Some("succeeded"));
        assert!(owed[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("after a restart"));
        // Written and recorded: a second restart owes nothing.
        drop(e);
        let e = Engine::open(cfg()).unwrap();
        e.flush_audit();
        let again = crate::audit::read(&e.audit_dir(), &crate::audit::Query::default()).unwrap();
        assert_eq!(again.len(), lines.len());
    }

    /// The node's end reached the audit log but not the store (a full
    /// disk, then a crash): a restart records what the line says, not
    /// `lost`, and writes no second line.
    #[test]
    fn a_running_node_whose_end_is_in_the_audit_log_ends_as_the_line_says() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        {
            let mut st = Store::open(&state).unwrap();
            st.insert_run(&NewRun {
                id: "r1".into(),
                flow: "f".into(),
                flow_path: "/f.toml".into(),
                flow_json: "{}".into(),
                pre_approved: false,
                nodes: vec![NewNode {
                    id: "a".into(),
                    needs: vec![],
                    profile: "restrictive".into(),
                    argv: vec!["false".into()],
                    findings: vec![],
                }],
            })
            .unwrap();
            st.set_node_state("r1", "a", NodeState::Running, None)
                .unwrap();
            let mut log = AuditLog::open(&state.join("audit")).unwrap();
            log.append(AuditRecord {
                kind: "node_end".into(),
                run: Some("r1".into()),
                node: Some("a".into()),
                state: Some("failed".into()),
                reason: Some("exit code 3".into()),
                attempt: Some(1),
                exit_code: Some(3),
                duration_ms: Some(5),
                ..AuditRecord::default()
            })
            .unwrap();
        }
        let e = Engine::open(EngineConfig {
            state_dir: state.clone(),
            workspace_root: d.path().join("ws"),
            parallelism: 1,
            jailer: JailerTarget::Exec(PathBuf::from("/nonexistent")),
            kill_grace: Duration::from_secs(1),
            profile_paths: false,
            allow_unconfined: false,
        })
        .unwrap();
        e.flush_audit();
        let r = e.shared.store().run("r1").unwrap().unwrap();
        assert_eq!(r.nodes[0].state, NodeState::Failed);
        assert_eq!(r.nodes[0].reason.as_deref(), Some("exit code 3"));
        assert_eq!(r.nodes[0].exit_code, Some(3));
        let lines = crate::audit::read(&e.audit_dir(), &crate::audit::Query::default()).unwrap();
        let ends: Vec<_> = lines
            .iter()
            .filter(|l| l.kind == "node_end" && l.node.as_deref() == Some("a"))
            .collect();
        assert_eq!(ends.len(), 1, "{lines:?}");
        assert!(e.shared.store().unaudited().unwrap().is_empty());
    }
}
