//! Planting code the host later runs through git anywhere in the writable
//! tree, not only at the workspace root's `.git`: nested repositories,
//! submodules' and linked worktrees' git directories, `.git` files, hook
//! directories and include files a config names, bare repositories; and
//! writing through hard links that existed before the jail. Each attack is
//! judged on the host (the hook is not there, the file is unchanged), next
//! to an unconfined control that shows the same script plants it.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// As root the repos belong to nobody; let git accept them (command-line scope).
const SAFE: &str = "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new(GIT)
        .args([
            "-c",
            "safe.directory=*",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "user.name=t",
        ])
        .args([
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "host git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo_with_commit(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("build.sh"), "echo build\n").unwrap();
    git(dir, &["add", "build.sh"]);
    git(dir, &["commit", "-qm", "c"]);
}

/// The workspace as a monorepo: a nested repository, a submodule, a linked
/// worktree, husky's `core.hooksPath`, an in-tree include file and a bare
/// repository. `src` is the submodule's source, outside the workspace.
fn host_tree(ws: &Path, src: &Path, owner: Option<u32>) {
    repo_with_commit(src);
    repo_with_commit(ws);
    repo_with_commit(&ws.join("vendor/inner"));
    git(
        ws,
        &["submodule", "add", "-q", src.to_str().unwrap(), "sub"],
    );
    git(ws, &["worktree", "add", "-q", "wt"]);
    std::fs::create_dir_all(ws.join(".husky/_")).unwrap();
    git(ws, &["config", "core.hooksPath", ".husky/_"]);
    std::fs::write(ws.join("team.gitconfig"), "[user]\n\tname = team\n").unwrap();
    git(ws, &["config", "include.path", "../team.gitconfig"]);
    git(ws, &["init", "-q", "--bare", "tools.git"]);
    chown_tree(ws, owner);
    chown_tree(src, owner);
}

/// (name, script run in the workspace, planted? judged on the host)
type Plant = (&'static str, &'static str, fn(&Path) -> bool);

const PLANTS: &[Plant] = &[
    (
        "nested repository hook",
        "printf '#!/bin/sh\\n' > vendor/inner/.git/hooks/pre-commit",
        |ws| ws.join("vendor/inner/.git/hooks/pre-commit").exists(),
    ),
    (
        "nested repository fsmonitor",
        "git -C vendor/inner config core.fsmonitor 'touch /tmp/pwned'",
        |ws| read(&ws.join("vendor/inner/.git/config")).contains("fsmonitor"),
    ),
    (
        "nested .git swapped",
        "mv vendor/inner/.git vendor/inner/old && git init -q vendor/inner && printf x > vendor/inner/.git/hooks/post-checkout",
        |ws| ws.join("vendor/inner/old").exists() || ws.join("vendor/inner/.git/hooks/post-checkout").exists(),
    ),
    (
        "directory above a nested repository swapped",
        "mv vendor vendor.old && mkdir -p vendor/inner && git init -q vendor/inner",
        |ws| ws.join("vendor.old").exists(),
    ),
    (
        "submodule hook",
        "printf '#!/bin/sh\\n' > .git/modules/sub/hooks/post-checkout",
        |ws| ws.join(".git/modules/sub/hooks/post-checkout").exists(),
    ),
    (
        "submodule config",
        "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> .git/modules/sub/config",
        |ws| read(&ws.join(".git/modules/sub/config")).contains("fsmonitor"),
    ),
    (
        "submodule .git file repointed",
        "printf 'gitdir: ../evil\\n' > sub/.git",
        |ws| read(&ws.join("sub/.git")).contains("evil"),
    ),
    (
        "linked worktree commondir",
        "printf '../../../evil\\n' > .git/worktrees/wt/commondir",
        |ws| read(&ws.join(".git/worktrees/wt/commondir")).contains("evil"),
    ),
    (
        "linked worktree .git file",
        "printf 'gitdir: /tmp/evil\\n' > wt/.git",
        |ws| read(&ws.join("wt/.git")).contains("evil"),
    ),
    (
        "husky hook directory (core.hooksPath)",
        "printf '#!/bin/sh\\n' > .husky/_/pre-commit",
        |ws| ws.join(".husky/_/pre-commit").exists(),
    ),
    (
        "husky directory swapped",
        "mv .husky .husky.old && mkdir -p .husky/_ && printf x > .husky/_/pre-commit",
        |ws| ws.join(".husky.old").exists(),
    ),
    (
        "in-tree include file",
        "printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' >> team.gitconfig",
        |ws| read(&ws.join("team.gitconfig")).contains("fsmonitor"),
    ),
    (
        "bare repository hook",
        "printf '#!/bin/sh\\n' > tools.git/hooks/post-update",
        |ws| ws.join("tools.git/hooks/post-update").exists(),
    ),
];

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Stopped by: aiops-guard's search (every git directory's admin files,
/// the paths configs name, `.git` files: read-only; the directories above
/// them pinned).
#[test]
fn git_plants_anywhere_in_the_tree() {
    let test = "git_plants_anywhere_in_the_tree";
    if !have_program(test, GIT) {
        return;
    }
    each_mode(&all_modes(), |m| {
        for (name, script, planted) in PLANTS {
            let j = m.jail();
            let ws = j.ws().to_path_buf();
            let src = scratch_dir(j.ws_owner());
            host_tree(&ws, src.path(), j.ws_owner());
            let o = j
                .env("HOME", "/tmp")
                .run_sh(&format!("export HOME=/tmp {SAFE}; {script}; echo rc=$?"));
            o.assert_ran();
            if m.is_control() {
                assert!(
                    planted(&ws),
                    "control could not plant {name}\n{}",
                    o.describe()
                );
            } else {
                assert!(
                    !planted(&ws),
                    "planted {name} through the jail\n{}",
                    o.describe()
                );
                assert!(
                    !o.stdout.contains("rc=0"),
                    "{name}: reported success\n{}",
                    o.describe()
                );
                let r = o.assert_report();
                let changed = r.get("protected_changed").and_then(|v| v.as_array());
                assert!(changed.is_none_or(|a| a.is_empty()), "{name}: {r}");
            }
        }
    });
}

/// Liveness of the same tree: git works in the repository, its submodule
/// and its linked worktree (commits, status), and nothing is reported.
#[test]
fn git_still_works_in_a_guarded_monorepo() {
    let test = "git_still_works_in_a_guarded_monorepo";
    if !have_program(test, GIT) {
        return;
    }
    each_mode(&attacks(), |m| {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        let src = scratch_dir(j.ws_owner());
        host_tree(&ws, src.path(), j.ws_owner());
        let c = "-c user.name=t -c user.email=t@example.invalid";
        let o = j.env("HOME", "/tmp").run_sh(&format!(
            "export HOME=/tmp {SAFE}; set -e; echo 2 >> build.sh; git {c} commit -qam two; \
             cd sub && echo s >> build.sh && git {c} commit -qam sub && cd ..; \
             cd wt && echo w >> build.sh && git {c} commit -qam wt && cd ..; \
             cd vendor/inner && git {c} commit -q --allow-empty -m inner && cd ../..; \
             git status --short; git log --oneline | wc -l"
        ));
        o.assert_ran().assert_code(0);
        assert!(o.stdout.trim_end().ends_with('2'), "{}", o.describe());
        assert!(o.protected_created().is_empty(), "{}", o.describe());
        let layers = o.assert_report()["exit"]["layers"].to_string();
        assert!(layers.contains("guard: 5 git dir(s)"), "{layers}");
    });
}

/// Reported: a repository, a `.git` file or a hook created anywhere in the
/// tree; printed even with `--report none`.
#[test]
fn new_repositories_and_git_files_are_reported() {
    let test = "new_repositories_and_git_files_are_reported";
    if !have_program(test, GIT) {
        return;
    }
    each_mode(&attacks(), |m| {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        std::fs::create_dir_all(ws.join("deep/er")).unwrap();
        repo_with_commit(&ws.join("old"));
        std::fs::remove_dir_all(ws.join("old/.git/hooks")).unwrap();
        chown_tree(&ws, j.ws_owner());
        let o = j.env("HOME", "/tmp").run_sh(&format!(
            "export HOME=/tmp {SAFE}; git init -q deep/er/new && \
             printf 'gitdir: /tmp/x\\n' > deep/.git && mkdir old/.git/hooks && \
             printf x > old/.git/hooks/pre-commit"
        ));
        o.assert_ran().assert_code(0);
        let created = o.protected_created();
        for p in ["deep/er/new/.git", "deep/.git", "old/.git/hooks"] {
            let want = ws.join(p).display().to_string();
            assert!(
                created.contains(&want),
                "{want} not in {created:?}\n{}",
                o.describe()
            );
        }
        // A new repository is named once, not with each of its files.
        assert!(
            !created.iter().any(|c| c.ends_with("new/.git/hooks")),
            "{created:?}"
        );
        // --report none still says it.
        let mut cmd = Command::new(aiopsctl());
        if m.nobody() {
            cmd = Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(aiopsctl());
        }
        let out = cmd
            .args(["exec", "--profile", "restrictive", "--workspace"])
            .arg(&ws)
            .args(["--", "sh", "-c", "git init -q again"])
            .current_dir(&ws)
            .env("HOME", "/tmp")
            .env("AIOPS_PROFILE_PATH", profiles_dir())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("created protected paths the host may run") && err.contains("again/.git"),
            "{err}"
        );
    });
}

/// A workspace whose `.git` is a file (a linked worktree or a submodule
/// checkout) runs, and the file stays read-only.
#[test]
fn a_workspace_whose_git_is_a_file_runs() {
    let test = "a_workspace_whose_git_is_a_file_runs";
    if !have_program(test, GIT) {
        return;
    }
    each_mode(&attacks(), |m| {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        let main = scratch_dir(j.ws_owner());
        repo_with_commit(&main.path().join("m"));
        git(
            &main.path().join("m"),
            &["worktree", "add", "-q", "--force", ws.to_str().unwrap()],
        );
        chown_tree(&ws, j.ws_owner());
        chown_tree(main.path(), j.ws_owner());
        let before = read(&ws.join(".git"));
        assert!(before.starts_with("gitdir: "), "{before}");
        let o = j.run_sh("echo ran; printf 'gitdir: /tmp/evil\\n' > .git; echo rc=$?");
        o.assert_ran().assert_code(0);
        assert!(
            o.stdout.contains("ran") && !o.stdout.contains("rc=0"),
            "{}",
            o.describe()
        );
        assert_eq!(read(&ws.join(".git")), before);
    });
}

/// Writes through hard links that existed before the jail: a file linked
/// to one outside the writable roots, and a local `git clone` that shares
/// its objects with the source repository. Stopped by: aiops-guard (every
/// path to an outside-linked inode is read-only). Judged on the host: the
/// outside file and the source repository's objects are unchanged.
#[test]
fn writes_through_preexisting_hard_links() {
    let test = "writes_through_preexisting_hard_links";
    if !have_program(test, GIT) {
        return;
    }
    each_mode(&all_modes(), |m| {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        let outside = scratch_dir(j.ws_owner());
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "original\n").unwrap();
        std::fs::create_dir(ws.join("cache")).unwrap();
        std::fs::hard_link(&victim, ws.join("cache/linked")).unwrap();
        // A local clone: git hard-links the source's object files.
        let src = outside.path().join("src");
        repo_with_commit(&src);
        git(
            outside.path(),
            &[
                "clone",
                "-q",
                src.to_str().unwrap(),
                ws.join("clone").to_str().unwrap(),
            ],
        );
        let objects = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let mut v = vec![];
            let mut stack = vec![root.join(".git/objects")];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        v.push((p.clone(), std::fs::read(&p).unwrap()));
                    }
                }
            }
            v.sort();
            v
        };
        let src_before = objects(&src);
        chown_tree(&ws, j.ws_owner());
        chown_tree(outside.path(), j.ws_owner());
        let o = j.run_sh(
            "echo pwned > cache/linked; echo a=$?; \
             for f in $(find clone/.git/objects -type f); do chmod u+w $f; echo pwned >> $f; done; echo b=$?",
        );
        o.assert_ran();
        if m.is_control() {
            assert_eq!(read(&victim), "pwned\n", "control\n{}", o.describe());
            assert_ne!(objects(&src), src_before, "control\n{}", o.describe());
        } else {
            assert_eq!(read(&victim), "original\n", "{}", o.describe());
            assert_eq!(
                objects(&src),
                src_before,
                "the source repository changed\n{}",
                o.describe()
            );
            assert!(
                o.stdout.contains("a=1") || o.stdout.contains("a=2"),
                "{}",
                o.describe()
            );
            let layers = o.assert_report()["exit"]["layers"].to_string();
            assert!(layers.contains("outside-linked file(s)"), "{layers}");
        }
    });
}

/// Past a bound the node is refused, naming the bound and the fix; it never
/// runs with the rest of the tree unsearched.
#[test]
fn a_search_past_its_bound_refuses_the_node() {
    each_mode(&attacks(), |m| {
        let dir = open_dir();
        let p = write_profile(
            dir.path(),
            "tight",
            "schema = 1\nname = \"tight\"\ndescription = \"t\"\nextends = \"restrictive\"\n\
             [protected.search]\ndirs = 5\nlinked_files = 0\n",
        );
        let wsd = Workspace::owned_by(m.jail().ws_owner());
        let j = m.jail_with(p.to_str().unwrap()).workspace(wsd.clone());
        let ws = j.ws().to_path_buf();
        std::fs::create_dir_all(ws.join("a/b/c/d/e/f")).unwrap();
        chown_tree(&ws, j.ws_owner());
        let o = j.run_sh("touch ran");
        assert!(!ws.join("ran").exists(), "the node ran\n{}", o.describe());
        assert_ne!(o.code, 0, "{}", o.describe());
        let all = o.describe();
        assert!(
            all.contains("more than 5 directories") && all.contains("[protected.search] dirs"),
            "{all}"
        );
        // Within the bound it runs.
        std::fs::remove_dir_all(ws.join("a/b/c")).unwrap();
        let o = m
            .jail_with(p.to_str().unwrap())
            .workspace(wsd)
            .run_sh("touch ran");
        o.assert_ran().assert_code(0);
        assert!(ws.join("ran").exists());
    });
}
