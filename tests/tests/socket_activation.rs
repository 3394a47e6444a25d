//! System mode without systemd: the test plays systemd's part for
//! aiops-jailer.socket (`Accept=yes`): it binds the listener, accepts, and
//! execs `aiops-jailer --socket-activated` with the connection as fd 3 and
//! LISTEN_FDS=1 / LISTEN_PID set, the way systemd starts an
//! aiops-jailer@.service instance. The supervisor side is the real
//! `exec::socket`. Layers under test: the peer check (SO_PEERCRED against
//! AIOPS_SUPERVISOR_USER), the jail's tie to the supervisor's connection,
//! and the ceiling: every request is compared with what a root-owned
//! profile yields (`SystemCeiling`), so a hostile supervisor gets no more.
//! As in production the jailer runs unprivileged (as nobody when the test
//! is root; systemd runs it as aiops-jail), and a ceiling root does not own
//! is refused, so the tests that run a node need root.
#![allow(clippy::unwrap_used)]

use aiops_policy::{AbsPath, JailPlan, NodeCaps};
use aiops_proto::Step;
use aiops_supervisor::exec::socket;
use aiops_supervisor::exec::{Jail, JailStdio, JailerFds};
use aiops_supervisor::{context, facts, locate};
use aiops_tests::{
    as_nobody, bin, euid, is_root, must_work, scratch_dir, skip, skip_needs_root, SystemCeiling,
    NOBODY,
};
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
    // System mode: jailer.toml fixes `$HOME`, the supervisor's own.
    let mut ctx = context::host_context(Some(ws), None, context::Home::Invoker).unwrap();
    // The jailer binds the agentd next to itself; the test binary is elsewhere.
    ctx.agentd = AbsPath::new(bin("aiops-agentd")).unwrap();
    // As under systemd: no TMPDIR (system-mode jails have their own /tmp).
    ctx.vars.tmpdir = Some(AbsPath::new("/tmp").unwrap());
    let facts = facts::facts_for(&profile);
    aiops_policy::compile(&profile, caps, &facts, &ctx).unwrap()
}

/// System mode's ceiling allowing `profiles`, or a skip when not root.
fn ceiling(test: &str, profiles: &[&str]) -> Option<SystemCeiling> {
    let c = SystemCeiling::new(profiles, "");
    if c.is_none() {
        skip_needs_root(
            test,
            "system mode's ceiling (jailer.toml, profiles) must be owned by root",
        );
    }
    c
}

/// systemd's part: accept one connection and exec the jailer on it as fd 3.
fn activate(listener: &UnixListener, supervisor_user: &str, ceiling: &SystemCeiling) -> Child {
    activate_with(
        listener,
        supervisor_user,
        &[("AIOPS_JAILER_CONFIG", &ceiling.config)],
    )
}

fn activate_with(listener: &UnixListener, supervisor_user: &str, env: &[(&str, &Path)]) -> Child {
    let (conn, _) = listener.accept().unwrap();
    // Unprivileged, as aiops-jail is under systemd.
    let mut cmd = if is_root() {
        as_nobody("/bin/sh")
    } else {
        Command::new("/bin/sh")
    };
    cmd.arg("-c")
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
    let Some(c) = ceiling(test, &["restrictive"]) else {
        return;
    };
    let ws = scratch_dir(owner());
    let plan = plan_for(ws.path());
    let (_d, sock, l) = listener();
    let (jail, mut out) = start(
        &sock,
        &plan,
        &["/bin/sh", "-c", "echo socket-ok; echo written > out"],
    );
    let mut jailer = activate(&l, &euid().to_string(), &c);
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
    let mut jailer = activate_with(&l, &other, &[]);
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
    let Some(c) = ceiling(test, &["restrictive"]) else {
        return;
    };
    let ws = scratch_dir(owner());
    let plan = plan_for(ws.path());
    let (_d, sock, l) = listener();
    let (jail, out) = start(&sock, &plan, &["/bin/sh", "-c", "echo up; exec sleep 60"]);
    let mut jailer = activate(&l, &euid().to_string(), &c);
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
    let test = "secrets_come_from_the_credentials_directory";
    let Some(c) = ceiling(test, &["with-secret"]) else {
        return;
    };
    let ws = scratch_dir(owner());
    let profile = aiops_tests::write_profile(
        &c.profile_dir,
        "with-secret",
        "schema = 1\nname = \"with-secret\"\ndescription = \"restrictive with two secrets\"\n\
         extends = \"restrictive\"\n\
         [env]\nallow = [\"PATH\"]\nsecrets = [\"AIOPS_TEST_TOKEN\", \"AIOPS_OTHER\"]\n",
    );
    let caps: NodeCaps = toml_caps("secrets = [\"AIOPS_TEST_TOKEN\"]\n");
    let plan = plan_with(ws.path(), profile.to_str().unwrap(), &caps);
    let creds = credentials(&[("AIOPS_TEST_TOKEN", "tok-123\n"), ("AIOPS_OTHER", "other")]);
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
            ("AIOPS_JAILER_CONFIG", &c.config),
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

/// A credentials directory as systemd leaves it for the jailer's uid: root's
/// files, 0440, readable through the group bits (systemd uses an ACL; here
/// the group is the unprivileged jailer's, nobody's).
fn credentials(files: &[(&str, &str)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let creds = tempfile::Builder::new()
        .prefix("aiops-creds-")
        .tempdir_in(aiops_tests::test_tmp())
        .unwrap();
    std::fs::set_permissions(creds.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let group = is_root().then(|| nix::unistd::Gid::from_raw(NOBODY));
    nix::unistd::chown(creds.path(), None, group).unwrap();
    for (name, value) in files {
        let f = creds.path().join(name);
        std::fs::write(&f, value).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o440)).unwrap();
        nix::unistd::chown(&f, None, group).unwrap();
    }
    creds
}

/// What one request came to: the report, the jailer's stderr and the
/// node's stdout.
struct Outcome {
    report: aiops_supervisor::exec::ExecReport,
    err: String,
    stdout: String,
}

/// Send `plan` as the supervisor uid to a socket-activated jailer under
/// `c`, with `creds` as its credentials directory.
fn send(c: &SystemCeiling, creds: &Path, plan: &JailPlan, argv: &[&str]) -> Outcome {
    let (_d, sock, l) = listener();
    let (jail, mut out) = start(&sock, plan, argv);
    let mut jailer = activate_with(
        &l,
        &euid().to_string(),
        &[
            ("CREDENTIALS_DIRECTORY", creds),
            ("AIOPS_JAILER_CONFIG", &c.config),
        ],
    );
    let report = jail.wait().unwrap();
    wait_with_deadline(&mut jailer, Duration::from_secs(10)).expect("jailer exits");
    let err = stderr_of(&mut jailer);
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    Outcome {
        report,
        err,
        stdout,
    }
}

/// Issue 15's hostile requests, each sent as the supervisor's uid (the
/// one the jailer accepts) with a plan the ceiling does not yield. Each
/// must be refused at step `validate` with an error naming the field or
/// path, and nothing may run: the node would print a credential, write
/// to another run's workspace, or leave a marker. The control: the
/// legitimate request for the same profile runs, prints and writes.
#[test]
fn hostile_requests_from_the_supervisor_uid_are_refused_by_the_ceiling() {
    use aiops_policy::plan::{Mount, AGENTD_IN_JAIL};
    let test = "hostile_requests_from_the_supervisor_uid_are_refused_by_the_ceiling";
    let Some(c) = ceiling(test, &["restrictive", "with-secret"]) else {
        return;
    };
    aiops_tests::write_profile(
        &c.profile_dir,
        "with-secret",
        "schema = 1\nname = \"with-secret\"\ndescription = \"restrictive with one secret\"\n\
         extends = \"restrictive\"\n[env]\nallow = [\"PATH\"]\nsecrets = [\"AIOPS_TEST_TOKEN\"]\n",
    );
    let creds = credentials(&[
        ("AIOPS_TEST_TOKEN", "tok-123"),
        ("AIOPS_OTHER", "other-credential"),
    ]);
    let ws = scratch_dir(owner());
    // Another run's workspace, which this node must not touch.
    let other = scratch_dir(owner());
    std::fs::write(other.path().join("victim"), "original\n").unwrap();
    // Writable by the jail's uid, so only the jail's layers stand in the way.
    aiops_tests::chown_to(&other.path().join("victim"), owner());
    let marker = ws.path().join("ran");
    let script = format!(
        "echo ran > {m}; echo \"token=${{AIOPS_TEST_TOKEN:-}} other=${{AIOPS_OTHER:-}}\"; \
         cat {cr}/* 2>/dev/null; echo hacked > {v} 2>/dev/null; true",
        m = marker.display(),
        cr = creds.path().display(),
        v = other.path().join("victim").display(),
    );
    let argv = ["/bin/sh", "-c", script.as_str()];
    let legit = plan_for(ws.path());

    // The control: the same profile's own plan runs.
    let ok = send(&c, creds.path(), &legit, &argv);
    if layer_missing(test, &ok.report) {
        return;
    }
    assert_eq!(ok.report.status, 0, "{:?} {}", ok.report, ok.err);
    assert_eq!(ok.stdout, "token= other=\n", "{}", ok.err);
    assert!(marker.exists(), "the control must run");
    std::fs::remove_file(&marker).unwrap();

    fn bind(src: &Path, dst: &Path, writable: bool) -> Mount {
        Mount::Bind {
            src: AbsPath::new(src).unwrap(),
            dst: AbsPath::new(dst).unwrap(),
            writable,
            exec: false,
            optional: false,
        }
    }
    fn secret(s: &str) -> aiops_policy::EnvName {
        aiops_policy::EnvName::parse(s).unwrap()
    }
    type Attack = Box<dyn Fn(&mut JailPlan)>;
    let other_ws = other.path().to_path_buf();
    let creds_dir = creds.path().to_path_buf();
    let attacks: Vec<(&str, Attack, &str)> = vec![
        (
            "a secret no profile declares",
            Box::new(move |p| p.secrets.push(secret("AIOPS_OTHER"))),
            "plan.secrets[0]",
        ),
        (
            "a secret the node's caps claim but the profile lacks",
            Box::new(move |p| {
                p.source.caps = serde_json::json!({"secrets": ["AIOPS_OTHER"]});
                p.secrets.push(secret("AIOPS_OTHER"));
            }),
            "secrets[0]",
        ),
        (
            "seccomp, Landlock and rlimits removed, require emptied",
            Box::new(|p| {
                p.seccomp = None;
                p.landlock = None;
                p.rlimits.clear();
                p.require.clear();
            }),
            "plan.landlock: the request has null",
        ),
        (
            "one seccomp rule dropped",
            Box::new(|p| {
                p.seccomp.as_mut().unwrap().deny_eperm.pop();
            }),
            "plan.seccomp.deny_eperm[",
        ),
        (
            "Landlock's rule for / widened to every right",
            Box::new(|p| {
                let ll = p.landlock.as_mut().unwrap();
                let all = ll.handled_fs.clone();
                ll.fs
                    .iter_mut()
                    .find(|r| r.path.as_path() == Path::new("/"))
                    .unwrap()
                    .access = all;
            }),
            "plan.landlock.fs[0].access",
        ),
        (
            "the memory limit raised",
            Box::new(|p| {
                p.rlimits[0].soft *= 4;
                p.rlimits[0].hard *= 4;
            }),
            "plan.rlimits[0]",
        ),
        (
            "require emptied",
            Box::new(|p| p.require.clear()),
            "plan.require",
        ),
        (
            "a longer timeout",
            Box::new(|p| p.run.timeout_ms *= 10),
            "plan.run.timeout_ms",
        ),
        (
            "net mode loopback",
            Box::new(|p| p.net.mode = aiops_policy::NetMode::Loopback),
            "plan.net.mode",
        ),
        (
            "a host variable the profile does not pass",
            Box::new(|p| {
                p.env.insert("AWS_SECRET_ACCESS_KEY".into(), "x".into());
            }),
            "plan.env.AWS_SECRET_ACCESS_KEY",
        ),
        (
            "unconfined",
            Box::new(|p| {
                p.unconfined = true;
                p.namespaces.clear();
                p.mounts.clear();
                p.landlock = None;
                p.seccomp = None;
                p.net.mode = aiops_policy::NetMode::Host;
            }),
            "unconfined",
        ),
        (
            "the unconfined profile",
            Box::new(|p| p.profile = "unconfined".into()),
            "\"unconfined\" is not one of the profiles",
        ),
        (
            "another run's workspace read-write",
            Box::new(move |p| {
                p.mounts.push(bind(&other_ws, &other_ws, true));
                // Searched too, or validate refuses it before the ceiling.
                p.guard
                    .roots
                    .push(aiops_policy::AbsPath::new(&other_ws).unwrap());
            }),
            "outside the ceiling: plan.guard.roots[1]",
        ),
        (
            "the credentials directory read-write",
            Box::new(move |p| {
                p.mounts.push(bind(&creds_dir, &creds_dir, true));
                // Searched too, or validate refuses it before the ceiling.
                p.guard
                    .roots
                    .push(aiops_policy::AbsPath::new(&creds_dir).unwrap());
            }),
            "outside the ceiling: plan.guard.roots[1]",
        ),
        (
            "a second bind over agentd",
            Box::new(|p| {
                p.mounts
                    .push(bind(Path::new("/bin/sh"), Path::new(AGENTD_IN_JAIL), false))
            }),
            "only one read-only bind may land at /.aiops/aiops-agentd",
        ),
        (
            "a workspace outside the workspace root",
            Box::new(|p| p.source.workspace = Some(aiops_policy::AbsPath::new("/etc").unwrap())),
            "source.workspace",
        ),
        (
            "another home",
            Box::new(|p| p.source.home = Some(aiops_policy::AbsPath::new("/etc/ssh").unwrap())),
            "source.home",
        ),
    ];
    for (what, attack, says) in &attacks {
        let mut plan = legit.clone();
        attack(&mut plan);
        let got = send(&c, creds.path(), &plan, &argv);
        let failed = got.report.setup_failed.as_ref();
        assert_eq!(
            failed.map(|f| f.step),
            Some(Step::Validate),
            "{what}: {:?} {}",
            got.report,
            got.err
        );
        let msg = &failed.unwrap().message;
        assert!(msg.contains(says), "{what}: {msg}");
        assert_eq!(got.stdout, "", "{what}: the node ran");
        assert!(!marker.exists(), "{what}: the node ran");
        assert_eq!(
            std::fs::read_to_string(other.path().join("victim")).unwrap(),
            "original\n",
            "{what}"
        );
        eprintln!("refused {what}: {msg}");
    }

    // A wider profile under the same name, from a directory the supervisor
    // controls ($AIOPS_PROFILE_PATH on its side): the jailer reads only its own.
    let evil = tempfile::tempdir().unwrap();
    let wide = aiops_tests::write_profile(
        evil.path(),
        "restrictive",
        &std::fs::read_to_string(aiops_tests::repo_root().join("profiles/restrictive.toml"))
            .unwrap()
            .replace(
                "write = [\"$WORKSPACE\"]",
                &format!("write = [\"$WORKSPACE\", {:?}]", other.path()),
            ),
    );
    let plan = plan_with(ws.path(), wide.to_str().unwrap(), &NodeCaps::default());
    assert!(
        plan.mounts.iter().any(|m| matches!(m, Mount::Bind { src, writable: true, .. } if src.as_path() == other.path())),
        "the wider profile must grant the other workspace: {:?}",
        plan.mounts
    );
    let got = send(&c, creds.path(), &plan, &argv);
    let msg = got
        .report
        .setup_failed
        .map(|f| f.message)
        .unwrap_or_default();
    assert!(
        msg.contains("profile restrictive yields"),
        "{msg} {}",
        got.err
    );
    assert!(!marker.exists());
    assert_eq!(
        std::fs::read_to_string(other.path().join("victim")).unwrap(),
        "original\n"
    );
    // The attack's control: where root's own ceiling is that wider profile,
    // the same request runs and does write the other workspace.
    let lax = SystemCeiling::new(&["restrictive"], "").unwrap();
    std::fs::copy(&wide, lax.profile_dir.join("restrictive.toml")).unwrap();
    let got = send(&lax, creds.path(), &plan, &argv);
    assert_eq!(got.report.status, 0, "{:?} {}", got.report, got.err);
    assert_eq!(
        std::fs::read_to_string(other.path().join("victim")).unwrap(),
        "hacked\n",
        "the wider plan, once allowed, reaches the other workspace"
    );
}

/// The credentials directory is covered in every jail's mount namespace:
/// even a profile root allows that lists it (an operator's mistake) binds
/// an empty directory. The control: the same plan from a jailer with no
/// credentials directory set (nothing to cover) prints the files, so the
/// bind itself reaches them.
#[test]
fn a_profile_that_lists_the_credentials_directory_sees_it_empty() {
    let test = "a_profile_that_lists_the_credentials_directory_sees_it_empty";
    let Some(c) = ceiling(test, &["leaky"]) else {
        return;
    };
    let creds = credentials(&[("AIOPS_TEST_TOKEN", "tok-leaked")]);
    aiops_tests::write_profile(
        &c.profile_dir,
        "leaky",
        &format!(
            "schema = 1\nname = \"leaky\"\ndescription = \"restrictive that also reads the credentials\"\n\
             extends = \"restrictive\"\n[fs]\nread = [\"/usr\", \"/bin\", \"/sbin\", \"/lib\", \"/lib32\", \"/lib64\", \"/etc\", {:?}]\n",
            creds.path()
        ),
    );
    let ws = scratch_dir(owner());
    let plan = plan_with(
        ws.path(),
        c.profile_dir.join("leaky.toml").to_str().unwrap(),
        &NodeCaps::default(),
    );
    let script = format!("cat {}/* 2>&1; true", creds.path().display());
    let argv = ["/bin/sh", "-c", script.as_str()];
    let covered = send(&c, creds.path(), &plan, &argv);
    if layer_missing(test, &covered.report) {
        return;
    }
    assert_eq!(
        covered.report.status, 0,
        "{:?} {}",
        covered.report, covered.err
    );
    assert!(!covered.stdout.contains("tok-leaked"), "{}", covered.stdout);
    // Control: no credentials directory for this jailer, nothing covered.
    let (_d, sock, l) = listener();
    let (jail, mut out) = start(&sock, &plan, &argv);
    let mut jailer = activate(&l, &euid().to_string(), &c);
    let report = jail.wait().unwrap();
    wait_with_deadline(&mut jailer, Duration::from_secs(10)).expect("jailer exits");
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    assert_eq!(report.status, 0, "{report:?} {}", stderr_of(&mut jailer));
    assert_eq!(
        stdout, "tok-leaked",
        "the bind reaches the files when nothing covers them"
    );
}

/// The ceiling itself must be root's: a profile file others may write, or
/// that another uid owns, and jailer.toml the same, refuse every request,
/// naming the path. The control: the untouched ceiling runs the node.
#[test]
fn a_ceiling_that_is_not_roots_alone_is_refused_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let test = "a_ceiling_that_is_not_roots_alone_is_refused_naming_the_path";
    let Some(c) = ceiling(test, &["restrictive"]) else {
        return;
    };
    let ws = scratch_dir(owner());
    let plan = plan_for(ws.path());
    let argv = ["/bin/sh", "-c", "echo ran"];
    let creds = credentials(&[]);
    let ok = send(&c, creds.path(), &plan, &argv);
    if layer_missing(test, &ok.report) {
        return;
    }
    assert_eq!(
        ok.stdout, "ran\n",
        "the control: {:?} {}",
        ok.report, ok.err
    );
    let profile = c.profile_dir.join("restrictive.toml");
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    type Tamper = Box<dyn Fn(bool)>;
    let (p1, p2, p3, cfg) = (
        profile.clone(),
        profile.clone(),
        c.profile_dir.clone(),
        c.config.clone(),
    );
    let cases: Vec<(Tamper, String)> = vec![
        (
            Box::new(move |on| mode(&p1, if on { 0o666 } else { 0o644 })),
            format!(
                "{} has mode 666: group or others may write it",
                profile.display()
            ),
        ),
        (
            Box::new(move |on| {
                let uid = nix::unistd::Uid::from_raw(if on { NOBODY } else { 0 });
                nix::unistd::chown(&p2, Some(uid), None).unwrap();
            }),
            format!("{} is owned by uid {NOBODY}, not root", profile.display()),
        ),
        (
            Box::new(move |on| mode(&p3, if on { 0o775 } else { 0o755 })),
            format!("{} has mode 775", c.profile_dir.display()),
        ),
        (
            Box::new(move |on| mode(&cfg, if on { 0o664 } else { 0o644 })),
            format!("{} has mode 664", c.config.display()),
        ),
    ];
    for (tamper, says) in &cases {
        tamper(true);
        let got = send(&c, creds.path(), &plan, &argv);
        tamper(false);
        let msg = got
            .report
            .setup_failed
            .map(|f| f.message)
            .unwrap_or_default();
        assert!(
            msg.contains(says.as_str()),
            "want {says:?}, got {msg:?} {}",
            got.err
        );
        assert_eq!(got.stdout, "", "{says}: the node ran");
    }
}
