//! `aiopsctl exec`: one node in one jail, no daemon, no database.
use crate::context::{host_context, Home};
use crate::error::error_chain;
use crate::error::SupervisorError;
use crate::{exec, facts, locate};
use aiops_policy::units::Dur;
#[cfg(target_os = "macos")]
use aiops_policy::NetMode;
use aiops_policy::{NodeCaps, PathSpec};
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
    /// Hard wall-clock limit (at most the profile's), e.g. 90s, 1.5s, 1h30m.
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<Dur>,
    /// Node capabilities (TOML) to narrow the profile.
    #[arg(long, value_name = "FILE")]
    pub node_caps: Option<PathBuf>,
    /// Pass an environment variable: NAME passes your value, NAME=VALUE
    /// sets one. The name must match the profile's env allow-list.
    /// Repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env_flag)]
    pub env: Vec<(String, Option<String>)>,
    /// A path the node may read, added to its declared read paths; it must
    /// lie inside the profile's fs.read or fs.write. Repeatable.
    #[arg(long = "read", value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// A path the node may write, added to its declared write paths; it
    /// must lie inside the profile's fs.write. Repeatable.
    #[arg(long = "write", value_name = "PATH")]
    pub write: Vec<PathBuf>,
    /// A HOST:PORT the node may connect to through the egress proxy, added
    /// to its declared net_allow; the profile's net.allow must admit it.
    /// Repeatable.
    #[arg(long = "net-allow", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub net_allow: Vec<aiops_policy::net::HostPort>,
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

/// The profile, narrowed by `--node-caps`, `--timeout` and the flags that
/// add to the declared caps, compiled for this host and invocation.
#[cfg(target_os = "linux")]
fn compile_plan(args: &ExecArgs) -> Result<aiops_policy::JailPlan, SupervisorError> {
    let (profile, caps, origins) = profile_and_caps(args)?;
    // Nothing ran: a workspace or cwd that cannot be used is a refusal (122),
    // not a status a node could have given.
    let mut ctx = host_context(
        args.workspace.as_deref(),
        args.cwd.as_deref(),
        Home::JailUser,
    )
    .map_err(refused)?;
    set_env_values(args, &mut ctx);
    let facts = facts::facts_for(&profile);
    aiops_policy::compile(&profile, &caps, &facts, &ctx).map_err(|e| origins.refused(e))
}

/// `-e NAME=VALUE`: the value the node gets (the compiler still passes it
/// only if the name is allowed).
fn set_env_values(args: &ExecArgs, ctx: &mut aiops_policy::compile::CompileContext) {
    for (name, value) in &args.env {
        if let Some(v) = value {
            ctx.host_env.insert(name.clone(), v.clone());
        }
    }
}

/// `-e NAME[=VALUE]`: a valid variable name, and the value if given.
fn parse_env_flag(s: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    aiops_policy::EnvName::parse(name)?;
    Ok((name.to_string(), value))
}

fn parse_host_port(s: &str) -> Result<aiops_policy::net::HostPort, String> {
    aiops_policy::net::HostPort::parse(s)
}

/// Which entries of the declared caps came from which flag: entries from
/// index `base` on in `field` are the flag's, so a refusal names the flag.
#[derive(Debug, Default)]
struct FlagOrigins(Vec<(&'static str, usize, &'static str)>);

impl FlagOrigins {
    /// The policy's refusal, its field renamed to the flag that added the
    /// entry (`--read "/root": outside profile "restrictive"`).
    fn refused(&self, e: aiops_policy::PolicyError) -> SupervisorError {
        refused(self.rename(e))
    }

    fn rename(&self, e: aiops_policy::PolicyError) -> aiops_policy::PolicyError {
        let aiops_policy::PolicyError::OutsideProfile {
            field,
            entry,
            profile,
        } = e
        else {
            return e;
        };
        let flag = field
            .strip_suffix(']')
            .and_then(|f| f.split_once('['))
            .and_then(|(name, i)| Some((name, i.parse::<usize>().ok()?)))
            .and_then(|(name, i)| {
                self.0
                    .iter()
                    .find(|(f, base, _)| *f == name && i >= *base)
                    .map(|(_, _, flag)| *flag)
            });
        aiops_policy::PolicyError::OutsideProfile {
            field: flag.map_or(field, str::to_string),
            entry,
            profile,
        }
    }
}

/// A path flag's value as a profile path: relative paths are taken from
/// the current directory; `$WORKSPACE/...` and the other variables work
/// as in a profile.
fn path_spec(flag: &str, p: &std::path::Path) -> Result<PathSpec, SupervisorError> {
    let s = p.to_string_lossy();
    let abs = if s.starts_with('$') || p.is_absolute() {
        s.into_owned()
    } else {
        std::path::absolute(p)
            .map_err(|source| SupervisorError::CurrentDir { source })?
            .to_string_lossy()
            .into_owned()
    };
    PathSpec::parse(&abs).map_err(|reason| SupervisorError::Usage {
        what: format!("{flag} {}", p.display()),
        reason,
    })
}

/// Append `extra` to a declared list, starting from the profile's own list
/// when the node declared none (the flags add; they never narrow).
fn add_to<T: Clone>(
    declared: &mut Option<Vec<T>>,
    profile: &[T],
    extra: Vec<T>,
    field: &'static str,
    flag: &'static str,
    origins: &mut FlagOrigins,
) {
    if extra.is_empty() {
        return;
    }
    let list = declared.get_or_insert_with(|| profile.to_vec());
    origins.0.push((field, list.len(), flag));
    list.extend(extra);
}

type Loaded = (aiops_policy::Profile, NodeCaps, FlagOrigins);

fn profile_and_caps(args: &ExecArgs) -> Result<Loaded, SupervisorError> {
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
    // The flags add to the declared caps, which the compiler then checks
    // against the profile's ceiling exactly as it checks --node-caps.
    let mut origins = FlagOrigins::default();
    let read = args
        .read
        .iter()
        .map(|p| path_spec("--read", p))
        .collect::<Result<Vec<_>, _>>()?;
    let write = args
        .write
        .iter()
        .map(|p| path_spec("--write", p))
        .collect::<Result<Vec<_>, _>>()?;
    add_to(
        &mut caps.read_paths,
        &profile.read,
        read,
        "read_paths",
        "--read",
        &mut origins,
    );
    add_to(
        &mut caps.write_paths,
        &profile.write,
        write,
        "write_paths",
        "--write",
        &mut origins,
    );
    add_to(
        &mut caps.net_allow,
        &profile.net_allow,
        args.net_allow.clone(),
        "net_allow",
        "--net-allow",
        &mut origins,
    );
    if !args.env.is_empty() {
        let names = args
            .env
            .iter()
            .map(|(n, _)| aiops_policy::EnvName::parse(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| SupervisorError::Usage {
                what: "-e".into(),
                reason,
            })?;
        // Undeclared, the node passes every allowed variable it has: as
        // names, those of the caller's environment the allow-list admits.
        let base: Vec<aiops_policy::EnvName> = if caps.env.is_none() {
            std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .filter(|k| profile.env_allow.iter().any(|p| p.matches(k)))
                .filter_map(|k| aiops_policy::EnvName::parse(&k).ok())
                .collect()
        } else {
            vec![]
        };
        add_to(&mut caps.env, &base, names, "env", "-e", &mut origins);
    }
    Ok((profile, caps, origins))
}

/// macOS: compile the sandbox-exec plan from the same profile and caps
/// and run the node under sandbox-exec. Linux-only layers a profile
/// requires refuse it.
#[cfg(target_os = "macos")]
fn run_node(
    args: &ExecArgs,
    profile: &aiops_policy::Profile,
    caps: &NodeCaps,
    origins: &FlagOrigins,
) -> Result<exec::ExecReport, SupervisorError> {
    use exec::sandbox_exec::{Run, SANDBOX_EXEC};
    let mut ctx = host_context(
        args.workspace.as_deref(),
        args.cwd.as_deref(),
        Home::Invoker,
    )?;
    set_env_values(args, &mut ctx);
    let facts = facts::facts_for(profile);
    aiops_policy::compile::check_required_layers(&profile.require, &facts).map_err(
        |e| match e {
            aiops_policy::PolicyError::Refused { layer, reason } => SupervisorError::Refused {
                reason: format!("layer {layer} unavailable: {reason}"),
            },
            e => refused(e),
        },
    )?;
    let plan = aiops_policy::sbpl::compile_sbpl_for(profile, caps, &ctx)
        .map_err(|e| origins.refused(e))?;
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
        let (profile, caps, origins) = profile_and_caps(args)?;
        run_node(args, &profile, &caps, &origins)?
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

/// Printed after clap's error when `aiopsctl exec` was given its command
/// without `--` (`aiopsctl exec --profile p ls -la`): clap takes `-la` for
/// an option of its own or refuses `ls`.
pub const MISSING_SEPARATOR_HINT: &str =
    "hint: use `aiopsctl exec [OPTIONS] -- CMD ARGS...`: everything after `--` is the command, passed unchanged";

/// The hint for a parse error of `exec` whose arguments have no `--`.
pub fn missing_separator_hint<T: AsRef<std::ffi::OsStr>>(
    args: &[T],
    err: &clap::Error,
) -> Option<&'static str> {
    use clap::error::ErrorKind;
    let is_exec = args.get(1).is_some_and(|a| a.as_ref() == "exec");
    let has_separator = args.iter().skip(2).any(|a| a.as_ref() == "--");
    let kind = matches!(
        err.kind(),
        ErrorKind::UnknownArgument
            | ErrorKind::MissingRequiredArgument
            | ErrorKind::InvalidValue
            | ErrorKind::ArgumentConflict
            | ErrorKind::NoEquals
            | ErrorKind::TooManyValues
    );
    (is_exec && !has_separator && kind).then_some(MISSING_SEPARATOR_HINT)
}
