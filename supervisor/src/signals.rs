//! Forward termination signals aimed at `aiopsctl` to the jailer, which
//! passes them to agentd and the node; `aiopsctl` itself stays to report.
//!
//! SIGTERM and SIGHUP are always forwarded. SIGINT and SIGQUIT are forwarded
//! when a process sent them (`kill -INT`, as harnesses stop a child), and
//! swallowed when the terminal did: the kernel then sent them to the whole
//! foreground group, the jailer included, which already passed them on.
//! Once a stop was forwarded the jail has `STOP_GRACE` to end; then the
//! jailer is SIGKILLed, and the jail dies with it (PR_SET_PDEATHSIG), so a
//! node that ignores the signal cannot keep `aiopsctl` running.
//!
//! The signals are blocked and read from a signalfd that the report loop
//! polls beside the report socket: no thread, so `aiopsctl exec` stays
//! single-threaded and starts and exits sooner.
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How long a jail may take to end after a forwarded stop signal (the
/// engine's `kill_grace` too).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// `si_code` values of a signal a process sent (kill, sigqueue, tgkill):
/// SI_USER is 0, the others negative (asm-generic/siginfo.h); the kernel's
/// own (a terminal's ^C is SI_KERNEL, 0x80) are positive.
const fn sent_by_a_process(si_code: i32) -> bool {
    si_code <= 0
}

pub struct Forwarder {
    fd: Option<SignalFd>,
    /// Which of `CAUGHT` were blocked before (bit i for `CAUGHT[i]`): a
    /// byte, not the 128-byte old mask, since only these four change.
    was_blocked: u8,
    target: Pid,
    stop: Cell<Stop>,
}

/// Where a forwarded stop stands.
#[derive(Clone, Copy)]
enum Stop {
    None,
    /// The first stop signal was forwarded then.
    Since(Instant),
    /// The jailer was SIGKILLed: nothing more to wait for.
    Killed,
}

const CAUGHT: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn caught() -> SigSet {
    let mut s = SigSet::empty();
    for sig in CAUGHT {
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
    let blocked =
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask));
    let was_blocked = CAUGHT
        .iter()
        .enumerate()
        .filter(|(_, s)| old_mask.contains(**s))
        .fold(0u8, |acc, (i, _)| acc | 1 << i);
    if blocked.is_err() {
        return Forwarder {
            fd: None,
            was_blocked,
            target,
            stop: Cell::new(Stop::None),
        };
    }
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();
    let f = Forwarder {
        fd,
        was_blocked,
        target,
        stop: Cell::new(Stop::None),
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

    /// Forward every caught signal that must be (see the module docs).
    pub fn forward_pending(&self) {
        let Some(fd) = &self.fd else { return };
        while let Ok(Some(info)) = fd.read_signal() {
            let sig = i32::try_from(info.ssi_signo)
                .ok()
                .and_then(|s| Signal::try_from(s).ok());
            let forward = match sig {
                Some(s @ (Signal::SIGTERM | Signal::SIGHUP)) => Some(s),
                Some(s @ (Signal::SIGINT | Signal::SIGQUIT))
                    if sent_by_a_process(info.ssi_code) =>
                {
                    Some(s)
                }
                _ => None,
            };
            if let Some(s) = forward {
                let _ = kill(self.target, s);
                if matches!(self.stop.get(), Stop::None) {
                    self.stop.set(Stop::Since(Instant::now()));
                }
            }
        }
    }

    /// How long the report loop may wait before `kill_if_overdue` must run;
    /// None while no stop was forwarded.
    pub fn until_overdue(&self) -> Option<Duration> {
        match self.stop.get() {
            Stop::Since(t) => Some((t + STOP_GRACE).saturating_duration_since(Instant::now())),
            Stop::None | Stop::Killed => None,
        }
    }

    /// Past the grace: SIGKILL the jailer (the jail follows it).
    pub fn kill_if_overdue(&self) {
        if self.until_overdue().is_some_and(|d| d.is_zero()) {
            let _ = kill(self.target, Signal::SIGKILL);
            self.stop.set(Stop::Killed);
        }
    }

    fn restore_mask(&self) {
        let mut unblock = SigSet::empty();
        for (i, s) in CAUGHT.iter().enumerate() {
            if self.was_blocked & (1 << i) == 0 {
                unblock.add(*s);
            }
        }
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&unblock), None);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signals_a_process_sent_count_as_sent() {
        // SI_USER, SI_QUEUE, SI_TKILL; SI_KERNEL (a terminal's ^C).
        assert!(sent_by_a_process(0));
        assert!(sent_by_a_process(-1));
        assert!(sent_by_a_process(-6));
        assert!(!sent_by_a_process(0x80));
    }
}
