//! The hand-assembled filter must decide exactly as seccompiler's two
//! filters (EPERM table, then ENOSYS table) plus the x32 guard would, for
//! every syscall number and for argument values around every condition.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::seccomp;
use aiops_policy::syscalls::{baseline_deny, baseline_enosys, ArgOp, SyscallRule};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;
use std::str::FromStr;

/// struct seccomp_data as the kernel lays it out (little-endian).
fn data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// A classic-BPF interpreter for the opcodes seccomp filters use.
fn run(prog: &[sock_filter], d: &[u8; 64]) -> u32 {
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = &prog[pc];
        pc += 1;
        let cond = |t: bool| {
            if t {
                usize::from(i.jt)
            } else {
                usize::from(i.jf)
            }
        };
        match i.code {
            0x20 => {
                let k = i.k as usize;
                acc = u32::from_le_bytes(d[k..k + 4].try_into().unwrap());
            }
            0x54 => acc &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc += cond(acc == i.k),
            0x35 => pc += cond(acc >= i.k),
            0x25 => pc += cond(acc > i.k),
            0x45 => pc += cond(acc & i.k != 0),
            0x06 => return i.k,
            op => panic!("opcode {op:#x} at {}", pc - 1),
        }
    }
}

/// seccompiler's program for one table (the previous implementation).
fn seccompiler_program(rules: &[SyscallRule], errno: u32) -> Vec<sock_filter> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut always = vec![];
    for r in rules {
        let Ok(nr) = syscalls::Sysno::from_str(&r.syscall) else {
            continue;
        };
        let nr = i64::from(nr.id());
        let entry = map.entry(nr).or_default();
        if r.when.is_empty() {
            always.push(nr);
            continue;
        }
        let conds = r
            .when
            .iter()
            .map(|c| {
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
                SeccompCondition::new(c.arg, len, op, c.value).unwrap()
            })
            .collect();
        entry.push(SeccompRule::new(conds).unwrap());
    }
    for nr in always {
        map.insert(nr, vec![]);
    }
    let arch = std::env::consts::ARCH.try_into().unwrap();
    SeccompFilter::new(map, SeccompAction::Allow, SeccompAction::Errno(errno), arch)
        .unwrap()
        .try_into()
        .unwrap()
}

fn arch() -> u32 {
    if cfg!(target_arch = "x86_64") {
        0xc000_003e
    } else {
        0xc000_00b7
    }
}

/// Argument vectors around every condition of the table, plus zeros.
fn arg_cases(rules: &[SyscallRule]) -> Vec<[u64; 6]> {
    let mut out = vec![[0u64; 6], [u64::MAX; 6]];
    for r in rules {
        let mut base = [0u64; 6];
        for c in &r.when {
            base[usize::from(c.arg)] = c.value;
        }
        out.push(base);
        for c in &r.when {
            let i = usize::from(c.arg);
            let mask = if let ArgOp::MaskedEq(m) = c.op { m } else { 0 };
            for v in [
                c.value ^ 1,
                c.value | (1 << 40),
                c.value | mask,
                c.value & !mask,
                c.value | !mask,
                mask,
                !c.value,
                c.value.wrapping_add(1 << 32),
            ] {
                let mut a = base;
                a[i] = v;
                out.push(a);
            }
        }
    }
    out
}

/// Qword and mixed conditions the baseline lacks (it compares ints only).
fn synthetic() -> Vec<SyscallRule> {
    use aiops_policy::syscalls::ArgCond;
    let rule = |syscall: &str, when: Vec<ArgCond>| SyscallRule {
        syscall: syscall.into(),
        when,
        reason: "synthetic test rule".into(),
    };
    let c = |arg, op, value, dword| ArgCond {
        arg,
        op,
        value,
        dword,
    };
    vec![
        rule("getpid", vec![c(0, ArgOp::Eq, 0x1_0000_0005, false)]),
        rule("getppid", vec![c(1, ArgOp::Ne, 0x2_0000_0000, false)]),
        rule(
            "getuid",
            vec![c(
                2,
                ArgOp::MaskedEq(0xff00_0000_00ff),
                0x1200_0000_0034,
                false,
            )],
        ),
        rule(
            "gettid",
            vec![c(1, ArgOp::Eq, 3, true), c(2, ArgOp::Ne, 9, false)],
        ),
        rule("gettid", vec![c(3, ArgOp::MaskedEq(0xf0), 0x10, true)]),
        rule("getgid", vec![c(5, ArgOp::Ne, 0xffff_ffff, true)]),
    ]
}

#[test]
fn assembled_filter_matches_seccompiler_on_every_input() {
    let (mut deny, enosys) = (baseline_deny(), baseline_enosys());
    deny.extend(synthetic());
    let mut plan = seccomp::tests::baseline();
    plan.deny_eperm = deny.clone();
    let mine = &seccomp::compile(&plan).unwrap();
    let a = seccompiler_program(&deny, libc::EPERM as u32);
    let b = seccompiler_program(&enosys, libc::ENOSYS as u32);
    let all: Vec<SyscallRule> = deny.iter().chain(enosys.iter()).cloned().collect();
    let cases = arg_cases(&all);
    let mut nrs: Vec<u32> = (0..600).collect();
    nrs.extend([X32_SYSCALL_BIT, X32_SYSCALL_BIT | 39, u32::MAX, 0x3fff_ffff]);
    let mut checked = 0;
    for nr in nrs {
        for args in &cases {
            let d = data(nr, arch(), *args);
            let want = if cfg!(target_arch = "x86_64") && nr >= X32_SYSCALL_BIT {
                SECCOMP_RET_ERRNO | libc::ENOSYS as u32
            } else {
                match (run(&a, &d), run(&b, &d)) {
                    (ra, _) if ra != SECCOMP_RET_ALLOW => ra,
                    (_, rb) => rb,
                }
            };
            assert_eq!(run(mine.program(), &d), want, "nr {nr} args {args:x?}");
            checked += 1;
        }
    }
    assert!(checked > 10_000);
    // A foreign architecture is killed.
    assert_eq!(
        run(mine.program(), &data(1, 0x4000_0003, [0; 6])),
        SECCOMP_RET_KILL_PROCESS
    );
}

#[test]
fn search_tree_keeps_the_program_short() {
    let f = seccomp::compile(&seccomp::tests::baseline()).unwrap();
    let a = seccompiler_program(&baseline_deny(), 1);
    assert!(
        f.program().len() < a.len(),
        "{} vs {}",
        f.program().len(),
        a.len()
    );
}

#[test]
fn long_jumps_resolve_and_empty_tables_allow() {
    let rules: Vec<Rule> = (0..300)
        .map(|nr| Rule {
            nr,
            conds: vec![Cond {
                arg: 0,
                dword: false,
                mask: u64::MAX,
                eq: true,
                value: 7,
            }],
            ret: SECCOMP_RET_ERRNO | 1,
        })
        .collect();
    let p = assemble(arch(), None, &rules).unwrap();
    assert_eq!(
        run(&p, &data(299, arch(), [7, 0, 0, 0, 0, 0])),
        SECCOMP_RET_ERRNO | 1
    );
    assert_eq!(
        run(&p, &data(299, arch(), [8, 0, 0, 0, 0, 0])),
        SECCOMP_RET_ALLOW
    );
    assert_eq!(
        run(&p, &data(300, arch(), [7, 0, 0, 0, 0, 0])),
        SECCOMP_RET_ALLOW
    );
    let empty = assemble(arch(), None, &[]).unwrap();
    assert_eq!(run(&empty, &data(5, arch(), [0; 6])), SECCOMP_RET_ALLOW);
}
