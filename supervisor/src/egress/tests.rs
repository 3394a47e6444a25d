//! The proxy end to end inside one process: a listener made here stands in
//! for the jail's (it travels by SCM_RIGHTS exactly like the jailer's), and
//! peers are plain threads on 127.0.0.1, allowed through `allow_private`.
#![allow(clippy::unwrap_used)]
use super::run::{channel, EgressHandle};
use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn policy(allow: &[String], private: &[&str], hosts: &[(&str, &str)]) -> EgressPolicy {
    EgressPolicy {
        allow: allow.iter().map(|s| HostPort::parse(s).unwrap()).collect(),
        allow_private: private.iter().map(|s| Cidr::parse(s).unwrap()).collect(),
        hosts: hosts
            .iter()
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect(),
        limits: EgressLimits::default(),
    }
}

/// `name:port` allowed, and answered by 127.0.0.1 (allowed as private).
fn loopback_target(name: &str, port: u16) -> (String, EgressPolicy) {
    let target = format!("{name}:{port}");
    let p = policy(
        std::slice::from_ref(&target),
        &["127.0.0.0/8"],
        &[(name, "127.0.0.1")],
    );
    (target, p)
}

/// Start the proxy and hand it a listener the way the jailer does.
fn start_proxy(p: EgressPolicy, resolve: Option<check::ResolveFn>) -> (EgressHandle, SocketAddr) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let (chan, jail_end) = channel().unwrap();
    let handle = chan.start_with(p, resolve).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let fds = [l.as_raw_fd()];
    sendmsg::<()>(
        jail_end.as_raw_fd(),
        &[std::io::IoSlice::new(b"egress-listener")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    (handle, addr)
}

/// A peer that reads `expect` bytes, answers `answer` bytes, and closes.
fn peer(expect: usize, answer: usize) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = vec![0u8; expect];
        s.read_exact(&mut got).unwrap();
        s.write_all(&vec![b'd'; answer]).unwrap();
        got
    });
    (port, t)
}

/// Send a CONNECT and return the status line and the stream after the head.
fn connect(proxy: SocketAddr, target: &str) -> (String, String, TcpStream) {
    let mut s = TcpStream::connect(proxy).unwrap();
    // One write: a proxy that answers and closes at once (over the
    // connection limit) would reset a second one with EPIPE.
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed inside the answer head");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.lines().next().unwrap().to_string();
    (status, head, s)
}

#[test]
fn a_connect_tunnel_reaches_the_checked_address_and_counts_payload() {
    let (port, server) = peer(1000, 5000);
    let (target, p) = loopback_target("up.test", port);
    let (h, proxy) = start_proxy(p, None);
    let (status, _, mut s) = connect(proxy, &target);
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    s.write_all(&[b'u'; 1000]).unwrap();
    let mut down = Vec::new();
    s.read_to_end(&mut down).unwrap();
    assert_eq!(down.len(), 5000);
    assert_eq!(server.join().unwrap(), vec![b'u'; 1000]);
    drop(s);
    let sum = h.finish();
    assert!(sum.listening);
    assert_eq!((sum.connections, sum.allowed, sum.denied), (1, 1, 0));
    let r = &sum.records[0];
    assert_eq!(
        (r.verdict, r.protocol.as_str(), r.host.as_str(), r.port),
        (Verdict::Allowed, "connect", "up.test", port)
    );
    assert_eq!(
        r.addr.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!((r.bytes_up, r.bytes_down), (1000, 5000));
    assert_eq!((sum.bytes_up, sum.bytes_down), (1000, 5000));
}

#[test]
fn a_name_off_the_list_and_a_private_answer_are_refused_with_the_reason() {
    let (port, _server) = peer(0, 0);
    let p = policy(
        &[format!("loop.test:{port}")],
        &[],
        &[("loop.test", "127.0.0.1")],
    );
    let (h, proxy) = start_proxy(p, None);
    let (status, head, _) = connect(proxy, "evil.test:443");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert!(
        head.contains(
            "X-Aiops-Egress-Reason: evil.test:443 is not on the profile's net.allow list"
        ),
        "{head}"
    );
    // Listed, but it resolves to loopback and no allow_private covers it.
    let (status, head, _) = connect(proxy, &format!("loop.test:{port}"));
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert!(head.contains("127.0.0.1, a loopback address"), "{head}");
    let sum = h.finish();
    assert_eq!((sum.connections, sum.allowed, sum.denied), (2, 0, 2));
    assert!(sum.records.iter().all(|r| r.addr.is_none()));
}

#[test]
fn the_name_is_resolved_once_and_the_checked_address_is_used() {
    let (port, server) = peer(3, 2);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // First answer passes the check; any later answer would be the
    // metadata service. Only the first is ever asked for and used.
    let rebinding: check::ResolveFn = Arc::new(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            vec!["127.0.0.1".parse().unwrap()]
        } else {
            vec!["169.254.169.254".parse().unwrap()]
        }
    });
    let target = format!("rebind.test:{port}");
    let p = policy(std::slice::from_ref(&target), &["127.0.0.1/32"], &[]);
    let (h, proxy) = start_proxy(p, Some(rebinding));
    let (status, _, mut s) = connect(proxy, &target);
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    s.write_all(b"abc").unwrap();
    let mut down = Vec::new();
    s.read_to_end(&mut down).unwrap();
    assert_eq!(
        (server.join().unwrap(), down),
        (b"abc".to_vec(), b"dd".to_vec())
    );
    let sum = h.finish();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        sum.records[0].addr.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
}

#[test]
fn plain_http_is_forwarded_in_origin_form_and_socks5_works() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut heads = vec![];
        for _ in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap() == 1 {
                head.push(b[0]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
                .unwrap();
            heads.push(String::from_utf8(head).unwrap());
        }
        heads
    });
    let (target, p) = loopback_target("web.test", port);
    let (h, proxy) = start_proxy(p, None);
    let mut s = TcpStream::connect(proxy).unwrap();
    write!(s, "GET http://{target}/x?y HTTP/1.1\r\nHost: {target}\r\nProxy-Connection: keep-alive\r\n\r\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.ends_with("\r\n\r\nhi"), "{got}");
    // SOCKS5 with the name resolved by the proxy (ATYP 3).
    let mut s = TcpStream::connect(proxy).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, [5, 0]);
    let mut req = vec![5, 1, 0, 3, 8];
    req.extend_from_slice(b"web.test");
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut r = [0u8; 10];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r[1], 0, "socks5 reply {r:?}");
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.ends_with("hi"));
    let heads = server.join().unwrap();
    assert_eq!(
        heads[0],
        format!("GET /x?y HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
    );
    let sum = h.finish();
    let protos: Vec<&str> = sum.records.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(protos, ["http", "socks5"]);
    assert_eq!(sum.records[0].bytes_up, heads[0].len() as u64);
}

#[test]
fn socks5_to_an_unlisted_name_is_refused_by_ruleset() {
    let (h, proxy) = start_proxy(policy(&[], &[], &[]), None);
    let mut s = TcpStream::connect(proxy).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).unwrap();
    let mut req = vec![5, 1, 0, 3, 9];
    req.extend_from_slice(b"evil.test");
    req.extend_from_slice(&443u16.to_be_bytes());
    s.write_all(&req).unwrap();
    let mut r = [0u8; 10];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r[1], 2);
    assert_eq!(h.finish().denied, 1);
}

#[test]
fn limits_cut_idle_and_greedy_connections_and_refuse_extra_ones() {
    let (port, _server) = peer(0, 0);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut v = vec![];
        let _ = s.read_to_end(&mut v);
    });
    let mut p = policy(
        &[
            format!("idle.test:{port}"),
            format!("sink.test:{sink_port}"),
        ],
        &["127.0.0.0/8"],
        &[("idle.test", "127.0.0.1"), ("sink.test", "127.0.0.1")],
    );
    p.limits.idle_timeout = Duration::from_millis(300);
    p.limits.max_bytes = 10_000;
    p.limits.max_connections = 2;
    let (h, proxy) = start_proxy(p, None);
    // Idle: the peer never sends and the client never writes.
    let (status, _, mut idle) = connect(proxy, &format!("idle.test:{port}"));
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    // Greedy: more than the node's byte budget.
    let (_, _, mut greedy) = connect(proxy, &format!("sink.test:{sink_port}"));
    // Over the connection limit while both are open.
    let (status, _, _) = connect(proxy, "x.test:1");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    let _ = greedy.write_all(&[0u8; 50_000]);
    let mut v = vec![];
    let _ = idle.read_to_end(&mut v); // ends when the proxy cuts it
    let sum = h.finish();
    let reason = |host: &str| {
        sum.records
            .iter()
            .find(|r| r.host == host)
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason("idle.test").contains("idle"), "{sum:?}");
    assert!(reason("sink.test").contains("byte limit"), "{sum:?}");
    // Counted, not listed: a flood would otherwise fill the records.
    assert_eq!((sum.over_limit, sum.peak_open), (1, 2), "{sum:?}");
    assert!(sum.denied >= 1, "{sum:?}");
    assert!(sum.bytes_up <= 10_000);
}

#[test]
fn a_jail_that_never_listens_gives_an_empty_summary() {
    let (chan, jail_end) = channel().unwrap();
    let h = chan.start(policy(&[], &[], &[])).unwrap();
    drop(jail_end);
    assert_eq!(h.finish(), EgressSummary::default());
}

#[test]
fn finish_cuts_a_connection_whose_ends_stay_open() {
    // A peer that holds its side open and never sends.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let held = std::thread::spawn(move || l.accept().unwrap());
    let (target, p) = loopback_target("stuck.test", port);
    let (h, proxy) = start_proxy(p, None);
    let (status, _, client) = connect(proxy, &target);
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    let _peer = held.join().unwrap();
    let t = std::time::Instant::now();
    let sum = h.finish();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(sum.records[0].reason, "cut when the node ended");
    drop(client);
}

#[test]
fn profile_limits_override_the_defaults_field_by_field() {
    let p = aiops_policy::plan::EgressLimitsPlan {
        max_connections: Some(3),
        max_bytes: None,
        idle_timeout_ms: Some(1500),
    };
    let l = EgressLimits::from_plan(&p);
    let d = EgressLimits::default();
    assert_eq!(
        l,
        EgressLimits {
            max_connections: 3,
            max_bytes: d.max_bytes,
            idle_timeout: Duration::from_millis(1500),
            connect_timeout: d.connect_timeout,
            head_timeout: d.head_timeout,
        }
    );
}

/// A loopback server with two virtual hosts on one address: it answers
/// `site=<Host>` and hands back every head it read, in order.
fn vhost_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let host = head
                .lines()
                .find_map(|l| l.strip_prefix("Host: "))
                .unwrap_or("-")
                .to_string();
            let body = format!("site={host}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if tx.send(head).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn plain_http_carries_the_checked_authority_as_host() {
    let (port, heads) = vhost_server();
    let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Control: the other virtual host exists and answers when asked directly.
    let direct = exchange(
        upstream,
        format!("GET / HTTP/1.1\r\nHost: admin.internal:{port}\r\n\r\n").as_bytes(),
    );
    assert!(
        direct.ends_with(&format!("site=admin.internal:{port}")),
        "{direct}"
    );
    heads.recv().unwrap();
    let (target, p) = loopback_target("web.test", port);
    let (h, proxy) = start_proxy(p, None);
    // The allowed name in the URL, the other virtual host in Host:.
    let got = exchange(
        proxy,
        format!(
            "GET http://{target}/x HTTP/1.1\r\nHost: admin.internal:{port}\r\n\
             host: admin.internal\r\nAccept: */*\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(got.ends_with(&format!("site={target}")), "{got}");
    // Judged where it matters: what the upstream server read.
    let seen = heads.recv().unwrap();
    assert_eq!(
        seen,
        format!("GET /x HTTP/1.1\r\nHost: {target}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    );
    let sum = h.finish();
    assert_eq!((sum.allowed, sum.denied), (1, 0), "{sum:?}");
}

#[test]
fn bare_cr_bare_lf_and_folded_heads_are_refused_before_any_upstream() {
    let (port, heads) = vhost_server();
    let (target, p) = loopback_target("web.test", port);
    let before = TOTALS.refused_for("bad_request");
    let (h, proxy) = start_proxy(p, None);
    let bad = [
        format!("GET http://{target}/cr HTTP/1.1\r\nAccept: a\rHost: admin.internal\r\n\r\n"),
        format!("GET http://{target}/lf HTTP/1.1\r\nAccept: a\nHost: admin.internal\r\n\r\n"),
        format!("GET http://{target}/lflf HTTP/1.1\nHost: admin.internal\n\n"),
        format!("GET http://{target}/fold HTTP/1.1\r\nAccept: a\r\n Host: admin.internal\r\n\r\n"),
    ];
    for req in &bad {
        let got = exchange(proxy, req.as_bytes());
        assert!(
            got.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{req:?}: {got}"
        );
    }
    // Control: the same request, well formed, reaches the upstream, and
    // it is the first and only head the upstream ever read.
    let ok = format!("GET http://{target}/ok HTTP/1.1\r\nAccept: a\r\n\r\n");
    let got = exchange(proxy, ok.as_bytes());
    assert!(got.ends_with(&format!("site={target}")), "{got}");
    let first = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.starts_with("GET /ok HTTP/1.1\r\n"), "{first}");
    let sum = h.finish();
    assert!(heads.try_recv().is_err());
    assert_eq!(
        (sum.connections, sum.allowed, sum.denied),
        (5, 1, 4),
        "{sum:?}"
    );
    let reasons: Vec<&str> = sum
        .records
        .iter()
        .filter(|r| r.verdict == Verdict::Denied)
        .map(|r| r.reason.as_str())
        .collect();
    for (r, why) in reasons
        .iter()
        .zip(["bare CR", "bare LF", "bare LF", "obs-fold"])
    {
        assert!(r.contains(why), "{reasons:?}");
    }
    assert!(TOTALS.refused_for("bad_request") >= before + 4);
}

/// A peer that takes `n` connections and holds each until the proxy closes it.
fn holding_peer(n: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut v = vec![];
                let _ = s.read_to_end(&mut v);
            });
        }
    });
    port
}

#[test]
fn a_flood_over_the_limit_is_closed_at_once_and_a_slow_head_times_out() {
    const MAX: usize = 4;
    const FLOOD: usize = 300;
    let port = holding_peer(MAX);
    let (target, mut p) = loopback_target("hold.test", port);
    p.limits.max_connections = MAX;
    p.limits.head_timeout = Duration::from_millis(400);
    let before = TOTALS.refused_for("over_limit");
    let (h, proxy) = start_proxy(p, None);
    // The node's whole budget, held open by established tunnels.
    let tunnels: Vec<TcpStream> = (0..MAX)
        .map(|_| {
            let (status, _, s) = connect(proxy, &target);
            assert_eq!(status, "HTTP/1.1 200 Connection established");
            s
        })
        .collect();
    // Every further connection is closed by the proxy without waiting for
    // the client: each read ends (503 or a reset) while all are still open.
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(proxy).unwrap())
        .collect();
    for mut s in flood {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => assert!(
                got.is_empty() || got.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"),
                "{}",
                String::from_utf8_lossy(&got)
            ),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    drop(tunnels);
    // Slots come back as the tunnels close; then a client that sends half
    // a head gets 408 at the head deadline and is closed (slowloris).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let slow = loop {
        let got = exchange(proxy, b"GET http://hold.test/ HTTP/1.1\r\nAcc");
        if !got.contains(" 503 ") || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        slow.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{slow}"
    );
    let sum = h.finish();
    assert!(sum.over_limit >= FLOOD as u64, "{sum:?}");
    assert_eq!(sum.peak_open, MAX as u64, "{sum:?}");
    assert!(
        sum.denied > sum.over_limit,
        "the 408 is a refusal too: {sum:?}"
    );
    assert!(sum
        .records
        .iter()
        .any(|r| r.reason.contains("no complete request within 400ms")));
    // Over-limit refusals are counted, not listed.
    assert!(sum.records.len() < MAX + 10, "{}", sum.records.len());
    assert!(TOTALS.refused_for("over_limit") >= before + FLOOD as u64);
}

#[test]
fn a_failed_lookup_is_reported_as_such_not_as_a_denial() {
    // An allowed name with no answer (the stand-in resolver), next to a
    // policy refusal in the same proxy.
    let p = policy(&["gone.test:443".into()], &[], &[]);
    let (h, proxy) = start_proxy(p, Some(Arc::new(|_| vec![])));
    let (status, head, _) = connect(proxy, "gone.test:443");
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    assert!(head.contains("X-Aiops-Egress: dns-failed\r\n"), "{head}");
    assert!(
        head.contains("X-Aiops-Egress-Reason: DNS lookup of gone.test failed: no address"),
        "{head}"
    );
    let (status, head, _) = connect(proxy, "evil.test:443");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert!(head.contains("X-Aiops-Egress: denied\r\n"), "{head}");
    let sum = h.finish();
    assert_eq!(
        (sum.connections, sum.allowed, sum.denied, sum.dns_failed),
        (2, 0, 1, 1)
    );
    let verdicts: Vec<Verdict> = sum.records.iter().map(|r| r.verdict).collect();
    assert!(verdicts.contains(&Verdict::DnsFailed), "{verdicts:?}");
    let lines = sum.denial_lines();
    assert!(
        lines.contains(&"aiopsctl: egress: DNS lookup of gone.test failed: no address".to_string()),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("egress denied")).count(),
        1,
        "{lines:?}"
    );
    assert!(
        sum.to_text().contains("1 DNS lookups failed"),
        "{}",
        sum.to_text()
    );
    // /metrics has a counter of its own for it (its count: the test below).
    let mut out = String::new();
    TOTALS.render(&mut out);
    assert!(out.contains("aiops_egress_dns_failures_total "), "{out}");
}

#[test]
fn refusals_are_counted_by_cause_for_metrics() {
    let t = EgressTotals::new();
    for status in [503, 503, 400, 431, 408, 403, 502, 504, 418] {
        t.refused(status);
    }
    t.accepted();
    t.accept_failed();
    t.dns_failed();
    let mut out = String::new();
    t.render(&mut out);
    for line in [
        "aiops_egress_connections_total 1\n",
        "aiops_egress_refused_total{cause=\"over_limit\"} 2\n",
        "aiops_egress_refused_total{cause=\"bad_request\"} 2\n",
        "aiops_egress_refused_total{cause=\"head_timeout\"} 1\n",
        "aiops_egress_refused_total{cause=\"policy\"} 1\n",
        "aiops_egress_refused_total{cause=\"upstream\"} 2\n",
        "aiops_egress_refused_total{cause=\"other\"} 1\n",
        "aiops_egress_accept_errors_total 1\n",
        "aiops_egress_dns_failures_total 1\n",
        "# TYPE aiops_egress_refused_total counter\n",
    ] {
        assert!(out.contains(line), "{line:?} not in\n{out}");
    }
    assert_eq!(t.refused_for("over_limit"), 2);
}
