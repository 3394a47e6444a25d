//! System mode (`[jailer] mode = "socket"`): ask the socket-activated
//! jailer (aiops-jailer.socket, `Accept=yes`) for a jail instead of
//! starting aiops-jailer ourselves. systemd starts a fresh
//! aiops-jailer@.service instance, as its own user, per connection.
//!
//! Wire format (docs/jailer.md, "Socket-activated mode"): a 4-byte
//! little-endian length and the JSON `JailRequest`, the first `sendmsg`
//! carrying the report socket, stdin, stdout and stderr as `SCM_RIGHTS`,
//! then the egress socket when there is one.
//! The connection stays open while the jail should live; closing it kills
//! the jail. At the end the jailer writes the jail's wait status (4 bytes,
//! little-endian `i32`).
use super::jail::{Jail, JailStop, PlanSummary, Via};
use super::linux::{JailStdio, JailerFds};
use super::Watch;
use crate::error::SupervisorError;
use aiops_policy::JailPlan;
use aiops_proto::request::frame;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

fn channel(what: &'static str) -> impl FnOnce(nix::Error) -> SupervisorError {
    move |source| SupervisorError::Channel { what, source }
}

/// Connect to the jailer at `socket` and send node `node_id` (`argv`) to
/// run in `plan`, with `stdio` (stdin, stdout, stderr) as the node's fds
/// 0-2 and `egress` as the egress proxy's socket (as `--egress-fd`); the
/// caller may close its copies once this returns. Returns once the request
/// is sent; the jail is being built. Dropping the `Jail` closes the
/// connection, which kills the jail (if it still runs) and everything in it.
pub fn start(
    socket: &Path,
    stdio: [BorrowedFd<'_>; 3],
    egress: Option<BorrowedFd<'_>>,
    node_id: &str,
    argv: &[String],
    plan: &JailPlan,
) -> Result<Jail, SupervisorError> {
    let body = super::linux::request_body(node_id, argv, plan, false)?;
    let head = frame::encode_len(body.len()).map_err(|e| SupervisorError::Refused {
        reason: e.to_string(),
    })?;
    let (reports, rep_child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(channel("report socket"))?;
    let js = |source| SupervisorError::JailerSocket {
        path: socket.to_path_buf(),
        source,
    };
    let mut conn = UnixStream::connect(socket).map_err(js)?;
    // Nothing runs in the jail before the request is sent.
    let before = Watch::before(plan);
    let mut fds: Vec<RawFd> = vec![
        rep_child.as_raw_fd(),
        stdio[0].as_raw_fd(),
        stdio[1].as_raw_fd(),
        stdio[2].as_raw_fd(),
    ];
    fds.extend(egress.map(|e| e.as_raw_fd()));
    // The fds ride on the first byte; the jailer reads the length with them.
    let sent = sendmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &[IoSlice::new(&head)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| js(e.into()))?;
    conn.write_all(&head[sent..]).map_err(js)?;
    // EPIPE here means the jailer refused us early; the report says why.
    let _ = conn.write_all(&body);
    // Our copy would keep the report socket from reaching EOF.
    drop(rep_child);
    let stop = JailStop::socket(conn.try_clone().map_err(js)?);
    Ok(Jail::new(
        Via::Socket { conn },
        reports,
        PlanSummary::of(plan),
        before,
        stop,
    ))
}

/// `start` with a `JailStdio` and `JailerFds`, as `spawn_jailer_with_fds`
/// takes them: `Inherit` passes our own stdio, `Files` the two files with
/// stdin from /dev/null.
pub fn start_with(
    socket: &Path,
    stdio: &JailStdio,
    extra: &JailerFds,
    node_id: &str,
    argv: &[String],
    plan: &JailPlan,
) -> Result<Jail, SupervisorError> {
    let null = std::fs::File::open("/dev/null").map_err(|source| SupervisorError::Read {
        path: "/dev/null".into(),
        source,
    })?;
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let fds = match stdio {
        JailStdio::Inherit => [i.as_fd(), o.as_fd(), e.as_fd()],
        JailStdio::Files { stdout, stderr } => [null.as_fd(), stdout.as_fd(), stderr.as_fd()],
    };
    let egress = extra.egress.as_ref().map(AsFd::as_fd);
    start(socket, fds, egress, node_id, argv, plan)
}
