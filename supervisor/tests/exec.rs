//! `aiopsctl exec` through the real jailer and agentd: net modes and the
//! documented exit codes. The attack suite lives in tests/ (aiops-tests).
#![allow(clippy::unwrap_used)]
use aiops_testkit::skip;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn built() -> bool {
    let dir = Path::new(env!("CARGO_BIN_EXE_aiopsctl")).parent().unwrap();
    let ok = ["aiops-jailer", "aiops-agentd"]
        .iter()
        .all(|b| dir.join(b).exists());
    if !ok {
        skip(
            "exec tests",
            "jailer/agentd not built (cargo build --workspace)",
        );
    }
    ok
}

/// A workspace the jail's uid can enter (as root, jails run as nobody).
fn workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        ws.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    ws
}

fn exec(ws: &Path, profile: &str, argv: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .args(["exec", "--profile", profile, "--workspace"])
        .arg(ws)
        .arg("--")
        .args(argv)
        .env_remove("AIOPS_PROFILE_PATH")
        .output()
        .unwrap()
}

fn loopback_profile(dir: &Path) -> PathBuf {
    let p = dir.join("lb.toml");
    std::fs::write(
        &p,
        "schema = 1\nname = \"lb\"\ndescription = \"restrictive with a private loopback\"\n\
         extends = \"restrictive\"\n[net]\nmode = \"loopback\"\n",
    )
    .unwrap();
    p
}

const UDP_ECHO: &str = "import socket\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
s.settimeout(2)\n\
s.bind(('127.0.0.1', 0))\n\
s.sendto(b'x', s.getsockname())\n\
print(s.recv(1).decode())";

#[test]
fn net_none_has_no_loopback_and_net_loopback_has_its_own() {
    if !built() || !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let ws = workspace();
    let none = exec(
        ws.path(),
        "restrictive",
        &["/usr/bin/python3", "-c", UDP_ECHO],
    );
    assert_ne!(none.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&none.stderr).contains("Network is unreachable"));
    let dir = tempfile::tempdir().unwrap();
    let lb = loopback_profile(dir.path());
    let o = exec(
        ws.path(),
        lb.to_str().unwrap(),
        &["/usr/bin/python3", "-c", UDP_ECHO],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "x");
}

#[test]
fn exit_codes_are_the_documented_ones() {
    if !built() {
        return;
    }
    let ws = workspace();
    let code = |argv: &[&str]| exec(ws.path(), "restrictive", argv).status.code();
    assert_eq!(code(&["sh", "-c", "exit 7"]), Some(7));
    assert_eq!(code(&["sh", "-c", "kill -USR1 $$"]), Some(128 + 10));
    assert_eq!(code(&["no-such-command-here"]), Some(127));
    assert_eq!(code(&["/etc/hostname"]), Some(126));
    let slow = Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .args([
            "exec",
            "--profile",
            "restrictive",
            "--timeout",
            "1s",
            "--workspace",
        ])
        .arg(ws.path())
        .args(["--", "sleep", "30"])
        .output()
        .unwrap();
    assert_eq!(slow.status.code(), Some(124));
    // Refusal: a limit above the profile, never run weaker.
    let over = Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .args([
            "exec",
            "--profile",
            "restrictive",
            "--timeout",
            "9h",
            "--workspace",
        ])
        .arg(ws.path())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(over.status.code(), Some(122));
    assert!(String::from_utf8_lossy(&over.stderr).contains("limits.timeout"));
    // `agent` (net = "allowlist") runs, with the egress proxy in aiopsctl.
    assert_eq!(code_for(ws.path(), "agent"), Some(0));
}

fn code_for(ws: &Path, profile: &str) -> Option<i32> {
    exec(ws, profile, &["true"]).status.code()
}

/// `aiopsctl exec` with extra options before `--`.
fn exec_with(ws: &Path, profile: &str, opts: &[&str], argv: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
        .args(["exec", "--profile", profile, "--workspace"])
        .arg(ws)
        .args(opts)
        .arg("--")
        .args(argv)
        .env_remove("AIOPS_PROFILE_PATH")
        .env("TERM", "aiops-test-term")
        .output()
        .unwrap()
}

fn out_err(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A directory (and its file `f`) the jail's uid can read and write.
fn open_dir(content: &str) -> tempfile::TempDir {
    let d = workspace();
    std::fs::write(d.path().join("f"), content).unwrap();
    std::fs::set_permissions(
        d.path().join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    d
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const SYSTEM_READ: &str =
    "[\"/usr\", \"/bin\", \"/sbin\", \"/lib\", \"/lib32\", \"/lib64\", \"/etc\"]";

/// The status and message of a refusal through `--node-caps`, which the
/// flags must match.
fn node_caps_refusal(ws: &Path, profile: &str, caps_toml: &str) -> Option<i32> {
    let dir = tempfile::tempdir().unwrap();
    let caps = write_file(dir.path(), "caps.toml", caps_toml);
    let o = exec_with(
        ws,
        profile,
        &["--node-caps", caps.to_str().unwrap()],
        &["true"],
    );
    let (_, err) = out_err(&o);
    assert!(err.contains("outside profile"), "{err}");
    assert_ne!(o.status.code(), Some(0));
    o.status.code()
}

/// The flag's refusal: the same status as --node-caps, the flag named,
/// nothing run.
fn assert_refused_naming(o: &Output, flag: &str, like: Option<i32>) {
    let (out, err) = out_err(o);
    assert_eq!(o.status.code(), like, "{err}");
    assert!(
        err.contains(&format!("{flag} ")) && err.contains("outside profile"),
        "{flag} not named: {err}"
    );
    assert!(out.is_empty(), "ran anyway: {out}");
}

#[test]
fn dash_e_passes_or_sets_allowed_variables_and_refuses_others() {
    if !built() {
        return;
    }
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    // Declared env narrowed to PATH: TERM passes only when -e asks for it.
    let caps = write_file(dir.path(), "caps.toml", "env = [\"PATH\"]\n");
    let caps = caps.to_str().unwrap();
    let show = ["sh", "-c", "echo \"term=$TERM lang=$LANG\""];
    let o = exec_with(ws.path(), "restrictive", &["--node-caps", caps], &show);
    assert_eq!(out_err(&o).0.trim(), "term= lang=", "{:?}", out_err(&o));
    let o = exec_with(
        ws.path(),
        "restrictive",
        &["--node-caps", caps, "-e", "TERM", "--env", "LANG=C.aiops"],
        &show,
    );
    assert_eq!(
        out_err(&o).0.trim(),
        "term=aiops-test-term lang=C.aiops",
        "{:?}",
        out_err(&o)
    );
    // Undeclared: every allowed variable still passes, and -e sets one.
    let o = exec_with(ws.path(), "restrictive", &["-e", "LANG=C.x"], &show);
    assert_eq!(
        out_err(&o).0.trim(),
        "term=aiops-test-term lang=C.x",
        "{:?}",
        out_err(&o)
    );
    // Off the allow-list: refused like --node-caps, naming -e.
    let like = node_caps_refusal(ws.path(), "restrictive", "env = [\"AIOPS_NOT_ALLOWED\"]\n");
    let o = exec_with(
        ws.path(),
        "restrictive",
        &["-e", "AIOPS_NOT_ALLOWED=1"],
        &["true"],
    );
    assert_refused_naming(&o, "-e", like);
    // A bad name is a usage error.
    let o = exec_with(ws.path(), "restrictive", &["-e", "1BAD=x"], &["true"]);
    assert_eq!(o.status.code(), Some(64), "{:?}", out_err(&o));
}

#[test]
fn read_and_write_add_paths_within_the_profile_and_refuse_others() {
    if !built() {
        return;
    }
    let ws = workspace();
    let (data, out) = (open_dir("data inside\n"), open_dir(""));
    let dir = tempfile::tempdir().unwrap();
    let read = format!(
        "{}, {:?}]",
        SYSTEM_READ.trim_end_matches(']'),
        data.path().to_str().unwrap()
    );
    let profile = write_file(
        dir.path(),
        "rw.toml",
        &format!(
            "schema = 1\nname = \"rw\"\ndescription = \"restrictive and two more dirs\"\n\
             extends = \"restrictive\"\n[fs]\nread = {read}\n\
             write = [\"$WORKSPACE\", {:?}]\n",
            out.path().to_str().unwrap()
        ),
    );
    let profile = profile.to_str().unwrap();
    // Declared caps that leave both dirs out.
    let caps = write_file(
        dir.path(),
        "caps.toml",
        &format!("read_paths = {SYSTEM_READ}\nwrite_paths = [\"$WORKSPACE\"]\n"),
    );
    let caps = caps.to_str().unwrap();
    let data_f = data.path().join("f");
    let out_f = out.path().join("new");
    let (data_s, out_s) = (data_f.to_str().unwrap(), out_f.to_str().unwrap());
    let cat = ["cat", data_s];
    let o = exec_with(ws.path(), profile, &["--node-caps", caps], &cat);
    assert_ne!(
        o.status.code(),
        Some(0),
        "read without --read: {:?}",
        out_err(&o)
    );
    let o = exec_with(
        ws.path(),
        profile,
        &["--node-caps", caps, "--read", data.path().to_str().unwrap()],
        &cat,
    );
    assert_eq!(out_err(&o).0, "data inside\n", "{:?}", out_err(&o));
    let touch = ["sh", "-c", "echo written > \"$0\"", out_s];
    let o = exec_with(ws.path(), profile, &["--node-caps", caps], &touch);
    assert_ne!(o.status.code(), Some(0), "{:?}", out_err(&o));
    assert!(!out_f.exists());
    let o = exec_with(
        ws.path(),
        profile,
        &["--node-caps", caps, "--write", out.path().to_str().unwrap()],
        &touch,
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", out_err(&o));
    assert_eq!(std::fs::read_to_string(&out_f).unwrap(), "written\n");
    // Outside the profile: refused like --node-caps, naming the flag.
    let like = node_caps_refusal(ws.path(), profile, "read_paths = [\"/root\"]\n");
    let o = exec_with(ws.path(), profile, &["--read", "/root"], &["true"]);
    assert_refused_naming(&o, "--read", like);
    let like = node_caps_refusal(ws.path(), profile, "write_paths = [\"/etc\"]\n");
    let o = exec_with(ws.path(), profile, &["--write", "/etc"], &["true"]);
    assert_refused_naming(&o, "--write", like);
    // A path the profile has read-only is no --write.
    let o = exec_with(
        ws.path(),
        profile,
        &["--write", data.path().to_str().unwrap()],
        &["true"],
    );
    assert_refused_naming(&o, "--write", like);
}

/// One HTTP answer per connection on 127.0.0.1, for the egress proxy to reach.
fn http_server() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).is_ok_and(|n| n == 1) {
                head.push(b[0]);
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\nhello via aiops",
            );
        }
    });
    port
}

#[test]
fn net_allow_adds_a_listed_target_and_refuses_others() {
    if !built() || !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let ws = workspace();
    let port = http_server();
    let dir = tempfile::tempdir().unwrap();
    let profile = write_file(
        dir.path(),
        "eg.toml",
        &format!(
            "schema = 1\nname = \"eg\"\ndescription = \"agent with a loopback test host\"\n\
             extends = \"agent\"\n[net]\nmode = \"allowlist\"\n\
             allow = [\"loop.test:{port}\", \"other.test:443\"]\n\
             allow_private = [{{ cidr = \"127.0.0.0/8\", reason = \"the test's server\" }}]\n\
             hosts = {{ \"loop.test\" = \"127.0.0.1\" }}\n"
        ),
    );
    let profile = profile.to_str().unwrap();
    let caps = write_file(
        dir.path(),
        "caps.toml",
        "net_allow = [\"other.test:443\"]\n",
    );
    let caps = caps.to_str().unwrap();
    // urllib goes through $http_proxy, the jail's end of the egress proxy.
    let get = format!(
        "import urllib.request\n\
         print(urllib.request.urlopen('http://loop.test:{port}/', timeout=10).read().decode())"
    );
    let argv = ["/usr/bin/python3", "-c", &get];
    let o = exec_with(ws.path(), profile, &["--node-caps", caps], &argv);
    let (_, err) = out_err(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err.contains("egress denied") && err.contains("loop.test"),
        "{err}"
    );
    let target = format!("loop.test:{port}");
    let o = exec_with(
        ws.path(),
        profile,
        &["--node-caps", caps, "--net-allow", &target],
        &argv,
    );
    assert_eq!(out_err(&o).0, "hello via aiops\n", "{:?}", out_err(&o));
    // Not on the profile's list: refused like --node-caps, naming the flag.
    let like = node_caps_refusal(ws.path(), profile, "net_allow = [\"evil.test:443\"]\n");
    let o = exec_with(
        ws.path(),
        profile,
        &["--net-allow", "evil.test:443"],
        &["true"],
    );
    assert_refused_naming(&o, "--net-allow", like);
    let o = exec_with(ws.path(), profile, &["--net-allow", "no-port"], &["true"]);
    assert_eq!(o.status.code(), Some(64), "{:?}", out_err(&o));
}

#[test]
fn a_missing_double_dash_gets_a_hint() {
    let hint = "use `aiopsctl exec [OPTIONS] -- CMD ARGS...`";
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_aiopsctl"))
            .args(args)
            .output()
            .unwrap();
        (o.status.code(), out_err(&o).1)
    };
    for args in [
        &["exec", "--profile", "restrictive", "ls", "-la"][..],
        &["exec", "--profile", "restrictive", "ls"],
        &["exec", "ls", "-la"],
        &["exec", "--profile", "restrictive"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: no hint in {err}");
    }
    // With `--` the error is about something else, and has no hint.
    let (code, err) = run(&["exec", "--bogus", "--", "ls"]);
    assert_eq!(code, Some(64));
    assert!(!err.contains(hint), "{err}");
    let (_, err) = run(&["profile", "show"]);
    assert!(!err.contains(hint), "{err}");
}

#[test]
fn timeout_takes_decimal_and_compound_durations() {
    if !built() {
        return;
    }
    let ws = workspace();
    let t = |d: &str| {
        let o = exec_with(ws.path(), "restrictive", &["--timeout", d], &["sleep", "5"]);
        (o.status.code(), out_err(&o).1)
    };
    let (code, err) = t("1.5s");
    assert_eq!(code, Some(124), "{err}");
    assert!(err.contains("timed out after 1"), "{err}");
    assert_eq!(t("250ms").0, Some(124));
    let o = exec_with(ws.path(), "restrictive", &["--timeout", "1m30s"], &["true"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", out_err(&o));
    let (code, err) = t("1.5");
    assert_eq!(code, Some(64));
    assert!(err.contains("missing unit"), "{err}");
    let (code, err) = t("1.5x");
    assert_eq!(code, Some(64));
    assert!(err.contains("unknown unit"), "{err}");
}

/// A name on the allow-list that does not resolve is a DNS failure, said
/// as such, not an egress denial.
#[test]
fn a_dns_failure_is_not_reported_as_a_denial() {
    if !built() || !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let ws = workspace();
    let dir = tempfile::tempdir().unwrap();
    // .invalid never resolves (RFC 6761), with or without a network.
    let profile = write_file(
        dir.path(),
        "nx.toml",
        "schema = 1\nname = \"nx\"\ndescription = \"agent with an unresolvable name\"\n\
         extends = \"agent\"\n[net]\nmode = \"allowlist\"\nallow = [\"nx.invalid:80\"]\n",
    );
    let get = "import urllib.request\n\
               urllib.request.urlopen('http://nx.invalid/', timeout=20)";
    let o = exec_with(
        ws.path(),
        profile.to_str().unwrap(),
        &["--report", "json"],
        &["/usr/bin/python3", "-c", get],
    );
    let (_, err) = out_err(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("\"verdict\":\"dns_failed\""), "{err}");
    assert!(err.contains("DNS lookup of nx.invalid failed: "), "{err}");
    assert!(!err.contains("\"verdict\":\"denied\""), "{err}");
    let o = exec_with(
        ws.path(),
        profile.to_str().unwrap(),
        &[],
        &["/usr/bin/python3", "-c", get],
    );
    let (_, err) = out_err(&o);
    assert!(
        err.contains("aiopsctl: egress: DNS lookup of nx.invalid failed: "),
        "{err}"
    );
    assert!(!err.contains("egress denied"), "{err}");
}
