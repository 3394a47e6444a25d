//! Runs the real aiops-jailer on a plan compiled from the shipped
//! `restrictive` profile. agentd is stood in for by `jailcheck.sh`, a shell
//! script that prints what it sees from inside (the shipped jailer execs
//! whatever binary the plan binds at /.aiops/aiops-agentd; here the test
//! compiles the plan and sets AIOPS_AGENTD to the script).
//!
//! As root, every case also runs as nobody through `setpriv`.
#![allow(clippy::unwrap_used)]

use aiops_proto::report::SeccompDenials;
use aiops_proto::AbsPath;
use aiops_proto::{JailRequest, Report, Step};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use aiops_testkit::{
    as_nobody as as_nobody_cmd, chown_tree, is_root, queued_frames, require, scratch_dir_named,
    seqpacket_pair, skip_needs_root,
};

const JAILER: &str = env!("CARGO_BIN_EXE_aiops-jailer");
/// Spawns are serialised so no child inherits another test's pipe ends.
static SPAWN: Mutex<()> = Mutex::new(());

const JAILCHECK: &str = r#"#!/bin/sh
echo "pid=$$"
echo "id=$(/usr/bin/id -u):$(/usr/bin/id -g)"
echo "uid_map=$(/bin/cat /proc/self/uid_map | /usr/bin/tr -s ' ' | /usr/bin/sed 's/^ //')"
/bin/grep -E '^(NoNewPrivs|CapEff|CapPrm|CapBnd|CapAmb|CapInh|Seccomp):' /proc/self/status | /usr/bin/tr -d '\t'
echo "cmdline1=$(/usr/bin/tr '\0' ' ' < /proc/1/cmdline)"
echo "hostname=$(/bin/cat /proc/sys/kernel/hostname)"
touch "$1/created-inside" && echo "ws_write=ok" || echo "ws_write=denied"
touch "$1/.git/hooks/planted" 2>/dev/null && echo "hooks_write=ok" || echo "hooks_write=denied"
touch /etc/planted 2>/dev/null && echo "etc_write=ok" || echo "etc_write=denied"
[ -e /oldroot ] && echo "oldroot=present" || echo "oldroot=absent"
touch /dev/shm/x 2>/dev/null && echo "shm_create=ok" || echo "shm_create=denied"
mkdir /dev/planted 2>/dev/null && echo "dev_mkdir=ok" || echo "dev_mkdir=denied"
/usr/bin/unshare -U /bin/true 2>/dev/null && echo "unshare=ok" || echo "unshare=denied"
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -c 'import socket; socket.socket().bind(("127.0.0.1", 0))' 2>/dev/null && echo "tcp_bind=ok" || echo "tcp_bind=denied"
  /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.bind(("127.0.0.1", 0)); s.sendto(b"x", s.getsockname()); s.recv(1)' 2>/dev/null && echo "lo_udp=ok" || echo "lo_udp=denied"
fi
echo "spec=$(/bin/cat <&3)"
(echo x >&3) 2>/dev/null && echo "spec_write=ok" || echo "spec_write=denied"
echo "git_pinned=$(/bin/grep " $1/.git " /proc/self/mountinfo)"
mv "$1/.git" "$1/.git-moved" 2>/dev/null && echo "git_mv=ok" || echo "git_mv=denied"
echo "hooks_mount=$(/bin/grep " $1/.git/hooks " /proc/self/mountinfo)"
"#;

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    ws: PathBuf,
    script: PathBuf,
}

fn probe_ok() -> Result<u8, String> {
    let out = Command::new(JAILER).arg("probe").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let abi = v["landlock_abi"].as_u64().unwrap_or(0);
    if v["userns"]["ok"] != true
        || v["netns"]["ok"] != true
        || v["proc_mount"]["ok"] != true
        || abi < 4
    {
        return Err(format!(
            "host lacks a layer the restrictive profile needs: {v}"
        ));
    }
    Ok(u8::try_from(abi).unwrap())
}

/// Skip (or fail under AIOPS_MUST_WORK=1) when the kernel cannot jail.
fn need_kernel(test: &str) -> Option<u8> {
    require(test, probe_ok())
}

fn fixture(ws_owner: u32) -> Fixture {
    // Under the shared test temp dir, which nobody can traverse: the jail
    // runs as the workspace owner (as root) or as nobody.
    let ws = scratch_dir_named("aiops-ws-", Some(ws_owner));
    let bin = scratch_dir_named("aiops-bin-", None);
    std::fs::create_dir_all(ws.path().join(".git/hooks")).unwrap();
    for p in [ws.path().join(".git"), ws.path().join(".git/hooks")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    chown_tree(ws.path(), Some(ws_owner));
    let script = bin.path().join("jailcheck.sh");
    // The workspace path is baked in: agentd's argv is fixed by the contract.
    std::fs::write(
        &script,
        JAILCHECK.replace("$1", &ws.path().display().to_string()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Fixture {
        ws: ws.path().to_path_buf(),
        script,
        _dirs: vec![ws, bin],
    }
}

fn request(fx: &Fixture, abi: u8) -> JailRequest {
    request_for(fx, abi, "restrictive")
}

fn request_for(fx: &Fixture, abi: u8, profile: &str) -> JailRequest {
    let env = BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]);
    aiops_testkit::jail_request(profile, abi, &fx.ws, &fx.script, env, &["/bin/true"])
}

/// A fd the child inherits (CLOEXEC cleared), ours closed after spawn.
fn inheritable(fd: &OwnedFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
}

struct Run {
    out: Output,
    frames: Vec<Report>,
}

fn spawn_jailer(fx: &Fixture, body: &[u8], as_nobody: bool) -> (std::process::Child, OwnedFd) {
    spawn_jailer_env(fx, body, as_nobody, &[])
}

fn spawn_jailer_env(
    fx: &Fixture,
    body: &[u8],
    as_nobody: bool,
    env: &[(&str, &Path)],
) -> (std::process::Child, OwnedFd) {
    let guard = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let (ours, theirs) = seqpacket_pair();
    // The whole request fits the pipe buffer, so write it before spawning
    // and no child ever holds the write end.
    std::fs::File::from(wr).write_all(body).unwrap();
    inheritable(&rd);
    inheritable(&theirs);
    let (req_fd, rep_fd) = (rd.as_raw_fd().to_string(), theirs.as_raw_fd().to_string());
    let mut cmd = if as_nobody {
        as_nobody_cmd(JAILER)
    } else {
        Command::new(JAILER)
    };
    cmd.args(["--request-fd", &req_fd, "--report-fd", &rep_fd])
        .env_clear()
        .env("AIOPS_AGENTD", &fx.script)
        .envs(env.iter().copied());
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(rd);
    drop(theirs);
    drop(guard);
    (child, ours)
}

fn frames(ours: &OwnedFd) -> Vec<Report> {
    queued_frames(ours)
        .iter()
        .map(|f| Report::decode(f).unwrap())
        .collect()
}

fn run_jailer(fx: &Fixture, body: &[u8], as_nobody: bool) -> Run {
    let (child, ours) = spawn_jailer(fx, body, as_nobody);
    let out = child.wait_with_output().unwrap();
    Run {
        out,
        frames: frames(&ours),
    }
}

fn set_script(fx: &Fixture, text: &str) {
    std::fs::write(&fx.script, text).unwrap();
}

fn field<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('=').or_else(|| r.strip_prefix(':')))
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
}

fn check_jail(test: &str, as_nobody: bool) {
    let Some(abi) = need_kernel(test) else { return };
    // As root the jail takes the workspace owner's uid; as nobody, nobody's.
    let owner = if as_nobody { 65534 } else { 1234 };
    let fx = fixture(owner);
    let req = request(&fx, abi);
    let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), as_nobody);
    let stdout = String::from_utf8_lossy(&run.out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&run.out.stderr).to_string();
    assert!(
        run.out.status.success(),
        "jailer failed: {:?}\n{stdout}\n{stderr}",
        run.out.status
    );
    // The script (as agentd) sends no frame; the jailer's waiting parent
    // sends its count of seccomp denials: the script's `unshare -U`,
    // answered EPERM there.
    let denials = only_denials(&run.frames);
    let unshare = denials
        .calls
        .iter()
        .find(|c| c.syscall == "unshare")
        .unwrap_or_else(|| panic!("unshare not counted: {denials:?}"));
    assert_eq!(
        (unshare.errno, unshare.count),
        (libc::EPERM, 1),
        "{denials:?}"
    );
    let uid = if is_root() {
        owner
    } else {
        nix::unistd::getuid().as_raw()
    };
    assert_eq!(field(&stdout, "pid"), "1");
    assert_eq!(field(&stdout, "id"), format!("{uid}:{uid}"));
    assert_eq!(field(&stdout, "uid_map"), format!("{uid} {uid} 1"));
    assert_eq!(field(&stdout, "NoNewPrivs"), "1");
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        assert_eq!(field(&stdout, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field(&stdout, "Seccomp"), "2");
    assert!(
        field(&stdout, "cmdline1").contains("/.aiops/aiops-agentd"),
        "{stdout}"
    );
    assert_eq!(field(&stdout, "hostname"), "aiops");
    assert_eq!(field(&stdout, "oldroot"), "absent");
    assert_eq!(field(&stdout, "etc_write"), "denied");
    assert_eq!(field(&stdout, "ws_write"), "ok");
    assert_eq!(field(&stdout, "hooks_write"), "denied");
    // Denied by the read-only bind itself, not only by Landlock.
    // .git is pinned (a mountpoint: cannot be renamed away).
    assert!(
        field(&stdout, "git_pinned").contains("/.git rw,"),
        "{stdout}"
    );
    assert!(
        field(&stdout, "hooks_mount").contains("/.git/hooks ro,"),
        "{stdout}"
    );
    assert_eq!(field(&stdout, "spec_write"), "denied");
    assert_eq!(field(&stdout, "git_mv"), "denied");
    // /dev is a writable tmpfs: only Landlock (no make_dir there) refuses
    // this; /dev/shm, granted by the plan, is the control.
    assert_eq!(field(&stdout, "dev_mkdir"), "denied");
    assert_eq!(field(&stdout, "shm_create"), "ok");
    // Seccomp's deny table (unshare → EPERM).
    assert_eq!(field(&stdout, "unshare"), "denied");
    if Path::new("/usr/bin/python3").exists() {
        // net = none: Landlock handles TCP with no ports, and lo stays
        // down, so not even UDP on 127.0.0.1 works.
        assert_eq!(field(&stdout, "tcp_bind"), "denied");
        assert_eq!(field(&stdout, "lo_udp"), "denied");
    }
    // Host side: what the jail created is owned by the unprivileged uid,
    // the protected hooks dir is untouched, and absent protected paths
    // were not created by the jailer.
    let created = std::fs::metadata(fx.ws.join("created-inside")).unwrap();
    assert_eq!(created.uid(), uid);
    assert!(!fx.ws.join(".git/hooks/planted").exists());
    for absent in [
        ".git/config",
        ".git/info",
        ".gitmodules",
        ".envrc",
        ".vscode",
        ".aiops",
    ] {
        assert!(
            !fx.ws.join(absent).exists(),
            "{absent} was created on the host"
        );
    }
    let spec: serde_json::Value = serde_json::from_str(field(&stdout, "spec")).unwrap();
    assert_eq!(spec["argv"], serde_json::json!(["/bin/true"]));
    let layers: Vec<String> = serde_json::from_value(spec["layers"].clone()).unwrap();
    for want in [
        "userns",
        "mountns",
        "pidns",
        "netns",
        "pivot_root",
        "no_new_privs",
        "caps: none",
        "rlimits",
    ] {
        assert!(
            layers.iter().any(|l| l == want),
            "{want} missing from {layers:?}"
        );
    }
    assert!(
        layers.iter().any(|l| l.starts_with(&format!(
            "landlock:v{} fully enforced (fs, tcp, scopes)",
            abi.min(7)
        ))),
        "{layers:?}"
    );
    assert!(
        layers.iter().any(|l| l.starts_with("seccomp(")),
        "{layers:?}"
    );
    assert_eq!(
        layers.iter().any(|l| l.ends_with("(dropped from root)")),
        is_root() && !as_nobody
    );
}

#[test]
fn jail_as_invoking_user_is_confined() {
    check_jail("jail_as_invoking_user_is_confined", false);
}

#[test]
fn jail_as_nobody_is_confined() {
    if !is_root() {
        return skip_needs_root("jail_as_nobody_is_confined", "setpriv to nobody needs root");
    }
    check_jail("jail_as_nobody_is_confined", true);
}

#[test]
fn bad_plan_version_is_refused_with_a_setup_failed_frame() {
    let Some(abi) = need_kernel("bad_plan_version_is_refused_with_a_setup_failed_frame") else {
        return;
    };
    let fx = fixture(65534);
    let mut req = request(&fx, abi);
    req.plan.plan_version = 99;
    for as_nobody in [false, true] {
        if as_nobody && !is_root() {
            continue;
        }
        let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), as_nobody);
        assert_eq!(run.out.status.code(), Some(Step::Validate.exit_code()));
        assert!(run.out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&run.out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("aiops-jailer: validate: "), "{stderr}");
        match run.frames.as_slice() {
            [Report::SetupFailed {
                step: Step::Validate,
                message,
                ..
            }] => {
                assert!(message.contains("plan_version"), "{message}")
            }
            other => panic!("expected one SetupFailed frame, got {other:?}"),
        }
    }
}

#[test]
fn garbage_request_fails_at_read_request() {
    let fx = fixture(65534);
    let run = run_jailer(&fx, b"{not json", false);
    assert_eq!(run.out.status.code(), Some(Step::ReadRequest.exit_code()));
    assert!(matches!(
        run.frames.as_slice(),
        [Report::SetupFailed {
            step: Step::ReadRequest,
            ..
        }]
    ));
}

#[test]
fn allowlist_net_without_an_egress_fd_is_refused() {
    let Some(abi) = need_kernel("allowlist_net_without_an_egress_fd_is_refused") else {
        return;
    };
    let fx = fixture(65534);
    let mut req = request(&fx, abi);
    req.plan.net.mode = aiops_proto::NetMode::Allowlist;
    let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
    assert_eq!(run.out.status.code(), Some(Step::Validate.exit_code()));
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    assert!(
        stderr.contains("net mode allowlist needs the egress proxy's socket (--egress-fd)"),
        "{stderr}"
    );
}

#[test]
fn symlinked_protected_path_is_refused_and_nothing_runs() {
    let Some(abi) = need_kernel("symlinked_protected_path_is_refused_and_nothing_runs") else {
        return;
    };
    let fx = fixture(65534);
    std::os::unix::fs::symlink("/etc", fx.ws.join(".envrc")).unwrap();
    let req = request(&fx, abi);
    let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
    assert_eq!(run.out.status.code(), Some(Step::Mounts.exit_code()));
    assert!(run.out.stdout.is_empty(), "the node ran");
    assert!(
        matches!(
            run.frames.as_slice(),
            [Report::SetupFailed {
                step: Step::Mounts,
                ..
            }]
        ),
        "{:?}",
        run.frames
    );
    assert!(!fx.ws.join("created-inside").exists());
}

#[test]
fn node_exit_code_passes_through_the_parent() {
    let Some(abi) = need_kernel("node_exit_code_passes_through_the_parent") else {
        return;
    };
    let fx = fixture(65534);
    set_script(&fx, "#!/bin/sh\nexit 7\n");
    let run = run_jailer(&fx, &serde_json::to_vec(&request(&fx, abi)).unwrap(), false);
    assert_eq!(
        run.out.status.code(),
        Some(7),
        "{:?}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    // The script denied nothing: the one frame says so.
    assert_eq!(only_denials(&run.frames), SeccompDenials::default());
}

/// The frames are exactly one `SeccompDenials` (from the jailer's parent).
fn only_denials(frames: &[Report]) -> SeccompDenials {
    match frames {
        [Report::SeccompDenials(d)] => d.clone(),
        other => panic!("want one seccomp_denials frame, got {other:?}"),
    }
}

#[test]
fn sigterm_to_the_jailer_reaches_pid_1() {
    use std::io::BufRead;
    let Some(abi) = need_kernel("sigterm_to_the_jailer_reaches_pid_1") else {
        return;
    };
    let fx = fixture(65534);
    // PID 1 gets only signals it handles: the trap makes TERM count.
    set_script(
        &fx,
        "#!/bin/sh\ntrap 'exit 42' TERM\necho ready\nwhile :; do /bin/sleep 0.05; done\n",
    );
    let (mut child, _ours) =
        spawn_jailer(&fx, &serde_json::to_vec(&request(&fx, abi)).unwrap(), false);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn unconfined_plan_runs_on_the_host_without_root() {
    let Some(abi) = need_kernel("unconfined_plan_runs_on_the_host_without_root") else {
        return;
    };
    let fx = fixture(65534);
    set_script(
        &fx,
        "#!/bin/sh\necho \"id=$(/usr/bin/id -u)\"\n/bin/grep -E '^NoNewPrivs:' /proc/self/status | /usr/bin/tr -d '\\t'\necho \"spec=$(/bin/cat <&3)\"\n",
    );
    let req = request_for(&fx, abi, "unconfined");
    assert!(req.plan.unconfined);
    let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
    let stdout = String::from_utf8_lossy(&run.out.stdout).to_string();
    assert!(
        run.out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    let uid = if is_root() {
        65534
    } else {
        nix::unistd::getuid().as_raw()
    };
    assert_eq!(field(&stdout, "id"), uid.to_string());
    assert_eq!(field(&stdout, "NoNewPrivs"), "1");
    let spec: serde_json::Value = serde_json::from_str(field(&stdout, "spec")).unwrap();
    assert_eq!(spec["layers"][0], "unconfined");
}

#[test]
fn plan_binding_another_agentd_is_refused() {
    let Some(abi) = need_kernel("plan_binding_another_agentd_is_refused") else {
        return;
    };
    let fx = fixture(65534);
    let mut req = request(&fx, abi);
    for m in req.plan.mounts.iter_mut() {
        if let aiops_proto::plan::Mount::Bind { src, dst, .. } = m {
            if dst.as_path() == Path::new(aiops_proto::plan::AGENTD_IN_JAIL) {
                *src = AbsPath::new("/bin/sh").unwrap();
            }
        }
    }
    let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
    assert_eq!(run.out.status.code(), Some(Step::Validate.exit_code()));
    assert!(run.out.stdout.is_empty());
}

/// A second bind at agentd's path, after the one the jailer checks, would
/// make another program PID 1 (no timeout, cap, redaction or report):
/// every mount is checked, so the jail is refused before anything runs.
#[test]
fn plan_hiding_agentd_under_a_second_bind_is_refused() {
    let Some(abi) = need_kernel("plan_hiding_agentd_under_a_second_bind_is_refused") else {
        return;
    };
    let fx = fixture(65534);
    // Control: the same request without the second bind runs the fixture's agentd.
    let req = request(&fx, abi);
    let control = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
    assert_eq!(control.out.status.code(), Some(0), "{:?}", control.out);
    let mut req = req;
    req.plan.mounts.push(aiops_proto::plan::Mount::Bind {
        src: AbsPath::new("/bin/sh").unwrap(),
        dst: AbsPath::new(aiops_proto::plan::AGENTD_IN_JAIL).unwrap(),
        writable: false,
        exec: true,
        optional: false,
    });
    let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
    assert_eq!(run.out.status.code(), Some(Step::Validate.exit_code()));
    assert!(run.out.stdout.is_empty());
    let err = String::from_utf8_lossy(&run.out.stderr);
    assert!(err.contains("only one read-only bind"), "{err}");
}

/// Local mode as root: the jail runs as the workspace's owner (or nobody),
/// and every process of that uid could read the node's environment, so a
/// plan with secrets is refused before any secret is opened, saying why
/// and what to do. The control: the same profile without secrets runs, as
/// that uid.
#[test]
fn root_never_hands_secrets_to_another_uid() {
    let test = "root_never_hands_secrets_to_another_uid";
    if !is_root() {
        skip_needs_root(test, "only root hands a jail to another uid");
        return;
    }
    let Some(abi) = need_kernel(test) else {
        return;
    };
    let fx = fixture(aiops_testkit::NOBODY);
    let dir = scratch_dir_named("aiops-prof-", None);
    let profile = dir.path().join("with-secret.toml");
    std::fs::write(
        &profile,
        "schema = 1\nname = \"with-secret\"\ndescription = \"restrictive with a secret\"\n\
         extends = \"restrictive\"\n[env]\nallow = [\"PATH\"]\nsecrets = [\"TOKEN\"]\n",
    )
    .unwrap();
    let secrets = scratch_dir_named("aiops-sec-", None);
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(secrets.path().join("TOKEN"), "tok-root-only").unwrap();
    std::fs::set_permissions(
        secrets.path().join("TOKEN"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let env = BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]);
    let caps: aiops_policy::NodeCaps =
        serde_json::from_value(serde_json::json!({"secrets": ["TOKEN"]})).unwrap();
    let profile = profile.to_str().unwrap();
    let with = aiops_testkit::jail_request_with_caps(
        profile,
        &caps,
        abi,
        &fx.ws,
        &fx.script,
        env.clone(),
        &["/bin/true"],
    );
    let run = |req: &JailRequest| {
        let body = serde_json::to_vec(req).unwrap();
        let (child, ours) =
            spawn_jailer_env(&fx, &body, false, &[("AIOPS_SECRETS_DIR", secrets.path())]);
        let out = child.wait_with_output().unwrap();
        (out, frames(&ours))
    };
    let (out, frames) = run(&with);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(Step::Validate.exit_code()),
        "{stderr}"
    );
    assert!(
        stderr.contains("secrets TOKEN: run as root, this jail would run as uid 65534")
            && stderr.contains("run aiopsctl as uid 65534 itself, or in system mode"),
        "{stderr}"
    );
    assert!(
        matches!(
            frames.as_slice(),
            [Report::SetupFailed {
                step: Step::Validate,
                ..
            }]
        ),
        "{frames:?}"
    );
    assert!(!fx.ws.join("created-inside").exists(), "nothing ran");
    // Control: no secrets, and the jail runs as the workspace's owner.
    let without = aiops_testkit::jail_request_with_caps(
        profile,
        &aiops_policy::NodeCaps::default(),
        abi,
        &fx.ws,
        &fx.script,
        env,
        &["/bin/true"],
    );
    let (out, _) = run(&without);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("id=65534:65534"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fx.ws.join("created-inside").exists());
}

/// Every readable mapping of `pid`'s memory, as one buffer; `Err` when the
/// kernel refuses to open it (a non-dumpable process of our uid, unless we
/// have CAP_SYS_PTRACE).
fn process_memory(pid: u32) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut all = vec![];
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (a, b) = (
            usize::from_str_radix(a, 16).unwrap(),
            usize::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; b - a];
        if mem.seek(SeekFrom::Start(a as u64)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            all.extend_from_slice(&buf);
        }
    }
    Ok(all)
}

/// The jailer's waiting parent lives as long as the jail, as the jail's
/// uid. It must never hold a secret's value (only the jail's PID 1 reads
/// them) and must not be dumpable. Judged from outside: as root (which
/// may read any process's memory) the parent's whole memory is searched
/// for the value; unprivileged, opening its memory must fail. Control:
/// the jail's PID 1 does hold the value (its spec, fd 3), and is readable.
#[test]
fn the_waiting_parent_never_holds_a_secret() {
    let test = "the_waiting_parent_never_holds_a_secret";
    let Some(abi) = need_kernel(test) else {
        return;
    };
    let root = is_root();
    // As root the jailer runs as nobody (root refuses secrets for another uid).
    let jail_uid = if root {
        aiops_testkit::NOBODY
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let fx = fixture(jail_uid);
    set_script(&fx, "#!/bin/sh\nexec /bin/sleep 30\n");
    let dir = scratch_dir_named("aiops-prof-", None);
    let profile = dir.path().join("with-secret.toml");
    std::fs::write(
        &profile,
        "schema = 1\nname = \"with-secret\"\ndescription = \"restrictive with a secret\"\n\
         extends = \"restrictive\"\n[env]\nallow = [\"PATH\"]\nsecrets = [\"TOKEN\"]\n",
    )
    .unwrap();
    let value = format!("tok-in-memory-{}-{}", std::process::id(), abi);
    let secrets = scratch_dir_named("aiops-sec-", Some(jail_uid));
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = secrets.path().join("TOKEN");
    std::fs::write(&file, &value).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown_tree(secrets.path(), Some(jail_uid));
    let caps: aiops_policy::NodeCaps =
        serde_json::from_value(serde_json::json!({"secrets": ["TOKEN"]})).unwrap();
    let env = BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into())]);
    let req = aiops_testkit::jail_request_with_caps(
        profile.to_str().unwrap(),
        &caps,
        abi,
        &fx.ws,
        &fx.script,
        env,
        &["/bin/true"],
    );
    let body = serde_json::to_vec(&req).unwrap();
    let (mut child, _ours) =
        spawn_jailer_env(&fx, &body, root, &[("AIOPS_SECRETS_DIR", secrets.path())]);
    // The waiting parent is the process we started (through setpriv's exec
    // as root); the jail's PID 1 is its only child once it runs `sleep`.
    let parent = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid1 = loop {
        let kids = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        if let Some(k) = kids.split_whitespace().next() {
            let k: u32 = k.parse().unwrap();
            if std::fs::read_link(format!("/proc/{k}/exe")).is_ok_and(|e| e.ends_with("sleep")) {
                break k;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the jail did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Control: the value is in the jail, on PID 1's spec fd.
    let spec = std::fs::read_to_string(format!("/proc/{pid1}/fd/3"));
    let parent_mem = process_memory(parent);
    let _ = child.kill();
    let _ = child.wait();
    let spec = spec.unwrap();
    assert!(
        spec.contains(&value),
        "the control: the jail's PID 1 holds the secret"
    );
    if root {
        let mem = parent_mem.expect("root reads any process's memory");
        assert!(!mem.is_empty());
        assert!(
            !mem.windows(value.len()).any(|w| w == value.as_bytes()),
            "the waiting parent's memory holds the secret"
        );
    } else {
        let e = parent_mem.expect_err("the waiting parent must not be dumpable");
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }
}

/// Local mode checks the plan against its profile too (the search path the
/// invoking user trusts): a plan with one seccomp rule dropped or a
/// writable bind the profile does not list is refused, naming the field.
/// The control: the same request unchanged runs (every test above).
#[test]
fn local_mode_refuses_a_plan_its_profile_does_not_yield() {
    let Some(abi) = need_kernel("local_mode_refuses_a_plan_its_profile_does_not_yield") else {
        return;
    };
    let owner = if is_root() {
        aiops_testkit::NOBODY
    } else {
        nix::unistd::geteuid().as_raw()
    };
    let fx = fixture(owner);
    let ok = run_jailer(&fx, &serde_json::to_vec(&request(&fx, abi)).unwrap(), false);
    assert!(
        ok.out.status.success(),
        "control: {}",
        String::from_utf8_lossy(&ok.out.stderr)
    );
    type Attack = fn(&mut JailRequest);
    let attacks: [(Attack, &str); 4] = [
        (
            |r| {
                r.plan.seccomp.as_mut().unwrap().deny_eperm.pop();
            },
            "outside the ceiling: plan.seccomp.deny_eperm[",
        ),
        (
            |r| {
                r.plan.mounts.push(aiops_proto::plan::Mount::Bind {
                    src: AbsPath::new("/var/tmp").unwrap(),
                    dst: AbsPath::new("/var/tmp").unwrap(),
                    writable: true,
                    exec: false,
                    optional: false,
                });
                r.plan.guard.roots.push(AbsPath::new("/var/tmp").unwrap());
            },
            // (The JSON paths compare in name order: guard before mounts.)
            "outside the ceiling: plan.guard.roots[1]",
        ),
        // A wider search bound (or none) would let a tree go unsearched.
        (
            |r| r.plan.guard.max_depth = u32::MAX,
            "outside the ceiling: plan.guard.max_depth",
        ),
        (|r| r.plan.guard.roots.clear(), "guard.roots: "),
    ];
    for (attack, says) in attacks {
        let mut req = request(&fx, abi);
        attack(&mut req);
        let run = run_jailer(&fx, &serde_json::to_vec(&req).unwrap(), false);
        let stderr = String::from_utf8_lossy(&run.out.stderr);
        assert_eq!(
            run.out.status.code(),
            Some(Step::Validate.exit_code()),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(
            String::from_utf8_lossy(&run.out.stdout).is_empty(),
            "nothing ran"
        );
    }
}
