//! Directory walks for listing, removing and sizing workspaces; none of
//! them follows a symlink.
use super::{check_name, WorkspaceError};
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Real directories directly under `dir` whose names pass `check_name`.
pub(super) fn name_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, WorkspaceError> {
    let read_err = |source| WorkspaceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let is_dir = entry.file_type().map_err(read_err)?.is_dir();
        if is_dir && check_name("entry", &name).is_ok() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

/// `remove_dir_all` never follows symlinks. A node may have left a directory
/// without write permission; make real directories writable and retry once.
pub(super) fn remove_tree(path: &Path) -> Result<(), WorkspaceError> {
    let first = match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if first.kind() != io::ErrorKind::PermissionDenied {
        return Err(WorkspaceError::Remove {
            path: path.to_path_buf(),
            source: first,
        });
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.file_type().is_dir() {
            continue;
        }
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    fs::remove_dir_all(path).map_err(|source| WorkspaceError::Remove {
        path: path.to_path_buf(),
        source,
    })
}

/// Bytes on disk under `path` (512-byte blocks, each inode once). Best
/// effort: an unreadable entry counts as zero.
pub(super) fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.file_type().is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
