//! Workspaces against real git repositories built in a tempdir. Runs as any
//! uid: the fixtures live under $TMPDIR and belong to whoever runs the test.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]
use aiops_supervisor::workspace::{gc, WorkspaceError, WorkspaceRoot};
use aiops_testkit::{is_root, skip_needs_root};
use git2::{Oid, Repository, Signature};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// (path, content, is_symlink) for each file of a commit.
type Files<'a> = &'a [(&'a [u8], &'a [u8], bool)];

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    root: WorkspaceRoot,
    outside: PathBuf,
    first: Oid,
    second: Oid,
    feature: Oid,
}

/// What the supervisor's main does before its first git2 call: ignore the
/// system, XDG and global config, so an unreadable `$HOME/.gitconfig` (HOME=/root
/// under setpriv) cannot fail every operation and checkouts do not depend on
/// whoever runs us.
fn clear_git_config_search_paths() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use git2::ConfigLevel::{Global, ProgramData, System, XDG};
        for level in [System, XDG, Global, ProgramData] {
            // SAFETY: libgit2 options are process-global and unsynchronised;
            // every test calls this before its first git2 call, and the Once
            // holds the others back until it has returned.
            unsafe { git2::opts::set_search_path(level, "") }.unwrap();
        }
    });
}

fn sig() -> Signature<'static> {
    Signature::new("t", "t@example.invalid", &git2::Time::new(1_700_000_000, 0)).unwrap()
}

/// Commit `files` (path, content, is_symlink) as the whole tree on `refname`.
fn commit(repo: &Repository, refname: &str, parents: &[Oid], files: Files) -> Oid {
    let mut index = git2::Index::new().unwrap();
    for (path, content, link) in files {
        let blob = repo.blob(content).unwrap();
        let mut entry = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: if *link { 0o120000 } else { 0o100644 },
            uid: 0,
            gid: 0,
            file_size: 0,
            id: blob,
            flags: 0,
            flags_extended: 0,
            path: path.to_vec(),
        };
        entry.flags = u16::try_from(entry.path.len().min(0xfff)).unwrap();
        index.add(&entry).unwrap();
    }
    let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
    let parents: Vec<_> = parents
        .iter()
        .map(|p| repo.find_commit(*p).unwrap())
        .collect();
    let parents: Vec<_> = parents.iter().collect();
    repo.commit(Some(refname), &sig(), &sig(), "c", &tree, &parents)
        .unwrap()
}

fn fixture() -> Fixture {
    clear_git_config_search_paths();
    let tmp = tempfile::Builder::new()
        .prefix("aiops-ws-")
        .tempdir()
        .unwrap();
    let repo_path = tmp.path().join("src");
    let repo = Repository::init(&repo_path).unwrap();
    let first = commit(
        &repo,
        "refs/heads/main",
        &[],
        &[(b"a.txt", b"one\n", false)],
    );
    let second = commit(
        &repo,
        "refs/heads/main",
        &[first],
        &[
            (b"a.txt", b"two\n", false),
            (b"dir/b.txt", b"bee\n", false),
            (b"dir/up", b"../a.txt", true),
        ],
    );
    let feature = commit(
        &repo,
        "refs/heads/feature",
        &[first],
        &[(b"a.txt", b"one\n", false), (b"f.txt", b"feature\n", false)],
    );
    let obj = repo.find_object(first, None).unwrap();
    repo.tag("v1", &obj, &sig(), "release", false).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let root = WorkspaceRoot::open(&tmp.path().join("ws")).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    Fixture {
        _tmp: tmp,
        repo: repo_path,
        root,
        outside,
        first,
        second,
        feature,
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).unwrap().next().is_none()
}

#[test]
fn creates_at_branch_tag_sha_short_sha_and_head() {
    let f = fixture();
    let short = &f.second.to_string()[..7];
    let cases = [
        ("main", f.second),
        ("v1", f.first),
        ("feature", f.feature),
        ("HEAD", f.second),
        (short, f.second),
        (&*f.first.to_string(), f.first),
    ];
    for (i, (git_ref, want)) in cases.iter().enumerate() {
        let run = format!("r{i}");
        let ws = f.root.create("flow", &run, &f.repo, git_ref).unwrap();
        assert_eq!(ws.path, f.root.path().join("flow").join(&run));
        assert_eq!(
            (ws.commit.as_str(), ws.git_ref.as_str()),
            (&*want.to_string(), *git_ref)
        );
        let got = Repository::open(&ws.path).unwrap();
        assert!(got.head_detached().unwrap(), "{git_ref}");
        assert_eq!(got.head().unwrap().target(), Some(*want));
        assert!(
            got.remotes().unwrap().is_empty(),
            "no origin pointing outside"
        );
        assert!(ws.path.join(".git").is_dir(), "self-contained .git");
        assert!(
            got.statuses(None).unwrap().is_empty(),
            "clean checkout at {git_ref}"
        );
        let mut walk = got.revwalk().unwrap();
        walk.push_head().unwrap();
        let history = walk.count();
        assert_eq!(
            history,
            if *want == f.first { 1 } else { 2 },
            "history copied"
        );
    }
    let main = f.root.path().join("flow/r0");
    assert_eq!(read(&main.join("a.txt")), "two\n");
    assert_eq!(read(&main.join("dir/b.txt")), "bee\n");
    assert_eq!(
        fs::read_link(main.join("dir/up")).unwrap(),
        Path::new("../a.txt")
    );
    assert_eq!(read(&main.join("dir/up")), "two\n");
    assert_eq!(read(&f.root.path().join("flow/r1/a.txt")), "one\n");
    assert_eq!(read(&f.root.path().join("flow/r2/f.txt")), "feature\n");
    assert!(!f.root.path().join("flow/r1/dir").exists());
    let hooks: Vec<_> = fs::read_dir(main.join(".git/hooks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(hooks, ["README.sample"], "only libgit2's built-in template");
    let mode = fs::metadata(&main).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode & 0o7022, 0, "workspace dir mode {mode:o}");
    let mode = fs::metadata(f.root.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "root mode");
}

#[test]
fn bad_ref_missing_repo_and_non_repo_are_errors_that_leave_nothing() {
    let f = fixture();
    let err = f
        .root
        .create("flow", "r", &f.repo, "no-such-ref")
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::ResolveRef { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-ref") && msg.contains(&*f.repo.to_string_lossy()),
        "{msg}"
    );
    // A tree-ish that is not a commit.
    let err = f
        .root
        .create("flow", "r", &f.repo, "main^{tree}")
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::ResolveRef { .. }), "{err:?}");

    let missing = f.repo.with_file_name("missing");
    let err = f.root.create("flow", "r", &missing, "main").unwrap_err();
    assert!(matches!(err, WorkspaceError::OpenRepo { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
    let err = f.root.create("flow", "r", &f.outside, "main").unwrap_err();
    assert!(matches!(err, WorkspaceError::OpenRepo { .. }), "{err:?}");
    // A directory inside a repository is not the repository.
    fs::create_dir(f.repo.join("sub")).unwrap();
    let err = f
        .root
        .create("flow", "r", &f.repo.join("sub"), "main")
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::OpenRepo { .. }), "{err:?}");
    assert!(is_empty_dir(f.root.path()), "nothing left behind");
}

#[test]
fn names_that_are_not_plain_components_are_refused() {
    let f = fixture();
    for bad in ["..", ".", "/", "a/b", "../x", "", "a b", "x\0"] {
        for (flow, run) in [(bad, "r"), ("flow", bad)] {
            let err = f.root.create(flow, run, &f.repo, "main").unwrap_err();
            assert!(
                matches!(err, WorkspaceError::BadName { .. }),
                "{flow:?}/{run:?}: {err:?}"
            );
            let err = f.root.remove(flow, run).unwrap_err();
            assert!(matches!(err, WorkspaceError::BadName { .. }), "{err:?}");
        }
    }
    assert!(is_empty_dir(f.root.path()));
}

#[test]
fn an_existing_target_is_refused_and_kept() {
    let f = fixture();
    let ws = f.root.create("flow", "r", &f.repo, "main").unwrap();
    fs::write(ws.path.join("work.txt"), "mine").unwrap();
    let err = f.root.create("flow", "r", &f.repo, "v1").unwrap_err();
    assert!(matches!(err, WorkspaceError::Exists { .. }), "{err:?}");
    assert_eq!(read(&ws.path.join("work.txt")), "mine");
    assert_eq!(read(&ws.path.join("a.txt")), "two\n");
}

#[test]
fn escaping_symlinks_are_refused_naming_the_path_and_nothing_is_left() {
    let f = fixture();
    let repo = Repository::open(&f.repo).unwrap();
    let cases: [Files; 4] = [
        &[(b"ok", b"x", false), (b"deep/evil", b"../../etc", true)],
        &[(b"abs", b"/etc/passwd", true)],
        // Lexically inside, but p is the top, so p/p/.. leaves it.
        &[(b"p", b".", true), (b"q", b"p/p/..", true)],
        &[(b"abs", b"/tmp", true), (b"via", b"abs/x", true)],
    ];
    for (i, files) in cases.iter().enumerate() {
        let branch = format!("refs/heads/evil{i}");
        commit(&repo, &branch, &[f.second], files);
        let err = f.root.create("flow", "r", &f.repo, &branch).unwrap_err();
        let WorkspaceError::EscapingSymlink { path, .. } = &err else {
            panic!("{branch}: {err:?}");
        };
        assert!(
            files
                .iter()
                .any(|(p, _, link)| *link && p == &path.as_bytes()),
            "{err}"
        );
        assert!(err.to_string().contains(path.as_str()), "{err}");
        assert!(is_empty_dir(f.root.path()), "{branch} left something");
    }
}

#[test]
fn a_failed_checkout_removes_the_partial_workspace() {
    let f = fixture();
    let repo = Repository::open(&f.repo).unwrap();
    // A tree entry named .git would overwrite the workspace's own repository;
    // libgit2 refuses it at checkout, after init and the object copy.
    let blob = repo.blob(b"[core]\n\thooksPath = /tmp\n").unwrap();
    let mut raw = b"100644 .git\0".to_vec();
    raw.extend_from_slice(blob.as_bytes());
    let tree = repo
        .odb()
        .unwrap()
        .write(git2::ObjectType::Tree, &raw)
        .unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let parent = repo.find_commit(f.second).unwrap();
    repo.commit(
        Some("refs/heads/dotgit"),
        &sig(),
        &sig(),
        "c",
        &tree,
        &[&parent],
    )
    .unwrap();
    let err = f.root.create("flow", "r", &f.repo, "dotgit").unwrap_err();
    assert!(matches!(err, WorkspaceError::Checkout { .. }), "{err:?}");
    assert!(is_empty_dir(f.root.path()), "partial workspace left behind");
    // An existing flow directory is not removed with the failed run.
    f.root.create("flow", "ok", &f.repo, "main").unwrap();
    f.root.create("flow", "r", &f.repo, "dotgit").unwrap_err();
    assert!(!f.root.path().join("flow/r").exists());
    assert!(f.root.path().join("flow/ok/a.txt").exists());
}

#[test]
fn a_flow_dir_that_is_a_symlink_or_a_file_is_refused() {
    let f = fixture();
    symlink(&f.outside, f.root.path().join("out")).unwrap();
    let err = f.root.create("out", "r", &f.repo, "main").unwrap_err();
    assert!(
        matches!(err, WorkspaceError::FlowDirSymlink { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("out"), "{err}");
    assert!(is_empty_dir(&f.outside), "wrote through the symlink");
    // Same for a symlink that stays inside the root.
    fs::create_dir(f.root.path().join("real")).unwrap();
    symlink("real", f.root.path().join("alias")).unwrap();
    let err = f.root.create("alias", "r", &f.repo, "main").unwrap_err();
    assert!(
        matches!(err, WorkspaceError::FlowDirSymlink { .. }),
        "{err:?}"
    );
    fs::write(f.root.path().join("file"), "").unwrap();
    let err = f.root.create("file", "r", &f.repo, "main").unwrap_err();
    assert!(
        matches!(err, WorkspaceError::FlowDirNotDir { .. }),
        "{err:?}"
    );
    // remove never follows the symlink either.
    fs::create_dir(f.outside.join("r")).unwrap();
    let err = f.root.remove("out", "r").unwrap_err();
    assert!(
        matches!(err, WorkspaceError::NotWorkspace { .. }),
        "{err:?}"
    );
    assert!(f.outside.join("r").is_dir());
    // Nor a run entry that is a symlink.
    fs::create_dir(f.root.path().join("flow")).unwrap();
    symlink(&f.outside, f.root.path().join("flow/run")).unwrap();
    let err = f.root.remove("flow", "run").unwrap_err();
    assert!(
        matches!(err, WorkspaceError::NotWorkspace { .. }),
        "{err:?}"
    );
    assert!(f.outside.join("r").is_dir());
}

#[test]
fn two_runs_of_one_flow_are_independent() {
    let f = fixture();
    let a = f.root.create("flow", "a", &f.repo, "main").unwrap();
    let b = f.root.create("flow", "b", &f.repo, "feature").unwrap();
    fs::write(a.path.join("a.txt"), "changed").unwrap();
    fs::write(a.path.join("new"), "x").unwrap();
    assert_eq!(read(&b.path.join("a.txt")), "one\n");
    assert!(!b.path.join("new").exists());
    f.root.remove("flow", "a").unwrap();
    assert!(!a.path.exists());
    let got = Repository::open(&b.path).unwrap();
    assert!(got.statuses(None).unwrap().is_empty());
    assert_eq!(got.head().unwrap().target(), Some(f.feature));
    // The source repository is untouched by either.
    let src = Repository::open(&f.repo).unwrap();
    assert_eq!(src.head().unwrap().target(), Some(f.second));
    assert!(src.worktrees().unwrap().is_empty());
}

#[test]
fn remove_list_and_gc() {
    let f = fixture();
    for (flow, run) in [("f1", "r1"), ("f1", "r2"), ("f2", "r1"), ("f2", "r2")] {
        f.root.create(flow, run, &f.repo, "main").unwrap();
    }
    // Not workspaces: skipped by list.
    fs::write(f.root.path().join("f1/stray"), "").unwrap();
    symlink(&f.outside, f.root.path().join("f2/link")).unwrap();
    fs::create_dir(f.root.path().join("bad name")).unwrap();
    let names = |entries: &[aiops_supervisor::workspace::WorkspaceEntry]| {
        entries
            .iter()
            .map(|e| format!("{}/{}", e.flow, e.run))
            .collect::<Vec<_>>()
    };
    let listed = f.root.list().unwrap();
    assert_eq!(names(&listed), ["f1/r1", "f1/r2", "f2/r1", "f2/r2"]);
    assert!(listed
        .iter()
        .all(|e| e.path == f.root.path().join(&e.flow).join(&e.run)));
    assert!(listed
        .iter()
        .all(|e| e.modified.elapsed().unwrap().as_secs() < 600));

    // A directory a node made read-only does not stop removal.
    let ro = f.root.path().join("f1/r1/ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("x"), "x").unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    f.root.remove("f1", "r1").unwrap();
    assert!(!f.root.path().join("f1/r1").exists());
    let err = f.root.remove("f1", "r1").unwrap_err();
    assert!(matches!(err, WorkspaceError::Stat { .. }), "{err:?}");

    // gc: keep f2/r2; f2/r1 is swapped for a symlink just before its removal,
    // which must fail on its own and not stop f1/r2.
    let swapped = f.root.path().join("f2/r1");
    let report = gc(&f.root, |e| {
        if e.path == swapped {
            fs::rename(&swapped, f.outside.join("moved")).unwrap();
            symlink(f.outside.join("moved"), &swapped).unwrap();
        }
        e.flow == "f2" && e.run == "r2"
    })
    .unwrap();
    let removed: Vec<_> = report.removed.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(removed, [f.root.path().join("f1/r2")]);
    assert!(report.bytes_freed > 0 && report.bytes_freed == report.removed[0].1);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, swapped);
    assert!(matches!(
        report.failed[0].1,
        WorkspaceError::NotWorkspace { .. }
    ));
    assert!(
        f.outside.join("moved/a.txt").exists(),
        "followed the symlink"
    );
    assert_eq!(names(&f.root.list().unwrap()), ["f2/r2"]);
}

#[test]
fn the_root_is_canonical_private_and_refused_when_others_can_write() {
    clear_git_config_search_paths();
    let tmp = tempfile::Builder::new()
        .prefix("aiops-ws-")
        .tempdir()
        .unwrap();
    let real = tmp.path().join("real");
    let root = WorkspaceRoot::open(&real.join("deep")).unwrap();
    assert_eq!(root.path(), fs::canonicalize(real.join("deep")).unwrap());
    symlink(&real, tmp.path().join("link")).unwrap();
    let via = WorkspaceRoot::open(&tmp.path().join("link/deep")).unwrap();
    assert_eq!(
        via.path(),
        root.path(),
        "a symlinked root resolves once, at open"
    );
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let err = WorkspaceRoot::open(root.path()).unwrap_err();
    assert!(matches!(err, WorkspaceError::UnsafeRoot { .. }), "{err:?}");
    fs::write(tmp.path().join("file"), "").unwrap();
    let err = WorkspaceRoot::open(&tmp.path().join("file")).unwrap_err();
    assert!(matches!(err, WorkspaceError::CreateRoot { .. }), "{err:?}");
}

#[test]
fn non_utf8_paths_check_out() {
    let f = fixture();
    let repo = Repository::open(&f.repo).unwrap();
    let name: &[u8] = b"d\xffir/f\xfe";
    commit(
        &repo,
        "refs/heads/bytes",
        &[f.second],
        &[(name, b"z", false), (b"l", b"d\xffir/f\xfe", true)],
    );
    let ws = f.root.create("flow", "r", &f.repo, "bytes").unwrap();
    let p = ws.path.join(std::ffi::OsStr::from_bytes(name));
    assert_eq!(fs::read(p).unwrap(), b"z");
}

#[test]
fn a_repo_owned_by_another_uid_is_read_once_isolated() {
    // Root only: never a failure unprivileged (not a kernel feature).
    if !is_root() {
        return skip_needs_root(
            "a_repo_owned_by_another_uid_is_read_once_isolated",
            "needs root to chown the fixture to another uid",
        );
    }
    let f = fixture();
    let git_dir = f.repo.join(".git");
    for path in [&f.repo, &git_dir] {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    }
    // What the engine does first: libgit2's owner check is off (see sys.rs).
    aiops_supervisor::sys::isolate_libgit2();
    let ws = f.root.create("flow", "r", &f.repo, "main").unwrap();
    assert!(ws.path.join(".git").is_dir());
}

#[test]
fn a_group_writable_root_must_be_setgid_and_closed_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    // 0770 without setgid: what the jail's group makes would not stay shared.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o770)).unwrap();
    let err = WorkspaceRoot::open(root.path()).unwrap_err();
    assert!(matches!(err, WorkspaceError::UnsafeRoot { .. }), "{err:?}");
    // 2770 (system mode's tmpfiles.d entry) is accepted.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o2770)).unwrap();
    WorkspaceRoot::open(root.path()).unwrap();
    // 2772: others may write.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o2772)).unwrap();
    assert!(WorkspaceRoot::open(root.path()).is_err());
}

/// A workspace shares no inode with its source: a write inside a jail
/// never reaches the source repository through a hard link (as a local
/// `git clone` without --no-hardlinks would allow). Control: the source's
/// objects are plain files a hard-linking clone would share.
#[test]
fn a_workspace_shares_no_inode_with_its_source() {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    fn files(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                files(&e.path(), out);
            } else if m.is_file() {
                out.push((e.path(), m));
            }
        }
    }
    let f = fixture();
    let ws = f.root.create("flow", "r", &f.repo, "main").unwrap();
    let mut src = vec![];
    files(&f.repo.join(".git/objects"), &mut src);
    assert!(src.len() >= 5, "the source has loose objects: {src:?}");
    let src_inodes: HashSet<(u64, u64)> = src.iter().map(|(_, m)| (m.dev(), m.ino())).collect();
    let mut mine = vec![];
    files(&ws.path, &mut mine);
    assert!(mine
        .iter()
        .any(|(p, _)| p.starts_with(ws.path.join(".git/objects"))));
    for (p, m) in &mine {
        assert_eq!(m.nlink(), 1, "{} is hard-linked", p.display());
        assert!(
            !src_inodes.contains(&(m.dev(), m.ino())),
            "{} shares an inode",
            p.display()
        );
    }
}
