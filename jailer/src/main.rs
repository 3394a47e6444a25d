//! aiops-jailer: builds one jail from a `JailRequest` and execs aiops-agentd
//! as its PID 1. Synchronous and single-threaded on purpose:
//! unshare(CLONE_NEWUSER) fails with EINVAL in a threaded process.
//!
//! Usage: `aiops-jailer --request-fd N --report-fd M` |
//! `aiops-jailer --socket-activated` | `aiops-jailer probe`
#![deny(unsafe_code)]

mod activation;
mod caps;
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
#[allow(unsafe_code)] // all FFI is here; see the header comment of sys.rs
mod sys;

use aiops_policy::proto::{exit, Report};
use error::JailError;
use exec::ReportFd;
use nix::sys::socket::{getsockopt, sockopt, SockType};
use std::os::fd::{IntoRawFd, RawFd};

enum Cmd {
    Probe,
    Jail { request: RawFd, report: RawFd },
    SocketActivated,
}

fn parse_args(args: &[String]) -> Result<Cmd, String> {
    match args {
        [p] if p == "probe" => Ok(Cmd::Probe),
        [s] if s == "--socket-activated" => Ok(Cmd::SocketActivated),
        [a, n, b, m] if a == "--request-fd" && b == "--report-fd" => {
            let fd = |s: &str| {
                s.parse::<RawFd>()
                    .map_err(|_| format!("{s:?} is not an fd number"))
            };
            let (request, report) = (fd(n)?, fd(m)?);
            if request < 3 || report < 3 || request == report {
                return Err("--request-fd and --report-fd must be distinct fds ≥ 3 (0-2 belong to the node)".into());
            }
            Ok(Cmd::Jail { request, report })
        }
        _ => Err(
            "aiops-jailer --request-fd N --report-fd M | aiops-jailer --socket-activated \
             | aiops-jailer probe"
                .into(),
        ),
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

fn adopt_report(fd: RawFd) -> Result<ReportFd, JailError> {
    let owned = sys::adopt_inherited_fd(fd).map_err(|source| JailError::ReportFd { fd, source })?;
    match getsockopt(&owned, sockopt::SockType) {
        Ok(SockType::SeqPacket) => Ok(ReportFd(owned.into_raw_fd())),
        Ok(_) => Err(JailError::ReportFd {
            fd,
            source: std::io::Error::from_raw_os_error(libc::EPROTOTYPE),
        }),
        Err(e) => Err(JailError::ReportFd {
            fd,
            source: e.into(),
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Cmd::Probe) => {
            let v = probe::probe();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Ok(Cmd::Jail { request, report }) => {
            let env = jail::HostEnv::capture(false);
            let mut report = match adopt_report(report) {
                Ok(r) => r,
                Err(e) => fail(None, &e),
            };
            match jail::run(jail::Source::Fd(request), &mut report, &env) {
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
            match jail::run(source, &mut report, &env) {
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
