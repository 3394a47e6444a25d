//! The jail's memory in total, sampled: every `SAMPLE_EVERY` agentd sums
//! the resident set of every process in the jail's pid namespace
//! (`/proc/<pid>/statm`, all of them but agentd) and keeps the largest sum.
//!
//! getrusage(RUSAGE_CHILDREN) only knows the largest single process, and
//! without a cgroup nothing else counts the jail as a whole. A sample can
//! miss a peak shorter than the interval; the report takes the larger of
//! the sampled sum and the rusage figure. Pages shared between processes
//! (libraries, shared mappings) are counted once per process that maps them.
use std::fs;
use std::time::{Duration, Instant};

/// How often the jail's processes are summed.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

pub struct JailRss {
    page_kib: u64,
    next: Instant,
    /// Largest sum seen, KiB.
    pub peak_kib: u64,
}

impl JailRss {
    /// Only as PID 1 of the jail's pid namespace: its /proc lists exactly
    /// the jail. Run unconfined, /proc is the host's and this returns None.
    pub fn new(pid1: bool, start: Instant) -> Option<JailRss> {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .unwrap_or(4096);
        pid1.then(|| JailRss {
            page_kib: (page / 1024).max(1),
            next: start + SAMPLE_EVERY,
            peak_kib: 0,
        })
    }

    /// When the next sample is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Take a sample if one is due at `now`.
    pub fn tick(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + SAMPLE_EVERY;
        self.peak_kib = self.peak_kib.max(self.sum_kib());
    }

    /// Resident KiB of every process in /proc but agentd (pid 1). A process
    /// that exits between the listing and the read is skipped.
    fn sum_kib(&self) -> u64 {
        let Ok(dir) = fs::read_dir("/proc") else {
            return 0;
        };
        let mut pages = 0u64;
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == 1 {
                continue;
            }
            let mut path = e.path();
            path.push("statm");
            if let Ok(s) = fs::read_to_string(&path) {
                pages = pages.saturating_add(resident_pages(&s));
            }
        }
        pages.saturating_mul(self.page_kib)
    }
}

/// The second field of /proc/<pid>/statm (proc(5)): resident pages.
fn resident_pages(statm: &str) -> u64 {
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_resident_field_of_statm() {
        assert_eq!(resident_pages("2496 1330 1046 1 0 315 0\n"), 1330);
        assert_eq!(resident_pages(""), 0);
        assert_eq!(resident_pages("12 x"), 0);
    }

    #[test]
    fn samples_only_when_due_and_keeps_the_largest_sum() {
        let start = Instant::now();
        assert!(JailRss::new(false, start).is_none());
        let mut r = JailRss::new(true, start).unwrap();
        r.tick(start);
        assert_eq!(r.peak_kib, 0, "sampled before it was due");
        r.tick(start + SAMPLE_EVERY);
        // Not PID 1 here, so every process of the host but pid 1 counts:
        // at least this test process.
        assert!(r.peak_kib > 0);
        assert_eq!(r.due(), start + 2 * SAMPLE_EVERY);
        r.peak_kib = u64::MAX;
        r.tick(r.due());
        assert_eq!(
            r.peak_kib,
            u64::MAX,
            "a later, smaller sum replaced the peak"
        );
    }
}
