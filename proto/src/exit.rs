//! Every exit status an aiops binary gives, in one table with its meaning.
//! The binaries take their numbers from here; every `--help` of aiopsctl
//! and aiops-supervisor generates its "Exit codes:" block from `TABLE`
//! (`aiops_supervisor::cli::exit_help`), and tests check docs/operations.md's
//! table, aiops-supervisor(8) and each subcommand's provoked failures
//! against it.
//!
//! Ranges, chosen so that none overlaps another: 1-5 for outcomes,
//! 64-78 sysexits(3), 80-101 the jailer's and agentd's set-up steps
//! (`Step::exit_code`), 121-127 `aiopsctl exec`'s own, 128+N a signal.

/// A run that finished with a failed node (`aiopsctl run`).
pub const FAILED: i32 = 1;
/// `aiopsctl lint`: valid, but a command reaches past the sandbox.
pub const ESCAPE: i32 = 3;
/// `aiopsctl run`: the run was cancelled.
pub const CANCELLED: i32 = 4;
/// The run or node is not in a state that allows this: confirm a node
/// that does not wait at the gate, cancel a run that has ended (HTTP 409);
/// or another engine (the daemon, an `aiopsctl run`) holds the state
/// directory's lock.
pub const CONFLICT: i32 = 5;
/// Bad command-line usage (EX_USAGE).
pub const USAGE: i32 = 64;
/// Invalid input: syntax, unknown key, bad value, not UTF-8, too large
/// (EX_DATAERR; HTTP 400 from the daemon).
pub const DATAERR: i32 = 65;
/// A file, profile, run or node not found, or a file unreadable (EX_NOINPUT; HTTP 404).
pub const NOINPUT: i32 = 66;
/// A layer the profile requires is missing on this host, or the daemon is
/// draining or not ready (EX_UNAVAILABLE; HTTP 503).
pub const UNAVAILABLE: i32 = 69;
/// An internal failure in aiopsctl or the daemon (EX_SOFTWARE; HTTP 500).
pub const SOFTWARE: i32 = 70;
/// The host refused an operation (EX_OSERR).
pub const OSERR: i32 = 71;
/// Writing the output, the state store or the audit log failed (EX_IOERR).
pub const IOERR: i32 = 74;
/// `aiopsctl run`: paused at a destructive node awaiting confirmation (EX_TEMPFAIL).
pub const PAUSED: i32 = 75;
/// A message between aiops processes broke the protocol (EX_PROTOCOL).
pub const PROTOCOL: i32 = 76;
/// A node asks for more than its profile allows, or the caller may not
/// use the daemon: its socket refuses them or it answers 401/403 (EX_NOPERM).
pub const NOPERM: i32 = 77;
/// A path variable has no value here (EX_CONFIG).
pub const CONFIG: i32 = 78;
/// The first of the set-up step codes: 80 + the step's index.
pub const STEP_BASE: i32 = 80;
/// Internal or protocol error between aiops processes.
pub const INTERNAL: i32 = 121;
/// Refused before anything ran: bad profile, caps outside the profile,
/// a required layer missing on this host.
pub const REFUSED: i32 = 122;
/// The node produced more output than its cap; the jail was killed.
pub const OUTPUT_CAP: i32 = 123;
/// The node ran past its timeout; the jail was killed.
pub const TIMEOUT: i32 = 124;
/// Building the jail failed at a step (see the report); nothing ran.
pub const SETUP_FAILED: i32 = 125;
/// The command was found but could not be executed.
pub const CANNOT_EXEC: i32 = 126;
/// The command was not found inside the jail.
pub const NOT_FOUND: i32 = 127;
/// A node killed by signal N gives `SIGNAL_BASE + N`.
pub const SIGNAL_BASE: i32 = 128;

/// One exit status: its number, its constant's name, and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: i32,
    pub name: &'static str,
    pub meaning: &'static str,
}

const fn c(code: i32, name: &'static str, meaning: &'static str) -> Code {
    Code {
        code,
        name,
        meaning,
    }
}

/// Every fixed exit status, in numeric order. The step range (80-101) and
/// signals (128+N) are described by `STEP_BASE` and `SIGNAL_BASE`.
pub const TABLE: &[Code] = &[
    c(FAILED, "FAILED", "a node of the run failed"),
    c(
        ESCAPE,
        "ESCAPE",
        "lint: valid, but a command tries to reach past the sandbox",
    ),
    c(CANCELLED, "CANCELLED", "the run was cancelled"),
    c(
        CONFLICT,
        "CONFLICT",
        "the run or node is not in a state that allows this, or another engine holds the state directory; HTTP 409",
    ),
    c(USAGE, "USAGE", "bad flags or arguments (EX_USAGE)"),
    c(
        DATAERR,
        "DATAERR",
        "invalid input: syntax, unknown key, bad value, extends cycle, not UTF-8, too large; HTTP 400 (EX_DATAERR)",
    ),
    c(
        NOINPUT,
        "NOINPUT",
        "file, profile, repository, ref, run or node not found, or a file unreadable; HTTP 404 (EX_NOINPUT)",
    ),
    c(
        UNAVAILABLE,
        "UNAVAILABLE",
        "a layer the profile requires is unavailable on this host, or the daemon is not ready; HTTP 503 (EX_UNAVAILABLE)",
    ),
    c(SOFTWARE, "SOFTWARE", "internal failure; HTTP 500 (EX_SOFTWARE)"),
    c(OSERR, "OSERR", "the host refused an operation (EX_OSERR)"),
    c(
        IOERR,
        "IOERR",
        "writing the output or the state directory failed (EX_IOERR)",
    ),
    c(
        PAUSED,
        "PAUSED",
        "paused: a destructive node awaits confirmation (EX_TEMPFAIL)",
    ),
    c(PROTOCOL, "PROTOCOL", "protocol error (EX_PROTOCOL)"),
    c(
        NOPERM,
        "NOPERM",
        "a node asks for more than its profile allows, or the daemon does not serve this user; HTTP 401/403 (EX_NOPERM)",
    ),
    c(
        CONFIG,
        "CONFIG",
        "a path variable has no value here (EX_CONFIG)",
    ),
    c(
        INTERNAL,
        "INTERNAL",
        "internal or protocol error between aiops processes",
    ),
    c(REFUSED, "REFUSED", "refused before anything ran"),
    c(
        OUTPUT_CAP,
        "OUTPUT_CAP",
        "output cap reached; the jail was killed",
    ),
    c(TIMEOUT, "TIMEOUT", "timeout; the jail was killed"),
    c(
        SETUP_FAILED,
        "SETUP_FAILED",
        "jail set-up failed at a step; nothing ran",
    ),
    c(
        CANNOT_EXEC,
        "CANNOT_EXEC",
        "the command exists but cannot be executed",
    ),
    c(
        NOT_FOUND,
        "NOT_FOUND",
        "the command was not found inside the jail",
    ),
];

/// The entry for `code`, if it is a fixed one.
pub fn lookup(code: i32) -> Option<&'static Code> {
    TABLE.iter().find(|e| e.code == code)
}

/// What a node's exit status means, for `aiopsctl exec`'s report: the
/// fixed codes, a set-up step, or a signal. `None` for any other code
/// (the node's own).
pub fn describe(code: i32) -> Option<String> {
    if let Some(e) = lookup(code) {
        return Some(e.meaning.to_string());
    }
    if let Some(step) = crate::report::Step::from_exit_code(code) {
        return Some(format!("set-up failed at step {step}"));
    }
    (code > SIGNAL_BASE && code < SIGNAL_BASE + 65)
        .then(|| format!("killed by signal {}", code - SIGNAL_BASE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_unique_and_clear_of_the_step_range() {
        for w in TABLE.windows(2) {
            assert!(w[0].code < w[1].code, "{:?} then {:?}", w[0], w[1]);
        }
        let steps = crate::report::Step::ALL;
        let last = steps[steps.len() - 1].exit_code();
        for e in TABLE {
            assert!(
                e.code < STEP_BASE || e.code > last,
                "{e:?} inside the step range"
            );
            assert!(e.code < SIGNAL_BASE, "{e:?}");
        }
    }

    #[test]
    fn every_code_is_described() {
        assert_eq!(
            describe(TIMEOUT).as_deref(),
            Some("timeout; the jail was killed")
        );
        assert_eq!(
            describe(80).as_deref(),
            Some("set-up failed at step read_request")
        );
        assert_eq!(describe(137).as_deref(), Some("killed by signal 9"));
        assert_eq!(describe(42), None);
    }
}
