//! Jailers started ahead of their node. Starting aiops-jailer is a vfork
//! and exec during which the starting thread waits (~0.3 ms on the
//! benchmark VM), plus the jailer's own start; done when a slot frees, it
//! sat on every node's critical path. A spare is started while other
//! nodes run and claimed ready: blocked reading its request, holding no
//! request, plan or secret, with its output pipes and egress socket.
//!
//! One thread, alive as long as the process, starts every spare: a
//! jailer's parent-death signal follows the thread that started it, so a
//! spare must outlive the tokio blocking thread that claims it, and still
//! die with the supervisor. At most `max` spares wait (the parallelism);
//! one older than `MAX_AGE` is stopped rather than used, so an upgraded
//! jailer binary is picked up, and idle spares do not linger.
use super::output;
use crate::egress::EgressChannel;
use crate::exec::{self, JailStdio, JailerFds, PendingJail};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

const MAX_AGE: Duration = Duration::from_secs(30);

/// A started jailer waiting for its request, and what goes with it.
pub struct Spare {
    pub pending: PendingJail,
    pub output: output::Unbound,
    pub egress: EgressChannel,
    born: Instant,
}

pub struct Warm {
    jailer: PathBuf,
    max: usize,
    spares: Mutex<VecDeque<Spare>>,
}

type Task = Box<dyn FnOnce() + Send>;

/// The starter thread's queue. On an idle second it also expires spares.
fn starter() -> &'static Mutex<mpsc::Sender<Task>> {
    static STARTER: OnceLock<Mutex<mpsc::Sender<Task>>> = OnceLock::new();
    STARTER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Task>();
        let spawned = std::thread::Builder::new()
            .name("aiops-starter".into())
            .stack_size(256 * 1024)
            .spawn(move || loop {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(task) => task(),
                    Err(RecvTimeoutError::Timeout) => expire_all(),
                    // The sender is static: this does not happen, but the
                    // thread must not return while spares it started run.
                    Err(RecvTimeoutError::Disconnected) => loop {
                        std::thread::park();
                    },
                }
            });
        if let Err(e) = spawned {
            // No spares then: every claim starts its jailer itself.
            tracing::warn!(error = %e, "cannot start the jailer starter thread");
        }
        Mutex::new(tx)
    })
}

/// Every pool, for the idle expiry.
fn pools() -> &'static Mutex<Vec<Weak<Warm>>> {
    static POOLS: OnceLock<Mutex<Vec<Weak<Warm>>>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(vec![]))
}

fn expire_all() {
    let live: Vec<Arc<Warm>> = {
        let mut p = super::lock(pools());
        p.retain(|w| w.strong_count() > 0);
        p.iter().filter_map(Weak::upgrade).collect()
    };
    for w in live {
        w.take_fresh(false);
    }
}

impl Warm {
    /// Spares of `jailer`, at most `max` at a time; none until the first claim.
    pub fn new(jailer: PathBuf, max: usize) -> Arc<Warm> {
        let w = Arc::new(Warm {
            jailer,
            max,
            spares: Mutex::new(VecDeque::new()),
        });
        super::lock(pools()).push(Arc::downgrade(&w));
        w
    }

    /// A spare younger than `MAX_AGE` whose jailer still waits, if any; a
    /// replacement is started either way.
    pub fn claim(self: &Arc<Self>) -> Option<Spare> {
        let got = self.take_fresh(true);
        let me = Arc::downgrade(self);
        let task: Task = Box::new(move || {
            if let Some(w) = me.upgrade() {
                w.top_up();
            }
        });
        // The starter is gone only if it could not be started.
        let _ = super::lock(starter()).send(task);
        got
    }

    /// Drop stale and dead spares (killed and reaped by `PendingJail`'s
    /// drop, outside the lock); with `take`, hand out the first good one.
    fn take_fresh(&self, take: bool) -> Option<Spare> {
        let mut stale = vec![];
        let got = {
            let mut spares = super::lock(&self.spares);
            let mut got = None;
            let mut keep = VecDeque::with_capacity(spares.len());
            while let Some(mut s) = spares.pop_front() {
                if s.born.elapsed() >= MAX_AGE || !s.pending.alive() {
                    stale.push(s);
                } else if take && got.is_none() {
                    got = Some(s);
                } else {
                    keep.push_back(s);
                }
            }
            *spares = keep;
            got
        };
        drop(stale);
        got
    }

    /// On the starter thread: one more spare unless `max` wait already.
    fn top_up(&self) {
        if super::lock(&self.spares).len() >= self.max {
            return;
        }
        match self.start() {
            Ok(s) => super::lock(&self.spares).push_back(s),
            // The claim that finds no spare starts its own jailer and
            // reports whatever fails there.
            Err(e) => tracing::debug!(error = %e, "starting a spare jailer failed"),
        }
    }

    fn start(&self) -> Result<Spare, crate::error::SupervisorError> {
        let (ends, output) = output::prepare(&self.jailer)?;
        let (egress, jail_end) = crate::egress::channel()?;
        let pending = exec::spawn_jailer_with_fds(
            &self.jailer,
            JailStdio::Files {
                stdout: ends.stdout,
                stderr: ends.stderr,
            },
            JailerFds {
                egress: Some(jail_end),
            },
        )?;
        Ok(Spare {
            pending,
            output,
            egress,
            born: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A spare is a real started jailer that the claim gets alive; a killed
    /// spare is never handed out.
    #[test]
    fn a_claim_gets_a_live_spare_and_never_a_dead_one() {
        // Only liveness matters here: a script that waits stands in for
        // the jailer (which would wait for its request).
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("aiops-jailer");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = Warm::new(fake, 1);
        assert!(w.claim().is_none(), "no spare before the first claim");
        let deadline = Instant::now() + Duration::from_secs(5);
        while super::super::lock(&w.spares).is_empty() {
            assert!(Instant::now() < deadline, "no spare was started");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(super::super::lock(&w.spares).len(), 1);
        // Kill the waiting one: the next claim must not hand it out.
        {
            let spares = super::super::lock(&w.spares);
            let pid = spares[0].pending.pid().expect("a waiting spare has a pid");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(w.claim().is_none(), "a dead spare was handed out");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(mut s) = w.claim() {
                assert!(s.pending.alive());
                break;
            }
            assert!(Instant::now() < deadline, "no replacement spare");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
