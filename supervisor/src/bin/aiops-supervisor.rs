//! aiops-supervisor: the daemon (see `aiops_supervisor::daemon`).
#![forbid(unsafe_code)]
use std::process::ExitCode;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("aiops-supervisor: the engine runs jails through aiops-jailer and is Linux-only; on macOS use `aiopsctl exec`");
    ExitCode::from(69)
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    // Before anything else, before tokio's threads exist.
    aiops_supervisor::sys::reset_inherited_signals();
    let parsed = match aiops_supervisor::daemon::parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors; anything else is a usage error (64, not clap's 2).
            let code = if e.use_stderr() {
                aiops_supervisor::error::EXIT_USAGE
            } else {
                0
            };
            let _ = e.print();
            return exit(code);
        }
    };
    match aiops_supervisor::daemon::main(parsed) {
        Ok(code) => exit(code),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("aiops-supervisor: {:#}", anyhow::Error::from(e));
            exit(code)
        }
    }
}

#[cfg(target_os = "linux")]
fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
