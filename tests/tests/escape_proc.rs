//! Other processes: seeing, tracing, reading and signalling host processes
//! and the supervisor. Victims run as the same uid as the caller, so only
//! the jail (not DAC or ptrace rules) stands in the way.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::time::Duration;

/// Stopped by: pid namespace (host pids do not exist in the jail's /proc).
#[test]
fn host_pids_are_not_visible() {
    each_mode(&all_modes(), |m| {
        let v = Victim::spawn(node_uid());
        let o = m.jail().run_sh_args(
            "printf 'bypid:'; cat /proc/$1/cmdline 2>/dev/null | tr '\\0' ' '; echo; \
             for f in /proc/[0-9]*/comm; do [ \"$(cat $f 2>/dev/null)\" = sleep ] && echo \"comm:$f\"; done; echo done",
            &[&v.pid().to_string()],
        );
        o.assert_ran();
        assert!(o.stdout.contains("done"), "{}", o.describe());
        let sees_victim = o
            .stdout
            .lines()
            .any(|l| l.starts_with("bypid:") && l.contains(&v.marker));
        let sleeps = o.stdout.lines().filter(|l| l.starts_with("comm:")).count();
        if m.is_control() {
            assert!(
                sees_victim,
                "control cannot see the host process\n{}",
                o.describe()
            );
        } else {
            assert!(
                !sees_victim,
                "host pid visible in the jail\n{}",
                o.describe()
            );
            assert_eq!(
                sleeps,
                0,
                "host processes visible in the jail's /proc\n{}",
                o.describe()
            );
        }
    });
}

const PTRACE: &str = r#"
PTRACE_SEIZE = 0x4206
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
probe("ptrace", lambda: check(libc.ptrace(PTRACE_SEIZE, int(sys.argv[1]), None, None)))
"#;

/// Stopped by: seccomp (ptrace denied, EPERM) and the pid namespace (ESRCH).
#[test]
fn ptrace_host_process() {
    if !have_python("ptrace_host_process") {
        return;
    }
    each_mode(&all_modes(), |m| {
        let v = Victim::spawn(node_uid());
        let o = m.jail().run_py(PTRACE, &[&v.pid().to_string()]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("ptrace");
        } else {
            o.assert_probe_err("ptrace", &["EPERM", "ESRCH"]);
        }
    });
}

/// First readable mapping of `pid` (host view).
fn readable_addr(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let line = maps
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with('r'))
        })
        .unwrap();
    u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap()
}

/// Stopped by: seccomp (process_vm_readv denied) and the pid namespace.
#[test]
fn process_vm_readv_host_process() {
    if !have_python("process_vm_readv_host_process") {
        return;
    }
    let code = r#"
class IOV(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(16)
local = IOV(ctypes.cast(buf, ctypes.c_void_p), 16)
remote = IOV(int(sys.argv[2]), 16)
libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
probe("vm_readv", lambda: check(libc.process_vm_readv(int(sys.argv[1]), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)))
"#;
    each_mode(&all_modes(), |m| {
        let v = Victim::spawn(node_uid());
        let addr = readable_addr(v.pid());
        let o = m
            .jail()
            .run_py(code, &[&v.pid().to_string(), &addr.to_string()]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("vm_readv");
        } else {
            o.assert_probe_err("vm_readv", &["EPERM", "ESRCH"]);
        }
    });
}

/// Stopped by: pid namespace (no /proc/PID for host pids) and the fresh
/// /proc mount.
#[test]
fn proc_pid_mem_and_root_of_host_process() {
    if !have_python("proc_pid_mem_and_root_of_host_process") {
        return;
    }
    let code = r#"
pid, addr = sys.argv[1], int(sys.argv[2])
def mem():
    with open("/proc/%s/mem" % pid, "rb") as f:
        f.seek(addr); return len(f.read(8))
probe("mem", mem)
probe("root", lambda: len(os.listdir("/proc/%s/root/" % pid)))
"#;
    each_mode(&all_modes(), |m| {
        let v = Victim::spawn(node_uid());
        let addr = readable_addr(v.pid());
        let o = m
            .jail()
            .run_py(code, &[&v.pid().to_string(), &addr.to_string()]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("mem").assert_probe_ok("root");
        } else {
            o.assert_probe_err("mem", &["ENOENT", "EACCES", "EPERM", "ESRCH"]);
            o.assert_probe_err("root", &["ENOENT", "EACCES", "EPERM", "ESRCH"]);
        }
    });
}

/// Stopped by: pid namespace (ESRCH) and the Landlock ABI 6 signal scope.
#[test]
fn signal_host_process() {
    each_mode(&all_modes(), |m| {
        let mut v = Victim::spawn(node_uid());
        let o = m.jail().run_sh_args(
            "kill -0 $1 && echo probe=ok; kill -TERM $1; echo done",
            &[&v.pid().to_string()],
        );
        o.assert_ran();
        std::thread::sleep(Duration::from_millis(200));
        if m.is_control() {
            assert!(o.stdout.contains("probe=ok"), "{}", o.describe());
            assert!(
                !v.alive(),
                "control could not kill its victim\n{}",
                o.describe()
            );
        } else {
            assert!(!o.stdout.contains("probe=ok"), "{}", o.describe());
            assert!(
                o.stderr.contains("No such process"),
                "not hidden by the pid namespace\n{}",
                o.describe()
            );
            assert!(
                v.alive(),
                "the jail killed a host process\n{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: pid namespace: aiopsctl's pid does not exist in the jail, so
/// `kill -9` cannot reach the supervisor. The pid is handed in through the
/// workspace after spawn.
#[test]
fn kill_the_supervisor() {
    each_mode(&[same_uid_controls(), attacks()].concat(), |m| {
        let j = m.jail();
        let pidfile = j.ws().join("aiopsctl.pid");
        let owner = j.ws_owner();
        let pf = pidfile.clone();
        let o = j
            .on_spawn(move |pid| {
                let tmp = pf.with_extension("tmp");
                host_file(&tmp, &pid.to_string(), owner);
                std::fs::rename(&tmp, &pf).unwrap();
            })
            .run_sh(
                "i=0; while [ ! -s aiopsctl.pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; \
                 kill -9 \"$(cat aiopsctl.pid)\"; echo rc=$?; sleep 0.5; echo survived",
            );
        o.assert_ran();
        if m.is_control() {
            assert_eq!(
                o.code,
                137,
                "control could not kill aiopsctl\n{}",
                o.describe()
            );
        } else {
            assert!(!o.stdout.contains("rc=0"), "{}", o.describe());
            assert!(
                o.stderr.contains("No such process"),
                "aiopsctl's pid is visible\n{}",
                o.describe()
            );
            o.assert_code(0);
            assert!(o.stdout.contains("survived"), "{}", o.describe());
            o.assert_report();
        }
    });
}

/// Stopped by: the kernel (SIGKILL from inside a pid namespace to its init
/// is ignored). SIGTERM may make agentd end the jail (its handler tears the
/// node down); that is the node ending itself, not an escape. Either way
/// aiopsctl must return promptly with a report that matches its status.
/// No control: pid 1 outside is the host's init.
#[test]
fn kill_pid_1_inside_the_jail() {
    each_mode(&attacks(), |m| {
        let o = m
            .jail()
            .deadline(Duration::from_secs(30))
            .run_sh("kill -9 1; echo rc=$?; sleep 0.2; echo after-kill; kill -TERM 1; sleep 0.3; echo survived");
        o.assert_ran();
        let r = o.assert_report();
        assert!(
            o.stdout.contains("after-kill"),
            "SIGKILL from inside reached pid 1\n{}",
            o.describe()
        );
        assert_eq!(
            r["status"].as_i64(),
            Some(i64::from(o.code)),
            "report status differs\n{}",
            o.describe()
        );
        let sig = o.exit_field("signal").and_then(|v| v.as_i64());
        match (o.code, sig) {
            (0, _) => assert!(o.stdout.contains("survived"), "{}", o.describe()),
            (c, Some(s)) if i64::from(c) == 128 + s && (s == 9 || s == 15) => {}
            (c, _) => panic!(
                "aiopsctl returned {c} after the node signalled pid 1\n{}",
                o.describe()
            ),
        }
        assert!(o.elapsed < Duration::from_secs(10), "{}", o.describe());
    });
}
