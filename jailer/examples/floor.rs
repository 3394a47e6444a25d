//! The floor of a jail's start-up on this host: a static program that only
//! unshares the namespaces a `restrictive` jail gets (user, mount, pid,
//! net, ipc, uts, cgroup), writes the id maps, then runs argv in them and
//! waits. No root, no Landlock, no seccomp, no PID 1, no supervisor.
//! bench/run.sh times it next to `aiopsctl exec` and bwrap, so the
//! ratio it reaches bounds what any jail of ours could.
//!
//! cargo build --release --target x86_64-unknown-linux-musl -p aiops-jailer --example floor
//! target/x86_64-unknown-linux-musl/release/examples/floor /bin/true
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sched::{unshare, CloneFlags};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((prog, args)) = argv.split_first() else {
        eprintln!("usage: floor CMD [ARGS...]");
        return ExitCode::from(64);
    };
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWCGROUP,
    )
    .expect("unshare");
    std::fs::write("/proc/self/setgroups", "deny").expect("setgroups");
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")).expect("uid_map");
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")).expect("gid_map");
    // The first child is PID 1 of the new pid namespace.
    let st = Command::new(prog).args(args).status().expect("spawn");
    ExitCode::from(u8::try_from(st.code().unwrap_or(1)).unwrap_or(1))
}
