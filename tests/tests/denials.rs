//! The denial report (issue 18), judged from the report of real jails:
//! each denied system call appears once under seccomp with its count, the
//! errno the node got and what would allow it; a flood of denials gives a
//! bounded report; a limit reached appears under limits. Controls: the
//! same calls succeed outside the jail (so the jail denied them), and a
//! node that is denied nothing reports an empty, recorded list.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use serde_json::Value;

fn denials(o: &Outcome) -> Value {
    o.assert_report()["denials"].clone()
}

/// The seccomp entry for `syscall`, failing when there is not exactly one.
fn entry(d: &Value, syscall: &str) -> Value {
    let all: Vec<&Value> = d["seccomp"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["syscall"] == syscall)
        .collect();
    assert_eq!(all.len(), 1, "{syscall} in {d:#}");
    all[0].clone()
}

/// Stopped by: seccomp's baseline (unshare with CLONE_NEWUSER → EPERM),
/// counted by the jailer's parent. Control: unconfined, the same command
/// succeeds (as root the control runs on the host).
#[test]
fn a_denied_system_call_is_reported_once_with_its_count() {
    each_mode(
        &root_control_modes("a_denied_system_call_is_reported"),
        |m| {
            let o = m
                .jail()
                .run_sh("unshare -U true; echo rc=$?; unshare -U true; echo rc=$?");
            o.assert_ran();
            if m.is_control() {
                assert!(o.stdout.contains("rc=0\nrc=0"), "{}", o.describe());
                return;
            }
            assert!(o.stdout.contains("rc=1\nrc=1"), "{}", o.describe());
            let d = denials(&o);
            assert_eq!(d["seccomp_recorded"], true, "{d:#}");
            let e = entry(&d, "unshare");
            assert_eq!(e["count"], 2, "{d:#}");
            assert_eq!(e["errno"], "EPERM", "{d:#}");
            assert!(e["allow"].as_str().unwrap().contains("baseline"), "{d:#}");
            assert_eq!(d["limits"], serde_json::json!([]), "{d:#}");
        },
    );
}

/// A node denied nothing: the list was recorded and is empty.
#[test]
fn a_node_denied_nothing_reports_an_empty_recorded_list() {
    each_mode(&attacks(), |m| {
        let o = m.jail().run_sh("ls / >/dev/null; echo ok");
        o.assert_ran().assert_code(0);
        let d = denials(&o);
        assert_eq!(d["seccomp_recorded"], true, "{d:#}");
        assert_eq!(d["seccomp"], serde_json::json!([]), "{d:#}");
        assert_eq!(d["seccomp_others"], 0, "{d:#}");
    });
}

/// A flood of denials: 20 000 calls of one denied syscall, 3000 numbers of
/// the x32 range and 200 distinct numbers outside every table (ENOSYS
/// from the kernel, never denied: not counted). The report stays bounded
/// and exact, and the node gets the filter's errno each time.
#[test]
fn a_flood_of_denials_gives_a_bounded_report() {
    if !have_python("a_flood_of_denials_gives_a_bounded_report") {
        return;
    }
    let script = r#"
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
unshare = 272 if platform.machine() == "x86_64" else 97
bad = 0
for _ in range(20000):
    if libc.syscall(unshare, 0x10000000) != -1 or ctypes.get_errno() != 1:
        bad += 1
for n in range(3000):
    if libc.syscall(0x40000000 | n) != -1 or ctypes.get_errno() != 38:
        bad += 1
for n in range(1000, 1200):
    libc.syscall(n)
print("bad", bad)
"#;
    each_mode(&attacks(), |m| {
        let o = m.jail().run_py(script, &[]);
        o.assert_ran().assert_code(0);
        assert!(o.stdout.contains("bad 0"), "{}", o.describe());
        let d = denials(&o);
        assert_eq!(entry(&d, "unshare")["count"], 20000, "{d:#}");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(entry(&d, "x32")["count"], 3000, "{d:#}");
        }
        assert!(d["seccomp"].as_array().unwrap().len() <= 128, "{d:#}");
        assert_eq!(d["seccomp_others"], 0, "{d:#}");
    });
}

/// A limit reached is a denial too: the output cap, with the profile line.
#[test]
fn a_limit_reached_is_reported_under_limits() {
    let d = scratch_dir(None);
    let p = write_profile(
        d.path(),
        "small-output",
        "schema = 1\nname = \"small-output\"\ndescription = \"a 64KiB output cap\"\nextends = \"restrictive\"\n[limits]\noutput = \"64KiB\"\n",
    );
    each_mode(&attacks(), |m| {
        let o = m
            .jail_with(p.to_str().unwrap())
            .run_sh("head -c 1000000 /dev/zero");
        o.assert_code(123);
        let d = denials(&o);
        let limits = d["limits"].as_array().unwrap();
        assert_eq!(limits.len(), 1, "{d:#}");
        assert_eq!(limits[0]["limit"], "output", "{d:#}");
        assert_eq!(limits[0]["value"], "64KiB", "{d:#}");
        assert!(
            limits[0]["allow"]
                .as_str()
                .unwrap()
                .contains("profile small-output"),
            "{d:#}"
        );
    });
}

/// The tmpfs size and RLIMIT_FSIZE are limits too: a node that fills the
/// jail's /tmp, and one killed by SIGXFSZ, each get the limit named.
/// Control: the same writes under restrictive's limits succeed.
#[test]
fn tmpfs_and_file_size_limits_are_reported() {
    let d = scratch_dir(None);
    let p = write_profile(
        d.path(),
        "tiny-files",
        "schema = 1\nname = \"tiny-files\"\ndescription = \"a 1MiB tmpfs and 2MiB files\"\nextends = \"restrictive\"\n[limits]\ntmpfs = \"1MiB\"\nfile_size = \"2MiB\"\n",
    );
    let fill = "head -c 3000000 /dev/zero > /tmp/fill; echo rc=$?";
    let big = "exec head -c 3000000 /dev/zero > big";
    each_mode(&attacks(), |m| {
        let o = m.jail_with(p.to_str().unwrap()).run_sh(fill);
        o.assert_ran();
        assert!(o.stdout.contains("rc=1"), "{}", o.describe());
        let d = denials(&o);
        let l = &d["limits"][0];
        assert_eq!(
            (l["limit"].as_str(), l["value"].as_str()),
            (Some("tmpfs"), Some("/tmp full")),
            "{d:#}"
        );
        let o = m.jail_with(p.to_str().unwrap()).run_sh(big);
        assert_eq!(o.code, 128 + 25, "{}", o.describe());
        let d = denials(&o);
        assert_eq!(d["limits"][0]["limit"], "file_size", "{d:#}");
        // Control: restrictive's limits take both.
        let o = m
            .jail()
            .run_sh(&format!("{fill}; head -c 3000000 /dev/zero > big; echo ok"));
        assert!(
            o.stdout.contains("rc=0") && o.stdout.contains("ok"),
            "{}",
            o.describe()
        );
        assert_eq!(
            denials(&o)["limits"],
            serde_json::json!([]),
            "{}",
            o.describe()
        );
    });
}

/// Stopped by: the network namespace (net = "none"). A direct connection
/// to a host listener and a DNS datagram are each reported under network
/// with the address; the listener saw no connection. Control: unconfined
/// (the host's network), the same connection reaches the listener.
#[test]
fn direct_connections_are_reported_under_network() {
    if !have_python("direct_connections_are_reported_under_network") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        r#"
import socket
s = socket.socket(); s.settimeout(2)
try:
    s.connect(("127.0.0.1", {port})); print("connected")
except OSError as e:
    print("refused", e.errno)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"q", ("192.0.2.1", 53))
except OSError as e:
    print("dns", e.errno)
"#
    );
    for m in all_modes() {
        let o = m.jail().run_py(&script, &[]);
        o.assert_ran();
        let accepted = std::iter::from_fn(|| listener.accept().ok()).count();
        if m.is_control() {
            assert!(
                o.stdout.contains("connected") && accepted == 1,
                "{}",
                o.describe()
            );
            continue;
        }
        assert!(
            o.stdout.contains("refused") && accepted == 0,
            "{}",
            o.describe()
        );
        let d = denials(&o);
        let net = d["network"].as_array().unwrap();
        let find = |port: u64| {
            net.iter()
                .find(|n| n["port"] == port)
                .unwrap_or_else(|| panic!("port {port} not in {d:#}"))
        };
        let tcp = find(u64::from(port));
        assert_eq!(
            (tcp["syscall"].as_str(), tcp["addr"].as_str()),
            (Some("connect"), Some("127.0.0.1")),
            "{d:#}"
        );
        assert!(
            tcp["why"].as_str().unwrap().contains("net = \"none\""),
            "{d:#}"
        );
        let dns = find(53);
        assert_eq!(
            (dns["syscall"].as_str(), dns["addr"].as_str()),
            (Some("sendto"), Some("192.0.2.1")),
            "{d:#}"
        );
        assert!(
            dns["why"].as_str().unwrap().contains("no resolver"),
            "{d:#}"
        );
    }
}
