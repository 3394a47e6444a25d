//! Step 2 (part): read the secrets the plan names from `$AIOPS_SECRETS_DIR`.
//! Values go only into `AgentSpec.secrets`; nothing here prints a value.
use crate::error::JailError;
use aiops_policy::proto::Secret;
use aiops_policy::EnvName;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// A larger file is refused: a secret is a token, not a payload.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
const GROUP_OTHER: u32 = 0o077;

fn bad(name: &str, reason: impl Into<String>) -> JailError {
    JailError::Secrets {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Check owner and mode of an open fd, by fstat so nothing can swap it.
fn check_private(fd: &OwnedFd, name: &str, what: &str, kind: SFlag) -> Result<(), JailError> {
    let st = fstat(fd.as_fd()).map_err(|e| bad(name, format!("fstat {what}: {e}")))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != kind {
        return Err(bad(name, format!("{what} is not a {}", if kind == SFlag::S_IFDIR { "directory" } else { "regular file" })));
    }
    let uid = nix::unistd::getuid().as_raw();
    if st.st_uid != uid {
        return Err(bad(name, format!("{what} is owned by uid {}, not {uid}", st.st_uid)));
    }
    if st.st_mode & GROUP_OTHER != 0 {
        return Err(bad(name, format!("{what} has mode {:o}; group/other bits must be clear", st.st_mode & 0o7777)));
    }
    Ok(())
}

pub fn read_secrets(dir: Option<&Path>, names: &[EnvName]) -> Result<Vec<(String, Secret)>, JailError> {
    if names.is_empty() {
        return Ok(vec![]);
    }
    let first = names[0].as_str();
    let dir = dir.ok_or_else(|| bad(first, "AIOPS_SECRETS_DIR is not set"))?;
    let dfd = open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| JailError::SecretsIo {
            path: dir.into(),
            source: e.into(),
        })?;
    check_private(&dfd, first, "AIOPS_SECRETS_DIR", SFlag::S_IFDIR)?;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let name = n.as_str();
        let fd = openat(&dfd, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| bad(name, format!("open: {e}")))?;
        check_private(&fd, name, "the secret file", SFlag::S_IFREG)?;
        let mut buf = String::new();
        std::fs::File::from(fd)
            .take(MAX_SECRET_BYTES + 1)
            .read_to_string(&mut buf)
            .map_err(|e| bad(name, format!("read: {e}")))?;
        if buf.len() as u64 > MAX_SECRET_BYTES {
            return Err(bad(name, format!("larger than {MAX_SECRET_BYTES} bytes")));
        }
        if buf.ends_with('\n') {
            buf.pop();
        }
        if buf.contains('\0') {
            return Err(bad(name, "contains a NUL byte"));
        }
        out.push((name.to_string(), Secret(buf)));
    }
    Ok(out)
}
