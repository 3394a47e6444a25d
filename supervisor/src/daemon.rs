//! `aiops-supervisor`: the daemon. Start-up runs in a fixed order, each
//! step failing loudly with what it was doing: config, tracing, the engine
//! lock and store (restart recovery happens here), profiles, the API bind,
//! then the scheduler and READY=1. SIGTERM/SIGINT drain: no new nodes, the
//! running ones get `drain_grace`, then they are stopped.
use crate::config::Config;
use crate::engine::{BootedEngine, Caller, Engine};
use crate::error::error_chain;
use crate::error::SupervisorError;
use std::path::PathBuf;

/// Runs aiops flows, each node in its own jail: the daemon behind
/// `aiopsctl` and the HTTP API (aiops-supervisor(8)).
#[derive(Debug, clap::Parser)]
#[command(
    name = "aiops-supervisor",
    version,
    after_long_help = daemon_help(),
)]
pub struct DaemonArgs {
    /// supervisor.toml [default: /etc/aiops/supervisor.toml when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the configuration and every profile on the search path,
    /// print a summary and exit.
    #[arg(long)]
    pub check: bool,
}

/// The daemon's exit statuses besides 0, from `aiops_proto::exit`.
pub const EXIT_CODES: &[i32] = &[
    aiops_proto::exit::CONFLICT,
    aiops_proto::exit::USAGE,
    aiops_proto::exit::DATAERR,
    aiops_proto::exit::NOINPUT,
    aiops_proto::exit::SOFTWARE,
    aiops_proto::exit::OSERR,
    aiops_proto::exit::IOERR,
];

fn daemon_help() -> String {
    format!(
        "{}\n\nEnvironment:\n  AIOPS_LOG           log filter (default {})\n  \
         AIOPS_PROFILE_PATH  colon-separated profile dirs, searched first",
        crate::cli::exit_help(
            "stopped cleanly (SIGTERM), or --check found no error",
            EXIT_CODES,
            &[]
        ),
        crate::logging::DAEMON_DEFAULT,
    )
}

/// Parse the daemon's arguments (without the program name). `Err` is
/// clap's: `--help` and `--version` print to stdout, anything else is a
/// usage error (`exit::USAGE`, not clap's 2).
pub fn parse_args<I, T>(args: I) -> Result<DaemonArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    DaemonArgs::try_parse_from(
        std::iter::once("aiops-supervisor".into()).chain(args.into_iter().map(Into::into)),
    )
}

/// Every profile on the search path must load; a broken one is reported
/// at start rather than when a node first names it.
fn check_profiles() -> Vec<String> {
    let loader = crate::locate::profile_loader();
    let mut bad = vec![];
    for (_, path) in loader.list() {
        if let Err(err) = loader.load_path(&path) {
            bad.push(format!("{}: {}", path.display(), error_chain(&err)));
        }
    }
    bad
}

pub fn main(args: DaemonArgs) -> Result<i32, SupervisorError> {
    let cfg = Config::load(args.config.as_deref())?;
    crate::logging::init_with_default(crate::logging::DAEMON_DEFAULT);
    let bad_profiles = check_profiles();
    for b in &bad_profiles {
        tracing::error!(profile = %b, "profile does not load; nodes naming it will be refused");
    }
    if args.check {
        println!(
            "config {} ok; state {}; api {}; {} profile error(s)",
            cfg.source
                .as_ref()
                .map_or("(defaults)".into(), |p| p.display().to_string()),
            cfg.state_dir.display(),
            cfg.api_socket.display(),
            bad_profiles.len()
        );
        return Ok(if bad_profiles.is_empty() {
            0
        } else {
            aiops_proto::exit::DATAERR
        });
    }
    raise_fd_limit();
    let booted = BootedEngine::open(&cfg, Caller::Daemon)?;
    let engine = booted.engine.clone();
    let code = booted.rt.block_on(serve(cfg, engine))?;
    drop(booted);
    Ok(code)
}

/// Raise the soft RLIMIT_NOFILE to the hard one, as many daemons do: the
/// daemon holds the API's connections and every allowlist node's egress
/// connections (each proxy bounded by its profile's `connections`), and
/// the soft default of 1024 is a limit for select(2) users, not for us. The
/// packaged unit sets both with LimitNOFILE=, so there nothing changes (and
/// its filter would refuse setrlimit(2): @resources).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit")
            }
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "read the open-file limit"),
    }
}

/// The API socket belongs to the admin group, so its members can open it
/// (the peer check still decides what they may do). Without the group,
/// or when we may not give the socket to it, only owner and root connect.
fn share_socket(cfg: &Config) {
    let Ok(Some(group)) = nix::unistd::Group::from_name(&cfg.admin_group) else {
        return;
    };
    if let Err(e) = nix::unistd::chown(&cfg.api_socket, None, Some(group.gid)) {
        if std::env::var_os("INVOCATION_ID").is_some() && e == nix::errno::Errno::EPERM {
            // systemd: the packaged unit's filter denies chown(2); its
            // ExecStartPost= gives the socket to the group instead.
            tracing::debug!(group = %cfg.admin_group, error = %e, "API socket's group left to the unit");
        } else {
            tracing::warn!(group = %cfg.admin_group, error = %e, "could not give the API socket to the admin group");
        }
    }
}

async fn serve(cfg: Config, engine: Engine) -> Result<i32, SupervisorError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| {
        signal(k).map_err(|source| SupervisorError::StateDir {
            path: PathBuf::from("signal handler"),
            source,
        })
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut api_cfg = crate::api::server::ApiConfig::new(cfg.api_socket.clone());
    api_cfg.admin_group = cfg.admin_group.clone();
    api_cfg.tcp = match (cfg.tcp, &cfg.token_file) {
        (Some(addr), Some(token_file)) => Some(crate::api::server::TcpConfig {
            addr,
            token_file: token_file.clone(),
            allow_non_loopback: cfg.allow_non_loopback,
        }),
        _ => None,
    };
    let server =
        crate::api::server::ApiServer::bind(api_cfg).map_err(|e| SupervisorError::Api {
            what: "bind the API",
            reason: error_chain(&e),
            code: aiops_proto::exit::OSERR,
        })?;
    share_socket(&cfg);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let backend = engine.backend();
    let api = tokio::spawn(async move {
        let mut rx = stop_rx;
        server
            .run(backend, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
    });
    engine.start();
    crate::notify::notify("READY=1");
    tracing::info!(
        "aiops-supervisor ready: listening on {}{}, state dir {}, {} parallel, jailer mode {}",
        cfg.api_socket.display(),
        cfg.tcp.map_or(String::new(), |a| format!(" and {a}")),
        cfg.state_dir.display(),
        cfg.parallelism,
        format!("{:?}", cfg.jailer_mode).to_lowercase(),
    );
    let mut watchdog = crate::notify::watchdog_interval().map(tokio::time::interval);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = async {
                match watchdog.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => { crate::notify::notify("WATCHDOG=1"); }
        }
    }
    crate::notify::notify("STOPPING=1");
    tracing::info!(grace = ?cfg.drain_grace, "draining");
    engine.drain(cfg.drain_grace).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api).await;
    // State writes and audit lines a full or locked disk still holds back:
    // a while for them, then, rather than lose them silently, the log.
    let left = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.settle(std::time::Duration::from_secs(10)))
            .await
            .unwrap_or_default()
    };
    if left.writes > 0 || !left.audit_lines.is_empty() {
        for line in &left.audit_lines {
            tracing::error!(line = %line, "audit line not written");
        }
        tracing::error!(
            writes = left.writes,
            audit_lines = left.audit_lines.len(),
            why = left.why.as_deref().unwrap_or("the disk refused them"),
            "stopping with state not saved: nodes whose final state was not stored show as lost at the next start"
        );
        tracing::info!("stopped");
        return Ok(crate::error::EXIT_IOERR);
    }
    tracing::info!("stopped");
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn args_help_and_version_are_clap_s() {
        let a = parse_args(["--config", "/x.toml", "--check"]).unwrap();
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("/x.toml")));
        assert!(a.check);
        for (args, stderr) in [
            (&["--help"][..], false),
            (&["--version"], false),
            (&["--bogus"], true),
        ] {
            let e = parse_args(args.iter().copied()).unwrap_err();
            assert_eq!(e.use_stderr(), stderr, "{args:?}");
        }
        let help = parse_args(["--help"]).unwrap_err().render().to_string();
        assert!(help.contains(&exit_help_block()), "{help}");
    }

    fn exit_help_block() -> String {
        crate::cli::exit_help(
            "stopped cleanly (SIGTERM), or --check found no error",
            EXIT_CODES,
            &[],
        )
    }

    /// aiops-supervisor(8)'s EXIT STATUS lists exactly 0 and `EXIT_CODES`.
    #[test]
    fn the_man_page_lists_the_daemon_s_exit_codes() {
        let man = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/man/aiops-supervisor.8"
        ))
        .unwrap();
        let section = man
            .split_once(".SH EXIT STATUS")
            .and_then(|(_, r)| r.split(".SH ").next())
            .unwrap();
        let listed: Vec<i32> = section
            .lines()
            .filter_map(|l| l.strip_prefix(".B "))
            .filter_map(|n| n.trim().parse().ok())
            .collect();
        let mut want = vec![0];
        want.extend_from_slice(EXIT_CODES);
        assert_eq!(listed, want);
    }
}
