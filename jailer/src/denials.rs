//! The waiting parent's count of seccomp denials (issue 18). Step 12
//! attaches the filter with a listener whose denied calls wait on it
//! (`RET USER_NOTIF` where the plain filter answers an errno) and hands
//! the listener to the parent, outside the jail's pid namespace, where no
//! node process can reach it. For each denied call the parent evaluates
//! the plain filter on the call's data to learn its errno, answers with
//! that errno, and counts the call. It never lets a call run (no
//! SECCOMP_USER_NOTIF_FLAG_CONTINUE), so the filter still decides; if the
//! parent is gone, the kernel answers ENOSYS, still a denial.
//!
//! A node that floods denied calls slows only itself (each waits for this
//! jail's own parent); the counts are bounded (`MAX_DENIED_CALLS` names,
//! the rest counted). After the node's end the parent sends one
//! `Report::SeccompDenials` frame on the report socket.
use crate::sys;
use aiops_proto::report::{
    Attempt, DeniedCall, Report, SeccompDenials, MAX_CONNECTS, MAX_DENIED_CALLS,
};
use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
use seccompiler::BpfProgram;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// What the parent needs from before the fork.
pub struct Setup {
    /// The plain filter: its answer is each denied call's errno.
    pub program: BpfProgram,
    /// The report socket (inherited; kept open in the parent).
    pub report: RawFd,
}

pub struct Recorder {
    program: BpfProgram,
    report: RawFd,
    /// Where the child sends the listener; closed once it came or the child hung up.
    from_child: Option<OwnedFd>,
    listener: Option<OwnedFd>,
    /// nr -> (errno answered, count).
    counts: BTreeMap<i32, (i32, u64)>,
    others: u64,
    /// (syscall, family, address, port) -> count.
    attempts: BTreeMap<(String, &'static str, String, u16), u64>,
    attempts_others: u64,
    /// The listener arrived: a report is due even when nothing was denied.
    recording: bool,
}

impl Recorder {
    pub fn new(setup: Setup, from_child: OwnedFd) -> Recorder {
        Recorder {
            program: setup.program,
            report: setup.report,
            from_child: Some(from_child),
            listener: None,
            counts: BTreeMap::new(),
            others: 0,
            attempts: BTreeMap::new(),
            attempts_others: 0,
            recording: false,
        }
    }

    /// The fd to receive the listener on, while it has not come.
    pub fn child_socket(&self) -> Option<BorrowedFd<'_>> {
        self.from_child.as_ref().map(AsFd::as_fd)
    }

    pub fn listener(&self) -> Option<BorrowedFd<'_>> {
        self.listener.as_ref().map(AsFd::as_fd)
    }

    /// `from_child` is readable: the listener, or the child's hang-up
    /// (no seccomp, a nested jail, or a failure it reports itself).
    pub fn take_listener(&mut self) {
        let Some(sock) = self.from_child.take() else {
            return;
        };
        let mut buf = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(RawFd);
        let Ok(msg) = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            return;
        };
        let mut fds = vec![];
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(r) = c {
                    fds.extend(r);
                }
            }
        }
        // One fd was sent; anything more is closed unused.
        let mut owned = fds.into_iter().map(sys::adopt_received_fd);
        if let Some(l) = owned.next() {
            self.listener = Some(l);
            self.recording = true;
        }
    }

    /// The listener is readable (a denied call waits) or hung up (no
    /// process uses the filter any more).
    pub fn answer_one(&mut self, hung_up: bool) {
        let Some(l) = self.listener.as_ref() else {
            return;
        };
        let fd = l.as_raw_fd();
        match sys::seccomp_notif_recv(fd) {
            Ok(n) => {
                // What the plain filter answers decides; ENOENT from the
                // answers: the caller left (a signal) meanwhile.
                let ret = crate::seccomp::eval(&self.program, &n.data);
                if let Some(errno) = crate::seccomp::denial_errno(&self.program, &n.data) {
                    let _ = sys::seccomp_notif_deny(fd, n.id, errno);
                    self.count(n.nr, errno);
                } else if ret == Some(SECCOMP_RET_ALLOW) && is_watched(n.nr) {
                    // Recorded, then it runs as the filter allows: the
                    // network layers still decide where it gets.
                    let target = read_target(&n);
                    if sys::seccomp_notif_id_valid(fd, n.id) {
                        if let Some(t) = target {
                            self.record_attempt(n.nr, t);
                        }
                    }
                    let _ = sys::seccomp_notif_continue(fd, n.id);
                } else {
                    // Unreachable by construction; never let an unknown run.
                    let _ = sys::seccomp_notif_deny(fd, n.id, libc::EPERM);
                }
            }
            // The caller left between poll and recv.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(_) if hung_up => self.listener = None,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            // Anything else: stop listening; waiting calls get ENOSYS.
            Err(_) => self.listener = None,
        }
    }

    fn count(&mut self, nr: i32, errno: i32) {
        // Any x32 number is one entry: a node walking the x32 range must
        // not fill the list.
        let nr = if is_x32(nr) { X32 } else { nr };
        if let Some((_, n)) = self.counts.get_mut(&nr) {
            *n = n.saturating_add(1);
        } else if self.counts.len() < MAX_DENIED_CALLS {
            self.counts.insert(nr, (errno, 1));
        } else {
            self.others = self.others.saturating_add(1);
        }
    }

    fn record_attempt(&mut self, nr: i32, (family, addr, port): (&'static str, String, u16)) {
        let syscall = name(nr);
        let key = (syscall, family, addr, port);
        if let Some(n) = self.attempts.get_mut(&key) {
            *n = n.saturating_add(1);
        } else if self.attempts.len() < MAX_CONNECTS {
            self.attempts.insert(key, 1);
        } else {
            self.attempts_others = self.attempts_others.saturating_add(1);
        }
    }

    pub fn summary(&self) -> SeccompDenials {
        let mut calls: Vec<DeniedCall> = self
            .counts
            .iter()
            .map(|(nr, (errno, count))| DeniedCall {
                syscall: name(*nr),
                errno: *errno,
                count: *count,
            })
            .collect();
        calls.sort_by(|a, b| b.count.cmp(&a.count).then(a.syscall.cmp(&b.syscall)));
        let mut connects: Vec<Attempt> = self
            .attempts
            .iter()
            .map(|((syscall, family, addr, port), count)| Attempt {
                syscall: syscall.clone(),
                family: (*family).to_string(),
                addr: addr.clone(),
                port: *port,
                count: *count,
            })
            .collect();
        connects.sort_by_key(|a| std::cmp::Reverse(a.count));
        SeccompDenials {
            calls,
            others: self.others,
            connects,
            connects_others: self.attempts_others,
        }
    }

    /// The one frame, after the child ended; a supervisor that went away
    /// does not care.
    pub fn send_report(&self) {
        if !self.recording {
            return;
        }
        if let Ok(frame) = Report::SeccompDenials(self.summary()).encode() {
            let _ = send(self.report, &frame, MsgFlags::MSG_NOSIGNAL);
        }
    }
}

const X32: i32 = 0x4000_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

fn is_watched(nr: i32) -> bool {
    crate::seccomp::WATCHED
        .iter()
        .any(|(n, _)| i64::from(nr) == *n)
}

/// The inet or inet6 address a watched call names, read from the caller's
/// memory (process_vm_readv: the caller is this process's descendant, of
/// its uid). Racy by nature, as any read of another thread's memory: a
/// record, never a decision. `None` for other families or an unreadable one.
fn read_target(n: &sys::Notif) -> Option<(&'static str, String, u16)> {
    let (ptr, len) = crate::seccomp::watched_addr(i64::from(n.nr), &n.args)?;
    let len = usize::try_from(len).ok()?.min(128);
    if ptr == 0 || len < 2 {
        return None;
    }
    let mut buf = [0u8; 128];
    let pid = nix::unistd::Pid::from_raw(i32::try_from(n.pid).ok()?);
    let remote = [nix::sys::uio::RemoteIoVec {
        base: usize::try_from(ptr).ok()?,
        len,
    }];
    let got = nix::sys::uio::process_vm_readv(
        pid,
        &mut [std::io::IoSliceMut::new(&mut buf[..len])],
        &remote,
    )
    .ok()?;
    parse_sockaddr(buf.get(..got)?)
}

/// (family, address, port) of a sockaddr_in / sockaddr_in6.
fn parse_sockaddr(b: &[u8]) -> Option<(&'static str, String, u16)> {
    let family = i32::from(u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(("inet", std::net::Ipv4Addr::from(a).to_string(), port))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(("inet6", std::net::Ipv6Addr::from(a).to_string(), port))
        }
        _ => None,
    }
}

fn is_x32(nr: i32) -> bool {
    cfg!(target_arch = "x86_64") && nr > 0 && nr & X32 != 0
}

/// A syscall number's name on this architecture (`x32` for the x32 ABI's).
fn name(nr: i32) -> String {
    if is_x32(nr) {
        return "x32".into();
    }
    usize::try_from(nr)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or_else(|| format!("#{nr}"), |s| s.name().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn recorder() -> Recorder {
        let (a, _b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        Recorder::new(
            Setup {
                program: vec![],
                report: -1,
            },
            a,
        )
    }

    /// Counts are bounded: past `MAX_DENIED_CALLS` distinct calls only a
    /// number grows, and the summary puts the most frequent first.
    #[test]
    fn counts_are_bounded_and_sorted() {
        let mut r = recorder();
        for nr in 1000..(1000 + i32::try_from(MAX_DENIED_CALLS).unwrap() + 50) {
            r.count(nr, libc::EPERM);
        }
        for _ in 0..5 {
            r.count(1007, libc::EPERM);
        }
        let s = r.summary();
        assert_eq!(s.calls.len(), MAX_DENIED_CALLS);
        assert_eq!(s.others, 50);
        assert_eq!(
            (s.calls[0].syscall.as_str(), s.calls[0].count),
            ("#1007", 6)
        );
        assert!(Report::SeccompDenials(s).encode().is_ok());
    }

    /// The x32 range is one entry, however many of its numbers are called.
    #[test]
    fn x32_numbers_share_one_entry() {
        let mut r = recorder();
        for nr in 0..10_000 {
            r.count(X32 | nr, libc::ENOSYS);
        }
        let s = r.summary();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(s.calls.len(), 1);
            assert_eq!(
                (s.calls[0].syscall.as_str(), s.calls[0].count),
                ("x32", 10_000)
            );
        }
    }

    #[test]
    fn sockaddrs_parse_and_others_are_ignored() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&u16::try_from(libc::AF_INET).unwrap().to_ne_bytes());
        v4[2..4].copy_from_slice(&53u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4), Some(("inet", "10.0.0.1".into(), 53)));
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&u16::try_from(libc::AF_INET6).unwrap().to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(parse_sockaddr(&v6), Some(("inet6", "::1".into(), 443)));
        let mut unix = vec![0u8; 16];
        unix[0..2].copy_from_slice(&u16::try_from(libc::AF_UNIX).unwrap().to_ne_bytes());
        assert_eq!(parse_sockaddr(&unix), None);
        assert_eq!(parse_sockaddr(&v4[..6]), None);
        assert_eq!(parse_sockaddr(&[]), None);
    }

    #[test]
    fn names_come_from_this_architecture() {
        let mount = i32::try_from(libc::SYS_mount).unwrap();
        assert_eq!(name(mount), "mount");
        assert_eq!(name(-5), "#-5");
    }
}
