//! One connection from the jail: read what the client asks for (HTTP
//! CONNECT, an absolute-form HTTP request, or SOCKS5), check it, connect to
//! the checked address, then copy bytes both ways with the node's limits.
//! Every step is bounded in time, so a stuck client or peer ends its own
//! task and never the proxy.
use super::check::{Checker, Denial};
use super::{EgressLimits, EgressRecord, Verdict};
use aiops_policy::net::HostPort;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A request head larger than this is refused (431).
const MAX_HEAD: usize = 16 * 1024;
/// Not an answer anyone sees: marks a client that left on its own (nginx's 499).
const CLIENT_GONE: u16 = 499;

/// What all connections of one node share.
pub struct Shared {
    pub checker: Checker,
    pub limits: EgressLimits,
    pub total_bytes: AtomicU64,
    /// Accepted client sockets open now (being read, refused or copied).
    pub open: AtomicUsize,
    /// The most that were open at once.
    pub peak_open: AtomicUsize,
    /// Refused connections (over the limit included), counted as they end.
    pub denied: AtomicU64,
    /// Accepts over `limits.max_connections`, closed at once.
    pub over_limit: AtomicU64,
}

impl Shared {
    pub fn new(checker: Checker, limits: EgressLimits) -> Shared {
        Shared {
            checker,
            limits,
            total_bytes: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            denied: AtomicU64::new(0),
            over_limit: AtomicU64::new(0),
        }
    }

    /// A slot for one accepted socket, or `None` when the node already
    /// holds `max_connections`; the slot is given back when dropped.
    pub fn slot(self: &Arc<Self>) -> Option<Slot> {
        let max = self.limits.max_connections;
        let mut now = self.open.load(Ordering::Relaxed);
        loop {
            if now >= max {
                return None;
            }
            match self
                .open
                .compare_exchange(now, now + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(n) => now = n,
            }
        }
        self.peak_open.fetch_max(now + 1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }

    fn refused(&self, status: u16) {
        self.denied.fetch_add(1, Ordering::Relaxed);
        super::TOTALS.refused(status);
    }
}

/// One accepted client socket counted against the node's limit.
pub struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection's audit state, readable while the task still runs (or
/// after it was cut at finish).
pub struct Conn {
    pub started: Instant,
    pub record: Mutex<EgressRecord>,
    pub up: AtomicU64,
    pub down: AtomicU64,
    pub done: AtomicU64,
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            started: Instant::now(),
            record: Mutex::new(EgressRecord::default()),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut EgressRecord)) {
        if let Ok(mut r) = self.record.lock() {
            f(&mut r);
        }
    }

    /// The record as it stands; a task still running is reported as cut.
    pub fn snapshot(&self) -> EgressRecord {
        let mut r = self.record.lock().map(|r| r.clone()).unwrap_or_default();
        r.bytes_up = self.up.load(Ordering::Relaxed);
        r.bytes_down = self.down.load(Ordering::Relaxed);
        let done = self.done.load(Ordering::Relaxed);
        r.duration_ms = if done > 0 {
            done - 1
        } else {
            if r.verdict == Verdict::Allowed && r.reason.is_empty() {
                r.reason = "cut when the node ended".into();
            }
            millis(self.started.elapsed())
        };
        r
    }

    fn end(&self) {
        self.done
            .store(millis(self.started.elapsed()) + 1, Ordering::Relaxed);
    }
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Close a connection over the node's limit here and now: one
/// non-blocking write of the 503, discard what already arrived (so the
/// close is a FIN, not a reset that could lose the answer), close. Nothing
/// waits on the client, so a flood of connections holds no descriptors.
pub fn refuse_over_limit(client: TcpStream, sh: &Shared) {
    let max = sh.limits.max_connections;
    sh.over_limit.fetch_add(1, Ordering::Relaxed);
    sh.refused(503);
    let answer = http_denial(&Denial::new(
        503,
        format!("connection limit: {max} open connections per node"),
    ));
    // Deregistered from tokio: plain non-blocking calls, no readiness wait.
    if let Ok(s) = client.into_std() {
        use std::io::{Read, Write};
        let _ = (&s).write(&answer);
        let mut sink = [0u8; 4096];
        while matches!((&s).read(&mut sink), Ok(n) if n > 0) {}
    }
}

pub async fn serve(client: TcpStream, sh: Arc<Shared>, conn: Arc<Conn>) {
    let _ = client.set_nodelay(true);
    // One deadline from the accept for every read of the head, so a client
    // trickling a byte at a time (slowloris) holds its slot no longer.
    let head_by = tokio::time::Instant::now() + sh.limits.head_timeout;
    let mut rd = BufReader::with_capacity(MAX_HEAD, client);
    let outcome = match tokio::time::timeout_at(head_by, rd.fill_buf()).await {
        Ok(Ok([0x05, ..])) => super::socks::socks5(rd, &sh, &conn, head_by).await,
        Ok(Ok([])) | Ok(Err(_)) => Err(Denial::new(CLIENT_GONE, "closed before a request")),
        Ok(Ok(_)) => http(rd, &sh, &conn, head_by).await,
        Err(_) => Err(Denial::new(408, head_late(&sh))),
    };
    let mut refused = None;
    conn.set(|r| match outcome {
        Ok(end) => r.reason = end,
        // Allowed, then the client left before the tunnel was up.
        Err(d) if r.verdict == Verdict::Allowed => r.reason = d.reason,
        // Connected and closed without asking for anything.
        Err(d) if d.status == CLIENT_GONE => r.reason = d.reason,
        Err(d) => {
            refused = Some(d.status);
            r.verdict = Verdict::Denied;
            r.reason = d.reason;
        }
    });
    if let Some(status) = refused {
        sh.refused(status);
    }
    conn.end();
}

/// The reason of a 408.
pub fn head_late(sh: &Shared) -> String {
    format!(
        "no complete request within {:?} of connecting",
        sh.limits.head_timeout
    )
}

/// The client asked for `target`: record it, check it, connect.
pub async fn open(
    sh: &Shared,
    conn: &Conn,
    proto: &str,
    target: &HostPort,
) -> Result<TcpStream, Denial> {
    conn.set(|r| {
        r.protocol = proto.into();
        r.host = target.host.clone();
        r.port = target.port;
    });
    let addrs = sh.checker.check(target).await?;
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(sh.limits.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                conn.set(|r| {
                    r.addr = Some(addr.to_string());
                    r.verdict = Verdict::Allowed;
                });
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("connect {addr}: {e}"),
            Err(_) => last = format!("connect {addr}: timed out"),
        }
    }
    Err(Denial::new(502, last))
}

async fn http(
    mut rd: BufReader<TcpStream>,
    sh: &Shared,
    conn: &Conn,
    head_by: tokio::time::Instant,
) -> Result<String, Denial> {
    let head = match tokio::time::timeout_at(head_by, read_head(&mut rd)).await {
        Ok(r) => r,
        Err(_) => Err(Denial::new(408, head_late(sh))),
    };
    let req = match head.and_then(|h| parse_head(&h)) {
        Ok(r) => r,
        Err(d) => return deny(rd.get_mut(), conn, d).await,
    };
    let proto = if req.forward.is_some() {
        "http"
    } else {
        "connect"
    };
    let upstream = match open(sh, conn, proto, &req.target).await {
        Ok(u) => u,
        Err(d) => return deny(rd.get_mut(), conn, d).await,
    };
    let leftover = rd.buffer().to_vec();
    let mut client = rd.into_inner();
    let mut first = req.forward.unwrap_or_default();
    if first.is_empty() {
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        client
            .write_all(ok)
            .await
            .map_err(|e| Denial::new(CLIENT_GONE, format!("client went away: {e}")))?;
    }
    first.extend_from_slice(&leftover);
    Ok(super::copy::splice_both(client, upstream, first, sh, conn).await)
}

/// Answer a refusal and close at once: the answer is small and the send
/// buffer empty, so the write does not wait in practice (and is bounded if
/// it would); bytes the client already sent are discarded first, so the
/// close is a FIN and the answer arrives.
async fn deny(client: &mut TcpStream, conn: &Conn, d: Denial) -> Result<String, Denial> {
    conn.set(|r| {
        if r.protocol.is_empty() {
            r.protocol = "http".into();
        }
    });
    let _ = tokio::time::timeout(REFUSAL_WRITE, client.write_all(&http_denial(&d))).await;
    let mut sink = [0u8; 4096];
    while matches!(client.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = client.shutdown().await;
    Err(d)
}

/// The most a refusal's answer may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Read up to the empty line that ends the head, refusing bad framing as
/// soon as its line arrives (`check_line`).
async fn read_head(rd: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Denial> {
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
    format!(
        "HTTP/1.1 {} {phrase}\r\nX-Aiops-Egress: denied\r\nX-Aiops-Egress-Reason: {reason}\r\n\
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
