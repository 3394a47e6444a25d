//! Step 12: seccomp, last before exec. Compiled in step 1 (pure), installed
//! here as ONE filter (see bpf.rs for why not seccompiler's two): the
//! `deny_eperm` rules return EPERM, the `deny_enosys` rules ENOSYS (so libc
//! falls back, e.g. clone3 → clone), and on x86_64 every x32 syscall number
//! (nr | 0x40000000) returns ENOSYS, which a table keyed by x86_64 numbers
//! cannot cover. A foreign architecture is killed, as seccompiler does.
use crate::bpf::{self, Cond, Rule, SECCOMP_RET_ERRNO};
use crate::error::JailError;
use aiops_policy::plan::SeccompPlan;
use aiops_policy::syscalls::{ArgCond, ArgOp, SyscallRule};
use seccompiler::BpfProgram;
use std::str::FromStr;

pub struct Filters {
    program: BpfProgram,
    /// Rules of the plan that exist on this architecture (the rest cannot be called).
    pub rules: usize,
    pub x32_denied: bool,
}

impl Filters {
    #[cfg(test)]
    pub fn program(&self) -> &[seccompiler::sock_filter] {
        &self.program
    }

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

fn cond(c: &ArgCond) -> Cond {
    let (mask, eq) = match c.op {
        ArgOp::Eq => (u64::MAX, true),
        ArgOp::Ne => (u64::MAX, false),
        ArgOp::MaskedEq(m) => (m, true),
    };
    Cond {
        arg: c.arg,
        dword: c.dword,
        mask,
        eq,
        value: c.value,
    }
}

fn ret_errno(e: i32) -> u32 {
    SECCOMP_RET_ERRNO | (u32::try_from(e).unwrap_or(1) & 0xffff)
}

/// Resolve names for the native arch; names absent here are skipped.
fn resolve(rules: &[SyscallRule], errno: i32, out: &mut Vec<Rule>) -> usize {
    let mut used = 0;
    for r in rules {
        let Ok(nr) = syscalls::Sysno::from_str(&r.syscall) else {
            continue; // not on this architecture: it cannot be called
        };
        let Ok(nr) = u32::try_from(nr.id()) else {
            continue;
        };
        used += 1;
        out.push(Rule {
            nr,
            conds: r.when.iter().map(cond).collect(),
            ret: ret_errno(errno),
        });
    }
    used
}

/// AUDIT_ARCH_* of the build target (linux/audit.h).
fn audit_arch() -> Result<u32, JailError> {
    if cfg!(target_arch = "x86_64") {
        Ok(0xc000_003e)
    } else if cfg!(target_arch = "aarch64") {
        Ok(0xc000_00b7)
    } else {
        Err(se(format!(
            "no seccomp support for {}",
            std::env::consts::ARCH
        )))
    }
}

pub fn compile(plan: &SeccompPlan) -> Result<Filters, JailError> {
    let mut rules = vec![];
    // EPERM rules first: on a syscall in both tables the first match wins.
    let n = resolve(&plan.deny_eperm, libc::EPERM, &mut rules)
        + resolve(&plan.deny_enosys, libc::ENOSYS, &mut rules);
    for r in &rules {
        if r.conds.iter().any(|c| c.arg > 5) {
            return Err(se("argument index above 5"));
        }
    }
    let x32_denied = plan.block_x32 && cfg!(target_arch = "x86_64");
    let program = bpf::assemble(
        audit_arch()?,
        x32_denied.then(|| ret_errno(libc::ENOSYS)),
        &rules,
    )
    .map_err(se)?;
    Ok(Filters {
        program,
        rules: n,
        x32_denied,
    })
}

pub fn seccomp_install(f: &Filters) -> Result<(), JailError> {
    seccompiler::apply_filter(&f.program).map_err(|e| JailError::Seccomp {
        what: format!("install filter: {e}"),
        errno: match &e {
            seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(0),
            _ => 0,
        },
    })
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
