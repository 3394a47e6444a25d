//! Step 12: seccomp, last before exec. The filters are compiled in step 1
//! (pure, so a bad table fails before anything changed): each syscall's
//! rules by seccompiler, behind a binary search on the number (`filter`):
//! A: the `deny_eperm` table → EPERM, everything else allowed;
//! B: the `deny_enosys` table → ENOSYS (clone3, so libc falls back to a
//!    clone(2) whose namespace flags A can see), preceded on x86_64 by a
//!    six-instruction guard that answers every x32 syscall number
//!    (nr | 0x40000000) with ENOSYS: a table keyed by x86_64 numbers cannot
//!    cover those, and seccompiler cannot express a range;
//! C: the `deny_eafnosupport` table → EAFNOSUPPORT (socket families
//!    outside the allow-list).
//! Each kills a foreign architecture (i386 on x86_64 too, so the 32-bit
//! `socketcall` and `open` numbers, which no table is keyed by, never run).
use crate::error::JailError;
use aiops_proto::plan::SeccompPlan;
use aiops_proto::syscalls::{ArgCond, ArgOp, SyscallRule};
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
fn table(rules: &[SyscallRule]) -> Result<BTreeMap<i64, Vec<SeccompRule>>, JailError> {
    let mut map: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for r in rules {
        let Ok(nr) = syscalls::Sysno::from_str(&r.syscall) else {
            continue;
        };
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
    Ok(map)
}

fn target_arch() -> Result<TargetArch, JailError> {
    std::env::consts::ARCH.try_into().map_err(|e| {
        se(format!(
            "no seccomp support for {}: {e}",
            std::env::consts::ARCH
        ))
    })
}

/// One filter: a binary search on the syscall number in front of one
/// complete seccompiler program per syscall with argument rules.
///
/// Why not seccompiler's own program: it tests the table's numbers one
/// after another, and the kernel, to fill its per-filter allow cache,
/// emulates the filter for every syscall number when it is attached: ~0.2
/// ms per jail for the baseline table. With the search each number takes
/// log2(n) steps, and the program is shorter for the JIT; the node's
/// syscalls that the cache cannot answer (those with argument rules) are
/// cheaper too.
///
/// A syscall denied outright ends at a shared `RET errno`. One with
/// argument rules jumps to what seccompiler emits for a one-entry table,
/// so those rules stay seccompiler's; a valid classic BPF program only
/// jumps forward within itself and every path ends in a return, so such
/// programs can be laid end to end. A foreign architecture is killed first.
fn filter(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, JailError> {
    let errno = u32::try_from(errno).map_err(|_| se("negative errno"))?;
    let arch = target_arch()?;
    let mut entries = Vec::with_capacity(rules.len());
    let mut leaves = vec![];
    for (nr, chain) in rules {
        let nr32 = u32::try_from(nr).map_err(|_| se(format!("syscall number {nr}")))?;
        if chain.is_empty() {
            entries.push((nr32, None));
            continue;
        }
        let one = SeccompFilter::new(
            BTreeMap::from([(nr, chain)]),
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
        .map_err(|e| se(format!("filter: {e}")))?;
        entries.push((nr32, Some(leaves.len())));
        leaves.push(BpfProgram::try_from(one).map_err(|e| se(format!("compile: {e}")))?);
    }
    let mut out = vec![
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        insn(BPF_JMP_JEQ_K, 1, 0, audit_arch()?),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
    ];
    let deny = SECCOMP_RET_ERRNO | (errno & 0xffff);
    // (index of a `JA` in `out`, the leaf it must reach), patched below.
    let mut to_leaf = vec![];
    search(&entries, deny, &mut out, &mut to_leaf)?;
    let mut starts = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        starts.push(out.len());
        out.extend(leaf);
    }
    for (at, leaf) in to_leaf {
        out[at].k = forward(at, starts[leaf])?;
    }
    if out.len() > BPF_MAXINSNS {
        return Err(se(format!(
            "filter of {} instructions exceeds {BPF_MAXINSNS}",
            out.len()
        )));
    }
    Ok(out)
}

/// Up to this many numbers are compared one by one at the bottom of the search.
const LINEAR: usize = 4;

/// Emit the search over `entries` (sorted by number; `Some(leaf)` for a
/// syscall with argument rules). At the bottom, per number, `JEQ nr` to
/// the group's `RET deny`, or `JEQ nr; JA leaf`; a number not in the table
/// reaches `RET allow`. Above, `JGE mid; JA right; <left>; <right>`.
fn search(
    entries: &[(u32, Option<usize>)],
    deny: u32,
    out: &mut Vec<sock_filter>,
    to_leaf: &mut Vec<(usize, usize)>,
) -> Result<(), JailError> {
    if entries.len() <= LINEAR {
        let mut to_deny = vec![];
        for (nr, leaf) in entries {
            match leaf {
                None => {
                    to_deny.push(out.len());
                    out.push(insn(BPF_JMP_JEQ_K, 0, 0, *nr));
                }
                Some(leaf) => {
                    out.push(insn(BPF_JMP_JEQ_K, 0, 1, *nr));
                    to_leaf.push((out.len(), *leaf));
                    out.push(insn(BPF_JMP_JA, 0, 0, 0));
                }
            }
        }
        out.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
        if !to_deny.is_empty() {
            let at = out.len();
            out.push(insn(BPF_RET_K, 0, 0, deny));
            for j in to_deny {
                // At most 2 * LINEAR instructions ahead.
                out[j].jt = u8::try_from(forward(j, at)?).map_err(|_| se("jump out of range"))?;
            }
        }
        return Ok(());
    }
    let mid = entries.len() / 2;
    // Taken (nr >= entries[mid]): the next instruction jumps over the left half.
    out.push(insn(BPF_JMP_JGE_K, 0, 1, entries[mid].0));
    let over_left = out.len();
    out.push(insn(BPF_JMP_JA, 0, 0, 0));
    search(&entries[..mid], deny, out, to_leaf)?;
    out[over_left].k = forward(over_left, out.len())?;
    search(&entries[mid..], deny, out, to_leaf)
}

/// The `k` of a `JA` at `from` that lands on `to`.
fn forward(from: usize, to: usize) -> Result<u32, JailError> {
    to.checked_sub(from + 1)
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| se("jump out of range"))
}

fn audit_arch() -> Result<u32, JailError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(AUDIT_ARCH_X86_64),
        "aarch64" => Ok(AUDIT_ARCH_AARCH64),
        a => Err(se(format!("no seccomp support for {a}"))),
    }
}

// Classic BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h,
// linux/audit.h) for the search and the x32 guard.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const BPF_MAXINSNS: usize = 4096;

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
    let eperm = table(&plan.deny_eperm)?;
    let enosys = table(&plan.deny_enosys)?;
    let eafnosupport = table(&plan.deny_eafnosupport)?;
    let x32_denied = plan.block_x32 && cfg!(target_arch = "x86_64");
    let mut programs = vec![filter(eperm, libc::EPERM)?];
    if !enosys.is_empty() || x32_denied {
        let mut b = filter(enosys, libc::ENOSYS)?;
        if x32_denied {
            b.splice(0..0, x32_guard());
        }
        programs.push(b);
    }
    if !eafnosupport.is_empty() {
        programs.push(filter(eafnosupport, libc::EAFNOSUPPORT)?);
    }
    Ok(Filters {
        programs,
        // The plan's own count, which `aiopsctl profile explain` prints too.
        rules: plan.rules_here(),
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
    use aiops_policy::syscalls::{baseline_deny, baseline_eafnosupport, baseline_enosys};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::ForkResult;

    pub(crate) fn baseline() -> SeccompPlan {
        SeccompPlan {
            deny_eperm: baseline_deny(),
            deny_enosys: baseline_enosys(),
            deny_eafnosupport: baseline_eafnosupport(),
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

    /// seccomp_data (linux/seccomp.h): nr, arch, instruction_pointer, args.
    fn data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_ne_bytes());
        d[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        d
    }

    /// Classic BPF as the kernel runs a seccomp filter, for the opcodes
    /// seccompiler and `filter` emit; anything else fails the test, as does
    /// running off the end.
    fn run(prog: &[sock_filter], d: &[u8; 64]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            let jump = |t: bool| usize::from(if t { i.jt } else { i.jf });
            match i.code {
                0x20 => {
                    let k = i.k as usize;
                    a = u32::from_ne_bytes(d[k..k + 4].try_into().unwrap());
                }
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += jump(a == i.k),
                0x25 => pc += jump(a > i.k),
                0x35 => pc += jump(a >= i.k),
                0x45 => pc += jump(a & i.k != 0),
                0x06 => return i.k,
                c => panic!("opcode {c:#x} at {}", pc - 1),
            }
        }
    }

    /// Argument vectors around every condition of `rules`: each rule's
    /// conditions all met, then each one missed in turn, plus all-zero and
    /// all-ones.
    fn probes(rules: &[SyscallRule]) -> Vec<[u64; 6]> {
        let mut out = vec![[0; 6], [u64::MAX; 6]];
        for r in rules {
            let mut met = [0u64; 6];
            for c in &r.when {
                met[usize::from(c.arg)] = match c.op {
                    ArgOp::Eq | ArgOp::MaskedEq(_) => c.value,
                    ArgOp::Ne => c.value ^ 1,
                };
            }
            out.push(met);
            for c in &r.when {
                let i = usize::from(c.arg);
                for v in [c.value, c.value ^ 1, c.value | (1 << 32), !c.value, 0] {
                    let mut p = met;
                    p[i] = v;
                    out.push(p);
                }
                if let ArgOp::MaskedEq(m) = c.op {
                    let mut p = met;
                    p[i] = c.value ^ (m & m.wrapping_neg()); // flip the mask's lowest bit
                    out.push(p);
                }
            }
        }
        out
    }

    /// The search answers exactly as seccompiler's own linear program for
    /// every syscall number (and the x32 range), a foreign architecture, and
    /// argument values on both sides of every condition of the baseline.
    #[test]
    fn search_tree_answers_as_the_linear_program() {
        let plan = baseline();
        for (rules, errno) in [
            (&plan.deny_eperm, libc::EPERM),
            (&plan.deny_enosys, libc::ENOSYS),
            (&plan.deny_eafnosupport, libc::EAFNOSUPPORT),
        ] {
            let tree = filter(table(rules).unwrap(), errno).unwrap();
            let linear = BpfProgram::try_from(
                SeccompFilter::new(
                    table(rules).unwrap(),
                    SeccompAction::Allow,
                    SeccompAction::Errno(errno as u32),
                    target_arch().unwrap(),
                )
                .unwrap(),
            )
            .unwrap();
            let arch = audit_arch().unwrap();
            let args = probes(rules);
            let (mut denied, mut allowed) = (0, 0);
            let nrs = (0..1000u32).chain((0..1000).map(|n| n | X32_SYSCALL_BIT));
            for nr in nrs {
                for a in &args {
                    let d = data(nr, arch, *a);
                    let got = run(&tree, &d);
                    assert_eq!(got, run(&linear, &d), "nr {nr} args {a:x?}");
                    if got == SECCOMP_RET_ALLOW {
                        allowed += 1
                    } else {
                        denied += 1
                    }
                }
                let foreign = data(nr, 0x4000_0003, [0; 6]); // AUDIT_ARCH_I386
                assert_eq!(run(&tree, &foreign), SECCOMP_RET_KILL_PROCESS);
                assert_eq!(run(&linear, &foreign), SECCOMP_RET_KILL_PROCESS);
            }
            // Neither side may pass by answering one thing for everything.
            assert!(
                denied >= rules.len() && allowed > denied,
                "{denied} {allowed}"
            );
        }
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
                    // openat2: ENOSYS, so libc falls back to openat(2).
                    let r = sys::raw_syscall2(libc::SYS_openat2, -1, 0);
                    (r == Err(libc::ENOSYS)).then_some(()).ok_or(22)?;
                    let r = sys::raw_syscall2(libc::SYS_memfd_secret, 0, 0);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(23)?;
                    // Socket families: an allow-list (unfiltered, a null
                    // address for socketpair's fds: EFAULT or EOPNOTSUPP).
                    let r = sys::raw_syscall4(
                        libc::SYS_socket,
                        libc::AF_VSOCK.into(),
                        libc::SOCK_STREAM.into(),
                        0,
                        0,
                    );
                    (r == Err(libc::EAFNOSUPPORT)).then_some(()).ok_or(24)?;
                    let r = sys::raw_syscall4(
                        libc::SYS_socket,
                        libc::AF_PACKET.into(),
                        libc::SOCK_RAW.into(),
                        0,
                        0,
                    );
                    (r == Err(libc::EAFNOSUPPORT)).then_some(()).ok_or(25)?;
                    // NETLINK_AUDIT (9): refused; NETLINK_ROUTE: allowed.
                    let r = sys::raw_syscall4(
                        libc::SYS_socket,
                        libc::AF_NETLINK.into(),
                        libc::SOCK_RAW.into(),
                        9,
                        0,
                    );
                    (r == Err(libc::EAFNOSUPPORT)).then_some(()).ok_or(26)?;
                    let r = sys::raw_syscall4(
                        libc::SYS_socket,
                        libc::AF_NETLINK.into(),
                        libc::SOCK_RAW.into(),
                        0,
                        0,
                    );
                    r.map_err(|_| 27)?;
                    let r = sys::raw_syscall4(
                        libc::SYS_socket,
                        libc::AF_UNIX.into(),
                        libc::SOCK_STREAM.into(),
                        0,
                        0,
                    );
                    r.map_err(|_| 28)?;
                    let r = sys::raw_syscall4(
                        libc::SYS_socketpair,
                        libc::AF_VSOCK.into(),
                        libc::SOCK_STREAM.into(),
                        0,
                        0,
                    );
                    (r == Err(libc::EAFNOSUPPORT)).then_some(()).ok_or(29)?;
                    // open/openat/creat with set-id bits: refused only when creating.
                    let r =
                        sys::raw_syscall4(libc::SYS_openat, -1, 0, libc::O_CREAT.into(), 0o4755);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(30)?;
                    let r =
                        sys::raw_syscall4(libc::SYS_openat, -1, 0, libc::O_TMPFILE.into(), 0o2755);
                    (r == Err(libc::EPERM)).then_some(()).ok_or(31)?;
                    let r = sys::raw_syscall4(libc::SYS_openat, -1, 0, libc::O_CREAT.into(), 0o755);
                    (r == Err(libc::EFAULT)).then_some(()).ok_or(32)?;
                    let r =
                        sys::raw_syscall4(libc::SYS_openat, -1, 0, libc::O_RDONLY.into(), 0o4755);
                    (r == Err(libc::EFAULT)).then_some(()).ok_or(33)?;
                    #[cfg(target_arch = "x86_64")]
                    {
                        let r = sys::raw_syscall2(libc::SYS_creat, 0, 0o6755);
                        (r == Err(libc::EPERM)).then_some(()).ok_or(34)?;
                        let r =
                            sys::raw_syscall4(libc::SYS_open, 0, libc::O_CREAT.into(), 0o4700, 0);
                        (r == Err(libc::EPERM)).then_some(()).ok_or(35)?;
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
