//! Resource limits: fork bomb, memory bomb, timeout, output cap. These run
//! one at a time (RLIMIT_NPROC is per host uid, shared by concurrent jails).
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// restrictive with low limits, in a temp dir readable by nobody.
fn low_limits() -> (tempfile::TempDir, std::path::PathBuf) {
    let d = scratch_dir(None);
    let p = write_profile(
        d.path(),
        "low-limits",
        r#"schema = 1
name = "low-limits"
description = "restrictive with low limits, for the bomb tests"
extends = "restrictive"

[limits]
timeout = "20s"
memory = "512MiB"
pids = 64
output = "1MiB"
"#,
    );
    (d, p)
}

fn count_marked(marker: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .count() as u64
}

/// SIGKILL every process whose cmdline carries `marker` (all started by this test).
fn kill_marked(marker: &str) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.bytes().all(|b| b.is_ascii_digit())
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        {
            let _ = std::process::Command::new("kill")
                .args(["-9", &name])
                .status();
        }
    }
}

fn time_true() -> Duration {
    let t = Instant::now();
    let _ = std::process::Command::new("/bin/true").status();
    t.elapsed()
}

/// Stopped by: RLIMIT_NPROC / cgroup pids.max (`pids = 64`) and the pid
/// namespace (everything dies with agentd); agentd's timeout ends it.
#[test]
fn fork_bomb() {
    let _g = serial();
    let (_d, profile) = low_limits();
    let baseline = (0..5).map(|_| time_true()).max().unwrap();
    for m in attacks() {
        let marker = unique("BOMB").replace('-', "");
        let stop = Arc::new(AtomicBool::new(false));
        let (worst_ns, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let watcher = {
            let (stop, worst_ns, peak, marker) =
                (stop.clone(), worst_ns.clone(), peak.clone(), marker.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    worst_ns.fetch_max(
                        u64::try_from(time_true().as_nanos()).unwrap_or(u64::MAX),
                        Ordering::SeqCst,
                    );
                    let n = count_marked(&marker);
                    peak.fetch_max(n, Ordering::SeqCst);
                    if n > 300 {
                        // The jail's limit failed: stop our own bomb before the host suffers.
                        kill_marked(&marker);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let o = m
            .jail_with(profile.to_str().unwrap())
            .timeout("8s")
            .deadline(Duration::from_secs(40))
            .run_sh(&format!(": {marker}; f(){{ f|f& }}; f; sleep 30"));
        stop.store(true, Ordering::SeqCst);
        watcher.join().unwrap();
        o.assert_ran();
        assert!(
            o.elapsed < Duration::from_secs(25),
            "[{m:?}] aiopsctl took {:?}\n{}",
            o.elapsed,
            o.describe()
        );
        o.assert_report();
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            count_marked(&marker),
            0,
            "[{m:?}] bomb processes outlived the jail"
        );
        let worst = Duration::from_nanos(worst_ns.load(Ordering::SeqCst));
        assert!(
            worst < Duration::from_secs(2).max(baseline * 20),
            "[{m:?}] host unresponsive: `true` took {worst:?} (baseline {baseline:?})"
        );
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= 70,
            "[{m:?}] {peak} bomb processes at once with pids = 64"
        );
        eprintln!(
            "[{m:?}] fork bomb: exit {} in {:?}, peak {peak} procs, worst host `true` {worst:?}",
            o.code, o.elapsed
        );
    }
}

/// Stopped by: RLIMIT_AS / cgroup memory.max (`memory = "512MiB"`).
/// Control: the same allocation on the host succeeds.
#[test]
fn memory_bomb() {
    if !have_python("memory_bomb") {
        return;
    }
    let _g = serial();
    let (_d, profile) = low_limits();
    let code = r#"
def f():
    b = b"x" * (2 << 30)
    return len(b)
probe("alloc", f)
"#;
    let c = host_py(false, code, &[]);
    c.assert_probe_ok("alloc");
    for m in attacks() {
        let o = m.jail_with(profile.to_str().unwrap()).run_py(code, &[]);
        o.assert_ran();
        o.assert_report();
        let v = o.probe("alloc");
        let killed = o.code == 137 || o.exit_field("signal").and_then(|s| s.as_i64()) == Some(9);
        assert!(
            v.as_deref() == Some("EXC:MemoryError") || killed,
            "[{m:?}] 2 GiB allocated under a 512 MiB limit\n{}",
            o.describe()
        );
        let rss = o
            .exit_field("peak_rss_kib")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        assert!(
            rss < 600 * 1024,
            "[{m:?}] peak rss {rss} KiB\n{}",
            o.describe()
        );
    }
}

/// Stopped by: agentd's timeout: the whole jail is killed, status 124.
#[test]
fn timeout_kills_the_jail() {
    let _g = serial();
    each_mode(&attacks(), |m| {
        let o = m.jail().timeout("2s").run_sh("sleep 30 & sleep 30");
        o.assert_ran().assert_code(124);
        assert!(
            o.elapsed < Duration::from_secs(10),
            "took {:?}\n{}",
            o.elapsed,
            o.describe()
        );
        assert_eq!(
            o.exit_field("timed_out").and_then(|v| v.as_bool()),
            Some(true),
            "{}",
            o.describe()
        );
    });
}

/// Stopped by: agentd's output cap (`output = "1MiB"`): status 123.
#[test]
fn output_cap_kills_the_jail() {
    let _g = serial();
    let (_d, profile) = low_limits();
    each_mode(&attacks(), |m| {
        let o = m
            .jail_with(profile.to_str().unwrap())
            .run_sh("head -c 8000000 /dev/zero | tr '\\0' a; sleep 5");
        o.assert_ran().assert_code(123);
        assert!(
            o.stdout.len() <= (1 << 20) + 65536,
            "{} bytes got through",
            o.stdout.len()
        );
        assert_eq!(
            o.exit_field("output_capped").and_then(|v| v.as_bool()),
            Some(true),
            "{}",
            o.describe()
        );
        assert_eq!(o.report.as_ref().unwrap()["output_cap"], 1 << 20);
    });
    // Without the JSON report, one line names the cap and where it comes from.
    let ws = scratch_dir(None);
    let o = std::process::Command::new(aiopsctl())
        .args(["exec", "--report", "none", "--profile"])
        .arg(&profile)
        .arg("--workspace")
        .arg(ws.path())
        .args(["--", "head", "-c", "2000000", "/dev/zero"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(123), "{err}");
    assert!(
        err.contains("output cap of 1MiB reached")
            && err.contains("[limits] output of profile low-limits"),
        "{err}"
    );
}

/// build-offline's cap fits a build's artifact piped out on stdout.
#[test]
fn build_offline_lets_a_200_mib_artifact_through() {
    let _g = serial();
    let size = 200u64 << 20;
    each_mode(&attacks(), |m| {
        let o = m
            .jail_with("build-offline")
            .run_sh(&format!("head -c {size} /dev/zero"));
        // Not `describe`: it would print the 200 MiB.
        let said = format!("exit {}, stderr:\n{}", o.code, o.stderr);
        assert!(o.ran && o.code == 0, "{said}");
        assert_eq!(o.stdout.len() as u64, size, "{said}");
    });
}

/// `restrictive` with `[limits] tmpfs` and `tmpfs_inodes` set.
fn tmpfs_profile(name: &str, tmpfs: &str, inodes: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = scratch_dir(None);
    let p = write_profile(
        d.path(),
        name,
        &format!(
            r#"schema = 1
name = "{name}"
description = "restrictive with sized tmpfs"
extends = "restrictive"

[limits]
tmpfs = "{tmpfs}"
tmpfs_inodes = {inodes}
"#
        ),
    );
    (d, p)
}

/// Stopped by: the tmpfs `size=` and `nr_inodes=` of /tmp and /dev/shm
/// (`limits.tmpfs = "16MiB"`, `tmpfs_inodes = 256`): filling either past
/// them fails with ENOSPC; /dev/shm used to be an unsized tmpfs (half of
/// the host's RAM). Control: the same writes pass under a profile with
/// `tmpfs = "64MiB"` and `tmpfs_inodes = 4096`.
#[test]
fn tmpfs_is_sized_by_the_profile() {
    if !have_python("tmpfs_is_sized_by_the_profile") {
        return;
    }
    let _g = serial();
    let (_d1, small) = tmpfs_profile("small-tmpfs", "16MiB", 256);
    let (_d2, large) = tmpfs_profile("large-tmpfs", "64MiB", 4096);
    let code = r#"
def fill(path):
    def f():
        with open(path, "wb") as fh:
            for _ in range(24):
                fh.write(b"x" * (1 << 20))
                fh.flush()
    return f
def files(d):
    def f():
        os.makedirs(d)
        for i in range(400):
            open(os.path.join(d, str(i)), "w").close()
    return f
probe("tmp_bytes", fill("/tmp/fill"))
probe("shm_bytes", fill("/dev/shm/fill"))
probe("tmp_inodes", files("/tmp/many"))
os.remove("/dev/shm/fill")
def shm_files():
    for i in range(400):
        open("/dev/shm/f%d" % i, "w").close()
probe("shm_inodes", shm_files)
"#;
    for m in attacks() {
        for (profile, fits) in [(&small, false), (&large, true)] {
            let o = m.jail_with(profile.to_str().unwrap()).run_py(code, &[]);
            o.assert_ran();
            for n in ["tmp_bytes", "shm_bytes", "tmp_inodes", "shm_inodes"] {
                if fits {
                    o.assert_probe_ok(n);
                } else {
                    o.assert_probe_err(n, &["ENOSPC"]);
                }
            }
        }
    }
}

/// The report's peak is the jail's total: four processes each touching
/// 100 MiB at once show as at least ~350 MiB (agentd sums every process's
/// resident set each 100 ms), where getrusage alone knows one process
/// (~110 MiB). Bounded above so a garbage figure fails too.
#[test]
fn peak_memory_counts_every_process_of_the_jail() {
    if !have_python("peak_memory_counts_every_process_of_the_jail") {
        return;
    }
    let _g = serial();
    let code = r#"
import time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        b = b"x" * (100 << 20)
        time.sleep(1.5)
        os._exit(len(b) and 0)
    kids.append(pid)
probe("wait", lambda: [os.waitpid(k, 0) for k in kids] and None)
"#;
    for m in attacks() {
        let o = m.jail().run_py(code, &[]);
        o.assert_ran();
        o.assert_report();
        o.assert_probe_ok("wait");
        let kib = o
            .exit_field("peak_rss_kib")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        assert!(
            (350 << 10..1 << 20).contains(&kib),
            "[{m:?}] peak {kib} KiB for 4 × 100 MiB at once\n{}",
            o.describe()
        );
        eprintln!("[{m:?}] peak {} MiB", kib >> 10);
    }
}
