//! The `aiopsctl` command line: clap definitions and dispatch. One module per
//! command group; add a variant to `Command` and a module, nothing else.
use crate::error::{out_err, SupervisorError};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

pub mod doctor;
pub mod exec;
pub mod explain;
pub mod filters;
pub mod lint;
#[cfg(target_os = "linux")]
pub mod logs;
pub mod profile;
#[cfg(target_os = "linux")]
pub mod records;
#[cfg(target_os = "linux")]
pub mod remote;
#[cfg(target_os = "linux")]
pub mod runs;
mod shell;
pub mod table;
#[cfg(target_os = "linux")]
mod terminal;
#[cfg(target_os = "linux")]
pub mod why;

// A macro, not a const, so `concat!` can join it to other help texts.
macro_rules! environment {
    () => {
        "Environment:
  AIOPS_PROFILE_PATH  colon-separated profile dirs, searched before /etc/aiops/profiles
                      and /usr/share/aiops/profiles
  AIOPS_JAILER        path of aiops-jailer (else next to aiopsctl, else /usr/libexec/aiops)
  AIOPS_AGENTD        path of aiops-agentd (same search)
  AIOPS_LOG           log filter, such as debug or aiops_supervisor=trace (default warn)
  NO_COLOR            no colour in log lines"
    };
}

/// The exit statuses each command can give besides 0, as its `--help`
/// lists them; the meanings come from `aiops_proto::exit::TABLE`, so the
/// help cannot drift from it (tests provoke each command's failures and
/// check the status is listed here).
pub mod codes {
    use aiops_proto::exit::*;
    /// Failures every command shares: flags, the configuration, output.
    const COMMON: [i32; 3] = [USAGE, DATAERR, IOERR];
    pub const PROFILE: &[i32] = &[
        USAGE,
        DATAERR,
        NOINPUT,
        UNAVAILABLE,
        OSERR,
        IOERR,
        NOPERM,
        CONFIG,
    ];
    pub const DOCTOR: &[i32] = &[USAGE, UNAVAILABLE, IOERR];
    pub const LINT: &[i32] = &[ESCAPE, USAGE, DATAERR, NOINPUT, IOERR, NOPERM, CONFIG];
    pub const EXEC: &[i32] = &[
        USAGE,
        INTERNAL,
        REFUSED,
        OUTPUT_CAP,
        TIMEOUT,
        SETUP_FAILED,
        CANNOT_EXEC,
        NOT_FOUND,
    ];
    /// `run`, `confirm`: they follow the run to its end or the gate.
    pub const RUN: &[i32] = &[
        FAILED,
        CANCELLED,
        CONFLICT,
        USAGE,
        DATAERR,
        NOINPUT,
        UNAVAILABLE,
        SOFTWARE,
        IOERR,
        PAUSED,
        NOPERM,
        CONFIG,
    ];
    pub const SUBMIT: &[i32] = &[
        USAGE,
        DATAERR,
        NOINPUT,
        UNAVAILABLE,
        SOFTWARE,
        IOERR,
        NOPERM,
        CONFIG,
    ];
    /// `status`, `logs`, `audit`, `gc`: reads (gc also removes).
    pub const RECORDS: &[i32] = &[
        USAGE,
        DATAERR,
        NOINPUT,
        UNAVAILABLE,
        SOFTWARE,
        IOERR,
        NOPERM,
    ];
    pub const CANCEL: &[i32] = &[
        CONFLICT,
        USAGE,
        DATAERR,
        NOINPUT,
        UNAVAILABLE,
        SOFTWARE,
        IOERR,
        NOPERM,
    ];
    pub const OUTPUT: &[i32] = &COMMON;
}

/// An "Exit codes:" block: 0 with `zero`'s meaning, then each of `codes`
/// with its meaning from `aiops_proto::exit::TABLE`, then `extra` lines.
pub fn exit_help(zero: &str, codes: &[i32], extra: &[&str]) -> String {
    let mut s = format!("Exit codes:\n  0    {zero}");
    for &c in codes {
        let meaning = aiops_proto::exit::lookup(c).map_or("", |e| e.meaning);
        s += &format!("\n  {c:<4} {meaning}");
    }
    for line in extra {
        s += &format!("\n  {line}");
    }
    s
}

/// `aiopsctl --help`: every status in the table, the step range, signals,
/// then the environment.
fn top_help() -> String {
    let all: Vec<i32> = aiops_proto::exit::TABLE.iter().map(|e| e.code).collect();
    format!(
        "{}\n\n{}",
        exit_help("success", &all, &[SIGNAL_LINE]),
        environment!()
    )
}
const SIGNAL_LINE: &str = "128+N killed (or, for run, interrupted) by signal N";

fn help(codes: &[i32]) -> String {
    exit_help("success", codes, &[])
}
fn exec_help() -> String {
    format!(
        "{}\n\n{}",
        exit_help(
            "the node's own exit status (0-255), unless aiops itself failed:",
            codes::EXEC,
            &[SIGNAL_LINE]
        ),
        environment!()
    )
}

/// Run commands and AI coding agents in a sandbox built from a capability profile.
#[derive(Debug, Parser)]
#[command(
    name = "aiopsctl",
    version,
    about,
    after_help = "Exit codes and environment: see --help.",
    after_long_help = top_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, show, validate and explain capability profiles.
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Check that this host can provide the layers the default profile needs.
    #[command(after_long_help = help(codes::DOCTOR))]
    Doctor(DoctorArgs),
    /// Print a shell completion script to stdout (bash, zsh and fish also
    /// complete profile names).
    #[command(after_long_help = help(codes::OUTPUT))]
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page aiopsctl(1) (roff) to stdout, or write one page per
    /// subcommand into a directory.
    #[command(after_long_help = help(codes::OUTPUT))]
    Man {
        /// Write aiopsctl.1, aiopsctl-exec.1, ... (every subcommand's page)
        /// into DIR and print their paths.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    #[command(flatten)]
    Exec(ExecCmd),
    /// Run a flow through jails and follow it; starts an in-process
    /// supervisor when no daemon answers.
    ///
    /// Interrupted by signal N (130 SIGINT, 143 SIGTERM), it exits 128+N:
    /// without a daemon its jails were stopped and its nodes recorded
    /// `cancelled` first; a second signal exits at once (docs/supervisor.md).
    #[cfg(target_os = "linux")]
    #[command(after_long_help = exit_help("every node succeeded", codes::RUN, &[SIGNAL_LINE]))]
    Run(runs::RunArgs),
    /// Hand a flow to the daemon, print the run id and return at once
    /// (always: `run --detach` is the same; follow with `status`).
    #[cfg(target_os = "linux")]
    #[command(after_long_help = help(codes::SUBMIT))]
    Submit(runs::SubmitArgs),
    /// Recent runs, or one run's nodes.
    #[cfg(target_os = "linux")]
    #[command(visible_alias = "ps", after_long_help = help(codes::RECORDS))]
    Status(runs::StatusArgs),
    /// A node's captured stdout (or --stderr).
    #[cfg(target_os = "linux")]
    #[command(after_long_help = help(codes::RECORDS))]
    Logs(logs::LogsArgs),
    /// Let a node waiting at the gate run, and follow the run.
    #[cfg(target_os = "linux")]
    #[command(after_long_help = exit_help("every node succeeded", codes::RUN, &[]))]
    Confirm(runs::ConfirmArgs),
    /// Cancel a run, or one node of it.
    #[cfg(target_os = "linux")]
    #[command(after_long_help = help(codes::CANCEL))]
    Cancel(runs::CancelArgs),
    /// Read the audit log.
    #[cfg(target_os = "linux")]
    #[command(after_long_help = help(codes::RECORDS))]
    Audit(records::AuditArgs),
    /// Remove workspaces and output of runs that ended long ago (and orphans no run names).
    #[cfg(target_os = "linux")]
    #[command(after_long_help = help(codes::RECORDS))]
    Gc(records::GcArgs),
    /// What the jail refused a flow node, by layer, and what would allow it.
    #[cfg(target_os = "linux")]
    #[command(after_long_help = help(codes::RECORDS))]
    Why(why::WhyArgs),
    /// Check a flow file without running it: syntax, the needs graph, each
    /// node's profile and capabilities, and a lint of each command saying
    /// which nodes will pause for confirmation.
    #[command(after_long_help = exit_help(
        "the flow is valid (findings are warnings: those nodes pause for confirmation)",
        codes::LINT,
        &[],
    ))]
    Lint {
        /// The flow file (TOML).
        #[arg(value_name = "FLOW")]
        flow: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `exec`, in a type of its own: flattened into `Command`, and parsed alone
/// by `Cli::try_parse_args` when the first argument is `exec`.
#[derive(Debug, Subcommand)]
pub enum ExecCmd {
    /// Run one command in a jail built from a profile; no daemon needed.
    ///
    /// stdin, stdout and stderr pass through untouched and argv reaches the
    /// node unchanged. The exit status is the node's, or one of aiops's own
    /// (below).
    #[command(after_long_help = exec_help())]
    Exec(exec::ExecArgs),
}

/// `aiopsctl` knowing only `exec`. `Cli`'s top-level texts are left out:
/// nothing printed for `exec` shows them (the test below compares).
#[derive(Debug, Parser)]
#[command(name = "aiopsctl")]
struct ExecCli {
    #[command(subcommand)]
    command: ExecCmd,
}

impl Cli {
    /// `Cli::try_parse`, except that `aiopsctl exec ...` builds the clap
    /// definition of `exec` alone: that saves ~0.06 ms of building the others, and
    /// `exec` is the command whose start-up people time against bwrap. The
    /// help and errors of `exec` are the same either way (a test compares).
    pub fn try_parse_args() -> Result<Cli, clap::Error> {
        Self::try_parse_args_from(std::env::args_os())
    }

    /// `try_parse_args` over given arguments (the first is the program).
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        if args.get(1).is_some_and(|a| a == "exec") {
            let c = ExecCli::try_parse_from(args)?;
            return Ok(Cli {
                command: Command::Exec(c.command),
            });
        }
        Cli::try_parse_from(args)
    }
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List the profiles on the search path: name, file, description.
    #[command(after_long_help = help(codes::PROFILE))]
    List {
        /// Machine-readable output.
        #[arg(long, conflicts_with = "names")]
        json: bool,
        /// Only the names, one a line (for scripts and shell completion).
        #[arg(long)]
        names: bool,
    },
    /// Show a resolved profile: its extends chain and every field with defaults applied.
    #[command(after_long_help = help(codes::PROFILE))]
    Show {
        /// A profile name on the search path, or a path to a .toml file.
        profile: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check profile files strictly, each with its extends chain.
    ///
    /// A parent named by `extends` is looked up first next to the file, then
    /// on the search path. Every file is checked; the exit code is that of the
    /// first failure.
    #[command(after_long_help = help(codes::PROFILE))]
    Validate {
        /// Profile files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Compile a profile for this host and print the jail plan it gives.
    #[command(after_long_help = help(codes::PROFILE))]
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A profile name on the search path, or a path to a .toml file.
    pub profile: String,
    /// Node capabilities (TOML) to intersect with the profile.
    #[arg(long, value_name = "FILE")]
    pub node_caps: Option<PathBuf>,
    /// The workspace ($WORKSPACE) [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The node's working directory [default: the current directory if inside
    /// the workspace, else the workspace].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Simulate another Landlock ABI instead of this host's (0 = no Landlock).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=9))]
    pub abi: Option<u8>,
    /// Print the JailPlan as JSON.
    #[arg(long, conflicts_with = "sbpl")]
    pub json: bool,
    /// Print the macOS Seatbelt (SBPL) profile and its parameters.
    #[arg(long)]
    pub sbpl: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Run a parsed command; `Ok(code)` when the command itself reported its outcome.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    match cli.command {
        Command::Profile(cmd) => profile::run(cmd, out),
        Command::Doctor(args) => doctor::run(&args, out),
        Command::Exec(ExecCmd::Exec(args)) => exec::run(&args, out),
        #[cfg(target_os = "linux")]
        Command::Run(args) => runs::run(&args, out),
        #[cfg(target_os = "linux")]
        Command::Submit(args) => runs::submit(&args, out),
        #[cfg(target_os = "linux")]
        Command::Status(args) => runs::status(&args, out),
        #[cfg(target_os = "linux")]
        Command::Logs(args) => logs::logs(&args, out),
        #[cfg(target_os = "linux")]
        Command::Confirm(args) => runs::confirm(&args, out),
        #[cfg(target_os = "linux")]
        Command::Cancel(args) => runs::cancel(&args, out),
        #[cfg(target_os = "linux")]
        Command::Audit(args) => records::audit(&args, out),
        #[cfg(target_os = "linux")]
        Command::Gc(args) => records::gc(&args, out),
        #[cfg(target_os = "linux")]
        Command::Why(args) => why::why(&args, out),
        Command::Lint { flow, json } => lint::run(&flow, json, out),
        Command::Completions { shell } => shell::completions(shell, out),
        Command::Man { dir } => shell::man(dir.as_deref(), out),
    }
}

/// Serialise `v` as pretty JSON followed by a newline.
pub fn print_json<T: serde::Serialize>(
    out: &mut dyn Write,
    what: &'static str,
    v: &T,
) -> Result<(), SupervisorError> {
    let s =
        serde_json::to_string_pretty(v).map_err(|source| SupervisorError::Json { what, source })?;
    writeln!(out, "{s}").map_err(out_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The `exec` fast path parses, helps and fails exactly like the full
    /// command line.
    #[test]
    fn exec_alone_parses_like_the_full_cli() {
        // A top-level option would be accepted by `Cli` and refused by
        // `ExecCli`: give `ExecCli` the same before adding one.
        let top: Vec<String> = Cli::command()
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(
            top.iter().all(|id| id == "help" || id == "version"),
            "{top:?}"
        );
        let cases: &[&[&str]] = &[
            &["exec", "--profile", "p", "--", "sh", "-c", "echo hi"],
            &[
                "exec",
                "--profile",
                "p",
                "--workspace",
                "/w",
                "--cwd",
                "/w/x",
                "--",
                "a",
            ],
            &[
                "exec",
                "--profile",
                "p",
                "--timeout",
                "90s",
                "--report",
                "json",
                "--",
                "--x",
            ],
            &["exec", "--help"],
            &["exec", "-h"],
            &["exec"],
            &["exec", "--profile", "p"],
            &["exec", "--bogus", "--", "x"],
            &["exec", "--report", "bad", "--profile", "p", "--", "x"],
            &["exec", "--timeout", "zz", "--profile", "p", "--", "x"],
            &["exec", "--version"],
            &[
                "exec",
                "--profile",
                "p",
                "-e",
                "A",
                "--env",
                "B=c=d",
                "--read",
                "/r",
                "--write",
                "w",
                "--net-allow",
                "h.test:1",
                "--",
                "x",
            ],
            &[
                "exec",
                "--profile",
                "p",
                "--net-allow",
                "no-port",
                "--",
                "x",
            ],
            &["exec", "--profile", "p", "-e", "1X", "--", "x"],
            &["exec", "--profile", "p", "ls", "-la"],
        ];
        for case in cases {
            let argv = std::iter::once("aiopsctl").chain(case.iter().copied());
            let full = Cli::try_parse_from(argv.clone());
            let fast = Cli::try_parse_args_from(argv);
            match (full, fast) {
                (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{case:?}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.kind(), b.kind(), "{case:?}");
                    assert_eq!(a.render().to_string(), b.render().to_string(), "{case:?}");
                }
                (a, b) => panic!("{case:?}: full {a:?}, exec alone {b:?}"),
            }
        }
    }

    /// Every command's long help ends in an "Exit codes:" block whose
    /// lines are exactly `aiops_proto::exit::TABLE`'s (number and meaning),
    /// and the generated table in docs/operations.md is the table itself.
    #[test]
    fn help_and_docs_take_their_exit_codes_from_the_one_table() {
        use aiops_proto::exit;
        fn walk(cmd: &clap::Command, path: String, seen: &mut Vec<String>) {
            let subs: Vec<_> = cmd
                .get_subcommands()
                .filter(|c| c.get_name() != "help")
                .collect();
            if subs.is_empty() || path.is_empty() {
                let help = cmd
                    .get_after_long_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                let (_, block) = help
                    .split_once("Exit codes:\n")
                    .unwrap_or_else(|| panic!("`aiopsctl {path} --help` has no exit codes"));
                let mut lines = block.lines().take_while(|l| !l.is_empty());
                assert!(
                    lines.next().is_some_and(|l| l.starts_with("  0 ")),
                    "{path}"
                );
                for line in lines {
                    let (code, meaning) = line.trim().split_once(' ').unwrap_or(("", ""));
                    if code == "128+N" {
                        continue;
                    }
                    let e =
                        code.parse().ok().and_then(exit::lookup).unwrap_or_else(|| {
                            panic!("{path}: {line:?} is not in aiops_proto::exit")
                        });
                    assert_eq!(meaning.trim(), e.meaning, "{path}: {line:?}");
                }
                seen.push(path.clone());
            }
            for sub in subs {
                walk(
                    sub,
                    format!("{path} {}", sub.get_name()).trim().to_string(),
                    seen,
                );
            }
        }
        let mut seen = vec![];
        walk(&Cli::command(), String::new(), &mut seen);
        for want in [
            "",
            "profile validate",
            "doctor",
            "lint",
            "exec",
            "completions",
        ] {
            assert!(
                seen.iter().any(|s| s == want),
                "{want:?} not checked: {seen:?}"
            );
        }
        // docs/operations.md's table for `aiopsctl exec` lists exactly
        // the statuses of `exec --help` (besides the node's own and 128+N).
        let ops = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/operations.md"
        ))
        .unwrap_or_default();
        let exec_table = ops
            .split_once("## Running one command: `aiopsctl exec`")
            .and_then(|(_, r)| r.split_once("### Exit status\n"))
            .and_then(|(_, r)| r.split_once("\n\n"))
            .map(|(t, _)| t.to_string())
            .unwrap_or_default();
        let mut in_doc: Vec<i32> = exec_table
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split_once(' ').and_then(|(c, _)| c.parse().ok()))
            .collect();
        in_doc.sort_unstable();
        assert_eq!(
            in_doc,
            codes::EXEC,
            "docs/operations.md's exec table:\n{exec_table}"
        );
        // `aiopsctl --help` lists every status of the table.
        let top = Cli::command()
            .get_after_long_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        for e in exit::TABLE {
            assert!(
                top.contains(&format!("\n  {:<4} {}", e.code, e.meaning)),
                "{e:?}"
            );
        }
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/operations.md"
        ))
        .unwrap_or_default();
        let (begin, end) = ("<!-- BEGIN EXIT TABLE -->\n", "<!-- END EXIT TABLE -->");
        let section = doc
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(s, _)| s.to_string());
        let mut want = String::from("| status | name | meaning |\n|---|---|---|\n");
        want.push_str("| 0 | | success |\n");
        for e in exit::TABLE {
            want.push_str(&format!("| {} | `{}` | {} |\n", e.code, e.name, e.meaning));
        }
        want.push_str(&format!(
            "| {}–{} | | jailer/agentd set-up failed at step N (80 `read_request` … 101 `spawn_node`) |\n",
            exit::STEP_BASE,
            aiops_proto::Step::SpawnNode.exit_code()
        ));
        want.push_str(&format!(
            "| {}+N | | killed by signal N |\n",
            exit::SIGNAL_BASE
        ));
        assert_eq!(
            section.as_deref(),
            Some(want.as_str()),
            "docs/operations.md's exit table (between {begin:?} and {end:?}) should read:\n{want}"
        );
    }
}
