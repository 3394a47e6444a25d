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

/// Build the context. `workspace` defaults to the current directory; the
/// node's cwd defaults to the current directory when it lies inside the
/// workspace, else the workspace itself.
pub fn host_context(
    workspace: Option<&Path>,
    node_cwd: Option<&Path>,
) -> Result<CompileContext, SupervisorError> {
    let cwd = std::env::current_dir().map_err(|source| SupervisorError::CurrentDir { source })?;
    let ws_in = workspace.map_or_else(|| cwd.clone(), |w| cwd.join(w));
    let ws = std::fs::canonicalize(&ws_in).map_err(|source| SupervisorError::Workspace {
        path: ws_in.clone(),
        source,
    })?;
    let node_cwd = match node_cwd {
        Some(c) => {
            let c = cwd.join(c);
            std::fs::canonicalize(&c).map_err(|source| SupervisorError::Read { path: c, source })?
        }
        None if cwd.starts_with(&ws) => cwd,
        None => ws.clone(),
    };
    let agentd = std::path::absolute(agentd_path())
        .map_err(|source| SupervisorError::CurrentDir { source })?;
    Ok(CompileContext {
        vars: PathVars {
            workspace: Some(abs(&ws, "workspace")?),
            home: env_abs("HOME"),
            // POSIX: /tmp when TMPDIR is unset.
            tmpdir: env_abs("TMPDIR").or_else(|| AbsPath::new("/tmp").ok()),
        },
        cwd: abs(&node_cwd, "cwd")?,
        // Non-UTF-8 variables cannot be passed by name in a plan anyway.
        host_env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
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
