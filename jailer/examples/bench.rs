//! Wall time of a full `restrictive` jail that execs /bin/true (agentd
//! replaced by /usr/bin/true) versus bubblewrap building a comparable tree,
//! both spawned and reaped the same way from this process, interleaved.
//!
//! cargo build --release -p aiops-jailer --example bench
//! chrt -f 10 target/release/examples/bench [runs]   (needs target/release/aiops-jailer)
//! BENCH_ABLATE=seccomp,landlock,nodev,noproc,nonet,small drops layers to see
//! what each costs; BENCH_DUMP_REQUEST=path writes the request and exits;
//! BENCH_PROFILE picks the profile (default restrictive); BENCH_JAILER picks another jailer build; BENCH_AGENTD / BENCH_ARGV set agentd's host path and the node's argv.
#![allow(clippy::unwrap_used)]

use aiops_policy::{AbsPath, CompileContext, HostFacts, NodeCaps, PathVars, ProfileLoader};
use aiops_proto::{JailRequest, NodeSpec, PROTO_VERSION};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let jailer = std::env::var_os("BENCH_JAILER")
        .map(std::path::PathBuf::from)
        .unwrap_or(root.join("target/release/aiops-jailer"));
    let ws = Path::new("/var/tmp/aiops-bench-ws");
    std::fs::create_dir_all(ws).unwrap();
    let profile = ProfileLoader::standard(None, Some(&root.join("profiles")))
        .load(&std::env::var("BENCH_PROFILE").unwrap_or("restrictive".into()))
        .unwrap();
    let ctx = CompileContext {
        vars: PathVars {
            workspace: Some(AbsPath::new(ws).unwrap()),
            home: None,
            tmpdir: None,
        },
        cwd: AbsPath::new(ws).unwrap(),
        host_env: Default::default(),
        agentd: AbsPath::new(std::env::var("BENCH_AGENTD").unwrap_or("/usr/bin/true".into()))
            .unwrap(),
    };
    let mut plan =
        aiops_policy::compile(&profile, &NodeCaps::default(), &HostFacts::linux(7), &ctx).unwrap();
    // Ablations, to see what each layer costs: BENCH_ABLATE=seccomp,landlock
    let ablate = std::env::var("BENCH_ABLATE").unwrap_or_default();
    if ablate.contains("seccomp") {
        plan.seccomp = None;
        plan.require
            .retain(|r| *r != aiops_policy::LayerReq::Seccomp);
    }
    if ablate.contains("small") {
        if let Some(sc) = plan.seccomp.as_mut() {
            sc.deny_eperm.truncate(5);
        }
    }
    if ablate.contains("nodev") {
        plan.mounts
            .retain(|m| !matches!(m, aiops_policy::plan::Mount::Dev { .. }));
    }
    if ablate.contains("noproc") {
        plan.mounts
            .retain(|m| !matches!(m, aiops_policy::plan::Mount::Proc { .. }));
    }
    if ablate.contains("nonet") {
        plan.namespaces
            .retain(|n| *n != aiops_policy::plan::Namespace::Net);
        plan.net.mode = aiops_policy::NetMode::Host;
        plan.require.retain(|r| *r != aiops_policy::LayerReq::NetNs);
    }
    if ablate.contains("landlock") {
        plan.landlock = None;
        plan.require
            .retain(|r| !matches!(r, aiops_policy::LayerReq::Landlock(_)));
    }
    let body = serde_json::to_vec(&JailRequest {
        proto_version: PROTO_VERSION,
        node: NodeSpec {
            id: "bench".into(),
            argv: std::env::var("BENCH_ARGV")
                .map(|a| a.split(' ').map(String::from).collect())
                .unwrap_or(vec!["/bin/true".into()]),
            tty: false,
        },
        plan,
    })
    .unwrap();
    if let Some(path) = std::env::var_os("BENCH_DUMP_REQUEST") {
        std::fs::write(path, &body).unwrap();
        return;
    }
    let ws_s = ws.display().to_string();
    let bwrap_args: Vec<&str> = vec![
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--bind",
        &ws_s,
        &ws_s,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        "/usr/bin/true",
        "/.aiops/aiops-agentd",
        "/.aiops/aiops-agentd",
    ];
    let run_jailer = || {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let (_ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        std::fs::File::from(wr).write_all(&body).unwrap();
        fcntl(&rd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let t = Instant::now();
        let st = Command::new(&jailer)
            .args([
                "--request-fd",
                &rd.as_raw_fd().to_string(),
                "--report-fd",
                &theirs.as_raw_fd().to_string(),
            ])
            .env_clear()
            .env("AIOPS_AGENTD", "/usr/bin/true")
            .status()
            .unwrap();
        let d = t.elapsed();
        assert!(st.success(), "jailer: {st:?}");
        d
    };
    let run_bwrap = || {
        let t = Instant::now();
        let st = Command::new("bwrap")
            .args(&bwrap_args)
            .env_clear()
            .status()
            .unwrap();
        let d = t.elapsed();
        assert!(st.success(), "bwrap: {st:?}");
        d
    };
    let run_bare = || {
        let t = Instant::now();
        Command::new("/bin/true").status().unwrap();
        t.elapsed()
    };
    for _ in 0..10 {
        run_jailer();
        run_bwrap();
    }
    let (mut j, mut b, mut t) = (vec![], vec![], vec![]);
    for _ in 0..runs {
        j.push(run_jailer());
        b.push(run_bwrap());
        t.push(run_bare());
    }
    let (mj, mb, mt) = (median(&mut j), median(&mut b), median(&mut t));
    println!("runs={runs} uid={}", nix::unistd::getuid());
    println!("bare /bin/true   median {:>8.3} ms", mt.as_secs_f64() * 1e3);
    println!(
        "aiops-jailer     median {:>8.3} ms  p90 {:.3} ms",
        mj.as_secs_f64() * 1e3,
        j[runs * 9 / 10].as_secs_f64() * 1e3
    );
    println!(
        "bwrap            median {:>8.3} ms  p90 {:.3} ms",
        mb.as_secs_f64() * 1e3,
        b[runs * 9 / 10].as_secs_f64() * 1e3
    );
    println!(
        "ratio jailer/bwrap {:.2}",
        mj.as_secs_f64() / mb.as_secs_f64()
    );
}
