//! Optional read paths the jail's uid cannot reach (issue 17): root's
//! `$HOME` when root runs a jail as the workspace owner, and any `fs.read`
//! entry that exists but is not readable by that uid. Such a path is
//! skipped like a missing one and named in the report's layers; the node
//! runs and cannot read it. Control: the same path made 0755 is mounted
//! and its file is read.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `restrictive` plus `read` in a directory nobody can read the profile from.
fn profile(dir: &Path, name: &str, read: &str) -> std::path::PathBuf {
    write_profile(
        dir,
        name,
        &format!(
            r#"schema = 1
name = "{name}"
description = "restrictive reading one more path, for the unreadable-path tests"
extends = "restrictive"

[fs]
read = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "{read}"]
"#
        ),
    )
}

fn layers(o: &Outcome) -> String {
    o.assert_report()["exit"]["layers"].to_string()
}

/// As root, `$HOME` (here a 0700 root-owned directory holding `.npm`, as
/// /root usually is) is the invoker's; the jail runs as the workspace
/// owner (nobody), whose home is what `$HOME` means in the profile. Before
/// the fix this exited 125: "stat bind source /oldroot/root/.npm:
/// Permission denied".
#[test]
fn root_home_is_not_the_jail_users_home() {
    if !is_root() {
        skip_needs_root(
            "root_home_is_not_the_jail_users_home",
            "only root runs a jail as another user",
        );
        return;
    }
    let d = scratch_dir(Some(NOBODY));
    let p = profile(d.path(), "home-npm", "$HOME/.npm");
    let root_home = scratch_dir(Some(0));
    std::fs::create_dir(root_home.path().join(".npm")).unwrap();
    host_file(
        &root_home.path().join(".npm/token"),
        "ROOT-NPM-TOKEN",
        Some(0),
    );
    std::fs::set_permissions(root_home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = Jail::new(p.to_str().unwrap())
        .env("HOME", root_home.path())
        .run_sh("id -u; echo \"HOME=$HOME\"; cat \"$HOME/.npm/token\" 2>&1; true");
    o.assert_ran();
    assert_eq!(o.code, 0, "{}", o.describe());
    assert!(
        o.stdout.contains(&format!("{NOBODY}\n")),
        "{}",
        o.describe()
    );
    let home = root_home.path().to_str().unwrap();
    assert!(
        !o.stdout.contains(home),
        "root's HOME leaked\n{}",
        o.describe()
    );
    assert!(!o.stdout.contains("ROOT-NPM-TOKEN"), "{}", o.describe());
    let l = layers(&o);
    assert!(
        l.contains("skipped missing: ") && l.contains("/.npm"),
        "{l}"
    );
    assert!(!l.contains(home), "{l}");
}

/// A host directory with `file` (`SECRET-<tag>`) inside, owned by the
/// caller (root: root), mode `mode`.
fn host_dir(mode: u32, tag: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = scratch_dir(None);
    let sub = d.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    host_file(&sub.join("file"), &format!("SECRET-{tag}"), None);
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(mode)).unwrap();
    (d, sub)
}

/// Stopped by: the jailer's access check as the jail's uid (optional
/// binds it cannot read are not mounted). Root-owned 0700 as root (the
/// jail runs as nobody), and as nobody invoking aiopsctl; our own 0000 as
/// an unprivileged user. Control: 0755, mounted and read.
#[test]
fn unreadable_optional_read_path_is_skipped() {
    // (invoke as nobody, mode, readable)
    let mut cases = vec![(false, 0o755, true)];
    if is_root() {
        cases.extend([
            (false, 0o700, false),
            (true, 0o700, false),
            (true, 0o755, true),
        ]);
    } else {
        cases.push((false, 0o000, false));
    }
    for (nobody, mode, readable) in cases {
        let tag = unique("r");
        let (_d, sub) = host_dir(mode, &tag);
        let pd = scratch_dir(None);
        let p = profile(pd.path(), "read-sub", sub.to_str().unwrap());
        let mut j = Jail::new(p.to_str().unwrap());
        if nobody {
            j = j.as_nobody();
        }
        let o = j.run_sh_args("cat \"$1/file\" 2>&1; echo done", &[sub.to_str().unwrap()]);
        // Restore so the temp dir can be removed as an unprivileged user.
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let what = format!("nobody={nobody} mode={mode:o}");
        o.assert_ran();
        assert_eq!(o.code, 0, "{what}\n{}", o.describe());
        assert!(o.stdout.contains("done"), "{what}\n{}", o.describe());
        let l = layers(&o);
        let skipped = format!("skipped unreadable: {}", sub.display());
        if readable {
            assert!(
                o.stdout.contains(&format!("SECRET-{tag}")),
                "{what}\n{}",
                o.describe()
            );
            assert!(!l.contains(&skipped), "{what}\n{l}");
        } else {
            assert!(
                !o.stdout.contains(&format!("SECRET-{tag}")),
                "{what}\n{}",
                o.describe()
            );
            assert!(l.contains(&skipped), "{what}\n{l}");
        }
    }
}

/// `profile explain` names, for the uid the jail would run as, the
/// optional paths it would skip: an unreadable one, and a missing one.
#[test]
fn explain_marks_unreadable_and_missing_read_paths() {
    let mode = if is_root() { 0o700 } else { 0o000 };
    let (_d, sub) = host_dir(mode, "explain");
    let pd = scratch_dir(None);
    let p = profile(pd.path(), "read-sub", sub.to_str().unwrap());
    let ws = Workspace::new();
    let line = explain_line(&p, ws.path(), &sub);
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uid = node_uid();
    assert!(
        line.contains(&format!("SKIPPED, unreadable for uid {uid}")),
        "{line}"
    );
    // Control: once readable, not marked.
    let line = explain_line(&p, ws.path(), &sub);
    assert!(!line.contains("SKIPPED"), "{line}");
    // A read path that does not exist is marked missing.
    let gone = pd.path().join("gone");
    let p = profile(pd.path(), "read-gone", gone.to_str().unwrap());
    let line = explain_line(&p, ws.path(), &gone);
    assert!(line.contains("SKIPPED, missing"), "{line}");
}

/// `aiopsctl profile explain PROFILE --workspace WS`'s mount line for `path`.
fn explain_line(profile: &Path, ws: &Path, path: &Path) -> String {
    let o = std::process::Command::new(aiopsctl())
        .args(["profile", "explain"])
        .arg(profile)
        .arg("--workspace")
        .arg(ws)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .find(|l| l.contains(path.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no mount line for {}\n{out}", path.display()))
        .to_string()
}

/// Fails closed: a `fs.write` path (not optional) that the jail's uid
/// cannot reach refuses the jail with exit 125, naming the path and the
/// uid; the node never runs. Root only: unprivileged, the jail's uid owns
/// whatever it could make unreachable, and its user namespace reaches it.
/// Control: the same path reachable (0777) runs.
#[test]
fn unreachable_write_path_refuses_the_jail() {
    if !is_root() {
        skip_needs_root(
            "unreachable_write_path_refuses_the_jail",
            "only root can make a path another uid (the jail's) cannot reach",
        );
        return;
    }
    for (mode, runs) in [(0o700, false), (0o777, true)] {
        let d = scratch_dir(Some(0));
        let w = d.path().join("w");
        std::fs::create_dir(&w).unwrap();
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(mode)).unwrap();
        let pd = scratch_dir(None);
        let p = write_profile(
            pd.path(),
            "write-w",
            &format!(
                r#"schema = 1
name = "write-w"
description = "restrictive writing one more path"
extends = "restrictive"

[fs]
write = ["$WORKSPACE", "{}"]
"#,
                w.display()
            ),
        );
        let o = Jail::new(p.to_str().unwrap()).run_sh("echo ran");
        if runs {
            o.assert_ran();
            assert_eq!(o.code, 0, "{}", o.describe());
        } else {
            assert!(!o.ran, "{}", o.describe());
            assert_eq!(o.code, 125, "{}", o.describe());
            let all = format!(
                "{}{}",
                o.stderr,
                o.report.as_ref().map(|r| r.to_string()).unwrap_or_default()
            );
            assert!(
                all.contains(&format!(
                    "uid {NOBODY} cannot reach the bind source {}",
                    w.display()
                )),
                "{}",
                o.describe()
            );
        }
    }
}

/// `profile validate` and `doctor`, run from the workspace, name an
/// optional read path the jail's uid cannot read (the node would run
/// without it). Control: once readable, neither mentions it.
#[test]
fn validate_and_doctor_name_unreadable_read_paths() {
    let mode = if is_root() { 0o700 } else { 0o000 };
    let (_d, sub) = host_dir(mode, "doctor");
    let pd = scratch_dir(None);
    let p = profile(pd.path(), "read-sub", sub.to_str().unwrap());
    let ws = Workspace::new();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(aiopsctl())
            .args(args)
            .current_dir(ws.path())
            .env("AIOPS_PROFILE_PATH", pd.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).replace('\n', " "),
        )
    };
    let uid = node_uid();
    let shown = sub.to_str().unwrap();
    let validate = ["profile", "validate", p.to_str().unwrap()];
    let (code, out) = run(&validate);
    assert_eq!(code, Some(0), "{out}");
    let note = format!("note: read path {shown} exists but uid {uid} cannot read it");
    assert!(out.contains(&note), "{out}");
    let (_, out) = run(&["doctor"]);
    let squeezed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squeezed.contains(&format!("profile read-sub: uid {uid} cannot read {shown}")),
        "{out}"
    );
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out) = run(&validate);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("note:"), "{out}");
    let (_, out) = run(&["doctor"]);
    assert!(!out.contains("read-sub"), "{out}");
}
