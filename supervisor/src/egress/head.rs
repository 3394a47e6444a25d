//! The request head of a plain-HTTP or CONNECT request (bytes the node
//! controls): read it with strict framing, parse it, and rewrite an
//! absolute-form request for the origin with the checked authority as
//! `Host:`; and the proxy's own answer to a refusal.
use super::check::Denial;
use aiops_policy::net::HostPort;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

/// A request head larger than this is refused (431).
pub const MAX_HEAD: usize = 16 * 1024;

/// Read up to the empty line that ends the head, refusing bad framing as
/// soon as its line arrives (`check_line`).
pub async fn read_head(rd: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Denial> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let left = MAX_HEAD.saturating_sub(start) as u64;
        (&mut *rd)
            .take(left)
            .read_until(b'\n', &mut head)
            .await
            .map_err(|e| Denial::new(400, format!("read request: {e}")))?;
        let line = &head[start..];
        if line.ends_with(b"\n") {
            check_line(line, start == 0)?;
            if line == b"\r\n" {
                return Ok(head);
            }
            continue;
        }
        // read_until stops short of a newline only at the end of the
        // stream or of the size budget.
        return Err(if head.len() >= MAX_HEAD {
            Denial::new(431, "request head over 16 KiB")
        } else {
            Denial::new(400, "closed inside the request head")
        });
    }
}

/// One line of a request head, with its line ending. Only CRLF ends a
/// line: a bare LF, a CR anywhere else, an obs-fold continuation (a line
/// starting with a space or tab) or another control character is refused,
/// since a server behind us may split or join lines differently than we did.
fn check_line(line: &[u8], first: bool) -> Result<(), Denial> {
    let bad = |why: &str| Err(Denial::new(400, why.to_string()));
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return bad(if line.ends_with(b"\n") {
            "a line of the request head ends in a bare LF (only CRLF ends a line)"
        } else {
            "a line of the request head without its CRLF"
        });
    };
    if body.contains(&b'\r') {
        return bad("a bare CR inside a line of the request head");
    }
    if body.contains(&b'\n') {
        return bad("a bare LF inside a line of the request head");
    }
    if !first && body.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return bad("an obs-fold continuation line in the request head");
    }
    if body
        .iter()
        .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
    {
        return bad("a control character in the request head");
    }
    Ok(())
}

/// A header name is an RFC 9110 token (no space before the colon either).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub struct Request {
    pub target: HostPort,
    /// Absolute-form HTTP: the head to send upstream instead (origin form,
    /// `Host:` set to the checked authority, hop-by-hop and proxy headers
    /// dropped, `Connection: close`). `None` for CONNECT.
    pub forward: Option<Vec<u8>>,
}

/// The authority of `target` as a `Host:` value (port 80 left out).
fn host_header(target: &HostPort) -> String {
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    if target.port == 80 {
        host
    } else {
        format!("{host}:{}", target.port)
    }
}

pub fn parse_head(head: &[u8]) -> Result<Request, Denial> {
    let bad = |why: &str| Denial::new(400, why.to_string());
    // The same framing rules as `read_head`, for callers handing us a head.
    for (i, l) in head.split_inclusive(|b| *b == b'\n').enumerate() {
        check_line(l, i == 0)?;
    }
    let Some(body) = head.strip_suffix(b"\r\n\r\n") else {
        return Err(bad("the request head does not end with an empty CRLF line"));
    };
    let text = std::str::from_utf8(body).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("only HTTP/1.x proxy requests are understood"));
    }
    let mut headers = vec![];
    for h in lines {
        let Some((name, _)) = h.split_once(':') else {
            return Err(bad("a header line without a colon"));
        };
        if !is_token(name) {
            return Err(bad("a header name that is not a token"));
        }
        headers.push((name.to_ascii_lowercase(), h));
    }
    let target = |authority: &str| {
        HostPort::parse(authority).map_err(|e| Denial::new(400, format!("bad target: {e}")))
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        return Ok(Request {
            target: target(uri)?,
            forward: None,
        });
    }
    let lower = uri.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("http://").map(|_| &uri[7..]) else {
        return Err(bad(if lower.starts_with("https://") {
            "https goes through CONNECT"
        } else {
            "a proxy request needs an absolute http:// URL or CONNECT"
        }));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not forwarded"));
    }
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_string()
    };
    let target = target(&with_port)?;
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => format!("/{p}"),
    };
    // The upstream learns which site is meant from `Host:` alone, so it is
    // the authority the allow-list check approved, whatever the client
    // sent: another virtual host on an allowed address stays out of reach.
    let mut out = format!(
        "{method} {path} {version}\r\nHost: {}\r\n",
        host_header(&target)
    );
    for (name, h) in headers {
        match name.as_str() {
            "host" | "proxy-connection" | "proxy-authorization" | "connection" | "keep-alive" => {
                continue
            }
            _ => {}
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    // One request per upstream connection: a kept-alive client connection
    // could otherwise carry a second request to another host unchecked.
    out.push_str("Connection: close\r\n\r\n");
    Ok(Request {
        target,
        forward: Some(out.into_bytes()),
    })
}

pub fn http_denial(d: &Denial) -> Vec<u8> {
    let phrase = match d.status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let reason: String = d
        .reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = format!("aiops egress proxy: {reason}\n");
    // A failed lookup is not a refusal by policy: say which it was.
    let verdict = if d.dns { "dns-failed" } else { "denied" };
    format!(
        "HTTP/1.1 {} {phrase}\r\nX-Aiops-Egress: {verdict}\r\nX-Aiops-Egress-Reason: {reason}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        d.status,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rewrites_an_absolute_form_request_for_the_origin() {
        let r = parse_head(
            b"GET http://Web.Test:8080/a/b?c=1 HTTP/1.1\r\nHost: web.test:8080\r\n\
              Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n\
              Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.target, HostPort::parse("web.test:8080").unwrap());
        assert_eq!(
            String::from_utf8(r.forward.unwrap()).unwrap(),
            "GET /a/b?c=1 HTTP/1.1\r\nHost: web.test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn parses_connect_and_default_ports() {
        let r = parse_head(b"CONNECT tls.test:443 HTTP/1.1\r\nHost: tls.test:443\r\n\r\n").unwrap();
        assert_eq!(
            (r.target.host.as_str(), r.target.port, r.forward),
            ("tls.test", 443, None)
        );
        let r = parse_head(b"GET http://[2001:db8::1] HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((r.target.host.as_str(), r.target.port), ("2001:db8::1", 80));
        assert!(String::from_utf8(r.forward.unwrap())
            .unwrap()
            .starts_with("GET / HTTP/1.0\r\nHost: [2001:db8::1]\r\n"));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for (head, why) in [
            (&b"GET /local HTTP/1.1\r\n\r\n"[..], "absolute http://"),
            (b"GET https://x.test/ HTTP/1.1\r\n\r\n", "CONNECT"),
            (b"GET http://u:p@x.test/ HTTP/1.1\r\n\r\n", "credentials"),
            (b"CONNECT x.test HTTP/1.1\r\n\r\n", "port"),
            (b"CONNECT *.x.test:443 HTTP/1.1\r\n\r\n", ""),
            (b"GET http://x.test/ HTTP/2\r\n\r\n", "HTTP/1.x"),
        ] {
            match parse_head(head) {
                Err(d) => assert!(d.status == 400 && d.reason.contains(why), "{d:?}"),
                Ok(_) if head.starts_with(b"CONNECT *.") => {} // refused by the checker
                Ok(_) => panic!("accepted {}", String::from_utf8_lossy(head)),
            }
        }
    }

    fn forwarded(head: &[u8]) -> String {
        String::from_utf8(parse_head(head).unwrap().forward.unwrap()).unwrap()
    }

    #[test]
    fn the_upstream_gets_the_checked_authority_as_host() {
        // Another virtual host named in Host:, twice, in any case: replaced.
        let f = forwarded(
            b"GET http://web.test/x HTTP/1.1\r\nHost: other.test\r\nAccept: a\r\n\
              HOST: admin.internal\r\n\r\n",
        );
        assert_eq!(
            f,
            "GET /x HTTP/1.1\r\nHost: web.test\r\nAccept: a\r\nConnection: close\r\n\r\n"
        );
        // None sent: inserted; a port other than 80 is kept.
        let f = forwarded(b"GET http://web.test:8080/ HTTP/1.0\r\n\r\n");
        assert!(
            f.starts_with("GET / HTTP/1.0\r\nHost: web.test:8080\r\n"),
            "{f}"
        );
        // Control: a Host: that agrees is the same line either way.
        let f = forwarded(b"GET http://web.test/x HTTP/1.1\r\nHost: web.test\r\n\r\n");
        assert_eq!(
            f,
            "GET /x HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn only_crlf_ends_a_line_of_the_head() {
        let ok = b"GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\nAccept: a\r\n\r\n";
        // Control: the well-formed head is forwarded.
        assert!(parse_head(ok).is_ok());
        for (head, why) in [
            // A header split by a bare CR: some servers end the line there.
            (
                &b"GET http://web.test/ HTTP/1.1\r\nAccept: a\rHost: other.test\r\n\r\n"[..],
                "bare CR",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\rHost: other.test\r\n\r\n",
                "bare CR",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\nHost: other.test\r\n\r\n",
                "bare LF",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\r\nAccept: a\nHost: other\r\n\r\n",
                "bare LF",
            ),
            (b"GET http://web.test/ HTTP/1.1\n\n", "bare LF"),
            (
                b"GET http://web.test/ HTTP/1.1\r\nAccept: a\r\n Host: other\r\n\r\n",
                "obs-fold",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\r\nAccept: a\r\n\tb\r\n\r\n",
                "obs-fold",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\r\nAccept: a\x00b\r\n\r\n",
                "control character",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\r\nHost : other\r\n\r\n",
                "not a token",
            ),
            (
                b"GET http://web.test/ HTTP/1.1\r\nno colon\r\n\r\n",
                "without a colon",
            ),
        ] {
            match parse_head(head) {
                Err(d) => assert!(
                    d.status == 400 && d.reason.contains(why),
                    "{d:?} for {}",
                    String::from_utf8_lossy(head)
                ),
                Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(head)),
            }
        }
    }

    #[test]
    fn a_denial_names_its_reason_in_a_header_and_the_body() {
        let d = Denial::new(403, "evil.test:443 is not\r\non the list");
        let t = String::from_utf8(http_denial(&d)).unwrap();
        assert!(t.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(t.contains("X-Aiops-Egress-Reason: evil.test:443 is not  on the list\r\n"));
        assert!(t.ends_with("\r\n\r\naiops egress proxy: evil.test:443 is not  on the list\n"));
    }

    #[test]
    fn mutated_request_heads_never_panic() {
        let seeds: [&[u8]; 4] = [
            b"GET http://web.test:8080/a?b HTTP/1.1\r\nHost: web.test\r\n\r\n",
            b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\nhost: c\r\nAccept: x\r\n\r\n",
            b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n",
            b"POST http://x.test HTTP/1.0\r\nProxy-Connection: x\r\n\r\n",
        ];
        // xorshift: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in seeds {
            for _ in 0..3000 {
                let mut v = seed.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let i = usize::try_from(next() % v.len() as u64).unwrap();
                    match next() % 3 {
                        0 => v[i] = (next() & 0xff) as u8,
                        1 => {
                            v.remove(i);
                        }
                        _ => v.insert(i, b":/[]@ \r\n%"[usize::try_from(next() % 9).unwrap()]),
                    }
                    if v.is_empty() {
                        v.push(b'G');
                    }
                }
                let Ok(Request {
                    forward: Some(fwd), ..
                }) = parse_head(&v)
                else {
                    continue;
                };
                // What goes upstream has only CRLF line ends and one Host.
                let text = String::from_utf8(fwd).unwrap();
                let body = text.strip_suffix("\r\n\r\n").unwrap();
                assert!(
                    !body.split("\r\n").any(|l| l.contains(['\r', '\n'])),
                    "{text:?}"
                );
                let hosts = body
                    .split("\r\n")
                    .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
                    .count();
                assert_eq!(hosts, 1, "{text:?}");
            }
        }
    }
}
