//! aiops-jailer: builds one jail from a `JailRequest` and execs aiops-agentd
//! as its PID 1. Synchronous and single-threaded on purpose:
//! unshare(CLONE_NEWUSER) fails with EINVAL in a threaded process.
//!
//! Usage: `aiops-jailer --request-fd N --report-fd M [--egress-fd E]` |
//! `aiops-jailer --socket-activated` | `aiops-jailer probe`
#![deny(unsafe_code)]
// Not in [lints] (which is `workspace = true`): only these two crates
// deny it. A failure here is a reported step error, never a panic.
#![deny(clippy::expect_used)]

mod activation;
mod caps;
mod ceiling;
mod config;
mod denials;
mod error;
mod exec;
mod idmap;
mod jail;
mod landlock;
mod limits;
mod mounts;
mod net;
mod ns;
mod probe;
mod seccomp;
mod secrets;
mod steps;
#[allow(unsafe_code)] // all FFI is here; see the header comment of sys.rs
mod sys;

/// The static musl build's allocator (packaging/static-build.sh): musl's
/// mallocng returns a group to the kernel as soon as its last slot is
/// freed, so this process's short-lived allocations cost an mmap and a
/// munmap each (~0.3 ms per jail); TLSF keeps what it mapped.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: rlsf::GlobalTlsf = rlsf::GlobalTlsf::new();

use aiops_proto::{exit, Report};
use error::JailError;
use exec::ReportFd;
use nix::sys::socket::{getsockopt, sockopt, SockType};
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

const USAGE: &str = "aiops-jailer --request-fd N --report-fd M [--egress-fd E] \
                     | aiops-jailer --socket-activated | aiops-jailer probe";

enum Cmd {
    Probe,
    SocketActivated,
    Jail {
        request: RawFd,
        report: RawFd,
        egress: Option<RawFd>,
    },
}

fn parse_args(args: &[String]) -> Result<Cmd, String> {
    match args {
        [p] if p == "probe" => Ok(Cmd::Probe),
        [s] if s == "--socket-activated" => Ok(Cmd::SocketActivated),
        [a, n, b, m, rest @ ..] if a == "--request-fd" && b == "--report-fd" => {
            let fd = |s: &str| {
                s.parse::<RawFd>()
                    .map_err(|_| format!("{s:?} is not an fd number"))
            };
            let (request, report) = (fd(n)?, fd(m)?);
            let egress = match rest {
                [] => None,
                [e, k] if e == "--egress-fd" => Some(fd(k)?),
                _ => return Err(USAGE.into()),
            };
            let mut all = vec![request, report];
            all.extend(egress);
            if all.iter().any(|f| *f < 3) || (1..all.len()).any(|i| all[i..].contains(&all[i - 1]))
            {
                return Err("--request-fd, --report-fd and --egress-fd must be distinct fds ≥ 3 (0-2 belong to the node)".into());
            }
            Ok(Cmd::Jail {
                request,
                report,
                egress,
            })
        }
        _ => Err(USAGE.into()),
    }
}

#[allow(clippy::exit)] // the jailer's exit code is its contract with aiopsctl
fn exit_with(code: i32) -> ! {
    std::process::exit(code)
}

/// Report the failed step on the socket and stderr, and exit with its code.
fn fail(report: Option<&ReportFd>, e: &JailError) -> ! {
    let step = e.step();
    let mut message = e.chain();
    if let Some(r) = report {
        let mut cut = message.len().min(4096);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        let frame = Report::SetupFailed {
            step,
            errno: e.errno(),
            message: message.clone(),
        };
        if let Ok(bytes) = frame.encode() {
            r.send(&bytes);
        }
    }
    eprintln!("aiops-jailer: {step}: {}", e.chain());
    exit_with(step.exit_code())
}

/// An inherited fd that must be a SOCK_SEQPACKET socket (report, egress);
/// `err` names which one in the failure.
fn adopt_seqpacket(
    fd: RawFd,
    err: fn(RawFd, std::io::Error) -> JailError,
) -> Result<OwnedFd, JailError> {
    let owned = sys::adopt_inherited_fd(fd).map_err(|e| err(fd, e))?;
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::SeqPacket) => Ok(owned),
        Ok(_) => Err(err(fd, std::io::Error::from_raw_os_error(libc::EPROTOTYPE))),
        Err(e) => Err(err(fd, e.into())),
    }
}

fn main() {
    // Before anything else (sys.rs says why); it cannot fail in a way that
    // leaves a disposition worse than it found it.
    let _ = sys::reset_inherited_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Cmd::Probe) => {
            let v = probe::probe();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Ok(Cmd::Jail {
            request,
            report,
            egress,
        }) => {
            let env = jail::HostEnv::capture(false);
            let mut report =
                match adopt_seqpacket(report, |fd, source| JailError::ReportFd { fd, source }) {
                    Ok(r) => ReportFd(r.into_raw_fd()),
                    Err(e) => fail(None, &e),
                };
            let egress_err = |fd, source| JailError::EgressFd { fd, source };
            let egress = match egress.map(|e| adopt_seqpacket(e, egress_err)).transpose() {
                Ok(e) => e,
                Err(e) => fail(Some(&report), &e),
            };
            match jail::run(jail::Source::Fd(request), &mut report, egress, &env) {
                Ok(never) => match never {},
                Err(e) => fail(Some(&report), &e),
            }
        }
        Ok(Cmd::SocketActivated) => {
            let env = jail::HostEnv::capture(true);
            let var = |k| std::env::var(k).ok();
            let got = match activation::accept([
                var("LISTEN_PID"),
                var("LISTEN_FDS"),
                var(activation::SUPERVISOR_USER_ENV),
            ]) {
                Ok(g) => g,
                Err(e) => fail(None, &e),
            };
            let mut report = got.report;
            let source = jail::Source::Received {
                request: got.request,
                conn: got.conn,
            };
            match jail::run(source, &mut report, got.egress, &env) {
                Ok(never) => match never {},
                Err(e) => fail(Some(&report), &e),
            }
        }
        Err(usage) => {
            eprintln!("aiops-jailer: usage: {usage}");
            exit_with(exit::USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Result<Cmd, String> {
        parse_args(&s.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn the_egress_fd_is_optional_and_must_be_distinct() {
        assert!(matches!(
            parse("--request-fd 3 --report-fd 4"),
            Ok(Cmd::Jail { egress: None, .. })
        ));
        assert!(matches!(
            parse("--request-fd 3 --report-fd 4 --egress-fd 5"),
            Ok(Cmd::Jail {
                request: 3,
                report: 4,
                egress: Some(5)
            })
        ));
        assert!(parse("--request-fd 3 --report-fd 4 --egress-fd 4").is_err());
        assert!(parse("--request-fd 3 --report-fd 4 --egress-fd 2").is_err());
        assert!(parse("--request-fd 3 --report-fd 4 --egress 5").is_err());
        assert!(parse("--request-fd 3 --report-fd 4 --egress-fd").is_err());
    }
}
