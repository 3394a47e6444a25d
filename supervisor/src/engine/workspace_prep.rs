//! Workspace preparation: each run's git worktree, made off the scheduler
//! task, handed to the jail's user, and recorded once complete. A run
//! whose workspace cannot be made fails closed (`workspace_failed`).
use super::record::{node_audit, set_state, Out};
use super::sched::advance;
use super::{Shared, Ws};
use crate::error::SupervisorError;
use crate::model::NodeState;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::task::JoinSet;

/// A workspace made (or not) for a run.
pub(super) struct WorkspaceDone {
    pub run: String,
    pub result: Result<PathBuf, String>,
}

pub(super) fn start_workspaces(shared: &Arc<Shared>, tasks: &mut JoinSet<WorkspaceDone>) {
    if shared.draining.load(Ordering::SeqCst) {
        return;
    }
    let mut inner = shared.inner();
    while let Some(run) = inner.ws_queue.pop_front() {
        let Some(r) = inner.runs.get_mut(&run) else {
            continue;
        };
        if !matches!(r.ws, Ws::Pending) {
            continue;
        }
        r.ws = Ws::Creating;
        let flow = r.flow.clone();
        let sh = shared.clone();
        tasks.spawn(async move {
            let run2 = run.clone();
            let result = tokio::task::spawn_blocking(move || make_workspace(&sh, &flow, &run2))
                .await
                .unwrap_or_else(|e| Err(format!("workspace task: {e}")));
            WorkspaceDone { run, result }
        });
    }
}

/// The run's git workspace; as root, handed to nobody (a jail is never root).
fn make_workspace(
    shared: &Shared,
    flow: &aiops_policy::flow::Flow,
    run: &str,
) -> Result<PathBuf, String> {
    let aiops_policy::flow::RepoSource::Path(repo) = flow.resolve_repo();
    let chain = |e: &dyn std::error::Error| crate::error::error_chain(e);
    // Only called for a run with no recorded workspace: anything already
    // at its path is a half-made one from a crash, so start again.
    let path = shared
        .workspaces
        .workspace_path(flow.name.as_str(), run)
        .map_err(|e| chain(&e))?;
    if std::fs::symlink_metadata(&path).is_ok() {
        shared
            .workspaces
            .remove(flow.name.as_str(), run)
            .map_err(|e| chain(&e))?;
    }
    let ws = shared
        .workspaces
        .create(
            flow.name.as_str(),
            run,
            &repo,
            flow.workspace.git_ref.as_str(),
        )
        .map_err(|e| chain(&e))?;
    if nix::unistd::geteuid().is_root() {
        if let Some(flow_dir) = ws.path.parent() {
            set_mode(flow_dir, 0o711).map_err(|e| chain(&e))?;
        }
        chown_tree(&ws.path, JAIL_NOBODY)
            .map_err(|e| format!("hand the workspace to uid {JAIL_NOBODY}: {e}"))?;
        // Its owner (the jail's uid) only: not readable by other users.
        set_mode(&ws.path, 0o700).map_err(|e| chain(&e))?;
    }
    if !nix::unistd::geteuid().is_root()
        && matches!(shared.cfg.jailer, super::JailerTarget::Socket(_))
    {
        // The jail is another user in the root's group (system mode; as
        // root the tree was handed to the jail's uid above instead).
        if let Some(flow_dir) = ws.path.parent() {
            set_mode(flow_dir, 0o2770).map_err(|e| chain(&e))?;
        }
        share_with_group(&ws.path)
            .map_err(|e| format!("share the workspace with the jail's group: {e}"))?;
    }
    // Recorded once it is complete: a restart reuses only a finished one.
    shared.write(super::persist::Write::Workspace {
        run: run.to_string(),
        path: ws.path.display().to_string(),
        commit: ws.commit.clone(),
    });
    Ok(ws.path)
}

pub(super) fn workspace_done(shared: &Shared, run_id: &str, result: Result<PathBuf, String>) {
    let mut out = Out::default();
    let mut inner = shared.inner();
    let Some(r) = inner.runs.get_mut(run_id) else {
        return;
    };
    match result {
        Ok(p) => r.ws = Ws::Ready(p),
        Err(reason) => {
            r.ws = Ws::Pending;
            let reason = format!("workspace_failed: {reason}");
            for id in r.order.clone() {
                if r.nodes.get(&id).is_some_and(|n| !n.state.is_final()) {
                    set_state(
                        shared,
                        run_id,
                        r,
                        &id,
                        NodeState::WorkspaceFailed,
                        Some(&reason),
                    );
                    let mut rec = node_audit(run_id, r, &id, "node_end");
                    rec.reason = Some(reason.clone());
                    out.audit.push(rec);
                }
            }
        }
    }
    advance(shared, &mut inner, run_id, &mut out);
    drop(inner);
    out.flush(shared);
}

/// System mode: the jail runs as another user (`aiops-jail`) in the
/// workspace root's group. Directories become 2770 (setgid keeps that
/// group on what the node creates), files gain group read/write (and
/// execute where the owner has it). Symlinks are left alone.
pub(super) fn share_with_group(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![root.to_path_buf()];
    chmod_if_needed(root, &std::fs::symlink_metadata(root)?, 0o2770)?;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = if meta.is_dir() {
                stack.push(p.clone());
                0o2770
            } else {
                let m = meta.mode() & 0o777;
                (m | 0o060 | ((m & 0o100) >> 3)) & 0o770
            };
            chmod_if_needed(&p, &meta, mode)?;
        }
    }
    Ok(())
}

/// chmod only when the mode differs. System mode's unit (RestrictSUIDSGID=)
/// refuses any chmod naming the setgid bit, even one that changes nothing;
/// directories made there already are 2770 (inherited setgid, UMask=0007,
/// workspace.rs's SHARED_DIR_MODE).
fn chmod_if_needed(p: &Path, meta: &std::fs::Metadata, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if meta.mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

pub(super) fn set_mode(p: &Path, mode: u32) -> Result<(), SupervisorError> {
    std::fs::symlink_metadata(p)
        .and_then(|meta| chmod_if_needed(p, &meta, mode))
        .map_err(|source| SupervisorError::StateDir {
            path: p.to_path_buf(),
            source,
        })
}

/// The uid a root-started engine hands workspaces to: jails never run as
/// root, and the jailer runs a node as its workspace's owner
/// (`aiops_proto::ids`, the one rule).
const JAIL_NOBODY: u32 = aiops_proto::ids::NOBODY;

/// `lchown -R` without following symlinks (a symlink in the checkout must
/// not hand out a file outside it).
fn chown_tree(root: &Path, uid: u32) -> std::io::Result<()> {
    use nix::fcntl::AtFlags;
    use nix::unistd::{fchownat, Gid, Uid};
    let own = |p: &Path| {
        fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(uid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
    };
    own(root)?;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            own(&p)?;
            if entry.file_type()?.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_shared_workspace_is_group_writable_and_setgid() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("src/deep")).unwrap();
        std::fs::write(ws.join("src/a.txt"), "a").unwrap();
        std::fs::write(ws.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(ws.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(ws.join("src/a.txt"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.join("link")).unwrap();
        share_with_group(&ws).unwrap();
        let mode = |p: &str| std::fs::metadata(ws.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode(""), 0o2770);
        assert_eq!(mode("src/deep"), 0o2770);
        assert_eq!(mode("src/a.txt"), 0o660);
        assert_eq!(mode("run.sh"), 0o770);
        // The symlink's target was not touched.
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().mode() & 0o777,
            0o644
        );
    }
}
