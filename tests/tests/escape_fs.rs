//! Writes, deletes, renames, hard links and symlinks that leave the workspace.
//! Outside directories are mode 0777 so only the jail stands in the way.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::path::Path;

fn outside_file(dir: &Path, name: &str, content: &str, m: Mode) -> std::path::PathBuf {
    let p = dir.join(name);
    // Owned by the uid the node runs as, so that (say) protected_hardlinks
    // does not stand in for the jail.
    let _ = m;
    host_file(&p, content, is_root().then(node_uid));
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    p
}

/// Stopped by: mount namespace (the host path is not in the jail's tree) and
/// Landlock (no write right outside `$WORKSPACE`).
#[test]
fn write_outside_workspace() {
    each_mode(&all_modes(), |m| {
        let out = open_dir();
        let target = out.path().join("pwned");
        let o = m.jail().run_sh_args(
            "echo pwned > \"$1\"; echo rc=$?",
            &[target.to_str().unwrap()],
        );
        o.assert_ran();
        if m.is_control() {
            assert_eq!(
                std::fs::read_to_string(&target).unwrap(),
                "pwned\n",
                "{}",
                o.describe()
            );
        } else {
            assert!(
                !target.exists(),
                "jail wrote outside its workspace\n{}",
                o.describe()
            );
            assert!(!o.stdout.contains("rc=0"), "{}", o.describe());
            assert_denied(&o.stderr, &o);
        }
    });
}

/// Stopped by: the read-only binds of system dirs (and Landlock). No host
/// control: writing into /usr as root would change the host; the control is
/// that root could (test -w) and that the same jailed script writes its workspace.
#[test]
fn write_system_dirs() {
    if is_root() {
        host_sh(
            false,
            "test -w /usr && test -w /etc && echo writable",
            &[],
            &[],
        )
        .assert_ran()
        .assert_code(0);
    }
    each_mode(&attacks(), |m| {
        let tag = unique("sys");
        let o = m.jail().run_sh_args(
            "for d in /usr /etc /bin /lib; do touch \"$d/$1\" && echo wrote=$d; done; echo ok > ./inws && echo ws=ok",
            &[&tag],
        );
        o.assert_ran();
        assert!(
            o.stdout.contains("ws=ok"),
            "the jail could not even write its workspace\n{}",
            o.describe()
        );
        assert!(!o.stdout.contains("wrote="), "{}", o.describe());
        for d in ["/usr", "/etc", "/bin", "/lib"] {
            assert!(!Path::new(d).join(&tag).exists(), "file landed in host {d}");
        }
        assert_denied(&o.stderr, &o);
    });
}

/// Stopped by: mount namespace + Landlock (RemoveFile outside the workspace).
#[test]
fn delete_outside_workspace() {
    each_mode(&all_modes(), |m| {
        let out = open_dir();
        let victim = outside_file(out.path(), "victim", "precious", m);
        let o = m
            .jail()
            .run_sh_args("rm -f \"$1\"; echo rc=$?", &[victim.to_str().unwrap()]);
        o.assert_ran();
        if m.is_control() {
            assert!(
                !victim.exists(),
                "control could not delete\n{}",
                o.describe()
            );
        } else {
            assert_eq!(
                std::fs::read_to_string(&victim).unwrap(),
                "precious",
                "{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: mount namespace (the source is not visible) + Landlock
/// (rename across roots needs rights on both sides).
#[test]
fn rename_outside_into_workspace() {
    each_mode(&all_modes(), |m| {
        let out = open_dir();
        let victim = outside_file(out.path(), "victim", "precious", m);
        let o = m.jail().run_sh_args(
            "mv \"$1\" ./stolen; echo rc=$?",
            &[victim.to_str().unwrap()],
        );
        o.assert_ran();
        if m.is_control() {
            assert!(
                !victim.exists(),
                "control could not rename\n{}",
                o.describe()
            );
        } else {
            assert_eq!(
                std::fs::read_to_string(&victim).unwrap(),
                "precious",
                "{}",
                o.describe()
            );
            assert_denied(&o.stderr, &o);
        }
    });
}

/// Stopped by: mount namespace (the target is not visible) + Landlock
/// (link needs MakeReg on the destination and the source inside a rule).
#[test]
fn hard_link_to_outside_file() {
    each_mode(&all_modes(), |m| {
        let out = open_dir();
        let victim = outside_file(out.path(), "victim", "precious", m);
        let o = m.jail().run_sh_args(
            "ln \"$1\" ./hl && echo linked && echo pwned >> ./hl; echo rc=$?",
            &[victim.to_str().unwrap()],
        );
        o.assert_ran();
        let content = std::fs::read_to_string(&victim).unwrap();
        if m.is_control() {
            assert!(o.stdout.contains("linked"), "{}", o.describe());
            assert_eq!(content, "preciouspwned\n");
        } else {
            assert!(!o.stdout.contains("linked"), "{}", o.describe());
            assert_eq!(content, "precious", "{}", o.describe());
            use std::os::unix::fs::MetadataExt;
            assert_eq!(std::fs::metadata(&victim).unwrap().nlink(), 1);
        }
    });
}

/// Stopped by: mount namespace (the symlink resolves inside the jail's own
/// tree, where the host dir does not exist) + Landlock.
#[test]
fn symlink_out_then_write_through() {
    each_mode(&all_modes(), |m| {
        let out = open_dir();
        let o = m.jail().run_sh_args(
            "ln -s \"$1\" ./out && echo pwned > ./out/through; echo rc=$?",
            &[out.path().to_str().unwrap()],
        );
        o.assert_ran();
        let landed = out.path().join("through");
        if m.is_control() {
            assert!(
                landed.exists(),
                "control could not write through\n{}",
                o.describe()
            );
        } else {
            assert!(
                !landed.exists(),
                "wrote through a symlink out of the jail\n{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: mount namespace + Landlock. The host planted the symlinks (a
/// dir and a file link) in the workspace before the run.
#[test]
fn preplanted_symlink_write_through() {
    each_mode(&all_modes(), |m| {
        let out = open_dir();
        let victim = outside_file(out.path(), "victim", "precious", m);
        let j = m.jail();
        std::os::unix::fs::symlink(out.path(), j.ws().join("dirlink")).unwrap();
        std::os::unix::fs::symlink(&victim, j.ws().join("filelink")).unwrap();
        chown_to(&j.ws().join("dirlink"), j.ws_owner());
        chown_to(&j.ws().join("filelink"), j.ws_owner());
        let o = j.run_sh(
            "echo pwned > ./dirlink/new; echo pwned >> ./filelink; cat ./filelink; echo rc=$?",
        );
        o.assert_ran();
        let content = std::fs::read_to_string(&victim).unwrap();
        if m.is_control() {
            assert!(out.path().join("new").exists(), "{}", o.describe());
            assert_eq!(content, "preciouspwned\n");
        } else {
            assert!(!out.path().join("new").exists(), "{}", o.describe());
            assert_eq!(content, "precious", "{}", o.describe());
            assert!(
                !o.stdout.contains("precious"),
                "read through a planted link\n{}",
                o.describe()
            );
        }
    });
}

/// Liveness guard for this file's assertions: the jail writes its own
/// workspace and a private /tmp that is not the host's.
#[test]
fn workspace_and_private_tmp_are_writable() {
    each_mode(&attacks(), |m| {
        let tag = unique("tmp");
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        // A host /tmp entry (workspaces live elsewhere: the jail's /tmp is private).
        let host_only = tempfile::Builder::new()
            .prefix("aiops-escape-hostonly-")
            .tempdir()
            .unwrap();
        let host_name = host_only
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let o = j.run_sh_args(
            "echo data > ./f && mkdir -p d/e && mv ./f d/e/g && echo t > \"/tmp/$1\" && cat \"/tmp/$1\" && ls /tmp",
            &[&tag],
        );
        o.assert_ran().assert_code(0);
        assert_eq!(std::fs::read_to_string(ws.join("d/e/g")).unwrap(), "data\n");
        assert!(
            !Path::new("/tmp").join(&tag).exists(),
            "the jail's /tmp is the host's"
        );
        assert!(
            !o.stdout.contains(&host_name),
            "host /tmp entries visible in the jail\n{}",
            o.describe()
        );
    });
}

/// Stopped by: the private /tmp tmpfs (a workspace under /tmp is bound over
/// it; its host siblings stay hidden) and Landlock.
#[test]
fn tmp_workspace_hides_its_host_tmp_siblings() {
    each_mode(&all_modes(), |m| {
        let sib = tempfile::Builder::new()
            .prefix("aiops-escape-sib-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            sib.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let secret = unique("TMPSECRET");
        host_file(&sib.path().join("secret"), &secret, None);
        let o = m.jail().workspace(Workspace::in_system_tmp()).run_sh_args(
            "cat \"$1/secret\"; echo; echo pwned > \"$1/pwned\"; echo x > ./mine && echo ws=ok",
            &[sib.path().to_str().unwrap()],
        );
        o.assert_ran();
        assert!(
            o.stdout.contains("ws=ok"),
            "the /tmp workspace is not writable\n{}",
            o.describe()
        );
        if m.is_control() {
            assert!(o.stdout.contains(&secret), "{}", o.describe());
            assert!(sib.path().join("pwned").exists(), "{}", o.describe());
        } else {
            assert!(
                !o.stdout.contains(&secret),
                "read a host /tmp sibling\n{}",
                o.describe()
            );
            assert!(
                !sib.path().join("pwned").exists(),
                "wrote a host /tmp sibling\n{}",
                o.describe()
            );
        }
    });
}
