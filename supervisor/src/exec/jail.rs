//! A jail whose request was sent, whichever way it was made: our own child
//! `aiops-jailer` (pipe mode, `linux.rs`) or a socket-activated jailer
//! (system mode, `socket.rs`). Both are followed the same way: `stopper`
//! gives a handle that stops the jail from another thread, `wait_with`
//! passes the jail's events on as they arrive and returns its report.
use super::linux::{finish, read_reports};
use super::{ExecReport, Watch};
use crate::error::SupervisorError;
use crate::signals::Forwarder;
use aiops_policy::{JailPlan, NetMode};
use aiops_proto::exit;
use aiops_proto::request::frame;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a running jail reports before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JailEvent {
    /// agentd reported the node's end; the jail is still being torn down.
    Exited,
}

/// What the end report repeats from the plan (kept instead of the plan,
/// which is large).
pub(super) struct PlanSummary {
    pub profile: String,
    pub cwd: String,
    pub net: NetMode,
    pub output_cap: u64,
    pub timeout_ms: u64,
    pub seccomp_rules: crate::denials::SeccompRules,
}

impl PlanSummary {
    pub fn of(plan: &JailPlan) -> PlanSummary {
        PlanSummary {
            profile: plan.profile.clone(),
            cwd: plan.cwd.to_string(),
            net: plan.net.mode,
            output_cap: plan.run.output_bytes,
            timeout_ms: plan.run.timeout_ms,
            seccomp_rules: crate::denials::SeccompRules::of(plan.seccomp.as_ref()),
        }
    }
}

/// A running jail. Dropped without `wait`, a socket-activated jail is
/// killed (its connection closes); a child jailer is left to end by itself.
pub struct Jail {
    via: Via,
    reports: OwnedFd,
    summary: PlanSummary,
    before: Option<Watch>,
    stop: JailStop,
}

pub(super) enum Via {
    /// Our jailer child; `aiopsctl exec` forwards its own termination
    /// signals to it, the daemon does not (it stops jails itself).
    Child {
        child: Child,
        forward: Option<Forwarder>,
    },
    /// The connection to a socket-activated jailer; the jailer writes the
    /// jail's wait status on it at the end.
    Socket { conn: UnixStream },
}

impl Jail {
    pub(super) fn new(
        via: Via,
        reports: OwnedFd,
        summary: PlanSummary,
        before: Watch,
        stop: JailStop,
    ) -> Jail {
        Jail {
            via,
            reports,
            summary,
            before: Some(before),
            stop,
        }
    }

    /// A handle that stops this jail while another thread waits on it.
    pub fn stopper(&self) -> JailStop {
        self.stop.clone()
    }

    /// The report socket (`SOCK_SEQPACKET`), to poll beside other work;
    /// `wait` reads it.
    pub fn reports(&self) -> BorrowedFd<'_> {
        self.reports.as_fd()
    }

    /// Read the reports until the jail ends, then its status.
    pub fn wait(self) -> Result<ExecReport, SupervisorError> {
        self.wait_with(|_| {})
    }

    /// `wait`, passing each `JailEvent` to `events` as it arrives.
    pub fn wait_with(
        mut self,
        mut events: impl FnMut(JailEvent),
    ) -> Result<ExecReport, SupervisorError> {
        let forward = match &self.via {
            Via::Child { forward, .. } => forward.as_ref(),
            Via::Socket { .. } => None,
        };
        // Once: agentd sends one `Exited`, but the reader must not trust that.
        let mut exited = false;
        let reports = read_reports(&self.reports, forward, &mut || {
            if !std::mem::replace(&mut exited, true) {
                events(JailEvent::Exited)
            }
        });
        // The reports are over: from here a child's pid may be reaped and
        // reused, so the stopper must not signal it any more.
        self.stop.detach();
        let reports = reports?;
        let status = match &mut self.via {
            Via::Child { child, .. } => child
                .wait()
                .map_err(|source| SupervisorError::Wait { source })?,
            Via::Socket { conn } => {
                let mut raw = [0u8; 4];
                // No status (EOF): the jailer failed before the jail
                // existed, or was killed; the reports, if any, say more.
                match conn.read_exact(&mut raw) {
                    Ok(()) => ExitStatus::from_raw(frame::decode_status(raw)),
                    Err(_) => ExitStatus::from_raw(exit::INTERNAL << 8),
                }
            }
        };
        let before = self.before.take();
        Ok(finish(&self.summary, before, &status, reports))
    }

    /// Kill the jail now (see `JailStop::kill`); a socket-activated jailer's
    /// waiting parent sees the connection close and SIGKILLs the jail's PID 1.
    pub fn kill(mut self) {
        self.stop.kill();
        self.stop.detach();
        if let Via::Child { child, .. } = &mut self.via {
            let _ = child.wait();
        }
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        if let Via::Socket { conn } = &self.via {
            // Shut down rather than only close: a stopper's copy of the
            // connection must not keep the jail alive.
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

/// Stops a running jail from any thread; clones stop the same jail.
#[derive(Clone)]
pub struct JailStop(Arc<StopVia>);

enum StopVia {
    /// Our unreaped jailer child, until the jail's reports end (`detach`).
    Pid(Mutex<Option<Pid>>),
    /// A copy of the connection to a socket-activated jailer.
    Socket(UnixStream),
}

impl std::fmt::Debug for JailStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            StopVia::Pid(p) => write!(f, "Pid({:?})", *lock(p)),
            StopVia::Socket(_) => f.write_str("Socket"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl JailStop {
    pub(super) fn pid(pid: u32) -> JailStop {
        let pid = i32::try_from(pid).ok().map(Pid::from_raw);
        JailStop(Arc::new(StopVia::Pid(Mutex::new(pid))))
    }

    pub(super) fn socket(conn: UnixStream) -> JailStop {
        JailStop(Arc::new(StopVia::Socket(conn)))
    }

    /// Ask the jail to stop: SIGTERM to the jailer, which passes it to
    /// agentd and the node. A socket-activated jail has no gentler signal
    /// than its connection closing, so it is killed at once. True when a
    /// `kill` should follow after a grace period.
    pub fn stop(&self) -> bool {
        match &*self.0 {
            StopVia::Pid(pid) => {
                // Under the lock: `detach` takes the pid before it is reaped.
                if let Some(p) = *lock(pid) {
                    let _ = kill(p, Signal::SIGTERM);
                    return true;
                }
                false
            }
            StopVia::Socket(_) => {
                self.kill();
                false
            }
        }
    }

    /// Kill the jail: SIGKILL to the jailer (the jail dies with it through
    /// PR_SET_PDEATHSIG), or close the connection both ways (the jailer sees
    /// the hang-up and kills the jail). Nothing once the jail was reaped.
    pub fn kill(&self) {
        match &*self.0 {
            StopVia::Pid(pid) => {
                if let Some(p) = *lock(pid) {
                    let _ = kill(p, Signal::SIGKILL);
                }
            }
            StopVia::Socket(conn) => {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// From now on the jailer may be reaped and its pid reused.
    pub(super) fn detach(&self) {
        if let StopVia::Pid(pid) = &*self.0 {
            lock(pid).take();
        }
    }
}
