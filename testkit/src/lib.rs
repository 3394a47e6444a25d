//! What the test crates of aiops share (a dev-dependency only): skipping a
//! test with a reason (`AIOPS_MUST_WORK=1` makes a skip fail), who we run
//! as and how to run something as nobody, where the built binaries are,
//! temp dirs that a jail running as nobody can reach, kernel-feature
//! probes, and report sockets. Nothing here knows about the aiops crates themselves.
#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
use nix::sys::socket::{recv, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use std::ffi::OsStr;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The uid (and gid) tests switch to with [`SETPRIV_NOBODY`], and the owner
/// of workspaces when root.
pub const NOBODY: u32 = 65534;

/// `setpriv` as uid/gid 65534 with no supplementary groups: prefix a
/// command line with it (root only). `.ci/run` runs test binaries the same way.
pub const SETPRIV_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// `program` run as nobody through [`SETPRIV_NOBODY`] (root only).
pub fn as_nobody(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(SETPRIV_NOBODY[0]);
    c.args(&SETPRIV_NOBODY[1..]).arg(program);
    c
}

/// The HTTP status `curl` (e.g. `Command::new("curl")` or
/// `as_nobody("curl")`) gets for `url` over the unix socket `sock`: what
/// `-w %{http_code}` prints, empty when curl could not run.
pub fn curl_status(mut curl: Command, sock: &Path, url: &str) -> String {
    curl.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--unix-socket",
    ])
    .arg(sock)
    .arg(url)
    .output()
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default()
}

// ---- skipping ----------------------------------------------------------

/// `AIOPS_MUST_WORK=1`: a skip is a failure.
pub fn must_work() -> bool {
    std::env::var_os("AIOPS_MUST_WORK").is_some_and(|v| v == "1")
}

/// Print `SKIP <test>: <reason>`, or fail under `AIOPS_MUST_WORK=1`.
pub fn skip(test: &str, reason: &str) {
    if must_work() {
        panic!("SKIP {test}: {reason} (AIOPS_MUST_WORK=1 turns skips into failures)");
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Print `SKIP <test>: <reason>` for a test, or a control, that needs root
/// when we are not root. Never a failure, even under `AIOPS_MUST_WORK=1`:
/// that flag demands the kernel features this host has, and running
/// unprivileged is a supported setup, not a missing feature.
pub fn skip_needs_root(test: &str, reason: &str) {
    assert!(!is_root(), "{test}: skip_needs_root called as root");
    eprintln!("SKIP {test}: {reason} (not root; AIOPS_MUST_WORK covers kernel features only)");
}

/// The value of a probe that passed; else [`skip`] with its reason (a
/// failure under `AIOPS_MUST_WORK=1`) and `None`.
pub fn require<T>(test: &str, probe: Result<T, String>) -> Option<T> {
    match probe {
        Ok(v) => Some(v),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// Print a note about a mode that has no meaningful control here.
pub fn note(test: &str, msg: &str) {
    eprintln!("NOTE {test}: {msg}");
}

/// True when `path` exists; otherwise [`skip`]s.
pub fn have_program(test: &str, path: &str) -> bool {
    if Path::new(path).exists() {
        true
    } else {
        skip(test, &format!("{path} is missing"));
        false
    }
}

// ---- who we are --------------------------------------------------------

/// Effective uid of this test process (the owner of `/proc/self`).
#[cfg(target_os = "linux")]
pub fn euid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Effective uid of this test process (no /proc here).
#[cfg(not(target_os = "linux"))]
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub fn is_root() -> bool {
    euid() == 0
}

// ---- kernel-feature probes ---------------------------------------------

/// An unprivileged user namespace with its own pid namespace, as
/// `unshare -Upf --map-current-user` makes it.
pub fn userns_with_pidns() -> Result<(), String> {
    let ok = Command::new("unshare")
        .args(["-Upf", "--map-current-user", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err("unshare -Upf --map-current-user does not work here".into())
    }
}

// ---- report sockets ----------------------------------------------------

#[cfg(target_os = "linux")]
/// A close-on-exec SOCK_SEQPACKET pair, as the report socket between
/// agentd, the jailer and the supervisor is.
pub fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair(AF_UNIX, SOCK_SEQPACKET)")
}

#[cfg(target_os = "linux")]
/// Every frame queued on `sock` now, without waiting (each at most 64 KiB,
/// more than any report may be), until it is empty or closed.
pub fn queued_frames(sock: &OwnedFd) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) | Err(_) => return frames,
            Ok(n) => frames.push(buf[..n].to_vec()),
        }
    }
}

// ---- the tree and its build --------------------------------------------

/// The repository (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `$CARGO_TARGET_DIR` (relative to the repository), else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                repo_root().join(d)
            }
        }
        None => repo_root().join("target"),
    }
}

/// A workspace binary from `target/debug` (built by `cargo build --workspace`).
/// A test of the crate that builds it uses `env!("CARGO_BIN_EXE_<name>")`.
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join("debug").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

// ---- temp dirs a jail as nobody can reach ------------------------------

/// Where workspaces and outside fixtures live: `$AIOPS_TEST_TMPDIR`, else
/// `<target>/escape-tmp`, else `/var/tmp/aiops-escape-tests-<euid>`: the
/// first that is not under /tmp (the jail's /tmp is private, so a workspace
/// there is refused), that nobody can traverse (for the `as_nobody` runs),
/// and that we can create and own (an unprivileged run may find `target/`
/// read-only, or another uid's directory already there).
/// Siblings of the workspace are also the sharper test of what a jail hides.
pub fn test_tmp() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("AIOPS_TEST_TMPDIR")
            .map(PathBuf::from)
            .into_iter()
            .chain([
                target_dir().join("escape-tmp"),
                // Per uid: /var/tmp is shared, and root's 0711 dir is not ours.
                PathBuf::from(format!("/var/tmp/aiops-escape-tests-{}", euid())),
            ])
            .collect();
        candidates
            .iter()
            .find(|d| usable_base(d) && claim_dir(d))
            .cloned()
            .unwrap_or_else(|| {
                panic!("no usable test temp dir among {candidates:?}; set AIOPS_TEST_TMPDIR")
            })
    })
    .clone()
}

fn usable_base(d: &Path) -> bool {
    if !d.is_absolute() || d.starts_with("/tmp") {
        return false;
    }
    // Every existing ancestor must let others search it.
    d.ancestors()
        .skip(1)
        .filter_map(|a| std::fs::metadata(a).ok())
        .all(|m| m.permissions().mode() & 0o001 != 0)
}

/// Create `d` (or find it) as a real directory owned by us, mode 0711:
/// traversable by nobody, but not listable or writable. False when it is
/// not ours (e.g. a read-only source tree, or a symlink planted in /var/tmp).
fn claim_dir(d: &Path) -> bool {
    if std::fs::create_dir_all(d).is_err() {
        return false;
    }
    let ours = std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == euid());
    ours && std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).is_ok()
}

/// A fresh directory `<prefix>XXXXXX` under [`test_tmp`], owned by `owner`
/// when we are root (so a jail running as that uid can use it), mode 0755.
pub fn scratch_dir_named(prefix: &str, owner: Option<u32>) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(test_tmp())
        .expect("create a temp dir");
    chown_to(d.path(), owner);
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    d
}

/// [`scratch_dir_named`] with the prefix `aiops-escape-`.
pub fn scratch_dir(owner: Option<u32>) -> tempfile::TempDir {
    scratch_dir_named("aiops-escape-", owner)
}

/// chown (only possible, and only needed, when we are root).
pub fn chown_to(p: &Path, owner: Option<u32>) {
    if let (Some(uid), true) = (owner, is_root()) {
        std::os::unix::fs::lchown(p, Some(uid), Some(uid)).expect("chown test path");
    }
}

/// chown -R, for trees the test made on the host before handing them over.
pub fn chown_tree(p: &Path, owner: Option<u32>) {
    chown_to(p, owner);
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).expect("read dir").flatten() {
            chown_tree(&e.path(), owner);
        }
    }
}

/// Write a file on the host, owned by `owner` when root, readable by all.
pub fn host_file(p: &Path, content: &str, owner: Option<u32>) {
    std::fs::write(p, content).expect("write host file");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod host file");
    chown_to(p, owner);
}

/// A string unique across concurrent tests and test binaries.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// System mode's ceiling for socket-activated tests: the shipped profiles
/// copied into a root-owned directory and a root-owned `jailer.toml`
/// allowing `profiles`, with [`test_tmp`] as the workspace root and `$HOME`
/// as home. The jailer refuses a ceiling root does not own, so this needs
/// root: `None` otherwise.
pub struct SystemCeiling {
    _dir: tempfile::TempDir,
    /// Pass as `AIOPS_JAILER_CONFIG`.
    pub config: PathBuf,
    /// The copied profiles (root-owned, 0755).
    pub profile_dir: PathBuf,
}

impl SystemCeiling {
    pub fn new(profiles: &[&str], extra: &str) -> Option<SystemCeiling> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("aiops-ceiling-")
            .tempdir_in(test_tmp())
            .expect("ceiling dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod ceiling dir");
        let profile_dir = dir.path().join("profiles");
        std::fs::create_dir(&profile_dir).expect("mkdir profiles");
        std::fs::set_permissions(&profile_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod profiles");
        for e in std::fs::read_dir(repo_root().join("profiles"))
            .expect("read profiles")
            .flatten()
        {
            let to = profile_dir.join(e.file_name());
            std::fs::copy(e.path(), &to).expect("copy profile");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644))
                .expect("chmod profile");
        }
        let home = std::env::var("HOME").map_or(String::new(), |h| format!("home = {h:?}\n"));
        let list: Vec<String> = profiles.iter().map(|p| format!("{p:?}")).collect();
        let config = dir.path().join("jailer.toml");
        std::fs::write(
            &config,
            format!(
                "schema = 1\nprofiles = [{}]\nprofile_dirs = [{:?}]\nworkspace_root = {:?}\n{home}{extra}",
                list.join(", "),
                profile_dir,
                std::fs::canonicalize(test_tmp()).expect("test tmp"),
            ),
        )
        .expect("write jailer.toml");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))
            .expect("chmod jailer.toml");
        Some(SystemCeiling {
            _dir: dir,
            config,
            profile_dir,
        })
    }
}

/// A `JailRequest` running `argv` under the shipped profile `profile`,
/// compiled for a Linux host at Landlock ABI `abi` (capped at what this
/// build knows), with `ws` as the workspace and cwd and `agentd` as the
/// host path of agentd. Panics on any error: a test's set-up.
pub fn jail_request(
    profile: &str,
    abi: u8,
    ws: &Path,
    agentd: &Path,
    host_env: std::collections::BTreeMap<String, String>,
    argv: &[&str],
) -> aiops_proto::JailRequest {
    let caps = aiops_policy::NodeCaps::default();
    jail_request_with_caps(profile, &caps, abi, ws, agentd, host_env, argv)
}

/// [`jail_request`] for a node declaring `caps`; `profile` may also be a
/// profile file's path (its `extends` found among the shipped profiles).
pub fn jail_request_with_caps(
    profile: &str,
    caps: &aiops_policy::NodeCaps,
    abi: u8,
    ws: &Path,
    agentd: &Path,
    host_env: std::collections::BTreeMap<String, String>,
    argv: &[&str],
) -> aiops_proto::JailRequest {
    use aiops_policy::{CompileContext, HostFacts, PathVars, ProfileLoader};
    use aiops_proto::{facts::LANDLOCK_ABI_MAX, AbsPath};
    let profile = ProfileLoader::standard(None, Some(&repo_root().join("profiles")))
        .load(profile)
        .unwrap_or_else(|e| panic!("profile {profile}: {e}"));
    let abs = |p: &Path| AbsPath::new(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ws = abs(ws);
    let ctx = CompileContext {
        vars: PathVars {
            workspace: Some(ws.clone()),
            home: None,
            tmpdir: None,
        },
        cwd: ws,
        host_env,
        agentd: abs(agentd),
    };
    let facts = HostFacts::linux(abi.min(LANDLOCK_ABI_MAX));
    let plan = aiops_policy::compile(&profile, caps, &facts, &ctx)
        .unwrap_or_else(|e| panic!("compile: {e}"));
    aiops_proto::JailRequest {
        proto_version: aiops_proto::PROTO_VERSION,
        node: aiops_proto::NodeSpec {
            id: "t".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            tty: false,
        },
        plan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_passes_the_value_of_a_probe_that_worked() {
        assert_eq!(require("t", Ok::<u8, String>(4)), Some(4));
    }

    #[test]
    fn the_nobody_prefix_names_uid_and_gid_65534() {
        let c = as_nobody("/bin/true");
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(c.get_program(), "setpriv");
        assert_eq!(
            args,
            [
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/bin/true"
            ]
        );
        assert!(SETPRIV_NOBODY[1].ends_with(&NOBODY.to_string()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn queued_frames_keeps_message_boundaries_and_stops_when_empty() {
        let (a, b) = seqpacket_pair();
        for m in [&b"one"[..], b"", b"three"] {
            nix::sys::socket::send(a.as_raw_fd(), m, MsgFlags::empty()).expect("send");
        }
        // An empty frame reads as 0 bytes, like a close: it ends the list.
        assert_eq!(queued_frames(&b), vec![b"one".to_vec()]);
        assert_eq!(queued_frames(&b), vec![b"three".to_vec()]);
        drop(a);
        assert!(queued_frames(&b).is_empty());
    }
}
