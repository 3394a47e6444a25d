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
mod proxy;
#[cfg(target_os = "linux")]
mod run;
#[cfg(target_os = "linux")]
mod socks;

/// The request-head parser on its own, for `fuzz/` (bytes the node controls).
#[cfg(target_os = "linux")]
pub use check::Denial;
#[cfg(target_os = "linux")]
pub use proxy::{parse_head, Request};
#[cfg(target_os = "linux")]
pub use run::{channel, start, EgressChannel, EgressHandle};

use aiops_policy::net::{Cidr, HostPort, NetMode};
use aiops_policy::JailPlan;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressLimits {
    /// Connections open at once; more are answered 503.
    pub max_connections: usize,
    /// Bytes up plus down over all connections of the node.
    pub max_bytes: u64,
    /// A connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            max_connections: 64,
            max_bytes: 64 << 30,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
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
    /// The node ended before the request was complete.
    #[default]
    Incomplete,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
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
    pub denied: u64,
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
        let mut s = format!(
            "aiops: egress: {} connections ({} allowed, {} denied) · up {} B · down {} B\n",
            self.connections, self.allowed, self.denied, self.bytes_up, self.bytes_down
        );
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

    /// One line per denied attempt, printed even with `--report none`.
    pub fn denial_lines(&self) -> Vec<String> {
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
            .collect()
    }
}

#[cfg(all(test, target_os = "linux"))]
#[path = "tests.rs"]
mod tests;
