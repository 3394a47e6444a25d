//! `aiopsctl completions SHELL` and `aiopsctl man [--dir DIR]`: generated
//! from the clap definitions, with profile names completed where a
//! profile is asked for.
use super::Cli;
use crate::error::{out_err, SupervisorError};
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;
use std::path::Path;

/// The command that prints the profile names, one a line; the completion
/// scripts run it through the binary being completed.
const NAMES: &str = "profile list --names 2>/dev/null";

pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "aiopsctl", &mut buf);
    let script = String::from_utf8_lossy(&buf);
    let script = match shell {
        Shell::Bash => bash_profiles(&script),
        Shell::Fish => fish_profiles(&script),
        Shell::Zsh => zsh_profiles(&script),
        _ => script.into_owned(),
    };
    out.write_all(script.as_bytes()).map_err(out_err)?;
    Ok(0)
}

/// bash: `--profile <TAB>` offers the profile names on the search path and
/// then files; `profile show|explain <TAB>` the names next to the options.
fn bash_profiles(script: &str) -> String {
    let names = format!("$(\"${{COMP_WORDS[0]}}\" {NAMES})");
    let files = "COMPREPLY=($(compgen -f \"${cur}\"))";
    let mut out = String::with_capacity(script.len() + 1024);
    let (mut after_option, mut in_positional) = (false, false);
    for line in script.split_inclusive('\n') {
        let t = line.trim();
        if after_option && t == files {
            out.push_str(&line.replace(
                files,
                &format!("COMPREPLY=($(compgen -W \"{names}\" -- \"${{cur}}\") $(compgen -f \"${{cur}}\"))"),
            ));
        } else if in_positional && t.starts_with("opts=\"") {
            out.push_str(&line.replacen("opts=\"", &format!("opts=\"{names} "), 1));
            in_positional = false;
        } else {
            out.push_str(line);
        }
        after_option = t == "--profile)";
        // The subcommands whose first argument is a profile.
        if t == "aiopsctl__subcmd__profile__subcmd__show)"
            || t == "aiopsctl__subcmd__profile__subcmd__explain)"
        {
            in_positional = true;
        }
    }
    out
}

/// fish: the names next to the files fish offers anyway, after
/// `--profile` and as `profile show|explain`'s argument.
fn fish_profiles(script: &str) -> String {
    let positional = format!(
        "complete -c aiopsctl -n \"__fish_aiopsctl_using_subcommand profile; and \
         __fish_seen_subcommand_from show explain\" -a \"(aiopsctl {NAMES})\"\n"
    );
    script
        .lines()
        .map(|l| {
            if l.contains(" -l profile ") {
                format!("{l} -a \"(aiopsctl {NAMES})\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
        + &positional
}

/// zsh: profile names and files wherever a profile is asked for; and the
/// colon in `HOST:PORT`, which clap leaves unescaped in the value's
/// message (`_arguments` would take what follows it for the action).
fn zsh_profiles(script: &str) -> String {
    const FUNCTION: &str = "(( $+functions[_aiopsctl_profiles] )) ||\n\
        _aiopsctl_profiles() {\n\
        \x20   local -a names\n\
        \x20   names=(${(f)\"$(aiopsctl profile list --names 2>/dev/null)\"})\n\
        \x20   _alternative 'profiles:profile:compadd -a names' 'files:file:_files'\n\
        }\n\n";
    let mut out = String::with_capacity(script.len() + 512);
    for line in script.split_inclusive('\n') {
        if line.starts_with("if [ \"$funcstack[1]\" = \"_aiopsctl\" ]; then") {
            out.push_str(FUNCTION);
        }
        let line = line.replace(":HOST:PORT:", ":HOST\\:PORT:");
        let profile_arg = line.starts_with("'--profile=[") || line.starts_with("':profile -- ");
        if profile_arg && line.contains(":_default'") {
            out.push_str(&line.replace(":_default'", ":_aiopsctl_profiles'"));
        } else {
            out.push_str(&line);
        }
    }
    out
}

/// `aiopsctl(1)` to `out`, or with `dir` one page per command and
/// subcommand (`aiopsctl.1`, `aiopsctl-exec.1`, `aiopsctl-profile-show.1`,
/// ...) written there, the names printed.
pub fn man(dir: Option<&Path>, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(out).map_err(out_err)?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).map_err(out_err)?;
    clap_mangen::generate_to(cmd, dir).map_err(out_err)?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| SupervisorError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("aiopsctl") && n.ends_with(".1"))
        .collect();
    names.sort();
    for n in names {
        writeln!(out, "{}", dir.join(n).display()).map_err(out_err)?;
    }
    Ok(0)
}
