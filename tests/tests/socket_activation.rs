//! System mode without systemd: the test plays systemd's part for
//! aiops-jailer.socket (`Accept=yes`): it binds the listener, accepts, and
//! execs `aiops-jailer --socket-activated` with the connection as fd 3 and
//! LISTEN_FDS=1 / LISTEN_PID set, the way systemd starts an
//! aiops-jailer@.service instance. The supervisor side is the real
//! `exec::socket`. Layers under test: the peer check (SO_PEERCRED against
//! AIOPS_SUPERVISOR_USER) and the jail's tie to the supervisor's connection.
#![allow(clippy::unwrap_used)]

use aiops_policy::{AbsPath, JailPlan, NodeCaps};
use aiops_proto::Step;
use aiops_supervisor::exec::socket;
use aiops_supervisor::exec::{Jail, JailStdio, JailerFds};
use aiops_supervisor::{context, facts, locate};
use aiops_tests::{bin, euid, is_root, must_work, scratch_dir, skip, NOBODY};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace owner: a root-run jail runs as it (never as host root).
fn owner() -> Option<u32> {
    is_root().then_some(NOBODY)
}

fn plan_for(ws: &Path) -> JailPlan {
    plan_with(ws, "restrictive", &NodeCaps::default())
}

fn plan_with(ws: &Path, profile: &str, caps: &NodeCaps) -> JailPlan {
    let profile = locate::profile_loader().load(profile).unwrap();
    let mut ctx = context::host_context(Some(ws), None).unwrap();
    // The jailer binds the agentd next to itself; the test binary is elsewhere.
    ctx.agentd = AbsPath::new(bin("aiops-agentd")).unwrap();
    let facts = facts::facts_for(&profile);
    aiops_policy::compile(&profile, caps, &facts, &ctx).unwrap()
}

/// systemd's part: accept one connection and exec the jailer on it as fd 3.
fn activate(listener: &UnixListener, supervisor_user: &str) -> Child {
    activate_with(listener, supervisor_user, &[])
}

fn activate_with(listener: &UnixListener, supervisor_user: &str, env: &[(&str, &Path)]) -> Child {
    let (conn, _) = listener.accept().unwrap();
    Command::new("/bin/sh")
        .arg("-c")
        // $$ is the shell's pid, which exec hands to the jailer.
        .arg(r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" --socket-activated"#)
        .arg(bin("aiops-jailer"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AIOPS_SUPERVISOR_USER", supervisor_user)
        .envs(env.iter().copied())
        .stdin(Stdio::from(OwnedFd::from(conn)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Start `argv` with its stdout on a pipe (stdin and stderr /dev/null), as
/// the daemon does with its output files; returns the pipe's read end.
fn start(sock: &Path, plan: &JailPlan, argv: &[&str]) -> (Jail, std::fs::File) {
    let (r, w) = std::io::pipe().unwrap();
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let stdio = JailStdio::Files {
        stdout: std::fs::File::from(OwnedFd::from(w)),
        stderr: null,
    };
    let jail = socket::start_with(
        sock,
        &stdio,
        &JailerFds::default(),
        "socket-test",
        &argv,
        plan,
    )
    .unwrap();
    // Only the jail holds the write end now: EOF on the pipe means it is gone.
    drop(stdio);
    (jail, std::fs::File::from(OwnedFd::from(r)))
}

fn wait_with_deadline(child: &mut Child, d: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixListener) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("jailer.sock");
    let l = UnixListener::bind(&p).unwrap();
    (d, p, l)
}

/// True when the kernel refused a namespace layer (reported as a skip).
fn layer_missing(test: &str, r: &aiops_supervisor::exec::ExecReport) -> bool {
    match &r.setup_failed {
        Some(f)
            if matches!(f.step, Step::Unshare | Step::IdMaps | Step::Mounts) && !must_work() =>
        {
            skip(test, &format!("the kernel refused the jail: {}", f.message));
            true
        }
        _ => false,
    }
}

#[test]
fn a_node_runs_through_the_socket_activated_jailer() {
    let test = "a_node_runs_through_the_socket_activated_jailer";
    let ws = scratch_dir(owner());
    let plan = plan_for(ws.path());
    let (_d, sock, l) = listener();
    let (jail, mut out) = start(
        &sock,
        &plan,
        &["/bin/sh", "-c", "echo socket-ok; echo written > out"],
    );
    let mut jailer = activate(&l, &euid().to_string());
    let report = jail.wait().unwrap();
    let status = wait_with_deadline(&mut jailer, Duration::from_secs(10)).expect("jailer exits");
    let err = stderr_of(&mut jailer);
    if layer_missing(test, &report) {
        return;
    }
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    assert_eq!(
        report.setup_failed.as_ref().map(|f| &f.message),
        None,
        "{err}"
    );
    assert_eq!(stdout, "socket-ok\n", "jailer stderr: {err}");
    assert_eq!(report.status, 0, "{report:?}");
    let exit = report.exit.as_ref().unwrap();
    for layer in ["userns", "netns", "pivot_root", "no_new_privs"] {
        assert!(
            exit.layers.iter().any(|l| l == layer),
            "{layer}: {:?}",
            exit.layers
        );
    }
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out")).unwrap(),
        "written\n"
    );
}

#[test]
fn a_peer_with_another_uid_is_refused_and_nothing_runs() {
    let ws = scratch_dir(owner());
    let plan = plan_for(ws.path());
    let (_d, sock, l) = listener();
    let (jail, mut out) = start(&sock, &plan, &["/bin/sh", "-c", "echo ran > out"]);
    let other = euid().wrapping_add(4242).to_string();
    let mut jailer = activate(&l, &other);
    let report = jail.wait().unwrap();
    let status = wait_with_deadline(&mut jailer, Duration::from_secs(10)).expect("jailer exits");
    let err = stderr_of(&mut jailer);
    assert_eq!(status.code(), Some(Step::ReadRequest.exit_code()), "{err}");
    assert!(
        err.contains(&format!("refuse connection from uid {}", euid())),
        "{err}"
    );
    assert!(
        report.exit.is_none() && report.setup_failed.is_none(),
        "{report:?}"
    );
    assert_eq!(report.status, aiops_proto::exit::INTERNAL);
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    assert_eq!(stdout, "");
    assert!(!ws.path().join("out").exists());
}

#[test]
fn cancelling_the_connection_kills_the_jail() {
    let test = "cancelling_the_connection_kills_the_jail";
    let ws = scratch_dir(owner());
    let plan = plan_for(ws.path());
    let (_d, sock, l) = listener();
    let (jail, out) = start(&sock, &plan, &["/bin/sh", "-c", "echo up; exec sleep 60"]);
    let mut jailer = activate(&l, &euid().to_string());
    let mut first = String::new();
    BufReader::new(&out).read_line(&mut first).unwrap();
    if first != "up\n" {
        let status = wait_with_deadline(&mut jailer, Duration::from_secs(10));
        let err = stderr_of(&mut jailer);
        if !must_work() && err.contains("unshare") {
            skip(test, &format!("the kernel refused the jail: {err}"));
            return;
        }
        panic!("the node did not start: {status:?} {err}");
    }
    // As the daemon cancels: from another thread than the one waiting.
    let stopper = jail.stopper();
    let waiter = std::thread::spawn(move || jail.wait().unwrap());
    let t = Instant::now();
    stopper.stop();
    let status = wait_with_deadline(&mut jailer, Duration::from_secs(10)).expect("jailer exits");
    let report = waiter.join().unwrap();
    assert!(report.exit.is_none(), "{report:?}");
    assert_eq!(status.code(), Some(128 + 9));
    // sleep held the stdout pipe: EOF means it is gone too.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = vec![];
        let _ = (&out).read_to_end(&mut rest);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the node (sleep 60) outlived the connection");
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// `LoadCredential=` secrets: the jailer reads `$CREDENTIALS_DIRECTORY` in
/// socket mode (files as systemd leaves them: group bits from the ACL
/// mask), injects only what the node declares, and ignores
/// `AIOPS_SECRETS_DIR`.
#[test]
fn secrets_come_from_the_credentials_directory() {
    use std::os::unix::fs::PermissionsExt;
    let test = "secrets_come_from_the_credentials_directory";
    let ws = scratch_dir(owner());
    let profiles = tempfile::tempdir().unwrap();
    let profile = aiops_tests::write_profile(
        profiles.path(),
        "with-secret",
        "schema = 1\nname = \"with-secret\"\ndescription = \"restrictive with two secrets\"\n\
         extends = \"restrictive\"\n\
         [env]\nallow = [\"PATH\"]\nsecrets = [\"AIOPS_TEST_TOKEN\", \"AIOPS_OTHER\"]\n",
    );
    let caps: NodeCaps = toml_caps("secrets = [\"AIOPS_TEST_TOKEN\"]\n");
    let plan = plan_with(ws.path(), profile.to_str().unwrap(), &caps);
    let creds = tempfile::tempdir().unwrap();
    std::fs::set_permissions(creds.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    for (name, value) in [("AIOPS_TEST_TOKEN", "tok-123\n"), ("AIOPS_OTHER", "other")] {
        let f = creds.path().join(name);
        std::fs::write(&f, value).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
    // A decoy that socket mode must not read.
    let decoy = tempfile::tempdir().unwrap();
    let (_d, sock, l) = listener();
    let (jail, mut out) = start(
        &sock,
        &plan,
        &[
            "/bin/sh",
            "-c",
            "[ \"$AIOPS_TEST_TOKEN\" = \"$1\" ] && echo token-ok; [ -z \"${AIOPS_OTHER+x}\" ] && echo other-absent",
            "sh",
            "tok-123",
        ],
    );
    let mut jailer = activate_with(
        &l,
        &euid().to_string(),
        &[
            ("CREDENTIALS_DIRECTORY", creds.path()),
            ("AIOPS_SECRETS_DIR", decoy.path()),
        ],
    );
    let report = jail.wait().unwrap();
    wait_with_deadline(&mut jailer, Duration::from_secs(10)).expect("jailer exits");
    let err = stderr_of(&mut jailer);
    if layer_missing(test, &report) {
        return;
    }
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    assert_eq!(stdout, "token-ok\nother-absent\n", "{report:?} {err}");
    assert_eq!(report.status, 0);
}

fn toml_caps(text: &str) -> NodeCaps {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("caps.toml");
    std::fs::write(&p, text).unwrap();
    NodeCaps::from_toml_file(&p).unwrap()
}
