//! Forward termination signals aimed at `aiopsctl` to the jailer, which
//! passes them to agentd and the node; `aiopsctl` itself stays to report.
//! SIGINT/SIGQUIT from a terminal already reach the jailer (same process
//! group), so those are only caught here, not forwarded twice.
//!
//! The signals are blocked and read from a signalfd that the report loop
//! polls beside the report socket: no thread, so `aiopsctl exec` stays
//! single-threaded and starts and exits sooner.
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd};

pub struct Forwarder {
    fd: Option<SignalFd>,
    old_mask: SigSet,
    target: Pid,
}

fn caught() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        s.add(sig);
    }
    s
}

/// Start catching; the previous signal mask comes back when the returned
/// guard drops, which the caller does once the jail is over. If the signalfd cannot be made, signals keep their default
/// action (we die, the jailer gets SIGHUP/EOF and its pdeathsig takes the
/// jail down).
pub fn forward_to(pid: u32) -> Forwarder {
    let target = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let set = caught();
    let mut old_mask = SigSet::empty();
    if nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask))
        .is_err()
    {
        return Forwarder {
            fd: None,
            old_mask,
            target,
        };
    }
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();
    let f = Forwarder {
        fd,
        old_mask,
        target,
    };
    if f.fd.is_none() {
        f.restore_mask();
    }
    f
}

impl Forwarder {
    /// The fd to poll for caught signals, if catching works.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Forward every caught SIGTERM/SIGHUP; SIGINT/SIGQUIT are swallowed.
    pub fn forward_pending(&self) {
        let Some(fd) = &self.fd else { return };
        while let Ok(Some(info)) = fd.read_signal() {
            let sig = i32::try_from(info.ssi_signo).ok();
            if let Some(s @ (Signal::SIGTERM | Signal::SIGHUP)) =
                sig.and_then(|s| Signal::try_from(s).ok())
            {
                let _ = kill(self.target, s);
            }
        }
    }

    fn restore_mask(&self) {
        let _ =
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(fd) = &self.fd {
            // The jail is over and the jailer may be reaped (its pid free for
            // reuse): what arrived since is dropped, not forwarded, and not
            // left pending to act once unblocked.
            while let Ok(Some(_)) = fd.read_signal() {}
            self.restore_mask();
        }
    }
}
