//! Forward termination signals aimed at `aiopsctl` to the jailer, which
//! passes them to agentd and the node; `aiopsctl` itself stays to report.
//! SIGINT/SIGQUIT from a terminal already reach the jailer (same process
//! group), so those are only caught here, not forwarded twice.
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

pub struct Forwarder {
    handle: Option<Handle>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.close();
        }
    }
}

/// Start forwarding; stops when the returned guard drops. If the handlers
/// cannot be installed, signals keep their default action (we die, the
/// jailer gets SIGHUP/EOF and its pdeathsig takes the jail down).
pub fn forward_to(pid: u32) -> Forwarder {
    let Ok(mut signals) = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGQUIT]) else {
        return Forwarder { handle: None };
    };
    let handle = signals.handle();
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGINT || sig == SIGQUIT {
                continue;
            }
            if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                let _ = nix::sys::signal::kill(target, s);
            }
        }
    });
    Forwarder {
        handle: Some(handle),
    }
}
