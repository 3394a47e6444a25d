//! Every `unsafe` in agentd. Thin, total wrappers with no policy in them;
//! each block names the kernel rule or lifetime that makes it sound.
use nix::errno::Errno;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::ForkResult;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Take ownership of an fd the jailer handed us by number (the spec memfd,
/// the report socket). Fails with EBADF if it is not open.
pub fn adopt_fd(fd: RawFd) -> Result<OwnedFd, Errno> {
    if !fd_is_open(fd) {
        return Err(Errno::EBADF);
    }
    // SAFETY: by the jailer contract this fd number is handed to agentd
    // alone; nothing else in this process wraps it, so the OwnedFd is its
    // only owner and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is open (F_GETFD succeeds).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table entry.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// agentd's own stdin/stdout/stderr.
pub fn stdio(fd: RawFd) -> BorrowedFd<'static> {
    debug_assert!((0..=2).contains(&fd));
    // SAFETY: agentd never closes fds 0-2 (the user's), so they stay valid
    // for the whole process lifetime; a closed one just yields EBADF on use.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Mark every fd from `first` up close-on-exec, so the node inherits only
/// what spawn puts at 0-2 (never the report socket).
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptor table entries and takes no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

/// fork(2).
pub fn fork() -> Result<ForkResult, Errno> {
    // SAFETY: agentd is single-threaded (no threads are ever started), so the
    // child's copy of the heap and of every lock is consistent.
    unsafe { nix::unistd::fork() }
}

/// SIGPIPE ignored in agentd (a closed stdout gives EPIPE, which the pump
/// handles) or back to default in the node before exec.
pub fn set_sigpipe(handler: SigHandler) -> Result<(), Errno> {
    debug_assert!(matches!(handler, SigHandler::SigIgn | SigHandler::SigDfl));
    // SAFETY: SIG_IGN and SIG_DFL install no Rust code as a handler, so no
    // async-signal-safety rule applies.
    unsafe { signal::signal(Signal::SIGPIPE, handler) }.map(drop)
}

/// splice(2) from a pipe to `out` at its current offset; returns bytes moved.
pub fn splice(from_pipe: BorrowedFd<'_>, out: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    // SAFETY: null offsets mean "use and advance the file offset"; both fds
    // are borrowed for the duration of the call.
    let n = unsafe {
        libc::splice(
            from_pipe.as_raw_fd(),
            std::ptr::null_mut(),
            out.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE,
        )
    };
    Errno::result(n).map(|n| n.unsigned_abs())
}

/// tcgetpgrp(3) on one of fds 0-2.
pub fn tcgetpgrp(fd: BorrowedFd<'_>) -> Result<nix::unistd::Pid, Errno> {
    // SAFETY: an ioctl(TIOCGPGRP) on a borrowed fd; no pointers are passed.
    let pg = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
    Errno::result(pg).map(nix::unistd::Pid::from_raw)
}

/// tcsetpgrp(3): make `pgrp` the terminal's foreground group (SIGTTOU is
/// blocked by the caller, so a background caller is not stopped).
pub fn tcsetpgrp(fd: BorrowedFd<'_>, pgrp: nix::unistd::Pid) -> Result<(), Errno> {
    // SAFETY: an ioctl(TIOCSPGRP) on a borrowed fd; libc passes a pointer to
    // its own copy of `pgrp`, valid for the call.
    Errno::result(unsafe { libc::tcsetpgrp(fd.as_raw_fd(), pgrp.as_raw()) }).map(drop)
}

/// _exit(2) in the forked child: no atexit handlers, no stdio flush of
/// buffers that belong to the parent.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}

extern "C" fn interrupt_only(_: libc::c_int) {}

/// From `first` on, every `every`: SIGALRM with a handler that does nothing
/// and no SA_RESTART, so a write to fd 1/2 blocked by a consumer that stopped
/// reading (or a tty stopped with TCOOFF) returns EINTR and the deadline
/// is still enforced. Interval timers are not inherited across fork(2).
pub fn arm_deadline_alarm(
    first: std::time::Duration,
    every: std::time::Duration,
) -> Result<(), Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigSet};
    let action = SigAction::new(
        SigHandler::Handler(interrupt_only),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler is an empty extern "C" fn, trivially
    // async-signal-safe; exec resets it to SIG_DFL in the node.
    unsafe { signal::sigaction(Signal::SIGALRM, &action) }?;
    let tv = |d: std::time::Duration| {
        use nix::sys::time::{TimeVal, TimeValLike};
        *TimeVal::microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).as_ref()
    };
    // A zero it_value would disarm the timer instead of firing at once.
    let first = first.max(std::time::Duration::from_micros(1));
    let value = libc::itimerval {
        it_interval: tv(every),
        it_value: tv(first),
    };
    // SAFETY: `value` outlives the call; a null old-value pointer is allowed.
    Errno::result(unsafe { libc::setitimer(libc::ITIMER_REAL, &value, std::ptr::null_mut()) })
        .map(drop)
}
