//! Node capabilities and their intersection with a profile. A node asking
//! for anything outside its profile is refused, naming the field and entry;
//! a field the node leaves out takes the profile's value (the ceiling).
use crate::error::PolicyError;
use crate::net::{HostPort, NetMode};
use crate::path::{AbsPath, PathSpec, PathVars, RelPath};
use crate::profile::{Limits, LimitsSection, Profile};
use crate::syscalls::SyscallRule;
use crate::units::Bytes;
use crate::{EnvName, EnvPattern};
#[cfg(feature = "schema")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a node declares (in a flow, or a `--node-caps` file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeCaps {
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::NetMode>"))]
    pub net: Option<NetMode>,
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<crate::schema::HostPort>>")
    )]
    pub net_allow: Option<Vec<HostPort>>,
    pub read_paths: Option<Vec<PathSpec>>,
    pub write_paths: Option<Vec<PathSpec>>,
    pub exec_paths: Option<Vec<PathSpec>>,
    /// Host variables to pass; each must match the profile's env allow-list.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<crate::schema::EnvName>>")
    )]
    pub env: Option<Vec<EnvName>>,
    /// Secret names to inject; each must be listed by the profile.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<crate::schema::EnvName>>")
    )]
    pub secrets: Option<Vec<EnvName>>,
    pub limits: Option<LimitsSection>,
}

impl NodeCaps {
    pub fn from_toml_file(path: &std::path::Path) -> Result<NodeCaps, PolicyError> {
        let src = crate::error::read_input(path, "node caps")?;
        crate::error::from_toml(path, &src)
    }
}

/// Which host variables pass into the jail. Serialized as the plain list
/// of names or patterns (`["HOME", "LC_*"]`), as the audit log documents
/// it, not as a tagged enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnvFilter {
    Patterns(Vec<EnvPattern>),
    Names(Vec<EnvName>),
}

impl EnvFilter {
    pub fn admits(&self, name: &str) -> bool {
        match self {
            EnvFilter::Patterns(p) => p.iter().any(|p| p.matches(name)),
            EnvFilter::Names(n) => n.iter().any(|n| n.as_str() == name),
        }
    }
}

/// profile ∩ node, with variables resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub profile: String,
    /// The inputs the jailer compiles the plan again from.
    pub source: crate::plan::PlanSource,
    pub unconfined: bool,
    pub require: Vec<crate::LayerReq>,
    pub read: Vec<AbsPath>,
    pub write: Vec<AbsPath>,
    pub exec: Vec<AbsPath>,
    pub net: NetMode,
    pub net_allow: Vec<HostPort>,
    /// Blocks the egress proxy may reach although private (profile only).
    pub net_allow_private: Vec<crate::net::Cidr>,
    /// The proxy's fixed name answers (profile only), names lower-cased.
    pub net_hosts: BTreeMap<String, std::net::IpAddr>,
    /// The egress proxy's limits (profile only; unset means its defaults).
    pub net_egress: crate::profile::EgressLimitsSection,
    pub env: EnvFilter,
    pub env_set: BTreeMap<EnvName, String>,
    pub secrets: Vec<EnvName>,
    pub limits: Limits,
    pub seccomp_deny: Vec<SyscallRule>,
    pub protected: Vec<RelPath>,
    /// The jailer's search of the writable roots (`write`).
    pub guard: crate::plan::GuardPlan,
}

fn resolve_all(
    list: &[PathSpec],
    vars: &PathVars,
    field: &str,
) -> Result<Vec<AbsPath>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| p.resolve(vars, &format!("{field}[{i}]")))
        .collect()
}

fn outside(field: String, entry: impl std::fmt::Display, profile: &str) -> PolicyError {
    PolicyError::OutsideProfile {
        field,
        entry: format!("{:?}", entry.to_string()),
        profile: profile.into(),
    }
}

/// Node paths must each lie inside one of the ceiling's paths.
fn narrow_paths(
    node: Option<&Vec<PathSpec>>,
    ceiling: &[AbsPath],
    vars: &PathVars,
    field: &str,
    profile: &str,
) -> Result<Option<Vec<AbsPath>>, PolicyError> {
    let Some(node) = node else { return Ok(None) };
    let mut out = Vec::new();
    for (i, spec) in node.iter().enumerate() {
        let p = spec.resolve(vars, &format!("{field}[{i}]"))?;
        if !ceiling.iter().any(|c| c.contains(&p)) {
            return Err(outside(format!("{field}[{i}]"), &p, profile));
        }
        out.push(p);
    }
    Ok(Some(out))
}

fn narrow_limit<T: PartialOrd + Copy + std::fmt::Display>(
    node: Option<T>,
    ceiling: T,
    field: &str,
    profile: &str,
) -> Result<T, PolicyError> {
    match node {
        None => Ok(ceiling),
        Some(v) if v <= ceiling => Ok(v),
        Some(v) => Err(PolicyError::OutsideProfile {
            field: format!("limits.{field}"),
            entry: format!("{v} > {ceiling}"),
            profile: profile.into(),
        }),
    }
}

/// Intersect a node's declared capabilities with its profile.
pub fn effective(
    profile: &Profile,
    node: &NodeCaps,
    vars: &PathVars,
) -> Result<Effective, PolicyError> {
    let name = profile.name.as_str();
    let p_read = resolve_all(&profile.read, vars, "fs.read")?;
    let p_write = resolve_all(&profile.write, vars, "fs.write")?;
    let p_exec = resolve_all(&profile.exec, vars, "fs.exec")?;
    let readable: Vec<AbsPath> = p_read.iter().chain(p_write.iter()).cloned().collect();

    let write = narrow_paths(
        node.write_paths.as_ref(),
        &p_write,
        vars,
        "write_paths",
        name,
    )?
    .unwrap_or(p_write);
    let read = narrow_paths(
        node.read_paths.as_ref(),
        &readable,
        vars,
        "read_paths",
        name,
    )?
    .unwrap_or(p_read);
    let exec = narrow_paths(node.exec_paths.as_ref(), &p_exec, vars, "exec_paths", name)?
        .unwrap_or(p_exec);

    let net = match node.net {
        Some(m) if m > profile.net => {
            return Err(outside("net".into(), m, name));
        }
        Some(m) => m,
        None => profile.net,
    };
    let net_allow = match &node.net_allow {
        None => profile.net_allow.clone(),
        Some(list) => {
            for (i, hp) in list.iter().enumerate() {
                if !profile.net_allow.iter().any(|a| a.admits(hp)) {
                    return Err(outside(format!("net_allow[{i}]"), hp, name));
                }
            }
            list.clone()
        }
    };
    let env = match &node.env {
        None => EnvFilter::Patterns(profile.env_allow.clone()),
        Some(names) => {
            for (i, n) in names.iter().enumerate() {
                if !profile.env_allow.iter().any(|p| p.matches(n.as_str())) {
                    return Err(outside(format!("env[{i}]"), n, name));
                }
            }
            EnvFilter::Names(names.clone())
        }
    };
    let secrets = match &node.secrets {
        // Secrets are injected only when a node asks: the profile merely permits.
        None => vec![],
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                if !profile.secrets.contains(s) {
                    return Err(outside(format!("secrets[{i}]"), s, name));
                }
            }
            list.clone()
        }
    };
    let pl = &profile.limits;
    let nl = node.limits.clone().unwrap_or_default();
    let limits = Limits {
        timeout: narrow_limit(nl.timeout, pl.timeout, "timeout", name)?,
        output: narrow_limit(nl.output, pl.output, "output", name)?,
        memory: narrow_limit(nl.memory, pl.memory, "memory", name)?,
        pids: narrow_limit(nl.pids, pl.pids, "pids", name)?,
        cpu: narrow_limit(nl.cpu, pl.cpu, "cpu", name)?,
        file_size: narrow_limit(nl.file_size, pl.file_size, "file_size", name)?,
        open_files: narrow_limit(nl.open_files, pl.open_files, "open_files", name)?,
        // Unset, a derived size follows the node's (narrowed) memory, which
        // is at most the profile's, so it stays within the profile's too.
        tmpfs: match nl.tmpfs {
            None => pl.tmpfs,
            Some(v) => Some(narrow_limit(
                Some(v),
                Bytes(pl.tmpfs_bytes()),
                "tmpfs",
                name,
            )?),
        },
        tmpfs_inodes: narrow_limit(nl.tmpfs_inodes, pl.tmpfs_inodes, "tmpfs_inodes", name)?,
    };
    let source = crate::plan::PlanSource {
        profile_file: profile.source.clone(),
        caps: serde_json::to_value(node).map_err(|e| PolicyError::Invalid {
            what: "node capabilities".into(),
            reason: e.to_string(),
        })?,
        workspace: vars.workspace.clone(),
        home: vars.home.clone(),
        tmpdir: vars.tmpdir.clone(),
    };
    let guard = crate::plan::GuardPlan {
        roots: write.clone(),
        ..profile.search.clone()
    };
    Ok(Effective {
        profile: name.into(),
        source,
        unconfined: profile.unconfined,
        require: profile.require.clone(),
        read,
        write,
        exec,
        net,
        net_allow,
        net_allow_private: profile.net_allow_private.iter().map(|r| r.cidr).collect(),
        net_hosts: profile
            .net_hosts
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), *v))
            .collect(),
        net_egress: profile.net_egress,
        env,
        env_set: profile.env_set.clone(),
        secrets,
        limits,
        seccomp_deny: profile.seccomp_deny.clone(),
        protected: profile.protected.clone(),
        guard,
    })
}

#[cfg(test)]
mod env_filter_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The audit log shows `env` as the plain list, never `{"Patterns": [...]}`.
    #[test]
    fn env_filter_serializes_as_a_plain_list() {
        let p = EnvFilter::Patterns(vec![
            crate::EnvPattern::parse("HOME").unwrap(),
            crate::EnvPattern::parse("LC_*").unwrap(),
        ]);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!(["HOME", "LC_*"])
        );
        assert_eq!(
            serde_json::to_value(EnvFilter::Names(vec![])).unwrap(),
            serde_json::json!([])
        );
    }
}
