//! Profiles: the operator's ceiling. `ProfileFile` is the TOML as written
//! (strict, versioned); `Profile` is the resolved, validated result of a
//! whole `extends` chain and is the only thing the compiler accepts.
use crate::error::{from_toml, PolicyError};
use crate::net::{Cidr, HostPort, NetMode};
use crate::path::{PathSpec, RelPath};
use crate::plan::GuardPlan;
use crate::syscalls::{SyscallName, SyscallRule};
use crate::units::{Bytes, Dur};
use crate::{EnvName, EnvPattern, LayerReq, Reason};
#[cfg(feature = "schema")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Only schema 1 exists; anything else is refused, not guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct SchemaVersion;
impl TryFrom<i64> for SchemaVersion {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if v == 1 {
            Ok(SchemaVersion)
        } else {
            Err(format!(
                "unsupported schema version {v}; this aiops reads schema = 1"
            ))
        }
    }
}
impl From<SchemaVersion> for i64 {
    fn from(_: SchemaVersion) -> i64 {
        1
    }
}
#[cfg(feature = "schema")]
impl JsonSchema for SchemaVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SchemaVersion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "const": 1, "description": "Policy schema version; only 1 exists" })
    }
}

/// A profile name: lower-case letters, digits and '-', as in a file stem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileName(String);
impl ProfileName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            Ok(ProfileName(s.into()))
        } else {
            Err(format!(
                "profile name {s:?}: use lower-case letters, digits and '-'"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for ProfileName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ProfileName::parse(&s)
    }
}
impl From<ProfileName> for String {
    fn from(n: ProfileName) -> String {
        n.0
    }
}
#[cfg(feature = "schema")]
crate::path::string_schema!(
    ProfileName,
    "ProfileName",
    "lower-case letters, digits and '-'"
);

/// `profiles/*.toml` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// Must be 1.
    pub schema: SchemaVersion,
    /// Must equal the file name without `.toml`.
    pub name: ProfileName,
    /// One line saying what the profile is for (shown by `aiopsctl profiles`).
    pub description: String,
    /// A single parent profile whose settings this one starts from.
    pub extends: Option<ProfileName>,
    /// Layers the host must provide, or the node is refused: userns, mountns, pidns,
    /// netns, ipcns, utsns, cgroupns, seccomp, landlock, landlock>=N, rlimits, cgroup.
    /// Unioned along the extends chain.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<crate::schema::LayerReq>>")
    )]
    pub require: Option<Vec<LayerReq>>,
    /// Run without any jail. Never inherited silently: a child must restate it.
    pub unconfined: Option<bool>,
    /// Filesystem: what is mounted read-only, read-write, and executable.
    pub fs: Option<FsSection>,
    /// Network mode and the egress allow-list.
    pub net: Option<NetSection>,
    /// Environment allow-list, fixed values and permitted secret names.
    pub env: Option<EnvSection>,
    /// Time, output, memory, process and file limits.
    pub limits: Option<LimitsSection>,
    /// Syscalls denied on top of the baseline table.
    pub seccomp: Option<SeccompSection>,
    /// Paths inside writable roots kept read-only.
    pub protected: Option<ProtectedSection>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FsSection {
    /// Mounted read-only (a missing path is skipped).
    pub read: Option<Vec<PathSpec>>,
    /// Mounted read-write (a missing path refuses the node).
    pub write: Option<Vec<PathSpec>>,
    /// Where programs may be executed from (Landlock execute right).
    pub exec: Option<Vec<PathSpec>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NetSection {
    /// none, loopback, allowlist or host.
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::NetMode>"))]
    pub mode: Option<NetMode>,
    /// host:port entries reachable in `allowlist` mode.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<crate::schema::HostPort>>")
    )]
    pub allow: Option<Vec<HostPort>>,
    /// Address blocks the egress proxy may connect to although they are
    /// loopback, link-local, private, multicast or unspecified (refused otherwise).
    pub allow_private: Option<Vec<PrivateRange>>,
    /// Fixed name → address answers the egress proxy uses instead of DNS
    /// (test hosts, split-horizon names). The address is still checked.
    pub hosts: Option<BTreeMap<String, std::net::IpAddr>>,
    /// Per-node limits of the egress proxy (defaults: 64 connections, 64GiB, 5m).
    pub egress: Option<EgressLimitsSection>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EgressLimitsSection {
    /// Connections open at once; more are answered 503.
    pub connections: Option<u32>,
    /// Bytes up plus down over all the node's connections; the connection
    /// that crosses it is cut.
    pub bytes: Option<Bytes>,
    /// A connection with no byte either way for this long is closed.
    pub idle: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PrivateRange {
    /// The block, e.g. 10.77.0.0/24.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::Cidr"))]
    pub cidr: Cidr,
    /// Why (required).
    pub reason: Reason,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// Host variables passed through (globs with `*`); everything else is dropped.
    pub allow: Option<Vec<EnvPattern>>,
    /// Fixed values set inside the jail.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<BTreeMap<crate::schema::EnvName, String>>")
    )]
    pub set: Option<BTreeMap<EnvName, String>>,
    /// Secret names (never values) a node may ask to have injected.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Vec<crate::schema::EnvName>>")
    )]
    pub secrets: Option<Vec<EnvName>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Wall-clock limit; the whole jail is killed when it passes.
    pub timeout: Option<Dur>,
    /// Cap on stdout+stderr bytes; the jail is killed when it is reached.
    pub output: Option<Bytes>,
    /// Address-space limit of each process (RLIMIT_AS): the jail's total is
    /// bounded only by memory × pids (cgroup limits are not applied).
    pub memory: Option<Bytes>,
    /// Process limit (RLIMIT_NPROC, per host uid).
    pub pids: Option<u32>,
    /// Size of each of the jail's two tmpfs, /tmp and /dev/shm (their pages
    /// count against no rlimit, so together they may hold twice this).
    /// Default: memory / 4, at most 1GiB.
    pub tmpfs: Option<Bytes>,
    /// Inodes (files, directories, symlinks) in each of /tmp and /dev/shm. Default: 65536.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub tmpfs_inodes: Option<std::num::NonZeroU32>,
    /// CPU time (RLIMIT_CPU).
    pub cpu: Option<Dur>,
    /// Largest file the node may write (RLIMIT_FSIZE).
    pub file_size: Option<Bytes>,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SeccompSection {
    /// Syscalls denied in addition to the baseline table.
    #[serde(default)]
    pub deny: Vec<SeccompDeny>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SeccompDeny {
    /// A syscall name known on x86_64 or aarch64; denied with EPERM.
    pub syscall: SyscallName,
    /// Why (required).
    pub reason: Reason,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProtectedSection {
    /// More paths, relative to every writable root, kept read-only.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<crate::schema::RelPath>"))]
    pub add: Vec<RelPath>,
    /// Default protected paths this profile lets nodes write, each with a reason.
    #[serde(default)]
    pub unprotect: Vec<Unprotect>,
    /// Bounds of the jailer's search of the writable roots for git
    /// directories and outside hard links; past one the node is refused.
    pub search: Option<SearchSection>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SearchSection {
    /// Directory levels below a writable root (default 64).
    pub depth: Option<u32>,
    /// Directories searched, all writable roots together (default 200000).
    pub dirs: Option<u32>,
    /// Git directories found (default 1000); each costs a few mounts.
    pub repositories: Option<u32>,
    /// Files hard-linked to a path outside the writable roots, each kept
    /// read-only with one mount (default 4096).
    pub linked_files: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Unprotect {
    /// A protected path (default or added by a parent) made writable again.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::RelPath"))]
    pub path: RelPath,
    /// Why (required).
    pub reason: Reason,
}

/// Paths inside writable roots that the host later executes or trusts.
pub const DEFAULT_PROTECTED: &[&str] = &[
    ".git/hooks",
    ".git/config",
    ".git/info",
    ".git/commondir",
    ".git/config.worktree",
    ".gitmodules",
    ".envrc",
    ".vscode",
    ".idea",
    ".devcontainer",
    ".claude",
    ".cursor",
    ".mcp.json",
    ".aiops",
];

pub const DEFAULT_ENV_ALLOW: &[&str] = &["HOME", "USER", "PATH", "LANG", "LC_*", "TERM", "SHELL"];

/// Concrete limits after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout: Dur,
    pub output: Bytes,
    pub memory: Bytes,
    pub pids: u32,
    pub cpu: Dur,
    pub file_size: Bytes,
    pub open_files: u32,
    /// `None`: derived from `memory` (`tmpfs_bytes`).
    pub tmpfs: Option<Bytes>,
    pub tmpfs_inodes: std::num::NonZeroU32,
}

/// The largest default tmpfs (each of /tmp and /dev/shm).
pub const TMPFS_DEFAULT_MAX: u64 = 1 << 30;
/// A default tmpfs is this fraction of `memory`, so /tmp and /dev/shm
/// together hold at most half of it.
pub const TMPFS_DEFAULT_MEMORY_DIVISOR: u64 = 4;
/// Inodes in each of /tmp and /dev/shm unless the profile says otherwise.
pub const TMPFS_INODES_DEFAULT: std::num::NonZeroU32 = match std::num::NonZeroU32::new(65536) {
    Some(n) => n,
    None => panic!("nonzero"),
};

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Dur(30 * 60_000),
            output: Bytes(64 << 20),
            memory: Bytes(4 << 30),
            pids: 512,
            cpu: Dur(30 * 60_000),
            file_size: Bytes(4 << 30),
            open_files: 1024,
            tmpfs: None,
            tmpfs_inodes: TMPFS_INODES_DEFAULT,
        }
    }
}

impl Limits {
    fn overlay(mut self, s: &LimitsSection) -> Self {
        if let Some(v) = s.timeout {
            self.timeout = v;
        }
        if let Some(v) = s.output {
            self.output = v;
        }
        if let Some(v) = s.memory {
            self.memory = v;
        }
        if let Some(v) = s.pids {
            self.pids = v;
        }
        if let Some(v) = s.cpu {
            self.cpu = v;
        }
        if let Some(v) = s.file_size {
            self.file_size = v;
        }
        if let Some(v) = s.open_files {
            self.open_files = v;
        }
        if let Some(v) = s.tmpfs {
            self.tmpfs = Some(v);
        }
        if let Some(v) = s.tmpfs_inodes {
            self.tmpfs_inodes = v;
        }
        self
    }

    /// Bytes of each of /tmp and /dev/shm: `tmpfs`, else memory / 4 up to 1GiB.
    pub fn tmpfs_bytes(&self) -> u64 {
        self.tmpfs.map_or_else(
            || (self.memory.0 / TMPFS_DEFAULT_MEMORY_DIVISOR).clamp(1, TMPFS_DEFAULT_MAX),
            |b| b.0,
        )
    }
}

/// A resolved profile: the whole extends chain applied, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// This profile first, then its ancestors.
    pub chain: Vec<String>,
    pub source: PathBuf,
    pub require: Vec<LayerReq>,
    pub unconfined: bool,
    pub read: Vec<PathSpec>,
    pub write: Vec<PathSpec>,
    pub exec: Vec<PathSpec>,
    pub net: NetMode,
    pub net_allow: Vec<HostPort>,
    pub net_allow_private: Vec<PrivateRange>,
    pub net_hosts: BTreeMap<String, std::net::IpAddr>,
    pub net_egress: EgressLimitsSection,
    pub env_allow: Vec<EnvPattern>,
    pub env_set: BTreeMap<EnvName, String>,
    pub secrets: Vec<EnvName>,
    pub limits: Limits,
    pub seccomp_deny: Vec<SyscallRule>,
    pub protected: Vec<RelPath>,
    pub unprotected: Vec<(RelPath, String)>,
    /// The search's bounds (its roots are the node's writable paths).
    pub search: GuardPlan,
}

const MAX_EXTENDS_DEPTH: usize = 8;

/// The source tree's `profiles/`, only when it still exists (a development
/// build), and never in a package build (`AIOPS_PACKAGE_BUILD=1` at
/// compile time, from packaging/build-deb.sh): an installed binary must not
/// look for profiles under the path it was built at, which someone else
/// may be able to create on the host it runs on.
pub fn dev_profiles_dir() -> Option<PathBuf> {
    if option_env!("AIOPS_PACKAGE_BUILD") == Some("1") {
        return None;
    }
    let d = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles"));
    d.is_dir()
        .then(|| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()))
}

/// Finds profiles by name along a search path, or reads one by path.
#[derive(Debug, Clone)]
pub struct ProfileLoader {
    pub search: Vec<PathBuf>,
}

impl ProfileLoader {
    /// `$AIOPS_PROFILE_PATH` (colon-separated), `/etc/aiops/profiles`,
    /// `/usr/share/aiops/profiles`, then `dev_dir` (the source tree's
    /// `profiles/` in a development build). The caller hands in the env value.
    pub fn standard(env_path: Option<&str>, dev_dir: Option<&Path>) -> Self {
        let mut search: Vec<PathBuf> = env_path
            .unwrap_or("")
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        search.push("/etc/aiops/profiles".into());
        search.push("/usr/share/aiops/profiles".into());
        if let Some(d) = dev_dir {
            search.push(d.to_path_buf());
        }
        ProfileLoader { search }
    }

    /// A name is looked up on the search path; anything with a `/` or ending
    /// in `.toml` is a path.
    pub fn locate(&self, name_or_path: &str) -> Result<PathBuf, PolicyError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            return Ok(PathBuf::from(name_or_path));
        }
        ProfileName::parse(name_or_path).map_err(|reason| PolicyError::Invalid {
            what: "profile name".into(),
            reason,
        })?;
        for dir in &self.search {
            let p = dir.join(format!("{name_or_path}.toml"));
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(PolicyError::ProfileNotFound {
            name: name_or_path.into(),
            searched: self.search.clone(),
        })
    }

    /// Every profile name visible on the search path (first match wins).
    pub fn list(&self) -> Vec<(String, PathBuf)> {
        let mut seen = BTreeMap::new();
        for dir in &self.search {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            names.sort();
            for p in names {
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    seen.entry(stem.to_string()).or_insert(p);
                }
            }
        }
        seen.into_iter().collect()
    }

    pub fn load(&self, name_or_path: &str) -> Result<Profile, PolicyError> {
        let path = self.locate(name_or_path)?;
        self.load_path(&path)
    }

    pub fn load_path(&self, path: &Path) -> Result<Profile, PolicyError> {
        let mut files: Vec<(PathBuf, ProfileFile)> = Vec::new();
        // Absolute, so a plan names its profile file whatever the reader's
        // cwd (`PlanSource::profile_file`).
        let path = &std::path::absolute(path).map_err(|source| PolicyError::Read {
            path: path.into(),
            source,
        })?;
        let mut next = Some(path.to_path_buf());
        while let Some(p) = next.take() {
            if files.len() >= MAX_EXTENDS_DEPTH {
                return Err(PolicyError::ExtendsTooDeep {
                    file: path.into(),
                    max: MAX_EXTENDS_DEPTH,
                });
            }
            let file = read_profile_file(&p)?;
            if let Some(parent) = &file.extends {
                let mut chain: Vec<String> = files
                    .iter()
                    .map(|(_, f)| f.name.as_str().to_string())
                    .collect();
                chain.push(file.name.as_str().into());
                if chain.iter().any(|n| n == parent.as_str()) {
                    chain.push(parent.as_str().into());
                    return Err(PolicyError::ExtendsCycle { file: p, chain });
                }
                next = Some(self.locate(parent.as_str())?);
            }
            files.push((p, file));
        }
        Ok(resolve(files))
    }
}

/// Parse one file strictly, without following `extends`.
pub fn read_profile_file(path: &Path) -> Result<ProfileFile, PolicyError> {
    let src = crate::error::read_input(path, "profile")?;
    parse_profile(path, &src)
}

pub fn parse_profile(path: &Path, src: &str) -> Result<ProfileFile, PolicyError> {
    let file: ProfileFile = from_toml(path, src).map_err(|e| name_duplicate_key(src, e))?;
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if stem != file.name.as_str() {
            return Err(PolicyError::NameMismatch {
                file: path.into(),
                name: file.name.as_str().into(),
                stem: stem.into(),
            });
        }
    }
    Ok(file)
}

/// The TOML parser says only "duplicate key"; name the key (it starts at the
/// reported position) so the error is actionable on its own.
pub(crate) fn name_duplicate_key(src: &str, e: PolicyError) -> PolicyError {
    match e {
        PolicyError::Parse {
            file,
            line,
            column,
            field,
            message,
        } if message == "duplicate key" => {
            let key: String = src
                .lines()
                .nth(line.saturating_sub(1))
                .unwrap_or("")
                .chars()
                .skip(column.saturating_sub(1))
                .take_while(|c| !c.is_whitespace() && !matches!(c, '=' | ']' | '['))
                .collect();
            let (field, message) = if key.is_empty() {
                (field, message)
            } else {
                (key.clone(), format!("duplicate key `{key}`"))
            };
            PolicyError::Parse {
                file,
                line,
                column,
                field,
                message,
            }
        }
        other => other,
    }
}

/// Apply a chain (child first) root-first: a child's value replaces its
/// parent's; `require`, seccomp denials and protected paths accumulate.
fn resolve(files: Vec<(PathBuf, ProfileFile)>) -> Profile {
    let (source, leaf) = &files[0];
    let mut p = Profile {
        name: leaf.name.as_str().into(),
        description: leaf.description.clone(),
        chain: files.iter().map(|(_, f)| f.name.as_str().into()).collect(),
        source: source.clone(),
        require: vec![],
        // Only the leaf decides: `unconfined` is never inherited silently.
        unconfined: leaf.unconfined.unwrap_or(false),
        read: vec![],
        write: vec![],
        exec: vec![],
        net: NetMode::None,
        net_allow: vec![],
        net_allow_private: vec![],
        net_hosts: BTreeMap::new(),
        net_egress: EgressLimitsSection::default(),
        env_allow: DEFAULT_ENV_ALLOW
            .iter()
            .filter_map(|s| EnvPattern::parse(s).ok())
            .collect(),
        env_set: BTreeMap::new(),
        secrets: vec![],
        limits: Limits::default(),
        seccomp_deny: vec![],
        protected: DEFAULT_PROTECTED
            .iter()
            .filter_map(|s| RelPath::parse(s).ok())
            .collect(),
        unprotected: vec![],
        search: GuardPlan::DEFAULT,
    };
    for (_, f) in files.iter().rev() {
        for r in f.require.iter().flatten() {
            if !p.require.contains(r) {
                p.require.push(r.clone());
            }
        }
        if let Some(fs) = &f.fs {
            if let Some(v) = &fs.read {
                p.read = v.clone();
            }
            if let Some(v) = &fs.write {
                p.write = v.clone();
            }
            if let Some(v) = &fs.exec {
                p.exec = v.clone();
            }
        }
        if let Some(n) = &f.net {
            if let Some(m) = n.mode {
                p.net = m;
            }
            if let Some(a) = &n.allow {
                p.net_allow = a.clone();
            }
            if let Some(a) = &n.allow_private {
                p.net_allow_private = a.clone();
            }
            if let Some(h) = &n.hosts {
                p.net_hosts = h.clone();
            }
            if let Some(e) = &n.egress {
                let l = &mut p.net_egress;
                l.connections = e.connections.or(l.connections);
                l.bytes = e.bytes.or(l.bytes);
                l.idle = e.idle.or(l.idle);
            }
        }
        if let Some(e) = &f.env {
            if let Some(v) = &e.allow {
                p.env_allow = v.clone();
            }
            if let Some(v) = &e.set {
                p.env_set = v.clone();
            }
            if let Some(v) = &e.secrets {
                p.secrets = v.clone();
            }
        }
        if let Some(l) = &f.limits {
            p.limits = p.limits.clone().overlay(l);
        }
        if let Some(s) = &f.seccomp {
            for d in &s.deny {
                p.seccomp_deny.push(SyscallRule {
                    syscall: d.syscall.as_str().into(),
                    when: vec![],
                    reason: d.reason.as_str().into(),
                });
            }
        }
        if let Some(pr) = &f.protected {
            for a in &pr.add {
                if !p.protected.contains(a) {
                    p.protected.push(a.clone());
                }
            }
            for u in &pr.unprotect {
                p.protected.retain(|x| x != &u.path);
                p.unprotected
                    .push((u.path.clone(), u.reason.as_str().into()));
            }
            if let Some(b) = &pr.search {
                let g = &mut p.search;
                g.max_depth = b.depth.unwrap_or(g.max_depth);
                g.max_dirs = b.dirs.unwrap_or(g.max_dirs);
                g.max_repos = b.repositories.unwrap_or(g.max_repos);
                g.max_linked = b.linked_files.unwrap_or(g.max_linked);
            }
        }
    }
    p
}
