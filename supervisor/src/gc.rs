//! Removing the workspaces and output of runs that ended long ago: by
//! `aiopsctl gc` in-process, or by the daemon for `POST /api/v1/gc` (in
//! system mode its files are not an admin's to remove).
use crate::error::{error_chain, SupervisorError};
use crate::model::GcEntry;
use crate::store::Store;
use std::path::Path;

/// Workspaces of runs that ended before `before_ms` (and their output),
/// removed, or listed with `dry_run`. Nothing to do without a database.
pub fn collect(
    state_dir: &Path,
    workspace_root: &Path,
    before_ms: i64,
    dry_run: bool,
) -> Result<Vec<GcEntry>, SupervisorError> {
    if !state_dir.join(crate::store::DB_FILE).exists() {
        return Ok(vec![]);
    }
    let finished: std::collections::HashSet<(String, String)> = Store::open(state_dir)?
        .finished_before(before_ms)?
        .into_iter()
        .collect();
    crate::sys::isolate_libgit2();
    let ws_err = |e: &dyn std::error::Error| SupervisorError::StateDir {
        path: workspace_root.to_path_buf(),
        source: std::io::Error::other(error_chain(e)),
    };
    let root = crate::workspace::WorkspaceRoot::open(workspace_root).map_err(|e| ws_err(&e))?;
    let doomed: Vec<_> = root
        .list()
        .map_err(|e| ws_err(&e))?
        .into_iter()
        .filter(|e| finished.contains(&(e.flow.clone(), e.run.clone())))
        .collect();
    let mut done = vec![];
    for e in &doomed {
        let workspace = e.path.display().to_string();
        let (result, error) = if dry_run {
            ("would_remove", None)
        } else {
            match root.remove(&e.flow, &e.run) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(state_dir.join("runs").join(&e.run));
                    ("removed", None)
                }
                Err(err) => ("failed", Some(error_chain(&err))),
            }
        };
        done.push(GcEntry {
            workspace,
            result: result.to_string(),
            error,
        });
    }
    Ok(done)
}
