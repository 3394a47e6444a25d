//! Step 7: a new root from the plan's mounts, entered with pivot_root(2).
//!
//! The dance is bubblewrap's: a staging tmpfs over /tmp becomes `/` with the
//! host root at `/oldroot`, so every source is reachable as `/oldroot/<src>`
//! (even sources under the host's /tmp) while the jail is built on a second
//! tmpfs at `/newroot`. Then the host root is detached and `/newroot` entered.
use crate::error::JailError;
use crate::sys;
use aiops_proto::plan::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::FsFlags;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const STAGE: &str = "/tmp";
const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";
/// Host device nodes bound into the jail's /dev (Mount::Dev in plan.rs).
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

fn err(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> JailError {
    let path = path.into();
    move |source| JailError::Mount { what, path, source }
}

fn nix_err(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(nix::Error) -> JailError {
    let f = err(what, path);
    move |e| f(io::Error::from(e))
}

/// A path of the jailer's staging root, as a person knows it: the host's
/// path for `/oldroot/X` (the host root, mounted there while the jail is
/// built), "X in the jail" for `/newroot/X`; any other path as it is.
pub fn shown(p: &Path) -> String {
    let rel = |base: &str| {
        p.strip_prefix(base)
            .ok()
            .map(|r| Path::new("/").join(r).display().to_string())
    };
    if let Some(host) = rel(OLDROOT).or_else(|| rel(&format!("{STAGE}{OLDROOT}"))) {
        return host;
    }
    if let Some(jail) = rel(NEWROOT).or_else(|| rel(&format!("{STAGE}{NEWROOT}"))) {
        return format!("{jail} (in the jail)");
    }
    p.display().to_string()
}

/// `/newroot` + an absolute jail path.
fn under(base: &str, p: &Path) -> PathBuf {
    Path::new(base).join(p.strip_prefix("/").unwrap_or(p))
}

/// An optional bind left out of the jail, and why (reported as a layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The host path does not exist.
    Missing(PathBuf),
    /// It exists, but the jail's uid may not stat, read or mount it (a
    /// 0700 directory of another user, or one below it): bound, the node
    /// could not read it anyway, and failing the jail for it would make an
    /// optional path mandatory.
    Unreadable(PathBuf),
}

impl Skipped {
    /// The layer lines for `skipped`: one per kind, paths comma-separated.
    pub fn layers(skipped: &[Skipped]) -> Vec<String> {
        let list = |unreadable: bool| {
            skipped
                .iter()
                .filter_map(|s| match s {
                    Skipped::Missing(p) if !unreadable => Some(p.display().to_string()),
                    Skipped::Unreadable(p) if unreadable => Some(p.display().to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        [("skipped missing", false), ("skipped unreadable", true)]
            .into_iter()
            .filter_map(|(what, u)| {
                let l = list(u);
                (!l.is_empty()).then(|| format!("{what}: {}", l.join(", ")))
            })
            .collect()
    }
}

/// Build the root from `mounts` (mounts[0] is Mount::Root, checked by
/// `JailPlan::validate`) and pivot into it. Returns the optional binds
/// skipped: missing, or unreadable by the jail's uid. `hide` (the secrets or
/// credentials directory) is covered by an empty read-only tmpfs first, in
/// this mount namespace only: however a bind source is spelled, or swapped
/// for a symlink meanwhile, it cannot reach the files there. `guard`:
/// aiops-guard's paths (`Found::mounts`). `pts`: the jail's /dev gets its
/// own devpts (only a node that asked for a pty).
pub fn pivot_root_into(
    mounts: &[Mount],
    guard: &[(PathBuf, bool)],
    hide: Option<&Path>,
    pts: bool,
) -> Result<Vec<Skipped>, JailError> {
    // Keep every mount below from propagating back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(nix_err("make rprivate", "/"))?;
    if let Some(h) = hide.filter(|h| h.is_dir()) {
        let fl = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), h, Some("tmpfs"), fl, Some("mode=0,size=4k"))
            .map_err(nix_err("cover the secrets directory", h))?;
    }
    stage_root()?;
    let mut skipped = vec![];
    // Jail paths backed by the host or the kernel: never create anything below them.
    let mut no_create: Vec<PathBuf> = vec![];
    // (jail path, writable, exec) of every bind made, for pins inside them.
    let mut binds: Vec<(PathBuf, bool, bool)> = vec![];
    for m in mounts.iter().skip(1) {
        match m {
            Mount::Root => {}
            Mount::Pin { path } => {
                let t = under(NEWROOT, path.as_path());
                pin(&under(OLDROOT, path.as_path()), &t, &binds, &no_create)
                    .map_err(|e| unreachable_source(e, path.as_path()))?;
            }
            Mount::Tmpfs {
                dst,
                mode,
                size_bytes,
                inodes,
            } => {
                let t = under(NEWROOT, dst.as_path());
                make_dir_mountpoint(&t, &no_create)?;
                let data = format!("mode={mode:o},size={size_bytes},nr_inodes={inodes}");
                mount(
                    Some("tmpfs"),
                    &t,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(data.as_str()),
                )
                .map_err(nix_err("mount tmpfs on", &t))?;
            }
            Mount::Proc { dst } => {
                let t = under(NEWROOT, dst.as_path());
                make_dir_mountpoint(&t, &no_create)?;
                mount_proc(&t)?;
                no_create.push(t);
            }
            Mount::Dev {
                dst,
                shm_bytes,
                shm_inodes,
            } => {
                let t = under(NEWROOT, dst.as_path());
                make_dir_mountpoint(&t, &no_create)?;
                mount_dev(&t, *shm_bytes, *shm_inodes, pts)?;
                no_create.push(t);
            }
            Mount::Bind {
                src,
                dst,
                writable,
                exec,
                optional,
            } => {
                let s = under(OLDROOT, src.as_path());
                let t = under(NEWROOT, dst.as_path());
                let bound = bind(&s, &t, *writable, *exec, *optional, &no_create);
                match bound.map_err(|e| unreachable_source(e, src.as_path()))? {
                    Bound::Mounted => {
                        binds.push((t.clone(), *writable, *exec));
                        no_create.push(t)
                    }
                    Bound::Symlink => {}
                    Bound::Unreadable => skipped.push(Skipped::Unreadable(src.as_path().into())),
                    Bound::Missing if *optional => {
                        skipped.push(Skipped::Missing(src.as_path().into()))
                    }
                    Bound::Missing => {
                        return Err(JailError::Mount {
                            what: "bind source (or its mountpoint inside a bind) missing:",
                            path: src.as_path().into(),
                            source: io::Error::from_raw_os_error(libc::ENOENT),
                        })
                    }
                }
            }
        }
    }
    for (p, read_only) in guard.iter().filter(|g| !made_by_plan(mounts, g)) {
        guard_bind(&under(NEWROOT, p), *read_only)?;
    }
    enter_new_root()?;
    Ok(skipped)
}

/// A bind the jail cannot do without failed with EACCES: say which host
/// path and which uid, not the `/oldroot` spelling of a stat error.
fn unreachable_source(e: JailError, src: &Path) -> JailError {
    match e {
        JailError::Mount { source, .. } if denied(&source) => JailError::BindUnreachable {
            uid: nix::unistd::getuid().as_raw(),
            path: src.into(),
            source,
        },
        e => e,
    }
}

/// The plan already made this guard mount (the workspace root's `.git`
/// pin and its default protected paths): one mount, not two.
fn made_by_plan(mounts: &[Mount], (p, read_only): &(PathBuf, bool)) -> bool {
    mounts.iter().any(|m| match m {
        Mount::Pin { path } => !read_only && path.as_path() == p,
        Mount::Bind { dst, writable, .. } => !writable && dst.as_path() == p,
        _ => false,
    })
}

/// A guard path (aiops-guard: a directory above a protected path, pinned,
/// or the protected path, read-only) bound recursively onto itself in the
/// new tree. Recursive, so it carries the mounts already below it; onto
/// itself, so it keeps its mount's flags and can only take rights away,
/// wherever the path resolves. Changed since the search (gone, or now a
/// symlink): refused, as the host changed the tree under the jailer.
fn guard_bind(t: &Path, read_only: bool) -> Result<(), JailError> {
    let changed = |e: io::Error| JailError::Mount {
        what: "a protected path changed between the search and the mount:",
        path: t.into(),
        source: e,
    };
    match fs::symlink_metadata(t) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(changed(io::Error::from_raw_os_error(libc::ELOOP)))
        }
        Ok(_) => {}
        Err(e) => return Err(changed(e)),
    }
    let fl = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(t), t, None::<&str>, fl, None::<&str>).map_err(nix_err("bind onto itself", t))?;
    if read_only {
        remount(
            t,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RDONLY,
        )?;
    }
    Ok(())
}

/// Mount the staging tmpfs over /tmp and pivot into it, the host root at /oldroot.
fn stage_root() -> Result<(), JailError> {
    let fl = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), STAGE, Some("tmpfs"), fl, Some("mode=0755"))
        .map_err(nix_err("mount staging tmpfs on", STAGE))?;
    for d in ["newroot", "oldroot"] {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(Path::new(STAGE).join(d))
            .map_err(err("mkdir", Path::new(STAGE).join(d)))?;
    }
    nix::unistd::pivot_root(STAGE, "/tmp/oldroot").map_err(|e| JailError::PivotRoot {
        what: "into the staging tmpfs",
        source: e.into(),
    })?;
    nix::unistd::chdir("/").map_err(nix_err("chdir", "/"))?;
    mount(Some("tmpfs"), NEWROOT, Some("tmpfs"), fl, Some("mode=0755"))
        .map_err(nix_err("mount root tmpfs on", NEWROOT))
}

/// Make /newroot `/` (pivot_root(".", ".") stacks the staging root on it),
/// detach the staging root and with it the host root mounted inside it,
/// and make the root read-only. One umount, not one per root: each waits
/// for an expedited RCU grace period (~0.15-0.2 ms on the benchmark VM).
fn enter_new_root() -> Result<(), JailError> {
    let pe = |what| {
        move |e: nix::Error| JailError::PivotRoot {
            what,
            source: e.into(),
        }
    };
    nix::unistd::chdir(NEWROOT).map_err(pe("chdir into the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(pe("pivot_root(., .)"))?;
    // MNT_DETACH takes the whole subtree: the staging tmpfs, the host root
    // at its /oldroot and every host mount below that.
    umount2(".", MntFlags::MNT_DETACH).map_err(pe("detach the staging and host roots"))?;
    nix::unistd::chdir("/").map_err(pe("chdir /"))?;
    let fl = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    mount(None::<&str>, "/", None::<&str>, fl, None::<&str>).map_err(pe("remount / read-only"))
}

fn below_any(p: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| p.starts_with(r))
}

/// Create a directory mountpoint on our staging tmpfs; refuse anywhere else.
fn make_dir_mountpoint(t: &Path, no_create: &[PathBuf]) -> Result<(), JailError> {
    if below_any(t, no_create) {
        return Err(JailError::Mount {
            what: "refuse to create a mountpoint inside a bind or kernel mount:",
            path: t.into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(t)
        .map_err(err("mkdir", t))
}

fn mount_proc(t: &Path) -> Result<(), JailError> {
    let fl = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // hidepid=invisible (Linux 5.8) hides other uids' processes; older kernels refuse the option.
    match mount(Some("proc"), t, Some("proc"), fl, Some("hidepid=invisible")) {
        Err(nix::Error::EINVAL) => mount(Some("proc"), t, Some("proc"), fl, None::<&str>),
        r => r,
    }
    .map_err(nix_err("mount proc on", t))
}

/// `/dev` and its `shm` tmpfs, sized by the plan: an unsized tmpfs may
/// fill half of the host's RAM.
fn mount_dev(t: &Path, shm_bytes: u64, shm_inodes: u32, pts: bool) -> Result<(), JailError> {
    let fl = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        t,
        Some("tmpfs"),
        fl,
        Some("mode=0755,size=65536"),
    )
    .map_err(nix_err("mount tmpfs on", t))?;
    for n in DEV_NODES {
        let s = Path::new(OLDROOT).join("dev").join(n);
        let d = t.join(n);
        if fs::metadata(&s).is_err() {
            continue; // e.g. no /dev/tty without a controlling terminal's driver
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&d)
            .map_err(err("create mountpoint", &d))?;
        // No remount: the bind keeps the host /dev's (locked) flags, and
        // nosuid or noexec would mean nothing on a device node.
        mount(Some(&s), &d, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(nix_err("bind-mount", &d))?;
    }
    for (name, target) in DEV_LINKS {
        symlink(target, t.join(name)).map_err(err("symlink", t.join(name)))?;
    }
    if pts {
        mount_devpts(t)?;
    }
    let shm = t.join("shm");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&shm)
        .map_err(err("mkdir", &shm))?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=1777,size={shm_bytes},nr_inodes={shm_inodes}").as_str()),
    )
    .map_err(nix_err("mount tmpfs on", &shm))
}

/// The jail's own devpts instance at /dev/pts, with /dev/ptmx pointing into
/// it: agentd allocates the node's pty here (agentd/src/tty.rs), so no pty
/// of the host's, and none of another jail's, is reachable. Only for a
/// node that asked for a pty: the others cannot open one at all. `newinstance`
/// is implied since Linux 4.7 and spelled out for older ones; a user
/// namespace may mount devpts. No `gid=`: the jail maps one gid, not tty's.
fn mount_devpts(t: &Path) -> Result<(), JailError> {
    let pts = t.join("pts");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&pts)
        .map_err(err("mkdir", &pts))?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(nix_err("mount devpts on", &pts))?;
    symlink("pts/ptmx", t.join("ptmx")).map_err(err("symlink", t.join("ptmx")))
}

/// Bind an existing path inside an earlier bind onto itself, so the node
/// cannot rename or remove it (a mountpoint is busy): `.git` cannot be swapped
/// for one with other hooks. It keeps the enclosing bind's flags, except
/// that a regular file (a worktree's `.git` link) becomes read-only.
/// Missing: skipped; a symlink: refused (as for any bind inside a bind).
fn pin(
    s: &Path,
    t: &Path,
    binds: &[(PathBuf, bool, bool)],
    no_create: &[PathBuf],
) -> Result<(), JailError> {
    let Some((_, writable, exec)) = binds
        .iter()
        .filter(|(b, _, _)| t.starts_with(b))
        .max_by_key(|(b, _, _)| b.components().count())
    else {
        return Err(JailError::Mount {
            what: "refuse to pin a path outside every bind:",
            path: t.into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    };
    let is_file = fs::symlink_metadata(s).is_ok_and(|m| m.is_file());
    bind(s, t, *writable && !is_file, *exec, false, no_create).map(|_| ())
}

/// Not there. NotADirectory: `.git/hooks` where `.git` is a file (a linked
/// worktree or a submodule checkout), which the guard protects instead.
fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Permission denied: the jail's uid may not reach the path.
fn denied(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EACCES)
}

enum Bound {
    Mounted,
    Symlink,
    Missing,
    /// Optional, and the jail's uid may not stat, read or mount it.
    Unreadable,
}

/// Non-recursive bind of `s` onto `t`, then a remount with the plan's flags.
///
/// Non-recursive, so submounts under a host directory never appear with
/// flags we did not set; a source with locked submounts makes the kernel
/// refuse (EINVAL) rather than expose them.
///
/// `optional`: a source the jail's uid (ours since step 3; the user
/// namespace's capabilities do not cover another uid's files) cannot
/// stat, read (and search, for a directory) or mount is `Unreadable`, and
/// nothing is created for it. Not optional: the EACCES is an error.
fn bind(
    s: &Path,
    t: &Path,
    writable: bool,
    exec: bool,
    optional: bool,
    no_create: &[PathBuf],
) -> Result<Bound, JailError> {
    let smeta = match fs::symlink_metadata(s) {
        Ok(m) => m,
        Err(e) if absent(&e) => return Ok(Bound::Missing),
        Err(e) if optional && denied(&e) => return Ok(Bound::Unreadable),
        Err(e) => return Err(err("stat bind source", s)(e)),
    };
    if optional && !smeta.file_type().is_symlink() {
        use nix::unistd::AccessFlags;
        let mut want = AccessFlags::R_OK;
        if smeta.is_dir() {
            want |= AccessFlags::X_OK;
        }
        // The kernel's answer for our real uid, ACLs included.
        if let Err(nix::Error::EACCES) = nix::unistd::access(s, want) {
            return Ok(Bound::Unreadable);
        }
    }
    if below_any(t, no_create) {
        // A bind inside another bind (a protected path in the workspace): the
        // mountpoint must already exist on the host and nothing is created.
        let tmeta = match fs::symlink_metadata(t) {
            Ok(m) => m,
            Err(e) if absent(&e) => return Ok(Bound::Missing),
            Err(e) => return Err(err("stat mountpoint", t)(e)),
        };
        if smeta.file_type().is_symlink() || tmeta.file_type().is_symlink() {
            return Err(JailError::Mount {
                what: "refuse to bind over a symlink inside a bind:",
                path: t.into(),
                source: io::Error::from_raw_os_error(libc::ELOOP),
            });
        }
    } else if smeta.file_type().is_symlink() {
        // e.g. /lib -> usr/lib on merged-/usr hosts: same link, same access.
        let target = fs::read_link(s).map_err(err("readlink", s))?;
        if let Some(parent) = t.parent() {
            make_dir_mountpoint(parent, no_create)?;
        }
        symlink(&target, t).map_err(err("symlink", t))?;
        return Ok(Bound::Symlink);
    } else if smeta.is_dir() {
        make_dir_mountpoint(t, no_create)?;
    } else {
        if let Some(parent) = t.parent() {
            make_dir_mountpoint(parent, no_create)?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(t)
            .map_err(err("create mountpoint", t))?;
    }
    match mount(Some(s), t, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
        Ok(()) => {}
        Err(nix::Error::EACCES) if optional => {
            // The empty mountpoint would only look like an empty source.
            let _ = fs::remove_dir(t).or_else(|_| fs::remove_file(t));
            return Ok(Bound::Unreadable);
        }
        Err(e) => return Err(nix_err("bind-mount", t)(e)),
    }
    let mut fl = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !writable {
        fl |= MsFlags::MS_RDONLY;
    }
    if !exec {
        fl |= MsFlags::MS_NOEXEC;
    }
    remount(t, fl)?;
    Ok(Bound::Mounted)
}

/// The kernel's statfs ST_RELATIME bit; nix names it only for glibc, and
/// musl passes the kernel's f_flags through unchanged.
const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);

/// MS_REMOUNT|MS_BIND with `want` plus the flags the mount already has: in a
/// user namespace, flags inherited from the host are locked and dropping
/// one (atime included) is EPERM.
fn remount(t: &Path, want: MsFlags) -> Result<(), JailError> {
    let have = FsFlags::from_bits_retain(sys::mount_flags(t).map_err(err("statvfs", t))?);
    let mut fl = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | want;
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            fl |= ms;
        }
    }
    if !have.intersects(FsFlags::ST_NOATIME | ST_RELATIME) {
        fl |= MsFlags::MS_STRICTATIME;
    }
    mount(None::<&str>, t, None::<&str>, fl, None::<&str>).map_err(nix_err("remount", t))
}

#[cfg(test)]
mod shown_tests {
    use super::*;

    /// The staging root's spellings never reach a message.
    #[test]
    fn staging_paths_are_shown_as_host_or_jail_paths() {
        assert_eq!(shown(Path::new("/oldroot/root/.npm")), "/root/.npm");
        assert_eq!(shown(Path::new("/tmp/oldroot/etc")), "/etc");
        assert_eq!(
            shown(Path::new("/newroot/workspace")),
            "/workspace (in the jail)"
        );
        assert_eq!(shown(Path::new("/oldroot")), "/");
        assert_eq!(shown(Path::new("/srv/x")), "/srv/x");
        let e = JailError::Mount {
            what: "stat bind source",
            path: "/oldroot/home/u/.cache".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let msg = e.to_string();
        assert_eq!(msg, "stat bind source /home/u/.cache");
        assert!(!msg.contains("oldroot"), "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::Skipped;
    use std::path::PathBuf;

    #[test]
    fn skipped_binds_become_one_layer_per_kind() {
        assert!(Skipped::layers(&[]).is_empty());
        let s = [
            Skipped::Missing(PathBuf::from("/lib32")),
            Skipped::Unreadable(PathBuf::from("/srv/a")),
            Skipped::Missing(PathBuf::from("/nonexistent/.npm")),
            Skipped::Unreadable(PathBuf::from("/srv/b")),
        ];
        assert_eq!(
            Skipped::layers(&s),
            [
                "skipped missing: /lib32, /nonexistent/.npm",
                "skipped unreadable: /srv/a, /srv/b"
            ]
        );
    }
}
