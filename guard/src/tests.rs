#![allow(clippy::unwrap_used)]
use super::*;
use aiops_proto::path::AbsPath;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
        ])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn plan(roots: &[&Path]) -> GuardPlan {
    GuardPlan {
        roots: roots.iter().map(|r| AbsPath::new(r).unwrap()).collect(),
        ..GuardPlan::DEFAULT
    }
}

fn repo(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    fs::write(dir.join("f"), "x").unwrap();
    git(dir, &["add", "f"]);
    git(dir, &["commit", "-qm", "c"]);
}

#[test]
fn finds_nested_repositories_submodules_and_worktrees() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    let lib = t.path().join("lib");
    repo(&ws);
    repo(&lib);
    repo(&ws.join("vendor/inner"));
    git(
        &ws,
        &["submodule", "add", "-q", lib.to_str().unwrap(), "sub"],
    );
    git(&ws, &["worktree", "add", "-q", "wt"]);
    let f = search(&plan(&[&ws]), None, true).unwrap();
    let g = ws.join(".git");
    for r in [
        g.clone(),
        ws.join("vendor/inner/.git"),
        g.join("modules/sub"),
        g.join("worktrees/wt"),
    ] {
        assert!(f.repos.contains(&r), "{r:?} in {:?}", f.repos);
    }
    for p in [
        g.join("hooks"),
        g.join("config"),
        ws.join("vendor/inner/.git/hooks"),
        g.join("modules/sub/hooks"),
        g.join("modules/sub/config"),
        g.join("worktrees/wt/commondir"),
        g.join("worktrees/wt/gitdir"),
        ws.join("sub/.git"),
        ws.join("wt/.git"),
    ] {
        assert!(
            f.read_only.contains(&p),
            "{p:?} read-only: {:?}",
            f.read_only
        );
    }
    assert!(f.git_files.contains(&ws.join("sub/.git")));
    assert!(f.absent.contains(&g.join("commondir")));
    // Objects, refs, HEAD and the index stay writable.
    assert!(!f
        .read_only
        .iter()
        .any(|p| p.ends_with("HEAD") || p.ends_with("index")));
    let pins = f.pins(std::slice::from_ref(&ws));
    for p in [
        ws.join("vendor"),
        ws.join("vendor/inner"),
        g.clone(),
        g.join("modules"),
        g.join("modules/sub"),
        ws.join("sub"),
    ] {
        assert!(pins.contains(&p), "{p:?} pinned: {pins:?}");
    }
    assert!(!pins.contains(&ws));
    // Shallow first: a pin is made before what lies below it.
    let m = f.mounts(std::slice::from_ref(&ws));
    let at = |p: &Path| m.iter().position(|(x, _)| x == p).unwrap();
    assert!(at(&g) < at(&g.join("hooks")));
    assert!(at(&ws.join("vendor")) < at(&ws.join("vendor/inner/.git")));
}

#[test]
fn hook_paths_and_includes_named_by_a_config_are_protected() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    repo(&ws);
    fs::create_dir_all(ws.join(".husky/_")).unwrap();
    fs::write(ws.join("shared.cfg"), "[core]\n\thooksPath = more-hooks\n").unwrap();
    git(&ws, &["config", "core.hooksPath", ".husky/_"]);
    git(&ws, &["config", "include.path", "../shared.cfg"]);
    git(&ws, &["config", "--add", "include.path", "/elsewhere/cfg"]);
    let f = search(&plan(&[&ws]), None, false).unwrap();
    assert!(
        f.read_only.contains(&ws.join(".husky/_")),
        "{:?}",
        f.read_only
    );
    assert!(f.read_only.contains(&ws.join("shared.cfg")));
    // Named by the included file, relative to the worktree; missing: watched.
    assert!(f.absent.contains(&ws.join("more-hooks")), "{:?}", f.absent);
    assert!(!f
        .absent
        .iter()
        .chain(&f.read_only)
        .any(|p| p.starts_with("/elsewhere")));
    assert!(f
        .pins(std::slice::from_ref(&ws))
        .contains(&ws.join(".husky")));
}

#[test]
fn only_links_that_leave_the_writable_roots_are_kept_read_only() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    fs::create_dir_all(ws.join("d")).unwrap();
    fs::write(t.path().join("outside"), "o").unwrap();
    fs::hard_link(t.path().join("outside"), ws.join("d/out-link")).unwrap();
    fs::write(ws.join("a"), "a").unwrap();
    fs::hard_link(ws.join("a"), ws.join("d/a-link")).unwrap();
    let f = search(&plan(&[&ws]), None, true).unwrap();
    assert_eq!(f.linked, BTreeSet::from([ws.join("d/out-link")]));
    assert!(f.read_only.contains(&ws.join("d/out-link")));
    assert!(f.pins(std::slice::from_ref(&ws)).contains(&ws.join("d")));
    // Without `links` (the supervisor's report) nothing is stat'ed.
    assert!(search(&plan(&[&ws]), None, false)
        .unwrap()
        .linked
        .is_empty());
    // Both roots writable: the link stays inside them.
    let out = t.path().join("o2");
    fs::create_dir_all(&out).unwrap();
    fs::rename(t.path().join("outside"), out.join("outside")).unwrap();
    let f = search(&plan(&[&ws, &out]), None, true).unwrap();
    assert!(f.linked.is_empty(), "{:?}", f.linked);
}

#[test]
fn a_local_clone_shares_objects_and_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    repo(&src);
    git(t.path(), &["clone", "-q", src.to_str().unwrap(), "ws"]);
    let ws = t.path().join("ws");
    let f = search(&plan(&[&ws]), None, true).unwrap();
    assert!(
        f.linked
            .iter()
            .any(|p| p.starts_with(ws.join(".git/objects"))),
        "{:?}",
        f.linked
    );
    git(
        t.path(),
        &[
            "clone",
            "-q",
            "--no-hardlinks",
            src.to_str().unwrap(),
            "ws2",
        ],
    );
    let f = search(&plan(&[&t.path().join("ws2")]), None, true).unwrap();
    assert!(f.linked.is_empty(), "{:?}", f.linked);
}

#[test]
fn every_bound_refuses_naming_itself() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    fs::create_dir_all(ws.join("a/b/c/d")).unwrap();
    let p = GuardPlan {
        max_depth: 3,
        ..plan(&[&ws])
    };
    let e = search(&p, None, true).unwrap_err().to_string();
    assert!(
        e.contains("more than 3 directory levels") && e.contains("a/b/c/d"),
        "{e}"
    );
    let p = GuardPlan {
        max_dirs: 4,
        ..plan(&[&ws])
    };
    let e = search(&p, None, true).unwrap_err().to_string();
    assert!(e.contains("more than 4 directories"), "{e}");
    repo(&ws.join("r1"));
    repo(&ws.join("r2"));
    let p = GuardPlan {
        max_repos: 1,
        ..plan(&[&ws])
    };
    let e = search(&p, None, true).unwrap_err().to_string();
    assert!(e.contains("more than 1 git directories"), "{e}");
    fs::write(t.path().join("o"), "o").unwrap();
    fs::hard_link(t.path().join("o"), ws.join("l1")).unwrap();
    fs::hard_link(t.path().join("o"), ws.join("l2")).unwrap();
    let p = GuardPlan {
        max_linked: 1,
        ..plan(&[&ws])
    };
    let e = search(&p, None, true).unwrap_err().to_string();
    assert!(
        e.contains("2 files in the writable roots are hard-linked") && e.contains("--no-hardlinks"),
        "{e}"
    );
    // At the bounds, it passes.
    let p = GuardPlan {
        max_linked: 2,
        max_repos: 2,
        ..plan(&[&ws])
    };
    search(&p, None, true).unwrap();
}

#[test]
fn bare_repositories_count_and_a_git_symlink_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    fs::create_dir_all(&ws).unwrap();
    git(&ws, &["init", "-q", "--bare", "x.git"]);
    let f = search(&plan(&[&ws]), None, false).unwrap();
    assert!(f.repos.contains(&ws.join("x.git")));
    assert!(f.read_only.contains(&ws.join("x.git/hooks")));
    std::os::unix::fs::symlink("x.git", ws.join(".git")).unwrap();
    let e = search(&plan(&[&ws]), None, false).unwrap_err().to_string();
    assert!(e.contains("a .git symlink"), "{e}");
    fs::remove_file(ws.join(".git")).unwrap();
    fs::remove_dir_all(ws.join("x.git/hooks")).unwrap();
    std::os::unix::fs::symlink("/tmp", ws.join("x.git/hooks")).unwrap();
    let e = search(&plan(&[&ws]), None, false).unwrap_err().to_string();
    assert!(
        e.contains("x.git/hooks: a symlink where a protected path"),
        "{e}"
    );
}

#[test]
fn normalize_is_lexical() {
    assert_eq!(
        normalize(Path::new("/a/b/../c/./d")),
        PathBuf::from("/a/c/d")
    );
    assert_eq!(normalize(Path::new("/a/../../b")), PathBuf::from("/b"));
}

#[test]
fn a_linked_worktrees_hook_path_is_relative_to_that_worktree() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    repo(&ws);
    git(&ws, &["worktree", "add", "-q", "wt"]);
    git(&ws, &["config", "extensions.worktreeConfig", "true"]);
    fs::create_dir_all(ws.join("wt/myhooks")).unwrap();
    git(
        &ws.join("wt"),
        &["config", "--worktree", "core.hooksPath", "myhooks"],
    );
    let f = search(&plan(&[&ws]), None, false).unwrap();
    assert!(f
        .read_only
        .contains(&ws.join(".git/worktrees/wt/config.worktree")));
    assert!(
        f.read_only.contains(&ws.join("wt/myhooks")),
        "{:?}",
        f.read_only
    );
}

/// A directory this uid cannot list but could make listable (its own, or
/// writable by a group or others) is refused; one the jail cannot write
/// into either is skipped. Root reads everything, so only the listing.
#[test]
fn an_unreadable_directory_is_refused_when_the_jail_could_write_there() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    repo(&ws.join("locked/inner"));
    fs::set_permissions(ws.join("locked"), fs::Permissions::from_mode(0o300)).unwrap();
    let r = search(&plan(&[&ws]), None, false);
    fs::set_permissions(ws.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    if nix::unistd::geteuid().is_root() {
        assert!(r.unwrap().repos.contains(&ws.join("locked/inner/.git")));
    } else {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("cannot be searched"), "{e}");
    }
}
