//! Rendering of the two kernel filters of a plan: the Landlock table (rights
//! condensed into words) and the seccomp table (conditions made readable).
use super::explain::section;
use super::profile::WIDTH;
use super::table::Table;
use aiops_policy::compile::WRITE_RIGHTS;
use aiops_policy::plan::{FsAccess, JailPlan, Scope};
use aiops_policy::syscalls::{ArgCond, ArgOp, SyscallRule, TIOCLINUX, TIOCSTI};
use std::fmt::Write as _;

fn access_words(access: &[FsAccess], handled: &[FsAccess]) -> String {
    const READ: &[FsAccess] = aiops_policy::compile::READ_RIGHTS;
    let write: Vec<FsAccess> = WRITE_RIGHTS
        .iter()
        .copied()
        .filter(|a| handled.contains(a))
        .collect();
    let mut rest: Vec<FsAccess> = access.to_vec();
    let mut words = vec![];
    let mut take = |group: &[FsAccess], word: &str, rest: &mut Vec<FsAccess>| {
        if !group.is_empty() && group.iter().all(|a| rest.contains(a)) {
            rest.retain(|a| !group.contains(a));
            words.push(word.to_string());
        }
    };
    take(READ, "read", &mut rest);
    take(&write, "write", &mut rest);
    take(&[FsAccess::Execute], "exec", &mut rest);
    words.extend(rest.iter().map(|a| fs_name(*a).to_string()));
    words.join(" ")
}

fn fs_name(a: FsAccess) -> &'static str {
    match a {
        FsAccess::Execute => "execute",
        FsAccess::WriteFile => "write_file",
        FsAccess::ReadFile => "read_file",
        FsAccess::ReadDir => "read_dir",
        FsAccess::RemoveDir => "remove_dir",
        FsAccess::RemoveFile => "remove_file",
        FsAccess::MakeChar => "make_char",
        FsAccess::MakeDir => "make_dir",
        FsAccess::MakeReg => "make_reg",
        FsAccess::MakeSock => "make_sock",
        FsAccess::MakeFifo => "make_fifo",
        FsAccess::MakeBlock => "make_block",
        FsAccess::MakeSym => "make_sym",
        FsAccess::Refer => "refer",
        FsAccess::Truncate => "truncate",
        FsAccess::IoctlDev => "ioctl_dev",
    }
}

pub fn landlock(s: &mut String, plan: &JailPlan) {
    let Some(ll) = &plan.landlock else {
        section(s, "Landlock", "");
        let _ = writeln!(
            s,
            "  not applied: this host has no Landlock (mounts alone limit the file system)"
        );
        return;
    };
    section(
        s,
        "Landlock",
        &format!(
            "ABI {}, a hard requirement: an older kernel refuses the node",
            ll.abi
        ),
    );
    let _ = writeln!(
        s,
        "  {} file-system rights handled; a path not listed gets none of them",
        ll.handled_fs.len()
    );
    let mut t = Table::new(2).wrap_total(WIDTH);
    t.row(["path", "rights"]);
    for r in &ll.fs {
        t.row([r.path.to_string(), access_words(&r.access, &ll.handled_fs)]);
    }
    s.push_str(&t.render());
    let write: Vec<&str> = WRITE_RIGHTS
        .iter()
        .filter(|a| ll.handled_fs.contains(a))
        .map(|a| fs_name(*a))
        .collect();
    let mut legend = Table::new(4).wrap_total(WIDTH);
    legend.row(["read =", "read_file read_dir"]);
    legend.row(["write =".to_string(), write.join(" ")]);
    s.push_str(&legend.render());
    let mut t = Table::new(2).wrap_total(WIDTH);
    let tcp = match &ll.tcp {
        None if ll.abi < 4 => "not filtered (TCP rules need ABI 4)".to_string(),
        None => format!("not handled (net mode {})", plan.net.mode),
        Some(r) if r.connect.is_empty() && r.bind.is_empty() => {
            "all connect and bind denied".to_string()
        }
        Some(r) => format!(
            "connect only to port {}; bind {}",
            ports(&r.connect),
            ports(&r.bind)
        ),
    };
    t.row(["tcp".to_string(), tcp]);
    let scopes = if ll.scopes.is_empty() {
        "none (scopes need ABI 6)".to_string()
    } else {
        ll.scopes
            .iter()
            .map(|sc| match sc {
                Scope::AbstractUnixSocket => "abstract unix sockets",
                Scope::Signal => "signals",
            })
            .collect::<Vec<_>>()
            .join(", ")
            + " stay inside the jail"
    };
    t.row(["scopes".to_string(), scopes]);
    s.push_str(&t.render());
}

fn ports(p: &[u16]) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Mode arguments read best in octal; everything else in hex.
fn is_mode_syscall(name: &str) -> bool {
    matches!(
        name,
        "chmod"
            | "fchmod"
            | "fchmodat"
            | "fchmodat2"
            | "mknod"
            | "mknodat"
            | "open"
            | "openat"
            | "creat"
    )
}

fn is_open(name: &str) -> bool {
    matches!(name, "open" | "openat" | "creat")
}

/// open(2)'s flag and mode bits the baseline tests (asm-generic/fcntl.h,
/// linux/stat.h; `__O_TMPFILE` shown as O_TMPFILE, whose defining bit it is).
fn open_bit(v: u64) -> Option<&'static str> {
    match v {
        0o100 => Some("O_CREAT"),
        0o20_000_000 => Some("O_TMPFILE"),
        0o4000 => Some("S_ISUID"),
        0o2000 => Some("S_ISGID"),
        _ => None,
    }
}

fn num(v: u64, octal: bool) -> String {
    match v {
        TIOCSTI if !octal => "TIOCSTI".into(),
        TIOCLINUX if !octal => "TIOCLINUX".into(),
        _ if octal => format!("0o{v:o}"),
        _ if v < 10 => v.to_string(),
        _ => format!("{v:#x}"),
    }
}

/// `arg1 & 0o4000 == 0o4000`, `arg1 == TIOCSTI`; `always` for no condition.
pub fn render_condition(rule: &SyscallRule) -> String {
    if rule.when.is_empty() {
        return "always".into();
    }
    let octal = is_mode_syscall(&rule.syscall);
    let decimal = matches!(rule.syscall.as_str(), "socket" | "socketpair");
    let num = |v: u64, octal: bool| {
        if decimal {
            v.to_string()
        } else {
            num(v, octal)
        }
    };
    // An allow-list (socket families): `arg0 not in {1, 2, 10, 16}`.
    if let [first, rest @ ..] = rule.when.as_slice() {
        let all_ne = rule
            .when
            .iter()
            .all(|c| c.op == ArgOp::Ne && c.arg == first.arg);
        if all_ne && rest.len() >= 2 {
            let vals: Vec<String> = rule.when.iter().map(|c| num(c.value, octal)).collect();
            return format!("arg{} not in {{{}}}", first.arg, vals.join(", "));
        }
    }
    let named = |c: &ArgCond| match c.op {
        // A single flag or mode bit of open(2) by its name: `arg1 & O_CREAT`.
        ArgOp::MaskedEq(m) if m == c.value && is_open(&rule.syscall) => {
            open_bit(m).map(|name| format!("arg{} & {name}", c.arg))
        }
        _ => None,
    };
    let one = |c: &ArgCond| {
        named(c).unwrap_or_else(|| match &c.op {
            ArgOp::Eq => format!("arg{} == {}", c.arg, num(c.value, octal)),
            ArgOp::Ne => format!("arg{} != {}", c.arg, num(c.value, octal)),
            ArgOp::MaskedEq(m) => format!(
                "arg{} & {} == {}",
                c.arg,
                num(*m, octal),
                num(c.value, octal)
            ),
        })
    };
    rule.when.iter().map(one).collect::<Vec<_>>().join(" && ")
}

pub fn seccomp(s: &mut String, plan: &JailPlan) {
    let Some(sc) = &plan.seccomp else {
        section(s, "Seccomp", "");
        let _ = writeln!(s, "  not applied: this host has no seccomp filters");
        return;
    };
    // The number the jailer's layer line gives (`seccomp(N rules)`).
    let n = sc.rules_here();
    let x32 = if sc.block_x32 {
        "; x32 syscall numbers killed"
    } else {
        ""
    };
    let absent = sc.absent_here();
    let absent = if absent.is_empty() {
        String::new()
    } else {
        format!(
            " (and {} for syscalls {} lacks: {})",
            absent.len(),
            std::env::consts::ARCH,
            absent.join(", ")
        )
    };
    section(
        s,
        "Seccomp",
        &format!("default allow; {n} rules deny{absent}{x32}"),
    );
    // Wider than the rest: four columns, and a reason reads badly broken up.
    let mut t = Table::new(2).wrap_total(SECCOMP_WIDTH);
    t.row(["syscall", "when", "action", "reason"]);
    let rows = sc
        .deny_eperm
        .iter()
        .map(|r| (r, "EPERM"))
        .chain(sc.deny_enosys.iter().map(|r| (r, "ENOSYS")))
        .chain(sc.deny_eafnosupport.iter().map(|r| (r, "EAFNOSUPPORT")));
    let mut last_reason: Option<&str> = None;
    for (r, action) in rows {
        // A ditto mark keeps runs of one reason (11 mount calls) from drowning the table.
        let reason = if last_reason == Some(r.reason.as_str()) {
            "\"".to_string()
        } else {
            r.reason.clone()
        };
        last_reason = Some(r.reason.as_str());
        t.row([
            r.syscall.clone(),
            render_condition(r),
            action.to_string(),
            reason,
        ]);
    }
    s.push_str(&t.render());
}

const SECCOMP_WIDTH: usize = 120;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aiops_policy::syscalls::baseline_deny;

    fn rule(name: &str) -> SyscallRule {
        baseline_deny()
            .into_iter()
            .find(|r| r.syscall == name)
            .unwrap()
    }

    #[test]
    fn renders_conditions_readably() {
        assert_eq!(render_condition(&rule("ptrace")), "always");
        assert_eq!(render_condition(&rule("chmod")), "arg1 & 0o4000 == 0o4000");
        assert_eq!(render_condition(&rule("ioctl")), "arg1 == TIOCSTI");
        assert_eq!(
            render_condition(&rule("clone")),
            "arg0 & 0x10000000 == 0x10000000"
        );
        assert_eq!(
            render_condition(&rule("personality")),
            "arg0 != 0 && arg0 != 0xffffffff"
        );
        assert_eq!(
            render_condition(&rule("mknod")),
            "arg1 & 0o170000 == 0o20000"
        );
        assert_eq!(
            render_condition(&rule("openat")),
            "arg2 & O_CREAT && arg3 & S_ISUID"
        );
        let sockets = aiops_policy::syscalls::baseline_eafnosupport();
        assert_eq!(render_condition(&sockets[0]), "arg0 not in {1, 2, 10, 16}");
        assert_eq!(render_condition(&sockets[1]), "arg0 == 16 && arg2 != 0");
    }

    #[test]
    fn condenses_landlock_rights_into_words() {
        let handled: Vec<FsAccess> = FsAccess::ALL.to_vec();
        assert_eq!(
            access_words(
                &[FsAccess::ReadFile, FsAccess::ReadDir, FsAccess::Execute],
                &handled
            ),
            "read exec"
        );
        let mut rw = vec![FsAccess::ReadFile, FsAccess::ReadDir];
        rw.extend(WRITE_RIGHTS);
        assert_eq!(access_words(&rw, &handled), "read write");
        // At ABI 1 there is no refer or truncate: "write" means what is handled.
        let abi1: Vec<FsAccess> = FsAccess::ALL
            .iter()
            .copied()
            .filter(|a| a.abi() == 1)
            .collect();
        let rw1: Vec<FsAccess> = rw.iter().copied().filter(|a| abi1.contains(a)).collect();
        assert_eq!(access_words(&rw1, &abi1), "read write");
        assert_eq!(
            access_words(&[FsAccess::ReadFile, FsAccess::IoctlDev], &handled),
            "read_file ioctl_dev"
        );
    }
}
