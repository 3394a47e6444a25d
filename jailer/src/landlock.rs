//! Step 11: Landlock from `plan.landlock`, as a hard requirement: any right
//! the kernel cannot enforce refuses the node instead of weakening it.
use crate::error::JailError;
use aiops_proto::plan::{FsAccess, LandlockPlan, Scope as PlanScope};
use landlock::{
    AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use std::fs;

fn fs_access(a: FsAccess) -> AccessFs {
    match a {
        FsAccess::Execute => AccessFs::Execute,
        FsAccess::WriteFile => AccessFs::WriteFile,
        FsAccess::ReadFile => AccessFs::ReadFile,
        FsAccess::ReadDir => AccessFs::ReadDir,
        FsAccess::RemoveDir => AccessFs::RemoveDir,
        FsAccess::RemoveFile => AccessFs::RemoveFile,
        FsAccess::MakeChar => AccessFs::MakeChar,
        FsAccess::MakeDir => AccessFs::MakeDir,
        FsAccess::MakeReg => AccessFs::MakeReg,
        FsAccess::MakeSock => AccessFs::MakeSock,
        FsAccess::MakeFifo => AccessFs::MakeFifo,
        FsAccess::MakeBlock => AccessFs::MakeBlock,
        FsAccess::MakeSym => AccessFs::MakeSym,
        FsAccess::Refer => AccessFs::Refer,
        FsAccess::Truncate => AccessFs::Truncate,
        FsAccess::IoctlDev => AccessFs::IoctlDev,
    }
}

fn flags(list: &[FsAccess]) -> BitFlags<AccessFs> {
    list.iter()
        .fold(BitFlags::EMPTY, |acc, a| acc | fs_access(*a))
}

/// Rights that mean something on a non-directory (the kernel refuses the
/// others on a file rule; they could never apply to it anyway).
fn file_rights() -> BitFlags<AccessFs> {
    AccessFs::Execute
        | AccessFs::WriteFile
        | AccessFs::ReadFile
        | AccessFs::Truncate
        | AccessFs::IoctlDev
}

/// What the layer string will say once `landlock_restrict_self` succeeded.
pub fn layer_name(plan: &LandlockPlan) -> String {
    let mut parts = vec!["fs"];
    if plan.tcp.is_some() {
        parts.push("tcp");
    }
    if !plan.scopes.is_empty() {
        parts.push("scopes");
    }
    format!(
        "landlock:v{} fully enforced ({})",
        plan.abi,
        parts.join(", ")
    )
}

fn le(what: impl Into<String>) -> impl FnOnce(landlock::RulesetError) -> JailError {
    let what = what.into();
    move |e| JailError::Landlock {
        what: format!("{what}: {e}"),
        errno: 0,
    }
}

pub fn landlock_restrict_self(plan: &LandlockPlan) -> Result<(), JailError> {
    let mut rs = landlock::Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(flags(&plan.handled_fs))
        .map_err(le("handle fs access"))?;
    if plan.tcp.is_some() {
        rs = rs
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(le("handle tcp access"))?;
    }
    if !plan.scopes.is_empty() {
        let scopes = plan.scopes.iter().fold(BitFlags::<Scope>::EMPTY, |acc, s| {
            acc | match s {
                PlanScope::AbstractUnixSocket => Scope::AbstractUnixSocket,
                PlanScope::Signal => Scope::Signal,
            }
        });
        rs = rs.scope(scopes).map_err(le("scope"))?;
    }
    let mut created = rs.create().map_err(le("create ruleset"))?;
    for rule in &plan.fs {
        let path = rule.path.as_path();
        // Optional binds whose source was missing are absent from the jail.
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(JailError::Landlock {
                    what: format!("stat {}: {e}", path.display()),
                    errno: e.raw_os_error().unwrap_or(0),
                })
            }
        };
        let mut access = flags(&rule.access);
        if !meta.is_dir() {
            access &= file_rights();
        }
        let fd = PathFd::new(path).map_err(|e| JailError::Landlock {
            what: e.to_string(),
            errno: 0,
        })?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(le(format!("rule for {}", path.display())))?;
    }
    if let Some(tcp) = &plan.tcp {
        for p in &tcp.connect {
            created = created
                .add_rule(NetPort::new(*p, AccessNet::ConnectTcp))
                .map_err(le(format!("tcp connect {p}")))?;
        }
        for p in &tcp.bind {
            created = created
                .add_rule(NetPort::new(*p, AccessNet::BindTcp))
                .map_err(le(format!("tcp bind {p}")))?;
        }
    }
    let status = created.restrict_self().map_err(le("restrict_self"))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(JailError::Landlock {
            what: format!("ruleset {:?}, not fully enforced", status.ruleset),
            errno: 0,
        });
    }
    Ok(())
}
