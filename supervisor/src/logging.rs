//! tracing set-up for `aiopsctl`: journald when started by systemd with a
//! journal stream, else compact lines on stderr. Level from `AIOPS_LOG`
//! (an env-filter directive, default `warn`).
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub const LOG_ENV: &str = "AIOPS_LOG";

pub fn init() {
    init_with_default("warn");
}

/// The daemon's default: warnings, plus its own start, drain and stop
/// lines (info, daemon.rs), which an operator looks for in the journal.
pub const DAEMON_DEFAULT: &str = "warn,aiops_supervisor::daemon=info";

/// `init` with another default filter (used when `AIOPS_LOG` is unset or bad).
pub fn init_with_default(default: &str) {
    let (filter, bad_filter) = match EnvFilter::try_from_env(LOG_ENV) {
        Ok(f) => (f, false),
        // Unset is the normal case; a value that does not parse is worth a warning.
        Err(_) => (EnvFilter::new(default), std::env::var_os(LOG_ENV).is_some()),
    };
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    let inited = match journald {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init(),
        None => {
            let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
            tracing_subscriber::registry()
                .with(filter)
                .with(
                    tracing_subscriber::fmt::layer()
                        .compact()
                        .with_ansi(ansi)
                        .with_writer(std::io::stderr),
                )
                .try_init()
        }
    };
    if inited.is_ok() && bad_filter {
        // The value itself is not logged: it came from the environment.
        tracing::warn!(
            var = LOG_ENV,
            default,
            "ignoring unparsable log filter; using the default"
        );
    }
}
