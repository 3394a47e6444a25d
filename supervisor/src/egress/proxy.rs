//! One connection from the jail: read what the client asks for (HTTP
//! CONNECT, an absolute-form HTTP request, or SOCKS5), check it, connect to
//! the checked address, then copy bytes both ways with the node's limits.
//! Every step is bounded in time, so a stuck client or peer ends its own
//! task and never the proxy.
use super::check::{Checker, Denial};
use super::head::{http_denial, parse_head, read_head, MAX_HEAD};
use super::{EgressLimits, EgressRecord, Verdict};
use aiops_policy::net::HostPort;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

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
    /// Allowed names whose DNS lookup failed (not in `denied`).
    pub dns_failed: AtomicU64,
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
            dns_failed: AtomicU64::new(0),
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

    /// An allowed name that did not resolve: counted apart from refusals.
    fn dns_failed(&self) {
        self.dns_failed.fetch_add(1, Ordering::Relaxed);
        super::TOTALS.dns_failed();
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

/// Before closing a refused connection, at most this many 4 KiB reads
/// discard what the client already sent: a client that keeps sending gets
/// a reset rather than holding the proxy in the loop.
const DRAIN_READS: usize = 16;

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
        for _ in 0..DRAIN_READS {
            if !matches!((&s).read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
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
            refused = Some((d.status, d.dns));
            r.verdict = if d.dns {
                Verdict::DnsFailed
            } else {
                Verdict::Denied
            };
            r.reason = d.reason;
        }
    });
    match refused {
        Some((_, true)) => sh.dns_failed(),
        Some((status, false)) => sh.refused(status),
        None => {}
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
    for _ in 0..DRAIN_READS {
        if !matches!(client.try_read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = client.shutdown().await;
    Err(d)
}

/// The most a refusal's answer may take to write.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);
