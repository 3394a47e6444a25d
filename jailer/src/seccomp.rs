//! Step 12: seccomp, last before exec. The filters are compiled in step 1
//! (pure, so a bad table fails before anything changed) with seccompiler:
//! A: the `deny_eperm` table → EPERM, everything else allowed;
//! B: the `deny_enosys` table → ENOSYS (clone3, so libc falls back to a
//!    clone(2) whose namespace flags A can see), preceded on x86_64 by a
//!    six-instruction guard that answers every x32 syscall number
//!    (nr | 0x40000000) with ENOSYS: a table keyed by x86_64 numbers cannot
//!    cover those, and seccompiler cannot express a range.
//! seccompiler kills a foreign architecture in both.
use crate::error::JailError;
use aiops_policy::plan::SeccompPlan;
use aiops_policy::syscalls::{ArgCond, ArgOp, SyscallRule};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::str::FromStr;

pub struct Filters {
    programs: Vec<BpfProgram>,
    /// Rules of the plan that exist on this architecture (the rest cannot be called).
    pub rules: usize,
    pub x32_denied: bool,
}

impl Filters {
    pub fn layer_name(&self) -> String {
        if self.x32_denied {
            format!("seccomp({} rules; x32 ABI denied)", self.rules)
        } else {
            format!("seccomp({} rules)", self.rules)
        }
    }
}

fn se(what: impl Into<String>) -> JailError {
    JailError::Seccomp {
        what: what.into(),
        errno: 0,
    }
}

fn condition(c: &ArgCond) -> Result<SeccompCondition, JailError> {
    let len = if c.dword {
        SeccompCmpArgLen::Dword
    } else {
        SeccompCmpArgLen::Qword
    };
    let op = match c.op {
        ArgOp::Eq => SeccompCmpOp::Eq,
        ArgOp::Ne => SeccompCmpOp::Ne,
        ArgOp::MaskedEq(m) => SeccompCmpOp::MaskedEq(m),
    };
    SeccompCondition::new(c.arg, len, op, c.value).map_err(|e| se(format!("condition: {e}")))
}

/// Rules keyed by this architecture's syscall numbers; names absent here are
/// skipped (they cannot be called). An unconditional rule for a syscall
/// absorbs its conditional ones (in seccompiler an empty chain always matches).
fn table(rules: &[SyscallRule]) -> Result<(BTreeMap<i64, Vec<SeccompRule>>, usize), JailError> {
    let mut map: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    let mut used = 0;
    for r in rules {
        let Ok(nr) = syscalls::Sysno::from_str(&r.syscall) else {
            continue;
        };
        used += 1;
        let entry = map
            .entry(i64::from(nr.id()))
            .or_insert_with(|| Some(vec![]));
        if r.when.is_empty() {
            *entry = None; // always
        } else if let Some(chain) = entry {
            let conds = r
                .when
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            chain
                .push(SeccompRule::new(conds).map_err(|e| se(format!("rule {}: {e}", r.syscall)))?);
        }
    }
    let map = map
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    Ok((map, used))
}

fn target_arch() -> Result<TargetArch, JailError> {
    std::env::consts::ARCH.try_into().map_err(|e| {
        se(format!(
            "no seccomp support for {}: {e}",
            std::env::consts::ARCH
        ))
    })
}

fn filter(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, JailError> {
    let errno = u32::try_from(errno).map_err(|_| se("negative errno"))?;
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        target_arch()?,
    )
    .map_err(|e| se(format!("filter: {e}")))?;
    BpfProgram::try_from(f).map_err(|e| se(format!("compile: {e}")))
}

// Classic BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h,
// linux/audit.h) for the x32 guard.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Runs first in filter B: kill a foreign arch, ENOSYS for x32 numbers,
/// then fall through into seccompiler's program (which reloads what it needs).
fn x32_guard() -> [sock_filter; 6] {
    [
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        insn(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        insn(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

pub fn compile(plan: &SeccompPlan) -> Result<Filters, JailError> {
    let (eperm, n1) = table(&plan.deny_eperm)?;
    let (enosys, n2) = table(&plan.deny_enosys)?;
    let x32_denied = plan.block_x32 && cfg!(target_arch = "x86_64");
    let mut programs = vec![filter(eperm, libc::EPERM)?];
    if !enosys.is_empty() || x32_denied {
        let mut b = filter(enosys, libc::ENOSYS)?;
        if x32_denied {
            b.splice(0..0, x32_guard());
        }
        programs.push(b);
    }
    Ok(Filters {
        programs,
        rules: n1 + n2,
        x32_denied,
    })
}

/// The kernel runs every attached filter and takes the strictest answer.
pub fn seccomp_install(f: &Filters) -> Result<(), JailError> {
    for p in &f.programs {
        seccompiler::apply_filter(p).map_err(|e| JailError::Seccomp {
            what: format!("install filter: {e}"),
            errno: match &e {
                seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(0),
                _ => 0,
            },
        })?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sys;
    use aiops_policy::syscalls::{baseline_deny, baseline_enosys};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::ForkResult;

    pub(crate) fn baseline() -> SeccompPlan {
        SeccompPlan {
            deny_eperm: baseline_deny(),
            deny_enosys: baseline_enosys(),
            block_x32: true,
        }
    }

    #[test]
    fn unknown_on_this_arch_names_are_skipped_not_counted() {
        let mut p = baseline();
        let before = compile(&p).unwrap().rules;
        // `arch_prctl` exists on x86_64 only; on aarch64 it is skipped.
        p.deny_eperm.push(SyscallRule {
            syscall: "arch_prctl".into(),
            when: vec![],
            reason: "test entry".into(),
        });
        let after = compile(&p).unwrap().rules;
        assert_eq!(after - before, usize::from(cfg!(target_arch = "x86_64")));
    }

    /// Installs the baseline in a forked child (which only makes syscalls)
    /// and issues the syscalls.
    #[test]
    fn baseline_table_holds_when_syscalls_are_issued() {
        let f = compile(&baseline()).unwrap();
        match sys::fork_single_threaded().unwrap() {
            ForkResult::Child => {
                let code = (|| {
                    nix::sys::prctl::set_no_new_privs().map_err(|_| 10)?;
                    seccomp_install(&f).map_err(|_| 11)?;
                    // Denied with EPERM.
                    let r = sys::raw_syscall2(libc::SYS_unshare, libc::CLONE_NEWUSER.into(), 0);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(12)?;
                    let r = sys::raw_syscall2(libc::SYS_io_uring_setup, 1, 0);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(13)?;
                    // ENOSYS, so libc falls back to clone(2).
                    let r = sys::raw_syscall2(libc::SYS_clone3, 0, 0);
                    (r == Err(libc::ENOSYS)).then_some(()).ok_or(14)?;
                    // Conditional rules: argument values decide (unfiltered: EBADF).
                    let tiocsti = 0x5412; // TIOCSTI (asm-generic/ioctls.h)
                    let r = sys::raw_syscall2(libc::SYS_ioctl, -1, tiocsti);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(16)?;
                    let r = sys::raw_syscall2(libc::SYS_ioctl, -1, libc::FIONREAD as libc::c_long);
                    (r == Err(libc::EBADF)).then_some(()).ok_or(17)?;
                    let r = sys::raw_syscall2(libc::SYS_fchmod, -1, 0o4755);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(18)?;
                    let r = sys::raw_syscall2(libc::SYS_fchmod, -1, 0o755);
                    (r == Err(libc::EBADF)).then_some(()).ok_or(19)?;
                    let r = sys::raw_syscall2(libc::SYS_personality, 0x0040000, 0);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(20)?;
                    // The x32 guard (filter B's hand-built prefix).
                    #[cfg(target_arch = "x86_64")]
                    {
                        let r = sys::raw_syscall2(libc::SYS_getpid | 0x4000_0000, 0, 0);
                        (r == Err(libc::ENOSYS)).then_some(()).ok_or(21)?;
                    }
                    // Allowed.
                    sys::raw_syscall2(libc::SYS_getpid, 0, 0).map_err(|_| 15)?;
                    Ok::<(), i32>(())
                })()
                .err()
                .unwrap_or(0);
                #[allow(clippy::exit)]
                std::process::exit(code)
            }
            ForkResult::Parent { child } => {
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            }
        }
    }
}
