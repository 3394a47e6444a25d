//! PID 1 duties: reap every child (orphans reparent to agentd), remember the
//! node's status, and make sure nothing outlives the node.
//!
//! As PID 1 of the jail's pid namespace, `kill(-1, SIGKILL)` reaches every
//! other process in the jail and never agentd itself. Run as a plain child
//! (an `unconfined` plan) agentd is a child subreaper instead: it kills the
//! node's process group, then each process that was reparented to it, until
//! it has no children left.
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub struct Reaper {
    node: Pid,
    pid1: bool,
    /// The node's exit status once reaped.
    pub node_status: Option<WaitStatus>,
}

impl Reaper {
    pub fn new(node: Pid, pid1: bool) -> Reaper {
        Reaper {
            node,
            pid1,
            node_status: None,
        }
    }

    /// Reap every child that has already exited. Returns true when this call
    /// reaped the node.
    pub fn reap_exited(&mut self) -> Result<bool, Errno> {
        let mut got_node = false;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(got_node),
                Ok(st) => got_node |= self.record(st),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn record(&mut self, st: WaitStatus) -> bool {
        if st.pid() == Some(self.node)
            && matches!(st, WaitStatus::Exited(..) | WaitStatus::Signaled(..))
        {
            self.node_status = Some(st);
            return true;
        }
        false
    }

    pub fn node_alive(&self) -> bool {
        self.node_status.is_none()
    }

    /// Forward a signal to the node's process group while it runs.
    pub fn forward(&self, sig: Signal) {
        if self.node_alive() {
            // ESRCH: the group is already gone, which is what we wanted.
            let _ = killpg(self.node, sig);
        }
    }

    /// SIGKILL everything in the jail except agentd.
    pub fn kill_jail(&self) {
        if self.pid1 {
            // ESRCH: nothing else is left.
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        } else {
            let _ = killpg(self.node, Signal::SIGKILL);
            for pid in own_children() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Kill and reap until agentd has no children at all.
    pub fn kill_and_reap_all(&mut self) -> Result<(), Errno> {
        loop {
            self.kill_jail();
            match waitpid(None, None) {
                Ok(st) => {
                    self.record(st);
                }
                Err(Errno::ECHILD) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Direct children of this (single-threaded) process, from
/// /proc/self/task/<pid>/children; empty if /proc is not readable, in which
/// case the process group kill is all a non-PID-1 agentd can do.
fn own_children() -> Vec<Pid> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/self/task/{me}/children"))
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|s| s.parse().ok())
        .map(Pid::from_raw)
        .collect()
}
