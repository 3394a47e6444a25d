//! Step 1 (part): the plan must be exactly what the profile yields. The
//! jailer compiles it again with `aiops-policy`'s compiler (linked without
//! the shell lint, flows, SBPL or schemas) from the profile, the node's
//! declared capabilities (`plan.source`) and its own host facts, and refuses
//! any difference, naming the first field that differs. Which profile file
//! is read depends on the mode (docs/jailer.md, "The ceiling"):
//! - local (`--request-fd`): the file the plan names, `extends` along the
//!   search path the invoking user already trusts (`$AIOPS_PROFILE_PATH`,
//!   /etc/aiops/profiles, /usr/share/aiops/profiles);
//! - system (`--socket-activated`): only `jailer.toml`'s profiles, from its
//!   root-owned directories; the request's file name and search path are
//!   not used at all.
use crate::config::{check_root_owned, JailerConfig};
use crate::error::JailError;
use aiops_policy::{CompileContext, HostFacts, NodeCaps, PathVars, Profile, ProfileLoader};
use aiops_proto::facts::LANDLOCK_ABI_MAX;
use aiops_proto::{AbsPath, JailRequest};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the ceiling comes from.
#[derive(Debug, Clone)]
pub enum Ceiling {
    /// `$AIOPS_PROFILE_PATH`, as the invoking user set it.
    Local { profile_path: Option<String> },
    /// `jailer.toml` at this path (read at step 1, so a bad one is reported
    /// on the report socket like any refusal).
    System { config: PathBuf },
}

fn outside(field: impl Into<String>, reason: impl Into<String>) -> JailError {
    JailError::Ceiling {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What this kernel provides, asked here rather than believed from the
/// request: a plan compiled for an older Landlock, or for a host "without"
/// seccomp, would be a weaker jail. Namespaces are assumed: creating them
/// at steps 4-6 is the check.
fn own_facts() -> HostFacts {
    let abi = crate::sys::landlock_abi_version()
        .ok()
        .and_then(|v| u8::try_from(v).ok())
        .unwrap_or(0)
        .min(LANDLOCK_ABI_MAX);
    let mut facts = HostFacts::linux(abi);
    facts.seccomp = crate::sys::seccomp_filters_available();
    facts
}

/// Refuse `req.plan` unless it equals what its profile yields. `agentd` is
/// this jailer's agentd as the plan spells it (`check_agentd_bind`).
pub fn check(req: &JailRequest, ceiling: &Ceiling, agentd: &Path) -> Result<(), JailError> {
    let plan = &req.plan;
    let src = &plan.source;
    let caps: NodeCaps = serde_json::from_value(src.caps.clone())
        .map_err(|e| outside("source.caps", e.to_string()))?;
    let (profile, vars) = match ceiling {
        Ceiling::Local { profile_path } => {
            let loader = ProfileLoader::standard(
                profile_path.as_deref(),
                aiops_policy::profile::dev_profiles_dir().as_deref(),
            );
            let profile = loader
                .load_path(&src.profile_file)
                .map_err(|e| outside("source.profile_file", aiops_proto::error_chain(&e)))?;
            let vars = PathVars {
                workspace: src.workspace.clone(),
                home: src.home.clone(),
                tmpdir: src.tmpdir.clone(),
            };
            (profile, vars)
        }
        Ceiling::System { config } => {
            let home = crate::activation::supervisor_home();
            let cfg = JailerConfig::load(config, home)?;
            let profile = system_profile(&cfg, &plan.profile)?;
            if (plan.unconfined || profile.unconfined) && !cfg.allow_unconfined {
                return Err(outside(
                    "unconfined",
                    format!(
                        "{} does not allow unconfined jails (allow_unconfined = true would)",
                        cfg.path.display()
                    ),
                ));
            }
            (profile, system_vars(&cfg, src)?)
        }
    };
    let ctx = CompileContext {
        vars,
        cwd: plan.cwd.clone(),
        host_env: plan.env.clone(),
        agentd: AbsPath::new(agentd).map_err(|e| outside("agentd", e))?,
    };
    let mut want = aiops_policy::compile(&profile, &caps, &own_facts(), &ctx).map_err(|e| {
        outside(
            format!("profile {}", profile.name),
            aiops_proto::error_chain(&e),
        )
    })?;
    // `source` is what this compile started from, not its result; in
    // system mode its file name was not even used.
    want.source = src.clone();
    if want == *plan {
        return Ok(());
    }
    let (got, want) = (to_value(plan)?, to_value(&want)?);
    let (field, got, want) = first_difference(&got, &want, "plan".into())
        .unwrap_or_else(|| ("plan".into(), "?".into(), "?".into()));
    Err(outside(
        field,
        format!(
            "the request has {got}; profile {} yields {want}",
            profile.name
        ),
    ))
}

/// The profile `name`, if jailer.toml lists it, from its root-owned
/// directories; every file of its `extends` chain must be root's too.
fn system_profile(cfg: &JailerConfig, name: &str) -> Result<Profile, JailError> {
    if !cfg.profiles.iter().any(|p| p == name) {
        return Err(outside(
            "profile",
            format!(
                "{name:?} is not one of the profiles {} allows ({})",
                cfg.path.display(),
                cfg.profiles.join(", ")
            ),
        ));
    }
    let mut search = vec![];
    for d in &cfg.profile_dirs {
        // A missing directory adds nothing; only root could create it.
        if d.exists() {
            check_root_owned(d).map_err(|r| outside("profile_dirs", r))?;
            search.push(d.clone());
        }
    }
    let loader = ProfileLoader { search };
    let profile = loader
        .load(name)
        .map_err(|e| outside("profile", aiops_proto::error_chain(&e)))?;
    for n in &profile.chain {
        let file = loader
            .locate(n)
            .map_err(|e| outside("profile", aiops_proto::error_chain(&e)))?;
        check_root_owned(&file).map_err(|r| outside("profile", r))?;
    }
    Ok(profile)
}

/// System mode's path variables: the workspace strictly below the
/// configured root (as written and once symlinks are resolved), `$HOME`
/// the configured one, `$TMPDIR` the jail's own /tmp.
fn system_vars(
    cfg: &JailerConfig,
    src: &aiops_proto::plan::PlanSource,
) -> Result<PathVars, JailError> {
    let ws = src
        .workspace
        .as_ref()
        .ok_or_else(|| outside("source.workspace", "system mode needs a workspace"))?;
    let root = &cfg.workspace_root;
    let below = |p: &Path, r: &Path| p.starts_with(r) && p != r;
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
    let real_ws = std::fs::canonicalize(ws.as_path())
        .map_err(|e| outside("source.workspace", format!("{ws}: {e}")))?;
    if !below(ws.as_path(), root) || !below(&real_ws, &real_root) {
        return Err(outside(
            "source.workspace",
            format!(
                "{ws} is not below the workspace root {} ({})",
                root.display(),
                cfg.path.display()
            ),
        ));
    }
    if let Some(h) = &src.home {
        if cfg.home.as_deref() != Some(h.as_path()) {
            return Err(outside(
                "source.home",
                format!(
                    "{h} is not the home {} sets ({})",
                    cfg.path.display(),
                    cfg.home
                        .as_deref()
                        .map_or("none".into(), |p| p.display().to_string())
                ),
            ));
        }
    }
    if let Some(t) = &src.tmpdir {
        if t.as_path() != Path::new("/tmp") {
            return Err(outside(
                "source.tmpdir",
                format!("{t}: system-mode jails use their own /tmp"),
            ));
        }
    }
    Ok(PathVars {
        workspace: Some(ws.clone()),
        home: src.home.clone(),
        tmpdir: src.tmpdir.clone(),
    })
}

fn to_value(plan: &aiops_proto::JailPlan) -> Result<Value, JailError> {
    serde_json::to_value(plan).map_err(|e| outside("plan", e.to_string()))
}

/// A value for a message: JSON, cut short.
fn show(v: Option<&Value>) -> String {
    const MAX: usize = 160;
    let Some(v) = v else {
        return "nothing".into();
    };
    let s = v.to_string();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The first place where `got` and `want` differ, as (path, got, want).
fn first_difference(got: &Value, want: &Value, path: String) -> Option<(String, String, String)> {
    match (got, want) {
        _ if got == want => None,
        (Value::Object(g), Value::Object(w)) => {
            let mut keys: Vec<&String> = g.keys().chain(w.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let p = format!("{path}.{k}");
                match (g.get(k), w.get(k)) {
                    (Some(a), Some(b)) => first_difference(a, b, p),
                    (a, b) => Some((p, show(a), show(b))),
                }
            })
        }
        (Value::Array(g), Value::Array(w)) => (0..g.len().max(w.len())).find_map(|i| {
            let p = format!("{path}[{i}]");
            match (g.get(i), w.get(i)) {
                (Some(a), Some(b)) => first_difference(a, b, p),
                (a, b) => Some((p, show(a), show(b))),
            }
        }),
        _ => Some((path, show(Some(got)), show(Some(want)))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let a = json!({"mounts": [{"src": "/usr"}, {"src": "/w"}], "seccomp": {"x": 1}});
        let b = json!({"mounts": [{"src": "/usr"}, {"src": "/v"}], "seccomp": {"x": 1}});
        let (p, g, w) = first_difference(&a, &b, "plan".into()).unwrap();
        assert_eq!(
            (p.as_str(), g.as_str(), w.as_str()),
            ("plan.mounts[1].src", "\"/w\"", "\"/v\"")
        );
        let c = json!({"mounts": [{"src": "/usr"}], "seccomp": null});
        let (p, g, w) = first_difference(&c, &a, "plan".into()).unwrap();
        assert_eq!((p.as_str(), g.as_str()), ("plan.mounts[1]", "nothing"));
        assert!(w.contains("/w"));
        assert!(first_difference(&a, &a, "plan".into()).is_none());
    }
}
