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
    let tv = |d: std::time::Duration| libc::timeval {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(d.subsec_micros()),
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

/// Give back the memory agentd no longer needs once the node runs: the
/// resident pages of the executable's read-only segments (code and
/// constants used once at start-up, clean copies of the file) and free
/// heap. Pages touched again later fault back in from the page cache.
/// Best effort; the same routine as the jailer's parent uses.
pub fn release_idle_memory() {
    // SAFETY: getauxval only reads the auxiliary vector the kernel wrote at
    // execve; it returns 0 for a missing entry.
    let (phdr, phnum) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR),
            libc::getauxval(libc::AT_PHNUM),
        )
    };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096);
    let (Ok(phdr), Ok(phnum)) = (usize::try_from(phdr), usize::try_from(phnum)) else {
        return;
    };
    if phdr == 0 || phnum == 0 {
        return;
    }
    // SAFETY: AT_PHDR is the address of the executable's program header
    // table, mapped read-only for the life of the process and never
    // written; AT_PHNUM is its length in entries.
    let phdrs = unsafe { std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum) };
    let Some(bias) = phdrs
        .iter()
        .find(|p| p.p_type == libc::PT_PHDR)
        .and_then(|p| phdr.checked_sub(usize::try_from(p.p_vaddr).ok()?))
    else {
        return;
    };
    for p in phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0)
    {
        let (Ok(vaddr), Ok(memsz)) = (usize::try_from(p.p_vaddr), usize::try_from(p.p_memsz))
        else {
            continue;
        };
        // Whole pages inside the segment only, so no page of a writable
        // segment (relocated data, RELRO) is ever touched.
        let start = (bias + vaddr).div_ceil(page) * page;
        let end = (bias + vaddr + memsz) / page * page;
        if end > start {
            // SAFETY: [start, end) lies in a PT_LOAD segment without PF_W: a
            // private, read-only file mapping that no one has written (the
            // dynamic linker writes only to writable segments). MADV_DONTNEED
            // drops its page-table entries and any later access refaults the
            // identical bytes from the file, so no live Rust value changes.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    // SAFETY: malloc_trim takes the allocator's own locks and only returns
    // pages of free chunks to the kernel; no live allocation is touched.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(test)]
mod release_tests {
    #![allow(clippy::unwrap_used)]

    /// Resident pages of this process (proc(5), /proc/self/statm field 2).
    fn resident_pages() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn release_idle_memory_gives_back_resident_code_pages() {
        let before = resident_pages();
        super::release_idle_memory();
        let after = resident_pages();
        assert!(after < before, "resident pages {before} -> {after}");
        // The code it dropped still runs: it faults back in from the file.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
