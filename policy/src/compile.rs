//! profile ∩ node + host facts → `JailPlan`. Same input, same plan.
use crate::caps::{effective, Effective};
use crate::facts::{HostFacts, LayerReq, LANDLOCK_ABI_MAX};
use crate::net::NetMode;
use crate::path::{AbsPath, PathVars};
use crate::plan::*;
use crate::profile::Profile;
use crate::syscalls::{baseline_deny, baseline_eafnosupport, baseline_enosys};
use crate::{NodeCaps, PolicyError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything about the invocation the compiler needs, handed in as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileContext {
    pub vars: PathVars,
    /// The node's working directory (must lie inside a mounted path).
    pub cwd: AbsPath,
    /// The caller's environment; only allow-listed names pass.
    pub host_env: BTreeMap<String, String>,
    /// Host path of the aiops-agentd binary, bound read-only into the jail.
    pub agentd: AbsPath,
}

/// Paths the jailer builds itself (and /sys, which no jail has); profiles
/// may not bind over them or inside them (`JailPlan::validate` agrees).
const SPECIAL: &[&str] = &["/proc", "/dev", "/sys", "/.aiops"];
/// The private tmpfs: binds below it layer on top (workspaces in /tmp are
/// common), but it cannot itself be replaced by a host bind.
const PRIVATE_TMP: &str = "/tmp";

pub fn compile(
    profile: &Profile,
    node: &NodeCaps,
    facts: &HostFacts,
    ctx: &CompileContext,
) -> Result<JailPlan, PolicyError> {
    let eff = effective(profile, node, &ctx.vars)?;
    compile_effective(&eff, facts, ctx)
}

/// Fail closed: the first layer the profile requires (`require`) that
/// `facts` lack refuses the node, on Linux and macOS alike.
pub fn check_required_layers(require: &[LayerReq], facts: &HostFacts) -> Result<(), PolicyError> {
    for req in require {
        if let Some(reason) = req.missing_on(facts) {
            return Err(PolicyError::Refused {
                layer: req.to_string(),
                reason,
            });
        }
    }
    Ok(())
}

/// The protected paths (`.git/hooks`, `.envrc`, ...) inside each writable
/// root, except those granted writable themselves: read-only in the jail
/// or the sandbox, and watched for changes.
pub fn protected_paths(eff: &Effective) -> Vec<AbsPath> {
    eff.write
        .iter()
        .flat_map(|w| eff.protected.iter().map(move |p| w.join(p)))
        .filter(|p| !eff.write.contains(p))
        .collect()
}

pub fn compile_effective(
    eff: &Effective,
    facts: &HostFacts,
    ctx: &CompileContext,
) -> Result<JailPlan, PolicyError> {
    check_required_layers(&eff.require, facts)?;
    if eff.net == NetMode::Host && eff.require.contains(&LayerReq::NetNs) {
        return Err(PolicyError::Refused {
            layer: "netns".into(),
            reason: "the profile requires a network namespace but the node's net mode is host"
                .into(),
        });
    }
    let env = build_env(eff, ctx);
    let rlimits = build_rlimits(eff);
    let run = RunLimits {
        timeout_ms: eff.limits.timeout.millis(),
        output_bytes: eff.limits.output.0,
    };
    let cgroup = CgroupPlan {
        memory_max: eff.limits.memory.0,
        pids_max: eff.limits.pids,
    };
    let allowlist = eff.net == NetMode::Allowlist;
    let net = NetPlan {
        mode: eff.net,
        allow: if allowlist {
            eff.net_allow.clone()
        } else {
            vec![]
        },
        allow_private: if allowlist {
            eff.net_allow_private.clone()
        } else {
            vec![]
        },
        hosts: if allowlist {
            eff.net_hosts.clone()
        } else {
            Default::default()
        },
        egress: if allowlist {
            EgressLimitsPlan {
                max_connections: eff.net_egress.connections,
                max_bytes: eff.net_egress.bytes.map(|b| b.0),
                idle_timeout_ms: eff.net_egress.idle.map(|d| d.millis()),
            }
        } else {
            Default::default()
        },
    };
    if eff.unconfined {
        return Ok(JailPlan {
            plan_version: PLAN_VERSION,
            profile: eff.profile.clone(),
            unconfined: true,
            namespaces: vec![],
            mounts: vec![],
            hostname: None,
            net: NetPlan {
                mode: NetMode::Host,
                allow: vec![],
                allow_private: vec![],
                hosts: Default::default(),
                egress: Default::default(),
            },
            landlock: None,
            seccomp: None,
            rlimits,
            cgroup,
            run,
            env,
            secrets: eff.secrets.clone(),
            cwd: ctx.cwd.clone(),
            protected: vec![],
            require: eff.require.clone(),
            guard: GuardPlan {
                roots: vec![],
                ..eff.guard.clone()
            },
            source: eff.source.clone(),
        });
    }
    if !facts.userns {
        return Err(PolicyError::Refused {
            layer: "userns".into(),
            reason: "every jail starts with a user namespace and this host cannot create one"
                .into(),
        });
    }
    let mounts = build_mounts(eff, ctx)?;
    let mounted = |p: &AbsPath| {
        eff.read
            .iter()
            .chain(eff.write.iter())
            .any(|r| r.contains(p))
    };
    let cwd_ok = mounted(&ctx.cwd) || AbsPath::new("/tmp").is_ok_and(|t| t.contains(&ctx.cwd));
    if !cwd_ok {
        return Err(PolicyError::Invalid {
            what: "cwd".into(),
            reason: format!("{} is not inside any path the jail mounts", ctx.cwd),
        });
    }
    let mut namespaces = vec![
        Namespace::User,
        Namespace::Mount,
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Cgroup,
    ];
    if eff.net != NetMode::Host {
        namespaces.push(Namespace::Net);
    }
    let protected = protected_paths(eff);
    Ok(JailPlan {
        plan_version: PLAN_VERSION,
        profile: eff.profile.clone(),
        unconfined: false,
        namespaces,
        mounts,
        hostname: Some(HOSTNAME.into()),
        net,
        landlock: build_landlock(eff, facts),
        seccomp: facts.seccomp.then(|| build_seccomp(eff)),
        rlimits,
        cgroup,
        run,
        env,
        secrets: eff.secrets.clone(),
        cwd: ctx.cwd.clone(),
        protected,
        require: eff.require.clone(),
        guard: eff.guard.clone(),
        source: eff.source.clone(),
    })
}

fn abs(s: &str) -> AbsPath {
    // Only called on the literal constants of this module.
    AbsPath::new(s).unwrap_or_else(|e| panic!("constant path {s}: {e}"))
}

fn overlaps(a: &AbsPath, b: &AbsPath) -> bool {
    a.contains(b) || b.contains(a)
}

fn build_mounts(eff: &Effective, ctx: &CompileContext) -> Result<Vec<Mount>, PolicyError> {
    for (field, list) in [
        ("fs.read", &eff.read),
        ("fs.write", &eff.write),
        ("fs.exec", &eff.exec),
    ] {
        for (i, p) in list.iter().enumerate() {
            // Plain `Path` comparisons: an AbsPath is already normal, and
            // making one per constant per path was a third of each compile.
            let p_path = p.as_path();
            if let Some(s) = SPECIAL.iter().find(|s| p_path.starts_with(s)) {
                return Err(PolicyError::Invalid {
                    what: format!("{field}[{i}]"),
                    reason: format!("{p} is inside {s}, which the jailer builds privately"),
                });
            }
            let mut covers = SPECIAL.iter().chain([&PRIVATE_TMP]);
            if let Some(s) = covers.find(|s| Path::new(s).starts_with(p_path)) {
                return Err(PolicyError::Invalid {
                    what: format!("{field}[{i}]"),
                    reason: format!(
                        "{p} would cover {s}, which the jailer builds privately; list the directories you need"
                    ),
                });
            }
        }
    }
    // (depth, order, path): parents before children, so nested binds layer correctly.
    let mut keyed: Vec<(usize, u8, AbsPath, Mount)> = vec![];
    let exec_in = |p: &AbsPath| eff.exec.iter().any(|e| overlaps(e, p));
    // An identity bind of `p`; `order` 1 puts protected paths after binds of equal depth.
    let mut bind = |p: &AbsPath, order: u8, writable: bool, exec: bool, optional: bool| {
        let m = Mount::Bind {
            src: p.clone(),
            dst: p.clone(),
            writable,
            exec,
            optional,
        };
        keyed.push((p.depth(), order, p.clone(), m));
    };
    for p in eff.read.iter().filter(|p| !eff.write.contains(p)) {
        bind(p, 0, false, exec_in(p), true);
    }
    for p in &eff.write {
        bind(p, 0, true, exec_in(p), false);
    }
    // Exec paths not otherwise mounted are mounted read-only.
    let mounted = |p: &AbsPath| {
        eff.read
            .iter()
            .chain(eff.write.iter())
            .any(|r| r.contains(p))
    };
    for p in eff.exec.iter().filter(|p| !mounted(p)) {
        bind(p, 0, false, true, true);
    }
    let mut pins = vec![];
    for w in &eff.write {
        for rel in &eff.protected {
            let p = w.join(rel);
            if eff.write.contains(&p) {
                continue;
            }
            // Pin every ancestor between the writable root and the protected
            // path: `.git` for `.git/hooks`, so `mv .git x; mkdir .git` fails.
            let mut anc = rel.as_path().parent();
            while let Some(a) = anc.filter(|a| !a.as_os_str().is_empty()) {
                if let Ok(r) = crate::path::RelPath::parse(&a.to_string_lossy()) {
                    let ap = w.join(&r);
                    pins.push((ap.depth(), 1, ap.clone(), Mount::Pin { path: ap }));
                }
                anc = a.parent();
            }
            bind(&p, 1, false, false, true);
        }
    }
    keyed.extend(pins);
    keyed.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    keyed.dedup_by(|a, b| a.2 == b.2 && a.3 == b.3);
    let mut mounts = vec![
        Mount::Root,
        Mount::Proc { dst: abs("/proc") },
        // /tmp and /dev/shm: each `limits.tmpfs` bytes and `tmpfs_inodes`
        // inodes, so what the jail can park in memory outside its
        // processes (which RLIMIT_AS does not see) is bounded.
        Mount::Dev {
            dst: abs("/dev"),
            shm_bytes: eff.limits.tmpfs_bytes(),
            shm_inodes: eff.limits.tmpfs_inodes.get(),
        },
        Mount::Tmpfs {
            dst: abs("/tmp"),
            mode: 0o1777,
            size_bytes: eff.limits.tmpfs_bytes(),
            inodes: eff.limits.tmpfs_inodes.get(),
        },
    ];
    mounts.extend(keyed.into_iter().map(|k| k.3));
    mounts.push(Mount::Bind {
        src: ctx.agentd.clone(),
        dst: abs(AGENTD_IN_JAIL),
        writable: false,
        exec: true,
        optional: false,
    });
    Ok(mounts)
}

/// The node's complete environment: allow-listed host variables, the
/// profile's fixed values, HOME kept only when mounted, TMPDIR private.
pub fn build_env(eff: &Effective, ctx: &CompileContext) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = ctx
        .host_env
        .iter()
        .filter(|(k, _)| eff.env.admits(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if eff.net == NetMode::Allowlist && !eff.unconfined {
        // The only way out is the in-jail end of the egress proxy; tools find
        // it through these variables (a profile's env.set may override them).
        let proxy = format!("http://127.0.0.1:{ALLOWLIST_PROXY_PORT}");
        for k in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            env.insert(k.into(), proxy.clone());
        }
        for k in ["NO_PROXY", "no_proxy"] {
            env.insert(k.into(), "localhost,127.0.0.1,::1".into());
        }
    }
    for (k, v) in &eff.env_set {
        env.insert(k.as_str().into(), v.clone());
    }
    if !eff.unconfined {
        // A HOME the jail does not mount would only make tools fail oddly. A
        // HOME with mounted parts (build-offline's $HOME/.cargo/registry) is
        // kept: tools find those parts through it.
        let home_mounted = env
            .get("HOME")
            .and_then(|h| AbsPath::new(h).ok())
            .is_some_and(|h| {
                eff.read
                    .iter()
                    .chain(eff.write.iter())
                    .any(|r| r.contains(&h) || h.contains(r))
            });
        if env.contains_key("HOME") && !home_mounted {
            env.insert("HOME".into(), "/tmp".into());
        }
        env.insert("TMPDIR".into(), "/tmp".into());
    }
    env
}

fn build_rlimits(eff: &Effective) -> Vec<RlimitPlan> {
    let l = &eff.limits;
    let r = |resource, v: u64| RlimitPlan {
        resource,
        soft: v,
        hard: v,
    };
    vec![
        r(Rlimit::As, l.memory.0),
        r(Rlimit::Nproc, u64::from(l.pids)),
        r(Rlimit::Cpu, l.cpu.secs_ceil()),
        r(Rlimit::Fsize, l.file_size.0),
        r(Rlimit::Nofile, u64::from(l.open_files)),
        r(Rlimit::Core, 0),
    ]
}

/// What `read` grants in Landlock.
pub const READ_RIGHTS: &[FsAccess] = &[FsAccess::ReadFile, FsAccess::ReadDir];
/// What `write` adds to `read` in Landlock (as far as the ABI handles it).
pub const WRITE_RIGHTS: &[FsAccess] = &[
    FsAccess::WriteFile,
    FsAccess::RemoveDir,
    FsAccess::RemoveFile,
    FsAccess::MakeDir,
    FsAccess::MakeReg,
    FsAccess::MakeSock,
    FsAccess::MakeFifo,
    FsAccess::MakeSym,
    FsAccess::Refer,
    FsAccess::Truncate,
];
const DEV: &[FsAccess] = &[
    FsAccess::ReadFile,
    FsAccess::ReadDir,
    FsAccess::WriteFile,
    FsAccess::Truncate,
    FsAccess::IoctlDev,
];

const SHM: &[FsAccess] = &[
    FsAccess::ReadFile,
    FsAccess::ReadDir,
    FsAccess::WriteFile,
    FsAccess::RemoveFile,
    FsAccess::MakeReg,
    FsAccess::Truncate,
];

fn build_landlock(eff: &Effective, facts: &HostFacts) -> Option<LandlockPlan> {
    let abi = facts.landlock_abi.min(LANDLOCK_ABI_MAX);
    if abi == 0 {
        return None;
    }
    let handled_fs: Vec<FsAccess> = FsAccess::ALL
        .iter()
        .copied()
        .filter(|a| a.abi() <= abi)
        .collect();
    let mut rules: BTreeMap<AbsPath, Vec<FsAccess>> = BTreeMap::new();
    let mut grant = |p: &AbsPath, rights: &[FsAccess]| {
        let e = rules.entry(p.clone()).or_default();
        e.extend(rights.iter().copied().filter(|a| handled_fs.contains(a)));
        e.sort();
        e.dedup();
    };
    for p in &eff.read {
        grant(p, READ_RIGHTS);
    }
    for p in &eff.write {
        grant(p, READ_RIGHTS);
        grant(p, WRITE_RIGHTS);
    }
    for p in &eff.exec {
        grant(
            p,
            &[FsAccess::Execute, FsAccess::ReadFile, FsAccess::ReadDir],
        );
    }
    // The root holds only what the plan mounted: listing it reveals nothing.
    grant(&abs("/"), &[FsAccess::ReadDir]);
    grant(&abs("/tmp"), READ_RIGHTS);
    grant(&abs("/tmp"), WRITE_RIGHTS);
    grant(&abs("/dev"), DEV);
    // The jail's private /dev/shm (see `Mount::Dev`): shm_open(3) creates files there.
    grant(&abs("/dev/shm"), SHM);
    grant(&abs("/proc"), READ_RIGHTS);
    grant(
        &abs(AGENTD_IN_JAIL),
        &[FsAccess::Execute, FsAccess::ReadFile],
    );
    let tcp = (abi >= 4).then_some(()).and_then(|_| match eff.net {
        // Deny all TCP: with no route out this only makes the denial explicit.
        NetMode::None => Some(TcpRules {
            connect: vec![],
            bind: vec![],
        }),
        // Only the in-jail end of the egress proxy.
        NetMode::Allowlist => Some(TcpRules {
            connect: vec![ALLOWLIST_PROXY_PORT],
            bind: vec![],
        }),
        NetMode::Loopback | NetMode::Host => None,
    });
    let scopes = if abi >= 6 {
        vec![Scope::AbstractUnixSocket, Scope::Signal]
    } else {
        vec![]
    };
    Some(LandlockPlan {
        abi,
        handled_fs,
        fs: rules
            .into_iter()
            .map(|(path, access)| FsRule { path, access })
            .collect(),
        tcp,
        scopes,
    })
}

/// The loopback port the in-jail end of the egress proxy listens on.
pub use aiops_proto::net::ALLOWLIST_PROXY_PORT;

/// The seccomp of every confined jail: the baseline tables, whose rule
/// count `profile show` quotes (`SeccompPlan::rules_here`), and nothing else.
pub fn baseline_seccomp() -> SeccompPlan {
    SeccompPlan {
        deny_eperm: baseline_deny(),
        deny_enosys: baseline_enosys(),
        deny_eafnosupport: baseline_eafnosupport(),
        block_x32: true,
    }
}

fn build_seccomp(eff: &Effective) -> SeccompPlan {
    let mut plan = baseline_seccomp();
    plan.deny_eperm.extend(eff.seccomp_deny.iter().cloned());
    plan
}
