//! Planting code the host later runs through git: hooks, core.hooksPath,
//! core.fsmonitor, and swapping `.git` away. The repo is made on the host
//! first; its protected paths are bound read-only inside the workspace.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::path::Path;
use std::process::Command;

/// As root the repo belongs to nobody; let git accept it (command-line scope).
const SAFE: &str = "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'";

/// `git init` a repo in `ws` on the host and hand it to the workspace owner.
fn host_repo(ws: &Path, owner: Option<u32>) {
    let st = Command::new(GIT)
        .args(["init", "-q"])
        .current_dir(ws)
        .status()
        .unwrap();
    assert!(st.success(), "host git init failed");
    chown_tree(ws, owner);
}

fn snapshot(ws: &Path) -> (Vec<u8>, Vec<String>) {
    let config = std::fs::read(ws.join(".git/config")).unwrap();
    let mut hooks: Vec<String> = std::fs::read_dir(ws.join(".git/hooks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    hooks.sort();
    (config, hooks)
}

/// Run `script` against a host-made repo; the control must change the repo,
/// the jail must leave `.git/config` and `.git/hooks` byte-for-byte alone.
fn git_plant(test: &str, script: &str, changed: impl Fn(&Path) -> bool + Sync) {
    if !have_program(test, GIT) {
        return;
    }
    each_mode(&all_modes(), |m| {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        host_repo(&ws, j.ws_owner());
        let before = snapshot(&ws);
        let o = j
            .env("HOME", "/tmp")
            .run_sh(&format!("export HOME=/tmp {SAFE}; {script}; echo rc=$?"));
        o.assert_ran();
        if m.is_control() {
            assert!(changed(&ws), "control could not plant\n{}", o.describe());
        } else {
            assert!(!changed(&ws), "planted through the jail\n{}", o.describe());
            assert_eq!(
                snapshot(&ws),
                before,
                "protected git files changed\n{}",
                o.describe()
            );
            assert!(
                !o.stdout.contains("rc=0"),
                "the plant reported success\n{}",
                o.describe()
            );
            assert!(o
                .assert_report()
                .get("protected_changed")
                .is_none_or(|v| v.as_array().is_some_and(|a| a.is_empty())));
        }
    });
}

/// Stopped by: protected paths (`.git/hooks` bound read-only).
#[test]
fn git_pre_commit_hook_plant() {
    git_plant(
        "git_pre_commit_hook_plant",
        "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
        |ws| ws.join(".git/hooks/pre-commit").exists(),
    );
}

/// Stopped by: protected paths (`.git/config` bound read-only; `.git` pinned).
#[test]
fn git_core_hooks_path() {
    git_plant(
        "git_core_hooks_path",
        &format!("{GIT} config core.hooksPath \"$PWD/evil-hooks\""),
        |ws| {
            std::fs::read_to_string(ws.join(".git/config"))
                .unwrap()
                .contains("hooksPath")
        },
    );
}

/// Stopped by: protected paths (`.git/config` bound read-only).
#[test]
fn git_core_fsmonitor() {
    git_plant(
        "git_core_fsmonitor",
        &format!("{GIT} config core.fsmonitor 'touch /tmp/pwned'"),
        |ws| {
            std::fs::read_to_string(ws.join(".git/config"))
                .unwrap()
                .contains("fsmonitor")
        },
    );
}

/// Stopped by: pinned ancestors (`.git` cannot be renamed away and rebuilt).
#[test]
fn git_dir_swap() {
    git_plant(
        "git_dir_swap",
        "mv .git .git-old && mkdir -p .git/hooks && printf '#!/bin/sh\\n' > .git/hooks/pre-commit",
        |ws| ws.join(".git-old").exists() || ws.join(".git/hooks/pre-commit").exists(),
    );
}

/// Liveness: in an EMPTY workspace, `git init && git commit` works in the
/// jail, and the report flags the protected paths the node created.
#[test]
fn git_init_and_commit_in_empty_workspace() {
    if !have_program("git_init_and_commit_in_empty_workspace", GIT) {
        return;
    }
    each_mode(&attacks(), |m| {
        let o = m.jail().run_sh(&format!(
            "export HOME=/tmp; {GIT} init -q && echo hello > a.txt && {GIT} add a.txt && \
             {GIT} -c user.name=t -c user.email=t@example.invalid commit -q -m init && {GIT} log --oneline | wc -l"
        ));
        o.assert_ran().assert_code(0);
        assert_eq!(o.stdout.trim(), "1", "{}", o.describe());
        o.assert_report();
        let created = o.protected_created();
        for p in [".git/hooks", ".git/config"] {
            assert!(
                created.iter().any(|c| c.ends_with(p)),
                "{p} not in protected_created {created:?}\n{}",
                o.describe()
            );
        }
    });
}
