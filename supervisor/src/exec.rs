//! Running one node: on Linux through `aiops-jailer` (`linux.rs`), on macOS
//! under `sandbox-exec` (`sandbox_exec.rs`). Both end in an `ExecReport`.
use aiops_policy::{AbsPath, NetMode};
use aiops_proto::{ExitReport, Step};
use serde::Serialize;
use std::path::Path;

#[cfg(target_os = "linux")]
mod jail;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use jail::{Jail, JailEvent, JailStop};
#[cfg(target_os = "linux")]
pub use linux::{
    run, spawn_jailer, spawn_jailer_with, spawn_jailer_with_fds, JailStdio, JailerFds, PendingJail,
};
#[cfg(target_os = "linux")]
pub mod socket;
// Std-only, so it is built and tested on Linux too (with a stand-in for
// sandbox-exec); only macOS calls it.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub mod sandbox_exec;

/// Everything known about one run once it is over, for `--report`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    pub profile: String,
    pub cwd: String,
    pub net: NetMode,
    /// The plan's output cap in bytes (stdout and stderr together).
    pub output_cap: u64,
    /// What the jail refused, by layer (docs/security-model.md, "Denials").
    pub denials: crate::denials::Denials,
    /// Set when the jail could not be built (or the node not started).
    pub setup_failed: Option<SetupFailure>,
    pub exit: Option<ExitReport>,
    /// Protected paths (hooks, git config, rc files) the node created.
    pub protected_created: Vec<String>,
    /// Protected paths that existed and changed anyway: they are read-only,
    /// so this is an alarm, never expected.
    pub protected_changed: Vec<String>,
    /// A report frame that broke the protocol; the jail was not trusted further.
    pub protocol_error: Option<String>,
    /// `net = "allowlist"`: every connection attempt through the egress proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<crate::egress::EgressSummary>,
    /// The exit status `aiopsctl exec` returns.
    pub status: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupFailure {
    pub step: Step,
    pub errno: i32,
    pub message: String,
}

impl SetupFailure {
    /// `message`, then ` (errno N)` when the failure carried one: a failure
    /// that is no system call's (a refused plan) has errno 0, which says
    /// nothing and is left out.
    pub fn message_with_errno(&self) -> String {
        match self.errno {
            0 => self.message.clone(),
            e => format!("{} (errno {e})", self.message),
        }
    }
}

/// Identity and content stamp of a path, to notice creation or replacement.
#[derive(Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// Held by whoever starts a child process of the supervisor: the jailer
/// start clears close-on-exec on the fds it passes, and any child started
/// meanwhile would inherit them (see `linux::spawn_jailer_with_fds`).
pub fn lock_spawns() -> std::sync::MutexGuard<'static, ()> {
    static SPAWNS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SPAWNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stamp(p: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = p.symlink_metadata().ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// Stamps of `paths` before a run.
pub fn stamps_of(paths: &[AbsPath]) -> Vec<Option<Stamp>> {
    paths.iter().map(|p| stamp(p.as_path())).collect()
}

/// What a node could plant for the host to run, noted before it starts:
/// the plan's protected paths, and every git directory, `.git` file and
/// protected path aiops-guard finds in the writable roots (the jailer keeps
/// those read-only; this is the report, not the enforcement).
#[cfg(target_os = "linux")]
pub struct Watch {
    protected: Vec<AbsPath>,
    protected_before: Vec<Option<Stamp>>,
    guard: aiops_proto::plan::GuardPlan,
    home: Option<std::path::PathBuf>,
    found: Result<aiops_guard::Found, String>,
    stamps: Vec<(std::path::PathBuf, Option<Stamp>)>,
}

#[cfg(target_os = "linux")]
impl Watch {
    /// Before anything runs in the jail.
    pub fn before(plan: &aiops_proto::plan::JailPlan) -> Watch {
        let home = plan.source.home.as_ref().map(|h| h.as_path().to_path_buf());
        let found =
            aiops_guard::search(&plan.guard, home.as_deref(), false).map_err(|e| e.to_string());
        let stamps = found
            .iter()
            .flat_map(|f| f.read_only.iter().chain(&f.git_files))
            .map(|p| (p.clone(), stamp(p)))
            .collect();
        Watch {
            protected: plan.protected.clone(),
            protected_before: stamps_of(&plan.protected),
            guard: plan.guard.clone(),
            home,
            found,
            stamps,
        }
    }

    /// After the run: (created, changed). Created: protected paths, git
    /// directories and `.git` files that appeared anywhere in the writable
    /// roots (a new repository is named once, not with its hooks). Changed:
    /// read-only paths that changed anyway, an alarm.
    pub fn diff(self) -> (Vec<String>, Vec<String>) {
        let (mut created, mut changed) = protected_diff(&self.protected, self.protected_before);
        for (p, was) in &self.stamps {
            if stamp(p) != *was && !changed.contains(&p.display().to_string()) {
                changed.push(p.display().to_string());
            }
        }
        if self.guard.roots.is_empty() {
            return (created, changed);
        }
        let before = match self.found {
            Ok(f) => f,
            Err(e) => {
                created.push(format!(
                    "(not known: the search before the run failed: {e})"
                ));
                return (created, changed);
            }
        };
        let after = match aiops_guard::search(&self.guard, self.home.as_deref(), false) {
            Ok(f) => f,
            Err(e) => {
                created.push(format!("(not known: the search after the run failed: {e})"));
                return (created, changed);
            }
        };
        let new_repos: Vec<&std::path::PathBuf> = after.repos.difference(&before.repos).collect();
        let in_new_repo = |p: &std::path::Path| new_repos.iter().any(|r| p.starts_with(r));
        let appeared = new_repos
            .iter()
            .map(|p| p.to_path_buf())
            .chain(after.git_files.difference(&before.git_files).cloned())
            .chain(
                after
                    .read_only
                    .difference(&before.read_only)
                    .filter(|p| !in_new_repo(p))
                    .cloned(),
            );
        for p in appeared {
            let s = p.display().to_string();
            if !created.contains(&s) {
                created.push(s);
            }
        }
        (created, changed)
    }
}

/// (created, changed) protected paths after a run.
pub fn protected_diff(paths: &[AbsPath], before: Vec<Option<Stamp>>) -> (Vec<String>, Vec<String>) {
    let (mut created, mut changed) = (vec![], vec![]);
    for (p, was) in paths.iter().zip(before) {
        match (was, stamp(p.as_path())) {
            (None, Some(_)) => created.push(p.to_string()),
            (Some(a), now) if now.as_ref() != Some(&a) => changed.push(p.to_string()),
            _ => {}
        }
    }
    (created, changed)
}

impl ExecReport {
    /// A short block for `--report text`, written to stderr.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "aiops: profile {} · net {} · cwd {}\n",
            self.profile, self.net, self.cwd
        );
        if let Some(f) = &self.setup_failed {
            s += &format!(
                "aiops: not run: {} failed: {}\n",
                f.step,
                f.message_with_errno()
            );
        }
        if let Some(e) = &self.exit {
            let how = match (e.code, e.signal) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "no status".into(),
            };
            s += &format!(
                "aiops: {how} · {} ms · {} {} B · stderr {} B · peak rss {} KiB{}{}\n",
                e.duration_ms,
                // With a pty, everything the node wrote to its terminal.
                if e.pty { "pty" } else { "stdout" },
                e.stdout_bytes,
                e.stderr_bytes,
                e.peak_rss_kib,
                if e.timed_out { " · TIMED OUT" } else { "" },
                if e.output_capped {
                    " · OUTPUT CAPPED"
                } else {
                    ""
                },
            );
            s += &format!("aiops: layers: {}\n", e.layers.join(", "));
        }
        s += &self.denials.to_text();
        if let Some(e) = &self.egress {
            s += &e.to_text();
        }
        for line in self.protected_notes() {
            s += &format!("aiops: {line}\n");
        }
        s
    }

    /// The line explaining a failure, printed even with `--report none`.
    pub fn failure_line(&self) -> Option<String> {
        if let Some(p) = &self.protocol_error {
            return Some(format!("aiopsctl: {p}"));
        }
        if self.setup_failed.is_some() {
            // The jailer or agentd already wrote its one line to stderr.
            return None;
        }
        let e = self.exit.as_ref()?;
        if e.timed_out {
            Some(format!(
                "aiopsctl: timed out after {} ms; the jail was killed",
                e.duration_ms
            ))
        } else if e.output_capped {
            Some(format!("aiopsctl: {}", self.output_cap_text()))
        } else {
            None
        }
    }

    /// Why a capped node was killed and where its cap comes from: a node
    /// can only lower its profile's cap, so more takes another profile.
    pub fn output_cap_text(&self) -> String {
        let cap = aiops_policy::units::Bytes(self.output_cap);
        format!(
            "output cap of {cap} reached (stdout and stderr together); the jail was killed. \
             The cap is [limits] output of profile {}: a node may lower it, and more takes \
             a profile that raises it (the operator's ceiling)",
            self.profile
        )
    }

    /// Protected paths changed (an alarm) or created (git directories,
    /// hooks, `.git` files), one line each: `aiopsctl exec` prints them
    /// whatever `--report` says, since the host may run them the next time
    /// someone types `git status`; a flow node's reason carries them.
    pub fn protected_notes(&self) -> Vec<String> {
        let mut out = vec![];
        if !self.protected_changed.is_empty() {
            out.push(format!(
                "ALARM: read-only protected paths changed: {}",
                self.protected_changed.join(", ")
            ));
        }
        if !self.protected_created.is_empty() {
            out.push(format!(
                "warning: the node created protected paths the host may run (check them before using git there): {}",
                self.protected_created.join(", ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod setup_failure_tests {
    use super::*;

    /// A failure that is no system call's has errno 0: the message says
    /// nothing about it rather than "(errno 0)".
    #[test]
    fn errno_0_is_left_out_of_the_message() {
        let f = |errno| SetupFailure {
            step: Step::Validate,
            errno,
            message: "refuse request: outside the ceiling".into(),
        };
        assert_eq!(
            f(0).message_with_errno(),
            "refuse request: outside the ceiling"
        );
        assert_eq!(
            f(13).message_with_errno(),
            "refuse request: outside the ceiling (errno 13)"
        );
    }
}
