//! The seam between `jail::run()`'s order of steps and the calls that change
//! process or kernel state. `Kernel` makes the calls; the tests put a
//! recorder in its place, so `steps_match_docs` checks the order `run()`
//! really makes its calls in, not a list of names beside it. Decisions stay
//! in `jail.rs`; each method here is one call, no logic.
use crate::error::JailError;
use crate::exec::ReportFd;
use crate::jail::{HostEnv, Source};
use crate::seccomp::Filters;
use crate::{caps, idmap, landlock, limits, mounts, ns, seccomp, secrets};
use aiops_proto::plan::{GuardPlan, LandlockPlan, Mount, Namespace, RlimitPlan};
use aiops_proto::{AgentSpec, EnvName, JailRequest};
use std::convert::Infallible;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// One method per state-changing call of `run()`, named as the step it is
/// (docs/jailer.md numbers them).
pub trait Sys {
    /// Step 1.
    fn read_request(
        &mut self,
        source: Source,
        has_egress: bool,
    ) -> Result<(JailRequest, Option<OwnedFd>), JailError>;
    /// Step 2.
    fn close_fds(
        &mut self,
        report: &ReportFd,
        egress: Option<&OwnedFd>,
        conn: Option<&OwnedFd>,
    ) -> Result<(), JailError>;
    /// Step 2, once no other fd is open: opened and checked here, read by
    /// the jail's PID 1 only (step 6), so the waiting parent never holds a value.
    fn open_secrets(
        &mut self,
        env: &HostEnv,
        names: &[EnvName],
    ) -> Result<Vec<(String, OwnedFd)>, JailError>;
    fn is_root(&mut self) -> bool;
    /// Step 3.
    fn setresuid_to_jail_uid(&mut self, uid: u32, gid: u32) -> Result<(), JailError>;
    /// The effective (uid, gid) after step 3.
    fn ids(&mut self) -> (u32, u32);
    /// Step 3: the kernel's own answer (ACLs included) on whether `uid` may
    /// enter or execute `path`.
    /// `path` (`what`: the working directory, aiops-agentd) can be reached
    /// by this process's uid, the jail's.
    fn check_reachable(
        &mut self,
        uid: u32,
        what: &'static str,
        path: &Path,
    ) -> Result<(), JailError>;
    /// Step 4.
    fn unshare_namespaces(&mut self, nss: &[Namespace]) -> Result<(), JailError>;
    /// Step 5.
    fn write_id_maps(&mut self, uid: u32, gid: u32) -> Result<(), JailError>;
    /// Step 6: returns in the child only, with its end of the pair to the
    /// denial recorder when `denials` asks for one.
    fn fork_into_pid_ns(
        &mut self,
        parent: nix::unistd::Pid,
        conn: Option<OwnedFd>,
        denials: Option<crate::denials::Setup>,
    ) -> Result<Option<OwnedFd>, JailError>;
    /// Step 3, as the jail's uid before any namespace: every git directory
    /// and outside hard link in the writable roots (aiops-guard).
    fn search_writable_roots(
        &mut self,
        plan: &GuardPlan,
        home: Option<&Path>,
    ) -> Result<aiops_guard::Found, JailError>;
    /// Step 7; `guard` is `Found::mounts`. `pts`: the node asked for a
    /// pty (`NodeSpec::tty`).
    fn pivot_root_into(
        &mut self,
        mounts: &[Mount],
        guard: &[(PathBuf, bool)],
        hide: Option<&Path>,
        pts: bool,
    ) -> Result<Vec<mounts::Skipped>, JailError>;
    /// Step 8.
    fn sethostname_and_lo_up(
        &mut self,
        req: &JailRequest,
        egress: Option<OwnedFd>,
    ) -> Result<(), JailError>;
    /// Step 9.
    fn setrlimits(&mut self, plan: &[RlimitPlan]) -> Result<(), JailError>;
    /// Step 10.
    fn setsid(&mut self) -> Result<(), JailError>;
    /// Step 10, unconfined plans: no_new_privs without dropping caps.
    fn set_no_new_privs(&mut self) -> Result<(), JailError>;
    /// Step 10.
    fn drop_caps_and_set_nnp(&mut self) -> Result<(), JailError>;
    /// Step 11.
    fn landlock_restrict_self(&mut self, plan: &LandlockPlan) -> Result<(), JailError>;
    /// Step 12; with `to_parent`, the listener goes to the recorder.
    fn seccomp_install(
        &mut self,
        filters: &Filters,
        to_parent: Option<OwnedFd>,
    ) -> Result<crate::seccomp::Recording, JailError>;
    /// Step 13: returns only on failure.
    fn execve_agentd(
        &mut self,
        target: &Path,
        spec: &AgentSpec,
        report: &mut ReportFd,
    ) -> Result<Infallible, JailError>;
}

/// The real calls.
pub struct Kernel;

impl Sys for Kernel {
    fn read_request(
        &mut self,
        source: Source,
        has_egress: bool,
    ) -> Result<(JailRequest, Option<OwnedFd>), JailError> {
        crate::jail::read_request(source, has_egress)
    }
    fn close_fds(
        &mut self,
        report: &ReportFd,
        egress: Option<&OwnedFd>,
        conn: Option<&OwnedFd>,
    ) -> Result<(), JailError> {
        crate::jail::close_fds(report, egress, conn)
    }
    fn open_secrets(
        &mut self,
        env: &HostEnv,
        names: &[EnvName],
    ) -> Result<Vec<(String, OwnedFd)>, JailError> {
        secrets::open_secrets(env.secrets_dir.as_deref(), env.secrets_origin, names)
    }
    fn is_root(&mut self) -> bool {
        nix::unistd::geteuid().is_root()
    }
    fn setresuid_to_jail_uid(&mut self, uid: u32, gid: u32) -> Result<(), JailError> {
        ns::setresuid_to_jail_uid(uid, gid)
    }
    fn ids(&mut self) -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }
    fn check_reachable(
        &mut self,
        uid: u32,
        what: &'static str,
        path: &Path,
    ) -> Result<(), JailError> {
        let unreachable = |e: nix::errno::Errno| JailError::Unreachable {
            what,
            uid,
            path: path.to_path_buf(),
            why: unreachable_why(path, e),
            source: e.into(),
        };
        // A file is no directory to enter, whatever its mode.
        if what == WORKING_DIRECTORY && std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            return Err(unreachable(nix::errno::Errno::ENOTDIR));
        }
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).map_err(unreachable)
    }
    fn unshare_namespaces(&mut self, nss: &[Namespace]) -> Result<(), JailError> {
        ns::unshare_namespaces(nss)
    }
    fn write_id_maps(&mut self, uid: u32, gid: u32) -> Result<(), JailError> {
        idmap::write_id_maps(uid, gid)
    }
    fn fork_into_pid_ns(
        &mut self,
        parent: nix::unistd::Pid,
        conn: Option<OwnedFd>,
        denials: Option<crate::denials::Setup>,
    ) -> Result<Option<OwnedFd>, JailError> {
        ns::fork_into_pid_ns(parent, conn, denials)
    }
    fn search_writable_roots(
        &mut self,
        plan: &GuardPlan,
        home: Option<&Path>,
    ) -> Result<aiops_guard::Found, JailError> {
        aiops_guard::search(plan, home, true).map_err(|source| JailError::Guard { source })
    }
    fn pivot_root_into(
        &mut self,
        m: &[Mount],
        guard: &[(PathBuf, bool)],
        hide: Option<&Path>,
        pts: bool,
    ) -> Result<Vec<mounts::Skipped>, JailError> {
        mounts::pivot_root_into(m, guard, hide, pts)
    }
    fn sethostname_and_lo_up(
        &mut self,
        req: &JailRequest,
        egress: Option<OwnedFd>,
    ) -> Result<(), JailError> {
        crate::jail::sethostname_and_lo_up(req, egress)
    }
    fn setrlimits(&mut self, plan: &[RlimitPlan]) -> Result<(), JailError> {
        limits::setrlimits(plan)
    }
    fn setsid(&mut self) -> Result<(), JailError> {
        caps::setsid()
    }
    fn set_no_new_privs(&mut self) -> Result<(), JailError> {
        caps::set_no_new_privs()
    }
    fn drop_caps_and_set_nnp(&mut self) -> Result<(), JailError> {
        caps::drop_caps_and_set_nnp()
    }
    fn landlock_restrict_self(&mut self, plan: &LandlockPlan) -> Result<(), JailError> {
        landlock::landlock_restrict_self(plan)
    }
    fn seccomp_install(
        &mut self,
        filters: &Filters,
        to_parent: Option<OwnedFd>,
    ) -> Result<crate::seccomp::Recording, JailError> {
        seccomp::seccomp_install(filters, to_parent)
    }
    fn execve_agentd(
        &mut self,
        target: &Path,
        spec: &AgentSpec,
        report: &mut ReportFd,
    ) -> Result<Infallible, JailError> {
        crate::exec::execve_agentd(target, spec, report)
    }
}

/// `Sys::check_reachable`'s name for the node's working directory.
pub const WORKING_DIRECTORY: &str = "working directory";

/// Why `access(path, X_OK)` failed, in words: `path` is not a directory
/// (where one is needed), or the first directory on the way this uid may
/// not search, with its mode and owner; else the error itself.
fn unreachable_why(path: &Path, e: nix::errno::Errno) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        if nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK).is_err() {
            return match std::fs::metadata(dir) {
                Ok(m) => format!(
                    "directory {} is mode {:04o} (owner uid {}, group {})",
                    dir.display(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ),
                Err(_) => format!("directory {} cannot be searched", dir.display()),
            };
        }
    }
    match std::fs::metadata(path) {
        Ok(m) if e == nix::errno::Errno::ENOTDIR => {
            if m.is_file() {
                "it is a file, not a directory".into()
            } else {
                "it is not a directory".into()
            }
        }
        Ok(m) if m.is_dir() => format!(
            "the directory itself is mode {:04o} (owner uid {}, group {})",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
        Ok(m) => format!(
            "it is mode {:04o} (owner uid {}, group {})",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
        Err(err) => err.to_string(),
    }
}
