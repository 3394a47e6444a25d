//! Removing the workspaces and output of runs that ended long ago: by
//! `aiopsctl gc` in-process, or by the daemon for `POST /api/v1/gc` (in
//! system mode its files are not an admin's to remove).
use crate::error::{error_chain, SupervisorError};
use crate::model::GcEntry;
use crate::store::Store;
use std::path::Path;

/// Workspaces of runs that ended before `before_ms` (and their output),
/// removed, or listed with `dry_run`; and orphans: workspaces and output
/// directories of runs the database has no row for (it was deleted or
/// replaced) last changed before `before_ms`. Nothing to do without a
/// database.
pub fn collect(
    state_dir: &Path,
    workspace_root: &Path,
    before_ms: i64,
    dry_run: bool,
) -> Result<Vec<GcEntry>, SupervisorError> {
    if !state_dir.join(crate::store::DB_FILE).exists() {
        return Ok(vec![]);
    }
    let store = Store::open(state_dir)?;
    let finished: std::collections::HashSet<(String, String)> =
        store.finished_before(before_ms)?.into_iter().collect();
    let known = store.run_ids()?;
    drop(store);
    let old = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| ms_of(t) < before_ms)
    };
    let orphan = |run: &str, p: &Path| !known.contains(run) && old(p);
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
        .filter(|e| finished.contains(&(e.flow.clone(), e.run.clone())) || orphan(&e.run, &e.path))
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
    // Output directories with no row (their workspace, if any, went above).
    let runs_dir = state_dir.join("runs");
    let mut dirs: Vec<_> = match std::fs::read_dir(&runs_dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => vec![],
    };
    dirs.sort();
    for dir in dirs {
        let Some(run) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !dir.is_dir() || !orphan(&run, &dir) {
            continue;
        }
        let (result, error) = if dry_run {
            ("would_remove", None)
        } else {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => ("removed", None),
                Err(e) => ("failed", Some(e.to_string())),
            }
        };
        done.push(GcEntry {
            workspace: dir.display().to_string(),
            result: result.to_string(),
            error,
        });
    }
    Ok(done)
}

fn ms_of(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
