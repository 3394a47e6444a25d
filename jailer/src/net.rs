//! Step 8: hostname and loopback. `lo` comes up for every mode that has a
//! network namespace (`none` and `loopback`): the namespace is private, so
//! 127.0.0.1 reaches only the jail itself, and for `none` Landlock's TCP
//! rules (no ports) refuse every TCP bind/connect anyway.
use crate::error::JailError;
use crate::sys;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::os::fd::AsRawFd;

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
