//! The baseline seccomp deny table. Every entry carries its reason; the
//! jailer resolves names to numbers for the running architecture and the
//! escape suite issues each syscall to prove the table holds.
use serde::{Deserialize, Serialize};

pub use aiops_proto::syscalls::{is_known_syscall, ArgCond, ArgOp, SyscallRule};

/// A syscall name valid on at least one architecture we build for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SyscallName(String);

impl SyscallName {
    pub fn parse(s: &str) -> Result<Self, String> {
        if is_known_syscall(s) {
            Ok(SyscallName(s.to_string()))
        } else {
            Err(format!(
                "unknown syscall {s:?} (not in the x86_64 or aarch64 tables)"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for SyscallName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SyscallName::parse(&s)
    }
}
impl From<SyscallName> for String {
    fn from(s: SyscallName) -> String {
        s.0
    }
}
#[cfg(feature = "schema")]
crate::path::string_schema!(
    SyscallName,
    "SyscallName",
    "A Linux syscall name, such as io_uring_setup"
);

// Constants from the uapi headers (linux/sched.h, asm-generic/ioctls.h, linux/stat.h,
// linux/personality.h, asm-generic/fcntl.h, linux/socket.h, linux/netlink.h);
// policy is pure so it does not link libc.
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWCGROUP: u64 = 0x0200_0000;
const CLONE_NEWUTS: u64 = 0x0400_0000;
const CLONE_NEWIPC: u64 = 0x0800_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_NEWNET: u64 = 0x4000_0000;
const CLONE_NEWTIME: u64 = 0x0000_0080;
pub const TIOCSTI: u64 = 0x5412;
pub const TIOCLINUX: u64 = 0x541C;
const S_ISUID: u64 = 0o4000;
const S_ISGID: u64 = 0o2000;
const S_IFMT: u64 = 0o170000;
const S_IFCHR: u64 = 0o020000;
const S_IFBLK: u64 = 0o060000;
/// Same value on x86_64 and aarch64 (both use asm-generic/fcntl.h for it).
const O_CREAT: u64 = 0o100;
/// The bit that makes O_TMPFILE (`__O_TMPFILE | O_DIRECTORY`). O_DIRECTORY
/// differs between x86_64 (0o200000) and aarch64 (0o40000), `__O_TMPFILE`
/// does not, and the kernel refuses `__O_TMPFILE` without O_DIRECTORY, so
/// testing this one bit catches every O_TMPFILE open on both.
const O_TMPFILE_BIT: u64 = 0o20_000_000;
const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_NETLINK: u64 = 16;
const NETLINK_ROUTE: u64 = 0;
const PER_LINUX: u64 = 0;
const PERSONALITY_QUERY: u64 = 0xffff_ffff;

fn always(syscall: &str, reason: &str) -> SyscallRule {
    SyscallRule {
        syscall: syscall.into(),
        when: vec![],
        reason: reason.into(),
    }
}

fn masked(syscall: &str, arg: u8, mask: u64, value: u64, reason: &str) -> SyscallRule {
    SyscallRule {
        syscall: syscall.into(),
        when: vec![ArgCond {
            arg,
            op: ArgOp::MaskedEq(mask),
            value,
            dword: true,
        }],
        reason: reason.into(),
    }
}

/// Syscalls answered with ENOSYS instead of EPERM: libc falls back to an
/// older call whose arguments seccomp can inspect.
pub fn baseline_enosys() -> Vec<SyscallRule> {
    vec![
        always(
            "clone3",
            "its flags live in memory seccomp cannot read; ENOSYS makes libc fall back to clone(2), whose namespace flags are filtered",
        ),
        always(
            "openat2",
            "its flags and mode live in memory seccomp cannot read; ENOSYS makes libc fall back to openat(2), whose set-id mode bits are filtered",
        ),
    ]
}

/// Socket families outside the allow-list, answered with EAFNOSUPPORT so a
/// program falls back as on a kernel built without them. The jail needs
/// unix, IPv4 and IPv6 sockets (its own network namespace decides where
/// they reach) and `NETLINK_ROUTE`, which glibc and musl use to list
/// interfaces (getifaddrs, getaddrinfo's AI_ADDRCONFIG) and which sees only
/// the jail's namespace. Everything else is refused: AF_VSOCK is not
/// namespaced (a jail with `net = "none"` could bind a port for the whole
/// VM), AF_PACKET, AF_ALG, AF_BLUETOOTH and the rest are kernel attack
/// surface no build needs, other netlink protocols (audit, uevents,
/// sock_diag) read or reach host-wide state.
pub fn baseline_eafnosupport() -> Vec<SyscallRule> {
    let dword = |arg, op, value| ArgCond {
        arg,
        op,
        value,
        dword: true,
    };
    let mut t = vec![];
    for s in ["socket", "socketpair"] {
        t.push(SyscallRule {
            syscall: s.into(),
            when: [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK]
                .into_iter()
                .map(|af| dword(0, ArgOp::Ne, af))
                .collect(),
            reason: "only unix, inet, inet6 and netlink sockets: other families (vsock, packet, alg, ...) are not namespaced or are kernel attack surface".into(),
        });
        t.push(SyscallRule {
            syscall: s.into(),
            when: vec![
                dword(0, ArgOp::Eq, AF_NETLINK),
                dword(2, ArgOp::Ne, NETLINK_ROUTE),
            ],
            reason: "netlink only for NETLINK_ROUTE (interface lists, in the jail's own network namespace)".into(),
        });
    }
    t
}

/// The baseline deny table (EPERM), in a stable order.
pub fn baseline_deny() -> Vec<SyscallRule> {
    let mut t = Vec::new();
    for s in [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
    ] {
        t.push(always(s, "reads or writes another process's memory or fds"));
    }
    for s in [
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ] {
        t.push(always(s, "changes the mount tree the jail was built from"));
    }
    t.push(always(
        "unshare",
        "creates namespaces that re-grant capabilities",
    ));
    t.push(always("setns", "joins another namespace"));
    for (flag, name) in [
        (CLONE_NEWUSER, "CLONE_NEWUSER"),
        (CLONE_NEWNS, "CLONE_NEWNS"),
        (CLONE_NEWPID, "CLONE_NEWPID"),
        (CLONE_NEWNET, "CLONE_NEWNET"),
        (CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
        (CLONE_NEWTIME, "CLONE_NEWTIME"),
    ] {
        t.push(SyscallRule {
            syscall: "clone".into(),
            when: vec![ArgCond {
                arg: 0,
                op: ArgOp::MaskedEq(flag),
                value: flag,
                dword: false,
            }],
            reason: format!("clone with {name} creates a namespace"),
        });
    }
    for s in ["open_by_handle_at", "name_to_handle_at"] {
        t.push(always(s, "opens files by handle, bypassing the mount tree"));
    }
    t.push(always("bpf", "loads kernel programs; large attack surface"));
    t.push(always(
        "perf_event_open",
        "kernel profiling; leaks and attack surface",
    ));
    for s in ["keyctl", "add_key", "request_key"] {
        t.push(always(s, "kernel keyrings are not namespaced"));
    }
    for s in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        t.push(always(
            s,
            "performs I/O (opens, sockets) without the syscalls this table filters",
        ));
    }
    t.push(always(
        "userfaultfd",
        "stalls kernel threads at will; a common exploit primitive",
    ));
    t.push(always(
        "memfd_secret",
        "memory the kernel itself cannot read (nor inspect for the host); no build needs it",
    ));
    for s in [
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
    ] {
        t.push(always(s, "loads or replaces kernel code"));
    }
    for s in [
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "quotactl",
        "quotactl_fd",
        "syslog",
    ] {
        t.push(always(s, "host-global administration"));
    }
    for s in ["settimeofday", "clock_settime", "clock_adjtime"] {
        t.push(always(s, "sets the host clock"));
    }
    for s in ["iopl", "ioperm", "modify_ldt"] {
        t.push(always(s, "raw hardware I/O or LDT: exploit surface"));
    }
    for s in ["uselib", "lookup_dcookie", "vhangup", "fanotify_init"] {
        t.push(always(s, "obsolete or host-wide; no build needs it"));
    }
    t.push(SyscallRule {
        syscall: "personality".into(),
        when: vec![
            ArgCond {
                arg: 0,
                op: ArgOp::Ne,
                value: PER_LINUX,
                dword: true,
            },
            ArgCond {
                arg: 0,
                op: ArgOp::Ne,
                value: PERSONALITY_QUERY,
                dword: true,
            },
        ],
        reason: "personality changes disable ASLR or alter syscall semantics".into(),
    });
    t.push(SyscallRule {
        syscall: "ioctl".into(),
        when: vec![ArgCond {
            arg: 1,
            op: ArgOp::Eq,
            value: TIOCSTI,
            dword: true,
        }],
        reason: "TIOCSTI pushes keystrokes into the controlling terminal outside the jail".into(),
    });
    t.push(SyscallRule {
        syscall: "ioctl".into(),
        when: vec![ArgCond {
            arg: 1,
            op: ArgOp::Eq,
            value: TIOCLINUX,
            dword: true,
        }],
        reason: "TIOCLINUX can inject console input and read the screen".into(),
    });
    for (s, arg) in [
        ("chmod", 1),
        ("fchmod", 1),
        ("fchmodat", 2),
        ("fchmodat2", 2),
    ] {
        for bit in [S_ISUID, S_ISGID] {
            t.push(masked(
                s,
                arg,
                bit,
                bit,
                "setuid/setgid bits would plant privilege for the host",
            ));
        }
    }
    // A new file's mode comes from open's mode argument, not only from
    // chmod: open(O_CREAT, 06755) plants a set-id file as surely. The mode
    // is looked at only when the flags create a file (it is ignored otherwise).
    for (s, flags, mode) in [
        ("open", Some(1), 2),
        ("openat", Some(2), 3),
        ("creat", None, 1),
    ] {
        for bit in [S_ISUID, S_ISGID] {
            let mode_has = ArgCond {
                arg: mode,
                op: ArgOp::MaskedEq(bit),
                value: bit,
                dword: true,
            };
            let creating: &[u64] = if flags.is_some() {
                &[O_CREAT, O_TMPFILE_BIT]
            } else {
                &[0] // creat(2) always creates
            };
            for &flag in creating {
                let mut when = vec![];
                if let Some(arg) = flags {
                    when.push(ArgCond {
                        arg,
                        op: ArgOp::MaskedEq(flag),
                        value: flag,
                        dword: true,
                    });
                }
                when.push(mode_has.clone());
                t.push(SyscallRule {
                    syscall: s.into(),
                    when,
                    reason:
                        "a file created with setuid/setgid bits would plant privilege for the host"
                            .into(),
                });
            }
        }
    }
    for (s, arg) in [("mknod", 1), ("mknodat", 2)] {
        for kind in [S_IFCHR, S_IFBLK] {
            t.push(masked(
                s,
                arg,
                S_IFMT,
                kind,
                "device nodes reach hardware outside the jail",
            ));
        }
        for bit in [S_ISUID, S_ISGID] {
            t.push(masked(
                s,
                arg,
                bit,
                bit,
                "setuid/setgid bits would plant privilege for the host",
            ));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_baseline_syscall_is_known_and_has_a_reason() {
        let all = [baseline_deny(), baseline_enosys(), baseline_eafnosupport()];
        for r in all.iter().flatten() {
            assert!(is_known_syscall(&r.syscall), "{}", r.syscall);
            assert!(!r.reason.is_empty(), "{}", r.syscall);
        }
    }

    #[test]
    fn refuses_unknown_syscall_names() {
        assert!(SyscallName::parse("io_uring_setup").is_ok());
        assert!(SyscallName::parse("io_uring_setupp").is_err());
    }
}
