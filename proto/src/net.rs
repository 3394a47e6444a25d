//! Network modes and egress allow-list entries.
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where, inside an `allowlist` jail's own network namespace, the egress
/// proxy listens (127.0.0.1): the jailer binds it, the plan points
/// `HTTP(S)_PROXY` and Landlock's TCP rule at it.
pub const ALLOWLIST_PROXY_PORT: u16 = 3128;

/// Ordered from least to most reach: a node may ask for a mode at or below
/// its profile's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// An empty network namespace: no interfaces at all (lo stays down).
    None,
    /// A private network namespace with only its own loopback up.
    Loopback,
    /// Private loopback plus egress to listed host:port through a proxy outside the jail.
    Allowlist,
    /// The host's network. Not a boundary; audited.
    Host,
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetMode::None => "none",
            NetMode::Loopback => "loopback",
            NetMode::Allowlist => "allowlist",
            NetMode::Host => "host",
        })
    }
}

/// `api.example.com:443`, `*.example.com:443`, `192.0.2.7:80`, `[2001:db8::1]:443`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    /// Lower-case name, `*.suffix`, or an IP literal (v6 without brackets).
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| format!("{s:?}: expected [ipv6]:port"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{s:?}: bad IPv6 literal"))?;
            (h.to_string(), p)
        } else {
            let (h, p) = s
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: expected host:port (the port is required)"))?;
            if h.parse::<std::net::Ipv4Addr>().is_err() {
                check_name(h).map_err(|e| format!("{s:?}: {e}"))?;
            }
            (h.to_ascii_lowercase(), p)
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: port {port:?} is not a number 1-65535"))?;
        if port == 0 {
            return Err(format!("{s:?}: port 0 is not a port"));
        }
        Ok(HostPort { host, port })
    }

    /// Does this allow-list entry admit `other` (an entry or a concrete request)?
    /// `*.example.com` admits `a.example.com` and `*.b.example.com`, not `example.com`.
    pub fn admits(&self, other: &HostPort) -> bool {
        if self.port != other.port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => {
                let h = other.host.strip_prefix("*.").unwrap_or(&other.host);
                h.len() > suffix.len()
                    && h.ends_with(suffix)
                    && h.as_bytes()[h.len() - suffix.len() - 1] == b'.'
            }
            None => self.host == other.host,
        }
    }
}

fn check_name(h: &str) -> Result<(), String> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.is_empty() || name.len() > 253 {
        return Err("host name is empty or too long".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!(
                "host label {label:?} is not valid (letters, digits, '-'; a wildcard only as a leading '*.')"
            ));
        }
    }
    Ok(())
}

impl TryFrom<String> for HostPort {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        HostPort::parse(&s)
    }
}
impl From<HostPort> for String {
    fn from(h: HostPort) -> String {
        h.to_string()
    }
}
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
/// An address block, `10.77.0.0/24` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{s:?}: prefix {p:?} is not 0-{max}"))?
        };
        let c = Cidr { addr, prefix };
        if c.network() != addr {
            return Err(format!(
                "{s:?}: host bits are set (did you mean {}/{prefix}?)",
                c.network()
            ));
        }
        Ok(c)
    }

    fn network(&self) -> std::net::IpAddr {
        use std::net::IpAddr;
        match self.addr {
            IpAddr::V4(a) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & m).into())
            }
            IpAddr::V6(a) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & m).into())
            }
        }
    }

    /// Whether `ip` lies in this block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let probe = Cidr {
            addr: ip,
            prefix: self.prefix,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && probe.network() == self.addr
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Cidr::parse(&s)
    }
}
impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wildcard_admits_subdomains_only() {
        let w = HostPort::parse("*.example.com:443").unwrap();
        assert!(w.admits(&HostPort::parse("api.example.com:443").unwrap()));
        assert!(w.admits(&HostPort::parse("*.x.example.com:443").unwrap()));
        assert!(!w.admits(&HostPort::parse("example.com:443").unwrap()));
        assert!(!w.admits(&HostPort::parse("badexample.com:443").unwrap()));
        assert!(!w.admits(&HostPort::parse("api.example.com:80").unwrap()));
    }

    #[test]
    fn cidr_contains_its_block_only() {
        let c = Cidr::parse("10.77.0.0/24").unwrap();
        assert!(c.contains("10.77.0.9".parse().unwrap()));
        assert!(c.contains("::ffff:10.77.0.9".parse().unwrap()));
        assert!(!c.contains("10.77.1.9".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("10.77.0.1/24")
            .unwrap_err()
            .contains("host bits"));
        assert!(Cidr::parse("10.77.0.0/33").is_err());
        assert!(Cidr::parse("example.com/8").is_err());
    }

    #[test]
    fn refuses_missing_port_and_bad_names() {
        assert!(HostPort::parse("example.com").unwrap_err().contains("port"));
        assert!(HostPort::parse("ex ample.com:1").is_err());
        assert!(HostPort::parse("a.*.com:1").is_err());
        assert!(HostPort::parse("a.com:0").is_err());
        assert_eq!(HostPort::parse("[::1]:8").unwrap().to_string(), "[::1]:8");
    }
}
