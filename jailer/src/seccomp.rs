//! Step 12: seccomp, last before exec. Compiled in step 1 (pure), installed
//! here: filter A returns EPERM for the deny table, filter B returns ENOSYS
//! (so libc falls back, e.g. clone3 → clone) and, on x86_64, for every x32
//! syscall number, which a table keyed by x86_64 numbers cannot cover.
use crate::error::JailError;
use aiops_policy::plan::SeccompPlan;
use aiops_policy::syscalls::{ArgOp, SyscallRule};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::{BTreeMap, BTreeSet};
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

fn se(what: impl Into<String>) -> impl FnOnce(seccompiler::BackendError) -> JailError {
    let what = what.into();
    move |e| JailError::Seccomp {
        what: format!("{what}: {e}"),
        errno: 0,
    }
}

fn condition(c: &aiops_policy::syscalls::ArgCond) -> Result<SeccompCondition, JailError> {
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
    SeccompCondition::new(c.arg, len, op, c.value).map_err(se(format!("arg {} condition", c.arg)))
}

/// Resolve names for the native arch and group rules by syscall number; an
/// unconditional rule makes the whole syscall match.
fn table(rules: &[SyscallRule]) -> Result<(BTreeMap<i64, Vec<SeccompRule>>, usize), JailError> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut always = BTreeSet::new();
    let mut used = 0;
    for r in rules {
        let Ok(nr) = syscalls::Sysno::from_str(&r.syscall) else {
            continue; // not on this architecture: it cannot be called
        };
        used += 1;
        let nr = i64::from(nr.id());
        let entry = map.entry(nr).or_default();
        if r.when.is_empty() {
            always.insert(nr);
        } else {
            let conds = r
                .when
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            entry.push(SeccompRule::new(conds).map_err(se(format!("rule for {}", r.syscall)))?);
        }
    }
    for nr in always {
        map.insert(nr, vec![]);
    }
    Ok((map, used))
}

fn arch() -> Result<TargetArch, JailError> {
    std::env::consts::ARCH.try_into().map_err(se("target arch"))
}

fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, JailError> {
    let errno = u32::try_from(errno).unwrap_or(1);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch,
    )
    .map_err(se("filter"))?;
    f.try_into().map_err(se("compile filter"))
}

// linux/filter.h, linux/seccomp.h, linux/audit.h
/// BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `__X32_SYSCALL_BIT` (asm/unistd.h).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Kill on a foreign arch (as seccompiler does), ENOSYS for nr ≥ the x32 bit.
fn x32_guard() -> Vec<sock_filter> {
    vec![
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        insn(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        insn(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

pub fn compile(plan: &SeccompPlan) -> Result<Filters, JailError> {
    let arch = arch()?;
    let (eperm, n1) = table(&plan.deny_eperm)?;
    let (enosys, n2) = table(&plan.deny_enosys)?;
    let a = program(eperm, libc::EPERM, arch)?;
    let mut b = program(enosys, libc::ENOSYS, arch)?;
    let x32_denied = plan.block_x32 && cfg!(target_arch = "x86_64");
    if x32_denied {
        // Jumps in BPF are relative, so prefixing keeps b's offsets valid.
        let mut g = x32_guard();
        g.append(&mut b);
        b = g;
    }
    Ok(Filters {
        programs: vec![a, b],
        rules: n1 + n2,
        x32_denied,
    })
}

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
