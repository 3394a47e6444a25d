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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match aiops_supervisor::daemon::parse_args(&args) {
        Ok(a) => a,
        Err(msg) if msg.starts_with("aiops-supervisor ") => {
            println!("{msg}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("aiops-supervisor: {msg}");
            return exit(aiops_supervisor::error::EXIT_USAGE);
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
