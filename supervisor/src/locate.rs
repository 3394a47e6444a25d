//! Finding the sibling binaries and the profile search path.
//!
//! Binaries: the env override, then next to the running `aiopsctl` (a cargo
//! build or a tarball), then the distro location. An override that points
//! at nothing is reported, not silently replaced by another binary.
use aiops_policy::ProfileLoader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

// The search order is `aiops_proto::locate`'s, shared with the jailer.
pub use aiops_proto::locate::LIBEXEC_DIR;
use aiops_proto::locate::{self, Search};

pub const JAILER: Helper = Helper(locate::JAILER);
pub const AGENTD: Helper = Helper(locate::AGENTD);

/// A helper executable (`name`, `env`), found by `find`.
#[derive(Debug, Clone, Copy)]
pub struct Helper(locate::Helper);

impl std::ops::Deref for Helper {
    type Target = locate::Helper;
    fn deref(&self) -> &locate::Helper {
        &self.0
    }
}

/// A helper binary and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    /// `$AIOPS_JAILER`, `next to aiopsctl` or `/usr/libexec/aiops`.
    pub via: String,
}

/// Why a helper was not found: every place tried, with what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub tried: Vec<(PathBuf, &'static str)>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .tried
            .iter()
            .map(|(p, why)| format!("{} ({why})", p.display()))
            .collect();
        write!(f, "tried {}", parts.join(", "))
    }
}

fn executable(p: &Path) -> Result<(), &'static str> {
    match std::fs::metadata(p) {
        Err(_) => Err("absent"),
        Ok(m) if !m.is_file() => Err("not a file"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("not executable"),
        Ok(_) => Ok(()),
    }
}

impl Helper {
    /// Find this helper for the running process.
    pub fn find(&self) -> Result<Located, NotFound> {
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        self.find_in(
            std::env::var_os(self.env).map(PathBuf::from),
            exe_dir.as_deref(),
            Path::new(LIBEXEC_DIR),
        )
    }

    /// The lookup with its inputs handed in, so it can be tested.
    pub fn find_in(
        &self,
        env_value: Option<PathBuf>,
        exe_dir: Option<&Path>,
        libexec: &Path,
    ) -> Result<Located, NotFound> {
        find_in(
            self,
            env_value,
            exe_dir.map(|d| (d, "next to aiopsctl")),
            libexec,
        )
    }
}

fn find_in(
    helper: &Helper,
    env_value: Option<PathBuf>,
    exe_dir: Option<(&Path, &'static str)>,
    libexec: &Path,
) -> Result<Located, NotFound> {
    let candidates = match helper.search(env_value, exe_dir, libexec) {
        Search::Override { path, via } => {
            return match executable(&path) {
                Ok(()) => Ok(Located { path, via }),
                Err(why) => Err(NotFound {
                    tried: vec![(path, why)],
                }),
            }
        }
        Search::Candidates(c) => c,
    };
    let mut tried = vec![];
    for (p, via) in candidates {
        match executable(&p) {
            Ok(()) => {
                return Ok(Located {
                    path: p,
                    via: via.into(),
                })
            }
            Err(why) => tried.push((p, why)),
        }
    }
    Err(NotFound { tried })
}

// One rule for aiopsctl, the daemon and the jailer.
pub use aiops_policy::profile::dev_profiles_dir;

/// `$AIOPS_PROFILE_PATH`, `/etc/aiops/profiles`, `/usr/share/aiops/profiles`, dev dir.
pub fn profile_loader() -> ProfileLoader {
    let env_path = std::env::var("AIOPS_PROFILE_PATH").ok();
    ProfileLoader::standard(env_path.as_deref(), dev_profiles_dir().as_deref())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn touch(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn prefers_the_env_override_then_the_sibling_then_libexec() {
        let exe = tempfile::tempdir().unwrap();
        let lib = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let in_lib = touch(lib.path(), "aiops-jailer", 0o755);
        let found = JAILER.find_in(None, Some(exe.path()), lib.path()).unwrap();
        assert_eq!(found.path, in_lib);
        let sibling = touch(exe.path(), "aiops-jailer", 0o755);
        let found = JAILER.find_in(None, Some(exe.path()), lib.path()).unwrap();
        assert_eq!(
            found,
            Located {
                path: sibling,
                via: "next to aiopsctl".into()
            }
        );
        let env = touch(other.path(), "j", 0o700);
        let found = JAILER
            .find_in(Some(env.clone()), Some(exe.path()), lib.path())
            .unwrap();
        assert_eq!(
            found,
            Located {
                path: env,
                via: "$AIOPS_JAILER".into()
            }
        );
    }

    #[test]
    fn a_broken_override_is_an_error_not_a_fallback() {
        let exe = tempfile::tempdir().unwrap();
        touch(exe.path(), "aiops-jailer", 0o755);
        let bad = exe.path().join("nope");
        let err = JAILER
            .find_in(Some(bad.clone()), Some(exe.path()), exe.path())
            .unwrap_err();
        assert_eq!(err.tried, vec![(bad, "absent")]);
    }

    #[test]
    fn skips_files_that_are_not_executable() {
        let exe = tempfile::tempdir().unwrap();
        let lib = tempfile::tempdir().unwrap();
        touch(exe.path(), "aiops-agentd", 0o644);
        let err = AGENTD
            .find_in(None, Some(exe.path()), lib.path())
            .unwrap_err();
        assert_eq!(err.tried[0].1, "not executable");
        assert_eq!(err.tried[1].1, "absent");
        assert!(err.to_string().contains("not executable"));
    }
}
