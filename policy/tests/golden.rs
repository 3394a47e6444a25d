//! Every shipped profile compiled for fixed hosts and a fixed invocation,
//! compared with checked-in plans. `UPDATE_GOLDEN=1` rewrites them; review
//! the diff like code, because it is the policy.
#![allow(clippy::unwrap_used)]
mod common;

use aiops_policy::plan::{JailPlan, Mount};
#[cfg(feature = "full")]
use aiops_policy::sbpl::compile_sbpl_for;
use aiops_policy::{
    compile, AbsPath, CompileContext, HostFacts, NodeCaps, PathVars, ProfileLoader,
};
use common::{check_golden, report, shipped_profiles, updating};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const ABIS: [u8; 2] = [7, 3];
const SECRET_VALUES: [&str; 2] = ["tok-do-not-leak", "aws-do-not-leak"];

fn abs(s: &str) -> AbsPath {
    AbsPath::new(s).unwrap()
}

fn ctx() -> CompileContext {
    let host_env: BTreeMap<String, String> = [
        ("HOME", "/home/u"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "en_US.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("TERM", "xterm-256color"),
        ("SECRET_TOKEN", SECRET_VALUES[0]),
        ("AWS_SECRET_ACCESS_KEY", SECRET_VALUES[1]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    CompileContext {
        vars: PathVars {
            workspace: Some(abs("/work/ws")),
            home: Some(abs("/home/u")),
            tmpdir: Some(abs("/tmp")),
        },
        cwd: abs("/work/ws"),
        host_env,
        agentd: abs("/usr/libexec/aiops/aiops-agentd"),
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

/// Properties every plan must have whatever the golden file says, so a
/// wrong plan cannot be blessed with UPDATE_GOLDEN=1 unnoticed.
fn check_invariants(name: &str, plan: &JailPlan) -> Vec<String> {
    let mut bad = vec![];
    if let Err(e) = plan.validate() {
        bad.push(format!("{name}: plan fails its own validation: {e}"));
    }
    for (k, v) in &plan.env {
        if SECRET_VALUES.contains(&v.as_str()) || k == "SECRET_TOKEN" || k.starts_with("AWS_") {
            bad.push(format!("{name}: host secret {k} passed into the env"));
        }
    }
    if !plan.unconfined {
        // HOME, a parent of it, or a part of it ($HOME/.cargo/registry) is bound.
        let mounted = |p: &str| {
            plan.mounts.iter().any(|m| match m {
                Mount::Bind { dst, .. } => dst.contains(&abs(p)) || abs(p).contains(dst),
                _ => false,
            })
        };
        match plan.env.get("HOME") {
            Some(h) if h == "/tmp" || mounted(h) => {}
            other => bad.push(format!(
                "{name}: HOME {other:?} has nothing mounted and is not /tmp"
            )),
        }
        // Parents are bound (or pinned) before their children, or a child
        // mount would be hidden under its parent.
        let binds: Vec<&AbsPath> = plan
            .mounts
            .iter()
            .filter_map(|m| match m {
                Mount::Bind { dst, .. } | Mount::Pin { path: dst } => Some(dst),
                _ => None,
            })
            .collect();
        for (i, a) in binds.iter().enumerate() {
            if let Some(b) = binds[i + 1..].iter().find(|b| b.contains(a) && *b != a) {
                bad.push(format!("{name}: {b} is bound after its child {a}"));
            }
        }
        for p in &plan.protected {
            let ro = plan
                .mounts
                .iter()
                .any(|m| matches!(m, Mount::Bind { dst, writable: false, .. } if dst == p));
            if !ro {
                bad.push(format!("{name}: protected {p} has no read-only bind"));
            }
        }
    }
    bad
}

/// The macOS plan (SBPL text and its parameters) of one shipped profile.
#[cfg(feature = "full")]
fn check_sbpl(
    name: &str,
    profile: &aiops_policy::Profile,
    ctx: &CompileContext,
    dir: &std::path::Path,
    failures: &mut Vec<String>,
    expected_files: &mut BTreeSet<String>,
) {
    let sbpl = compile_sbpl_for(profile, &NodeCaps::default(), ctx)
        .unwrap_or_else(|e| panic!("{name}: sbpl: {e}"))
        .sbpl;
    for (_, v) in &sbpl.params {
        let compiled = sbpl
            .text
            .strip_prefix(aiops_policy::sbpl::BASE)
            .unwrap_or(&sbpl.text);
        let leaked = compiled
            .lines()
            .filter(|l| !l.trim_start().starts_with(';'))
            .any(|l| l.contains(&format!("\"{v}\"")) || l.contains(&format!("\"{v}/")));
        if leaked && !v.is_empty() {
            failures.push(format!("{name}: sbpl text names the path {v}"));
        }
    }
    let params: BTreeMap<&str, &str> = sbpl
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if params.len() != sbpl.params.len() {
        failures.push(format!("{name}: duplicate sbpl parameter names"));
    }
    for (file, text) in [
        (format!("{name}.sbpl"), sbpl.text.clone()),
        (format!("{name}.sbpl.params.json"), pretty(&sbpl.params)),
    ] {
        failures.extend(check_golden(&dir.join(&file), &text).err());
        expected_files.insert(file);
    }
}

#[test]
fn shipped_profiles_compile_to_their_golden_plans() {
    let loader = ProfileLoader {
        search: vec![common::profiles_dir()],
    };
    let ctx = ctx();
    let dir = golden_dir();
    let mut failures = vec![];
    let mut expected_files = BTreeSet::new();
    for (name, _) in shipped_profiles() {
        let profile = loader.load(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for abi in ABIS {
            let (file, text) =
                match compile(&profile, &NodeCaps::default(), &HostFacts::linux(abi), &ctx) {
                    Ok(mut plan) => {
                        failures.extend(check_invariants(&format!("{name} abi {abi}"), &plan));
                        // The checkout's path is not part of the policy.
                        let file = plan
                            .source
                            .profile_file
                            .strip_prefix(common::profiles_dir());
                        plan.source.profile_file =
                            PathBuf::from("$PROFILES").join(file.unwrap_or_else(|e| panic!("{e}")));
                        (format!("{name}.abi{abi}.plan.json"), pretty(&plan))
                    }
                    Err(e) => (format!("{name}.abi{abi}.refused.txt"), format!("{e}\n")),
                };
            failures.extend(check_golden(&dir.join(&file), &text).err());
            expected_files.insert(file);
        }
        #[cfg(feature = "full")]
        check_sbpl(
            &name,
            &profile,
            &ctx,
            &dir,
            &mut failures,
            &mut expected_files,
        );
    }
    // A golden file no profile produces any more (a renamed profile, or a
    // plan that became a refusal) is stale and must go.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        // Without `full` there is no SBPL compiler: its files are left alone.
        if !cfg!(feature = "full") && file.contains(".sbpl") {
            continue;
        }
        if !expected_files.contains(&file) {
            if updating() {
                std::fs::remove_file(&path).unwrap();
            } else {
                failures.push(format!("{}: stale golden file", path.display()));
            }
        }
    }
    report(failures);
}

#[test]
fn restrictive_family_is_refused_below_landlock_4() {
    let loader = ProfileLoader {
        search: vec![common::profiles_dir()],
    };
    let profile = loader.load("restrictive").unwrap();
    let err = compile(&profile, &NodeCaps::default(), &HostFacts::linux(3), &ctx()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: layer landlock>=4 unavailable: landlock ABI 3 here, profile needs 4"
    );
}
