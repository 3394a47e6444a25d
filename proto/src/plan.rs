//! `JailPlan`: the compiled, kernel-ready description of one jail. Pure data
//! (no fds, no closures), `Serialize + Eq`, so it is tested as golden files
//! and re-validated by the jailer as if it came from a stranger.
use crate::error::ProtoError;
use crate::net::{Cidr, HostPort, NetMode};
use crate::path::AbsPath;
use crate::syscalls::{is_known_syscall, SyscallRule};
use crate::{EnvName, LayerReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// 2: plans carry their `source`, which the jailer compiles again.
/// 3: plans carry `guard`, the jailer's search of the writable roots;
/// tmpfs mounts carry an inode count, `/dev` its /dev/shm's size and
/// inodes; seccomp has an EAFNOSUPPORT table.
pub const PLAN_VERSION: u32 = 3;
/// Where agentd's binary is bound inside the jail.
pub const AGENTD_IN_JAIL: &str = "/.aiops/aiops-agentd";
pub const HOSTNAME: &str = "aiops";
const AGENT_DIR_IN_JAIL: &str = "/.aiops";

/// In-jail paths the jailer builds itself, each with the one mount that may
/// land there. Nothing may be mounted inside them or over a directory above
/// them (the jail has no /sys at all).
type OwnMount = fn(&Mount) -> bool;
const PRIVATE_DSTS: [(&str, OwnMount); 5] = [
    // agentd's directory: agentd's bind (below) is the only mount inside.
    (AGENT_DIR_IN_JAIL, |_| false),
    (AGENTD_IN_JAIL, |m| {
        matches!(
            m,
            Mount::Bind {
                writable: false,
                ..
            }
        )
    }),
    ("/proc", |m| matches!(m, Mount::Proc { .. })),
    ("/dev", |m| matches!(m, Mount::Dev { .. })),
    ("/sys", |_| false),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailPlan {
    pub plan_version: u32,
    pub profile: String,
    /// No namespaces, mounts, Landlock or seccomp: the node runs on the host.
    pub unconfined: bool,
    /// Created with one unshare(2), user first.
    pub namespaces: Vec<Namespace>,
    /// Applied in order inside the new mount namespace; then the root is
    /// made read-only and entered with pivot_root(2).
    pub mounts: Vec<Mount>,
    pub hostname: Option<String>,
    pub net: NetPlan,
    pub landlock: Option<LandlockPlan>,
    pub seccomp: Option<SeccompPlan>,
    pub rlimits: Vec<RlimitPlan>,
    /// cgroup v2 limits, applied only where a delegated subtree exists.
    pub cgroup: CgroupPlan,
    pub run: RunLimits,
    /// The complete environment of the node (secrets are added by the jailer).
    pub env: BTreeMap<String, String>,
    /// Secret names (never values) to inject.
    pub secrets: Vec<EnvName>,
    pub cwd: AbsPath,
    /// Protected paths (absolute) kept read-only; reported if created.
    pub protected: Vec<AbsPath>,
    /// The profile's required layers, checked again by the jailer.
    pub require: Vec<LayerReq>,
    /// Where the jailer looks for git directories and outside hard links
    /// before the jail starts, and how far (aiops-guard).
    pub guard: GuardPlan,
    /// What the plan was compiled from. The jailer compiles it again from
    /// these, its own copy of the profile and its own host facts, and
    /// refuses a plan that differs (docs/jailer.md, "The ceiling").
    pub source: PlanSource,
}

/// The compiler's inputs that are not the profile or the host: the node's
/// capabilities as declared and the path variables. The cwd and the
/// environment are the plan's own `cwd` and `env` (compiling is idempotent
/// on them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSource {
    /// The profile file the compiler read (absolute; the first of its
    /// `extends` chain). System mode ignores it: the jailer finds the
    /// profile named `JailPlan::profile` in its own root-owned directories.
    pub profile_file: std::path::PathBuf,
    /// The node's capabilities as declared: policy's `NodeCaps` as JSON,
    /// decoded strictly by the jailer (this crate does not know its shape).
    pub caps: serde_json::Value,
    /// `$WORKSPACE`, `$HOME`, `$TMPDIR` as the compiler resolved them.
    pub workspace: Option<AbsPath>,
    pub home: Option<AbsPath>,
    pub tmpdir: Option<AbsPath>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    User,
    Mount,
    Pid,
    Net,
    Ipc,
    Uts,
    Cgroup,
}

/// On the wire `{"kind": "bind", "src": ..., ...}`. Decoded through
/// `MountWire`, not serde's internally tagged enum, which buffers every
/// mount before it reads the tag: that was half of the jailer's request
/// decode (~0.09 ms of ~0.18 ms per jail with musl).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "MountWire"
)]
pub enum Mount {
    /// The new root: an empty tmpfs, made read-only once populated.
    Root,
    /// `size_bytes` and `inodes` are the tmpfs `size=` and `nr_inodes=`
    /// (both positive: 0 would mean unlimited to the kernel).
    Tmpfs {
        dst: AbsPath,
        mode: u32,
        size_bytes: u64,
        inodes: u32,
    },
    Proc {
        dst: AbsPath,
    },
    /// A tmpfs with null, zero, full, random, urandom, tty bound from the host,
    /// /dev/fd and std* symlinks, and a private /dev/shm tmpfs of
    /// `shm_bytes` and `shm_inodes` (both positive).
    Dev {
        dst: AbsPath,
        shm_bytes: u64,
        shm_inodes: u32,
    },
    /// Bind an existing path onto itself so the node cannot rename or remove
    /// it (a mountpoint is busy) and so cannot swap in a fresh `.git` with
    /// its own hooks. A directory stays writable; a regular file (a worktree's
    /// `.git` link to its git dir) becomes read-only. Skipped when missing.
    Pin {
        path: AbsPath,
    },
    Bind {
        src: AbsPath,
        dst: AbsPath,
        writable: bool,
        /// Allow exec(2) from this mount (Landlock still decides per path).
        exec: bool,
        /// Skip silently when `src` does not exist (system dirs, protected paths).
        optional: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MountKind {
    Root,
    Tmpfs,
    Proc,
    Dev,
    Pin,
    Bind,
}

impl Mount {
    fn kind(&self) -> MountKind {
        match self {
            Mount::Root => MountKind::Root,
            Mount::Tmpfs { .. } => MountKind::Tmpfs,
            Mount::Proc { .. } => MountKind::Proc,
            Mount::Dev { .. } => MountKind::Dev,
            Mount::Pin { .. } => MountKind::Pin,
            Mount::Bind { .. } => MountKind::Bind,
        }
    }

    /// Where the mount lands in the jail (`None` for the root itself).
    pub fn dst(&self) -> Option<&AbsPath> {
        match self {
            Mount::Root => None,
            Mount::Bind { dst, .. }
            | Mount::Pin { path: dst }
            | Mount::Tmpfs { dst, .. }
            | Mount::Proc { dst }
            | Mount::Dev { dst, .. } => Some(dst),
        }
    }
}

impl std::fmt::Display for MountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MountKind::Root => "root",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Proc => "proc",
            MountKind::Dev => "dev",
            MountKind::Pin => "pin",
            MountKind::Bind => "bind",
        })
    }
}

/// Every field any kind of mount has; `TryFrom` takes exactly the kind's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MountWire {
    kind: MountKind,
    dst: Option<AbsPath>,
    mode: Option<u32>,
    size_bytes: Option<u64>,
    inodes: Option<u32>,
    shm_bytes: Option<u64>,
    shm_inodes: Option<u32>,
    path: Option<AbsPath>,
    src: Option<AbsPath>,
    writable: Option<bool>,
    exec: Option<bool>,
    optional: Option<bool>,
}

impl TryFrom<MountWire> for Mount {
    type Error = String;
    fn try_from(w: MountWire) -> Result<Mount, String> {
        let kind = w.kind;
        let mut fields = [
            ("dst", w.dst.is_some()),
            ("mode", w.mode.is_some()),
            ("size_bytes", w.size_bytes.is_some()),
            ("inodes", w.inodes.is_some()),
            ("shm_bytes", w.shm_bytes.is_some()),
            ("shm_inodes", w.shm_inodes.is_some()),
            ("path", w.path.is_some()),
            ("src", w.src.is_some()),
            ("writable", w.writable.is_some()),
            ("exec", w.exec.is_some()),
            ("optional", w.optional.is_some()),
        ];
        // Take a field the kind has; what is left present afterwards is foreign to it.
        let mut take = |name: &'static str| -> Result<(), String> {
            match fields.iter_mut().find(|(n, _)| *n == name) {
                Some((_, present @ true)) => {
                    *present = false;
                    Ok(())
                }
                _ => Err(format!("mount of kind {kind}: missing field `{name}`")),
            }
        };
        let mount = match kind {
            MountKind::Root => Mount::Root,
            MountKind::Tmpfs => {
                take("dst")?;
                take("mode")?;
                take("size_bytes")?;
                take("inodes")?;
                Mount::Tmpfs {
                    dst: w.dst.ok_or("dst")?,
                    mode: w.mode.unwrap_or_default(),
                    size_bytes: w.size_bytes.unwrap_or_default(),
                    inodes: w.inodes.unwrap_or_default(),
                }
            }
            MountKind::Proc => {
                take("dst")?;
                Mount::Proc {
                    dst: w.dst.ok_or("dst")?,
                }
            }
            MountKind::Dev => {
                take("dst")?;
                take("shm_bytes")?;
                take("shm_inodes")?;
                Mount::Dev {
                    dst: w.dst.ok_or("dst")?,
                    shm_bytes: w.shm_bytes.unwrap_or_default(),
                    shm_inodes: w.shm_inodes.unwrap_or_default(),
                }
            }
            MountKind::Pin => {
                take("path")?;
                Mount::Pin {
                    path: w.path.ok_or("path")?,
                }
            }
            MountKind::Bind => {
                for f in ["src", "dst", "writable", "exec", "optional"] {
                    take(f)?;
                }
                Mount::Bind {
                    src: w.src.ok_or("src")?,
                    dst: w.dst.ok_or("dst")?,
                    writable: w.writable.unwrap_or_default(),
                    exec: w.exec.unwrap_or_default(),
                    optional: w.optional.unwrap_or_default(),
                }
            }
        };
        if let Some((extra, _)) = fields.iter().find(|(_, present)| *present) {
            return Err(format!("mount of kind {kind}: unknown field `{extra}`"));
        }
        Ok(mount)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetPlan {
    pub mode: NetMode,
    pub allow: Vec<HostPort>,
    /// `allowlist`: blocks the egress proxy may reach although private.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_private: Vec<Cidr>,
    /// `allowlist`: the egress proxy's fixed name answers, used instead of DNS.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, std::net::IpAddr>,
    /// `allowlist`: the egress proxy's limits; unset fields take its defaults.
    #[serde(default, skip_serializing_if = "EgressLimitsPlan::is_unset")]
    pub egress: EgressLimitsPlan,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressLimitsPlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
}

impl EgressLimitsPlan {
    pub fn is_unset(&self) -> bool {
        *self == EgressLimitsPlan::default()
    }
}

/// Landlock access rights, named as in the uapi header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsAccess {
    Execute,
    WriteFile,
    ReadFile,
    ReadDir,
    RemoveDir,
    RemoveFile,
    MakeChar,
    MakeDir,
    MakeReg,
    MakeSock,
    MakeFifo,
    MakeBlock,
    MakeSym,
    /// ABI 2
    Refer,
    /// ABI 3
    Truncate,
    /// ABI 5
    IoctlDev,
}

impl FsAccess {
    pub const ALL: [FsAccess; 16] = [
        FsAccess::Execute,
        FsAccess::WriteFile,
        FsAccess::ReadFile,
        FsAccess::ReadDir,
        FsAccess::RemoveDir,
        FsAccess::RemoveFile,
        FsAccess::MakeChar,
        FsAccess::MakeDir,
        FsAccess::MakeReg,
        FsAccess::MakeSock,
        FsAccess::MakeFifo,
        FsAccess::MakeBlock,
        FsAccess::MakeSym,
        FsAccess::Refer,
        FsAccess::Truncate,
        FsAccess::IoctlDev,
    ];
    /// The Landlock ABI that introduced this right.
    pub fn abi(self) -> u8 {
        match self {
            FsAccess::Refer => 2,
            FsAccess::Truncate => 3,
            FsAccess::IoctlDev => 5,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    AbstractUnixSocket,
    Signal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsRule {
    pub path: AbsPath,
    pub access: Vec<FsAccess>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockPlan {
    /// Enforced as a hard requirement: a kernel below this ABI refuses the node.
    pub abi: u8,
    pub handled_fs: Vec<FsAccess>,
    pub fs: Vec<FsRule>,
    /// `Some` when TCP is handled (ABI 4+): only these ports may be connected/bound.
    pub tcp: Option<TcpRules>,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRules {
    pub connect: Vec<u16>,
    pub bind: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompPlan {
    /// Default action: allow. These get EPERM.
    pub deny_eperm: Vec<SyscallRule>,
    /// These get ENOSYS (so libc falls back to a filterable call).
    pub deny_enosys: Vec<SyscallRule>,
    /// These get EAFNOSUPPORT (socket families outside the allow-list, so
    /// programs fall back as on a kernel without them).
    pub deny_eafnosupport: Vec<SyscallRule>,
    /// On x86_64, refuse x32-ABI syscall numbers (nr | 0x40000000).
    pub block_x32: bool,
}

impl SeccompPlan {
    /// Every rule, EPERM first, then ENOSYS, then EAFNOSUPPORT.
    pub fn rules(&self) -> impl Iterator<Item = &SyscallRule> {
        self.deny_eperm
            .iter()
            .chain(&self.deny_enosys)
            .chain(&self.deny_eafnosupport)
    }

    /// How many rules this architecture installs: the one number the
    /// jailer's layer line (`seccomp(N rules)`) and `aiopsctl profile
    /// explain` both print. Rules for syscalls it lacks are left out.
    pub fn rules_here(&self) -> usize {
        self.rules()
            .filter(|r| crate::syscalls::exists_here(&r.syscall))
            .count()
    }

    /// The syscalls named by rules that this architecture lacks.
    pub fn absent_here(&self) -> Vec<&str> {
        self.rules()
            .map(|r| r.syscall.as_str())
            .filter(|s| !crate::syscalls::exists_here(s))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rlimit {
    As,
    Nproc,
    Cpu,
    Fsize,
    Nofile,
    Core,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlimitPlan {
    pub resource: Rlimit,
    pub soft: u64,
    pub hard: u64,
}

/// The writable roots the jailer searches before the jail starts, and its
/// bounds: past one the node is refused (a search that stopped early
/// would leave the rest unprotected). Defaults in `GuardPlan::DEFAULT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardPlan {
    /// Every writable bind's destination; empty when unconfined.
    pub roots: Vec<AbsPath>,
    /// Directory levels below a root.
    pub max_depth: u32,
    /// Directories searched, all roots together.
    pub max_dirs: u32,
    /// Git directories (each costs a few mounts).
    pub max_repos: u32,
    /// Files hard-linked outside the writable roots (one mount each).
    pub max_linked: u32,
}

impl GuardPlan {
    pub const DEFAULT: GuardPlan = GuardPlan {
        roots: vec![],
        max_depth: 64,
        max_dirs: 200_000,
        max_repos: 1000,
        max_linked: 4096,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupPlan {
    pub memory_max: u64,
    pub pids_max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLimits {
    pub timeout_ms: u64,
    pub output_bytes: u64,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> ProtoError {
    ProtoError::InvalidPlan {
        field: field.into(),
        reason: reason.into(),
    }
}

impl JailPlan {
    /// The destinations of the writable binds.
    pub fn writable_roots(&self) -> Vec<&AbsPath> {
        self.mounts
            .iter()
            .filter_map(|m| match m {
                Mount::Bind {
                    dst,
                    writable: true,
                    ..
                } => Some(dst),
                _ => None,
            })
            .collect()
    }

    /// Structural re-validation, run by the jailer on every request before
    /// the first syscall. Types already guarantee absolute normalised paths.
    pub fn validate(&self) -> Result<(), ProtoError> {
        if self.plan_version != PLAN_VERSION {
            return Err(bad(
                "plan_version",
                format!("{} (this jailer reads {PLAN_VERSION})", self.plan_version),
            ));
        }
        for (k, v) in &self.env {
            EnvName::parse(k).map_err(|e| bad(format!("env.{k}"), e))?;
            if v.contains('\0') {
                return Err(bad(format!("env.{k}"), "value contains NUL"));
            }
        }
        if self.run.timeout_ms == 0 || self.run.output_bytes == 0 {
            return Err(bad("run", "timeout and output cap must be positive"));
        }
        if self.unconfined {
            if !self.namespaces.is_empty()
                || !self.mounts.is_empty()
                || !self.guard.roots.is_empty()
                || self.landlock.is_some()
                || self.seccomp.is_some()
            {
                return Err(bad(
                    "unconfined",
                    "an unconfined plan carries no jail layers",
                ));
            }
            return Ok(());
        }
        for ns in [Namespace::User, Namespace::Mount, Namespace::Pid] {
            if !self.namespaces.contains(&ns) {
                return Err(bad("namespaces", format!("{ns:?} namespace missing")));
            }
        }
        if (self.net.mode == NetMode::Host) == self.namespaces.contains(&Namespace::Net) {
            return Err(bad(
                "namespaces",
                "a network namespace goes with every net mode but host",
            ));
        }
        if self.mounts.first() != Some(&Mount::Root) {
            return Err(bad("mounts[0]", "the first mount must be the new root"));
        }
        let mut agentd_binds = 0;
        for (i, m) in self.mounts.iter().enumerate().skip(1) {
            let Some(dst) = m.dst() else {
                return Err(bad(format!("mounts[{i}]"), "a second root"));
            };
            let field = || format!("mounts[{i}]");
            let sized = match m {
                Mount::Tmpfs {
                    size_bytes, inodes, ..
                } => Some((*size_bytes, *inodes)),
                Mount::Dev {
                    shm_bytes,
                    shm_inodes,
                    ..
                } => Some((*shm_bytes, *shm_inodes)),
                _ => None,
            };
            if sized.is_some_and(|(bytes, inodes)| bytes == 0 || inodes == 0) {
                // tmpfs reads size=0 and nr_inodes=0 as "no limit".
                return Err(bad(
                    field(),
                    "a tmpfs needs a positive size and inode count",
                ));
            }
            if dst.as_path() == std::path::Path::new("/") {
                return Err(bad(field(), "mounts over / after the root"));
            }
            // Every mount is checked, not the first that matches: a later one
            // at the same place would hide the one checked.
            for (private, own) in PRIVATE_DSTS {
                let at = dst.as_path() == std::path::Path::new(private);
                let inside = !at
                    && dst.as_path().starts_with(private)
                    && dst.as_path() != std::path::Path::new(AGENTD_IN_JAIL);
                let covers = !at && std::path::Path::new(private).starts_with(dst.as_path());
                let own_mount = at && own(m);
                if own_mount && private == AGENTD_IN_JAIL {
                    agentd_binds += 1;
                    if agentd_binds > 1 {
                        return Err(bad(
                            field(),
                            format!("only one read-only bind may land at {AGENTD_IN_JAIL}"),
                        ));
                    }
                }
                if (at && !own_mount) || inside || covers {
                    let what = if covers {
                        "over a directory above"
                    } else if inside {
                        "inside"
                    } else {
                        "at"
                    };
                    return Err(bad(
                        field(),
                        format!(
                            "{} mounts {what} {private}, which only the jailer builds",
                            m.kind()
                        ),
                    ));
                }
            }
        }
        // The jailer searches exactly the writable binds: one left out would
        // keep its git directories and outside hard links writable.
        let writable = self.writable_roots();
        if let Some(w) = writable.iter().find(|w| !self.guard.roots.contains(w)) {
            return Err(bad(
                "guard.roots",
                format!("{w} is writable but not searched"),
            ));
        }
        if let Some(r) = self.guard.roots.iter().find(|r| !writable.contains(r)) {
            return Err(bad("guard.roots", format!("{r} is not a writable bind")));
        }
        if let Some(ll) = &self.landlock {
            if ll.abi == 0 || ll.abi > crate::facts::LANDLOCK_ABI_MAX {
                return Err(bad(
                    "landlock.abi",
                    format!("{} is not a known ABI", ll.abi),
                ));
            }
            for (i, r) in ll.fs.iter().enumerate() {
                if let Some(a) = r.access.iter().find(|a| !ll.handled_fs.contains(a)) {
                    return Err(bad(
                        format!("landlock.fs[{i}]"),
                        format!("{a:?} is not handled"),
                    ));
                }
            }
            if ll.tcp.is_some() && ll.abi < 4 {
                return Err(bad("landlock.tcp", "TCP rules need ABI 4"));
            }
            if !ll.scopes.is_empty() && ll.abi < 6 {
                return Err(bad("landlock.scopes", "scopes need ABI 6"));
            }
        }
        if let Some(sc) = &self.seccomp {
            for (i, r) in sc
                .deny_eperm
                .iter()
                .chain(sc.deny_enosys.iter())
                .chain(sc.deny_eafnosupport.iter())
                .enumerate()
            {
                if !is_known_syscall(&r.syscall) {
                    return Err(bad(
                        format!("seccomp[{i}]"),
                        format!("unknown syscall {:?}", r.syscall),
                    ));
                }
                if r.when.iter().any(|c| c.arg > 5) {
                    return Err(bad(format!("seccomp[{i}]"), "argument index above 5"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The count both the jailer and `explain` print leaves out exactly the
    /// syscalls this architecture lacks.
    #[test]
    fn seccomp_rules_here_leave_out_absent_syscalls() {
        use crate::syscalls::SyscallRule;
        let rule = |s: &str| SyscallRule {
            syscall: s.into(),
            when: vec![],
            reason: "r".into(),
        };
        let plan = SeccompPlan {
            deny_eperm: vec![rule("mount"), rule("no_such_syscall_anywhere")],
            deny_enosys: vec![rule("unshare")],
            deny_eafnosupport: vec![],
            block_x32: false,
        };
        assert_eq!(plan.rules_here(), 2);
        assert_eq!(plan.absent_here(), ["no_such_syscall_anywhere"]);
        assert_eq!(plan.rules().count(), 3);
    }

    fn p(s: &str) -> AbsPath {
        AbsPath::new(s).unwrap()
    }

    #[test]
    fn every_mount_kind_round_trips() {
        let all = vec![
            Mount::Root,
            Mount::Tmpfs {
                dst: p("/tmp"),
                mode: 0o1777,
                size_bytes: 1 << 20,
                inodes: 64,
            },
            Mount::Proc { dst: p("/proc") },
            Mount::Dev {
                dst: p("/dev"),
                shm_bytes: 1 << 20,
                shm_inodes: 64,
            },
            Mount::Pin { path: p("/w/.git") },
            Mount::Bind {
                src: p("/usr"),
                dst: p("/usr"),
                writable: false,
                exec: true,
                optional: true,
            },
        ];
        let json = serde_json::to_string(&all).unwrap();
        assert!(json.contains(r#"{"kind":"bind","src":"/usr""#), "{json}");
        let back: Vec<Mount> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, all);
    }

    /// A plan that hides the checked agentd under a second mount is refused.
    #[test]
    fn agentd_is_bound_once_and_nothing_covers_it() {
        let bind = |src: &str, dst: &str, writable| Mount::Bind {
            src: p(src),
            dst: p(dst),
            writable,
            exec: true,
            optional: false,
        };
        let plan = |mounts: Vec<Mount>| JailPlan {
            guard: GuardPlan {
                roots: mounts
                    .iter()
                    .filter_map(|m| match m {
                        Mount::Bind {
                            dst,
                            writable: true,
                            ..
                        } => Some(dst.clone()),
                        _ => None,
                    })
                    .collect(),
                ..GuardPlan::DEFAULT
            },
            plan_version: PLAN_VERSION,
            profile: "t".into(),
            unconfined: false,
            namespaces: vec![
                Namespace::User,
                Namespace::Mount,
                Namespace::Pid,
                Namespace::Net,
            ],
            mounts,
            hostname: None,
            net: NetPlan {
                mode: NetMode::None,
                allow: vec![],
                allow_private: vec![],
                hosts: BTreeMap::new(),
                egress: EgressLimitsPlan::default(),
            },
            landlock: None,
            seccomp: None,
            rlimits: vec![],
            cgroup: CgroupPlan {
                memory_max: 0,
                pids_max: 0,
            },
            run: RunLimits {
                timeout_ms: 1,
                output_bytes: 1,
            },
            env: BTreeMap::new(),
            secrets: vec![],
            cwd: p("/"),
            protected: vec![],
            require: vec![],
            source: PlanSource {
                profile_file: "/p/t.toml".into(),
                caps: serde_json::Value::Null,
                workspace: None,
                home: None,
                tmpdir: None,
            },
        };
        let ok = vec![
            Mount::Root,
            Mount::Proc { dst: p("/proc") },
            Mount::Dev {
                dst: p("/dev"),
                shm_bytes: 1 << 20,
                shm_inodes: 64,
            },
            bind("/opt/agentd", AGENTD_IN_JAIL, false),
        ];
        plan(ok.clone()).validate().unwrap();
        let mut twice = ok.clone();
        twice.push(bind("/bin/sh", AGENTD_IN_JAIL, false));
        let e = plan(twice).validate().unwrap_err().to_string();
        assert!(e.contains("only one read-only bind"), "{e}");
        let e = plan(vec![Mount::Root, bind("/opt/agentd", AGENTD_IN_JAIL, true)])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("bind mounts at /.aiops/aiops-agentd"), "{e}");
        // Over the jail's own /proc and /dev, inside them, and at /sys:
        // each refused wherever it comes in the list.
        for (bad_mount, says) in [
            (bind("/proc", "/proc", false), "bind mounts at /proc"),
            (bind("/tmp/p", "/proc/1", false), "inside /proc"),
            (bind("/dev", "/dev", true), "bind mounts at /dev"),
            (Mount::Proc { dst: p("/dev") }, "proc mounts at /dev"),
            (
                Mount::Tmpfs {
                    dst: p("/var/x"),
                    mode: 0o755,
                    size_bytes: 0,
                    inodes: 1,
                },
                "positive size and inode count",
            ),
            (
                Mount::Tmpfs {
                    dst: p("/var/x"),
                    mode: 0o755,
                    size_bytes: 1,
                    inodes: 0,
                },
                "positive size and inode count",
            ),
            (bind("/sys", "/sys", false), "bind mounts at /sys"),
            (bind("/sys/fs", "/sys/fs", false), "inside /sys"),
            (
                bind("/run/credentials", "/.aiops/creds", false),
                "inside /.aiops",
            ),
        ] {
            for at in [1, 4] {
                let mut m = ok.clone();
                m.insert(at, bad_mount.clone());
                let e = plan(m).validate().unwrap_err().to_string();
                assert!(e.contains(says), "{bad_mount:?} at {at}: {e}");
            }
        }
        for over in [
            bind("/tmp/x", "/.aiops", false),
            Mount::Tmpfs {
                dst: p("/.aiops"),
                mode: 0o755,
                size_bytes: 1,
                inodes: 1,
            },
        ] {
            let mut m = ok.clone();
            m.push(over);
            let e = plan(m).validate().unwrap_err().to_string();
            assert!(
                e.contains("mounts at /.aiops, which only the jailer builds"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_mount_takes_exactly_its_kinds_fields() {
        let err = |s: &str| serde_json::from_str::<Mount>(s).unwrap_err().to_string();
        let e = err(r#"{"kind":"proc","dst":"/proc","src":"/etc"}"#);
        assert!(e.contains("mount of kind proc: unknown field `src`"), "{e}");
        let e = err(r#"{"kind":"bind","src":"/usr","dst":"/usr","writable":false,"exec":true}"#);
        assert!(e.contains("missing field `optional`"), "{e}");
        let e = err(r#"{"kind":"root","dst":"/"}"#);
        assert!(e.contains("unknown field `dst`"), "{e}");
        let e = err(r#"{"kind":"proc","dst":"/proc","hidepid":1}"#);
        assert!(e.contains("unknown field `hidepid`"), "{e}");
        let e = err(r#"{"kind":"overlay","dst":"/"}"#);
        assert!(e.contains("unknown variant `overlay`"), "{e}");
        let e = err(r#"{"kind":"dev","dst":"/dev"}"#);
        assert!(e.contains("missing field `shm_bytes`"), "{e}");
        let e = err(r#"{"kind":"tmpfs","dst":"/t","mode":1,"size_bytes":1}"#);
        assert!(e.contains("missing field `inodes`"), "{e}");
        let e = err(r#"{"kind":"tmpfs","dst":"relative","mode":1,"size_bytes":1,"inodes":1}"#);
        assert!(e.contains("not absolute"), "{e}");
    }
}
