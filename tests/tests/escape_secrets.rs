//! Host secrets: /etc/shadow, homes, ~/.ssh, the parent's environment,
//! inherited file descriptors and environment leaks.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;

/// Stopped by: the user namespace (the node is never host root, so DAC on
/// the 0640 root:shadow file applies). The control needs root.
#[test]
fn read_etc_shadow() {
    // Control on the host: `unconfined` drops root to nobody, so it cannot.
    if !is_root() {
        skip_needs_root(
            "read_etc_shadow",
            "the control (root reads /etc/shadow) needs root",
        );
    } else {
        let o = host_sh(
            false,
            "head -c 5 /etc/shadow >/dev/null && echo read=yes",
            &[],
            &[],
        );
        assert!(
            o.stdout.contains("read=yes"),
            "control could not read shadow\n{}",
            o.describe()
        );
    }
    each_mode(&attacks(), |m| {
        let o = m
            .jail()
            .run_sh("head -c 5 /etc/shadow >/dev/null && echo read=yes");
        o.assert_ran();
        assert!(!o.stdout.contains("read=yes"), "{}", o.describe());
        assert_denied(&o.stderr, &o);
    });
}

/// Stopped by: mount namespace (neither /root nor /home is in the jail's tree).
#[test]
fn read_root_and_other_homes() {
    if is_root() {
        let o = host_sh(
            false,
            "ls -a /root >/dev/null && echo root=listed",
            &[],
            &[],
        );
        assert!(o.stdout.contains("root=listed"), "{}", o.describe());
    }
    each_mode(&attacks(), |m| {
        let o = m.jail().run_sh(
            "ls -A /root 2>&1 | grep -v 'No such\\|denied' | sed 's/^/root:/'; \
             ls -A /home 2>&1 | grep -v 'No such\\|denied' | sed 's/^/home:/'; echo done",
        );
        o.assert_ran();
        assert!(o.stdout.contains("done"), "{}", o.describe());
        assert!(
            !o.stdout
                .lines()
                .any(|l| l.starts_with("root:") || l.starts_with("home:")),
            "the jail lists host home directories\n{}",
            o.describe()
        );
    });
}

/// Stopped by: mount namespace ($HOME is not mounted; the jail's HOME is its
/// /tmp). The fake key is world-readable, so only the jail stops the read.
#[test]
fn read_ssh_key_outside_workspace() {
    each_mode(&all_modes(), |m| {
        let home = scratch_dir(m.owner());
        let ssh = home.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        chown_to(&ssh, m.owner());
        let secret = unique("SSHSECRET");
        let key = ssh.join("id_ed25519");
        host_file(&key, &secret, m.owner());
        let o = m.jail().env("HOME", home.path()).run_sh_args(
            "cat \"$HOME/.ssh/id_ed25519\"; cat \"$1\"; echo",
            &[key.to_str().unwrap()],
        );
        o.assert_ran();
        if m.is_control() {
            assert!(
                o.stdout.contains(&secret),
                "control could not read the key\n{}",
                o.describe()
            );
        } else {
            assert!(
                !o.stdout.contains(&secret),
                "the jail read ~/.ssh\n{}",
                o.describe()
            );
            assert_denied(&o.stderr, &o);
        }
    });
}

/// Stopped by: pid namespace (aiopsctl's /proc/PID/environ is not visible)
/// plus the env allow-list (the canary never reaches the node).
#[test]
fn parent_environ_via_proc() {
    each_mode(&[same_uid_controls(), attacks()].concat(), |m| {
        let canary = unique("ENVCANARY");
        let o = m.jail().env("AIOPS_TEST_CANARY", &canary).run_sh_args(
            "grep -l \"$1\" /proc/[0-9]*/environ 2>/dev/null | sed 's/^/found:/'; echo done",
            &[&canary],
        );
        o.assert_ran();
        let found = o.stdout.lines().any(|l| l.starts_with("found:"));
        if m.is_control() {
            assert!(
                found,
                "control could not see aiopsctl's environ\n{}",
                o.describe()
            );
        } else {
            assert!(
                !found,
                "the jail read a host process's environ\n{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: the env allow-list (agentd builds the env from the plan).
/// Control: plain host execution (unconfined filters env on purpose).
#[test]
fn env_canary_not_in_allow_list_is_dropped() {
    let canary = unique("ENVCANARY");
    let c = host_sh(false, "env", &[], &[("AIOPS_TEST_CANARY", &canary)]);
    assert!(c.stdout.contains(&canary), "{}", c.describe());
    each_mode(&attacks(), |m| {
        let o = m
            .jail()
            .env("AIOPS_TEST_CANARY", &canary)
            .env("LANG", "C.UTF-8")
            .run_sh("env; cat /proc/self/environ | tr '\\0' '\\n'");
        o.assert_ran().assert_code(0);
        assert!(
            !o.stdout.contains(&canary),
            "canary leaked into the jail\n{}",
            o.describe()
        );
        assert!(!o.stdout.contains("AIOPS_TEST_CANARY"), "{}", o.describe());
        assert!(
            o.stdout.contains("LANG=C.UTF-8"),
            "allow-listed LANG missing\n{}",
            o.describe()
        );
    });
}

/// Stopped by: the jailer closing every fd >= 3 it does not own (and
/// agentd spawning the node with only 0-2).
#[test]
fn inherited_fd_7_is_closed() {
    let dir = scratch_dir(None);
    let secret = unique("FDSECRET");
    let file = dir.path().join("secret");
    host_file(&file, &secret, None);
    let c = host_sh(
        false,
        "exec 7<\"$1\"; sh -c 'cat <&7'",
        &[file.to_str().unwrap()],
        &[],
    );
    assert!(
        c.stdout.contains(&secret),
        "control: fd 7 not inherited on the host\n{}",
        c.describe()
    );
    each_mode(&attacks(), |m| {
        let o = m
            .jail()
            .fd7(&file)
            .run_sh("cat <&7; ls /proc/self/fd | sed 's/^/fd:/'");
        o.assert_ran();
        assert!(
            !o.stdout.contains(&secret),
            "the node read inherited fd 7\n{}",
            o.describe()
        );
        assert!(!o.stdout.lines().any(|l| l == "fd:7"), "{}", o.describe());
    });
}
