//! `aiopsctl run|submit|status|confirm|cancel`. Each talks to
//! the daemon when one answers on the API socket; otherwise the commands
//! that change state start an in-process engine on the same state
//! directory (holding its lock, so two engines never share a run), and the
//! ones that only read go to the store and files directly.
use super::print_json;
use super::table::{human_bytes, Table};
use crate::config::Config;
use crate::engine::LocalEngine;
use crate::error::{out_err, SupervisorError};
use crate::model::{ApiFailure, Backend, NodeState, RunRecord, RunState, Stream, SubmitRequest};
use crate::store::Store;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `aiopsctl run` exit codes beyond 0 (succeeded) and 1 (failed).
pub const EXIT_PAUSED: i32 = aiops_proto::exit::PAUSED;
pub const EXIT_CANCELLED: i32 = aiops_proto::exit::CANCELLED;

#[derive(Debug, Args)]
pub struct Common {
    /// supervisor.toml [default: /etc/aiops/supervisor.toml when present].
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Use no daemon: run in this process on your own state directory, even
    /// when a system daemon's socket is there but refuses you.
    #[arg(long, global = true)]
    pub local: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The flow file (TOML).
    pub flow: PathBuf,
    /// Approve every gate of this run in advance (recorded in the audit).
    #[arg(long)]
    pub yes: bool,
    /// Hand the run to the daemon, print it and return at once (what
    /// `submit` does); needs a daemon.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub common: Common,
}

/// `submit` always returns once the daemon has the run (it is `run
/// --detach`), so it takes no `--detach` of its own.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The flow file (TOML).
    pub flow: PathBuf,
    /// Approve every gate of this run in advance (recorded in the audit).
    #[arg(long)]
    pub yes: bool,
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
pub struct ConfirmArgs {
    /// The run id.
    pub run: String,
    /// The node waiting at the gate.
    pub node: String,
    /// Return once confirmed instead of following the run.
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run id.
    pub run: String,
    /// One node [default: the whole run].
    pub node: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// A failure the daemon (or the in-process engine) answered, with the
/// exit status of its class (docs/api.md's status codes, mapped in
/// `aiops_proto::exit`: 400 DATAERR, 401/403 NOPERM, 404 NOINPUT, 409
/// CONFLICT, 503 UNAVAILABLE, 500 SOFTWARE).
pub(super) fn api_err(e: ApiFailure) -> SupervisorError {
    use aiops_proto::exit;
    let (what, reason, code) = match e {
        ApiFailure::BadRequest(r) => ("refused", r, exit::DATAERR),
        ApiFailure::Forbidden(r) => ("not allowed", r, exit::NOPERM),
        ApiFailure::NotFound(r) => ("not found", r, exit::NOINPUT),
        ApiFailure::Conflict(r) => ("conflict", r, exit::CONFLICT),
        ApiFailure::Unavailable(r) => ("unavailable", r, exit::UNAVAILABLE),
        ApiFailure::Internal(r) => ("internal error", r, exit::SOFTWARE),
    };
    SupervisorError::Api { what, reason, code }
}

/// The flow file's absolute path and text.
fn read_flow(flow: &Path) -> Result<(PathBuf, String), SupervisorError> {
    let path = std::path::absolute(flow).map_err(|source| SupervisorError::Read {
        path: flow.to_path_buf(),
        source,
    })?;
    let text = aiops_policy::error::read_input(&path, "flow")?;
    Ok((path, text))
}

/// The daemon, if one answers on the configured socket (none with
/// `--local`). A socket that exists but refuses this user (EACCES: not in
/// the admin group) is an error naming the socket and the group, never a
/// silent fall-back to an engine of one's own.
pub(super) fn daemon(
    cfg: &Config,
    c: &Common,
) -> Result<Option<Arc<dyn Backend>>, SupervisorError> {
    Ok(remote(cfg, c)?.map(|b| Arc::new(b) as Arc<dyn Backend>))
}

/// `daemon`, as the concrete client (`logs` copies output through it).
pub(super) fn remote(
    cfg: &Config,
    c: &Common,
) -> Result<Option<super::remote::RemoteBackend>, SupervisorError> {
    if c.local {
        return Ok(None);
    }
    match super::remote::RemoteBackend::connect(&cfg.api_socket) {
        Ok(b) => Ok(Some(b)),
        Err(crate::api::ApiError::NoDaemon { source, .. })
            if source.raw_os_error().is_some_and(|e| {
                e == nix::errno::Errno::EACCES as i32 || e == nix::errno::Errno::EPERM as i32
            }) =>
        {
            Err(SupervisorError::Api {
                what: "not allowed",
                reason: no_access(cfg),
                code: aiops_proto::exit::NOPERM,
            })
        }
        Err(_) => Ok(None),
    }
}

/// What to do about a daemon socket this user may not open.
fn no_access(cfg: &Config) -> String {
    let uid = nix::unistd::geteuid();
    let who = std::env::var("USER")
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        .unwrap_or_else(|| "USER".into());
    format!(
        "the aiops daemon's socket {} refuses uid {uid} (permission denied): the daemon serves \
         root, its own user and members of group {g}. To use it, an administrator runs \
         `usermod -aG {g} {who}` and you log in again (or start `newgrp {g}`); to run \
         without the daemon on your own state directory, add --local",
        cfg.api_socket.display(),
        g = cfg.admin_group,
    )
}

/// The daemon, else an in-process engine (kept alive by the returned
/// guard, and not yet started: call `start` after acting).
fn writer(
    cfg: &Config,
    c: &Common,
) -> Result<(Arc<dyn Backend>, Option<LocalEngine>), SupervisorError> {
    if let Some(d) = daemon(cfg, c)? {
        return Ok((d, None));
    }
    let local = LocalEngine::open(cfg)?;
    Ok((local.engine().backend(), Some(local)))
}

pub(super) fn load_cfg(c: &Common) -> Result<Config, SupervisorError> {
    Config::load(c.config.as_deref())
}

/// SIGINT/SIGTERM to a daemon-less `aiopsctl run`, caught by a thread of
/// its own (`sigwait`): the first is left in `got` for the follow loop,
/// which cancels the run and stops its jails (`LocalEngine::interrupt`),
/// waits until the run is final, then exits 128 + the signal; a second one
/// exits at once with 128 + the signal, without waiting (the jails die with
/// aiopsctl through their PR_SET_PDEATHSIG; nodes still running stay
/// `running` in the database until the next engine start marks them `lost`).
/// Must be called before the engine's runtime starts its threads, which
/// inherit the blocked mask so that only this thread takes the signals.
/// None (signals keep their default action) if the thread cannot start.
fn catch_interrupts() -> Option<Arc<AtomicI32>> {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).ok()?;
    let got = Arc::new(AtomicI32::new(0));
    let seen = got.clone();
    let waiter = std::thread::Builder::new()
        .name("interrupts".into())
        .spawn(move || loop {
            let Ok(sig) = set.wait() else { return };
            let signo = sig as i32;
            if seen
                .compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                eprintln!("aiopsctl: {sig} again: exiting without waiting for the jails");
                // The documented escape hatch: no drain, no destructors.
                #[allow(clippy::exit)]
                std::process::exit(aiops_proto::exit::SIGNAL_BASE + signo);
            }
        });
    if waiter.is_err() {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        return None;
    }
    Some(got)
}

/// The first caught interrupt, acted on once: the run is cancelled.
struct Interrupt<'a> {
    got: Option<Arc<AtomicI32>>,
    local: Option<&'a LocalEngine>,
    acted: Option<i32>,
}

impl Interrupt<'_> {
    fn poll(&mut self, run: &str) {
        let (Some(got), None) = (&self.got, self.acted) else {
            return;
        };
        let signo = got.load(Ordering::SeqCst);
        if signo == 0 {
            return;
        }
        self.acted = Some(signo);
        let name = nix::sys::signal::Signal::try_from(signo).map_or("a signal", |s| s.as_str());
        let Some(local) = self.local else {
            // A daemon runs it: leave it running there, and say how to reach it.
            eprintln!(
                "aiopsctl: {name}: detached from run {run}; it goes on in the daemon.\n  \
                 aiopsctl status {run}            # follow it\n  \
                 aiopsctl logs {run} NODE [-f]    # its output\n  \
                 aiopsctl cancel {run}            # stop it"
            );
            #[allow(clippy::exit)]
            std::process::exit(aiops_proto::exit::SIGNAL_BASE + signo);
        };
        eprintln!(
            "aiopsctl: {name}: cancelling run {run} and stopping its jails (again to exit at once)"
        );
        local.interrupt(run, &format!("aiopsctl run interrupted ({name})"));
    }
}

pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let (path, text) = read_flow(&args.flow)?;
    // Fail before any engine starts: the same check the engine repeats.
    aiops_policy::flow::Flow::from_toml_str(&path, &text)?;
    let (backend, local, got) = match daemon(&cfg, &args.common)? {
        // Attached to a daemon, the signal only ends this process (the run
        // goes on there); caught so that it says so rather than vanish.
        Some(d) => (
            d,
            None,
            if args.detach {
                None
            } else {
                catch_interrupts()
            },
        ),
        None => {
            let got = if args.detach {
                None
            } else {
                catch_interrupts()
            };
            let local = LocalEngine::open(&cfg)?;
            (local.engine().backend(), Some(local), got)
        }
    };
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
    let mut interrupt = Interrupt {
        got,
        local: local.as_ref(),
        acted: None,
    };
    let fin = follow(&*backend, &run.id, !args.common.json, out, &mut |id| {
        interrupt.poll(id)
    })?;
    let code = report_final(&fin, args.common.json, out)?;
    let acted = interrupt.acted;
    // Every state write and audit line on disk before aiopsctl exits, or
    // an error (exit 74) that says what was not.
    if let Some(l) = local {
        l.close()?;
    }
    Ok(match acted {
        Some(signo) => aiops_proto::exit::SIGNAL_BASE + signo,
        None => code,
    })
}

/// Print state changes until the run is final or waits at the gate.
fn follow(
    backend: &dyn Backend,
    run_id: &str,
    progress: bool,
    out: &mut dyn Write,
    tick: &mut dyn FnMut(&str),
) -> Result<RunRecord, SupervisorError> {
    let start = Instant::now();
    let mut seen: std::collections::HashMap<String, (NodeState, u32)> = Default::default();
    let mut rx = backend.subscribe();
    loop {
        tick(run_id);
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
                    line += &format!(
                        " · out {} · err {}",
                        human_bytes(n.stdout_bytes),
                        human_bytes(n.stderr_bytes)
                    );
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
        // Wake on the next event, or re-read after a short while anyway;
        // at most every 50 ms: reading a 2000-node run after each of its
        // events made following it quadratic.
        let read_at = Instant::now();
        let deadline = read_at + Duration::from_millis(200);
        let mut woken = false;
        while Instant::now() < deadline {
            if woken && read_at.elapsed() >= Duration::from_millis(50) {
                break;
            }
            match rx.try_recv() {
                Ok(ev) if ev.run == run_id => woken = true,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => woken = true,
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
    // A run that waits at the gate (or is not final) after a node already
    // failed is a failed run: the caller must not take it for a pause.
    let failed = r.nodes.iter().any(|n| {
        matches!(
            n.state,
            NodeState::Failed | NodeState::Lost | NodeState::Refused | NodeState::WorkspaceFailed
        )
    });
    Ok(match r.state {
        RunState::Succeeded => 0,
        RunState::AwaitingConfirmation | RunState::Queued | RunState::Running if failed => {
            aiops_proto::exit::FAILED
        }
        RunState::AwaitingConfirmation | RunState::Queued | RunState::Running => EXIT_PAUSED,
        RunState::Cancelled => EXIT_CANCELLED,
        RunState::Failed | RunState::Lost => 1,
    })
}

pub fn submit(args: &SubmitArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let Some(backend) = daemon(&cfg, &args.common)? else {
        return Err(SupervisorError::Api {
            what: "submit",
            reason: format!(
                "no daemon answers on {}; start aiops-supervisor, or use `aiopsctl run`",
                cfg.api_socket.display()
            ),
            code: aiops_proto::exit::UNAVAILABLE,
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
pub(super) fn read_runs(
    cfg: &Config,
    c: &Common,
    run: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>, SupervisorError> {
    if let Some(d) = daemon(cfg, c)? {
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
    cfg.read_as_state_owner()?;
    let store = Store::open(&cfg.state_dir)?;
    match run {
        Some(id) => store
            .run(id)?
            .map(|r| vec![r])
            .ok_or_else(|| api_err(ApiFailure::NotFound(format!("no run {id:?}")))),
        None => store.runs(limit),
    }
}

/// A node's byte count for one stream: the recorded one, or, when none was
/// recorded (a node cancelled, lost or still running has no final report),
/// the size of its output file if this process can read it.
fn output_bytes(cfg: &Config, run: &str, n: &crate::model::NodeRecord, stream: Stream) -> u64 {
    let recorded = match stream {
        Stream::Stdout => n.stdout_bytes,
        Stream::Stderr => n.stderr_bytes,
    };
    if recorded > 0 {
        return recorded;
    }
    let file = cfg
        .state_dir
        .join("runs")
        .join(run)
        .join(format!("{}.{}", n.id, stream.as_str()));
    std::fs::metadata(file).map_or(0, |m| m.len())
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
    let runs = read_runs(&cfg, &args.common, args.run.as_deref(), args.limit)?;
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
                human_bytes(output_bytes(&cfg, &r.id, n, Stream::Stdout)),
                human_bytes(output_bytes(&cfg, &r.id, n, Stream::Stderr)),
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

pub fn confirm(args: &ConfirmArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let (backend, local) = writer(&cfg, &args.common)?;
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
    let fin = follow(&*backend, &args.run, !args.common.json, out, &mut |_| {})?;
    let code = report_final(&fin, args.common.json, out)?;
    if let Some(l) = local {
        l.close()?;
    }
    Ok(code)
}

pub fn cancel(args: &CancelArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cfg = load_cfg(&args.common)?;
    let (backend, local) = writer(&cfg, &args.common)?;
    backend
        .cancel(&args.run, args.node.as_deref())
        .map_err(api_err)?;
    if let Some(l) = &local {
        l.start();
    }
    // The nodes cancelled end shortly (a running one once its jail is
    // stopped: SIGKILL after kill_grace); wait for those, not for other
    // nodes of the run that go on running.
    let mine = |n: &crate::model::NodeRecord| args.node.as_deref().is_none_or(|id| n.id == id);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut r = backend.get_run(&args.run).map_err(api_err)?;
    while Instant::now() < deadline && r.nodes.iter().any(|n| mine(n) && !n.state.is_final()) {
        std::thread::sleep(Duration::from_millis(50));
        r = backend.get_run(&args.run).map_err(api_err)?;
    }
    if args.common.json {
        print_json(out, "run", &r)?;
    } else {
        for n in r.nodes.iter().filter(|n| mine(n)) {
            let what = if n.state.is_final() {
                n.state.to_string()
            } else {
                format!("{} (being stopped)", n.state)
            };
            match &args.node {
                Some(_) => writeln!(out, "node {} {what}", n.id).map_err(out_err)?,
                None if !n.state.is_final() => {
                    writeln!(out, "node {} {what}", n.id).map_err(out_err)?;
                }
                None => {}
            }
        }
        writeln!(out, "run {} {}", r.id, r.state).map_err(out_err)?;
    }
    if let Some(l) = local {
        l.close()?;
    }
    Ok(0)
}
