//! The proxy's thread: receive the jail's listener, accept, serve each
//! connection as its own task, and sum up when the node has ended.
use super::check::{self, Checker};
use super::proxy::{self, Conn, Shared};
use super::{EgressPolicy, EgressSummary, Verdict};
use crate::error::SupervisorError;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// After the node ends, how long open connections may take to drain
/// before they are cut.
const FINISH_GRACE: Duration = Duration::from_secs(2);
/// Records kept per node; later connections are only counted.
const MAX_RECORDS: usize = 4096;
/// Accept failures (EMFILE, ENOBUFS) back off this long instead of
/// spinning; the connection waits in the jail's listen backlog (bounded by
/// the kernel), holding none of our descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The proxy's end of the egress socket, before the policy is known (so the
/// jailer can be started with the other end while the plan is compiled).
pub struct EgressChannel {
    sock: OwnedFd,
}

/// A SOCK_SEQPACKET pair: (the proxy's end, the end for `aiops-jailer --egress-fd`).
pub fn channel() -> Result<(EgressChannel, OwnedFd), SupervisorError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (mine, jail) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| SupervisorError::Channel {
        what: "egress socket",
        source,
    })?;
    Ok((EgressChannel { sock: mine }, jail))
}

/// `channel` and `EgressChannel::start` in one.
pub fn start(policy: EgressPolicy) -> Result<(OwnedFd, EgressHandle), SupervisorError> {
    let (chan, jail) = channel()?;
    Ok((jail, chan.start(policy)?))
}

/// The running proxy of one node.
pub struct EgressHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<EgressSummary>>,
}

impl EgressChannel {
    /// Start the proxy when `plan` is a confined allowlist plan; otherwise
    /// the channel is dropped here and the jailer closes its end.
    pub fn start_for(
        self,
        plan: &aiops_policy::JailPlan,
    ) -> Result<Option<EgressHandle>, SupervisorError> {
        EgressPolicy::from_plan(plan)
            .map(|p| self.start(p))
            .transpose()
    }

    pub fn start(self, policy: EgressPolicy) -> Result<EgressHandle, SupervisorError> {
        self.start_with(policy, None)
    }

    pub(super) fn start_with(
        self,
        policy: EgressPolicy,
        resolve: Option<check::ResolveFn>,
    ) -> Result<EgressHandle, SupervisorError> {
        let (tx, rx) = oneshot::channel();
        let sock = self.sock;
        let thread = std::thread::Builder::new()
            .name("aiops-egress".into())
            .spawn(move || run_proxy(sock, policy, resolve, rx))
            .map_err(|source| SupervisorError::EgressThread { source })?;
        Ok(EgressHandle {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl EgressHandle {
    /// Stop accepting, let open connections drain for `FINISH_GRACE`, cut
    /// the rest, and return what happened. Call once the node has ended.
    pub fn finish(mut self) -> EgressSummary {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(s)) => s,
            _ => EgressSummary {
                error: Some("the egress proxy thread panicked".into()),
                ..Default::default()
            },
        }
    }
}

impl Drop for EgressHandle {
    /// Dropped unfinished (an error path): the thread stops on its own.
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn run_proxy(
    sock: OwnedFd,
    policy: EgressPolicy,
    resolve: Option<check::ResolveFn>,
    stop: oneshot::Receiver<()>,
) -> EgressSummary {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return EgressSummary {
                error: Some(format!("start the proxy runtime: {e}")),
                ..Default::default()
            }
        }
    };
    let summary = rt.block_on(serve_node(sock, policy, resolve, stop));
    // A getaddrinfo still blocked in the pool must not hold up `finish`.
    rt.shutdown_background();
    summary
}

async fn serve_node(
    sock: OwnedFd,
    policy: EgressPolicy,
    resolve: Option<check::ResolveFn>,
    mut stop: oneshot::Receiver<()>,
) -> EgressSummary {
    let mut summary = EgressSummary::default();
    let listener = tokio::select! {
        l = receive_listener(sock) => l,
        _ = &mut stop => return summary,
    };
    let listener = match listener {
        Ok(Some(l)) => l,
        // The jailer ended (or failed) before its step 8.
        Ok(None) => return summary,
        Err(e) => {
            summary.error = Some(e);
            return summary;
        }
    };
    summary.listening = true;
    let sh = Arc::new(Shared::new(
        Checker {
            allow: policy.allow,
            allow_private: policy.allow_private,
            hosts: policy.hosts,
            resolve,
        },
        policy.limits,
    ));
    let mut conns: Vec<Arc<Conn>> = vec![];
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let client = match accepted {
                    Ok((client, _)) => client,
                    Err(_) => {
                        summary.accept_errors += 1;
                        super::TOTALS.accept_failed();
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                summary.connections += 1;
                super::TOTALS.accepted();
                // Every accepted socket holds a slot until it is closed,
                // also while its head is read or its refusal written; one
                // over the limit is closed here, before the next accept.
                let Some(slot) = sh.slot() else {
                    proxy::refuse_over_limit(client, &sh);
                    continue;
                };
                let conn = Arc::new(Conn::new());
                if conns.len() < MAX_RECORDS {
                    conns.push(conn.clone());
                } else {
                    summary.records_dropped += 1;
                }
                let sh2 = sh.clone();
                tasks.spawn(async move {
                    proxy::serve(client, sh2, conn).await;
                    drop(slot);
                });
            }
        }
    }
    // No new connections; the node is gone, so its ends close and most
    // copies finish at once. A peer that keeps its side open is cut.
    drop(listener);
    let _ = tokio::time::timeout(FINISH_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    summary.denied = sh.denied.load(Ordering::Relaxed);
    summary.over_limit = sh.over_limit.load(Ordering::Relaxed);
    summary.dns_failed = sh.dns_failed.load(Ordering::Relaxed);
    summary.peak_open = sh.peak_open.load(Ordering::Relaxed) as u64;
    for c in &conns {
        let r = c.snapshot();
        if r.verdict == Verdict::Allowed {
            summary.allowed += 1;
        }
        summary.bytes_up += r.bytes_up;
        summary.bytes_down += r.bytes_down;
        summary.records.push(r);
    }
    summary
}

/// Wait for the jailer's one message: the listening socket, by SCM_RIGHTS.
/// `Ok(None)`: the jailer closed its end without sending one.
async fn receive_listener(sock: OwnedFd) -> Result<Option<tokio::net::TcpListener>, String> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    // tokio has no SOCK_SEQPACKET type; UnixDatagram only lends its
    // readiness here (every read is our own recvmsg on the same fd).
    let std_sock = std::os::unix::net::UnixDatagram::from(sock);
    let sock = std_sock
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixDatagram::from_std(std_sock))
        .map_err(|e| format!("watch the egress socket: {e}"))?;
    let fd = loop {
        sock.readable()
            .await
            .map_err(|e| format!("wait on the egress socket: {e}"))?;
        let got = sock.try_io(tokio::io::Interest::READABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut cmsg = RecvAncillaryBuffer::new(&mut space);
            let mut byte = [0u8; 64];
            let msg = recvmsg(
                sock.as_fd(),
                &mut [IoSliceMut::new(&mut byte)],
                &mut cmsg,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            )?;
            let mut fds: Vec<OwnedFd> = vec![];
            for m in cmsg.drain() {
                if let RecvAncillaryMessage::ScmRights(it) = m {
                    fds.extend(it);
                }
            }
            Ok((msg.bytes, fds))
        });
        match got {
            Ok((0, fds)) if fds.is_empty() => return Ok(None),
            Ok((_, mut fds)) if fds.len() == 1 => break fds.remove(0),
            Ok((_, fds)) => {
                return Err(format!(
                    "the jailer sent {} fds, expected one listener",
                    fds.len()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("receive the jail's listener: {e}")),
        }
    };
    // Only a listening TCP socket is accepted from the jailer.
    let listening = rustix::net::sockopt::socket_acceptconn(&fd).unwrap_or(false);
    let stream =
        rustix::net::sockopt::socket_type(&fd).is_ok_and(|t| t == rustix::net::SocketType::STREAM);
    if !(listening && stream) {
        return Err("the jailer's egress fd is not a listening TCP socket".into());
    }
    let std_listener = std::net::TcpListener::from(fd);
    std_listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(std_listener))
        .map(Some)
        .map_err(|e| format!("register the jail's listener: {e}"))
}
