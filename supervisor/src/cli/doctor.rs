//! `aiopsctl doctor`: can this host run the default profile? One line per
//! check, a fix for each problem, and an exit status scripts can trust:
//! 0 when `restrictive` compiles against what was found, else its error code.
use super::print_json;
use super::profile::WIDTH;
use super::table::{wrap, Table};
use super::DoctorArgs;
use crate::context::neutral_context;
use crate::error::error_chain;
use crate::error::{out_err, SupervisorError, EXIT_UNAVAILABLE};
use crate::facts::{probe_host, Check, Status};
use crate::live::{live_checks, run_probe};
use crate::locate::{self, Helper, AGENTD, JAILER};
use aiops_policy::{HostFacts, NodeCaps};
use serde::Serialize;
use std::io::Write;

/// The profile a bare `aiopsctl exec` uses.
pub const DEFAULT_PROFILE: &str = "restrictive";

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
    /// What the compile below was checked against: static probes refined by live ones.
    pub facts: HostFacts,
    pub default_profile: Verdict,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub name: &'static str,
    pub runs: bool,
    /// The refusal or failure, when it does not run.
    pub error: Option<String>,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn helper_check(h: &Helper) -> (Check, Option<std::path::PathBuf>) {
    match h.find() {
        Ok(l) => (Check::new(Status::Ok, h.name, format!("{} ({})", l.path.display(), l.via)), Some(l.path)),
        Err(nf) => (
            Check::new(Status::Missing, h.name, nf.to_string()).fix(format!(
                "install the aiops package, build it next to aiopsctl (cargo build -p {}), or set {}=/path/to/{}",
                h.name, h.env, h.name
            )),
            None,
        ),
    }
}

pub fn diagnose() -> DoctorReport {
    let stat = probe_host();
    let (jailer_check, jailer) = helper_check(&JAILER);
    let (agentd_check, agentd) = helper_check(&AGENTD);
    let live = match &jailer {
        Some(j) => run_probe(j),
        // The jailer's own line lists where it was looked for.
        None => Err("jailer not found, so not checked".to_string()),
    };
    let mut checks = stat.checks.clone();
    let read = |p: &str| std::fs::read_to_string(p).ok();
    checks.extend(system_mode_apparmor(
        nix::unistd::geteuid().is_root(),
        read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref(),
        read(APPARMOR_PROFILES).as_deref(),
    ));
    checks.push(jailer_check);
    checks.push(agentd_check);
    let agentd_unreachable = agentd
        .as_deref()
        .filter(|_| nix::unistd::geteuid().is_root())
        .and_then(|p| unreachable_by_others(p).map(|why| (p.to_path_buf(), why)));
    if let Some((p, why)) = &agentd_unreachable {
        checks.push(
            Check::new(
                Status::Missing,
                "agentd for the jail user",
                format!(
                    "aiops-agentd at {} is not reachable by the jail user (nobody, uid {}): {why}",
                    p.display(),
                    aiops_proto::ids::NOBODY
                ),
            )
            .fix(
                "a jail started by root runs as the workspace's owner or nobody, never root: \
                  put aiops-agentd where every user can reach it (chmod o+x each directory on \
                  the way), or point AIOPS_AGENTD at such a copy",
            ),
        );
    }
    match &live {
        Err(why) if jailer.is_none() => checks.push(Check::new(Status::Unknown, "live probe", why.clone())),
        Err(why) => checks.push(
            Check::new(Status::Warn, "live probe", why.clone())
                .fix("install an aiops-jailer from the same release as aiopsctl; `aiops-jailer probe` must print one JSON object"),
        ),
        Ok(_) => {}
    }
    if let Ok(p) = &live {
        if let Some(abi) = p.landlock_abi.filter(|a| *a != stat.facts.landlock_abi) {
            let d = format!(
                "the jailer sees ABI {abi}, aiopsctl saw ABI {}; using the jailer's",
                stat.facts.landlock_abi
            );
            checks.push(Check::new(Status::Warn, "landlock (live)", d));
        }
    }
    checks.extend(live_checks(&live));
    checks.extend(unreadable_paths());
    if let Err(why) = &live {
        tracing::debug!(target: "aiops::doctor", reason = %why, "live probe unavailable");
    }
    let facts = match &live {
        Ok(p) => p.refine(stat.facts.clone()),
        Err(_) => stat.facts.clone(),
    };
    let mut default_profile = verdict(&facts);
    // Every jail mounts a fresh /proc; HostFacts has no field for it, so check it here.
    let proc_refused = live
        .as_ref()
        .ok()
        .and_then(|p| p.get("proc_mount"))
        .filter(|r| !r.ok);
    if let (true, Some(r)) = (default_profile.runs, proc_refused) {
        default_profile = Verdict {
            name: DEFAULT_PROFILE,
            runs: false,
            error: Some(format!(
                "a fresh /proc cannot be mounted here: {}",
                r.detail
            )),
            exit_code: EXIT_UNAVAILABLE,
            note: None,
        };
    }
    if default_profile.runs {
        // A plan the host could honour still needs both helpers to become a jail.
        let missing: Vec<&str> = [(&jailer, JAILER.name), (&agentd, AGENTD.name)]
            .into_iter()
            .filter(|(p, _)| p.is_none())
            .map(|(_, n)| n)
            .collect();
        if !missing.is_empty() {
            default_profile = Verdict {
                name: DEFAULT_PROFILE,
                runs: false,
                error: Some(format!("{} not found", missing.join(" and "))),
                exit_code: EXIT_UNAVAILABLE,
                note: None,
            };
        } else if let Some((p, why)) = &agentd_unreachable {
            default_profile = Verdict {
                name: DEFAULT_PROFILE,
                runs: false,
                error: Some(format!(
                    "aiops-agentd at {} is not reachable by the jail user: {why}",
                    p.display()
                )),
                exit_code: EXIT_UNAVAILABLE,
                note: None,
            };
        } else if live.is_err() {
            default_profile.note =
                Some("judged by static checks only: the jailer's live probe failed".into());
        }
    }
    DoctorReport {
        checks,
        facts,
        default_profile,
    }
}

/// One warning per installed profile whose optional read paths exist but
/// are unreadable by the uid a jail started here runs as (a 0700 home of
/// another user, say): the node runs without them, which a build may not expect.
fn unreadable_paths() -> Vec<Check> {
    let loader = locate::profile_loader();
    let mut out = vec![];
    for (name, _) in loader.list() {
        let Ok(profile) = loader.load(&name) else {
            continue;
        };
        let (uid, paths) = super::explain::unreadable_here(&profile);
        if paths.is_empty() {
            continue;
        }
        let list: Vec<String> = paths.iter().map(ToString::to_string).collect();
        out.push(
            Check::new(
                Status::Warn,
                "read paths",
                format!(
                    "profile {name}: uid {uid} cannot read {} (a jail started here skips them)",
                    list.join(", ")
                ),
            )
            .fix(format!(
                "make them readable by uid {uid}, or run from a workspace owned by a user who can read them"
            )),
        );
    }
    out
}

/// Why a user that is neither owner nor group member (the jail's `nobody`)
/// cannot execute `path`: the first directory on the way without o+x, or
/// the file without o+x. None when it can.
fn unreachable_by_others(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut dirs: Vec<&std::path::Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for d in dirs {
        let m = std::fs::metadata(d).ok()?;
        if m.mode() & 0o001 == 0 {
            return Some(format!(
                "directory {} is mode {:04o} (owner uid {})",
                d.display(),
                m.mode() & 0o7777,
                m.uid()
            ));
        }
    }
    let m = std::fs::metadata(path).ok()?;
    (m.mode() & 0o001 == 0).then(|| format!("the file is mode {:04o}", m.mode() & 0o7777))
}

/// The profiles the kernel has loaded (`name (mode)` per line; root only).
const APPARMOR_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
/// The profile name in packaging/apparmor/aiops-jailer.
const JAILER_APPARMOR_PROFILE: &str = "aiops-jailer";

/// Run as root, the static user-namespace check passes (root is not
/// restricted), but in system mode the jailer runs as `aiops-jail`: on a
/// host that restricts unprivileged user namespaces it needs the shipped
/// AppArmor profile loaded.
fn system_mode_apparmor(root: bool, restrict: Option<&str>, loaded: Option<&str>) -> Option<Check> {
    if !root || restrict.map(str::trim) != Some("1") {
        return None;
    }
    let what = "userns for aiops-jail";
    let has = |l: &str| l.split_whitespace().next() == Some(JAILER_APPARMOR_PROFILE);
    Some(match loaded {
        Some(text) if text.lines().any(has) => Check::new(
            Status::Ok,
            what,
            "AppArmor restricts unprivileged user namespaces; profile aiops-jailer is loaded",
        ),
        _ => Check::new(
            Status::Warn,
            what,
            "AppArmor restricts unprivileged user namespaces and profile aiops-jailer is not loaded: \
             the system service's jailer (user aiops-jail) cannot build jails",
        )
        .fix(crate::facts::APPARMOR_FIX),
    })
}

fn verdict(facts: &HostFacts) -> Verdict {
    let fail = |e: SupervisorError| Verdict {
        name: DEFAULT_PROFILE,
        runs: false,
        error: Some(error_chain(&e)),
        exit_code: e.exit_code(),
        note: None,
    };
    let profile = match locate::profile_loader().load(DEFAULT_PROFILE) {
        Ok(p) => p,
        Err(e) => return fail(e.into()),
    };
    // Judge the host, not the caller's directory or HOME.
    let ctx = match neutral_context() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match aiops_policy::compile(&profile, &NodeCaps::default(), facts, &ctx) {
        Ok(_) => Verdict {
            name: DEFAULT_PROFILE,
            runs: true,
            error: None,
            exit_code: 0,
            note: None,
        },
        Err(e) => fail(e.into()),
    }
}

pub fn run(args: &DoctorArgs, out: &mut dyn Write) -> Result<i32, SupervisorError> {
    let report = diagnose();
    if args.json {
        print_json(out, "doctor report", &report)?;
    } else {
        out.write_all(render(&report).as_bytes()).map_err(out_err)?;
    }
    Ok(report.default_profile.exit_code)
}

pub fn render(r: &DoctorReport) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut s = format!(
        "aiops doctor: Linux {} {}, uid {}\n\n",
        kernel.trim(),
        std::env::consts::ARCH,
        nix::unistd::geteuid()
    );
    let mut t = Table::new(0).wrap_total(WIDTH);
    for c in &r.checks {
        t.row([c.status.to_string(), c.what.clone(), c.detail.clone()]);
    }
    // Fix lines go under their check, so render row by row from the shared widths.
    let rendered = t.render();
    let mut lines = rendered.lines();
    let indent = r
        .checks
        .iter()
        .map(|c| c.status.to_string().len())
        .max()
        .unwrap_or(0)
        + 2;
    for c in &r.checks {
        // A wrapped detail spans several rendered lines; they start with spaces.
        if let Some(first) = lines.next() {
            s.push_str(first);
            s.push('\n');
        }
        let mut peek = lines.clone();
        while let Some(l) = peek.next() {
            if !l.starts_with(' ') {
                break;
            }
            s.push_str(l);
            s.push('\n');
            lines = peek.clone();
        }
        if let Some(fix) = &c.fix {
            for (i, l) in wrap(fix, WIDTH - indent - 5).iter().enumerate() {
                let lead = if i == 0 { "fix: " } else { "     " };
                s.push_str(&format!("{}{lead}{l}\n", " ".repeat(indent)));
            }
        }
    }
    let v = &r.default_profile;
    s.push('\n');
    let verdict = match (&v.error, &v.note) {
        (None, None) => format!("{}: can run on this host", v.name),
        (None, Some(n)) => format!("{}: can run on this host ({n})", v.name),
        (Some(e), _) => format!("{}: CANNOT run on this host: {e}", v.name),
    };
    for l in wrap(&verdict, WIDTH) {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fixes_sit_under_their_own_check_even_when_details_wrap() {
        let long = "word ".repeat(40);
        let report = DoctorReport {
            checks: vec![
                Check::new(Status::Warn, "first", long.trim()).fix("do the first thing"),
                Check::new(Status::Ok, "second", "fine"),
                Check::new(Status::Missing, "third", "gone").fix("do the third thing"),
            ],
            facts: HostFacts::linux(7),
            default_profile: Verdict {
                name: DEFAULT_PROFILE,
                runs: false,
                error: Some("refused: layer x unavailable: y".into()),
                exit_code: 69,
                note: None,
            },
        };
        let out = render(&report);
        let lines: Vec<&str> = out.lines().skip(2).collect();
        let at = |p: &str| {
            lines
                .iter()
                .position(|l| l.trim_start().starts_with(p))
                .unwrap()
        };
        assert!(lines[0].starts_with("warn     first"));
        assert!(lines[1].starts_with("   ") && lines[1].trim_start().starts_with("word"));
        assert_eq!(at("fix: do the first"), at("ok") - 1);
        assert_eq!(at("fix: do the third"), at("MISSING") + 1);
        assert!(out
            .trim_end()
            .ends_with("restrictive: CANNOT run on this host: refused: layer x unavailable: y"));
        assert!(
            out.lines().all(|l| l.len() <= WIDTH && !l.ends_with(' ')),
            "{out}"
        );
    }

    #[test]
    fn system_mode_apparmor_needs_the_shipped_profile_loaded() {
        assert!(system_mode_apparmor(false, Some("1\n"), None).is_none());
        assert!(system_mode_apparmor(true, Some("0\n"), None).is_none());
        assert!(system_mode_apparmor(true, None, None).is_none());
        let missing = system_mode_apparmor(true, Some("1\n"), Some("other (enforce)\n")).unwrap();
        assert_eq!(missing.status, Status::Warn);
        assert!(missing
            .fix
            .unwrap()
            .contains("/etc/apparmor.d/aiops-jailer"));
        let loaded = system_mode_apparmor(
            true,
            Some("1"),
            Some("x (enforce)\naiops-jailer (unconfined)\n"),
        )
        .unwrap();
        assert_eq!(loaded.status, Status::Ok);
    }
}
