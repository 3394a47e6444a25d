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

/// Stopped by: seccomp (socket families are an allow-list: unix, inet,
/// inet6, netlink route; the rest get EAFNOSUPPORT). AF_VSOCK is not
/// namespaced, netlink sock_diag lists the host's sockets under `net =
/// "host"`, AF_PACKET and AF_ALG are kernel attack surface. Controls:
/// unconfined creates the vsock and sock_diag sockets (any user may).
/// The jail keeps what builds need: unix, inet, NETLINK_ROUTE.
#[test]
fn socket_families_outside_the_allow_list() {
    if !have_python("socket_families_outside_the_allow_list") {
        return;
    }
    let host = host_py(
        false,
        r#"probe("vsock", lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close())"#,
        &[],
    );
    if host.probe("vsock").as_deref() != Some("ok") {
        skip(
            "socket_families_outside_the_allow_list",
            &format!("this kernel has no AF_VSOCK ({:?})", host.probe("vsock")),
        );
        return;
    }
    let code = r#"
def sock(*a):
    return lambda: socket.socket(*a).close()
probe("vsock", sock(socket.AF_VSOCK, socket.SOCK_STREAM))
probe("vsock_pair", lambda: [s.close() for s in socket.socketpair(socket.AF_VSOCK, socket.SOCK_STREAM)] and None)
probe("packet", sock(socket.AF_PACKET, socket.SOCK_DGRAM))
probe("alg", sock(socket.AF_ALG, socket.SOCK_SEQPACKET))
probe("sock_diag", sock(socket.AF_NETLINK, socket.SOCK_RAW, 4))
probe("route", sock(socket.AF_NETLINK, socket.SOCK_RAW, 0))
probe("unix", sock(socket.AF_UNIX, socket.SOCK_STREAM))
probe("inet6", sock(socket.AF_INET6, socket.SOCK_DGRAM))
probe("pair", lambda: [s.close() for s in socket.socketpair()] and None)
"#;
    each_mode(&all_modes(), |m| {
        let o = m.jail().run_py(code, &[]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("vsock");
            o.assert_probe_ok("sock_diag");
        } else {
            for n in ["vsock", "vsock_pair", "packet", "alg", "sock_diag"] {
                o.assert_probe_err(n, &["EAFNOSUPPORT"]);
            }
        }
        for n in ["route", "unix", "inet6", "pair"] {
            o.assert_probe_ok(n);
        }
    });
}

/// Stopped by: seccomp (AF_VSOCK refused). Judged on the host: while the
/// node holds what it got, the host binds the same vsock port. The
/// control (unconfined) holds it, so the host's bind fails with
/// EADDRINUSE: a jail with `net = "none"` could have served the whole VM.
#[test]
fn vsock_port_is_not_bound_from_the_jail() {
    let test = "vsock_port_is_not_bound_from_the_jail";
    if !have_python(test) {
        return;
    }
    let port = 20000 + (std::process::id() % 20000);
    let host_bind = format!(
        r#"
s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
probe("host_bind", lambda: s.bind((socket.VMADDR_CID_ANY, {port})))
"#
    );
    if host_py(false, &host_bind, &[])
        .probe("host_bind")
        .as_deref()
        != Some("ok")
    {
        skip(test, "this kernel has no AF_VSOCK, or the port is taken");
        return;
    }
    // The node tries, says so in the workspace, and holds whatever it got
    // until the host has looked (or 10 s pass).
    let node = format!(
        r#"
import time
ws = sys.argv[1]
s = None
def bind():
    global s
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    s.bind((socket.VMADDR_CID_ANY, {port}))
    s.listen()
probe("bind", bind)
open(os.path.join(ws, "tried"), "w").close()
end = time.time() + 10
while time.time() < end and not os.path.exists(os.path.join(ws, "looked")):
    time.sleep(0.02)
"#
    );
    // One mode at a time: they share the port.
    for m in all_modes() {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        let ws_arg = ws.to_str().unwrap().to_string();
        let (host_bind, ws2) = (host_bind.clone(), ws.clone());
        let looker = std::thread::spawn(move || {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !ws2.join("tried").exists() && std::time::Instant::now() < end {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let seen = host_py(false, &host_bind, &[]).probe("host_bind");
            // The node waits for this file; as root the workspace is nobody's.
            let _ = std::fs::write(ws2.join("looked"), b"");
            seen
        });
        let o = j.run_py(&node, &[&ws_arg]);
        let seen = looker.join().unwrap();
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("bind");
            assert_eq!(
                seen.as_deref(),
                Some("EADDRINUSE"),
                "[{m:?}] control: the host could bind the port the node held\n{}",
                o.describe()
            );
        } else {
            o.assert_probe_err("bind", &["EAFNOSUPPORT"]);
            assert_eq!(
                seen.as_deref(),
                Some("ok"),
                "[{m:?}] the host could not bind the vsock port\n{}",
                o.describe()
            );
        }
    }
}

/// Stopped by: seccomp (open/openat/creat with S_ISUID or S_ISGID in the
/// mode while creating: O_CREAT or O_TMPFILE). Judged on the host: no file
/// in the workspace carries a set-id bit. The control (unconfined) creates
/// `suid` with the bit (umask 0, which masks only the 0777 bits anyway).
#[test]
fn setid_file_created_by_open() {
    use std::os::unix::fs::PermissionsExt;
    if !have_python("setid_file_created_by_open") {
        return;
    }
    let code = r#"
os.umask(0)
ws = sys.argv[1]
def creat(name, mode):
    return lambda: os.close(check(libc.creat(os.path.join(ws, name).encode(), mode)))
probe("open_creat", lambda: os.close(os.open(os.path.join(ws, "suid"), os.O_CREAT | os.O_WRONLY, 0o6755)))
probe("creat", creat("creat_sgid", 0o2755))
def tmpfile():
    fd = os.open(ws, os.O_TMPFILE | os.O_WRONLY, 0o4755)
    os.link("/proc/self/fd/%d" % fd, os.path.join(ws, "linked"))
probe("tmpfile", tmpfile)
probe("plain", lambda: os.close(os.open(os.path.join(ws, "plain"), os.O_CREAT | os.O_WRONLY, 0o755)))
probe("existing", lambda: os.close(os.open(os.path.join(ws, "plain"), os.O_WRONLY, 0o4755)))
"#;
    each_mode(&all_modes(), |m| {
        let j = m.jail();
        let ws = j.ws().to_path_buf();
        let o = j.run_py(code, &[ws.to_str().unwrap()]);
        o.assert_ran();
        let mode = |n: &str| {
            std::fs::metadata(ws.join(n))
                .ok()
                .map(|md| md.permissions().mode())
        };
        o.assert_probe_ok("plain");
        o.assert_probe_ok("existing");
        if m.is_control() {
            o.assert_probe_ok("open_creat");
            assert!(
                mode("suid").is_some_and(|md| md & 0o4000 != 0),
                "control: no setuid file ({:?})\n{}",
                mode("suid").map(|md| format!("{md:o}")),
                o.describe()
            );
        } else {
            for n in ["open_creat", "creat", "tmpfile"] {
                o.assert_probe_err(n, &["EPERM"]);
            }
            for n in ["suid", "creat_sgid", "linked", "plain"] {
                assert!(
                    mode(n).is_none_or(|md| md & 0o6000 == 0),
                    "{n} planted with mode {:o}\n{}",
                    mode(n).unwrap_or(0),
                    o.describe()
                );
            }
        }
    });
}

/// Stopped by: seccomp (openat2 answers ENOSYS: its how struct is out of
/// seccomp's sight, and libc then falls back to openat, which is
/// filtered; memfd_secret is refused). Control: both work unconfined.
#[test]
fn openat2_and_memfd_secret() {
    let code = r#"
class How(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
how = How(0, 0, 0)
probe("openat2", lambda: os.close(sc("openat2", -100, b"/etc/hostname", ctypes.byref(how), 24)))
probe("memfd_secret", lambda: os.close(sc("memfd_secret", 0)))
"#;
    if !have_python("openat2_and_memfd_secret") {
        return;
    }
    let host = host_py(false, code, &[]);
    let mut control_ok = vec!["openat2"];
    if host.probe("memfd_secret").as_deref() == Some("ok") {
        control_ok.push("memfd_secret");
    } else {
        note(
            "openat2_and_memfd_secret",
            "memfd_secret is off in this kernel (secretmem): only the jail's refusal is checked",
        );
    }
    each_mode(&all_modes(), |m| {
        let o = m.jail().run_py(code, &[]);
        o.assert_ran();
        if m.is_control() {
            for n in &control_ok {
                o.assert_probe_ok(n);
            }
        } else {
            o.assert_probe_err("openat2", &["ENOSYS"]);
            o.assert_probe_err("memfd_secret", &["EPERM"]);
        }
    });
}
