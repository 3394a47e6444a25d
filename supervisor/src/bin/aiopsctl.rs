//! aiopsctl: parse, set up logging, dispatch, map the outcome to an exit code.
#![forbid(unsafe_code)]
use aiops_supervisor::cli::{self, Cli};
use aiops_supervisor::error::EXIT_USAGE;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors; anything else is a usage error (64, not clap's 2).
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
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
