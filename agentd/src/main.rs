//! aiops-agentd: PID 1 inside each jail.
//!
//! Reads its `AgentSpec` from the sealed memfd at fd 3, runs the node with
//! stdin inherited (never a terminal: see spawn.rs) and stdout/stderr
//! through counted (and, with secrets, redacted) pipes, or on a pty of the
//! jail's own whose master it relays (`tty.rs`), enforces the timeout and
//! output cap, reaps every zombie, forwards termination signals to the
//! node's process group, kills whatever is left when the node exits, and
//! reports over the SOCK_SEQPACKET socket at fd 4: `Started`, optional
//! `Output` progress, exactly one `Exited` — or one `SetupFailed` if the
//! node never ran.
//!
//! Exit code: the node's, or 128+N if signal N killed it; `exit::OUTPUT_CAP`
//! or `exit::TIMEOUT` when agentd killed the jail for a limit; a set-up
//! failure's own code (127 not found, 126 not executable, else the step's).
#![deny(unsafe_code)]
// Not in [lints] (which is `workspace = true`): only these two crates
// deny it. A failure here is a reported step error, never a panic.
#![deny(clippy::expect_used)]

mod error;
mod pump;
mod reaper;
mod redact;
mod report;
mod rss;
mod signals;
mod spawn;
#[allow(unsafe_code)] // all FFI is here; see the header comment of sys.rs
mod sys;
mod tty;

/// The static musl build's allocator (packaging/static-build.sh): musl's
/// mallocng returns a group to the kernel as soon as its last slot is
/// freed, so this process's short-lived allocations cost an mmap and a
/// munmap each (~0.3 ms per jail); TLSF keeps what it mapped.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: rlsf::GlobalTlsf = rlsf::GlobalTlsf::new();

use aiops_proto::agent::MAX_SPEC_BYTES;
use aiops_proto::{exit, AgentSpec, ExitReport, Stream, AGENT_SPEC_FD};
use error::AgentError;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::wait::WaitStatus;
use nix::unistd;
use pump::{Pipe, Pump};
use reaper::Reaper;
use report::ReportTx;
use rss::JailRss;
use signals::Signals;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// At most one `Output` report per stream per interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// After agentd kills the jail, how long its pipes may take to reach EOF.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the deadline, how often a write blocked on fd 1/2 is interrupted.
const ALARM_EVERY: Duration = Duration::from_millis(100);
/// When a node that still runs no longer needs agentd's start-up memory
/// (see `aiops_memtrim::release_idle_memory`); later, so short nodes pay no refaults.
const RELEASE_AFTER: Duration = Duration::from_millis(50);

fn main() {
    // Before anything else: dispositions and mask as agentd expects them,
    // whatever the starter left (an ignored SIGCHLD hides the node's end).
    let _ = sys::reset_inherited_signals();
    // Not dumpable: /proc/1/fd (the caller's stdio), /proc/1/mem (the
    // spec's secrets) and ptrace are then closed to the node, which runs as
    // the same uid and sees agentd as PID 1. exec resets it in the node.
    let _ = nix::sys::prctl::set_dumpable(false);
    // A closed fd 0-2 would be reused by the first pipe agentd makes; Rust's
    // runtime has already reopened any closed one on /dev/null before main.
    let mut tx = ReportTx::adopt();
    let code = match run(&mut tx) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "aiops-agentd: {}", e.chain());
            tx.setup_failed(&e);
            e.exit_code()
        }
    };
    #[allow(clippy::exit)] // the exit code is the interface
    std::process::exit(code)
}

/// Set-up errors come back as `Err` (nothing ran); once the node has
/// started every path ends in an `Exited` report and an exit code.
fn run(tx: &mut ReportTx) -> Result<i32, AgentError> {
    // The node must inherit nothing but fds 0-2; the jailer already closed
    // the rest, this also covers an unconfined run (ENOSYS: pre-5.11 kernel,
    // and the report socket is made CLOEXEC on its own below).
    let _ = sys::cloexec_from(3);
    let spec = read_spec()?;
    let prep = spawn::Prepared::new(&spec)?;
    let signals = Signals::install().map_err(|source| AgentError::Signals { source })?;
    let pid1 = unistd::getpid().as_raw() == 1;
    if !pid1 {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|source| AgentError::Subreaper { source })?;
    }
    let redactor = || redact::Redactor::new(spec.secrets.iter().map(|(_, s)| s.0.as_bytes()));
    let start = Instant::now();
    let timeout = Duration::from_millis(spec.timeout_ms);
    let deadline = start + timeout;
    sys::arm_deadline_alarm(timeout, ALARM_EVERY)
        .map_err(|source| AgentError::Signals { source })?;
    let pty = spec.tty.then(tty::Pty::open).transpose()?;
    let node = spawn::spawn(&prep, &signals, pty.as_ref())?;
    drop(prep);
    tx.started(node.pid.as_raw().unsigned_abs());

    let mut reaper = Reaper::new(node.pid, pid1);
    let (stdout, mut input) = match pty {
        Some(p) => {
            let copy = p.master.try_clone().map_err(|e| AgentError::Pty {
                what: "dup master",
                source: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })?;
            let out = Pipe::new(Stream::Stdout, Some(p.master), sys::stdio(1), redactor());
            (out.pty(), Some(tty::Input::new(copy, p.eof_char)))
        }
        None => (
            Pipe::new(Stream::Stdout, node.stdout, sys::stdio(1), redactor()),
            None,
        ),
    };
    let mut pump = Pump::new(
        [
            stdout,
            Pipe::new(Stream::Stderr, node.stderr, sys::stdio(2), redactor()),
        ],
        spec.output_bytes,
        deadline,
    );
    let mut run = Run {
        killed_at: None,
        timed_out: false,
        progress: spec.stream_reports.then(|| Progress::new(start)),
        release_at: Some(start + RELEASE_AFTER),
        rss: JailRss::new(pid1, start),
    };
    let mut io = Io {
        pump: &mut pump,
        input: input.as_mut(),
    };
    let looped = supervise(&signals, &mut reaper, &mut io, deadline, &mut run, tx);
    if let Err(e) = &looped {
        let _ = writeln!(std::io::stderr(), "aiops-agentd: {}", e.chain());
        let _ = pump.abandon();
    }
    let reaped = reaper.kill_and_reap_all();
    let duration = start.elapsed();
    // The largest single process (rusage) or the largest sampled total of
    // the jail, whichever is more.
    let largest_one = getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| u64::try_from(u.max_rss()).unwrap_or(0))
        .unwrap_or(0);
    let peak_rss_kib = largest_one.max(run.rss.as_ref().map_or(0, |r| r.peak_kib));
    let (code, signal) = match reaper.node_status {
        Some(WaitStatus::Exited(_, c)) => (Some(c), None),
        Some(WaitStatus::Signaled(_, s, _)) => (None, Some(s as i32)),
        _ => (None, None),
    };
    // The jail's own tmpfs (never the host's /tmp: unconfined has none).
    let tmpfs_full = if spec.layers.iter().any(|l| l == "unconfined") {
        vec![]
    } else {
        full_tmpfs(&["/tmp", "/dev/shm"])
    };
    tx.exited(ExitReport {
        tmpfs_full,
        code,
        signal,
        stdout_bytes: pump.pipes[0].bytes,
        stderr_bytes: pump.pipes[1].bytes,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        timed_out: run.timed_out,
        output_capped: pump.capped,
        peak_rss_kib,
        layers: spec.layers,
        pty: spec.tty,
        reader_closed: pump
            .pipes
            .iter()
            .filter(|p| p.reader_closed)
            .map(|p| p.stream)
            .collect(),
    });
    if looped.is_err() || reaped.is_err() {
        return Ok(exit::INTERNAL);
    }
    Ok(if pump.capped {
        exit::OUTPUT_CAP
    } else if run.timed_out {
        exit::TIMEOUT
    } else {
        match (code, signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => exit::INTERNAL,
        }
    })
}

struct Run {
    /// When agentd killed the jail (node exit, timeout, or cap).
    killed_at: Option<Instant>,
    timed_out: bool,
    progress: Option<Progress>,
    /// When to give back start-up memory; `None` once done.
    release_at: Option<Instant>,
    /// The jail's summed resident set (PID 1 only).
    rss: Option<JailRss>,
}

impl Run {
    fn kill(&mut self, reaper: &Reaper) {
        reaper.kill_jail();
        self.killed_at.get_or_insert_with(Instant::now);
    }
}

/// The node's output pump and, with a pty, the input relay.
struct Io<'a> {
    pump: &'a mut Pump,
    input: Option<&'a mut tty::Input>,
}

/// The poll loop: node pipes (or the pty master), the relayed input, the
/// signalfd, and the deadline as the timeout. Ends when the node is reaped
/// and its output is closed, or when the kill grace runs out.
fn supervise(
    signals: &Signals,
    reaper: &mut Reaper,
    io: &mut Io<'_>,
    deadline: Instant,
    run: &mut Run,
    tx: &mut ReportTx,
) -> Result<(), AgentError> {
    let pump = &mut *io.pump;
    loop {
        if !reaper.node_alive() && !pump.is_open() {
            return Ok(());
        }
        let now = Instant::now();
        if run.release_at.is_some_and(|t| now >= t) {
            aiops_memtrim::release_idle_memory();
            run.release_at = None;
        }
        let wake = match run.killed_at {
            Some(t) if now >= t + KILL_GRACE => {
                return pump
                    .abandon()
                    .map_err(|source| pump_err(Stream::Stdout, source))
            }
            Some(t) => t + KILL_GRACE,
            None if now >= deadline => {
                run.timed_out = true;
                run.kill(reaper);
                continue;
            }
            None => deadline,
        };
        if let Some(r) = &mut run.rss {
            r.tick(now);
        }
        let wake = run.release_at.map_or(wake, |t| wake.min(t));
        let wake = run.rss.as_ref().map_or(wake, |r| wake.min(r.due()));
        let timeout = PollTimeout::try_from(wake - now).unwrap_or(PollTimeout::MAX);
        let input = io.input.as_deref();
        let in_read = input.and_then(tty::Input::wants_read);
        let in_write = input.and_then(tty::Input::wants_write);
        let sigfd = signals.as_fd();
        let mut fds = [
            PollFd::new(sigfd, PollFlags::POLLIN),
            optional_entry(pump.pipes[0].src(), PollFlags::POLLIN, sigfd),
            optional_entry(pump.pipes[1].src(), PollFlags::POLLIN, sigfd),
            optional_entry(in_read, PollFlags::POLLIN, sigfd),
            optional_entry(in_write, PollFlags::POLLOUT, sigfd),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => return Err(AgentError::Poll { source }),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let ready = [
            ready(&fds[0]),
            ready(&fds[1]),
            ready(&fds[2]),
            in_read.is_some() && ready(&fds[3]),
            in_write.is_some() && ready(&fds[4]),
        ];
        let in_hup = fds[3]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
        if let Some(input) = io.input.as_deref_mut() {
            if ready[3] {
                input.on_readable(in_hup);
            }
            if ready[4] {
                input.on_writable();
            }
        }
        if ready[0] {
            let pending = signals
                .drain()
                .map_err(|source| AgentError::Poll { source })?;
            if let (true, Some(input)) = (pending.winch, io.input.as_deref()) {
                input.copy_winsize();
            }
            for sig in pending.forward.into_iter().flatten() {
                reaper.forward(sig);
            }
            if pending.child
                && reaper
                    .reap_exited()
                    .map_err(|source| AgentError::Wait { source })?
            {
                // The node is gone: nothing may outlive it.
                run.kill(reaper);
            }
        }
        for i in 0..2 {
            if ready[i + 1] {
                let stream = pump.pipes[i].stream;
                pump.on_readable(i)
                    .map_err(|source| pump_err(stream, source))?;
            }
        }
        if pump.capped && run.killed_at.is_none() {
            run.kill(reaper);
        }
        if let Some(p) = &mut run.progress {
            p.maybe_send(pump, tx);
        }
    }
}

/// `fd` polled for `events`, or a placeholder that never wakes poll.
fn optional_entry<'a>(
    fd: Option<BorrowedFd<'a>>,
    events: PollFlags,
    placeholder: BorrowedFd<'a>,
) -> PollFd<'a> {
    match fd {
        Some(fd) => PollFd::new(fd, events),
        // PollFd cannot hold a negative fd (which poll(2) would skip). The
        // signalfd with no events asked stands in: it never reports
        // POLLHUP or POLLERR, which a hung-up stdin would on every call
        // (a busy loop once a `-t` pipe or the caller's terminal closed).
        None => PollFd::new(placeholder, PollFlags::empty()),
    }
}

fn pump_err(stream: Stream, source: std::io::Error) -> AgentError {
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    AgentError::Pump { stream, source }
}

/// Rate-limited `Output` reports.
struct Progress {
    last: Instant,
    sent: [u64; 2],
}

impl Progress {
    fn new(start: Instant) -> Progress {
        Progress {
            last: start,
            sent: [0; 2],
        }
    }

    fn maybe_send(&mut self, pump: &Pump, tx: &mut ReportTx) {
        let now = Instant::now();
        if now < self.last + PROGRESS_EVERY {
            return;
        }
        for (i, p) in pump.pipes.iter().enumerate() {
            if p.bytes != self.sent[i] {
                tx.output(p.stream, p.bytes);
                self.sent[i] = p.bytes;
                self.last = now;
            }
        }
    }
}

/// The spec from the memfd at `AGENT_SPEC_FD`, read from offset 0 and closed.
fn read_spec() -> Result<AgentSpec, AgentError> {
    let fd = sys::adopt_fd(AGENT_SPEC_FD).map_err(|source| AgentError::ReadSpec {
        fd: AGENT_SPEC_FD,
        source,
    })?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let off = i64::try_from(buf.len()).unwrap_or(i64::MAX);
        match nix::sys::uio::pread(&fd, &mut chunk, off) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => continue,
            Err(source) => {
                return Err(AgentError::ReadSpec {
                    fd: AGENT_SPEC_FD,
                    source,
                })
            }
        }
        if buf.len() > MAX_SPEC_BYTES {
            return Err(AgentError::SpecTooLarge {
                len: buf.len(),
                max: MAX_SPEC_BYTES,
            });
        }
    }
    drop(fd);
    AgentSpec::decode(&buf).map_err(|source| AgentError::Spec { source })
}

/// Of `paths` (the jail's tmpfs mounts), those with no block or no inode
/// left when the node ended: a write there failed with ENOSPC, the
/// profile's `[limits] tmpfs`/`tmpfs_inodes` (a report, not a cause: a
/// node may also fill one and carry on).
fn full_tmpfs(paths: &[&str]) -> Vec<String> {
    paths
        .iter()
        .filter(|p| {
            nix::sys::statvfs::statvfs(**p)
                .is_ok_and(|v| v.blocks_available() == 0 || v.files_available() == 0)
        })
        .map(|p| (*p).to_string())
        .collect()
}
