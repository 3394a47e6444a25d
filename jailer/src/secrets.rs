//! Step 2 (part): read the secrets the plan names from `$AIOPS_SECRETS_DIR`,
//! or, socket-activated, from systemd's `$CREDENTIALS_DIRECTORY`.
//! Values go only into `AgentSpec.secrets`; nothing here prints a value.
use crate::error::JailError;
use aiops_proto::EnvName;
use aiops_proto::Secret;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// A larger file is refused: a secret is a token, not a payload.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;
const GROUP_OTHER: u32 = 0o077;
/// systemd names the credentials of a directory `LoadCredential=ID:DIR`
/// `ID_<file>`; aiops-jailer@.service uses ID `aiops`. A credential named
/// exactly `NAME` (a drop-in's `LoadCredential=NAME:...`) is read first.
pub const CREDENTIAL_PREFIX: &str = "aiops_";

fn bad(name: &str, reason: impl Into<String>) -> JailError {
    JailError::Secrets {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Where the secrets directory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `$AIOPS_SECRETS_DIR`: ours alone, no group or other bits.
    SecretsDir,
    /// `$CREDENTIALS_DIRECTORY` (`LoadCredential=`): a private mount systemd
    /// made for this unit instance. It owns the files as root and grants our
    /// uid read by an ACL, whose mask shows in the group bits; other bits
    /// must still be clear.
    Credentials,
}

impl Origin {
    fn var(self) -> &'static str {
        match self {
            Origin::SecretsDir => "AIOPS_SECRETS_DIR",
            Origin::Credentials => "CREDENTIALS_DIRECTORY",
        }
    }
    fn forbidden_bits(self) -> u32 {
        match self {
            Origin::SecretsDir => GROUP_OTHER,
            Origin::Credentials => 0o007,
        }
    }
}

/// Check owner and mode of an open fd, by fstat so nothing can swap it.
fn check_private(
    fd: &OwnedFd,
    origin: Origin,
    name: &str,
    what: &str,
    kind: SFlag,
) -> Result<(), JailError> {
    let st = fstat(fd.as_fd()).map_err(|e| bad(name, format!("fstat {what}: {e}")))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != kind {
        return Err(bad(
            name,
            format!(
                "{what} is not a {}",
                if kind == SFlag::S_IFDIR {
                    "directory"
                } else {
                    "regular file"
                }
            ),
        ));
    }
    let uid = nix::unistd::getuid().as_raw();
    let root_ok = origin == Origin::Credentials && st.st_uid == 0;
    if st.st_uid != uid && !root_ok {
        return Err(bad(
            name,
            format!("{what} is owned by uid {}, not {uid}", st.st_uid),
        ));
    }
    if st.st_mode & origin.forbidden_bits() != 0 {
        return Err(bad(
            name,
            format!(
                "{what} has mode {:o}; {} bits must be clear",
                st.st_mode & 0o7777,
                if origin == Origin::SecretsDir {
                    "group/other"
                } else {
                    "other"
                }
            ),
        ));
    }
    Ok(())
}

/// Open and check each named secret; nothing is read yet.
pub fn open_secrets(
    dir: Option<&Path>,
    origin: Origin,
    names: &[EnvName],
) -> Result<Vec<(String, OwnedFd)>, JailError> {
    if names.is_empty() {
        return Ok(vec![]);
    }
    let first = names[0].as_str();
    let dir = dir.ok_or_else(|| bad(first, format!("{} is not set", origin.var())))?;
    let dfd = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| JailError::SecretsIo {
        path: dir.into(),
        source: e.into(),
    })?;
    check_private(&dfd, origin, first, origin.var(), SFlag::S_IFDIR)?;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let name = n.as_str();
        let open_name = |file: &str| {
            openat(
                &dfd,
                file,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        };
        let fd = match open_name(name) {
            // The unit's `LoadCredential=aiops:/etc/aiops/credentials` loads
            // each file of that directory as `aiops_<file>`.
            Err(nix::errno::Errno::ENOENT) if origin == Origin::Credentials => {
                open_name(&format!("{CREDENTIAL_PREFIX}{name}"))
            }
            r => r,
        }
        .map_err(|e| bad(name, format!("open: {e}")))?;
        check_private(&fd, origin, name, "the secret file", SFlag::S_IFREG)?;
        out.push((name.to_string(), fd));
    }
    Ok(out)
}

/// Read what `open_secrets` opened (in the jail's PID 1, after the fork).
pub fn read_opened(opened: Vec<(String, OwnedFd)>) -> Result<Vec<(String, Secret)>, JailError> {
    let mut out = Vec::with_capacity(opened.len());
    for (name, fd) in opened {
        let name = name.as_str();
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

/// Both halves at once, as the tests want them.
#[cfg(test)]
fn read_secrets(
    dir: Option<&Path>,
    origin: Origin,
    names: &[EnvName],
) -> Result<Vec<(String, Secret)>, JailError> {
    read_opened(open_secrets(dir, origin, names)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(n: &[&str]) -> Vec<EnvName> {
        n.iter().map(|s| EnvName::parse(s).unwrap()).collect()
    }

    fn dir_with(mode: u32, file_mode: u32) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let f = d.path().join("TOKEN");
        std::fs::write(&f, "s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(file_mode)).unwrap();
        d
    }

    #[test]
    fn reads_a_private_secret_and_strips_one_newline() {
        let d = dir_with(0o700, 0o600);
        let got = read_secrets(Some(d.path()), Origin::SecretsDir, &names(&["TOKEN"])).unwrap();
        assert_eq!(got, vec![("TOKEN".to_string(), Secret("s3cret".into()))]);
    }

    #[test]
    fn refuses_a_group_readable_dir_or_file() {
        for (dm, fm) in [(0o750, 0o600), (0o700, 0o640), (0o701, 0o600)] {
            let d = dir_with(dm, fm);
            let e =
                read_secrets(Some(d.path()), Origin::SecretsDir, &names(&["TOKEN"])).unwrap_err();
            assert!(matches!(e, JailError::Secrets { .. }), "{dm:o} {fm:o}: {e}");
            assert!(!e.chain().contains("s3cret"));
        }
    }

    #[test]
    fn refuses_missing_dir_variable_and_missing_file() {
        assert!(read_secrets(None, Origin::SecretsDir, &names(&["TOKEN"])).is_err());
        let d = dir_with(0o700, 0o600);
        assert!(read_secrets(Some(d.path()), Origin::SecretsDir, &names(&["OTHER"])).is_err());
        assert!(read_secrets(None, Origin::SecretsDir, &[])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn credentials_allow_the_acl_mask_but_not_other_bits() {
        // systemd's credential files: mode 0440 once an ACL grants our uid read.
        let d = dir_with(0o750, 0o640);
        let got = read_secrets(Some(d.path()), Origin::Credentials, &names(&["TOKEN"])).unwrap();
        assert_eq!(got[0].1, Secret("s3cret".into()));
        let d = dir_with(0o700, 0o604);
        assert!(read_secrets(Some(d.path()), Origin::Credentials, &names(&["TOKEN"])).is_err());
        let e = read_secrets(None, Origin::Credentials, &names(&["TOKEN"])).unwrap_err();
        assert!(e.chain().contains("CREDENTIALS_DIRECTORY"), "{}", e.chain());
    }

    #[test]
    fn credentials_of_the_units_directory_load_carry_its_prefix() {
        // LoadCredential=aiops:/etc/aiops/credentials names them aiops_<file>.
        let d = dir_with(0o700, 0o600);
        std::fs::rename(d.path().join("TOKEN"), d.path().join("aiops_TOKEN")).unwrap();
        let got = read_secrets(Some(d.path()), Origin::Credentials, &names(&["TOKEN"])).unwrap();
        assert_eq!(got, vec![("TOKEN".to_string(), Secret("s3cret".into()))]);
        // Only systemd's credentials directory has that naming.
        assert!(read_secrets(Some(d.path()), Origin::SecretsDir, &names(&["TOKEN"])).is_err());
    }

    #[test]
    fn refuses_a_symlinked_secret() {
        let d = dir_with(0o700, 0o600);
        std::os::unix::fs::symlink(d.path().join("TOKEN"), d.path().join("LINK")).unwrap();
        assert!(read_secrets(Some(d.path()), Origin::SecretsDir, &names(&["LINK"])).is_err());
    }
}
