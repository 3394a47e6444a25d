//! Who may talk to the API: Unix-socket peers by SO_PEERCRED, TCP clients by
//! a bearer token read from a file only the daemon's user can read.
use super::ApiError;
use nix::unistd::{Group, Uid, User};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A connected peer as the kernel reports it (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// What the account databases say, looked up per connection so a change
/// to the admin group takes effect without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Accounts {
    /// The admin group's gid and listed members, if the group exists.
    pub admin: Option<(u32, Vec<String>)>,
    /// The peer's user name and primary gid, if the uid has a passwd entry.
    pub user: Option<(String, u32)>,
}

impl Accounts {
    pub(crate) fn lookup(admin_group: &str, uid: u32) -> Accounts {
        let admin = Group::from_name(admin_group)
            .ok()
            .flatten()
            .map(|g| (g.gid.as_raw(), g.mem));
        let user = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| (u.name, u.gid.as_raw()));
        Accounts { admin, user }
    }
}

/// The daemon's own uid, root, or a member of the admin group (by the
/// peer's gid, its passwd primary gid, or the group's member list).
pub(crate) fn peer_allowed(peer: &Peer, own_uid: u32, acc: &Accounts) -> bool {
    if peer.uid == own_uid || peer.uid == 0 {
        return true;
    }
    let Some((admin_gid, members)) = &acc.admin else {
        return false;
    };
    if peer.gid == *admin_gid {
        return true;
    }
    match &acc.user {
        Some((name, primary)) => primary == admin_gid || members.iter().any(|m| m == name),
        None => false,
    }
}

/// SO_PEERCRED on Linux (getpeereid on macOS, where pid is unknown: -1),
/// via tokio so the client half builds everywhere.
pub(crate) fn peer_of(stream: &tokio::net::UnixStream) -> std::io::Result<Peer> {
    let c = stream.peer_cred()?;
    Ok(Peer {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid().unwrap_or(-1),
    })
}

/// Read the bearer token: the file must be owned by us and unreadable to
/// group and others, else anyone who can read it can drive the daemon.
pub(crate) fn load_token(path: &Path) -> Result<Vec<u8>, ApiError> {
    let read_err = |source| ApiError::ReadToken {
        path: path.to_path_buf(),
        source,
    };
    let bad = |reason: String| ApiError::TokenFile {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let own = Uid::effective().as_raw();
    if meta.uid() != own {
        return Err(bad(format!(
            "owned by uid {}, not the daemon's uid {own}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:04o} lets others read it; chmod 0600",
            meta.mode() & 0o7777
        )));
    }
    let text = std::fs::read(path).map_err(read_err)?;
    let token = text.trim_ascii().to_vec();
    if token.len() < 16 {
        return Err(bad("token shorter than 16 bytes".into()));
    }
    Ok(token)
}

/// Compare without an early exit, so response timing says nothing about
/// how many leading bytes of a guess were right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Check `Authorization: Bearer <token>` against the expected token.
pub(crate) fn bearer_ok(header: Option<&hyper::header::HeaderValue>, token: &[u8]) -> bool {
    let Some(v) = header else { return false };
    let v = v.as_bytes();
    let Some(given) = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| v.get(7..))
    else {
        return false;
    };
    constant_time_eq(given.trim_ascii(), token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer { uid, gid, pid: 1 }
    }

    #[test]
    fn allows_owner_and_root_and_admin_members_only() {
        let none = Accounts::default();
        assert!(peer_allowed(&peer(1000, 1000), 1000, &none));
        assert!(peer_allowed(&peer(0, 0), 1000, &none));
        assert!(!peer_allowed(&peer(1001, 1001), 1000, &none));
        let admin = Accounts {
            admin: Some((900, vec!["alice".into()])),
            user: Some(("alice".into(), 1002)),
        };
        assert!(
            peer_allowed(&peer(1002, 1002), 1000, &admin),
            "listed member"
        );
        let by_primary = Accounts {
            admin: Some((900, vec![])),
            user: Some(("bob".into(), 900)),
        };
        assert!(
            peer_allowed(&peer(1003, 1003), 1000, &by_primary),
            "passwd primary gid"
        );
        let by_peer_gid = Accounts {
            admin: Some((900, vec![])),
            user: None,
        };
        assert!(
            peer_allowed(&peer(1004, 900), 1000, &by_peer_gid),
            "process gid"
        );
        let stranger = Accounts {
            admin: Some((900, vec!["alice".into()])),
            user: Some(("mallory".into(), 1005)),
        };
        assert!(!peer_allowed(&peer(1005, 1005), 1000, &stranger));
    }

    #[test]
    fn bearer_needs_the_exact_token() {
        use hyper::header::HeaderValue;
        let t = b"0123456789abcdef";
        assert!(bearer_ok(
            Some(&HeaderValue::from_static("Bearer 0123456789abcdef")),
            t
        ));
        assert!(bearer_ok(
            Some(&HeaderValue::from_static("bearer 0123456789abcdef")),
            t
        ));
        assert!(!bearer_ok(
            Some(&HeaderValue::from_static("Bearer 0123456789abcdeF")),
            t
        ));
        assert!(!bearer_ok(
            Some(&HeaderValue::from_static("Bearer 0123456789abcde")),
            t
        ));
        assert!(!bearer_ok(
            Some(&HeaderValue::from_static("Basic 0123456789abcdef")),
            t
        ));
        assert!(!bearer_ok(Some(&HeaderValue::from_static("Bear")), t));
        assert!(!bearer_ok(None, t));
    }
}
