//! The egress verdict: is `host:port` on the allow-list, and is every
//! address it resolves to one the node may reach? Resolution happens here,
//! once; the proxy connects only to the addresses returned, so a name
//! cannot resolve to one address for the check and another for the connect.
use aiops_policy::net::{Cidr, HostPort};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A name must resolve within this, or the connection is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection was refused; `status` is the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub reason: String,
    /// The name could not be resolved: not a policy decision, reported as
    /// "DNS lookup of HOST failed" rather than "egress denied".
    pub dns: bool,
}

impl Denial {
    pub fn new(status: u16, reason: impl Into<String>) -> Denial {
        Denial {
            status,
            reason: reason.into(),
            dns: false,
        }
    }

    /// A failed lookup of an allowed name.
    pub fn dns(status: u16, host: &str, why: impl std::fmt::Display) -> Denial {
        Denial {
            status,
            reason: format!("DNS lookup of {host} failed: {why}"),
            dns: true,
        }
    }
}

/// A resolver standing in for DNS in unit tests (the rebinding test).
pub type ResolveFn = Arc<dyn Fn(&str) -> Vec<IpAddr> + Send + Sync>;

pub struct Checker {
    pub allow: Vec<HostPort>,
    pub allow_private: Vec<Cidr>,
    pub hosts: BTreeMap<String, IpAddr>,
    pub resolve: Option<ResolveFn>,
}

/// The address classes a node may not reach unless the profile lists the
/// block in `net.allow_private`; `None` for an ordinary public address.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => v4_class(a),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return v4_class(v4);
            }
            let seg0 = a.segments()[0];
            if a.is_unspecified() {
                Some("unspecified")
            } else if a.is_loopback() {
                Some("loopback")
            } else if a.is_multicast() {
                Some("multicast")
            } else if seg0 & 0xffc0 == 0xfe80 || seg0 & 0xffc0 == 0xfec0 {
                Some("link-local")
            } else if seg0 & 0xfe00 == 0xfc00 {
                // fd00:ec2::254 (the EC2 metadata service over IPv6) is here.
                Some("unique local (fc00::/7)")
            } else if a.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64: judge the IPv4 address it embeds.
                let o = a.octets();
                v4_class(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
            } else {
                None
            }
        }
    }
}

fn v4_class(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    if a.is_unspecified() || o[0] == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if a.is_loopback() {
        Some("loopback")
    } else if a.is_link_local() {
        Some("link-local (169.254.0.0/16, cloud metadata)")
    } else if a.is_private() {
        Some("private (RFC 1918)")
    } else if o[0] == 100 && o[1] & 0xc0 == 64 {
        Some("shared address space (100.64.0.0/10)")
    } else if a.is_multicast() {
        Some("multicast")
    } else if a.is_broadcast() || o[0] >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

impl Checker {
    /// Allowed: the addresses to try, in order, every one of them checked.
    pub async fn check(&self, target: &HostPort) -> Result<Vec<SocketAddr>, Denial> {
        if target.host.starts_with("*.") {
            return Err(Denial::new(400, "a wildcard is not a host name"));
        }
        if !self.allow.iter().any(|a| a.admits(target)) {
            return Err(Denial::new(
                403,
                format!("{target} is not on the profile's net.allow list"),
            ));
        }
        let ips = self.resolve(&target.host).await?;
        if ips.is_empty() {
            return Err(Denial::dns(502, &target.host, "no address"));
        }
        for ip in &ips {
            if let Some(class) = forbidden_class(*ip) {
                if !self.allow_private.iter().any(|c| c.contains(*ip)) {
                    return Err(Denial::new(
                        403,
                        format!(
                            "{} resolves to {ip}, a {class} address (list its block in net.allow_private to allow it)",
                            target.host
                        ),
                    ));
                }
            }
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, target.port))
            .collect())
    }

    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Denial> {
        // An IP literal (IPv6 without brackets, as HostPort keeps it).
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if let Some(ip) = self.hosts.get(host) {
            return Ok(vec![*ip]);
        }
        if let Some(f) = &self.resolve {
            return Ok(f(host));
        }
        let looked = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, 0)))
            .await
            .map_err(|_| Denial::dns(504, host, format!("timed out after {RESOLVE_TIMEOUT:?}")))?
            .map_err(|e| Denial::dns(502, host, e))?;
        let mut ips: Vec<IpAddr> = vec![];
        for a in looked {
            if !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_the_addresses_a_node_must_not_reach() {
        for (a, want) in [
            ("127.0.0.1", Some("loopback")),
            (
                "169.254.169.254",
                Some("link-local (169.254.0.0/16, cloud metadata)"),
            ),
            ("10.1.2.3", Some("private (RFC 1918)")),
            ("172.16.0.1", Some("private (RFC 1918)")),
            ("192.168.1.1", Some("private (RFC 1918)")),
            ("100.64.0.1", Some("shared address space (100.64.0.0/10)")),
            ("224.0.0.1", Some("multicast")),
            ("0.0.0.0", Some("unspecified (0.0.0.0/8)")),
            ("255.255.255.255", Some("reserved (240.0.0.0/4)")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fd00:ec2::254", Some("unique local (fc00::/7)")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            (
                "64:ff9b::a9fe:a9fe",
                Some("link-local (169.254.0.0/16, cloud metadata)"),
            ),
            ("93.184.216.34", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(forbidden_class(ip(a)), want, "{a}");
        }
    }

    fn checker(allow: &[&str], private: &[&str], hosts: &[(&str, &str)]) -> Checker {
        Checker {
            allow: allow.iter().map(|s| HostPort::parse(s).unwrap()).collect(),
            allow_private: private.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
            hosts: hosts.iter().map(|(k, v)| (k.to_string(), ip(v))).collect(),
            resolve: Some(Arc::new(|_| vec![])),
        }
    }

    fn hp(s: &str) -> HostPort {
        HostPort::parse(s).unwrap()
    }

    #[tokio::test]
    async fn admits_listed_names_on_allowed_addresses_only() {
        let c = checker(
            &["*.test:443", "web.test:80"],
            &["10.77.0.0/24"],
            &[
                ("web.test", "10.77.0.2"),
                ("a.test", "10.77.0.2"),
                ("loop.test", "127.0.0.1"),
                ("meta.test", "169.254.169.254"),
                ("lan.test", "10.1.0.2"),
            ],
        );
        assert_eq!(
            c.check(&hp("web.test:80")).await.unwrap(),
            vec!["10.77.0.2:80".parse().unwrap()]
        );
        assert!(c.check(&hp("a.test:443")).await.is_ok());
        let no = |d: Denial| (d.status, d.reason);
        let (s, r) = no(c.check(&hp("web.test:81")).await.unwrap_err());
        assert_eq!(
            (s, r.contains("not on the profile's net.allow")),
            (403, true)
        );
        let (s, r) = no(c.check(&hp("evil.example:443")).await.unwrap_err());
        assert_eq!(
            (s, r.contains("not on the profile's net.allow")),
            (403, true)
        );
        let (s, r) = no(c.check(&hp("loop.test:443")).await.unwrap_err());
        assert_eq!((s, r.contains("loopback")), (403, true));
        let (s, r) = no(c.check(&hp("meta.test:443")).await.unwrap_err());
        assert_eq!((s, r.contains("cloud metadata")), (403, true));
        let (s, r) = no(c.check(&hp("lan.test:443")).await.unwrap_err());
        assert_eq!((s, r.contains("RFC 1918")), (403, true));
        // An IP literal must itself be listed.
        let (s, _) = no(c.check(&hp("10.77.0.2:80")).await.unwrap_err());
        assert_eq!(s, 403);
    }

    #[tokio::test]
    async fn a_listed_ip_literal_is_checked_like_a_name() {
        let c = checker(
            &["10.77.0.2:80", "169.254.169.254:80"],
            &["10.77.0.0/24"],
            &[],
        );
        assert!(c.check(&hp("10.77.0.2:80")).await.is_ok());
        let d = c.check(&hp("169.254.169.254:80")).await.unwrap_err();
        assert_eq!(d.status, 403);
    }

    #[tokio::test]
    async fn a_failed_lookup_is_a_dns_failure_not_a_policy_denial() {
        // No address (the stand-in resolver), and a real lookup of a name
        // that cannot exist (.invalid, RFC 6761) wherever DNS is.
        let c = checker(&["nx.test:443", "nx.invalid:443"], &[], &[]);
        let d = c.check(&hp("nx.test:443")).await.unwrap_err();
        assert!(d.dns, "{d:?}");
        assert_eq!(d.reason, "DNS lookup of nx.test failed: no address");
        let mut c = c;
        c.resolve = None;
        let d = c.check(&hp("nx.invalid:443")).await.unwrap_err();
        assert!(d.dns, "{d:?}");
        assert!(
            d.reason.starts_with("DNS lookup of nx.invalid failed: "),
            "{}",
            d.reason
        );
        // A policy refusal stays one.
        let d = c.check(&hp("other.test:443")).await.unwrap_err();
        assert!(!d.dns && d.status == 403, "{d:?}");
    }

    #[tokio::test]
    async fn one_bad_address_refuses_the_name() {
        let mut c = checker(&["mixed.test:443"], &[], &[]);
        c.resolve = Some(Arc::new(|_| vec![ip("93.184.216.34"), ip("127.0.0.1")]));
        let d = c.check(&hp("mixed.test:443")).await.unwrap_err();
        assert!(d.reason.contains("127.0.0.1"), "{}", d.reason);
    }
}
