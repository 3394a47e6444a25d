//! Network ways out: TCP, UDP, DNS, raw and netlink sockets, abstract and
//! pathname unix sockets. Each listener runs on the host inside the test.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Everything the host-side listener received, until dropped.
struct Sink {
    got: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn received(&self) -> String {
        String::from_utf8_lossy(&self.got.lock().unwrap()).into_owned()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accept streams from any listener and keep what they send.
fn stream_sink<S: Read + Send + 'static>(
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
) -> Sink {
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (g, st) = (got.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            match accept() {
                Ok(mut s) => {
                    let mut v = Vec::new();
                    let _ = s.read_to_end(&mut v);
                    g.lock().unwrap().extend_from_slice(b"<conn>");
                    g.lock().unwrap().extend(v);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Sink {
        got,
        stop,
        thread: Some(thread),
    }
}

fn tcp_sink() -> (Sink, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let sink = stream_sink(move || {
        let (s, _) = l.accept()?;
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(s)
    });
    (sink, port)
}

fn unix_sink(l: UnixListener) -> Sink {
    l.set_nonblocking(true).unwrap();
    stream_sink(move || {
        let (s, _) = l.accept()?;
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(s)
    })
}

/// A UDP listener; with `answer`, replies `AIOPSDNS` + the datagram (a fake resolver).
fn udp_sink(answer: bool) -> (Sink, u16) {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = u.local_addr().unwrap().port();
    u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (g, st) = (got.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !st.load(Ordering::SeqCst) {
            if let Ok((n, from)) = u.recv_from(&mut buf) {
                g.lock().unwrap().extend_from_slice(&buf[..n]);
                if answer {
                    let mut r = b"AIOPSDNS".to_vec();
                    r.extend_from_slice(&buf[..n]);
                    let _ = u.send_to(&r, from);
                }
            }
        }
    });
    (
        Sink {
            got,
            stop,
            thread: Some(thread),
        },
        port,
    )
}

const CONNECT_TCP: &str = r#"
def f():
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    s.sendall(sys.argv[2].encode()); s.close()
probe("tcp", f)
"#;

/// Stopped by: network namespace (the jail's 127.0.0.1 is its own `lo`) and
/// Landlock TCP connect rules (all TCP denied for `net = "none"`).
#[test]
fn tcp_connect_to_host_loopback() {
    if !have_python("tcp_connect_to_host_loopback") {
        return;
    }
    each_mode(&all_modes(), |m| {
        let (sink, port) = tcp_sink();
        let marker = unique("TCP");
        let o = m.jail().run_py(CONNECT_TCP, &[&port.to_string(), &marker]);
        o.assert_ran();
        std::thread::sleep(Duration::from_millis(200));
        if m.is_control() {
            o.assert_probe_ok("tcp");
            assert!(sink.received().contains(&marker), "{}", o.describe());
        } else {
            o.assert_probe_err(
                "tcp",
                &[
                    "ECONNREFUSED",
                    "ENETUNREACH",
                    "EACCES",
                    "EPERM",
                    "ETIMEDOUT",
                ],
            );
            assert!(
                !sink.received().contains("<conn>"),
                "host listener got a connection\n{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: network namespace (UDP is not covered by Landlock).
#[test]
fn udp_datagram_to_host_loopback() {
    if !have_python("udp_datagram_to_host_loopback") {
        return;
    }
    let code = r#"
def f():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(sys.argv[2].encode(), ("127.0.0.1", int(sys.argv[1])))
probe("udp", f)
"#;
    each_mode(&all_modes(), |m| {
        let (sink, port) = udp_sink(false);
        let marker = unique("UDP");
        let o = m.jail().run_py(code, &[&port.to_string(), &marker]);
        o.assert_ran();
        std::thread::sleep(Duration::from_millis(300));
        if m.is_control() {
            assert!(sink.received().contains(&marker), "{}", o.describe());
        } else {
            assert!(
                !sink.received().contains(&marker),
                "a datagram left the jail\n{}",
                o.describe()
            );
        }
    });
}

/// Stopped by: network namespace: a resolver on the host's loopback gets no
/// query and sends no answer.
#[test]
fn dns_query_to_host_resolver() {
    if !have_python("dns_query_to_host_resolver") {
        return;
    }
    let code = r#"
import struct
def f():
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for part in sys.argv[2].split("."):
        q += bytes([len(part)]) + part.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
    r = s.recv(2048)
    if not r.startswith(b"AIOPSDNS"):
        raise OSError(errno.EPROTO, "not our resolver")
probe("dns", f)
"#;
    each_mode(&all_modes(), |m| {
        let (sink, port) = udp_sink(true);
        let name = format!("{}.example", unique("q").replace('-', ""));
        let o = m.jail().run_py(code, &[&port.to_string(), &name]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("dns");
        } else {
            assert_ne!(o.probe_value("dns"), "ok", "{}", o.describe());
            let first = name.split('.').next().unwrap().to_string();
            assert!(
                !sink.received().contains(&first),
                "the host resolver got the query\n{}",
                o.describe()
            );
        }
    });
}

/// The host's own non-loopback IPv4 address (no packet is sent).
fn host_ip() -> Option<String> {
    let u = UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("10.255.255.254:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| ip.to_string())
}

/// Stopped by: network namespace (no route to the host's address). A raw
/// socket may be created over the jail's own netns; it reaches nothing.
#[test]
fn raw_icmp_to_host_address() {
    if !have_python("raw_icmp_to_host_address") {
        return;
    }
    let Some(ip) = host_ip() else {
        skip(
            "raw_icmp_to_host_address",
            "the host has no non-loopback IPv4 address",
        );
        return;
    };
    let code = r#"
def f():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(b"\x08\x00\xf7\xff\x00\x00\x00\x00", (sys.argv[1], 0))
probe("raw", f)
"#;
    let modes = root_control_modes("raw_icmp_to_host_address");
    each_mode(&modes, |m| {
        let o = m.jail().run_py(code, &[&ip]);
        o.assert_ran();
        if m.is_control() {
            o.assert_probe_ok("raw");
        } else {
            o.assert_probe_err("raw", &["ENETUNREACH", "EPERM", "EACCES", "EAFNOSUPPORT"]);
        }
    });
}

/// Stopped by: network namespace: netlink sees only the jail's `lo`.
#[test]
fn netlink_sees_no_host_interfaces() {
    if !have_python("netlink_sees_no_host_interfaces") {
        return;
    }
    let code = r#"probe("ifaces", lambda: ",".join(n for _, n in socket.if_nameindex()))"#;
    each_mode(&all_modes(), |m| {
        let o = m.jail().run_py(code, &[]);
        o.assert_ran();
        let v = o.probe_value("ifaces");
        let names: Vec<&str> = v
            .strip_prefix("ok ")
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .collect();
        if m.is_control() {
            assert!(
                names.iter().any(|n| *n != "lo"),
                "control sees no host interface\n{}",
                o.describe()
            );
        } else {
            assert!(
                names.iter().all(|n| *n == "lo"),
                "host interfaces visible: {names:?}\n{}",
                o.describe()
            );
        }
    });
}

const CONNECT_UNIX: &str = r#"
def f():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(3)
    s.connect(sys.argv[1].replace("@", "\0", 1) if sys.argv[1].startswith("@") else sys.argv[1])
    s.sendall(sys.argv[2].encode()); s.close()
probe("unix", f)
"#;

/// Stopped by: network namespace (abstract names are per netns) and the
/// Landlock ABI 6 abstract-unix scope.
#[test]
fn abstract_unix_socket_on_host() {
    use std::os::linux::net::SocketAddrExt;
    if !have_python("abstract_unix_socket_on_host") {
        return;
    }
    each_mode(&all_modes(), |m| {
        let name = unique("aiops-abstract");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sink = unix_sink(UnixListener::bind_addr(&addr).unwrap());
        let marker = unique("ABS");
        let o = m
            .jail()
            .run_py(CONNECT_UNIX, &[&format!("@{name}"), &marker]);
        o.assert_ran();
        std::thread::sleep(Duration::from_millis(200));
        if m.is_control() {
            o.assert_probe_ok("unix");
            assert!(sink.received().contains(&marker), "{}", o.describe());
        } else {
            o.assert_probe_err("unix", &["ECONNREFUSED", "EPERM", "EACCES", "ENOENT"]);
            assert!(!sink.received().contains("<conn>"), "{}", o.describe());
        }
    });
}

/// Stopped by: mount namespace (the socket's directory is not in the jail's
/// tree; Landlock covers unix connect only from ABI 9).
#[test]
fn pathname_unix_socket_on_host() {
    if !have_python("pathname_unix_socket_on_host") {
        return;
    }
    each_mode(&all_modes(), |m| {
        let dir = open_dir();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let sink = unix_sink(l);
        let marker = unique("PATHSOCK");
        let o = m
            .jail()
            .run_py(CONNECT_UNIX, &[path.to_str().unwrap(), &marker]);
        o.assert_ran();
        std::thread::sleep(Duration::from_millis(200));
        if m.is_control() {
            o.assert_probe_ok("unix");
            assert!(sink.received().contains(&marker), "{}", o.describe());
        } else {
            o.assert_probe_err("unix", &["ENOENT", "EACCES", "EPERM", "ECONNREFUSED"]);
            assert!(!sink.received().contains("<conn>"), "{}", o.describe());
        }
    });
}
