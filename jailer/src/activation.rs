//! Socket-activated mode: `aiops-jailer --socket-activated`, started by
//! aiops-jailer@.service (`Accept=yes`), so fd 3 is one connection from
//! the supervisor. This replaces how step 1 gets its input; the steps
//! themselves are the same as with `--request-fd` (docs/jailer.md).
//!
//! The connection is a `SOCK_STREAM` unix socket. The supervisor sends a
//! 4-byte little-endian length, then that many bytes of JSON `JailRequest`;
//! the first `sendmsg` carries, as `SCM_RIGHTS`, the report socket, stdin,
//! stdout and stderr, in that order, and optionally the egress socket
//! (`--egress-fd` in exec mode). The supervisor keeps the connection
//! open while it wants the jail: when it closes, the jail is killed. When
//! the jail ends, the jailer writes its wait status (4 bytes, little-endian
//! `i32`, as waitpid(2) encodes it) and closes.
use crate::error::JailError;
use crate::exec::ReportFd;
use crate::sys;
use aiops_proto::request::frame;
use nix::sys::socket::{
    getsockopt, recvmsg, sockopt, ControlMessageOwned, MsgFlags, SockType, UnixAddr,
};
use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// sd_listen_fds(3): the first passed fd.
const LISTEN_FDS_START: RawFd = 3;
/// The fds the first message always carries: report socket, stdin, stdout,
/// stderr. The egress socket may follow.
pub const PASSED_FDS: usize = frame::PASSED_FDS;
/// The unit names the one user allowed to connect (a name or a uid).
pub const SUPERVISOR_USER_ENV: &str = "AIOPS_SUPERVISOR_USER";

/// What the supervisor sent, with stdio already installed as fds 0-2.
pub struct Received {
    pub request: Vec<u8>,
    pub report: ReportFd,
    /// The egress proxy's socket, when the supervisor sent one.
    pub egress: Option<OwnedFd>,
    /// Kept open by the jailer's waiting parent (step 6), which watches it.
    pub conn: OwnedFd,
}

fn ae(what: &'static str, errno: i32) -> JailError {
    JailError::Activation {
        what,
        source: io::Error::from_raw_os_error(errno),
    }
}

/// sd_listen_fds(3) with `Accept=yes`: LISTEN_PID is us, LISTEN_FDS is 1,
/// and fd 3 is a connected stream socket.
fn connection(listen_pid: Option<&str>, listen_fds: Option<&str>) -> Result<OwnedFd, JailError> {
    if listen_pid != Some(std::process::id().to_string().as_str()) {
        return Err(ae("LISTEN_PID is not this process", libc::EINVAL));
    }
    if listen_fds != Some("1") {
        return Err(ae(
            "LISTEN_FDS is not 1 (Accept=yes passes one connection)",
            libc::EINVAL,
        ));
    }
    let fd = sys::adopt_inherited_fd(LISTEN_FDS_START).map_err(|source| JailError::Activation {
        what: "fd 3",
        source,
    })?;
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => Ok(fd),
        Ok(_) => Err(ae("fd 3 is not a SOCK_STREAM socket", libc::EPROTOTYPE)),
        Err(e) => Err(JailError::Activation {
            what: "fd 3",
            source: e.into(),
        }),
    }
}

/// The uid named by `$AIOPS_SUPERVISOR_USER`; unset is a refusal, not "anyone".
fn allowed_uid(spec: Option<&str>) -> Result<u32, JailError> {
    let spec = spec.ok_or_else(|| ae("AIOPS_SUPERVISOR_USER is not set", libc::EINVAL))?;
    if let Ok(uid) = spec.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(spec) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(ae("AIOPS_SUPERVISOR_USER names no user", libc::ENOENT)),
        Err(e) => Err(JailError::Activation {
            what: "look up AIOPS_SUPERVISOR_USER",
            source: e.into(),
        }),
    }
}

/// The home directory of `$AIOPS_SUPERVISOR_USER` (what systemd gives the
/// supervisor as `$HOME`): jailer.toml's default `home`.
pub fn supervisor_home() -> Option<std::path::PathBuf> {
    let spec = std::env::var(SUPERVISOR_USER_ENV).ok()?;
    let user = match spec.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(&spec),
    };
    user.ok().flatten().map(|u| u.dir)
}

/// SO_PEERCRED: the socket's 0660 mode lets a group in; only one uid gets a jail.
fn check_peer(conn: &OwnedFd, spec: Option<&str>) -> Result<(), JailError> {
    let allowed = allowed_uid(spec)?;
    let cred = getsockopt(conn, sockopt::PeerCredentials).map_err(|e| JailError::Activation {
        what: "SO_PEERCRED",
        source: e.into(),
    })?;
    if cred.uid() != allowed {
        return Err(JailError::Peer {
            uid: cred.uid(),
            allowed: spec.unwrap_or_default().to_string(),
        });
    }
    Ok(())
}

/// The first message: the 4-byte length and exactly `PASSED_FDS` fds.
fn receive_head(conn: &OwnedFd) -> Result<(usize, Vec<OwnedFd>), JailError> {
    let mut head = [0u8; 4];
    let mut cmsg = nix::cmsg_space!([RawFd; frame::MAX_PASSED_FDS + 1]);
    let mut iov = [IoSliceMut::new(&mut head)];
    let msg = recvmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| JailError::Activation {
        what: "recvmsg",
        source: e.into(),
    })?;
    let mut fds = vec![];
    for c in msg.cmsgs().map_err(|e| JailError::Activation {
        what: "control message",
        source: e.into(),
    })? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            fds.extend(raw.into_iter().map(sys::adopt_received_fd));
        }
    }
    // Too many fds (cut short) or too few: refuse; the ones received close here.
    let counts = PASSED_FDS..=frame::MAX_PASSED_FDS;
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || !counts.contains(&fds.len()) {
        return Err(ae(
            "the first message must carry 4 fds (report, stdin, stdout, stderr) and optionally the egress socket",
            libc::EPROTO,
        ));
    }
    if msg.bytes != head.len() {
        return Err(ae(
            "the first message must start with the 4-byte length",
            libc::EPROTO,
        ));
    }
    let len = frame::decode_len(head)
        .map_err(|_| ae("request longer than MAX_REQUEST_BYTES", libc::EMSGSIZE))?;
    Ok((len, fds))
}

/// Stdio becomes fds 0-2 (copied above 2 first, so no received fd is
/// clobbered by an earlier dup2); the received copies are closed.
fn install_stdio(stdio: &[OwnedFd]) -> Result<(), JailError> {
    let se = |source| JailError::Activation {
        what: "install stdio",
        source,
    };
    let high: Vec<RawFd> = stdio
        .iter()
        .map(|f| sys::dup_above(f.as_raw_fd(), LISTEN_FDS_START))
        .collect::<Result<_, _>>()
        .map_err(se)?;
    for (target, fd) in (0..).zip(&high) {
        sys::install_stdio_fd(*fd, target).map_err(se)?;
    }
    for fd in high {
        let n = u32::try_from(fd).map_err(|_| se(io::Error::from_raw_os_error(libc::EBADF)))?;
        sys::close_fd_range(n, n).map_err(se)?;
    }
    Ok(())
}

/// Everything before step 1 decodes: the connection, its peer, the request
/// bytes and fds. `env` is (LISTEN_PID, LISTEN_FDS, AIOPS_SUPERVISOR_USER).
pub fn accept(env: [Option<String>; 3]) -> Result<Received, JailError> {
    let [pid, nfds, user] = env;
    let conn = connection(pid.as_deref(), nfds.as_deref())?;
    check_peer(&conn, user.as_deref())?;
    let (len, mut fds) = receive_head(&conn)?;
    let egress = (fds.len() > PASSED_FDS).then(|| fds.remove(PASSED_FDS));
    let stdio = fds.split_off(1);
    let report = fds.remove(0);
    let seqpacket =
        |fd: &OwnedFd| matches!(getsockopt(fd, sockopt::SockType), Ok(SockType::SeqPacket));
    if !seqpacket(&report) {
        return Err(ae(
            "the report fd is not a SOCK_SEQPACKET socket",
            libc::EPROTOTYPE,
        ));
    }
    if egress.as_ref().is_some_and(|e| !seqpacket(e)) {
        return Err(ae(
            "the egress fd is not a SOCK_SEQPACKET socket",
            libc::EPROTOTYPE,
        ));
    }
    install_stdio(&stdio)?;
    drop(stdio);
    let mut request = vec![0u8; len];
    let mut stream = UnixStream::from(conn);
    stream
        .read_exact(&mut request)
        .map_err(|source| JailError::ReadRequest {
            fd: LISTEN_FDS_START,
            source,
        })?;
    Ok(Received {
        request,
        report: ReportFd(report.into_raw_fd()),
        egress,
        conn: OwnedFd::from(stream),
    })
}

/// Step 6's parent, when the jail ends: the wait status to the supervisor.
pub fn send_status(conn: &OwnedFd, raw: i32) {
    let status = frame::encode_status(raw);
    let _ = nix::sys::socket::send(conn.as_raw_fd(), &status, MsgFlags::MSG_NOSIGNAL);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refuses_a_foreign_listen_pid_or_fd_count() {
        let e = connection(Some("1"), Some("1")).err().unwrap();
        assert!(e.chain().contains("LISTEN_PID"), "{}", e.chain());
        let me = std::process::id().to_string();
        let e = connection(Some(&me), Some("2")).err().unwrap();
        assert!(e.chain().contains("LISTEN_FDS"), "{}", e.chain());
        assert!(connection(None, None).is_err());
    }

    #[test]
    fn the_allowed_user_is_required_and_resolved() {
        assert!(allowed_uid(None).is_err());
        assert_eq!(allowed_uid(Some("4242")).unwrap(), 4242);
        assert_eq!(allowed_uid(Some("root")).unwrap(), 0);
        assert!(allowed_uid(Some("no-such-user-aiops")).is_err());
    }

    #[test]
    fn refuses_a_peer_with_another_uid() {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = OwnedFd::from(a);
        let me = nix::unistd::getuid().as_raw();
        check_peer(&a, Some(&me.to_string())).unwrap();
        let other = (me + 1).to_string();
        let e = check_peer(&a, Some(&other)).unwrap_err();
        assert!(matches!(e, JailError::Peer { .. }), "{}", e.chain());
    }

    /// Send the length header with `n` fds (copies of /dev/null) attached.
    fn send_head(n: usize) -> Result<(usize, Vec<OwnedFd>), JailError> {
        use nix::sys::socket::{sendmsg, ControlMessage};
        let (a, b) = UnixStream::pair().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let fds: Vec<RawFd> = (0..n).map(|_| null.as_raw_fd()).collect();
        let head = 7u32.to_le_bytes();
        sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[std::io::IoSlice::new(&head)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        receive_head(&OwnedFd::from(b))
    }

    #[test]
    fn the_first_message_carries_four_fds_or_five_with_egress() {
        let (len, fds) = send_head(4).unwrap();
        assert_eq!((len, fds.len()), (7, 4));
        assert_eq!(send_head(5).unwrap().1.len(), 5);
        for n in [0, 3, 6] {
            let e = send_head(n).err().unwrap();
            assert!(e.chain().contains("4 fds"), "{n}: {}", e.chain());
        }
    }
}
