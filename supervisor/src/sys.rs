//! The supervisor crate's only unsafe code: libgit2's process-global
//! options, set once before any git2 call, and the signal dispositions
//! `aiopsctl` and `aiops-supervisor` reset at start.
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use std::sync::Once;

/// First thing in `main`, while the process is single-threaded: every
/// signal a careless starter set to SIG_IGN goes back to SIG_DFL and the
/// mask is emptied. Ignored dispositions and the mask survive exec, so they
/// would reach the jailer, agentd and the node, and an ignored SIGCHLD makes
/// the kernel reap children unannounced (`aiopsctl exec` and the jailer
/// would wait for an end they are never told of). Handlers are kept (exec
/// reset the starter's, so one here is the Rust runtime's), and SIGPIPE,
/// which that runtime ignores itself. Real-time signals are not in nix's
/// `Signal` and are left as found.
pub fn reset_inherited_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE) {
            continue;
        }
        // SAFETY: SIG_DFL installs no code, so no async-signal-safety rule
        // applies; we are single-threaded, so no handler runs in between.
        let Ok(old) = (unsafe { nix::sys::signal::sigaction(sig, &dfl) }) else {
            continue;
        };
        if !matches!(old.handler(), SigHandler::SigIgn | SigHandler::SigDfl) {
            // SAFETY: puts back the handler the runtime installed, unchanged.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &old) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Make libgit2 ignore every user, XDG, system and ProgramData git config
/// (a user's `core.autocrlf` or an unreadable `$HOME` must not change or
/// break what a workspace contains), and let it read repositories owned
/// by another uid: in system mode the daemon (user `aiops`) checks out
/// operators' repos. That check (`safe.directory`) exists because git
/// runs hooks and `core.fsmonitor` from a repo's config; libgit2 runs
/// neither, and a workspace is a fresh repository that takes objects
/// from the source and nothing of its config.
pub fn isolate_libgit2() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use git2::ConfigLevel::{Global, ProgramData, System, XDG};
        for level in [System, XDG, Global, ProgramData] {
            // SAFETY: libgit2 options are process-global and unsynchronised.
            // This runs once (the Once blocks other callers until it has
            // returned), and every git2 use in this crate goes through
            // `WorkspaceRoot`, whose callers call this first.
            if let Err(e) = unsafe { git2::opts::set_search_path(level, "") } {
                tracing::warn!(error = %e, "could not clear a git config search path");
            }
        }
        // SAFETY: as above: once, before any repository is opened.
        if let Err(e) = unsafe { git2::opts::set_verify_owner_validation(false) } {
            tracing::warn!(error = %e, "could not turn off libgit2's owner check");
        }
    });
}
