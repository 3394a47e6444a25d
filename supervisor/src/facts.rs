//! Cheap, static probing of what this host can provide: no namespaces are
//! created and nothing is restricted, so `explain`, `doctor` and `exec` can
//! all call it. Live checks (unshare, a fresh /proc) need a single-threaded
//! process and are the jailer's (`live.rs`).
use aiops_policy::facts::Os;
use aiops_policy::HostFacts;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Absent, and a layer the default profile needs (or a binary aiops needs).
    Missing,
    /// Absent or degraded, but the default profile runs without it.
    Warn,
    /// Not checked: the live probe could not run.
    Unknown,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Warn => "warn",
            Status::Unknown => "unknown",
        })
    }
}

/// One line of `doctor`: what was checked, what was found, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn new(status: Status, what: &str, detail: impl Into<String>) -> Self {
        Check {
            status,
            what: what.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Static facts plus the evidence for each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostProbe {
    pub facts: HostFacts,
    pub checks: Vec<Check>,
}

/// Probe this host. Reads a few /proc and /sys files and creates (and
/// closes) Landlock rulesets; restricts nothing.
pub fn probe_host() -> HostProbe {
    probe_host_with(true)
}

/// The facts `compile` needs for `profile`. The cgroup v2 fact decides only
/// whether a `require = ["cgroup"]` profile is refused, so its probe (which
/// reads /proc/self/mountinfo, the slowest of these files) runs only for
/// such a profile; otherwise the fact is false, which no other plan field reads.
pub fn facts_for(profile: &aiops_policy::Profile) -> HostFacts {
    probe_host_with(profile.require.contains(&aiops_policy::LayerReq::Cgroup)).facts
}

fn probe_host_with(cgroup: bool) -> HostProbe {
    let read = |p: &str| fs::read_to_string(p).ok();
    let (landlock_abi, ll) = landlock_check(probe_landlock_abi());
    let (seccomp, sc) = seccomp_check(read("/proc/self/status").as_deref());
    let (userns, us) = userns_check(&UsernsSysctls {
        max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
        apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        root: nix::unistd::geteuid().is_root(),
        proc_sys_hidden: !Path::new("/proc/sys").exists() && Path::new("/proc/self").exists(),
    });
    let netns = userns && Path::new("/proc/self/ns/net").exists();
    let (cgroup_v2, cg) = if cgroup {
        cgroup_check(
            read("/proc/self/cgroup").as_deref(),
            read("/proc/self/mountinfo").as_deref(),
            &|p: &Path| fs::read_to_string(p).ok(),
            &|p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok(),
            Manager::find(),
        )
    } else {
        let c = Check::new(Status::Warn, "cgroup v2", "not probed: not required");
        (false, c)
    };
    tracing::debug!(
        target: "aiops::facts",
        landlock_abi,
        seccomp,
        userns,
        netns,
        cgroup_v2,
        "probed host (static)"
    );
    HostProbe {
        facts: HostFacts {
            os: if cfg!(target_os = "macos") {
                Os::Macos
            } else {
                Os::Linux
            },
            landlock_abi,
            seccomp,
            userns,
            netns,
            cgroup_v2,
        },
        checks: vec![ll, sc, us, cg],
    }
}

/// Landlock is Linux-only.
#[cfg(not(target_os = "linux"))]
pub fn probe_landlock_abi() -> u8 {
    0
}

/// The highest Landlock ABI whose features this kernel accepts, 0 if none.
///
/// Each ABI is tried as a hard requirement, newest first: the crate refuses
/// any feature the running kernel lacks. Rulesets are created and dropped,
/// never enforced. ABI 7 and 8 add only restrict_self flags, checked the
/// same way without calling restrict_self.
#[cfg(target_os = "linux")]
pub fn probe_landlock_abi() -> u8 {
    use landlock::ABI;
    const NEWEST_FIRST: [ABI; 9] = [
        ABI::V9,
        ABI::V8,
        ABI::V7,
        ABI::V6,
        ABI::V5,
        ABI::V4,
        ABI::V3,
        ABI::V2,
        ABI::V1,
    ];
    NEWEST_FIRST
        .into_iter()
        .find(|abi| landlock_accepts(*abi))
        .map_or(0, |abi| abi as u8)
}

#[cfg(target_os = "linux")]
fn landlock_accepts(abi: landlock::ABI) -> bool {
    use landlock::{
        Access, AccessFs, AccessNet, CompatLevel, Compatible, RestrictSelfAttr, Ruleset,
        RulesetAttr, RulesetError, Scope,
    };
    let n = abi as u8;
    let attempt = || -> Result<(), RulesetError> {
        let mut rs = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))?;
        if n >= 4 {
            rs = rs.handle_access(AccessNet::from_all(abi))?;
        }
        if n >= 6 {
            rs = rs.scope(Scope::from_all(abi))?;
        }
        let mut created = rs.create()?.set_compatibility(CompatLevel::HardRequirement);
        if n >= 7 {
            created = created.log_subdomains(false)?;
        }
        if n >= 8 {
            created = created.all_threads(true)?;
        }
        // Dropping `created` closes the ruleset fd; nothing was enforced.
        drop(created);
        Ok(())
    };
    attempt().is_ok()
}

fn landlock_check(abi: u8) -> (u8, Check) {
    let c = match abi {
        0 => Check::new(Status::Missing, "landlock", "not available (kernel without Landlock or not enabled at boot)")
            .fix("boot a kernel >= 6.7 with CONFIG_SECURITY_LANDLOCK=y and \"landlock\" in lsm= (see /sys/kernel/security/lsm)"),
        1..=3 => Check::new(Status::Missing, "landlock", format!("ABI {abi}: no TCP rules (the default profile needs ABI 4)"))
            .fix("upgrade to a kernel >= 6.7 (Landlock ABI 4)"),
        _ => Check::new(Status::Ok, "landlock", format!("ABI {abi}")),
    };
    (abi, c)
}

fn seccomp_check(status: Option<&str>) -> (bool, Check) {
    let field = |name: &str| {
        status?
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let fix = "use a kernel built with CONFIG_SECCOMP_FILTER=y";
    match field("Seccomp:").as_deref() {
        None => (
            false,
            Check::new(
                Status::Missing,
                "seccomp",
                "no Seccomp: line in /proc/self/status",
            )
            .fix(fix),
        ),
        Some("0") => (true, Check::new(Status::Ok, "seccomp", "filters supported")),
        Some("2") => {
            let n = field("Seccomp_filters:").unwrap_or_else(|| "some".into());
            let d = format!("filters supported; this process already runs under {n} filter(s) (a container?), ours stack on top");
            (true, Check::new(Status::Ok, "seccomp", d))
        }
        Some(m) => (
            false,
            Check::new(
                Status::Missing,
                "seccomp",
                format!("this process is in seccomp mode {m}; filters cannot be added"),
            )
            .fix("run aiopsctl outside strict-mode seccomp"),
        ),
    }
}

/// The sysctls that decide whether this user may create user namespaces.
#[derive(Debug, Clone, Default)]
pub struct UsernsSysctls {
    pub max_user_namespaces: Option<String>,
    /// Debian/older Ubuntu kernels only.
    pub unprivileged_userns_clone: Option<String>,
    /// Ubuntu 23.10+ with AppArmor.
    pub apparmor_restrict: Option<String>,
    pub root: bool,
    /// /proc shows processes only (systemd's `ProcSubset=pid`, as in the
    /// packaged supervisor unit): the sysctls cannot be read here.
    pub proc_sys_hidden: bool,
}

pub const APPARMOR_FIX: &str = "load the AppArmor profile that allows user namespaces for the jailer only: the aiops package installs /etc/apparmor.d/aiops-jailer (a copy of /usr/share/aiops/apparmor/aiops-jailer, made by postinst where AppArmor 4 is present); run `apparmor_parser -r /etc/apparmor.d/aiops-jailer`. Without the package, copy packaging/apparmor/aiops-jailer there and put your jailer's real path on its `profile` line. See docs/operations.md, \"Troubleshooting denials\"";

fn userns_check(s: &UsernsSysctls) -> (bool, Check) {
    let val = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .and_then(|v| v.parse::<i64>().ok())
    };
    let what = "user namespaces";
    match val(&s.max_user_namespaces) {
        // Not a weaker plan: every confined plan starts with a user
        // namespace (false only refuses), and the jailer, which creates it
        // and sees /proc/sys, fails closed at `unshare` when it cannot.
        None if s.proc_sys_hidden => {
            return (
                true,
                Check::new(
                    Status::Unknown,
                    what,
                    "/proc/sys is hidden from this process (ProcSubset=pid); the jailer checks when it creates the namespace",
                ),
            )
        }
        None => {
            return (
                false,
                Check::new(
                    Status::Missing,
                    what,
                    "/proc/sys/user/max_user_namespaces is absent",
                )
                .fix("use a kernel built with CONFIG_USER_NS=y"),
            )
        }
        Some(n) if n <= 0 => {
            return (
                false,
                Check::new(Status::Missing, what, "user.max_user_namespaces = 0")
                    .fix("sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)"),
            )
        }
        Some(_) => {}
    }
    if !s.root && val(&s.unprivileged_userns_clone) == Some(0) {
        return (
            false,
            Check::new(
                Status::Missing,
                what,
                "kernel.unprivileged_userns_clone = 0",
            )
            .fix("sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)"),
        );
    }
    if !s.root && val(&s.apparmor_restrict) == Some(1) {
        // Creation succeeds, but the new namespace has no capabilities unless an AppArmor profile allows it.
        return (
            false,
            Check::new(Status::Missing, what, "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)")
                .fix(APPARMOR_FIX),
        );
    }
    let who = if s.root { "as root" } else { "unprivileged" };
    (
        true,
        Check::new(
            Status::Ok,
            what,
            format!("allowed {who} (static sysctl check)"),
        ),
    )
}

/// The cgroup v2 directory this process lives in, if a cgroup2 hierarchy is mounted.
pub fn own_cgroup_dir(proc_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let rel = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    // mountinfo: id parent maj:min root mountpoint opts... - fstype source superopts
    let mount = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4))?
    })?;
    let rel = rel.trim().trim_start_matches('/');
    Some(if rel.is_empty() {
        PathBuf::from(mount)
    } else {
        Path::new(mount).join(rel)
    })
}

/// The service manager a delegated cgroup could come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// systemd is PID 1 and this process is root: `systemd-run --scope`.
    System,
    /// This user's systemd manager answers: `systemd-run --user --scope`.
    User,
    /// No systemd to ask (a container, another init, no user session).
    None,
}

impl Manager {
    /// systemd is PID 1 when /run/systemd/system exists (sd_booted(3)); a
    /// user manager is reachable when its private socket exists in
    /// $XDG_RUNTIME_DIR (or /run/user/UID).
    pub fn find() -> Manager {
        if !Path::new("/run/systemd/system").is_dir() {
            return Manager::None;
        }
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            return Manager::System;
        }
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("/run/user/{uid}")));
        if runtime.join("systemd/private").exists() {
            Manager::User
        } else {
            Manager::None
        }
    }

    /// How to get a delegated cgroup here.
    fn delegate_fix(self) -> &'static str {
        match self {
            Manager::System => "run under a delegated unit, e.g. `systemd-run --scope -p Delegate=yes aiopsctl ...`, or Delegate=yes in the service",
            Manager::User => "run under a delegated unit, e.g. `systemd-run --user --scope -p Delegate=yes aiopsctl ...`, or Delegate=yes in the service",
            Manager::None => "no systemd manager answers here (not PID 1, or no user session): start aiopsctl in a cgroup this user may write with the memory and pids controllers enabled, as a container runtime or the init system delegates it",
        }
    }
}

type ReadFn<'a> = &'a dyn Fn(&Path) -> Option<String>;
type WritableFn<'a> = &'a dyn Fn(&Path) -> bool;

fn cgroup_check(
    proc_cgroup: Option<&str>,
    mountinfo: Option<&str>,
    read: ReadFn<'_>,
    writable: WritableFn<'_>,
    manager: Manager,
) -> (bool, Check) {
    let what = "cgroup v2";
    let fallback = "limits fall back to rlimits: `memory` is an RLIMIT_AS per process and `pids` (RLIMIT_NPROC) how many processes, so a jail may hold up to memory × pids";
    let delegate_fix = manager.delegate_fix();
    let Some(dir) = own_cgroup_dir(proc_cgroup.unwrap_or(""), mountinfo.unwrap_or("")) else {
        return (
            false,
            Check::new(
                Status::Warn,
                what,
                format!("no cgroup2 hierarchy for this process; {fallback}"),
            )
            .fix("boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2 only)"),
        );
    };
    let controllers = read(&dir.join("cgroup.controllers")).unwrap_or_default();
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let lacking: Vec<&str> = ["memory", "pids"]
        .into_iter()
        .filter(|c| !have.contains(c))
        .collect();
    if !lacking.is_empty() {
        let d = format!(
            "{}: controllers {} not enabled; {fallback}",
            dir.display(),
            lacking.join(", ")
        );
        return (false, Check::new(Status::Warn, what, d).fix(delegate_fix));
    }
    if !writable(&dir) {
        let d = format!("{} is not writable by this user; {fallback}", dir.display());
        return (false, Check::new(Status::Warn, what, d).fix(delegate_fix));
    }
    (
        true,
        Check::new(
            Status::Ok,
            what,
            format!(
                "{} delegated (memory, pids), but the jailer applies no cgroup limits yet: `memory` is an RLIMIT_AS per process, up to `pids` processes (RLIMIT_NPROC)",
                dir.display()
            ),
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_seccomp_mode_from_proc_status() {
        assert!(seccomp_check(Some("Name:\tx\nSeccomp:\t0\n")).0);
        let (ok, c) = seccomp_check(Some("Seccomp:\t2\nSeccomp_filters:\t3\n"));
        assert!(ok && c.detail.contains("3 filter(s)"));
        assert!(!seccomp_check(Some("Seccomp:\t1\n")).0);
        assert_eq!(seccomp_check(Some("Name:\tx\n")).1.status, Status::Missing);
        assert!(!seccomp_check(None).0);
    }

    #[test]
    fn user_namespaces_follow_each_distros_sysctl() {
        let base = UsernsSysctls {
            max_user_namespaces: Some("15000\n".into()),
            ..Default::default()
        };
        assert!(userns_check(&base).0);
        let zero = UsernsSysctls {
            max_user_namespaces: Some("0".into()),
            ..base.clone()
        };
        assert!(!userns_check(&zero).0);
        let debian = UsernsSysctls {
            unprivileged_userns_clone: Some("0".into()),
            ..base.clone()
        };
        assert!(!userns_check(&debian).0);
        assert!(
            userns_check(&UsernsSysctls {
                root: true,
                ..debian
            })
            .0
        );
        let ubuntu = UsernsSysctls {
            apparmor_restrict: Some("1\n".into()),
            ..base.clone()
        };
        let (ok, c) = userns_check(&ubuntu);
        assert!(!ok);
        assert!(c.fix.unwrap().contains("apparmor_parser -r"));
        assert!(!userns_check(&UsernsSysctls::default()).0);
        // The supervisor unit's ProcSubset=pid: left to the jailer.
        let (ok, c) = userns_check(&UsernsSysctls {
            proc_sys_hidden: true,
            ..Default::default()
        });
        assert!(ok);
        assert_eq!(c.status, Status::Unknown);
    }

    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn finds_the_own_cgroup_under_the_cgroup2_mount() {
        let dir = own_cgroup_dir("4:memory:/x\n0::/user.slice/a.scope\n", MOUNTINFO).unwrap();
        assert_eq!(
            dir,
            PathBuf::from("/sys/fs/cgroup/unified/user.slice/a.scope")
        );
        assert_eq!(
            own_cgroup_dir("0::/\n", MOUNTINFO).unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(own_cgroup_dir("4:memory:/x\n", MOUNTINFO), None);
        assert_eq!(
            own_cgroup_dir(
                "0::/\n",
                "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
            ),
            None
        );
    }

    #[test]
    fn cgroup_delegation_needs_controllers_and_write_access() {
        let cg = Some("0::/u\n");
        let ctl = |s: &'static str| {
            move |p: &Path| p.ends_with("u/cgroup.controllers").then(|| s.to_string())
        };
        let user = Manager::User;
        let (ok, c) = cgroup_check(
            cg,
            Some(MOUNTINFO),
            &ctl("cpu memory pids"),
            &|_| true,
            user,
        );
        assert!(ok, "{c:?}");
        let (ok, c) = cgroup_check(cg, Some(MOUNTINFO), &ctl("cpu"), &|_| true, user);
        assert!(!ok && c.detail.contains("memory, pids") && c.status == Status::Warn);
        let (ok, c) = cgroup_check(cg, Some(MOUNTINFO), &ctl("memory pids"), &|_| false, user);
        assert!(!ok && c.detail.contains("not writable"));
        assert!(!cgroup_check(None, None, &|_| None, &|_| true, user).0);
    }

    /// `systemd-run` is suggested only where a systemd manager would answer it.
    #[test]
    fn the_delegation_fix_names_systemd_run_only_where_systemd_answers() {
        let cg = Some("0::/u\n");
        let ctl = |p: &Path| {
            p.ends_with("u/cgroup.controllers")
                .then(|| "cpu".to_string())
        };
        let fix = |m| {
            let (_, c) = cgroup_check(cg, Some(MOUNTINFO), &ctl, &|_| true, m);
            format!("{c:?}")
        };
        assert!(fix(Manager::User).contains("systemd-run --user --scope"));
        let sys = fix(Manager::System);
        assert!(
            sys.contains("systemd-run --scope") && !sys.contains("--user"),
            "{sys}"
        );
        let none = fix(Manager::None);
        assert!(!none.contains("systemd-run"), "{none}");
        assert!(none.contains("no systemd manager answers"), "{none}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_landlock_probe_agrees_with_the_running_kernel() {
        // The crate's view of the kernel, re-derived through its public API:
        // a ruleset handling every right of the detected ABI must be creatable.
        let abi = probe_landlock_abi();
        if abi == 0 {
            eprintln!("skip: Landlock unavailable on this kernel");
            assert!(
                std::env::var_os("AIOPS_MUST_WORK").is_none(),
                "Landlock must work here"
            );
            return;
        }
        assert!(landlock_accepts(landlock::ABI::from(i32::from(abi))));
        if abi < 9 {
            assert!(!landlock_accepts(landlock::ABI::from(i32::from(abi) + 1)));
        }
    }
}
