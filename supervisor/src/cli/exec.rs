//! `aiopsctl exec`: one node in one jail, no daemon, no database.
use crate::context::{host_context, Home};
use crate::error::error_chain;
use crate::error::SupervisorError;
use crate::{exec, facts, locate};
use aiops_policy::units::Dur;
#[cfg(target_os = "macos")]
use aiops_policy::NetMode;
use aiops_policy::NodeCaps;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    None,
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A profile name on the search path, or a path to a .toml file.
    #[arg(long, value_name = "NAME|PATH")]
    pub profile: String,
    /// The workspace ($WORKSPACE) [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The node's working directory [default: the current directory if inside
    /// the workspace, else the workspace].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Hard wall-clock limit (at most the profile's), e.g. 90s, 10m.
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<Dur>,
    /// Node capabilities (TOML) to narrow the profile.
    #[arg(long, value_name = "FILE")]
    pub node_caps: Option<PathBuf>,
    /// Summary written to stderr after the node's own output.
    #[arg(long, value_enum, default_value = "none")]
    pub report: ReportFormat,
    /// Give the node a pseudo-terminal of the jail's own, even when stdin is
    /// not a terminal [default: when stdin and stdout are terminals].
    #[arg(short = 't', long, conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never give the node a pseudo-terminal; if stdin is a terminal, the
    /// node's stdin is empty instead.
    #[arg(short = 'T', long)]
    pub no_tty: bool,
    /// The command and its arguments, passed unchanged (no shell).
    #[arg(required = true, last = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

#[cfg(target_os = "macos")]
fn allowlist_refusal(profile: &str) -> SupervisorError {
    // Fail closed: without the egress proxy the allow-list cannot hold.
    SupervisorError::Refused {
        reason: format!(
            "profile {profile:?} gives net = \"allowlist\" and the egress proxy is not \
             implemented yet; narrow the node with --node-caps (net = \"none\" or \"loopback\")"
        ),
    }
}

/// Linux: load the profile and compile the plan, then run it through
/// aiops-jailer; for `allowlist`, with the egress proxy running in this
/// process.
#[cfg(target_os = "linux")]
fn run_linux(args: &ExecArgs) -> Result<exec::ExecReport, SupervisorError> {
    let tty = wants_pty(args);
    // Raw until the jail is over: keystrokes (^C and ^Z included) reach the
    // node's pty as bytes. Entered before the jailer starts so that the
    // termination signals it blocks stay blocked until the terminal is
    // restored, when this guard drops, on every return below.
    let _raw = tty.then(super::terminal::RawMode::enter).flatten();
    // The jailer is started first so that its exec and start-up overlap
    // the compile below; if we refuse, dropping it kills it before it has
    // read a request. (Compiling on a second thread meanwhile was slower:
    // thread start, join and cross-CPU TLB flushes cost more than the
    // ~0.12 ms the vfork parent waits for the jailer's exec.)
    let (pending, egress) = start_jailer()?;
    let plan = compile_plan(args)?;
    warn_if_root_owned_workspace(&plan);
    tracing::info!(target: "aiops::exec", profile = %plan.profile, net = %plan.net.mode, "exec");
    let proxy = egress.start_for(&plan)?;
    let mut report = pending.with_tty(tty).run(&args.argv, &plan)?;
    report.egress = proxy.map(crate::egress::EgressHandle::finish);
    Ok(report)
}

/// `-t`, or by default when stdin and stdout are terminals and we are in
/// the foreground (a background job would be stopped by SIGTTOU when it
/// made the terminal raw).
#[cfg(target_os = "linux")]
fn wants_pty(args: &ExecArgs) -> bool {
    if args.tty || args.no_tty {
        return args.tty;
    }
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    nix::unistd::isatty(&stdin).unwrap_or(false)
        && nix::unistd::isatty(&stdout).unwrap_or(false)
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|g| g == nix::unistd::getpgrp())
}

/// The jailer, waiting for its request, and the egress channel it is
/// offered: the plan, not yet compiled, decides whether the jailer keeps
/// its end (one socketpair).
#[cfg(target_os = "linux")]
fn start_jailer() -> Result<(exec::PendingJail, crate::egress::EgressChannel), SupervisorError> {
    let jailer = locate::JAILER
        .find()
        .map_err(|e| SupervisorError::Refused {
            reason: e.to_string(),
        })?;
    let (egress, jail_end) = crate::egress::channel()?;
    let fds = exec::JailerFds {
        egress: Some(jail_end),
    };
    let pending = exec::spawn_jailer_with_fds(&jailer.path, exec::JailStdio::Inherit, fds)?;
    Ok((pending, egress))
}

/// The profile, narrowed by `--node-caps` and `--timeout`, compiled for
/// this host and invocation.
#[cfg(target_os = "linux")]
fn compile_plan(args: &ExecArgs) -> Result<aiops_policy::JailPlan, SupervisorError> {
    let (profile, caps) = profile_and_caps(args)?;
    // Nothing ran: a workspace or cwd that cannot be used is a refusal (122),
    // not a status a node could have given.
    let ctx = host_context(
        args.workspace.as_deref(),
        args.cwd.as_deref(),
        Home::JailUser,
    )
    .map_err(refused)?;
    let facts = facts::facts_for(&profile);
    aiops_policy::compile(&profile, &caps, &facts, &ctx).map_err(refused)
}

fn profile_and_caps(args: &ExecArgs) -> Result<(aiops_policy::Profile, NodeCaps), SupervisorError> {
    let profile = locate::profile_loader()
        .load(&args.profile)
        .map_err(refused)?;
    let mut caps = match &args.node_caps {
        Some(f) => NodeCaps::from_toml_file(f).map_err(refused)?,
        None => NodeCaps::default(),
    };
    if let Some(t) = args.timeout {
        // Checked against the profile's ceiling like any node limit.
        caps.limits.get_or_insert_with(Default::default).timeout = Some(t);
    }
    Ok((profile, caps))
}

/// macOS: compile the sandbox-exec plan from the same profile and caps
/// and run the node under sandbox-exec. Linux-only layers a profile
/// requires refuse it.
#[cfg(target_os = "macos")]
fn run_node(
    args: &ExecArgs,
    profile: &aiops_policy::Profile,
    caps: &NodeCaps,
) -> Result<exec::ExecReport, SupervisorError> {
    use exec::sandbox_exec::{Run, SANDBOX_EXEC};
    let ctx = host_context(
        args.workspace.as_deref(),
        args.cwd.as_deref(),
        Home::Invoker,
    )?;
    let facts = facts::facts_for(profile);
    aiops_policy::compile::check_required_layers(&profile.require, &facts).map_err(
        |e| match e {
            aiops_policy::PolicyError::Refused { layer, reason } => SupervisorError::Refused {
                reason: format!("layer {layer} unavailable: {reason}"),
            },
            e => refused(e),
        },
    )?;
    let plan = aiops_policy::sbpl::compile_sbpl_for(profile, caps, &ctx).map_err(refused)?;
    if plan.net == NetMode::Allowlist {
        return Err(allowlist_refusal(&plan.profile));
    }
    if !plan.secrets.is_empty() {
        return Err(SupervisorError::Refused {
            reason: "secrets are injected by aiops-jailer, which is Linux-only".into(),
        });
    }
    exec::sandbox_exec::run(&Run {
        program: std::path::Path::new(SANDBOX_EXEC),
        plan: &plan,
        argv: &args.argv,
        cwd: ctx.cwd.as_path(),
    })
}

/// Policy refusals all exit with `exit::REFUSED`, whatever their class.
fn refused(e: impl std::error::Error) -> SupervisorError {
    SupervisorError::Refused {
        reason: error_chain(&e),
    }
}

pub fn run(args: &ExecArgs, _out: &mut dyn Write) -> Result<i32, SupervisorError> {
    #[cfg(target_os = "linux")]
    let report = run_linux(args)?;
    #[cfg(target_os = "macos")]
    let report = {
        if args.tty {
            return Err(SupervisorError::Refused {
                reason: "-t: a pty of the node's own needs agentd, which is Linux-only".into(),
            });
        }
        let (profile, caps) = profile_and_caps(args)?;
        run_node(args, &profile, &caps)?
    };
    let mut err = std::io::stderr().lock();
    match args.report {
        ReportFormat::None => {
            // A refused connection is otherwise only a tool's terse error.
            for line in report.egress.iter().flat_map(|e| e.denial_lines()) {
                let _ = writeln!(err, "{line}");
            }
            if let Some(line) = report.failure_line() {
                let _ = writeln!(err, "{line}");
            }
            for line in report.protected_notes() {
                let _ = writeln!(err, "aiopsctl: {line}");
            }
        }
        ReportFormat::Text => {
            let _ = write!(err, "{}", report.to_text());
        }
        ReportFormat::Json => {
            let s = serde_json::to_string(&report).map_err(|source| SupervisorError::Json {
                what: "exec report",
                source,
            })?;
            let _ = writeln!(err, "{s}");
        }
    }
    Ok(report.status)
}

/// Started as root, the jailer runs the node as the owner of the first
/// writable bind, or as `nobody` when that is root: a jail is never host
/// root. Say so when that leaves a writable workspace unwritable.
#[cfg(target_os = "linux")]
fn warn_if_root_owned_workspace(plan: &aiops_policy::JailPlan) {
    use std::os::unix::fs::MetadataExt;
    if plan.unconfined || !nix::unistd::geteuid().is_root() {
        return;
    }
    let first_rw = aiops_proto::ids::identity_sources(plan).next();
    if let Some(src) = first_rw {
        // Only when nobody can enter but not write: if it cannot enter at
        // all, the jailer refuses with its own message.
        let enter_only = |m: &std::fs::Metadata| m.mode() & 0o003 == 0o001;
        if std::fs::metadata(src.as_path()).is_ok_and(|m| m.uid() == 0 && enter_only(&m)) {
            eprintln!(
                "aiopsctl: note: {src} is owned by root and a jail never runs as host root, \
                 so the node runs as nobody and cannot write there; chown it to the user \
                 who should own the results"
            );
        }
    }
}
