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
use std::os::fd::OwnedFd;
use std::str::FromStr;

pub struct Filters {
    /// A, B and C laid end to end as one program (`chain`), answering with
    /// each table's errno: what the kernel would answer with the three
    /// attached, and what the recorder evaluates to learn a denial's errno.
    pub program: BpfProgram,
    /// Rules of the plan that exist on this architecture (the rest cannot be called).
    pub rules: usize,
    pub x32_denied: bool,
}

/// What step 12 attached: whether the waiting parent records denials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// The parent holds the listener: each denied call is counted there.
    On,
    /// The jail runs inside another seccomp listener's (nested aiops):
    /// the kernel allows one listener per process, so denials are not counted.
    Nested,
    /// Not asked for (tests).
    Off,
}

impl Filters {
    pub fn layer_name(&self, rec: Recording) -> String {
        let x32 = if self.x32_denied {
            "; x32 ABI denied"
        } else {
            ""
        };
        let rec = match rec {
            Recording::On => "; denials recorded",
            Recording::Nested => "; denials not recorded (nested listener)",
            Recording::Off => "",
        };
        format!("seccomp({} rules{x32}{rec})", self.rules)
    }

    /// The program attached with a listener: every `RET ERRNO` becomes
    /// `RET USER_NOTIF`, so a denied call waits for the parent, which
    /// answers with the errno `program` gives (never lets it run); the
    /// allowed calls take the same paths and never reach user space.
    ///
    /// In front, `watch_prefix`: `connect`, and `sendto` with an address,
    /// also wait for the parent, which records where they go and lets
    /// them continue only when `program` allows them.
    pub fn notifying(&self) -> Result<BpfProgram, JailError> {
        let mut out = watch_prefix()?;
        out.extend(self.program.iter().map(|i| {
            if i.code == BPF_RET_K && i.k & SECCOMP_RET_ACTION_FULL == SECCOMP_RET_ERRNO {
                insn(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF)
            } else {
                i.clone()
            }
        }));
        if out.len() > BPF_MAXINSNS {
            return Err(se(format!(
                "filter of {} instructions exceeds {BPF_MAXINSNS}",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// The calls the parent records (never decides): where a node connects
/// or sends a datagram, including those the network layers will refuse.
pub const WATCHED: [(i64, &str); 2] =
    [(libc::SYS_connect, "connect"), (libc::SYS_sendto, "sendto")];

/// Where a watched call's address is: (pointer, length) among its arguments.
pub fn watched_addr(nr: i64, args: &[u64; 6]) -> Option<(u64, u64)> {
    match nr {
        libc::SYS_connect => Some((args[1], args[2])),
        libc::SYS_sendto => Some((args[4], args[5])),
        _ => None,
    }
}

/// Kill a foreign arch; `connect`, and `sendto` whose address (arg 4) is
/// not NULL, answer USER_NOTIF; everything else falls through to the
/// program laid after it.
fn watch_prefix() -> Result<BpfProgram, JailError> {
    let nr = |n: i64| u32::try_from(n).map_err(|_| se(format!("syscall number {n}")));
    const ARG4_LO: u32 = 16 + 8 * 4;
    const ARG4_HI: u32 = ARG4_LO + 4;
    Ok(vec![
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        insn(BPF_JMP_JEQ_K, 1, 0, audit_arch()?),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        // connect: to the RET USER_NOTIF below.
        insn(BPF_JMP_JEQ_K, 5, 0, nr(libc::SYS_connect)?),
        // sendto: with an address (either half non-zero).
        insn(BPF_JMP_JEQ_K, 0, 5, nr(libc::SYS_sendto)?),
        insn(BPF_LD_W_ABS, 0, 0, ARG4_LO),
        insn(BPF_JMP_JEQ_K, 0, 2, 0),
        insn(BPF_LD_W_ABS, 0, 0, ARG4_HI),
        insn(BPF_JMP_JEQ_K, 1, 0, 0),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF),
        // Fall through: the program after this reloads what it needs.
    ])
}

/// One program from several, in the order the kernel runs attached
/// filters (the last attached first), each program's `RET ALLOW` turned
/// into a jump to the next one's start. Same answers: a foreign arch is
/// killed by the first, and the first denial met is what the kernel
/// would pick among errno answers of equal precedence.
fn chain(programs: Vec<BpfProgram>) -> Result<BpfProgram, JailError> {
    let mut out: BpfProgram = vec![];
    let mut pending: Vec<usize> = vec![];
    for p in programs.into_iter().rev() {
        let start = out.len();
        for at in pending.drain(..) {
            out[at] = insn(BPF_JMP_JA, 0, 0, forward(at, start)?);
        }
        for (i, ins) in p.into_iter().enumerate() {
            if ins.code == BPF_RET_K && ins.k == SECCOMP_RET_ALLOW {
                pending.push(start + i);
            }
            out.push(ins);
        }
    }
    // The last program's allows stay `RET ALLOW`.
    if out.len() > BPF_MAXINSNS {
        return Err(se(format!(
            "filter of {} instructions exceeds {BPF_MAXINSNS}",
            out.len()
        )));
    }
    Ok(out)
}

/// Run `prog` on `data` (a `struct seccomp_data`) as the kernel would, for
/// the opcodes `filter` and seccompiler emit. `None` for anything else:
/// an unknown opcode, a load past the data, running off the end. Jumps
/// only go forward, so it ends within `prog.len()` steps.
pub fn eval(prog: &[sock_filter], data: &[u8; 64]) -> Option<u32> {
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = prog.get(pc)?;
        pc += 1;
        let jump = |t: bool| usize::from(if t { i.jt } else { i.jf });
        match i.code {
            BPF_LD_W_ABS => {
                let k = usize::try_from(i.k).ok()?;
                a = u32::from_ne_bytes(data.get(k..k.checked_add(4)?)?.try_into().ok()?);
            }
            BPF_ALU_AND_K => a &= i.k,
            BPF_JMP_JA => pc = pc.checked_add(usize::try_from(i.k).ok()?)?,
            BPF_JMP_JEQ_K => pc += jump(a == i.k),
            BPF_JMP_JGT_K => pc += jump(a > i.k),
            BPF_JMP_JGE_K => pc += jump(a >= i.k),
            BPF_JMP_JSET_K => pc += jump(a & i.k != 0),
            BPF_RET_K => return Some(i.k),
            _ => return None,
        }
    }
}

/// The errno `prog` answers for a call, or `None` when it would not deny
/// it with an errno (the recorder then answers EPERM: never let it run).
pub fn denial_errno(prog: &[sock_filter], data: &[u8; 64]) -> Option<i32> {
    let ret = eval(prog, data)?;
    (ret & SECCOMP_RET_ACTION_FULL == SECCOMP_RET_ERRNO)
        .then(|| i32::try_from(ret & SECCOMP_RET_DATA).ok())
        .flatten()
        .filter(|e| *e > 0)
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
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;
const SECCOMP_RET_DATA: u32 = 0x0000_ffff;
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
    let (programs, x32_denied) = programs(plan)?;
    Ok(Filters {
        program: chain(programs)?,
        // The plan's own count, which `aiopsctl profile explain` prints too.
        rules: plan.rules_here(),
        x32_denied,
    })
}

/// A, B (when it has entries or x32 is denied) and C (when it has entries),
/// in the order they would be attached; x32 denied.
fn programs(plan: &SeccompPlan) -> Result<(Vec<BpfProgram>, bool), JailError> {
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
    Ok((programs, x32_denied))
}

/// Attach the filter. With `to_parent` (one end of a socket pair to the
/// waiting parent), attach the notifying program with a listener and hand
/// the listener to the parent: it counts and answers each denied call.
/// Where a listener exists already (aiops inside an aiops jail) the kernel
/// refuses a second (EBUSY): the plain program is attached, and the layer
/// says denials are not recorded. The listener never stays here: a node
/// holding it could answer its own denied calls.
pub fn seccomp_install(f: &Filters, to_parent: Option<OwnedFd>) -> Result<Recording, JailError> {
    let failed = |what: &str, e: std::io::Error| JailError::Seccomp {
        what: format!("{what}: {e}"),
        errno: e.raw_os_error().unwrap_or(0),
    };
    if let Some(to_parent) = to_parent {
        match crate::sys::seccomp_attach_with_listener(&f.notifying()?) {
            Ok(listener) => {
                send_fd(&to_parent, &listener).map_err(|e| failed("send the listener", e))?;
                return Ok(Recording::On);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                attach(&f.program)?;
                return Ok(Recording::Nested);
            }
            Err(e) => return Err(failed("install filter with a listener", e)),
        }
    }
    attach(&f.program)?;
    Ok(Recording::Off)
}

fn attach(p: &BpfProgram) -> Result<(), JailError> {
    seccompiler::apply_filter(p).map_err(|e| JailError::Seccomp {
        what: format!("install filter: {e}"),
        errno: match &e {
            seccompiler::Error::Seccomp(io) => io.raw_os_error().unwrap_or(0),
            _ => 0,
        },
    })
}

fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"L")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(std::io::Error::from)
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

    /// `eval`, failing the test where the kernel would not answer.
    fn run(prog: &[sock_filter], d: &[u8; 64]) -> u32 {
        eval(prog, d).unwrap_or_else(|| panic!("no answer for {d:x?}"))
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

    /// The one chained program answers as the kernel would with A, B and C
    /// attached: kill if any kills, else the first errno in the order the
    /// kernel runs them (the last attached first), else allow. And the
    /// notifying copy takes the same paths, with USER_NOTIF where it denied.
    #[test]
    fn chained_program_answers_as_the_three_attached() {
        let plan = baseline();
        let (parts, _) = programs(&plan).unwrap();
        let f = compile(&plan).unwrap();
        let notify = f.notifying().unwrap();
        let arch = audit_arch().unwrap();
        let mut args = vec![];
        for rules in [&plan.deny_eperm, &plan.deny_enosys, &plan.deny_eafnosupport] {
            args.extend(probes(rules));
        }
        let (mut denied, mut allowed) = (0, 0);
        for nr in (0..1000u32).chain((0..1000).map(|n| n | X32_SYSCALL_BIT)) {
            for a in &args {
                for arch in [arch, 0x4000_0003] {
                    let d = data(nr, arch, *a);
                    let each: Vec<u32> = parts.iter().rev().map(|p| run(p, &d)).collect();
                    let want = if each.contains(&SECCOMP_RET_KILL_PROCESS) {
                        SECCOMP_RET_KILL_PROCESS
                    } else {
                        *each
                            .iter()
                            .find(|r| **r != SECCOMP_RET_ALLOW)
                            .unwrap_or(&SECCOMP_RET_ALLOW)
                    };
                    let got = run(&f.program, &d);
                    assert_eq!(got, want, "nr {nr:#x} arch {arch:#x} args {a:x?}");
                    let n = run(&notify, &d);
                    let watched = arch == audit_arch().unwrap()
                        && (i64::from(nr) == libc::SYS_connect
                            || (i64::from(nr) == libc::SYS_sendto && a[4] != 0));
                    if watched {
                        // Recorded by the parent, which then answers as `program`.
                        assert_eq!(n, SECCOMP_RET_USER_NOTIF, "nr {nr} {a:x?}");
                    } else if got & SECCOMP_RET_ACTION_FULL == SECCOMP_RET_ERRNO {
                        denied += 1;
                        assert_eq!(n, SECCOMP_RET_USER_NOTIF);
                        assert_eq!(denial_errno(&f.program, &d), Some((got & 0xffff) as i32));
                    } else {
                        allowed += u32::from(got == SECCOMP_RET_ALLOW);
                        assert_eq!(n, got);
                        assert_eq!(denial_errno(&f.program, &d), None);
                    }
                }
            }
        }
        assert!(denied > 100 && allowed > 100, "{denied} {allowed}");
    }

    /// Garbage never makes `eval` panic or loop: it answers or says it cannot.
    #[test]
    fn eval_refuses_what_it_cannot_run() {
        let d = data(1, 2, [3; 6]);
        assert_eq!(eval(&[], &d), None);
        assert_eq!(eval(&[insn(BPF_LD_W_ABS, 0, 0, 62)], &d), None);
        assert_eq!(eval(&[insn(BPF_JMP_JA, 0, 0, u32::MAX)], &d), None);
        assert_eq!(eval(&[insn(0x99, 0, 0, 0)], &d), None);
        assert_eq!(eval(&[insn(BPF_JMP_JEQ_K, 5, 5, 1)], &d), None);
        assert_eq!(
            eval(&[insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW)], &d),
            Some(SECCOMP_RET_ALLOW)
        );
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
                    seccomp_install(&f, None).map_err(|_| 11)?;
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
