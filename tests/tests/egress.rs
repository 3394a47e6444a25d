//! `net = "allowlist"` end to end: test hosts in a network namespace of the
//! test's own making (veth to the host), an HTTP server, a TLS server, a
//! byte-exact TCP server and a UDP echo on them, names mapped by the
//! profile's `net.hosts`, and a profile extending `agent` that allows their
//! block in `net.allow_private`. Each refusal has its control: the allowed
//! request in the same jail, or the same request where it must work.
#![allow(clippy::unwrap_used)]
use aiops_tests::*;
use serde_json::Value;
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const OPENSSL: &str = "/usr/bin/openssl";
const CURL: &str = "/usr/bin/curl";
/// Bytes the byte-exact server expects up and sends down.
const UP: usize = 12_345;
const DOWN: usize = 54_321;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One test host: a netns behind a veth pair, its servers, its files.
struct TestNet {
    ns: String,
    veth: String,
    /// The test host's address, 10.78.N.2.
    host: String,
    subnet: String,
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

fn run(cmd: &[&str]) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestNet {
    /// `None` (after printing why) when this host cannot build test hosts.
    fn up(test: &str) -> Option<TestNet> {
        if !is_root() {
            skip_needs_root(test, "ip netns and veth need root");
            return None;
        }
        if !run(&["ip", "-V"]) {
            skip(test, "no `ip` (iproute2)");
            return None;
        }
        if !have_python(test) || !have_program(test, OPENSSL) || !have_program(test, CURL) {
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = (std::process::id() % 200 + n * 7) % 250 + 1;
        let ns = format!("aiops-eg-{}-{n}", std::process::id());
        let veth = format!("aeg{}x{n}", std::process::id() % 100_000);
        let (gw, host) = (format!("10.78.{id}.1"), format!("10.78.{id}.2"));
        let dir = scratch_dir(None);
        let me = TestNet {
            ns: ns.clone(),
            veth: veth.clone(),
            host: host.clone(),
            subnet: format!("10.78.{id}.0/24"),
            servers: vec![],
            dir,
        };
        let peer = format!("{veth}p");
        must(&["ip", "netns", "add", &ns]);
        must(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", &peer,
        ]);
        must(&["ip", "link", "set", &peer, "netns", &ns]);
        must(&["ip", "addr", "add", &format!("{gw}/24"), "dev", &veth]);
        must(&["ip", "link", "set", &veth, "up"]);
        let inns = |c: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend_from_slice(c);
            must(&v);
        };
        inns(&["ip", "addr", "add", &format!("{host}/24"), "dev", &peer]);
        inns(&["ip", "link", "set", &peer, "up"]);
        inns(&["ip", "link", "set", "lo", "up"]);
        Some(me.with_servers())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_in_ns(&mut self, argv: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
    }

    fn with_servers(mut self) -> TestNet {
        let web = self.path("web");
        std::fs::create_dir_all(&web).unwrap();
        std::fs::write(web.join("hello.txt"), "hello from the test host\n").unwrap();
        // A bare repository served by dumb HTTP: git over a plain web server.
        let repo = self.path("src");
        must(&[GIT, "init", "-q", "-b", "main", repo.to_str().unwrap()]);
        std::fs::write(repo.join("f"), "x").unwrap();
        let g = |args: &[&str]| {
            let mut v = vec![GIT, "-C", repo.to_str().unwrap()];
            v.extend_from_slice(args);
            must(&v);
        };
        g(&["add", "f"]);
        g(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "c",
        ]);
        let bare = web.join("repo.git");
        must(&[
            GIT,
            "clone",
            "-q",
            "--bare",
            repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ]);
        must(&[GIT, "-C", bare.to_str().unwrap(), "update-server-info"]);
        // TLS: a self-signed certificate for tls.test.
        let (cert, key) = (self.path("cert.pem"), self.path("key.pem"));
        must(&[
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tls.test",
            "-addext",
            "subjectAltName=DNS:tls.test",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let host = self.host.clone();
        self.spawn_in_ns(&[
            PYTHON,
            "-m",
            "http.server",
            "80",
            "--bind",
            &host,
            "--directory",
            web.to_str().unwrap(),
        ]);
        self.spawn_in_ns(&[
            OPENSSL,
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &format!("{host}:443"),
            "-cert",
            cert.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
        ]);
        let exact = format!(
            "import socket\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{host}', 9000)); s.listen(8)\n\
             while True:\n\
             \x20   c,_=s.accept(); got=0\n\
             \x20   while got < {UP}:\n\
             \x20       b=c.recv(65536)\n\
             \x20       if not b: break\n\
             \x20       got+=len(b)\n\
             \x20   c.sendall(b'd'*{DOWN}); c.close()\n"
        );
        self.spawn_in_ns(&[PYTHON, "-c", &exact]);
        let udp = format!(
            "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('{host}', 5353))\nwhile True:\n    d,a=s.recvfrom(100); s.sendto(b'pong', a)\n"
        );
        self.spawn_in_ns(&[PYTHON, "-c", &udp]);
        // Two virtual hosts on one address: answers `site=<Host>` and logs
        // every head it read, one Python repr a line, to vhost.log.
        let vhost = format!(
            "import socket\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{host}', 8080)); s.listen(16)\n\
             while True:\n\
             \x20   c,_=s.accept(); c.settimeout(5); head=b''\n\
             \x20   try:\n\
             \x20       while b'\\r\\n\\r\\n' not in head:\n\
             \x20           b=c.recv(4096)\n\
             \x20           if not b: break\n\
             \x20           head+=b\n\
             \x20   except OSError: pass\n\
             \x20   with open('vhost.log', 'a') as f: f.write(repr(head)+'\\n')\n\
             \x20   hs=[l[6:] for l in head.split(b'\\r\\n') if l.lower().startswith(b'host: ')]\n\
             \x20   body=b'site='+(hs[0] if hs else b'-')+b'\\n'\n\
             \x20   try: c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n' % len(body) + body)\n\
             \x20   except OSError: pass\n\
             \x20   c.close()\n"
        );
        self.spawn_in_ns(&[PYTHON, "-c", &vhost]);
        let until = Instant::now() + Duration::from_secs(10);
        for port in [80, 443, 9000, 8080] {
            let addr = format!("{host}:{port}").parse().unwrap();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                assert!(
                    Instant::now() < until,
                    "test server on port {port} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self
    }

    /// A profile extending `agent`: the test names, their block allowed
    /// (unless `allow_private` is false), names answered by `net.hosts`.
    fn profile(&self, name: &str, mode: &str, allow_private: bool) -> PathBuf {
        self.profile_with(name, mode, allow_private, "")
    }

    /// `profile` with `extra` appended to its `[net]` table.
    fn profile_with(&self, name: &str, mode: &str, allow_private: bool, extra: &str) -> PathBuf {
        let private = if allow_private {
            format!(
                "allow_private = [{{ cidr = \"{}\", reason = \"the test's own hosts\" }}]\n",
                self.subnet
            )
        } else {
            String::new()
        };
        let text = format!(
            "schema = 1\nname = \"{name}\"\ndescription = \"egress test\"\nextends = \"agent\"\n\
             [net]\nmode = \"{mode}\"\n\
             allow = [\"web.test:80\", \"tls.test:443\", \"bytes.test:9000\", \"loop.test:80\", \
             \"meta.test:80\", \"meta6.test:80\", \"vhost.test:8080\"]\n{private}\
             hosts = {{ \"web.test\" = \"{h}\", \"tls.test\" = \"{h}\", \"bytes.test\" = \"{h}\", \
             \"vhost.test\" = \"{h}\", \
             \"loop.test\" = \"127.0.0.1\", \"meta.test\" = \"169.254.169.254\", \
             \"meta6.test\" = \"fd00:ec2::254\" }}\n{extra}",
            h = self.host
        );
        let p = self.path(&format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn jail(&self, profile: &Path) -> Jail {
        let j = Jail::new(profile.to_str().unwrap());
        // The CA file, where the jail can read it.
        let ca = std::fs::read_to_string(self.path("cert.pem")).unwrap();
        host_file(&j.ws().join("ca.pem"), &ca, j.ws_owner());
        j
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        run(&["ip", "link", "del", &self.veth]);
        run(&["ip", "netns", "del", &self.ns]);
    }
}

fn records(o: &Outcome) -> Vec<Value> {
    o.report
        .as_ref()
        .and_then(|r| r["egress"]["records"].as_array().cloned())
        .unwrap_or_else(|| panic!("no egress records\n{}", o.describe()))
}

fn record<'a>(recs: &'a [Value], host: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no record for {host}: {recs:?}"))
}

#[test]
fn allowed_names_work_through_curl_and_git_and_are_audited() {
    let Some(net) = TestNet::up("allowed_names_work_through_curl_and_git_and_are_audited") else {
        return;
    };
    let p = net.profile("egress-ok", "allowlist", true);
    let o = net.jail(&p).run_sh(&format!(
        "{CURL} -sSf http://web.test/hello.txt && \
         {CURL} -sSf --cacert ca.pem https://tls.test/ | head -c 200 | grep -q . && echo TLS-OK && \
         {GIT} ls-remote http://web.test/repo.git"
    ));
    o.assert_ran().assert_code(0);
    assert!(
        o.stdout.contains("hello from the test host"),
        "{}",
        o.describe()
    );
    assert!(o.stdout.contains("TLS-OK"), "{}", o.describe());
    assert!(o.stdout.contains("refs/heads/main"), "{}", o.describe());
    let recs = records(&o);
    let web: Vec<&Value> = recs.iter().filter(|r| r["host"] == "web.test").collect();
    assert!(web.len() >= 2, "curl and git each connect: {recs:?}");
    for r in &web {
        assert_eq!(r["verdict"], "allowed");
        assert_eq!(r["protocol"], "http");
        assert_eq!(r["addr"], format!("{}:80", net.host));
    }
    let tls = record(&recs, "tls.test");
    assert_eq!(
        (&tls["verdict"], &tls["protocol"]),
        (&Value::from("allowed"), &Value::from("connect"))
    );
    assert!(tls["bytes_down"].as_u64().unwrap() > 0);

    // Control: the same requests from a jail without the proxy fail.
    let none = net.profile("egress-loopback", "loopback", true);
    let o = net.jail(&none).run_sh(&format!(
        "{CURL} -sSf -m 5 http://web.test/hello.txt; echo rc=$?"
    ));
    o.assert_ran();
    assert!(!o.stdout.contains("hello from"), "{}", o.describe());
    assert!(o.report.as_ref().unwrap().get("egress").is_none());
}

#[test]
fn an_unlisted_name_and_an_ip_literal_are_refused_with_the_reason() {
    let Some(net) = TestNet::up("an_unlisted_name_and_an_ip_literal_are_refused_with_the_reason")
    else {
        return;
    };
    let p = net.profile("egress-deny", "allowlist", true);
    let o = net.jail(&p).run_sh(&format!(
        "{CURL} -sS -D - -o /dev/null http://evil.test/; \
         {CURL} -sS https://evil.test/; echo connect-rc=$?; \
         {CURL} -sS -D - -o /dev/null http://{h}/hello.txt; \
         {CURL} -sSf http://web.test/hello.txt",
        h = net.host
    ));
    o.assert_ran().assert_code(0);
    // The client sees the status and the reason.
    assert!(
        o.stdout.contains("HTTP/1.1 403 Forbidden"),
        "{}",
        o.describe()
    );
    assert!(
        o.stdout
            .contains("X-Aiops-Egress-Reason: evil.test:80 is not on the profile's net.allow list"),
        "{}",
        o.describe()
    );
    assert!(o.stdout.contains("connect-rc=56"), "{}", o.describe());
    assert!(
        o.stderr.contains("CONNECT tunnel failed, response 403"),
        "{}",
        o.describe()
    );
    assert!(
        o.stdout.contains(&format!(
            "X-Aiops-Egress-Reason: {}:80 is not on the profile's net.allow list",
            net.host
        )),
        "{}",
        o.describe()
    );
    // Control, in the same jail: the listed name works.
    assert!(
        o.stdout.contains("hello from the test host"),
        "{}",
        o.describe()
    );
    let recs = records(&o);
    let denied: Vec<&Value> = recs.iter().filter(|r| r["verdict"] == "denied").collect();
    assert_eq!(denied.len(), 3, "{recs:?}");
    assert!(denied
        .iter()
        .all(|r| r["addr"].is_null() && r["bytes_down"] == 0));
    assert_eq!(record(&recs, "web.test")["verdict"], "allowed");
    assert_eq!(o.report.as_ref().unwrap()["egress"]["denied"], 3);
}

#[test]
fn listed_names_resolving_to_loopback_or_metadata_are_refused() {
    let Some(net) = TestNet::up("listed_names_resolving_to_loopback_or_metadata_are_refused")
    else {
        return;
    };
    let p = net.profile("egress-private", "allowlist", true);
    let o = net.jail(&p).run_sh(&format!(
        "for h in loop.test meta.test meta6.test web.test; do \
         {CURL} -sS -D - -o /dev/null http://$h/hello.txt | grep -i -e '^HTTP/' -e reason; done"
    ));
    o.assert_ran();
    let recs = records(&o);
    for (host, class) in [
        ("loop.test", "a loopback address"),
        ("meta.test", "cloud metadata"),
        ("meta6.test", "unique local"),
    ] {
        let r = record(&recs, host);
        assert_eq!(r["verdict"], "denied", "{host}: {r}");
        assert!(r["reason"].as_str().unwrap().contains(class), "{host}: {r}");
        assert!(o.stdout.contains(class), "{}", o.describe());
    }
    // Control: a private address the profile lists is reached ...
    assert_eq!(record(&recs, "web.test")["verdict"], "allowed");
    // ... and refused once the profile stops listing its block.
    let strict = net.profile("egress-strict", "allowlist", false);
    let o = net.jail(&strict).run_sh(&format!(
        "{CURL} -sS -o /dev/null http://web.test/hello.txt"
    ));
    let recs = records(&o);
    let r = record(&recs, "web.test");
    assert_eq!(r["verdict"], "denied");
    assert!(
        r["reason"].as_str().unwrap().contains("private (RFC 1918)"),
        "{r}"
    );
}

#[test]
fn udp_raw_and_direct_tcp_have_no_route_out() {
    let Some(net) = TestNet::up("udp_raw_and_direct_tcp_have_no_route_out") else {
        return;
    };
    // Control: the UDP echo and the web server answer from the host.
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(b"ping", format!("{}:5353", net.host)).unwrap();
    let mut b = [0u8; 8];
    let (n, _) = s.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"pong");
    assert!(TcpStream::connect(format!("{}:80", net.host)).is_ok());
    let p = net.profile("egress-udp", "allowlist", true);
    let probe = format!(
        "import socket, errno\n\
         def t(name, f):\n\
         \x20   try:\n\
         \x20       f(); print('PROBE', name, 'ok')\n\
         \x20   except OSError as e:\n\
         \x20       print('PROBE', name, errno.errorcode.get(e.errno, e.errno))\n\
         def udp():\n\
         \x20   s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n\
         \x20   s.sendto(b'ping', ('{h}', 5353)); s.recvfrom(8)\n\
         def dns():\n\
         \x20   socket.getaddrinfo('web.test', 80)\n\
         def raw():\n\
         \x20   socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
         def tcp():\n\
         \x20   socket.create_connection(('{h}', 80), timeout=3)\n\
         t('udp', udp); t('raw', raw); t('tcp', tcp)\n\
         try:\n\
         \x20   dns(); print('PROBE dns ok')\n\
         except socket.gaierror as e:\n\
         \x20   print('PROBE dns gaierror')\n",
        h = net.host
    );
    let o = net.jail(&p).run_py(&probe, &[]);
    o.assert_ran();
    assert_eq!(o.probe_value("udp"), "ENETUNREACH", "{}", o.describe());
    assert_eq!(o.probe_value("raw"), "EPERM", "{}", o.describe());
    // Landlock allows TCP connect to the proxy port only.
    assert!(
        ["EACCES", "ENETUNREACH"].contains(&o.probe_value("tcp").as_str()),
        "{}",
        o.describe()
    );
    assert_eq!(o.probe_value("dns"), "gaierror", "{}", o.describe());
}

#[test]
fn the_audit_counts_tunnel_bytes_exactly_and_names_the_checked_address() {
    let Some(net) =
        TestNet::up("the_audit_counts_tunnel_bytes_exactly_and_names_the_checked_address")
    else {
        return;
    };
    let p = net.profile("egress-bytes", "allowlist", true);
    // A raw CONNECT client: the payload is exactly UP bytes up, DOWN down.
    let client = format!(
        "import socket\n\
         s=socket.create_connection(('127.0.0.1', 3128))\n\
         s.sendall(b'CONNECT bytes.test:9000 HTTP/1.1\\r\\nHost: bytes.test:9000\\r\\n\\r\\n')\n\
         head=b''\n\
         while not head.endswith(b'\\r\\n\\r\\n'): head+=s.recv(1)\n\
         print('PROBE status', head.split(b'\\r\\n')[0].decode().replace(' ', '_'))\n\
         s.sendall(b'u'*{UP}); got=0\n\
         while True:\n\
         \x20   b=s.recv(65536)\n\
         \x20   if not b: break\n\
         \x20   got+=len(b)\n\
         print('PROBE down', got)\n"
    );
    let o = net.jail(&p).run_py(&client, &[]);
    o.assert_ran().assert_code(0);
    assert_eq!(
        o.probe_value("status"),
        "HTTP/1.1_200_Connection_established"
    );
    assert_eq!(o.probe_value("down"), DOWN.to_string());
    let recs = records(&o);
    let r = record(&recs, "bytes.test");
    assert_eq!(r["bytes_up"], UP as u64, "{r}");
    assert_eq!(r["bytes_down"], DOWN as u64, "{r}");
    // The address connected to is the one the check resolved.
    assert_eq!(r["addr"], format!("{}:9000", net.host));
    let e = &o.report.as_ref().unwrap()["egress"];
    assert_eq!(
        (&e["bytes_up"], &e["bytes_down"]),
        (&Value::from(UP), &Value::from(DOWN))
    );
}

#[test]
fn tools_that_ignore_the_proxy_fail_fast_with_a_clear_error() {
    let Some(net) = TestNet::up("tools_that_ignore_the_proxy_fail_fast_with_a_clear_error") else {
        return;
    };
    let p = net.profile("egress-noproxy", "allowlist", true);
    let o = net.jail(&p).run_sh(&format!(
        "{CURL} -sS --noproxy '*' http://web.test/hello.txt; echo curl-rc=$?; \
         {CURL} -sSf http://web.test/hello.txt"
    ));
    o.assert_ran();
    assert!(o.elapsed < Duration::from_secs(20), "{}", o.describe());
    assert!(o.stdout.contains("curl-rc=6"), "{}", o.describe());
    assert!(
        o.stderr.contains("Could not resolve host: web.test"),
        "{}",
        o.describe()
    );
    // Control: the proxy-aware request right after it works.
    assert!(
        o.stdout.contains("hello from the test host"),
        "{}",
        o.describe()
    );
}

#[test]
fn the_profile_byte_limit_cuts_a_connection() {
    let Some(net) = TestNet::up("the_profile_byte_limit_cuts_a_connection") else {
        return;
    };
    // The control is the test above: the same exchange under the default
    // limits goes through whole.
    let p = net.profile_with(
        "egress-cap",
        "allowlist",
        true,
        "egress = { bytes = \"4KiB\", connections = 8, idle = \"30s\" }\n",
    );
    let client = format!(
        "import socket\n\
         s=socket.create_connection(('127.0.0.1', 3128))\n\
         s.sendall(b'CONNECT bytes.test:9000 HTTP/1.1\\r\\n\\r\\n')\n\
         head=b''\n\
         while not head.endswith(b'\\r\\n\\r\\n'): head+=s.recv(1)\n\
         try:\n\
         \x20   s.sendall(b'u'*{UP}); got=0\n\
         \x20   while True:\n\
         \x20       b=s.recv(65536)\n\
         \x20       if not b: break\n\
         \x20       got+=len(b)\n\
         except OSError:\n\
         \x20   got=-1\n\
         print('PROBE down', got)\n"
    );
    let o = net.jail(&p).run_py(&client, &[]);
    o.assert_ran();
    assert_ne!(o.probe_value("down"), DOWN.to_string(), "{}", o.describe());
    let recs = records(&o);
    let r = record(&recs, "bytes.test");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("node byte limit (4096 bytes)"),
        "{r}"
    );
    assert!(r["bytes_up"].as_u64().unwrap() <= 4096, "{r}");
}

#[test]
fn a_flow_node_on_the_allowlist_is_proxied_and_its_connections_are_in_the_audit() {
    let test = "a_flow_node_on_the_allowlist_is_proxied_and_its_connections_are_in_the_audit";
    let Some(net) = TestNet::up(test) else {
        return;
    };
    if !Path::new(GIT).exists() {
        skip(test, "git is not installed");
        return;
    }
    let p = net.profile("egress-flow", "allowlist", true);
    // A one-commit repo for the run's workspace, a private state dir.
    let repo = net.path("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new(GIT)
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "x\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "x"]);
    let cfg = net.path("supervisor.toml");
    std::fs::write(
        &cfg,
        format!(
            "schema = 1\nstate_dir = \"{0}\"\n[api]\nsocket = \"{1}\"\n",
            net.path("state").display(),
            net.path("api.sock").display()
        ),
    )
    .unwrap();
    let flow = net.path("flow.toml");
    std::fs::write(
        &flow,
        format!(
            "schema = 1\nname = \"egress\"\n[workspace]\nrepo = \"{}\"\nref = \"main\"\n\n\
             [[node]]\nid = \"fetch\"\nkind = \"shell\"\nprofile = \"{}\"\nconfirm = \"never\"\n\
             run = \"{CURL} -sSf http://web.test/hello.txt && {CURL} -s -o /dev/null http://evil.test/; echo done\"\n",
            repo.display(),
            p.display()
        ),
    )
    .unwrap();
    let ctl = |args: &[&str]| {
        Command::new(aiopsctl())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env("AIOPS_PROFILE_PATH", profiles_dir())
            .env_remove("AIOPS_API_SOCKET")
            .output()
            .unwrap()
    };
    let o = ctl(&["run", flow.to_str().unwrap(), "--json"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let run: Value = serde_json::from_str(&out).unwrap();
    let id = run["id"].as_str().unwrap();
    let o = ctl(&["logs", id, "fetch"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello from the test host"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = ctl(&["audit", "--run", id, "--json"]);
    let line: Value = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["kind"] == "node_end")
        .unwrap();
    let recs = line["egress"]["records"]
        .as_array()
        .unwrap_or_else(|| panic!("{line}"));
    let verdict = |host: &str| {
        recs.iter()
            .find(|r| r["host"] == host)
            .map(|r| r["verdict"].clone())
            .unwrap_or_else(|| panic!("no record for {host}: {line}"))
    };
    assert_eq!(verdict("web.test"), "allowed");
    assert_eq!(verdict("evil.test"), "denied");
}

/// The heads the vhost server read, in order (not the empty connections
/// that checked it was up).
fn vhost_log(net: &TestNet) -> Vec<String> {
    std::fs::read_to_string(net.path("vhost.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l != "b''")
        .map(str::to_string)
        .collect()
}

/// A GET to the vhost server from the host, naming `host` in Host:.
fn ask_vhost_directly(net: &TestNet, host: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(format!("{}:8080", net.host)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /direct HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got
}

/// The proxy (plain HTTP) sends the authority it checked as `Host:`, so a
/// node cannot reach another virtual host on an allowed address by naming
/// it in `Host:`. Judged by the upstream server's own log.
#[test]
fn plain_http_carries_the_checked_authority_as_host() {
    let Some(net) = TestNet::up("plain_http_carries_the_checked_authority_as_host") else {
        return;
    };
    // Control: the other virtual host exists; asked directly, it answers.
    let direct = ask_vhost_directly(&net, "other.test");
    assert!(direct.ends_with("site=other.test\n"), "{direct}");
    let p = net.profile("egress-vhost", "allowlist", true);
    let o = net.jail(&p).run_sh(&format!(
        "{CURL} -sS -H 'Host: other.test' http://vhost.test:8080/a; \
         {CURL} -sS -H 'Host: vhost.test:8080' http://vhost.test:8080/b"
    ));
    o.assert_ran().assert_code(0);
    // The node got the allowed site, never the other.
    assert_eq!(
        o.stdout.matches("site=vhost.test:8080").count(),
        2,
        "{}",
        o.describe()
    );
    assert!(!o.stdout.contains("site=other.test"), "{}", o.describe());
    let log = vhost_log(&net);
    assert_eq!(log.len(), 3, "{log:?}");
    for (line, path) in log[1..].iter().zip(["/a", "/b"]) {
        assert!(
            line.starts_with(&format!("b'GET {path} HTTP/1.1\\r\\n")),
            "{log:?}"
        );
        assert!(
            line.contains("\\r\\nHost: vhost.test:8080\\r\\n"),
            "{log:?}"
        );
        assert!(!line.contains("other.test"), "{log:?}");
        assert_eq!(
            line.to_ascii_lowercase().matches("host:").count(),
            1,
            "{log:?}"
        );
    }
}

/// A header line split by a bare CR or a bare LF, or folded onto the line
/// before (obs-fold), is answered 400 and audited as a refusal; the
/// upstream never sees it. Control: the same request, well formed, in the
/// same jail, reaches the upstream, and it is the only head it read.
#[test]
fn bare_cr_bare_lf_and_folded_heads_are_refused_before_the_upstream() {
    let Some(net) = TestNet::up("bare_cr_bare_lf_and_folded_heads_are_refused_before_the_upstream")
    else {
        return;
    };
    let p = net.profile("egress-framing", "allowlist", true);
    let client = r#"import socket
def ask(name, head):
    s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(head); d = b''
    try:
        while True:
            b = s.recv(65536)
            if not b: break
            d += b
    except OSError:
        pass
    print('PROBE', name, (d.split(b'\r\n')[0].decode() or 'none').replace(' ', '_'), flush=True)
u = b'GET http://vhost.test:8080/'
ask('cr', u + b'cr HTTP/1.1\r\nAccept: a\rHost: other.test\r\n\r\n')
ask('lf', u + b'lf HTTP/1.1\r\nAccept: a\nHost: other.test\r\n\r\n')
ask('lflf', u + b'lflf HTTP/1.1\nHost: other.test\n\n')
ask('fold', u + b'fold HTTP/1.1\r\nAccept: a\r\n Host: other.test\r\n\r\n')
ask('ok', u + b'ok HTTP/1.1\r\nAccept: a\r\n\r\n')
"#;
    let o = net.jail(&p).run_py(client, &[]);
    o.assert_ran().assert_code(0);
    for name in ["cr", "lf", "lflf", "fold"] {
        assert_eq!(
            o.probe_value(name),
            "HTTP/1.1_400_Bad_Request",
            "{name}: {}",
            o.describe()
        );
    }
    assert_eq!(o.probe_value("ok"), "HTTP/1.1_200_OK", "{}", o.describe());
    let log = vhost_log(&net);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("b'GET /ok HTTP/1.1\\r\\n"), "{log:?}");
    let recs = records(&o);
    let denied: Vec<&str> = recs
        .iter()
        .filter(|r| r["verdict"] == "denied")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(denied.len(), 4, "{recs:?}");
    for (r, why) in denied
        .iter()
        .zip(["bare CR", "bare LF", "bare LF", "obs-fold"])
    {
        assert!(r.contains(why), "{denied:?}");
    }
    assert_eq!(o.report.as_ref().unwrap()["egress"]["denied"], 4);
}
