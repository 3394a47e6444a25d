//! The egress proxy for `net = "allowlist"` (docs/egress.md).
//!
//! The jailer creates a TCP listener on 127.0.0.1:`ALLOWLIST_PROXY_PORT`
//! inside the jail's network namespace and sends it over the egress socket
//! (SCM_RIGHTS); from then on this proxy, outside the jail, accepts the
//! node's connections on it directly. It checks each request against the
//! plan's allow-list and address rules, resolves names itself, connects to
//! exactly the address it checked, copies bytes with the node's limits, and
//! records every attempt. It holds no secrets.
//!
//! The proxy runs on its own thread with a current-thread tokio runtime, so
//! the synchronous `aiopsctl exec` and the tokio daemon use it the same way;
//! `EgressHandle::finish` blocks for at most `FINISH_GRACE` plus a moment
//! (the daemon calls it from `spawn_blocking`).
// The types below are shared with macOS (`ExecReport`); the proxy itself
// serves the Linux jail's listener.
#[cfg(target_os = "linux")]
mod check;
#[cfg(target_os = "linux")]
mod copy;
#[cfg(target_os = "linux")]
mod head;
#[cfg(target_os = "linux")]
mod proxy;
#[cfg(target_os = "linux")]
mod run;
#[cfg(target_os = "linux")]
mod socks;

/// The request-head parser on its own, for `fuzz/` (bytes the node controls).
#[cfg(target_os = "linux")]
pub use check::Denial;
#[cfg(target_os = "linux")]
pub use head::{parse_head, Request};
#[cfg(target_os = "linux")]
pub use run::{channel, start, EgressChannel, EgressHandle};

use aiops_policy::net::{Cidr, HostPort, NetMode};
use aiops_policy::JailPlan;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every proxy of this process together, for the daemon's /metrics.
pub static TOTALS: EgressTotals = EgressTotals::new();

/// Causes of a refusal, as /metrics labels them, and the HTTP statuses
/// (SOCKS5 refusals carry the same) that fall under each.
const CAUSES: [(&str, &[u16]); 6] = [
    ("over_limit", &[503]),
    ("bad_request", &[400, 431]),
    ("head_timeout", &[408]),
    ("policy", &[403]),
    ("upstream", &[502, 504]),
    ("other", &[]),
];

/// Process-wide egress counters (monotonic, never reset).
pub struct EgressTotals {
    connections: AtomicU64,
    refused: [AtomicU64; CAUSES.len()],
    dns_failed: AtomicU64,
    accept_errors: AtomicU64,
}

impl EgressTotals {
    const fn new() -> EgressTotals {
        EgressTotals {
            connections: AtomicU64::new(0),
            refused: [const { AtomicU64::new(0) }; CAUSES.len()],
            dns_failed: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
        }
    }

    pub fn accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, status: u16) {
        let i = CAUSES
            .iter()
            .position(|(_, s)| s.contains(&status))
            .unwrap_or(CAUSES.len() - 1);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// An allowed name whose lookup failed: not a refusal by policy.
    pub fn dns_failed(&self) {
        self.dns_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far with this /metrics cause.
    pub fn refused_for(&self, cause: &str) -> u64 {
        CAUSES
            .iter()
            .position(|(c, _)| *c == cause)
            .map_or(0, |i| self.refused[i].load(Ordering::Relaxed))
    }

    /// Prometheus text, appended to `out`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP aiops_egress_connections_total Connections the egress proxies accepted from allowlist nodes\n\
             # TYPE aiops_egress_connections_total counter\naiops_egress_connections_total {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aiops_egress_refused_total Egress connections refused and closed, by cause\n\
             # TYPE aiops_egress_refused_total counter"
        );
        for (i, (cause, _)) in CAUSES.iter().enumerate() {
            let n = self.refused[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "aiops_egress_refused_total{{cause=\"{cause}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP aiops_egress_dns_failures_total Connections to allowed names whose DNS lookup failed\n\
             # TYPE aiops_egress_dns_failures_total counter\naiops_egress_dns_failures_total {}",
            self.dns_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aiops_egress_accept_errors_total Failed accepts of egress connections (EMFILE and the like)\n\
             # TYPE aiops_egress_accept_errors_total counter\naiops_egress_accept_errors_total {}",
            self.accept_errors.load(Ordering::Relaxed)
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressLimits {
    /// Client connections open at once (from the accept, whether being
    /// read, refused or copied); more are answered 503 and closed at once.
    pub max_connections: usize,
    /// Bytes up plus down over all connections of the node.
    pub max_bytes: u64,
    /// A connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// The whole request head (or SOCKS5 request) must arrive within this
    /// of the accept, or the connection is answered 408 and closed.
    pub head_timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            max_connections: 64,
            max_bytes: 64 << 30,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
        }
    }
}

impl EgressLimits {
    /// The profile's `net.egress` over the defaults.
    pub fn from_plan(p: &aiops_policy::plan::EgressLimitsPlan) -> EgressLimits {
        let d = EgressLimits::default();
        EgressLimits {
            max_connections: p
                .max_connections
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(d.max_connections),
            max_bytes: p.max_bytes.unwrap_or(d.max_bytes),
            idle_timeout: p
                .idle_timeout_ms
                .map_or(d.idle_timeout, Duration::from_millis),
            connect_timeout: d.connect_timeout,
            head_timeout: d.head_timeout,
        }
    }
}

/// What the proxy enforces for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    pub allow: Vec<HostPort>,
    pub allow_private: Vec<Cidr>,
    pub hosts: BTreeMap<String, IpAddr>,
    pub limits: EgressLimits,
}

impl EgressPolicy {
    /// The policy for a plan that needs the proxy (`allowlist`, confined).
    pub fn from_plan(plan: &JailPlan) -> Option<EgressPolicy> {
        (plan.net.mode == NetMode::Allowlist && !plan.unconfined).then(|| EgressPolicy {
            allow: plan.net.allow.clone(),
            allow_private: plan.net.allow_private.clone(),
            hosts: plan.net.hosts.clone(),
            limits: EgressLimits::from_plan(&plan.net.egress),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    Denied,
    /// An allowed name whose DNS lookup failed (not a policy denial).
    DnsFailed,
    /// The node ended before the request was complete.
    #[default]
    Incomplete,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::DnsFailed => "dns_failed",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// One connection attempt of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EgressRecord {
    /// connect, http or socks5.
    pub protocol: String,
    pub host: String,
    pub port: u16,
    /// The address connected to (after the check), if any.
    pub addr: Option<String>,
    pub verdict: Verdict,
    /// Why it was denied, or how an allowed connection ended.
    pub reason: String,
    /// Payload bytes node → peer and peer → node (an HTTP request's
    /// rewritten head counts as sent; the proxy's own CONNECT answer does not).
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
}

/// Every egress attempt of one node, for `--report` and the audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EgressSummary {
    /// The jail's listener reached the proxy (false when set-up failed first).
    pub listening: bool,
    pub connections: u64,
    pub allowed: u64,
    /// Refused connections, all of them (also those past `MAX_RECORDS`).
    pub denied: u64,
    /// Of `denied`: accepts over the node's connection limit, closed at
    /// once without a record each.
    pub over_limit: u64,
    /// Connections to allowed names whose DNS lookup failed (not denied).
    pub dns_failed: u64,
    /// The most client connections the node held open at once.
    pub peak_open: u64,
    /// accept(2) failures (the process out of descriptors, say).
    pub accept_errors: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub records: Vec<EgressRecord>,
    /// Connections past `MAX_RECORDS`, counted above but not listed.
    pub records_dropped: u64,
    /// The proxy itself failed (the node then had no way out).
    pub error: Option<String>,
}

impl EgressSummary {
    /// Lines for `aiopsctl exec --report text`.
    pub fn to_text(&self) -> String {
        let dns = if self.dns_failed > 0 {
            format!(", {} DNS lookups failed", self.dns_failed)
        } else {
            String::new()
        };
        let mut s = format!(
            "aiops: egress: {} connections ({} allowed, {} denied{dns}) · up {} B · down {} B\n",
            self.connections, self.allowed, self.denied, self.bytes_up, self.bytes_down
        );
        if let Some(l) = self.over_limit_line() {
            s += &format!("aiops: egress: {l}\n");
        }
        for r in &self.records {
            let target = if r.host.is_empty() {
                "-".to_string()
            } else {
                HostPort {
                    host: r.host.clone(),
                    port: r.port,
                }
                .to_string()
            };
            let addr = r
                .addr
                .as_deref()
                .map(|a| format!(" → {a}"))
                .unwrap_or_default();
            s += &format!(
                "aiops: egress: {} {} {target}{addr} · up {} B · down {} B · {} ms · {}\n",
                r.verdict.as_str(),
                r.protocol,
                r.bytes_up,
                r.bytes_down,
                r.duration_ms,
                r.reason
            );
        }
        if let Some(e) = &self.error {
            s += &format!("aiops: egress proxy failed: {e}\n");
        }
        s
    }

    fn over_limit_line(&self) -> Option<String> {
        (self.over_limit > 0).then(|| {
            format!(
                "{} connections over the limit closed at once (at most {} open)",
                self.over_limit, self.peak_open
            )
        })
    }

    /// One line per denied attempt (and per failed DNS lookup, worded as
    /// such), printed even with `--report none`.
    pub fn denial_lines(&self) -> Vec<String> {
        let over = self
            .over_limit_line()
            .map(|l| format!("aiopsctl: egress denied: {l}"));
        // A failed lookup is no policy's doing: its own line.
        let dns = self
            .records
            .iter()
            .filter(|r| r.verdict == Verdict::DnsFailed)
            .map(|r| format!("aiopsctl: egress: {}", r.reason));
        self.records
            .iter()
            .filter(|r| r.verdict == Verdict::Denied)
            .map(|r| {
                let t = HostPort {
                    host: r.host.clone(),
                    port: r.port,
                };
                if !r.host.is_empty() && r.reason.contains(&r.host) {
                    format!("aiopsctl: egress denied: {}", r.reason)
                } else {
                    format!("aiopsctl: egress denied: {t}: {}", r.reason)
                }
            })
            .chain(dns)
            .chain(over)
            .collect()
    }
}

#[cfg(all(test, target_os = "linux"))]
#[path = "tests.rs"]
mod tests;
