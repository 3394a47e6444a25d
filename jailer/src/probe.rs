//! `aiops-jailer probe`: live checks of every kernel feature a jail needs,
//! each made for real (in a throw-away child when it changes process
//! state), printed as one JSON object for `aiopsctl doctor`.
use crate::{limits, sys};
use aiops_proto::probe::{ProbeCheck, ProbeReport};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use std::io;

/// Run `f` in a forked child; its errno comes back as the exit code.
fn in_child(f: impl FnOnce() -> io::Result<()>) -> Result<(), String> {
    match sys::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = match f() {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(255).clamp(1, 255),
            };
            exit_child(code)
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, n)) => Err(io::Error::from_raw_os_error(n).to_string()),
            Ok(other) => Err(format!("probe child ended as {other:?}")),
            Err(e) => Err(format!("waitpid: {e}")),
        },
    }
}

#[allow(clippy::exit)] // a probe child reports only through its exit code
fn exit_child(code: i32) -> ! {
    std::process::exit(code)
}

fn entry(r: Result<(), String>) -> ProbeCheck {
    match r {
        Ok(()) => ProbeCheck::ok("works"),
        Err(e) => ProbeCheck::failed(e),
    }
}

fn seccomp_probe() -> io::Result<()> {
    nix::sys::prctl::set_no_new_privs()?;
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| io::Error::other(e.to_string()))?;
    let f = seccompiler::SeccompFilter::new(
        Default::default(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(1),
        arch,
    )
    .map_err(|e| io::Error::other(e.to_string()))?;
    let prog: seccompiler::BpfProgram = f
        .try_into()
        .map_err(|e: seccompiler::BackendError| io::Error::other(e.to_string()))?;
    seccompiler::apply_filter(&prog).map_err(|e| match e {
        seccompiler::Error::Seccomp(io) => io,
        other => io::Error::other(other.to_string()),
    })
}

fn proc_probe() -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)?;
    // proc can only be mounted by a member of the new pid namespace.
    in_child(|| {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        let fl = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("proc"), "/proc", Some("proc"), fl, None::<&str>)?;
        Ok(())
    })
    .map_err(io::Error::other)
}

/// The report `aiopsctl doctor` reads (`aiops_proto::probe`).
pub fn probe() -> ProbeReport {
    let (landlock_abi, landlock) = match sys::landlock_abi_version() {
        // Saturates: an ABI past 255 is still "at least what we know".
        Ok(abi) => (
            u8::try_from(abi).unwrap_or(u8::MAX),
            ProbeCheck::ok(format!("ABI {abi}")),
        ),
        Err(e) => (0, ProbeCheck::failed(e.to_string())),
    };
    let userns = in_child(|| Ok(unshare(CloneFlags::CLONE_NEWUSER)?));
    let netns = in_child(|| {
        Ok(unshare(
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET,
        )?)
    });
    let apparmor =
        match std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
            Ok(v) => ProbeCheck {
                ok: v.trim() != "1",
                detail: format!("sysctl is {}", v.trim()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ProbeCheck::ok("no such sysctl (not Ubuntu's AppArmor)")
            }
            Err(e) => ProbeCheck::failed(e.to_string()),
        };
    let cgroup_v2 = match limits::delegated_cgroup() {
        Ok(dir) => ProbeCheck::ok(dir.display().to_string()),
        Err(e) => ProbeCheck::failed(e),
    };
    ProbeReport {
        landlock_abi,
        landlock,
        seccomp: entry(in_child(seccomp_probe)),
        userns: entry(userns),
        netns: entry(netns),
        proc_mount: entry(in_child(proc_probe)),
        apparmor_restrict_unprivileged_userns: apparmor,
        cgroup_v2,
    }
}
