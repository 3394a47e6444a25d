//! The per-node denial report (issue 18): what the jail refused, grouped
//! by the layer that refused it, each with what would allow it. Built from
//! the jailer's count of seccomp denials (its waiting parent answers each
//! denied call with the filter's errno and counts it; `jailer/src/denials.rs`)
//! and from the limits agentd reports reaching. The egress proxy's refusals
//! are its own section of the report (`egress`).
use aiops_proto::plan::SeccompPlan;
use aiops_proto::report::{ExitReport, SeccompDenials};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denials {
    /// The jailer counted seccomp denials for this node. False where it
    /// could not (no filter, unconfined, nested in another aiops jail,
    /// macOS): an empty list then means "not known", not "none".
    pub seccomp_recorded: bool,
    /// Calls the seccomp filter denied, most frequent first.
    pub seccomp: Vec<SyscallDenial>,
    /// Denials of further distinct calls, counted only.
    pub seccomp_others: u64,
    /// Limits the node reached.
    pub limits: Vec<LimitHit>,
    /// Direct connection attempts the jail's network refused (the proxy's
    /// own refusals are in `egress`), most frequent first.
    #[serde(default)]
    pub network: Vec<NetDenial>,
    /// Attempts to further distinct addresses, counted only.
    #[serde(default)]
    pub network_others: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDenial {
    /// `connect`, or `sendto` with an address.
    pub syscall: String,
    pub addr: String,
    pub port: u16,
    pub count: u64,
    pub why: String,
    pub allow: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallDenial {
    pub syscall: String,
    /// What the node got, e.g. `EPERM`.
    pub errno: String,
    pub count: u64,
    /// The rule's reason, from the plan.
    pub why: String,
    /// What would allow it.
    pub allow: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitHit {
    /// `timeout` or `output`, as in the profile's `[limits]`.
    pub limit: String,
    pub value: String,
    pub allow: String,
}

/// Per syscall name: the plan's reason, and whether the baseline (which
/// every profile gets and none can lift) denies it.
#[derive(Debug, Clone, Default)]
pub struct SeccompRules(BTreeMap<String, (String, bool)>);

impl SeccompRules {
    pub fn of(plan: Option<&SeccompPlan>) -> SeccompRules {
        let mut baseline: Vec<String> = aiops_policy::syscalls::baseline_deny()
            .into_iter()
            .chain(aiops_policy::syscalls::baseline_enosys())
            .chain(aiops_policy::syscalls::baseline_eafnosupport())
            .map(|r| r.syscall)
            .collect();
        baseline.sort();
        let mut map = BTreeMap::new();
        for r in plan.into_iter().flat_map(|p| {
            p.deny_eperm
                .iter()
                .chain(&p.deny_enosys)
                .chain(&p.deny_eafnosupport)
        }) {
            let base = baseline.binary_search(&r.syscall).is_ok();
            // A syscall's first rule names it; conditional ones repeat it.
            map.entry(r.syscall.clone())
                .or_insert_with(|| (r.reason.clone(), base));
        }
        SeccompRules(map)
    }
}

/// Whether the plan's network refuses attempt `a`, and then why and what
/// would allow it. Loopback is the jail's own; `allowlist` reaches only its
/// proxy at 127.0.0.1:3128; `host` is the host's network (no refusal known).
fn refused(
    net: aiops_proto::net::NetMode,
    profile: &str,
    a: &aiops_proto::report::Attempt,
) -> Option<(String, String)> {
    use aiops_proto::net::NetMode;
    let ip: Option<std::net::IpAddr> = a.addr.parse().ok();
    let loopback = ip.is_some_and(|i| i.is_loopback());
    let proxy = loopback && a.port == aiops_proto::net::ALLOWLIST_PROXY_PORT;
    let dns = a.port == 53;
    let target = match ip {
        Some(std::net::IpAddr::V6(_)) => format!("[{}]:{}", a.addr, a.port),
        _ => format!("{}:{}", a.addr, a.port),
    };
    let through_proxy = format!(
        "net = \"allowlist\" with the host's name and port {} in net.allow (profile {profile}), \
         reached through the proxy (HTTPS_PROXY=http://127.0.0.1:{})",
        a.port,
        aiops_proto::net::ALLOWLIST_PROXY_PORT
    );
    let (why, allow) = match net {
        NetMode::Host => return None,
        NetMode::Loopback if loopback => return None,
        NetMode::Allowlist if proxy => return None,
        _ if dns => (
            format!("DNS to {target}: the jail has no resolver"),
            format!(
                "nothing in the jail: names resolve at the egress proxy, so use net = \
                 \"allowlist\" (profile {profile}) and a client that connects through \
                 HTTPS_PROXY=http://127.0.0.1:{}",
                aiops_proto::net::ALLOWLIST_PROXY_PORT
            ),
        ),
        NetMode::None => (
            "net = \"none\": the jail has no network at all".to_string(),
            through_proxy,
        ),
        NetMode::Loopback => (
            "net = \"loopback\": only the jail's own loopback".to_string(),
            through_proxy,
        ),
        NetMode::Allowlist => (
            format!(
                "direct connections bypass the egress proxy: only 127.0.0.1:{} is reachable",
                aiops_proto::net::ALLOWLIST_PROXY_PORT
            ),
            through_proxy,
        ),
    };
    Some((why, allow))
}

/// The name of an errno the Linux jailer answered with (Linux numbers,
/// whatever platform reads the report).
fn errno_name(e: i32) -> String {
    match e {
        1 => "EPERM".into(),
        38 => "ENOSYS".into(),
        97 => "EAFNOSUPPORT".into(),
        e => format!("errno {e}"),
    }
}

impl Denials {
    #[allow(clippy::too_many_arguments)] // one call site per platform, each a report
    pub fn build(
        profile: &str,
        net: aiops_proto::net::NetMode,
        rules: &SeccompRules,
        seccomp: Option<&SeccompDenials>,
        exit: Option<&ExitReport>,
        output_cap: u64,
        timeout_ms: u64,
    ) -> Denials {
        let mut d = Denials {
            seccomp_recorded: seccomp.is_some(),
            ..Denials::default()
        };
        for c in seccomp.map(|s| s.calls.as_slice()).unwrap_or_default() {
            let (why, allow) = match rules.0.get(&c.syscall) {
                Some((why, true)) => (
                    why.clone(),
                    "nothing: the baseline table applies to every profile".to_string(),
                ),
                Some((why, false)) => (
                    why.clone(),
                    format!(
                        "a profile whose chain does not list it: [seccomp] deny in profile \
                         {profile} or one it extends names {:?}",
                        c.syscall
                    ),
                ),
                // x32 numbers, and conditional rules keyed by another name.
                None if c.syscall == "x32" => (
                    "the x32 ABI is denied (a second syscall table the filter would need)".into(),
                    "nothing: build the program for x86_64".into(),
                ),
                None => (
                    "a rule of the baseline or the profile".into(),
                    String::new(),
                ),
            };
            d.seccomp.push(SyscallDenial {
                syscall: c.syscall.clone(),
                errno: errno_name(c.errno),
                count: c.count,
                why,
                allow,
            });
        }
        d.seccomp_others = seccomp.map_or(0, |s| s.others);
        if let Some(s) = seccomp {
            for a in &s.connects {
                if let Some((why, allow)) = refused(net, profile, a) {
                    d.network.push(NetDenial {
                        syscall: a.syscall.clone(),
                        addr: a.addr.clone(),
                        port: a.port,
                        count: a.count,
                        why,
                        allow,
                    });
                }
            }
            // Not classified (no address): at worst, refused ones.
            d.network_others = s.connects_others;
        }
        if let Some(e) = exit {
            if e.timed_out {
                d.limits.push(LimitHit {
                    limit: "timeout".into(),
                    value: aiops_policy::units::Dur(timeout_ms).to_string(),
                    allow: format!(
                        "[limits] timeout above it in profile {profile} (a node may only lower it)"
                    ),
                });
            }
            for t in &e.tmpfs_full {
                d.limits.push(LimitHit {
                    limit: "tmpfs".into(),
                    value: format!("{t} full"),
                    allow: format!(
                        "[limits] tmpfs (size) or tmpfs_inodes above it in profile {profile} \
                         (a node may only lower them), or write large files to the workspace"
                    ),
                });
            }
            // The kernel's signals for RLIMIT_CPU and RLIMIT_FSIZE (Linux numbers).
            let rlimit = match e.signal {
                Some(24) => Some(("cpu", "SIGXCPU: CPU time")),
                Some(25) => Some(("file_size", "SIGXFSZ: a file reached the size limit")),
                _ => None,
            };
            if let Some((limit, what)) = rlimit {
                d.limits.push(LimitHit {
                    limit: limit.into(),
                    value: what.into(),
                    allow: format!(
                        "[limits] {limit} above it in profile {profile} (a node may only lower it)"
                    ),
                });
            }
            if e.output_capped {
                d.limits.push(LimitHit {
                    limit: "output".into(),
                    value: aiops_policy::units::Bytes(output_cap).to_string(),
                    allow: format!(
                        "[limits] output above it in profile {profile} (a node may only lower it)"
                    ),
                });
            }
        }
        d
    }

    pub fn is_empty(&self) -> bool {
        self.seccomp.is_empty()
            && self.seccomp_others == 0
            && self.limits.is_empty()
            && self.network.is_empty()
    }

    /// Lines for the text report, each starting `aiops: denied`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for c in &self.seccomp {
            s += &format!(
                "aiops: denied by seccomp: {} ×{} ({}): {}",
                c.syscall, c.count, c.errno, c.why
            );
            if !c.allow.is_empty() {
                s += &format!("; allowed by: {}", c.allow);
            }
            s.push('\n');
        }
        if self.seccomp_others > 0 {
            s += &format!(
                "aiops: denied by seccomp: {} more call(s) of other syscalls (not named: the list is full)\n",
                self.seccomp_others
            );
        }
        for n in &self.network {
            s += &format!(
                "aiops: denied by network: {} {}:{} ×{}: {}; allowed by: {}\n",
                n.syscall, n.addr, n.port, n.count, n.why, n.allow
            );
        }
        if self.network_others > 0 {
            s += &format!(
                "aiops: network: {} more attempt(s) to other addresses (not listed: the list is full)\n",
                self.network_others
            );
        }
        for l in &self.limits {
            s += &format!(
                "aiops: denied by limits: {} {} reached; allowed by: {}\n",
                l.limit, l.value, l.allow
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aiops_proto::report::DeniedCall;
    use aiops_proto::syscalls::SyscallRule;

    #[test]
    fn each_denial_names_its_rule_and_what_would_allow_it() {
        let mut plan = SeccompPlan {
            deny_eperm: aiops_policy::syscalls::baseline_deny(),
            deny_enosys: vec![],
            deny_eafnosupport: vec![],
            block_x32: true,
        };
        plan.deny_eperm.push(SyscallRule {
            syscall: "uname".into(),
            when: vec![],
            reason: "the profile says so".into(),
        });
        let rules = SeccompRules::of(Some(&plan));
        let seen = SeccompDenials {
            calls: vec![
                DeniedCall {
                    syscall: "unshare".into(),
                    errno: 1,
                    count: 3,
                },
                DeniedCall {
                    syscall: "uname".into(),
                    errno: 1,
                    count: 1,
                },
            ],
            others: 2,
            connects: vec![],
            connects_others: 0,
        };
        let exit = ExitReport {
            output_capped: true,
            ..ExitReport::default()
        };
        let d = Denials::build(
            "mine",
            aiops_proto::net::NetMode::None,
            &rules,
            Some(&seen),
            Some(&exit),
            1 << 20,
            1000,
        );
        let text = d.to_text();
        assert!(
            text.contains("denied by seccomp: unshare ×3 (EPERM)")
                && text.contains("nothing: the baseline table"),
            "{text}"
        );
        assert!(
            text.contains("uname ×1 (EPERM): the profile says so")
                && text.contains("profile mine or one it extends"),
            "{text}"
        );
        assert!(text.contains("2 more call(s)"), "{text}");
        assert!(
            text.contains("denied by limits: output 1MiB reached"),
            "{text}"
        );
        assert!(
            !Denials::build(
                "p",
                aiops_proto::net::NetMode::None,
                &rules,
                None,
                None,
                1,
                1
            )
            .seccomp_recorded
        );
    }
}
