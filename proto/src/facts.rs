//! What the host can provide, as data: probed by `aiopsctl doctor` and the
//! jailer, or written by hand in golden tests.
use serde::{Deserialize, Serialize};
use std::fmt;

/// The newest Landlock ABI this build knows how to use.
pub const LANDLOCK_ABI_MAX: u8 = 7;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub os: Os,
    /// 0 when Landlock is absent or disabled.
    pub landlock_abi: u8,
    pub seccomp: bool,
    pub userns: bool,
    pub netns: bool,
    /// A delegated cgroup v2 subtree with memory and pids controllers.
    pub cgroup_v2: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Os {
    Linux,
    Macos,
}

impl HostFacts {
    /// A Linux host with every layer but cgroups, at the given Landlock ABI.
    pub fn linux(landlock_abi: u8) -> Self {
        HostFacts {
            os: Os::Linux,
            landlock_abi,
            seccomp: true,
            userns: true,
            netns: true,
            cgroup_v2: false,
        }
    }
    pub fn with_cgroup_v2(mut self, v: bool) -> Self {
        self.cgroup_v2 = v;
        self
    }
}

/// A layer a profile requires; the node is refused when the host lacks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LayerReq {
    UserNs,
    MountNs,
    PidNs,
    NetNs,
    IpcNs,
    UtsNs,
    CgroupNs,
    Seccomp,
    /// Landlock at this ABI or newer (1 for plain `landlock`).
    Landlock(u8),
    Rlimits,
    /// A delegated cgroup v2 subtree (memory.max, pids.max).
    Cgroup,
}

impl LayerReq {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "userns" => LayerReq::UserNs,
            "mountns" => LayerReq::MountNs,
            "pidns" => LayerReq::PidNs,
            "netns" => LayerReq::NetNs,
            "ipcns" => LayerReq::IpcNs,
            "utsns" => LayerReq::UtsNs,
            "cgroupns" => LayerReq::CgroupNs,
            "seccomp" => LayerReq::Seccomp,
            "landlock" => LayerReq::Landlock(1),
            "rlimits" => LayerReq::Rlimits,
            "cgroup" => LayerReq::Cgroup,
            _ => match s.strip_prefix("landlock>=") {
                Some(n) => {
                    let v: u8 = n
                        .parse()
                        .map_err(|_| format!("{s:?}: expected landlock>=N with N a number"))?;
                    if v == 0 || v > LANDLOCK_ABI_MAX {
                        return Err(format!(
                            "{s:?}: this aiops knows Landlock ABI 1 to {LANDLOCK_ABI_MAX}"
                        ));
                    }
                    LayerReq::Landlock(v)
                }
                None => {
                    return Err(format!(
                        "unknown layer {s:?} (userns, mountns, pidns, netns, ipcns, utsns, cgroupns, seccomp, landlock, landlock>=N, rlimits, cgroup)"
                    ))
                }
            },
        })
    }

    /// `None` when the host provides the layer, else why not.
    pub fn missing_on(&self, f: &HostFacts) -> Option<String> {
        let linux_only = |ok: bool, what: &str| match (f.os, ok) {
            (Os::Linux, true) => None,
            (Os::Linux, false) => Some(format!("{what} is not available on this kernel")),
            (Os::Macos, _) => Some(format!("{what} is Linux-only")),
        };
        match self {
            LayerReq::UserNs => linux_only(f.userns, "unprivileged user namespaces"),
            LayerReq::MountNs
            | LayerReq::PidNs
            | LayerReq::IpcNs
            | LayerReq::UtsNs
            | LayerReq::CgroupNs => linux_only(f.userns, "namespaces (they need a user namespace)"),
            LayerReq::NetNs => linux_only(f.netns && f.userns, "network namespaces"),
            LayerReq::Seccomp => linux_only(f.seccomp, "seccomp filters"),
            LayerReq::Rlimits => linux_only(true, "rlimits"),
            LayerReq::Cgroup => linux_only(f.cgroup_v2, "a delegated cgroup v2 subtree"),
            LayerReq::Landlock(n) => match f.os {
                Os::Macos => Some("landlock is Linux-only".into()),
                Os::Linux if f.landlock_abi >= *n => None,
                Os::Linux if f.landlock_abi == 0 => {
                    Some(format!("landlock is absent (need ABI {n})"))
                }
                Os::Linux => Some(format!(
                    "landlock ABI {} here, profile needs {n}",
                    f.landlock_abi
                )),
            },
        }
    }
}

impl fmt::Display for LayerReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerReq::UserNs => f.write_str("userns"),
            LayerReq::MountNs => f.write_str("mountns"),
            LayerReq::PidNs => f.write_str("pidns"),
            LayerReq::NetNs => f.write_str("netns"),
            LayerReq::IpcNs => f.write_str("ipcns"),
            LayerReq::UtsNs => f.write_str("utsns"),
            LayerReq::CgroupNs => f.write_str("cgroupns"),
            LayerReq::Seccomp => f.write_str("seccomp"),
            LayerReq::Landlock(1) => f.write_str("landlock"),
            LayerReq::Landlock(n) => write!(f, "landlock>={n}"),
            LayerReq::Rlimits => f.write_str("rlimits"),
            LayerReq::Cgroup => f.write_str("cgroup"),
        }
    }
}
impl TryFrom<String> for LayerReq {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        LayerReq::parse(&s)
    }
}
impl From<LayerReq> for String {
    fn from(l: LayerReq) -> String {
        l.to_string()
    }
}
