//! System mode's ceiling: `/etc/aiops/jailer.toml` and the profile
//! directories it names, read only when owned by root and writable by no
//! one else (docs/jailer.md, "The ceiling"). Nothing here comes from the
//! request.
use crate::error::JailError;
use serde::Deserialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the socket-activated jailer reads its configuration. The unit may
/// name another with `AIOPS_JAILER_CONFIG` (the supervisor cannot: it
/// speaks only the socket).
pub const DEFAULT_PATH: &str = "/etc/aiops/jailer.toml";
pub const PATH_ENV: &str = "AIOPS_JAILER_CONFIG";
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// `jailer.toml` as written (strict: unknown keys are errors).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    schema: u32,
    /// The profiles a system-mode jail may run under, by name.
    profiles: Vec<String>,
    profile_dirs: Option<Vec<PathBuf>>,
    allow_unconfined: Option<bool>,
    workspace_root: Option<PathBuf>,
    home: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailerConfig {
    pub path: PathBuf,
    pub profiles: Vec<String>,
    /// Searched in order for `NAME.toml`, as `extends` names are too.
    pub profile_dirs: Vec<PathBuf>,
    pub allow_unconfined: bool,
    /// Every system-mode workspace lies strictly below this.
    pub workspace_root: PathBuf,
    /// `$HOME` for profile paths; a request may omit it or name exactly this.
    pub home: Option<PathBuf>,
}

fn bad(path: &Path, reason: impl Into<String>) -> JailError {
    JailError::Config {
        path: path.into(),
        reason: reason.into(),
    }
}

/// `path` and every directory above it are root's and writable by no one
/// else. A world-writable directory on the way is accepted only with the
/// sticky bit (/tmp): no one but root may then rename root's entries in it.
pub fn check_root_owned(path: &Path) -> Result<(), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut walked = PathBuf::from("/");
    let check = |p: &Path, last: bool| -> Result<(), String> {
        let md = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if md.uid() != 0 {
            return Err(format!(
                "{} is owned by uid {}, not root",
                p.display(),
                md.uid()
            ));
        }
        let mode = md.permissions().mode();
        let sticky_dir = md.is_dir() && mode & 0o1000 != 0 && !last;
        if mode & 0o022 != 0 && !sticky_dir {
            return Err(format!(
                "{} has mode {:o}: group or others may write it",
                p.display(),
                mode & 0o7777
            ));
        }
        Ok(())
    };
    check(&walked, false)?;
    let parts: Vec<_> = real.components().skip(1).collect();
    for (i, c) in parts.iter().enumerate() {
        walked.push(c);
        check(&walked, i + 1 == parts.len())?;
    }
    Ok(())
}

impl JailerConfig {
    /// Read and check `path`; `supervisor_home` is the default `$HOME`.
    pub fn load(path: &Path, supervisor_home: Option<PathBuf>) -> Result<JailerConfig, JailError> {
        check_root_owned(path).map_err(|r| bad(path, r))?;
        let md = std::fs::metadata(path).map_err(|e| bad(path, e.to_string()))?;
        if md.len() > MAX_CONFIG_BYTES {
            return Err(bad(path, format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| bad(path, e.to_string()))?;
        if file.schema != 1 {
            return Err(bad(
                path,
                format!("schema {}: this jailer reads schema = 1", file.schema),
            ));
        }
        let abs = |field: &str, p: PathBuf| {
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(bad(
                    path,
                    format!("{field}: {} is not absolute", p.display()),
                ))
            }
        };
        let profile_dirs = file
            .profile_dirs
            .unwrap_or_else(|| {
                vec![
                    "/etc/aiops/profiles".into(),
                    "/usr/share/aiops/profiles".into(),
                ]
            })
            .into_iter()
            .map(|d| abs("profile_dirs", d))
            .collect::<Result<Vec<_>, _>>()?;
        let workspace_root = abs(
            "workspace_root",
            file.workspace_root
                .unwrap_or_else(|| "/var/lib/aiops/workspaces".into()),
        )?;
        let home = file
            .home
            .or(supervisor_home)
            .map(|h| abs("home", h))
            .transpose()?;
        Ok(JailerConfig {
            path: path.into(),
            profiles: file.profiles,
            profile_dirs,
            allow_unconfined: file.allow_unconfined.unwrap_or(false),
            workspace_root,
            home,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_file_others_may_write_or_another_uid_owns_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("jailer.toml");
        std::fs::write(&f, "schema = 1\nprofiles = [\"restrictive\"]\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        if root() {
            // /tmp is 1777: accepted on the way, as root's entries in it are safe.
            JailerConfig::load(&f, None).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
            let e = JailerConfig::load(&f, None).unwrap_err().chain();
            assert!(e.contains("group or others may write it"), "{e}");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            let e = JailerConfig::load(&f, None).unwrap_err().chain();
            assert!(e.contains("group or others may write it"), "{e}");
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(1)), None).unwrap();
        }
        let e = JailerConfig::load(&f, None).unwrap_err().chain();
        assert!(e.contains("not root"), "{e}");
        assert!(e.contains(f.to_str().unwrap()), "names the file: {e}");
    }

    #[test]
    fn unknown_keys_relative_paths_and_other_schemas_are_refused() {
        if !root() {
            eprintln!("skip: needs root to make a root-owned file");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("jailer.toml");
        for (text, says) in [
            (
                "schema = 1\nprofiles = []\nallow_unconfined = true\nextra = 1\n",
                "unknown field `extra`",
            ),
            ("schema = 2\nprofiles = []\n", "schema 2"),
            (
                "schema = 1\nprofiles = []\nworkspace_root = \"ws\"\n",
                "workspace_root: ws is not absolute",
            ),
            ("schema = 1\n", "missing field `profiles`"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = JailerConfig::load(&f, None).unwrap_err().chain();
            assert!(e.contains(says), "{text}: {e}");
        }
        std::fs::write(&f, "schema = 1\nprofiles = [\"agent\"]\n").unwrap();
        let c = JailerConfig::load(&f, Some("/var/lib/aiops".into())).unwrap();
        assert!(!c.allow_unconfined, "unconfined is off unless set");
        assert_eq!(c.workspace_root, Path::new("/var/lib/aiops/workspaces"));
        assert_eq!(c.home.as_deref(), Some(Path::new("/var/lib/aiops")));
    }
}
