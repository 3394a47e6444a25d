//! `aiopsctl profile list | show | validate | explain`.
use super::table::Table;
use super::{print_json, ExplainArgs, ProfileCmd};
use crate::context::{host_context, Home};
use crate::error::{out_err, SupervisorError};
use crate::{facts, locate};
use aiops_policy::profile::read_profile_file;
use aiops_policy::{CompileContext, NodeCaps, Profile};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Lines are wrapped to fit this many columns where they can be.
pub const WIDTH: usize = 100;

pub fn run(cmd: ProfileCmd, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    match cmd {
        ProfileCmd::List { names: true, .. } => list_names(out),
        ProfileCmd::List { json, .. } => list(json, out),
        ProfileCmd::Show { profile, json } => show(&profile, json, out),
        ProfileCmd::Validate { files } => validate(&files, out),
        ProfileCmd::Explain(args) => explain(&args, out),
    }
}

use crate::error::error_chain;

#[derive(Serialize)]
struct Listed {
    name: String,
    source: PathBuf,
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The names on the search path, one a line: no file is read, so a shell
/// completing `--profile` waits for nothing.
fn list_names(out: &mut dyn Write) -> Result<i32, SupervisorError> {
    for (name, _) in locate::profile_loader().list() {
        writeln!(out, "{name}").map_err(out_err)?;
    }
    Ok(0)
}

fn list(json: bool, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let loader = locate::profile_loader();
    let items: Vec<Listed> = loader
        .list()
        .into_iter()
        .map(|(name, source)| match read_profile_file(&source) {
            Ok(f) => Listed {
                name,
                source,
                description: Some(f.description),
                error: None,
            },
            Err(e) => Listed {
                name,
                source,
                description: None,
                error: Some(error_chain(&e)),
            },
        })
        .collect();
    if json {
        print_json(out, "profile list", &items)?;
        return Ok(0);
    }
    if items.is_empty() {
        let dirs: Vec<String> = loader
            .search
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        writeln!(out, "no profiles found in {}", dirs.join(", ")).map_err(out_err)?;
        return Ok(0);
    }
    // One line per profile, unwrapped, so it greps well.
    let mut t = Table::new(0);
    for i in &items {
        let desc = match (&i.description, &i.error) {
            (Some(d), _) => d.clone(),
            (None, Some(e)) => format!("INVALID: {e}"),
            (None, None) => String::new(),
        };
        t.row([i.name.clone(), relative_to_cwd(&i.source), desc]);
    }
    out.write_all(t.render().as_bytes()).map_err(out_err)?;
    Ok(0)
}

/// `profiles/agent.toml` rather than the absolute path, when under the current directory.
fn relative_to_cwd(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| p.display().to_string())
}

fn words<T: std::fmt::Display>(v: &[T]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("  ")
    }
}

fn show(name: &str, json: bool, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let p = locate::profile_loader().load(name)?;
    if json {
        print_json(out, "profile", &p)?;
        return Ok(0);
    }
    out.write_all(render_profile(&p).as_bytes())
        .map_err(out_err)?;
    Ok(0)
}

/// Every field of a resolved profile, defaults applied, one per row.
pub fn render_profile(p: &Profile) -> String {
    let yes_no = |b: bool| if b { "YES: no jail at all" } else { "no" };
    let mut t = Table::new(0).wrap_total(WIDTH);
    t.row(["name", &p.name]);
    t.row(["description", &p.description]);
    t.row(["source".into(), p.source.display().to_string()]);
    t.row(["extends chain".into(), p.chain.join(" -> ")]);
    t.row(["require".into(), words(&p.require)]);
    t.row(["unconfined", yes_no(p.unconfined)]);
    t.row(["fs.read".into(), words(&p.read)]);
    t.row(["fs.write".into(), words(&p.write)]);
    t.row(["fs.exec".into(), words(&p.exec)]);
    t.row(["net.mode".into(), p.net.to_string()]);
    t.row(["net.allow".into(), words(&p.net_allow)]);
    let allow: Vec<&str> = p.env_allow.iter().map(|e| e.as_str()).collect();
    t.row(["env.allow".into(), words(&allow)]);
    let set: Vec<String> = p.env_set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    t.row(["env.set".into(), words(&set)]);
    t.row(["env.secrets".into(), words(&p.secrets)]);
    let l = &p.limits;
    t.row(["limits.timeout".into(), l.timeout.to_string()]);
    t.row(["limits.output".into(), l.output.to_string()]);
    t.row(["limits.memory".into(), l.memory.to_string()]);
    t.row(["limits.pids".into(), l.pids.to_string()]);
    t.row(["limits.cpu".into(), l.cpu.to_string()]);
    t.row(["limits.file_size".into(), l.file_size.to_string()]);
    t.row(["limits.open_files".into(), l.open_files.to_string()]);
    // The count the jail's layer line and `explain` give for this profile.
    let baseline = aiops_policy::compile::baseline_seccomp().rules_here();
    if p.seccomp_deny.is_empty() {
        t.row([
            "seccomp.deny".into(),
            format!("(none beyond the baseline table of {baseline} rules)"),
        ]);
    }
    for d in &p.seccomp_deny {
        t.row([
            "seccomp.deny".into(),
            format!("{}: {}", d.syscall, d.reason),
        ]);
    }
    t.row(["protected".into(), words(&p.protected)]);
    for (path, reason) in &p.unprotected {
        t.row(["unprotected".into(), format!("{path}: {reason}")]);
    }
    t.render()
}

fn validate(files: &[PathBuf], out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let base = locate::profile_loader();
    let mut first_code = 0;
    for file in files {
        let mut loader = base.clone();
        // Siblings first: a directory of profiles is checked as it will be installed.
        if let Some(dir) = file.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            loader.search.insert(0, dir.to_path_buf());
        }
        match loader.load_path(file) {
            Ok(profile) => {
                writeln!(out, "ok {}", file.display()).map_err(out_err)?;
                let (uid, unreadable) = super::explain::unreadable_here(&profile);
                for p in unreadable {
                    writeln!(
                        out,
                        "  note: read path {p} exists but uid {uid} cannot read it: a jail \
                         started here skips it, and the node will not see it"
                    )
                    .map_err(out_err)?;
                }
            }
            Err(e) => {
                let msg = error_chain(&e);
                let shown = file.display().to_string();
                if msg.starts_with(&shown) {
                    writeln!(out, "{msg}").map_err(out_err)?;
                } else {
                    writeln!(out, "{shown}: {msg}").map_err(out_err)?;
                }
                if first_code == 0 {
                    first_code = e.exit_code();
                }
            }
        }
    }
    Ok(first_code)
}

fn explain(args: &ExplainArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let profile = locate::profile_loader().load(&args.profile)?;
    let caps = match &args.node_caps {
        Some(f) => NodeCaps::from_toml_file(f)?,
        None => NodeCaps::default(),
    };
    // What `aiopsctl exec` would compile: as root, `$HOME` is the jail user's.
    let ctx = host_context(
        args.workspace.as_deref(),
        args.cwd.as_deref(),
        Home::JailUser,
    )?;
    if args.sbpl {
        let (text, params) = compile_sbpl(&profile, &caps, &ctx)?;
        writeln!(out, "; parameters (sandbox-exec -D NAME=VALUE):").map_err(out_err)?;
        for (k, v) in &params {
            // Escaped so a newline in a path cannot end the comment and inject policy text.
            writeln!(out, ";   {k}={}", v.escape_debug()).map_err(out_err)?;
        }
        out.write_all(text.as_bytes()).map_err(out_err)?;
        return Ok(0);
    }
    let probe = facts::probe_host();
    let mut host = probe.facts.clone();
    if let Some(abi) = args.abi {
        host.landlock_abi = abi;
    }
    let plan = aiops_policy::compile(&profile, &caps, &host, &ctx)?;
    if args.json {
        print_json(out, "jail plan", &plan)?;
        return Ok(0);
    }
    let reach = super::explain::reach(&plan);
    let text = super::explain::render(&super::explain::Explained {
        profile: &profile,
        plan: &plan,
        facts: &host,
        simulated_abi: args.abi,
        workspace: ctx.vars.workspace.as_ref(),
        node_caps: args.node_caps.as_deref(),
        reach: Some(&reach),
    });
    out.write_all(text.as_bytes()).map_err(out_err)?;
    Ok(0)
}

/// The macOS Seatbelt text and its `-D` parameters for this profile and node.
fn compile_sbpl(
    profile: &Profile,
    caps: &NodeCaps,
    ctx: &CompileContext,
) -> Result<(String, Vec<(String, String)>), SupervisorError> {
    let plan = aiops_policy::sbpl::compile_sbpl_for(profile, caps, ctx)?.sbpl;
    Ok((plan.text, plan.params))
}
