//! The caller's terminal in raw mode while `aiopsctl exec` relays a pty
//! run, as `ssh -t` does: no echo, no line editing, no signals from ^C or
//! ^Z, no output processing here (the node's pty does it). aiopsctl, not
//! agentd, owns this: it runs outside the jail, and it is the process that
//! outlives the jail, so it can restore the terminal whatever became of it.
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

pub struct RawMode {
    saved: Termios,
    old_mask: SigSet,
}

impl RawMode {
    /// Raw mode on stdin's terminal; None if stdin is not one (a `-t` run
    /// fed by a pipe), then there is nothing to restore.
    ///
    /// SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked for the guard's life
    /// (the report loop reads them from a signalfd meanwhile), so none can
    /// end this process between the jail's end and the restore; one that
    /// arrives after the jail ended acts once the terminal is back.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            set.add(s);
        }
        let mut old_mask = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask))
            .ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let guard = RawMode { saved, old_mask };
        // TCSADRAIN: what we already wrote is shown with the old settings.
        tcsetattr(&stdin, SetArg::TCSADRAIN, &raw).ok()?;
        Some(guard)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
        let _ =
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
    }
}
