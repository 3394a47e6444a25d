//! The jailer's steps, in order. Numbered as in docs/jailer.md; the
//! `steps_match_docs` test fails if the two differ.
use crate::ceiling::Ceiling;
use crate::error::JailError;
use crate::exec::ReportFd;
use crate::steps::{Kernel, Sys};
use crate::{ceiling, config, landlock, limits, net, ns, seccomp, secrets, sys};
use aiops_proto::facts::LayerReq;
use aiops_proto::locate;
use aiops_proto::net::NetMode;
use aiops_proto::plan::{Mount, Namespace, AGENTD_IN_JAIL};
use aiops_proto::{ids, AbsPath};
use aiops_proto::{AgentSpec, JailRequest, MAX_REQUEST_BYTES, PROTO_VERSION};
use std::convert::Infallible;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The function names of the steps, in order (docs/jailer.md).
#[cfg_attr(not(test), allow(dead_code))] // read by steps_match_docs
pub const STEPS: [&str; 13] = [
    "read_request",
    "close_fds",
    "setresuid_to_jail_uid",
    "unshare_namespaces",
    "write_id_maps",
    "fork_into_pid_ns",
    "pivot_root_into",
    "sethostname_and_lo_up",
    "setrlimits",
    "drop_caps_and_set_nnp",
    "landlock_restrict_self",
    "seccomp_install",
    "execve_agentd",
];

/// What the jailer takes from its own environment, read once at start; the
/// environment is never passed on (agentd is exec'd with an empty one).
pub struct HostEnv {
    pub secrets_dir: Option<PathBuf>,
    /// Where `secrets_dir` came from, which decides how it is checked.
    pub secrets_origin: secrets::Origin,
    pub agentd: Option<PathBuf>,
    /// Who started us: the jail must not outlive it (see step 6).
    pub parent: nix::unistd::Pid,
    /// Where the plan's ceiling comes from (step 1, `ceiling.rs`).
    pub ceiling: Ceiling,
}

impl HostEnv {
    /// `socket_activated`: secrets come from systemd's `LoadCredential=`
    /// (`$CREDENTIALS_DIRECTORY`), and `AIOPS_SECRETS_DIR` is ignored.
    pub fn capture(socket_activated: bool) -> HostEnv {
        let (var, secrets_origin) = if socket_activated {
            ("CREDENTIALS_DIRECTORY", secrets::Origin::Credentials)
        } else {
            ("AIOPS_SECRETS_DIR", secrets::Origin::SecretsDir)
        };
        let ceiling = if socket_activated {
            Ceiling::System {
                config: std::env::var_os(config::PATH_ENV)
                    .map_or_else(|| PathBuf::from(config::DEFAULT_PATH), PathBuf::from),
            }
        } else {
            Ceiling::Local {
                profile_path: std::env::var("AIOPS_PROFILE_PATH").ok(),
            }
        };
        HostEnv {
            secrets_dir: std::env::var_os(var).map(PathBuf::from),
            secrets_origin,
            agentd: std::env::var_os(locate::AGENTD.env).map(PathBuf::from),
            parent: nix::unistd::getppid(),
            ceiling,
        }
    }
}

fn refused(reason: impl Into<String>) -> JailError {
    JailError::Refused {
        reason: reason.into(),
    }
}

/// Where step 1 gets the request.
pub enum Source {
    /// `--request-fd N`: read to EOF.
    Fd(RawFd),
    /// `--socket-activated`: already received (activation.rs), with the
    /// supervisor's connection, which step 6 watches.
    Received { request: Vec<u8>, conn: OwnedFd },
}

/// Step 1: read the request (to EOF, bounded), decode, validate.
pub fn read_request(
    source: Source,
    has_egress: bool,
) -> Result<(JailRequest, Option<OwnedFd>), JailError> {
    let (buf, conn) = match source {
        Source::Fd(fd) => {
            let rd = |source| JailError::ReadRequest { fd, source };
            let owned = sys::adopt_inherited_fd(fd).map_err(rd)?;
            let mut buf = Vec::new();
            std::fs::File::from(owned)
                .take(MAX_REQUEST_BYTES as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(rd)?;
            (buf, None)
        }
        Source::Received { request, conn } => (request, Some(conn)),
    };
    let req = JailRequest::decode(&buf).map_err(|source| JailError::DecodeRequest { source })?;
    req.validate()
        .map_err(|source| JailError::Validate { source })?;
    if needs_egress(&req) && !has_egress {
        return Err(refused(
            "net mode allowlist needs the egress proxy's socket (--egress-fd): without it the node would have no way out",
        ));
    }
    check_required_layers(&req)?;
    Ok((req, conn))
}

/// A confined `allowlist` jail: its only way out is the egress listener.
fn needs_egress(req: &JailRequest) -> bool {
    req.plan.net.mode == NetMode::Allowlist && !req.plan.unconfined
}

/// The profile's `require` list, checked against what this plan will apply.
fn check_required_layers(req: &JailRequest) -> Result<(), JailError> {
    let p = &req.plan;
    for r in &p.require {
        let ok = match r {
            LayerReq::UserNs => p.namespaces.contains(&Namespace::User),
            LayerReq::MountNs => p.namespaces.contains(&Namespace::Mount),
            LayerReq::PidNs => p.namespaces.contains(&Namespace::Pid),
            LayerReq::NetNs => p.namespaces.contains(&Namespace::Net),
            LayerReq::IpcNs => p.namespaces.contains(&Namespace::Ipc),
            LayerReq::UtsNs => p.namespaces.contains(&Namespace::Uts),
            LayerReq::CgroupNs => p.namespaces.contains(&Namespace::Cgroup),
            LayerReq::Seccomp => p.seccomp.is_some(),
            LayerReq::Landlock(n) => p.landlock.as_ref().is_some_and(|l| l.abi >= *n),
            LayerReq::Rlimits => !p.rlimits.is_empty(),
            LayerReq::Cgroup => true, // refused by limits::cgroup_layer, at its own step
        };
        if !ok && !p.unconfined {
            return Err(refused(format!(
                "the profile requires {r} and the plan does not apply it"
            )));
        }
    }
    Ok(())
}

/// The host path of agentd: `$AIOPS_AGENTD`, else `aiops-agentd` next to
/// us. That is `aiops_proto::locate`'s rule without its last fallback: the
/// package installs both helpers in its libexec dir, and a development
/// jailer must not pick up a packaged agentd of another version. The bind
/// at step 7 fails if nothing is there.
fn agentd_host_path(env: &HostEnv) -> Result<PathBuf, JailError> {
    if let Some(p) = &env.agentd {
        return Ok(p.clone());
    }
    let me = std::fs::read_link("/proc/self/exe")
        .map_err(|e| refused(format!("/proc/self/exe: {e}")))?;
    let dir = me
        .parent()
        .ok_or_else(|| refused("/proc/self/exe has no parent directory"))?;
    Ok(dir.join(locate::AGENTD.name))
}

/// A confined plan must bind exactly this jailer's agentd at AGENTD_IN_JAIL,
/// once: every mount is checked, not only the first that matches (a later
/// bind at the same place would hide the checked one; `JailPlan::validate`
/// refuses a second one too).
/// Returns the plan's spelling of that path, which its ceiling compiles with.
fn check_agentd_bind(req: &JailRequest, host: &Path) -> Result<PathBuf, JailError> {
    let want = AbsPath::new(host).map_err(|e| refused(format!("agentd path: {e}")))?;
    let at_agentd: Vec<&Mount> = req
        .plan
        .mounts
        .iter()
        .filter(|m| {
            m.dst()
                .is_some_and(|d| d.as_path() == Path::new(AGENTD_IN_JAIL))
        })
        .collect();
    // The same file, however either side spelled its path (symlinks included).
    let same = |src: &AbsPath| {
        *src == want
            || matches!(
                (std::fs::canonicalize(src.as_path()), std::fs::canonicalize(host)),
                (Ok(a), Ok(b)) if a == b
            )
    };
    match at_agentd.as_slice() {
        [Mount::Bind { src, .. }] if same(src) => Ok(src.as_path().to_path_buf()),
        [Mount::Bind { src, .. }] => Err(refused(format!(
            "the plan binds {src} at {AGENTD_IN_JAIL}; this jailer's agentd is {want}"
        ))),
        [] => Err(refused(format!(
            "the plan does not bind agentd at {AGENTD_IN_JAIL}"
        ))),
        more => Err(refused(format!(
            "the plan mounts {} times at {AGENTD_IN_JAIL}; only this jailer's agentd may be there",
            more.len()
        ))),
    }
}

/// Step 2 (first part): every fd ≥ 3 but the report and egress sockets
/// (and, in socket mode, the supervisor's connection).
pub(crate) fn close_fds(
    report: &ReportFd,
    egress: Option<&OwnedFd>,
    conn: Option<&OwnedFd>,
) -> Result<(), JailError> {
    let mut keep = vec![report.0];
    keep.extend(egress.map(AsRawFd::as_raw_fd));
    keep.extend(conn.map(AsRawFd::as_raw_fd));
    ns::close_fds_except(3, &keep).map_err(|source| JailError::CloseFds { source })
}

/// Root hands a jail to another uid (the workspace's owner, or nobody):
/// every process of that uid could read the node's environment, so no
/// secret goes there (docs/security-model.md).
fn secrets_to_another_uid(req: &JailRequest, uid: u32) -> JailError {
    let owner = ids::identity_sources(&req.plan)
        .next()
        .map_or("no writable path".into(), |p| p.to_string());
    refused(format!(
        "secrets {}: run as root, this jail would run as uid {uid} (from {owner}), and every process of that uid could read them from the node's environment; run aiopsctl as uid {uid} itself, or in system mode, to pass secrets",
        req.plan
            .secrets
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Step 3's ids: the owner of the first writable bind, never host root
/// (`aiops_proto::ids`, the one rule for the jailer, aiopsctl and the engine).
fn jail_ids(req: &JailRequest) -> (u32, u32) {
    let owner =
        ids::identity_sources(&req.plan).find_map(|src| std::fs::metadata(src.as_path()).ok());
    ids::jail_ids(owner.map(|m| (m.uid(), m.gid())))
}

fn ns_layer(ns: Namespace) -> &'static str {
    match ns {
        Namespace::User => "userns",
        Namespace::Mount => "mountns",
        Namespace::Pid => "pidns",
        Namespace::Net => "netns",
        Namespace::Ipc => "ipcns",
        Namespace::Uts => "utsns",
        Namespace::Cgroup => "cgroupns",
    }
}

/// Step 8.
pub(crate) fn sethostname_and_lo_up(
    req: &JailRequest,
    egress: Option<OwnedFd>,
) -> Result<(), JailError> {
    let p = &req.plan;
    if let (Some(h), true) = (&p.hostname, p.namespaces.contains(&Namespace::Uts)) {
        net::sethostname(h)?;
    }
    // `none` is an empty namespace (lo stays down, even 127.0.0.1 is
    // unreachable); `loopback` and `allowlist` get their own lo.
    if p.namespaces.contains(&Namespace::Net) && p.net.mode != NetMode::None {
        net::set_lo_up()?;
    }
    if let (Some(e), true) = (egress, needs_egress(req)) {
        net::listen_for_egress(e)?;
    }
    Ok(())
}

pub fn run(
    source: Source,
    report: &mut ReportFd,
    egress: Option<OwnedFd>,
    env: &HostEnv,
) -> Result<Infallible, JailError> {
    run_with(&mut Kernel, source, report, egress, env)
}

/// The steps in order, each state-changing call through `sys` (the tests
/// record them; `steps_match_docs`).
pub fn run_with(
    sys: &mut impl Sys,
    source: Source,
    report: &mut ReportFd,
    egress: Option<OwnedFd>,
    env: &HostEnv,
) -> Result<Infallible, JailError> {
    // 1. Read and validate; everything decidable without changing state is decided here.
    let (req, conn) = sys.read_request(source, egress.is_some())?;
    // Offered to every jail by aiopsctl; only a confined allowlist keeps it.
    let egress = egress.filter(|_| needs_egress(&req));
    let plan = &req.plan;
    let agentd = agentd_host_path(env)?;
    let filters = plan.seccomp.as_ref().map(seccomp::compile).transpose()?;
    let cgroup = limits::cgroup_layer(&plan.require, &plan.rlimits)?;
    let bound = if plan.unconfined {
        agentd.clone()
    } else {
        check_agentd_bind(&req, &agentd)?
    };
    // The plan must be exactly what its profile yields (the ceiling).
    ceiling::check(&req, &env.ceiling, &bound)?;
    let drop_to = sys.is_root().then(|| jail_ids(&req));
    if let Some((uid, _)) = drop_to.filter(|_| !plan.secrets.is_empty()) {
        return Err(secrets_to_another_uid(&req, uid));
    }
    // 2. Close inherited fds, open the secrets (read only in the jail, step
    // 6). The environment was captured in HostEnv and is never passed on.
    sys.close_fds(report, egress.as_ref(), conn.as_ref())?;
    let secrets = sys.open_secrets(env, &plan.secrets)?;
    let mut layers: Vec<String> = vec![];
    if plan.unconfined {
        layers.push("unconfined".into());
    }
    // 3. Host root becomes an unprivileged uid before any namespace exists.
    if let Some((uid, gid)) = drop_to {
        sys.setresuid_to_jail_uid(uid, gid)?;
        layers.push(format!("uid {uid} (dropped from root)"));
    }
    let (uid, gid) = sys.ids();
    // The kernel's own answer (ACLs included), before anything is built:
    // otherwise the failure would surface later as a confusing mount error.
    sys.check_reachable(uid, crate::steps::WORKING_DIRECTORY, plan.cwd.as_path())?;
    // agentd too: as root, a checkout under /root is out of the jail uid's reach.
    sys.check_reachable(uid, "aiops-agentd at", &agentd)?;
    let git_env = git_safe_directories(plan, uid);
    // Before any namespace, as the jail's uid: what the node must not
    // rewrite in its writable roots, made read-only in step 7.
    let home = plan.source.home.as_ref().map(|h| h.as_path());
    let found = if plan.unconfined {
        aiops_guard::Found::default()
    } else {
        sys.search_writable_roots(&plan.guard, home)?
    };
    let roots: Vec<PathBuf> = plan
        .guard
        .roots
        .iter()
        .map(|r| r.as_path().into())
        .collect();
    let guard = found.mounts(&roots);
    if !plan.unconfined {
        // 4. 5.
        sys.unshare_namespaces(&plan.namespaces)?;
        sys.write_id_maps(uid, gid)?;
        layers.extend(plan.namespaces.iter().map(|n| ns_layer(*n).to_string()));
    }
    // 6. (Unconfined too: the fork makes setsid possible even for a group leader.)
    // The parent counts seccomp denials (crate::denials) where there is a filter.
    let denials = filters.as_ref().map(|f| crate::denials::Setup {
        program: f.program.clone(),
        report: report.0,
    });
    let to_recorder = sys.fork_into_pid_ns(env.parent, conn, denials)?;
    // Only the jail's PID 1 reads the values; the waiting parent closed the fds.
    let secrets = secrets::read_opened(secrets)?;
    if !plan.unconfined {
        // 7. 8.
        let skipped = sys.pivot_root_into(
            &plan.mounts,
            &guard,
            env.secrets_dir.as_deref(),
            req.node.tty,
        )?;
        layers.push("pivot_root".into());
        // What the profile reads but this jail does not have, said where the
        // user looks (the report), not left to a confusing ENOENT in the node.
        // A protected path the workspace lacks is the usual case, not news.
        let skipped: Vec<_> = skipped
            .into_iter()
            .filter(|k| match k {
                crate::mounts::Skipped::Missing(p) => {
                    !plan.protected.iter().any(|d| d.as_path() == p)
                }
                crate::mounts::Skipped::Unreadable(_) => true,
            })
            .collect();
        layers.extend(crate::mounts::Skipped::layers(&skipped));
        if !roots.is_empty() {
            layers.push(found.summary());
        }
        sys.sethostname_and_lo_up(&req, egress)?;
    }
    // 9.
    sys.setrlimits(&plan.rlimits)?;
    layers.push("rlimits".into());
    if !plan.unconfined {
        layers.push(cgroup);
    }
    // 10.
    sys.setsid()?;
    if plan.unconfined {
        sys.set_no_new_privs()?;
    } else {
        sys.drop_caps_and_set_nnp()?;
        layers.push("caps: none".into());
    }
    layers.push("no_new_privs".into());
    // 11. 12. Landlock after every mount (a domain forbids mount), seccomp last.
    if let Some(ll) = &plan.landlock {
        sys.landlock_restrict_self(ll)?;
        layers.push(landlock::layer_name(ll));
    }
    if let Some(f) = &filters {
        let recording = sys.seccomp_install(f, to_recorder)?;
        layers.push(f.layer_name(recording));
    }
    // 13.
    let spec = AgentSpec {
        proto_version: PROTO_VERSION,
        argv: req.node.argv.clone(),
        cwd: plan.cwd.clone(),
        env: plan
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(git_env)
            .collect(),
        secrets,
        timeout_ms: plan.run.timeout_ms,
        output_bytes: plan.run.output_bytes,
        stream_reports: false,
        layers,
        tty: req.node.tty,
    };
    let target = if plan.unconfined {
        agentd
    } else {
        PathBuf::from(AGENTD_IN_JAIL)
    };
    sys.execve_agentd(&target, &spec, report)
}

/// git refuses a repository another uid owns ("detected dubious
/// ownership"). In system mode the workspace belongs to the supervisor's
/// user and shows as the overflow uid in the jail, yet it is the node's to
/// use: each writable bind another uid owns is named in `safe.directory`,
/// in git's command-line scope (GIT_CONFIG_COUNT), which git honours for
/// it. Nothing is added to a plan that sets GIT_CONFIG_COUNT itself.
fn git_safe_directories(plan: &aiops_proto::JailPlan, uid: u32) -> Vec<(String, String)> {
    if plan.unconfined || plan.env.contains_key("GIT_CONFIG_COUNT") {
        return vec![];
    }
    let dirs: Vec<String> = plan
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Bind {
                src,
                dst,
                writable: true,
                ..
            } => std::fs::metadata(src.as_path())
                .ok()
                .filter(|md| md.uid() != uid)
                .map(|_| dst.to_string()),
            _ => None,
        })
        .collect();
    if dirs.is_empty() {
        return vec![];
    }
    let mut env = vec![("GIT_CONFIG_COUNT".to_string(), dirs.len().to_string())];
    for (i, d) in dirs.into_iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{i}"), "safe.directory".to_string()));
        env.push((format!("GIT_CONFIG_VALUE_{i}"), d));
    }
    env
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `N. \`name\`` lines of docs/jailer.md, in order.
    fn documented_steps() -> Vec<(usize, String)> {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/jailer.md"))
                .unwrap();
        doc.lines()
            .filter_map(|l| {
                let (num, rest) = l.split_once(". `")?;
                let n: usize = num.parse().ok()?;
                let name = rest.split('`').next()?;
                Some((n, name.to_string()))
            })
            .collect()
    }

    /// Records the calls `run_with` makes, in order, and changes nothing.
    /// Step 1 is the real one (a received request is decoded in memory).
    struct Recorder {
        /// What `is_root` answers: root drops to the jail's uid at step 3.
        root: bool,
        calls: Vec<&'static str>,
    }

    impl Sys for Recorder {
        fn read_request(
            &mut self,
            source: Source,
            has_egress: bool,
        ) -> Result<(JailRequest, Option<OwnedFd>), JailError> {
            self.calls.push("read_request");
            read_request(source, has_egress)
        }
        fn close_fds(
            &mut self,
            _: &ReportFd,
            _: Option<&OwnedFd>,
            _: Option<&OwnedFd>,
        ) -> Result<(), JailError> {
            self.calls.push("close_fds");
            Ok(())
        }
        fn open_secrets(
            &mut self,
            _: &HostEnv,
            _: &[aiops_proto::EnvName],
        ) -> Result<Vec<(String, OwnedFd)>, JailError> {
            self.calls.push("open_secrets");
            Ok(vec![])
        }
        fn is_root(&mut self) -> bool {
            self.root
        }
        fn setresuid_to_jail_uid(&mut self, _: u32, _: u32) -> Result<(), JailError> {
            self.calls.push("setresuid_to_jail_uid");
            Ok(())
        }
        fn ids(&mut self) -> (u32, u32) {
            (ids::NOBODY, ids::NOBODY)
        }
        fn check_reachable(&mut self, _: u32, _: &'static str, _: &Path) -> Result<(), JailError> {
            self.calls.push("check_reachable");
            Ok(())
        }
        fn unshare_namespaces(&mut self, _: &[Namespace]) -> Result<(), JailError> {
            self.calls.push("unshare_namespaces");
            Ok(())
        }
        fn write_id_maps(&mut self, _: u32, _: u32) -> Result<(), JailError> {
            self.calls.push("write_id_maps");
            Ok(())
        }
        fn fork_into_pid_ns(
            &mut self,
            _: nix::unistd::Pid,
            _: Option<OwnedFd>,
            _: Option<crate::denials::Setup>,
        ) -> Result<Option<OwnedFd>, JailError> {
            self.calls.push("fork_into_pid_ns");
            Ok(None)
        }
        fn search_writable_roots(
            &mut self,
            _: &aiops_proto::plan::GuardPlan,
            _: Option<&Path>,
        ) -> Result<aiops_guard::Found, JailError> {
            self.calls.push("search_writable_roots");
            Ok(aiops_guard::Found::default())
        }
        fn pivot_root_into(
            &mut self,
            _: &[Mount],
            _: &[(PathBuf, bool)],
            _: Option<&Path>,
            _: bool,
        ) -> Result<Vec<crate::mounts::Skipped>, JailError> {
            self.calls.push("pivot_root_into");
            Ok(vec![])
        }
        fn sethostname_and_lo_up(
            &mut self,
            _: &JailRequest,
            _: Option<OwnedFd>,
        ) -> Result<(), JailError> {
            self.calls.push("sethostname_and_lo_up");
            Ok(())
        }
        fn setrlimits(&mut self, _: &[aiops_proto::plan::RlimitPlan]) -> Result<(), JailError> {
            self.calls.push("setrlimits");
            Ok(())
        }
        fn setsid(&mut self) -> Result<(), JailError> {
            self.calls.push("setsid");
            Ok(())
        }
        fn set_no_new_privs(&mut self) -> Result<(), JailError> {
            self.calls.push("set_no_new_privs");
            Ok(())
        }
        fn drop_caps_and_set_nnp(&mut self) -> Result<(), JailError> {
            self.calls.push("drop_caps_and_set_nnp");
            Ok(())
        }
        fn landlock_restrict_self(
            &mut self,
            _: &aiops_proto::plan::LandlockPlan,
        ) -> Result<(), JailError> {
            self.calls.push("landlock_restrict_self");
            Ok(())
        }
        fn seccomp_install(
            &mut self,
            _: &seccomp::Filters,
            _: Option<OwnedFd>,
        ) -> Result<seccomp::Recording, JailError> {
            self.calls.push("seccomp_install");
            Ok(seccomp::Recording::Off)
        }
        fn execve_agentd(
            &mut self,
            _: &Path,
            _: &AgentSpec,
            _: &mut ReportFd,
        ) -> Result<Infallible, JailError> {
            self.calls.push("execve_agentd");
            Err(refused("recorded"))
        }
    }

    #[test]
    fn a_workspace_another_uid_owns_is_a_git_safe_directory() {
        use aiops_policy::{CompileContext, HostFacts, NodeCaps, PathVars, ProfileLoader};
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let profile = ProfileLoader::standard(None, Some(&repo))
            .load("restrictive")
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let ws = AbsPath::new(d.path().to_str().unwrap()).unwrap();
        let ctx = CompileContext {
            vars: PathVars {
                workspace: Some(ws.clone()),
                home: None,
                tmpdir: None,
            },
            cwd: ws.clone(),
            host_env: Default::default(),
            agentd: AbsPath::new("/opt/aiops/aiops-agentd").unwrap(),
        };
        let plan =
            aiops_policy::compile(&profile, &NodeCaps::default(), &HostFacts::linux(7), &ctx)
                .unwrap();
        let owner = std::fs::metadata(d.path()).unwrap().uid();
        // Ours (local mode, or root's hand-over): git needs nothing.
        assert!(git_safe_directories(&plan, owner).is_empty());
        // System mode: the supervisor's user owns it, the jail's uid is another.
        let env = git_safe_directories(&plan, owner.wrapping_add(1));
        assert_eq!(
            env,
            vec![
                ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
                ("GIT_CONFIG_KEY_0".to_string(), "safe.directory".to_string()),
                ("GIT_CONFIG_VALUE_0".to_string(), ws.to_string()),
            ]
        );
        // A plan that configures git itself is left alone.
        let mut own = plan.clone();
        own.env.insert("GIT_CONFIG_COUNT".into(), "0".into());
        assert!(git_safe_directories(&own, owner.wrapping_add(1)).is_empty());
    }

    /// The calls `run()` makes for `profile`'s plan, started as root or not, in order.
    fn recorded_calls(profile: &str, root: bool) -> Vec<&'static str> {
        let agentd = AbsPath::new("/opt/aiops/aiops-agentd").unwrap();
        let req = aiops_testkit::jail_request(
            profile,
            7,
            Path::new("/w"),
            agentd.as_path(),
            Default::default(),
            &["/bin/true"],
        );
        let env = HostEnv {
            secrets_dir: None,
            secrets_origin: secrets::Origin::SecretsDir,
            agentd: Some(agentd.as_path().to_path_buf()),
            parent: nix::unistd::Pid::this(),
            ceiling: Ceiling::Local { profile_path: None },
        };
        let conn = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let source = Source::Received {
            request: serde_json::to_vec(&req).unwrap(),
            conn,
        };
        let mut rec = Recorder {
            root,
            calls: vec![],
        };
        let end = run_with(&mut rec, source, &mut ReportFd(-1), None, &env);
        assert!(
            matches!(&end, Err(JailError::Refused { reason }) if reason == "recorded"),
            "{:?}",
            end.err().map(|e| e.chain())
        );
        rec.calls
    }

    /// docs/jailer.md numbers the steps; `run()` must make its calls in
    /// that order. Swap two calls in `run_with` and this fails.
    #[test]
    fn steps_match_docs() {
        let want: Vec<(usize, String)> = STEPS
            .iter()
            .enumerate()
            .map(|(i, s)| (i + 1, s.to_string()))
            .collect();
        assert_eq!(documented_steps(), want);
        let calls = recorded_calls("restrictive", true);
        let steps: Vec<&str> = calls
            .iter()
            .copied()
            .filter(|c| STEPS.contains(c))
            .collect();
        assert_eq!(steps, STEPS, "the order of run()'s calls");
        // And the calls inside a step stay in it.
        assert_eq!(
            calls,
            [
                "read_request",
                "close_fds",
                "open_secrets",
                "setresuid_to_jail_uid",
                "check_reachable",
                "check_reachable",
                "search_writable_roots",
                "unshare_namespaces",
                "write_id_maps",
                "fork_into_pid_ns",
                "pivot_root_into",
                "sethostname_and_lo_up",
                "setrlimits",
                "setsid",
                "drop_caps_and_set_nnp",
                "landlock_restrict_self",
                "seccomp_install",
                "execve_agentd",
            ]
        );
    }

    /// Not root: no uid change. Unconfined: no namespaces, mounts, Landlock
    /// or seccomp, and no_new_privs without dropping caps.
    #[test]
    fn unprivileged_and_unconfined_runs_skip_their_steps() {
        let calls = recorded_calls("restrictive", false);
        assert!(!calls.contains(&"setresuid_to_jail_uid"), "{calls:?}");
        assert_eq!(calls.len(), 17, "{calls:?}");
        assert_eq!(
            recorded_calls("unconfined", false),
            [
                "read_request",
                "close_fds",
                "open_secrets",
                "check_reachable",
                "check_reachable",
                "fork_into_pid_ns",
                "setrlimits",
                "setsid",
                "set_no_new_privs",
                "execve_agentd",
            ]
        );
    }

    #[test]
    fn clone_flags_cover_every_namespace() {
        use nix::sched::CloneFlags as C;
        let all = [
            Namespace::User,
            Namespace::Mount,
            Namespace::Pid,
            Namespace::Net,
            Namespace::Ipc,
            Namespace::Uts,
            Namespace::Cgroup,
        ];
        assert_eq!(
            ns::clone_flags(&all),
            C::CLONE_NEWUSER
                | C::CLONE_NEWNS
                | C::CLONE_NEWPID
                | C::CLONE_NEWNET
                | C::CLONE_NEWIPC
                | C::CLONE_NEWUTS
                | C::CLONE_NEWCGROUP
        );
    }
}
