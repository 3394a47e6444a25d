//! Human rendering of a compiled `JailPlan`: what the jail will be, section
//! by section, in the order the jailer builds it.
use super::filters::{landlock, seccomp};
use super::profile::WIDTH;
use super::table::{wrap, Table};
use aiops_policy::plan::{JailPlan, Mount, Rlimit};
use aiops_policy::units::{Bytes, Dur};
use aiops_policy::{AbsPath, HostFacts, NetMode, Profile};
use std::fmt::Write as _;
use std::path::Path;

pub struct Explained<'a> {
    pub profile: &'a Profile,
    pub plan: &'a JailPlan,
    /// The facts compiled against (with `--abi` applied).
    pub facts: &'a HostFacts,
    pub simulated_abi: Option<u8>,
    pub workspace: Option<&'a AbsPath>,
    pub node_caps: Option<&'a Path>,
    /// The optional binds the jail's uid would skip here ([`reach`]).
    pub reach: Option<&'a Reach>,
}

/// Who the jail would run as on this host, and which optional bind
/// sources it would skip: missing, or not readable by that uid.
#[derive(Debug, Default)]
pub struct Reach {
    pub uid: u32,
    pub gid: u32,
    /// (source, "missing" or "unreadable for uid N").
    pub skipped: Vec<(AbsPath, String)>,
}

/// The uid the jailer would drop to (root: the owner of the first
/// writable bind, never root; else the invoker) and what it would skip.
pub fn reach(plan: &JailPlan) -> Reach {
    use std::os::unix::fs::MetadataExt;
    let (euid, egid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let (uid, gid) = if euid.is_root() {
        let owner = aiops_proto::ids::identity_sources(plan)
            .find_map(|src| std::fs::metadata(src.as_path()).ok())
            .map(|m| (m.uid(), m.gid()));
        aiops_proto::ids::jail_ids(owner)
    } else {
        (euid.as_raw(), egid.as_raw())
    };
    let mut skipped = vec![];
    for m in &plan.mounts {
        let Mount::Bind {
            src,
            optional: true,
            ..
        } = m
        else {
            continue;
        };
        let why = match readable(src.as_path(), uid, gid, !euid.is_root()) {
            Readable::Yes => continue,
            Readable::Missing => "missing".to_string(),
            Readable::No => format!("unreadable for uid {uid}"),
        };
        skipped.push((src.clone(), why));
    }
    Reach { uid, gid, skipped }
}

/// The optional read paths of `profile` that a jail started from the
/// current directory (as its workspace) would skip although they exist:
/// `profile validate` and `doctor` say so, since the node will not see them.
/// Empty when the profile does not compile here (those commands say why).
pub fn unreadable_here(profile: &aiops_policy::Profile) -> (u32, Vec<AbsPath>) {
    let ctx = match crate::context::host_context(None, None, crate::context::Home::JailUser) {
        Ok(c) => c,
        Err(_) => return (0, vec![]),
    };
    let facts = crate::facts::probe_host().facts;
    let Ok(plan) = aiops_policy::compile(profile, &aiops_policy::NodeCaps::default(), &facts, &ctx)
    else {
        return (0, vec![]);
    };
    let r = reach(&plan);
    let unreadable = r
        .skipped
        .into_iter()
        .filter(|(_, why)| why != "missing")
        .map(|(p, _)| p)
        .collect();
    (r.uid, unreadable)
}

enum Readable {
    Yes,
    Missing,
    No,
}

/// Can (uid, gid) search every directory above `p` and read `p` (and
/// search it, a directory)? `own`: we are that uid, so the kernel answers
/// (access(2), ACLs and groups included). Root asking for another uid
/// reads the mode bits: owner, group (the jail has only its gid), other.
fn readable(p: &Path, uid: u32, gid: u32, own: bool) -> Readable {
    use nix::unistd::AccessFlags;
    use std::os::unix::fs::MetadataExt;
    let denied = |e: &std::io::Error| e.raw_os_error() == Some(nix::errno::Errno::EACCES as i32);
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if denied(&e) => return Readable::No,
        Err(_) => return Readable::Missing,
    };
    if own {
        let mut want = AccessFlags::R_OK;
        if meta.is_dir() {
            want |= AccessFlags::X_OK;
        }
        return match nix::unistd::access(p, want) {
            Ok(()) => Readable::Yes,
            Err(_) => Readable::No,
        };
    }
    // mode bits for (uid, gid): 0o7 of the class that applies.
    let bits = |m: &std::fs::Metadata| {
        let mode = m.mode();
        if m.uid() == uid {
            (mode >> 6) & 7
        } else if m.gid() == gid {
            (mode >> 3) & 7
        } else {
            mode & 7
        }
    };
    let mut ok = p
        .ancestors()
        .skip(1)
        .all(|a| std::fs::metadata(a).is_ok_and(|m| bits(&m) & 1 != 0));
    let need = if meta.is_dir() { 5 } else { 4 };
    ok &= bits(&meta) & need == need;
    if ok {
        Readable::Yes
    } else {
        Readable::No
    }
}

pub fn render(e: &Explained<'_>) -> String {
    let mut s = String::new();
    header(&mut s, e);
    required(&mut s, e);
    if e.plan.unconfined {
        let _ = writeln!(
            s,
            "\nUNCONFINED: no namespaces, mounts, Landlock or seccomp; the node runs"
        );
        let _ = writeln!(
            s,
            "on the host as you, with your network. Only limits and env apply. Audited."
        );
    } else {
        namespaces(&mut s, e.plan);
        mounts(&mut s, e.plan, e.reach);
        landlock(&mut s, e.plan);
        seccomp(&mut s, e.plan);
    }
    limits(&mut s, e);
    env(&mut s, e);
    net(&mut s, e.plan);
    protected(&mut s, e.plan);
    s
}

pub(super) fn section(s: &mut String, title: &str, note: &str) {
    if note.is_empty() {
        let _ = writeln!(s, "\n{title}");
    } else {
        let _ = writeln!(s, "\n{title}  ({note})");
    }
}

fn header(s: &mut String, e: &Explained<'_>) {
    let p = e.profile;
    let _ = writeln!(s, "profile {}  ({})", p.name, p.source.display());
    for line in wrap(&p.description, WIDTH - 2) {
        let _ = writeln!(s, "  {line}");
    }
    let mut t = Table::new(2).wrap_total(WIDTH);
    if p.chain.len() > 1 {
        t.row(["extends".into(), p.chain.join(" -> ")]);
    }
    if let Some(n) = e.node_caps {
        t.row(["node caps".into(), n.display().to_string()]);
    }
    if let Some(w) = e.workspace {
        t.row(["workspace".into(), w.to_string()]);
    }
    t.row(["cwd".into(), e.plan.cwd.to_string()]);
    let f = e.facts;
    let mut host = format!("landlock ABI {}", f.landlock_abi);
    if let Some(n) = e.simulated_abi {
        host = format!("landlock ABI {n} (simulated with --abi)");
    }
    for (ok, name) in [
        (f.seccomp, "seccomp"),
        (f.userns, "userns"),
        (f.netns, "netns"),
        (f.cgroup_v2, "cgroup v2"),
    ] {
        host.push_str(if ok { ", " } else { ", no " });
        host.push_str(name);
    }
    t.row(["host".into(), host]);
    s.push_str(&t.render());
}

fn required(s: &mut String, e: &Explained<'_>) {
    section(
        s,
        "Required layers",
        "the node is refused if this host lacks one",
    );
    let mut t = Table::new(2).wrap_total(WIDTH);
    if e.plan.require.is_empty() {
        t.row(["(none)", ""]);
    }
    for r in &e.plan.require {
        match r.missing_on(e.facts) {
            None => t.row([r.to_string(), "ok".into()]),
            Some(why) => t.row([r.to_string(), format!("MISSING: {why}")]),
        }
    }
    if !e
        .plan
        .require
        .iter()
        .any(|r| matches!(r, aiops_policy::LayerReq::Cgroup))
    {
        let cg = if e.facts.cgroup_v2 {
            "a delegated subtree exists, but the jailer applies no cgroup limits: rlimits bound each process"
        } else {
            "not delegated here: rlimits bound each process"
        };
        t.row(["cgroup (optional)".into(), cg.to_string()]);
    }
    s.push_str(&t.render());
}

fn namespaces(s: &mut String, plan: &JailPlan) {
    section(s, "Namespaces", "one unshare(2), user first");
    let names: Vec<String> = plan
        .namespaces
        .iter()
        .map(|n| format!("{n:?}").to_lowercase())
        .collect();
    let _ = writeln!(s, "  {}", names.join("  "));
    if let Some(h) = &plan.hostname {
        let _ = writeln!(s, "  hostname {h}");
    }
}

fn mounts(s: &mut String, plan: &JailPlan, reach: Option<&Reach>) {
    section(
        s,
        "Mounts",
        "in order, then pivot_root; the new root ends read-only",
    );
    // Not wrapped: the last column is short, and a source path reads best whole.
    let mut t = Table::new(2);
    t.row(["#", "path", "access", "exec", "what"]);
    for (i, m) in plan.mounts.iter().enumerate() {
        let n = format!("{:>2}", i + 1);
        let row: [String; 4] = match m {
            Mount::Root => [
                "/".into(),
                "ro".into(),
                "-".into(),
                "new root (empty tmpfs)".into(),
            ],
            Mount::Proc { dst } => [
                dst.to_string(),
                "-".into(),
                "-".into(),
                "fresh proc (own pid namespace)".into(),
            ],
            Mount::Dev {
                dst,
                shm_bytes,
                shm_inodes,
            } => [
                dst.to_string(),
                "-".into(),
                "-".into(),
                format!(
                    "minimal /dev; private shm: tmpfs {}, {shm_inodes} inodes",
                    human_bytes(*shm_bytes)
                ),
            ],
            Mount::Tmpfs {
                dst,
                mode,
                size_bytes,
                inodes,
            } => [
                dst.to_string(),
                "rw".into(),
                "-".into(),
                format!(
                    "tmpfs {}, {inodes} inodes, mode {mode:o}",
                    human_bytes(*size_bytes)
                ),
            ],
            Mount::Pin { path } => [
                path.to_string(),
                "-".into(),
                "-".into(),
                "pinned, optional".into(),
            ],
            Mount::Bind {
                src,
                dst,
                writable,
                exec,
                optional,
            } => {
                let mut what = if src == dst {
                    "bind".to_string()
                } else {
                    format!("bind from {src}")
                };
                if plan.protected.contains(dst) {
                    what.push_str(", protected");
                }
                if *optional {
                    what.push_str(", optional");
                    let skip = reach.and_then(|r| r.skipped.iter().find(|(p, _)| p == src));
                    if let Some((_, why)) = skip {
                        what.push_str(&format!(": SKIPPED, {why}"));
                    }
                }
                [
                    dst.to_string(),
                    if *writable { "rw" } else { "ro" }.into(),
                    if *exec { "exec" } else { "noexec" }.into(),
                    what,
                ]
            }
        };
        let [a, b, c, d] = row;
        t.row([n, a, b, c, d]);
    }
    s.push_str(&t.render());
    let mut legend = Table::new(2).wrap_total(WIDTH);
    legend.row([
        "optional:",
        "skipped when the host path does not exist or the jail's uid cannot read it",
    ]);
    if let Some(r) = reach {
        legend.row([
            "uid:".to_string(),
            format!(
                "the jail would run as uid {} here; SKIPPED marks what it would not get",
                r.uid
            ),
        ]);
    }
    legend.row([
        "protected:",
        "read-only even inside a writable root (see Protected paths)",
    ]);
    legend.row([
        "pinned:",
        "bound onto itself, so it cannot be renamed away or replaced",
    ]);
    legend.row([
        "/dev:",
        "null zero full random urandom tty from the host, /dev/fd, std*",
    ]);
    s.push_str(&legend.render());
}

fn human_bytes(b: u64) -> String {
    Bytes(b).to_string()
}

fn limits(s: &mut String, e: &Explained<'_>) {
    let plan = e.plan;
    section(s, "Limits", "");
    let mut t = Table::new(2).wrap_total(WIDTH);
    for r in &plan.rlimits {
        let (name, what, show): (&str, &str, fn(u64) -> String) = match r.resource {
            Rlimit::As => ("RLIMIT_AS", "address space of each process", human_bytes),
            Rlimit::Nproc => ("RLIMIT_NPROC", "processes, counted per host uid", |v| {
                v.to_string()
            }),
            Rlimit::Cpu => ("RLIMIT_CPU", "CPU time", |v| {
                Dur(v.saturating_mul(1000)).to_string()
            }),
            Rlimit::Fsize => ("RLIMIT_FSIZE", "largest file written", human_bytes),
            Rlimit::Nofile => ("RLIMIT_NOFILE", "open files", |v| v.to_string()),
            Rlimit::Core if r.hard == 0 => ("RLIMIT_CORE", "no core dumps", human_or_zero),
            Rlimit::Core => ("RLIMIT_CORE", "core dump size", human_or_zero),
        };
        let value = if r.soft == r.hard {
            show(r.soft)
        } else {
            format!("{} soft / {} hard", show(r.soft), show(r.hard))
        };
        t.row([name.to_string(), value, what.to_string()]);
    }
    let limit = |which| {
        plan.rlimits
            .iter()
            .find(|r| r.resource == which)
            .map(|r| r.hard)
    };
    if let (Some(each), Some(procs)) = (limit(Rlimit::As), limit(Rlimit::Nproc)) {
        t.row([
            "memory in total".to_string(),
            human_bytes(each.saturating_mul(procs)),
            format!(
                "no cgroup bounds the jail: memory is per process, so up to {procs} processes × {}",
                human_bytes(each)
            ),
        ]);
    }
    let tmpfs: Vec<(String, u64, u32)> = plan
        .mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Tmpfs {
                dst,
                size_bytes,
                inodes,
                ..
            } => Some((dst.to_string(), *size_bytes, *inodes)),
            Mount::Dev {
                dst,
                shm_bytes,
                shm_inodes,
            } => Some((format!("{dst}/shm"), *shm_bytes, *shm_inodes)),
            _ => None,
        })
        .collect();
    if !tmpfs.is_empty() {
        let names: Vec<&str> = tmpfs.iter().map(|(d, _, _)| d.as_str()).collect();
        let total: u64 = tmpfs.iter().map(|(_, b, _)| b).sum();
        t.row([
            format!("tmpfs {}", names.join(" + ")),
            human_bytes(total),
            "in memory, on top of the processes' (each mount: limits.tmpfs, tmpfs_inodes)"
                .to_string(),
        ]);
    }
    t.row([
        "workspace".to_string(),
        "-".to_string(),
        "the host filesystem: bounded only by its free space and quotas (RLIMIT_FSIZE caps one file)"
            .to_string(),
    ]);
    let cg = &plan.cgroup;
    let applied = "not applied: the jailer sets rlimits only";
    t.row([
        "cgroup memory.max".to_string(),
        human_bytes(cg.memory_max),
        applied.to_string(),
    ]);
    t.row([
        "cgroup pids.max".to_string(),
        cg.pids_max.to_string(),
        applied.to_string(),
    ]);
    t.row([
        "timeout".to_string(),
        Dur(plan.run.timeout_ms).to_string(),
        "wall clock; then the jail is killed".to_string(),
    ]);
    t.row([
        "output".to_string(),
        human_bytes(plan.run.output_bytes),
        "stdout + stderr; then the jail is killed".to_string(),
    ]);
    s.push_str(&t.render());
}

fn human_or_zero(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        human_bytes(v)
    }
}

/// Names whose values are not worth printing even when the profile passes them.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| n.contains(w))
}

fn env(s: &mut String, e: &Explained<'_>) {
    section(
        s,
        "Environment",
        "complete: every other host variable is dropped",
    );
    let plan = e.plan;
    let mut t = Table::new(2).wrap_total(WIDTH);
    for (k, v) in &plan.env {
        let shown = if looks_secret(k) || plan.secrets.iter().any(|s| s.as_str() == k) {
            "<value hidden: looks like a secret>".to_string()
        } else {
            v.clone()
        };
        t.row([k.clone(), shown]);
    }
    if t.is_empty() {
        let _ = writeln!(s, "  (empty)");
    }
    s.push_str(&t.render());
    let names = |v: &[aiops_policy::EnvName]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let line = if plan.secrets.is_empty() {
        if e.profile.secrets.is_empty() {
            "secrets: none".to_string()
        } else {
            format!(
                "secrets: none requested (a node may declare: {})",
                names(&e.profile.secrets)
            )
        }
    } else {
        format!(
            "secrets injected by the jailer, by name only: {}",
            names(&plan.secrets)
        )
    };
    for l in wrap(&line, WIDTH - 2) {
        let _ = writeln!(s, "  {l}");
    }
}

fn net(s: &mut String, plan: &JailPlan) {
    section(s, "Network", "");
    let what = match plan.net.mode {
        NetMode::None => "none: an empty network namespace, no interfaces up",
        NetMode::Loopback => "loopback: a private network namespace with only lo up",
        NetMode::Allowlist => {
            "allowlist: private lo; egress only to the hosts below, through the supervisor's proxy"
        }
        NetMode::Host => "host: the host's network (not a boundary; audited)",
    };
    for l in wrap(what, WIDTH - 2) {
        let _ = writeln!(s, "  {l}");
    }
    for hp in &plan.net.allow {
        let _ = writeln!(s, "    {hp}");
    }
}

fn protected(s: &mut String, plan: &JailPlan) {
    if plan.protected.is_empty() {
        return;
    }
    section(
        s,
        "Protected paths",
        "read-only inside writable roots: the host runs or trusts them later",
    );
    let roots = plan.writable_roots();
    let mut t = Table::new(2).wrap_total(WIDTH);
    for root in &roots {
        let rel: Vec<String> = plan
            .protected
            .iter()
            .filter(|p| root.contains(p) && *p != *root)
            .filter_map(|p| p.as_path().strip_prefix(root.as_path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        if !rel.is_empty() {
            t.row([format!("{root}/"), rel.join("  ")]);
        }
    }
    s.push_str(&t.render());
    let g = &plan.guard;
    if !g.roots.is_empty() {
        let _ = writeln!(
            s,
            "  and in every git directory below them (nested, bare, submodules, linked worktrees):\n  \
             hooks, config, info, commondir, gitdir, config.worktree; .git files; hook paths and\n  \
             include files their configs name; files hard-linked outside the writable roots.\n  \
             Searched before each node, at most {} levels, {} directories, {} git directories,\n  \
             {} outside-linked files ([protected.search]); past a bound the node is refused.",
            g.max_depth, g.max_dirs, g.max_repos, g.max_linked
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hides_values_of_secret_looking_names() {
        assert!(looks_secret("GITHUB_TOKEN") && looks_secret("openai_api_key"));
        assert!(!looks_secret("PATH") && !looks_secret("LANG"));
    }
}
