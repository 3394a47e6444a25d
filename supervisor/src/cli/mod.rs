//! The `aiopsctl` command line: clap definitions and dispatch. One module per
//! command group; add a variant to `Command` and a module, nothing else.
use crate::error::{out_err, SupervisorError};
use clap::{Args, CommandFactory, Parser, Subcommand};
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
pub mod table;
#[cfg(target_os = "linux")]
mod terminal;

// Macros, not consts, so `concat!` can join them into the top-level help.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0   success
  64  bad flags or arguments (EX_USAGE)
  65  invalid profile or node caps: syntax, unknown key, bad value, extends cycle (EX_DATAERR)
  66  file or profile not found, or unreadable (EX_NOINPUT)
  69  a layer the profile requires is unavailable on this host (EX_UNAVAILABLE)
  71  the host refused an operation, such as reading the current directory (EX_OSERR)
  74  writing the output failed (EX_IOERR)
  76  protocol error (EX_PROTOCOL)
  77  node asks for more than its profile allows (EX_NOPERM)
  78  a path variable has no value here, such as $HOME unset (EX_CONFIG)"
    };
}
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
const EXIT_CODES: &str = exit_codes!();

/// Run commands and AI coding agents in a sandbox built from a capability profile.
#[derive(Debug, Parser)]
#[command(
    name = "aiopsctl",
    version,
    about,
    after_help = "Exit codes and environment: see --help.",
    after_long_help = concat!(exit_codes!(), "\n\n", environment!()))]
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
    #[command(after_long_help = EXIT_CODES)]
    Doctor(DoctorArgs),
    /// Print a shell completion script to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
    #[command(flatten)]
    Exec(ExecCmd),
    /// Run a flow through jails and follow it; starts an in-process
    /// supervisor when no daemon answers.
    ///
    /// Exit status: 0 every node succeeded, 1 the run failed, 4 cancelled,
    /// 75 paused at the destructive-operation gate (`aiopsctl confirm`),
    /// 128+N interrupted by signal N (130 SIGINT, 143 SIGTERM): without a
    /// daemon its jails were stopped and its nodes recorded `cancelled`
    /// first; a second signal exits at once (docs/supervisor.md).
    #[cfg(target_os = "linux")]
    Run(runs::RunArgs),
    /// Hand a flow to the daemon and print the run id.
    #[cfg(target_os = "linux")]
    Submit(runs::RunArgs),
    /// Recent runs, or one run's nodes.
    #[cfg(target_os = "linux")]
    #[command(visible_alias = "ps")]
    Status(runs::StatusArgs),
    /// A node's captured stdout (or --stderr).
    #[cfg(target_os = "linux")]
    Logs(logs::LogsArgs),
    /// Let a node waiting at the gate run, and follow the run.
    #[cfg(target_os = "linux")]
    Confirm(runs::ConfirmArgs),
    /// Cancel a run, or one node of it.
    #[cfg(target_os = "linux")]
    Cancel(runs::CancelArgs),
    /// Read the audit log.
    #[cfg(target_os = "linux")]
    Audit(records::AuditArgs),
    /// Remove workspaces and output of runs that ended long ago (and orphans no run names).
    #[cfg(target_os = "linux")]
    Gc(records::GcArgs),
    /// Check a flow file without running it: syntax, the needs graph, each
    /// node's profile and capabilities, and a lint of each command saying
    /// which nodes will pause for confirmation.
    #[command(after_long_help = lint::EXIT_HELP)]
    Lint {
        #[arg(value_name = "FLOW")]
        flow: PathBuf,
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
    /// node unchanged. The exit status is the node's (128+N when signal N
    /// killed it), or: 121 internal error, 122 refused before running,
    /// 123 output cap, 124 timeout, 125 jail set-up failed, 126 cannot
    /// execute, 127 not found.
    #[command(after_long_help = environment!())]
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
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a resolved profile: its extends chain and every field with defaults applied.
    Show {
        /// A profile name on the search path, or a path to a .toml file.
        profile: String,
        #[arg(long)]
        json: bool,
    },
    /// Check profile files strictly, each with its extends chain.
    ///
    /// A parent named by `extends` is looked up first next to the file, then
    /// on the search path. Every file is checked; the exit code is that of the
    /// first failure.
    #[command(after_long_help = EXIT_CODES)]
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Compile a profile for this host and print the jail plan it gives.
    #[command(after_long_help = EXIT_CODES)]
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
        Command::Lint { flow, json } => lint::run(&flow, json, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aiopsctl", out);
            Ok(0)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(out)
                .map_err(out_err)?;
            Ok(0)
        }
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

    /// Every status a help text or docs/operations.md names is one of
    /// `aiops_proto::exit`'s (the one table), the step range or a signal;
    /// the generated table in docs/operations.md is the table itself.
    #[test]
    fn help_and_docs_take_their_exit_codes_from_the_one_table() {
        use aiops_proto::exit;
        let known = |c: i32| {
            c == 0 || exit::lookup(c).is_some() || aiops_proto::Step::from_exit_code(c).is_some()
        };
        for text in [EXIT_CODES, lint::EXIT_HELP] {
            for line in text.lines().skip(1) {
                let code: i32 = line
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(-1);
                assert!(
                    known(code),
                    "{line:?} names a status not in aiops_proto::exit"
                );
            }
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
