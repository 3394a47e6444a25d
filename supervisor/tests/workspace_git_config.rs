//! Without cleared config search paths, an unreadable global git config must
//! stop `WorkspaceRoot::open` with a clear error instead of failing every
//! workspace later. A child process of this test gets a HOME that cannot be
//! searched; its own search paths are left as libgit2 found them.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]
use aiops_supervisor::workspace::{WorkspaceError, WorkspaceRoot};
use std::process::Command;

const CHILD: &str = "AIOPS_WS_GIT_CONFIG_CHILD";

#[test]
fn an_unloadable_git_config_is_refused_at_open() {
    if let Some(root) = std::env::var_os(CHILD) {
        let err = WorkspaceRoot::open(root.as_ref()).unwrap_err();
        assert!(matches!(err, WorkspaceError::GitConfig { .. }), "{err:?}");
        assert!(err.to_string().contains("search paths"), "{err}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A HOME that is a symlink loop: stat of $HOME/.gitconfig fails with
    // ELOOP for every uid, root included (ENOENT and ENOTDIR count as absent).
    let home = tmp.path().join("home");
    std::os::unix::fs::symlink(&home, &home).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_unloadable_git_config_is_refused_at_open",
            "--nocapture",
        ])
        .env(CHILD, tmp.path().join("root"))
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}
