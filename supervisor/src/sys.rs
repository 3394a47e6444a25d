//! The supervisor crate's only unsafe code: libgit2's process-global
//! options, set once before any git2 call.
use std::sync::Once;

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
