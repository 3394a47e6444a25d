//! Signals as events: everything agentd cares about is blocked and read
//! from a signalfd in the poll loop, so no handler runs Rust code and PID 1
//! never dies of a default action.
use crate::sys;
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd};

/// Passed on to the node's process group.
pub const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

pub struct Signals {
    fd: SignalFd,
    /// The mask agentd was started with, restored in the node before exec.
    original: SigSet,
}

/// What one drain of the signalfd found.
#[derive(Default)]
pub struct Pending {
    pub child: bool,
    pub winch: bool,
    /// Forwardable signals seen, in arrival order (at most one of each kind
    /// can be pending at a time, so four slots suffice).
    pub forward: [Option<Signal>; 4],
}

impl Signals {
    pub fn install() -> Result<Signals, Errno> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        for s in FORWARDED {
            set.add(s);
        }
        // The caller's terminal changed size (the jailer's parent, in its
        // foreground group, passes it on); only a pty run acts on it.
        set.add(Signal::SIGWINCH);
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        let mut original = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut original))?;
        sys::set_sigpipe(SigHandler::SigIgn)?;
        Ok(Signals { fd, original })
    }

    /// In the forked node, before exec: dispositions and mask as agentd got them.
    pub fn restore_for_exec(&self) -> Result<(), Errno> {
        sys::set_sigpipe(SigHandler::SigDfl)?;
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.original), None)
    }

    pub fn drain(&self) -> Result<Pending, Errno> {
        let mut p = Pending::default();
        let mut n = 0;
        while let Some(info) = self.fd.read_signal()? {
            match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
                Ok(Signal::SIGCHLD) => p.child = true,
                Ok(Signal::SIGWINCH) => p.winch = true,
                Ok(s) if n < p.forward.len() => {
                    p.forward[n] = Some(s);
                    n += 1;
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
