//! sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET`
//! (a path, or `@name` for the abstract namespace). Without the variable
//! (not started by systemd) every call is a no-op.
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

fn target(raw: &std::ffi::OsStr) -> Option<SocketAddr> {
    let s = raw.to_str()?;
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes()).ok()
    } else {
        SocketAddr::from_pathname(s).ok()
    }
}

/// Send `state` (e.g. `READY=1`); false when there is no socket or it failed.
pub fn notify(state: &str) -> bool {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

fn notify_to(socket: Option<&std::ffi::OsStr>, state: &str) -> bool {
    let Some(addr) = socket.and_then(target) else {
        return false;
    };
    UnixDatagram::unbound()
        .and_then(|s| s.send_to_addr(state.as_bytes(), &addr))
        .is_ok()
}

/// Half of `$WATCHDOG_USEC` when the watchdog is on for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        assert!(notify_to(Some(p.as_os_str()), "READY=1"));
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify_to(None, "READY=1"));
    }
}
