//! `aiopsctl run|submit|status|logs|confirm|cancel|audit|gc`. Each talks to
//! the daemon when one answers on the API socket; otherwise the commands
//! that change state start an in-process engine on the same state
//! directory (holding its lock, so two engines never share a run), and the
//! ones that only read go to the store and files directly.
use super::print_json;
use super::table::Table;
use crate::config::Config;
use crate::engine::{Engine, EngineConfig};
use crate::error::error_chain;
use crate::error::{out_err, SupervisorError};
use crate::model::{ApiFailure, Backend, NodeState, RunRecord, RunState, Stream, SubmitRequest};
use crate::store::Store;
use clap::Args;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `aiopsctl run` exit codes beyond 0 (succeeded) and 1 (failed).
pub const EXIT_PAUSED: i32 = 75;
pub const EXIT_CANCELLED: i32 = 4;

#[derive(Debug, Args)]
pub struct Common {
    /// supervisor.toml [default: /etc/aiops/supervisor.toml when present].
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flow file (TOML).
    pub flow: PathBuf,
    /// Approve every gate of this run in advance (recorded in the audit).
    #[arg(long)]
    pub yes: bool,
    /// Print the run id and return at once.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One run in detail [default: the most recent runs].
    pub run: Option<String>,
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub run: String,
    pub node: String,
    /// Keep printing as output arrives, until the node ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Show stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    pub run: String,
    pub node: String,
    /// Return once confirmed instead of following the run.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub run: String,
    /// One node [default: the whole run].
    pub node: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only lines newer than this: a duration (`1h`, `2d`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only this run's lines.
    #[arg(long)]
    pub run: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove workspaces and output of runs that ended longer ago than this.
    #[arg(long, value_name = "DUR", default_value = "7d")]
    pub older_than: String,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: Common,
}

fn api_err(e: ApiFailure) -> SupervisorError {
    let (what, reason) = match e {
        ApiFailure::BadRequest(r) => ("refused", r),
        ApiFailure::NotFound(r) => ("not found", r),
        ApiFailure::Conflict(r) => ("conflict", r),
        ApiFailure::Unavailable(r) => ("unavailable", r),
        ApiFailure::Internal(r) => ("internal error", r),
    };
    SupervisorError::Usage {
        what: what.into(),
        reason,
    }
}

/// An engine running in this process on the local state directory.
pub struct LocalEngine {
    pub engine: Engine,
    rt: tokio::runtime::Runtime,
    grace: Duration,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for LocalEngine {
    fn drop(&mut self) {
        // Nodes this process started (it may have picked up other runs'
        // queued work) finish, or are stopped and recorded, before it
        // exits; then every audit line is on disk.
        self.rt.block_on(self.engine.drain(self.grace));
        self.engine.flush_audit();
    }
}

/// Hold the state directory's engine lock: one engine (daemon or
/// in-process) per state directory.
pub fn engine_lock(state_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, SupervisorError> {
    crate::store::private_dir(state_dir)?;
    let path = state_dir.join("engine.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| SupervisorError::StateDir {
            path: path.clone(),
            source,
        })?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        SupervisorError::Usage {
            what: path.display().to_string(),
            reason: format!(
                "another aiops engine (the daemon, or an aiopsctl run/confirm) is using {}: {e}",
                state_dir.display()
            ),
        }
    })
}

/// `local`: the in-process engine of `aiopsctl`, whose user is the
/// operator (profiles by path and `unconfined` are theirs to use).
pub fn engine_config(cfg: &Config, local: bool) -> Result<EngineConfig, SupervisorError> {
    // In system mode the jails come from the shared jailer service: an
    // in-process engine there keeps the daemon's rules.
    let local = local && cfg.jailer_mode == crate::config::JailerMode::Exec;
    let jailer = match cfg.jailer_mode {
        crate::config::JailerMode::Socket => {
            crate::engine::JailerTarget::Socket(cfg.jailer_socket.clone())
        }
        crate::config::JailerMode::Exec => crate::engine::JailerTarget::Exec(
            crate::locate::JAILER
                .find()
                .map_err(|e| SupervisorError::Refused {
                    reason: e.to_string(),
                })?
                .path,
        ),
    };
    Ok(EngineConfig {
        state_dir: cfg.state_dir.clone(),
        workspace_root: cfg.workspace_root.clone(),
        parallelism: cfg.parallelism,
        jailer,
        kill_grace: Duration::from_secs(5),
        profile_paths: local,
        allow_unconfined: local || cfg.allow_unconfined,
    })
}

/// The engine's runtime: two workers (jails run on blocking threads).
pub fn engine_runtime(cfg: &Config) -> Result<tokio::runtime::Runtime, SupervisorError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| SupervisorError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })
}

/// The flow file's absolute path and text.
fn read_flow(flow: &Path) -> Result<(PathBuf, String), SupervisorError> {
    let path = std::path::absolute(flow).map_err(|source| SupervisorError::Read {
        path: flow.to_path_buf(),
        source,
    })?;
    let text = std::fs::read_to_string(&path).map_err(|source| SupervisorError::Read {
        path: path.clone(),
        source,
    })?;
    Ok((path, text))
}

pub fn local_engine(cfg: &Config) -> Result<LocalEngine, SupervisorError> {
    let lock = engine_lock(&cfg.state_dir)?;
    let rt = engine_runtime(cfg)?;
    let engine = Engine::open(engine_config(cfg, true)?)?;
    Ok(LocalEngine {
        engine,
        rt,
        grace: cfg.drain_grace,
        _lock: lock,
    })
}

impl LocalEngine {
    /// Start scheduling. Callers act first (cancel, confirm, submit) so
    /// that nothing is dispatched that the action was about to stop.
    pub fn start(&self) {
        let _guard = self.rt.enter();
        self.engine.start();
    }
}

/// The daemon, if one answers on the configured socket.
fn daemon(cfg: &Config) -> Option<Arc<dyn Backend>> {
    super::remote::RemoteBackend::connect(&cfg.api_socket)
        .ok()
        .map(|b| Arc::new(b) as Arc<dyn Backend>)
}

/// The daemon, else an in-process engine (kept alive by the returned
/// guard, and not yet started: call `start` after acting).
fn writer(cfg: &Config) -> Result<(Arc<dyn Backend>, Option<LocalEngine>), SupervisorError> {
    if let Some(d) = daemon(cfg) {
        return Ok((d, None));
    }
    let local = local_engine(cfg)?;
    Ok((local.engine.backend(), Some(local)))
}

fn load_cfg(c: &Common) -> Result<Config, SupervisorError> {
    Config::load(c.config.as_deref())
}

pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let (path, text) = read_flow(&args.flow)?;
    // Fail before any engine starts: the same check the engine repeats.
    aiops_policy::flow::Flow::from_toml_str(&path, &text)?;
    let (backend, local) = writer(&cfg)?;
    if args.detach && local.is_some() {
        return Err(SupervisorError::Usage {
            what: "--detach".into(),
            reason: format!(
                "no daemon answers on {}; without one the run lives in this process",
                cfg.api_socket.display()
            ),
        });
    }
    let run = backend
        .submit(SubmitRequest {
            flow: text,
            flow_path: path.display().to_string(),
            yes: args.yes,
        })
        .map_err(api_err)?;
    if let Some(l) = &local {
        l.start();
    }
    if args.detach {
        return report_final(&run, args.common.json, out).map(|_| 0);
    }
    if !args.common.json {
        writeln!(
            out,
            "run {} · flow {} · {} nodes",
            run.id,
            run.flow,
            run.nodes.len()
        )
        .map_err(out_err)?;
    }
    let fin = follow(&*backend, &run.id, !args.common.json, out)?;
    report_final(&fin, args.common.json, out)
}

/// Print state changes until the run is final or waits at the gate.
fn follow(
    backend: &dyn Backend,
    run_id: &str,
    progress: bool,
    out: &mut dyn Write,
) -> Result<RunRecord, SupervisorError> {
    let start = Instant::now();
    let mut seen: std::collections::HashMap<String, (NodeState, u32)> = Default::default();
    let mut rx = backend.subscribe();
    loop {
        let r = backend.get_run(run_id).map_err(api_err)?;
        if progress {
            for n in &r.nodes {
                let key = (n.state, n.attempts);
                if seen.get(&n.id) == Some(&key) || n.state == NodeState::Queued && n.attempts == 0
                {
                    continue;
                }
                seen.insert(n.id.clone(), key);
                let mut line = format!(
                    "[{:>6.1}s] {:<12} {}",
                    start.elapsed().as_secs_f64(),
                    n.id,
                    n.state
                );
                if n.state.is_final() && n.state != NodeState::Skipped {
                    if let Some(c) = n.exit_code {
                        line += &format!(" · exit {c}");
                    }
                    line += &format!(" · out {} B · err {} B", n.stdout_bytes, n.stderr_bytes);
                }
                if let Some(reason) = n
                    .reason
                    .as_deref()
                    .filter(|_| n.state != NodeState::Succeeded)
                {
                    line += &format!(" · {reason}");
                }
                writeln!(out, "{line}").map_err(out_err)?;
                out.flush().map_err(out_err)?;
            }
        }
        if r.state.is_final() || r.state == RunState::AwaitingConfirmation {
            return Ok(r);
        }
        // Wake on the next event, or re-read after a short while anyway.
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            match rx.try_recv() {
                Ok(ev) if ev.run == run_id => break,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

fn report_final(r: &RunRecord, json: bool, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    if json {
        print_json(out, "run", r)?;
    } else {
        match r.state {
            RunState::AwaitingConfirmation => {
                for n in r
                    .nodes
                    .iter()
                    .filter(|n| n.state == NodeState::AwaitingConfirmation)
                {
                    writeln!(out, "paused: node {} waits for confirmation", n.id)
                        .map_err(out_err)?;
                    for f in &n.findings {
                        writeln!(out, "  finding: {f}").map_err(out_err)?;
                    }
                    writeln!(
                        out,
                        "  aiopsctl confirm {} {}   # run it\n  aiopsctl cancel {} {}    # skip it",
                        r.id, n.id, r.id, n.id
                    )
                    .map_err(out_err)?;
                }
            }
            s => writeln!(out, "run {} {s}", r.id).map_err(out_err)?,
        }
    }
    Ok(match r.state {
        RunState::Succeeded => 0,
        RunState::AwaitingConfirmation | RunState::Queued | RunState::Running => EXIT_PAUSED,
        RunState::Cancelled => EXIT_CANCELLED,
        RunState::Failed | RunState::Lost => 1,
    })
}

pub fn submit(args: &RunArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let Some(backend) = daemon(&cfg) else {
        return Err(SupervisorError::Usage {
            what: "submit".into(),
            reason: format!(
                "no daemon answers on {}; start aiops-supervisor, or use `aiopsctl run`",
                cfg.api_socket.display()
            ),
        });
    };
    let (path, text) = read_flow(&args.flow)?;
    let run = backend
        .submit(SubmitRequest {
            flow: text,
            flow_path: path.display().to_string(),
            yes: args.yes,
        })
        .map_err(api_err)?;
    if args.common.json {
        print_json(out, "run", &run)?;
    } else {
        writeln!(out, "{}", run.id).map_err(out_err)?;
    }
    Ok(0)
}

/// Read-only access: the daemon, else the store itself (no engine lock,
/// no recovery: another engine may be running these nodes right now).
fn read_runs(
    cfg: &Config,
    run: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, SupervisorError> {
    if let Some(d) = daemon(cfg) {
        return match run {
            Some(id) => Ok(vec![d.get_run(id).map_err(api_err)?]),
            None => d.list_runs(limit).map_err(api_err),
        };
    }
    if !cfg.state_dir.join(crate::store::DB_FILE).exists() {
        return match run {
            Some(id) => Err(api_err(ApiFailure::NotFound(format!("no run {id:?}")))),
            None => Ok(vec![]),
        };
    }
    let store = Store::open(&cfg.state_dir)?;
    match run {
        Some(id) => store
            .run(id)?
            .map(|r| vec![r])
            .ok_or_else(|| api_err(ApiFailure::NotFound(format!("no run {id:?}")))),
        None => store.runs(limit),
    }
}

fn age(ms: i64) -> String {
    let secs = (crate::store::now_ms() - ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn status(args: &StatusArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let runs = read_runs(&cfg, args.run.as_deref(), args.limit)?;
    if args.common.json {
        match (&args.run, runs.first()) {
            (Some(_), Some(r)) => print_json(out, "run", r)?,
            _ => print_json(out, "runs", &runs)?,
        }
        return Ok(0);
    }
    if let (Some(_), Some(r)) = (&args.run, runs.first()) {
        writeln!(
            out,
            "run {} · flow {} · {} · {} ago",
            r.id,
            r.flow,
            r.state,
            age(r.created_at)
        )
        .map_err(out_err)?;
        if let Some(ws) = &r.workspace {
            writeln!(
                out,
                "workspace {ws} @ {}",
                r.commit.as_deref().unwrap_or("?")
            )
            .map_err(out_err)?;
        }
        let mut t = Table::new(2).wrap_total(120);
        t.row(["NODE", "STATE", "EXIT", "OUT", "ERR", "TIME", "REASON"]);
        for n in &r.nodes {
            t.row([
                n.id.clone(),
                n.state.to_string(),
                n.exit_code
                    .map(|c| c.to_string())
                    .or(n.signal.map(|s| format!("sig {s}")))
                    .unwrap_or_else(|| "-".into()),
                n.stdout_bytes.to_string(),
                n.stderr_bytes.to_string(),
                n.duration_ms
                    .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                n.reason.clone().unwrap_or_default(),
            ]);
        }
        write!(out, "{}", t.render()).map_err(out_err)?;
        return Ok(0);
    }
    if runs.is_empty() {
        writeln!(out, "no runs in {}", cfg.state_dir.display()).map_err(out_err)?;
        return Ok(0);
    }
    let mut t = Table::new(0);
    t.row(["RUN", "FLOW", "STATE", "NODES", "AGE"]);
    for r in &runs {
        let ok = r
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Succeeded)
            .count();
        t.row([
            r.id.clone(),
            r.flow.clone(),
            r.state.to_string(),
            format!("{ok}/{} ok", r.nodes.len()),
            age(r.created_at),
        ]);
    }
    write!(out, "{}", t.render()).map_err(out_err)?;
    Ok(0)
}

pub fn logs(args: &LogsArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let stream = if args.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    if let Ok(d) = super::remote::RemoteBackend::connect(&cfg.api_socket) {
        d.copy_output(&args.run, &args.node, stream, args.follow, out)
            .map_err(api_err)?;
        return Ok(0);
    }
    let path = cfg.state_dir.join("runs").join(&args.run).join(format!(
        "{}.{}",
        args.node,
        stream.as_str()
    ));
    // Names come from the command line: only plain names reach the path.
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !plain(&args.run) || !plain(&args.node) {
        return Err(api_err(ApiFailure::BadRequest(
            "run and node are plain names".into(),
        )));
    }
    read_runs(&cfg, Some(&args.run), 1)?
        .first()
        .and_then(|r| r.nodes.iter().find(|n| n.id == args.node))
        .ok_or_else(|| {
            api_err(ApiFailure::NotFound(format!(
                "run {} has no node {:?}",
                args.run, args.node
            )))
        })?;
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.follow => return Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not started yet: wait for it.
            loop {
                std::thread::sleep(Duration::from_millis(200));
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
                if node_final(&cfg, &args.run, &args.node)? {
                    return Ok(0);
                }
            }
        }
        Err(source) => return Err(SupervisorError::Read { path, source }),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|source| SupervisorError::Read {
            path: path.clone(),
            source,
        })?;
        if n > 0 {
            out.write_all(&buf[..n]).map_err(out_err)?;
            continue;
        }
        out.flush().map_err(out_err)?;
        if !args.follow || node_final(&cfg, &args.run, &args.node)? {
            // One last read: the node may have written as it ended.
            let mut rest = vec![];
            let _ = f.read_to_end(&mut rest);
            out.write_all(&rest).map_err(out_err)?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn node_final(cfg: &Config, run: &str, node: &str) -> Result<bool, SupervisorError> {
    Ok(read_runs(cfg, Some(run), 1)?
        .first()
        .and_then(|r| r.nodes.iter().find(|n| n.id == node))
        .is_none_or(|n| n.state.is_final()))
}

pub fn confirm(args: &ConfirmArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let (backend, local) = writer(&cfg)?;
    backend.confirm(&args.run, &args.node).map_err(api_err)?;
    if let Some(l) = &local {
        l.start();
    }
    if !args.common.json {
        writeln!(out, "confirmed {} {}", args.run, args.node).map_err(out_err)?;
    }
    if args.detach {
        return Ok(0);
    }
    let fin = follow(&*backend, &args.run, !args.common.json, out)?;
    report_final(&fin, args.common.json, out)
}

pub fn cancel(args: &CancelArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let (backend, local) = writer(&cfg)?;
    backend
        .cancel(&args.run, args.node.as_deref())
        .map_err(api_err)?;
    if let Some(l) = &local {
        l.start();
    }
    // Running nodes end shortly; wait for the run to settle.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut r = backend.get_run(&args.run).map_err(api_err)?;
    while Instant::now() < deadline && r.nodes.iter().any(|n| n.state == NodeState::Running) {
        std::thread::sleep(Duration::from_millis(100));
        r = backend.get_run(&args.run).map_err(api_err)?;
    }
    if args.common.json {
        print_json(out, "run", &r)?;
    } else {
        writeln!(out, "run {} {}", r.id, r.state).map_err(out_err)?;
    }
    Ok(0)
}

fn parse_when(s: &str) -> Result<std::time::SystemTime, SupervisorError> {
    let bad = |reason: String| SupervisorError::Usage {
        what: "--since".into(),
        reason,
    };
    let t = match humantime::parse_duration(s) {
        Ok(d) => std::time::SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| bad(format!("{s:?} reaches back before 1970")))?,
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|e| {
            bad(format!(
                "{s:?} is neither a duration (1h, 2d) nor an RFC 3339 time: {e}"
            ))
        })?,
    };
    if t < std::time::UNIX_EPOCH {
        return Err(bad(format!("{s:?} reaches back before 1970")));
    }
    Ok(t)
}

pub fn audit(args: &AuditArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let q = crate::audit::Query {
        since: args.since.as_deref().map(parse_when).transpose()?,
        run: args.run.clone(),
    };
    let recs = crate::audit::read(&cfg.state_dir.join("audit"), &q)?;
    if args.common.json {
        for r in &recs {
            let s = serde_json::to_string(r).map_err(|source| SupervisorError::Json {
                what: "audit record",
                source,
            })?;
            writeln!(out, "{s}").map_err(out_err)?;
        }
        return Ok(0);
    }
    for r in &recs {
        let mut head = format!(
            "{} {} {} {} {}",
            r.time,
            r.kind,
            r.run.as_deref().unwrap_or("-"),
            r.node.as_deref().unwrap_or("-"),
            r.state.as_deref().unwrap_or("-")
        );
        if r.kind == "node_end" {
            match (r.exit_code, r.signal) {
                (Some(c), _) => head += &format!(" · exit {c}"),
                (None, Some(s)) => head += &format!(" · signal {s}"),
                _ => {}
            }
            head += &format!(" · out {} B · err {} B", r.stdout_bytes, r.stderr_bytes);
            if let Some(d) = r.duration_ms {
                head += &format!(" · {:.1}s", d as f64 / 1000.0);
            }
            if !r.limit_hits.is_empty() {
                head += &format!(" · limits hit: {}", r.limit_hits.join(", "));
            }
        }
        writeln!(out, "{head}").map_err(out_err)?;
        if let Some(reason) = &r.reason {
            writeln!(out, "    reason: {reason}").map_err(out_err)?;
        }
        if !r.layers.is_empty() {
            writeln!(out, "    layers: {}", r.layers.join(", ")).map_err(out_err)?;
        }
    }
    Ok(0)
}

pub fn gc(args: &GcArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let age = humantime::parse_duration(&args.older_than).map_err(|e| SupervisorError::Usage {
        what: "--older-than".into(),
        reason: format!("{:?}: {e}", args.older_than),
    })?;
    let before = crate::store::now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    if !cfg.state_dir.join(crate::store::DB_FILE).exists() {
        if args.common.json {
            print_json(out, "gc result", &Vec::<serde_json::Value>::new())?;
        } else {
            writeln!(out, "nothing to collect in {}", cfg.state_dir.display()).map_err(out_err)?;
        }
        return Ok(0);
    }
    let finished: std::collections::HashSet<(String, String)> = Store::open(&cfg.state_dir)?
        .finished_before(before)?
        .into_iter()
        .collect();
    crate::sys::isolate_libgit2();
    let root = crate::workspace::WorkspaceRoot::open(&cfg.workspace_root).map_err(|e| {
        SupervisorError::StateDir {
            path: cfg.workspace_root.clone(),
            source: std::io::Error::other(error_chain(&e)),
        }
    })?;
    let doomed: Vec<_> = root
        .list()
        .map_err(|e| SupervisorError::StateDir {
            path: cfg.workspace_root.clone(),
            source: std::io::Error::other(error_chain(&e)),
        })?
        .into_iter()
        .filter(|e| finished.contains(&(e.flow.clone(), e.run.clone())))
        .collect();
    // (workspace, what happened, why it failed)
    let mut done: Vec<(String, &'static str, Option<String>)> = vec![];
    for e in &doomed {
        let path = e.path.display().to_string();
        if args.dry_run {
            done.push((path, "would_remove", None));
            continue;
        }
        match root.remove(&e.flow, &e.run) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(cfg.state_dir.join("runs").join(&e.run));
                done.push((path, "removed", None));
            }
            Err(err) => done.push((path, "failed", Some(error_chain(&err)))),
        }
    }
    let failed = done.iter().filter(|d| d.1 == "failed").count();
    if args.common.json {
        let v: Vec<serde_json::Value> = done
            .iter()
            .map(|(p, what, why)| serde_json::json!({"workspace": p, "result": what, "error": why}))
            .collect();
        print_json(out, "gc result", &v)?;
    } else {
        for (p, what, why) in &done {
            let line = match (*what, why) {
                ("would_remove", _) => format!("would remove {p}"),
                ("removed", _) => format!("removed {p}"),
                (_, why) => format!("could not remove {p}: {}", why.as_deref().unwrap_or("")),
            };
            writeln!(out, "{line}").map_err(out_err)?;
        }
        if doomed.is_empty() {
            writeln!(out, "nothing older than {} to collect", args.older_than).map_err(out_err)?;
        }
    }
    Ok(i32::from(failed > 0))
}
