//! Step 8: hostname and loopback. `lo` comes up for `loopback` and
//! `allowlist`; `none` keeps it down. For `allowlist`, the egress listener
//! is made here, inside the jail's network namespace, and handed to the
//! proxy outside: the proxy accepts on it directly, so no byte of the
//! node's traffic is copied inside the jail.
use crate::error::JailError;
use crate::sys;
use aiops_proto::net::ALLOWLIST_PROXY_PORT;
use nix::sys::socket::{
    sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use std::os::fd::{AsRawFd, OwnedFd};

pub fn sethostname(name: &str) -> Result<(), JailError> {
    nix::unistd::sethostname(name).map_err(|e| JailError::Hostname { source: e.into() })
}

pub fn set_lo_up() -> Result<(), JailError> {
    let le = |e: std::io::Error| JailError::Loopback { source: e };
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| le(e.into()))?;
    sys::interface_up(sock.as_raw_fd(), b"lo").map_err(le)
}

/// Listen on 127.0.0.1:`ALLOWLIST_PROXY_PORT` in this (the jail's) network
/// namespace and send the listener to the proxy over `egress` with
/// SCM_RIGHTS. Both fds are closed on return: nothing in the jail keeps the
/// listener (so nothing in it can accept), nor the way to the proxy.
pub fn listen_for_egress(egress: OwnedFd) -> Result<(), JailError> {
    let ee = |what: &'static str| {
        move |e: nix::Error| JailError::EgressListener {
            what,
            source: e.into(),
        }
    };
    // socket, bind, listen(128), close-on-exec.
    let sock =
        std::net::TcpListener::bind(("127.0.0.1", ALLOWLIST_PROXY_PORT)).map_err(|source| {
            JailError::EgressListener {
                what: "listen on 127.0.0.1",
                source,
            }
        })?;
    let fds = [sock.as_raw_fd()];
    sendmsg::<()>(
        egress.as_raw_fd(),
        &[std::io::IoSlice::new(b"egress-listener")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(ee("send the listener to the proxy"))?;
    Ok(())
}
