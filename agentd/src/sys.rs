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

/// The kernel's sigset_t, which rt_sigaction(2) insists on (64 signals).
const KERNEL_SIGSET_BYTES: usize = 8;

/// Undo what a careless starter left us (docs/operations.md, "Signals"):
/// every signal it set to SIG_IGN back to SIG_DFL, and nothing blocked.
/// An ignored SIGCHLD would make the kernel reap the node behind our back
/// (no SIGCHLD, no status), and ignored or blocked dispositions would be
/// inherited by the node. Handlers are left alone: exec reset any the
/// starter had, so a handler here is one our own runtime installed. SIGPIPE
/// is ignored by the Rust runtime itself and then chosen by `set_sigpipe`.
pub fn reset_inherited_signals() -> Result<(), Errno> {
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP || signo == libc::SIGPIPE {
            continue;
        }
        // The raw syscall, not libc's sigaction: libc refuses the real-time
        // signals it reserves for itself (32 and 33), which a starter can
        // still have left ignored. The buffer is larger than the kernel's
        // `struct sigaction` on every architecture this builds for, and its
        // first member is the handler there (not on MIPS, which has no
        // build). All zeroes is SIG_DFL, no flags, an empty mask.
        let mut old = [0usize; 8];
        // SAFETY: a null new action only reads the disposition into `old`,
        // which is writable and larger than what the kernel writes.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signo,
                std::ptr::null::<usize>(),
                old.as_mut_ptr(),
                KERNEL_SIGSET_BYTES,
            )
        };
        if rc == 0 && old[0] == libc::SIG_IGN {
            let dfl = [0usize; 8];
            // SAFETY: the kernel reads a zeroed action (SIG_DFL), which
            // installs no code; `dfl` outlives the call.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signo,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<usize>(),
                    KERNEL_SIGSET_BYTES,
                )
            };
        }
    }
    signal::sigprocmask(
        signal::SigmaskHow::SIG_SETMASK,
        Some(&signal::SigSet::empty()),
        None,
    )
}

/// TIOCGWINSZ: the window size of the terminal at `fd`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<libc::winsize, Errno> {
    let mut ws = std::mem::MaybeUninit::<libc::winsize>::zeroed();
    // SAFETY: TIOCGWINSZ writes one `struct winsize` through the pointer,
    // which points at a zeroed one that outlives the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, ws.as_mut_ptr()) })?;
    // SAFETY: zeroed memory is a valid winsize, and the ioctl succeeded.
    Ok(unsafe { ws.assume_init() })
}

/// TIOCSWINSZ on the pty master: the kernel sends SIGWINCH to the pty's
/// foreground process group when the size changes.
pub fn set_winsize(fd: BorrowedFd<'_>, ws: &libc::winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads one `struct winsize` through the pointer,
    // borrowed for the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const _) })
        .map(drop)
}

/// TIOCSCTTY: make the tty at `fd` the controlling terminal of this
/// session (the caller has just called setsid, so it has none).
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a
    // terminal that is another session's), no pointer.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(drop)
}
