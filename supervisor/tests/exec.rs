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
