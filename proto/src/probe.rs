//! `aiops-jailer probe` → `aiopsctl doctor`: live checks that need a
//! single-threaded process (unshare, a fresh /proc, a seccomp filter), as
//! one JSON object. The reader stays tolerant (an older or newer jailer may
//! lack a key or add one): a key it cannot read is "unknown", never "ok".
use serde::{Deserialize, Serialize};

/// One live check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeCheck {
    pub ok: bool,
    pub detail: String,
}

impl ProbeCheck {
    pub fn ok(detail: impl Into<String>) -> Self {
        ProbeCheck {
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn failed(detail: impl Into<String>) -> Self {
        ProbeCheck {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// What the jailer prints; the field names are the keys `LIVE_KEYS` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// 0 when Landlock is absent or disabled.
    pub landlock_abi: u8,
    pub landlock: ProbeCheck,
    pub seccomp: ProbeCheck,
    pub userns: ProbeCheck,
    pub netns: ProbeCheck,
    pub proc_mount: ProbeCheck,
    pub apparmor_restrict_unprivileged_userns: ProbeCheck,
    pub cgroup_v2: ProbeCheck,
}

/// The live checks that refine the host facts, in display order.
pub const LIVE_KEYS: [&str; 5] = ["userns", "netns", "proc_mount", "seccomp", "cgroup_v2"];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_live_key_is_a_field_of_the_report() {
        let c = ProbeCheck::ok("x");
        let r = ProbeReport {
            landlock_abi: 7,
            landlock: c.clone(),
            seccomp: c.clone(),
            userns: c.clone(),
            netns: c.clone(),
            proc_mount: c.clone(),
            apparmor_restrict_unprivileged_userns: c.clone(),
            cgroup_v2: c,
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in LIVE_KEYS {
            assert_eq!(v[k]["ok"], true, "{k}");
        }
    }
}
