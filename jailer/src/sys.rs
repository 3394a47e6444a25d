//! Every `unsafe` of the jailer. Thin, total wrappers with no policy in them:
//! each takes plain values, returns `io::Result`, and states in its SAFETY
//! comment the kernel rule or lifetime that makes the call sound.
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// statvfs(3)'s f_flag for `path` with every bit kept: nix's `flags()`
/// drops the bits it does not name for the target libc (ST_RELATIME on
/// musl), and a remount that loses a locked flag fails with EPERM.
pub(crate) fn mount_flags(path: &std::path::Path) -> io::Result<libc::c_ulong> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated string and `st` a writable statvfs,
    // both alive for the whole call; the kernel keeps neither pointer.
    check(unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs returned 0, so it filled every field of `st`.
    Ok(unsafe { st.assume_init() }.f_flag)
}

/// Whether this kernel takes seccomp filters: PR_GET_SECCOMP answers 0
/// (none yet) or 2 (filters, which ours stack on); EINVAL without
/// CONFIG_SECCOMP. (In strict mode 1 the call itself would kill us.)
pub(crate) fn seccomp_filters_available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments and changes nothing.
    let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    rc == 0 || rc == 2
}

/// Take ownership of an inherited fd number named on our command line.
/// Fails with EBADF when the number is not open.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table; no memory.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the fd is open (checked above) and was handed to this process by
    // its caller; `main` adopts each number once (it refuses equal numbers) and
    // before anything else in the process could have opened or wrapped it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Take ownership of an fd the kernel just installed for us from an
/// SCM_RIGHTS message.
pub(crate) fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg(2) installed this descriptor in our table moments ago
    // and returned its number only to the caller, who adopts each number
    // once; no other object can own it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// dup2(2) onto stdio number `target` (0, 1 or 2).
pub(crate) fn install_stdio_fd(old: RawFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes integers only. fds 0-2 are never wrapped in an
    // owning Rust object by the jailer (std's handles borrow them), so
    // replacing what they held breaks no ownership.
    check(unsafe { libc::dup2(old, target) })?;
    Ok(())
}

/// close_range(2) over [first, last]: closes fds that no Rust object owns or
/// that the caller has already given up (callers pass ranges with no live
/// `OwnedFd` in them).
pub(crate) fn close_fd_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: close_range takes integers only; callers guarantee no live owner
    // (I/O safety) for any fd in the range.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// dup2(2) onto a fixed number the caller has reserved (3 or 4 for agentd).
pub(crate) fn dup2_onto(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes integers only. `new` is a number the caller reserved
    // for agentd's contract; whatever it held was closed by close_fd_range or
    // is `old` itself, so no Rust owner is silently replaced.
    check(unsafe { libc::dup2(old, new) })?;
    Ok(())
}

/// Clear FD_CLOEXEC so the fd survives execve(2).
pub(crate) fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) on an integer fd; no memory is passed.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
    Ok(())
}

/// fork(2) in a process the jailer keeps single-threaded.
pub(crate) fn fork_single_threaded() -> io::Result<nix::unistd::ForkResult> {
    // SAFETY: the jailer never starts a thread (unshare(CLONE_NEWUSER) would
    // fail with EINVAL if it had), so the child cannot inherit a lock held by
    // another thread; the child only makes syscalls and then execs or exits.
    unsafe { nix::unistd::fork() }.map_err(io::Error::from)
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`:
/// the kernel's Landlock ABI (uapi linux/landlock.h).
pub(crate) fn landlock_abi_version() -> io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1 << 0;
    // SAFETY: with the VERSION flag the kernel requires attr NULL and size 0
    // and reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// ioctl(2)'s request argument is a c_ulong in glibc and a c_int in musl.
fn ioctl_request(r: libc::c_ulong) -> io::Result<libc::Ioctl> {
    #[allow(clippy::useless_conversion)] // the identity on glibc
    libc::Ioctl::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Set IFF_UP on `ifname` through SIOCGIFFLAGS/SIOCSIFFLAGS (netdevice(7)).
pub(crate) fn interface_up(sock: RawFd, ifname: &[u8]) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if ifname.len() >= req.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(ifname) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` lives on this stack frame for the whole call; the kernel
    // copies a struct ifreq in and out and keeps no pointer.
    check(unsafe { libc::ioctl(sock, ioctl_request(libc::SIOCGIFFLAGS)?, &mut req) })?;
    // SAFETY: SIOCGIFFLAGS filled the ifru_flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // IFF_UP is 0x1 (linux/if.h); it fits the short the ioctl carries.
    req.ifr_ifru.ifru_flags = flags | libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
    // SAFETY: as above.
    check(unsafe { libc::ioctl(sock, ioctl_request(libc::SIOCSIFFLAGS)?, &req) })?;
    Ok(())
}

/// F_DUPFD_CLOEXEC: a copy of `fd` at the lowest free number ≥ `min`, which
/// the caller alone holds.
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers only and creates a new
    // descriptor; no existing owner is affected.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })
}

/// seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER):
/// attach `prog` to this process and return the listener its
/// `RET USER_NOTIF` answers wake (close-on-exec, as the kernel makes it).
/// Needs no_new_privs (step 10) or CAP_SYS_ADMIN.
pub(crate) fn seccomp_attach_with_listener(
    prog: &[seccompiler::sock_filter],
) -> io::Result<OwnedFd> {
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter is linux/filter.h's struct, as libc's is.
        filter: prog.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    // SAFETY: `fprog` points at `len` initialised instructions that outlive
    // the call (the kernel copies them); the flag asks for a new fd, which
    // the return value is and nothing else owns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just created this fd for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SECCOMP_IOCTL_NOTIF_RECV: the next denied call waiting on `listener`
/// (its id and `struct seccomp_data` as 64 bytes). ENOENT when the caller
/// went away (a signal) before it was read.
pub(crate) fn seccomp_notif_recv(listener: RawFd) -> io::Result<Notif> {
    // SAFETY: seccomp_notif is plain integers; the kernel requires it zeroed.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `n`, which is that size.
    check(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) })?;
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&n.data.nr.to_ne_bytes());
    data[4..8].copy_from_slice(&n.data.arch.to_ne_bytes());
    data[8..16].copy_from_slice(&n.data.instruction_pointer.to_ne_bytes());
    for (i, a) in n.data.args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    Ok(Notif {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        args: n.data.args,
        data,
    })
}

/// One waiting call, as the listener received it.
pub(crate) struct Notif {
    pub id: u64,
    /// In the parent's pid namespace.
    pub pid: u32,
    pub nr: i32,
    pub args: [u64; 6],
    /// `struct seccomp_data`, for `seccomp::eval`.
    pub data: [u8; 64],
}

/// SECCOMP_IOCTL_NOTIF_SEND: the call `id` fails with `errno` (never
/// runs: no SECCOMP_USER_NOTIF_FLAG_CONTINUE). ENOENT when its caller is gone.
pub(crate) fn seccomp_notif_deny(listener: RawFd, id: u64, errno: i32) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -errno,
        flags: 0,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp, which `resp` is.
    check(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) }).map(drop)
}

/// SECCOMP_IOCTL_NOTIF_SEND with SECCOMP_USER_NOTIF_FLAG_CONTINUE: the
/// call `id` runs as if the filter had allowed it. Only for a call the
/// plain filter allows (`crate::denials` checks): the parent records, the
/// filter decides.
pub(crate) fn seccomp_notif_continue(listener: RawFd, id: u64) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: u32::try_from(libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE).unwrap_or(1),
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp, which `resp` is.
    check(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) }).map(drop)
}

/// SECCOMP_IOCTL_NOTIF_ID_VALID: the call `id` still waits, so the pid it
/// came with is still that caller (what was read from its memory is its).
pub(crate) fn seccomp_notif_id_valid(listener: RawFd, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64, which `id` is.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
}

/// syscall(2) with two integer arguments, for tests that issue a syscall to
/// prove a seccomp table holds. Returns the errno on failure.
#[cfg(test)]
pub(crate) fn raw_syscall2(
    nr: libc::c_long,
    a0: libc::c_long,
    a1: libc::c_long,
) -> Result<libc::c_long, i32> {
    // SAFETY: only called with syscalls whose arguments are integers or
    // NULL pointers (the tests pass no memory), so the kernel reads none.
    let rc = unsafe { libc::syscall(nr, a0, a1) };
    if rc < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

/// `raw_syscall2` with four integer arguments.
#[cfg(test)]
pub(crate) fn raw_syscall4(
    nr: libc::c_long,
    a0: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
) -> Result<libc::c_long, i32> {
    // SAFETY: as in raw_syscall2: integer or NULL arguments only, so the
    // kernel reads no memory of ours (a NULL path fails with EFAULT).
    let rc = unsafe { libc::syscall(nr, a0, a1, a2, a3) };
    if rc < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

/// The kernel's sigset_t, which rt_sigaction(2) insists on (64 signals).
const KERNEL_SIGSET_BYTES: usize = 8;

/// Undo what a careless starter left us: every signal it set to SIG_IGN
/// back to SIG_DFL, and an empty mask. Ignored dispositions survive exec,
/// so they would reach agentd and the node; an ignored SIGCHLD makes the
/// kernel reap our child unannounced, and step 6's waiting parent would
/// wait forever. Handlers are kept (exec reset the starter's, so any here
/// is the Rust runtime's), and SIGPIPE, which that runtime ignores itself.
pub(crate) fn reset_inherited_signals() -> io::Result<()> {
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
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(io::Error::from)
}
