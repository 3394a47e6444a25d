//! Runs the real `aiopsctl` binary from the repository root, as a user would.
#![allow(clippy::unwrap_used)]
use aiops_policy::JailPlan;
use aiops_testkit::skip;
use std::path::PathBuf;
use std::process::{Command, Output};

mod common;
use common::{aiopsctl, repo_root};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn shipped_profiles() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_root().join("profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "no shipped profiles found");
    v
}

/// Skip (or fail under AIOPS_MUST_WORK=1) when this host cannot run `restrictive`.
fn host_can_run_restrictive() -> bool {
    let o = aiopsctl(&["profile", "explain", "restrictive", "--json"]);
    if o.status.code() == Some(69) {
        let (_, err) = text(&o);
        skip(
            "cli tests",
            &format!("restrictive cannot run on this host: {err}"),
        );
        return false;
    }
    true
}

#[test]
fn validate_passes_for_every_shipped_profile() {
    let files: Vec<String> = shipped_profiles()
        .iter()
        .map(|p| format!("profiles/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    let mut args = vec!["profile", "validate"];
    args.extend(files.iter().map(String::as_str));
    let o = aiopsctl(&args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    for f in &files {
        assert!(
            out.lines().any(|l| l == format!("ok {f}")),
            "{f} not ok in:\n{out}"
        );
    }
}

#[test]
fn an_unknown_key_in_any_shipped_profile_is_named_and_exits_65() {
    for src in shipped_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join(src.file_name().unwrap());
        let mut body = std::fs::read_to_string(&src).unwrap();
        body.push_str("\nsurprise_key = true\n");
        std::fs::write(&copy, body).unwrap();
        let o = aiopsctl(&["profile", "validate", copy.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(65), "{}: {out}{err}", src.display());
        let line = out.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(copy.to_str().unwrap()),
            "no file:line:col in {line}"
        );
        assert!(line.contains("surprise_key"), "key not named: {line}");
    }
}

#[test]
fn validate_checks_every_file_and_exits_with_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.toml");
    std::fs::write(
        &bad,
        "schema = 1\nname = \"broken\"\ndescription = \"x\"\n[net]\nmode = \"moon\"\n",
    )
    .unwrap();
    let missing = dir.path().join("absent.toml");
    let o = aiopsctl(&[
        "profile",
        "validate",
        bad.to_str().unwrap(),
        missing.to_str().unwrap(),
        "profiles/restrictive.toml",
    ]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(65), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains(":5:") && lines[0].contains("net.mode"),
        "{out}"
    );
    assert!(lines[1].contains("absent.toml"), "{out}");
    assert_eq!(lines[2], "ok profiles/restrictive.toml");
}

#[test]
fn explain_restrictive_shows_each_layer_and_the_reason_for_ptrace() {
    if !host_can_run_restrictive() {
        return;
    }
    let o = aiopsctl(&["profile", "explain", "restrictive"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for section in [
        "Required layers",
        "Namespaces",
        "Mounts",
        "Landlock",
        "Seccomp",
        "Limits",
        "Environment",
        "Network",
        "Protected paths",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(section)),
            "no {section} section:\n{out}"
        );
    }
    let ptrace = aiops_policy::syscalls::baseline_deny()
        .into_iter()
        .find(|r| r.syscall == "ptrace")
        .unwrap();
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("ptrace "))
        .unwrap();
    assert!(line.contains(&ptrace.reason), "{line}");
    assert!(line.contains("EPERM") && line.contains("always"), "{line}");
    assert!(
        out.contains("arg1 & 0o4000 == 0o4000"),
        "setuid chmod rule not rendered"
    );
    // The workspace is the one writable bind.
    let root = repo_root();
    let ws = out
        .lines()
        .find(|l| l.contains(&format!(" {}  ", root.display())) && l.contains(" rw "))
        .unwrap();
    assert!(ws.contains("bind"), "{ws}");
}

#[test]
fn explain_with_landlock_abi_3_refuses_restrictive_with_69() {
    if !host_can_run_restrictive() {
        return;
    }
    let o = aiopsctl(&["profile", "explain", "restrictive", "--abi", "3"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(69), "{out}{err}");
    assert!(err.contains("landlock>=4"), "{err}");
    assert!(err.contains("ABI 3"), "{err}");
    assert!(out.is_empty(), "a refused plan printed something: {out}");
}

#[test]
fn explain_json_is_a_valid_jail_plan() {
    if !host_can_run_restrictive() {
        return;
    }
    let o = aiopsctl(&["profile", "explain", "restrictive", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let plan: JailPlan = serde_json::from_str(&out).unwrap();
    plan.validate().unwrap();
    assert_eq!(plan.profile, "restrictive");
    assert_eq!(plan.cwd.as_path(), repo_root());
    assert!(plan.landlock.is_some() && plan.seccomp.is_some());
}

#[test]
fn node_caps_outside_the_profile_exit_77() {
    let dir = tempfile::tempdir().unwrap();
    let caps = dir.path().join("caps.toml");
    std::fs::write(&caps, "net = \"host\"\n").unwrap();
    let o = aiopsctl(&[
        "profile",
        "explain",
        "restrictive",
        "--node-caps",
        caps.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert!(err.contains("net") && err.contains("restrictive"), "{err}");
}

#[test]
fn show_resolves_the_extends_chain() {
    let o = aiopsctl(&["profile", "show", "agent", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["chain"], serde_json::json!(["agent", "restrictive"]));
    let o = aiopsctl(&["profile", "show", "agent"]);
    let (out, _) = text(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("extends chain") && l.ends_with("agent -> restrictive")),
        "{out}"
    );
    assert!(
        out.contains("limits.open_files"),
        "defaults not shown:\n{out}"
    );
}

#[test]
fn list_names_every_shipped_profile() {
    let o = aiopsctl(&["profile", "list", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    for p in shipped_profiles() {
        let stem = p.file_stem().unwrap().to_str().unwrap();
        let item = v.iter().find(|i| i["name"] == stem).unwrap();
        assert!(
            item["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{item}"
        );
    }
    let o = aiopsctl(&["profile", "show", "no-such-profile"]);
    assert_eq!(o.status.code(), Some(66));
}

#[test]
fn doctor_exit_code_matches_what_it_prints() {
    let o = aiopsctl(&["doctor"]);
    let (out, err) = text(&o);
    let code = o.status.code().unwrap();
    let verdict = out
        .lines()
        .rev()
        .find(|l| l.starts_with("restrictive:"))
        .unwrap_or_else(|| panic!("{out}{err}"));
    if code == 0 {
        assert!(verdict.contains("can run"), "{out}");
        assert!(
            !out.lines().any(|l| l.starts_with("MISSING")),
            "exit 0 with a MISSING line:\n{out}"
        );
    } else {
        assert!(verdict.contains("CANNOT run"), "{out}");
        assert_ne!(code, 64, "{err}");
    }
    let o = aiopsctl(&["doctor", "--json"]);
    let (out, _) = text(&o);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["default_profile"]["exit_code"], o.status.code().unwrap());
    assert_eq!(v["default_profile"]["runs"], o.status.code() == Some(0));
    let live = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == "network namespace")
        .unwrap();
    let jailer = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == "aiops-jailer")
        .unwrap();
    if jailer["status"] != "ok" {
        assert_eq!(
            live["status"], "unknown",
            "a live check passed without a jailer: {live}"
        );
    }
}

#[test]
fn doctor_reports_live_checks_unknown_when_the_jailer_is_missing() {
    let o = Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .arg("doctor")
        .current_dir(repo_root())
        .env_remove("AIOPS_PROFILE_PATH")
        .env("AIOPS_JAILER", "/nonexistent/aiops-jailer")
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(69), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("MISSING") && l.contains("aiops-jailer")),
        "{out}"
    );
    for label in ["network namespace", "fresh /proc mount"] {
        let line = out.lines().find(|l| l.contains(label)).unwrap();
        assert!(line.starts_with("unknown"), "{line}");
    }
}

#[test]
fn bad_flags_exit_64_and_help_exits_0() {
    assert_eq!(
        aiopsctl(&["profile", "explain", "--no-such-flag", "x"])
            .status
            .code(),
        Some(64)
    );
    assert_eq!(aiopsctl(&["no-such-command"]).status.code(), Some(64));
    assert_eq!(
        aiopsctl(&["profile", "explain", "restrictive", "--abi", "99"])
            .status
            .code(),
        Some(64)
    );
    assert_eq!(aiopsctl(&["profile", "validate"]).status.code(), Some(64));
    let help = aiopsctl(&["profile", "validate", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let (out, _) = text(&help);
    for code in ["64", "65", "66", "69", "77", "78"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(code)),
            "exit code {code} undocumented"
        );
    }
}

#[test]
fn completions_and_man_page_print_to_stdout() {
    let o = aiopsctl(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).0.contains("aiopsctl"));
    let o = aiopsctl(&["man"]);
    assert_eq!(o.status.code(), Some(0));
    let (out, _) = text(&o);
    assert!(out.contains(".TH") && out.contains("doctor"), "{out}");
}

/// The jailer's `probe` and doctor's parser must speak the same keys: with
/// the real jailer beside aiopsctl, no live check may come back unknown.
#[test]
fn doctor_understands_the_real_jailers_probe() {
    let jailer =
        std::path::Path::new(env!("CARGO_BIN_EXE_aiopsctl")).with_file_name("aiops-jailer");
    if !jailer.exists() {
        return skip(
            "doctor_understands_the_real_jailers_probe",
            "aiops-jailer not built (cargo build --workspace)",
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .args(["doctor", "--json"])
        .current_dir(repo_root())
        .env_remove("AIOPS_JAILER")
        .output()
        .unwrap();
    let (out, _) = text(&o);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let unknown: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "unknown")
        .collect();
    assert!(
        unknown.is_empty(),
        "live checks not understood: {unknown:?}"
    );
}

/// `submit` always detaches, so only `run` takes `--detach`.
#[test]
fn only_run_takes_detach() {
    let option = |help: &str| help.lines().any(|l| l.trim_start().starts_with("--detach"));
    let (run, _) = text(&aiopsctl(&["run", "--help"]));
    assert!(option(&run), "{run}");
    let (submit, _) = text(&aiopsctl(&["submit", "--help"]));
    assert!(!option(&submit), "{submit}");
    let o = aiopsctl(&["submit", "--detach", "flow.toml"]);
    assert_eq!(o.status.code(), Some(64), "{:?}", text(&o));
}

/// Every argument of every command and subcommand says what it is for.
#[test]
fn every_argument_of_every_subcommand_has_help() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let has = |h: Option<&clap::builder::StyledStr>| {
                h.is_some_and(|h| !h.to_string().trim().is_empty())
            };
            if !has(a.get_help()) && !has(a.get_long_help()) {
                missing.push(format!("{path} {id}"));
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, &format!("{path} {}", s.get_name()), missing);
        }
    }
    let cmd = aiops_supervisor::cli::Cli::command();
    let mut missing = vec![];
    walk(&cmd, "aiopsctl", &mut missing);
    // The walk sees the subcommands at all (the test would pass on none).
    assert!(cmd.get_subcommands().count() > 5);
    assert!(missing.is_empty(), "arguments without help: {missing:?}");
}

/// `aiopsctl man --dir` writes a page for every page any page points to.
#[test]
fn man_dir_writes_every_page_the_pages_refer_to() {
    let dir = tempfile::tempdir().unwrap();
    let o = aiopsctl(&["man", "--dir", dir.path().to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for want in ["aiopsctl.1", "aiopsctl-exec.1", "aiopsctl-profile-show.1"] {
        assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
        assert!(out.contains(want), "{want} not printed: {out}");
    }
    let exec = std::fs::read_to_string(dir.path().join("aiopsctl-exec.1")).unwrap();
    assert!(
        exec.contains(".TH") && exec.contains("net\\-allow"),
        "{exec}"
    );
    // Every aiopsctl-*(1) named anywhere exists.
    let mut named = 0;
    for p in &pages {
        let roff = std::fs::read_to_string(dir.path().join(p)).unwrap();
        for (i, _) in roff.match_indices("aiopsctl\\-") {
            let rest = &roff[i..];
            let Some(end) = rest.find("(1)") else {
                continue;
            };
            let name = rest[..end].replace("\\-", "-");
            if name.contains(char::is_whitespace) {
                continue;
            }
            named += 1;
            assert!(
                pages.contains(&format!("{name}.1")),
                "{p} names {name}(1), which was not written"
            );
        }
    }
    assert!(named > 5, "no cross references found");
}

/// `--profile <TAB>` and `profile show <TAB>` offer the profile names.
#[test]
fn bash_and_fish_complete_profile_names() {
    let o = aiopsctl(&["completions", "bash"]);
    let (bash, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    let names = "$(\"${COMP_WORDS[0]}\" profile list --names 2>/dev/null)";
    assert!(
        bash.contains(&format!(
            "COMPREPLY=($(compgen -W \"{names}\" -- \"${{cur}}\") $(compgen -f \"${{cur}}\"))"
        )),
        "--profile does not complete names:\n{bash}"
    );
    for sub in ["show", "explain"] {
        let block = bash
            .split(&format!("aiopsctl__subcmd__profile__subcmd__{sub})\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no profile {sub} block:\n{bash}"));
        let opts = block.lines().next().unwrap();
        assert!(opts.contains(names), "profile {sub}: {opts}");
    }
    let after_profile: Vec<&str> = bash
        .lines()
        .zip(bash.lines().skip(1))
        .filter(|(a, _)| a.trim() == "--profile)")
        .map(|(_, b)| b)
        .collect();
    assert!(!after_profile.is_empty());
    assert!(
        after_profile
            .iter()
            .all(|l| l.contains("profile list --names")),
        "{after_profile:?}"
    );
    let o = aiopsctl(&["completions", "zsh"]);
    let (zsh, _) = text(&o);
    let specs: Vec<&str> = zsh
        .lines()
        .filter(|l| l.starts_with("'--profile=[") || l.starts_with("':profile -- "))
        .collect();
    assert_eq!(specs.len(), 3, "{zsh}");
    assert!(
        specs.iter().all(|l| l.contains(":_aiopsctl_profiles'")),
        "{specs:?}"
    );
    assert!(zsh.contains("_aiopsctl_profiles() {"), "{zsh}");
    // A colon in a value's name must be escaped, or zsh takes the rest for
    // the action.
    assert!(zsh.contains(":HOST\\:PORT:_default'"), "{zsh}");
    let o = aiopsctl(&["completions", "fish"]);
    let (fish, _) = text(&o);
    assert!(
        fish.lines()
            .filter(|l| l.contains(" -l profile "))
            .all(|l| l.contains("profile list --names")),
        "{fish}"
    );
    assert!(
        fish.lines()
            .any(|l| l.contains("__fish_seen_subcommand_from show explain")
                && l.contains("profile list --names")),
        "{fish}"
    );
    // What the scripts run: the names on the search path.
    let o = aiopsctl(&["profile", "list", "--names"]);
    let (out, _) = text(&o);
    for p in shipped_profiles() {
        let stem = p.file_stem().unwrap().to_str().unwrap();
        assert!(out.lines().any(|l| l == stem), "{stem} not in {out}");
    }
}

/// The completion really completes: bash sources the script and asks.
#[test]
fn bash_completes_a_profile_name() {
    if !std::path::Path::new("/bin/bash").exists() {
        skip("bash completion", "no /bin/bash");
        return;
    }
    let script = text(&aiopsctl(&["completions", "bash"])).0;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.bash");
    std::fs::write(&f, script).unwrap();
    let ctl = env!("CARGO_BIN_EXE_aiopsctl");
    let probe = format!(
        "source {f}; COMP_WORDS=({ctl} exec --profile restr); COMP_CWORD=3; \
         _aiopsctl {ctl} restr --profile; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        f = f.display()
    );
    let o = Command::new("/bin/bash")
        .args(["--norc", "-c", &probe])
        .current_dir(repo_root())
        .env_remove("AIOPS_PROFILE_PATH")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(out.lines().any(|l| l == "restrictive"), "{out}{err}");
}

/// zsh completes `--profile restr<TAB>` and `profile show restr<TAB>` to
/// `restrictive`, driven through a pty (zsh's zpty) as at a prompt.
#[test]
fn zsh_completes_a_profile_name() {
    if !std::path::Path::new("/usr/bin/zsh").exists() {
        skip("zsh completion", "no /usr/bin/zsh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("aiopsctl.zsh");
    std::fs::write(&script, text(&aiopsctl(&["completions", "zsh"])).0).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_aiopsctl"), bin.join("aiopsctl")).unwrap();
    let complete = |typed: &str| {
        let driver = format!(
            "zmodload zsh/zpty\n\
             zpty z 'PATH={bin}:$PATH zsh -f -i'\n\
             zpty -w z 'autoload -U compinit; compinit -u; source {script}; compdef _aiopsctl aiopsctl'\n\
             zpty -n -w z $'{typed}\\t'\n\
             out=''\n\
             for i in {{1..100}}; do\n\
             \x20 zpty -r -t z line && out+=$line\n\
             \x20 [[ $out == *restrictive* ]] && break\n\
             \x20 sleep 0.1\n\
             done\n\
             print -r -- \"$out\"\n\
             zpty -d z\n",
            bin = bin.display(),
            script = script.display(),
        );
        let o = Command::new("/usr/bin/zsh")
            .args(["-f", "-c", &driver])
            .current_dir(repo_root())
            .env_remove("AIOPS_PROFILE_PATH")
            .output()
            .unwrap();
        text(&o).0
    };
    for typed in [
        "aiopsctl exec --profile restr",
        "aiopsctl profile show restr",
    ] {
        let out = complete(typed);
        let want = typed.replace("restr", "restrictive");
        assert!(out.contains(&want), "{typed:?} did not complete: {out:?}");
    }
}

/// fish completes the same, asked with `complete -C`.
#[test]
fn fish_completes_a_profile_name() {
    if !std::path::Path::new("/usr/bin/fish").exists() {
        skip("fish completion", "no /usr/bin/fish");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("aiopsctl.fish");
    std::fs::write(&script, text(&aiopsctl(&["completions", "fish"])).0).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_aiopsctl"), bin.join("aiopsctl")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for typed in [
        "aiopsctl exec --profile restr",
        "aiopsctl profile show restr",
    ] {
        let o = Command::new("/usr/bin/fish")
            .args(["-N", "-c"])
            .arg(format!(
                "source {}; complete -C '{typed}'",
                script.display()
            ))
            .current_dir(repo_root())
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env_remove("AIOPS_PROFILE_PATH")
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(
            out.lines()
                .any(|l| l.split('\t').next() == Some("restrictive")),
            "{typed:?}: {out}{err}"
        );
    }
}
