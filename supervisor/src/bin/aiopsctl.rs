//! aiopsctl: parse, set up logging, dispatch, map the outcome to an exit code.
#![forbid(unsafe_code)]
use aiops_supervisor::cli::{self, Cli};
use aiops_supervisor::error::EXIT_USAGE;
use std::process::ExitCode;

/// The static musl build's allocator (packaging/static-build.sh): musl's
/// mallocng returns a group to the kernel as soon as its last slot is
/// freed, so `aiopsctl exec`'s short-lived allocations each cost an mmap
/// and a munmap; TLSF keeps what it mapped.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: rlsf::GlobalTlsf = rlsf::GlobalTlsf::new();

fn main() -> ExitCode {
    // Before anything else: what a harness left ignored or blocked must not
    // reach the jail (`sys::reset_inherited_signals`).
    #[cfg(target_os = "linux")]
    aiops_supervisor::sys::reset_inherited_signals();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_args_from(&args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors; anything else is a usage error (64, not clap's 2).
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            if let Some(hint) = cli::exec::missing_separator_hint(&args, &e) {
                eprintln!("{hint}");
            }
            return exit(code);
        }
    };
    aiops_supervisor::logging::init();
    let mut out = std::io::stdout().lock();
    match cli::run(cli, &mut out) {
        Ok(code) => exit(code),
        // A reader that went away (`aiopsctl ... | head`) is not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("aiopsctl: {:#}", anyhow::Error::from(e));
            exit(code)
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
