//! Seccomp rules as they travel in a plan: a syscall by name, argument
//! conditions and a reason. The jailer resolves names to numbers for the
//! running architecture; the baseline table itself is policy's.
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// One condition on a syscall argument (all conditions of a rule must hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgCond {
    /// Argument index, 0-5.
    pub arg: u8,
    pub op: ArgOp,
    pub value: u64,
    /// Compare only the low 32 bits (for `int`/`unsigned int` arguments).
    pub dword: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgOp {
    Eq,
    Ne,
    /// `(arg & mask) == value`
    MaskedEq(u64),
}

/// Deny `syscall` (with EPERM) when every condition holds; no condition means always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallRule {
    pub syscall: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<ArgCond>,
    pub reason: String,
}

/// `name` is a syscall of the architecture this binary runs on (the
/// jailer installs only those rules; the others cannot be called here).
pub fn exists_here(name: &str) -> bool {
    syscalls::Sysno::from_str(name).is_ok()
}

pub fn is_known_syscall(name: &str) -> bool {
    syscalls::x86_64::Sysno::from_str(name).is_ok()
        || syscalls::aarch64::Sysno::from_str(name).is_ok()
}
