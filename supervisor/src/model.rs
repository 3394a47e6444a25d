//! The supervisor's records, shared by the store, the scheduler, the audit
//! log, the HTTP API and `aiopsctl`: what a run and a node are, and the
//! states they move through. Plain data, serialised the same everywhere.
use serde::{Deserialize, Serialize};

/// `r-YYYYMMDDTHHMMSSZ-xxxxxx`: sortable by creation time, unique by the
/// random tail, and safe as a directory name.
pub type RunId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    /// At least one node waits at the gate and nothing else can run.
    AwaitingConfirmation,
    Succeeded,
    Failed,
    Cancelled,
    /// The supervisor stopped while the run was in flight; see its nodes.
    Lost,
}

impl RunState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled | RunState::Lost
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Queued,
    AwaitingConfirmation,
    Running,
    Succeeded,
    Failed,
    /// A node it needs did not succeed.
    Skipped,
    Cancelled,
    /// It was running when the supervisor died; never re-run silently.
    Lost,
    /// Policy said no (profile, caps, missing layer) before anything ran.
    Refused,
    /// The run's git workspace could not be made; nothing ran anywhere.
    WorkspaceFailed,
}

impl NodeState {
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            NodeState::Queued | NodeState::AwaitingConfirmation | NodeState::Running
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Queued => "queued",
            NodeState::AwaitingConfirmation => "awaiting_confirmation",
            NodeState::Running => "running",
            NodeState::Succeeded => "succeeded",
            NodeState::Failed => "failed",
            NodeState::Skipped => "skipped",
            NodeState::Cancelled => "cancelled",
            NodeState::Lost => "lost",
            NodeState::Refused => "refused",
            NodeState::WorkspaceFailed => "workspace_failed",
        }
    }
    pub fn parse(s: &str) -> Option<NodeState> {
        ALL_NODE_STATES.iter().copied().find(|n| n.as_str() == s)
    }
}

pub const ALL_NODE_STATES: [NodeState; 10] = [
    NodeState::Queued,
    NodeState::AwaitingConfirmation,
    NodeState::Running,
    NodeState::Succeeded,
    NodeState::Failed,
    NodeState::Skipped,
    NodeState::Cancelled,
    NodeState::Lost,
    NodeState::Refused,
    NodeState::WorkspaceFailed,
];

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::AwaitingConfirmation => "awaiting_confirmation",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Lost => "lost",
        }
    }
    pub fn parse(s: &str) -> Option<RunState> {
        [
            RunState::Queued,
            RunState::Running,
            RunState::AwaitingConfirmation,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Cancelled,
            RunState::Lost,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of one run, as stored and as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub state: NodeState,
    pub needs: Vec<String>,
    pub profile: String,
    pub argv: Vec<String>,
    /// Attempts started so far (retries + 1 at most).
    pub attempts: u32,
    /// Why it is in its state, for anything but success.
    pub reason: Option<String>,
    /// What `policy::lint` found (the gate's reasons).
    pub findings: Vec<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub duration_ms: Option<u64>,
    pub timed_out: bool,
    pub output_capped: bool,
    pub peak_rss_kib: Option<u64>,
    pub layers: Vec<String>,
    /// Unix milliseconds.
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
}

/// One run of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub flow: String,
    /// The flow file it was submitted from, for humans.
    pub flow_path: String,
    pub state: RunState,
    /// Gate findings were approved in advance (`--yes`); recorded in the audit.
    pub pre_approved: bool,
    pub workspace: Option<String>,
    pub commit: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub nodes: Vec<NodeRecord>,
}

/// Something that happened, in order; the API streams these as SSE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    /// Unix milliseconds.
    pub time: i64,
    pub run: RunId,
    pub node: Option<String>,
    /// e.g. `run_queued`, `node_state`, `node_exited`, `gate`, `cancel`.
    pub kind: String,
    pub detail: serde_json::Value,
}

/// What `POST /api/v1/runs` takes: the flow text itself (the daemon may not
/// see the client's files) and where relative paths in it resolve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The flow file's TOML text.
    pub flow: String,
    /// Absolute path of the flow file (relative repo and profile paths resolve against its directory).
    pub flow_path: String,
    /// Approve every gate of this run in advance (recorded in the audit).
    #[serde(default)]
    pub yes: bool,
}

/// A summary for `GET /api/v1/state` and `aiopsctl status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceState {
    pub version: String,
    pub ready: bool,
    pub draining: bool,
    pub parallelism: usize,
    pub running_nodes: usize,
    pub queued_nodes: usize,
    pub awaiting_confirmation: usize,
    pub runs_total: u64,
    pub state_dir: String,
}

/// Errors the API maps onto HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// 400: the request is malformed or the flow is invalid.
    BadRequest(String),
    /// 401/403: the daemon does not serve this caller.
    Forbidden(String),
    /// 404
    NotFound(String),
    /// 409: the run or node is not in a state that allows this.
    Conflict(String),
    /// 503: draining or not ready.
    Unavailable(String),
    /// 500
    Internal(String),
}

/// Which stream of a node's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What the HTTP API needs from the engine. Calls are quick (a SQLite read
/// or a message to the scheduler), so they are synchronous.
pub trait Backend: Send + Sync + 'static {
    fn ready(&self) -> bool;
    fn state(&self) -> Result<ServiceState, ApiFailure>;
    fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, ApiFailure>;
    fn get_run(&self, id: &str) -> Result<RunRecord, ApiFailure>;
    fn submit(&self, req: SubmitRequest) -> Result<RunRecord, ApiFailure>;
    fn confirm(&self, run: &str, node: &str) -> Result<(), ApiFailure>;
    /// `node: None` cancels the whole run.
    fn cancel(&self, run: &str, node: Option<&str>) -> Result<(), ApiFailure>;
    /// The file holding a node's captured output (it may still be growing).
    fn output_path(
        &self,
        run: &str,
        node: &str,
        stream: Stream,
    ) -> Result<std::path::PathBuf, ApiFailure>;
    /// Events after `after_seq` (for SSE resumption with Last-Event-ID).
    fn events_since(&self, after_seq: i64, limit: usize) -> Result<Vec<Event>, ApiFailure>;
    /// New events as they happen.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// The audit log's records matching `q` (`GET /api/v1/audit`): in
    /// system mode the files are the daemon's alone.
    #[cfg(target_os = "linux")]
    fn audit(&self, q: crate::audit::Query) -> Result<Vec<crate::audit::AuditRecord>, ApiFailure> {
        let _ = q;
        Err(ApiFailure::NotFound(
            "this backend keeps no audit log".into(),
        ))
    }
    /// Remove (or list) workspaces and output of long-finished runs
    /// (`POST /api/v1/gc`).
    fn gc(&self, req: GcRequest) -> Result<Vec<GcEntry>, ApiFailure> {
        let _ = req;
        Err(ApiFailure::NotFound("this backend collects nothing".into()))
    }
}

/// `POST /api/v1/gc`: runs that ended more than `older_than_ms` ago.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    pub older_than_ms: u64,
    #[serde(default)]
    pub dry_run: bool,
}

/// One workspace `gc` looked at: `result` is `removed`, `would_remove` or
/// `failed` (with `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcEntry {
    pub workspace: String,
    pub result: String,
    pub error: Option<String>,
}
