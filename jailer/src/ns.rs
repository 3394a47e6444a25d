//! Steps 3, 4 and 6: drop host root, unshare the namespaces in one call,
//! fork the child that becomes PID 1 of the new pid namespace.
use crate::error::JailError;
use crate::sys;
use aiops_proto::plan::Namespace;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use std::convert::Infallible;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// Step 3: as host root, become `uid`/`gid` before any namespace exists, so
/// that nothing the jail does can be host root. Then mark the process
/// dumpable again: changing uids cleared it, which would leave
/// /proc/self/{uid,gid}_map owned by root and unwritable by us.
pub fn setresuid_to_jail_uid(uid: u32, gid: u32) -> Result<(), JailError> {
    let e = |what| {
        move |e: nix::Error| JailError::DropRoot {
            what,
            source: e.into(),
        }
    };
    nix::unistd::setgroups(&[]).map_err(e("setgroups([])"))?;
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(e("setresgid"))?;
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(e("setresuid"))?;
    if nix::unistd::getuid().is_root() || nix::unistd::geteuid().is_root() {
        return Err(JailError::DropRoot {
            what: "still uid 0 after setresuid",
            source: io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    nix::sys::prctl::set_dumpable(true).map_err(e("PR_SET_DUMPABLE"))
}

pub fn clone_flags(nss: &[Namespace]) -> CloneFlags {
    nss.iter().fold(CloneFlags::empty(), |acc, ns| {
        acc | match ns {
            Namespace::User => CloneFlags::CLONE_NEWUSER,
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        }
    })
}

/// Step 4: one unshare(2); the kernel creates the user namespace first and
/// owns the others by it.
pub fn unshare_namespaces(nss: &[Namespace]) -> Result<(), JailError> {
    let flags = clone_flags(nss);
    unshare(flags).map_err(|e| JailError::Unshare {
        flags: format!("{flags:?}"),
        source: e.into(),
    })
}

/// The signals the parent forwards to the child.
fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        // From the caller's terminal (this process is in its foreground
        // group); agentd copies the new size to the node's pty.
        Signal::SIGWINCH,
    ] {
        s.add(sig);
    }
    s
}

/// Close every fd from `first` up except those in `keep`.
pub fn close_fds_except(first: u32, keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|k| u32::try_from(*k).ok())
        .filter(|k| *k >= first)
        .collect();
    keep.sort_unstable();
    let mut from = first;
    for k in keep {
        if k > from {
            sys::close_fd_range(from, k - 1)?;
        }
        from = k.saturating_add(1);
    }
    sys::close_fd_range(from, u32::MAX)
}

/// Step 6: fork. Returns in the child (PID 1 of the new pid namespace); the
/// parent never returns: it waits, forwards SIGTERM/SIGINT/SIGHUP/SIGWINCH, and exits
/// as the child did (code, or 128+signal). The parent dies with `starter`
/// (aiopsctl or the supervisor), and the child with the parent, so a
/// killed supervisor leaves no jail behind. In socket-activated mode the
/// starter is systemd, so the parent also watches `conn`, the supervisor's
/// connection: its hang-up kills the jail, and the jail's end is reported
/// on it as a wait status.
///
/// With `denials`, the parent also keeps the report socket and one end of
/// a socket pair; the child gets the other end (returned), on which step
/// 12 sends the seccomp listener (`crate::denials`).
pub fn fork_into_pid_ns(
    starter: Pid,
    conn: Option<OwnedFd>,
    denials: Option<crate::denials::Setup>,
) -> Result<Option<OwnedFd>, JailError> {
    let fe = |what| {
        move |e: nix::Error| JailError::Fork {
            what,
            source: e.into(),
        }
    };
    // Blocked before fork so no signal is lost between fork and the signalfd.
    let set = forwarded();
    set.thread_block().map_err(fe("block signals"))?;
    // The child learns of the parent's death by the write end closing.
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fe("pipe2"))?;
    let pair = match &denials {
        Some(_) => Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::SeqPacket,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(fe("socketpair for the seccomp listener"))?,
        ),
        None => None,
    };
    match sys::fork_single_threaded().map_err(|source| JailError::Fork {
        what: "fork",
        source,
    })? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            // Set here, not at start: a uid change (step 3) clears it. If the
            // starter is already gone, our parent is no longer it.
            if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
                || nix::unistd::getppid() != starter
            {
                let _ = kill(child, Signal::SIGKILL);
                exit_now(aiops_proto::exit::INTERNAL);
            }
            // Nothing the node could use stays open here: not the request,
            // not the report socket, not stdio (the child has its own copies).
            let mut keep = vec![alive_w.as_raw_fd()];
            keep.extend(conn.as_ref().map(AsRawFd::as_raw_fd));
            // The recorder's: its end of the pair, and the report socket
            // for its one frame (no node process can reach this one).
            let recorder = match (denials, pair) {
                (Some(setup), Some((mine, _child_end))) => {
                    keep.push(mine.as_raw_fd());
                    keep.push(setup.report);
                    Some(crate::denials::Recorder::new(setup, mine))
                }
                _ => None,
            };
            let _ = close_fds_except(0, &keep);
            // Not dumpable: no process of our uid may ptrace this one or read
            // its memory (it never held a secret's value, step 6 reads them
            // in the child, but it held the request). The id maps that
            // needed it dumpable are written.
            let _ = nix::sys::prctl::set_dumpable(false);
            // From here this process only waits: most of its resident
            // memory (code run once, freed heap) counts against each jail.
            aiops_memtrim::release_idle_memory();
            match mirror_child(child, &set, conn.as_ref(), recorder) {
                Ok(never) => match never {},
                Err(_) => exit_now(aiops_proto::exit::INTERNAL),
            }
        }
        ForkResult::Child => {
            drop(alive_w);
            let to_parent = pair.map(|(_parent_end, mine)| mine);
            // The node must not hold the supervisor's connection.
            drop(conn);
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(fe("PR_SET_PDEATHSIG"))?;
            // The parent may have died before the prctl: then no writer is left.
            let mut fds = [PollFd::new(alive_r.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).map_err(fe("poll parent pipe"))?;
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
            {
                return Err(JailError::Fork {
                    what: "parent died before PR_SET_PDEATHSIG",
                    source: io::Error::from_raw_os_error(libc::ESRCH),
                });
            }
            drop(alive_r);
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(fe("unblock signals"))?;
            Ok(to_parent)
        }
    }
}

/// Send the recorder's frame, report the wait status on `conn` (socket
/// mode) and exit with `code`.
fn finish(
    conn: Option<&OwnedFd>,
    recorder: Option<&crate::denials::Recorder>,
    raw_status: i32,
    code: i32,
) -> ! {
    if let Some(r) = recorder {
        r.send_report();
    }
    if let Some(c) = conn {
        crate::activation::send_status(c, raw_status);
    }
    exit_now(code)
}

fn mirror_child(
    child: Pid,
    set: &SigSet,
    conn: Option<&OwnedFd>,
    mut recorder: Option<crate::denials::Recorder>,
) -> nix::Result<Infallible> {
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC)?;
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        // No events asked: poll reports POLLHUP once the peer has closed.
        let conn_at = conn.map(|c| {
            fds.push(PollFd::new(c.as_fd(), PollFlags::empty()));
            fds.len() - 1
        });
        let rec = recorder.as_ref();
        let from_child_at = rec.and_then(|r| r.child_socket()).map(|f| {
            fds.push(PollFd::new(f, PollFlags::POLLIN));
            fds.len() - 1
        });
        let listener_at = rec.and_then(|r| r.listener()).map(|f| {
            fds.push(PollFd::new(f, PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            r => r?,
        };
        let events = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .unwrap_or(PollFlags::empty())
        };
        let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let hung_up = events(conn_at).intersects(gone);
        let signalled = !events(Some(0)).is_empty();
        let from_child = !events(from_child_at).is_empty();
        let listener = events(listener_at);
        drop(fds);
        if hung_up {
            // The supervisor closed its end: it no longer wants this jail.
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            exit_now(128 + Signal::SIGKILL as i32);
        }
        if let Some(r) = recorder.as_mut() {
            if from_child {
                r.take_listener();
            }
            if !listener.is_empty() {
                r.answer_one(listener.intersects(gone));
            }
        }
        if !signalled {
            continue;
        }
        let Some(info) = sfd.read_signal()? else {
            continue;
        };
        match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
            // WNOHANG: a SIGCHLD for a stop or a coalesced signal leaves it running.
            Ok(Signal::SIGCHLD) => {
                match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))? {
                    WaitStatus::Exited(_, code) => {
                        finish(conn, recorder.as_ref(), (code & 0xff) << 8, code)
                    }
                    WaitStatus::Signaled(_, sig, core) => finish(
                        conn,
                        recorder.as_ref(),
                        sig as i32 | if core { 0x80 } else { 0 },
                        128 + sig as i32,
                    ),
                    _ => {}
                }
            }
            Ok(sig) => {
                let _ = kill(child, sig);
            }
            Err(_) => {}
        }
    }
}

#[allow(clippy::exit)] // the parent's only way out is the child's status
fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}
