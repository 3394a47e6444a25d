//! Step 9: rlimits, and the honest state of cgroup v2.
//!
//! cgroup limits are not applied by this jailer yet: moving the jail into a
//! delegated leaf must happen before pivot_root hides /sys/fs/cgroup, and no
//! host we test on delegates a subtree, so that code would run untested.
//! The layer string says which case holds; a profile that `require`s
//! `cgroup` is refused at this step instead of running weaker.
use crate::error::JailError;
use aiops_policy::units::Bytes;
use aiops_proto::facts::LayerReq;
use aiops_proto::plan::{Rlimit, RlimitPlan};
use nix::sys::resource::{setrlimit, Resource};
use std::fs;
use std::path::PathBuf;

fn resource(r: Rlimit) -> Resource {
    match r {
        Rlimit::As => Resource::RLIMIT_AS,
        Rlimit::Nproc => Resource::RLIMIT_NPROC,
        Rlimit::Cpu => Resource::RLIMIT_CPU,
        Rlimit::Fsize => Resource::RLIMIT_FSIZE,
        Rlimit::Nofile => Resource::RLIMIT_NOFILE,
        Rlimit::Core => Resource::RLIMIT_CORE,
    }
}

pub fn setrlimits(plan: &[RlimitPlan]) -> Result<(), JailError> {
    for r in plan {
        setrlimit(resource(r.resource), r.soft, r.hard).map_err(|e| JailError::Rlimit {
            resource: format!("{:?}", r.resource),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Our own cgroup v2 directory when it is writable by us and offers the
/// memory and pids controllers; otherwise why not.
pub fn delegated_cgroup() -> Result<PathBuf, String> {
    let own =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let rel = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 hierarchy in /proc/self/cgroup")?;
    let dir = PathBuf::from("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let ctl = fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", dir.join("cgroup.controllers").display()))?;
    let have: Vec<&str> = ctl.split_whitespace().collect();
    for want in ["memory", "pids"] {
        if !have.contains(&want) {
            return Err(format!("{}: no {want} controller", dir.display()));
        }
    }
    nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("{}: not writable: {e}", dir.display()))?;
    Ok(dir)
}

/// The cgroup layer string; refuses when the profile requires cgroup limits.
/// Must run before the mount namespace hides /sys. Without a cgroup the
/// jail's memory has no total: the string says what bounds it instead.
pub fn cgroup_layer(require: &[LayerReq], rlimits: &[RlimitPlan]) -> Result<String, JailError> {
    if require.contains(&LayerReq::Cgroup) {
        return Err(JailError::Cgroup {
            reason: "the profile requires cgroup limits and this jailer applies rlimits only"
                .into(),
        });
    }
    let limit = |which| rlimits.iter().find(|r| r.resource == which).map(|r| r.hard);
    let bound = match (limit(Rlimit::As), limit(Rlimit::Nproc)) {
        (Some(each), Some(procs)) => format!(
            "memory per process: RLIMIT_AS {} each, at most {procs} processes (RLIMIT_NPROC)",
            Bytes(each)
        ),
        _ => "memory per process (rlimits)".into(),
    };
    Ok(match delegated_cgroup() {
        Ok(dir) => format!(
            "cgroup: none (delegated subtree {} unused; {bound})",
            dir.display()
        ),
        Err(_) => format!("cgroup: none (no delegated cgroup v2 subtree; {bound})"),
    })
}
