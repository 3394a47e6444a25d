//! Opening the engine for a `supervisor.toml`: the state directory's lock,
//! the engine's config and its runtime. The daemon (`daemon.rs`) and the
//! in-process engine of `aiopsctl run|confirm|cancel` both start here, and
//! differ only in what `Caller` says.
use super::{Engine, EngineConfig, JailerTarget};
use crate::config::{Config, JailerMode};
use crate::error::SupervisorError;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// Who runs the engine, which decides what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `aiops-supervisor`: its API clients are not the operator.
    Daemon,
    /// `aiopsctl` in-process, whose user is the operator (profiles by path
    /// and `unconfined` are theirs to use).
    Aiopsctl,
}

/// An opened engine with the lock and runtime it runs under. The lock is
/// held until this is dropped.
pub struct BootedEngine {
    pub engine: Engine,
    pub rt: tokio::runtime::Runtime,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl BootedEngine {
    /// Lock the state directory, then open the engine (restart recovery
    /// happens here). Nothing is scheduled until `Engine::start`.
    pub fn open(cfg: &Config, caller: Caller) -> Result<BootedEngine, SupervisorError> {
        let lock = engine_lock(&cfg.state_dir)?;
        let rt = engine_runtime(cfg)?;
        let engine = Engine::open(engine_config(cfg, caller)?)?;
        Ok(BootedEngine {
            engine,
            rt,
            _lock: lock,
        })
    }
}

/// Hold the state directory's engine lock: one engine (daemon or
/// in-process) per state directory.
fn engine_lock(state_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, SupervisorError> {
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
        SupervisorError::Api {
            what: "busy",
            reason: format!(
                "another aiops engine (the daemon, or an aiopsctl run/confirm) is using {} \
                 (its lock {} is held: {e})",
                state_dir.display(),
                path.display()
            ),
            code: aiops_proto::exit::CONFLICT,
        }
    })
}

fn engine_config(cfg: &Config, caller: Caller) -> Result<EngineConfig, SupervisorError> {
    // In system mode the jails come from the shared jailer service: an
    // in-process engine there keeps the daemon's rules.
    let local = caller == Caller::Aiopsctl && cfg.jailer_mode == JailerMode::Exec;
    let jailer = match cfg.jailer_mode {
        JailerMode::Socket => JailerTarget::Socket(cfg.jailer_socket.clone()),
        JailerMode::Exec => JailerTarget::Exec(
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
fn engine_runtime(cfg: &Config) -> Result<tokio::runtime::Runtime, SupervisorError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| SupervisorError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        })
}

/// The in-process engine of `aiopsctl`, on the local state directory.
/// Dropped, it lets the nodes it started finish (or stops and records
/// them) within `drain_grace`, then flushes the audit.
pub struct LocalEngine {
    booted: BootedEngine,
    grace: Duration,
    /// `close` did the drain already.
    closed: bool,
}

impl LocalEngine {
    pub fn open(cfg: &Config) -> Result<LocalEngine, SupervisorError> {
        Ok(LocalEngine {
            booted: BootedEngine::open(cfg, Caller::Aiopsctl)?,
            grace: cfg.drain_grace,
            closed: false,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.booted.engine
    }

    /// `Engine::interrupt` on this engine's runtime (which the SIGKILL
    /// after `kill_grace` is scheduled on).
    pub fn interrupt(&self, run: &str, why: &str) {
        let _guard = self.booted.rt.enter();
        self.booted.engine.interrupt(run, why);
    }

    /// Start scheduling. Callers act first (cancel, confirm, submit) so
    /// that nothing is dispatched that the action was about to stop.
    pub fn start(&self) {
        let _guard = self.booted.rt.enter();
        self.booted.engine.start();
    }
}

/// How long an exiting `aiopsctl` waits for a full or locked state disk
/// to take what it still holds (state writes, audit lines).
const STATE_WAIT: Duration = Duration::from_secs(10);

impl LocalEngine {
    /// Drain (see `Drop`), then wait up to `STATE_WAIT` for every state
    /// write and audit line to reach the disk. What could not be written
    /// is an error naming it, and the audit lines themselves go to stderr
    /// so that they are not lost with this process.
    pub fn close(mut self) -> Result<(), SupervisorError> {
        self.closed = true;
        let engine = &self.booted.engine;
        self.booted.rt.block_on(engine.drain(self.grace));
        engine.flush_audit();
        let left = engine.settle(STATE_WAIT);
        if left.writes == 0 && left.audit_lines.is_empty() {
            return Ok(());
        }
        for l in &left.audit_lines {
            eprintln!("aiopsctl: audit line not written: {l}");
        }
        Err(SupervisorError::StateNotSaved {
            detail: format!(
                "{} state write(s) and {} audit line(s) could not be written to {} within {}s ({}); the audit lines are printed above; a node whose final state was not stored shows as `lost` at the next engine start",
                left.writes,
                left.audit_lines.len(),
                engine.state_dir().display(),
                STATE_WAIT.as_secs(),
                left.why.unwrap_or_else(|| "the disk refused them".into())
            ),
        })
    }
}

impl Drop for LocalEngine {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Nodes this process started (it may have picked up other runs'
        // queued work) finish, or are stopped and recorded, before it
        // exits; then every audit line is on disk.
        let engine = &self.booted.engine;
        self.booted.rt.block_on(engine.drain(self.grace));
        engine.flush_audit();
        let left = engine.settle(STATE_WAIT);
        for l in &left.audit_lines {
            eprintln!("aiopsctl: audit line not written: {l}");
        }
        if left.writes > 0 {
            eprintln!(
                "aiopsctl: {} state write(s) could not be written to {}",
                left.writes,
                engine.state_dir().display()
            );
        }
    }
}
