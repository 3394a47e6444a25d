//! The real invocation context for compiling a plan on this host: the
//! workspace, HOME, TMPDIR, cwd, the process environment and agentd's path.
use crate::error::SupervisorError;
use crate::locate::{AGENTD, LIBEXEC_DIR};
use aiops_policy::{AbsPath, CompileContext, PathVars};
use std::path::{Path, PathBuf};

fn abs(p: &Path, what: &str) -> Result<AbsPath, SupervisorError> {
    AbsPath::new(p).map_err(|reason| SupervisorError::Usage {
        what: what.into(),
        reason,
    })
}

fn env_abs(name: &str) -> Option<AbsPath> {
    std::env::var_os(name).and_then(|v| AbsPath::new(PathBuf::from(v)).ok())
}

/// Where agentd is: the lookup result, else where the package would put it
/// (the plan is still worth reading before the helper is installed).
pub fn agentd_path() -> PathBuf {
    AGENTD
        .find()
        .map(|l| l.path)
        .unwrap_or_else(|_| Path::new(LIBEXEC_DIR).join(AGENTD.name))
}

/// `$HOME` for a jail that runs as another user than the invoker: root's
/// jail runs as the workspace owner, or nobody when root owns it
/// (`aiops_proto::ids`), so `$HOME` in the profile is that user's home
/// from the passwd database, not root's (/root, 0700: out of the jail
/// uid's reach). `None` when the invoker is not root (the jail runs as the
/// invoker: its own `$HOME`). `Some(None)`: that uid has no passwd entry,
/// so `$HOME` has no value for this jail.
fn jail_user_home(ws: &Path) -> Option<Option<AbsPath>> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let owner = std::fs::metadata(ws).ok().map(|m| (m.uid(), m.gid()));
    let (uid, _) = aiops_proto::ids::jail_ids(owner);
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    Some(user.and_then(|u| AbsPath::new(u.dir).ok()))
}

/// Whose `$HOME` a plan's `$HOME` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// The invoker's `$HOME`: system mode (jailer.toml fixes the home,
    /// and the ceiling compares it) and macOS.
    Invoker,
    /// The local jailer's: root's jail runs as another user, whose home it is.
    JailUser,
}

/// `path` must be a directory: a jail cannot enter a file.
fn not_a_directory(what: &'static str, path: &Path) -> Result<(), SupervisorError> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(SupervisorError::NotADirectory {
            what,
            path: path.to_path_buf(),
            kind: if m.is_file() {
                "a file"
            } else {
                "not a directory"
            },
        }),
        _ => Ok(()),
    }
}

/// Build the context. `workspace` defaults to the current directory; the
/// node's cwd defaults to the current directory when it lies inside the
/// workspace, else the workspace itself.
/// `whose`: see [`Home`].
pub fn host_context(
    workspace: Option<&Path>,
    node_cwd: Option<&Path>,
    whose: Home,
) -> Result<CompileContext, SupervisorError> {
    let cwd = std::env::current_dir().map_err(|source| SupervisorError::CurrentDir { source })?;
    let ws_in = workspace.map_or_else(|| cwd.clone(), |w| cwd.join(w));
    let ws = std::fs::canonicalize(&ws_in).map_err(|source| SupervisorError::Workspace {
        path: ws_in.clone(),
        source,
    })?;
    not_a_directory("workspace", &ws)?;
    let node_cwd = match node_cwd {
        Some(c) => {
            let c = cwd.join(c);
            let c = std::fs::canonicalize(&c)
                .map_err(|source| SupervisorError::Read { path: c, source })?;
            not_a_directory("--cwd", &c)?;
            c
        }
        None if cwd.starts_with(&ws) => cwd,
        None => ws.clone(),
    };
    let agentd = std::path::absolute(agentd_path())
        .map_err(|source| SupervisorError::CurrentDir { source })?;
    // Non-UTF-8 variables cannot be passed by name in a plan anyway.
    let mut host_env: std::collections::BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let jail_home = (whose == Home::JailUser)
        .then(|| jail_user_home(&ws))
        .flatten();
    let home = match jail_home {
        None => env_abs("HOME"),
        Some(home) => {
            // The node's HOME is the jail user's too (compile keeps it only
            // when the profile mounts some of it, else /tmp).
            match &home {
                Some(h) => host_env.insert("HOME".into(), h.to_string()),
                None => host_env.remove("HOME"),
            };
            home
        }
    };
    Ok(CompileContext {
        vars: PathVars {
            workspace: Some(abs(&ws, "workspace")?),
            home,
            // POSIX: /tmp when TMPDIR is unset.
            tmpdir: env_abs("TMPDIR").or_else(|| AbsPath::new("/tmp").ok()),
        },
        cwd: abs(&node_cwd, "cwd")?,
        host_env,
        agentd: abs(&agentd, "agentd path")?,
    })
}

/// A context that depends on nothing about the caller (cwd, HOME, env), for
/// asking "can this profile run on this host at all?". The paths are never
/// touched: compiling is pure.
pub fn neutral_context() -> Result<CompileContext, SupervisorError> {
    let agentd = std::path::absolute(agentd_path())
        .map_err(|source| SupervisorError::CurrentDir { source })?;
    let p = |s: &str| {
        AbsPath::new(s).map_err(|reason| SupervisorError::Usage {
            what: s.into(),
            reason,
        })
    };
    let ws = p("/var/lib/aiops/doctor/workspace")?;
    Ok(CompileContext {
        vars: PathVars {
            workspace: Some(ws.clone()),
            home: Some(p("/var/lib/aiops/doctor/home")?),
            tmpdir: Some(p("/tmp")?),
        },
        cwd: ws,
        host_env: Default::default(),
        agentd: abs(&agentd, "agentd path")?,
    })
}
