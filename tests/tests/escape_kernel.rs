//! Kernel attack surface and jail-changing calls, each probed by issuing
//! the syscall from python (seccomp tables are checked by calling them).
#![allow(clippy::unwrap_used)]
use aiops_tests::*;

/// Run `code` in every mode in `modes`; controls must report `ok` for every
/// name in `control_ok`, attacks must report one of `errnos` for `names`.
fn syscall_case(
    test: &str,
    modes: &[Mode],
    code: &str,
    control_ok: &[&str],
    names: &[&str],
    errnos: &[&str],
) {
    if !have_python(test) {
        return;
    }
    each_mode(modes, |m| {
        let j = m.jail();
        let ws = j.ws().to_str().unwrap().to_string();
        let o = j.run_py(code, &[&ws]);
        o.assert_ran();
        if m.is_control() {
            assert!(
                control_ok
                    .iter()
                    .any(|n| o.probe(n).is_some_and(|v| v.starts_with("ok"))),
                "control: none of {control_ok:?} worked\n{}",
                o.describe()
            );
        } else {
            for n in names {
                o.assert_probe_err(n, errnos);
            }
        }
    });
}

const CLONE_NEWUSER: &str = "0x10000000";

/// Stopped by: seccomp (mount and unshare denied) and dropped capabilities.
/// The control mounts only after unsharing, so the host is never touched.
#[test]
fn mount_and_unshare() {
    let code = format!(
        r#"
t = os.path.join(sys.argv[1], "mnt"); os.mkdir(t)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
probe("unshare", lambda: check(libc.unshare({CLONE_NEWUSER} | 0x00020000)))
probe("mount_after_unshare", lambda: check(libc.mount(b"none", t.encode(), b"tmpfs", 0, None)))
"#
    );
    // Directly in the jail first: mount(2) with no unshare at all.
    let direct = r#"
t = os.path.join(sys.argv[1], "mnt"); os.mkdir(t)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
probe("mount", lambda: check(libc.mount(b"none", t.encode(), b"tmpfs", 0, None)))
probe("umount", lambda: check(libc.umount2(t.encode(), 2)))
"#;
    syscall_case(
        "mount_and_unshare",
        &all_modes(),
        &code,
        &["mount_after_unshare"],
        &["unshare", "mount_after_unshare"],
        &["EPERM"],
    );
    syscall_case(
        "mount_and_unshare",
        &attacks(),
        direct,
        &[],
        &["mount"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (unshare/clone namespace flags) — util-linux's
/// `unshare -U`, as an agent would type it.
#[test]
fn nested_user_namespace() {
    each_mode(&all_modes(), |m| {
        let o = m
            .jail()
            .run_sh("unshare -U true; echo rc=$?; unshare -Ur id -u; echo rc2=$?");
        o.assert_ran();
        if m.is_control() {
            assert!(o.stdout.contains("rc=0"), "{}", o.describe());
        } else {
            assert!(
                !o.stdout.contains("rc=0") && !o.stdout.contains("rc2=0"),
                "{}",
                o.describe()
            );
            assert_denied(&o.stderr, &o);
        }
    });
}

/// Stopped by: seccomp (setns denied) and the pid namespace (no host ns
/// files to open). The control unshares a user+uts ns and re-enters it.
#[test]
fn setns() {
    let code = format!(
        r#"
probe("setns_direct", lambda: check(libc.setns(os.open("/proc/self/ns/uts", os.O_RDONLY), 0x04000000)))
probe("unshare", lambda: check(libc.unshare({CLONE_NEWUSER} | 0x04000000)))
probe("setns_after_unshare", lambda: check(libc.setns(os.open("/proc/self/ns/uts", os.O_RDONLY), 0x04000000)))
"#
    );
    syscall_case(
        "setns",
        &all_modes(),
        &code,
        &["setns_direct", "setns_after_unshare"],
        &["setns_direct", "setns_after_unshare"],
        &["EPERM"],
    );
}

/// Stopped by: dropped capabilities (no CAP_SYS_CHROOT) and seccomp.
#[test]
fn chroot() {
    let code = format!(
        r#"
probe("chroot_direct", lambda: check(libc.chroot(sys.argv[1].encode())))
probe("unshare", lambda: check(libc.unshare({CLONE_NEWUSER})))
probe("chroot_after_unshare", lambda: check(libc.chroot(sys.argv[1].encode())))
"#
    );
    syscall_case(
        "chroot",
        &all_modes(),
        &code,
        &["chroot_direct", "chroot_after_unshare"],
        &["chroot_direct", "chroot_after_unshare"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (open_by_handle_at denied) and no CAP_DAC_READ_SEARCH.
#[test]
fn open_by_handle_at() {
    let code = r#"
class FH(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]
p = os.path.join(sys.argv[1], "f"); open(p, "w").write("x")
fh = FH(); fh.handle_bytes = 128; mid = ctypes.c_int()
probe("name_to_handle_at", lambda: check(libc.name_to_handle_at(-100, p.encode(), ctypes.byref(fh), ctypes.byref(mid), 0)))
def obh():
    fd = check(libc.open_by_handle_at(os.open(sys.argv[1], os.O_RDONLY), ctypes.byref(fh), os.O_RDONLY)); os.close(fd)
probe("open_by_handle_at", obh)
"#;
    let modes = root_control_modes("open_by_handle_at");
    syscall_case(
        "open_by_handle_at",
        &modes,
        code,
        &["open_by_handle_at"],
        &["open_by_handle_at"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (keyrings are not namespaced).
#[test]
fn keyctl() {
    let code = r#"
probe("add_key", lambda: sc("add_key", b"user", b"aiops-escape", b"x", 1, -2))
probe("keyctl", lambda: sc("keyctl", 0, -3, 0))
"#;
    syscall_case(
        "keyctl",
        &all_modes(),
        code,
        &["add_key"],
        &["add_key", "keyctl"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (bpf denied). Unprivileged bpf is off on most hosts,
/// so the control is root's.
#[test]
fn bpf() {
    let code = r#"
attr = ctypes.create_string_buffer(128)
ctypes.memmove(attr, (ctypes.c_uint32 * 4)(2, 4, 4, 1), 16)
probe("bpf", lambda: sc("bpf", 0, attr, 128))
"#;
    let modes = root_control_modes("bpf");
    syscall_case("bpf", &modes, code, &["bpf"], &["bpf"], &["EPERM"]);
}

/// Stopped by: seccomp (perf_event_open denied). The control counts its own
/// user-space CPU clock, which perf_event_paranoid=2 still allows.
#[test]
fn perf_event_open() {
    let code = r#"
attr = ctypes.create_string_buffer(128)
ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 128), 8)
ctypes.memmove(ctypes.byref(attr, 40), (ctypes.c_uint64 * 1)(1 | 32 | 64), 8)
probe("perf_event_open", lambda: sc("perf_event_open", attr, 0, -1, -1, 0))
"#;
    syscall_case(
        "perf_event_open",
        &all_modes(),
        code,
        &["perf_event_open"],
        &["perf_event_open"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (io_uring opens files and sockets without the
/// syscalls the filter sees).
#[test]
fn io_uring_setup() {
    let code = r#"
params = ctypes.create_string_buffer(120)
probe("io_uring_setup", lambda: sc("io_uring_setup", 1, params))
"#;
    syscall_case(
        "io_uring_setup",
        &all_modes(),
        code,
        &["io_uring_setup"],
        &["io_uring_setup"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (userfaultfd widens kernel race windows).
#[test]
fn userfaultfd() {
    // UFFD_USER_MODE_ONLY (1) | O_CLOEXEC: allowed to unprivileged users.
    let code = r#"probe("userfaultfd", lambda: sc("userfaultfd", 1 | 0o2000000))"#;
    syscall_case(
        "userfaultfd",
        &all_modes(),
        code,
        &["userfaultfd"],
        &["userfaultfd"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (personality changes such as ADDR_NO_RANDOMIZE).
#[test]
fn personality_addr_no_randomize() {
    let code = r#"
probe("personality", lambda: sc("personality", 0x0040000))
probe("query", lambda: hex(sc("personality", 0xffffffff)))
"#;
    syscall_case(
        "personality_addr_no_randomize",
        &all_modes(),
        code,
        &["personality"],
        &["personality"],
        &["EPERM"],
    );
}

/// Stopped by: seccomp (TIOCSTI denied on any fd). Without a terminal the
/// control's ioctl on a plain file fails differently (ENOTTY).
#[test]
fn tiocsti_on_any_fd() {
    if !have_python("tiocsti_on_any_fd") {
        return;
    }
    let code = r#"
import fcntl, termios
fd = os.open(os.path.join(sys.argv[1], "t"), os.O_RDWR | os.O_CREAT)
probe("tiocsti", lambda: fcntl.ioctl(fd, termios.TIOCSTI, b"x") and None)
"#;
    each_mode(&all_modes(), |m| {
        let j = m.jail();
        let ws = j.ws().to_str().unwrap().to_string();
        let o = j.run_py(code, &[&ws]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_err("tiocsti", &["ENOTTY"]);
        } else {
            o.assert_probe_err("tiocsti", &["EPERM"]);
        }
    });
}

/// Stopped by: seccomp (TIOCSTI) and setsid (the node has no controlling
/// terminal). aiopsctl runs on a pty from `script`; the control (root, who
/// may inject into any tty) shows injection works there.
#[test]
fn tiocsti_into_callers_terminal() {
    if !have_python("tiocsti_into_callers_terminal")
        || !have_program("tiocsti_into_callers_terminal", "/usr/bin/script")
    {
        return;
    }
    let code = r##"
import fcntl, termios
if not os.isatty(0):
    print("PROBE tiocsti notty", flush=True)
else:
    probe("tiocsti", lambda: fcntl.ioctl(0, termios.TIOCSTI, b"#") and None)
"##;
    let modes = root_control_modes("tiocsti_into_callers_terminal");
    each_mode(&modes, |m| {
        let o = m.jail().pty().run_py(code, &[]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("tiocsti");
        } else {
            o.assert_probe_err("tiocsti", &["EPERM", "EIO", "notty"]);
        }
    });
}

/// Stopped by: seccomp (chmod/fchmodat with S_ISUID) and no_new_privs; the
/// host sees no setuid bit either way.
#[test]
fn setuid_plant_in_workspace() {
    use std::os::unix::fs::PermissionsExt;
    each_mode(&all_modes(), |m| {
        let j = m.jail();
        let f = j.ws().join("suid");
        let o = j.run_sh("cp /bin/true ./suid && chmod u+s ./suid; echo rc=$?; stat -c %a ./suid");
        o.assert_ran();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        if m.is_control() {
            assert!(
                mode & 0o4000 != 0,
                "control could not set the bit\n{}",
                o.describe()
            );
        } else {
            assert_eq!(
                mode & 0o6000,
                0,
                "setuid file planted on the host\n{}",
                o.describe()
            );
            assert!(
                o.stdout.contains("rc=1"),
                "chmod u+s did not fail\n{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: the user namespace mapping (as root, the jail runs as the
/// workspace owner or nobody, never host root). A root-owned workspace: the
/// node either cannot write it, or what it writes is not root's.
#[test]
fn files_created_as_root_are_not_root_owned() {
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        skip_needs_root(
            "files_created_as_root_are_not_root_owned",
            "only meaningful when aiopsctl runs as root",
        );
        return;
    }
    let j = Mode::Jail.jail().workspace(Workspace::owned_by(Some(0)));
    let f = j.ws().join("made");
    let o = j.run_sh("echo x > ./made; id -u");
    o.assert_ran();
    if let Ok(md) = std::fs::metadata(&f) {
        assert_ne!(
            md.uid(),
            0,
            "the jail created a root-owned file\n{}",
            o.describe()
        );
    }
    let j = Mode::Jail.jail();
    let owner = j.ws_owner();
    let f = j.ws().join("made");
    let o = j.run_sh("echo x > ./made");
    o.assert_ran().assert_code(0);
    let md = std::fs::metadata(&f).unwrap();
    assert_ne!(md.uid(), 0, "{}", o.describe());
    assert_eq!(
        Some(md.uid()),
        owner,
        "file not owned by the workspace owner\n{}",
        o.describe()
    );
    // A user's workspace whose group is root's: the node runs as the user,
    // but never with host gid 0 (it would read what root's group may read).
    let ws = Workspace::owned_by(Some(NOBODY));
    std::os::unix::fs::lchown(ws.path(), None, Some(0)).unwrap();
    let j = Mode::Jail.jail().workspace(ws);
    let made = j.ws().join("made");
    let o = j.run_sh("id -g; id -G; echo x > ./made");
    o.assert_ran().assert_code(0);
    let groups: Vec<&str> = o.stdout.split_whitespace().collect();
    assert!(
        !groups.is_empty() && !groups.contains(&"0"),
        "the jail runs with root's group\n{}",
        o.describe()
    );
    let md = std::fs::metadata(&made).unwrap();
    assert_ne!(md.gid(), 0, "a root-group file\n{}", o.describe());
    assert_eq!(md.uid(), NOBODY, "{}", o.describe());
}

/// Stopped by: the jailer setting no_new_privs. Control: plain host shell.
#[test]
fn no_new_privs_is_set() {
    let c = host_sh(false, "grep NoNewPrivs /proc/self/status", &[], &[]);
    assert!(c.stdout.contains("NoNewPrivs:\t0"), "{}", c.describe());
    each_mode(&attacks(), |m| {
        let o = m.jail().run_sh("grep NoNewPrivs /proc/self/status");
        o.assert_ran().assert_code(0);
        assert!(o.stdout.contains("NoNewPrivs:\t1"), "{}", o.describe());
    });
}

/// Stopped by: the jailer dropping every capability set (bounding, ambient,
/// inheritable, permitted, effective) before exec.
#[test]
fn no_capabilities_remain() {
    each_mode(&[vec![Mode::Host], attacks()].concat(), |m| {
        let o = m.jail().run_sh("grep '^Cap' /proc/self/status");
        o.assert_ran().assert_code(0);
        let get = |k: &str| {
            o.stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:\t")))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap_or_else(|| panic!("no {k}\n{}", o.describe()))
        };
        if m.is_control() {
            assert_ne!(get("CapBnd"), 0, "{}", o.describe());
        } else {
            for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert_eq!(get(k), 0, "{k} is not empty\n{}", o.describe());
            }
        }
    });
}

/// Stopped by: the fresh, read-only-for-the-jail /proc (its sysctls belong to
/// a userns that holds no caps) and no /sys mount. Opening for write is
/// enough: nothing is written, even by the control.
#[test]
fn proc_sys_and_sys_are_not_writable() {
    let code = r#"
for name, p in [("procsys", "/proc/sys/vm/drop_caches"), ("core_pattern", "/proc/sys/kernel/core_pattern"),
                ("sysrq", "/proc/sysrq-trigger"), ("sys", "/sys/kernel/mm/transparent_hugepage/enabled")]:
    probe(name, lambda: os.close(os.open(p, os.O_WRONLY)))
"#;
    let modes = root_control_modes("proc_sys_and_sys_are_not_writable");
    let errs = &["EACCES", "EROFS", "ENOENT", "EPERM"];
    syscall_case(
        "proc_sys_and_sys_are_not_writable",
        &modes,
        code,
        &["procsys"],
        &["procsys", "core_pattern", "sysrq", "sys"],
        errs,
    );
}

/// Stopped by: seccomp (mknod of device nodes) and no CAP_MKNOD.
#[test]
fn mknod_device() {
    let code = r#"
import stat
p = os.path.join(sys.argv[1], "null2")
probe("mknod", lambda: os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3)))
"#;
    let modes = root_control_modes("mknod_device");
    syscall_case(
        "mknod_device",
        &modes,
        code,
        &["mknod"],
        &["mknod"],
        &["EPERM"],
    );
}

/// Stopped by: the minimal /dev the jailer builds.
#[test]
fn dev_has_only_the_minimal_set() {
    const MINIMAL: &[&str] = &[
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin",
        "stdout", "stderr", "core", "mqueue", "console",
    ];
    each_mode(&all_modes(), |m| {
        let o = m.jail().run_sh("ls -A /dev");
        o.assert_ran().assert_code(0);
        let extra: Vec<&str> = o
            .stdout
            .split_whitespace()
            .filter(|e| !MINIMAL.contains(e))
            .collect();
        if m.is_control() {
            assert!(
                !extra.is_empty(),
                "control sees only a minimal /dev?\n{}",
                o.describe()
            );
        } else {
            assert!(
                extra.is_empty(),
                "unexpected /dev entries {extra:?}\n{}",
                o.describe()
            );
        }
    });
}
